//! `hyco connect`: opens a sender WebSocket through the relay for every local TCP or
//! Unix-socket connection (`--bind`), or for stdin/stdout (`--stdio`, for ssh's
//! ProxyCommand).
//!
//! A rejected rendezvous shows the relay's or the listener's status and text: the local
//! connection is reset (bind; a Unix one is closed) or the process exits non-zero with
//! the message (stdio). With `--bind`, the path is checked once at startup ([`check`]), and a [`Pool`] of
//! prewarmed tunnels serves connections first. Each finished tunnel gets one line in the
//! log, and the connector one at exit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use super::prewarm::{self, OpenFailure, Pool, Prewarm};
use super::pump::{self, LocalSide};
use super::tunnel::{Tunnel, short_id};
use super::{OpenError, Opened, RelayClient};
use crate::error::{Kind, failure};
use crate::http1;
use crate::local::LocalListener;
use crate::protocol::{self, Action};
use crate::status::{Stats, Tally};
use crate::ws::frame::CloseFrame;

/// What `hyco connect` reaches: an HC and, optionally, a named target on its listener.
#[derive(Clone, Debug)]
pub struct ConnectSettings {
    pub hc: String,
    /// The path suffix after the HC name (`ssh` in `myhc/ssh`).
    pub suffix: Option<String>,
    /// The listener is an azbridge (`-T`): each tunnel starts with its preamble for this
    /// port name (`--azbridge-port`, docs/protocol.md 10.3).
    pub azbridge: Option<String>,
}

impl ConnectSettings {
    /// `hc` or `hc/name`: what the connector reaches, as every line about it says.
    pub fn label(&self) -> String {
        match &self.suffix {
            Some(s) => format!("{}/{s}", self.hc),
            None => self.hc.clone(),
        }
    }
}

/// Opens one sender WebSocket for `settings`, with a new tracking id.
pub async fn open_sender(client: &RelayClient, settings: &ConnectSettings) -> anyhow::Result<Opened> {
    open_sender_as(client, settings, &protocol::new_guid()).await
}

/// Opens one sender WebSocket for `settings`, with `id` as its tracking id (`sb-hc-id`).
async fn open_sender_as(client: &RelayClient, settings: &ConnectSettings, id: &str) -> anyhow::Result<Opened> {
    open_sender_with(client, settings, id, &[]).await
}

/// Opens one sender WebSocket for `settings` with more upgrade headers.
pub async fn open_sender_with(
    client: &RelayClient,
    settings: &ConnectSettings,
    id: &str,
    headers: &[(String, String)],
) -> anyhow::Result<Opened> {
    let url = |endpoint: &_| {
        RelayClient::url_at(endpoint, &settings.hc, settings.suffix.as_deref(), Action::Connect, Some(id))
    };
    match client.open_relay(&settings.hc, url, headers).await? {
        Ok((opened, ..)) => Ok(opened),
        Err(e) => Err(describe(e, settings)),
    }
}

/// Opens a tunnel that waits for its start (see [`prewarm`]).
async fn open_prewarmed(client: &RelayClient, settings: &ConnectSettings, id: &str) -> Result<Tunnel, OpenFailure> {
    let Opened { stream, initial, response } =
        open_sender_with(client, settings, id, &[prewarm::offer()]).await.map_err(OpenFailure::Failed)?;
    let mut tunnel = Tunnel::new(stream, &initial).keepalive(client.keepalive);
    match prewarm::accepted(http1::header(&response.headers, "Sec-WebSocket-Protocol")) {
        Ok(()) => Ok(tunnel),
        Err(why) => {
            tunnel.goodbye(&CloseFrame::new(protocol::close::NORMAL, "prewarming not supported")).await;
            Err(OpenFailure::Unsupported(why))
        }
    }
}

fn describe(e: OpenError, settings: &ConnectSettings) -> anyhow::Error {
    let hint = match e.kind() {
        Kind::Unauthorized => "; check the key or token and that it has the Send right",
        Kind::NotFound => "; is a listener running for it?",
        Kind::Unreachable if !e.names_its_fix() => "; is the relay running, and is the endpoint right?",
        _ => "",
    };
    failure(e.kind(), format!("{}: {e}{hint}", settings.label()))
}

/// The [`Kind`] of a failure, if it has one.
pub(super) fn kind_of(e: &anyhow::Error) -> Option<Kind> {
    e.chain().find_map(|e| e.downcast_ref::<crate::error::Failure>()).map(|f| f.kind)
}

/// What [`check`] found: a listener online (and the tunnel that proved it, for the pool),
/// or none yet.
pub struct Checked {
    first: Result<Tunnel, OpenFailure>,
}

impl Checked {
    /// Whether no listener was online.
    pub fn waiting(&self) -> bool {
        matches!(&self.first, Err(OpenFailure::Failed(_)))
    }

    /// Closes the tunnel that proved a listener online, if any (for a connector that does
    /// not pool it).
    pub async fn close(self) {
        if let Ok(mut tunnel) = self.first {
            tunnel.goodbye(&CloseFrame::new(protocol::close::NORMAL, "path checked")).await;
        }
    }
}

/// Checks the path once, as `connect --bind` starts: opens one tunnel that defers its
/// target ([`prewarm`]). A relay that cannot be reached, credentials it rejects, an
/// expired token or a listener's rejection is an `Err` with the message `--stdio` gives
/// (and its exit code). No listener online yet (404) is not: connect waits for one.
pub async fn check(client: &RelayClient, settings: &ConnectSettings) -> anyhow::Result<Checked> {
    match open_prewarmed(client, settings, &protocol::new_guid()).await {
        Err(OpenFailure::Failed(e)) if kind_of(&e) != Some(Kind::NotFound) => Err(e),
        first => Ok(Checked { first }),
    }
}

/// How long `connect` lets live tunnels finish after the first Ctrl-C (or SIGTERM, or
/// SIGHUP) before it closes them.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// While no listener is online, how often connect looks for one.
const WAITING_PROBE: Duration = Duration::from_secs(2);

/// Whether a listener is online for the HC, as the connector last found out; a change
/// is said in the log and on the status line.
struct Presence {
    hc: String,
    waiting: AtomicBool,
    stats: Arc<Stats>,
    /// Wakes [`Self::watch`] when no listener is online.
    wake: Notify,
}

impl Presence {
    fn absent(&self) {
        if !self.waiting.swap(true, Ordering::SeqCst) {
            let hc = &self.hc;
            info!("waiting for a listener on '{hc}': is hyco listen {hc} running?");
            self.stats.set_note(Some(format!("waiting for a listener on '{hc}'")));
            self.wake.notify_one();
        }
    }

    fn online(&self) {
        if self.waiting.swap(false, Ordering::SeqCst) {
            info!("a listener is online on '{}'", self.hc);
            self.stats.set_note(None);
        }
    }

    /// Learns from an attempt to open a tunnel.
    fn saw(&self, opened: &Result<Tunnel, OpenFailure>) {
        match opened {
            Ok(_) | Err(OpenFailure::Unsupported(_)) => self.online(),
            Err(OpenFailure::Failed(e)) if kind_of(e) == Some(Kind::NotFound) => self.absent(),
            Err(OpenFailure::Failed(_)) => {}
        }
    }

    /// While no listener is online, looks for one every [`WAITING_PROBE`] (a tunnel that
    /// defers its target, closed at once), until `shutdown`.
    async fn watch(self: Arc<Self>, client: RelayClient, settings: ConnectSettings, shutdown: CancellationToken) {
        let mut said = None;
        loop {
            if !self.waiting.load(Ordering::SeqCst) {
                tokio::select! {
                    () = self.wake.notified() => continue,
                    () = shutdown.cancelled() => return,
                }
            }
            tokio::select! {
                () = tokio::time::sleep(WAITING_PROBE) => {}
                () = shutdown.cancelled() => return,
            }
            let id = protocol::new_guid();
            let opened = tokio::select! {
                o = open_prewarmed(&client, &settings, &id) => o,
                () = shutdown.cancelled() => return,
            };
            self.saw(&opened);
            match opened {
                Ok(mut tunnel) => tunnel.goodbye(&CloseFrame::new(protocol::close::NORMAL, "listener found")).await,
                // Something else in the way (the relay gone, the credentials now
                // rejected): said once, until it changes.
                Err(OpenFailure::Failed(e)) if kind_of(&e) != Some(Kind::NotFound) => {
                    let text = format!("{e:#}");
                    if said.as_ref() != Some(&text) {
                        warn!("while waiting for a listener: {text}");
                        said = Some(text);
                    }
                }
                Err(_) => said = None,
            }
        }
    }
}

/// Checks the path ([`check`]), then runs [`run_checked`].
pub async fn run_bind(
    client: RelayClient,
    settings: ConnectSettings,
    prewarm: Prewarm,
    listener: impl Into<LocalListener>,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let listener = listener.into();
    let checked = check(&client, &settings).await?;
    run_checked(client, settings, prewarm, checked, listener, stats, shutdown).await
}

/// Accepts local connections on `listener` (a TCP port or a Unix socket, whose file
/// goes with it) until `shutdown`, bridging each through
/// the relay: through a prewarmed tunnel when one is ready, else through one opened for
/// it. While no listener is online a connection is rejected at once (the relay's 404),
/// with the reason in the log. At shutdown live tunnels may finish for
/// [`DRAIN_TIMEOUT`], then are closed.
pub async fn run_checked(
    client: RelayClient,
    settings: ConnectSettings,
    prewarm: Prewarm,
    checked: Checked,
    listener: LocalListener,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let tunnels = TaskTracker::new();
    let force = CancellationToken::new();
    let presence = Arc::new(Presence {
        hc: settings.hc.clone(),
        waiting: AtomicBool::new(false),
        stats: stats.clone(),
        wake: Notify::new(),
    });
    presence.saw(&checked.first);
    tunnels.spawn(presence.clone().watch(client.clone(), settings.clone(), shutdown.clone()));
    // Connections the pool took but could not serve (their tunnel went at the hand-over).
    let (returned_tx, mut returned) = mpsc::unbounded_channel();
    let pool = if prewarm.tunnels > 0 {
        let (client, settings, presence) = (client.clone(), settings.clone(), presence.clone());
        let label = settings.label();
        // The pool's first tunnel is the one the check opened.
        let first = std::sync::Mutex::new(Some(checked.first));
        let open = move |id: String| {
            let (client, settings, presence) = (client.clone(), settings.clone(), presence.clone());
            let first = first.lock().expect("first tunnel").take();
            async move {
                if let Some(first) = first {
                    return first;
                }
                let opened = open_prewarmed(&client, &settings, &id).await;
                presence.saw(&opened);
                opened
            }
        };
        let stops = prewarm::Stops { shutdown: shutdown.clone(), force: force.clone() };
        Some(Pool::start(prewarm, label, open, returned_tx, stats.clone(), &tunnels, stops))
    } else {
        if let Ok(mut tunnel) = checked.first {
            tunnel.goodbye(&CloseFrame::new(protocol::close::NORMAL, "path checked")).await;
        }
        None
    };
    loop {
        let local = tokio::select! {
            accepted = listener.accept(&shutdown, "local port") => match accepted {
                Some(local) => match &pool {
                    Some(pool) => match pool.hand(local) {
                        None => continue,
                        Some(local) => local,
                    },
                    None => local,
                },
                None => break,
            },
            Some(local) = returned.recv() => local,
        };
        let (client, settings, stats) = (client.clone(), settings.clone(), stats.clone());
        tunnels.spawn(on_demand(client, settings, local, stats, presence.clone(), force.clone()));
    }
    // New connections are refused from here on (a Unix socket's file is removed).
    drop(listener);
    pump::drain(&tunnels, &stats, DRAIN_TIMEOUT, &force).await;
    // Handed back after the accept loop ended: the connector is stopping.
    while let Ok((local, _)) = returned.try_recv() {
        local.abort();
    }
    info!("stopped: {}", stats.summary());
    Ok(())
}

/// Opens a tunnel for one local connection and bridges it. (Not an `async fn`: one that
/// wraps this block would hold its arguments twice for the tunnel's life.)
fn on_demand(
    client: RelayClient,
    settings: ConnectSettings,
    (local, peer): prewarm::Local,
    stats: Arc<Stats>,
    presence: Arc<Presence>,
    force: CancellationToken,
) -> impl Future<Output = ()> {
    let id = protocol::new_guid();
    let span = info_span!(parent: None, "tunnel", id = %short_id(&id));
    async move {
        match open_sender_as(&client, &settings, &id).await {
            Ok(Opened { stream, initial, response }) => {
                presence.online();
                debug!("tunnel open");
                let what = format!("{peer} -> {}", settings.label());
                // A tunnel may live for days: let go of what only the rendezvous needed.
                let mut tunnel = Tunnel::new(stream, &initial).keepalive(client.keepalive);
                if let Some(port) = &settings.azbridge
                    && let Err(why) = super::azbridge::greet(&mut tunnel, port).await
                {
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                    warn!("{what}: {why}");
                    return local.abort();
                }
                drop((response, initial, client, settings, presence));
                pump::pump_local(local, tunnel, Tally::new(stats), LocalSide::Client, &what, &force).await;
            }
            Err(e) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                if kind_of(&e) == Some(Kind::NotFound) {
                    presence.absent();
                    let hc = &settings.hc;
                    warn!(
                        "{peer} -> {}: rejected: no listener on '{hc}' yet; is hyco listen {hc} running?",
                        settings.label()
                    );
                } else {
                    warn!("{peer} -> {}: {e:#}", settings.label());
                }
                local.abort();
            }
        }
    }
    .instrument(span)
}

/// Bridges stdin/stdout through one sender WebSocket. `Err` (exit non-zero) when the
/// rendezvous fails or the tunnel ends abnormally.
///
/// A signal (`shutdown`) does not cut the tunnel: ssh, done with its ProxyCommand,
/// closes the pipes and sends SIGHUP at once, and the tunnel then ends as the pipes
/// say (stdin's EOF is a Close 1000, a normal end on both sides). Only a tunnel still
/// live [`DRAIN_TIMEOUT`] after the signal is cut.
pub async fn run_stdio(
    client: RelayClient,
    settings: ConnectSettings,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let id = protocol::new_guid();
    let span = info_span!("tunnel", id = %short_id(&id));
    async {
        let opened = open_sender_as(&client, &settings, &id).await?;
        debug!("tunnel open");
        let tally = Tally::new(stats.clone());
        let mut tunnel = Tunnel::new(opened.stream, &opened.initial).keepalive(client.keepalive);
        if let Some(port) = &settings.azbridge {
            super::azbridge::greet(&mut tunnel, port).await.map_err(|why| failure(Kind::Rejected, why))?;
        }
        let force = CancellationToken::new();
        let deadline = async {
            shutdown.cancelled().await;
            debug!(
                "signalled: letting the tunnel end as stdin and the other side say, for up to {} s",
                DRAIN_TIMEOUT.as_secs()
            );
            tokio::time::sleep(DRAIN_TIMEOUT).await;
            force.cancel();
            std::future::pending::<()>().await;
        };
        let outcome = tokio::select! {
            o = pump::pump(tokio::io::stdin(), pump::Stdout::new(), tunnel, &tally, &force) => o,
            () = deadline => unreachable!("pending"),
        };
        let what = format!("stdio -> {}", settings.label());
        match outcome {
            Ok(()) => {
                info!("{what}: {}; closed", tally.moved());
                Ok(())
            }
            Err(why) => {
                tally.failed();
                Err(anyhow::anyhow!("tunnel aborted: {why}"))
            }
        }
    }
    .instrument(span)
    .await
}
