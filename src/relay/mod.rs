//! `hyco serve`: a Hybrid Connections relay (docs/protocol.md 2-7).
//!
//! [`run`] takes a bound listener, settings and a shutdown token. Each connection it
//! [`admission`] admits gets a task that reads its upgrade request within the handshake limits and then becomes a
//! control channel (`listen`, [`control`]), a waiting sender (`connect`) or a listener's
//! answer at a rendezvous address (`accept`, `request`; both in [`rendezvous`]). A
//! failing connection ends its own task, never the accept loop. A plain HTTP request
//! outside `/$hc/` is HTTP mode (docs/protocol.md 7, [`http`]), served to a listener as a
//! `request` message. Hybrid connections, listeners and pending rendezvous belong to the
//! [`registry`]; every no is a [`Rejection`]; what happens is counted in [`Metrics`].
//! With `--cluster`, the [`cluster`] module shares listeners with other nodes through Redis
//! (docs/protocol.md 11); without it nothing of that runs.

mod activity;
mod admission;
pub mod auth;
mod cluster;
pub mod config;
mod control;
pub mod dashboard;
mod forwarded;
mod http;
pub(crate) mod http_transfer;
mod listener;
pub mod metrics;
mod public;
mod registry;
mod rejection;
mod rendezvous;
mod runtime_info;
mod splice;
mod stream;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span};

pub use config::{ClusterSettings, DeclaredPort, HcSettings, Limits, PublicSettings, RelaySettings};
pub use dashboard::{DashboardAccess, serve_dashboard};
pub use metrics::{Metrics, serve_metrics};
pub use public::{DeclaredPorts, bind_declared};
pub use registry::Reloaded;
pub use rejection::Rejection;

use self::admission::{Admission, Handshake};
use self::cluster::Cluster;
use self::metrics::Reason;
use self::registry::Registry;
use self::stream::RelayStream;
use crate::http1::{self, HeadError, Request, header};
use crate::protocol::{self, Action, HcAddress};
use crate::ws::handshake::websocket_key;

/// Refused attempts (401, 403, 404) logged at the default level per minute; the rest are
/// counted, and the count is told with the next one logged.
const REFUSED_LOG_PER_MINUTE: u32 = 20;

static REFUSED_LOG: LogBudget = LogBudget::new(REFUSED_LOG_PER_MINUTE);

/// A budget of log lines per minute (one relay per process, so one budget).
struct LogBudget {
    per_minute: u32,
    /// (start of the current minute, lines logged in it, lines not logged since the last).
    state: std::sync::Mutex<Option<(std::time::Instant, u32, u64)>>,
}

impl LogBudget {
    const fn new(per_minute: u32) -> Self {
        Self { per_minute, state: std::sync::Mutex::new(None) }
    }

    /// `Some(lines not logged before this one)` when this line may be logged, else `None`.
    fn admit(&self, now: std::time::Instant) -> Option<u64> {
        let mut state = self.state.lock().expect("log budget lock");
        let (start, logged, unlogged) = state.get_or_insert((now, 0, 0));
        if now.duration_since(*start) >= std::time::Duration::from_secs(60) {
            (*start, *logged) = (now, 0);
        }
        if *logged >= self.per_minute {
            *unlogged += 1;
            return None;
        }
        *logged += 1;
        Some(std::mem::take(unlogged))
    }
}

/// Shared state of a running relay: its settings and shutdown signals, and the registry
/// that owns everything that changes.
struct Relay {
    limits: Limits,
    registry: Arc<Registry>,
    /// Public ports (docs/protocol.md 10.2).
    ports: public::Ports,
    /// The slots of the connection limit, shared with [`Admission`].
    connections: Arc<tokio::sync::Semaphore>,
    /// Every task that serves a connection, a tunnel or a public port: the drain waits on them.
    tasks: TaskTracker,
    shutdown: CancellationToken,
    /// Fires after the drain period: live tunnels end at once.
    force: CancellationToken,
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// The base of rendezvous addresses when the relay sits behind a proxy
    /// (`external_url`); `None`: as each client reached it.
    external_url: Option<String>,
    /// This node's link to the others of a cluster (docs/protocol.md 11).
    cluster: Option<Arc<Cluster>>,
    metrics: Arc<Metrics>,
}

/// Serves the relay on `listener` until `shutdown` fires; then closes control channels
/// with 1001, lets tunnels drain for `limits.drain_timeout`, and returns.
/// Applies a configuration read again to the relay counting into `metrics` (the one
/// [`run_bound`] runs): the namespace's rules and the configured hybrid connections
/// ([`registry::Registry::reload`]). What only a restart applies is
/// [`config::restart_only`]'s to say. `None` when no relay runs.
pub fn reload(metrics: &Metrics, settings: &RelaySettings) -> Option<Reloaded> {
    let registry = metrics.attached()?.registry.upgrade()?;
    Some(registry.reload(settings))
}

pub async fn run(
    listener: TcpListener,
    settings: RelaySettings,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    run_with_metrics(listener, settings, tls, shutdown, Arc::new(Metrics::new())).await
}

/// [`run`], counting into `metrics` (serve them with [`serve_metrics`]).
pub async fn run_with_metrics(
    listener: TcpListener,
    settings: RelaySettings,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
) -> anyhow::Result<()> {
    let declared = bind_declared(&settings)?;
    run_bound(listener, declared, settings, tls, shutdown, metrics).await
}

/// [`run_with_metrics`] with the operator's public ports bound already ([`bind_declared`]),
/// so that a caller can say it is listening only once every port is.
pub async fn run_bound(
    listener: TcpListener,
    declared: DeclaredPorts,
    settings: RelaySettings,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
) -> anyhow::Result<()> {
    let admission = Admission::new(&settings.limits);
    let relay_ip = listener.local_addr()?.ip();
    let registry = Registry::new(&settings, metrics.clone());
    metrics.attach(metrics::Attached {
        registry: Arc::downgrade(&registry),
        limits: settings.limits.clone(),
        started: std::time::Instant::now(),
    });
    let tasks = TaskTracker::new();
    let cluster = match &settings.cluster {
        None => None,
        Some(c) => {
            let base = node_base(c, settings.external_url.as_deref(), listener.local_addr()?, tls.is_some())?;
            // The longest a sender or an HTTP request waits for a listener's queue.
            let window = settings.limits.accept_window.max(settings.limits.http_response_timeout);
            let (reg, m) = (registry.clone(), metrics.clone());
            Some(Cluster::start(c, base, window, reg, m, shutdown.clone(), &tasks)?)
        }
    };
    let relay = Arc::new(Relay {
        registry,
        ports: public::Ports::new(settings.public.clone(), relay_ip),
        connections: admission.connections(),
        tasks,
        limits: settings.limits,
        shutdown: shutdown.clone(),
        force: CancellationToken::new(),
        tls: tls.map(tokio_rustls::TlsAcceptor::from),
        external_url: settings.external_url.clone(),
        cluster,
        metrics,
    });
    relay.open_declared(declared)?;
    let tracker = relay.tasks.clone();
    while let Some((tcp, peer)) = crate::net::accept(&listener, &shutdown, "relay").await {
        let (permit, handshake) = match admission.admit(peer.ip()) {
            Ok(admitted) => admitted,
            Err(rejection) => {
                relay.metrics.reject(rejection.reason());
                let _ = tcp.try_write(rejection.handshake_response(None).as_bytes());
                debug!(%peer, "rejected: {}", rejection.reason().label());
                continue;
            }
        };
        let relay = relay.clone();
        tracker.spawn(
            async move {
                let metrics = relay.metrics.clone();
                let _open = metrics.connection_opened();
                Relay::serve_connection(&relay, tcp, peer, permit, handshake).await;
            }
            .instrument(info_span!("conn", %peer)),
        );
    }
    drop(listener);
    tracker.close();
    if tokio::time::timeout(relay.limits.drain_timeout, tracker.wait()).await.is_err() {
        info!("drain period over; closing the remaining tunnels");
        relay.force.cancel();
        tracker.wait().await;
    }
    Ok(())
}

/// The base at which listeners on other nodes reach this one: `[cluster] url`, else
/// `external_url`, else the address the relay is bound to (not a wildcard one).
fn node_base(
    cluster: &ClusterSettings,
    external_url: Option<&str>,
    bound: SocketAddr,
    tls: bool,
) -> anyhow::Result<String> {
    if let Some(url) = cluster.url.as_deref().or(external_url) {
        return Ok(url.to_owned());
    }
    if bound.ip().is_unspecified() {
        anyhow::bail!(
            "[cluster] url is needed: the relay is bound to {bound}, which other nodes' listeners cannot reach"
        );
    }
    Ok(format!("{}://{}", if tls { "wss" } else { "ws" }, protocol::authority(&bound.ip().to_string(), bound.port())))
}

impl Relay {
    /// The HC a path names, and the suffix after it: one this node has, else (in a
    /// cluster) one with listeners on another node, which this node then knows too.
    async fn resolve(&self, segments: &[String]) -> Option<(String, String)> {
        if let Some(found) = self.registry.resolve(segments) {
            return Some(found);
        }
        let hc = self.cluster.as_ref()?.resolve(segments).await?;
        self.registry.adopt(&hc);
        self.registry.resolve(segments)
    }

    /// `hc`'s listeners on other nodes of the cluster (none on a single relay).
    async fn remote_listeners(&self, hc: &str) -> Vec<registry::Listener> {
        match &self.cluster {
            Some(cluster) => cluster.listeners(hc).await,
            None => Vec::new(),
        }
    }

    /// Serves one admitted connection; its place in handshake is given back once its
    /// request head is read.
    async fn serve_connection(
        self: &Arc<Self>,
        tcp: TcpStream,
        peer: SocketAddr,
        permit: OwnedSemaphorePermit,
        handshake: Handshake,
    ) {
        let _ = tcp.set_nodelay(true);
        let Some((mut stream, mut req, mut initial)) = self.read_head(tcp).await else { return };
        drop(handshake);
        if http::is_http_mode(&req) {
            // A kept-alive HTTP-mode connection whose next request is an upgrade goes on here.
            let Some(next) = self.serve_http(stream, req, initial, peer).await else { return };
            (stream, req, initial) = next;
        }
        let addr = match HcAddress::parse(&req.target) {
            Ok(a) => a,
            Err(e) => {
                let rejection = match e {
                    protocol::AddressError::NotHc => {
                        Rejection::new(404, Reason::NotFound, "Not a hybrid connection address")
                    }
                    e => Rejection::new(400, Reason::BadRequest, e.to_string()),
                };
                return self.reject(&mut stream, &rejection, Some(&protocol::new_guid())).await;
            }
        };
        // An accept address's id ends in the rendezvous secret: keep that out of logs and texts.
        let tracking_id = match (&addr.id, addr.action) {
            (Some(id), Action::Accept | Action::Request) => registry::split_id(id).0.to_owned(),
            (Some(id), _) => id.clone(),
            (None, _) => protocol::new_guid(),
        };
        if let Err(why) = websocket_key(&req) {
            return self.reject(&mut stream, &Rejection::new(400, Reason::BadRequest, why), Some(&tracking_id)).await;
        }
        // One span per upgrade request, whatever it becomes: a control channel, a waiting
        // sender, a listener's accept (the word "tunnel" is kept for the tunnel itself).
        let span = info_span!("upgrade", action = addr.action.as_str(), hc = tracing::field::Empty, id = %tracking_id);
        let task = async {
            match addr.action {
                Action::Listen => self.listen(stream, req, initial, addr, &tracking_id).await,
                Action::Connect => self.connect(stream, req, initial, addr, peer, &tracking_id).await,
                Action::Accept => self.accept(stream, req, initial, addr, &tracking_id, permit).await,
                Action::Request => self.accept_request(stream, req, initial, addr, &tracking_id, permit).await,
            }
        };
        task.instrument(span).await;
    }

    /// Takes the TLS handshake (if the relay has TLS) and the request head off a new
    /// connection within the handshake limits, rejecting a head that is malformed or too
    /// large. `None` when the connection is done with.
    async fn read_head(&self, tcp: TcpStream) -> Option<(RelayStream, Request, Vec<u8>)> {
        let handshake = async {
            let mut stream = match &self.tls {
                None => RelayStream::Plain(tcp),
                Some(acceptor) => match acceptor.accept(tcp).await {
                    Ok(tls) => RelayStream::Tls(Box::new(tls)),
                    Err(_) => {
                        self.metrics.reject(Reason::Tls);
                        return None;
                    }
                },
            };
            let rejection = match http1::read_request(&mut stream, self.limits.max_header_bytes).await {
                Ok((req, initial)) => return Some(Ok((stream, req, initial))),
                Err(HeadError::TooLarge) => Rejection::new(431, Reason::TooLarge, "Request header fields too large"),
                Err(HeadError::Malformed(_)) => Rejection::new(400, Reason::BadRequest, "Malformed request"),
                Err(_) => return None,
            };
            Some(Err((stream, rejection)))
        };
        let outcome = tokio::select! {
            r = tokio::time::timeout(self.limits.handshake_timeout, handshake) => r,
            () = self.shutdown.cancelled() => return None,
        };
        match outcome {
            Ok(Some(Ok(parts))) => Some(parts),
            Ok(Some(Err((mut stream, rejection)))) => {
                self.reject(&mut stream, &rejection, Some(&protocol::new_guid())).await;
                None
            }
            Ok(None) => None,
            Err(_) => {
                debug!("handshake timed out");
                self.metrics.reject(Reason::Timeout);
                None
            }
        }
    }

    /// Counts a rejection, then answers a handshake with it (with `tracking_id`, as
    /// Azure's answers carry one; without, for a listener's own rejection passed on).
    async fn reject(&self, stream: &mut RelayStream, rejection: &Rejection, tracking_id: Option<&str>) {
        self.metrics.reject(rejection.reason());
        // Refused attempts (bad credentials, rights, names) at the default level, within
        // a budget per minute; the peer is the `conn` span's.
        match matches!(rejection.status(), 401 | 403 | 404).then(|| REFUSED_LOG.admit(std::time::Instant::now())) {
            Some(Some(unlogged)) if unlogged > 0 => {
                info!(
                    status = rejection.status(),
                    "rejected: {} ({unlogged} more not logged before it)",
                    rejection.text()
                )
            }
            Some(Some(_)) => info!(status = rejection.status(), "rejected: {}", rejection.text()),
            _ => debug!(status = rejection.status(), text = rejection.text(), "rejected"),
        }
        let _ = stream.write_all(rejection.handshake_response(tracking_id).as_bytes()).await;
        let _ = stream.shutdown().await;
    }

    /// `ws://host:port` or `wss://…` as a client reached the relay: the base of the
    /// rendezvous addresses a listener is given. The configured `external_url` if there is
    /// one; else how a trusted proxy in front says it was reached (`Forwarded`,
    /// `X-Forwarded-Proto`/`-Host`: a TLS-terminating proxy makes it `wss`); else this
    /// connection's own scheme and `Host`.
    fn public_base(&self, req: &Request, stream: &RelayStream) -> String {
        self.public_base_at(req, stream.tcp().peer_addr().ok(), stream.tcp().local_addr().ok())
    }

    /// [`Relay::public_base`] for a connection with these `peer` and `local` addresses.
    fn public_base_at(&self, req: &Request, peer: Option<SocketAddr>, local: Option<SocketAddr>) -> String {
        if let Some(url) = &self.external_url {
            return url.clone();
        }
        let valid = |h: &str| !h.is_empty() && !h.contains([' ', '/', '?', '#', '@']);
        let trusted = peer.is_some_and(|p| self.limits.trusted_proxies.iter().any(|n| n.contains(p.ip())));
        let (proto, forwarded_host) = if trusted { forwarded::forwarded_origin(&req.headers) } else { (None, None) };
        let scheme = match proto.as_deref() {
            Some("https" | "wss") => "wss",
            Some("http" | "ws") => "ws",
            _ if self.tls.is_some() => "wss",
            _ => "ws",
        };
        let host = forwarded_host
            .map(|h| http1::sanitize(&h))
            .filter(|h| valid(h))
            .or_else(|| header(&req.headers, "Host").map(http1::sanitize).filter(|h| valid(h)))
            .or_else(|| local.map(|a| a.to_string()))
            .unwrap_or_default();
        format!("{scheme}://{host}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_attempts_are_logged_within_a_budget_per_minute() {
        let budget = LogBudget::new(3);
        let t0 = std::time::Instant::now();
        let first: Vec<_> = (0..5).map(|_| budget.admit(t0)).collect();
        assert_eq!(first, [Some(0), Some(0), Some(0), None, None]);
        // A minute on: the next line is logged, and says how many were not.
        let later = t0 + std::time::Duration::from_secs(60);
        assert_eq!(budget.admit(later), Some(2));
        assert_eq!(budget.admit(later), Some(0));
    }
}
