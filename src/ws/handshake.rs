//! The HTTP/1.1 upgrade handshake, both roles (RFC 6455 section 4), over any
//! `AsyncRead + AsyncWrite`. Parsing is split from I/O so it can be fuzzed and tested
//! without a socket. It decides nothing about Hybrid Connections; the relay does.

use std::fmt;
use std::io;

use base64::Engine as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The most header lines a request or response may carry.
pub const MAX_HEADER_COUNT: usize = 128;

/// The longest reason phrase we write into a status line.
pub const MAX_REASON_LEN: usize = 512;

/// A header list in arrival order, names as the peer spelled them.
pub type Headers = Vec<(String, String)>;

/// Why a handshake failed before either side could answer.
#[derive(Debug)]
pub enum HandshakeError {
    Io(io::Error),
    /// The peer closed the connection before the header block ended.
    Closed,
    /// The header block exceeded the byte limit or [`MAX_HEADER_COUNT`].
    TooLarge,
    /// Not a parseable HTTP message.
    Malformed(String),
    /// The server answered with something other than 101 (client role).
    Rejected {
        status: u16,
        reason: String,
    },
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "{e}"),
            Self::Closed => f.write_str("connection closed during the handshake"),
            Self::TooLarge => f.write_str("handshake headers too large"),
            Self::Malformed(why) => write!(f, "malformed handshake: {why}"),
            Self::Rejected { status, reason } => write!(f, "{status} {reason}"),
        }
    }
}

impl std::error::Error for HandshakeError {}

impl From<io::Error> for HandshakeError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// An HTTP request as the relay received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The request target as sent: path and query, still percent-encoded.
    pub target: String,
    pub headers: Headers,
}

/// An HTTP response as a client received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Headers,
}

/// The first value of a header, by case-insensitive name.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// How many times a header occurs.
pub fn header_count(headers: &[(String, String)], name: &str) -> usize {
    headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).count()
}

/// Whether a comma-separated header holds `token` (case-insensitive).
fn has_token(value: Option<&str>, token: &str) -> bool {
    value.is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

fn owned_headers(raw: &[httparse::Header<'_>]) -> Result<Headers, HandshakeError> {
    raw.iter()
        .map(|h| {
            let value = std::str::from_utf8(h.value)
                .map_err(|_| HandshakeError::Malformed(format!("header {} is not UTF-8", h.name)))?;
            Ok((h.name.to_owned(), value.to_owned()))
        })
        .collect()
}

fn map_parse_error(e: httparse::Error) -> HandshakeError {
    match e {
        httparse::Error::TooManyHeaders => HandshakeError::TooLarge,
        other => HandshakeError::Malformed(other.to_string()),
    }
}

/// Parses a request head from the front of `buf`: `Ok(None)` if incomplete, else the
/// request and the number of bytes it took.
pub fn parse_request(buf: &[u8]) -> Result<Option<(Request, usize)>, HandshakeError> {
    let mut raw = [httparse::EMPTY_HEADER; MAX_HEADER_COUNT];
    let mut req = httparse::Request::new(&mut raw);
    match req.parse(buf).map_err(map_parse_error)? {
        httparse::Status::Partial => Ok(None),
        httparse::Status::Complete(n) => {
            if req.version != Some(1) {
                return Err(HandshakeError::Malformed("HTTP/1.1 required".into()));
            }
            let request = Request {
                method: req.method.unwrap_or_default().to_owned(),
                target: req.path.unwrap_or_default().to_owned(),
                headers: owned_headers(req.headers)?,
            };
            Ok(Some((request, n)))
        }
    }
}

/// Parses a response head from the front of `buf`, like [`parse_request`].
pub fn parse_response(buf: &[u8]) -> Result<Option<(Response, usize)>, HandshakeError> {
    let mut raw = [httparse::EMPTY_HEADER; MAX_HEADER_COUNT];
    let mut resp = httparse::Response::new(&mut raw);
    match resp.parse(buf).map_err(map_parse_error)? {
        httparse::Status::Partial => Ok(None),
        httparse::Status::Complete(n) => Ok(Some((
            Response {
                status: resp.code.unwrap_or_default(),
                reason: resp.reason.unwrap_or_default().to_owned(),
                headers: owned_headers(resp.headers)?,
            },
            n,
        ))),
    }
}

/// A head parser: `Ok(None)` while incomplete, else the head and its length.
type HeadParser<T> = fn(&[u8]) -> Result<Option<(T, usize)>, HandshakeError>;

/// Reads a head of at most `limit` bytes with `parse`; returns it and any bytes that
/// arrived after it (the first frames of the peer, if it did not wait).
async fn read_head<S, T>(stream: &mut S, limit: usize, parse: HeadParser<T>) -> Result<(T, Vec<u8>), HandshakeError>
where
    S: AsyncRead + Unpin,
{
    let mut buf = Vec::with_capacity(1024.min(limit));
    loop {
        if let Some((head, n)) = parse(&buf)? {
            return Ok((head, buf.split_off(n)));
        }
        if buf.len() >= limit {
            return Err(HandshakeError::TooLarge);
        }
        let room = (limit - buf.len()).min(4096);
        let start = buf.len();
        buf.resize(start + room, 0);
        let n = stream.read(&mut buf[start..]).await?;
        buf.truncate(start + n);
        if n == 0 {
            return Err(HandshakeError::Closed);
        }
    }
}

/// Reads one request head of at most `limit` bytes.
pub async fn read_request<S: AsyncRead + Unpin>(
    stream: &mut S,
    limit: usize,
) -> Result<(Request, Vec<u8>), HandshakeError> {
    read_head(stream, limit, parse_request).await
}

/// Checks that `req` is a WebSocket upgrade and returns its `Sec-WebSocket-Key`.
pub fn websocket_key(req: &Request) -> Result<&str, &'static str> {
    if req.method != "GET" {
        return Err("method must be GET");
    }
    if !has_token(header(&req.headers, "Upgrade"), "websocket") {
        return Err("missing Upgrade: websocket");
    }
    if !req.headers.iter().any(|(n, v)| n.eq_ignore_ascii_case("Connection") && has_token(Some(v), "upgrade")) {
        return Err("missing Connection: Upgrade");
    }
    if header_count(&req.headers, "Sec-WebSocket-Version") != 1
        || header(&req.headers, "Sec-WebSocket-Version").map(str::trim) != Some("13")
    {
        return Err("Sec-WebSocket-Version must be 13");
    }
    if header_count(&req.headers, "Sec-WebSocket-Key") != 1 {
        return Err("exactly one Sec-WebSocket-Key required");
    }
    let key = header(&req.headers, "Sec-WebSocket-Key").unwrap_or_default().trim();
    match base64::engine::general_purpose::STANDARD.decode(key) {
        Ok(raw) if raw.len() == 16 => Ok(key),
        _ => Err("Sec-WebSocket-Key must be 16 bytes in base64"),
    }
}

/// The `Sec-WebSocket-Accept` value for a key.
pub fn accept_key(key: &str) -> String {
    tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes())
}

/// The 101 answer to an upgrade, with the chosen subprotocol if any.
pub fn switching_protocols(key: &str, protocol: Option<&str>) -> String {
    let mut out = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
        accept_key(key)
    );
    if let Some(p) = protocol {
        out.push_str(&format!("Sec-WebSocket-Protocol: {}\r\n", sanitize(p)));
    }
    out.push_str("\r\n");
    out
}

/// Keeps visible ASCII and spaces, so peer-chosen text cannot break the status line.
pub fn sanitize(text: &str) -> String {
    let mut out: String = text.chars().map(|c| if c == ' ' || c.is_ascii_graphic() { c } else { '?' }).collect();
    out.truncate(MAX_REASON_LEN);
    out
}

/// An error answer: the text goes in the status line (where the official clients read
/// it) and in a short body for people with curl.
pub fn error_response(status: u16, text: &str) -> String {
    let text = sanitize(text);
    format!(
        "HTTP/1.1 {status} {text}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}\n",
        text.len() + 1
    )
}

/// Writes an error answer and shuts the write side; errors are ignored, since the peer
/// may already be gone.
pub async fn reject<S: AsyncWrite + Unpin>(stream: &mut S, status: u16, text: &str) {
    let _ = stream.write_all(error_response(status, text).as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Client role: sends an upgrade request for `target` on `host` with extra `headers`, and
/// reads the answer (at most `limit` bytes). Returns the 101 response and any bytes that
/// followed it; any other status is [`HandshakeError::Rejected`].
pub async fn client<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    host: &str,
    target: &str,
    headers: &[(String, String)],
    limit: usize,
) -> Result<(Response, Vec<u8>), HandshakeError> {
    let key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>());
    let mut req = format!(
        "GET {target} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    );
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await?;
    let (resp, rest) = read_head(stream, limit, parse_response).await?;
    if resp.status != 101 {
        return Err(HandshakeError::Rejected { status: resp.status, reason: resp.reason });
    }
    if header(&resp.headers, "Sec-WebSocket-Accept").map(str::trim) != Some(accept_key(&key).as_str()) {
        return Err(HandshakeError::Malformed("wrong Sec-WebSocket-Accept".into()));
    }
    Ok((resp, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPGRADE: &str = "GET /$hc/a?sb-hc-action=connect HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

    #[test]
    fn rfc_accept_key() {
        assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn parses_an_upgrade_and_its_key() {
        let (req, n) = parse_request(UPGRADE.as_bytes()).unwrap().unwrap();
        assert_eq!(n, UPGRADE.len());
        assert_eq!(req.target, "/$hc/a?sb-hc-action=connect");
        assert_eq!(websocket_key(&req), Ok("dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(parse_request(&UPGRADE.as_bytes()[..40]).unwrap().is_none());
    }

    #[test]
    fn rejects_bad_upgrades() {
        let dup = UPGRADE
            .replace("Sec-WebSocket-Version", "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\nSec-WebSocket-Version");
        let (req, _) = parse_request(dup.as_bytes()).unwrap().unwrap();
        assert!(websocket_key(&req).is_err());
        let no_upgrade = UPGRADE.replace("Upgrade: websocket\r\n", "");
        let (req, _) = parse_request(no_upgrade.as_bytes()).unwrap().unwrap();
        assert!(websocket_key(&req).is_err());
        let short_key = UPGRADE.replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ=");
        let (req, _) = parse_request(short_key.as_bytes()).unwrap().unwrap();
        assert!(websocket_key(&req).is_err());
        assert!(parse_request(b"GET / HTTP/1.0\r\n\r\n").is_err());
        assert!(parse_request(b"\x00\x01garbage\r\n\r\n").is_err());
    }

    #[test]
    fn status_text_cannot_inject_lines() {
        let out = error_response(502, "refused\r\nSet-Cookie: x");
        assert!(out.starts_with("HTTP/1.1 502 refused??Set-Cookie: x\r\n"));
    }

    #[tokio::test]
    async fn client_and_server_meet_over_a_duplex() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let server = tokio::spawn(async move {
            let (req, rest) = read_request(&mut b, 8192).await.unwrap();
            assert!(rest.is_empty());
            assert_eq!(header(&req.headers, "x-app"), Some("1"));
            let key = websocket_key(&req).unwrap().to_owned();
            b.write_all(switching_protocols(&key, Some("p1")).as_bytes()).await.unwrap();
            b.write_all(b"\x82\x00").await.unwrap();
        });
        let (resp, rest) = client(&mut a, "x", "/t", &[("X-App".into(), "1".into())], 8192).await.unwrap();
        assert_eq!(header(&resp.headers, "Sec-WebSocket-Protocol"), Some("p1"));
        server.await.unwrap();
        let mut more = rest;
        while more.len() < 2 {
            let mut b = [0; 2];
            let n = a.read(&mut b).await.unwrap();
            more.extend_from_slice(&b[..n]);
        }
        assert_eq!(more, b"\x82\x00");
    }

    #[tokio::test]
    async fn oversize_head_is_refused() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        tokio::spawn(async move {
            let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(10_000));
            let _ = a.write_all(big.as_bytes()).await;
        });
        assert!(matches!(read_request(&mut b, 4096).await, Err(HandshakeError::TooLarge)));
    }

    #[tokio::test]
    async fn client_sees_rejection_text() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        tokio::spawn(async move {
            let _ = read_request(&mut b, 8192).await;
            reject(&mut b, 502, "connection to 127.0.0.1:22 refused").await;
        });
        match client(&mut a, "x", "/", &[], 8192).await {
            Err(HandshakeError::Rejected { status, reason }) => {
                assert_eq!(status, 502);
                assert_eq!(reason, "connection to 127.0.0.1:22 refused");
            }
            other => panic!("{other:?}"),
        }
    }
}
