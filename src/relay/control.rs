//! A listener's control channel on the relay side: delivers `accept` messages, takes
//! `renewToken`, pings when idle, and closes with 1008 when the token runs out (past the
//! grace period), 1001 at shutdown, 1003 on a message it cannot understand, 1002 on a
//! framing error, 1007 on text that is not UTF-8, 1009 on a message over the limit. A
//! listener that stops reading is dropped once a message has waited a ping interval.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Bytes, Error as WsError, Message};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::Relay;
use super::auth::{self, Right};
use super::http::HttpAnswer;
use super::stream::RelayStream;
use crate::protocol::{self, HttpResponse, ListenerMessage, RelayMessage, close};

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

/// Sends `msg`; `false` if that fails, if the listener has not taken it within `limit`
/// (it stopped reading: a full socket must not hold this task, its token expiry and the
/// relay's shutdown forever), or once the relay's drain period is over.
async fn send(ws: &mut WebSocketStream<RelayStream>, msg: Message, limit: Duration, force: &CancellationToken) -> bool {
    tokio::select! {
        sent = tokio::time::timeout(limit, ws.send(msg)) => matches!(sent, Ok(Ok(()))),
        () = force.cancelled() => false,
    }
}

/// Hands an HTTP-mode response from the control channel to its waiting request, if any.
fn deliver(tx: Option<oneshot::Sender<HttpAnswer>>, response: HttpResponse, body: Vec<u8>) {
    if let Some(tx) = tx {
        let _ = tx.send(HttpAnswer::Control { response, body });
    }
}

/// Runs a registered listener's control channel until it ends.
pub(super) async fn run(
    relay: Arc<Relay>,
    stream: RelayStream,
    initial: Vec<u8>,
    hc: String,
    listener: u64,
    mut rx: mpsc::Receiver<RelayMessage>,
    expiry: u64,
) {
    let limits = &relay.settings.limits;
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .max_message_size(Some(limits.max_control_message))
        .max_frame_size(Some(limits.max_control_message));
    let mut ws = WebSocketStream::from_partially_read(stream, initial, Role::Server, Some(config)).await;
    let mut expires = deadline(expiry, limits.renew_grace);
    let mut last_heard = Instant::now();
    let mut ticker = tokio::time::interval(limits.ping_interval);
    ticker.tick().await;
    // An HTTP-mode response whose body (the next binary message) has yet to come.
    let mut awaiting: Option<(HttpResponse, Option<oneshot::Sender<HttpAnswer>>)> = None;
    let reason = loop {
        tokio::select! {
            msg = ws.next() => {
                last_heard = Instant::now();
                match msg {
                    Some(Ok(Message::Text(text))) => {
                        if let Some((response, tx)) = awaiting.take() {
                            // A body announced but not sent: an empty one.
                            deliver(tx, response, Vec::new());
                        }
                        match serde_json::from_str::<ListenerMessage>(&text) {
                            Ok(ListenerMessage::RenewToken(renew)) => {
                                match auth::check(&renew.token, &hc, Right::Listen, &relay.hc_rules(&hc), &relay.settings.rules,
                                    protocol::unix_now(), protocol::CLOCK_SKEW.as_secs()) {
                                    Ok(new_expiry) => {
                                        debug!(new_expiry, "token renewed");
                                        expires = deadline(new_expiry, limits.renew_grace);
                                    }
                                    Err(d) => break Some((close::POLICY_VIOLATION, format!("Invalid token renewal: {}", d.text))),
                                }
                            }
                            Ok(ListenerMessage::Response(response)) => {
                                let tx = relay.http.take_for_listener(listener, &response.request_id);
                                if tx.is_none() {
                                    debug!("response to no waiting request of this listener");
                                }
                                if response.body {
                                    awaiting = Some((response, tx));
                                } else {
                                    deliver(tx, response, Vec::new());
                                }
                            }
                            Err(_) => break Some((close::UNSUPPORTED_DATA, "Unknown or malformed control message".into())),
                        }
                    }
                    Some(Ok(Message::Binary(data))) => match awaiting.take() {
                        Some((response, tx)) => deliver(tx, response, data.to_vec()),
                        // hyco-https sends an empty binary message after a response without a body.
                        None if data.is_empty() => {}
                        None => break Some((close::UNSUPPORTED_DATA, "Binary messages are not control messages".into())),
                    },
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                    Some(Ok(Message::Close(_))) => {
                        // tungstenite has queued the answering Close; send it, so that the
                        // listener's close handshake completes. Bounded like the close below.
                        let _ = tokio::time::timeout(Duration::from_secs(5), ws.flush()).await;
                        break None;
                    }
                    None => break None,
                    Some(Err(e)) => {
                        debug!("control channel error: {e}");
                        break match e {
                            WsError::Capacity(_) => Some((close::MESSAGE_TOO_BIG, "Control message too large".into())),
                            WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
                            WsError::Protocol(_) => Some((close::PROTOCOL_ERROR, "WebSocket protocol error".into())),
                            WsError::Utf8(_) => Some((close::INVALID_PAYLOAD, "Text message is not UTF-8".into())),
                            _ => None,
                        };
                    }
                }
            }
            out = rx.recv() => {
                let Some(mut msg) = out else { break None };
                // A complete HTTP request's body follows it as one binary message, at once.
                let body = match &mut msg {
                    RelayMessage::Request(r) if r.body == Some(true) => Some(std::mem::take(&mut r.inline_body.0)),
                    _ => None,
                };
                let json = serde_json::to_string(&msg).expect("control messages serialize");
                if !send(&mut ws, Message::text(json), limits.ping_interval, &relay.force).await {
                    break None;
                }
                if let Some(body) = body
                    && !send(&mut ws, Message::binary(body), limits.ping_interval, &relay.force).await
                {
                    break None;
                }
            }
            () = sleep_until(expires) => break Some((close::POLICY_VIOLATION, "Token expired".into())),
            _ = ticker.tick() => {
                let silent = last_heard.elapsed();
                if silent >= limits.ping_interval * 2 {
                    info!("control channel silent for {silent:?}; dropping it");
                    break None;
                }
                // Ticks come every `ping_interval`, so a channel last heard just after one tick
                // is silent for a little less than that at the next: half an interval is the
                // threshold, or a listener that only answers pings (hyco-ws) would get no ping
                // in the two intervals before it is dropped.
                if silent >= limits.ping_interval / 2
                    && !send(&mut ws, Message::Ping(Bytes::new()), limits.ping_interval, &relay.force).await
                {
                    break None;
                }
            }
            () = relay.shutdown.cancelled() => break Some((close::GOING_AWAY, "Relay shutting down".into())),
        }
    };
    if let Some((code, text)) = reason {
        info!(code, "closing control channel: {text}");
        let frame = CloseFrame { code: CloseCode::from(code), reason: text.into() };
        // Best effort, bounded: a peer that never reads must not hold the task, nor the
        // relay's shutdown past its drain period.
        let closing = tokio::time::timeout(Duration::from_secs(5), async {
            let _ = ws.close(Some(frame)).await;
            while let Some(Ok(_)) = ws.next().await {}
        });
        tokio::select! {
            _ = closing => {}
            () = relay.force.cancelled() => {}
        }
    }
}
