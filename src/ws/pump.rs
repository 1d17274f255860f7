//! The pump: moves bytes between a local byte stream (a TCP connection, stdin/stdout) and
//! the frames of a tunnel's WebSocket, in both directions at once, in either role: a
//! client's end of a tunnel (`client::pump`) and the relay's end of a public port's
//! tunnel (`relay::public`). It does not open, start or close tunnels other than by
//! ending them.
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
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::chunk::Chunk;
use super::frame::{CloseFrame, FrameError, FrameHeader, MAX_HEADER_LEN, OpCode};
use super::stream::{FrameReader, FrameWriter, try_read};
use crate::protocol::close;

/// Bytes read from the local side into one frame while the tunnel is quiet, into a
/// buffer the pump keeps (and the most *start* carries, docs/protocol.md 10.1). A read
/// that fills it means data is flowing: the pump then reads into a borrowed [`Chunk`]
/// for as long as the local side has more at hand.
pub const QUIET_READ: usize = 2 * 1024;

/// A tunnel end that has sent nothing for this long sends a Ping, which the other end
/// answers (docs/protocol.md 5.3): relays and the networks between drop connections that
/// stay silent (Azure Relay after about 4 minutes), and a tunnel must outlive an idle ssh
/// session.
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(60);

/// Where the pump counts the payload bytes it moves.
pub trait Meter {
    /// Bytes read locally and sent into the tunnel.
    fn out(&self, n: usize);
    /// Bytes from the tunnel written locally.
    fn inn(&self, n: usize);
}

/// Counts nothing.
impl Meter for () {
    fn out(&self, _: usize) {}
    fn inn(&self, _: usize) {}
}

/// Why a tunnel was aborted: the local side must see an error.
#[derive(Debug)]
pub enum PumpError {
    /// Reading from or writing to the local side failed.
    Local(io::Error),
    /// The tunnel's WebSocket broke.
    RelayLost(io::Error),
    /// The tunnel's WebSocket ended without a Close.
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

/// Pumps `local` (read and write halves) against a tunnel's WebSocket (`reader`, `writer`,
/// and a data frame whose header `reader` has given already) until both directions end
/// (`Ok`: every byte was delivered), one aborts, or `cancel` fires (an abort). Bytes are
/// counted in `meter`.
pub async fn pump<LR, LW, R, W>(
    mut local_read: LR,
    mut local_write: LW,
    (mut reader, writer, pending): (FrameReader<R>, FrameWriter<W>, Option<FrameHeader>),
    meter: &impl Meter,
    keepalive: Option<Duration>,
    cancel: &CancellationToken,
) -> Result<(), PumpError>
where
    LR: AsyncRead + Unpin,
    LW: AsyncWrite + Unpin,
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let writer = Mutex::new(writer);
    // Frames this end has sent, for the keepalive.
    let sent = AtomicU64::new(0);
    let outcome = {
        let up = upstream(&mut local_read, &writer, meter, &sent);
        let down = downstream(&mut reader, pending, &mut local_write, &writer, meter, &sent);
        let pings = async {
            match keepalive {
                Some(every) => pings(every, &sent, &writer).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(up, down, pings);
        let (mut up_done, mut down_done) = (false, false);
        loop {
            tokio::select! {
                // After our Close nothing more may be sent.
                e = &mut pings, if !up_done => break Err(PumpError::RelayLost(e)),
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

/// Keeps a quiet tunnel end alive: every `every`, if this end sent no frame in the whole
/// interval (`sent` counts them: whoever sends adds to it), it sends an empty Ping; a
/// writer in use is not idle, so a busy one is skipped. Runs until sending fails, with
/// that error. Shared by the pump and datagram sessions.
pub(crate) async fn pings<W: AsyncWrite + Unpin>(
    every: Duration,
    sent: &AtomicU64,
    writer: &Mutex<FrameWriter<W>>,
) -> io::Error {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let mut seen = 0;
    loop {
        ticker.tick().await;
        if sent.load(Ordering::Relaxed) == seen
            && let Ok(mut w) = writer.try_lock()
        {
            if let Err(e) = w.send(OpCode::Ping, &[]).await.and(w.flush().await) {
                return e;
            }
            sent.fetch_add(1, Ordering::Relaxed);
        }
        seen = sent.load(Ordering::Relaxed);
    }
}

/// Why *start* could not be sent.
#[derive(Debug)]
pub enum StartError {
    /// Reading what the local connection had already sent failed.
    Local(io::Error),
    /// Writing to the tunnel failed.
    Tunnel(io::Error),
}

/// Sends *start* (docs/protocol.md 10.1) on `writer`: what the local connection has
/// already sent (up to [`QUIET_READ`] bytes, read with `try_read`, which does not wait)
/// or an empty binary frame. Returns the bytes sent. (Its buffer
/// lives only for this call, not for the tunnel's life.)
pub async fn send_start<W: AsyncWrite + Unpin>(
    writer: &mut FrameWriter<W>,
    try_read: impl FnOnce(&mut [u8]) -> io::Result<usize>,
) -> Result<usize, StartError> {
    let mut first = [0; MAX_HEADER_LEN + QUIET_READ];
    let n = match try_read(&mut first[MAX_HEADER_LEN..]) {
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
        Err(e) => return Err(StartError::Local(e)),
    };
    let header = FrameHeader { fin: true, opcode: OpCode::Binary, mask: None, len: n as u64 };
    writer.send_with_header(header, &mut first, n).await.map(|()| n).map_err(StartError::Tunnel)
}

/// Local bytes into binary frames; local EOF becomes Close 1000.
async fn upstream<LR, W>(
    local: &mut LR,
    writer: &Mutex<FrameWriter<W>>,
    meter: &impl Meter,
    sent: &AtomicU64,
) -> Result<(), PumpError>
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
        sent.fetch_add(1, Ordering::Relaxed);
        meter.out(n);
        if flowing.is_none() && n == QUIET_READ {
            flowing = Some(Chunk::large());
        }
    }
}

/// Frames from the tunnel to local bytes; Close 1000 shuts the local write side.
async fn downstream<R, LW, W>(
    reader: &mut FrameReader<R>,
    mut pending: Option<FrameHeader>,
    local: &mut LW,
    writer: &Mutex<FrameWriter<W>>,
    meter: &impl Meter,
    sent: &AtomicU64,
) -> Result<(), PumpError>
where
    R: AsyncRead + Unpin,
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
                    meter.inn(n);
                }
            }
            OpCode::Ping => {
                let payload = reader.control_payload().await.map_err(RelayLost)?;
                writer.lock().await.send(OpCode::Pong, &payload).await.map_err(RelayLost)?;
                sent.fetch_add(1, Ordering::Relaxed);
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
    use crate::ws::stream::Role;

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

    /// Runs a pump for `for_ms` with a keepalive of `every_ms`, its local side fed by
    /// `feed` (true: a write every 20 ms, false: silence); the Pings the far end saw.
    async fn pings_seen(feed: bool, every_ms: u64, for_ms: u64) -> usize {
        use tokio::io::{AsyncWriteExt, duplex, split};
        let (local, mut app) = duplex(1 << 16);
        let (near, far) = duplex(1 << 20);
        let (lr, lw) = split(local);
        let (nr, nw) = split(near);
        let parts = (FrameReader::new(nr, &[], Role::Client), FrameWriter::new(nw, Role::Client), None);
        let cancel = CancellationToken::new();
        let keepalive = Some(Duration::from_millis(every_ms));
        let pumping = tokio::spawn(async move { pump(lr, lw, parts, &(), keepalive, &cancel).await });
        let (fr, _fw) = split(far);
        let mut far = FrameReader::new(fr, &[], Role::Server);
        let counting = tokio::spawn(async move {
            let mut pings = 0;
            while let Ok(Some(h)) = far.header().await {
                if h.opcode == OpCode::Ping {
                    pings += 1;
                }
                let mut sink = vec![0; 4096];
                while far.remaining() > 0 {
                    if far.payload(&mut sink).await.is_err() {
                        return pings;
                    }
                }
            }
            pings
        });
        let started = tokio::time::Instant::now();
        while started.elapsed() < Duration::from_millis(for_ms) {
            if feed {
                app.write_all(b"busy").await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        pumping.abort();
        let _ = pumping.await;
        counting.await.unwrap()
    }

    #[tokio::test]
    async fn a_silent_end_pings_and_a_busy_one_does_not() {
        assert!(pings_seen(false, 100, 550).await >= 3, "a silent tunnel is kept alive");
        assert_eq!(pings_seen(true, 100, 550).await, 0, "a busy tunnel sends no extra frame");
    }
}
