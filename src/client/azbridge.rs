//! The in-band preamble of azbridge (Microsoft's Azure Relay Bridge), so that hyco and
//! azbridge can stand on either side of one hybrid connection (docs/protocol.md 10.3).
//!
//! Every azbridge stream starts with the sender's `01 00 MODE LEN NAME` (version 1.0, mode
//! 0 stream or 1 datagram, the port name in UTF-8); the listener answers `01 00 MODE` and
//! the bytes flow, or answers `00 00 00` (a version it does not speak), `00 00 01` (a
//! stream for a datagram port), `00 00 FF` (a datagram for a stream port) and closes, or
//! closes at once for a name it does not have. `hyco listen --azbridge` plays azbridge's
//! listener (`-T`), `hyco connect --azbridge-port NAME` its sender (`-L`).
//!
//! Datagram mode (listener side only): a datagram sender to a `udp://` target is answered
//! `01 00 01`, then each datagram travels on the tunnel as a 2-byte big-endian length and
//! its bytes, both ways, in whatever WebSocket frames (the stream is parsed, message
//! boundaries mean nothing); the target is reached from a UDP socket of the tunnel's own
//! ([`super::datagram::bind_target`]). `hyco connect --azbridge-port` sends streams only.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::datagram::Ended;
use super::pump::{self, LocalSide};
use super::target::{Targets, connect_target, is_udp};
use super::tunnel::Tunnel;
use crate::protocol::close;
use crate::status::{Stats, Tally};
use crate::ws::datagram::send_in_place;
use crate::ws::frame::{CloseFrame, MAX_HEADER_LEN, OpCode};

/// How long either side waits for the other's part of the preamble.
pub(super) const PREAMBLE_TIMEOUT: Duration = Duration::from_secs(10);
/// The most bytes of one frame of the preamble: 4 and a name of up to 255.
const MAX_PREAMBLE: usize = 4 + 255;

/// Stream mode.
const STREAM: u8 = 0;
/// Datagram mode.
const DATAGRAM: u8 = 1;
/// The listener's answer: go on (version 1.0, stream mode).
pub(super) const ACCEPTED: [u8; 3] = [1, 0, STREAM];
/// The listener's answer: go on (version 1.0, datagram mode).
const DATAGRAM_ACCEPTED: [u8; 3] = [1, 0, DATAGRAM];
/// The listener does not speak the sender's version.
const BAD_VERSION: [u8; 3] = [0, 0, 0];
/// A stream sent to a datagram port.
const NOT_DATAGRAM: [u8; 3] = [0, 0, 1];
/// A datagram sent to a stream port.
const MODE_MISMATCH: [u8; 3] = [0, 0, 0xFF];

/// The sender's preamble for port `name` (stream mode); an error for a name over 255 bytes.
pub(super) fn preamble(name: &str) -> Result<Vec<u8>, String> {
    let len = u8::try_from(name.len()).map_err(|_| format!("azbridge port name {name:?} is over 255 bytes"))?;
    let mut out = vec![1, 0, STREAM, len];
    out.extend_from_slice(name.as_bytes());
    Ok(out)
}

/// What the sender makes of the listener's answer: `Ok` to go on, else why not.
pub(super) fn answer_text(answer: &[u8; 3], name: &str) -> Result<(), String> {
    match *answer {
        ACCEPTED => Ok(()),
        BAD_VERSION => Err("the azbridge listener does not speak preamble version 1.0".into()),
        NOT_DATAGRAM => Err(format!("the azbridge listener's port {name:?} is a UDP (datagram) port")),
        MODE_MISMATCH => Err(format!("the azbridge listener's port {name:?} does not take this mode")),
        other => Err(format!("the azbridge listener answered {other:02x?}, not a preamble answer")),
    }
}

/// A listener's decision on a sender's preamble.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Decision {
    /// Connect to this target, then answer [`ACCEPTED`].
    Target(String),
    /// Open a socket to this UDP target, then answer [`DATAGRAM_ACCEPTED`].
    Datagram(String),
    /// Answer this and close.
    Refuse([u8; 3], String),
    /// Close without an answer (azbridge's way for a name it does not have).
    Close(String),
}

/// Decides on a complete preamble `bytes` (version, mode, length, name) for `targets`: a
/// name picks the target of that name; with one target only, any number picks it (as an
/// azbridge with one forwarder does, the name being a port number by default).
pub(super) fn decide(bytes: &[u8], targets: &Targets) -> Decision {
    let [major, minor, mode, _, name @ ..] = bytes else {
        return Decision::Close("a preamble shorter than 4 bytes".into());
    };
    let (major, minor, mode) = (*major, *minor, *mode);
    if (major, minor) != (1, 0) || mode > DATAGRAM {
        return Decision::Refuse(BAD_VERSION, format!("preamble version {major}.{minor} mode {mode}"));
    }
    let Ok(name) = std::str::from_utf8(name) else { return Decision::Close("a port name that is not UTF-8".into()) };
    let all: Vec<&String> = targets.named.values().chain(targets.default.iter()).collect();
    let target = match targets.named.get(name) {
        Some(t) => t,
        None if all.len() == 1 && !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) => all[0],
        None => return Decision::Close(format!("no target for azbridge port {name:?}")),
    };
    match (is_udp(target), mode) {
        (true, STREAM) => Decision::Refuse(NOT_DATAGRAM, format!("port {name:?} is UDP; the sender streams")),
        (true, _) => Decision::Datagram(target.clone()),
        (false, DATAGRAM) => {
            Decision::Refuse(MODE_MISMATCH, format!("port {name:?} is TCP; the sender sends datagrams"))
        }
        _ => Decision::Target(target.clone()),
    }
}

/// `hyco listen --azbridge`: reads the sender's preamble on an accepted `tunnel`, picks
/// the target by its port name, connects, answers and pumps; `from` names the sender
/// for the log. A refusal is answered (or not) as azbridge does, then the tunnel closes.
pub(super) async fn serve(
    mut tunnel: Tunnel,
    targets: &Targets,
    from: &str,
    connect_timeout: Duration,
    stats: Arc<Stats>,
    force: &CancellationToken,
) {
    let bytes = match force.run_until_cancelled(read_preamble(&mut tunnel)).await {
        Some(Ok(bytes)) => bytes,
        // A sender that closes first (hyco connect checking its path) has nothing to say.
        Some(Err(why)) if why.starts_with("closed by the other side") => return debug!("{from}: {why}"),
        Some(Err(why)) => {
            warn!("{from}: no azbridge preamble: {why}");
            return tunnel.goodbye(&CloseFrame::new(close::PROTOCOL_ERROR, "azbridge preamble expected")).await;
        }
        None => return,
    };
    let target = match decide(&bytes, targets) {
        Decision::Target(target) => target,
        Decision::Datagram(target) => return serve_datagrams(tunnel, &target, from, stats, force).await,
        Decision::Refuse(answer, why) => {
            info!("{from}: azbridge sender refused: {why}");
            let _ = tunnel.send_binary(&answer).await;
            return tunnel.goodbye(&CloseFrame::new(close::NORMAL, "")).await;
        }
        Decision::Close(why) => {
            info!("{from}: azbridge sender refused: {why}");
            return tunnel.goodbye(&CloseFrame::new(close::NORMAL, "")).await;
        }
    };
    let tally = Tally::new(stats);
    let local = match force.run_until_cancelled(connect_target(&target, connect_timeout)).await {
        Some(Ok(local)) => local,
        Some(Err((_, text))) => {
            warn!("{from} -> {target}: tunnel aborted: {text}");
            tally.failed();
            return tunnel.goodbye(&CloseFrame::new(close::INTERNAL_ERROR, text)).await;
        }
        None => return,
    };
    if let Err(e) = tunnel.send_binary(&ACCEPTED).await {
        debug!("answering the preamble failed: {e}");
        return local.abort();
    }
    let what = format!("{from} -> azbridge port -> {target}");
    pump::pump_local(local, tunnel, tally, LocalSide::Target, &what, force).await;
}

/// The largest datagram azbridge's 2-byte length carries.
const MAX_DATAGRAM: usize = u16::MAX as usize;
/// Tunnel bytes read at a time in datagram mode.
const READ_PIECE: usize = 16 * 1024;

/// Splits azbridge's datagram stream (each datagram a 2-byte big-endian length and its
/// bytes) into datagrams, whatever pieces it arrives in. Holds at most one incomplete
/// datagram and the piece last pushed.
#[derive(Default)]
struct Unframer {
    buf: Vec<u8>,
}

impl Unframer {
    fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete datagram, if the bytes pushed so far hold one.
    fn next(&mut self) -> Option<Vec<u8>> {
        let [hi, lo, ..] = self.buf[..] else { return None };
        let end = 2 + usize::from(u16::from_be_bytes([hi, lo]));
        if self.buf.len() < end {
            return None;
        }
        let datagram = self.buf[2..end].to_vec();
        self.buf.drain(..end);
        Some(datagram)
    }

    /// Bytes of a datagram not complete yet.
    fn partial(&self) -> usize {
        self.buf.len()
    }
}

/// Datagram mode: opens a socket to the UDP `target`, answers [`DATAGRAM_ACCEPTED`] and
/// carries datagrams until the tunnel or the socket ends; one log line when it does.
async fn serve_datagrams(mut tunnel: Tunnel, target: &str, from: &str, stats: Arc<Stats>, force: &CancellationToken) {
    let tally = Tally::new(stats);
    let socket = match force.run_until_cancelled(super::datagram::bind_target(target)).await {
        Some(Ok(socket)) => socket,
        Some(Err((_, text))) => {
            warn!("{from} -> {target}: tunnel aborted: {text}");
            tally.failed();
            return tunnel.goodbye(&CloseFrame::new(close::INTERNAL_ERROR, text)).await;
        }
        None => return,
    };
    if let Err(e) = tunnel.send_binary(&DATAGRAM_ACCEPTED).await {
        return debug!("answering the preamble failed: {e}");
    }
    let what = format!("{from} -> azbridge port -> {target}");
    let mut counts = (0u64, 0u64);
    let ended = carry_datagrams(tunnel, &socket, &tally, &mut counts, force).await;
    let moved = format!("{}; datagrams in {}, out {}", tally.moved(), counts.0, counts.1);
    ended.report(&what, &moved, &tally);
}

/// Carries length-prefixed datagrams from `tunnel` to `socket` and the socket's
/// datagrams back, counting them in `counts` (to the target, from it), and says goodbye.
async fn carry_datagrams(
    tunnel: Tunnel,
    socket: &UdpSocket,
    tally: &Tally,
    counts: &mut (u64, u64),
    force: &CancellationToken,
) -> Ended {
    let (mut reader, writer, mut pending) = tunnel.into_parts();
    let writer = Mutex::new(writer);
    let (to_target, from_target) = (&mut counts.0, &mut counts.1);
    let ended = {
        let down = async {
            let mut unframer = Unframer::default();
            let mut piece = vec![0; READ_PIECE];
            loop {
                let header = match pending.take() {
                    Some(h) => h,
                    None => match reader.header().await {
                        Ok(Some(h)) => h,
                        Ok(None) => return Ended::Lost(io::ErrorKind::UnexpectedEof.into()),
                        Err(e) => return Ended::Lost(e),
                    },
                };
                let control = match header.opcode {
                    OpCode::Ping | OpCode::Pong | OpCode::Close => match reader.control_payload().await {
                        Ok(payload) => Some(payload),
                        Err(e) => return Ended::Lost(e),
                    },
                    _ => None,
                };
                match (header.opcode, control) {
                    (OpCode::Ping, Some(payload)) => {
                        if let Err(e) = writer.lock().await.send(OpCode::Pong, &payload).await {
                            return Ended::Lost(e);
                        }
                    }
                    (OpCode::Close, Some(payload)) => {
                        if unframer.partial() > 0 {
                            debug!("the sender closed mid-datagram; {} bytes dropped", unframer.partial());
                        }
                        let frame = CloseFrame::parse(&payload).ok().flatten();
                        return Ended::Closed(frame.map_or(close::NORMAL, |f| f.code), String::new());
                    }
                    (_, Some(_)) => {}
                    (_, None) => {
                        while reader.remaining() > 0 {
                            let n = match reader.payload(&mut piece).await {
                                Ok(n) => n,
                                Err(e) => return Ended::Lost(e),
                            };
                            unframer.push(&piece[..n]);
                            while let Some(d) = unframer.next() {
                                match socket.send(&d).await {
                                    Ok(_) => {
                                        tally.inn(d.len());
                                        *to_target += 1;
                                    }
                                    Err(e) => debug!("a datagram to the target was lost: {e}"),
                                }
                            }
                        }
                    }
                }
            }
        };
        let up = async {
            let at = MAX_HEADER_LEN + 2;
            let mut buf = vec![0; at + MAX_DATAGRAM];
            loop {
                let n = match socket.recv(&mut buf[at..]).await {
                    Ok(n) => n,
                    // Nothing listens at the target (yet): what is sent is lost, as UDP goes.
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                    Err(e) => return Ended::Local(e),
                };
                let len = u16::try_from(n).unwrap_or(u16::MAX);
                buf[MAX_HEADER_LEN..at].copy_from_slice(&len.to_be_bytes());
                if let Err(e) = send_in_place(&mut *writer.lock().await, &mut buf, 2 + usize::from(len)).await {
                    return Ended::Lost(e);
                }
                tally.out(n);
                *from_target += 1;
            }
        };
        tokio::select! {
            why = down => why,
            why = up => why,
            () = force.cancelled() => Ended::Stopping,
        }
    };
    if let Some(frame) = ended.goodbye() {
        let mut writer = writer.into_inner();
        let _ = tokio::time::timeout(super::tunnel::GOODBYE_TIMEOUT, writer.send_close(Some(&frame))).await;
    }
    ended
}

/// `hyco connect --azbridge-port NAME`: sends the preamble on a fresh `tunnel` and
/// checks the listener's answer; the error says what the listener meant.
pub(super) async fn greet(tunnel: &mut Tunnel, name: &str) -> Result<(), String> {
    tunnel.send_binary(&preamble(name)?).await.map_err(|e| format!("sending the azbridge preamble failed: {e}"))?;
    match read_answer(tunnel).await {
        Ok(answer) => answer_text(&answer, name),
        Err(why) => Err(format!("the azbridge listener has no port {name:?} or refused it ({why})")),
    }
}

/// Reads a sender's whole preamble from `tunnel` (across frames, none past it).
pub(super) async fn read_preamble(tunnel: &mut Tunnel) -> Result<Vec<u8>, String> {
    let read = async {
        let mut got = Vec::new();
        loop {
            got.extend(tunnel.read_data_frame(MAX_PREAMBLE).await?);
            let want = got.get(3).map(|&len| 4 + usize::from(len));
            match want {
                Some(want) if got.len() > want => return Err("data before the preamble was answered".to_owned()),
                Some(want) if got.len() == want => return Ok(got),
                _ if got.len() > MAX_PREAMBLE => return Err("a preamble over 259 bytes".to_owned()),
                _ => {}
            }
        }
    };
    tokio::time::timeout(PREAMBLE_TIMEOUT, read).await.map_err(|_| "no preamble in time".to_owned())?
}

/// Reads the listener's 3-byte answer from `tunnel`.
pub(super) async fn read_answer(tunnel: &mut Tunnel) -> Result<[u8; 3], String> {
    let read = async {
        let mut got = Vec::new();
        while got.len() < 3 {
            got.extend(tunnel.read_data_frame(3).await?);
        }
        <[u8; 3]>::try_from(got.as_slice()).map_err(|_| "data after the preamble's answer".to_owned())
    };
    match tokio::time::timeout(PREAMBLE_TIMEOUT, read).await {
        Ok(r) => r,
        Err(_) => Err("no answer to the preamble in time".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preambles_and_decisions_as_azbridge_has_them() {
        assert_eq!(preamble("22").unwrap(), [1, 0, 0, 2, b'2', b'2']);
        assert!(preamble(&"x".repeat(256)).is_err());
        let one = Targets::parse(&["127.0.0.1:22"]).unwrap();
        assert_eq!(decide(&[1, 0, 0, 2, b'2', b'2'], &one), Decision::Target("127.0.0.1:22".into()));
        assert!(matches!(decide(&[1, 0, 0, 3, b's', b's', b'h'], &one), Decision::Close(_)), "a name, one target");
        let named = Targets::parse(&["ssh=127.0.0.1:22", "dns=udp://127.0.0.1:53"]).unwrap();
        assert_eq!(decide(&[1, 0, 0, 3, b's', b's', b'h'], &named), Decision::Target("127.0.0.1:22".into()));
        assert!(
            matches!(decide(&[1, 0, 0, 2, b'2', b'2'], &named), Decision::Close(_)),
            "numbers pick only a lone target"
        );
        assert!(matches!(decide(&[1, 0, 0, 3, b'd', b'n', b's'], &named), Decision::Refuse(NOT_DATAGRAM, _)));
        assert_eq!(decide(&[1, 0, 1, 3, b'd', b'n', b's'], &named), Decision::Datagram("udp://127.0.0.1:53".into()));
        assert!(matches!(decide(&[1, 0, 1, 3, b's', b's', b'h'], &named), Decision::Refuse(MODE_MISMATCH, _)));
        assert!(matches!(decide(&[2, 0, 0, 0], &named), Decision::Refuse(BAD_VERSION, _)));
        assert_eq!(answer_text(&ACCEPTED, "x"), Ok(()));
        for (answer, says) in [(BAD_VERSION, "version"), (NOT_DATAGRAM, "UDP"), (MODE_MISMATCH, "mode")] {
            assert!(answer_text(&answer, "x").unwrap_err().contains(says));
        }
    }

    #[test]
    fn datagrams_come_out_whole_whatever_the_pieces() {
        let stream: Vec<u8> = [&b""[..], b"a", &[7; 300]]
            .iter()
            .flat_map(|d| [&u16::try_from(d.len()).unwrap().to_be_bytes()[..], d].concat())
            .collect();
        for piece in [1, 2, 3, 7, stream.len()] {
            let mut unframer = Unframer::default();
            let mut got = Vec::new();
            for chunk in stream.chunks(piece) {
                unframer.push(chunk);
                got.extend(std::iter::from_fn(|| unframer.next()));
            }
            assert_eq!(got, [vec![], b"a".to_vec(), vec![7; 300]], "pieces of {piece}");
            assert_eq!(unframer.partial(), 0);
        }
    }
}
