//! `hyco listen`: keeps control channels to the relay and bridges every accepted
//! connection to a local TCP target (or a datagram session, a public UDP port's or a
//! sender's, to a UDP target: [`super::datagram`]).
//!
//! Each control channel renews its token at half its lifetime, pings the relay and
//! treats silence as a dead channel, and reconnects with backoff (docs/protocol.md 5.6). A
//! sender naming an unknown target, or a target that refuses, is rejected with a status
//! and text the sender sees. With `--http`, HTTP-mode requests are answered by calling the
//! same target over HTTP/1.1 ([`super::http`]); without it they get 501.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use super::accept::{self, AcceptEnv};
use super::allow::Allowlist;
use super::http::{self, ControlReply, HttpEnv};
use super::pump;
use super::target::{TARGET_CONNECT_TIMEOUT, Targets};
use super::tunnel::{GOODBYE_TIMEOUT, short_id};
use super::{OpenError, RelayClient, datagram, inspect, prewarm};
use crate::backoff::{Backoff, HEALTHY_PERIOD};
use crate::encoding::encode_component;
use crate::error::{Kind, failure};
use crate::protocol::{self, Accept, Action, HttpRequest, ListenerMessage, RelayMessage, RenewToken, close};
use crate::public::{self, Ask, PortAsk};
use crate::status::Stats;

/// Waits between reconnects (docs/protocol.md 5.6); a control channel up for
/// [`HEALTHY_PERIOD`] starts it over.
const RECONNECT: Backoff = Backoff(&[0, 1, 2, 5, 10, 30]);
/// Words (lower case) in a 403's text that mark a limit or quota rather than a missing
/// right: hyco's relay says "Listener limit of N reached …"; Azure's quota rejection
/// names `MaximumListenersPerEndpoint` (Microsoft's "Azure Relay exceptions",
/// QuotaExceededException), and Service Bus texts say "quota" and "exceeded".
const LIMIT_WORDS: [&str; 4] = ["limit", "quota", "maximumlisteners", "maximum number"];
/// The most control channels one listener keeps (the relay's per-HC limit).
const MAX_CONNECTIONS: usize = protocol::MAX_LISTENERS_PER_HC;
/// Rendezvous (accepts and HTTP requests) a listener works on at once, by default.
pub const DEFAULT_MAX_RENDEZVOUS: usize = 256;
/// The most `--max-rendezvous` may be.
pub const MAX_RENDEZVOUS: usize = 10_000;
/// Rendezvous that may wait for a slot, per slot; more are dropped.
const WAITING_PER_SLOT: usize = 8;
/// How long a rendezvous may wait for a slot: the relay's accept window, after which
/// its sender has had its 504 (docs/protocol.md 8).
const SLOT_WAIT: Duration = Duration::from_secs(30);

/// What `hyco listen` does.
#[derive(Clone, Debug)]
pub struct ListenSettings {
    pub hc: String,
    pub targets: Targets,
    /// Control channels to keep open (1 to [`MAX_CONNECTIONS`]).
    pub connections: usize,
    pub ping_interval: Duration,
    /// How long live tunnels may finish after shutdown.
    pub drain_timeout: Duration,
    /// Time to open a TCP connection to a target (a target that never accepts is a 504).
    pub target_connect_timeout: Duration,
    /// Answer HTTP-mode requests by calling the target over HTTP (`--http`).
    pub http: bool,
    /// With `http`: pass the request path on with the `/{hc}` prefix (`--keep-path-prefix`).
    pub keep_path_prefix: bool,
    /// How long a prewarmed tunnel may wait for its start ([`prewarm`]).
    pub prewarm_start_timeout: Duration,
    /// When the relay cannot be reached before the first control channel was ever up,
    /// keep retrying with backoff instead of failing (`--wait-for-relay`: a service that
    /// starts before the network). Without it that is an error at once, most likely a
    /// wrong endpoint.
    pub wait_for_relay: bool,
    /// Rendezvous worked on at once (1 to [`MAX_RENDEZVOUS`]): an accept holds a slot
    /// from its message until its tunnel is open (its target connection included), an
    /// HTTP request until it is answered. Others wait for a slot, up to
    /// [`WAITING_PER_SLOT`] per slot for at most [`SLOT_WAIT`]; beyond that they are
    /// dropped. So a relay that sends thousands of accepts cannot make the listener open
    /// thousands of connections, while an honest burst only waits.
    pub max_rendezvous: usize,
    /// Public ports to ask the relay for (`--public`, docs/protocol.md 10.2).
    pub public: Vec<Ask>,
    /// Every sender is an azbridge (`-L`): its preamble names the target (`--azbridge`).
    pub azbridge: bool,
    /// A sender's UDP session (`Hyco-Proto: udp`) ends after this long without a datagram
    /// (`--udp-idle`): a connector that vanished does not pin a socket.
    pub udp_idle: Duration,
    /// Destinations senders may name with `Hyco-Destination` (`--allow`, docs/protocol.md
    /// 10.5); empty: none.
    pub allow: Allowlist,
    /// With `http`: record requests for the request inspector and serve its page
    /// (`--inspect`).
    pub(crate) inspect: Option<inspect::Inspect>,
}

impl ListenSettings {
    pub fn new(hc: impl Into<String>, targets: Targets) -> Self {
        Self {
            hc: hc.into(),
            targets,
            connections: 1,
            ping_interval: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(10),
            target_connect_timeout: TARGET_CONNECT_TIMEOUT,
            http: false,
            keep_path_prefix: false,
            prewarm_start_timeout: prewarm::START_TIMEOUT,
            max_rendezvous: DEFAULT_MAX_RENDEZVOUS,
            wait_for_relay: false,
            public: Vec::new(),
            azbridge: false,
            udp_idle: datagram::DEFAULT_IDLE,
            allow: Allowlist::default(),
            inspect: None,
        }
    }
}

/// Runs the listener until `shutdown` fires (then `Ok`) or the relay rejects its first
/// connection (400, 401, 403, 404, 409: `Err` saying what to do). Once a control channel
/// has been up, 400-404 are retried with backoff, each logged with its text: keys are
/// rotated, a hybrid connection recreated, a listener limit freed.
pub async fn run(
    client: RelayClient,
    settings: ListenSettings,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    run_with_online(client, settings, stats, shutdown, CancellationToken::new()).await
}

/// [`run`], firing `online` once the first control channel is up (as the relay
/// registered it): the signal that senders can reach this listener now.
pub async fn run_with_online(
    client: RelayClient,
    settings: ListenSettings,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
    online: CancellationToken,
) -> anyhow::Result<()> {
    if !(1..=MAX_CONNECTIONS).contains(&settings.connections) {
        return Err(failure(Kind::Config, format!("--connections must be between 1 and {MAX_CONNECTIONS}")));
    }
    if !(1..=MAX_RENDEZVOUS).contains(&settings.max_rendezvous) {
        return Err(failure(Kind::Config, format!("--max-rendezvous must be between 1 and {MAX_RENDEZVOUS}")));
    }
    if !settings.public.is_empty() && client.endpoint.azure_domain().is_some() {
        let text = "Azure Relay has no public ports (--public needs a hyco serve relay); \
                    reach the listener with hyco connect, or over HTTP with --http";
        return Err(failure(Kind::Config, text));
    }
    stats.set_listener();
    let tunnels = TaskTracker::new();
    let force = CancellationToken::new();
    let ctx_rendezvous = settings.max_rendezvous;
    let asks = settings.public.clone();
    let http = Arc::new(HttpEnv {
        client: client.clone(),
        hc: settings.hc.clone(),
        targets: settings.targets.clone(),
        serve: settings.http,
        keep_prefix: settings.keep_path_prefix,
        connect_timeout: settings.target_connect_timeout,
        pool: super::http_pool::Pool::new(),
        inspect: settings.inspect.as_ref().filter(|_| settings.http).map(|i| i.store.clone()),
    });
    let inspector = settings.inspect.clone().filter(|_| settings.http).map(|i| {
        let (env, shutdown) = (http.clone(), shutdown.clone());
        tokio::spawn(inspect::serve(i, env, shutdown))
    });
    let accepts = Arc::new(AcceptEnv {
        client: client.clone(),
        hc: settings.hc.clone(),
        hc_segments: settings.hc.split('/').filter(|s| !s.is_empty()).count(),
        targets: settings.targets.clone(),
        allowed: settings.allow.clone(),
        stats: stats.clone(),
        shutdown: shutdown.clone(),
        force: force.clone(),
        connect_timeout: settings.target_connect_timeout,
        start_timeout: settings.prewarm_start_timeout,
        azbridge: settings.azbridge,
        udp_idle: settings.udp_idle,
    });
    let ctx = Arc::new(Ctx {
        http,
        accepts,
        client,
        settings,
        stats,
        tunnels: tunnels.clone(),
        force: force.clone(),
        ever_connected: AtomicBool::new(false),
        online,
        asks: std::sync::Mutex::new(asks),
        announced: std::sync::Mutex::new(Vec::new()),
        rendezvous: Arc::new(Semaphore::new(ctx_rendezvous)),
        waiting: Arc::new(AtomicUsize::new(0)),
        dropped: AtomicU64::new(0),
    });
    let mut channels = tokio::task::JoinSet::new();
    for index in 0..ctx.settings.connections {
        let ctx = ctx.clone();
        let shutdown = shutdown.clone();
        channels.spawn(async move { ctx.keep_channel(index, shutdown).instrument(info_span!("control", index)).await });
    }
    let mut result = Ok(());
    while let Some(joined) = channels.join_next().await {
        if let Err(e) = joined.context("control channel task failed").and_then(|r| r) {
            result = Err(e);
            shutdown.cancel();
        }
    }
    pump::drain(&tunnels, &ctx.stats, ctx.settings.drain_timeout, &force).await;
    if let Some(inspector) = inspector {
        let _ = inspector.await;
    }
    info!("stopped: {}", ctx.stats.summary());
    result
}

struct Ctx {
    /// What HTTP-mode requests need.
    http: Arc<HttpEnv>,
    /// What accepts need.
    accepts: Arc<AcceptEnv>,
    client: RelayClient,
    settings: ListenSettings,
    stats: Arc<Stats>,
    tunnels: TaskTracker,
    force: CancellationToken,
    /// Whether any control channel has been open yet.
    ever_connected: AtomicBool,
    /// Fired when a control channel is up (the first time counts).
    online: CancellationToken,
    /// The public ports to ask for; after a grant, a port asked for as any is asked for
    /// as that one (`~N`), so that a reconnect gets it back.
    asks: std::sync::Mutex<Vec<Ask>>,
    /// The ports last announced, so that each change is said once.
    announced: std::sync::Mutex<Vec<public::Grant>>,
    /// Slots for rendezvous worked on at once ([`ListenSettings::max_rendezvous`]).
    rendezvous: Arc<Semaphore>,
    /// Rendezvous waiting for a slot.
    waiting: Arc<AtomicUsize>,
    /// Rendezvous dropped for want of a slot.
    dropped: AtomicU64,
}

/// A rendezvous in line for a slot ([`ListenSettings::max_rendezvous`]).
struct Admission {
    slots: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
}

impl Admission {
    /// Waits for a slot, for at most [`SLOT_WAIT`].
    async fn slot(self) -> Option<OwnedSemaphorePermit> {
        tokio::time::timeout(SLOT_WAIT, self.slots.clone().acquire_owned()).await.ok()?.ok()
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How a control channel ended.
enum ChannelEnd {
    Shutdown,
    Lost(String),
}

impl Ctx {
    /// Keeps control channel `index` open until `shutdown`. Each attempt goes to the
    /// relay's next endpoint (the channels of one listener start apart, so that they spread
    /// over a relay's nodes, and a node that went away is left for the next).
    async fn keep_channel(self: Arc<Self>, index: usize, shutdown: CancellationToken) -> anyhow::Result<()> {
        let hc = &self.settings.hc;
        let mut attempt = 0;
        // Endpoints tried so far, and how many in a row could not be reached.
        let (mut tries, mut unreachable) = (index, 0);
        loop {
            let endpoint = self.client.endpoint_at(tries).clone();
            tries += 1;
            let Some((token, expiry)) = self.channel_token(&endpoint, &shutdown).await? else { return Ok(()) };
            let url = self.listen_url(&endpoint);
            let opened = tokio::select! {
                o = self.client.open(&url, token.as_ref(), &[]) => o,
                () = shutdown.cancelled() => return Ok(()),
            };
            match opened {
                Ok(opened) => {
                    unreachable = 0;
                    self.take_grants(&opened.response, &endpoint)?;
                    self.ever_connected.store(true, Ordering::Relaxed);
                    let started = Instant::now();
                    info!(hc = %hc, relay = %endpoint.ws_base(), "listening");
                    match self.run_channel(opened, expiry, &endpoint, &shutdown).await {
                        ChannelEnd::Shutdown => return Ok(()),
                        ChannelEnd::Lost(why) => warn!("control channel lost: {why}"),
                    }
                    if started.elapsed() >= HEALTHY_PERIOD {
                        attempt = 0;
                    }
                }
                Err(e) => {
                    if let Some((kind, message)) = rejected(&e, hc, &self.client) {
                        if !self.ever_connected.load(Ordering::Relaxed) || !retried_once_online(&e) {
                            return Err(failure(kind, message));
                        }
                        warn!("cannot listen: {message}; retrying, as this listener was online before");
                    } else {
                        // Never connected yet, and no endpoint of the relay answered: most
                        // likely a wrong endpoint, so say so now, unless told the network
                        // may not be up yet (--wait-for-relay).
                        unreachable = if e.kind() == Kind::Unreachable { unreachable + 1 } else { 0 };
                        if !self.ever_connected.load(Ordering::Relaxed)
                            && unreachable >= self.client.endpoint_count()
                            && !self.settings.wait_for_relay
                        {
                            let relay = self.client.endpoints_text();
                            if e.names_its_fix() {
                                return Err(failure(Kind::Unreachable, e.to_string()));
                            }
                            return Err(failure(
                                Kind::Unreachable,
                                format!("{e}; is the relay at {relay} running, and is the endpoint right?"),
                            ));
                        }
                        warn!("cannot listen: {e}");
                    }
                }
            }
            let delay = RECONNECT.delay(attempt);
            attempt += 1;
            if !delay.is_zero() {
                info!("reconnecting in {} s", delay.as_secs());
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = shutdown.cancelled() => return Ok(()),
            }
        }
    }

    /// The token for a new control channel (`None`s without a credential); `None` on
    /// shutdown. A failing token command is an error until the listener was online once,
    /// then a warning, retried with backoff (docs/protocol.md 3.1).
    async fn channel_token(
        &self,
        endpoint: &crate::connstr::Endpoint,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Option<(Option<crate::secret::Secret>, Option<u64>)>> {
        let mut attempt = 0;
        loop {
            match self.client.token_for(endpoint, &self.settings.hc).await {
                Ok(t) => return Ok(Some(t.map_or((None, None), |(t, e)| (Some(t), Some(e))))),
                Err(e) if self.ever_connected.load(Ordering::Relaxed) => {
                    let delay = RECONNECT.delay(attempt).max(Duration::from_secs(1));
                    attempt += 1;
                    warn!("cannot get a token: {e:#}; retrying in {} s", delay.as_secs());
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = shutdown.cancelled() => return Ok(None),
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The control channel's URL, with the public ports to ask for.
    fn listen_url(&self, endpoint: &crate::connstr::Endpoint) -> String {
        let asks = self.asks.lock().expect("asks lock");
        let query: Vec<String> =
            asks.iter().map(|a| format!("{}={}", public::PARAM_PUBLIC, encode_component(&a.to_string()))).collect();
        let id = protocol::new_guid();
        protocol::client_url(&endpoint.ws_base(), &self.settings.hc, None, &query.join("&"), Action::Listen, Some(&id))
    }

    /// Reads the ports the relay granted from its 101 (docs/protocol.md 10.2), says where
    /// visitors reach them when that changes, and asks for the same ones next time. A
    /// relay that granted none of those asked for does not offer public ports: an error.
    fn take_grants(
        &self,
        response: &crate::http1::Response,
        endpoint: &crate::connstr::Endpoint,
    ) -> anyhow::Result<()> {
        let mut asks = self.asks.lock().expect("asks lock");
        if asks.is_empty() {
            return Ok(());
        }
        let relay = endpoint.ws_base();
        let grants = crate::http1::header(&response.headers, public::HEADER_PUBLIC).and_then(public::parse_grants);
        let Some(grants) = grants.filter(|g| g.len() == asks.len()) else {
            let text = format!(
                "the relay at {relay} does not offer public ports (a hyco serve relay of this version does; \
                 Azure Relay has none): run without --public, or update the relay"
            );
            return Err(failure(Kind::Conflict, text));
        };
        let host = crate::http1::header(&response.headers, public::HEADER_PUBLIC_HOST)
            .map(crate::http1::sanitize)
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| endpoint.host.clone());
        for (ask, grant) in asks.iter_mut().zip(&grants) {
            if !matches!(ask.port, PortAsk::Exactly(_)) {
                ask.port = PortAsk::Prefer(grant.port);
            }
        }
        let mut announced = self.announced.lock().expect("announced lock");
        if *announced != grants {
            let mut addresses = Vec::new();
            for g in &grants {
                let targets = &self.settings.targets;
                let to = if g.target.is_empty() { targets.default.as_ref() } else { targets.named.get(&g.target) };
                let address = protocol::authority(&host, g.port);
                info!("reachable at {address} ({} -> {})", g.proto, to.map_or("", String::as_str));
                addresses.push(address);
            }
            self.stats.public.send_replace(addresses);
            *announced = grants;
        }
        Ok(())
    }

    async fn run_channel(
        &self,
        opened: super::Opened,
        mut expiry: Option<u64>,
        endpoint: &crate::connstr::Endpoint,
        shutdown: &CancellationToken,
    ) -> ChannelEnd {
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .max_message_size(Some(protocol::MAX_CONTROL_MESSAGE))
            .max_frame_size(Some(protocol::MAX_CONTROL_MESSAGE));
        let mut ws =
            WebSocketStream::from_partially_read(opened.stream, opened.initial, Role::Client, Some(config)).await;
        let _live = LiveChannel::new(self.stats.clone());
        self.online.cancel();
        let interval = self.settings.ping_interval;
        let mut ticker = tokio::time::interval_at(Instant::now() + interval, interval);
        let mut last_heard = Instant::now();
        let renew_at = |expiry: Option<u64>| {
            let left = expiry.map_or(u64::MAX / 4, |e| e.saturating_sub(protocol::unix_now()));
            Instant::now() + Duration::from_secs(left / 2).max(Duration::from_secs(1))
        };
        let mut renew = renew_at(expiry.filter(|_| self.client.can_renew()));
        // HTTP mode: responses for this channel, and a request whose body comes next.
        let (replies_tx, mut replies_rx) = mpsc::channel::<ControlReply>(16);
        let mut awaiting_body: Option<HttpRequest> = None;
        loop {
            tokio::select! {
                Some((response, body)) = replies_rx.recv() => {
                    // A response, and its body as the next message (docs/protocol.md 7).
                    let has_body = response.body;
                    let json = serde_json::to_string(&ListenerMessage::Response(response)).expect("control messages serialize");
                    if let Err(e) = ws.send(Message::text(json)).await {
                        return ChannelEnd::Lost(e.to_string());
                    }
                    if has_body && let Err(e) = ws.send(Message::binary(body)).await {
                        return ChannelEnd::Lost(e.to_string());
                    }
                }
                msg = ws.next() => {
                    last_heard = Instant::now();
                    match msg {
                        Some(Ok(Message::Text(text))) => {
                            if let Some(request) = awaiting_body.take() {
                                // A body announced but not sent: an empty one.
                                self.spawn_request(request, Some(Vec::new()), &replies_tx);
                            }
                            match serde_json::from_str::<RelayMessage>(&text) {
                                Ok(RelayMessage::Accept(accept)) => self.spawn_accept(accept),
                                // A complete request's body is the next message (docs/protocol.md 7).
                                Ok(RelayMessage::Request(r)) if r.is_complete() && r.body == Some(true) => awaiting_body = Some(r),
                                Ok(RelayMessage::Request(r)) => self.spawn_request(r, None, &replies_tx),
                                Err(e) => debug!("ignoring a control message this listener does not handle: {e}"),
                            }
                        }
                        Some(Ok(Message::Binary(body))) => match awaiting_body.take() {
                            Some(request) => self.spawn_request(request, Some(body.to_vec()), &replies_tx),
                            None => debug!("ignoring a binary message on the control channel"),
                        },
                        Some(Ok(Message::Close(frame))) => {
                            let (code, reason) = frame.map(|f| (u16::from(f.code), f.reason.to_string())).unwrap_or((1005, String::new()));
                            return ChannelEnd::Lost(format!("the relay closed it ({code} {reason})"));
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return ChannelEnd::Lost(e.to_string()),
                        None => return ChannelEnd::Lost("connection closed".into()),
                    }
                }
                () = tokio::time::sleep_until(renew) => {
                    match self.client.token_for(endpoint, &self.settings.hc).await {
                        Ok(Some((token, new_expiry))) => {
                            let msg = ListenerMessage::RenewToken(RenewToken { token: token.expose().to_owned() });
                            let json = serde_json::to_string(&msg).expect("control messages serialize");
                            if let Err(e) = ws.send(Message::text(json)).await {
                                return ChannelEnd::Lost(e.to_string());
                            }
                            debug!("token renewed");
                            expiry = Some(new_expiry);
                        }
                        Ok(None) => expiry = None,
                        Err(e) => warn!("cannot renew the token: {e:#}"),
                    }
                    renew = renew_at(expiry);
                }
                _ = ticker.tick() => {
                    if last_heard.elapsed() >= interval * 2 {
                        return ChannelEnd::Lost(format!("no answer from the relay for {} s", last_heard.elapsed().as_secs()));
                    }
                    if let Err(e) = ws.send(Message::Ping(Bytes::new())).await {
                        return ChannelEnd::Lost(e.to_string());
                    }
                }
                () = shutdown.cancelled() => {
                    let frame = CloseFrame { code: close::NORMAL.into(), reason: "listener stopping".into() };
                    let _ = tokio::time::timeout(GOODBYE_TIMEOUT, ws.close(Some(frame))).await;
                    return ChannelEnd::Shutdown;
                }
            }
        }
    }

    /// A place in line for one more rendezvous whose `address` the relay handed out, if
    /// that address leads back to the relay and the line is not full; else `None`, logged
    /// (never the address itself: its query holds the rendezvous secret).
    fn admit(&self, address: Option<&str>) -> Option<Admission> {
        if let Some(address) = address
            && let Err(e) = self.client.trusts(address)
        {
            warn!("{e}; the relay may be compromised");
            return None;
        }
        let line = self.settings.max_rendezvous * WAITING_PER_SLOT;
        if self.waiting.fetch_add(1, Ordering::Relaxed) >= line {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            // Logged at 1, 2, 4, 8, … drops: a flood cannot flood the log.
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                warn!(
                    "{} rendezvous at once (--max-rendezvous) and {line} waiting already; dropped {n} so far",
                    self.settings.max_rendezvous
                );
            }
            return None;
        }
        Some(Admission { slots: self.rendezvous.clone(), waiting: self.waiting.clone() })
    }

    fn spawn_request(&self, request: HttpRequest, body: Option<Vec<u8>>, replies: &mpsc::Sender<ControlReply>) {
        let Some(admission) = self.admit(request.address.as_deref()) else { return };
        let span = info_span!(parent: None, "http", id = %short_id(&request.id));
        let (env, replies, force) = (self.http.clone(), replies.clone(), self.force.clone());
        self.tunnels.spawn(
            async move {
                let Some(Some(permit)) = force.run_until_cancelled(admission.slot()).await else { return };
                tokio::select! {
                    () = http::answer(env, request, body, replies) => {}
                    () = force.cancelled() => {}
                }
                drop(permit);
            }
            .instrument(span),
        );
    }

    fn spawn_accept(&self, accept: Accept) {
        let Some(admission) = self.admit(Some(&accept.address)) else { return };
        let span = info_span!(parent: None, "tunnel", id = %short_id(&accept.id));
        let env = self.accepts.clone();
        self.tunnels.spawn(
            async move {
                let Some(Some(permit)) = env.force.run_until_cancelled(admission.slot()).await else { return };
                accept::serve(&env, accept, permit).await;
            }
            .instrument(span),
        );
    }
}

/// Whether a rejection is retried once the listener has been online: the credentials may
/// be rotated, the hybrid connection recreated, a listener limit freed (a 409 for a public
/// port, and a bad URL, stay final).
fn retried_once_online(e: &OpenError) -> bool {
    matches!(e, OpenError::Rejected { status: 400 | 401 | 403 | 404, .. })
}

/// What a relay answer that retrying at once cannot fix means and what to do about it,
/// with its exit kind; `None` for anything worth retrying.
fn rejected(e: &OpenError, hc: &str, client: &RelayClient) -> Option<(Kind, String)> {
    if !e.is_permanent() {
        return None;
    }
    let relay = client.endpoint.ws_base();
    let message = match e {
        OpenError::Rejected { status: 401, text, .. } => {
            format!("{relay} refused the credentials (401 {text}); check the key name and key, or the token's expiry")
        }
        // The relay's texts for a public port it will not open all say "public port".
        OpenError::Rejected { status: 403, text, .. } if text.to_ascii_lowercase().contains("public port") => {
            format!(
                "{relay} refused the public ports asked for on {hc} (403 {text}); \
                 run without --public, or ask the relay's operator"
            )
        }
        OpenError::Rejected { status: 403, text, .. } if names_a_limit(text) => {
            format!(
                "{relay} has reached a limit for {hc} (403 {text}); stop another listener on {hc}, \
                 or raise the limit (an Azure namespace's quota, a hyco relay's max_listeners_per_hc)"
            )
        }
        OpenError::Rejected { status: 403, text, .. } => {
            format!("{relay} refused to let this key listen on {hc} (403 {text}); use a key with the Listen right")
        }
        OpenError::Rejected { status: 404, text, .. } => {
            format!(
                "hybrid connection {hc} does not exist on {relay} (404 {text}); create it first (Azure) or check the name"
            )
        }
        other => format!("{relay}: {other}"),
    };
    Some((e.kind(), message))
}

/// Whether a 403's text says a limit or quota was reached ([`LIMIT_WORDS`]).
fn names_a_limit(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    LIMIT_WORDS.iter().any(|w| text.contains(w))
}

/// Counts a live control channel for as long as it lives.
struct LiveChannel(Arc<Stats>);

impl LiveChannel {
    fn new(stats: Arc<Stats>) -> Self {
        stats.channels.send_modify(|n| *n += 1);
        Self(stats)
    }
}

impl Drop for LiveChannel {
    fn drop(&mut self) {
        self.0.channels.send_modify(|n| *n -= 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::RejectedBy;

    fn rejection(status: u16, text: &str) -> OpenError {
        OpenError::Rejected { by: RejectedBy::Relay, status, text: text.into() }
    }

    #[test]
    fn a_403_for_a_limit_is_not_blamed_on_the_listen_right() {
        let client = RelayClient::new(
            crate::connstr::parse_endpoint("ws://127.0.0.1:9400", false).unwrap(),
            crate::connstr::Credential::None,
            None,
        )
        .unwrap();
        let said = |status, text| rejected(&rejection(status, text), "web", &client).map(|(_, m)| m).unwrap();
        for quota in [
            "Listener limit of 25 reached for this hybrid connection",
            "QuotaExceeded: MaximumListenersPerEndpoint: 25. TrackingId:1",
            "The maximum number of listeners has been exceeded",
            "Quota exceeded for the namespace",
        ] {
            let m = said(403, quota);
            assert!(m.contains("reached a limit for web") && m.contains(quota), "{m}");
            assert!(!m.contains("Listen right"), "{m}");
        }
        let m = said(403, "Token lacks the right for this action");
        assert!(m.contains("Listen right") && m.contains("Token lacks the right"), "{m}");
        assert!(said(403, "Public port 80 is below 1024, which this relay does not allow").contains("--public"));
        assert!(rejected(&rejection(503, "stopping"), "web", &client).is_none(), "retried at any time");
    }

    #[test]
    fn once_online_400_to_404_are_retried_and_409_is_not() {
        for status in [400, 401, 403, 404] {
            assert!(retried_once_online(&rejection(status, "x")), "{status}");
        }
        assert!(!retried_once_online(&rejection(409, "Public port 20000 is held")));
        assert!(!retried_once_online(&OpenError::BadUrl("ws://h/x".into())));
    }
}
