//! What the relay is doing now, for the status page (`hyco serve --dashboard`): the
//! tunnels open at this moment with their own byte counts, and rejections counted per
//! minute over the last [`REJECTION_WINDOW_MINUTES`]. The Prometheus counters stay in
//! [`super::metrics`], which owns this and adds a live tunnel's bytes to its totals when
//! the tunnel closes; nothing here is exported to Prometheus.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::metrics::Reason;

/// How many minutes of rejections the status page can show.
pub const REJECTION_WINDOW_MINUTES: u64 = 15;

/// A tunnel while it is open, as the status page shows it.
pub(crate) struct LiveTunnel {
    /// The HC's name.
    pub(crate) hc: String,
    /// The public port it came in on (`tcp/8080`), or `None` for a sender's WebSocket.
    pub(crate) via: Option<String>,
    /// When it opened (Unix seconds).
    pub(crate) since: u64,
    /// Data payload bytes, `[sender to listener, listener to sender]` (a public port's
    /// visitor is the sender).
    pub(crate) bytes: [AtomicU64; 2],
}

/// Tunnels open now, and recent rejections.
#[derive(Default)]
pub(crate) struct Activity {
    /// Open tunnels by id (the next id first).
    live: Mutex<(u64, BTreeMap<u64, Arc<LiveTunnel>>)>,
    /// Rejections per minute (Unix minute, counts by `Reason as usize`), oldest first,
    /// at most [`REJECTION_WINDOW_MINUTES`] minutes that had one.
    rejections: Mutex<VecDeque<(u64, [u64; Reason::ALL.len()])>>,
}

/// An open tunnel's entry in [`Activity`], removed on drop, when `closed` gets its bytes.
pub(crate) struct LiveGuard<'a> {
    activity: &'a Activity,
    closed: &'a [AtomicU64; 2],
    id: u64,
    tunnel: Arc<LiveTunnel>,
}

impl LiveGuard<'_> {
    /// The counters a tunnel adds its bytes to, `[sender to listener, back]`.
    pub(crate) fn counters(&self) -> [&AtomicU64; 2] {
        [&self.tunnel.bytes[0], &self.tunnel.bytes[1]]
    }
}

impl Drop for LiveGuard<'_> {
    fn drop(&mut self) {
        // Under the lock, so that a reader of the totals never sees the bytes twice or not at all.
        let mut live = self.activity.live.lock().expect("activity lock");
        for (total, n) in self.closed.iter().zip(&self.tunnel.bytes) {
            total.fetch_add(n.load(Relaxed), Relaxed);
        }
        live.1.remove(&self.id);
    }
}

impl Activity {
    /// Lists a tunnel of `hc` until the guard drops; its bytes then join `closed`.
    pub(crate) fn open<'a>(&'a self, hc: &str, via: Option<String>, closed: &'a [AtomicU64; 2]) -> LiveGuard<'a> {
        let since = crate::protocol::unix_now();
        let tunnel = Arc::new(LiveTunnel { hc: hc.to_owned(), via, since, bytes: Default::default() });
        let mut live = self.live.lock().expect("activity lock");
        let id = live.0;
        live.0 += 1;
        live.1.insert(id, tunnel.clone());
        LiveGuard { activity: self, closed, id, tunnel }
    }

    /// The tunnels open now, by id.
    pub(crate) fn tunnels(&self) -> Vec<(u64, Arc<LiveTunnel>)> {
        self.live.lock().expect("activity lock").1.iter().map(|(id, t)| (*id, t.clone())).collect()
    }

    /// `closed` plus the bytes of the tunnels open now, one way (`Flow as usize`): read
    /// under the lock [`LiveGuard`] adds under.
    pub(crate) fn total(&self, closed: &[AtomicU64; 2], way: usize) -> u64 {
        let live = self.live.lock().expect("activity lock");
        closed[way].load(Relaxed) + live.1.values().map(|t| t.bytes[way].load(Relaxed)).sum::<u64>()
    }

    /// Counts a rejection in the current minute.
    pub(crate) fn rejected(&self, why: Reason) {
        self.rejected_at(why, crate::protocol::unix_now() / 60);
    }

    fn rejected_at(&self, why: Reason, minute: u64) {
        let mut recent = self.rejections.lock().expect("activity lock");
        match recent.back_mut() {
            Some((m, counts)) if *m == minute => counts[why as usize] += 1,
            _ => {
                let mut counts = [0; Reason::ALL.len()];
                counts[why as usize] = 1;
                recent.push_back((minute, counts));
            }
        }
        while recent.front().is_some_and(|(m, _)| *m + REJECTION_WINDOW_MINUTES <= minute) {
            recent.pop_front();
        }
    }

    /// Rejections by reason in the last `minutes` minutes (the current one included),
    /// at most [`REJECTION_WINDOW_MINUTES`].
    pub(crate) fn recent_rejections(&self, minutes: u64) -> [u64; Reason::ALL.len()] {
        self.recent_rejections_at(minutes, crate::protocol::unix_now() / 60)
    }

    fn recent_rejections_at(&self, minutes: u64, now: u64) -> [u64; Reason::ALL.len()] {
        let minutes = minutes.min(REJECTION_WINDOW_MINUTES);
        let mut sum = [0; Reason::ALL.len()];
        for (_, counts) in self.rejections.lock().expect("activity lock").iter().filter(|(m, _)| *m + minutes > now) {
            for (s, c) in sum.iter_mut().zip(counts) {
                *s += c;
            }
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_are_counted_by_minute_and_forgotten_after_the_window() {
        let a = Activity::default();
        let t = 1_000_000;
        a.rejected_at(Reason::Unauthorized, t);
        a.rejected_at(Reason::Unauthorized, t + 3);
        a.rejected_at(Reason::NoListener, t + 3);
        let at = |m: u64, now: u64, why: Reason| a.recent_rejections_at(m, now)[why as usize];
        assert_eq!(at(1, t + 3, Reason::Unauthorized), 1);
        assert_eq!(at(5, t + 3, Reason::Unauthorized), 2);
        assert_eq!(at(5, t + 3, Reason::NoListener), 1);
        // Older than the window: not counted, and dropped once a later minute is counted.
        assert_eq!(at(REJECTION_WINDOW_MINUTES, t + REJECTION_WINDOW_MINUTES + 1, Reason::Unauthorized), 1);
        a.rejected_at(Reason::NoListener, t + 100);
        assert_eq!(a.rejections.lock().unwrap().len(), 1, "minutes past the window are dropped");
        // More minutes than the window asks for the window.
        assert_eq!(at(1_000, t + 100, Reason::NoListener), 1);
    }

    #[test]
    fn a_live_tunnels_bytes_join_the_closed_total_when_it_closes() {
        let a = Activity::default();
        let closed: [AtomicU64; 2] = [AtomicU64::new(10), AtomicU64::new(0)];
        let guard = a.open("hc", Some("tcp/80".into()), &closed);
        guard.counters()[0].fetch_add(5, Relaxed);
        assert_eq!((a.total(&closed, 0), a.tunnels().len()), (15, 1));
        drop(guard);
        assert_eq!((a.total(&closed, 0), closed[0].load(Relaxed), a.tunnels().len()), (15, 15, 0));
    }
}
