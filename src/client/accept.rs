//! A listener's answer to one `accept` (docs/protocol.md 5.2-5.4): a dynamic destination
//! (10.5), azbridge's preamble (10.3), a UDP session (10.2, 10.4), a prewarmed tunnel
//! (10.1), or a target reached before the rendezvous is accepted; rejecting with a status
//! when the sender asks for what this listener does not serve. The control channel
//! ([`super::listen`]) admits the accept and hands it here; this module keeps no state.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::allow::{self, Allowlist};
use super::pump::{self, LocalSide};
use super::target::{Targets, connect_target, is_udp};
use super::tunnel::Tunnel;
use super::{OpenError, RelayClient, datagram, prewarm};
use crate::encoding::encode_component;
use crate::protocol::{self, Accept, close};
use crate::status::{Stats, Tally};
use crate::ws::frame::CloseFrame as WsClose;

/// What answering an accept needs of its listener: the same for every accept.
pub(super) struct AcceptEnv {
    pub(super) client: RelayClient,
    /// The HC, and how many path segments it has (the rest of a path names a target).
    pub(super) hc: String,
    pub(super) hc_segments: usize,
    pub(super) targets: Targets,
    pub(super) allowed: Allowlist,
    pub(super) stats: Arc<Stats>,
    /// Graceful shutdown (prewarmed tunnels not yet started end), and its forced end.
    pub(super) shutdown: CancellationToken,
    pub(super) force: CancellationToken,
    pub(super) connect_timeout: Duration,
    pub(super) start_timeout: Duration,
    /// Senders are azbridge (`listen --azbridge`).
    pub(super) azbridge: bool,
    /// The idle timeout of a sender's UDP session.
    pub(super) udp_idle: Duration,
}

/// Answers `accept`, holding `permit` (its place among the rendezvous at once) until the
/// tunnel is open, then carries the tunnel until it ends. Each step until the tunnel is
/// open ends at once when shutdown is forced.
pub(super) async fn serve(env: &AcceptEnv, accept: Accept, permit: OwnedSemaphorePermit) {
    let AcceptEnv {
        client,
        hc,
        hc_segments,
        targets,
        allowed,
        stats,
        shutdown,
        force,
        connect_timeout,
        start_timeout,
        azbridge,
        udp_idle,
    } = env;
    let suffix = super::target::address_suffix(&accept.address, *hc_segments);
    let from = accept
        .remote_endpoint
        .as_ref()
        .map_or_else(|| "a sender".to_owned(), |r| protocol::authority(&r.address, r.port));
    let path = match &suffix {
        Ok(s) if !s.is_empty() => format!("{hc}/{}", s.join("/")),
        _ => hc.clone(),
    };
    let named = !matches!(&suffix, Ok(s) if s.is_empty());
    if let Some(asked) = allow::requested(&accept.connect_headers, named) {
        // A dynamic destination (docs/protocol.md 10.5): accepted once reached.
        let reached = async {
            let to = asked?;
            let (tcp, addr) = allowed.reach(&to, *connect_timeout).await?;
            Ok::<_, allow::Rejected>((tcp, format!("{from} -> {path} -> {to} ({addr})")))
        };
        let (tcp, what) = match force.run_until_cancelled(reached).await {
            None => return,
            Some(Ok(reached)) => reached,
            Some(Err((status, text))) => {
                force.run_until_cancelled(reject(client, &accept, status, &text)).await;
                return;
            }
        };
        let opening = accept_rendezvous(client, &accept, None);
        let Some(tunnel) = force.run_until_cancelled(opening).await.flatten() else {
            return crate::net::reset(tcp);
        };
        drop((accept, suffix, permit));
        return pump::pump_local(
            crate::local::LocalStream::Tcp(tcp),
            tunnel,
            Tally::new(stats.clone()),
            LocalSide::Target,
            &what,
            force,
        )
        .await;
    }
    if *azbridge {
        // azbridge's preamble names the target (docs/protocol.md 10.3).
        let offered = accept
            .connect_headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("Sec-WebSocket-Protocol"))
            .and_then(|(_, v)| v.split(',').next())
            .map(str::trim)
            .filter(|p| crate::http1::is_token(p));
        let opening = accept_rendezvous(client, &accept, offered);
        let Some(tunnel) = force.run_until_cancelled(opening).await.flatten() else { return };
        drop((accept, suffix, permit));
        return super::azbridge::serve(tunnel, targets, &from, *connect_timeout, stats.clone(), force).await;
    }
    let target = match suffix.as_deref().map_err(Clone::clone).and_then(|s| targets.pick(s)) {
        Ok(t) => t.to_owned(),
        Err(text) => {
            force.run_until_cancelled(reject(client, &accept, 404, &text)).await;
            return;
        }
    };
    let offered = accept
        .connect_headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("Sec-WebSocket-Protocol"))
        .map(|(_, v)| v.as_str())
        .unwrap_or_default();
    if let Some(text) = datagram::mismatch(&target, &accept) {
        force.run_until_cancelled(reject(client, &accept, 400, &text)).await;
        return;
    }
    if is_udp(&target) {
        let udp_idle = datagram::hc_session(&accept).then_some(*udp_idle);
        let socket = match force.run_until_cancelled(datagram::bind_target(&target)).await {
            None => return,
            Some(Ok(socket)) => socket,
            Some(Err((status, text))) => {
                force.run_until_cancelled(reject(client, &accept, status, &text)).await;
                return;
            }
        };
        let deferred = prewarm::requested(offered).then_some(*start_timeout);
        let protocol = deferred.map(|_| prewarm::DEFERRED);
        let opening = accept_rendezvous(client, &accept, protocol);
        let Some(tunnel) = force.run_until_cancelled(opening).await.flatten() else { return };
        drop((accept, suffix, permit));
        let what = format!("{from} -> {path} -> {target}");
        let session = datagram::session(tunnel, socket, &what, udp_idle);
        return session.run(deferred, stats, shutdown, force).await;
    }
    if prewarm::requested(offered) {
        // The target is reached when the sender starts the tunnel.
        let opening = accept_rendezvous(client, &accept, Some(prewarm::DEFERRED));
        let Some(tunnel) = force.run_until_cancelled(opening).await.flatten() else { return };
        drop((accept, suffix, permit));
        let what = format!("{from} -> {path} -> {target}");
        let tunnel = Deferred { tunnel, target: &target, what: &what };
        return tunnel.run(*connect_timeout, *start_timeout, stats, shutdown, force).await;
    }
    // Each step until the tunnel is open ends at once when shutdown is forced.
    let local = match force.run_until_cancelled(connect_target(&target, *connect_timeout)).await {
        None => return,
        Some(Ok(local)) => local,
        Some(Err((status, text))) => {
            force.run_until_cancelled(reject(client, &accept, status, &text)).await;
            return;
        }
    };
    // Official clients pick the first subprotocol the sender offered (a token,
    // as RFC 6455 has it: anything else is not echoed into a header).
    let first = offered.split(',').next().map(str::trim).filter(|p| crate::http1::is_token(p));
    let Some(tunnel) = force.run_until_cancelled(accept_rendezvous(client, &accept, first)).await.flatten() else {
        local.abort();
        return;
    };
    debug!(%target, "tunnel open");
    let what = format!("{from} -> {path} -> {target}");
    // A tunnel may live for days: let go of what only the rendezvous needed.
    drop((accept, suffix, target, permit));
    pump::pump_local(local, tunnel, Tally::new(stats.clone()), LocalSide::Target, &what, force).await;
}

/// Accepts: opens the rendezvous WebSocket at the accept's address, choosing `protocol`.
/// `None` (logged) when the relay would not have it.
async fn accept_rendezvous(client: &RelayClient, accept: &Accept, protocol: Option<&str>) -> Option<Tunnel> {
    let headers: Vec<_> = protocol.map(|p| ("Sec-WebSocket-Protocol".to_owned(), p.to_owned())).into_iter().collect();
    match client.open_rendezvous(&accept.address, &headers).await {
        Ok(super::Opened { stream, initial, .. }) => Some(Tunnel::new(stream, &initial).keepalive(client.keepalive)),
        Err(e) => {
            warn!("accepting failed: {e}");
            None
        }
    }
}

/// A prewarmed tunnel ([`prewarm`]) on the listener's side, `what` naming it for the log.
struct Deferred<'a> {
    tunnel: Tunnel,
    target: &'a str,
    what: &'a str,
}

impl Deferred<'_> {
    /// Waits for the sender's start, then connects to the target. A target that cannot
    /// be reached closes the tunnel with 1011 and the reason, which the sender's
    /// application sees as a reset.
    async fn run(
        mut self,
        connect_timeout: Duration,
        start_timeout: Duration,
        stats: &Arc<Stats>,
        shutdown: &CancellationToken,
        force: &CancellationToken,
    ) {
        if let Err(e) = self.tunnel.await_start(start_timeout, shutdown).await {
            debug!("prewarmed tunnel ended unused: {e}");
            return;
        }
        let tally = Tally::new(stats.clone());
        let local = match connect_target(self.target, connect_timeout).await {
            Ok(local) => local,
            Err((_, text)) => {
                warn!("{}: tunnel aborted: {text}", self.what);
                tally.failed();
                self.tunnel.goodbye(&WsClose::new(close::INTERNAL_ERROR, text)).await;
                return;
            }
        };
        debug!(target = %self.target, "tunnel open (prewarmed)");
        pump::pump_local(local, self.tunnel, tally, LocalSide::Target, self.what, force).await;
    }
}

async fn reject(client: &RelayClient, accept: &Accept, status: u16, text: &str) {
    // The whole tracking id (the span has its start), to find the attempt in the relay's log.
    info!(status, id = %accept.id, "rejecting: {text}");
    let sep = if accept.address.contains('?') { '&' } else { '?' };
    let url = format!(
        "{}{sep}{}={status}&{}={}",
        accept.address,
        protocol::PARAM_STATUS_CODE,
        protocol::PARAM_STATUS_DESCRIPTION,
        encode_component(text)
    );
    match client.open_rendezvous(&url, &[]).await {
        Err(OpenError::Rejected { status: 410, .. }) => {}
        Err(e) => debug!("reject not confirmed: {e}"),
        Ok(_) => debug!("reject not confirmed: the relay accepted the rejection upgrade"),
    }
}
