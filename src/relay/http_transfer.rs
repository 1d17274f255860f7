//! HTTP mode's moving parts (docs/protocol.md 7): the client's connection, request
//! targets, the heads of listeners' responses, and bodies streamed either way under the
//! body limit and the stall timeout. The flow that uses them, and the rendezvous, are in
//! [`super::http`].

use std::io::Cursor;
use std::time::Duration;

use tokio::io::{
    AsyncBufRead, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, Chain, ReadHalf, WriteHalf,
};
use tokio::time::{Instant, timeout, timeout_at};
use tracing::info;

use super::metrics::Reason;
use super::stream::RelayStream;
use super::{Limits, Rejection};
use crate::encoding::decode_component;
use crate::http1::sanitize;
use crate::http1::{self, BodyReader, Framing, LAST_CHUNK, connection_tokens, is_hop_by_hop};
use crate::protocol::{self, HttpResponse, ListenerMessage, MAX_INLINE_BODY};
use crate::ws::message::{MessageReader, MessageWriter, Next, PIECE};

/// The `Via` entry the relay adds to every relayed response.
const VIA: &str = "1.1 hyco";
/// After answering a request whose body it has not read, the relay reads and drops what
/// still comes for this long (or this many bytes) before closing: closing with unread
/// data resets the connection, and the client could lose the answer.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: u64 = 16 << 20;

/// How the body of a listener's response arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Plan {
    /// `body: false`.
    None,
    /// All of it, on the control channel.
    Known(u64),
    /// As a binary message on a rendezvous, of a length not known in advance.
    Streamed,
}

/// The `Connection` header of an answer: `close` unless the connection is `kept`; for a
/// kept one nothing to an HTTP/1.1 client (persistence is its default) and `keep-alive`
/// to an HTTP/1.0 one (which asked for it).
pub(super) fn connection_header(kept: bool, http10: bool) -> Option<&'static str> {
    match (kept, http10) {
        (false, _) => Some("close"),
        (true, true) => Some("keep-alive"),
        (true, false) => None,
    }
}

/// The head the client gets for a listener's `response`, and how its body is framed;
/// `None` for a status no HTTP/1.1 client can take as a final answer. An HTTP/1.0 client
/// (`http10`) knows no chunked encoding: a body of unknown length ends with the connection,
/// which then is not `keep`t whatever was asked.
pub(super) fn response_head(
    resp: &HttpResponse,
    head_request: bool,
    plan: Plan,
    http10: bool,
    keep: bool,
) -> Option<(String, Framing)> {
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
            (Plan::Streamed, None) if http10 => Framing::UntilClose,
            (Plan::Streamed, None) => {
                headers.push(("Transfer-Encoding".to_owned(), "chunked".to_owned()));
                Framing::Chunked
            }
        }
    };
    headers.push(("Via".to_owned(), via.map_or_else(|| VIA.to_owned(), |v| format!("{v}, {VIA}"))));
    if let Some(c) = connection_header(keep && framing != Framing::UntilClose, http10) {
        headers.push(("Connection".to_owned(), c.to_owned()));
    }
    Some((http1::head(&format!("HTTP/1.1 {status} {reason}"), &headers), framing))
}

/// The parts of a request target that matter here.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Target {
    /// The path's non-empty segments as sent (still encoded).
    pub(crate) segments: Vec<String>,
    /// Path and query as sent, without `sb-hc-token`.
    pub(crate) forward: String,
    pub(crate) token: Option<String>,
    pub(crate) id: Option<String>,
}

impl Target {
    /// The path as the relay reads it (docs/protocol.md 7): its leading segments that are
    /// names ([`protocol::name_segment`]), decoded; and whether a segment that is no name
    /// follows them. Only these can make up the HC's name, the target's name and what a
    /// token's audience is compared with: a decoded `/` never splits or joins segments.
    pub(crate) fn names(&self) -> (Vec<String>, bool) {
        let names: Vec<String> = self.segments.iter().map_while(|s| protocol::name_segment(s).ok()).collect();
        let more = names.len() < self.segments.len();
        (names, more)
    }
}

pub(crate) fn parse_target(target: &str) -> Result<Target, &'static str> {
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let Some(rest) = path.strip_prefix('/') else { return Err("the request target must be a path") };
    let mut segments = Vec::new();
    for raw in rest.split('/').filter(|s| !s.is_empty()) {
        if matches!(decode_component(raw, false).as_deref(), Ok("." | "..")) {
            return Err("dot segment in the path");
        }
        segments.push(raw.to_owned());
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
pub(super) type ClientReader = BufReader<Chain<Cursor<Vec<u8>>, ReadHalf<RelayStream>>>;

/// A client's connection and the state of the request being answered on it.
pub(super) struct Client {
    pub(super) reader: ClientReader,
    pub(super) writer: WriteHalf<RelayStream>,
    /// Whether any of a response has been written (then rejections cut the connection).
    pub(super) answered: bool,
    /// Whether the request body has been read to its end.
    pub(super) body_read: bool,
    pub(super) idle: Duration,
    /// An HTTP/1.0 client: no `100 Continue`, no chunked answers.
    pub(super) http10: bool,
    /// Whether the connection may take another request after this one's answer: the
    /// client asked, the cap is not reached, the body was read, the answer was delimited.
    pub(super) keep_alive: bool,
    /// The status of the answer's head, once written.
    pub(super) status: Option<u16>,
}

impl Client {
    pub(super) fn new(reader: ClientReader, writer: WriteHalf<RelayStream>, idle: Duration) -> Self {
        Self { reader, writer, answered: false, body_read: false, idle, http10: false, keep_alive: false, status: None }
    }

    /// Starts on the next request on this connection: an HTTP/1.0 one or not, and whether
    /// the connection may stay open after it (`keep`).
    pub(super) fn begin(&mut self, http10: bool, keep: bool) {
        (self.answered, self.body_read, self.http10, self.keep_alive, self.status) = (false, false, http10, keep, None);
    }

    /// The head of the answer to a listener's `response`: the connection is kept only if
    /// the request body was read and the answer's end can be told without closing.
    pub(super) fn answer_head(
        &mut self,
        response: &HttpResponse,
        head_request: bool,
        plan: Plan,
    ) -> Result<(String, Framing), Rejection> {
        self.keep_alive &= self.body_read;
        let (head, framing) = response_head(response, head_request, plan, self.http10, self.keep_alive)
            .ok_or_else(|| Rejection::new(502, Reason::Internal, "The listener answered with an invalid status"))?;
        if framing == Framing::UntilClose {
            self.keep_alive = false;
        }
        self.status = Some(response.status_code);
        Ok((head, framing))
    }

    pub(super) async fn write(&mut self, bytes: &[u8]) -> Result<(), Rejection> {
        self.answered = true;
        match timeout(self.idle, self.writer.write_all(bytes)).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(Rejection::new(502, Reason::Internal, "The client stopped reading")),
        }
    }

    /// `100 Continue`: an interim answer, which a rejection can still follow.
    pub(super) async fn go_on(&mut self) -> Result<(), Rejection> {
        match timeout(self.idle, self.writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(Rejection::new(400, Reason::BadRequest, "The client went away")),
        }
    }

    /// Reads a body that may go inline: up to its end, or to one byte over the most a
    /// `request` message carries.
    pub(super) async fn read_prefix(&mut self, upload: &mut Upload) -> Result<Vec<u8>, Rejection> {
        let (mut prefix, mut buf) = (Vec::new(), vec![0; PIECE]);
        while prefix.len() <= MAX_INLINE_BODY {
            let n = upload.read(&mut self.reader, &mut buf).await?;
            if n == 0 {
                break;
            }
            prefix.extend_from_slice(&buf[..n]);
        }
        self.body_read = upload.body.is_done();
        Ok(prefix)
    }

    /// Answers with a listener's `response` from its control channel and its whole body.
    pub(super) async fn answer_inline(
        &mut self,
        response: &HttpResponse,
        body: Vec<u8>,
        head_request: bool,
    ) -> Result<(), Rejection> {
        let plan = if response.body || !body.is_empty() { Plan::Known(body.len() as u64) } else { Plan::None };
        let (head, framing) = self.answer_head(response, head_request, plan)?;
        info!(status = response.status_code, "answered on the control channel");
        self.write(head.as_bytes()).await?;
        if framing != Framing::Empty {
            self.write(&body).await?;
        }
        Ok(())
    }

    /// The connection whole again, and the bytes read off it but not yet used (for a
    /// request on it that is not HTTP mode).
    pub(super) fn into_stream(self) -> (RelayStream, Vec<u8>) {
        let mut unread = self.reader.buffer().to_vec();
        let (cursor, r) = self.reader.into_inner().into_inner();
        let at = usize::try_from(cursor.position()).unwrap_or(usize::MAX);
        unread.extend_from_slice(cursor.get_ref().get(at..).unwrap_or_default());
        (r.unsplit(self.writer), unread)
    }

    /// Ends the connection: a FIN after the answer, then a bounded drain of whatever the
    /// client still sends, so that it can read the answer before the socket closes.
    pub(super) async fn finish(mut self) {
        let _ = timeout(self.idle, self.writer.flush()).await;
        let _ = timeout(self.idle, self.writer.shutdown()).await;
        if !self.body_read {
            let (mut rest, mut sink) = ((&mut self.reader).take(LINGER_BYTES), tokio::io::sink());
            let _ = timeout(LINGER, tokio::io::copy(&mut rest, &mut sink)).await;
        }
    }
}

/// A request body read off the client, bounded by the body limit, the stall timeout and
/// a deadline for the whole body (a client that sends a byte now and then must not hold
/// a connection, or a listener, for ever).
pub(super) struct Upload {
    pub(super) body: BodyReader,
    pub(super) limit: u64,
    pub(super) idle: Duration,
    /// When the whole body must have arrived.
    deadline: Instant,
    total: Duration,
}

impl Upload {
    /// An upload whose whole-body deadline starts now.
    pub(super) fn new(framing: Framing, limits: &Limits) -> Self {
        Self {
            body: BodyReader::new(framing),
            limit: limits.max_http_request_body,
            idle: limits.http_response_timeout,
            deadline: Instant::now() + limits.http_request_body_timeout,
            total: limits.http_request_body_timeout,
        }
    }

    pub(super) async fn read<R: AsyncBufRead + Unpin>(
        &mut self,
        r: &mut R,
        buf: &mut [u8],
    ) -> Result<usize, Rejection> {
        let stall = Instant::now() + self.idle;
        let n = match timeout_at(stall.min(self.deadline), self.body.read(r, buf)).await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(Rejection::new(400, Reason::BadRequest, format!("Malformed chunked body: {e}")));
            }
            Ok(Err(_)) => return Err(Rejection::new(400, Reason::BadRequest, "The request body ended early")),
            Err(_) if stall < self.deadline => {
                return Err(Rejection::new(408, Reason::Timeout, "The request body stalled"));
            }
            Err(_) => {
                let text = format!("The request body took longer than {} s", self.total.as_secs_f64());
                return Err(Rejection::new(408, Reason::Timeout, text));
            }
        };
        if self.body.read_so_far() > self.limit {
            let text = format!("Request body over the limit of {} bytes", self.limit);
            return Err(Rejection::new(413, Reason::TooLarge, text));
        }
        Ok(n)
    }
}

/// Awaits a write to the listener within `idle`.
pub(super) async fn to_listener<F: Future<Output = std::io::Result<()>>>(
    idle: Duration,
    f: F,
) -> Result<(), Rejection> {
    match timeout(idle, f).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(Rejection::new(502, Reason::Internal, "The listener's connection failed")),
        Err(_) => Err(Rejection::new(504, Reason::AcceptTimeout, "The listener stopped reading the request")),
    }
}

/// Sends the full request, then its body, on a request rendezvous.
pub(super) async fn upload<W: AsyncWrite + Unpin, R: AsyncBufRead + Unpin>(
    to: &mut MessageWriter<W>,
    json: &str,
    framing: Framing,
    prefix: &[u8],
    body: &mut Upload,
    client: &mut R,
) -> Result<(), Rejection> {
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
pub(super) async fn response_message<R: AsyncRead + Unpin>(
    from: &mut MessageReader<R>,
    max: usize,
) -> Result<HttpResponse, Rejection> {
    let bad = |text: &'static str| Rejection::new(502, Reason::Internal, text);
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

/// Streams the binary message that carries a response body to the client, in `framing`.
pub(super) async fn relay_body<R: AsyncRead + Unpin>(
    from: &mut MessageReader<R>,
    client: &mut Client,
    framing: Framing,
    idle: Duration,
    max_text: usize,
) -> Result<(), Rejection> {
    let cut = |text: &'static str| Rejection::new(502, Reason::Internal, text);
    match timeout(idle, from.next(max_text)).await {
        Ok(Ok(Next::Binary)) => {}
        // No body message after all (a listener that closed at once): an empty body.
        Ok(Ok(Next::Close(_) | Next::End)) => {
            return match framing {
                Framing::Chunked => client.write(LAST_CHUNK).await,
                Framing::Length(0) | Framing::UntilClose => Ok(()),
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
            None if framing == Framing::UntilClose => client.write(&buf[..n]).await?,
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
        None if framing == Framing::UntilClose => Ok(()),
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
        assert_eq!(t.segments, ["web", "a%20b"]);
        assert_eq!(t.names(), (vec!["web".to_owned(), "a b".to_owned()], false));
        assert_eq!(t.forward, "/web/a%20b/?x=1&sb-hc-id=abc&y");
        assert_eq!(t.token.as_deref(), Some("SharedAccessSignature sr=x"));
        assert_eq!(t.id.as_deref(), Some("abc"));
        assert_eq!(parse_target("/web?sb-hc-token=t").unwrap().forward, "/web");
        assert_eq!(parse_target("/web?").unwrap().forward, "/web?");
        let names = |t: &str| parse_target(t).unwrap().names();
        let web = || vec!["web".to_owned()];
        assert_eq!(names("/web/%zz"), (web(), true), "undecodable: no name");
        assert_eq!(names("/web/api%2Fadmin/x"), (web(), true), "an encoded slash: no name");
        assert_eq!(names("/web/a%5Cb"), (web(), true));
        assert_eq!(names("/web/a%00"), (web(), true));
        assert_eq!(names("/web//x/"), (vec!["web".to_owned(), "x".to_owned()], false), "empty segments: none");
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
        let (head, framing) = response_head(&r, false, Plan::Known(3), false, false).unwrap();
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
        let (head, framing) = response_head(&response(201, &[]), false, Plan::Streamed, false, false).unwrap();
        assert_eq!(framing, Framing::Chunked);
        assert!(head.contains("Transfer-Encoding: chunked\r\n") && head.contains("Via: 1.1 hyco\r\n"));
        let (head, framing) = response_head(&response(201, &[]), false, Plan::Streamed, true, true).unwrap();
        assert_eq!(framing, Framing::UntilClose, "HTTP/1.0: until the connection closes");
        assert!(!head.contains("Transfer-Encoding") && head.contains("Connection: close\r\n"), "{head}");
        // A kept connection: nothing to say to HTTP/1.1 (the listener's own `Connection` is
        // hop-by-hop), `keep-alive` to an HTTP/1.0 client that asked for it.
        let app_closes = response(200, &[("Connection", "close")]);
        let (head, _) = response_head(&app_closes, false, Plan::Known(2), false, true).unwrap();
        assert!(!head.contains("Connection"), "{head}");
        let (head, framing) = response_head(&app_closes, false, Plan::Known(2), true, true).unwrap();
        assert_eq!(framing, Framing::Length(2));
        assert!(head.contains("Connection: keep-alive\r\n"), "{head}");
        let (_, framing) =
            response_head(&response(200, &[("Content-Length", "10")]), false, Plan::Streamed, false, false).unwrap();
        assert_eq!(framing, Framing::Length(10));
        let (head, framing) =
            response_head(&response(200, &[("Content-Length", "10")]), true, Plan::None, false, false).unwrap();
        assert_eq!((framing, head.contains("Content-Length: 10")), (Framing::Empty, true), "HEAD keeps the length");
        let (head, framing) = response_head(&response(204, &[]), false, Plan::Streamed, false, false).unwrap();
        assert_eq!((framing, head.contains("Content-Length")), (Framing::Empty, false));
        let mut described = response(418, &[]);
        described.status_description = Some("I'm a\r\nteapot".into());
        assert!(
            response_head(&described, false, Plan::None, false, false)
                .unwrap()
                .0
                .starts_with("HTTP/1.1 418 I'm a??teapot\r\n")
        );
        for bad in [100, 101, 199, 600, 0] {
            assert!(response_head(&response(bad, &[]), false, Plan::None, false, false).is_none(), "{bad}");
        }
    }
}
