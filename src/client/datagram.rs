//! A listener's end of a public UDP port's session (docs/protocol.md 10.2): each message
//! of the tunnel becomes one datagram to the target, sent from a UDP socket of the
//! session's own (connected to the target, so only its replies come back), and each reply
//! one binary message ([`crate::ws::datagram`]). The session ends when the relay closes
//! it (answered with 1000), when its connection breaks, or when the listener stops (1001).
//!
//! Which accepts come here is [`super::listen`]'s choice, with [`mismatch`]: a public
//! port's protocol must match its target's. Opening the tunnel is `listen`'s too.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::target::{UDP_SCHEME, is_udp};
use super::tunnel::{GOODBYE_TIMEOUT, Tunnel};
use crate::protocol::{Accept, close};
use crate::public::{HEADER_VISITOR, Proto};
use crate::status::{Stats, Tally};
use crate::ws::datagram::{self, Datagrams, Incoming};
use crate::ws::frame::{CloseFrame, MAX_HEADER_LEN, OpCode};

/// The largest datagram UDP can carry: a bigger message from the relay cannot be sent to
/// the target and is dropped; a reply never is bigger.
const MAX_DATAGRAM: usize = 65_535;

/// Why `accept` cannot reach `target` (the text of a 400 rejection): a visitor of a public
/// port (the accept's `Hyco-Public` connect header) reaches a target of the port's
/// protocol, and a UDP target is reached only through a public UDP port.
pub(super) fn mismatch(target: &str, accept: &Accept) -> Option<String> {
    let visitor = accept
        .connect_headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(HEADER_VISITOR))
        .map(|(_, v)| Proto::parse(v.trim()));
    match (is_udp(target), visitor) {
        (true, Some(Some(Proto::Udp))) | (false, None | Some(Some(Proto::Tcp))) => None,
        (true, _) => Some("This target is a UDP service: only a public UDP port reaches it".to_owned()),
        (false, _) => Some("This target is a TCP service: a public UDP port does not reach it".to_owned()),
    }
}

/// A socket for one session, connected to the UDP `target` (`udp://host:port`); a failure
/// is the status and text to reject the accept with (502).
pub(super) async fn bind_target(target: &str) -> Result<UdpSocket, (u16, String)> {
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

/// How a session ended.
pub(super) enum Ended {
    /// The other side closed it, with this code and reason.
    Closed(u16, String),
    /// The tunnel broke.
    Lost(io::Error),
    /// The session's socket failed.
    Local(io::Error),
    /// The listener is stopping.
    Stopping,
}

impl Ended {
    /// The Close this end sends for how the tunnel ended (none when it broke).
    pub(super) fn goodbye(&self) -> Option<CloseFrame> {
        match self {
            Self::Closed(..) => Some(CloseFrame::new(close::NORMAL, "")),
            Self::Stopping => Some(CloseFrame::new(close::GOING_AWAY, "listener stopping")),
            Self::Local(_) => Some(CloseFrame::new(close::INTERNAL_ERROR, "target socket failed")),
            Self::Lost(_) => None,
        }
    }

    /// Logs how a datagram tunnel `what` ended, with what it `moved`, and counts a failure
    /// in `tally`: the one INFO line per tunnel (or WARN when it broke).
    pub(super) fn report(self, what: &str, moved: &str, tally: &Tally) {
        match self {
            Self::Closed(close::NORMAL, _) => info!("{what}: {moved}; closed"),
            Self::Closed(code, reason) => info!("{what}: {moved}; closed by the other side ({code} {reason})"),
            Self::Stopping => info!("{what}: {moved}; cut short at shutdown"),
            Self::Lost(e) => {
                tally.failed();
                warn!("{what}: {moved}; tunnel aborted: relay connection lost: {e}");
            }
            Self::Local(e) => {
                tally.failed();
                warn!("{what}: {moved}; tunnel aborted: the target's socket failed: {e}");
            }
        }
    }
}

/// One session: a started tunnel and its socket to the target.
pub(super) struct Session<'a> {
    pub(super) tunnel: Tunnel,
    pub(super) socket: UdpSocket,
    /// Who to where, for the log.
    pub(super) what: &'a str,
}

impl Session<'_> {
    /// Waits for *start* if the tunnel was accepted deferred (for up to `start_timeout`),
    /// then carries datagrams until the session ends, counting it in `stats` and logging
    /// one line when it does.
    pub(super) async fn run(
        mut self,
        deferred: Option<Duration>,
        stats: &Arc<Stats>,
        shutdown: &CancellationToken,
        force: &CancellationToken,
    ) {
        if let Some(start_timeout) = deferred
            && let Err(e) = self.tunnel.await_start(start_timeout, shutdown).await
        {
            return debug!("session ended before it started: {e}");
        }
        let what = self.what;
        let tally = Tally::new(stats.clone());
        let datagrams = [AtomicU64::new(0), AtomicU64::new(0)];
        let ended = self.carry(&tally, &datagrams, shutdown, force).await;
        let [to_target, from_target] = datagrams.map(|n| n.load(Relaxed));
        let moved = format!("{}; datagrams in {to_target}, out {from_target}", tally.moved());
        ended.report(what, &moved, &tally);
    }

    /// Carries datagrams both ways until the session ends, and says goodbye.
    async fn carry(
        self,
        tally: &Tally,
        datagrams: &[AtomicU64; 2],
        shutdown: &CancellationToken,
        force: &CancellationToken,
    ) -> Ended {
        let (mut reader, writer, pending) = self.tunnel.into_parts();
        let writer = Mutex::new(writer);
        let socket = &self.socket;
        let ended = {
            let down = async {
                let mut incoming = Datagrams::new(MAX_DATAGRAM, pending);
                loop {
                    match incoming.next(&mut reader).await.map_err(Ended::Lost)? {
                        Incoming::Datagram(d) => match socket.send(&d).await {
                            Ok(_) => {
                                tally.inn(d.len());
                                datagrams[0].fetch_add(1, Relaxed);
                            }
                            Err(e) => debug!("a datagram to the target was lost: {e}"),
                        },
                        Incoming::Oversize => debug!("dropped a message too long for a datagram"),
                        Incoming::Ping(payload) => {
                            writer.lock().await.send(OpCode::Pong, &payload).await.map_err(Ended::Lost)?;
                        }
                        Incoming::Close(frame) => {
                            let frame = frame.unwrap_or(CloseFrame { code: close::NORMAL, reason: String::new() });
                            return Err::<(), _>(Ended::Closed(frame.code, frame.reason));
                        }
                        Incoming::End => return Err(Ended::Lost(io::ErrorKind::UnexpectedEof.into())),
                    }
                }
            };
            let up = async {
                let mut buf = vec![0; MAX_HEADER_LEN + MAX_DATAGRAM];
                loop {
                    let n = match socket.recv(&mut buf[MAX_HEADER_LEN..]).await {
                        Ok(n) => n,
                        // Nothing listens at the target (yet): what is sent is lost, as UDP goes.
                        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                        Err(e) => return Err::<(), _>(Ended::Local(e)),
                    };
                    datagram::send_in_place(&mut *writer.lock().await, &mut buf, n).await.map_err(Ended::Lost)?;
                    tally.out(n);
                    datagrams[1].fetch_add(1, Relaxed);
                }
            };
            tokio::select! {
                Err(why) = down => why,
                Err(why) = up => why,
                () = shutdown.cancelled() => Ended::Stopping,
                () = force.cancelled() => Ended::Stopping,
            }
        };
        if let Some(frame) = ended.goodbye() {
            let mut writer = writer.into_inner();
            let _ = tokio::time::timeout(GOODBYE_TIMEOUT, writer.send_close(Some(&frame))).await;
        }
        ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(visitor: Option<&str>) -> Accept {
        Accept {
            address: String::new(),
            id: String::new(),
            connect_headers: visitor.map(|v| (HEADER_VISITOR.to_owned(), v.to_owned())).into_iter().collect(),
            remote_endpoint: None,
        }
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
}
