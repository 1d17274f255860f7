//! A listener's control channel on the relay side (docs/protocol.md 5.1-5.6): the
//! `listen` handshake registers the listener on its HC; then the channel delivers
//! `accept` and `request` messages, takes `renewToken` and HTTP-mode `response`s, pings
//! when idle, and closes with 1008 when the token runs out (past the grace period), 1001
//! at shutdown, 1003 on a message it cannot understand, 1002 on a framing error, 1007 on
//! text that is not UTF-8, 1009 on a message over the limit. A listener that stops
//! reading is dropped once a message has waited a ping interval.

use std::ops::ControlFlow::{self, Break, Continue};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Bytes, Error as WsError, Message};
use tracing::{debug, info};

use super::registry::{Answer, Claim, Registration};
use super::stream::RelayStream;
use super::{Relay, auth};
use crate::http1::{Request, header};
use crate::protocol::{self, HcAddress, HttpResponse, ListenerMessage, RelayMessage, close};
use crate::public;
use crate::ws::handshake::{self, websocket_key};

/// Read buffer of a control channel; messages are small and rare.
const READ_BUFFER: usize = 4096;

/// Further ahead than any deadline needs to be: a key holder may sign any `se`, up to
/// `u64::MAX`, which no clock can count to.
const FAR_FUTURE: Duration = Duration::from_secs(30 * 365 * 86_400);

/// The instant `expiry` (Unix seconds) plus `grace` falls on (at most [`FAR_FUTURE`]).
fn deadline(expiry: u64, grace: Duration) -> Instant {
    let left = Duration::from_secs(expiry.saturating_sub(protocol::unix_now())).saturating_add(grace);
    Instant::now() + left.min(FAR_FUTURE)
}

/// How a control channel ends: with a Close to send (code and text), or without.
type End = Option<(u16, String)>;

/// Bound on saying goodbye: a peer that never reads must not hold the task, nor the
/// relay's shutdown past its drain period.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

impl Relay {
    /// A listener's upgrade request: checks its token (Listen), registers it on its HC,
    /// answers 101 and runs the control channel until it ends.
    pub(super) async fn listen(
        self: &Arc<Self>,
        mut stream: RelayStream,
        req: Request,
        initial: Vec<u8>,
        addr: HcAddress,
        tracking_id: &str,
    ) {
        // The HC's own spelling if it exists (names compare without case): its public
        // ports are leased under one name.
        let asked = addr.segments.join("/");
        let hc = self.registry.spelling(&asked).unwrap_or(asked);
        tracing::Span::current().record("hc", hc.as_str());
        let token = auth::token_of(header(&req.headers, protocol::TOKEN_HEADER), addr.token.as_deref());
        let base = self.public_base(&req, &stream);
        // Public ports first (docs/protocol.md 10.2): a refusal leaves the HC as it was.
        let leases = match self.public_leases(&hc, token, &addr.app_query) {
            Ok(leases) => leases,
            Err(rejection) => return self.reject(&mut stream, &rejection, Some(tracking_id)).await,
        };
        let host = self.public_host(&base);
        let peer = stream.tcp().peer_addr().ok();
        let (expiry, registration) = match self.registry.register_listener(&hc, token, base, peer) {
            Ok(r) => r,
            Err(rejection) => return self.reject(&mut stream, &rejection, Some(tracking_id)).await,
        };
        // In a cluster the limit counts the HC's listeners on every node (docs/protocol.md 11).
        let max = self.limits.max_listeners_per_hc;
        if let Some(cluster) = &self.cluster
            && !cluster.admit(registration.hc(), registration.id(), max).await
        {
            drop(registration);
            let text = format!("Listener limit of {max} reached for this hybrid connection");
            let rejection = super::Rejection::new(403, super::metrics::Reason::ListenerLimit, text);
            return self.reject(&mut stream, &rejection, Some(tracking_id)).await;
        }
        let key = websocket_key(&req).unwrap_or_default();
        let mut granted = Vec::new();
        if !leases.is_empty() {
            let grants: Vec<_> = leases.iter().map(|(g, _)| g.clone()).collect();
            granted.push((public::HEADER_PUBLIC, public::grants_header(&grants)));
            granted.push((public::HEADER_PUBLIC_HOST, host));
        }
        let answer = handshake::switching_protocols_with(key, None, &granted);
        if stream.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
        info!(hc = %hc, "listener connected");
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            .max_message_size(Some(self.limits.max_control_message))
            .max_frame_size(Some(self.limits.max_control_message));
        let ws = WebSocketStream::from_partially_read(stream, initial, Role::Server, Some(config)).await;
        let expires = deadline(expiry, self.limits.renew_grace);
        ControlChannel { relay: self, ws, registration, expires, last_heard: Instant::now(), awaiting: None }
            .run()
            .await;
        drop(leases);
        info!("listener gone");
    }
}

impl Relay {
    /// The public ports a `listen` handshake asks for, leased to `hc`, if its token may
    /// listen there and its rule may ask.
    fn public_leases(
        self: &Arc<Self>,
        hc: &str,
        token: Option<&str>,
        app_query: &[String],
    ) -> Result<Vec<(public::Grant, super::public::Lease)>, super::Rejection> {
        let asks = super::public::asks(app_query)?;
        if asks.is_empty() {
            return Ok(Vec::new());
        }
        let grant = self.registry.authorize_listener(hc, token)?;
        self.lease_ports(hc, &grant.rule, &asks)
    }
}

/// A registered listener's control channel.
struct ControlChannel<'a> {
    relay: &'a Relay,
    ws: WebSocketStream<RelayStream>,
    registration: Registration,
    /// When the listener's token (and its grace period) runs out.
    expires: Instant,
    last_heard: Instant,
    /// An HTTP-mode response whose body (the next binary message) has yet to come.
    awaiting: Option<(HttpResponse, Option<Claim>)>,
}

impl ControlChannel<'_> {
    async fn run(mut self) {
        let mut ticker = tokio::time::interval(self.relay.limits.ping_interval);
        ticker.tick().await;
        let end = loop {
            let step = tokio::select! {
                msg = self.ws.next() => self.on_message(msg).await,
                out = self.registration.next_message() => self.deliver(out).await,
                () = sleep_until(self.expires) => Break(Some((close::POLICY_VIOLATION, "Token expired".into()))),
                _ = ticker.tick() => self.on_tick().await,
                () = self.relay.shutdown.cancelled() => Break(Some((close::GOING_AWAY, "Relay shutting down".into()))),
            };
            if let Break(end) = step {
                break end;
            }
        };
        self.close(end).await;
    }

    /// Handles what the listener sent.
    async fn on_message(&mut self, msg: Option<Result<Message, WsError>>) -> ControlFlow<End> {
        self.last_heard = Instant::now();
        match msg {
            Some(Ok(Message::Text(text))) => {
                if let Some((response, claim)) = self.awaiting.take() {
                    // A body announced but not sent: an empty one.
                    answer_request(claim, response, Vec::new());
                }
                match serde_json::from_str::<ListenerMessage>(&text) {
                    Ok(ListenerMessage::RenewToken(renew)) => match self.registration.renew(&renew.token) {
                        Ok(new_expiry) => {
                            debug!(new_expiry, "token renewed");
                            self.expires = deadline(new_expiry, self.relay.limits.renew_grace);
                        }
                        Err(r) => {
                            return Break(Some((
                                close::POLICY_VIOLATION,
                                format!("Invalid token renewal: {}", r.text()),
                            )));
                        }
                    },
                    Ok(ListenerMessage::Response(response)) => {
                        let claim = self.registration.take_request(&response.request_id);
                        if claim.is_none() {
                            debug!("response to no waiting request of this listener");
                        }
                        if response.body {
                            self.awaiting = Some((response, claim));
                        } else {
                            answer_request(claim, response, Vec::new());
                        }
                    }
                    Err(_) => {
                        return Break(Some((close::UNSUPPORTED_DATA, "Unknown or malformed control message".into())));
                    }
                }
            }
            Some(Ok(Message::Binary(data))) => match self.awaiting.take() {
                Some((response, claim)) => answer_request(claim, response, data.to_vec()),
                // hyco-https sends an empty binary message after a response without a body.
                None if data.is_empty() => {}
                None => {
                    return Break(Some((close::UNSUPPORTED_DATA, "Binary messages are not control messages".into())));
                }
            },
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            Some(Ok(Message::Close(_))) => {
                // tungstenite has queued the answering Close; send it, so that the
                // listener's close handshake completes. Bounded like the close below.
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.ws.flush()).await;
                return Break(None);
            }
            None => return Break(None),
            Some(Err(e)) => {
                debug!("control channel error: {e}");
                return Break(match e {
                    WsError::Capacity(_) => Some((close::MESSAGE_TOO_BIG, "Control message too large".into())),
                    WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
                    WsError::Protocol(_) => Some((close::PROTOCOL_ERROR, "WebSocket protocol error".into())),
                    WsError::Utf8(_) => Some((close::INVALID_PAYLOAD, "Text message is not UTF-8".into())),
                    _ => None,
                });
            }
        }
        Continue(())
    }

    /// Sends the listener an `accept` or a `request` from its queue. A complete HTTP
    /// request's body follows it as one binary message, at once.
    async fn deliver(&mut self, out: Option<RelayMessage>) -> ControlFlow<End> {
        let Some(mut msg) = out else { return Break(None) };
        let body = match &mut msg {
            RelayMessage::Request(r) if r.body == Some(true) => Some(std::mem::take(&mut r.inline_body.0)),
            _ => None,
        };
        let json = serde_json::to_string(&msg).expect("control messages serialize");
        if !self.send(Message::text(json)).await {
            return Break(None);
        }
        if let Some(body) = body
            && !self.send(Message::binary(body)).await
        {
            return Break(None);
        }
        Continue(())
    }

    /// Drops a silent listener, and pings one that has been quiet.
    async fn on_tick(&mut self) -> ControlFlow<End> {
        let interval = self.relay.limits.ping_interval;
        let silent = self.last_heard.elapsed();
        if silent >= interval * 2 {
            info!("control channel silent for {silent:?}; dropping it");
            return Break(None);
        }
        // Ticks come every `ping_interval`, so a channel last heard just after one tick
        // is silent for a little less than that at the next: half an interval is the
        // threshold, or a listener that only answers pings (hyco-ws) would get no ping
        // in the two intervals before it is dropped.
        if silent >= interval / 2 && !self.send(Message::Ping(Bytes::new())).await {
            return Break(None);
        }
        Continue(())
    }

    /// Sends `msg`; `false` if that fails, if the listener has not taken it within a ping
    /// interval (it stopped reading: a full socket must not hold this task, its token
    /// expiry and the relay's shutdown forever), or once the relay's drain period is over.
    async fn send(&mut self, msg: Message) -> bool {
        tokio::select! {
            sent = tokio::time::timeout(self.relay.limits.ping_interval, self.ws.send(msg)) => matches!(sent, Ok(Ok(()))),
            () = self.relay.force.cancelled() => false,
        }
    }

    /// Says goodbye with a Close if `end` has one: best effort, bounded.
    async fn close(mut self, end: End) {
        let Some((code, text)) = end else { return };
        info!(code, "closing control channel: {text}");
        let frame = CloseFrame { code: CloseCode::from(code), reason: text.into() };
        let closing = tokio::time::timeout(CLOSE_TIMEOUT, async {
            let _ = self.ws.close(Some(frame)).await;
            while let Some(Ok(_)) = self.ws.next().await {}
        });
        tokio::select! {
            _ = closing => {}
            () = self.relay.force.cancelled() => {}
        }
    }
}

/// Hands an HTTP-mode response from the control channel to its waiting request, if any.
fn answer_request(claim: Option<Claim>, response: HttpResponse, body: Vec<u8>) {
    if let Some(claim) = claim {
        claim.answer(Answer::Response { response, body });
    }
}
