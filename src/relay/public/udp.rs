//! A public UDP port's visitors (docs/protocol.md 10.2). Being written.

use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::super::Relay;
use super::PortInfo;

/// Serves a public UDP port until `stop` fires.
pub(super) async fn serve(_relay: Arc<Relay>, _socket: UdpSocket, _port: Arc<PortInfo>, stop: CancellationToken) {
    stop.cancelled().await;
}
