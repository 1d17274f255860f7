//! `hyco listen --http`: answers HTTP-mode `request` messages (docs/protocol.md 7) by calling
//! a local HTTP/1.1 server ([`super::http_local`]) over kept-alive connections from a
//! small pool ([`super::http_pool`]), bodies streamed both ways in bounded memory, and logs
//! one line per request.
//!
//! A complete request arrives on the control channel (its body as the next binary
//! message); an address-only one is fetched over a rendezvous to its address. A response
//! whose body fits in 64 KiB goes back on the control channel; a larger one, or any
//! response to a request that came over a rendezvous, is streamed on a rendezvous. The
//! HTTP client is hand-written on [`crate::http1`], which the relay uses too: no second
//! HTTP stack, and nothing to configure for a loopback server.
//!
//! A connection goes back to the pool only after a whole exchange: the request body all
//! sent, the response read to its delimited end, HTTP/1.1 and no `Connection: close`. A
//! request that fails on a reused connection before any response byte (the server closed
//! it while idle) is sent once more on a fresh connection if its method is idempotent
//! and its body is still at hand (none, or inline); other requests get 502.
//!
//! With `--inspect`, each request is also recorded for the inspector ([`super::inspect`]):
//! its heads, and its bodies teed as they stream, at most the inspector's limit kept.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncWrite, WriteHalf};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};
use tracing::{debug, info, warn};

use super::RelayClient;
use super::http_local::{ErrorAnswer, STALL_TIMEOUT, Source, call_local, error_answer, idempotent, read_local};
use super::http_pool::{LocalConn, Pool};
use super::inspect::{Capture, Kept, Store};
use super::target::{Targets, connect_target, is_unix};
use crate::http1::{self, BodyReader, Framing, connection_tokens, header, is_hop_by_hop};
use crate::net::ClientStream;
use crate::protocol::{
    self, HttpRequest, HttpResponse, ListenerMessage, MAX_CONTROL_MESSAGE, MAX_INLINE_BODY, RelayMessage, close,
};
use crate::ws::frame::CloseFrame;
use crate::ws::message::{MessageReader, MessageWriter, Next, PIECE};
use crate::ws::stream::{FrameReader, FrameWriter, Role};

/// A response for the control channel: the message and its whole body (at most 64 KiB).
pub(super) type ControlReply = (HttpResponse, Vec<u8>);

/// What the listener needs to answer requests.
pub(super) struct HttpEnv {
    pub(super) client: RelayClient,
    pub(super) hc: String,
    pub(super) targets: Targets,
    /// `--http`; without it every request gets 501.
    pub(super) serve: bool,
    /// `--keep-path-prefix`: pass `/{hc}/…` on as is.
    pub keep_prefix: bool,
    pub connect_timeout: Duration,
    /// Idle connections to the targets.
    pub(super) pool: Arc<Pool>,
    /// Where requests are recorded (`--inspect`).
    pub(super) inspect: Option<Arc<Store>>,
}

/// A rendezvous with the relay for one request.
type RvWriter = MessageWriter<WriteHalf<ClientStream>>;

/// A plain-text response of the listener's own.
fn text_response(id: &str, status: u16, text: &str) -> ControlReply {
    let response = HttpResponse {
        request_id: id.to_owned(),
        status_code: status,
        status_description: Some(http1::reason(status).to_owned()).filter(|r| !r.is_empty()),
        response_headers: vec![("Content-Type".to_owned(), "text/plain; charset=utf-8".to_owned())],
        body: true,
    };
    (response, format!("{text}\n").into_bytes())
}

fn response_json(response: &HttpResponse) -> String {
    serde_json::to_string(&ListenerMessage::Response(response.clone())).expect("responses serialize")
}

/// The local path for a relayed target: `/{hc}` (and a named target's segment) removed
/// unless `keep_prefix`. Returns the target the path picked and the path.
///
/// The path is read as the relay reads it (docs/protocol.md 7): empty segments skipped,
/// the HC's segments, then the target's, each a name ([`protocol::name_segment`]). A
/// listener with named targets rejects a target segment that is no name (`api%2Fadmin`)
/// instead of passing it to the unnamed target: the relay checked the token against
/// names only, and a relay that reads paths differently must not widen a token's reach.
pub(crate) fn local_target(
    request_target: &str,
    hc: &str,
    targets: &Targets,
    keep_prefix: bool,
) -> Result<(String, String), String> {
    let (path, query) = match request_target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (request_target, None),
    };
    let raw: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    let filled: Vec<usize> = (0..raw.len()).filter(|&i| !raw[i].is_empty()).collect();
    let hc_segments: Vec<&str> = hc.split('/').filter(|s| !s.is_empty()).collect();
    let under_hc = filled.len() >= hc_segments.len()
        && filled.iter().zip(&hc_segments).all(|(&i, h)| protocol::name_segment(raw[i]).is_ok_and(|n| n == *h));
    let after = if under_hc { hc_segments.len() } else { 0 };
    let first = filled.get(after).copied();
    let suffix = match first.map(|i| (raw[i], protocol::name_segment(raw[i]))) {
        None => Vec::new(),
        Some((_, Ok(name))) => vec![name],
        Some((_, Err(_))) if !targets.named.is_empty() => {
            return Err("The path's target segment is not a name".to_owned());
        }
        Some((raw, Err(_))) => vec![raw.to_owned()],
    };
    let picked = targets.pick(&suffix)?.to_owned();
    let mut out = if keep_prefix || !under_hc {
        path.to_owned()
    } else {
        let start = if after == 0 { 0 } else { filled[after - 1] + 1 };
        let named = suffix.first().is_some_and(|name| targets.named.contains_key(name));
        let rest: Vec<&str> = (start..raw.len()).filter(|&i| !(named && Some(i) == first)).map(|i| raw[i]).collect();
        format!("/{}", rest.join("/"))
    };
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Ok((picked, out))
}

/// The head sent to the local server.
pub(crate) fn local_head(
    request: &HttpRequest,
    target: &str,
    path: &str,
    body: Option<u64>,
    streamed: bool,
) -> Result<String, ErrorAnswer> {
    let method = request.method.as_deref().unwrap_or("GET");
    if !http1::is_token(method) || !http1::is_field_value(path) || path.contains(' ') {
        return Err(error_answer(400, "Bad request line"));
    }
    let given: Vec<(String, String)> = request
        .request_headers
        .iter()
        .filter(|(n, v)| http1::is_token(n) && http1::is_field_value(v))
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    let conn = connection_tokens(&given);
    // A Unix socket has no host name: the server behind it is this machine's.
    let host = if is_unix(target) { "localhost" } else { target };
    let mut headers = vec![("Host".to_owned(), host.to_owned())];
    let (mut forwarded_host, mut forwarded_for) = (None, None);
    for (name, value) in &given {
        let lower = name.to_ascii_lowercase();
        match lower.as_str() {
            "host" => forwarded_host = Some(value.clone()),
            "x-forwarded-for" => forwarded_for = Some(value.clone()),
            "content-length" | "expect" => {}
            _ if is_hop_by_hop(name, &conn) => {}
            _ => headers.push((name.clone(), value.clone())),
        }
    }
    if let Some(host) = forwarded_host
        && header(&given, "X-Forwarded-Host").is_none()
    {
        headers.push(("X-Forwarded-Host".to_owned(), host));
    }
    // The relay owns the forwarding headers (hyco serve drops a client's and sets its
    // own); the chain must still end with the address the relay reports, whatever relay.
    let chain = match (forwarded_for, &request.remote_endpoint) {
        (Some(f), Some(r)) if f.rsplit(',').next().map(str::trim) == Some(r.address.as_str()) => Some(f),
        (Some(f), Some(r)) => Some(format!("{f}, {}", r.address)),
        (None, Some(r)) => Some(r.address.clone()),
        (f, None) => f,
    };
    if let Some(chain) = chain {
        headers.push(("X-Forwarded-For".to_owned(), chain));
    }
    match (body, streamed) {
        (Some(n), _) => headers.push(("Content-Length".to_owned(), n.to_string())),
        (None, true) => headers.push(("Transfer-Encoding".to_owned(), "chunked".to_owned())),
        (None, false) if header(&given, "Content-Length").is_some() => {
            headers.push(("Content-Length".to_owned(), "0".to_owned()));
        }
        (None, false) => {}
    }
    Ok(http1::head(&format!("{method} {path} HTTP/1.1"), &headers))
}

/// Answers one `request` message (and, for a complete request with a body, that body).
pub(super) async fn answer(
    env: Arc<HttpEnv>,
    request: HttpRequest,
    body: Option<Vec<u8>>,
    control: mpsc::Sender<ControlReply>,
) {
    let id = request.id.clone();
    if !env.serve {
        let text = "This listener does not serve HTTP requests (start hyco listen with --http)";
        let _ = control.send(text_response(&id, 501, text)).await;
        return;
    }
    // An address-only request is fetched from its rendezvous, which then carries the answer.
    let (request, mut rendezvous) = if request.is_complete() {
        (request, None)
    } else {
        let Some(address) = request.address.clone() else { return };
        let opened = match env.client.open_rendezvous(&address, &[]).await {
            Ok(o) => o,
            Err(e) => return warn!("fetching a request failed: {e}"),
        };
        let (r, w) = tokio::io::split(opened.stream);
        let mut reader = MessageReader::new(FrameReader::new(r, &opened.initial, Role::Client));
        let writer = MessageWriter::new(FrameWriter::new(w, Role::Client));
        let full = match timeout(STALL_TIMEOUT, reader.next(MAX_CONTROL_MESSAGE)).await {
            Ok(Ok(Next::Text(text))) => serde_json::from_str::<RelayMessage>(&text).ok(),
            _ => None,
        };
        let Some(RelayMessage::Request(full)) =
            full.filter(|m| matches!(m, RelayMessage::Request(r) if r.is_complete()))
        else {
            return warn!("the relay sent no request on the request rendezvous");
        };
        (full, Some((reader, writer)))
    };
    let method = http1::sanitize(request.method.as_deref().unwrap_or_default());
    let path = log_path(request.request_target.as_deref().unwrap_or("/"));
    let started = Instant::now();
    let (reader, writer) = match &mut rendezvous {
        Some((r, w)) => (Some(r), Some(w)),
        None => (None, None),
    };
    let source = match (body, reader) {
        (Some(b), _) => Source::Inline(b),
        (None, Some(r)) if request.body == Some(true) => Source::Rendezvous(r),
        _ => Source::None,
    };
    let mut writer = writer;
    let mut capture = env.inspect.as_ref().map(|s| s.begin(&request, None));
    let outcome = exchange(&env, &request, source, &mut writer, &control, capture.as_mut()).await;
    let ms = started.elapsed().as_millis() as u64;
    if let (Some(store), Some(c)) = (&env.inspect, capture) {
        match &outcome {
            Ok((status, _)) => store.finish(c, *status, None),
            // Once the answer had begun, the caller got the app's status.
            Err((f, begun)) => {
                let status = if *begun { c.record.status.unwrap_or(f.status) } else { f.status };
                store.finish(c, status, Some(f.text.clone()))
            }
        };
    }
    match outcome {
        Ok((status, bytes)) => info!(%method, %path, status, bytes, ms, "answered"),
        Err((f, begun)) => {
            info!(%method, %path, status = f.status, ms, "failed: {}", f.text);
            if !begun {
                let (response, body) = text_response(&id, f.status, &f.text);
                match writer.as_deref_mut() {
                    Some(w) => {
                        let _ =
                            send_on_rendezvous(w, &response, Framing::Length(body.len() as u64), &mut &body[..]).await;
                    }
                    None => {
                        let _ = control.send((response, body)).await;
                    }
                }
            }
        }
    }
    if let Some(w) = writer {
        w.close(Some(CloseFrame::new(close::NORMAL, "Response complete"))).await;
    }
}

/// A request target for the log: the path, and the query's names without their values
/// (`/search?q=x&page=2` becomes `/search?q&page`), visible ASCII only.
fn log_path(target: &str) -> String {
    let mut out = match target.split_once('?') {
        None => target.to_owned(),
        Some((path, query)) => {
            let names: Vec<&str> = query.split('&').map(|p| p.split_once('=').map_or(p, |(n, _)| n)).collect();
            format!("{path}?{}", names.join("&"))
        }
    };
    out.retain(|c| c.is_ascii_graphic());
    http1::sanitize(&out)
}

/// Calls the local server and sends its answer: the status and the body's bytes, or an
/// error that says whether the answer had begun.
async fn exchange(
    env: &HttpEnv,
    request: &HttpRequest,
    mut source: Source<'_>,
    rendezvous: &mut Option<&mut RvWriter>,
    control: &mpsc::Sender<ControlReply>,
    mut capture: Option<&mut Capture>,
) -> Result<(u16, u64), (ErrorAnswer, bool)> {
    let early = |f: ErrorAnswer| (f, false);
    let (target, path) =
        local_target(request.request_target.as_deref().unwrap_or("/"), &env.hc, &env.targets, env.keep_prefix)
            .map_err(|text| early(error_answer(404, text)))?;
    let declared = request
        .request_headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("Content-Length"))
        .and_then(|(_, v)| v.trim().parse::<u64>().ok());
    let (length, streamed) = match &source {
        Source::None => (None, false),
        Source::Inline(b) => (Some(b.len() as u64), false),
        Source::Rendezvous(_) => (declared, declared.is_none()),
    };
    let head = local_head(request, &target, &path, length, streamed).map_err(early)?;
    if let Some(c) = capture.as_deref_mut() {
        c.sent(request, &target, &path, &head, !matches!(source, Source::None));
        if let Source::Inline(body) = &source {
            c.request_body().push(body);
        }
    }
    let may_retry = !matches!(source, Source::Rendezvous(_)) && idempotent(request.method.as_deref().unwrap_or("GET"));
    let mut pooled = env.pool.take(&target);
    let (mut conn, response, sent) = loop {
        let reused = pooled.is_some();
        let mut conn = match pooled.take() {
            Some(conn) => conn,
            None => LocalConn::new(
                connect_target(&target, env.connect_timeout)
                    .await
                    .map_err(|(status, text)| early(error_answer(status, text)))?,
            ),
        };
        debug!(%target, %path, reused, "calling the local server");
        let tee = capture.as_deref_mut().map(Capture::request_body);
        match call_local(&mut conn, &head, &mut source, length, tee).await {
            Ok((response, sent)) => break (conn, response, sent),
            Err(f) if f.stale && reused && may_retry => {
                debug!("a kept connection to {target} failed ({}): once more on a fresh one", f.answer.text);
            }
            Err(f) => return Err(early(f.answer)),
        }
    };
    // Whether the connection can take another request once this response is read.
    let reusable = sent && response.version == 1 && !connection_tokens(&response.headers).iter().any(|t| t == "close");
    let head_request = request.method.as_deref() == Some("HEAD");
    let framing = http1::response_framing(response.status, head_request, &response.headers)
        .map_err(|e| early(error_answer(502, format!("Bad response from the local server: {e}"))))?;
    let headers = response_headers(&response.headers);
    if let Some(c) = capture.as_deref_mut() {
        c.answered(response.status, &response.headers);
    }
    let mut message = HttpResponse {
        request_id: request.id.clone(),
        status_code: response.status,
        status_description: Some(response.reason.clone()).filter(|r| !r.is_empty()),
        response_headers: headers,
        body: framing != Framing::Empty,
    };
    let status = response.status;
    let mut body = BodyReader::new(framing);
    let reusable = reusable && framing != Framing::UntilClose;
    let from_local = &mut conn.reader;
    if let Some(w) = rendezvous.as_deref_mut() {
        let mut teed = Teed(Local(&mut body, from_local), capture.map(Capture::response_body));
        let bytes = send_on_rendezvous(w, &message, framing, &mut teed).await?;
        if reusable && body.is_done() {
            env.pool.put(&target, conn);
        }
        return Ok((status, bytes));
    }
    // Small enough for the control channel? Read up to 64 KiB and a byte to know.
    let mut prefix = Vec::new();
    let mut buf = vec![0; PIECE];
    while prefix.len() <= MAX_INLINE_BODY && !body.is_done() {
        let n = read_local(&mut body, from_local, &mut buf).await.map_err(early)?;
        if n == 0 {
            break;
        }
        prefix.extend_from_slice(&buf[..n]);
    }
    if body.is_done() && prefix.len() <= MAX_INLINE_BODY && response_json(&message).len() <= MAX_CONTROL_MESSAGE {
        if reusable {
            env.pool.put(&target, conn);
        }
        message.body = !prefix.is_empty();
        let bytes = prefix.len() as u64;
        if let Some(c) = capture {
            c.response_body().push(&prefix);
        }
        if control.send((message.clone(), prefix)).await.is_ok() {
            return Ok((status, bytes));
        }
        return Err((error_answer(502, "The control channel went away"), true));
    }
    // Too large: stream it on a rendezvous to the request's address.
    let Some(address) = request.address.as_deref() else {
        return Err(early(error_answer(
            502,
            "The response is too large for the control channel and the request has no address",
        )));
    };
    let opened =
        env.client.open_rendezvous(address, &[]).await.map_err(|e| (error_answer(502, e.to_string()), true))?;
    let (_, w) = tokio::io::split(opened.stream);
    let mut w = MessageWriter::new(FrameWriter::new(w, Role::Client));
    let rest = Prefixed { prefix, at: 0, rest: Local(&mut body, from_local) };
    let mut rest = Teed(rest, capture.map(Capture::response_body));
    let sent = send_on_rendezvous(&mut w, &message, framing, &mut rest).await;
    w.close(Some(CloseFrame::new(close::NORMAL, "Response complete"))).await;
    if sent.is_ok() && reusable && body.is_done() {
        env.pool.put(&target, conn);
    }
    sent.map(|bytes| (status, bytes))
}

/// The local server's response headers as a `response` carries them (docs/protocol.md 7):
/// hop-by-hop ones dropped, one spelling per name; repeats joined with `, ` (RFC 9110
/// 5.3), except `Set-Cookie`, whose values cannot be joined: each stays its own line,
/// which goes on the wire as an array.
fn response_headers(given: &[(String, String)]) -> Vec<(String, String)> {
    let conn = connection_tokens(given);
    let mut headers: Vec<(String, String)> = Vec::new();
    for (name, value) in given {
        if is_hop_by_hop(name, &conn) {
            continue;
        }
        match headers.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            Some((n, _)) if n.eq_ignore_ascii_case("Set-Cookie") => {
                let n = n.clone();
                headers.push((n, value.clone()));
            }
            Some((_, old)) => {
                old.push_str(", ");
                old.push_str(value);
            }
            None => headers.push((name.clone(), value.clone())),
        }
    }
    headers
}

/// A response body being read: pieces until 0.
trait Pieces {
    async fn piece(&mut self, buf: &mut [u8]) -> Result<usize, ErrorAnswer>;
}

/// The local server's response body.
struct Local<'a, R>(&'a mut BodyReader, &'a mut R);

impl<R: AsyncBufRead + Unpin> Pieces for Local<'_, R> {
    async fn piece(&mut self, buf: &mut [u8]) -> Result<usize, ErrorAnswer> {
        read_local(self.0, self.1, buf).await
    }
}

/// A body whose pieces are also counted into the inspector's copy, if any.
struct Teed<'a, P>(P, Option<&'a mut Kept>);

impl<P: Pieces> Pieces for Teed<'_, P> {
    async fn piece(&mut self, buf: &mut [u8]) -> Result<usize, ErrorAnswer> {
        let n = self.0.piece(buf).await?;
        if let Some(kept) = self.1.as_deref_mut() {
            kept.push(&buf[..n]);
        }
        Ok(n)
    }
}

/// Bytes already read, then the rest.
struct Prefixed<P> {
    prefix: Vec<u8>,
    at: usize,
    rest: P,
}

impl<P: Pieces> Pieces for Prefixed<P> {
    async fn piece(&mut self, buf: &mut [u8]) -> Result<usize, ErrorAnswer> {
        if self.at < self.prefix.len() {
            let n = buf.len().min(self.prefix.len() - self.at);
            buf[..n].copy_from_slice(&self.prefix[self.at..self.at + n]);
            self.at += n;
            return Ok(n);
        }
        self.rest.piece(buf).await
    }
}

impl Pieces for &[u8] {
    async fn piece(&mut self, buf: &mut [u8]) -> Result<usize, ErrorAnswer> {
        let n = buf.len().min(self.len());
        buf[..n].copy_from_slice(&self[..n]);
        *self = &self[n..];
        Ok(n)
    }
}

/// Sends a response and its body on a rendezvous: one frame when the length is known,
/// fragments otherwise; the FIN of the last ends the body. Returns the body's bytes.
async fn send_on_rendezvous<W: AsyncWrite + Unpin, P: Pieces>(
    to: &mut MessageWriter<W>,
    response: &HttpResponse,
    framing: Framing,
    body: &mut P,
) -> Result<u64, (ErrorAnswer, bool)> {
    let lost = |_| (error_answer(502, "The rendezvous with the relay failed"), true);
    let json = response_json(response);
    timeout(STALL_TIMEOUT, to.send_text(&json))
        .await
        .map_err(|_| (error_answer(504, "The relay stopped reading"), true))?
        .map_err(lost)?;
    let mut buf = vec![0; PIECE];
    let mut sent = 0;
    match framing {
        Framing::Empty => {}
        Framing::Length(n) => {
            to.begin_binary(n).await.map_err(lost)?;
            let mut left = n;
            while left > 0 {
                let got = body.piece(&mut buf).await.map_err(|f| (f, true))?;
                if got == 0 {
                    return Err((error_answer(502, "The local server's response body was cut off"), true));
                }
                let got = got.min(usize::try_from(left).unwrap_or(usize::MAX));
                timeout(STALL_TIMEOUT, to.write_payload(&buf[..got]))
                    .await
                    .map_err(|_| (error_answer(504, "The relay stopped reading"), true))?
                    .map_err(lost)?;
                left -= got as u64;
            }
            sent = n;
        }
        Framing::Chunked | Framing::UntilClose => {
            let mut first = true;
            loop {
                let got = body.piece(&mut buf).await.map_err(|f| (f, true))?;
                let fragment = to.send_fragment(first, got == 0, &buf[..got]);
                timeout(STALL_TIMEOUT, fragment)
                    .await
                    .map_err(|_| (error_answer(504, "The relay stopped reading"), true))?
                    .map_err(lost)?;
                first = false;
                sent += got as u64;
                if got == 0 {
                    break;
                }
            }
        }
    }
    to.flush().await.map_err(lost)?;
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(specs: &[&str]) -> Targets {
        Targets::parse(specs).unwrap()
    }

    #[test]
    fn the_hc_prefix_is_stripped_from_local_paths() {
        let t = targets(&["127.0.0.1:3000"]);
        let local = |target: &str, keep| local_target(target, "web", &t, keep).unwrap().1;
        assert_eq!(local("/web/a/b?x=1", false), "/a/b?x=1");
        assert_eq!(local("/web", false), "/");
        assert_eq!(local("/web/", false), "/");
        assert_eq!(local("/web?x", false), "/?x");
        assert_eq!(local("/web/a/b?x=1", true), "/web/a/b?x=1");
        assert_eq!(local("/other/a", false), "/other/a", "not under the HC: as is");
        let l = local_target("/team/web%20app/x%2Fy", "team/web app", &t, false).unwrap();
        assert_eq!(l, ("127.0.0.1:3000".to_owned(), "/x%2Fy".to_owned()), "encoded names, kept escapes");
        let named = targets(&["api=127.0.0.1:1", "127.0.0.1:2"]);
        assert_eq!(local_target("/web/api/v1", "web", &named, false).unwrap(), ("127.0.0.1:1".into(), "/v1".into()));
        assert_eq!(local_target("/web/page", "web", &named, false).unwrap(), ("127.0.0.1:2".into(), "/page".into()));
        assert!(local_target("/web/x", "web", &targets(&["api=127.0.0.1:1"]), false).is_err());
        // One reading with the relay: empty segments skipped, an encoded separator is no name.
        assert_eq!(local_target("/web//api/v1", "web", &named, false).unwrap(), ("127.0.0.1:1".into(), "//v1".into()));
        for bad in ["/web/api%2Fadmin", "/web/api%2fadmin/x", "/web/%zz", "/web/a%00", "/web/a%5Cb"] {
            assert!(local_target(bad, "web", &named, false).is_err(), "{bad}: never the unnamed target");
        }
        assert!(local_target("/web/API/x", "web", &named, false).is_err(), "case-only differences");
        assert_eq!(local("/web/x%2Fy/z", false), "/x%2Fy/z", "no named targets: no target to mistake");
    }

    #[test]
    fn local_heads_carry_the_request_and_forwarding_headers() {
        let request = HttpRequest {
            method: Some("POST".into()),
            request_headers: [
                ("Host", "relay.example"),
                ("X-App", "1"),
                ("Connection", "x-hop"),
                ("X-Hop", "1"),
                ("Content-Length", "5"),
                ("X-Evil", "a\r\nInjected: 1"),
            ]
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect(),
            remote_endpoint: Some(protocol::RemoteEndpoint { address: "203.0.113.9".into(), port: 1 }),
            body: Some(true),
            ..HttpRequest::default()
        };
        let head = local_head(&request, "127.0.0.1:3000", "/x", Some(5), false).unwrap();
        assert!(head.starts_with("POST /x HTTP/1.1\r\nHost: 127.0.0.1:3000\r\n"), "{head}");
        for want in [
            "X-App: 1\r\n",
            "Content-Length: 5\r\n",
            "X-Forwarded-Host: relay.example\r\n",
            "X-Forwarded-For: 203.0.113.9\r\n",
        ] {
            assert!(head.contains(want), "{want:?} in {head}");
        }
        assert!(!head.contains("Connection"), "the connection may be kept: {head}");
        for gone in ["X-Hop", "Injected", "relay.example\r\nHost"] {
            assert!(!head.contains(gone), "{gone:?} in {head}");
        }
        let mut relayed = request.clone();
        relayed.request_headers.insert("X-Forwarded-For".into(), "192.0.2.1, 203.0.113.9".into());
        let head = local_head(&relayed, "h:1", "/x", None, false).unwrap();
        assert!(head.contains("X-Forwarded-For: 192.0.2.1, 203.0.113.9\r\n"), "set by the relay: as is; {head}");
        relayed.request_headers.insert("X-Forwarded-For".into(), "198.51.100.1".into());
        let head = local_head(&relayed, "h:1", "/x", None, false).unwrap();
        assert!(head.contains("X-Forwarded-For: 198.51.100.1, 203.0.113.9\r\n"), "ends with the peer; {head}");
        let chunked = local_head(&request, "h:1", "/x", None, true).unwrap();
        let given: Vec<(String, String)> = [
            ("Set-Cookie", "a=1; Path=/"),
            ("Vary", "Accept"),
            ("set-cookie", "b=2, c"),
            ("vary", "Origin"),
            ("Connection", "close"),
        ]
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
        let kept = response_headers(&given);
        let lines: Vec<(&str, &str)> = kept.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let want = [("Set-Cookie", "a=1; Path=/"), ("Vary", "Accept, Origin"), ("Set-Cookie", "b=2, c")];
        assert_eq!(lines, want, "cookies one by one, other repeats joined, no hop-by-hop");
        assert!(chunked.contains("Transfer-Encoding: chunked\r\n") && !chunked.contains("Content-Length"));
        assert!(local_head(&request, "h:1", "/a b", None, false).is_err());
    }

    #[test]
    fn logged_paths_keep_query_names_but_not_values() {
        assert_eq!(log_path("/web/search?q=secret&page=2&flag"), "/web/search?q&page&flag");
        assert_eq!(log_path("/web/a%20b"), "/web/a%20b");
        assert_eq!(log_path("/web/?"), "/web/?");
        assert_eq!(log_path("/web/x\r\ny?a=b"), "/web/xy?a");
    }
}
