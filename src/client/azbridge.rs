//! The in-band preamble of azbridge (Microsoft's Azure Relay Bridge), so that hyco and
//! azbridge can stand on either side of one hybrid connection (docs/protocol.md 10.3).
//!
//! Every azbridge stream starts with the sender's `01 00 MODE LEN NAME` (version 1.0, mode
//! 0 stream or 1 datagram, the port name in UTF-8); the listener answers `01 00 MODE` and
//! the bytes flow, or answers `00 00 00` (a version it does not speak), `00 00 01` (a
//! stream for a datagram port), `00 00 FF` (a datagram for a stream port) and closes, or
//! closes at once for a name it does not have. `hyco listen --azbridge` plays azbridge's
//! listener (`-T`), `hyco connect --azbridge-port NAME` its sender (`-L`). Datagram mode
//! is not spoken: a datagram sender is answered `00 00 FF`.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::pump::{self, LocalSide};
use super::target::{Targets, connect_target, is_udp};
use super::tunnel::Tunnel;
use crate::protocol::close;
use crate::status::{Stats, Tally};
use crate::ws::frame::CloseFrame;

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
        (_, DATAGRAM) => {
            Decision::Refuse(MODE_MISMATCH, format!("azbridge datagram mode for port {name:?} is not spoken"))
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
    let tcp = match force.run_until_cancelled(connect_target(&target, connect_timeout)).await {
        Some(Ok(tcp)) => tcp,
        Some(Err((_, text))) => {
            warn!("{from} -> {target}: tunnel aborted: {text}");
            tally.failed();
            return tunnel.goodbye(&CloseFrame::new(close::INTERNAL_ERROR, text)).await;
        }
        None => return,
    };
    if let Err(e) = tunnel.send_binary(&ACCEPTED).await {
        debug!("answering the preamble failed: {e}");
        return crate::net::reset(tcp);
    }
    let what = format!("{from} -> azbridge port -> {target}");
    pump::pump_tcp(tcp, tunnel, tally, LocalSide::Target, &what, force).await;
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
        assert!(matches!(decide(&[1, 0, 1, 3, b's', b's', b'h'], &named), Decision::Refuse(MODE_MISMATCH, _)));
        assert!(matches!(decide(&[2, 0, 0, 0], &named), Decision::Refuse(BAD_VERSION, _)));
        assert_eq!(answer_text(&ACCEPTED, "x"), Ok(()));
        for (answer, says) in [(BAD_VERSION, "version"), (NOT_DATAGRAM, "UDP"), (MODE_MISMATCH, "mode")] {
            assert!(answer_text(&answer, "x").unwrap_err().contains(says));
        }
    }
}
