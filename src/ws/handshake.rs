//! The WebSocket upgrade handshake, both roles (RFC 6455 section 4), over any
//! `AsyncRead + AsyncWrite`: what makes a request an upgrade, the 101 answer, and the
//! client's request. The HTTP underneath (heads, parsing, error answers) is
//! [`crate::http1`]'s. It decides nothing about Hybrid Connections; the relay does.

use std::fmt;
use std::io;

use base64::Engine as _;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::http1::head::read_raw_head;
use crate::http1::{
    HeadError, Request, Response, has_token, header, header_count, is_field_value, is_request_target, is_token,
    parse_response, sanitize,
};

/// Why a client's upgrade failed.
#[derive(Debug)]
pub enum HandshakeError {
    /// The answer's head could not be read (or the 101 was not one for our key).
    Head(HeadError),
    /// The server answered with something other than 101.
    Rejected { status: u16, reason: String },
    /// What the request was to carry (the target, the host or a header) holds characters
    /// a request line or header cannot: nothing was sent.
    Unsendable(&'static str),
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Head(e) => write!(f, "{e}"),
            Self::Rejected { status, reason } => write!(f, "{status} {reason}"),
            Self::Unsendable(what) => {
                write!(f, "refusing to send a request whose {what} holds characters it cannot carry")
            }
        }
    }
}

impl std::error::Error for HandshakeError {}

impl From<HeadError> for HandshakeError {
    fn from(e: HeadError) -> Self {
        Self::Head(e)
    }
}

impl From<io::Error> for HandshakeError {
    fn from(e: io::Error) -> Self {
        Self::Head(HeadError::Io(e))
    }
}

/// Checks that `req` is a WebSocket upgrade and returns its `Sec-WebSocket-Key`.
pub fn websocket_key(req: &Request) -> Result<&str, &'static str> {
    if req.version != 1 {
        return Err("HTTP/1.1 required");
    }
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
    switching_protocols_with(key, protocol, &[])
}

/// [`switching_protocols`] with more headers (names as given, values sanitized).
pub fn switching_protocols_with(key: &str, protocol: Option<&str>, headers: &[(&str, String)]) -> String {
    let mut out = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
        accept_key(key)
    );
    if let Some(p) = protocol {
        out.push_str(&format!("Sec-WebSocket-Protocol: {}\r\n", sanitize(p)));
    }
    for (name, value) in headers {
        out.push_str(&format!("{name}: {}\r\n", sanitize(value)));
    }
    out.push_str("\r\n");
    out
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
    if !is_request_target(target) {
        return Err(HandshakeError::Unsendable("target"));
    }
    if host.is_empty() || !host.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(HandshakeError::Unsendable("Host header"));
    }
    if !headers.iter().all(|(n, v)| is_token(n) && is_field_value(v)) {
        return Err(HandshakeError::Unsendable("headers"));
    }
    let key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>());
    let mut req = format!(
        "GET {target} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    );
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await?;
    let (resp, rest) = read_raw_head(stream, limit, parse_response).await?;
    if resp.status != 101 {
        return Err(HandshakeError::Rejected { status: resp.status, reason: resp.reason });
    }
    if header(&resp.headers, "Sec-WebSocket-Accept").map(str::trim) != Some(accept_key(&key).as_str()) {
        return Err(HandshakeError::Head(HeadError::Malformed("wrong Sec-WebSocket-Accept".into())));
    }
    Ok((resp, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::{parse_request, read_request, reject};
    use tokio::io::AsyncReadExt;

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
        let http10 = UPGRADE.replace("HTTP/1.1", "HTTP/1.0");
        let (req, _) = parse_request(http10.as_bytes()).unwrap().unwrap();
        assert_eq!(websocket_key(&req), Err("HTTP/1.1 required"), "an upgrade needs HTTP/1.1");
        assert!(parse_request(b"\x00\x01garbage\r\n\r\n").is_err());
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

    #[tokio::test]
    async fn nothing_a_peer_chose_can_add_a_line_to_the_request() {
        let protocol = |v: &str| vec![("Sec-WebSocket-Protocol".to_owned(), v.to_owned())];
        let hostile = [
            ("/$hc/a?sb-hc-id=1\r\nX-Evil: 1", "h", vec![]),
            ("/a b", "h", vec![]),
            ("http://elsewhere/", "h", vec![]),
            ("/a", "h\r\nX-Evil: 1", vec![]),
            ("/a", "h", protocol("p\r\nX-Evil: 1")),
        ];
        for (target, host, headers) in hostile {
            let (mut a, mut b) = tokio::io::duplex(4096);
            let result = client(&mut a, host, target, &headers, 8192).await;
            assert!(matches!(result, Err(HandshakeError::Unsendable(_))), "{target:?} {host:?}: {result:?}");
            drop(a);
            let mut sent = Vec::new();
            b.read_to_end(&mut sent).await.unwrap();
            assert!(sent.is_empty(), "nothing was sent for {target:?}");
        }
        let bad_name = vec![("X Evil".to_owned(), "1".to_owned())];
        let (mut a, _b) = tokio::io::duplex(4096);
        assert!(matches!(client(&mut a, "h", "/a", &bad_name, 8192).await, Err(HandshakeError::Unsendable(_))));
    }
}
