//! The request inspector of `hyco listen --http --inspect ADDR`: a small page of its own
//! (on [`crate::pages`]) that lists the last N HTTP-mode requests through this listener,
//! shows one with its heads and bodies (credentials masked), and replays one against the
//! app. `/` the list (filter `?status=2xx|404&path=TEXT`), `/requests/{id}` one request,
//! `/api/requests[?status=&path=]` and `/api/requests/{id}` the same as JSON,
//! `POST /api/requests/{id}/replay` a replay (with `X-Hyco-Replay: 1`), `/api/events`
//! each new request as a server-sent event, `/inspect.js` the script.
//!
//! Recording is [`super::http`]'s (into a [`Store`]); this module serves what is kept and
//! never changes a record. Bound to loopback the page is open to Hosts no web site can
//! rebind; elsewhere each request needs the secret (`HYCO_INSPECT_SECRET`).

mod mask;
mod render;
mod replay;
mod store;

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::http::HttpEnv;
use crate::http1::{Request, header};
use crate::pages::{self, Access, EVENT_STREAM_LIFETIME, Site};
use crate::secret::Secret;
pub(crate) use store::{Capture, Kept, Limits, Record, Store};

/// Requests kept by default (`--inspect-requests`).
pub(crate) const DEFAULT_INSPECT_REQUESTS: usize = 100;
/// The most `--inspect-requests` may be.
pub const MAX_INSPECT_REQUESTS: usize = 10_000;
/// Bytes kept of each body by default (`--inspect-body-bytes`).
pub(crate) const DEFAULT_INSPECT_BODY_BYTES: usize = 64 * 1024;
/// The most `--inspect-body-bytes` may be.
pub const MAX_INSPECT_BODY_BYTES: usize = 1024 * 1024;
/// Connections served at once, event streams included; more get 503.
pub const MAX_INSPECT_CONNECTIONS: usize = 16;
/// The header a replay needs: a form of another site cannot send it.
pub(crate) const REPLAY_HEADER: &str = "X-Hyco-Replay";

const UNAUTHORIZED_TEXT: &str = "This request inspector is not on loopback: send the inspector secret \
     (HYCO_INSPECT_SECRET) in Authorization, as is or as the password of Basic auth";

/// The inspector of one listener: its store and its bound page, served by
/// `listen::run` (which holds what a replay needs).
#[derive(Clone)]
pub(crate) struct Inspect {
    pub(crate) store: Arc<Store>,
    addr: SocketAddr,
    listener: Arc<Mutex<Option<TcpListener>>>,
    access: Access,
}

impl fmt::Debug for Inspect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inspect").field("addr", &self.addr).field("limits", &self.store.limits()).finish()
    }
}

impl Inspect {
    /// An inspector keeping `limits` on `listener`. Off loopback a `secret` is required
    /// (the page holds request bodies): `Err` saying so without one, or with limits over
    /// their maxima.
    pub(crate) fn new(listener: TcpListener, limits: Limits, secret: Option<Secret>) -> Result<Self, String> {
        if !(1..=MAX_INSPECT_REQUESTS).contains(&limits.requests) {
            return Err(format!("--inspect-requests must be between 1 and {MAX_INSPECT_REQUESTS}"));
        }
        if limits.body_bytes > MAX_INSPECT_BODY_BYTES {
            return Err(format!("--inspect-body-bytes must be at most {MAX_INSPECT_BODY_BYTES} (1 MiB)"));
        }
        let addr = listener.local_addr().map_err(|e| format!("the inspector's address: {e}"))?;
        let access = Access::for_address(addr, secret, UNAUTHORIZED_TEXT, "hyco request inspector");
        if access.auth_required && access.secret.is_none() {
            return Err(format!(
                "--inspect {addr} is not a loopback address: the page shows request bodies, so set \
                 HYCO_INSPECT_SECRET for it to ask, or bind it to 127.0.0.1"
            ));
        }
        debug!(requests = limits.requests, bytes = limits.memory_bound(), "the inspector's memory bound");
        let listener = Arc::new(Mutex::new(Some(listener)));
        Ok(Self { store: Store::new(limits), addr, listener, access })
    }

    /// Where the page is.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether requests need the secret.
    pub(crate) fn needs_secret(&self) -> bool {
        self.access.auth_required
    }
}

/// Serves the inspector's page until `shutdown` fires, replaying through `env`. Does
/// nothing if it was served already.
pub(super) async fn serve(inspect: Inspect, env: Arc<HttpEnv>, shutdown: CancellationToken) {
    let Some(listener) = inspect.listener.lock().expect("inspector listener").take() else { return };
    let site = Arc::new(Inspector { store: inspect.store.clone(), env });
    pages::serve(listener, site, inspect.access.clone(), MAX_INSPECT_CONNECTIONS, "inspector", shutdown).await;
}

struct Inspector {
    store: Arc<Store>,
    env: Arc<HttpEnv>,
}

impl Site for Inspector {
    async fn handle(&self, req: Request, tcp: TcpStream) {
        let (path, query) = req.target.split_once('?').unwrap_or((req.target.as_str(), ""));
        let parts: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
        let read = matches!(req.method.as_str(), "GET" | "HEAD");
        let json = "application/json";
        match (parts.as_slice(), read) {
            ([""], true) => match render::Filter::parse(query) {
                Ok(filter) => {
                    let page = render::list_page(&self.store.list(), &filter, self.store.limits().requests);
                    pages::ok(tcp, &req, "text/html; charset=utf-8", &page).await;
                }
                Err(text) => pages::reject(tcp, 400, &text).await,
            },
            (["inspect.js"], true) => pages::ok(tcp, &req, "text/javascript; charset=utf-8", render::SCRIPT).await,
            (["api", "requests"], true) => match render::Filter::parse(query) {
                Ok(filter) => {
                    let list: Vec<_> =
                        self.store.list().iter().filter(|r| filter.matches(r)).map(|r| render::summary(r)).collect();
                    pages::ok(tcp, &req, json, &serde_json::Value::from(list).to_string()).await;
                }
                Err(text) => pages::reject(tcp, 400, &text).await,
            },
            (["requests", id], true) => match self.record(id) {
                Some(r) => {
                    let page = render::detail_page(&r, self.store.latest_replay(r.id).as_deref());
                    pages::ok(tcp, &req, "text/html; charset=utf-8", &page).await;
                }
                None => pages::reject(tcp, 404, "No such request is kept").await,
            },
            (["api", "requests", id], true) => match self.record(id) {
                Some(r) => pages::ok(tcp, &req, json, &render::detail(&r).to_string()).await,
                None => pages::reject(tcp, 404, "No such request is kept").await,
            },
            (["api", "events"], true) => self.events(&req, query, tcp).await,
            (["api", "requests", id, "replay"], false) if req.method == "POST" => self.replay(&req, id, tcp).await,
            ([""] | ["inspect.js"] | ["api", "requests" | "events"] | ["requests", _] | ["api", "requests", _], _)
            | (["api", "requests", _, "replay"], _) => pages::reject(tcp, 405, "Method not allowed").await,
            _ => pages::reject(tcp, 404, "Not found; try / or /api/requests").await,
        }
    }
}

impl Inspector {
    fn record(&self, id: &str) -> Option<Arc<Record>> {
        id.parse().ok().and_then(|id| self.store.get(id))
    }

    /// `POST /api/requests/{id}/replay`: only with [`REPLAY_HEADER`] (a cross-site form
    /// cannot send it, and a cross-site script is stopped by its preflight) from no
    /// other site, and only for a request whose body is kept whole.
    async fn replay(&self, req: &Request, id: &str, tcp: TcpStream) {
        let cross_site = header(&req.headers, "Sec-Fetch-Site").is_some_and(|s| !matches!(s, "same-origin" | "none"));
        if header(&req.headers, REPLAY_HEADER).map(str::trim) != Some("1") || cross_site {
            let text = "A replay needs the header X-Hyco-Replay: 1 (the page's Replay button sends it), \
                        from this page's own origin";
            return pages::reject(tcp, 403, text).await;
        }
        let Some(r) = self.record(id) else { return pages::reject(tcp, 404, "No such request is kept").await };
        let plan = match &r.plan {
            Some(plan) if render::replayable(&r) => plan,
            None => {
                let text = format!("Request #{} never reached the app (no target was picked): nothing to replay", r.id);
                return pages::reject(tcp, 409, &text).await;
            }
            Some(_) => {
                let text = format!(
                    "Request #{} cannot be replayed: its body was not kept whole ({} of {} bytes); \
                     raise --inspect-body-bytes to replay such requests",
                    r.id,
                    r.request_body.bytes.len(),
                    r.request_body.total
                );
                return pages::reject(tcp, 409, &text).await;
            }
        };
        let new = replay::replay(&self.env, &self.store, &plan.0, &r.request_body.bytes, r.id).await;
        pages::ok(tcp, req, "application/json", &render::detail(&new).to_string()).await;
    }

    /// Each new request's summary as an event, from after the id in `Last-Event-ID` (a
    /// reconnect) or `?after=`, until the client leaves or the stream's lifetime is over.
    async fn events(&self, req: &Request, query: &str, mut tcp: TcpStream) {
        let after = header(&req.headers, "Last-Event-ID")
            .map(str::to_owned)
            .or_else(|| query.split('&').find_map(|p| p.strip_prefix("after=")).map(str::to_owned))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if !pages::start_events(&mut tcp, req).await {
            return;
        }
        let mut newest = self.store.watch();
        let _ = tokio::time::timeout(EVENT_STREAM_LIFETIME, async {
            let mut after = after;
            loop {
                newest.borrow_and_update();
                let since = after;
                for r in self.store.list().into_iter().rev().filter(|r| r.id > since) {
                    if pages::event(&mut tcp, Some(r.id), &render::summary(&r).to_string()).await.is_err() {
                        return;
                    }
                    after = r.id;
                }
                if newest.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
    }
}
