//! The relay's status page (`hyco serve --dashboard ADDR`): a small HTTP listener of its
//! own that shows what the relay holds now. `/` is a plain HTML page (tables readable
//! without JavaScript), `/api/status` the same as JSON, `/api/events` server-sent events
//! with the throughput each way once a second, which the page's embedded script draws.
//! Every asset is in the binary. It reads the registry's and the counters' snapshots and
//! changes nothing; no key, token, signature, rule or rendezvous address is shown.
//!
//! Bound to loopback it is open to whoever can reach it; on any other address each
//! request must carry a Manage-rights SAS token of the namespace, or the configured
//! secret, in `Authorization` (as is, or as the password of Basic auth, so that a browser
//! can ask for it); else 401 says what to send.

mod render;

pub use render::status;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use super::auth::Right;
use super::metrics::{Flow, MAX_REQUEST_BYTES, Metrics, REQUEST_TIMEOUT};
use crate::http1::{self, HeadError, header};
use crate::secret::Secret;

/// Connections served at once, event streams included; more get 503.
pub const MAX_DASHBOARD_CONNECTIONS: usize = 16;
/// How often an event stream sends the throughput.
pub const EVENT_INTERVAL: Duration = Duration::from_secs(1);
/// How long one event stream lasts; the browser's `EventSource` then reconnects, so
/// that a forgotten tab does not hold a slot for ever.
pub const EVENT_STREAM_LIFETIME: Duration = Duration::from_secs(600);
/// Time to write one answer or event to a client that reads slowly.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The text of a 401, naming what to send.
pub const UNAUTHORIZED_TEXT: &str = "This status page is not on loopback: send a Manage-rights SAS token of \
     the namespace (or the configured dashboard secret) in Authorization, as is or as the password of Basic auth";

/// Who may look at the page.
#[derive(Clone, Debug)]
pub struct DashboardAccess {
    /// Whether requests must carry a token or the secret (the page is not on loopback).
    pub token_required: bool,
    /// A secret that also lets a request in.
    pub secret: Option<Secret>,
}

impl DashboardAccess {
    /// Open on a loopback address, else a token or `secret` is required.
    pub fn for_address(addr: SocketAddr, secret: Option<Secret>) -> Self {
        Self { token_required: !addr.ip().is_loopback(), secret }
    }
}

/// Serves the status page on `listener` until `shutdown` fires, for the relay that
/// counts into `metrics`. Accept errors never end the loop.
pub async fn serve_dashboard(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    access: DashboardAccess,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(MAX_DASHBOARD_CONNECTIONS));
    let access = Arc::new(access);
    let tracker = TaskTracker::new();
    while let Some((tcp, _)) = crate::net::accept(&listener, &shutdown, "dashboard").await {
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            let _ = tcp.try_write(http1::error_response(503, "Too many dashboard connections").as_bytes());
            continue;
        };
        let (metrics, access, shutdown) = (metrics.clone(), access.clone(), shutdown.clone());
        tracker.spawn(async move {
            tokio::select! {
                () = serve(tcp, &metrics, &access) => {}
                () = shutdown.cancelled() => {}
            }
            drop(permit);
        });
    }
    tracker.close();
    tracker.wait().await;
}

/// Answers one request on `tcp`, then closes it.
async fn serve(mut tcp: TcpStream, metrics: &Metrics, access: &DashboardAccess) {
    let req = match tokio::time::timeout(REQUEST_TIMEOUT, http1::read_request(&mut tcp, MAX_REQUEST_BYTES)).await {
        Ok(Ok((req, _))) => req,
        Ok(Err(HeadError::TooLarge)) => return answer(&mut tcp, refusal(431, "Request header fields too large")).await,
        Ok(Err(HeadError::Malformed(_))) => return answer(&mut tcp, refusal(400, "Malformed request")).await,
        Ok(Err(_)) => return,
        Err(_) => return answer(&mut tcp, refusal(408, "Request timeout")).await,
    };
    if access.token_required && !admitted(header(&req.headers, "Authorization"), metrics, access) {
        debug!("dashboard request without a valid token");
        let headers = text_headers(UNAUTHORIZED_TEXT.len() + 1, "text/plain; charset=utf-8")
            .into_iter()
            .chain([("WWW-Authenticate".to_owned(), "Basic realm=\"hyco relay status\"".to_owned())])
            .collect::<Vec<_>>();
        let head = http1::head("HTTP/1.1 401 Unauthorized", &headers);
        return answer(&mut tcp, format!("{head}{UNAUTHORIZED_TEXT}\n")).await;
    }
    let path = req.target.split_once('?').map_or(req.target.as_str(), |(p, _)| p);
    if !matches!(req.method.as_str(), "GET" | "HEAD") {
        return answer(&mut tcp, refusal(405, "Only GET is served")).await;
    }
    let (kind, body) = match path {
        "/" => ("text/html; charset=utf-8", render::html(&render::status(metrics))),
        "/api/status" => ("application/json", render::status(metrics).to_string()),
        "/dashboard.js" => ("text/javascript; charset=utf-8", render::SCRIPT.to_owned()),
        "/api/events" => return events(tcp, metrics).await,
        _ => return answer(&mut tcp, refusal(404, "Not found; try / or /api/status")).await,
    };
    let head = http1::head("HTTP/1.1 200 OK", &text_headers(body.len(), kind));
    answer(&mut tcp, if req.method == "HEAD" { head } else { head + &body }).await;
}

/// Whether `authorization` carries a Manage-rights token of the namespace or the secret.
fn admitted(authorization: Option<&str>, metrics: &Metrics, access: &DashboardAccess) -> bool {
    let Some(value) = authorization.map(str::trim) else { return false };
    // Basic auth: the password is the token or secret (the user name is ignored).
    let decoded = value
        .strip_prefix("Basic ")
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .map(|s| s.split_once(':').map_or(s.clone(), |(_, p)| p.to_owned()));
    let given = decoded.as_deref().unwrap_or(value);
    if access.secret.as_ref().is_some_and(|s| *s == Secret::new(given)) {
        return true;
    }
    let Some(registry) = metrics.attached().and_then(|a| a.registry.upgrade()) else { return false };
    given.starts_with("SharedAccessSignature ") && registry.check_right("", Right::Manage, Some(given)).is_ok()
}

/// Sends the throughput each way once a second, until the client leaves or the stream's
/// lifetime is over.
async fn events(mut tcp: TcpStream, metrics: &Metrics) {
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n\
                X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n";
    if write(&mut tcp, head.as_bytes()).await.is_err() {
        return;
    }
    let totals = || [Flow::SenderToListener, Flow::ListenerToSender].map(|f| metrics.relayed_bytes(f));
    let mut last = (tokio::time::Instant::now(), totals());
    let mut ticker = tokio::time::interval(EVENT_INTERVAL);
    let _ = tokio::time::timeout(EVENT_STREAM_LIFETIME, async {
        loop {
            ticker.tick().await;
            let (now, bytes) = (tokio::time::Instant::now(), totals());
            let secs = now.duration_since(last.0).as_secs_f64().max(0.001);
            let rate = |i: usize| ((bytes[i].saturating_sub(last.1[i])) as f64 / secs).round() as u64;
            let event = render::event(metrics, bytes, [rate(0), rate(1)]);
            last = (now, bytes);
            if write(&mut tcp, format!("data: {event}\n\n").as_bytes()).await.is_err() {
                return;
            }
        }
    })
    .await;
}

async fn write(tcp: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    tokio::time::timeout(WRITE_TIMEOUT, tcp.write_all(bytes)).await.unwrap_or(Err(std::io::ErrorKind::TimedOut.into()))
}

/// Writes a whole answer and closes.
async fn answer(tcp: &mut TcpStream, response: String) {
    let _ = write(tcp, response.as_bytes()).await;
    let _ = tcp.shutdown().await;
}

fn refusal(status: u16, text: &str) -> String {
    http1::error_response(status, text)
}

/// The headers of a whole answer of `len` bytes of `kind`, which no other site may frame
/// or script.
fn text_headers(len: usize, kind: &str) -> Vec<(String, String)> {
    [
        ("Content-Type", kind),
        ("Content-Length", &len.to_string()),
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
        ("Content-Security-Policy", "default-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'none'"),
        ("Connection", "close"),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_owned(), v.to_owned()))
    .collect()
}
