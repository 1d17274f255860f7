//! Datagram sessions over a tunnel: one binary WebSocket message per UDP datagram both
//! ways, boundaries kept ([`crate::ws::datagram`]). What both ends share is here: the
//! session's pump (`Session`) over a `Local` end, and how a session ended (`Ended`).
//! The listener's end (`listener`: a socket connected to a `udp://` target, for a public
//! port's visitor or a sender that says `Hyco-Proto: udp`, docs/protocol.md 10.2 and 10.4)
//! and the connector's (`connector`: `hyco connect --bind udp:…`, a session per local
//! peer) are in their own files. Opening tunnels is not done here.

mod connector;
mod listener;

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

pub use connector::{
    Checked, DEFAULT_IDLE, DEFAULT_SESSIONS, MAX_SESSIONS, MAX_UDP_PAYLOAD, UdpOptions, check, run, run_checked,
};
pub(super) use listener::{bind_target, hc_session, mismatch, session};

use super::tunnel::{GOODBYE_TIMEOUT, Tunnel};
use crate::protocol::close;
use crate::status::{Stats, Tally};
use crate::ws::datagram::{self, Datagrams, Incoming};
use crate::ws::frame::{CloseFrame, MAX_HEADER_LEN, OpCode};
use crate::ws::stream::Role;

/// The largest datagram UDP can carry (its length field's limit): no receive needs more.
const UDP_MAX: usize = 65_535;
/// A write to the tunnel takes waiting datagrams until it holds this many bytes.
const BATCH_BYTES: usize = 64 * 1024;

/// The local end of a session: where its datagrams come from and go to.
pub(super) trait Local {
    /// The next datagram from the local side, written to `buf`; its length.
    async fn recv(&self, buf: &mut [u8]) -> Result<usize, Ended>;
    /// The next datagram if one is there already, without waiting (an error is left for
    /// [`Self::recv`] to see).
    fn try_recv(&self, buf: &mut [u8]) -> Option<usize>;
    /// Sends `datagram` to the local side; a failure loses it, as UDP goes.
    async fn send(&self, datagram: &[u8]);
    /// A message from the tunnel too long for a datagram was dropped.
    fn oversize(&self);
}

/// How a session ended.
pub(super) enum Ended {
    /// The other side closed it, with this code and reason.
    Closed(u16, String),
    /// No datagram either way for the session's idle timeout.
    Idle,
    /// The tunnel broke.
    Lost(io::Error),
    /// The session's socket failed.
    Local(io::Error),
    /// This end is stopping.
    Stopping,
}

impl Ended {
    /// The Close a listener sends for how the tunnel ended (none when it broke).
    pub(super) fn goodbye(&self) -> Option<CloseFrame> {
        self.goodbye_stopping("listener stopping")
    }

    /// The Close this end sends for how the tunnel ended; `stopping` is the reason of a
    /// Close at shutdown.
    fn goodbye_stopping(&self, stopping: &str) -> Option<CloseFrame> {
        match self {
            Self::Closed(..) => Some(CloseFrame::new(close::NORMAL, "")),
            Self::Idle => Some(CloseFrame::new(close::NORMAL, "session idle")),
            Self::Stopping => Some(CloseFrame::new(close::GOING_AWAY, stopping)),
            Self::Local(_) => Some(CloseFrame::new(close::INTERNAL_ERROR, "target socket failed")),
            Self::Lost(_) => None,
        }
    }

    /// Logs how a datagram tunnel `what` ended, with what it `moved`, and counts a failure
    /// in `tally`: the one INFO line per tunnel (or WARN when it broke).
    pub(super) fn report(self, what: &str, moved: &str, tally: &Tally) {
        match self {
            Self::Closed(close::NORMAL, reason) if reason.is_empty() => info!("{what}: {moved}; closed"),
            Self::Closed(code, reason) => info!("{what}: {moved}; closed by the other side ({code} {reason})"),
            Self::Idle => info!("{what}: {moved}; closed: idle"),
            Self::Stopping => info!("{what}: {moved}; cut short at shutdown"),
            Self::Lost(e) => {
                tally.failed();
                warn!("{what}: {moved}; tunnel aborted: relay connection lost: {e}");
            }
            Self::Local(e) => {
                tally.failed();
                warn!("{what}: {moved}; tunnel aborted: the local socket failed: {e}");
            }
        }
    }
}

/// One session: a started tunnel and its local end.
pub(super) struct Session<'a, L> {
    pub(super) tunnel: Tunnel,
    pub(super) local: L,
    /// Who to where, for the log.
    pub(super) what: &'a str,
    /// The session ends after this long without a datagram either way (`None`: never).
    pub(super) idle: Option<Duration>,
    /// The most bytes of a message from the tunnel that is sent on as a datagram.
    pub(super) limit: usize,
    /// The reason of the Close this end sends when it stops.
    pub(super) stopping: &'static str,
}

impl<L: Local> Session<'_, L> {
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
        let [inn, out] = datagrams.map(|n| n.load(Relaxed));
        let moved = format!("{}; datagrams in {inn}, out {out}", tally.moved());
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
        let keepalive = self.tunnel.keepalive_interval();
        let (mut reader, writer, pending) = self.tunnel.into_parts();
        let writer = Mutex::new(writer);
        let local = &self.local;
        let started = Instant::now();
        // When the last datagram went either way, in milliseconds since `started`; and
        // the frames this end has sent, for the keepalive.
        let (last, sent) = (AtomicU64::new(0), AtomicU64::new(0));
        let touch = || last.store(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX), Relaxed);
        let ended = {
            let down = async {
                let mut incoming = Datagrams::new(self.limit, pending);
                loop {
                    match incoming.next(&mut reader).await.map_err(Ended::Lost)? {
                        Incoming::Datagram(d) => {
                            local.send(&d).await;
                            touch();
                            tally.inn(d.len());
                            datagrams[0].fetch_add(1, Relaxed);
                        }
                        Incoming::Oversize => local.oversize(),
                        Incoming::Ping(payload) => {
                            writer.lock().await.send(OpCode::Pong, &payload).await.map_err(Ended::Lost)?;
                            sent.fetch_add(1, Relaxed);
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
                let mut buf = vec![0; UDP_MAX];
                // Datagrams that wait together go out in one write.
                let mut batch = Vec::with_capacity(BATCH_BYTES + MAX_HEADER_LEN + UDP_MAX);
                loop {
                    let mut next = match local.recv(&mut buf).await {
                        Ok(n) => Some(n),
                        Err(why) => return Err::<(), _>(why),
                    };
                    while let Some(n) = next {
                        datagram::push_frame(&mut batch, &buf[..n], Role::Client);
                        tally.out(n);
                        datagrams[1].fetch_add(1, Relaxed);
                        next = if batch.len() < BATCH_BYTES { local.try_recv(&mut buf) } else { None };
                    }
                    datagram::send_batch(&mut *writer.lock().await, &batch).await.map_err(Ended::Lost)?;
                    batch.clear();
                    touch();
                    sent.fetch_add(1, Relaxed);
                }
            };
            // A session quiet this way pings through its tunnel as a stream's pump does,
            // so that relays do not drop it as idle (docs/protocol.md 10.4).
            let pings = async {
                match keepalive {
                    Some(every) => Err::<(), _>(Ended::Lost(crate::ws::pump::pings(every, &sent, &writer).await)),
                    None => std::future::pending().await,
                }
            };
            let idle = async {
                match self.idle {
                    Some(timeout) => crate::ws::datagram::idle(timeout, started, &last).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Err(why) = down => why,
                Err(why) = up => why,
                Err(why) = pings => why,
                () = idle => Ended::Idle,
                () = shutdown.cancelled() => Ended::Stopping,
                () = force.cancelled() => Ended::Stopping,
            }
        };
        if let Some(frame) = ended.goodbye_stopping(self.stopping) {
            let mut writer = writer.into_inner();
            let _ = tokio::time::timeout(GOODBYE_TIMEOUT, writer.send_close(Some(&frame))).await;
        }
        ended
    }
}
