//! `hyco connect`: opens a sender WebSocket through the relay for every local TCP
//! connection (`--bind`), or for stdin/stdout (`--stdio`, for ssh's ProxyCommand).
//!
//! A rejected rendezvous shows the relay's or the listener's status and text: the local
//! connection is reset (bind) or the process exits non-zero with the message (stdio).
//! With `--bind`, a [`Pool`] of prewarmed tunnels serves connections first.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use super::prewarm::{self, OpenFailure, Pool, Prewarm};
use super::pump;
use super::tunnel::Tunnel;
use super::{OpenError, Opened, RelayClient};
use crate::error::{Kind, failure};
use crate::http1;
use crate::protocol::{self, Action};
use crate::status::{ActiveGuard, Stats};
use crate::ws::frame::CloseFrame;

/// What `hyco connect` reaches: an HC and, optionally, a named target on its listener.
#[derive(Clone, Debug)]
pub struct ConnectSettings {
    pub hc: String,
    /// The path suffix after the HC name (`ssh` in `myhc/ssh`).
    pub suffix: Option<String>,
}

impl ConnectSettings {
    /// Splits `hc[/name]`, where `hc` is the first segment; `hc_segments` says how many
    /// segments the HC name has when it holds `/` itself.
    pub fn parse(spec: &str, hc_segments: usize) -> anyhow::Result<Self> {
        let segments: Vec<&str> = spec.split('/').filter(|s| !s.is_empty()).collect();
        if segments.len() < hc_segments || hc_segments == 0 {
            anyhow::bail!("{spec:?} does not name a hybrid connection");
        }
        let suffix = segments[hc_segments..].join("/");
        Ok(Self { hc: segments[..hc_segments].join("/"), suffix: (!suffix.is_empty()).then_some(suffix) })
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
    let token = client.token(&settings.hc)?.map(|(t, _)| t);
    let url = client.url(&settings.hc, settings.suffix.as_deref(), Action::Connect, Some(id));
    client.open(&url, token.as_ref(), headers).await.map_err(|e| describe(e, settings))
}

/// Opens a tunnel that waits for its start (see [`prewarm`]).
async fn open_prewarmed(client: &RelayClient, settings: &ConnectSettings, id: &str) -> Result<Tunnel, OpenFailure> {
    let Opened { stream, initial, response } = open_sender_with(client, settings, id, &[prewarm::offer()])
        .await
        .map_err(|e| OpenFailure::Failed(format!("{e:#}")))?;
    let mut tunnel = Tunnel::new(stream, &initial);
    match prewarm::accepted(http1::header(&response.headers, "Sec-WebSocket-Protocol")) {
        Ok(()) => Ok(tunnel),
        Err(why) => {
            tunnel.goodbye(&CloseFrame::new(protocol::close::NORMAL, "prewarming not supported")).await;
            Err(OpenFailure::Unsupported(why))
        }
    }
}

fn describe(e: OpenError, settings: &ConnectSettings) -> anyhow::Error {
    let target = match &settings.suffix {
        Some(s) => format!("{}/{}", settings.hc, s),
        None => settings.hc.clone(),
    };
    let hint = match e.kind() {
        Kind::Unauthorized => "; check the key or token and that it has the Send right",
        Kind::NotFound => "; is a listener running for it?",
        Kind::Unreachable if !e.names_its_fix() => "; is the relay running, and is the endpoint right?",
        _ => "",
    };
    failure(e.kind(), format!("{target}: {e}{hint}"))
}

/// Accepts local connections on `listener` until `shutdown`, bridging each through
/// the relay: through a prewarmed tunnel when one is ready, else through one opened for
/// it. Live tunnels are aborted at shutdown.
pub async fn run_bind(
    client: RelayClient,
    settings: ConnectSettings,
    prewarm: Prewarm,
    listener: TcpListener,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let tunnels = TaskTracker::new();
    // Connections the pool took but could not serve (their tunnel went at the hand-over).
    let (returned_tx, mut returned) = mpsc::unbounded_channel();
    let pool = (prewarm.tunnels > 0).then(|| {
        let hc = settings.hc.clone();
        let (client, settings) = (client.clone(), settings.clone());
        let open = move |id: String| {
            let (client, settings) = (client.clone(), settings.clone());
            async move { open_prewarmed(&client, &settings, &id).await }
        };
        Pool::start(prewarm, hc, open, returned_tx, stats.clone(), &tunnels, shutdown.clone())
    });
    loop {
        let local = tokio::select! {
            accepted = crate::net::accept(&listener, &shutdown, "local port") => match accepted {
                Some((tcp, peer)) => {
                    let _ = tcp.set_nodelay(true);
                    match &pool {
                        Some(pool) => match pool.hand((tcp, peer)) {
                            None => continue,
                            Some(local) => local,
                        },
                        None => (tcp, peer),
                    }
                }
                None => break,
            },
            Some(local) = returned.recv() => local,
        };
        let (client, settings, stats, cancel) = (client.clone(), settings.clone(), stats.clone(), shutdown.clone());
        tunnels.spawn(on_demand(client, settings, local, stats, cancel));
    }
    tunnels.close();
    tunnels.wait().await;
    // Handed back after the accept loop ended: the connector is stopping.
    while let Ok((tcp, _)) = returned.try_recv() {
        crate::net::reset(tcp);
    }
    Ok(())
}

/// Opens a tunnel for one local connection and bridges it. (Not an `async fn`: one that
/// wraps this block would hold its arguments twice for the tunnel's life.)
fn on_demand(
    client: RelayClient,
    settings: ConnectSettings,
    (tcp, peer): prewarm::Local,
    stats: Arc<Stats>,
    cancel: CancellationToken,
) -> impl Future<Output = ()> {
    let id = protocol::new_guid();
    let span = info_span!("tunnel", hc = %settings.hc, %id, %peer);
    async move {
        match open_sender_as(&client, &settings, &id).await {
            Ok(Opened { stream, initial, response }) => {
                debug!("tunnel open");
                // A tunnel may live for days: let go of what only the rendezvous needed.
                let tunnel = Tunnel::new(stream, &initial);
                drop((response, initial, client, settings));
                pump::pump_tcp(tcp, tunnel, &stats, &cancel).await;
            }
            Err(e) => {
                stats.failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                warn!("{e:#}");
                crate::net::reset(tcp);
            }
        }
    }
    .instrument(span)
}

/// Bridges stdin/stdout through one sender WebSocket. `Err` (exit non-zero) when the
/// rendezvous fails or the tunnel ends abnormally.
pub async fn run_stdio(
    client: RelayClient,
    settings: ConnectSettings,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let id = protocol::new_guid();
    let span = info_span!("tunnel", hc = %settings.hc, %id);
    async {
        let opened = open_sender_as(&client, &settings, &id).await?;
        info!("tunnel open");
        let _active = ActiveGuard::new(stats.clone());
        let tunnel = Tunnel::new(opened.stream, &opened.initial);
        pump::pump(tokio::io::stdin(), tokio::io::stdout(), tunnel, &stats, &shutdown)
            .await
            .map_err(|why| anyhow::anyhow!("tunnel aborted: {why}"))
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hc_and_target_name_split() {
        let s = ConnectSettings::parse("myhc/ssh", 1).unwrap();
        assert_eq!((s.hc.as_str(), s.suffix.as_deref()), ("myhc", Some("ssh")));
        let s = ConnectSettings::parse("team/db", 2).unwrap();
        assert_eq!((s.hc.as_str(), s.suffix), ("team/db", None));
        assert!(ConnectSettings::parse("", 1).is_err());
    }
}
