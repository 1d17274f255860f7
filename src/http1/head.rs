//! HTTP/1.1 heads: request and response heads, header lookup, parsing (from a buffer,
//! for fuzzing and tests) and reading them off a stream within a byte limit, writing
//! heads, and the plain error answers every server part of hyco gives.

use std::fmt;
use std::io;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The most header lines a request or response may carry.
pub const MAX_HEADER_COUNT: usize = 128;

/// The longest reason phrase we write into a status line.
pub(crate) const MAX_REASON_LEN: usize = 512;

/// A header list in arrival order, names as the peer spelled them.
pub type Headers = Vec<(String, String)>;

/// Why a head could not be read.
#[derive(Debug)]
pub enum HeadError {
    Io(io::Error),
    /// The peer closed the connection before the head ended.
    Closed,
    /// The head exceeded the byte limit or [`MAX_HEADER_COUNT`].
    TooLarge,
    /// Not a parseable HTTP message.
    Malformed(String),
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "{e}"),
            Self::Closed => f.write_str("connection closed during the handshake"),
            Self::TooLarge => f.write_str("handshake headers too large"),
            Self::Malformed(why) => write!(f, "malformed handshake: {why}"),
        }
    }
}

impl std::error::Error for HeadError {}

impl From<io::Error> for HeadError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// An HTTP request head as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The request target as sent: path and query, still percent-encoded.
    pub target: String,
    /// The minor version: 1 for HTTP/1.1, 0 for HTTP/1.0.
    pub version: u8,
    pub headers: Headers,
}

/// An HTTP response head as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// The minor version: 1 for HTTP/1.1, 0 for HTTP/1.0.
    pub version: u8,
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
pub fn has_token(value: Option<&str>, token: &str) -> bool {
    value.is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

fn owned_headers(raw: &[httparse::Header<'_>]) -> Result<Headers, HeadError> {
    raw.iter()
        .map(|h| {
            let value = std::str::from_utf8(h.value)
                .map_err(|_| HeadError::Malformed(format!("header {} is not UTF-8", h.name)))?;
            Ok((h.name.to_owned(), value.to_owned()))
        })
        .collect()
}

fn map_parse_error(e: httparse::Error) -> HeadError {
    match e {
        httparse::Error::TooManyHeaders => HeadError::TooLarge,
        other => HeadError::Malformed(other.to_string()),
    }
}

/// Parses a request head from the front of `buf`: `Ok(None)` if incomplete, else the
/// request and the number of bytes it took. HTTP/1.1 and HTTP/1.0 (what a WebSocket
/// upgrade needs is [`crate::ws::handshake`]'s to check). Every line must end in CR LF: a
/// bare LF, which RFC 9112 2.2 lets a server take, is refused, since a proxy in front that
/// reads the head differently could be made to pass a second request (smuggling).
pub fn parse_request(buf: &[u8]) -> Result<Option<(Request, usize)>, HeadError> {
    let mut raw = [httparse::EMPTY_HEADER; MAX_HEADER_COUNT];
    let mut req = httparse::Request::new(&mut raw);
    match req.parse(buf).map_err(map_parse_error)? {
        httparse::Status::Partial => Ok(None),
        httparse::Status::Complete(n) => {
            if buf[..n].iter().enumerate().any(|(i, &b)| b == b'\n' && (i == 0 || buf[i - 1] != b'\r')) {
                return Err(HeadError::Malformed("a line ends in a bare LF".into()));
            }
            let request = Request {
                method: req.method.unwrap_or_default().to_owned(),
                target: req.path.unwrap_or_default().to_owned(),
                version: req.version.unwrap_or_default(),
                headers: owned_headers(req.headers)?,
            };
            Ok(Some((request, n)))
        }
    }
}

/// Parses a response head from the front of `buf`, like [`parse_request`].
pub fn parse_response(buf: &[u8]) -> Result<Option<(Response, usize)>, HeadError> {
    let mut raw = [httparse::EMPTY_HEADER; MAX_HEADER_COUNT];
    let mut resp = httparse::Response::new(&mut raw);
    match resp.parse(buf).map_err(map_parse_error)? {
        httparse::Status::Partial => Ok(None),
        httparse::Status::Complete(n) => Ok(Some((
            Response {
                status: resp.code.unwrap_or_default(),
                version: resp.version.unwrap_or_default(),
                reason: resp.reason.unwrap_or_default().to_owned(),
                headers: owned_headers(resp.headers)?,
            },
            n,
        ))),
    }
}

/// A head parser: `Ok(None)` while incomplete, else the head and its length.
pub(crate) type HeadParser<T> = fn(&[u8]) -> Result<Option<(T, usize)>, HeadError>;

/// Reads a head of at most `limit` bytes with `parse` straight off an unbuffered stream;
/// returns it and any bytes that arrived after it (the first frames of a WebSocket peer
/// that did not wait, or the start of a body).
pub(crate) async fn read_raw_head<S, T>(
    stream: &mut S,
    limit: usize,
    parse: HeadParser<T>,
) -> Result<(T, Vec<u8>), HeadError>
where
    S: AsyncRead + Unpin,
{
    let mut buf = Vec::with_capacity(1024.min(limit));
    loop {
        if let Some((head, n)) = parse(&buf)? {
            return Ok((head, buf.split_off(n)));
        }
        if buf.len() >= limit {
            return Err(HeadError::TooLarge);
        }
        let room = (limit - buf.len()).min(4096);
        let start = buf.len();
        buf.resize(start + room, 0);
        let n = stream.read(&mut buf[start..]).await?;
        buf.truncate(start + n);
        if n == 0 {
            return Err(HeadError::Closed);
        }
    }
}

/// Reads one request head of at most `limit` bytes off an unbuffered stream; returns it
/// and the bytes that followed it.
pub async fn read_request<S: AsyncRead + Unpin>(stream: &mut S, limit: usize) -> Result<(Request, Vec<u8>), HeadError> {
    read_raw_head(stream, limit, parse_request).await
}

/// Reads a head of at most `limit` bytes through a buffered reader with `parse`, leaving
/// what follows it (the body) unread.
async fn read_buffered_head<R, T>(r: &mut R, limit: usize, parse: HeadParser<T>) -> Result<T, HeadError>
where
    R: AsyncBufRead + Unpin,
{
    let mut head = Vec::new();
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return Err(HeadError::Closed);
        }
        let old = head.len();
        head.extend_from_slice(buf);
        let from = old.saturating_sub(3);
        let end = head[from..].windows(4).position(|w| w == b"\r\n\r\n").map(|i| from + i + 4);
        let taken = end.unwrap_or(head.len()) - old;
        r.consume(taken);
        head.truncate(old + taken);
        if head.len() > limit {
            return Err(HeadError::TooLarge);
        }
        if end.is_some() {
            return match parse(&head)? {
                Some((parsed, _)) => Ok(parsed),
                None => Err(HeadError::Malformed("incomplete head".into())),
            };
        }
    }
}

/// Reads a response head of at most `limit` bytes, leaving the body unread.
pub async fn read_response_head<R: AsyncBufRead + Unpin>(r: &mut R, limit: usize) -> Result<Response, HeadError> {
    read_buffered_head(r, limit, parse_response).await
}

/// Reads a request head of at most `limit` bytes, leaving the body unread.
pub async fn read_request_head<R: AsyncBufRead + Unpin>(r: &mut R, limit: usize) -> Result<Request, HeadError> {
    read_buffered_head(r, limit, parse_request).await
}

/// The standard reason phrase of a status, or `""`.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

/// A head: the start line, then each header, then the empty line.
pub fn head(start_line: &str, headers: &[(String, String)]) -> String {
    let mut out = String::with_capacity(
        start_line.len() + 2 + headers.iter().map(|(n, v)| n.len() + v.len() + 4).sum::<usize>() + 2,
    );
    out.push_str(start_line);
    out.push_str("\r\n");
    for (n, v) in headers {
        out.push_str(n);
        out.push_str(": ");
        out.push_str(v);
        out.push_str("\r\n");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_text_cannot_inject_lines() {
        let out = error_response(502, "refused\r\nSet-Cookie: x");
        assert!(out.starts_with("HTTP/1.1 502 refused??Set-Cookie: x\r\n"));
    }

    #[test]
    fn http_1_0_is_read_and_bare_lf_is_refused() {
        let (req, n) = parse_request(b"GET /x HTTP/1.0\r\nHost: h\r\n\r\nbody").unwrap().unwrap();
        assert_eq!((req.version, req.target.as_str(), n), (0, "/x", 28));
        let (req, _) = parse_request(b"GET /x HTTP/1.1\r\n\r\n").unwrap().unwrap();
        assert_eq!(req.version, 1);
        for bare in [
            &b"GET /x HTTP/1.1\nHost: h\n\n"[..],
            b"GET /x HTTP/1.1\r\nHost: h\nX: 1\r\n\r\n",
            b"GET /x HTTP/1.1\r\nHost: h\r\n\n",
        ] {
            assert!(matches!(parse_request(bare), Err(HeadError::Malformed(_))), "{:?}", String::from_utf8_lossy(bare));
        }
        assert!(parse_request(b"GET /x HTTP/2.0\r\n\r\n").is_err());
    }

    #[tokio::test]
    async fn oversize_head_is_refused() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        tokio::spawn(async move {
            let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(10_000));
            let _ = a.write_all(big.as_bytes()).await;
        });
        assert!(matches!(read_request(&mut b, 4096).await, Err(HeadError::TooLarge)));
    }

    #[tokio::test]
    async fn response_heads_read_through_a_small_buffer() {
        let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: 1\r\n\r\nhiNEXT";
        let mut r = tokio::io::BufReader::with_capacity(4, &wire[..]);
        let resp = read_response_head(&mut r, 1024).await.unwrap();
        assert_eq!((resp.status, header(&resp.headers, "Content-Length")), (200, Some("2")));
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"hiNEXT");
        let mut r = tokio::io::BufReader::with_capacity(4, &wire[..]);
        assert!(matches!(read_response_head(&mut r, 20).await, Err(HeadError::TooLarge)));
    }
}
