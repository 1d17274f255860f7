//! `hyco serve`: a Hybrid Connections relay (PROTOCOL.md 2-6).
//!
//! [`run`] takes a bound listener, settings and a shutdown token. Each connection gets
//! a task that reads its upgrade request within the handshake limits and then becomes a
//! control channel (`listen`), a waiting sender (`connect`) or a listener's answer to a
//! sender (`accept`). A failing connection ends its own task, never the accept loop.
//! A plain HTTP request outside `/$hc/` is HTTP mode (PROTOCOL.md 7, [`http`]), served to
//! a listener as a `request` message. What happens is counted in [`Metrics`].

pub mod auth;
pub mod config;
mod control;
mod http;
pub mod metrics;
pub mod stream;
pub mod tls;
pub mod tunnel;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span};

pub use config::{HcSettings, Limits, RelaySettings};
pub use metrics::{Metrics, serve_metrics};

use self::auth::Right;
use self::metrics::{Flow, Rejection};
use self::stream::RelayStream;
use crate::encoding::encode_component;
use crate::http1::{self, HeadError, Request, header, reject};
use crate::protocol::{self, Accept, Action, HcAddress, RelayMessage, RemoteEndpoint};
use crate::ws::handshake::{self, websocket_key};

/// How many messages may queue for one control channel before senders try another listener.
const CONTROL_QUEUE: usize = 64;

/// One registered listener: where to send its `accept` messages.
struct ListenerEntry {
    id: u64,
    tx: mpsc::Sender<RelayMessage>,
    /// `ws://host:port` or `wss://…` as the listener reached us, for accept addresses.
    base: String,
}

/// A hybrid connection's live state.
struct Hc {
    settings: HcSettings,
    listeners: Vec<ListenerEntry>,
    pending_senders: usize,
}

/// What a listener answered a sender.
enum Answer {
    /// The listener's connection, with its slot against the connection limit: a tunnel
    /// holds two connections and counts as two.
    Accepted {
        stream: RelayStream,
        initial: Vec<u8>,
        protocol: Option<String>,
        permit: OwnedSemaphorePermit,
    },
    Rejected {
        status: u16,
        text: String,
    },
}

/// Shared state of a running relay.
struct Relay {
    settings: RelaySettings,
    hcs: Mutex<HashMap<String, Hc>>,
    /// Rendezvous waiting for the listener, by the secret in their accept address.
    pending: Mutex<HashMap<String, oneshot::Sender<Answer>>>,
    next_listener_id: std::sync::atomic::AtomicU64,
    shutdown: CancellationToken,
    /// Fires after the drain period: live tunnels end at once.
    force: CancellationToken,
    tls: Option<tokio_rustls::TlsAcceptor>,
    metrics: Arc<Metrics>,
    /// HTTP-mode requests waiting for their listener's answer.
    http: http::HttpWaiters,
}

/// Serves the relay on `listener` until `shutdown` fires; then closes control channels
/// with 1001, lets tunnels drain for `limits.drain_timeout`, and returns.
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
    for hc in &settings.hcs {
        metrics.set_listeners(&hc.name, 0);
    }
    let hcs = settings
        .hcs
        .iter()
        .map(|h| (h.name.clone(), Hc { settings: h.clone(), listeners: Vec::new(), pending_senders: 0 }))
        .collect();
    let connections = Arc::new(Semaphore::new(settings.limits.max_connections));
    let relay = Arc::new(Relay {
        settings,
        hcs: Mutex::new(hcs),
        pending: Mutex::new(HashMap::new()),
        next_listener_id: 0.into(),
        shutdown: shutdown.clone(),
        force: CancellationToken::new(),
        tls: tls.map(tokio_rustls::TlsAcceptor::from),
        metrics,
        http: http::HttpWaiters::default(),
    });
    let tracker = TaskTracker::new();
    while let Some((tcp, peer)) = crate::net::accept(&listener, &shutdown, "relay").await {
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            relay.metrics.reject(Rejection::ConnectionLimit);
            let _ = tcp.try_write(http1::error_response(503, "Relay at its connection limit").as_bytes());
            debug!(%peer, "refused: connection limit");
            continue;
        };
        let relay = relay.clone();
        tracker.spawn(
            async move {
                let metrics = relay.metrics.clone();
                let _open = metrics.connection_opened();
                relay.serve_connection(tcp, peer, permit).await;
            }
            .instrument(info_span!("conn", %peer)),
        );
    }
    drop(listener);
    tracker.close();
    if tokio::time::timeout(relay.settings.limits.drain_timeout, tracker.wait()).await.is_err() {
        info!("drain period over; closing the remaining tunnels");
        relay.force.cancel();
        tracker.wait().await;
    }
    Ok(())
}

/// Writes an error answer carrying a tracking id, as Azure does.
async fn deny(stream: &mut RelayStream, status: u16, text: &str, tracking_id: &str) {
    debug!(status, text, "refused");
    reject(stream, status, &protocol::status_text(text, tracking_id)).await;
}

impl Relay {
    async fn serve_connection(self: Arc<Self>, tcp: TcpStream, peer: SocketAddr, permit: OwnedSemaphorePermit) {
        let _ = tcp.set_nodelay(true);
        let limits = &self.settings.limits;
        let handshake = async {
            let mut stream = match &self.tls {
                None => RelayStream::Plain(tcp),
                Some(acceptor) => match acceptor.accept(tcp).await {
                    Ok(tls) => RelayStream::Tls(Box::new(tls)),
                    Err(_) => {
                        self.metrics.reject(Rejection::Tls);
                        return None;
                    }
                },
            };
            match http1::read_request(&mut stream, limits.max_header_bytes).await {
                Ok((req, initial)) => Some(Ok((stream, req, initial))),
                Err(HeadError::TooLarge) => {
                    Some(Err((stream, Rejection::TooLarge, 431, "Request header fields too large")))
                }
                Err(HeadError::Malformed(_)) => Some(Err((stream, Rejection::BadRequest, 400, "Malformed request"))),
                Err(_) => None,
            }
        };
        let outcome = tokio::select! {
            r = tokio::time::timeout(limits.handshake_timeout, handshake) => r,
            () = self.shutdown.cancelled() => return,
        };
        let (mut stream, req, initial) = match outcome {
            Ok(Some(Ok(parts))) => parts,
            Ok(Some(Err((mut stream, why, status, text)))) => {
                self.refuse(&mut stream, why, status, text, &protocol::new_guid()).await;
                return;
            }
            Ok(None) => return,
            Err(_) => {
                debug!("handshake timed out");
                self.metrics.reject(Rejection::Timeout);
                return;
            }
        };
        if http::is_http_mode(&req) {
            return self.serve_http(stream, req, initial, peer).await;
        }
        let addr = match HcAddress::parse(&req.target) {
            Ok(a) => a,
            Err(protocol::AddressError::NotHc) => {
                let text = "Not a hybrid connection address";
                return self.refuse(&mut stream, Rejection::NotFound, 404, text, &protocol::new_guid()).await;
            }
            Err(e) => {
                return self
                    .refuse(&mut stream, Rejection::BadRequest, 400, &e.to_string(), &protocol::new_guid())
                    .await;
            }
        };
        // An accept address's id ends in the rendezvous secret: keep that out of logs and texts.
        let tracking_id = match (&addr.id, addr.action) {
            (Some(id), Action::Accept | Action::Request) => {
                id.rsplit_once('_').map_or(id.as_str(), |(t, _)| t).to_owned()
            }
            (Some(id), _) => id.clone(),
            (None, _) => protocol::new_guid(),
        };
        if let Err(why) = websocket_key(&req) {
            return self.refuse(&mut stream, Rejection::BadRequest, 400, why, &tracking_id).await;
        }
        let span = info_span!("tunnel", action = addr.action.as_str(), hc = tracing::field::Empty, id = %tracking_id);
        let task = async {
            match addr.action {
                Action::Listen => self.listen(stream, req, initial, addr, tracking_id).await,
                Action::Connect => self.connect(stream, req, initial, addr, peer, tracking_id).await,
                Action::Accept => self.accept(stream, req, initial, addr, tracking_id, permit).await,
                Action::Request => self.request_rendezvous(stream, req, addr, initial, &tracking_id, permit).await,
            }
        };
        task.instrument(span).await;
    }

    /// Counts a refused handshake, then refuses it.
    async fn refuse(&self, stream: &mut RelayStream, why: Rejection, status: u16, text: &str, tracking_id: &str) {
        self.metrics.reject(why);
        deny(stream, status, text, tracking_id).await;
    }

    /// The HC a path names, longest registered name first, and the suffix after it.
    fn resolve(&self, segments: &[String]) -> Option<(String, String)> {
        let hcs = self.hcs.lock().expect("hcs lock");
        (1..=segments.len()).rev().find_map(|n| {
            let name = segments[..n].join("/");
            hcs.contains_key(&name).then(|| (name, segments[n..].join("/")))
        })
    }

    fn hc_rules(&self, hc: &str) -> Vec<auth::Rule> {
        self.hcs.lock().expect("hcs lock").get(hc).map(|h| h.settings.rules.clone()).unwrap_or_default()
    }

    fn authorize(&self, hc: &str, req: &Request, addr: &HcAddress, need: Right) -> Result<u64, auth::Denied> {
        let hc_rules = self.hc_rules(hc);
        let token = auth::token_of(header(&req.headers, protocol::TOKEN_HEADER), addr.token.as_deref())
            .ok_or(auth::Denied { status: 401, text: "Missing token" })?;
        // The audience must cover the requested resource, a sender's path suffix included
        // (PROTOCOL.md 3; hyco-ws signs the whole path); the rules are the HC's.
        auth::check(
            token,
            &addr.segments.join("/"),
            need,
            &hc_rules,
            &self.settings.rules,
            protocol::unix_now(),
            protocol::CLOCK_SKEW.as_secs(),
        )
    }

    fn public_base(&self, req: &Request, stream: &RelayStream) -> String {
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        let host = header(&req.headers, "Host")
            .map(http1::sanitize)
            .filter(|h| !h.is_empty() && !h.contains([' ', '/', '?', '#', '@']))
            .or_else(|| stream.tcp().local_addr().ok().map(|a| a.to_string()))
            .unwrap_or_default();
        format!("{scheme}://{host}")
    }

    async fn listen(
        self: &Arc<Self>,
        mut stream: RelayStream,
        req: Request,
        initial: Vec<u8>,
        addr: HcAddress,
        tracking_id: String,
    ) {
        let name = addr.segments.join("/");
        tracing::Span::current().record("hc", name.as_str());
        let expiry = match self.authorize(&name, &req, &addr, Right::Listen) {
            Ok(e) => e,
            Err(d) => {
                return self.refuse(&mut stream, Rejection::of_auth(d.status), d.status, d.text, &tracking_id).await;
            }
        };
        let (tx, rx) = mpsc::channel(CONTROL_QUEUE);
        let id = self.next_listener_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let base = self.public_base(&req, &stream);
        let refused = {
            let mut hcs = self.hcs.lock().expect("hcs lock");
            if !hcs.contains_key(&name) && self.settings.auto_create {
                info!(hc = %name, "created on first listen");
                let settings =
                    HcSettings { name: name.clone(), requires_client_authorization: true, rules: Vec::new() };
                hcs.insert(name.clone(), Hc { settings, listeners: Vec::new(), pending_senders: 0 });
            }
            let max = self.settings.limits.max_listeners_per_hc;
            match hcs.get_mut(&name) {
                None => Some((Rejection::NotFound, 404, "Endpoint does not exist".to_owned())),
                Some(hc) if hc.listeners.len() >= max => Some((
                    Rejection::ListenerLimit,
                    403,
                    format!("Listener limit of {max} reached for this hybrid connection"),
                )),
                Some(hc) => {
                    hc.listeners.push(ListenerEntry { id, tx, base });
                    self.metrics.set_listeners(&name, hc.listeners.len());
                    None
                }
            }
        };
        if let Some((why, status, text)) = refused {
            return self.refuse(&mut stream, why, status, &text, &tracking_id).await;
        }
        let _registration = Registration { relay: self.clone(), hc: name.clone(), id };
        let key = websocket_key(&req).unwrap_or_default();
        if stream.write_all(handshake::switching_protocols(key, None).as_bytes()).await.is_err() {
            return;
        }
        info!(hc = %name, "listener connected");
        control::run(self.clone(), stream, initial, name, id, rx, expiry).await;
        info!("listener gone");
    }

    async fn connect(
        self: &Arc<Self>,
        mut stream: RelayStream,
        req: Request,
        initial: Vec<u8>,
        addr: HcAddress,
        peer: SocketAddr,
        tracking_id: String,
    ) {
        // The rendezvous time counts from here, right after the upgrade request was read.
        let started = tokio::time::Instant::now();
        let Some((name, suffix)) = self.resolve(&addr.segments) else {
            return self.refuse(&mut stream, Rejection::NotFound, 404, "Endpoint does not exist", &tracking_id).await;
        };
        tracing::Span::current().record("hc", name.as_str());
        let needs_token =
            self.hcs.lock().expect("hcs lock").get(&name).is_none_or(|h| h.settings.requires_client_authorization);
        if needs_token && let Err(d) = self.authorize(&name, &req, &addr, Right::Send) {
            return self.refuse(&mut stream, Rejection::of_auth(d.status), d.status, d.text, &tracking_id).await;
        }
        let secret: String = rand::random::<[u8; 16]>().iter().map(|b| format!("{b:02x}")).collect();
        let (tx, rx) = oneshot::channel();
        let headers = req.headers.iter().filter(|(n, _)| !n.eq_ignore_ascii_case(protocol::TOKEN_HEADER)).fold(
            std::collections::BTreeMap::<String, String>::new(),
            |mut m, (n, v)| {
                m.entry(n.clone()).and_modify(|old| *old = format!("{old}, {v}")).or_insert_with(|| v.clone());
                m
            },
        );
        let deadline = tokio::time::Instant::now() + self.settings.limits.accept_window;
        // Reserve a waiting slot and register the rendezvous before any listener hears of it.
        let reserved = {
            let mut hcs = self.hcs.lock().expect("hcs lock");
            let hc = hcs.get_mut(&name).expect("resolved above");
            if hc.pending_senders >= self.settings.limits.max_pending_senders_per_hc {
                Err((Rejection::PendingLimit, 503, "Too many senders waiting on this hybrid connection"))
            } else if hc.listeners.is_empty() {
                Err((Rejection::NoListener, 404, "No listener is online for this hybrid connection"))
            } else {
                hc.pending_senders += 1;
                self.pending.lock().expect("pending lock").insert(secret.clone(), tx);
                let guard = PendingGuard { relay: self.clone(), hc: name.clone(), secret: secret.clone() };
                let mut candidates: Vec<(u64, String, mpsc::Sender<RelayMessage>)> =
                    hc.listeners.iter().map(|l| (l.id, l.base.clone(), l.tx.clone())).collect();
                rand::seq::SliceRandom::shuffle(&mut candidates[..], &mut rand::rng());
                Ok((candidates, guard))
            }
        };
        let (candidates, pending) = match reserved {
            Ok(r) => r,
            Err((why, status, text)) => return self.refuse(&mut stream, why, status, text, &tracking_id).await,
        };
        let accept_for = |base: &str| {
            let mut address = format!("{base}/$hc/{}", encode_path(&name));
            if !suffix.is_empty() {
                address.push('/');
                address.push_str(&encode_path(&suffix));
            }
            address.push('?');
            for q in &addr.app_query {
                address.push_str(q);
                address.push('&');
            }
            address.push_str(&format!(
                "{}=accept&{}={}",
                protocol::PARAM_ACTION,
                protocol::PARAM_ID,
                encode_component(&format!("{tracking_id}_{secret}"))
            ));
            RelayMessage::Accept(Accept {
                address,
                id: tracking_id.clone(),
                connect_headers: headers.clone(),
                remote_endpoint: Some(RemoteEndpoint { address: peer.ip().to_string(), port: peer.port() }),
            })
        };
        // An accept a listener cannot take would only knock it off its control channel (or
        // leave the sender to time out): the path suffix and id grow up to threefold in the
        // address, header values up to twofold in JSON, so a head within the limit can make one.
        let max_head = self.settings.limits.max_header_bytes;
        let mut bases: Vec<&str> = candidates.iter().map(|(_, base, _)| base.as_str()).collect();
        bases.sort_unstable();
        bases.dedup();
        if bases.iter().any(|base| !accept_fits(&accept_for(base), max_head)) {
            drop(pending);
            let text = "The accept message for this request would be too large for a listener";
            return self.refuse(&mut stream, Rejection::TooLarge, 431, text, &tracking_id).await;
        }
        // The first listener (in random order) with room in its queue gets the accept; if
        // every queue is full (a burst), wait for room at one of them within the window.
        let mut sent = candidates.iter().any(|(id, base, tx)| {
            let ok = tx.try_send(accept_for(base)).is_ok();
            if ok {
                debug!(listener = id, "accept sent");
            }
            ok
        });
        if !sent && let Some((id, base, tx)) = candidates.iter().find(|(_, _, tx)| !tx.is_closed()) {
            tokio::select! {
                r = tx.send(accept_for(base)) => {
                    sent = r.is_ok();
                    debug!(listener = id, "accept sent after a wait");
                }
                () = tokio::time::sleep_until(deadline) => {
                    drop(pending);
                    let text = "Every listener was too busy to take the connection";
                    return self.refuse(&mut stream, Rejection::AcceptTimeout, 504, text, &tracking_id).await;
                }
                () = self.shutdown.cancelled() => {
                    drop(pending);
                    return self.refuse(&mut stream, Rejection::ShuttingDown, 503, "Relay shutting down", &tracking_id).await;
                }
            }
        }
        if !sent {
            drop(pending);
            let text = "No listener is online for this hybrid connection";
            return self.refuse(&mut stream, Rejection::NoListener, 404, text, &tracking_id).await;
        }
        let answer = tokio::select! {
            a = rx => a.ok(),
            () = tokio::time::sleep_until(deadline) => {
                // Retire the accept address before answering, so that it is dead by the
                // time the sender hears 504.
                drop(pending);
                let window = self.settings.limits.accept_window.as_secs_f64();
                let text = format!("The listener did not answer within {window} s");
                return self.refuse(&mut stream, Rejection::AcceptTimeout, 504, &text, &tracking_id).await;
            }
            () = self.shutdown.cancelled() => {
                drop(pending);
                return self.refuse(&mut stream, Rejection::ShuttingDown, 503, "Relay shutting down", &tracking_id).await;
            }
        };
        drop(pending);
        match answer {
            Some(Answer::Accepted {
                stream: listener,
                initial: listener_initial,
                protocol,
                permit: _listener_slot,
            }) => {
                // Counted before the sender's 101, so that a sender who has it sees the count.
                self.metrics.observe_rendezvous(started.elapsed());
                let _tunnel = self.metrics.tunnel_opened();
                let offered = header(&req.headers, "Sec-WebSocket-Protocol").unwrap_or_default();
                let protocol = protocol.filter(|p| offered.split(',').any(|o| o.trim() == p));
                let key = websocket_key(&req).unwrap_or_default();
                if stream.write_all(handshake::switching_protocols(key, protocol.as_deref()).as_bytes()).await.is_err()
                {
                    return;
                }
                // Per tunnel at debug: a busy relay (or a connector's prewarmed tunnels,
                // replaced every minute) would drown the log; the metrics count them.
                debug!(hc = %name, "tunnel open");
                // A tunnel may live for days: let go of what only the handshake needed.
                drop((req, addr, headers, candidates));
                let relayed = [Flow::SenderToListener, Flow::ListenerToSender].map(|f| self.metrics.relayed_counter(f));
                tunnel::join(
                    stream,
                    &initial,
                    listener,
                    &listener_initial,
                    self.force.clone(),
                    relayed,
                    self.settings.limits.tunnel_idle_timeout,
                )
                .await;
                debug!("tunnel closed");
            }
            Some(Answer::Rejected { status, text }) => {
                debug!(status, "listener rejected");
                self.metrics.reject(Rejection::ListenerRejected);
                reject(&mut stream, status, &text).await;
            }
            None => self.refuse(&mut stream, Rejection::Internal, 500, "Rendezvous failed", &tracking_id).await,
        }
    }

    async fn accept(
        self: &Arc<Self>,
        mut stream: RelayStream,
        req: Request,
        initial: Vec<u8>,
        addr: HcAddress,
        tracking_id: String,
        permit: OwnedSemaphorePermit,
    ) {
        let secret =
            addr.id.as_deref().and_then(|id| id.rsplit_once('_')).map(|(_, s)| s.to_owned()).unwrap_or_default();
        let waiting = self.pending.lock().expect("pending lock").remove(&secret);
        let Some(sender) = waiting else {
            let text = "Rendezvous address unknown, used or expired";
            return self.refuse(&mut stream, Rejection::BadAcceptAddress, 403, text, &tracking_id).await;
        };
        if let Some(status) = addr.status_code {
            // Only an error status makes sense to a sender waiting for its upgrade.
            let status = if (400..=599).contains(&status) { status } else { 502 };
            let text = addr.status_description.unwrap_or_else(|| "Rejected by the listener".into());
            let _ = sender.send(Answer::Rejected { status, text });
            return deny(&mut stream, 410, "Rejection delivered", &tracking_id).await;
        }
        let protocol = header(&req.headers, "Sec-WebSocket-Protocol")
            .and_then(|p| p.split(',').next())
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty());
        let key = websocket_key(&req).unwrap_or_default();
        if stream.write_all(handshake::switching_protocols(key, protocol.as_deref()).as_bytes()).await.is_err() {
            let _ = sender.send(Answer::Rejected { status: 502, text: "The listener's connection failed".into() });
            return;
        }
        let _ = sender.send(Answer::Accepted { stream, initial, protocol, permit });
    }
}

/// Room a listener's accept request needs besides the accept address: the request line's
/// rest, `Host` and the upgrade headers.
const ACCEPT_HEAD_ROOM: usize = 1024;

/// Whether a listener can take `accept`: a control message within the official clients'
/// 64 KiB, whose address fits in a request head of `max_head` bytes on its way back here.
fn accept_fits(accept: &RelayMessage, max_head: usize) -> bool {
    let address = match accept {
        RelayMessage::Accept(a) => a.address.as_str(),
        RelayMessage::Request(r) => r.address.as_deref().unwrap_or_default(),
    };
    address.len() + ACCEPT_HEAD_ROOM <= max_head
        && serde_json::to_string(accept).is_ok_and(|json| json.len() <= protocol::MAX_CONTROL_MESSAGE)
}

/// Encodes a `/`-separated path segment by segment.
fn encode_path(path: &str) -> String {
    path.split('/').map(encode_component).collect::<Vec<_>>().join("/")
}

/// Removes a listener from its HC when its control channel ends.
struct Registration {
    relay: Arc<Relay>,
    hc: String,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(hc) = self.relay.hcs.lock().expect("hcs lock").get_mut(&self.hc) {
            hc.listeners.retain(|l| l.id != self.id);
            self.relay.metrics.set_listeners(&self.hc, hc.listeners.len());
        }
    }
}

/// Forgets a waiting sender's rendezvous, whatever ended the wait.
struct PendingGuard {
    relay: Arc<Relay>,
    hc: String,
    secret: String,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.relay.pending.lock().expect("pending lock").remove(&self.secret);
        if let Some(hc) = self.relay.hcs.lock().expect("hcs lock").get_mut(&self.hc) {
            hc.pending_senders -= 1;
        }
    }
}
