//! The small HTTP server behind hyco's pages (the relay's status page, `hyco serve
//! --dashboard`, and the listener's request inspector, `hyco listen --inspect`): one
//! request per connection, read within [`REQUEST_TIMEOUT`] and [`MAX_REQUEST_BYTES`];
//! a connection slot each, more get 503; the Host check against DNS rebinding and the
//! secret (or another credential the page accepts) off loopback; answers with headers
//! that let no other site frame or script them; server-sent events.
//!
//! What a page shows and which paths it has is the page's own ([`Site`]); this module
//! knows no path.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use crate::http1::{self, HeadError, Request, header};
use crate::secret::Secret;

/// The largest request head a page reads.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// Time a client has to send its whole request head.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one event stream lasts; the browser's `EventSource` then reconnects, so
/// that a forgotten tab does not hold a slot for ever.
pub const EVENT_STREAM_LIFETIME: Duration = Duration::from_secs(600);
/// Time to write one answer or event to a client that reads slowly.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The text of the 403 for a Host that is no IP address and not `localhost`.
pub const HOST_REJECTED_TEXT: &str = "This page answers only when reached by an IP address, localhost or \
     NAME.localhost in Host: another name that leads here may be a web site reading the page through your browser";

/// One page: what it answers, and who may see it.
pub(crate) trait Site: Send + Sync + 'static {
    /// Whether `given` (the `Authorization` value, or the password of Basic auth) is a
    /// credential this page accepts besides the secret; none by default.
    fn admits(&self, _given: &str) -> bool {
        false
    }

    /// Answers `req`, which passed the checks, on `tcp`.
    fn handle(&self, req: Request, tcp: TcpStream) -> impl Future<Output = ()> + Send;
}

/// Who may see a page, and what a refused request is told.
#[derive(Clone, Debug)]
pub(crate) struct Access {
    /// Not on loopback: each request needs the secret or a credential [`Site::admits`].
    pub(crate) auth_required: bool,
    /// On loopback: only Hosts that cannot be a rebound name ([`host_allowed`]).
    pub(crate) check_host: bool,
    /// The secret that lets a request in.
    pub(crate) secret: Option<Secret>,
    /// The 401's text, saying what to send.
    pub(crate) unauthorized_text: &'static str,
    /// The Basic auth realm a browser shows.
    pub(crate) realm: &'static str,
}

impl Access {
    /// Open on loopback (with the Host check), else the secret or a credential is needed.
    pub(crate) fn for_address(
        addr: SocketAddr,
        secret: Option<Secret>,
        unauthorized_text: &'static str,
        realm: &'static str,
    ) -> Self {
        let loopback = addr.ip().is_loopback();
        Self { auth_required: !loopback, check_host: loopback, secret, unauthorized_text, realm }
    }
}

/// Serves `site` on `listener` until `shutdown` fires, at most `max_connections` at
/// once (more get 503 at once). Accept errors never end the loop.
pub(crate) async fn serve<S: Site>(
    listener: TcpListener,
    site: Arc<S>,
    access: Access,
    max_connections: usize,
    name: &'static str,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(max_connections));
    let access = Arc::new(access);
    let tracker = TaskTracker::new();
    while let Some((tcp, _)) = crate::net::accept(&listener, &shutdown, name).await {
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            let _ = tcp.try_write(http1::error_response(503, &format!("Too many {name} connections")).as_bytes());
            continue;
        };
        let (site, access, shutdown) = (site.clone(), access.clone(), shutdown.clone());
        tracker.spawn(async move {
            tokio::select! {
                () = one(tcp, &*site, &access) => {}
                () = shutdown.cancelled() => {}
            }
            drop(permit);
        });
    }
    tracker.close();
    tracker.wait().await;
}

/// Reads one request on `tcp`, checks it, and lets `site` answer it.
async fn one<S: Site>(mut tcp: TcpStream, site: &S, access: &Access) {
    let req = match tokio::time::timeout(REQUEST_TIMEOUT, http1::read_request(&mut tcp, MAX_REQUEST_BYTES)).await {
        Ok(Ok((req, _))) => req,
        Ok(Err(HeadError::TooLarge)) => return reject(tcp, 431, "Request header fields too large").await,
        Ok(Err(HeadError::Malformed(_))) => return reject(tcp, 400, "Malformed request").await,
        Ok(Err(_)) => return,
        Err(_) => return reject(tcp, 408, "Request timeout").await,
    };
    if access.check_host && !host_allowed(header(&req.headers, "Host")) {
        debug!("page request with a Host that may be a rebound name");
        return reject(tcp, 403, HOST_REJECTED_TEXT).await;
    }
    if access.auth_required && !admitted(header(&req.headers, "Authorization"), site, access) {
        debug!("page request without a valid credential");
        let text = access.unauthorized_text;
        let headers = text_headers(text.len() + 1, "text/plain; charset=utf-8")
            .into_iter()
            .chain([("WWW-Authenticate".to_owned(), format!("Basic realm=\"{}\"", access.realm))])
            .collect::<Vec<_>>();
        let head = http1::head("HTTP/1.1 401 Unauthorized", &headers);
        return answer(&mut tcp, format!("{head}{text}\n")).await;
    }
    site.handle(req, tcp).await;
}

/// Whether `host` (the `Host` header) names this machine in a way no web site can take
/// over by DNS: an IP literal, `localhost` or a name under `.localhost` (RFC 6761 keeps
/// those on loopback), with or without a port.
pub(crate) fn host_allowed(host: Option<&str>) -> bool {
    let Some(host) = host.map(str::trim) else { return false };
    let name = match host.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((v6, port)) if port.is_empty() || port.strip_prefix(':').is_some_and(is_port) => {
                return v6.parse::<std::net::Ipv6Addr>().is_ok();
            }
            _ => return false,
        },
        None => match host.rsplit_once(':') {
            Some((name, port)) if is_port(port) => name,
            Some(_) => return false,
            None => host,
        },
    };
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    name.parse::<IpAddr>().is_ok()
        || name == "localhost"
        || name.strip_suffix(".localhost").is_some_and(|n| !n.is_empty() && !n.ends_with('.'))
}

fn is_port(s: &str) -> bool {
    !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `authorization` carries the secret or a credential `site` accepts, as is or
/// as the password of Basic auth (the user name is ignored).
fn admitted<S: Site>(authorization: Option<&str>, site: &S, access: &Access) -> bool {
    let Some(value) = authorization.map(str::trim) else { return false };
    let decoded = value
        .strip_prefix("Basic ")
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .map(|s| s.split_once(':').map_or(s.clone(), |(_, p)| p.to_owned()));
    let given = decoded.as_deref().unwrap_or(value);
    access.secret.as_ref().is_some_and(|s| *s == Secret::new(given)) || site.admits(given)
}

/// Writes `bytes` to a client, giving up after [`WRITE_TIMEOUT`].
pub(crate) async fn write(tcp: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    tokio::time::timeout(WRITE_TIMEOUT, tcp.write_all(bytes)).await.unwrap_or(Err(std::io::ErrorKind::TimedOut.into()))
}

/// Writes a whole answer and closes.
pub(crate) async fn answer(tcp: &mut TcpStream, response: String) {
    let _ = write(tcp, response.as_bytes()).await;
    let _ = tcp.shutdown().await;
}

/// Answers with a status and a plain text, and closes.
pub(crate) async fn reject(mut tcp: TcpStream, status: u16, text: &str) {
    answer(&mut tcp, http1::error_response(status, text)).await;
}

/// Answers 200 with `body` of `kind` (only the head for `HEAD`), and closes.
pub(crate) async fn ok(mut tcp: TcpStream, req: &Request, kind: &str, body: &str) {
    let head = http1::head("HTTP/1.1 200 OK", &text_headers(body.len(), kind));
    answer(&mut tcp, if req.method == "HEAD" { head } else { head + body }).await;
}

/// Starts an event stream on `tcp` for `req`: the head, after which each event is
/// written with [`event`]. `false` when no event is to follow: the client has gone, or
/// it asked with `HEAD` (it got the head and the connection closes).
pub(crate) async fn start_events(tcp: &mut TcpStream, req: &Request) -> bool {
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n\
                X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n";
    if req.method == "HEAD" {
        answer(tcp, head.to_owned()).await;
        return false;
    }
    write(tcp, head.as_bytes()).await.is_ok()
}

/// Writes one event (`id` for the browser's `Last-Event-ID` on reconnect).
pub(crate) async fn event(tcp: &mut TcpStream, id: Option<u64>, data: &str) -> std::io::Result<()> {
    let id = id.map_or_else(String::new, |id| format!("id: {id}\n"));
    write(tcp, format!("{id}data: {data}\n\n").as_bytes()).await
}

/// The headers of a whole answer of `len` bytes of `kind`, which no other site may frame
/// or script.
pub(crate) fn text_headers(len: usize, kind: &str) -> Vec<(String, String)> {
    [
        ("Content-Type", kind),
        ("Content-Length", &len.to_string()),
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
        ("Content-Security-Policy", "default-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'none'"),
        ("Referrer-Policy", "no-referrer"),
        ("Connection", "close"),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_owned(), v.to_owned()))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_that_cannot_be_rebound_pass() {
        for good in [
            "127.0.0.1",
            "127.0.0.1:4040",
            "[::1]:4040",
            "[::1]",
            "localhost",
            "LOCALHOST:80",
            "app.localhost:4040",
            "localhost.",
            "10.0.0.5:1",
        ] {
            assert!(host_allowed(Some(good)), "{good}");
        }
        for bad in [
            "evil.example",
            "evil.example:4040",
            "localhost.evil.example",
            ".localhost",
            "127.0.0.1.nip.io",
            "[::1",
            "[::1]x",
            "localhost:x",
            "",
            "a..localhost",
        ] {
            assert!(!host_allowed(Some(bad)), "{bad}");
        }
        assert!(!host_allowed(None), "no Host at all");
    }
}
