//! The relay's counters and gauges, and a small HTTP endpoint that serves them in the
//! Prometheus text exposition format 0.0.4 (`hyco serve --metrics ADDR`).
//!
//! Counting is atomics only: the relay bumps a counter where something happens, before
//! the peer hears of it, so a scrape after a peer's answer sees it. Label values are HC
//! names the relay registered and a fixed set of reasons, never text a peer chose. The
//! endpoint answers `GET /metrics` (and `HEAD`), one bounded request per connection,
//! plain HTTP: bind it to loopback or a private address. Connections that have sent no
//! request yet give way to new ones, so idle connections cannot hold scrapes off.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use super::activity::{Activity, LiveGuard};
use crate::http1::{self, HeadError};

/// Upper bounds (seconds) of the `hyco_rendezvous_seconds` buckets; `+Inf` follows.
pub const RENDEZVOUS_BUCKETS: [f64; 14] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// A scrape's request head is bounded as every page's is.
pub use crate::pages::{MAX_REQUEST_BYTES, REQUEST_TIMEOUT};
/// Time to write the answer to a scraper that reads slowly.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Scrape connections served at once. When all are taken, a new connection closes the
/// oldest one that has not sent its request yet; with none such, it gets 503.
pub const MAX_SCRAPE_CONNECTIONS: usize = 8;
/// How long a new connection waits for the slot of the connection it closed.
const EVICTION_WAIT: Duration = Duration::from_secs(1);
/// After a refusal, how much of the rest of the request is read (and how long for), so
/// that closing does not reset the connection before the client reads the answer.
const LINGER_BYTES: usize = 64 * 1024;
const LINGER: Duration = Duration::from_secs(1);

/// Why the relay rejected a handshake or request: the fixed label set of
/// `hyco_rejected_handshakes_total{reason}`. A [`super::Rejection`] carries one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Not a well-formed upgrade, bad address or query, a malformed HTTP-mode request (400).
    BadRequest,
    /// Request head over the limit (431).
    TooLarge,
    /// No complete request within the handshake timeout.
    Timeout,
    /// The TLS handshake failed.
    Tls,
    /// Token missing, malformed, forged, expired or for another audience (401).
    Unauthorized,
    /// Token lacks the right for the action (403).
    Forbidden,
    /// Not a hybrid connection address, or no such HC (404).
    NotFound,
    /// A sender for an HC with no listener online (404).
    NoListener,
    /// The HC already has its maximum of listeners (403).
    ListenerLimit,
    /// The relay has its maximum of connections (503).
    ConnectionLimit,
    /// The source address has its maximum of connections in handshake (503).
    AddressLimit,
    /// A listener would create an HC whose name nests with an existing one's (409).
    NameConflict,
    /// The relay has its maximum of HCs created on first listen (503).
    HcLimit,
    /// A public port asked for is another HC's, in use, or none is free (409).
    PortConflict,
    /// The HC has its maximum of waiting senders (503).
    PendingLimit,
    /// The listener rejected the sender, with its own status.
    ListenerRejected,
    /// No listener answered within the accept window (504).
    AcceptTimeout,
    /// An accept for an unknown, used or expired rendezvous address (403).
    BadAcceptAddress,
    /// A waiting sender when the relay shut down (503).
    ShuttingDown,
    /// The rendezvous failed inside the relay (500).
    Internal,
}

impl Reason {
    pub const ALL: [Self; 20] = [
        Self::BadRequest,
        Self::TooLarge,
        Self::Timeout,
        Self::Tls,
        Self::Unauthorized,
        Self::Forbidden,
        Self::NotFound,
        Self::NoListener,
        Self::ListenerLimit,
        Self::ConnectionLimit,
        Self::AddressLimit,
        Self::NameConflict,
        Self::HcLimit,
        Self::PortConflict,
        Self::PendingLimit,
        Self::ListenerRejected,
        Self::AcceptTimeout,
        Self::BadAcceptAddress,
        Self::ShuttingDown,
        Self::Internal,
    ];

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::TooLarge => "too_large",
            Self::Timeout => "timeout",
            Self::Tls => "tls",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::NoListener => "no_listener",
            Self::ListenerLimit => "listener_limit",
            Self::ConnectionLimit => "connection_limit",
            Self::AddressLimit => "address_limit",
            Self::NameConflict => "name_conflict",
            Self::HcLimit => "hc_limit",
            Self::PortConflict => "port_conflict",
            Self::PendingLimit => "pending_limit",
            Self::ListenerRejected => "listener_rejected",
            Self::AcceptTimeout => "accept_timeout",
            Self::BadAcceptAddress => "bad_accept_address",
            Self::ShuttingDown => "shutting_down",
            Self::Internal => "internal",
        }
    }
}

/// A direction of tunnel payload: the `direction` label of `hyco_relayed_bytes_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    SenderToListener,
    ListenerToSender,
}

impl Flow {
    pub fn label(self) -> &'static str {
        match self {
            Self::SenderToListener => "sender_to_listener",
            Self::ListenerToSender => "listener_to_sender",
        }
    }
}

/// Why a public port served a visitor not, or dropped a datagram: the `reason` label of
/// `hyco_public_rejected_total` (docs/protocol.md 10.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unserved {
    /// The source is not in the port's allowlist (reset).
    NotAllowed,
    /// No listener could take it: none online, the waiting limit, no answer in time (reset).
    NoListener,
    /// The relay has its maximum of connections (reset).
    ConnectionLimit,
    /// UDP: the port has its maximum of sessions (datagram dropped).
    SessionLimit,
    /// UDP: a datagram over the size limit, either way (dropped).
    Oversize,
    /// UDP: more datagrams than a session opening may hold (dropped).
    QueueFull,
}

impl Unserved {
    pub const ALL: [Self; 6] = [
        Self::NotAllowed,
        Self::NoListener,
        Self::ConnectionLimit,
        Self::SessionLimit,
        Self::Oversize,
        Self::QueueFull,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::NotAllowed => "not_allowed",
            Self::NoListener => "no_listener",
            Self::ConnectionLimit => "connection_limit",
            Self::SessionLimit => "session_limit",
            Self::Oversize => "oversize",
            Self::QueueFull => "queue_full",
        }
    }
}

/// One public port's counters; the series go when the port closes.
#[derive(Default)]
pub struct PortCounters {
    /// TCP connections carried, or UDP sessions opened.
    pub(crate) opened: AtomicU64,
    /// TCP connections or UDP sessions now open.
    pub(crate) active: AtomicU64,
    /// Payload bytes, visitor to listener and back.
    pub(crate) bytes: [AtomicU64; 2],
    /// UDP: datagrams, visitor to listener and back.
    pub(crate) datagrams: [AtomicU64; 2],
    /// Indexed by `Unserved as usize`.
    pub(crate) unserved: [AtomicU64; Unserved::ALL.len()],
}

impl PortCounters {
    pub(crate) fn unserved(&self, why: Unserved) {
        self.unserved[why as usize].fetch_add(1, Relaxed);
    }

    /// Counts a connection or session, and an active one until the guard drops.
    pub(crate) fn opened(&self) -> GaugeGuard<'_> {
        self.opened.fetch_add(1, Relaxed);
        self.active.fetch_add(1, Relaxed);
        GaugeGuard(&self.active)
    }

    pub fn rejected(&self, why: Unserved) -> u64 {
        self.unserved[why as usize].load(Relaxed)
    }

    pub fn active(&self) -> u64 {
        self.active.load(Relaxed)
    }
}

/// A public port's key in the metrics: protocol and number.
type PortKey = (crate::public::Proto, u16);

/// Counts per bucket (not cumulative; the last is `+Inf`) and the sum of observations.
#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; RENDEZVOUS_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

/// Everything `hyco serve` counts. Shared by the relay and the metrics endpoint.
#[derive(Default)]
pub struct Metrics {
    /// Control channels per HC; an HC is listed (at 0 if need be) while the relay has it.
    listeners: Mutex<BTreeMap<String, u64>>,
    tunnels_active: AtomicU64,
    tunnels_total: AtomicU64,
    /// Indexed by `Flow as usize`.
    relayed: [AtomicU64; 2],
    rendezvous: Histogram,
    /// Indexed by `Reason as usize`.
    rejected: [AtomicU64; Reason::ALL.len()],
    connections_open: AtomicU64,
    /// HTTP mode: client connections, requests read, responses by status class (1xx-5xx).
    http_connections: AtomicU64,
    http_requests: AtomicU64,
    http_responses: [AtomicU64; 5],
    /// Open public ports: the HC each belongs to, and its counters.
    public: Mutex<BTreeMap<PortKey, (String, Arc<PortCounters>)>>,
    /// A cluster node's own series, listed only when the relay is one.
    cluster: ClusterCounters,
    /// Tunnels open now and recent rejections, for the status page; an open tunnel's
    /// bytes join `relayed` when it closes, and [`Metrics::relayed_bytes`] adds them in.
    activity: Activity,
    /// The relay counting here, for the status page (`hyco serve --dashboard`).
    attached: Mutex<Option<Attached>>,
}

/// What the status page reads besides the counters: the relay's registry (read-only
/// snapshots), its limits, and when it started.
#[derive(Clone)]
pub(super) struct Attached {
    pub(super) registry: Weak<super::registry::Registry>,
    pub(super) limits: super::Limits,
    pub(super) started: Instant,
}

/// What a cluster node counts (docs/protocol.md 11).
#[derive(Default)]
pub(crate) struct ClusterCounters {
    enabled: std::sync::atomic::AtomicBool,
    redis_up: AtomicU64,
    nodes: AtomicU64,
    /// 1 while another live node has this node's id.
    id_conflict: AtomicU64,
    /// Deliveries this node asked of others, by outcome: delivered, busy, gone.
    deliveries: [AtomicU64; 3],
    dropped: AtomicU64,
}

impl ClusterCounters {
    pub(crate) fn enable(&self) {
        self.enabled.store(true, Relaxed);
    }

    pub(crate) fn set_redis_up(&self, up: bool) {
        self.redis_up.store(u64::from(up), Relaxed);
    }

    pub(crate) fn set_id_conflict(&self, taken: bool) {
        self.id_conflict.store(u64::from(taken), Relaxed);
    }

    pub(crate) fn set_nodes(&self, n: u64) {
        self.nodes.store(n, Relaxed);
    }

    /// Counts a delivery asked of another node; `outcome` 0 delivered, 1 busy, 2 gone.
    pub(crate) fn delivery(&self, outcome: usize) {
        self.deliveries[outcome].fetch_add(1, Relaxed);
    }

    /// Counts a node message dropped: too large, malformed, or over the inbound bound.
    pub(crate) fn drop_message(&self) {
        self.dropped.fetch_add(1, Relaxed);
    }

    fn render(&self, out: &mut String, family: &impl Fn(&mut String, &str, &str, &str)) {
        if !self.enabled.load(Relaxed) {
            return;
        }
        family(out, "hyco_cluster_redis_up", "gauge", "Whether this node reaches Redis (1) or not (0).");
        let _ = writeln!(out, "hyco_cluster_redis_up {}", self.redis_up.load(Relaxed));
        family(out, "hyco_cluster_nodes", "gauge", "Live nodes of the cluster, as this node last saw them in Redis.");
        let _ = writeln!(out, "hyco_cluster_nodes {}", self.nodes.load(Relaxed));
        family(
            out,
            "hyco_cluster_node_id_conflict",
            "gauge",
            "Whether another live node has this node's node_id (1), which keeps this one out of the cluster.",
        );
        let _ = writeln!(out, "hyco_cluster_node_id_conflict {}", self.id_conflict.load(Relaxed));
        family(
            out,
            "hyco_cluster_deliveries_total",
            "counter",
            "Accepts and requests this node handed to listeners on other nodes, by outcome.",
        );
        for (i, outcome) in ["delivered", "busy", "gone"].iter().enumerate() {
            let _ = writeln!(
                out,
                "hyco_cluster_deliveries_total{{outcome=\"{outcome}\"}} {}",
                self.deliveries[i].load(Relaxed)
            );
        }
        family(
            out,
            "hyco_cluster_dropped_messages_total",
            "counter",
            "Messages from other nodes dropped: too large, malformed, or over the inbound bound.",
        );
        let _ = writeln!(out, "hyco_cluster_dropped_messages_total {}", self.dropped.load(Relaxed));
    }
}

/// Decrements a gauge when dropped.
pub(crate) struct GaugeGuard<'a>(&'a AtomicU64);

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn set_listeners(&self, hc: &str, count: usize) {
        let mut map = self.listeners.lock().expect("metrics lock");
        match map.get_mut(hc) {
            Some(n) => *n = count as u64,
            None => {
                map.insert(hc.to_owned(), count as u64);
            }
        }
    }

    /// Stops listing `hc`: the relay has forgotten it.
    pub(crate) fn forget_hc(&self, hc: &str) {
        self.listeners.lock().expect("metrics lock").remove(hc);
    }

    /// Counts an open connection until the guard drops.
    pub(crate) fn connection_opened(&self) -> GaugeGuard<'_> {
        self.connections_open.fetch_add(1, Relaxed);
        GaugeGuard(&self.connections_open)
    }

    /// Counts a tunnel, and an active one until the guard drops.
    pub(crate) fn tunnel_opened(&self) -> GaugeGuard<'_> {
        self.tunnels_total.fetch_add(1, Relaxed);
        self.tunnels_active.fetch_add(1, Relaxed);
        GaugeGuard(&self.tunnels_active)
    }

    pub(crate) fn observe_rendezvous(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let i = RENDEZVOUS_BUCKETS.iter().position(|&b| secs <= b).unwrap_or(RENDEZVOUS_BUCKETS.len());
        self.rendezvous.buckets[i].fetch_add(1, Relaxed);
        self.rendezvous.sum_nanos.fetch_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }

    /// Counts a client connection that became HTTP mode.
    pub(crate) fn http_connection(&self) {
        self.http_connections.fetch_add(1, Relaxed);
    }

    /// Counts an HTTP-mode request whose head was read.
    pub(crate) fn http_request(&self) {
        self.http_requests.fetch_add(1, Relaxed);
    }

    /// Counts an HTTP-mode response head written, by its status class.
    pub(crate) fn http_response(&self, status: u16) {
        if let Some(c) = (usize::from(status) / 100).checked_sub(1).and_then(|i| self.http_responses.get(i)) {
            c.fetch_add(1, Relaxed);
        }
    }

    /// HTTP-mode client connections so far.
    pub fn http_connections(&self) -> u64 {
        self.http_connections.load(Relaxed)
    }

    /// HTTP-mode requests so far.
    pub fn http_requests(&self) -> u64 {
        self.http_requests.load(Relaxed)
    }

    /// HTTP-mode responses with a status in `class` (`2` for 2xx).
    pub fn http_responses(&self, class: u16) -> u64 {
        (usize::from(class).checked_sub(1)).and_then(|i| self.http_responses.get(i)).map_or(0, |c| c.load(Relaxed))
    }

    pub(crate) fn reject(&self, why: Reason) {
        self.rejected[why as usize].fetch_add(1, Relaxed);
        self.activity.rejected(why);
    }

    /// A public port's counters, listed from now on under `hc`.
    pub(crate) fn public_port(&self, proto: crate::public::Proto, port: u16, hc: &str) -> Arc<PortCounters> {
        let mut map = self.public.lock().expect("metrics lock");
        map.entry((proto, port)).or_insert_with(|| (hc.to_owned(), Arc::default())).1.clone()
    }

    /// Stops listing a public port: it has closed.
    pub(crate) fn forget_public_port(&self, proto: crate::public::Proto, port: u16) {
        self.public.lock().expect("metrics lock").remove(&(proto, port));
    }

    /// The counters of an open public port.
    pub fn public_counters(&self, proto: crate::public::Proto, port: u16) -> Option<Arc<PortCounters>> {
        self.public.lock().expect("metrics lock").get(&(proto, port)).map(|(_, c)| c.clone())
    }

    /// Control channels open for `hc` (0 if the relay never knew it).
    pub fn listeners(&self, hc: &str) -> u64 {
        self.listeners.lock().expect("metrics lock").get(hc).copied().unwrap_or(0)
    }

    pub fn tunnels_active(&self) -> u64 {
        self.tunnels_active.load(Relaxed)
    }

    pub fn tunnels_total(&self) -> u64 {
        self.tunnels_total.load(Relaxed)
    }

    /// Data payload bytes relayed `flow`'s way: by closed tunnels, public ports, and the
    /// tunnels open now.
    pub fn relayed_bytes(&self, flow: Flow) -> u64 {
        self.activity.total(&self.relayed, flow as usize)
    }

    /// Lists a tunnel of `hc` (through public port `via`, if it came through one) until
    /// the guard drops; its bytes are counted into [`LiveGuard::counters`], and into the
    /// totals when it closes.
    pub(crate) fn live_tunnel(&self, hc: &str, via: Option<String>) -> LiveGuard<'_> {
        self.activity.open(hc, via, &self.relayed)
    }

    /// What the relay is doing now.
    pub(crate) fn activity(&self) -> &Activity {
        &self.activity
    }

    /// Open public ports: protocol, number, HC and counters.
    pub(crate) fn public_ports(&self) -> Vec<(PortKey, String, Arc<PortCounters>)> {
        let map = self.public.lock().expect("metrics lock");
        map.iter().map(|(key, (hc, c))| (*key, hc.clone(), c.clone())).collect()
    }

    /// Tells the status page which relay counts here (the last one to start).
    pub(super) fn attach(&self, attached: Attached) {
        *self.attached.lock().expect("metrics lock") = Some(attached);
    }

    pub(super) fn attached(&self) -> Option<Attached> {
        self.attached.lock().expect("metrics lock").clone()
    }

    pub fn rendezvous_count(&self) -> u64 {
        self.rendezvous.buckets.iter().map(|b| b.load(Relaxed)).sum()
    }

    pub fn rejected(&self, why: Reason) -> u64 {
        self.rejected[why as usize].load(Relaxed)
    }

    pub(crate) fn cluster(&self) -> &ClusterCounters {
        &self.cluster
    }

    /// Messages from other cluster nodes dropped as too large, malformed or too many.
    pub fn cluster_dropped_messages(&self) -> u64 {
        self.cluster.dropped.load(Relaxed)
    }

    pub(crate) fn connections_open(&self) -> u64 {
        self.connections_open.load(Relaxed)
    }

    /// The exposition text (format 0.0.4). Every series is present, at 0 if need be.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let family = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        family(
            &mut out,
            "hyco_connections_open",
            "gauge",
            "Connections counted against the connection limit, handshakes included.",
        );
        let _ = writeln!(out, "hyco_connections_open {}", self.connections_open());

        family(&mut out, "hyco_listeners", "gauge", "Listener control channels open, per hybrid connection.");
        for (hc, n) in self.listeners.lock().expect("metrics lock").iter() {
            let _ = writeln!(out, "hyco_listeners{{hc=\"{}\"}} {n}", escape_label(hc));
        }

        family(&mut out, "hyco_tunnels_active", "gauge", "Tunnels between a sender and a listener now open.");
        let _ = writeln!(out, "hyco_tunnels_active {}", self.tunnels_active());
        family(&mut out, "hyco_tunnels_total", "counter", "Tunnels opened.");
        let _ = writeln!(out, "hyco_tunnels_total {}", self.tunnels_total());

        family(&mut out, "hyco_relayed_bytes_total", "counter", "Data frame payload bytes relayed through tunnels.");
        for flow in [Flow::SenderToListener, Flow::ListenerToSender] {
            let _ = writeln!(
                out,
                "hyco_relayed_bytes_total{{direction=\"{}\"}} {}",
                flow.label(),
                self.relayed_bytes(flow)
            );
        }

        family(
            &mut out,
            "hyco_rendezvous_seconds",
            "histogram",
            "Time from a sender's upgrade request to its listener's accept.",
        );
        let mut cumulative = 0;
        for (i, bucket) in self.rendezvous.buckets.iter().enumerate() {
            cumulative += bucket.load(Relaxed);
            let le = RENDEZVOUS_BUCKETS.get(i).map_or_else(|| "+Inf".to_owned(), f64::to_string);
            let _ = writeln!(out, "hyco_rendezvous_seconds_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let sum = self.rendezvous.sum_nanos.load(Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "hyco_rendezvous_seconds_sum {sum}\nhyco_rendezvous_seconds_count {cumulative}");

        family(&mut out, "hyco_rejected_handshakes_total", "counter", "Handshakes the relay refused, by reason.");
        for why in Reason::ALL {
            let _ =
                writeln!(out, "hyco_rejected_handshakes_total{{reason=\"{}\"}} {}", why.label(), self.rejected(why));
        }
        family(&mut out, "hyco_http_connections_total", "counter", "HTTP-mode client connections.");
        let _ = writeln!(out, "hyco_http_connections_total {}", self.http_connections());
        family(&mut out, "hyco_http_requests_total", "counter", "HTTP-mode requests read.");
        let _ = writeln!(out, "hyco_http_requests_total {}", self.http_requests());
        family(&mut out, "hyco_http_responses_total", "counter", "HTTP-mode responses, by status class.");
        for class in 1..=5 {
            let _ = writeln!(out, "hyco_http_responses_total{{class=\"{class}xx\"}} {}", self.http_responses(class));
        }
        self.cluster.render(&mut out, &family);
        self.render_public(&mut out, family);
        out
    }

    /// The public ports' series, one set per open port.
    fn render_public(&self, out: &mut String, family: impl Fn(&mut String, &str, &str, &str)) {
        let ports = self.public.lock().expect("metrics lock");
        let labels = |(proto, port): &PortKey, hc: &str| {
            format!("proto=\"{proto}\",port=\"{port}\",hc=\"{}\"", escape_label(hc))
        };
        family(out, "hyco_public_ports_open", "gauge", "Public ports open on the relay.");
        let _ = writeln!(out, "hyco_public_ports_open {}", ports.len());
        family(
            out,
            "hyco_public_opened_total",
            "counter",
            "Visitors served per public port: TCP connections, UDP sessions.",
        );
        for (key, (hc, c)) in ports.iter() {
            let _ = writeln!(out, "hyco_public_opened_total{{{}}} {}", labels(key, hc), c.opened.load(Relaxed));
        }
        family(out, "hyco_public_active", "gauge", "TCP connections or UDP sessions open per public port.");
        for (key, (hc, c)) in ports.iter() {
            let _ = writeln!(out, "hyco_public_active{{{}}} {}", labels(key, hc), c.active());
        }
        let directions = ["visitor_to_listener", "listener_to_visitor"];
        family(out, "hyco_public_bytes_total", "counter", "Payload bytes through a public port, by direction.");
        for (key, (hc, c)) in ports.iter() {
            for (i, dir) in directions.iter().enumerate() {
                let n = c.bytes[i].load(Relaxed);
                let _ = writeln!(out, "hyco_public_bytes_total{{{},direction=\"{dir}\"}} {n}", labels(key, hc));
            }
        }
        family(out, "hyco_public_datagrams_total", "counter", "Datagrams through a public UDP port, by direction.");
        for (key, (hc, c)) in ports.iter().filter(|((proto, _), _)| *proto == crate::public::Proto::Udp) {
            for (i, dir) in directions.iter().enumerate() {
                let n = c.datagrams[i].load(Relaxed);
                let _ = writeln!(out, "hyco_public_datagrams_total{{{},direction=\"{dir}\"}} {n}", labels(key, hc));
            }
        }
        family(
            out,
            "hyco_public_rejected_total",
            "counter",
            "Visitors reset and datagrams dropped per public port, by reason.",
        );
        for (key, (hc, c)) in ports.iter() {
            for why in Unserved::ALL {
                let n = c.rejected(why);
                let _ =
                    writeln!(out, "hyco_public_rejected_total{{{},reason=\"{}\"}} {n}", labels(key, hc), why.label());
            }
        }
    }
}

/// Escapes a label value: backslash, double quote and line feed (format 0.0.4).
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Serves `GET /metrics` on `listener` until `shutdown` fires. Other paths get 404,
/// other methods 405; a request head over [`MAX_REQUEST_BYTES`] gets 431, one not
/// complete within [`REQUEST_TIMEOUT`] 408. At most [`MAX_SCRAPE_CONNECTIONS`] are served
/// at once. Accept errors never end the loop.
pub async fn serve_metrics(listener: TcpListener, metrics: Arc<Metrics>, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_SCRAPE_CONNECTIONS));
    let waiting = Waiting::default();
    let tracker = TaskTracker::new();
    while let Some((tcp, _)) = crate::net::accept(&listener, &shutdown, "metrics").await {
        let permit = match slots.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) if waiting.evict_oldest() => {
                tokio::time::timeout(EVICTION_WAIT, slots.clone().acquire_owned()).await.ok().and_then(Result::ok)
            }
            Err(_) => None,
        };
        let Some(permit) = permit else {
            let _ = tcp.try_write(http1::error_response(503, "Too many scrapes at once").as_bytes());
            continue;
        };
        let metrics = metrics.clone();
        let shutdown = shutdown.clone();
        let entry = waiting.enter();
        tracker.spawn(async move {
            tokio::select! {
                () = scrape(tcp, &metrics, entry) => {}
                () = shutdown.cancelled() => {}
            }
            drop(permit);
        });
    }
    tracker.close();
    tracker.wait().await;
}

/// The connections that have not sent their request yet, oldest first, each with the
/// signal that closes it.
#[derive(Clone, Default)]
struct Waiting(Arc<Mutex<Queue>>);

/// The id the next connection gets, and the waiting ones' ids and signals.
type Queue = (u64, VecDeque<(u64, CancellationToken)>);

/// A connection's place in [`Waiting`], left when dropped.
struct WaitingEntry {
    waiting: Waiting,
    id: u64,
    evicted: CancellationToken,
}

impl Waiting {
    fn enter(&self) -> WaitingEntry {
        let mut guard = self.0.lock().expect("metrics lock");
        let (next, queue) = &mut *guard;
        let (id, evicted) = (*next, CancellationToken::new());
        *next += 1;
        queue.push_back((id, evicted.clone()));
        WaitingEntry { waiting: self.clone(), id, evicted }
    }

    /// Closes the oldest connection still waiting; whether there was one.
    fn evict_oldest(&self) -> bool {
        let oldest = self.0.lock().expect("metrics lock").1.pop_front();
        oldest.map(|(_, evicted)| evicted.cancel()).is_some()
    }
}

impl Drop for WaitingEntry {
    fn drop(&mut self) {
        self.waiting.0.lock().expect("metrics lock").1.retain(|(id, _)| *id != self.id);
    }
}

/// Answers one request on `tcp`, then closes it; closes it unanswered if `waiting` is
/// evicted before the request is complete.
async fn scrape(mut tcp: TcpStream, metrics: &Metrics, waiting: WaitingEntry) {
    let evicted = waiting.evicted.clone();
    let request = tokio::select! {
        r = tokio::time::timeout(REQUEST_TIMEOUT, http1::read_request(&mut tcp, MAX_REQUEST_BYTES)) => r,
        () = evicted.cancelled() => return,
    };
    drop(waiting);
    // Ok: the request to answer with the metrics; Err: the status and text to refuse with.
    let outcome = match request {
        Ok(Ok((req, _))) => {
            let path = req.target.split_once('?').map_or(req.target.as_str(), |(p, _)| p);
            match (req.method.as_str(), path) {
                ("GET" | "HEAD", "/metrics") => Ok(req),
                ("GET" | "HEAD", _) => Err((404, "Not found; try /metrics")),
                _ => Err((405, "Only GET /metrics is served")),
            }
        }
        Ok(Err(HeadError::TooLarge)) => Err((431, "Request header fields too large")),
        Ok(Err(HeadError::Malformed(_))) => Err((400, "Malformed request")),
        Ok(Err(_)) => return,
        Err(_) => Err((408, "Request timeout")),
    };
    let answer = match &outcome {
        Ok(req) => {
            let body = metrics.render();
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            if req.method == "HEAD" { head } else { head + &body }
        }
        Err((status, text)) => {
            debug!(status, "metrics request refused");
            http1::error_response(*status, text)
        }
    };
    let _ = tokio::time::timeout(RESPONSE_TIMEOUT, async {
        let _ = tcp.write_all(answer.as_bytes()).await;
        let _ = tcp.shutdown().await;
    })
    .await;
    if outcome.is_err() {
        // The client may still be sending (an oversize head): read some of it, so that
        // closing with unread data does not reset the connection under the answer.
        let _ = tokio::time::timeout(LINGER, async {
            let mut buf = [0; 4096];
            let mut left = LINGER_BYTES;
            while left > 0 {
                match tcp.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => left = left.saturating_sub(n),
                }
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_series_with_cumulative_buckets() {
        let m = Metrics::new();
        m.set_listeners("b\"x\\y\nz", 2);
        m.set_listeners("a", 0);
        let _open = m.connection_opened();
        drop(m.tunnel_opened());
        m.relayed[Flow::ListenerToSender as usize].fetch_add(7, Relaxed);
        m.observe_rendezvous(Duration::from_micros(500));
        m.observe_rendezvous(Duration::from_millis(20));
        m.observe_rendezvous(Duration::from_secs(60));
        m.reject(Reason::NoListener);
        m.http_connection();
        m.http_request();
        m.http_request();
        m.http_response(200);
        m.http_response(404);
        m.http_response(204);
        m.http_response(99);
        m.http_response(600);
        let text = m.render();
        for line in [
            "hyco_connections_open 1",
            "hyco_listeners{hc=\"a\"} 0",
            "hyco_listeners{hc=\"b\\\"x\\\\y\\nz\"} 2",
            "hyco_tunnels_active 0",
            "hyco_tunnels_total 1",
            "hyco_relayed_bytes_total{direction=\"sender_to_listener\"} 0",
            "hyco_relayed_bytes_total{direction=\"listener_to_sender\"} 7",
            "hyco_rendezvous_seconds_bucket{le=\"0.001\"} 1",
            "hyco_rendezvous_seconds_bucket{le=\"0.0025\"} 1",
            "hyco_rendezvous_seconds_bucket{le=\"0.025\"} 2",
            "hyco_rendezvous_seconds_bucket{le=\"30\"} 2",
            "hyco_rendezvous_seconds_bucket{le=\"+Inf\"} 3",
            "hyco_rendezvous_seconds_sum 60.0205",
            "hyco_rendezvous_seconds_count 3",
            "hyco_rejected_handshakes_total{reason=\"no_listener\"} 1",
            "hyco_rejected_handshakes_total{reason=\"bad_request\"} 0",
            "# TYPE hyco_rendezvous_seconds histogram",
            "hyco_http_connections_total 1",
            "hyco_http_requests_total 2",
            "hyco_http_responses_total{class=\"1xx\"} 0",
            "hyco_http_responses_total{class=\"2xx\"} 2",
            "hyco_http_responses_total{class=\"4xx\"} 1",
            "hyco_http_responses_total{class=\"5xx\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert_eq!(text.matches("hyco_rejected_handshakes_total{").count(), Reason::ALL.len());
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn a_live_tunnels_bytes_count_in_the_totals_while_open_and_after() {
        let m = Metrics::new();
        m.relayed[Flow::SenderToListener as usize].fetch_add(5, Relaxed);
        let live = m.live_tunnel("web", None);
        live.counters()[0].fetch_add(7, Relaxed);
        live.counters()[1].fetch_add(3, Relaxed);
        assert_eq!(m.activity().tunnels().len(), 1);
        assert_eq!(m.relayed_bytes(Flow::SenderToListener), 12);
        assert_eq!(m.relayed_bytes(Flow::ListenerToSender), 3);
        drop(live);
        assert!(m.activity().tunnels().is_empty());
        assert_eq!(m.relayed_bytes(Flow::SenderToListener), 12);
        assert_eq!(m.relayed_bytes(Flow::ListenerToSender), 3);
    }

    #[test]
    fn every_rejection_has_a_distinct_label_at_its_index() {
        for (i, why) in Reason::ALL.iter().enumerate() {
            assert_eq!(*why as usize, i);
            assert!(why.label().bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        }
        let mut labels: Vec<_> = Reason::ALL.iter().map(|r| r.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), Reason::ALL.len());
    }
}
