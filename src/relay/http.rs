//! HTTP mode on the relay (PROTOCOL.md 7; what hyco-https and .NET expect is in
//! interop/NOTES-https.md).
//!
//! A request that is neither a WebSocket upgrade nor under `/$hc/` names an HC by its path
//! (the longest registered name, as for senders). It goes to one of the HC's listeners as
//! a `request` message: complete, on the control channel, when its body is known to be at
//! most 64 KiB and that channel is idle; else address-only, and the listener fetches it
//! over an `sb-hc-action=request` rendezvous on which the relay streams the body. The
//! listener's `response` comes back on the control channel (small) or on a rendezvous
//! (streamed, any size), and goes to the client with `Via: 1.1 hyco`, framed by
//! `Content-Length` or chunked. One request per connection (`Connection: close`). The
//! relay's own refusals have a JSON body, as Azure's do.

use std::collections::HashMap;
use std::io::Cursor;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{
    AsyncBufRead, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, Chain, ReadHalf, WriteHalf,
};
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use tokio::time::{Instant, sleep_until, timeout};
use tracing::{Instrument, debug, info, info_span};

use super::auth::{self, Right};
use super::metrics::Rejection;
use super::stream::RelayStream;
use super::{Relay, encode_path};
use crate::encoding::{decode_component, encode_component};
use crate::http1::{self, BodyReader, Framing, LAST_CHUNK, connection_tokens, is_hop_by_hop};
use crate::http1::{Request, header, sanitize};
use crate::protocol::{
    self, HcAddress, HttpRequest, HttpResponse, InlineBody, ListenerMessage, MAX_INLINE_BODY, MAX_PATH_SEGMENTS,
    RelayMessage, RemoteEndpoint,
};
use crate::ws::frame::CloseFrame;
use crate::ws::handshake::{self, websocket_key};
use crate::ws::message::{MessageReader, MessageWriter, Next};
use crate::ws::stream::{FrameReader, FrameWriter, Role};

/// The `Via` entry the relay adds to every relayed response.
pub const VIA: &str = "1.1 hyco";
/// After answering a request whose body it has not read, the relay reads and drops what
/// still comes for this long (or this many bytes) before closing: closing with unread
/// data resets the connection, and the client could lose the answer.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: u64 = 16 << 20;
/// Bytes moved per read when streaming a body.
const PIECE: usize = 32 * 1024;

/// Whether a request is HTTP mode: not under `/$hc/` and not a WebSocket upgrade.
pub(super) fn is_http_mode(req: &Request) -> bool {
    let path = req.target.split('?').next().unwrap_or_default();
    let under_hc = ["/$hc/", "/%24hc/", "/%24HC/"].iter().any(|p| path.starts_with(p));
    let upgrade = req.headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("Upgrade") && v.split(',').any(|t| t.trim().eq_ignore_ascii_case("websocket"))
    });
    !under_hc && !upgrade
}

/// What answers a waiting HTTP request: whichever comes first.
pub(super) enum HttpAnswer {
    /// A `response` on the control channel, with its whole body.
    Control { response: HttpResponse, body: Vec<u8> },
    /// The listener's rendezvous WebSocket (upgraded), with its connection slot.
    Rendezvous { stream: RelayStream, initial: Vec<u8>, permit: OwnedSemaphorePermit },
}

struct Waiter {
    listener: u64,
    secret: String,
    tx: oneshot::Sender<HttpAnswer>,
}

/// HTTP requests waiting for their listener, by request id and by rendezvous secret.
#[derive(Default)]
pub(super) struct HttpWaiters(Mutex<Waiters>);

#[derive(Default)]
struct Waiters {
    by_id: HashMap<String, Waiter>,
    id_by_secret: HashMap<String, String>,
}

impl HttpWaiters {
    fn insert(&self, id: &str, waiter: Waiter) -> Result<(), Waiter> {
        let mut w = self.0.lock().expect("http waiters lock");
        if w.by_id.contains_key(id) {
            return Err(waiter);
        }
        w.id_by_secret.insert(waiter.secret.clone(), id.to_owned());
        w.by_id.insert(id.to_owned(), waiter);
        Ok(())
    }

    fn remove(&self, id: &str) -> Option<Waiter> {
        let mut w = self.0.lock().expect("http waiters lock");
        let waiter = w.by_id.remove(id)?;
        w.id_by_secret.remove(&waiter.secret);
        Some(waiter)
    }

    /// The answer channel for request `id`, if `listener` is the one it was sent to.
    pub(super) fn take_for_listener(&self, listener: u64, id: &str) -> Option<oneshot::Sender<HttpAnswer>> {
        let mut w = self.0.lock().expect("http waiters lock");
        if w.by_id.get(id)?.listener != listener {
            return None;
        }
        let waiter = w.by_id.remove(id)?;
        w.id_by_secret.remove(&waiter.secret);
        Some(waiter.tx)
    }

    fn take_by_secret(&self, secret: &str) -> Option<oneshot::Sender<HttpAnswer>> {
        let id = self.0.lock().expect("http waiters lock").id_by_secret.get(secret).cloned()?;
        self.remove(&id).map(|w| w.tx)
    }
}

/// Ends a request's wait, whatever ended it: forgets its waiter and frees its slot.
struct WaitGuard {
    relay: Arc<Relay>,
    hc: String,
    id: Option<String>,
}

impl Drop for WaitGuard {
    fn drop(&mut self) {
        if let Some(id) = &self.id {
            self.relay.http.remove(id);
        }
        if let Some(hc) = self.relay.hcs.lock().expect("hcs lock").get_mut(&self.hc) {
            hc.pending_senders -= 1;
        }
    }
}

/// A refusal the client gets as an HTTP error with a JSON body (unless a response has
/// begun, in which case the connection is cut).
#[derive(Debug)]
struct Refusal {
    status: u16,
    why: Rejection,
    text: String,
}

fn refusal(status: u16, why: Rejection, text: impl Into<String>) -> Refusal {
    Refusal { status, why, text: text.into() }
}

/// Azure's error codes for the statuses the relay itself answers.
fn error_code(status: u16) -> &'static str {
    match status {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "EndpointNotFound",
        408 => "RequestTimeout",
        413 => "PayloadTooLarge",
        431 => "RequestHeaderFieldsTooLarge",
        502 => "BadGateway",
        503 => "ServerBusy",
        504 => "GatewayTimeout",
        _ => "InternalServerError",
    }
}

/// An error answer: `{"error":{"code":…,"message":"… TrackingId:…, Timestamp:…"}}`.
pub(super) fn error_response(status: u16, text: &str, tracking_id: &str) -> String {
    let body = serde_json::json!({
        "error": { "code": error_code(status), "message": protocol::status_text(text, tracking_id) }
    })
    .to_string();
    let headers = [
        ("Content-Type".to_owned(), "application/json; charset=utf-8".to_owned()),
        ("Content-Length".to_owned(), body.len().to_string()),
        ("Connection".to_owned(), "close".to_owned()),
    ];
    http1::head(&format!("HTTP/1.1 {status} {}", http1::reason(status)), &headers) + &body
}

/// How the body of a listener's response arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plan {
    /// `body: false`.
    None,
    /// All of it, on the control channel.
    Known(u64),
    /// As a binary message on a rendezvous, of a length not known in advance.
    Streamed,
}

/// The head the client gets for a listener's `response`, and how its body is framed;
/// `None` for a status no HTTP/1.1 client can take as a final answer.
fn response_head(resp: &HttpResponse, head_request: bool, plan: Plan) -> Option<(String, Framing)> {
    let status = resp.status_code;
    if !(200..=599).contains(&status) {
        return None;
    }
    let reason = resp
        .status_description
        .as_deref()
        .map(sanitize)
        .filter(|r| !r.trim().is_empty())
        .unwrap_or_else(|| http1::reason(status).to_owned());
    let valid: Vec<(String, String)> = resp
        .response_headers
        .iter()
        .filter(|(n, v)| http1::is_token(n) && http1::is_field_value(v))
        .map(|(n, v)| (n.clone(), v.trim().to_owned()))
        .collect();
    let conn = connection_tokens(&valid);
    let (mut headers, mut via, mut length) = (Vec::new(), None, None);
    for (n, v) in valid {
        if is_hop_by_hop(&n, &conn) {
            continue;
        }
        if n.eq_ignore_ascii_case("Content-Length") {
            length = (!v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())).then(|| v.parse::<u64>().ok()).flatten();
        } else if n.eq_ignore_ascii_case("Via") {
            via = Some(v);
        } else {
            headers.push((n, v));
        }
    }
    let mut set_length = |n: u64| headers.push(("Content-Length".to_owned(), n.to_string()));
    let framing = if status == 204 || status == 304 {
        Framing::Empty
    } else if head_request {
        // The length of what a GET would have got, if the listener said.
        if let Some(n) = length {
            set_length(n);
        }
        Framing::Empty
    } else {
        match (plan, length) {
            (Plan::None, _) => {
                set_length(0);
                Framing::Empty
            }
            (Plan::Known(n), _) => {
                set_length(n);
                Framing::Length(n)
            }
            (Plan::Streamed, Some(n)) => {
                set_length(n);
                Framing::Length(n)
            }
            (Plan::Streamed, None) => {
                headers.push(("Transfer-Encoding".to_owned(), "chunked".to_owned()));
                Framing::Chunked
            }
        }
    };
    headers.push(("Via".to_owned(), via.map_or_else(|| VIA.to_owned(), |v| format!("{v}, {VIA}"))));
    headers.push(("Connection".to_owned(), "close".to_owned()));
    Some((http1::head(&format!("HTTP/1.1 {status} {reason}"), &headers), framing))
}

/// The parts of a request target that matter here.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    /// Decoded path segments (an undecodable one as sent), the first few for resolving.
    segments: Vec<String>,
    /// Path and query as sent, without `sb-hc-token`.
    forward: String,
    token: Option<String>,
    id: Option<String>,
}

fn parse_target(target: &str) -> Result<Target, &'static str> {
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let Some(rest) = path.strip_prefix('/') else { return Err("the request target must be a path") };
    let mut segments = Vec::new();
    for raw in rest.split('/') {
        let seg = decode_component(raw, false).unwrap_or_else(|_| raw.to_owned());
        if seg == "." || seg == ".." {
            return Err("dot segment in the path");
        }
        segments.push(seg);
    }
    let (mut token, mut id, mut kept) = (None, None, Vec::new());
    for part in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (name, value) = part.split_once('=').unwrap_or((part, ""));
        match decode_component(name, true).as_deref() {
            Ok(protocol::PARAM_TOKEN) => {
                if token.is_none() {
                    token = decode_component(value, true).ok();
                }
                continue;
            }
            Ok(protocol::PARAM_ID) => id = decode_component(value, true).ok(),
            _ => {}
        }
        kept.push(part);
    }
    let forward = match (query, kept.is_empty()) {
        (Some(_), false) => format!("{path}?{}", kept.join("&")),
        (Some(""), true) => format!("{path}?"),
        _ => path.to_owned(),
    };
    Ok(Target { segments, forward, token, id })
}

/// A client's connection: its buffered request body side, and its answer side.
type ClientReader = BufReader<Chain<Cursor<Vec<u8>>, ReadHalf<RelayStream>>>;

struct Client {
    reader: ClientReader,
    writer: WriteHalf<RelayStream>,
    /// Whether any of a response has been written (then refusals cut the connection).
    answered: bool,
    /// Whether the request body has been read to its end.
    body_read: bool,
    idle: Duration,
}

impl Client {
    async fn write(&mut self, bytes: &[u8]) -> Result<(), Refusal> {
        self.answered = true;
        match timeout(self.idle, self.writer.write_all(bytes)).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(refusal(502, Rejection::Internal, "The client stopped reading")),
        }
    }

    /// Ends the connection: a FIN after the answer, then a bounded drain of whatever the
    /// client still sends, so that it can read the answer before the socket closes.
    async fn finish(mut self) {
        let _ = timeout(self.idle, self.writer.flush()).await;
        let _ = timeout(self.idle, self.writer.shutdown()).await;
        if !self.body_read {
            let (mut rest, mut sink) = ((&mut self.reader).take(LINGER_BYTES), tokio::io::sink());
            let _ = timeout(LINGER, tokio::io::copy(&mut rest, &mut sink)).await;
        }
    }
}

/// A request body read off the client, bounded by the body limit and the stall timeout.
struct Upload {
    body: BodyReader,
    limit: u64,
    idle: Duration,
}

impl Upload {
    async fn read<R: AsyncBufRead + Unpin>(&mut self, r: &mut R, buf: &mut [u8]) -> Result<usize, Refusal> {
        let n = match timeout(self.idle, self.body.read(r, buf)).await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(refusal(400, Rejection::BadRequest, format!("Malformed chunked body: {e}")));
            }
            Ok(Err(_)) => return Err(refusal(400, Rejection::BadRequest, "The request body ended early")),
            Err(_) => return Err(refusal(408, Rejection::Timeout, "The request body stalled")),
        };
        if self.body.read_so_far() > self.limit {
            let text = format!("Request body over the limit of {} bytes", self.limit);
            return Err(refusal(413, Rejection::TooLarge, text));
        }
        Ok(n)
    }
}

/// Awaits a write to the listener within `idle`.
async fn to_listener<F: Future<Output = std::io::Result<()>>>(idle: Duration, f: F) -> Result<(), Refusal> {
    match timeout(idle, f).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(refusal(502, Rejection::Internal, "The listener's connection failed")),
        Err(_) => Err(refusal(504, Rejection::AcceptTimeout, "The listener stopped reading the request")),
    }
}

/// Sends the full request, then its body, on a request rendezvous.
async fn upload<W: AsyncWrite + Unpin, R: AsyncBufRead + Unpin>(
    to: &mut MessageWriter<W>,
    json: &str,
    framing: Framing,
    prefix: &[u8],
    body: &mut Upload,
    client: &mut R,
) -> Result<(), Refusal> {
    let idle = body.idle;
    to_listener(idle, to.send_text(json)).await?;
    let mut buf = vec![0; PIECE];
    match framing {
        Framing::Empty | Framing::UntilClose => {}
        Framing::Length(n) => {
            to_listener(idle, to.begin_binary(n)).await?;
            to_listener(idle, to.write_payload(prefix)).await?;
            loop {
                let got = body.read(client, &mut buf).await?;
                if got == 0 {
                    break;
                }
                to_listener(idle, to.write_payload(&buf[..got])).await?;
            }
        }
        Framing::Chunked => {
            let mut first = true;
            if !prefix.is_empty() {
                to_listener(idle, to.send_fragment(true, false, prefix)).await?;
                first = false;
            }
            loop {
                let got = body.read(client, &mut buf).await?;
                to_listener(idle, to.send_fragment(first, got == 0, &buf[..got])).await?;
                first = false;
                if got == 0 {
                    break;
                }
            }
        }
    }
    to_listener(idle, to.flush()).await
}

/// Reads the `response` message off a rendezvous.
async fn response_message<R: AsyncRead + Unpin>(
    from: &mut MessageReader<R>,
    max: usize,
) -> Result<HttpResponse, Refusal> {
    let bad = |text: &str| refusal(502, Rejection::Internal, text);
    match from.next(max).await {
        Ok(Next::Text(text)) => match serde_json::from_str::<ListenerMessage>(&text) {
            Ok(ListenerMessage::Response(r)) => Ok(r),
            _ => Err(bad("The listener sent something other than a response")),
        },
        Ok(Next::Binary) => Err(bad("The listener sent a body before its response")),
        Ok(Next::Close(_) | Next::End) => Err(bad("The listener closed the rendezvous without a response")),
        Err(_) => Err(bad("The listener's rendezvous broke")),
    }
}

/// What the relay decided about a request before contacting a listener.
struct Prepared {
    hc: String,
    id: String,
    message: HttpRequest,
    framing: Framing,
    head_request: bool,
    /// `Expect: 100-continue`, which the relay answers itself (and does not forward).
    expect_continue: bool,
}

impl Relay {
    /// Serves one HTTP-mode request on `stream`, whose head is `req`.
    pub(super) async fn serve_http(
        self: &Arc<Self>,
        stream: RelayStream,
        req: Request,
        initial: Vec<u8>,
        peer: SocketAddr,
    ) {
        let idle = self.settings.limits.http_response_timeout;
        let (r, w) = tokio::io::split(stream);
        let reader = BufReader::with_capacity(PIECE, Cursor::new(initial).chain(r));
        let mut client = Client { reader, writer: w, answered: false, body_read: false, idle };
        let span =
            info_span!("http", method = %sanitize(&req.method), hc = tracing::field::Empty, id = tracing::field::Empty);
        let work = async {
            let mut id = protocol::new_guid();
            let outcome = match self.prepare_http(&req, peer) {
                Ok(prepared) => {
                    id.clone_from(&prepared.id);
                    self.relay_http(&mut client, prepared).await
                }
                Err(r) => Err(r),
            };
            if let Err(r) = outcome {
                self.metrics.reject(r.why);
                debug!(status = r.status, "refused: {}", r.text);
                if !client.answered {
                    let _ = client.write(error_response(r.status, &r.text, &id).as_bytes()).await;
                }
            }
            client.finish().await;
        };
        // After the drain period nothing waits any more, not even a slow client.
        tokio::select! {
            () = work.instrument(span) => {}
            () = self.force.cancelled() => {}
        }
    }

    /// Checks the request and turns it into a `request` message: 400, 401, 403, 404 and
    /// 413 (a declared length) are decided here, before any listener hears of it.
    fn prepare_http(&self, req: &Request, peer: SocketAddr) -> Result<Prepared, Refusal> {
        let limits = &self.settings.limits;
        let target = parse_target(&req.target).map_err(|why| refusal(400, Rejection::BadRequest, why))?;
        let id = target
            .id
            .clone()
            .filter(|i| !i.is_empty() && i.len() <= 64 && i.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
            .unwrap_or_else(protocol::new_guid);
        let span = tracing::Span::current();
        span.record("id", tracing::field::display(&id));
        let resolvable = &target.segments[..target.segments.len().min(MAX_PATH_SEGMENTS)];
        let Some((hc, _)) = self.resolve(resolvable) else {
            return Err(refusal(404, Rejection::NotFound, "Endpoint does not exist"));
        };
        span.record("hc", tracing::field::display(&hc));
        let needs_token =
            self.hcs.lock().expect("hcs lock").get(&hc).is_none_or(|h| h.settings.requires_client_authorization);
        let sb_auth = header(&req.headers, protocol::TOKEN_HEADER);
        let mut authorization_used = false;
        if needs_token {
            let token = sb_auth.map(str::to_owned).or(target.token.clone()).or_else(|| {
                authorization_used = true;
                header(&req.headers, "Authorization").map(str::to_owned)
            });
            let token = token.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty());
            let Some(token) = token else {
                return Err(refusal(401, Rejection::Unauthorized, "Missing token"));
            };
            let path: Vec<&str> = target.segments.iter().map(String::as_str).filter(|s| !s.is_empty()).collect();
            auth::check(
                &token,
                &path.join("/"),
                Right::Send,
                &self.hc_rules(&hc),
                &self.settings.rules,
                protocol::unix_now(),
                protocol::CLOCK_SKEW.as_secs(),
            )
            .map_err(|d| refusal(d.status, Rejection::of_auth(d.status), d.text))?;
        }
        let framing = http1::request_framing(&req.headers)
            .map_err(|e| refusal(400, Rejection::BadRequest, format!("Bad request body framing: {e}")))?;
        if let Framing::Length(n) = framing
            && n > limits.max_http_request_body
        {
            return Err(refusal(
                413,
                Rejection::TooLarge,
                format!("Request body over the limit of {} bytes", limits.max_http_request_body),
            ));
        }
        let conn = connection_tokens(&req.headers);
        let mut headers: Vec<(String, String)> = Vec::new();
        for (name, value) in &req.headers {
            let drop = is_hop_by_hop(name, &conn)
                || name.eq_ignore_ascii_case(protocol::TOKEN_HEADER)
                || (authorization_used && name.eq_ignore_ascii_case("Authorization"))
                || name.eq_ignore_ascii_case("Expect");
            if drop {
                continue;
            }
            match headers.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
                Some((_, old)) => {
                    let sep = if name.eq_ignore_ascii_case("Cookie") { "; " } else { ", " };
                    old.push_str(sep);
                    old.push_str(value);
                }
                None => headers.push((name.clone(), value.clone())),
            }
        }
        let message = HttpRequest {
            address: None,
            id: id.clone(),
            request_target: Some(target.forward),
            method: Some(req.method.clone()),
            request_headers: headers.into_iter().collect(),
            remote_endpoint: Some(RemoteEndpoint { address: peer.ip().to_string(), port: peer.port() }),
            body: Some(framing != Framing::Empty),
            inline_body: InlineBody::default(),
        };
        let expect_continue =
            header(&req.headers, "Expect").is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"));
        Ok(Prepared { hc, id, message, framing, head_request: req.method == "HEAD", expect_continue })
    }

    /// Hands a prepared request to a listener and its answer to the client.
    async fn relay_http(self: &Arc<Self>, client: &mut Client, mut p: Prepared) -> Result<(), Refusal> {
        let limits = &self.settings.limits;
        // A listener, preferring one with room in its control queue, and a waiting slot.
        let (listener, base, tx) = {
            let mut hcs = self.hcs.lock().expect("hcs lock");
            let hc = hcs.get_mut(&p.hc).ok_or_else(|| refusal(404, Rejection::NotFound, "Endpoint does not exist"))?;
            if hc.listeners.is_empty() {
                return Err(refusal(502, Rejection::NoListener, "No listener is online for this hybrid connection"));
            }
            if hc.pending_senders >= limits.max_pending_senders_per_hc {
                return Err(refusal(
                    503,
                    Rejection::PendingLimit,
                    "Too many requests waiting on this hybrid connection",
                ));
            }
            hc.pending_senders += 1;
            let mut candidates: Vec<_> = hc.listeners.iter().map(|l| (l.id, l.base.clone(), l.tx.clone())).collect();
            rand::seq::SliceRandom::shuffle(&mut candidates[..], &mut rand::rng());
            candidates.sort_by_key(|(_, _, tx)| tx.capacity() == 0);
            candidates.swap_remove(0)
        };
        let mut guard = WaitGuard { relay: self.clone(), hc: p.hc.clone(), id: None };
        let secret: String = rand::random::<[u8; 16]>().iter().map(|b| format!("{b:02x}")).collect();
        let (answer_tx, answer_rx) = oneshot::channel();
        let mut waiter = Waiter { listener, secret: secret.clone(), tx: answer_tx };
        while let Err(back) = self.http.insert(&p.id, waiter) {
            // The client's sb-hc-id is in use by another request: take a fresh one.
            waiter = back;
            p.id = protocol::new_guid();
            p.message.id.clone_from(&p.id);
        }
        guard.id = Some(p.id.clone());
        let address = format!(
            "{base}/$hc/{}?{}=request&{}={}",
            encode_path(&p.hc),
            protocol::PARAM_ACTION,
            protocol::PARAM_ID,
            encode_component(&format!("{}_{secret}", p.id))
        );
        p.message.address = Some(address.clone());

        if p.expect_continue && p.framing != Framing::Empty {
            // An interim answer: a refusal can still follow it.
            let go_on = client.writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
            timeout(client.idle, go_on)
                .await
                .ok()
                .and_then(Result::ok)
                .ok_or_else(|| refusal(400, Rejection::BadRequest, "The client went away"))?;
        }
        let mut upload = Upload {
            body: BodyReader::new(p.framing),
            limit: limits.max_http_request_body,
            idle: limits.http_response_timeout,
        };
        if p.framing == Framing::Empty {
            client.body_read = true;
        }
        // A body that may fit inline is read first (at most 64 KiB and a byte).
        let mut prefix = Vec::new();
        let small = matches!(p.framing, Framing::Chunked)
            || matches!(p.framing, Framing::Length(n) if n <= MAX_INLINE_BODY as u64);
        if p.framing != Framing::Empty && small {
            let mut buf = vec![0; PIECE];
            while prefix.len() <= MAX_INLINE_BODY {
                let n = upload.read(&mut client.reader, &mut buf).await?;
                if n == 0 {
                    break;
                }
                prefix.extend_from_slice(&buf[..n]);
            }
            client.body_read = upload.body.is_done();
        }
        let busy = tx.capacity() < tx.max_capacity();
        let whole = p.framing == Framing::Empty || (small && upload.body.is_done());
        let mut inline = whole && (prefix.is_empty() || !busy);
        let full_json = serde_json::to_string(&RelayMessage::Request(p.message.clone())).expect("requests serialize");
        if full_json.len() > limits.max_control_message {
            inline = false;
        }
        let message = if inline {
            let mut m = p.message.clone();
            m.body = Some(!prefix.is_empty());
            m.inline_body = InlineBody(std::mem::take(&mut prefix));
            m
        } else {
            HttpRequest { address: Some(address), id: p.id.clone(), ..HttpRequest::default() }
        };
        debug!(inline, listener, "request sent");
        let deadline = Instant::now() + limits.http_response_timeout;
        let timed_out = || {
            let secs = limits.http_response_timeout.as_secs_f64();
            refusal(504, Rejection::AcceptTimeout, format!("The listener did not answer within {secs} s"))
        };
        tokio::select! {
            sent = tx.send(RelayMessage::Request(message)) => {
                sent.map_err(|_| refusal(502, Rejection::NoListener, "The listener went away"))?;
            }
            () = sleep_until(deadline) => return Err(timed_out()),
            () = self.shutdown.cancelled() => return Err(refusal(503, Rejection::ShuttingDown, "Relay shutting down")),
        }
        let answer = tokio::select! {
            a = answer_rx => a.map_err(|_| refusal(502, Rejection::Internal, "The listener's rendezvous failed"))?,
            () = sleep_until(deadline) => return Err(timed_out()),
            () = tx.closed() => return Err(refusal(502, Rejection::NoListener, "The listener went away")),
            () = self.shutdown.cancelled() => return Err(refusal(503, Rejection::ShuttingDown, "Relay shutting down")),
        };
        drop(guard);
        match answer {
            HttpAnswer::Control { response, body } => {
                let plan = if response.body || !body.is_empty() { Plan::Known(body.len() as u64) } else { Plan::None };
                let (head, framing) = response_head(&response, p.head_request, plan)
                    .ok_or_else(|| refusal(502, Rejection::Internal, "The listener answered with an invalid status"))?;
                info!(status = response.status_code, "answered on the control channel");
                client.write(head.as_bytes()).await?;
                if framing != Framing::Empty {
                    client.write(&body).await?;
                }
                Ok(())
            }
            HttpAnswer::Rendezvous { stream, initial, permit: _slot } => {
                let request = (!inline).then_some((full_json, prefix));
                let exchange =
                    self.over_rendezvous(client, stream, initial, request, p.framing, &mut upload, p.head_request);
                tokio::select! {
                    r = exchange => r,
                    () = self.force.cancelled() => Err(refusal(503, Rejection::ShuttingDown, "Relay shutting down")),
                }
            }
        }
    }

    /// A rendezvous for request `id`: sends the request first if it went address-only,
    /// then relays the response and its streamed body to the client.
    #[allow(clippy::too_many_arguments)]
    async fn over_rendezvous(
        &self,
        client: &mut Client,
        stream: RelayStream,
        initial: Vec<u8>,
        request: Option<(String, Vec<u8>)>,
        framing: Framing,
        body: &mut Upload,
        head_request: bool,
    ) -> Result<(), Refusal> {
        let limits = &self.settings.limits;
        let idle = limits.http_response_timeout;
        let (rr, rw) = tokio::io::split(stream);
        let mut from = MessageReader::new(FrameReader::new(rr, &initial, Role::Server));
        let mut to = MessageWriter::new(FrameWriter::new(rw, Role::Server));
        // The request goes out while an early response is watched for; the response
        // timeout counts from the end of the upload.
        let mut uploaded = request.is_none();
        let response = {
            let sending = async {
                match &request {
                    Some((json, prefix)) => upload(&mut to, json, framing, prefix, body, &mut client.reader).await,
                    None => Ok(()),
                }
            };
            let head = response_message(&mut from, limits.max_control_message);
            tokio::pin!(sending, head);
            let mut deadline = Instant::now() + idle;
            loop {
                tokio::select! {
                    r = &mut sending, if !uploaded => {
                        r?;
                        uploaded = true;
                        deadline = Instant::now() + idle;
                    }
                    r = &mut head => break r?,
                    () = sleep_until(deadline), if uploaded => {
                        let secs = idle.as_secs_f64();
                        return Err(refusal(504, Rejection::AcceptTimeout, format!("The listener did not answer within {secs} s")));
                    }
                }
            }
        };
        client.body_read |= uploaded && body.body.is_done();
        let plan = if response.body { Plan::Streamed } else { Plan::None };
        let (head, out) = response_head(&response, head_request, plan)
            .ok_or_else(|| refusal(502, Rejection::Internal, "The listener answered with an invalid status"))?;
        info!(status = response.status_code, "answered on a rendezvous");
        client.write(head.as_bytes()).await?;
        if response.body && out != Framing::Empty {
            relay_body(&mut from, client, out, idle, limits.max_control_message).await?;
        }
        let done = CloseFrame::new(protocol::close::NORMAL, "Response complete");
        to.close(uploaded.then_some(done)).await;
        Ok(())
    }

    /// A listener's answer to a request: the rendezvous at the address the relay gave.
    pub(super) async fn request_rendezvous(
        &self,
        mut stream: RelayStream,
        req: Request,
        addr: HcAddress,
        initial: Vec<u8>,
        tracking_id: &str,
        permit: OwnedSemaphorePermit,
    ) {
        let Some(secret) = addr.id.as_deref().and_then(|id| id.rsplit_once('_')).map(|(_, s)| s.to_owned()) else {
            let text = "A request rendezvous needs the sb-hc-id the relay gave";
            return self.refuse(&mut stream, Rejection::BadRequest, 400, text, tracking_id).await;
        };
        let Some(answer) = self.http.take_by_secret(&secret) else {
            let text = "Rendezvous address unknown, used or expired";
            return self.refuse(&mut stream, Rejection::BadAcceptAddress, 403, text, tracking_id).await;
        };
        let key = websocket_key(&req).unwrap_or_default();
        if stream.write_all(handshake::switching_protocols(key, None).as_bytes()).await.is_err() {
            return;
        }
        let _ = answer.send(HttpAnswer::Rendezvous { stream, initial, permit });
    }
}

/// Streams the binary message that carries a response body to the client, in `framing`.
async fn relay_body<R: AsyncRead + Unpin>(
    from: &mut MessageReader<R>,
    client: &mut Client,
    framing: Framing,
    idle: Duration,
    max_text: usize,
) -> Result<(), Refusal> {
    let cut = |text: &str| refusal(502, Rejection::Internal, text);
    match timeout(idle, from.next(max_text)).await {
        Ok(Ok(Next::Binary)) => {}
        // No body message after all (a listener that closed at once): an empty body.
        Ok(Ok(Next::Close(_) | Next::End)) => {
            return match framing {
                Framing::Chunked => client.write(LAST_CHUNK).await,
                Framing::Length(0) => Ok(()),
                _ => Err(cut("The listener's response body is missing")),
            };
        }
        Ok(_) => return Err(cut("The listener sent no response body")),
        Err(_) => return Err(cut("The listener's response body stalled")),
    }
    let mut buf = vec![0; PIECE];
    let mut left = match framing {
        Framing::Length(n) => Some(n),
        _ => None,
    };
    loop {
        let n = match timeout(idle, from.read_binary(&mut buf)).await {
            Ok(Ok(n)) => n,
            Ok(Err(_)) => return Err(cut("The listener's response body was cut off")),
            Err(_) => return Err(cut("The listener's response body stalled")),
        };
        if n == 0 {
            break;
        }
        match &mut left {
            Some(left) => {
                // A listener sending more than its Content-Length: the rest is dropped.
                let take = n.min(usize::try_from(*left).unwrap_or(usize::MAX));
                client.write(&buf[..take]).await?;
                *left -= take as u64;
            }
            None => {
                client.answered = true;
                match timeout(idle, http1::write_chunk(&mut client.writer, &buf[..n])).await {
                    Ok(Ok(())) => {}
                    _ => return Err(cut("The client stopped reading")),
                }
            }
        }
    }
    match left {
        Some(0) => Ok(()),
        Some(_) => Err(cut("The listener's response body was shorter than its Content-Length")),
        None => client.write(LAST_CHUNK).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, headers: &[(&str, &str)]) -> HttpResponse {
        HttpResponse {
            request_id: "1".into(),
            status_code: status,
            status_description: None,
            response_headers: headers.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect(),
            body: true,
        }
    }

    #[test]
    fn targets_keep_their_query_but_lose_the_token() {
        let t = parse_target("/web/a%20b/?x=1&sb-hc-token=SharedAccessSignature+sr%3Dx&sb-hc-id=abc&y").unwrap();
        assert_eq!(t.segments, ["web", "a b", ""]);
        assert_eq!(t.forward, "/web/a%20b/?x=1&sb-hc-id=abc&y");
        assert_eq!(t.token.as_deref(), Some("SharedAccessSignature sr=x"));
        assert_eq!(t.id.as_deref(), Some("abc"));
        assert_eq!(parse_target("/web?sb-hc-token=t").unwrap().forward, "/web");
        assert_eq!(parse_target("/web?").unwrap().forward, "/web?");
        assert_eq!(parse_target("/web/%zz").unwrap().segments, ["web", "%zz"], "undecodable: kept as sent");
        for bad in ["*", "http://h/web", "/web/../x", "/%2e%2E/x", "web"] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn response_heads_are_framed_and_cleaned() {
        let r = response(
            200,
            &[
                ("content-type", "text/plain"),
                ("Connection", "x-hop"),
                ("X-Hop", "1"),
                ("Transfer-Encoding", "chunked"),
                ("Content-Length", "5"),
                ("Via", "1.0 app"),
                ("X-Bad", "a\r\nInjected: 1"),
                ("Bad Name", "v"),
            ],
        );
        let (head, framing) = response_head(&r, false, Plan::Known(3)).unwrap();
        assert_eq!(framing, Framing::Length(3));
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        for want in [
            "content-type: text/plain\r\n",
            "Content-Length: 3\r\n",
            "Via: 1.0 app, 1.1 hyco\r\n",
            "Connection: close\r\n",
        ] {
            assert!(head.contains(want), "{want:?} in {head}");
        }
        for gone in ["X-Hop", "Transfer-Encoding", "Injected", "Bad Name", "Content-Length: 5"] {
            assert!(!head.contains(gone), "{gone:?} in {head}");
        }
        let (head, framing) = response_head(&response(201, &[]), false, Plan::Streamed).unwrap();
        assert_eq!(framing, Framing::Chunked);
        assert!(head.contains("Transfer-Encoding: chunked\r\n") && head.contains("Via: 1.1 hyco\r\n"));
        let (_, framing) = response_head(&response(200, &[("Content-Length", "10")]), false, Plan::Streamed).unwrap();
        assert_eq!(framing, Framing::Length(10));
        let (head, framing) = response_head(&response(200, &[("Content-Length", "10")]), true, Plan::None).unwrap();
        assert_eq!((framing, head.contains("Content-Length: 10")), (Framing::Empty, true), "HEAD keeps the length");
        let (head, framing) = response_head(&response(204, &[]), false, Plan::Streamed).unwrap();
        assert_eq!((framing, head.contains("Content-Length")), (Framing::Empty, false));
        let mut described = response(418, &[]);
        described.status_description = Some("I'm a\r\nteapot".into());
        assert!(response_head(&described, false, Plan::None).unwrap().0.starts_with("HTTP/1.1 418 I'm a??teapot\r\n"));
        for bad in [100, 101, 199, 600, 0] {
            assert!(response_head(&response(bad, &[]), false, Plan::None).is_none(), "{bad}");
        }
    }

    #[test]
    fn error_answers_are_json_with_a_tracking_id() {
        let text = error_response(504, "The listener did not answer within 60 s", "t-1");
        assert!(text.starts_with("HTTP/1.1 504 Gateway Timeout\r\n"));
        let body = text.split("\r\n\r\n").nth(1).unwrap();
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "GatewayTimeout");
        assert!(json["error"]["message"].as_str().unwrap().contains("TrackingId:t-1"));
    }

    #[test]
    fn http_mode_is_plain_requests_outside_hc() {
        let req = |target: &str, headers: &[(&str, &str)]| Request {
            method: "GET".into(),
            target: target.into(),
            headers: headers.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect(),
        };
        assert!(is_http_mode(&req("/web/x", &[])));
        assert!(is_http_mode(&req("/", &[("Upgrade", "h2c")])));
        assert!(!is_http_mode(&req("/web", &[("Upgrade", "websocket")])));
        assert!(!is_http_mode(&req("/$hc/web", &[])));
        assert!(!is_http_mode(&req("/%24hc/web?x", &[])));
    }
}
