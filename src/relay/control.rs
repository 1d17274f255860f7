//! A listener's control channel on the relay side: delivers `accept` messages, takes
//! `renewToken`, pings when idle, and closes with 1008 when the token runs out (past the
//! grace period), 1001 at shutdown, 1003 on a message it cannot understand.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tracing::{debug, info};

use super::Relay;
use super::auth::{self, Right};
use super::stream::RelayStream;
use crate::protocol::{self, ListenerMessage, RelayMessage, close};

/// Read buffer of a control channel; messages are small and rare.
const READ_BUFFER: usize = 4096;

/// The instant `expiry` (Unix seconds) plus `grace` falls on.
fn deadline(expiry: u64, grace: Duration) -> Instant {
    let left = expiry.saturating_sub(protocol::unix_now());
    Instant::now() + Duration::from_secs(left) + grace
}

/// Runs a registered listener's control channel until it ends.
pub(super) async fn run(
    relay: Arc<Relay>,
    stream: RelayStream,
    initial: Vec<u8>,
    hc: String,
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
    let reason = loop {
        tokio::select! {
            msg = ws.next() => {
                last_heard = Instant::now();
                match msg {
                    Some(Ok(Message::Text(text))) => match serde_json::from_str::<ListenerMessage>(&text) {
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
                        Err(_) => break Some((close::UNSUPPORTED_DATA, "Unknown or malformed control message".into())),
                    },
                    Some(Ok(Message::Binary(_))) => break Some((close::UNSUPPORTED_DATA, "Binary messages are not control messages".into())),
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
                        let size = matches!(e, tokio_tungstenite::tungstenite::Error::Capacity(_));
                        break size.then(|| (close::MESSAGE_TOO_BIG, "Control message too large".into()));
                    }
                }
            }
            out = rx.recv() => {
                let Some(msg) = out else { break None };
                let json = serde_json::to_string(&msg).expect("control messages serialize");
                if ws.send(Message::text(json)).await.is_err() {
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
                if silent >= limits.ping_interval / 2 && ws.send(Message::Ping(Bytes::new())).await.is_err() {
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
