//! A listener's control channel as the side waiting at a rendezvous sees it: one on this
//! node (its control queue), or, in a cluster, one on another node reached through Redis
//! (docs/protocol.md 11). Hands a message over and names the base of the address to give;
//! it does not know who waits, nor keep any state of the registry's.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::cluster::{Cluster, Delivery};
use crate::protocol::RelayMessage;

/// A listener's control channel, as a waiting sender or request sees it: on this node,
/// or on another node of the cluster (docs/protocol.md 11).
#[derive(Clone)]
pub(super) struct Listener {
    id: u64,
    /// `ws://host:port` or `wss://…`: the base of the rendezvous addresses it is given.
    /// As the listener reached the relay, or this node's own base for a listener elsewhere.
    base: Arc<str>,
    route: Route,
    /// Where its control channel comes from, and since when (Unix seconds): on this node.
    peer: Option<(std::net::SocketAddr, u64)>,
}

#[derive(Clone)]
enum Route {
    Local(mpsc::Sender<RelayMessage>),
    /// Reached through the node it is on, which hands the message over.
    Remote {
        node: Arc<str>,
        hc: Arc<str>,
        cluster: Arc<Cluster>,
    },
}

impl Listener {
    /// A control channel on this node, whose messages go to `queue`.
    /// `peer` is where it connected from, if known.
    pub(super) fn local(
        id: u64,
        base: Arc<str>,
        queue: mpsc::Sender<RelayMessage>,
        peer: Option<std::net::SocketAddr>,
    ) -> Self {
        let peer = peer.map(|p| (p, crate::protocol::unix_now()));
        Self { id, base, route: Route::Local(queue), peer }
    }

    /// A listener on `node`, known to this one through the cluster.
    pub(super) fn remote(cluster: Arc<Cluster>, node: &str, hc: &str, id: u64, base: Arc<str>) -> Self {
        Self { id, base, route: Route::Remote { node: node.into(), hc: hc.into(), cluster }, peer: None }
    }

    /// Where a listener on this node connected from, and since when (Unix seconds).
    pub(super) fn peer(&self) -> Option<(std::net::SocketAddr, u64)> {
        self.peer
    }

    pub(super) fn id(&self) -> u64 {
        self.id
    }

    pub(super) fn base(&self) -> &str {
        &self.base
    }

    /// Whether the listener's control channel is on this node (so that it can answer an
    /// HTTP request on it).
    pub(super) fn is_local(&self) -> bool {
        matches!(self.route, Route::Local(_))
    }

    /// Hands `msg` over: at once if the queue has room (`until` is `None`), else waiting
    /// for room until `until`.
    pub(super) async fn deliver(&self, msg: RelayMessage, until: Option<Instant>) -> Delivery {
        match &self.route {
            Route::Local(queue) => deliver_local(queue, msg, until).await,
            Route::Remote { node, hc, cluster } => cluster.deliver(node, hc, self.id, msg, until).await,
        }
    }

    pub(super) fn has_room(&self) -> bool {
        match &self.route {
            Route::Local(queue) => queue.capacity() > 0,
            Route::Remote { .. } => true,
        }
    }

    /// Whether nothing waits in the listener's queue (not known of one elsewhere).
    pub(super) fn is_idle(&self) -> bool {
        match &self.route {
            Route::Local(queue) => queue.capacity() == queue.max_capacity(),
            Route::Remote { .. } => false,
        }
    }

    /// Completes when the listener's control channel has ended (never, for one elsewhere:
    /// its node's answer says).
    pub(super) async fn gone(&self) {
        match &self.route {
            Route::Local(queue) => queue.closed().await,
            Route::Remote { .. } => std::future::pending().await,
        }
    }
}

/// Puts `msg` in a control channel's queue, at once or waiting for room until `until`.
async fn deliver_local(queue: &mpsc::Sender<RelayMessage>, msg: RelayMessage, until: Option<Instant>) -> Delivery {
    let Some(until) = until else {
        return match queue.try_send(msg) {
            Ok(()) => Delivery::Delivered,
            Err(mpsc::error::TrySendError::Full(_)) => Delivery::Busy,
            Err(mpsc::error::TrySendError::Closed(_)) => Delivery::Gone,
        };
    };
    tokio::select! {
        sent = queue.send(msg) => if sent.is_ok() { Delivery::Delivered } else { Delivery::Gone },
        () = tokio::time::sleep_until(until) => Delivery::Busy,
    }
}
