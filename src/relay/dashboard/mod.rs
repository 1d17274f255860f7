//! The relay's status page (`hyco serve --dashboard ADDR`): a small HTTP listener of its
//! own that shows what the relay holds now. `/` is a plain HTML page (tables readable
//! without JavaScript), `/api/status` the same as JSON, `/api/events` server-sent events
//! with the throughput each way once a second, which the page's embedded script draws.
//! Every asset is in the binary. It reads the registry's and the counters' snapshots and
//! changes nothing; no key, token, signature, rule or rendezvous address is shown.
//!
//! Bound to loopback it is open to whoever can reach it by an IP address or `localhost`
//! (the Host check of [`crate::pages`]); on any other address each
//! request must carry a Manage-rights SAS token of the namespace, or the configured
//! secret, in `Authorization` (as is, or as the password of Basic auth, so that a browser
//! can ask for it); else 401 says what to send.

mod render;

pub use render::status;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::auth::Right;
use super::metrics::{Flow, Metrics};
use crate::http1::Request;
use crate::pages::{self, Access, EVENT_STREAM_LIFETIME, Site};
use crate::secret::Secret;

/// Connections served at once, event streams included; more get 503.
pub const MAX_DASHBOARD_CONNECTIONS: usize = 16;
/// How often an event stream sends the throughput.
pub const EVENT_INTERVAL: Duration = Duration::from_secs(1);

/// The text of a 401, naming what to send.
pub const UNAUTHORIZED_TEXT: &str = "This status page is not on loopback: send a Manage-rights SAS token of \
     the namespace (hyco token --namespace --rights key, with the root key) or the configured dashboard secret \
     in Authorization, as is or as the password of Basic auth";

/// Who may look at the page.
#[derive(Clone, Debug)]
pub struct DashboardAccess {
    access: Access,
}

impl DashboardAccess {
    /// Open on a loopback address (to Hosts no web site can rebind), else a token or
    /// `secret` is required.
    pub fn for_address(addr: SocketAddr, secret: Option<Secret>) -> Self {
        Self { access: Access::for_address(addr, secret, UNAUTHORIZED_TEXT, "hyco relay status") }
    }

    /// Whether requests must carry a token or the secret (the page is not on loopback).
    pub fn token_required(&self) -> bool {
        self.access.auth_required
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
    let site = Arc::new(Dashboard { metrics });
    pages::serve(listener, site, access.access, MAX_DASHBOARD_CONNECTIONS, "dashboard", shutdown).await;
}

/// The status page of the relay that counts into `metrics`.
struct Dashboard {
    metrics: Arc<Metrics>,
}

impl Site for Dashboard {
    /// A Manage-rights token of the namespace.
    fn admits(&self, given: &str) -> bool {
        let Some(registry) = self.metrics.attached().and_then(|a| a.registry.upgrade()) else { return false };
        given.starts_with("SharedAccessSignature ") && registry.check_right("", Right::Manage, Some(given)).is_ok()
    }

    async fn handle(&self, req: Request, tcp: TcpStream) {
        let metrics = &self.metrics;
        let path = req.target.split_once('?').map_or(req.target.as_str(), |(p, _)| p);
        if !matches!(req.method.as_str(), "GET" | "HEAD") {
            return pages::reject(tcp, 405, "Only GET is served").await;
        }
        let (kind, body) = match path {
            "/" => ("text/html; charset=utf-8", render::html(&render::status(metrics))),
            "/api/status" => ("application/json", render::status(metrics).to_string()),
            "/dashboard.js" => ("text/javascript; charset=utf-8", render::SCRIPT.to_owned()),
            "/api/events" => return events(tcp, &req, metrics).await,
            _ => return pages::reject(tcp, 404, "Not found; try / or /api/status").await,
        };
        pages::ok(tcp, &req, kind, &body).await;
    }
}

/// Sends the throughput each way once a second, until the client leaves or the stream's
/// lifetime is over.
async fn events(mut tcp: TcpStream, req: &Request, metrics: &Metrics) {
    if !pages::start_events(&mut tcp, req).await {
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
            if pages::event(&mut tcp, None, &event.to_string()).await.is_err() {
                return;
            }
        }
    })
    .await;
}
