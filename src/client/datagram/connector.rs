//! `hyco connect --bind udp:…` (docs/protocol.md 10.4): a UDP socket whose every local
//! peer address is a session with a tunnel of its own (a sender WebSocket saying
//! `Hyco-Proto: udp`), opened on the peer's first datagram; one binary message per
//! datagram both ways, and replies go back to the peer that owns the session.
//!
//! [`run`] alone reads the socket and hands each datagram to its session's task through a
//! bounded queue; sessions send their replies on the same socket. What a limit drops
//! (sessions, queued datagrams, datagrams too long) is counted and logged, never
//! answered: UDP has no way to say no. A session ends after [`UdpOptions::idle`] without a
//! datagram either way (Close 1000 `session idle`), when the listener closes it or its
//! connection breaks, and at shutdown (1001): a datagram flow has no end to drain to. A
//! session whose tunnel cannot be opened drops what it queued; the peer's next datagram
//! tries again. A small pool of deferred tunnels (docs/protocol.md 10.1) spares a new
//! session the rendezvous.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use super::super::connect::{self, ConnectSettings, kind_of};
use super::super::tunnel::{Idle, Tunnel};
use super::super::{Opened, RelayClient, prewarm};
use super::{Ended, Local, Session};
use crate::backoff::Backoff;
use crate::error::{Kind, failure};
use crate::protocol::{self, HEADER_PROTO, close};
use crate::status::Stats;
use crate::ws::frame::CloseFrame;

/// A session's idle timeout, unless told otherwise (`--udp-idle`).
pub const DEFAULT_IDLE: Duration = Duration::from_secs(60);
/// Sessions (local peers) at once, unless told otherwise (`--udp-sessions`).
pub const DEFAULT_SESSIONS: usize = 1024;
/// The most `--udp-sessions` may be.
pub const MAX_SESSIONS: usize = 65_536;
/// The largest datagram carried: the most a UDP datagram over IPv4 holds. A longer one
/// (from a local peer over IPv6, or a message from the tunnel) is dropped and counted.
pub const MAX_UDP_PAYLOAD: usize = 65_507;
/// Datagrams that may wait for their session: while its tunnel opens, or while the relay
/// takes them more slowly than the peer sends. More are dropped (queue full).
const SESSION_QUEUE: usize = 256;
/// Bytes of datagrams that may wait in all sessions' queues at once, so that many
/// sessions whose tunnels open slowly cannot hold `SESSION_QUEUE` x 64 KiB each. More are
/// dropped (queue full).
const MAX_QUEUED_BYTES: usize = 4 * 1024 * 1024;
/// How long the socket waits after a receive error it does not expect, so that a failing
/// socket does not spin.
const ERROR_PAUSE: Duration = Duration::from_millis(50);
/// An unused prewarmed tunnel is closed and replaced after this long.
const PREWARM_MAX_IDLE: Duration = Duration::from_secs(60);
/// Waits after failing to open a prewarmed tunnel, in seconds; the last repeats (as the
/// TCP pool's).
const PREWARM_REOPEN: Backoff = Backoff(&[1, 2, 5, 10, 30]);

/// How `hyco connect --bind udp:…` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpOptions {
    /// A session ends after this long without a datagram either way.
    pub idle: Duration,
    /// Sessions at once (1 to [`MAX_SESSIONS`]); a new peer beyond is dropped.
    pub sessions: usize,
    /// Deferred tunnels kept open ahead of need (0: none; at most
    /// [`prewarm::MAX_TUNNELS`](super::super::prewarm::MAX_TUNNELS)).
    pub prewarm: usize,
}

impl Default for UdpOptions {
    fn default() -> Self {
        Self { idle: DEFAULT_IDLE, sessions: DEFAULT_SESSIONS, prewarm: 0 }
    }
}

/// Datagrams dropped, by why.
#[derive(Default)]
struct Dropped {
    oversize: AtomicU64,
    session_cap: AtomicU64,
    queue_full: AtomicU64,
}

impl Dropped {
    /// Counts one in `which`, logging the 1st, 2nd, 4th, 8th… with `why`.
    fn count(&self, which: &AtomicU64, why: impl FnOnce() -> String) {
        if let Some(n) = throttled(which) {
            warn!("dropped {n} datagram(s) so far: {}", why());
        }
    }

    fn summary(&self) -> String {
        let [o, s, q] = [&self.oversize, &self.session_cap, &self.queue_full].map(|n| n.load(Relaxed));
        format!("datagrams dropped: {o} too long, {s} over the session limit, {q} with the queue full")
    }
}

/// Counts one in `counter`; the count when it is one to log (1, 2, 4, 8…), so that a
/// flood of drops makes a few lines, not one each.
fn throttled(counter: &AtomicU64) -> Option<u64> {
    let n = counter.fetch_add(1, Relaxed) + 1;
    n.is_power_of_two().then_some(n)
}

/// Checks the path once ([`check`]), says where it serves, then serves datagrams on
/// `socket` until `shutdown` ([`run_checked`]).
pub async fn run(
    client: RelayClient,
    settings: ConnectSettings,
    options: UdpOptions,
    socket: UdpSocket,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let checked = tokio::select! {
        c = check(&client, &settings) => c?,
        () = shutdown.cancelled() => return Ok(()),
    };
    info!("accepting on udp:{} for {}", socket.local_addr()?, settings.label());
    run_checked(client, settings, options, checked, socket, stats, shutdown).await
}

/// What [`check`] found: a listener online (and the deferred tunnel that proved it, for
/// the pool), or none yet.
pub struct Checked {
    first: Option<(Tunnel, bool)>,
}

/// Checks the path once, as [`connect::check`] does for TCP, with a tunnel that says
/// `Hyco-Proto: udp` and defers its start: a relay that cannot be reached, rejected
/// credentials or a listener's rejection (a TCP target: 400) are errors; no listener yet
/// (404) is not: the connector waits for one.
pub async fn check(client: &RelayClient, settings: &ConnectSettings) -> anyhow::Result<Checked> {
    match open(client, settings, true).await {
        Err(e) if kind_of(&e) != Some(Kind::NotFound) => Err(e),
        Err(_) => Ok(Checked { first: None }),
        Ok(tunnel) => Ok(Checked { first: Some(tunnel) }),
    }
}

/// Serves datagrams on `socket` until `shutdown`, the path checked ([`check`]). No
/// listener online yet is said once in the log.
pub async fn run_checked(
    client: RelayClient,
    settings: ConnectSettings,
    options: UdpOptions,
    checked: Checked,
    socket: UdpSocket,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    if !(1..=MAX_SESSIONS).contains(&options.sessions) {
        return Err(failure(Kind::Config, format!("--udp-sessions must be between 1 and {MAX_SESSIONS}")));
    }
    if options.prewarm > prewarm::MAX_TUNNELS {
        return Err(failure(Kind::Config, format!("--prewarm must be at most {}", prewarm::MAX_TUNNELS)));
    }
    if options.idle.is_zero() {
        return Err(failure(Kind::Config, "--udp-idle must be at least 1 s"));
    }
    let ctx = Arc::new(Ctx {
        presence: Presence { hc: settings.hc.clone(), waiting: AtomicBool::new(false), stats: stats.clone() },
        client,
        settings,
        options,
        socket: Arc::new(socket),
        stats,
        dropped: Arc::default(),
        tasks: TaskTracker::new(),
        shutdown,
        ready: StdMutex::new(VecDeque::new()),
    });
    let mut first = checked.first;
    if first.is_none() {
        ctx.presence.absent();
    }
    for n in 0..ctx.options.prewarm {
        let first = if n == 0 { first.take() } else { None };
        ctx.tasks.spawn(ctx.clone().prewarm(first));
    }
    if let Some((mut tunnel, _)) = first.take() {
        tunnel.goodbye(&CloseFrame::new(close::NORMAL, "path checked")).await;
    }
    ctx.clone().serve().await;
    // Sessions end at shutdown by themselves (a datagram flow has no end to drain to).
    ctx.tasks.close();
    ctx.tasks.wait().await;
    info!("stopped: {}; {}", ctx.stats.summary(), ctx.dropped.summary());
    Ok(())
}

/// Opens a tunnel that says `Hyco-Proto: udp`, offering a deferred start when `deferred`;
/// with it, whether the listener deferred.
async fn open(client: &RelayClient, settings: &ConnectSettings, deferred: bool) -> anyhow::Result<(Tunnel, bool)> {
    let mut headers = vec![(HEADER_PROTO.to_owned(), "udp".to_owned())];
    if deferred {
        headers.push(prewarm::offer());
    }
    let id = protocol::new_guid();
    let Opened { stream, initial, response } = connect::open_sender_with(client, settings, &id, &headers).await?;
    let chosen = crate::http1::header(&response.headers, "Sec-WebSocket-Protocol");
    let deferred = deferred && prewarm::accepted(chosen).is_ok();
    Ok((Tunnel::new(stream, &initial).keepalive(client.keepalive), deferred))
}

/// Whether a listener is online for the HC, as the connector last found out; a change
/// is said in the log and on the status line.
struct Presence {
    hc: String,
    waiting: AtomicBool,
    stats: Arc<Stats>,
}

impl Presence {
    fn absent(&self) {
        if !self.waiting.swap(true, Relaxed) {
            let hc = &self.hc;
            info!("waiting for a listener on '{hc}': is hyco listen {hc} running?");
            self.stats.set_note(Some(format!("waiting for a listener on '{hc}'")));
        }
    }

    fn online(&self) {
        if self.waiting.swap(false, Relaxed) {
            info!("a listener is online on '{}'", self.hc);
            self.stats.set_note(None);
        }
    }
}

/// What the socket's loop and its sessions share.
struct Ctx {
    client: RelayClient,
    settings: ConnectSettings,
    options: UdpOptions,
    socket: Arc<UdpSocket>,
    stats: Arc<Stats>,
    dropped: Arc<Dropped>,
    presence: Presence,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    /// Prewarmed tunnels ready for a session: each slot takes the sender of a tunnel.
    ready: StdMutex<VecDeque<oneshot::Sender<oneshot::Sender<Tunnel>>>>,
}

/// A datagram waiting for its session, holding its share of [`MAX_QUEUED_BYTES`].
struct Queued {
    bytes: Vec<u8>,
    _budget: OwnedSemaphorePermit,
}

impl Ctx {
    /// Reads the socket until shutdown, handing each datagram to its peer's session.
    async fn serve(self: Arc<Self>) {
        let mut buf = vec![0; MAX_UDP_PAYLOAD + 1];
        let mut sessions: HashMap<SocketAddr, mpsc::Sender<Queued>> = HashMap::new();
        let budget = Arc::new(Semaphore::new(MAX_QUEUED_BYTES));
        let dropped = &self.dropped;
        loop {
            let received = tokio::select! {
                r = self.socket.recv_from(&mut buf) => r,
                () = self.shutdown.cancelled() => break,
            };
            let (n, peer) = match received {
                Ok(got) => got,
                // An earlier reply's ICMP error, on systems that report it here.
                Err(e) if matches!(e.kind(), io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset) => {
                    continue;
                }
                Err(e) => {
                    debug!("receiving failed: {e}");
                    tokio::time::sleep(ERROR_PAUSE).await;
                    continue;
                }
            };
            if n > MAX_UDP_PAYLOAD {
                dropped.count(&dropped.oversize, || format!("longer than {MAX_UDP_PAYLOAD} bytes (from {peer})"));
                continue;
            }
            let queue_full = || {
                format!(
                    "the session's queue is full ({SESSION_QUEUE} datagrams a session, {MAX_QUEUED_BYTES} bytes in all)"
                )
            };
            let cost = u32::try_from(n.max(1)).expect("a datagram's size fits");
            let Ok(permit) = budget.clone().try_acquire_many_owned(cost) else {
                dropped.count(&dropped.queue_full, queue_full);
                continue;
            };
            let mut datagram = Queued { bytes: buf[..n].to_vec(), _budget: permit };
            if let Some(queue) = sessions.get(&peer) {
                match queue.try_send(datagram) {
                    Ok(()) => continue,
                    Err(TrySendError::Full(_)) => {
                        dropped.count(&dropped.queue_full, queue_full);
                        continue;
                    }
                    // The session has ended: this datagram opens the next one.
                    Err(TrySendError::Closed(back)) => {
                        sessions.remove(&peer);
                        datagram = back;
                    }
                }
            }
            if sessions.len() >= self.options.sessions {
                sessions.retain(|_, queue| !queue.is_closed());
                if sessions.len() >= self.options.sessions {
                    let cap = self.options.sessions;
                    dropped.count(&dropped.session_cap, || {
                        format!("{cap} sessions at once (--udp-sessions); a new peer {peer}")
                    });
                    continue;
                }
            }
            let (queue, queued) = mpsc::channel(SESSION_QUEUE);
            assert!(queue.try_send(datagram).is_ok(), "a new queue has room");
            sessions.insert(peer, queue);
            let span = info_span!(parent: None, "session");
            self.tasks.spawn(self.clone().session(peer, queued).instrument(span));
        }
    }

    /// One peer's session: a tunnel (prewarmed, or opened for it), then its datagrams.
    async fn session(self: Arc<Self>, peer: SocketAddr, queue: mpsc::Receiver<Queued>) {
        let what = format!("{peer} -> {}", self.settings.label());
        let opened = tokio::select! {
            t = self.tunnel() => t,
            () = self.shutdown.cancelled() => return,
        };
        let tunnel = match opened {
            Ok(t) => t,
            Err(e) => {
                self.stats.failed.fetch_add(1, Relaxed);
                let lost = queue.len();
                if kind_of(&e) == Some(Kind::NotFound) {
                    self.presence.absent();
                    let hc = &self.settings.hc;
                    warn!("{what}: rejected: no listener on '{hc}' yet; {lost} datagram(s) dropped");
                } else {
                    warn!("{what}: {e:#}; {lost} datagram(s) dropped");
                }
                return;
            }
        };
        self.presence.online();
        let local =
            PeerEnd { socket: self.socket.clone(), peer, queue: Mutex::new(queue), dropped: self.dropped.clone() };
        let session = Session {
            tunnel,
            local,
            what: &what,
            idle: Some(self.options.idle),
            limit: MAX_UDP_PAYLOAD,
            stopping: "connector stopping",
        };
        session.run(None, &self.stats, &self.shutdown, &self.shutdown).await;
    }

    /// A started tunnel for a new session: a prewarmed one (sent *start*), else one
    /// opened now.
    async fn tunnel(&self) -> anyhow::Result<Tunnel> {
        loop {
            let Some(slot) = self.ready.lock().expect("pool lock").pop_front() else { break };
            let (give, take) = oneshot::channel();
            if slot.send(give).is_err() {
                continue; // that tunnel has just gone: try the next
            }
            let Ok(mut tunnel) = take.await else { continue };
            // *start*: an empty binary frame; the datagrams follow.
            match tunnel.send_binary(&[]).await {
                Ok(()) => return Ok(tunnel),
                Err(e) => debug!("a prewarmed tunnel failed at its start: {e}"),
            }
        }
        let (tunnel, _) = open(&self.client, &self.settings, false).await?;
        Ok(tunnel)
    }

    /// Keeps one deferred tunnel ready (starting with `first`, if any) until shutdown, or
    /// until the listener turns out not to defer.
    async fn prewarm(self: Arc<Self>, mut first: Option<(Tunnel, bool)>) {
        let mut failures = 0;
        loop {
            let opened = match first.take() {
                Some(t) => Ok(t),
                None => tokio::select! {
                    o = open(&self.client, &self.settings, true) => o,
                    () = self.shutdown.cancelled() => return,
                },
            };
            let mut tunnel = match opened {
                Ok((tunnel, true)) => tunnel,
                Ok((mut tunnel, false)) => {
                    tunnel.goodbye(&CloseFrame::new(close::NORMAL, "prewarming not supported")).await;
                    return debug!("the listener does not defer its target: no prewarming");
                }
                Err(e) => {
                    if kind_of(&e) == Some(Kind::NotFound) {
                        self.presence.absent();
                    }
                    debug!("prewarming a tunnel failed: {e:#}");
                    let wait = PREWARM_REOPEN.delay(failures);
                    failures += 1;
                    tokio::select! {
                        () = tokio::time::sleep(wait) => continue,
                        () = self.shutdown.cancelled() => return,
                    }
                }
            };
            failures = 0;
            self.presence.online();
            let (slot, mut wanted) = oneshot::channel();
            {
                let mut ready = self.ready.lock().expect("pool lock");
                ready.retain(|slot| !slot.is_closed()); // tunnels gone unused
                ready.push_back(slot);
            }
            let unused = tokio::time::sleep(PREWARM_MAX_IDLE);
            tokio::pin!(unused);
            loop {
                tokio::select! {
                    frame = tunnel.next_frame() => match tunnel.idle_frame(frame).await {
                        Idle::Control => continue,
                        Idle::Closed(why) | Idle::Lost(why) => debug!("a prewarmed tunnel ended unused: {why}"),
                        Idle::Data(_) => {
                            let frame = CloseFrame::new(close::PROTOCOL_ERROR, "data before start");
                            tunnel.goodbye(&frame).await;
                        }
                    },
                    give = &mut wanted => {
                        if let Ok(give) = give {
                            let _ = give.send(tunnel);
                        }
                    }
                    () = &mut unused => tunnel.goodbye(&CloseFrame::new(close::NORMAL, "unused")).await,
                    () = self.shutdown.cancelled() => {
                        return tunnel.goodbye(&CloseFrame::new(close::GOING_AWAY, "connector stopping")).await;
                    }
                }
                break;
            }
        }
    }
}

/// A session's local end: its peer, reached on the shared socket, and the queue of the
/// peer's datagrams.
struct PeerEnd {
    socket: Arc<UdpSocket>,
    peer: SocketAddr,
    queue: Mutex<mpsc::Receiver<Queued>>,
    dropped: Arc<Dropped>,
}

impl Local for PeerEnd {
    async fn recv(&self, buf: &mut [u8]) -> Result<usize, Ended> {
        let Some(datagram) = self.queue.lock().await.recv().await else { return Err(Ended::Stopping) };
        let n = datagram.bytes.len();
        buf[..n].copy_from_slice(&datagram.bytes);
        Ok(n)
    }

    fn try_recv(&self, buf: &mut [u8]) -> Option<usize> {
        let datagram = self.queue.try_lock().ok()?.try_recv().ok()?;
        let n = datagram.bytes.len();
        buf[..n].copy_from_slice(&datagram.bytes);
        Some(n)
    }

    async fn send(&self, datagram: &[u8]) {
        if let Err(e) = self.socket.send_to(datagram, self.peer).await {
            debug!("a datagram to {} was lost: {e}", self.peer);
        }
    }

    fn oversize(&self) {
        let peer = self.peer;
        self.dropped.count(&self.dropped.oversize, || {
            format!("longer than {MAX_UDP_PAYLOAD} bytes (from the tunnel of {peer})")
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_are_logged_at_powers_of_two() {
        let d = Dropped::default();
        let said: Vec<u64> = (1..=9).filter_map(|_| throttled(&d.oversize)).collect();
        assert_eq!(said, [1, 2, 4, 8]);
        assert!(d.summary().starts_with("datagrams dropped: 9 too long, 0 over"), "{}", d.summary());
    }
}
