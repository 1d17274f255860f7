//! Prewarmed tunnels: `hyco connect --bind` keeps a few tunnels open ahead of need and
//! hands one to each new local connection, so a connection does not wait for the
//! rendezvous (a WebSocket to the relay, an accept on the listener's control channel, the
//! listener's WebSocket back, two 101s).
//!
//! A tunnel opened ahead of need must not reach the target before it is used: the
//! target would see idle connections, and a server that speaks first would talk to
//! nobody. So the sender offers two WebSocket subprotocols, [`IMMEDIATE`] first and
//! [`DEFERRED`] second; they reach the listener in the accept's `connectHeaders`, and
//! the listener's choice comes back in the sender's 101 (docs/protocol.md 5.3). A hyco
//! listener picks [`DEFERRED`]: it picks the target as usual (an unknown name is still
//! rejected with 404), accepts, and connects to the target when the sender's first frame
//! arrives. That frame, *start*, is sent when a local connection takes the tunnel: the
//! connection's first bytes if it has sent any, else an empty binary frame. A target
//! that cannot be reached then closes the tunnel with 1011 and the reason, and the local
//! connection is reset.
//!
//! Other listeners (the official clients, an older hyco) pick the first subprotocol,
//! [`IMMEDIATE`], and connect to their target at once: the sender closes that one tunnel
//! and opens a tunnel per connection from then on. Nothing here needs the relay's help,
//! so it works through any relay, Azure's included.
//!
//! The pool only keeps tunnels and hands them out; the connector ([`super::connect`])
//! gives it the way to open one, offers it each local connection ([`Pool::hand`]), and
//! takes back over a channel the connections that lost their tunnel at the hand-over.
//! *start* and the frames of an idle tunnel are [`super::tunnel`]'s.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span};

use super::pump::{self, LocalSide};
use super::tunnel::{Idle, Tunnel};
use crate::backoff::Backoff;
use crate::protocol::close;
use crate::status::{Stats, Tally};
use crate::ws::frame::CloseFrame;
use crate::ws::pump::StartError;

pub use crate::protocol::{PREWARM_DEFERRED as DEFERRED, PREWARM_IMMEDIATE as IMMEDIATE};
/// Tunnels `hyco connect --bind` keeps open ahead of need, unless told otherwise.
pub const DEFAULT_TUNNELS: usize = 8;
/// The most tunnels `--prewarm` may keep open.
pub const MAX_TUNNELS: usize = 64;
/// An unused prewarmed tunnel is closed and replaced after this long (relays and the
/// networks between drop quiet connections sooner or later).
const MAX_IDLE: Duration = Duration::from_secs(60);
/// How long a listener holds a deferred tunnel that is never started.
pub(super) const START_TIMEOUT: Duration = Duration::from_secs(300);
/// Waits after failing to open a prewarmed tunnel.
const REOPEN: Backoff = Backoff(&[1, 2, 5, 10, 30]);

/// The `Sec-WebSocket-Protocol` offer of a sender that asks for a deferred start.
pub fn offer() -> (String, String) {
    ("Sec-WebSocket-Protocol".to_owned(), format!("{IMMEDIATE}, {DEFERRED}"))
}

/// Whether a sender's subprotocol offer (the accept's `Sec-WebSocket-Protocol`) asks for a
/// deferred start.
pub(super) fn requested(offered: &str) -> bool {
    offered.split(',').any(|p| p.trim() == DEFERRED)
}

/// How `hyco connect --bind` prewarms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prewarm {
    /// Tunnels kept open ahead of need (0: none).
    pub tunnels: usize,
    /// An unused tunnel is replaced after this long.
    pub max_idle: Duration,
}

impl Default for Prewarm {
    fn default() -> Self {
        Self { tunnels: DEFAULT_TUNNELS, max_idle: MAX_IDLE }
    }
}

impl Prewarm {
    /// No prewarming: a tunnel is opened when a connection arrives.
    pub fn off() -> Self {
        Self { tunnels: 0, ..Self::default() }
    }
}

/// A local connection waiting for its tunnel.
pub(super) type Local = (TcpStream, SocketAddr);

/// Why a prewarmed tunnel could not be opened.
pub(super) enum OpenFailure {
    /// The listener connected at once instead of deferring: prewarming cannot work.
    Unsupported(String),
    /// Anything else (no listener yet, relay down): try again later.
    Failed(anyhow::Error),
}

/// When the pool stops: `shutdown` ends the tunnels not in use (and the pool), `force`
/// the ones carrying a connection (after the connector's drain).
pub(super) struct Stops {
    pub(super) shutdown: CancellationToken,
    pub(super) force: CancellationToken,
}

/// Tunnels ready for local connections, kept topped up by a background task.
pub(super) struct Pool {
    ready: Mutex<VecDeque<oneshot::Sender<Local>>>,
    /// `hc` or `hc/name`, for the tunnels' log lines.
    label: String,
    permits: Arc<Semaphore>,
    failures: AtomicUsize,
    prewarm: Prewarm,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
    force: CancellationToken,
    /// Local connections handed to a tunnel that went just then, back to the connector
    /// for a tunnel of their own. Unbounded, but each was accepted and handed over once:
    /// the connector's accept loop bounds it.
    returned: mpsc::UnboundedSender<Local>,
}

impl Pool {
    /// Starts keeping `prewarm.tunnels` tunnels open with `open` (which offers the
    /// subprotocols and checks the listener's choice with [`accepted`]), in tasks on
    /// `tasks`, until `stops.shutdown`. Connections handed over as their tunnel went come
    /// back on `returned`.
    pub(super) fn start<F, Fut>(
        prewarm: Prewarm,
        label: String,
        open: F,
        returned: mpsc::UnboundedSender<Local>,
        stats: Arc<Stats>,
        tasks: &TaskTracker,
        stops: Stops,
    ) -> Arc<Self>
    where
        F: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Tunnel, OpenFailure>> + Send + 'static,
    {
        let pool = Arc::new(Self {
            ready: Mutex::new(VecDeque::new()),
            label,
            permits: Arc::new(Semaphore::new(prewarm.tunnels)),
            failures: AtomicUsize::new(0),
            prewarm,
            stats,
            shutdown: stops.shutdown,
            force: stops.force,
            returned,
        });
        tasks.spawn(pool.clone().keep(Arc::new(open), tasks.clone()));
        pool
    }

    /// Keeps the pool topped up until shutdown, or until the listener turns out not to
    /// defer. One tunnel goes first, to learn that (another listener sees one short-lived
    /// connection, not a pool's worth); then the rest of the pool; then refills in batches
    /// of half the pool: opened together, tunnels share the processes' wake-ups, and the
    /// connections in between find the path quiet.
    async fn keep<F, Fut>(self: Arc<Self>, open: Arc<F>, tasks: TaskTracker)
    where
        F: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Tunnel, OpenFailure>> + Send + 'static,
    {
        loop {
            let Some(permit) = self.permits(1).await else { return };
            let id = crate::protocol::new_guid();
            let opened = tokio::select! {
                o = open(id.clone()) => o,
                () = self.shutdown.cancelled() => return,
            };
            if opened.is_ok() {
                tasks.spawn(self.clone().opened(id, opened, permit));
                break;
            }
            self.clone().opened(id, opened, permit).await;
            if self.permits.is_closed() {
                return; // the listener does not defer
            }
        }
        let batch = self.prewarm.tunnels.div_ceil(2);
        let mut want = self.prewarm.tunnels - 1;
        loop {
            if want > 0 {
                let Some(mut permits) = self.permits(want).await else { return };
                while let Some(permit) = permits.split(1) {
                    let (pool, open) = (self.clone(), open.clone());
                    tasks.spawn(async move {
                        let id = crate::protocol::new_guid();
                        let opened = tokio::select! {
                            o = open(id.clone()) => o,
                            () = pool.shutdown.cancelled() => return,
                        };
                        pool.opened(id, opened, permit).await;
                    });
                }
            }
            want = batch;
        }
    }

    /// Waits for `n` free places in the pool; `None` at shutdown or once prewarming is off.
    async fn permits(&self, n: usize) -> Option<OwnedSemaphorePermit> {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        tokio::select! {
            p = self.permits.clone().acquire_many_owned(n) => p.ok(),
            () = self.shutdown.cancelled() => None,
        }
    }

    /// Hands `local` to a ready tunnel; gives it back when none is ready.
    pub(super) fn hand(&self, mut local: Local) -> Option<Local> {
        loop {
            let Some(slot) = self.ready.lock().expect("pool lock").pop_front() else {
                return Some(local);
            };
            match slot.send(local) {
                Ok(()) => return None,
                Err(back) => local = back, // that tunnel has just gone: try the next
            }
        }
    }

    async fn opened(self: Arc<Self>, id: String, opened: Result<Tunnel, OpenFailure>, permit: OwnedSemaphorePermit) {
        match opened {
            Ok(tunnel) => {
                self.failures.store(0, Ordering::Relaxed);
                let (tx, rx) = oneshot::channel();
                {
                    let mut ready = self.ready.lock().expect("pool lock");
                    ready.retain(|slot| !slot.is_closed()); // tunnels gone unused
                    ready.push_back(tx);
                }
                debug!(%id, "prewarmed tunnel ready");
                self.wait(id, tunnel, rx, permit).await;
            }
            Err(OpenFailure::Unsupported(why)) => {
                info!("the listener does not support prewarmed tunnels ({why}); opening a tunnel per connection");
                self.permits.close();
            }
            Err(OpenFailure::Failed(why)) => {
                let failures = self.failures.fetch_add(1, Ordering::Relaxed);
                let delay = REOPEN.delay(failures);
                debug!("cannot prewarm a tunnel: {why:#}; retrying in {} s", delay.as_secs());
                // The permit is held through the wait, so that failures do not spin.
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = self.shutdown.cancelled() => {}
                }
            }
        }
    }

    /// Holds a ready tunnel until a local connection takes it, the listener or relay
    /// closes it, it has been idle for `max_idle`, or shutdown.
    async fn wait(
        &self,
        id: String,
        mut tunnel: Tunnel,
        mut rx: oneshot::Receiver<Local>,
        permit: OwnedSemaphorePermit,
    ) {
        let idle = tokio::time::sleep(self.prewarm.max_idle);
        tokio::pin!(idle);
        let goodbye = loop {
            tokio::select! {
                biased;
                taken = &mut rx => match taken {
                    Ok(local) => {
                        drop(permit); // a replacement may open now
                        return self.begin(id, tunnel, local).await;
                    }
                    Err(_) => break Some(CloseFrame::new(close::GOING_AWAY, "")),
                },
                frame = tunnel.next_frame() => match tunnel.idle_frame(frame).await {
                    Idle::Control => {}
                    Idle::Closed(why) => {
                        debug!(%id, "prewarmed tunnel {why}");
                        break None;
                    }
                    Idle::Data(_) => break Some(CloseFrame::new(close::PROTOCOL_ERROR, "data on a tunnel not started")),
                    Idle::Lost(_) => break None,
                },
                () = &mut idle => break Some(CloseFrame::new(close::NORMAL, "prewarmed tunnel not used")),
                () = self.shutdown.cancelled() => break Some(CloseFrame::new(close::GOING_AWAY, "connector stopping")),
            }
        };
        rx.close();
        drop(permit);
        if let Some(frame) = goodbye {
            tunnel.goodbye(&frame).await;
        }
        debug!(%id, "prewarmed tunnel closed unused");
        // A connection handed over just as the tunnel went: back to the connector, for a
        // tunnel of its own (dropped if the connector has stopped).
        if let Ok(local) = rx.try_recv() {
            let _ = self.returned.send(local);
        }
    }

    /// Starts a tunnel for `local`: *start* (with the bytes the connection has already
    /// sent, if any), then the pump.
    async fn begin(&self, id: String, mut tunnel: Tunnel, (tcp, peer): Local) {
        let span = info_span!(parent: None, "tunnel", id = %super::tunnel::short_id(&id));
        let what = format!("{peer} -> {}", self.label);
        async {
            let tally = Tally::new(self.stats.clone());
            match tunnel.start(&tcp).await {
                Ok(n) => tally.out(n),
                Err(StartError::Local(e)) => {
                    info!("{what}: cancelled by the local client before its tunnel started ({e})");
                    tunnel.goodbye(&CloseFrame::new(close::GOING_AWAY, "")).await;
                    return crate::net::reset(tcp);
                }
                Err(StartError::Tunnel(e)) => {
                    tally.failed();
                    tracing::warn!("{what}: tunnel aborted: relay connection lost: {e}");
                    return crate::net::reset(tcp);
                }
            }
            debug!("tunnel open (prewarmed)");
            pump::pump_tcp(tcp, tunnel, tally, LocalSide::Client, &what, &self.force).await;
        }
        .instrument(span)
        .await;
    }
}

/// Sender side: whether the listener picked [`DEFERRED`] (from the 101's
/// `Sec-WebSocket-Protocol`). `Err` with what it picked instead.
pub(super) fn accepted(chosen: Option<&str>) -> Result<(), String> {
    match chosen {
        Some(p) if p.trim() == DEFERRED => Ok(()),
        Some(p) => Err(format!("it chose the subprotocol {p:?}")),
        None => Err("it chose no subprotocol".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::MaybeTls;
    use tokio::net::{TcpListener, TcpStream};

    #[tokio::test]
    async fn tunnels_replaced_unused_leave_no_slots_behind() {
        let peers = Arc::new(Mutex::new(Vec::new()));
        let opened = Arc::new(AtomicUsize::new(0));
        let (keep, count) = (peers.clone(), opened.clone());
        let open = move |_id: String| {
            let (keep, count) = (keep.clone(), count.clone());
            async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
                let near = TcpStream::connect(listener.local_addr().expect("addr")).await.expect("connect");
                let (far, _) = listener.accept().await.expect("accept");
                keep.lock().expect("peers").push(far); // the other end stays open: only max_idle ends it
                count.fetch_add(1, Ordering::SeqCst);
                Ok(Tunnel::new(MaybeTls::Plain(near), &[]))
            }
        };
        let prewarm = Prewarm { tunnels: 3, max_idle: Duration::from_millis(40) };
        let (tasks, shutdown) = (TaskTracker::new(), CancellationToken::new());
        let (returned, mut handed_back) = mpsc::unbounded_channel();
        let stops = Stops { shutdown: shutdown.clone(), force: shutdown.clone() };
        let pool = Pool::start(prewarm, "hc".into(), open, returned, Arc::default(), &tasks, stops);
        tokio::time::timeout(Duration::from_secs(10), async {
            while opened.load(Ordering::SeqCst) < 30 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("ten generations of tunnels");
        let slots = pool.ready.lock().expect("pool lock").len();
        assert!(slots <= 3, "{slots} slots kept for 3 tunnels");
        shutdown.cancel();
        tasks.close();
        tokio::time::timeout(Duration::from_secs(5), tasks.wait()).await.expect("the pool's tasks end at shutdown");
        assert!(handed_back.try_recv().is_err(), "nothing was handed over here");
    }
}
