//! The client's use of the pump ([`crate::ws::pump`], which moves the bytes): a local TCP
//! or Unix connection, or stdin/stdout against a [`Tunnel`], counted in the status line's tallies,
//! logged when it ends, reset when it was aborted; and the drain at shutdown.

use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::tunnel::Tunnel;
use crate::local::LocalStream;
use crate::status::{Stats, Tally};
use crate::ws::pump::Meter;
pub(super) use crate::ws::pump::PumpError;

/// Pumps `local` (read and write halves) against `tunnel` until both directions end
/// (`Ok`: every byte was delivered), one aborts, or `cancel` fires (an abort). Bytes are
/// counted in `tally`.
pub(super) async fn pump<LR, LW>(
    local_read: LR,
    local_write: LW,
    tunnel: Tunnel,
    tally: &Tally,
    cancel: &CancellationToken,
) -> Result<(), PumpError>
where
    LR: AsyncRead + Unpin,
    LW: AsyncWrite + Unpin,
{
    let keepalive = tunnel.keepalive_interval();
    crate::ws::pump::pump(local_read, local_write, tunnel.into_parts(), tally, keepalive, cancel).await
}

impl Meter for Tally {
    fn out(&self, n: usize) {
        Tally::out(self, n);
    }

    fn inn(&self, n: usize) {
        Tally::inn(self, n);
    }
}

/// Whose connection is the local side of a tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum LocalSide {
    /// A local client of `hyco connect`: its going away mid-tunnel is its choice (a
    /// cancelled download), not a failure.
    Client,
    /// A listener's target.
    Target,
}

/// Pumps a local connection (TCP or Unix) against `tunnel`, counting it in `tally`, and
/// logs one line when it ends: `what` (who to where), bytes each way, duration, and how
/// it ended. An aborted tunnel is counted as failed and aborts the local connection
/// ([`LocalStream::abort`]: a TCP reset), so its application sees an error.
pub(super) async fn pump_local(
    mut local: LocalStream,
    tunnel: Tunnel,
    tally: Tally,
    side: LocalSide,
    what: &str,
    cancel: &CancellationToken,
) {
    // Each kind gets its own pump, on borrowed halves that need no lock between them.
    let outcome = match &mut local {
        LocalStream::Tcp(tcp) => {
            let (read, write) = tcp.split();
            pump(read, write, tunnel, &tally, cancel).await
        }
        #[cfg(unix)]
        LocalStream::Unix(unix) => {
            let (read, write) = unix.split();
            pump(read, write, tunnel, &tally, cancel).await
        }
    };
    let moved = tally.moved();
    match outcome {
        Ok(()) => info!("{what}: {moved}; closed"),
        Err(PumpError::ShuttingDown) => {
            info!("{what}: {moved}; cut short at shutdown");
            local.abort();
        }
        Err(PumpError::Local(e)) if side == LocalSide::Client => {
            info!("{what}: {moved}; cancelled by the local client ({e})");
            local.abort();
        }
        Err(why) => {
            tally.failed();
            warn!("{what}: {moved}; tunnel aborted: {why}");
            local.abort();
        }
    }
}

/// Standard output for `connect --stdio`: once its reader has gone (a broken pipe: ssh
/// closes the pipes of its ProxyCommand as it exits, and the other side may still be
/// sending its last bytes), the rest is discarded, so that the tunnel ends as stdin and
/// the other side say rather than as an abort.
pub(super) struct Stdout {
    out: tokio::io::Stdout,
    gone: bool,
}

impl Stdout {
    pub(super) fn new() -> Self {
        Self { out: tokio::io::stdout(), gone: false }
    }

    /// `Ok` in place of a broken pipe, from now on.
    fn absorb<T>(&mut self, result: io::Result<T>, done: T) -> io::Result<T> {
        match result {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                debug!("stdout was closed; discarding what still arrives");
                self.gone = true;
                Ok(done)
            }
            other => other,
        }
    }
}

impl AsyncWrite for Stdout {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.gone {
            return Poll::Ready(Ok(buf.len()));
        }
        let result = std::task::ready!(Pin::new(&mut self.out).poll_write(cx, buf));
        Poll::Ready(self.absorb(result, buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.gone {
            return Poll::Ready(Ok(()));
        }
        let result = std::task::ready!(Pin::new(&mut self.out).poll_flush(cx));
        Poll::Ready(self.absorb(result, ()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.gone {
            return Poll::Ready(Ok(()));
        }
        let result = std::task::ready!(Pin::new(&mut self.out).poll_shutdown(cx));
        Poll::Ready(self.absorb(result, ()))
    }
}

/// Graceful shutdown's second half, for `listen` and `connect`: lets the live tunnels on
/// `tunnels` finish for up to `bound`, saying so in the log and on the status line, then
/// closes the rest (`force`).
pub(super) async fn drain(tunnels: &TaskTracker, stats: &Stats, bound: Duration, force: &CancellationToken) {
    tunnels.close();
    let live = stats.active.load(Ordering::Relaxed);
    if live > 0 {
        let secs = bound.as_secs();
        info!("stopping: letting {live} live tunnel(s) finish, for up to {secs} s; Ctrl-C again to stop at once");
        stats.set_note(Some(format!("stopping: live tunnels may finish for up to {secs} s (Ctrl-C again to force)")));
    }
    if tokio::time::timeout(bound, tunnels.wait()).await.is_err() {
        let live = stats.active.load(Ordering::Relaxed);
        info!("closing the {live} tunnel(s) still live after {} s", bound.as_secs());
        force.cancel();
        tunnels.wait().await;
    }
}
