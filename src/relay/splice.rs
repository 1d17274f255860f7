//! The splice: joins a sender's WebSocket to a listener's, frame by frame, after the
//! rendezvous, making the two one tunnel. It does not look at what the frames carry.
//!
//! Frames are forwarded as they arrive, payloads in pieces, without reassembling
//! messages: a direction borrows a payload buffer ([`Chunk`]) for one frame and gives it
//! back after, so an idle tunnel holds none and a busy one at most two, whatever the
//! peers send; a slow reader slows the writer. A Close from one side ends only that
//! direction; the tunnel ends when both have closed (half-close, docs/protocol.md 5.3). A
//! side that vanishes without a Close, or breaks the framing rules, ends the tunnel abnormally:
//! the other side gets a 1011 Close, or an abrupt end if it was in the middle of a frame.
//! Data frame payload bytes are added to a counter per direction as they are forwarded.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use crate::net::{MaybeTls, ReadPart, WritePart};
use crate::protocol::close;
use crate::ws::chunk::Chunk;
use crate::ws::frame::{CloseFrame, FrameHeader, MAX_HEADER_LEN, OpCode};
use crate::ws::stream::{FrameReader, FrameWriter, Role};

/// The longest the relay spends saying goodbye to one side of a finished tunnel.
const FINISH_TIMEOUT: Duration = Duration::from_secs(5);

/// How one direction of a tunnel ended.
#[derive(Debug)]
enum End {
    /// The source sent a Close, which was forwarded.
    Closed,
    /// The source vanished or broke the rules (`to_source`: the Close it deserves), or the
    /// destination could not be written.
    Broken { reason: &'static str, to_source: Option<u16> },
}

/// One direction: frames read from `from` are written to `to`.
struct Direction<'a, R, W> {
    from: FrameReader<R>,
    to: FrameWriter<W>,
    /// Whether `to` is inside a frame, so that no Close can be written to it now.
    mid_frame: bool,
    /// Data payload bytes forwarded, counted before each piece is written.
    relayed: &'a AtomicU64,
    /// Frames forwarded in full, either way: the tunnel's sign of life for the idle timeout.
    frames: &'a AtomicU64,
}

impl<'a, R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Direction<'a, R, W> {
    fn new(from: FrameReader<R>, to: FrameWriter<W>, relayed: &'a AtomicU64, frames: &'a AtomicU64) -> Self {
        Self { from, to, mid_frame: false, relayed, frames }
    }

    async fn run(&mut self) -> End {
        loop {
            let header = match self.from.header().await {
                Ok(Some(h)) => h,
                Ok(None) => return End::Broken { reason: "peer connection lost", to_source: None },
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    return End::Broken {
                        reason: "peer broke the framing rules",
                        to_source: Some(close::PROTOCOL_ERROR),
                    };
                }
                Err(_) => return End::Broken { reason: "peer connection lost", to_source: None },
            };
            if header.opcode == OpCode::Close {
                // Teardown after other tunnels' data: a connection opened just after this
                // one closed should not queue behind it.
                tokio::task::yield_now().await;
            }
            match self.forward(header).await {
                Ok(()) if header.opcode == OpCode::Close => return End::Closed,
                Ok(()) => {}
                Err(end) => return end,
            }
        }
    }

    async fn forward(&mut self, header: FrameHeader) -> Result<(), End> {
        let lost_source = |_| End::Broken { reason: "peer connection lost", to_source: None };
        let lost_dest = |_| End::Broken { reason: "peer connection lost", to_source: Some(close::INTERNAL_ERROR) };
        let relayed = (!header.opcode.is_control()).then_some(self.relayed);
        let mut buf = Chunk::for_frame(header.len);
        let first = self.read_piece(&mut buf).await.map_err(lost_source)?;
        if let Some(c) = relayed {
            c.fetch_add(first as u64, Ordering::Relaxed);
        }
        self.mid_frame = true;
        self.to.send_with_header(header, &mut buf, first).await.map_err(lost_dest)?;
        while self.from.remaining() > 0 {
            let n = self.read_piece(&mut buf).await.map_err(lost_source)?;
            if let Some(c) = relayed {
                c.fetch_add(n as u64, Ordering::Relaxed);
            }
            self.to.continue_payload(&mut buf[MAX_HEADER_LEN..MAX_HEADER_LEN + n]).await.map_err(lost_dest)?;
        }
        self.mid_frame = false;
        self.to.flush().await.map_err(lost_dest)?;
        self.frames.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Reads the next payload piece (possibly empty) into `buf` after the header room.
    async fn read_piece(&mut self, buf: &mut Chunk) -> io::Result<usize> {
        let want = buf.capacity().min(usize::try_from(self.from.remaining()).unwrap_or(usize::MAX));
        self.from.payload(&mut buf[MAX_HEADER_LEN..MAX_HEADER_LEN + want]).await
    }

    /// Writes `frame` to this direction's destination if it is between frames, then ends
    /// its write side. Errors are ignored: the tunnel is over. Bounded in time, since the
    /// destination may be a peer that stopped reading.
    async fn finish(&mut self, frame: Option<CloseFrame>) {
        let _ = tokio::time::timeout(FINISH_TIMEOUT, async {
            if let Some(f) = frame.filter(|_| !self.mid_frame) {
                let _ = self.to.send_close(Some(&f)).await;
            }
            let _ = self.to.shutdown().await;
        })
        .await;
    }
}

/// Completes once `activity` (a count of what a tunnel moved: frames, bytes) has not
/// changed for `timeout`, checked at a quarter of it; never without a timeout. The
/// relay's tunnel idle timeout, for spliced tunnels and a public port's.
pub(super) async fn idle(timeout: Option<Duration>, activity: &AtomicU64) {
    let Some(timeout) = timeout else { return std::future::pending().await };
    let check = (timeout / 4).max(Duration::from_millis(10));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + check, check);
    let (mut seen, mut since) = (activity.load(Ordering::Relaxed), tokio::time::Instant::now());
    loop {
        ticker.tick().await;
        let now = activity.load(Ordering::Relaxed);
        if now != seen {
            (seen, since) = (now, tokio::time::Instant::now());
        } else if since.elapsed() >= timeout {
            return;
        }
    }
}

type Half<'a, T> = Direction<'a, ReadPart<T>, WritePart<T>>;

/// Relays frames between `a` and `b` until both have closed, one breaks, or `force` fires
/// (then both get 1001). `a_initial`/`b_initial` are bytes read past each handshake;
/// `relayed` gets the data payload bytes forwarded `[a to b, b to a]`.
pub async fn join<T>(
    a: MaybeTls<T>,
    a_initial: &[u8],
    b: MaybeTls<T>,
    b_initial: &[u8],
    force: CancellationToken,
    relayed: [&AtomicU64; 2],
    idle_timeout: Option<Duration>,
) where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let (ar, aw) = a.split();
    let (br, bw) = b.split();
    let frames = AtomicU64::new(0);
    let mut a_to_b: Half<T> = Direction::new(
        FrameReader::new(ar, a_initial, Role::Server),
        FrameWriter::new(bw, Role::Server),
        relayed[0],
        &frames,
    );
    let mut b_to_a: Half<T> = Direction::new(
        FrameReader::new(br, b_initial, Role::Server),
        FrameWriter::new(aw, Role::Server),
        relayed[1],
        &frames,
    );
    let outcome = {
        let ab = a_to_b.run();
        let ba = b_to_a.run();
        // A stalled peer counts as idle: its frames never complete.
        let idle = idle(idle_timeout, &frames);
        tokio::pin!(ab, ba, idle);
        let (mut ab_done, mut ba_done) = (false, false);
        loop {
            tokio::select! {
                end = &mut ab, if !ab_done => match end {
                    End::Closed => ab_done = true,
                    End::Broken { reason, to_source } => break Some((true, reason, to_source)),
                },
                end = &mut ba, if !ba_done => match end {
                    End::Closed => ba_done = true,
                    End::Broken { reason, to_source } => break Some((false, reason, to_source)),
                },
                () = force.cancelled() => break Some((true, "relay shutting down", Some(close::GOING_AWAY))),
                () = &mut idle => break Some((true, "tunnel idle timeout", Some(close::GOING_AWAY))),
            }
            if ab_done && ba_done {
                break None;
            }
        }
    };
    match outcome {
        None => {
            a_to_b.finish(None).await;
            b_to_a.finish(None).await;
        }
        Some((from_a, reason, to_source)) => {
            let to_other = if to_source == Some(close::GOING_AWAY) { close::GOING_AWAY } else { close::INTERNAL_ERROR };
            let (source_dir, other_dir) = if from_a { (&mut b_to_a, &mut a_to_b) } else { (&mut a_to_b, &mut b_to_a) };
            // `source_dir` writes to the side that broke; `other_dir` to the one still healthy.
            other_dir.finish(Some(CloseFrame::new(to_other, reason))).await;
            source_dir.finish(to_source.map(|c| CloseFrame::new(c, reason))).await;
        }
    }
}
