//! A public TCP port's visitors (docs/protocol.md 10.2): each accepted connection meets a
//! listener of the HC, as a sender would, and is pumped against the listener's
//! rendezvous WebSocket ([`crate::ws::pump`], the relay in the server role): half-close
//! end to end, a broken side a reset (visitor) or a Close 1011 (listener).
//!
//! To take the rendezvous off the visitor's path, the port keeps a few rendezvous open
//! ahead of need ([`Pool`]) with listeners that defer their target until *start*
//! (docs/protocol.md 10.1); a listener that does not gets a rendezvous per visitor.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span};

use super::super::metrics::{PortCounters, Unserved};
use super::super::registry::Answer;
use super::super::rendezvous::Sender;
use super::super::stream::RelayStream;
use super::super::{Relay, splice};
use super::PortInfo;
use crate::net::{ReadPart, WritePart};
use crate::protocol::{self, close};
use crate::public::HEADER_VISITOR;
use crate::ws::frame::{CloseFrame, OpCode};
use crate::ws::pump::{Meter, pump, send_start};
use crate::ws::stream::{FrameReader, FrameWriter, Role};

/// A prewarmed rendezvous unused this long is closed and replaced (as `hyco connect` does).
const MAX_IDLE: Duration = Duration::from_secs(60);
/// The longest a pool waits to try again after failing to open a rendezvous, unless a
/// listener joins first.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// The longest the relay spends sending a listener's end its Close: a listener that
/// stopped reading does not hold the task.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(2);

type WsRead = ReadPart<tokio_rustls::server::TlsStream<TcpStream>>;
type WsWrite = WritePart<tokio_rustls::server::TlsStream<TcpStream>>;

/// The relay's end of a visitor's tunnel: the listener's rendezvous WebSocket.
pub(super) struct ListenerEnd {
    pub(super) reader: FrameReader<WsRead>,
    pub(super) writer: FrameWriter<WsWrite>,
    /// Whether the listener waits for *start* before reaching its target.
    pub(super) deferred: bool,
    /// Its slot against the connection limit.
    _permit: OwnedSemaphorePermit,
}

impl ListenerEnd {
    pub(super) async fn goodbye(&mut self, code: u16, reason: &str) {
        let _ =
            tokio::time::timeout(GOODBYE_TIMEOUT, self.writer.send_close(Some(&CloseFrame::new(code, reason)))).await;
    }
}

impl Relay {
    /// Meets a listener of `port`'s HC for a visitor at `peer` (or, for a rendezvous opened
    /// ahead of need, the port's own address): the sender's exchange, the relay as sender.
    pub(super) async fn meet_for_visitor(&self, port: &PortInfo, peer: SocketAddr) -> Option<ListenerEnd> {
        let tracking_id = protocol::new_guid();
        let mut headers = std::collections::BTreeMap::new();
        // The upgrade headers a WebSocket sender's accept carries: Microsoft's hyco-ws
        // listener rejects an accept without a key, and its rejection path throws (the
        // listener process dies).
        let key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>());
        headers.insert("Sec-WebSocket-Key".to_owned(), key);
        headers.insert("Sec-WebSocket-Version".to_owned(), "13".to_owned());
        headers.insert(
            "Sec-WebSocket-Protocol".to_owned(),
            format!("{}, {}", protocol::PREWARM_IMMEDIATE, protocol::PREWARM_DEFERRED),
        );
        headers.insert(HEADER_VISITOR.to_owned(), port.proto.as_str().to_owned());
        let sender = Sender { headers, peer, app_query: &[], tracking_id: &tracking_id };
        match self.rendezvous(&port.hc, &port.target, sender).await {
            Ok(Answer::Accepted { stream, initial, protocol, permit }) => {
                Some(listener_end(stream, &initial, protocol, permit))
            }
            Ok(Answer::Rejected(r)) => {
                debug!(status = r.status(), "listener rejected a visitor: {}", r.text());
                None
            }
            Ok(Answer::Response { .. }) => None,
            Err(r) => {
                debug!(status = r.status(), "no listener for a visitor: {}", r.text());
                None
            }
        }
    }
}

fn listener_end(
    stream: RelayStream,
    initial: &[u8],
    protocol: Option<String>,
    permit: OwnedSemaphorePermit,
) -> ListenerEnd {
    let (read, write) = stream.split();
    ListenerEnd {
        reader: FrameReader::new(read, initial, Role::Server),
        writer: FrameWriter::new(write, Role::Server),
        deferred: protocol.as_deref() == Some(protocol::PREWARM_DEFERRED),
        _permit: permit,
    }
}

/// A visitor's connection, admitted.
struct Visitor {
    tcp: TcpStream,
    peer: SocketAddr,
    /// Its slot against the connection limit.
    _permit: OwnedSemaphorePermit,
}

/// Serves a public TCP port until `stop` fires.
pub(super) async fn serve(relay: Arc<Relay>, listener: TcpListener, port: Arc<PortInfo>, stop: CancellationToken) {
    let pool = Arc::new(Pool::new(relay.ports.settings().prewarm));
    if pool.size > 0 {
        relay.tasks.spawn(pool.clone().refill(relay.clone(), port.clone(), stop.clone()));
    }
    while let Some((tcp, peer)) = crate::net::accept(&listener, &stop, "public port").await {
        if !port.allows(peer.ip()) {
            port.counters.unserved(Unserved::NotAllowed);
            debug!(%peer, "visitor not in the port's allowlist");
            crate::net::reset(tcp);
            continue;
        }
        let Ok(permit) = relay.connections.clone().try_acquire_owned() else {
            port.counters.unserved(Unserved::ConnectionLimit);
            crate::net::reset(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let visitor = Visitor { tcp, peer, _permit: permit };
        let Err(visitor) = pool.hand(visitor) else { continue };
        let (relay2, port2) = (relay.clone(), port.clone());
        let span = info_span!("visitor", port = port.addr.port(), %peer);
        relay.tasks.spawn(
            async move {
                match relay2.meet_for_visitor(&port2, visitor.peer).await {
                    Some(end) => carry(&relay2, &port2, visitor, end).await,
                    None => {
                        port2.counters.unserved(Unserved::NoListener);
                        crate::net::reset(visitor.tcp);
                    }
                }
            }
            .instrument(span),
        );
    }
}

/// Counts a visitor's bytes per port and in its live tunnel (the relay's totals get
/// them from there).
struct PortMeter<'a> {
    port: &'a PortCounters,
    totals: [&'a AtomicU64; 2],
    /// Bytes either way, for the idle timeout.
    moved: &'a AtomicU64,
}

impl Meter for PortMeter<'_> {
    fn out(&self, n: usize) {
        self.port.bytes[0].fetch_add(n as u64, Relaxed);
        self.totals[0].fetch_add(n as u64, Relaxed);
        self.moved.fetch_add(n as u64, Relaxed);
    }

    fn inn(&self, n: usize) {
        self.port.bytes[1].fetch_add(n as u64, Relaxed);
        self.totals[1].fetch_add(n as u64, Relaxed);
        self.moved.fetch_add(n as u64, Relaxed);
    }
}

/// Pumps a visitor against its listener's end until both sides are done; a broken side
/// resets the visitor (the pump has sent the listener its Close).
async fn carry(relay: &Relay, port: &PortInfo, visitor: Visitor, mut end: ListenerEnd) {
    let _tunnel = relay.metrics.tunnel_opened();
    let _active = port.counters.opened();
    let moved = AtomicU64::new(0);
    // Listed on the status page as a tunnel of the port's HC.
    let live = relay.metrics.live_tunnel(&port.hc, Some(format!("tcp/{}", port.addr.port())));
    let totals = live.counters();
    let meter = PortMeter { port: &port.counters, totals, moved: &moved };
    let Visitor { mut tcp, .. } = visitor;
    if end.deferred {
        match send_start(&mut end.writer, |buf| tcp.try_read(buf)).await {
            Ok(n) => meter.out(n),
            Err(e) => {
                debug!("start failed: {e:?}");
                end.goodbye(close::INTERNAL_ERROR, "visitor connection failed").await;
                return crate::net::reset(tcp);
            }
        }
    }
    let idle = splice::idle(relay.limits.tunnel_idle_timeout, &moved);
    let (read, write) = tcp.split();
    let outcome = tokio::select! {
        // The listener keeps its end alive; the relay answers its pings.
        r = pump(read, write, (end.reader, end.writer, None), &meter, None, &relay.force) => r,
        () = idle => Err(crate::ws::pump::PumpError::ShuttingDown),
    };
    match outcome {
        Ok(()) => debug!("visitor done"),
        Err(why) => {
            debug!("visitor's tunnel aborted: {why}");
            crate::net::reset(tcp);
        }
    }
}

/// Rendezvous a TCP port keeps open ahead of need, each waiting in a task for a visitor.
struct Pool {
    size: usize,
    ready: Mutex<VecDeque<oneshot::Sender<Visitor>>>,
}

impl Pool {
    fn new(size: usize) -> Self {
        Self { size, ready: Mutex::default() }
    }

    /// Gives `visitor` to a waiting rendezvous, or back if none takes it.
    fn hand(&self, mut visitor: Visitor) -> Result<(), Visitor> {
        let mut ready = self.ready.lock().expect("pool lock");
        while let Some(slot) = ready.pop_front() {
            match slot.send(visitor) {
                Ok(()) => return Ok(()),
                Err(back) => visitor = back,
            }
        }
        Err(visitor)
    }

    /// Keeps `size` rendezvous open until `stop` fires. A failure (no listener online) or
    /// a listener that does not defer waits for a listener to join, or [`RETRY_AFTER`].
    async fn refill(self: Arc<Self>, relay: Arc<Relay>, port: Arc<PortInfo>, stop: CancellationToken) {
        let slots = Arc::new(Semaphore::new(self.size));
        let mut joins = relay.registry.joins();
        loop {
            let Some(Ok(slot)) = stop.run_until_cancelled(slots.clone().acquire_owned()).await else { return };
            let Some(end) = stop.run_until_cancelled(relay.meet_for_visitor(&port, port.addr)).await else { return };
            let wait = match end {
                Some(end) if end.deferred => {
                    let (tx, rx) = oneshot::channel();
                    {
                        let mut ready = self.ready.lock().expect("pool lock");
                        ready.retain(|s| !s.is_closed());
                        ready.push_back(tx);
                    }
                    let (relay, port, stop) = (relay.clone(), port.clone(), stop.clone());
                    relay
                        .tasks
                        .clone()
                        .spawn(async move { wait_for_visitor(&relay, &port, end, rx, slot, &stop).await });
                    continue;
                }
                Some(mut end) => {
                    // It reached its target already: one stray connection, then no more.
                    end.goodbye(close::NORMAL, "prewarming not supported").await;
                    None
                }
                None => Some(RETRY_AFTER),
            };
            joins.borrow_and_update();
            let joined = joins.changed();
            tokio::select! {
                _ = joined => {}
                () = async { match wait { Some(t) => tokio::time::sleep(t).await, None => std::future::pending().await } } => {}
                () = stop.cancelled() => return,
            }
        }
    }
}

/// A prewarmed rendezvous waiting for its visitor: answers pings, goes when the listener
/// closes it, is closed when unused for [`MAX_IDLE`] or when the port closes.
async fn wait_for_visitor(
    relay: &Relay,
    port: &PortInfo,
    mut end: ListenerEnd,
    mut visitor: oneshot::Receiver<Visitor>,
    slot: OwnedSemaphorePermit,
    stop: &CancellationToken,
) {
    let idle = tokio::time::sleep(MAX_IDLE);
    tokio::pin!(idle);
    loop {
        tokio::select! {
            v = &mut visitor => {
                let Ok(v) = v else { return };
                drop(slot);
                let span = info_span!("visitor", port = port.addr.port(), peer = %v.peer);
                return carry(relay, port, v, end).instrument(span).await;
            }
            frame = end.reader.header() => {
                let Ok(Some(header)) = frame else { return };
                match header.opcode {
                    OpCode::Ping => {
                        let Ok(payload) = end.reader.control_payload().await else { return };
                        if end.writer.send(OpCode::Pong, &payload).await.is_err() {
                            return;
                        }
                    }
                    OpCode::Pong => {
                        if end.reader.control_payload().await.is_err() {
                            return;
                        }
                    }
                    OpCode::Close => return end.goodbye(close::NORMAL, "").await,
                    _ => return end.goodbye(close::PROTOCOL_ERROR, "data on a tunnel not started").await,
                }
            }
            () = &mut idle => return end.goodbye(close::NORMAL, "prewarmed tunnel not used").await,
            () = stop.cancelled() => return end.goodbye(close::GOING_AWAY, "public port closed").await,
        }
    }
}
