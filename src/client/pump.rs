//! The pump: moves bytes between a local byte stream (a TCP connection, or stdin/stdout)
//! and a [`Tunnel`], in both directions at once. It does not open, start or close
//! tunnels other than by ending them ([`super::tunnel`] does that).
//!
//! Bytes travel as binary frames. Each direction ends on its own: a local EOF sends a
//! Close 1000 and the other direction goes on (TCP half-close, end to end); a Close
//! 1000 from the tunnel shuts the local write side. Anything else (a Close with another
//! code, the tunnel vanishing, a local read error) is an abort, a [`PumpError`], which
//! the caller turns into a TCP reset or a non-zero exit: a dropped tunnel never looks
//! like a clean end. A quiet tunnel holds a 2 KiB read buffer; payload buffers
//! ([`Chunk`]) are borrowed while data flows. A slow reader on either side slows the
//! writer.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::tunnel::{QUIET_READ, Tunnel, WsRead};
use crate::protocol::close;
use crate::status::{Stats, Tally};
use crate::ws::chunk::Chunk;
use crate::ws::frame::{CloseFrame, FrameError, FrameHeader, MAX_HEADER_LEN, OpCode};
use crate::ws::stream::{FrameReader, FrameWriter, try_read};

/// Why a tunnel was aborted: the local side must see an error.
#[derive(Debug)]
pub(super) enum PumpError {
    /// Reading from or writing to the local side failed.
    Local(io::Error),
    /// The connection to the relay broke.
    RelayLost(io::Error),
    /// The connection to the relay ended without a Close.
    RelayGone,
    /// The other side closed the tunnel with a code other than 1000.
    Closed { code: u16, reason: String },
    /// The other side's Close frame was malformed.
    BadClose(FrameError),
    /// The command is stopping.
    ShuttingDown,
}

impl fmt::Display for PumpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local(e) => write!(f, "local connection failed: {e}"),
            Self::RelayLost(e) => write!(f, "relay connection lost: {e}"),
            Self::RelayGone => f.write_str("relay connection lost without a close"),
            Self::Closed { code, reason } if reason.is_empty() => write!(f, "tunnel closed with code {code}"),
            Self::Closed { code, reason } => write!(f, "tunnel closed with code {code}: {reason}"),
            Self::BadClose(e) => write!(f, "tunnel closed with a malformed close frame: {e}"),
            Self::ShuttingDown => f.write_str("shutting down"),
        }
    }
}

impl std::error::Error for PumpError {}

/// Pumps `local` (read and write halves) against `tunnel` until both directions end
/// (`Ok`: every byte was delivered), one aborts, or `cancel` fires (an abort). Bytes are
/// counted in `tally`.
pub(super) async fn pump<LR, LW>(
    mut local_read: LR,
    mut local_write: LW,
    tunnel: Tunnel,
    tally: &Tally,
    cancel: &CancellationToken,
) -> Result<(), PumpError>
where
    LR: AsyncRead + Unpin,
    LW: AsyncWrite + Unpin,
{
    let (mut reader, writer, pending) = tunnel.into_parts();
    let writer = Mutex::new(writer);

    let outcome = {
        let up = upstream(&mut local_read, &writer, tally);
        let down = downstream(&mut reader, pending, &mut local_write, &writer, tally);
        tokio::pin!(up, down);
        let (mut up_done, mut down_done) = (false, false);
        loop {
            tokio::select! {
                r = &mut up, if !up_done => match r {
                    Ok(()) => up_done = true,
                    Err(why) => break Err(why),
                },
                r = &mut down, if !down_done => match r {
                    Ok(()) => down_done = true,
                    Err(why) => break Err(why),
                },
                () = cancel.cancelled() => break Err(PumpError::ShuttingDown),
            }
            if up_done && down_done {
                break Ok(());
            }
        }
    };
    // `up` and `down` were dropped with the block above, so the writer is free even if
    // one was stalled mid-write holding it. A frame cut short by an abort would make a
    // Close unreadable, so only the clean end gets a polite goodbye.
    if outcome.is_ok() {
        let _ = writer.lock().await.shutdown().await;
    }
    outcome
}

/// Whose connection is the local side of a tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum LocalSide {
    /// A local client of `hyco connect`: its going away mid-tunnel is its choice (a
    /// cancelled download), not a failure.
    Client,
    /// A listener's target.
    Target,
}

/// Pumps a local TCP connection against `tunnel`, counting it in `tally`, and logs one
/// line when it ends: `what` (who to where), bytes each way, duration, and how it ended.
/// An aborted tunnel is counted as failed and resets the TCP connection, so its
/// application sees an error.
pub(super) async fn pump_tcp(
    mut tcp: TcpStream,
    tunnel: Tunnel,
    tally: Tally,
    side: LocalSide,
    what: &str,
    cancel: &CancellationToken,
) {
    let (read, write) = tcp.split();
    let outcome = pump(read, write, tunnel, &tally, cancel).await;
    let moved = tally.moved();
    match outcome {
        Ok(()) => info!("{what}: {moved}; closed"),
        Err(PumpError::ShuttingDown) => {
            info!("{what}: {moved}; cut short at shutdown");
            crate::net::reset(tcp);
        }
        Err(PumpError::Local(e)) if side == LocalSide::Client => {
            info!("{what}: {moved}; cancelled by the local client ({e})");
            crate::net::reset(tcp);
        }
        Err(why) => {
            tally.failed();
            warn!("{what}: {moved}; tunnel aborted: {why}");
            crate::net::reset(tcp);
        }
    }
}

/// Standard output for `connect --stdio`: once its reader has gone (a broken pipe: ssh
/// closes the pipes of its ProxyCommand as it exits, and the other side may still be
/// sending its last bytes), the rest is discarded, so that the tunnel ends as stdin and
/// the other side say rather than as an abort.
pub(super) struct Stdout {
    out: tokio::io::Stdout,
    gone: bool,
}

impl Stdout {
    pub(super) fn new() -> Self {
        Self { out: tokio::io::stdout(), gone: false }
    }

    /// `Ok` in place of a broken pipe, from now on.
    fn absorb<T>(&mut self, result: io::Result<T>, done: T) -> io::Result<T> {
        match result {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                debug!("stdout was closed; discarding what still arrives");
                self.gone = true;
                Ok(done)
            }
            other => other,
        }
    }
}

impl AsyncWrite for Stdout {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.gone {
            return Poll::Ready(Ok(buf.len()));
        }
        let result = std::task::ready!(Pin::new(&mut self.out).poll_write(cx, buf));
        Poll::Ready(self.absorb(result, buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.gone {
            return Poll::Ready(Ok(()));
        }
        let result = std::task::ready!(Pin::new(&mut self.out).poll_flush(cx));
        Poll::Ready(self.absorb(result, ()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.gone {
            return Poll::Ready(Ok(()));
        }
        let result = std::task::ready!(Pin::new(&mut self.out).poll_shutdown(cx));
        Poll::Ready(self.absorb(result, ()))
    }
}

/// Graceful shutdown's second half, for `listen` and `connect`: lets the live tunnels on
/// `tunnels` finish for up to `bound`, saying so in the log and on the status line, then
/// closes the rest (`force`).
pub(super) async fn drain(tunnels: &TaskTracker, stats: &Stats, bound: Duration, force: &CancellationToken) {
    tunnels.close();
    let live = stats.active.load(Ordering::Relaxed);
    if live > 0 {
        let secs = bound.as_secs();
        info!("stopping: letting {live} live tunnel(s) finish, for up to {secs} s; Ctrl-C again to stop at once");
        stats.set_note(Some(format!("stopping: live tunnels may finish for up to {secs} s (Ctrl-C again to force)")));
    }
    if tokio::time::timeout(bound, tunnels.wait()).await.is_err() {
        let live = stats.active.load(Ordering::Relaxed);
        info!("closing the {live} tunnel(s) still live after {} s", bound.as_secs());
        force.cancel();
        tunnels.wait().await;
    }
}

/// Local bytes into binary frames; local EOF becomes Close 1000.
async fn upstream<LR, W>(local: &mut LR, writer: &Mutex<FrameWriter<W>>, tally: &Tally) -> Result<(), PumpError>
where
    LR: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut quiet = [0; MAX_HEADER_LEN + QUIET_READ];
    let mut flowing: Option<Chunk> = None;
    loop {
        let read = match &mut flowing {
            Some(chunk) => match try_read(local, &mut chunk[MAX_HEADER_LEN..]).await {
                Some(read) => read,
                None => {
                    // Nothing more at hand: give the chunk back and wait with the small buffer.
                    flowing = None;
                    continue;
                }
            },
            None => local.read(&mut quiet[MAX_HEADER_LEN..]).await,
        };
        let n = match read {
            Ok(n) => n,
            Err(e) => {
                let mut w = writer.lock().await;
                let _ = w.send_close(Some(&CloseFrame::new(close::INTERNAL_ERROR, "local connection failed"))).await;
                return Err(PumpError::Local(e));
            }
        };
        if n == 0 {
            // Goodbyes wait their turn: a connection opened just after this one closed
            // should not queue behind its teardown.
            tokio::task::yield_now().await;
            let mut w = writer.lock().await;
            return w.send_close(Some(&CloseFrame::new(close::NORMAL, ""))).await.map_err(PumpError::RelayLost);
        }
        let mut w = writer.lock().await;
        let buf: &mut [u8] = match &mut flowing {
            Some(chunk) => chunk,
            None => &mut quiet,
        };
        let header = FrameHeader { fin: true, opcode: OpCode::Binary, mask: None, len: n as u64 };
        w.send_with_header(header, buf, n).await.map_err(PumpError::RelayLost)?;
        w.flush().await.map_err(PumpError::RelayLost)?;
        tally.out(n);
        if flowing.is_none() && n == QUIET_READ {
            flowing = Some(Chunk::large());
        }
    }
}

/// Frames from the tunnel to local bytes; Close 1000 shuts the local write side.
async fn downstream<LW, W>(
    reader: &mut FrameReader<WsRead>,
    mut pending: Option<FrameHeader>,
    local: &mut LW,
    writer: &Mutex<FrameWriter<W>>,
    tally: &Tally,
) -> Result<(), PumpError>
where
    LW: AsyncWrite + Unpin,
    W: AsyncWrite + Unpin,
{
    use PumpError::{Local, RelayLost};
    loop {
        let header = match pending.take() {
            Some(header) => header,
            None => match reader.header().await.map_err(RelayLost)? {
                Some(header) => header,
                None => return Err(PumpError::RelayGone),
            },
        };
        match header.opcode {
            OpCode::Binary | OpCode::Text | OpCode::Continuation => {
                let mut buf = None;
                while reader.remaining() > 0 {
                    let buf = buf.get_or_insert_with(|| Chunk::for_frame(header.len));
                    let n = reader.payload(buf).await.map_err(RelayLost)?;
                    local.write_all(&buf[..n]).await.map_err(Local)?;
                    tally.inn(n);
                }
            }
            OpCode::Ping => {
                let payload = reader.control_payload().await.map_err(RelayLost)?;
                writer.lock().await.send(OpCode::Pong, &payload).await.map_err(RelayLost)?;
            }
            OpCode::Pong => {
                reader.control_payload().await.map_err(RelayLost)?;
            }
            OpCode::Close => {
                let payload = reader.control_payload().await.map_err(RelayLost)?;
                tokio::task::yield_now().await; // teardown after other tunnels' data
                return match CloseFrame::parse(&payload) {
                    Ok(None) => finish_local(local).await,
                    Ok(Some(c)) if c.code == close::NORMAL => finish_local(local).await,
                    Ok(Some(c)) => Err(PumpError::Closed { code: c.code, reason: c.reason }),
                    Err(e) => Err(PumpError::BadClose(e)),
                };
            }
        }
        local.flush().await.map_err(Local)?;
    }
}

async fn finish_local<LW: AsyncWrite + Unpin>(local: &mut LW) -> Result<(), PumpError> {
    local.flush().await.map_err(PumpError::Local)?;
    // The peer may have gone already; its write side ending is what matters here.
    let _ = local.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abort_texts_say_what_broke() {
        let refused = PumpError::Closed { code: 1011, reason: "Connection to 127.0.0.1:9 refused".into() };
        assert_eq!(refused.to_string(), "tunnel closed with code 1011: Connection to 127.0.0.1:9 refused");
        assert_eq!(PumpError::Closed { code: 1001, reason: String::new() }.to_string(), "tunnel closed with code 1001");
        assert_eq!(PumpError::RelayGone.to_string(), "relay connection lost without a close");
        assert_eq!(
            PumpError::BadClose(FrameError::BadClosePayload).to_string().split(':').next(),
            Some("tunnel closed with a malformed close frame")
        );
        assert_eq!(PumpError::ShuttingDown.to_string(), "shutting down");
        let local = PumpError::Local(io::Error::from(io::ErrorKind::BrokenPipe));
        assert!(local.to_string().starts_with("local connection failed: "), "{local}");
    }
}
