//! The WebSocket rendezvous (docs/protocol.md 5.2-5.4, 6): a sender's upgrade request
//! waits while one of the HC's listeners gets an `accept`; the listener accepts at the
//! address (the relay splices the two WebSockets) or rejects there (the sender gets the
//! listener's status). Also the listener's side of an HTTP request's rendezvous
//! (`sb-hc-action=request`, docs/protocol.md 7), whose exchange is HTTP mode's.
//!
//! The pending rendezvous themselves belong to the [`super::registry`]; this module only
//! speaks to the sockets.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use tokio::io::AsyncWriteExt;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, sleep_until};
use tracing::debug;

use super::cluster::Delivery;
use super::metrics::Reason;
use super::registry::{self, Answer, Kind, Listener, Unavailable};
use super::stream::RelayStream;
use super::{Rejection, Relay, auth, splice};
use crate::http1::{self, Request, header};
use crate::protocol::{self, Accept, HcAddress, RelayMessage, RemoteEndpoint};
use crate::public::HEADER_VISITOR;
use crate::ws::handshake::{self, websocket_key};

/// Room a listener's accept request needs besides the accept address: the request line's
/// rest, `Host` and the upgrade headers.
const ACCEPT_HEAD_ROOM: usize = 1024;

impl Relay {
    /// A sender's upgrade request: a rendezvous with a listener, then the splice.
    pub(super) async fn connect(
        &self,
        mut stream: RelayStream,
        req: Request,
        initial: Vec<u8>,
        addr: HcAddress,
        peer: SocketAddr,
        tracking_id: &str,
    ) {
        // The rendezvous time counts from here, right after the upgrade request was read.
        let started = Instant::now();
        let rejection = match self.meet_listener(&req, &addr, peer, tracking_id).await {
            Ok(Answer::Accepted { stream: listener, initial: listener_initial, protocol, permit: _listener_slot }) => {
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
                debug!("tunnel open");
                // Listed on the status page with its HC, and its bytes counted on its own.
                let hc = self.registry.resolve(&addr.segments).map(|(hc, _)| hc).unwrap_or_default();
                let live = self.metrics.live_tunnel(&hc, None);
                // A tunnel may live for days: let go of what only the handshake needed.
                drop((req, addr, hc));
                let relayed = live.counters();
                let idle = self.limits.tunnel_idle_timeout;
                splice::join(stream, &initial, listener, &listener_initial, self.force.clone(), relayed, idle).await;
                debug!("tunnel closed");
                return;
            }
            Ok(Answer::Rejected(rejection)) => {
                debug!(status = rejection.status(), "listener rejected");
                return self.reject(&mut stream, &rejection, None).await;
            }
            // Never: a sender's rendezvous is answered at its address, not on a control channel.
            Ok(Answer::Response { .. }) => Rejection::new(500, Reason::Internal, "Rendezvous failed"),
            Err(rejection) => rejection,
        };
        self.reject(&mut stream, &rejection, Some(tracking_id)).await;
    }

    /// Resolves the sender's HC, checks its token, and meets a listener ([`Self::rendezvous`]).
    async fn meet_listener(
        &self,
        req: &Request,
        addr: &HcAddress,
        peer: SocketAddr,
        tracking_id: &str,
    ) -> Result<Answer, Rejection> {
        let Some((hc, suffix)) = self.resolve(&addr.segments).await else {
            return Err(Rejection::new(404, Reason::NotFound, "Endpoint does not exist"));
        };
        tracing::Span::current().record("hc", hc.as_str());
        let token = auth::token_of(header(&req.headers, protocol::TOKEN_HEADER), addr.token.as_deref());
        self.registry.authorize_sender(&hc, &addr.segments.join("/"), token)?;
        let sender = Sender { headers: connect_headers(req), peer, app_query: &addr.app_query, tracking_id };
        self.rendezvous(&hc, &suffix, sender).await
    }

    /// Reserves a rendezvous on `hc` for `sender` (who reaches `suffix` below it), offers
    /// it to a listener and waits for the answer within the accept window. The
    /// reservation ends on return, so that its address is dead by the time the sender
    /// hears a 504. Also how a public port's visitor meets a listener (docs/protocol.md 10.2).
    pub(super) async fn rendezvous(&self, hc: &str, suffix: &str, sender: Sender<'_>) -> Result<Answer, Rejection> {
        let deadline = Instant::now() + self.limits.accept_window;
        let remote = self.remote_listeners(hc).await;
        let mut reservation = self.registry.reserve_with(hc, Kind::Sender, remote).map_err(|why| match why {
            Unavailable::PendingLimit => {
                Rejection::new(503, Reason::PendingLimit, "Too many senders waiting on this hybrid connection")
            }
            Unavailable::NoListener => no_listener(),
            Unavailable::NotFound => Rejection::new(404, Reason::NotFound, "Endpoint does not exist"),
        })?;
        let Sender { headers, peer, app_query, tracking_id } = sender;
        let remote = RemoteEndpoint { address: peer.ip().to_string(), port: peer.port() };
        let accept_for = |base: &str| {
            RelayMessage::Accept(Accept {
                address: reservation.address(base, suffix, app_query, tracking_id),
                id: tracking_id.to_owned(),
                connect_headers: headers.clone(),
                remote_endpoint: Some(remote.clone()),
            })
        };
        // An accept a listener cannot take would only knock it off its control channel (or
        // leave the sender to time out): the path suffix and id grow up to threefold in the
        // address, header values up to twofold in JSON, so a head within the limit can make one.
        let mut bases: Vec<&str> = reservation.listeners().iter().map(Listener::base).collect();
        bases.sort_unstable();
        bases.dedup();
        if bases.iter().any(|base| !accept_fits(&accept_for(base), self.limits.max_header_bytes)) {
            let text = "The accept message for this request would be too large for a listener";
            return Err(Rejection::new(431, Reason::TooLarge, text));
        }
        self.offer(reservation.listeners(), accept_for, deadline).await?;
        let answer = tokio::select! {
            a = reservation.answer() => a,
            () = sleep_until(deadline) => {
                let window = self.limits.accept_window.as_secs_f64();
                let text = format!("The listener did not answer within {window} s");
                return Err(Rejection::new(504, Reason::AcceptTimeout, text));
            }
            () = self.shutdown.cancelled() => return Err(Rejection::shutting_down()),
        };
        answer.ok_or_else(|| Rejection::new(500, Reason::Internal, "Rendezvous failed"))
    }

    /// Gives an accept to the first listener (in random order) with room in its queue,
    /// here or on another node; if every queue is full (a burst), waits for room at one of
    /// them until `deadline`. With none left (gone, or their node is), 404.
    async fn offer(
        &self,
        listeners: &[Listener],
        accept_for: impl Fn(&str) -> RelayMessage,
        deadline: Instant,
    ) -> Result<(), Rejection> {
        let mut busy = None;
        for listener in listeners {
            match listener.deliver(accept_for(listener.base()), None).await {
                Delivery::Delivered => {
                    debug!(listener = listener.id(), local = listener.is_local(), "accept sent");
                    return Ok(());
                }
                Delivery::Busy => busy = busy.or(Some(listener)),
                Delivery::Gone => {}
            }
        }
        let Some(listener) = busy else { return Err(no_listener()) };
        tokio::select! {
            sent = listener.deliver(accept_for(listener.base()), Some(deadline)) => match sent {
                Delivery::Delivered => {
                    debug!(listener = listener.id(), "accept sent after a wait");
                    Ok(())
                }
                Delivery::Busy => Err(too_busy()),
                Delivery::Gone => Err(no_listener()),
            },
            () = self.shutdown.cancelled() => Err(Rejection::shutting_down()),
        }
    }

    /// A listener at a sender's accept address: accepts (the relay answers 101 and hands
    /// the connection to the waiting sender) or, with a status, rejects the sender.
    pub(super) async fn accept(
        &self,
        mut stream: RelayStream,
        req: Request,
        initial: Vec<u8>,
        addr: HcAddress,
        tracking_id: &str,
        permit: OwnedSemaphorePermit,
    ) {
        let secret = addr.id.as_deref().and_then(|id| registry::split_id(id).1).unwrap_or_default();
        let Some(claim) = self.registry.claim(Kind::Sender, secret) else {
            return self.reject(&mut stream, &unknown_address(), Some(tracking_id)).await;
        };
        if let Some(status) = addr.status_code {
            // Only an error status makes sense to a sender waiting for its upgrade.
            let status = if (400..=599).contains(&status) { status } else { 502 };
            let text = addr.status_description.unwrap_or_else(|| "Rejected by the listener".into());
            claim.answer(Answer::Rejected(Rejection::new(status, Reason::ListenerRejected, text)));
            // The listener's answer, not a rejection of it: not counted.
            let text = protocol::status_text("Rejection delivered", tracking_id);
            return http1::reject(&mut stream, 410, &text).await;
        }
        let protocol = header(&req.headers, "Sec-WebSocket-Protocol")
            .and_then(|p| p.split(',').next())
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty());
        let key = websocket_key(&req).unwrap_or_default();
        if stream.write_all(handshake::switching_protocols(key, protocol.as_deref()).as_bytes()).await.is_err() {
            let text = "The listener's connection failed";
            claim.answer(Answer::Rejected(Rejection::new(502, Reason::ListenerRejected, text)));
            return;
        }
        claim.answer(Answer::Accepted { stream, initial, protocol, permit });
    }

    /// A listener at an HTTP request's rendezvous address: the relay answers 101 and hands
    /// the connection to the waiting request, which exchanges the request and the response
    /// over it.
    pub(super) async fn accept_request(
        &self,
        mut stream: RelayStream,
        req: Request,
        initial: Vec<u8>,
        addr: HcAddress,
        tracking_id: &str,
        permit: OwnedSemaphorePermit,
    ) {
        let Some(secret) = addr.id.as_deref().and_then(|id| registry::split_id(id).1) else {
            let text = "A request rendezvous needs the sb-hc-id the relay gave";
            return self.reject(&mut stream, &Rejection::new(400, Reason::BadRequest, text), Some(tracking_id)).await;
        };
        let Some(claim) = self.registry.claim(Kind::Request, secret) else {
            return self.reject(&mut stream, &unknown_address(), Some(tracking_id)).await;
        };
        let key = websocket_key(&req).unwrap_or_default();
        // On failure the claim drops unanswered: the request hears that the rendezvous failed.
        if stream.write_all(handshake::switching_protocols(key, None).as_bytes()).await.is_ok() {
            claim.answer(Answer::Accepted { stream, initial, protocol: None, permit });
        }
    }
}

/// Who waits at a rendezvous, as the listener's accept describes them.
pub(super) struct Sender<'a> {
    /// The accept's `connectHeaders`.
    pub(super) headers: BTreeMap<String, String>,
    /// The accept's `remoteEndpoint`.
    pub(super) peer: SocketAddr,
    /// Query parameters passed on in the accept address, still encoded.
    pub(super) app_query: &'a [String],
    pub(super) tracking_id: &'a str,
}

fn no_listener() -> Rejection {
    Rejection::new(404, Reason::NoListener, "No listener is online for this hybrid connection")
}

fn too_busy() -> Rejection {
    Rejection::new(504, Reason::AcceptTimeout, "Every listener was too busy to take the connection")
}

fn unknown_address() -> Rejection {
    Rejection::new(403, Reason::BadAcceptAddress, "Rendezvous address unknown, used or expired")
}

/// The sender's headers as an accept carries them: all but its token and `Hyco-Public`
/// (which only the relay sets, for a public port's visitor: docs/protocol.md 10.2),
/// repeated names joined with `, `.
fn connect_headers(req: &Request) -> BTreeMap<String, String> {
    let mut headers = BTreeMap::<String, String>::new();
    let kept = |n: &str| !n.eq_ignore_ascii_case(protocol::TOKEN_HEADER) && !n.eq_ignore_ascii_case(HEADER_VISITOR);
    for (n, v) in req.headers.iter().filter(|(n, _)| kept(n)) {
        headers.entry(n.clone()).and_modify(|old| *old = format!("{old}, {v}")).or_insert_with(|| v.clone());
    }
    headers
}

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
