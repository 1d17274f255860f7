//! What the request inspector keeps: a record per HTTP-mode request (masked heads, body
//! prefixes, outcome) in a ring of the last N, and the parts a replay needs, kept apart
//! and never shown. Memory is bounded: N records, each its heads (bounded by the
//! protocol's limits) and two body prefixes of at most the body limit. No I/O.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::time::Instant;

use super::mask;
use crate::protocol::{HttpRequest, MAX_CONTROL_MESSAGE};

/// The most a record's heads may take: the request as the relay sent it (a control
/// message), the head sent to the app (as much again, plus the forwarding headers) and
/// the app's response head (`http_local`'s 32 KiB).
pub(crate) const MAX_RECORD_HEADS: usize = 2 * MAX_CONTROL_MESSAGE + 4 * 1024 + 32 * 1024;

/// How much the inspector keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Records kept (`--inspect-requests`).
    pub(crate) requests: usize,
    /// Bytes kept of each body (`--inspect-body-bytes`).
    pub(crate) body_bytes: usize,
}

impl Limits {
    /// The most the kept records may hold: N records of their heads and two bodies.
    pub(crate) fn memory_bound(&self) -> usize {
        self.requests * (MAX_RECORD_HEADS + 2 * self.body_bytes)
    }
}

/// A value kept for a replay that no page, log or `Debug` shows.
pub(crate) struct Hidden<T>(pub(crate) T);

impl<T> fmt::Debug for Hidden<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The first bytes of a body, up to a limit, and its whole size.
#[derive(Debug, Default)]
pub(crate) struct Kept {
    pub(crate) bytes: Vec<u8>,
    pub(crate) total: u64,
    limit: usize,
}

impl Kept {
    fn new(limit: usize) -> Self {
        Self { bytes: Vec::new(), total: 0, limit }
    }

    /// Counts `piece` and keeps what fits under the limit.
    pub(crate) fn push(&mut self, piece: &[u8]) {
        self.total += piece.len() as u64;
        let take = piece.len().min(self.limit - self.bytes.len());
        if take > 0 {
            self.bytes.reserve_exact(take);
            self.bytes.extend_from_slice(&piece[..take]);
        }
    }

    /// Whether every byte of the body is kept.
    pub(crate) fn whole(&self) -> bool {
        self.bytes.len() as u64 == self.total
    }
}

/// What a replay sends: the request as the relay gave it (its address dropped), the
/// target and path it went to, and whether it had a body.
pub(crate) struct ReplayPlan {
    pub(crate) request: HttpRequest,
    pub(crate) target: String,
    pub(crate) path: String,
    pub(crate) had_body: bool,
}

/// One request that went through the listener, or a replay of one.
#[derive(Debug)]
pub(crate) struct Record {
    pub(crate) id: u64,
    /// When it began, in milliseconds since the Unix epoch.
    pub(crate) time_ms: u64,
    pub(crate) method: String,
    /// Path and query as the app got them, masked.
    pub(crate) path: String,
    /// The target it went to (empty when none was picked).
    pub(crate) target: String,
    /// The status the caller got (the app's, or the listener's own on failure).
    pub(crate) status: Option<u16>,
    pub(crate) duration_ms: u64,
    /// The head the app got, masked.
    pub(crate) request_headers: Vec<(String, String)>,
    /// The app's response head, masked.
    pub(crate) response_headers: Vec<(String, String)>,
    pub(crate) request_body: Kept,
    pub(crate) response_body: Kept,
    /// The listener's own text when the exchange failed.
    pub(crate) error: Option<String>,
    pub(crate) replay_of: Option<u64>,
    pub(crate) plan: Option<Hidden<ReplayPlan>>,
}

impl Record {
    /// Bytes this record holds (heads, texts and body buffers), for the memory bound.
    #[cfg(test)]
    fn held(&self) -> usize {
        let heads = |h: &[(String, String)]| h.iter().map(|(n, v)| n.capacity() + v.capacity()).sum::<usize>();
        let plan = self.plan.as_ref().map_or(0, |p| {
            let r = &p.0.request;
            r.request_headers.iter().map(|(n, v)| n.len() + v.len()).sum::<usize>()
                + r.request_target.as_ref().map_or(0, String::len)
                + p.0.path.capacity()
                + p.0.target.capacity()
        });
        self.method.capacity()
            + self.path.capacity()
            + self.target.capacity()
            + heads(&self.request_headers)
            + heads(&self.response_headers)
            + self.error.as_ref().map_or(0, String::capacity)
            + plan
            + self.request_body.bytes.capacity()
            + self.response_body.bytes.capacity()
    }
}

/// A record being filled while its request goes through.
pub(crate) struct Capture {
    started: Instant,
    pub(crate) record: Record,
}

impl Capture {
    /// The request as sent to the app: `head` is what went on the wire (masked here),
    /// `request` what a replay needs.
    pub(crate) fn sent(&mut self, request: &HttpRequest, target: &str, path: &str, head: &str, had_body: bool) {
        let r = &mut self.record;
        r.target = target.to_owned();
        r.path = mask::target(path);
        r.request_headers = mask::headers(head.split("\r\n").skip(1).filter_map(|l| l.split_once(": ")));
        let mut request = request.clone();
        request.address = None;
        let plan = ReplayPlan { request, target: target.to_owned(), path: path.to_owned(), had_body };
        r.plan = Some(Hidden(plan));
    }

    /// The app's response head.
    pub(crate) fn answered(&mut self, status: u16, headers: &[(String, String)]) {
        self.record.status = Some(status);
        self.record.response_headers = mask::headers(headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    }

    pub(crate) fn request_body(&mut self) -> &mut Kept {
        &mut self.record.request_body
    }

    pub(crate) fn response_body(&mut self) -> &mut Kept {
        &mut self.record.response_body
    }
}

/// The last N records, newest last, and a signal for each new one.
pub(crate) struct Store {
    limits: Limits,
    inner: Mutex<Inner>,
    /// The newest record's id.
    newest: watch::Sender<u64>,
}

struct Inner {
    records: VecDeque<Arc<Record>>,
    next_id: u64,
}

impl Store {
    pub(crate) fn new(limits: Limits) -> Arc<Self> {
        let inner = Inner { records: VecDeque::with_capacity(limits.requests.min(1024)), next_id: 1 };
        Arc::new(Self { limits, inner: Mutex::new(inner), newest: watch::channel(0).0 })
    }

    pub(crate) fn limits(&self) -> Limits {
        self.limits
    }

    /// A record for `request`, to fill while it goes through.
    pub(crate) fn begin(&self, request: &HttpRequest, replay_of: Option<u64>) -> Capture {
        let time_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let target = request.request_target.as_deref().unwrap_or("/");
        let record = Record {
            id: 0,
            time_ms,
            method: crate::http1::sanitize(request.method.as_deref().unwrap_or("GET")),
            path: mask::target(target),
            target: String::new(),
            status: None,
            duration_ms: 0,
            request_headers: Vec::new(),
            response_headers: Vec::new(),
            request_body: Kept::new(self.limits.body_bytes),
            response_body: Kept::new(self.limits.body_bytes),
            error: None,
            replay_of,
            plan: None,
        };
        Capture { started: Instant::now(), record }
    }

    /// Stores a finished record (the oldest goes when N are kept) and returns it.
    pub(crate) fn finish(&self, capture: Capture, status: u16, error: Option<String>) -> Arc<Record> {
        let Capture { started, mut record } = capture;
        record.duration_ms = started.elapsed().as_millis() as u64;
        record.status = Some(status);
        record.error = error;
        record.request_body.bytes.shrink_to_fit();
        record.response_body.bytes.shrink_to_fit();
        let mut inner = self.inner.lock().expect("inspector store");
        record.id = inner.next_id;
        inner.next_id += 1;
        let record = Arc::new(record);
        while inner.records.len() >= self.limits.requests {
            inner.records.pop_front();
        }
        inner.records.push_back(record.clone());
        drop(inner);
        self.newest.send_replace(record.id);
        record
    }

    /// The records kept, newest first.
    pub(crate) fn list(&self) -> Vec<Arc<Record>> {
        self.inner.lock().expect("inspector store").records.iter().rev().cloned().collect()
    }

    pub(crate) fn get(&self, id: u64) -> Option<Arc<Record>> {
        let inner = self.inner.lock().expect("inspector store");
        inner.records.iter().find(|r| r.id == id).cloned()
    }

    /// The newest replay of `id`, if one is kept.
    pub(crate) fn latest_replay(&self, id: u64) -> Option<Arc<Record>> {
        let inner = self.inner.lock().expect("inspector store");
        inner.records.iter().rev().find(|r| r.replay_of == Some(id)).cloned()
    }

    /// Fires for each new record: its value is the newest id.
    pub(crate) fn watch(&self) -> watch::Receiver<u64> {
        self.newest.subscribe()
    }

    /// Bytes the kept records hold.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.inner.lock().expect("inspector store").records.iter().map(|r| r.held()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(target: &str) -> HttpRequest {
        HttpRequest {
            method: Some("POST".into()),
            request_target: Some(target.into()),
            request_headers: [("Authorization".to_owned(), "Bearer SECRETVALUE".to_owned())].into(),
            ..HttpRequest::default()
        }
    }

    #[test]
    fn the_store_never_holds_more_than_n_records_of_bounded_size() {
        let limits = Limits { requests: 10, body_bytes: 1000 };
        let store = Store::new(limits);
        let big = vec![b'x'; 4096];
        let bound = limits.memory_bound();
        for i in 0..2 * limits.requests {
            let mut c = store.begin(&request(&format!("/web/{i}?sb-hc-token=abc")), None);
            let head = format!("POST /{i} HTTP/1.1\r\nHost: app\r\nAuthorization: Bearer SECRETVALUE\r\n\r\n");
            c.sent(&request("/x"), "app", &format!("/{i}"), &head, true);
            for _ in 0..100 {
                c.request_body().push(&big);
                c.response_body().push(&big[..333]);
            }
            c.answered(200, &[("Set-Cookie".into(), "a=SECRETVALUE".into())]);
            store.finish(c, 200, None);
            assert!(store.held() <= bound, "{} > {bound}", store.held());
        }
        let list = store.list();
        assert_eq!(list.len(), limits.requests);
        assert_eq!(list[0].id, 2 * limits.requests as u64, "newest first");
        assert_eq!(list[limits.requests - 1].id, limits.requests as u64 + 1, "the oldest kept");
        let r = &list[0];
        assert_eq!((r.request_body.bytes.len(), r.request_body.total), (1000, 409_600));
        assert!(!r.request_body.whole());
        assert_eq!(r.response_body.bytes.len(), 1000);
        let shown = format!("{r:?}");
        assert!(!shown.contains("SECRETVALUE") && !shown.contains("abc"), "{shown}");
    }

    #[test]
    fn a_body_limit_of_zero_keeps_nothing_but_counts() {
        let mut kept = Kept::new(0);
        kept.push(b"hello");
        assert_eq!((kept.bytes.len(), kept.total, kept.whole()), (0, 5, false));
        let mut empty = Kept::new(0);
        empty.push(b"");
        assert!(empty.whole(), "an empty body is kept whole");
    }
}
