//! A relay of several nodes (docs/protocol.md 11): each node keeps its listeners'
//! entries in Redis, refreshed so that a dead node's vanish; a sender at one node meets a
//! listener on another through a message on that node's Redis channel, which hands the
//! listener an accept (or request) whose rendezvous address is on the sender's node.
//! Routing only: no byte of a tunnel crosses between nodes, and a rendezvous secret is
//! only ever checked by the node that made it.
//!
//! Without Redis a node goes on serving its own listeners and senders, says so once, and
//! writes all its entries again when Redis is back. This module does not touch the
//! registry's state: it reads the registry's listeners and hands messages to them.

mod settings;
mod wire;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind, Script, Value};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

pub use settings::ClusterSettings;
pub(super) use settings::FileCluster;
pub(super) use wire::Delivery;
use wire::{Entry, NodeMessage};

use super::metrics::Metrics;
use super::registry::{Listener, Registry};
use crate::protocol::{RelayMessage, name_key};

/// How long a node waits for another's answer to a delivery, past the wait it asked for.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on connecting to Redis, and on each command's answer: past it Redis counts as
/// unreachable and the node serves its own listeners only.
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(1);
/// Node messages read from Redis and not yet handled; more are dropped and counted.
pub const INBOUND_QUEUE: usize = 4096;
/// Deliveries for other nodes being handed to this node's listeners at once; more are
/// answered `busy`.
pub const MAX_INBOUND_DELIVERIES: usize = 1024;
/// Bound on removing this node's entries at a graceful shutdown.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Redis's state as this node last saw it.
const UNKNOWN: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

/// This node's link to the cluster.
pub(super) struct Cluster {
    node: String,
    /// The base of rendezvous addresses this node gives listeners on other nodes.
    base: Arc<str>,
    conn: ConnectionManager,
    state: AtomicU8,
    /// This run's token in Redis for `node` ([`wire::owner_key`]).
    instance: String,
    /// Another live node holds `node`: this one stays out of the cluster (lists no
    /// listener, reads no channel, asks no node) and counts alone, as with Redis down.
    outside: AtomicBool,
    seq: AtomicU64,
    /// This node's listeners counted in (by [`Cluster::admit`]), by HC key and id: only
    /// they are written to Redis, so that one turned away is never added back.
    admitted: Mutex<HashSet<(String, u64)>>,
    /// Deliveries asked of other nodes, waiting for their outcome, by sequence number.
    waiting: Mutex<HashMap<u64, oneshot::Sender<Delivery>>>,
    admit: Script,
    refresh: Script,
    live: Script,
    claim: Script,
    release: Script,
    /// The longest a listener's queue may be waited on: the accept window, or HTTP
    /// mode's response timeout if longer.
    max_wait: Duration,
    metrics: Arc<Metrics>,
}

impl Cluster {
    /// A node `node` at `base` on `conn`, in Redis state `state`, with nothing admitted
    /// or waiting yet: what joining and the unit tests both start from.
    fn with(
        node: String,
        base: Arc<str>,
        conn: ConnectionManager,
        state: u8,
        max_wait: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            node,
            base,
            conn,
            state: AtomicU8::new(state),
            instance: wire::random_instance(),
            outside: AtomicBool::new(false),
            seq: AtomicU64::new(0),
            admitted: Mutex::new(HashSet::new()),
            waiting: Mutex::new(HashMap::new()),
            admit: Script::new(&wire::admit_script()),
            refresh: Script::new(&wire::refresh_script()),
            live: Script::new(&wire::live_script()),
            claim: Script::new(wire::CLAIM_SCRIPT),
            release: Script::new(wire::RELEASE_SCRIPT),
            max_wait,
            metrics,
        }
    }

    /// Joins the cluster: connects to Redis (lazily: a Redis that is down now is only
    /// logged), reads this node's channel, and keeps this node's entries fresh until
    /// `shutdown`. Tasks go on `tasks`.
    pub(super) fn start(
        settings: &ClusterSettings,
        base: String,
        max_wait: Duration,
        registry: Arc<Registry>,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
        tasks: &TaskTracker,
    ) -> anyhow::Result<Arc<Self>> {
        let mut info = settings.redis_url.as_str().into_connection_info().context("reading the Redis URL")?;
        let mut redis = info.redis_settings().clone().set_protocol(ProtocolVersion::RESP3);
        if let Some(password) = &settings.password {
            redis = redis.set_password(password.expose());
        }
        info = info.set_redis_settings(redis);
        let client = match &settings.ca {
            None => redis::Client::open(info),
            Some(pem) => {
                let certs = redis::TlsCertificates { client_tls: None, root_cert: Some(pem.clone()) };
                redis::Client::build_with_tls(info, certs)
            }
        }
        .context("setting up the Redis client")?;
        let (push, inbound) = inbound_queue(metrics.clone());
        let config = ConnectionManagerConfig::new()
            .set_push_sender(push)
            .set_automatic_resubscription()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(100))
            .set_max_delay(REDIS_TIMEOUT);
        let conn = ConnectionManager::new_lazy_with_config(client, config).context("setting up the Redis client")?;
        metrics.cluster().enable();
        let cluster = Arc::new(Self::with(settings.node_id.clone(), base.into(), conn, UNKNOWN, max_wait, metrics));
        info!(node = %cluster.node, base = %cluster.base, "joining the cluster");
        let (c, r, s) = (cluster.clone(), registry.clone(), shutdown.clone());
        tasks.spawn(async move { c.read_channel(inbound, r, s).await });
        let c = cluster.clone();
        tasks.spawn(async move { c.keep_entries(registry, shutdown).await });
        Ok(cluster)
    }

    fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Whether this node takes part in the cluster now: Redis answers and no other live
    /// node holds its id.
    fn is_up(&self) -> bool {
        self.state.load(Ordering::Relaxed) == UP && !self.outside.load(Ordering::Relaxed)
    }

    /// Whether this node counts its own listeners only: Redis is down, or another node
    /// holds its id.
    fn alone(&self) -> bool {
        self.state.load(Ordering::Relaxed) == DOWN || self.outside.load(Ordering::Relaxed)
    }

    /// Notes whether another live node holds this node's id; says so loudly, once, and
    /// again when it is free.
    fn id_taken(&self, taken: bool) {
        let was = self.outside.swap(taken, Ordering::Relaxed);
        self.metrics.cluster().set_id_conflict(taken);
        match (was, taken) {
            (false, true) => error!(
                node = %self.node,
                "cluster: another live node has node_id '{}': this node stays out of the cluster (its listeners \
                 are not listed, it takes and asks no delivery) until the id is free; give each node its own \
                 node_id, or leave it unset for a random one",
                self.node
            ),
            (true, false) => warn!(node = %self.node, "cluster: node_id is free again; this node joins the cluster"),
            _ => {}
        }
    }

    /// Notes that Redis answered; says so if it had not.
    fn redis_ok(&self) -> bool {
        let was = self.state.swap(UP, Ordering::Relaxed);
        self.metrics.cluster().set_redis_up(true);
        if was == DOWN {
            warn!(node = %self.node, "cluster: Redis reachable again; this node's listeners are registered again");
        } else if was == UNKNOWN {
            info!(node = %self.node, "cluster: Redis reachable");
        }
        was != UP
    }

    /// Notes that Redis failed; says so loudly, once, until it answers again.
    fn redis_failed(&self, e: &redis::RedisError) {
        let was = self.state.swap(DOWN, Ordering::Relaxed);
        self.metrics.cluster().set_redis_up(false);
        if was != DOWN {
            error!(
                node = %self.node,
                "cluster: Redis unreachable ({e}); serving this node's own listeners and senders only until it is back"
            );
        }
    }

    /// Counts `hc`'s new listener `id` against the listener limit across the cluster
    /// (`max`, an atomic check-and-add in Redis). `false`: the HC has `max` already.
    /// With Redis unreachable the node's own count (already checked) is all there is.
    pub(super) async fn admit(&self, hc: &str, id: u64, max: usize) -> bool {
        let admitted = self.count_in(hc, id, max).await;
        if admitted {
            self.admitted.lock().expect("cluster lock").insert((name_key(hc), id));
        }
        admitted
    }

    async fn count_in(&self, hc: &str, id: u64, max: usize) -> bool {
        if self.alone() {
            return true;
        }
        let entry = Entry { node: self.node.clone(), listener: id, hc: hc.to_owned() }.encode();
        let ttl = wire::ENTRY_TTL.as_millis() as u64;
        let mut call = self.admit.key(wire::hc_key(hc));
        call.arg(entry).arg(ttl).arg(max);
        match call.invoke_async::<i64>(&mut self.conn()).await {
            Ok(n) => {
                self.redis_ok();
                n >= 0
            }
            Err(e) => {
                self.redis_failed(&e);
                true
            }
        }
    }

    /// `hc`'s listeners on other nodes, as Redis lists them (none while it is unreachable).
    pub(super) async fn listeners(self: &Arc<Self>, hc: &str) -> Vec<Listener> {
        let Some((_, entries)) = self.live_entries(&[wire::hc_key(hc)], wire::MAX_ENTRIES_READ).await else {
            return Vec::new();
        };
        entries
            .iter()
            .filter_map(|e| Entry::parse(e, Some(hc)))
            .filter(|e| e.node != self.node)
            .map(|e| Listener::remote(self.clone(), &e.node, hc, e.listener, self.base.clone()))
            .collect()
    }

    /// The HC a path names among those with listeners on some node, longest first (the
    /// spelling of its first entry), when this node has none of those names.
    pub(super) async fn resolve(&self, segments: &[String]) -> Option<String> {
        let names: Vec<String> = (1..=segments.len().min(wire::MAX_RESOLVE_PREFIXES))
            .rev()
            .map(|n| segments[..n].join("/"))
            .filter(|name| name.len() <= super::config::MAX_HC_NAME_BYTES)
            .collect();
        if names.is_empty() {
            return None;
        }
        let keys: Vec<String> = names.iter().map(|n| wire::hc_key(n)).collect();
        let (index, entries) = self.live_entries(&keys, 1).await?;
        let name = names.get(usize::try_from(index).ok()?.checked_sub(1)?)?;
        entries.iter().find_map(|e| Entry::parse(e, Some(name))).map(|e| e.hc)
    }

    /// The live entries of the first of `keys` that has some (its index from 1), up to `limit`.
    async fn live_entries(&self, keys: &[String], limit: usize) -> Option<(i64, Vec<String>)> {
        if !self.is_up() {
            return None;
        }
        let mut call = self.live.prepare_invoke();
        for key in keys {
            call.key(key);
        }
        call.arg(limit);
        match call.invoke_async::<Option<(i64, Vec<String>)>>(&mut self.conn()).await {
            Ok(found) => found,
            Err(e) => {
                self.redis_failed(&e);
                None
            }
        }
    }

    /// Asks `node` to hand `message` to its listener `id` of `hc`, at once or waiting for
    /// room until `until`; what became of it. A node that does not answer counts as gone.
    pub(super) async fn deliver(
        &self,
        node: &str,
        hc: &str,
        id: u64,
        message: RelayMessage,
        until: Option<Instant>,
    ) -> Delivery {
        let outcome = self.ask(node, hc, id, message, until).await;
        self.metrics.cluster().delivery(outcome as usize);
        debug!(node, listener = id, ?outcome, "delivery through the cluster");
        outcome
    }

    async fn ask(&self, node: &str, hc: &str, id: u64, message: RelayMessage, until: Option<Instant>) -> Delivery {
        if !self.is_up() {
            return Delivery::Gone;
        }
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().expect("cluster lock").insert(seq, tx);
        let _forget = Forget(&self.waiting, seq);
        let wait = until.map_or(Duration::ZERO, |u| u.saturating_duration_since(Instant::now()));
        let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        let msg = NodeMessage::Deliver {
            from: self.node.clone(),
            seq,
            hc: hc.to_owned(),
            listener: id,
            wait_ms,
            message: Box::new(message),
        };
        let payload = serde_json::to_string(&msg).expect("node messages serialize");
        let mut published = redis::cmd("PUBLISH");
        published.arg(wire::node_channel(node)).arg(payload);
        match published.query_async::<i64>(&mut self.conn()).await {
            // Nobody reads that node's channel: the node is gone.
            Ok(0) => return Delivery::Gone,
            Ok(_) => {}
            Err(e) => {
                self.redis_failed(&e);
                return Delivery::Gone;
            }
        }
        match tokio::time::timeout(wait + REPLY_TIMEOUT, rx).await {
            Ok(Ok(outcome)) => outcome,
            _ => Delivery::Gone,
        }
    }

    /// Reads this node's channel: outcomes of its own deliveries, and deliveries asked of
    /// it, which go to its listeners (each in a task of its own, within a bound).
    async fn read_channel(
        self: Arc<Self>,
        mut inbound: mpsc::Receiver<PushInfo>,
        registry: Arc<Registry>,
        shutdown: CancellationToken,
    ) {
        let slots = Arc::new(Semaphore::new(MAX_INBOUND_DELIVERIES));
        let channel = wire::node_channel(&self.node);
        loop {
            let push = tokio::select! {
                p = inbound.recv() => match p { Some(p) => p, None => return },
                () = shutdown.cancelled() => return,
            };
            let (Some(Value::BulkString(from)), Some(Value::BulkString(payload))) =
                (push.data.first(), push.data.get(1))
            else {
                continue;
            };
            if from.as_slice() != channel.as_bytes() {
                continue;
            }
            let msg = match NodeMessage::parse(payload, self.max_wait) {
                Ok(msg) => msg,
                Err(why) => {
                    self.metrics.cluster().drop_message();
                    debug!(?why, bytes = payload.len(), "cluster: node message dropped");
                    continue;
                }
            };
            match msg {
                NodeMessage::Outcome { seq, outcome, .. } => {
                    if let Some(tx) = self.waiting.lock().expect("cluster lock").remove(&seq) {
                        let _ = tx.send(outcome);
                    }
                }
                NodeMessage::Deliver { from, seq, hc, listener, wait_ms, message } => {
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        // Answered here, not in a task: a flood slows this loop, it
                        // does not pile up tasks.
                        self.metrics.cluster().drop_message();
                        self.answer(&from, seq, Delivery::Busy).await;
                        continue;
                    };
                    let (me, registry) = (self.clone(), registry.clone());
                    tokio::spawn(async move {
                        let until = (wait_ms > 0).then(|| Instant::now() + Duration::from_millis(wait_ms));
                        let outcome = match registry.local_listener(&hc, listener) {
                            Some(l) if l.is_local() => l.deliver(*message, until).await,
                            _ => Delivery::Gone,
                        };
                        drop(slot);
                        me.answer(&from, seq, outcome).await;
                    });
                }
            }
        }
    }

    /// Tells node `to` what became of its `seq`th delivery.
    async fn answer(&self, to: &str, seq: u64, outcome: Delivery) {
        if self.alone() {
            return;
        }
        let msg = NodeMessage::Outcome { from: self.node.clone(), seq, outcome };
        let payload = serde_json::to_string(&msg).expect("node messages serialize");
        let mut published = redis::cmd("PUBLISH");
        published.arg(wire::node_channel(to)).arg(payload);
        if let Err(e) = published.query_async::<i64>(&mut self.conn()).await {
            self.redis_failed(&e);
        }
    }

    /// Refreshes this node's entries every [`wire::REFRESH_INTERVAL`], and at once when
    /// a listener comes or goes; removes them when `shutdown` fires.
    async fn keep_entries(self: Arc<Self>, registry: Arc<Registry>, shutdown: CancellationToken) {
        let mut roster = registry.roster();
        let mut written: Vec<(String, Vec<u64>)> = Vec::new();
        let mut subscribed = false;
        loop {
            let now = self.admitted_of(&registry);
            match self.write_entries(&written, &now, !subscribed).await {
                Ok(None) => {
                    self.redis_ok();
                    self.id_taken(true);
                }
                Ok(Some(nodes)) => {
                    self.id_taken(false);
                    subscribed = true;
                    if self.redis_ok() {
                        info!(node = %self.node, listeners = now.iter().map(|(_, l)| l.len()).sum::<usize>(), "cluster: entries written");
                    }
                    self.metrics.cluster().set_nodes(nodes);
                    written = now;
                }
                Err(e) => {
                    // Subscribed again once Redis answers (the client does so too).
                    subscribed = false;
                    self.redis_failed(&e);
                }
            }
            tokio::select! {
                () = tokio::time::sleep(wire::REFRESH_INTERVAL) => {}
                _ = roster.changed() => {}
                () = shutdown.cancelled() => break,
            }
        }
        written.extend(registry.local_listeners());
        self.leave(&written).await;
    }

    /// This node's listeners that were counted in; forgets the ones that are gone.
    fn admitted_of(&self, registry: &Registry) -> Vec<(String, Vec<u64>)> {
        // Read under the lock: a listener is registered before it is counted in, so one
        // counted in before the lock is in the registry's list unless it has left.
        let mut admitted = self.admitted.lock().expect("cluster lock");
        let listeners = registry.local_listeners();
        let mut kept = HashSet::new();
        let mut out = Vec::new();
        for (hc, ids) in listeners {
            let key = name_key(&hc);
            let ids: Vec<u64> = ids.into_iter().filter(|id| admitted.contains(&(key.clone(), *id))).collect();
            kept.extend(ids.iter().map(|id| (key.clone(), *id)));
            if !ids.is_empty() {
                out.push((hc, ids));
            }
        }
        admitted.retain(|entry| kept.contains(entry));
        out
    }

    /// Takes or keeps this node's id, then writes `now` (refreshing every entry, adding
    /// back any Redis lost), removes what was `written` and is gone, refreshes this
    /// node's own entry; the live nodes. `None`: another live node holds the id, and
    /// nothing was written (nor subscribed: its channel is the other node's).
    async fn write_entries(
        &self,
        written: &[(String, Vec<u64>)],
        now: &[(String, Vec<u64>)],
        subscribe: bool,
    ) -> redis::RedisResult<Option<u64>> {
        let mut conn = self.conn();
        let ttl = wire::ENTRY_TTL.as_millis() as u64;
        let mut claim = self.claim.key(wire::owner_key(&self.node));
        if claim.arg(&self.instance).arg(ttl).invoke_async::<i64>(&mut conn).await? == 0 {
            return Ok(None);
        }
        if subscribe {
            conn.subscribe(wire::node_channel(&self.node)).await?;
        }
        let entry = |hc: &str, id: u64| Entry { node: self.node.clone(), listener: id, hc: hc.to_owned() }.encode();
        for (hc, ids) in now {
            let mut call = self.refresh.key(wire::hc_key(hc));
            call.arg(ttl);
            for id in ids {
                call.arg(entry(hc, *id));
            }
            call.invoke_async::<i64>(&mut conn).await?;
        }
        for (hc, ids) in written {
            let still = now.iter().find(|(h, _)| h == hc).map(|(_, l)| l.as_slice()).unwrap_or_default();
            let gone: Vec<String> = ids.iter().filter(|id| !still.contains(id)).map(|id| entry(hc, *id)).collect();
            if !gone.is_empty() {
                redis::cmd("ZREM").arg(wire::hc_key(hc)).arg(gone).query_async::<i64>(&mut conn).await?;
            }
        }
        let nodes = self.refresh.key(wire::nodes_key()).arg(ttl).arg(&self.node).invoke_async::<i64>(&mut conn).await?;
        Ok(Some(u64::try_from(nodes).unwrap_or(0)))
    }

    /// Removes all of this node's entries at once (a graceful shutdown), within a bound.
    async fn leave(&self, written: &[(String, Vec<u64>)]) {
        if self.alone() {
            return;
        }
        let mut conn = self.conn();
        let removal = async {
            for (hc, ids) in written {
                let entries: Vec<String> = ids
                    .iter()
                    .map(|id| Entry { node: self.node.clone(), listener: *id, hc: hc.clone() }.encode())
                    .collect();
                redis::cmd("ZREM").arg(wire::hc_key(hc)).arg(entries).query_async::<i64>(&mut conn).await?;
            }
            redis::cmd("ZREM").arg(wire::nodes_key()).arg(&self.node).query_async::<i64>(&mut conn).await?;
            self.release.key(wire::owner_key(&self.node)).arg(&self.instance).invoke_async::<i64>(&mut conn).await
        };
        match tokio::time::timeout(LEAVE_TIMEOUT, removal).await {
            Ok(Ok(_)) => info!(node = %self.node, "cluster: left (entries removed)"),
            _ => warn!(node = %self.node, "cluster: could not remove this node's entries; they expire on their own"),
        }
    }
}

/// What the Redis client calls with each message read (it must not block), and the
/// bounded queue it fills: messages past [`INBOUND_QUEUE`] are dropped and counted.
fn inbound_queue(
    metrics: Arc<Metrics>,
) -> (impl Fn(PushInfo) -> Result<(), ()> + Send + Sync + 'static, mpsc::Receiver<PushInfo>) {
    let (tx, rx) = mpsc::channel::<PushInfo>(INBOUND_QUEUE);
    let push = move |push: PushInfo| {
        if push.kind == PushKind::Message && tx.try_send(push).is_err() {
            metrics.cluster().drop_message();
        }
        Ok(())
    };
    (push, rx)
}

/// Forgets a waiting delivery when its asker is done, whatever ended it.
struct Forget<'a>(&'a Mutex<HashMap<u64, oneshot::Sender<Delivery>>>, u64);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.0.lock().expect("cluster lock").remove(&self.1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Accept;
    use crate::relay::RelaySettings;

    fn message(channel: &str, payload: String) -> PushInfo {
        let data = vec![Value::BulkString(channel.as_bytes().to_vec()), Value::BulkString(payload.into_bytes())];
        PushInfo { kind: PushKind::Message, data }
    }

    #[tokio::test]
    async fn the_inbound_queue_is_bounded() {
        let metrics = Arc::new(Metrics::new());
        let (push, mut rx) = inbound_queue(metrics.clone());
        for _ in 0..INBOUND_QUEUE + 3 {
            push(message("c", "x".into())).unwrap();
        }
        push(PushInfo { kind: PushKind::Subscribe, data: Vec::new() }).unwrap();
        assert_eq!(metrics.cluster_dropped_messages(), 3);
        assert!(rx.try_recv().is_ok());
    }

    /// More deliveries than [`MAX_INBOUND_DELIVERIES`] waiting on a full control queue:
    /// the rest are answered busy and counted, none waits unbounded.
    #[tokio::test]
    async fn deliveries_waiting_at_once_are_bounded() {
        let settings = RelaySettings::with_namespace_key("root", crate::secret::Secret::new("k"));
        let metrics = Arc::new(Metrics::new());
        let registry = Registry::new(&settings, metrics.clone());
        let token = crate::sas::mint("sb://relay/", "root", &crate::secret::Secret::new("k"), u64::MAX);
        let (_, registration) = registry.register_listener("hc", Some(token.expose()), "ws://a".into(), None).unwrap();
        let address = "ws://b:1/$hc/hc?sb-hc-action=accept&sb-hc-id=t_s".to_owned();
        let accept = RelayMessage::Accept(Accept {
            address,
            id: "t".into(),
            connect_headers: Default::default(),
            remote_endpoint: None,
        });
        let listener = registry.local_listener("hc", registration.id()).unwrap();
        while listener.deliver(accept.clone(), None).await == Delivery::Delivered {}
        let client = redis::Client::open("redis://127.0.0.1:1/0").unwrap();
        let conn = ConnectionManager::new_lazy_with_config(client, ConnectionManagerConfig::new()).unwrap();
        let cluster =
            Arc::new(Cluster::with("a".into(), "ws://a".into(), conn, DOWN, Duration::from_secs(60), metrics.clone()));
        let (tx, rx) = mpsc::channel(INBOUND_QUEUE);
        let extra = 7;
        for seq in 0..(MAX_INBOUND_DELIVERIES + extra) as u64 {
            let deliver = NodeMessage::Deliver {
                from: "b".into(),
                seq,
                hc: "hc".into(),
                listener: registration.id(),
                wait_ms: 30_000,
                message: Box::new(accept.clone()),
            };
            tx.send(message("hyco:node:a", serde_json::to_string(&deliver).unwrap())).await.unwrap();
        }
        drop(tx);
        let shutdown = CancellationToken::new();
        cluster.read_channel(rx, registry.clone(), shutdown).await;
        assert_eq!(metrics.cluster_dropped_messages(), extra as u64);
    }
}
