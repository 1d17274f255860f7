//! Pumps bytes between a local byte stream (a TCP connection, or stdin/stdout) and a
//! tunnel WebSocket, in both directions at once.
//!
//! Bytes travel as binary frames. Each direction ends on its own: a local EOF sends a
//! Close 1000 and the other direction goes on (TCP half-close, end to end); a Close
//! 1000 from the tunnel shuts the local write side. Anything else (a Close with another
//! code, the tunnel vanishing, a local read error) is an abort, which the caller turns
//! into a TCP reset or a non-zero exit: a dropped tunnel never looks like a clean end.
//! A quiet tunnel holds a 2 KiB read buffer; payload buffers ([`Chunk`]) are borrowed
//! while data flows. A slow reader on either side slows the writer.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::net::{ClientStream, ReadPart, WritePart};
use crate::protocol::close;
use crate::ws::chunk::Chunk;
use crate::ws::frame::{CloseFrame, FrameHeader, MAX_HEADER_LEN, OpCode};
use crate::ws::stream::{FrameReader, FrameWriter, Role, try_read};

/// The tunnel's read half.
pub type WsRead = ReadPart<tokio_rustls::client::TlsStream<TcpStream>>;
/// The tunnel's write half.
pub type WsWrite = WritePart<tokio_rustls::client::TlsStream<TcpStream>>;

/// An open tunnel WebSocket (client role), split into its frame reader and writer.
pub struct Tunnel {
    pub reader: FrameReader<WsRead>,
    pub writer: FrameWriter<WsWrite>,
    /// A data frame whose header has been read but whose payload has not: the pump
    /// delivers it first.
    pub pending: Option<FrameHeader>,
}

impl Tunnel {
    /// `initial` holds bytes that arrived after the 101 response.
    pub fn new(ws: ClientStream, initial: &[u8]) -> Self {
        let (read, write) = ws.split();
        Self {
            reader: FrameReader::new(read, initial, Role::Client),
            writer: FrameWriter::new(write, Role::Client),
            pending: None,
        }
    }

    /// Sends `frame` as the tunnel's last word, for at most [`GOODBYE_TIMEOUT`]; errors
    /// are ignored, the tunnel being over.
    pub async fn goodbye(&mut self, frame: &CloseFrame) {
        let _ = tokio::time::timeout(GOODBYE_TIMEOUT, self.writer.send_close(Some(frame))).await;
    }
}

/// The longest a client spends sending a Close: a peer that stopped reading does not
/// hold up the end of a tunnel (or of a control channel).
pub const GOODBYE_TIMEOUT: Duration = Duration::from_secs(2);

/// Bytes read from the local side into one frame while the tunnel is quiet, into a
/// buffer the tunnel keeps. A read that fills it means data is flowing: reads then go to
/// a borrowed [`Chunk`] for as long as the local side has more at hand.
pub const QUIET_READ: usize = 2 * 1024;

/// Counters shared by all tunnels of one command, for the status line and logs.
#[derive(Debug)]
pub struct Stats {
    /// Live control channels (`hyco listen`); tests and the status line watch it.
    pub channels: tokio::sync::watch::Sender<usize>,
    pub active: AtomicU64,
    pub total: AtomicU64,
    pub failed: AtomicU64,
    /// Bytes from the local side into the tunnel.
    pub bytes_out: AtomicU64,
    /// Bytes from the tunnel to the local side.
    pub bytes_in: AtomicU64,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            channels: tokio::sync::watch::channel(0).0,
            active: AtomicU64::new(0),
            total: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
        }
    }
}

/// Marks a tunnel active for as long as it lives.
pub struct ActiveGuard(Arc<Stats>);

impl ActiveGuard {
    pub fn new(stats: Arc<Stats>) -> Self {
        stats.active.fetch_add(1, Ordering::Relaxed);
        stats.total.fetch_add(1, Ordering::Relaxed);
        Self(stats)
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How a tunnel ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Both sides closed normally; every byte was delivered.
    Clean,
    /// The tunnel broke; the local side must see an error.
    Aborted(String),
}

/// Pumps `local` (read and write halves) against `tunnel` until both directions end, one
/// aborts, or `cancel` fires (an abort).
pub async fn pump<LR, LW>(
    mut local_read: LR,
    mut local_write: LW,
    tunnel: Tunnel,
    stats: &Stats,
    cancel: &CancellationToken,
) -> Outcome
where
    LR: AsyncRead + Unpin,
    LW: AsyncWrite + Unpin,
{
    let Tunnel { mut reader, writer, pending } = tunnel;
    let writer = Mutex::new(writer);

    let outcome = {
        let up = upstream(&mut local_read, &writer, stats);
        let down = downstream(&mut reader, pending, &mut local_write, &writer, stats);
        tokio::pin!(up, down);
        let (mut up_done, mut down_done) = (false, false);
        loop {
            tokio::select! {
                r = &mut up, if !up_done => match r {
                    Ok(()) => up_done = true,
                    Err(why) => break Outcome::Aborted(why),
                },
                r = &mut down, if !down_done => match r {
                    Ok(()) => down_done = true,
                    Err(why) => break Outcome::Aborted(why),
                },
                () = cancel.cancelled() => break Outcome::Aborted("shutting down".into()),
            }
            if up_done && down_done {
                break Outcome::Clean;
            }
        }
    };
    // `up` and `down` were dropped with the block above, so the writer is free even if
    // one was stalled mid-write holding it. A frame cut short by an abort would make a
    // Close unreadable, so only the clean end gets a polite goodbye.
    if outcome == Outcome::Clean {
        let _ = writer.lock().await.shutdown().await;
    }
    outcome
}

/// Pumps a local TCP connection against `tunnel`, counting it in `stats`; an aborted
/// tunnel resets the TCP connection, so its application sees an error.
pub async fn pump_tcp(mut tcp: TcpStream, tunnel: Tunnel, stats: &Arc<Stats>, cancel: &CancellationToken) -> Outcome {
    let _active = ActiveGuard::new(stats.clone());
    let (read, write) = tcp.split();
    let outcome = pump(read, write, tunnel, stats, cancel).await;
    match &outcome {
        Outcome::Clean => debug!("tunnel closed"),
        Outcome::Aborted(why) => {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            warn!("tunnel aborted: {why}");
            crate::net::reset(tcp);
        }
    }
    outcome
}

/// Local bytes into binary frames; local EOF becomes Close 1000.
async fn upstream<LR, W>(local: &mut LR, writer: &Mutex<FrameWriter<W>>, stats: &Stats) -> Result<(), String>
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
                return Err(format!("local connection failed: {e}"));
            }
        };
        if n == 0 {
            // Goodbyes wait their turn: a connection opened just after this one closed
            // should not queue behind its teardown.
            tokio::task::yield_now().await;
            let mut w = writer.lock().await;
            return w
                .send_close(Some(&CloseFrame::new(close::NORMAL, "")))
                .await
                .map_err(|e| format!("relay connection lost: {e}"));
        }
        let mut w = writer.lock().await;
        let buf: &mut [u8] = match &mut flowing {
            Some(chunk) => chunk,
            None => &mut quiet,
        };
        let header = FrameHeader { fin: true, opcode: OpCode::Binary, mask: None, len: n as u64 };
        w.send_with_header(header, buf, n).await.map_err(|e| format!("relay connection lost: {e}"))?;
        w.flush().await.map_err(|e| format!("relay connection lost: {e}"))?;
        stats.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
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
    stats: &Stats,
) -> Result<(), String>
where
    LW: AsyncWrite + Unpin,
    W: AsyncWrite + Unpin,
{
    let lost = |e: io::Error| format!("relay connection lost: {e}");
    loop {
        let header = match pending.take() {
            Some(header) => header,
            None => match reader.header().await.map_err(lost)? {
                Some(header) => header,
                None => return Err("relay connection lost without a close".into()),
            },
        };
        match header.opcode {
            OpCode::Binary | OpCode::Text | OpCode::Continuation => {
                let mut buf = None;
                while reader.remaining() > 0 {
                    let buf = buf.get_or_insert_with(|| Chunk::for_frame(header.len));
                    let n = reader.payload(buf).await.map_err(lost)?;
                    local.write_all(&buf[..n]).await.map_err(|e| format!("local connection failed: {e}"))?;
                    stats.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                }
            }
            OpCode::Ping => {
                let payload = reader.control_payload().await.map_err(lost)?;
                writer.lock().await.send(OpCode::Pong, &payload).await.map_err(lost)?;
            }
            OpCode::Pong => {
                reader.control_payload().await.map_err(lost)?;
            }
            OpCode::Close => {
                let payload = reader.control_payload().await.map_err(lost)?;
                tokio::task::yield_now().await; // teardown after other tunnels' data
                return match CloseFrame::parse(&payload) {
                    Ok(None) => finish_local(local).await,
                    Ok(Some(c)) if c.code == close::NORMAL => finish_local(local).await,
                    Ok(Some(c)) if c.reason.is_empty() => Err(format!("tunnel closed with code {}", c.code)),
                    Ok(Some(c)) => Err(format!("tunnel closed with code {}: {}", c.code, c.reason)),
                    Err(e) => Err(format!("tunnel closed with a malformed close frame: {e}")),
                };
            }
        }
        local.flush().await.map_err(|e| format!("local connection failed: {e}"))?;
    }
}

async fn finish_local<LW: AsyncWrite + Unpin>(local: &mut LW) -> Result<(), String> {
    local.flush().await.map_err(|e| format!("local connection failed: {e}"))?;
    // The peer may have gone already; its write side ending is what matters here.
    let _ = local.shutdown().await;
    Ok(())
}
