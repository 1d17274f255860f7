//! HTTP/1.1 bodies: how a message's body is delimited (and the shapes refused as request
//! smuggling), reading `Content-Length`, chunked and until-close bodies piece by piece in
//! bounded memory, and writing chunks.

use std::io;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::head::{Headers, header};

/// The longest chunk-size line (size, extensions, CRLF) a chunked body may have.
pub const MAX_CHUNK_LINE: usize = 4096;
/// The most bytes of trailer fields after the last chunk (they are read and dropped).
pub const MAX_TRAILERS: usize = 16 * 1024;

/// How a message body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body at all.
    Empty,
    Length(u64),
    Chunked,
    /// Until the connection closes (responses only).
    UntilClose,
}

/// A message whose body length cannot be told safely (a request-smuggling shape): 400.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FramingError {
    /// `Content-Length` values that differ, or are not decimal digits.
    BadLength,
    /// Both `Content-Length` and `Transfer-Encoding`.
    Conflicting,
    /// A transfer coding other than a final `chunked`.
    UnsupportedCoding,
}

impl std::fmt::Display for FramingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::BadLength => "invalid Content-Length",
            Self::Conflicting => "both Content-Length and Transfer-Encoding",
            Self::UnsupportedCoding => "unsupported Transfer-Encoding",
        })
    }
}

impl std::error::Error for FramingError {}

fn framing(headers: &[(String, String)], otherwise: Framing) -> Result<Framing, FramingError> {
    let codings: Vec<String> = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("Transfer-Encoding"))
        .flat_map(|(_, v)| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    let lengths: Vec<&str> = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("Content-Length"))
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .collect();
    if !codings.is_empty() {
        if !lengths.is_empty() {
            return Err(FramingError::Conflicting);
        }
        // Only `chunked` is understood; it must come last and only once.
        return match codings.iter().map(String::as_str).collect::<Vec<_>>()[..] {
            ["chunked"] => Ok(Framing::Chunked),
            _ => Err(FramingError::UnsupportedCoding),
        };
    }
    let Some(first) = lengths.first() else { return Ok(otherwise) };
    if lengths.iter().any(|l| l != first) || first.is_empty() || !first.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FramingError::BadLength);
    }
    first.parse().map(Framing::Length).map_err(|_| FramingError::BadLength)
}

/// How a request's body is delimited (no framing headers: no body).
pub fn request_framing(headers: &[(String, String)]) -> Result<Framing, FramingError> {
    framing(headers, Framing::Empty).map(|f| if f == Framing::Length(0) { Framing::Empty } else { f })
}

/// How a response's body is delimited: none for `HEAD`, 1xx, 204 and 304; else by its
/// headers, or until the connection closes.
pub fn response_framing(
    status: u16,
    head_request: bool,
    headers: &[(String, String)],
) -> Result<Framing, FramingError> {
    if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok(Framing::Empty);
    }
    framing(headers, Framing::UntilClose)
}

/// Writes one chunk of a chunked body (nothing for an empty `data`, which would end it).
pub async fn write_chunk<W: AsyncWrite + Unpin>(w: &mut W, data: &[u8]) -> io::Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    w.write_all(format!("{:x}\r\n", data.len()).as_bytes()).await?;
    w.write_all(data).await?;
    w.write_all(b"\r\n").await
}

/// The last chunk, with no trailers.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// Reads a line ending in LF of at most `limit` bytes (LF included); returns it without
/// the line end. EOF before the LF is `UnexpectedEof`.
async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R, limit: usize) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        if line.len() + take > limit {
            return Err(invalid("line too long"));
        }
        line.extend_from_slice(&buf[..take]);
        r.consume(take);
        if done {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(line);
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Payload bytes left in this piece (a length-delimited body, or the current chunk).
    Data(u64),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    /// The next chunk-size line.
    ChunkSize,
    UntilClose,
    Done,
}

/// Reads a body off a buffered reader in pieces, in the given framing. What follows the
/// body stays unread.
#[derive(Debug)]
pub struct BodyReader {
    state: State,
    chunked: bool,
    read: u64,
}

impl BodyReader {
    pub fn new(framing: Framing) -> Self {
        let (state, chunked) = match framing {
            Framing::Empty | Framing::Length(0) => (State::Done, false),
            Framing::Length(n) => (State::Data(n), false),
            Framing::Chunked => (State::ChunkSize, true),
            Framing::UntilClose => (State::UntilClose, false),
        };
        Self { state, chunked, read: 0 }
    }

    /// Whether the whole body has been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Body bytes handed out so far.
    pub fn read_so_far(&self) -> u64 {
        self.read
    }

    /// Reads body bytes into `out`; 0 means the body is complete (or `out` is empty). An
    /// early end of the connection is `UnexpectedEof`, bad chunked syntax `InvalidData`.
    pub async fn read<R: AsyncBufRead + Unpin>(&mut self, r: &mut R, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            match self.state {
                State::Done => return Ok(0),
                State::Data(left) => {
                    let want = out.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let n = r.read(&mut out[..want]).await?;
                    if n == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    let left = left - n as u64;
                    self.state = match (left, self.chunked) {
                        (0, true) => State::ChunkEnd,
                        (0, false) => State::Done,
                        (left, _) => State::Data(left),
                    };
                    self.read += n as u64;
                    return Ok(n);
                }
                State::UntilClose => {
                    let n = r.read(out).await?;
                    if n == 0 {
                        self.state = State::Done;
                    }
                    self.read += n as u64;
                    return Ok(n);
                }
                State::ChunkEnd => {
                    if !read_line(r, 2).await?.is_empty() {
                        return Err(invalid("chunk data longer than its size"));
                    }
                    self.state = State::ChunkSize;
                }
                State::ChunkSize => {
                    let line = read_line(r, MAX_CHUNK_LINE).await?;
                    let line = std::str::from_utf8(&line).map_err(|_| invalid("chunk size is not text"))?;
                    let size = line.split(';').next().unwrap_or_default().trim();
                    if size.is_empty() || size.len() > 15 || !size.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err(invalid("bad chunk size"));
                    }
                    let size = u64::from_str_radix(size, 16).map_err(|_| invalid("bad chunk size"))?;
                    if size == 0 {
                        // Trailer fields, dropped, then the empty line.
                        let mut total = 0;
                        loop {
                            let line = read_line(r, MAX_CHUNK_LINE).await?;
                            if line.is_empty() {
                                break;
                            }
                            total += line.len() + 2;
                            if total > MAX_TRAILERS {
                                return Err(invalid("trailers too large"));
                            }
                        }
                        self.state = State::Done;
                        return Ok(0);
                    }
                    self.state = State::Data(size);
                }
            }
        }
    }
}

/// The value of `Content-Length` if it is one clean decimal number.
pub fn content_length(headers: &Headers) -> Option<u64> {
    let v = header(headers, "Content-Length")?.trim();
    (!v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())).then(|| v.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Headers {
        pairs.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect()
    }

    async fn read_all(framing: Framing, wire: &[u8]) -> io::Result<(Vec<u8>, Vec<u8>)> {
        // A tiny buffer, so that every boundary falls between reads somewhere.
        let mut r = tokio::io::BufReader::with_capacity(3, wire);
        let mut body = BodyReader::new(framing);
        let mut out = Vec::new();
        let mut buf = [0; 5];
        loop {
            let n = body.read(&mut r, &mut buf).await?;
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        assert!(body.is_done());
        assert_eq!(body.read_so_far(), out.len() as u64);
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).await?;
        Ok((out, rest))
    }

    #[tokio::test]
    async fn bodies_of_every_framing_read_in_pieces() {
        let wire = b"5;ext=1\r\nhello\r\n0B\r\n, chunked!!\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";
        let (body, rest) = read_all(Framing::Chunked, wire).await.unwrap();
        assert_eq!((&body[..], &rest[..]), (&b"hello, chunked!!"[..], &b"NEXT"[..]));
        let (body, rest) = read_all(Framing::Length(4), b"abcdef").await.unwrap();
        assert_eq!((&body[..], &rest[..]), (&b"abcd"[..], &b"ef"[..]));
        let (body, _) = read_all(Framing::UntilClose, b"all of it").await.unwrap();
        assert_eq!(body, b"all of it");
        let (body, rest) = read_all(Framing::Empty, b"x").await.unwrap();
        assert_eq!((&body[..], &rest[..]), (&b""[..], &b"x"[..]));
    }

    #[tokio::test]
    async fn bad_and_short_bodies_are_errors() {
        for (framing, wire, kind) in [
            (Framing::Length(10), &b"short"[..], io::ErrorKind::UnexpectedEof),
            (Framing::Chunked, b"5\r\nhel", io::ErrorKind::UnexpectedEof),
            (Framing::Chunked, b"zz\r\n", io::ErrorKind::InvalidData),
            (Framing::Chunked, b"\r\n", io::ErrorKind::InvalidData),
            (Framing::Chunked, b"-1\r\n", io::ErrorKind::InvalidData),
            (Framing::Chunked, b"fffffffffffffffff\r\n", io::ErrorKind::InvalidData),
            (Framing::Chunked, b"2\r\nabc\r\n0\r\n\r\n", io::ErrorKind::InvalidData),
        ] {
            assert_eq!(read_all(framing, wire).await.unwrap_err().kind(), kind, "{:?}", String::from_utf8_lossy(wire));
        }
        let long = format!("1;{}\r\n", "x".repeat(MAX_CHUNK_LINE));
        assert!(read_all(Framing::Chunked, long.as_bytes()).await.is_err());
        let trailers = format!("0\r\n{}\r\n", "X-T: 1\r\n".repeat(MAX_TRAILERS / 8 + 1));
        assert!(read_all(Framing::Chunked, trailers.as_bytes()).await.is_err());
    }

    #[test]
    fn framing_rules() {
        assert_eq!(request_framing(&h(&[])), Ok(Framing::Empty));
        assert_eq!(request_framing(&h(&[("Content-Length", "0")])), Ok(Framing::Empty));
        assert_eq!(request_framing(&h(&[("content-length", "12")])), Ok(Framing::Length(12)));
        assert_eq!(request_framing(&h(&[("Content-Length", "5, 5")])), Ok(Framing::Length(5)));
        assert_eq!(request_framing(&h(&[("Transfer-Encoding", "Chunked")])), Ok(Framing::Chunked));
        for bad in [
            &[("Content-Length", "5"), ("Content-Length", "6")][..],
            &[("Content-Length", "-1")],
            &[("Content-Length", "+5")],
            &[("Content-Length", "")],
            &[("Content-Length", "99999999999999999999999")],
            &[("Transfer-Encoding", "gzip")],
            &[("Transfer-Encoding", "chunked, gzip")],
            &[("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "chunked")],
            &[("Transfer-Encoding", "chunked"), ("Content-Length", "5")],
        ] {
            assert!(request_framing(&h(bad)).is_err(), "{bad:?}");
        }
        assert_eq!(response_framing(200, false, &h(&[])), Ok(Framing::UntilClose));
        assert_eq!(response_framing(200, true, &h(&[("Content-Length", "9")])), Ok(Framing::Empty));
        assert_eq!(response_framing(204, false, &h(&[("Content-Length", "9")])), Ok(Framing::Empty));
        assert_eq!(response_framing(304, false, &h(&[])), Ok(Framing::Empty));
        assert_eq!(response_framing(200, false, &h(&[("Content-Length", "9")])), Ok(Framing::Length(9)));
    }

    #[tokio::test]
    async fn chunks_are_written_with_their_sizes() {
        let mut chunks = Vec::new();
        write_chunk(&mut chunks, b"abc").await.unwrap();
        write_chunk(&mut chunks, b"").await.unwrap();
        chunks.extend_from_slice(LAST_CHUNK);
        assert_eq!(chunks, b"3\r\nabc\r\n0\r\n\r\n");
    }
}
