//! HTTP mode on the relay (docs/protocol.md 7; what hyco-https and .NET expect is in
//! interop/NOTES-https.md).
//!
//! A request that is neither a WebSocket upgrade nor under `/$hc/` names an HC by its path
//! (the longest registered name, as for senders). It goes to one of the HC's listeners as
//! a `request` message: complete, on the control channel, when its body is known to be at
//! most 64 KiB and that channel is idle; else address-only, and the listener fetches it
//! over an `sb-hc-action=request` rendezvous on which the relay streams the body. The
//! listener's `response` comes back on the control channel (small) or on a rendezvous
//! (streamed, any size), and goes to the client with `Via: 1.1 hyco`, framed by
//! `Content-Length` or chunked (until the connection closes, to HTTP/1.0). A connection
//! stays open for more requests, read one at a time, within an idle timeout and a cap
//! on requests; each request is authorized on its own. The relay's own rejections have
//! a JSON body, as Azure's do.

use std::io::Cursor;
use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::time::{Instant, sleep_until, timeout};
use tracing::{Instrument, debug, info, info_span};

use super::cluster::Delivery;
use super::http_transfer::{
    Client, Plan, Upload, connection_header, parse_target, relay_body, response_message, upload,
};
use super::metrics::Reason;
use super::registry::{Answer, Kind, Listener, Reservation, Unavailable};
use super::stream::RelayStream;
use super::{Rejection, Relay, forwarded, runtime_info};
use crate::http1::{self, Framing, HeadError, Request, connection_tokens, header, is_hop_by_hop, sanitize};
use crate::protocol::{
    self, HttpRequest, InlineBody, MAX_INLINE_BODY, MAX_PATH_SEGMENTS, RelayMessage, RemoteEndpoint,
};
use crate::ws::frame::CloseFrame;
use crate::ws::message::{MessageReader, MessageWriter, PIECE};
use crate::ws::stream::{FrameReader, FrameWriter, Role};

/// Whether the client asks to keep its connection: HTTP/1.1 unless `Connection: close`,
/// HTTP/1.0 only with `Connection: keep-alive`.
fn wants_keep_alive(req: &Request) -> bool {
    let tokens = connection_tokens(&req.headers);
    match req.version {
        1 => !tokens.iter().any(|t| t == "close"),
        _ => tokens.iter().any(|t| t == "keep-alive") && !tokens.iter().any(|t| t == "close"),
    }
}

/// Whether a request is HTTP mode: not under `/$hc/` and not a WebSocket upgrade.
pub(super) fn is_http_mode(req: &Request) -> bool {
    let path = req.target.split('?').next().unwrap_or_default();
    let under_hc = ["/$hc/", "/%24hc/", "/%24HC/"].iter().any(|p| path.starts_with(p));
    let upgrade = req.headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("Upgrade") && v.split(',').any(|t| t.trim().eq_ignore_ascii_case("websocket"))
    });
    !under_hc && !upgrade
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
    /// Serves HTTP-mode requests on a client's connection, the first being `req`, one at a
    /// time (docs/protocol.md 7): the next head is read only once the previous answer is
    /// written, so pipelined requests are answered in order. The connection stays open
    /// after an answer if the client asked (HTTP/1.1 by default, HTTP/1.0 with
    /// `Connection: keep-alive`), the request's body was read, the answer's end could be
    /// told without closing, and fewer than `max_http_requests_per_connection` were
    /// served. When the next request is not HTTP mode (a WebSocket upgrade), the
    /// connection, that request and the bytes after it are returned for the caller.
    pub(super) async fn serve_http(
        &self,
        stream: RelayStream,
        req: Request,
        initial: Vec<u8>,
        peer: SocketAddr,
    ) -> Option<(RelayStream, Request, Vec<u8>)> {
        self.metrics.http_connection();
        let ends = (stream.tcp().peer_addr().ok(), stream.tcp().local_addr().ok());
        let (r, w) = tokio::io::split(stream);
        let reader = BufReader::with_capacity(PIECE, Cursor::new(initial).chain(r));
        let mut client = Client::new(reader, w, self.limits.http_response_timeout);
        let work = async move {
            let (mut req, mut served) = (req, 0);
            let next = loop {
                served += 1;
                let keep = wants_keep_alive(&req)
                    && served < self.limits.max_http_requests_per_connection
                    && !self.shutdown.is_cancelled();
                client.begin(req.version == 0, keep);
                self.metrics.http_request();
                let span = info_span!(
                    "http",
                    method = %sanitize(&req.method),
                    hc = tracing::field::Empty,
                    id = tracing::field::Empty
                );
                self.serve_request(&mut client, &req, peer, ends).instrument(span).await;
                if let Some(status) = client.status {
                    self.metrics.http_response(status);
                }
                if !client.keep_alive {
                    break None;
                }
                match self.next_request(&mut client).await {
                    Some(next) if is_http_mode(&next) => req = next,
                    next => break next,
                }
            };
            match next {
                Some(req) => {
                    let (stream, initial) = client.into_stream();
                    Some((stream, req, initial))
                }
                None => {
                    client.finish().await;
                    None
                }
            }
        };
        // After the drain period nothing waits any more, not even a slow client.
        tokio::select! {
            next = work => next,
            () = self.force.cancelled() => None,
        }
    }

    /// Answers one request whose head is `req`; `ends` are the connection's peer and
    /// local addresses (for the base of runtime information's links).
    async fn serve_request(
        &self,
        client: &mut Client,
        req: &Request,
        peer: SocketAddr,
        ends: (Option<SocketAddr>, Option<SocketAddr>),
    ) {
        if matches!(http1::request_framing(&req.headers), Ok(Framing::Empty)) {
            client.body_read = true;
        }
        let runtime = runtime_info::asked(req).then(|| {
            // Its answer is whole and says `Connection: close`.
            client.keep_alive = false;
            let base = self.public_base_at(req, ends.0, ends.1);
            self.runtime_info(req, base.split_once("://").map_or(base.as_str(), |(_, host)| host))
        });
        let mut id = protocol::new_guid();
        let outcome = match runtime {
            // An SDK's GetRuntimeInformationAsync: the relay's to answer (docs/protocol.md 7.1).
            Some(Ok(answer)) => {
                client.status = Some(200);
                client.write(answer.as_bytes()).await
            }
            Some(Err(r)) => Err(r),
            None => match self.prepare_http(req, peer).await {
                Ok(prepared) => {
                    id.clone_from(&prepared.id);
                    self.relay_http(client, prepared).await
                }
                Err(r) => Err(r),
            },
        };
        if let Err(r) = outcome {
            self.metrics.reject(r.reason());
            debug!(status = r.status(), "rejected: {}", r.text());
            if client.answered {
                // Part of an answer is out: only closing can tell the client it is cut.
                client.keep_alive = false;
            } else {
                // A body left unread would be taken for the next request: close after this.
                client.keep_alive &= client.body_read;
                client.status = Some(r.status());
                let connection = connection_header(client.keep_alive, client.http10);
                let _ = client.write(r.http_response(&id, connection).as_bytes()).await;
            }
        }
    }

    /// Waits for the next request on a kept-alive connection: its first byte within
    /// `http_idle_timeout`, then its whole head within `handshake_timeout` and
    /// `max_header_bytes`, as for a connection's first request. `None` when the connection
    /// is done with: closed, idle too long, shutting down, or a bad head (answered).
    async fn next_request(&self, client: &mut Client) -> Option<Request> {
        let limits = &self.limits;
        // The answer must be out (TLS holds bytes until flushed) before the client waits.
        if !matches!(timeout(client.idle, client.writer.flush()).await, Ok(Ok(()))) {
            return None;
        }
        let arrived = tokio::select! {
            r = timeout(limits.http_idle_timeout, client.reader.fill_buf()) => matches!(r, Ok(Ok(b)) if !b.is_empty()),
            () = self.shutdown.cancelled() => false,
        };
        if !arrived {
            return None;
        }
        let head = tokio::select! {
            r = timeout(limits.handshake_timeout, http1::read_request_head(&mut client.reader, limits.max_header_bytes)) => r,
            () = self.shutdown.cancelled() => return None,
        };
        let rejection = match head {
            Ok(Ok(req)) => return Some(req),
            Ok(Err(HeadError::TooLarge)) => Rejection::new(431, Reason::TooLarge, "Request header fields too large"),
            Ok(Err(HeadError::Malformed(_))) => Rejection::new(400, Reason::BadRequest, "Malformed request"),
            Ok(Err(_)) => return None,
            Err(_) => {
                debug!("the next request's head timed out");
                self.metrics.reject(Reason::Timeout);
                return None;
            }
        };
        self.metrics.reject(rejection.reason());
        client.keep_alive = false;
        let _ = client.write(rejection.handshake_response(Some(&protocol::new_guid())).as_bytes()).await;
        None
    }

    /// Checks the request and turns it into a `request` message: 400, 401, 403, 404 and
    /// 413 (a declared length) are decided here, before any listener hears of it.
    async fn prepare_http(&self, req: &Request, peer: SocketAddr) -> Result<Prepared, Rejection> {
        let limits = &self.limits;
        let target = parse_target(&req.target).map_err(|why| Rejection::new(400, Reason::BadRequest, why))?;
        let id = target
            .id
            .clone()
            .filter(|i| !i.is_empty() && i.len() <= 64 && i.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
            .unwrap_or_else(protocol::new_guid);
        let span = tracing::Span::current();
        span.record("id", tracing::field::display(&id));
        // One reading of the path for the relay and the listener (docs/protocol.md 7): the
        // HC's segments and the target's (the next one) must be names; what follows is the
        // application's, and the token is checked against the names only.
        let (names, more) = target.names();
        let bad_name = || Rejection::new(400, Reason::BadRequest, "A path segment that names something is not a name");
        let Some((hc, _)) = self.resolve(&names[..names.len().min(MAX_PATH_SEGMENTS)]).await else {
            if names.is_empty() && more {
                return Err(bad_name());
            }
            return Err(Rejection::new(404, Reason::NotFound, "Endpoint does not exist"));
        };
        span.record("hc", tracing::field::display(&hc));
        if more && names.len() <= hc.split('/').count() {
            return Err(bad_name());
        }
        // The token: `ServiceBusAuthorization`, `sb-hc-token`, or else `Authorization`,
        // which then is the relay's and does not go to the listener.
        let sb_auth = header(&req.headers, protocol::TOKEN_HEADER);
        let from_authorization = sb_auth.is_none() && target.token.is_none();
        let token = sb_auth.or(target.token.as_deref()).or_else(|| header(&req.headers, "Authorization"));
        let token = token.map(str::trim).filter(|t| !t.is_empty());
        let authorization_used = self.registry.authorize_sender(&hc, &names.join("/"), token)? && from_authorization;
        let framing = http1::request_framing(&req.headers)
            .map_err(|e| Rejection::new(400, Reason::BadRequest, format!("Bad request body framing: {e}")))?;
        // RFC 9112 6.1: Transfer-Encoding in an HTTP/1.0 request is faulty framing.
        if req.version == 0 && header(&req.headers, "Transfer-Encoding").is_some() {
            return Err(Rejection::new(400, Reason::BadRequest, "Transfer-Encoding in an HTTP/1.0 request"));
        }
        if let Framing::Length(n) = framing
            && n > limits.max_http_request_body
        {
            return Err(Rejection::new(
                413,
                Reason::TooLarge,
                format!("Request body over the limit of {} bytes", limits.max_http_request_body),
            ));
        }
        let conn = connection_tokens(&req.headers);
        // Who the client is, the relay says (docs/protocol.md 7): only a trusted proxy's
        // forwarding headers are kept.
        let trusted = limits.trusted_proxies.iter().any(|net| net.contains(peer.ip()));
        let mut headers: Vec<(String, String)> = Vec::new();
        for (name, value) in &req.headers {
            let drop = is_hop_by_hop(name, &conn)
                || name.eq_ignore_ascii_case(protocol::TOKEN_HEADER)
                || (authorization_used && name.eq_ignore_ascii_case("Authorization"))
                || name.eq_ignore_ascii_case("Expect")
                || (!trusted && forwarded::is_forwarding(name));
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
        forwarded::set_forwarding(&mut headers, peer.ip(), self.tls.is_some(), header(&req.headers, "Host"));
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
        // An HTTP/1.0 client's expectation is ignored (RFC 9110 10.1.1).
        let expect_continue = req.version == 1
            && header(&req.headers, "Expect").is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"));
        Ok(Prepared { hc, id, message, framing, head_request: req.method == "HEAD", expect_continue })
    }

    /// Hands a prepared request to a listener and its answer to the client.
    async fn relay_http(&self, client: &mut Client, mut p: Prepared) -> Result<(), Rejection> {
        let mut upload = Upload::new(p.framing, &self.limits);
        if p.expect_continue && p.framing != Framing::Empty {
            client.go_on().await?;
        }
        // A body that may go inline is read before a rendezvous is reserved: a client that
        // trickles it in holds its own connection, never a place among the HC's waiting.
        let prefix = read_small_body(client, &mut upload, p.framing).await?;
        let remote = self.remote_listeners(&p.hc).await;
        let (mut reservation, candidates) = self.reserve_listener(&p.hc, remote)?;
        let deadline = Instant::now() + self.limits.http_response_timeout;
        let timed_out = || {
            let secs = self.limits.http_response_timeout.as_secs_f64();
            Rejection::new(504, Reason::AcceptTimeout, format!("The listener did not answer within {secs} s"))
        };
        // The first listener takes it; one on another node that turns out gone (its node
        // died within the entries' lifetime) passes it to the next (docs/protocol.md 11).
        let mut sent = None;
        for listener in candidates {
            address_request(&mut reservation, &mut p, &listener);
            let (message, full) = self.request_message(prefix.clone(), &upload, &p, &listener);
            debug!(inline = full.is_none(), listener = listener.id(), "request sent");
            tokio::select! {
                delivery = listener.deliver(RelayMessage::Request(message), Some(deadline)) => match delivery {
                    Delivery::Delivered => {
                        sent = Some((listener, full));
                        break;
                    }
                    Delivery::Busy => return Err(timed_out()),
                    Delivery::Gone if !listener.is_local() => {}
                    Delivery::Gone => return Err(listener_gone()),
                },
                () = self.shutdown.cancelled() => return Err(Rejection::shutting_down()),
            }
        }
        let (listener, full) = sent.ok_or_else(listener_gone)?;
        let answer = tokio::select! {
            a = reservation.answer() => a,
            () = sleep_until(deadline) => return Err(timed_out()),
            () = listener.gone() => return Err(listener_gone()),
            () = self.shutdown.cancelled() => return Err(Rejection::shutting_down()),
        };
        drop(reservation);
        match answer {
            Some(Answer::Response { response, body }) => client.answer_inline(&response, body, p.head_request).await,
            Some(Answer::Accepted { stream, initial, protocol: _, permit: _slot }) => {
                let exchange =
                    self.over_rendezvous(client, stream, initial, full, p.framing, &mut upload, p.head_request);
                tokio::select! {
                    r = exchange => r,
                    () = self.force.cancelled() => Err(Rejection::shutting_down()),
                }
            }
            // A request's rendezvous is never rejected at its address.
            Some(Answer::Rejected(_)) | None => {
                Err(Rejection::new(502, Reason::Internal, "The listener's rendezvous failed"))
            }
        }
    }

    /// Reserves the request's rendezvous and orders the listeners it may go to (those here
    /// and `remote`, on other nodes): in random order, those with room in their control
    /// queue first.
    fn reserve_listener(&self, hc: &str, remote: Vec<Listener>) -> Result<(Reservation, Vec<Listener>), Rejection> {
        let reservation = self.registry.reserve_with(hc, Kind::Request, remote).map_err(|why| match why {
            Unavailable::NotFound => Rejection::new(404, Reason::NotFound, "Endpoint does not exist"),
            Unavailable::NoListener => no_listener(),
            Unavailable::PendingLimit => {
                Rejection::new(503, Reason::PendingLimit, "Too many requests waiting on this hybrid connection")
            }
        })?;
        let mut listeners = reservation.listeners().to_vec();
        if listeners.is_empty() {
            return Err(no_listener());
        }
        // Stable: the random order stays among those with room, and among the rest.
        listeners.sort_by_key(|l| !l.has_room());
        Ok((reservation, listeners))
    }

    /// The `request` message for the listener: complete, with its body, when the body is
    /// whole and small (`prefix` holds it all) and either empty or the listener's queue is
    /// idle, and it fits in a control message; else address-only, returned with the full
    /// request (its JSON and the body read so far) to send over the rendezvous.
    fn request_message(
        &self,
        prefix: Vec<u8>,
        upload: &Upload,
        p: &Prepared,
        listener: &Listener,
    ) -> (HttpRequest, Option<(String, Vec<u8>)>) {
        let whole = p.framing == Framing::Empty || (prefix.len() <= MAX_INLINE_BODY && upload.body.is_done());
        let full_json = serde_json::to_string(&RelayMessage::Request(p.message.clone())).expect("requests serialize");
        let inline = whole
            && listener.is_local()
            && (prefix.is_empty() || listener.is_idle())
            && full_json.len() <= self.limits.max_control_message;
        if inline {
            let mut m = p.message.clone();
            m.body = Some(!prefix.is_empty());
            m.inline_body = InlineBody(prefix);
            return (m, None);
        }
        let message = HttpRequest { address: p.message.address.clone(), id: p.id.clone(), ..HttpRequest::default() };
        (message, Some((full_json, prefix)))
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
    ) -> Result<(), Rejection> {
        let limits = &self.limits;
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
                        return Err(Rejection::new(504, Reason::AcceptTimeout, format!("The listener did not answer within {secs} s")));
                    }
                }
            }
        };
        client.body_read |= uploaded && body.body.is_done();
        let plan = if response.body { Plan::Streamed } else { Plan::None };
        let (head, out) = client.answer_head(&response, head_request, plan)?;
        info!(status = response.status_code, "answered on a rendezvous");
        client.write(head.as_bytes()).await?;
        if response.body && out != Framing::Empty {
            relay_body(&mut from, client, out, idle, limits.max_control_message).await?;
        }
        let done = CloseFrame::new(protocol::close::NORMAL, "Response complete");
        to.close(uploaded.then_some(done)).await;
        Ok(())
    }
}

/// Sets the request's id and address for `listener`. The client's sb-hc-id may be in use
/// by another request: then a fresh one. A listener on another node answers at the
/// address only, so it needs no id here.
fn address_request(reservation: &mut Reservation, p: &mut Prepared, listener: &Listener) {
    if listener.is_local() {
        p.id = reservation.expect_response(listener, std::mem::take(&mut p.id));
    }
    p.message.id.clone_from(&p.id);
    p.message.address = Some(reservation.address(listener.base(), "", &[], &p.id));
}

/// Reads a body that may go inline in a `request` message (chunked, or a declared length
/// of at most 64 KiB): up to its end, or one byte over what a message carries. Other
/// bodies are left for the rendezvous.
async fn read_small_body(client: &mut Client, upload: &mut Upload, framing: Framing) -> Result<Vec<u8>, Rejection> {
    if framing == Framing::Empty {
        client.body_read = true;
        return Ok(Vec::new());
    }
    let small =
        matches!(framing, Framing::Chunked) || matches!(framing, Framing::Length(n) if n <= MAX_INLINE_BODY as u64);
    if small { client.read_prefix(upload).await } else { Ok(Vec::new()) }
}

fn no_listener() -> Rejection {
    Rejection::new(502, Reason::NoListener, "No listener is online for this hybrid connection")
}

fn listener_gone() -> Rejection {
    Rejection::new(502, Reason::NoListener, "The listener went away")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_mode_is_plain_requests_outside_hc() {
        let req = |target: &str, headers: &[(&str, &str)]| Request {
            method: "GET".into(),
            target: target.into(),
            version: 1,
            headers: headers.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect(),
        };
        assert!(is_http_mode(&req("/web/x", &[])));
        assert!(is_http_mode(&req("/", &[("Upgrade", "h2c")])));
        assert!(!is_http_mode(&req("/web", &[("Upgrade", "websocket")])));
        assert!(!is_http_mode(&req("/$hc/web", &[])));
        assert!(!is_http_mode(&req("/%24hc/web?x", &[])));
    }
}
