//! A listener's end of a datagram session (docs/protocol.md 10.2, 10.4), a public UDP
//! port's visitor or a sender that says `Hyco-Proto: udp`: each message of the tunnel
//! becomes one datagram to the target, sent from a UDP socket of the session's own
//! (connected to the target, so only its replies come back), and each reply one binary
//! message. The session ends when the other side closes it (answered with 1000), when its
//! connection breaks, when a sender's session is idle (1000), or when the listener stops
//! (1001).
//!
//! Which accepts come here is `client::listen`'s choice, with [`mismatch`]: a datagram
//! session reaches a UDP target, a stream a TCP one. Opening the tunnel is `listen`'s too.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;
use tracing::debug;

use super::super::target::{UDP_SCHEME, is_udp};
use super::super::tunnel::Tunnel;
use super::{Ended, Local, Session, UDP_MAX};
use crate::protocol::{Accept, HEADER_PROTO};
use crate::public::{HEADER_VISITOR, Proto};

/// The text of a rejection of a stream (a TCP visitor or sender) to a UDP target.
const UDP_TARGET: &str =
    "This target is a UDP service: reach it with hyco connect --bind udp:PORT or a public UDP port";

/// Why `accept` cannot reach `target` (the text of a 400 rejection). A datagram session
/// reaches a UDP target only, a stream a TCP target only. A visitor of a public port (the
/// accept's `Hyco-Public` connect header, which only the relay sets) is of the port's
/// protocol; a sender is a datagram session when it says `Hyco-Proto: udp`, else a stream
/// (docs/protocol.md 10.2, 10.4).
pub(in crate::client) fn mismatch(target: &str, accept: &Accept) -> Option<String> {
    let udp_target = is_udp(target);
    if let Some(visitor) = header(accept, HEADER_VISITOR) {
        return match (udp_target, Proto::parse(visitor.trim())) {
            (true, Some(Proto::Udp)) | (false, Some(Proto::Tcp)) => None,
            (true, _) => Some(UDP_TARGET.to_owned()),
            (false, _) => Some("This target is a TCP service: a public UDP port does not reach it".to_owned()),
        };
    }
    let sender = header(accept, HEADER_PROTO).map(|p| Proto::parse(&p.trim().to_ascii_lowercase()));
    match (udp_target, sender) {
        (_, Some(None)) => Some(format!("{HEADER_PROTO} says neither tcp nor udp")),
        (true, Some(Some(Proto::Udp))) | (false, None | Some(Some(Proto::Tcp))) => None,
        (true, _) => Some(UDP_TARGET.to_owned()),
        (false, _) => Some(
            "This target is a TCP service: a UDP session (hyco connect --bind udp:PORT) does not reach it".to_owned(),
        ),
    }
}

/// Whether `accept` is a sender's datagram session (`Hyco-Proto: udp`), not a public
/// port's visitor: its listener's end has an idle timeout of its own.
pub(in crate::client) fn hc_session(accept: &Accept) -> bool {
    header(accept, HEADER_VISITOR).is_none()
        && header(accept, HEADER_PROTO).is_some_and(|p| p.trim().eq_ignore_ascii_case(Proto::Udp.as_str()))
}

/// The value of the accept's connect header `name` (case-blind).
fn header<'a>(accept: &'a Accept, name: &str) -> Option<&'a str> {
    accept.connect_headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// A socket for one session, connected to the UDP `target` (`udp://host:port`); a failure
/// is the status and text to reject the accept with (502).
pub(in crate::client) async fn bind_target(target: &str) -> Result<UdpSocket, (u16, String)> {
    let failed = |e: io::Error| (502, format!("UDP target {target} cannot be reached: {e}"));
    let addr = target.strip_prefix(UDP_SCHEME).unwrap_or(target);
    let to = tokio::net::lookup_host(addr)
        .await
        .map_err(failed)?
        .next()
        .ok_or_else(|| failed(io::Error::new(io::ErrorKind::NotFound, "no address")))?;
    let any: SocketAddr = if to.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0; 16], 0).into() };
    let socket = UdpSocket::bind(any).await.map_err(failed)?;
    socket.connect(to).await.map_err(failed)?;
    Ok(socket)
}

/// A session's socket to its target, connected (so only the target's replies come back).
pub(in crate::client) struct TargetEnd(UdpSocket);

impl Local for TargetEnd {
    async fn recv(&self, buf: &mut [u8]) -> Result<usize, Ended> {
        loop {
            match self.0.recv(buf).await {
                Ok(n) => return Ok(n),
                // Nothing listens at the target (yet): what is sent is lost, as UDP goes.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                Err(e) => return Err(Ended::Local(e)),
            }
        }
    }

    fn try_recv(&self, buf: &mut [u8]) -> Option<usize> {
        self.0.try_recv(buf).ok()
    }

    async fn send(&self, datagram: &[u8]) {
        if let Err(e) = self.0.send(datagram).await {
            debug!("a datagram to the target was lost: {e}");
        }
    }

    fn oversize(&self) {
        debug!("dropped a message too long for a datagram");
    }
}

/// The listener's end of a session: `tunnel` to the target's `socket`, `what` naming it
/// for the log, ending after `idle` without a datagram (an HC session's; a public port's
/// visitor has the relay's).
pub(in crate::client) fn session(
    tunnel: Tunnel,
    socket: UdpSocket,
    what: &str,
    idle: Option<Duration>,
) -> Session<'_, TargetEnd> {
    Session { tunnel, local: TargetEnd(socket), what, idle, limit: UDP_MAX, stopping: "listener stopping" }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(headers: &[(&str, &str)]) -> Accept {
        Accept {
            address: String::new(),
            id: String::new(),
            connect_headers: headers.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            remote_endpoint: None,
        }
    }

    fn accept(visitor: Option<&str>) -> Accept {
        with(&visitor.map(|v| (HEADER_VISITOR, v)).into_iter().collect::<Vec<_>>())
    }

    #[test]
    fn a_port_reaches_targets_of_its_protocol_only() {
        let (udp, tcp) = ("udp://127.0.0.1:53", "127.0.0.1:80");
        assert_eq!(mismatch(udp, &accept(Some("udp"))), None);
        assert_eq!(mismatch(tcp, &accept(Some("tcp"))), None);
        assert_eq!(mismatch(tcp, &accept(None)), None, "a sender reaches a TCP target");
        for bad in [None, Some("tcp"), Some("quic")] {
            assert!(mismatch(udp, &accept(bad)).unwrap().contains("UDP service"), "{bad:?}");
        }
        assert!(mismatch(tcp, &accept(Some("udp"))).unwrap().contains("TCP service"));
    }

    #[test]
    fn a_sender_saying_udp_reaches_udp_targets_only() {
        let (udp, tcp) = ("udp://127.0.0.1:53", "127.0.0.1:80");
        for says in ["udp", "UDP", " udp "] {
            let a = with(&[("hyco-proto", says)]);
            assert_eq!(mismatch(udp, &a), None, "{says:?}");
            assert!(mismatch(tcp, &a).unwrap().contains("TCP service"), "{says:?}");
            assert!(hc_session(&a), "{says:?}");
        }
        let tcp_sender = with(&[(HEADER_PROTO, "tcp")]);
        assert_eq!(mismatch(tcp, &tcp_sender), None);
        assert!(mismatch(udp, &tcp_sender).unwrap().contains("UDP service"));
        assert!(!hc_session(&tcp_sender) && !hc_session(&accept(None)));
        assert!(mismatch(udp, &with(&[(HEADER_PROTO, "quic")])).unwrap().contains("neither"));
        // A visitor is what the relay says it is, whatever else the headers hold.
        let visitor = with(&[(HEADER_VISITOR, "tcp"), (HEADER_PROTO, "udp")]);
        assert!(mismatch(udp, &visitor).is_some() && mismatch(tcp, &visitor).is_none() && !hc_session(&visitor));
    }
}
