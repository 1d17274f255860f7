//! The rendezvous registry: the one owner of the relay's hybrid connections, their
//! listeners and every pending rendezvous (docs/protocol.md 5-7).
//!
//! A rendezvous pairs one party that waits (a WebSocket sender, or an HTTP-mode request)
//! with one listener. The waiting side [`Registry::reserve`]s a slot and gets a
//! [`Reservation`]: the answer to wait for, the HC's listeners in random order, and the
//! rendezvous address to hand one of them, which carries a single-use secret. The
//! listener comes back to that address and [`Registry::claim`]s the rendezvous (or, for an
//! HTTP request it may answer on its control channel, [`Registration::take_request`]),
//! and gives its one [`Answer`]. A listener's control channel holds a [`Registration`].
//! Both guards give back what they hold when dropped, whatever ended them. The registry
//! also checks tokens against the HC's rules and the namespace's, and decides which HCs a
//! listener may create (docs/protocol.md 5.1): an HC created on first listen is forgotten
//! a grace period after its last listener leaves, so that what clients make stays bounded.
//!
//! This module does not speak to sockets: the WebSocket path, HTTP mode and control
//! channels do, through the handles it gives out, and never reach into its state.
//!
//! ## The seam for a relay of several nodes
//! The state falls in two parts, kept apart below:
//! - what several nodes would share: which HCs exist (with their rules, which come from
//!   configuration on every node), which listeners each HC has and how many (the limit
//!   per HC counts them all). That is [`Hc`]'s `listeners`.
//! - what stays on one node: the pending rendezvous by secret and by HTTP request id, the
//!   count of them per HC, and the queue of each listener whose control channel is here.
//!   Secrets never leave the node that made them, and a listener always answers at an
//!   address on that node.
//!
//! A [`Listener`] is the handle the waiting side sees: it delivers a message and names the
//! base of the address to give. In a cluster ([`super::cluster`], docs/protocol.md 11)
//! Redis lists the listeners of other nodes too, and [`Registry::reserve_with`] takes them
//! as handles that forward the message to their node and name this node's own base;
//! `claim` and the guards keep their shape, and the registry never speaks to Redis.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};
use tracing::info;

use super::auth::{self, Grant, Right, Rule};
use super::config::{HcSettings, MAX_HC_NAME_BYTES, RelaySettings};
pub(super) use super::listener::Listener;
use super::metrics::{Metrics, Reason};
use super::rejection::Rejection;
use super::stream::RelayStream;
use crate::encoding::encode_component;
use crate::protocol::{self, Action, HttpResponse, RelayMessage, name_key};

/// How many messages may queue for one control channel before senders try another listener.
const CONTROL_QUEUE: usize = 64;

/// The shortest wait before an unused HC created on first listen is looked at again
/// (with no grace period, when rendezvous still waited on it as its last listener left).
const MIN_RECHECK: Duration = Duration::from_millis(100);

/// Random bytes in a rendezvous secret (hex-encoded in the address).
const SECRET_BYTES: usize = 16;

/// What ends a pending rendezvous.
pub(super) enum Answer {
    /// The listener's rendezvous WebSocket (upgraded), with its slot against the
    /// connection limit: a tunnel holds two connections and counts as two.
    Accepted { stream: RelayStream, initial: Vec<u8>, protocol: Option<String>, permit: OwnedSemaphorePermit },
    /// The listener rejected a sender; its status and text go to the sender as given.
    Rejected(Rejection),
    /// A listener's answer to an HTTP request on its control channel, with its whole body.
    Response { response: HttpResponse, body: Vec<u8> },
}

/// Who waits at a rendezvous; it decides the action of the address and who may claim it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// A WebSocket sender (`sb-hc-action=accept`).
    Sender,
    /// An HTTP-mode request (`sb-hc-action=request`).
    Request,
}

impl Kind {
    fn action(self) -> Action {
        match self {
            Self::Sender => Action::Accept,
            Self::Request => Action::Request,
        }
    }
}

/// Why no rendezvous could be reserved; each path answers it with its own status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Unavailable {
    /// No such HC.
    NotFound,
    /// The HC has no listener.
    NoListener,
    /// The HC has its maximum of pending rendezvous.
    PendingLimit,
}

/// An HC as its runtime information describes it.
pub(super) struct HcInfo {
    pub(super) listeners: usize,
    pub(super) requires_client_authorization: bool,
    /// Unix seconds.
    pub(super) created: u64,
}

/// An HC as the status page shows it ([`Registry::snapshot`]).
pub(super) struct HcSnapshot {
    pub(super) name: String,
    /// From the configuration, not created on first listen.
    pub(super) configured: bool,
    /// Unix seconds.
    pub(super) created: u64,
    /// Senders and HTTP requests waiting for a listener on this node.
    pub(super) pending: usize,
    /// Each listener's id and, on this node, its peer and since when (Unix seconds).
    pub(super) listeners: Vec<(u64, Option<(std::net::SocketAddr, u64)>)>,
}

/// A hybrid connection's live state.
struct Hc {
    settings: HcSettings,
    /// Created on first listen, not configured: forgotten once unused.
    auto: bool,
    /// How many times the HC has lost its last listener: a timer that would forget it
    /// checks that this has not changed since it was set.
    emptied: u64,
    /// Shared across nodes in a cluster: the HC's listeners.
    listeners: Vec<Listener>,
    /// On this node: its rendezvous waiting for a listener.
    pending: usize,
    /// When the relay made it (Unix seconds): at start for a configured HC.
    created: u64,
}

impl Hc {
    fn new(settings: HcSettings, auto: bool) -> Self {
        Self { settings, auto, emptied: 0, listeners: Vec::new(), pending: 0, created: protocol::unix_now() }
    }

    /// Whether nobody uses the HC: no listener, nothing waiting.
    fn is_unused(&self) -> bool {
        self.listeners.is_empty() && self.pending == 0
    }
}

/// Whether `name` is `prefix` or lies below it, segment by segment.
fn nests_in(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// One pending rendezvous, by its secret.
struct Waiting {
    kind: Kind,
    answer: oneshot::Sender<Answer>,
    /// An HTTP request's id and the listener it went to, which may answer it on its
    /// control channel.
    request: Option<(String, u64)>,
}

#[derive(Default)]
struct State {
    hcs: HashMap<String, Hc>,
    /// How many of `hcs` were created on first listen.
    auto_hcs: usize,
    /// Pending rendezvous by secret.
    waiting: HashMap<String, Waiting>,
    /// The secret of each waiting HTTP request, by request id.
    requests: HashMap<String, String>,
    /// HTTP requests waiting on each HC (senders are [`Hc`]'s `pending`): they have a
    /// limit of their own, so that requests cannot starve senders, nor senders requests.
    pending_requests: HashMap<String, usize>,
}

impl State {
    fn forget(&mut self, secret: &str) -> Option<Waiting> {
        let waiting = self.waiting.remove(secret)?;
        if let Some((id, _)) = &waiting.request {
            self.requests.remove(id);
        }
        Some(waiting)
    }
}

/// What a reload did ([`Registry::reload`]).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reloaded {
    /// Configured HCs added.
    pub added: usize,
    /// HCs that were known and took their new settings.
    pub kept: usize,
    /// HCs no longer configured and unused, forgotten.
    pub removed: usize,
    /// HCs no longer configured that still have listeners (or waiting senders): forgotten
    /// once unused, as HCs created on first listen are.
    pub retiring: usize,
    /// New configured HCs not added: each nests with an HC a listener created.
    pub not_added: Vec<String>,
}

/// The relay's hybrid connections, listeners and pending rendezvous.
pub(super) struct Registry {
    state: Mutex<State>,
    /// The namespace's rules; a reload swaps them whole.
    namespace_rules: Mutex<Arc<Vec<Rule>>>,
    auto_create: bool,
    max_auto_hcs: usize,
    auto_hc_grace: Duration,
    max_listeners: usize,
    max_pending: usize,
    max_pending_requests: usize,
    next_listener: AtomicU64,
    /// Counts listeners registered, so that a public port's pool can wait for one.
    joins: tokio::sync::watch::Sender<u64>,
    /// Counts listeners registered and removed, so that a cluster node can tell Redis.
    roster: tokio::sync::watch::Sender<u64>,
    metrics: Arc<Metrics>,
}

impl Registry {
    /// The configured HCs, each with no listener yet (and a listener gauge at 0).
    pub(super) fn new(settings: &RelaySettings, metrics: Arc<Metrics>) -> Arc<Self> {
        let mut state = State::default();
        for hc in &settings.hcs {
            metrics.set_listeners(&hc.name, 0);
            state.hcs.insert(name_key(&hc.name), Hc::new(hc.clone(), false));
        }
        Arc::new(Self {
            state: Mutex::new(state),
            namespace_rules: Mutex::new(Arc::new(settings.rules.clone())),
            auto_create: settings.auto_create,
            max_auto_hcs: settings.limits.max_auto_hcs,
            auto_hc_grace: settings.limits.auto_hc_grace,
            max_listeners: settings.limits.max_listeners_per_hc,
            max_pending: settings.limits.max_pending_senders_per_hc,
            max_pending_requests: settings.limits.max_pending_requests_per_hc,
            next_listener: AtomicU64::new(0),
            joins: tokio::sync::watch::Sender::new(0),
            roster: tokio::sync::watch::Sender::new(0),
            metrics,
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("registry lock")
    }

    /// The HC a path names, longest registered name first, and the suffix after it.
    pub(super) fn resolve(&self, segments: &[String]) -> Option<(String, String)> {
        let state = self.state();
        (1..=segments.len()).rev().find_map(|n| {
            let hc = state.hcs.get(&name_key(&segments[..n].join("/")))?;
            Some((hc.settings.name.clone(), segments[n..].join("/")))
        })
    }

    /// The spelling of `hc` as the relay has it (names compare without case), if it has it.
    pub(super) fn spelling(&self, hc: &str) -> Option<String> {
        self.state().hcs.get(&name_key(hc)).map(|h| h.settings.name.clone())
    }

    /// What an HC's runtime information tells (docs/protocol.md 7.1), if the relay has it.
    pub(super) fn hc_info(&self, hc: &str) -> Option<HcInfo> {
        self.state().hcs.get(&name_key(hc)).map(|h| HcInfo {
            listeners: h.listeners.len(),
            requires_client_authorization: h.settings.requires_client_authorization,
            created: h.created,
        })
    }

    /// Checks `token` for `need` on `hc` itself.
    pub(super) fn check_right(&self, hc: &str, need: Right, token: Option<&str>) -> Result<Grant, Rejection> {
        self.check(hc, hc, need, token)
    }

    /// Checks a listener's token: Listen on `hc`.
    pub(super) fn authorize_listener(&self, hc: &str, token: Option<&str>) -> Result<Grant, Rejection> {
        self.check(hc, hc, Right::Listen, token)
    }

    /// Checks a sender's token: Send on `resource` (the HC's name and the path suffix,
    /// which hyco-ws signs too: docs/protocol.md 3). Returns whether a token was needed:
    /// not on an HC that does not require client authorization.
    pub(super) fn authorize_sender(&self, hc: &str, resource: &str, token: Option<&str>) -> Result<bool, Rejection> {
        let needs_token = self.state().hcs.get(&name_key(hc)).is_none_or(|h| h.settings.requires_client_authorization);
        if needs_token {
            self.check(hc, resource, Right::Send, token)?;
        }
        Ok(needs_token)
    }

    /// Checks `token` for `need` on `resource`, against `hc`'s rules and then the
    /// namespace's.
    fn check(&self, hc: &str, resource: &str, need: Right, token: Option<&str>) -> Result<Grant, Rejection> {
        let token = token.ok_or_else(|| Rejection::new(401, Reason::Unauthorized, "Missing token"))?;
        let hc_rules = self.state().hcs.get(&name_key(hc)).map(|h| h.settings.rules.clone()).unwrap_or_default();
        let now = protocol::unix_now();
        let namespace = self.namespace_rules.lock().expect("rules lock").clone();
        auth::check(token, resource, need, &hc_rules, &namespace, now, protocol::CLOCK_SKEW.as_secs())
    }

    /// Checks a listener's token (Listen on `hc`) and adds the listener to `hc`, unless
    /// the HC has its maximum of listeners; returns the token's expiry. An HC that does not
    /// exist is created first if the relay creates HCs on first listen and
    /// [`Registry::creatable`] allows it. The listener reached the relay at `base`, from `peer`.
    pub(super) fn register_listener(
        self: &Arc<Self>,
        hc: &str,
        token: Option<&str>,
        base: String,
        peer: Option<std::net::SocketAddr>,
    ) -> Result<(u64, Registration), Rejection> {
        let grant = self.authorize_listener(hc, token)?;
        let (queue, messages) = mpsc::channel(CONTROL_QUEUE);
        let id = self.next_listener.fetch_add(1, Ordering::Relaxed);
        let mut state = self.state();
        // Checked first, so that no HC is created for a listener it would not take.
        let key = name_key(hc);
        if state.hcs.get(&key).map_or(0, |h| h.listeners.len()) >= self.max_listeners {
            let text = format!("Listener limit of {} reached for this hybrid connection", self.max_listeners);
            return Err(Rejection::new(403, Reason::ListenerLimit, text));
        }
        if !state.hcs.contains_key(&key) {
            self.creatable(&state, hc, &grant)?;
            info!(hc, "created on first listen");
            let settings = HcSettings::new(hc);
            state.hcs.insert(key.clone(), Hc::new(settings, true));
            state.auto_hcs += 1;
        }
        let entry = state.hcs.get_mut(&key).expect("present or just created");
        entry.listeners.push(Listener::local(id, base.into(), queue, peer));
        // The HC's own spelling, whatever the listener's: one HC, one name in metrics and logs.
        let hc = entry.settings.name.clone();
        self.metrics.set_listeners(&hc, entry.listeners.len());
        self.joins.send_modify(|n| *n += 1);
        self.roster.send_modify(|n| *n += 1);
        Ok((grant.expiry, Registration { registry: self.clone(), hc, id, messages }))
    }

    /// Changes whenever a listener registers, on any HC.
    pub(super) fn joins(&self) -> tokio::sync::watch::Receiver<u64> {
        self.joins.subscribe()
    }

    /// Changes whenever a listener registers or leaves, on any HC.
    pub(super) fn roster(&self) -> tokio::sync::watch::Receiver<u64> {
        self.roster.subscribe()
    }

    /// This node's listeners: each HC's spelling and its listeners' ids.
    pub(super) fn local_listeners(&self) -> Vec<(String, Vec<u64>)> {
        let state = self.state();
        let local = |h: &Hc| h.listeners.iter().map(Listener::id).collect::<Vec<_>>();
        state.hcs.values().filter(|h| !h.listeners.is_empty()).map(|h| (h.settings.name.clone(), local(h))).collect()
    }

    /// A read-only picture of the HCs for the status page, by name: nothing secret (no
    /// rule, key or rendezvous address), only names, counts and listeners' peers.
    pub(super) fn snapshot(&self) -> Vec<HcSnapshot> {
        let state = self.state();
        let mut hcs: Vec<_> = state
            .hcs
            .values()
            .map(|h| HcSnapshot {
                name: h.settings.name.clone(),
                configured: !h.auto,
                created: h.created,
                pending: h.pending + state.pending_requests.get(&name_key(&h.settings.name)).copied().unwrap_or(0),
                listeners: h.listeners.iter().map(|l| (l.id(), l.peer())).collect(),
            })
            .collect();
        hcs.sort_by(|a, b| a.name.cmp(&b.name));
        hcs
    }

    /// Listener `id` of `hc` on this node, if it is still there.
    pub(super) fn local_listener(&self, hc: &str, id: u64) -> Option<Listener> {
        self.state().hcs.get(&name_key(hc))?.listeners.iter().find(|l| l.id() == id).cloned()
    }

    /// Makes `hc`, which has listeners on another node of the cluster only, known here as
    /// if created on first listen (with no listener here): a sender or request can then
    /// wait on it. Forgotten like such an HC once unused. Nothing if an HC of that name,
    /// or one nesting with it, exists here, or this node has its maximum of such HCs.
    pub(super) fn adopt(self: &Arc<Self>, hc: &str) {
        let mut state = self.state();
        let key = name_key(hc);
        let nests = state.hcs.keys().any(|name| nests_in(&key, name) || nests_in(name, &key));
        if nests || state.auto_hcs >= self.max_auto_hcs || hc.len() > MAX_HC_NAME_BYTES {
            return;
        }
        let mut entry = Hc::new(HcSettings::new(hc), true);
        entry.emptied = 1;
        state.hcs.insert(key, entry);
        state.auto_hcs += 1;
        drop(state);
        self.forget_later(hc, 1);
    }

    /// Whether a listener holding `grant` may create `hc` (docs/protocol.md 5.1): the
    /// relay creates HCs on first listen; the name is within [`MAX_HC_NAME_BYTES`]; the
    /// token's audience names `hc` itself or the whole namespace (a token for `box` covers
    /// `box/web` but does not create it); the name neither lies below an existing HC nor
    /// above one (so that it cannot take a path that resolves to another HC today); the
    /// relay has fewer than its maximum of created HCs.
    fn creatable(&self, state: &State, hc: &str, grant: &Grant) -> Result<(), Rejection> {
        if !self.auto_create {
            return Err(Rejection::new(404, Reason::NotFound, "Endpoint does not exist"));
        }
        if hc.len() > MAX_HC_NAME_BYTES {
            let text = format!("A hybrid connection name may have at most {MAX_HC_NAME_BYTES} bytes");
            return Err(Rejection::new(400, Reason::BadRequest, text));
        }
        if !grant.exact {
            let text = "Creating a hybrid connection takes a token for exactly its name or for the whole namespace";
            return Err(Rejection::new(403, Reason::Forbidden, text));
        }
        let key = name_key(hc);
        if state.hcs.keys().any(|name| nests_in(&key, name) || nests_in(name, &key)) {
            let text = "The name lies above or below an existing hybrid connection";
            return Err(Rejection::new(409, Reason::NameConflict, text));
        }
        if state.auto_hcs >= self.max_auto_hcs {
            let text =
                format!("The relay has its maximum of {} hybrid connections created on listen", self.max_auto_hcs);
            return Err(Rejection::new(503, Reason::HcLimit, text));
        }
        Ok(())
    }

    /// Reserves a pending rendezvous on `hc` for a party of `kind`, registered under a
    /// fresh secret before any listener hears of it.
    #[cfg(test)]
    pub(super) fn reserve(self: &Arc<Self>, hc: &str, kind: Kind) -> Result<Reservation, Unavailable> {
        self.reserve_with(hc, kind, Vec::new())
    }

    /// [`Registry::reserve`], with the HC's listeners on other nodes of the cluster
    /// (`remote`) among those the rendezvous may go to: one listener, one chance,
    /// wherever it is.
    pub(super) fn reserve_with(
        self: &Arc<Self>,
        hc: &str,
        kind: Kind,
        remote: Vec<Listener>,
    ) -> Result<Reservation, Unavailable> {
        let secret = new_secret();
        let (answer_tx, answer) = oneshot::channel();
        let mut guard = self.state();
        let state = &mut *guard;
        let key = name_key(hc);
        let entry = state.hcs.get_mut(&key).ok_or(Unavailable::NotFound)?;
        let full = match kind {
            Kind::Sender => entry.pending >= self.max_pending,
            Kind::Request => state.pending_requests.get(&key).copied().unwrap_or(0) >= self.max_pending_requests,
        };
        let none = entry.listeners.is_empty() && remote.is_empty();
        // A sender hears of the pending limit first, an HTTP request of a missing listener.
        match (kind, none, full) {
            (Kind::Sender, _, true) | (Kind::Request, false, true) => return Err(Unavailable::PendingLimit),
            (_, true, _) => return Err(Unavailable::NoListener),
            _ => {}
        }
        match kind {
            Kind::Sender => entry.pending += 1,
            Kind::Request => *state.pending_requests.entry(key).or_default() += 1,
        }
        let mut listeners = entry.listeners.clone();
        listeners.extend(remote);
        rand::seq::SliceRandom::shuffle(&mut listeners[..], &mut rand::rng());
        state.waiting.insert(secret.clone(), Waiting { kind, answer: answer_tx, request: None });
        let hc = entry.settings.name.clone();
        Ok(Reservation { registry: self.clone(), hc, kind, secret, answer, listeners })
    }

    /// Takes the pending rendezvous of `kind` whose address carried `secret`: it is used
    /// up, whatever the claimant does next. `None` if it is unknown, used or expired.
    pub(super) fn claim(&self, kind: Kind, secret: &str) -> Option<Claim> {
        let mut state = self.state();
        if state.waiting.get(secret)?.kind != kind {
            return None;
        }
        state.forget(secret).map(|w| Claim(w.answer))
    }

    fn release(&self, hc: &str, kind: Kind, secret: &str) {
        let mut state = self.state();
        state.forget(secret);
        let key = name_key(hc);
        match kind {
            Kind::Sender => {
                if let Some(entry) = state.hcs.get_mut(&key) {
                    entry.pending -= 1;
                }
            }
            Kind::Request => {
                if let Some(n) = state.pending_requests.get_mut(&key) {
                    *n -= 1;
                    if *n == 0 {
                        state.pending_requests.remove(&key);
                    }
                }
            }
        }
    }

    /// Applies a configuration read again (`hyco serve` on SIGHUP): the namespace's rules,
    /// and the configured HCs with their rules and authorization. A configured HC that is
    /// new is added, unless it nests with an HC a listener created; one already known
    /// (configured, or created on first listen) takes the new settings and stays, with its
    /// listeners; one no longer configured is forgotten at once when unused, else like an
    /// HC created on first listen, once its last listener has left. Public ports stay as
    /// bound at start. Tokens already checked stay good: a listener's next renewal, and
    /// every new handshake, meet the new rules.
    pub(super) fn reload(self: &Arc<Self>, settings: &RelaySettings) -> Reloaded {
        *self.namespace_rules.lock().expect("rules lock") = Arc::new(settings.rules.clone());
        let mut done = Reloaded::default();
        let mut state = self.state();
        for hc in &settings.hcs {
            let key = name_key(&hc.name);
            let fresh = HcSettings { ports: Vec::new(), ..hc.clone() };
            if let Some(entry) = state.hcs.get_mut(&key) {
                let ports = std::mem::take(&mut entry.settings.ports);
                entry.settings = HcSettings { ports, ..fresh };
                let was_auto = std::mem::replace(&mut entry.auto, false);
                state.auto_hcs -= usize::from(was_auto);
                done.kept += 1;
                continue;
            }
            if state.hcs.iter().any(|(name, e)| e.auto && (nests_in(&key, name) || nests_in(name, &key))) {
                done.not_added.push(hc.name.clone());
                continue;
            }
            self.metrics.set_listeners(&hc.name, 0);
            state.hcs.insert(key, Hc::new(fresh, false));
            done.added += 1;
        }
        let configured: std::collections::HashSet<String> = settings.hcs.iter().map(|h| name_key(&h.name)).collect();
        let gone: Vec<String> =
            state.hcs.iter().filter(|(k, e)| !e.auto && !configured.contains(*k)).map(|(k, _)| k.clone()).collect();
        let mut later = Vec::new();
        for key in gone {
            let entry = state.hcs.get_mut(&key).expect("listed above");
            let name = entry.settings.name.clone();
            if entry.is_unused() {
                state.hcs.remove(&key);
                self.metrics.forget_hc(&name);
                done.removed += 1;
                continue;
            }
            entry.auto = true;
            if entry.listeners.is_empty() {
                entry.emptied += 1;
                later.push((name, entry.emptied));
            }
            state.auto_hcs += 1;
            done.retiring += 1;
        }
        self.roster.send_modify(|n| *n += 1);
        drop(state);
        for (name, emptied) in later {
            self.forget_later(&name, emptied);
        }
        done
    }

    /// Removes listener `id` from `hc`. An HC created on first listen that has lost its
    /// last listener is forgotten after the grace period, unless used again by then.
    fn unregister(self: &Arc<Self>, hc: &str, id: u64) {
        let mut state = self.state();
        let Some(entry) = state.hcs.get_mut(&name_key(hc)) else { return };
        entry.listeners.retain(|l| l.id() != id);
        self.metrics.set_listeners(hc, entry.listeners.len());
        self.roster.send_modify(|n| *n += 1);
        if !entry.auto || !entry.listeners.is_empty() {
            return;
        }
        entry.emptied += 1;
        let emptied = entry.emptied;
        if self.auto_hc_grace.is_zero() && self.forget_if_unused(&mut state, hc, emptied) {
            return;
        }
        drop(state);
        self.forget_later(hc, emptied);
    }

    /// Forgets `hc` a grace period on, once nothing waits on it, unless it has been used
    /// (emptied again) since it was emptied for the `emptied`th time.
    fn forget_later(self: &Arc<Self>, hc: &str, emptied: u64) {
        // Outside a runtime (unit tests) nothing is forgotten.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let (registry, hc) = (self.clone(), hc.to_owned());
        runtime.spawn(async move {
            // Waiting rendezvous end within their own bounds: look again a grace later.
            loop {
                tokio::time::sleep(registry.auto_hc_grace.max(MIN_RECHECK)).await;
                let mut state = registry.state();
                let waiting = state
                    .hcs
                    .get(&name_key(&hc))
                    .is_some_and(|e| e.emptied == emptied && e.listeners.is_empty() && e.pending > 0);
                if !waiting {
                    registry.forget_if_unused(&mut state, &hc, emptied);
                    return;
                }
            }
        });
    }

    /// Forgets `hc`, and its listener gauge, if nobody has used it since it lost its
    /// last listener for the `emptied`th time. Whether it did.
    fn forget_if_unused(&self, state: &mut State, hc: &str, emptied: u64) -> bool {
        let key = name_key(hc);
        if !state.hcs.get(&key).is_some_and(|e| e.emptied == emptied && e.is_unused()) {
            return false;
        }
        state.hcs.remove(&key);
        state.auto_hcs -= 1;
        self.metrics.forget_hc(hc);
        info!(hc, "forgotten: no listener within the grace period");
        true
    }

    /// The answer slot of HTTP request `id`, if `listener` is the one it went to.
    fn take_request(&self, listener: u64, id: &str) -> Option<Claim> {
        let mut state = self.state();
        let secret = state.requests.get(id)?;
        if state.waiting.get(secret)?.request.as_ref().is_none_or(|(_, l)| *l != listener) {
            return None;
        }
        let secret = secret.clone();
        state.forget(&secret).map(|w| Claim(w.answer))
    }
}

/// A pending rendezvous, held by the party waiting at it. Dropping it retires its address
/// and gives the slot back.
pub(super) struct Reservation {
    registry: Arc<Registry>,
    hc: String,
    kind: Kind,
    secret: String,
    answer: oneshot::Receiver<Answer>,
    listeners: Vec<Listener>,
}

impl Reservation {
    /// The HC's listeners when the slot was reserved, in random order.
    pub(super) fn listeners(&self) -> &[Listener] {
        &self.listeners
    }

    /// The address at which a listener reached at `base` answers this rendezvous: the
    /// HC's path, a sender's path `suffix` and application `query` (still encoded), the
    /// action, and an id of `tracking_id` and the secret.
    pub(super) fn address(&self, base: &str, suffix: &str, query: &[String], tracking_id: &str) -> String {
        let mut address = format!("{base}/$hc/{}", encode_path(&self.hc));
        if !suffix.is_empty() {
            address.push('/');
            address.push_str(&encode_path(suffix));
        }
        address.push('?');
        for q in query {
            address.push_str(q);
            address.push('&');
        }
        address.push_str(&format!(
            "{}={}&{}={}",
            protocol::PARAM_ACTION,
            self.kind.action().as_str(),
            protocol::PARAM_ID,
            encode_component(&format!("{tracking_id}_{}", self.secret))
        ));
        address
    }

    /// Lets `listener` answer this HTTP request on its control channel under request
    /// `id`, or under a fresh id if another waiting request has that one. Returns the id.
    pub(super) fn expect_response(&mut self, listener: &Listener, id: String) -> String {
        let mut guard = self.registry.state();
        let state = &mut *guard;
        let mut id = id;
        while state.requests.contains_key(&id) {
            id = protocol::new_guid();
        }
        if let Some(waiting) = state.waiting.get_mut(&self.secret) {
            waiting.request = Some((id.clone(), listener.id()));
            state.requests.insert(id.clone(), self.secret.clone());
        }
        id
    }

    /// Waits for the answer; `None` if the claimant gave none.
    pub(super) async fn answer(&mut self) -> Option<Answer> {
        (&mut self.answer).await.ok()
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.registry.release(&self.hc, self.kind, &self.secret);
    }
}

/// A claimed rendezvous: the one chance to answer whoever waits at it. Dropped without
/// an answer, the waiting side learns that the rendezvous failed.
pub(super) struct Claim(oneshot::Sender<Answer>);

impl Claim {
    pub(super) fn answer(self, answer: Answer) {
        let _ = self.0.send(answer);
    }
}

/// A listener's place on its HC, held by its control channel. Dropping it removes the
/// listener (and updates the listener gauge).
pub(super) struct Registration {
    registry: Arc<Registry>,
    hc: String,
    id: u64,
    messages: mpsc::Receiver<RelayMessage>,
}

impl Registration {
    /// The next `accept` or `request` for this listener.
    pub(super) async fn next_message(&mut self) -> Option<RelayMessage> {
        self.messages.recv().await
    }

    /// The listener's id on this node.
    pub(super) fn id(&self) -> u64 {
        self.id
    }

    /// The HC's spelling.
    pub(super) fn hc(&self) -> &str {
        &self.hc
    }

    /// The answer slot of HTTP request `id`, if it went to this listener and still waits.
    pub(super) fn take_request(&self, id: &str) -> Option<Claim> {
        self.registry.take_request(self.id, id)
    }

    /// Checks a renewed token (Listen on this HC); its expiry.
    pub(super) fn renew(&self, token: &str) -> Result<u64, Rejection> {
        self.registry.authorize_listener(&self.hc, Some(token)).map(|grant| grant.expiry)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.unregister(&self.hc, self.id);
    }
}

/// A fresh rendezvous secret: random, hex.
fn new_secret() -> String {
    rand::random::<[u8; SECRET_BYTES]>().iter().map(|b| format!("{b:02x}")).collect()
}

/// A rendezvous address's `sb-hc-id` split into the tracking id (which may be logged and
/// shown) and the secret (which may not). `None` for the secret if there is none.
pub(super) fn split_id(id: &str) -> (&str, Option<&str>) {
    match id.rsplit_once('_') {
        Some((tracking, secret)) => (tracking, Some(secret)),
        None => (id, None),
    }
}

/// Encodes a `/`-separated path segment by segment.
fn encode_path(path: &str) -> String {
    path.split('/').map(encode_component).collect::<Vec<_>>().join("/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::config::Limits;

    fn registry(max_pending: usize) -> Arc<Registry> {
        let mut settings = RelaySettings::with_namespace_key("root", crate::secret::Secret::new("k"));
        settings.limits = Limits {
            max_pending_senders_per_hc: max_pending,
            max_pending_requests_per_hc: max_pending,
            ..Limits::default()
        };
        Registry::new(&settings, Arc::new(Metrics::new()))
    }

    /// A root token for `audience` (`""`: the whole namespace).
    fn token(audience: &str) -> String {
        let sr = format!("sb://relay/{audience}");
        crate::sas::mint(&sr, "root", &crate::secret::Secret::new("k"), u64::MAX).expose().to_owned()
    }

    impl Registry {
        /// Registers a listener with a namespace-wide token.
        fn register(self: &Arc<Self>, hc: &str, base: &str) -> Result<Registration, Rejection> {
            self.register_listener(hc, Some(&token("")), base.into(), None).map(|(_, r)| r)
        }
    }

    #[test]
    fn a_reload_adds_keeps_retires_and_removes_configured_hcs() {
        let mut settings = RelaySettings::with_namespace_key("root", crate::secret::Secret::new("k"));
        settings.hcs = ["used", "unused"].map(HcSettings::new).to_vec();
        let reg = Registry::new(&settings, Arc::new(Metrics::new()));
        let used = reg.register("used", "ws://h").unwrap();
        let created = [reg.register("made/here", "ws://h").unwrap(), reg.register("other", "ws://h").unwrap()];
        assert_eq!(reg.state().auto_hcs, 2);
        // `other` becomes configured, `made` nests with `made/here` (created by a listener),
        // `fresh` is new, `used` and `unused` are no longer configured.
        let mut next = settings.clone();
        next.hcs = ["other", "made", "fresh"].map(HcSettings::new).to_vec();
        next.hcs[2].requires_client_authorization = false;
        let done = reg.reload(&next);
        let want = Reloaded { added: 1, kept: 1, removed: 1, retiring: 1, not_added: vec!["made".to_owned()] };
        assert_eq!(done, want);
        let state = reg.state();
        assert!(!state.hcs.contains_key("unused"), "unused and no longer configured: forgotten");
        assert!(state.hcs["used"].auto, "still listened on: forgotten once its listener leaves");
        assert!(!state.hcs["other"].auto, "configured now");
        assert!(!state.hcs["fresh"].settings.requires_client_authorization);
        assert_eq!(state.auto_hcs, 2, "`used` counts as created now, `other` no longer");
        drop(state);
        assert!(reg.authorize_sender("fresh", "sb://relay/fresh", None).is_ok(), "no token needed");
        drop((used, created));
    }

    #[test]
    fn a_reservation_builds_its_address_and_gives_its_slot_back() {
        let reg = registry(1);
        assert_eq!(reg.reserve("web", Kind::Sender).err(), Some(Unavailable::NotFound));
        let listener = reg.register("web/api", "ws://h:1").unwrap();
        assert_eq!(reg.resolve(&["web".into(), "api".into(), "x y".into()]), Some(("web/api".into(), "x y".into())));
        let r = reg.reserve("web/api", Kind::Sender).unwrap();
        assert_eq!(r.listeners().len(), 1);
        assert_eq!(reg.reserve("web/api", Kind::Sender).err(), Some(Unavailable::PendingLimit));
        let address = r.address("ws://h:1", "x y", &["a=1".into()], "t");
        let (path, query) = address.split_once('?').unwrap();
        assert_eq!(path, "ws://h:1/$hc/web/api/x%20y");
        let id = query.strip_prefix("a=1&sb-hc-action=accept&sb-hc-id=t_").unwrap();
        assert_eq!(split_id(&format!("t_{id}")), ("t", Some(id)));
        assert!(reg.claim(Kind::Request, id).is_none(), "a sender's secret is no request's");
        drop(r);
        assert!(reg.claim(Kind::Sender, id).is_none(), "retired with its reservation");
        let r = reg.reserve("web/api", Kind::Request).unwrap();
        assert!(r.address("ws://h:1", "", &[], "q").contains("?sb-hc-action=request&sb-hc-id=q_"));
        // Requests and senders wait within limits of their own.
        let sender = reg.reserve("web/api", Kind::Sender).unwrap();
        assert_eq!(reg.reserve("web/api", Kind::Request).err(), Some(Unavailable::PendingLimit));
        assert_eq!(reg.reserve("web/api", Kind::Sender).err(), Some(Unavailable::PendingLimit));
        drop((r, sender));
        assert!(reg.state().pending_requests.is_empty(), "no count left behind");
        let r = reg.reserve("web/api", Kind::Request).unwrap();
        drop((r, listener));
        assert_eq!(reg.reserve("web/api", Kind::Sender).err(), Some(Unavailable::NoListener));
    }

    #[test]
    fn a_claim_is_single_use_and_requests_answer_only_their_listener() {
        let reg = registry(4);
        let (one, two) = (reg.register("hc", "ws://a").unwrap(), reg.register("hc", "ws://b").unwrap());
        let mut r = reg.reserve("hc", Kind::Request).unwrap();
        let first = r.listeners()[0].clone();
        let id = r.expect_response(&first, "req".into());
        assert_eq!(id, "req");
        let mut other = reg.reserve("hc", Kind::Request).unwrap();
        assert_ne!(other.expect_response(&first, "req".into()), "req", "an id in use is replaced");
        let (mine, theirs) = if first.id() == one.id { (&one, &two) } else { (&two, &one) };
        assert!(theirs.take_request("req").is_none());
        assert!(mine.take_request("req").is_some());
        assert!(mine.take_request("req").is_none(), "used up");
        let address = r.address("ws://a", "", &[], "req");
        let secret = address.rsplit_once('_').unwrap().1;
        assert!(reg.claim(Kind::Request, secret).is_none(), "claimed through its control channel");
        let counts = {
            let state = reg.state();
            (state.hcs["hc"].pending, state.pending_requests["hc"])
        };
        assert_eq!(counts, (0, 2));
        drop((r, other));
        assert!(reg.state().pending_requests.is_empty());
        assert!(reg.state().waiting.is_empty() && reg.state().requests.is_empty());
    }

    #[test]
    fn listeners_are_limited_per_hc_and_unregister_on_drop() {
        let mut settings = RelaySettings::with_namespace_key("root", crate::secret::Secret::new("k"));
        settings.limits.max_listeners_per_hc = 2;
        let metrics = Arc::new(Metrics::new());
        let reg = Registry::new(&settings, metrics.clone());
        let a = reg.register("hc", "ws://h").unwrap();
        let _b = reg.register("hc", "ws://h").unwrap();
        let third = reg.register("hc", "ws://h").err().unwrap();
        assert_eq!((third.status(), third.reason()), (403, Reason::ListenerLimit));
        assert_eq!(metrics.listeners("hc"), 2);
        drop(a);
        assert_eq!(metrics.listeners("hc"), 1);
        settings.limits.max_listeners_per_hc = 0;
        let none = Registry::new(&settings, metrics);
        assert_eq!(none.register("new", "ws://h").err().map(|e| e.reason()), Some(Reason::ListenerLimit));
        assert!(none.state().hcs.is_empty(), "not created for a listener it would not take");
    }

    #[test]
    fn who_may_create_which_hc() {
        let mut settings = RelaySettings::with_namespace_key("root", crate::secret::Secret::new("k"));
        settings.limits.max_auto_hcs = 2;
        settings.limits.auto_hc_grace = Duration::ZERO;
        let metrics = Arc::new(Metrics::new());
        let reg = Registry::new(&settings, metrics.clone());
        let listen =
            |hc: &str, audience: &str| reg.register_listener(hc, Some(&token(audience)), "ws://h".into(), None);
        let status = |r: Result<(u64, Registration), Rejection>| r.err().map(|e| (e.status(), e.reason()));
        assert_eq!(status(listen("box/web", "box")), Some((403, Reason::Forbidden)), "a token above does not create");
        let box_ = listen("box", "box").unwrap();
        assert_eq!(status(listen("box/web", "box/web")), Some((409, Reason::NameConflict)), "below an HC");
        assert_eq!(status(listen("box/web", "")), Some((409, Reason::NameConflict)), "even namespace-wide");
        assert!(listen("box", "box").is_ok(), "a second listener on an existing HC");
        let long = "x".repeat(MAX_HC_NAME_BYTES + 1);
        assert_eq!(status(listen(&long, "")), Some((400, Reason::BadRequest)));
        let full = listen(&"y".repeat(MAX_HC_NAME_BYTES), "").unwrap();
        assert_eq!(status(listen("third", "")), Some((503, Reason::HcLimit)));
        drop(full);
        assert_eq!(metrics.render().matches("hyco_listeners{").count(), 1, "forgotten with no grace");
        let a = listen("a/b", "a/b").unwrap();
        assert_eq!(status(listen("a", "")), Some((409, Reason::NameConflict)), "above an HC");
        drop((a, box_));
        assert!(reg.state().hcs.is_empty() && reg.state().auto_hcs == 0);
        assert!(listen("a", "").is_ok(), "free again");
    }

    #[test]
    fn names_compare_without_case_and_keep_their_first_spelling() {
        let mut settings = RelaySettings::with_namespace_key("root", crate::secret::Secret::new("k"));
        settings.limits.auto_hc_grace = Duration::ZERO;
        let metrics = Arc::new(Metrics::new());
        let reg = Registry::new(&settings, metrics.clone());
        let first = reg.register_listener("Web", Some(&token("Web")), "ws://h".into(), None).unwrap().1;
        let second = reg.register_listener("WEB", Some(&token("web")), "ws://h".into(), None).unwrap().1;
        assert_eq!((first.hc.as_str(), second.hc.as_str()), ("Web", "Web"), "one HC, one spelling");
        assert_eq!(metrics.listeners("Web"), 2);
        assert_eq!(reg.resolve(&["web".into(), "api".into()]), Some(("Web".into(), "api".into())));
        assert_eq!(reg.spelling("wEb").as_deref(), Some("Web"));
        let r = reg.reserve("web", Kind::Sender).unwrap();
        assert_eq!(r.listeners().len(), 2);
        assert!(r.address("ws://h", "", &[], "t").starts_with("ws://h/$hc/Web?"));
        drop(r);
        let nested = reg.register_listener("web/api", Some(&token("web/api")), "ws://h".into(), None);
        assert_eq!(nested.err().map(|e| e.status()), Some(409), "nesting compares without case too");
        drop((first, second));
        assert!(reg.state().hcs.is_empty(), "forgotten under its key");
        assert_eq!(metrics.listeners("Web"), 0);
    }

    #[test]
    fn configured_hcs_are_never_forgotten_nor_created() {
        let mut settings = RelaySettings::with_namespace_key("root", crate::secret::Secret::new("k"));
        settings.auto_create = false;
        settings.limits.auto_hc_grace = Duration::ZERO;
        settings.hcs.push(HcSettings {
            name: "kept".into(),
            requires_client_authorization: true,
            rules: Vec::new(),
            ports: Vec::new(),
        });
        let reg = Registry::new(&settings, Arc::new(Metrics::new()));
        drop(reg.register("kept", "ws://h").unwrap());
        assert!(reg.state().hcs.contains_key("kept"));
        assert_eq!(reg.register("new", "ws://h").err().map(|e| e.status()), Some(404));
    }

    #[test]
    fn an_hc_of_another_node_is_adopted_without_listeners_unless_it_would_nest() {
        let mut settings = RelaySettings::with_namespace_key("root", crate::secret::Secret::new("k"));
        settings.limits.max_auto_hcs = 2;
        let reg = Registry::new(&settings, Arc::new(Metrics::new()));
        let _box = reg.register("box", "ws://h").unwrap();
        reg.adopt("Elsewhere");
        assert_eq!(reg.spelling("elsewhere").as_deref(), Some("Elsewhere"));
        assert_eq!(reg.reserve("elsewhere", Kind::Sender).err(), Some(Unavailable::NoListener), "none here");
        assert!(reg.local_listeners().iter().all(|(hc, _)| hc == "box"), "an adopted HC lists no listener");
        reg.adopt("box/web");
        assert_eq!(reg.spelling("box/web"), None, "below an HC here: not adopted");
        reg.adopt("third");
        assert_eq!(reg.spelling("third"), None, "over the limit of created HCs");
        let (hc, ids) = &reg.local_listeners()[0];
        assert!(reg.local_listener(hc, ids[0]).is_some_and(|l| l.is_local()));
        assert!(reg.local_listener("elsewhere", ids[0]).is_none(), "an id of another HC");
    }

    #[test]
    fn secrets_are_random_hex() {
        let (a, b) = (new_secret(), new_secret());
        assert_eq!(a.len(), SECRET_BYTES * 2);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()) && a != b);
    }
}
