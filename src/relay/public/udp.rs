//! A public UDP port's visitors (docs/protocol.md 10.2): each source address is a session,
//! which meets a listener of the HC as a sender would (a rendezvous per session, started
//! at once) and carries one binary message per datagram both ways, boundaries kept
//! ([`crate::ws::datagram`]). A session ends after `udp_idle_timeout` without a datagram
//! either way (Close 1000), when the listener closes it or its connection breaks, and when
//! the port closes or the relay stops (1001): a datagram flow has no end to drain to.
//!
//! [`serve`] alone reads the port's socket and hands each datagram to its session's task
//! through a bounded queue; sessions send their replies on the same socket. What a limit
//! drops (sessions per port, datagram size, the queue) is counted per port, never
//! answered: UDP has no way to say no.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span};

use super::super::Relay;
use super::super::metrics::Unserved;
use super::PortInfo;
use super::tcp::ListenerEnd;
use crate::protocol::close;
use crate::ws::datagram::{self, Datagrams, Incoming};
use crate::ws::frame::{MAX_HEADER_LEN, OpCode};

/// Datagrams that may wait for their session: while its rendezvous opens, or while its
/// listener reads more slowly than the visitor sends. More are dropped (`queue_full`).
/// All of a port's queues together hold at most [`MAX_QUEUED_BYTES`].
const SESSION_QUEUE: usize = 64;

/// Bytes of datagrams (each with room for its frame header) that may wait in all of a
/// port's queues at once: without it, a port's sessions could hold
/// `max_udp_sessions_per_port` x [`SESSION_QUEUE`] x `max_udp_datagram` (4 GiB by
/// default) while their listener is slow to accept. More are dropped (`queue_full`).
const MAX_QUEUED_BYTES: usize = 4 * 1024 * 1024;

/// The largest datagram UDP can carry: a receive buffer one byte longer than the size
/// limit (to see a datagram over it) never needs to be longer than this.
const UDP_MAX: usize = 65_535;

/// How long the port waits after a receive error it does not expect, so that a failing
/// socket does not spin.
const ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Serves a public UDP port until `stop` fires.
pub(super) async fn serve(relay: Arc<Relay>, socket: UdpSocket, port: Arc<PortInfo>, stop: CancellationToken) {
    let socket = Arc::new(socket);
    let settings = relay.ports.settings();
    let (limit, max_sessions) = (settings.max_udp_datagram, settings.max_udp_sessions_per_port);
    // Room for a frame header before the datagram, so that its session sends it as it is.
    let mut buf = vec![0; MAX_HEADER_LEN + limit.min(UDP_MAX) + 1];
    let mut sessions: HashMap<SocketAddr, mpsc::Sender<Queued>> = HashMap::new();
    let queued_bytes = Arc::new(Semaphore::new(MAX_QUEUED_BYTES));
    loop {
        let received = tokio::select! {
            r = socket.recv_from(&mut buf[MAX_HEADER_LEN..]) => r,
            () = stop.cancelled() => break,
        };
        let (n, peer) = match received {
            Ok(got) => got,
            // An earlier reply's ICMP error, on systems that report it here.
            Err(e) if matches!(e.kind(), io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset) => continue,
            Err(e) => {
                debug!(port = port.addr.port(), "public UDP port: receiving failed: {e}");
                tokio::time::sleep(ERROR_PAUSE).await;
                continue;
            }
        };
        if n > limit {
            port.counters.unserved(Unserved::Oversize);
            continue;
        }
        if !port.allows(peer.ip()) {
            port.counters.unserved(Unserved::NotAllowed);
            continue;
        }
        let cost = u32::try_from(MAX_HEADER_LEN + n).expect("a datagram's size fits");
        let Ok(budget) = queued_bytes.clone().try_acquire_many_owned(cost) else {
            port.counters.unserved(Unserved::QueueFull);
            continue;
        };
        let mut datagram = Queued { bytes: buf[..MAX_HEADER_LEN + n].to_vec(), _budget: budget };
        if let Some(queue) = sessions.get(&peer) {
            match queue.try_send(datagram) {
                Ok(()) => continue,
                Err(TrySendError::Full(_)) => {
                    port.counters.unserved(Unserved::QueueFull);
                    continue;
                }
                // The session has ended: this datagram opens the next one.
                Err(TrySendError::Closed(back)) => {
                    sessions.remove(&peer);
                    datagram = back;
                }
            }
        }
        if sessions.len() >= max_sessions {
            sessions.retain(|_, queue| !queue.is_closed());
            if sessions.len() >= max_sessions {
                port.counters.unserved(Unserved::SessionLimit);
                continue;
            }
        }
        let (queue, queued) = mpsc::channel(SESSION_QUEUE);
        queue.try_send(datagram).expect("a new queue has room");
        sessions.insert(peer, queue);
        let session = Session { relay: relay.clone(), port: port.clone(), socket: socket.clone(), peer, limit };
        let span = info_span!("visitor", port = port.addr.port(), %peer, proto = "udp");
        relay.tasks.spawn(session.run(queued, stop.clone()).instrument(span));
    }
}

/// A datagram waiting for its session, frame header room first, holding its share of
/// [`MAX_QUEUED_BYTES`] until sent.
struct Queued {
    bytes: Vec<u8>,
    _budget: OwnedSemaphorePermit,
}

/// One visitor address's session.
struct Session {
    relay: Arc<Relay>,
    port: Arc<PortInfo>,
    socket: Arc<UdpSocket>,
    peer: SocketAddr,
    /// The most bytes of a datagram from the listener.
    limit: usize,
}

/// Why a session ended.
enum Ended {
    Idle,
    /// The listener closed it (any code).
    Closed,
    /// The port closed, or the relay is stopping.
    Stopped,
    /// The listener's connection broke, or broke the protocol.
    Broken(io::Error),
}

impl Session {
    async fn run(self, mut queue: mpsc::Receiver<Queued>, stop: CancellationToken) {
        let met = tokio::select! {
            end = self.relay.meet_for_visitor(&self.port, self.peer) => end,
            () = stop.cancelled() => return,
        };
        let Some(mut end) = met else {
            self.port.counters.unserved(Unserved::NoListener);
            debug!("no listener took the session; {} datagram(s) dropped", queue.len());
            return;
        };
        let _tunnel = self.relay.metrics.tunnel_opened();
        let _active = self.port.counters.opened();
        debug!("session open");
        // Started at once: the rendezvous was opened for this visitor (docs/protocol.md 10.1).
        if end.deferred
            && let Err(e) = datagram::send(&mut end.writer, &[]).await
        {
            return debug!("session ended: starting it failed: {e}");
        }
        // Listed on the status page as a tunnel of the port's HC; its bytes reach the
        // relay's totals through it.
        let live = self.relay.metrics.live_tunnel(&self.port.hc, Some(format!("udp/{}", self.port.addr.port())));
        let moved = [AtomicU64::new(0), AtomicU64::new(0)];
        let ended = self.carry(&mut end, &mut queue, &moved, live.counters(), &stop).await;
        let moved = moved.map(|n| n.load(Relaxed));
        let (sent, received) = (moved[0], moved[1]);
        match &ended {
            Ended::Idle => end.goodbye(close::NORMAL, "session idle").await,
            Ended::Closed => end.goodbye(close::NORMAL, "").await,
            Ended::Stopped => end.goodbye(close::GOING_AWAY, "public port closed").await,
            Ended::Broken(e) if e.kind() == io::ErrorKind::InvalidData => {
                end.goodbye(close::PROTOCOL_ERROR, "not a datagram tunnel").await;
            }
            Ended::Broken(_) => {}
        }
        let why = match &ended {
            Ended::Idle => "idle".to_owned(),
            Ended::Closed => "closed by the listener".to_owned(),
            Ended::Stopped => "the port closed".to_owned(),
            Ended::Broken(e) => format!("listener connection failed: {e}"),
        };
        debug!("session ended ({why}); datagrams: {sent} to the listener, {received} back");
    }

    /// Carries datagrams both ways until the session ends; `moved` counts them (to the
    /// listener, back), `totals` their bytes.
    async fn carry(
        &self,
        end: &mut ListenerEnd,
        queue: &mut mpsc::Receiver<Queued>,
        moved: &[AtomicU64; 2],
        totals: [&AtomicU64; 2],
        stop: &CancellationToken,
    ) -> Ended {
        let counters = &self.port.counters;
        let count = |way: usize, n: usize| {
            moved[way].fetch_add(1, Relaxed);
            counters.datagrams[way].fetch_add(1, Relaxed);
            counters.bytes[way].fetch_add(n as u64, Relaxed);
            totals[way].fetch_add(n as u64, Relaxed);
        };
        let started = Instant::now();
        // When the last datagram went either way, in milliseconds since `started`.
        let last = AtomicU64::new(0);
        let touch = || last.store(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX), Relaxed);
        let writer = Mutex::new(&mut end.writer);
        let reader = &mut end.reader;
        let up = async {
            while let Some(mut queued) = queue.recv().await {
                let n = queued.bytes.len() - MAX_HEADER_LEN;
                let mut writer = writer.lock().await;
                datagram::send_in_place(&mut writer, &mut queued.bytes, n).await.map_err(Ended::Broken)?;
                drop(writer);
                touch();
                count(0, n);
            }
            Err::<(), _>(Ended::Stopped)
        };
        let down = async {
            let mut incoming = Datagrams::new(self.limit, None);
            loop {
                match incoming.next(reader).await.map_err(Ended::Broken)? {
                    Incoming::Datagram(d) => match self.socket.send_to(&d, self.peer).await {
                        Ok(_) => {
                            touch();
                            count(1, d.len());
                        }
                        Err(e) => debug!("a datagram to the visitor was lost: {e}"),
                    },
                    Incoming::Oversize => counters.unserved(Unserved::Oversize),
                    Incoming::Ping(payload) => {
                        writer.lock().await.send(OpCode::Pong, &payload).await.map_err(Ended::Broken)?;
                    }
                    Incoming::Close(_) => return Err::<(), _>(Ended::Closed),
                    Incoming::End => return Err(Ended::Broken(io::ErrorKind::UnexpectedEof.into())),
                }
            }
        };
        let timeout = self.relay.ports.settings().udp_idle_timeout;
        tokio::select! {
            Err(why) = up => why,
            Err(why) = down => why,
            () = crate::ws::datagram::idle(timeout, started, &last) => Ended::Idle,
            () = stop.cancelled() => Ended::Stopped,
            () = self.relay.force.cancelled() => Ended::Stopped,
        }
    }
}
