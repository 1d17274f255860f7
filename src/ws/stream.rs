//! Frame-level reading and writing over a byte stream, for the data path.
//!
//! Unlike a message-level WebSocket library, nothing here answers a Close by itself, so
//! each direction of a tunnel can end on its own (half-close, docs/protocol.md 5.3). Payloads
//! are streamed in pieces: memory per connection is the caller's buffer, whatever the
//! frame size.

use std::io;
use std::pin::Pin;
use std::task::Poll;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::frame::{CloseFrame, FrameError, FrameHeader, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN, OpCode, apply_mask};

/// Which end of the WebSocket we are: clients mask what they send, servers do not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Client,
    Server,
}

/// Bytes the reader takes per read while looking for a header: the longest header and
/// the start of its payload, so a small frame often arrives in one read. This is all a
/// reader holds between frames; payloads go straight into the caller's buffer.
const HEAD_BUF: usize = 2 * MAX_HEADER_LEN + 4;

fn invalid(e: FrameError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Bytes read past the handshake, not yet handed out.
struct Early {
    bytes: Vec<u8>,
    at: usize,
}

impl Early {
    /// Copies what is left into `out`; `None` once it is all gone (the memory is freed then).
    fn take(&mut self, out: &mut [u8]) -> Option<usize> {
        if self.at == self.bytes.len() {
            return None;
        }
        let n = out.len().min(self.bytes.len() - self.at);
        out[..n].copy_from_slice(&self.bytes[self.at..self.at + n]);
        self.at += n;
        if self.at == self.bytes.len() {
            *self = Self { bytes: Vec::new(), at: 0 };
        }
        Some(n)
    }
}

/// Reads frames: a header, then its payload in pieces, unmasked.
pub struct FrameReader<R> {
    inner: R,
    /// Bytes that arrived with the handshake, handed out before any read (usually none).
    early: Early,
    head: [u8; HEAD_BUF],
    start: usize,
    end: usize,
    /// Payload bytes of the current frame not yet handed out.
    remaining: u64,
    mask: Option<[u8; 4]>,
    offset: u64,
    role: Role,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// `initial` holds bytes that arrived with the handshake.
    pub fn new(inner: R, initial: &[u8], role: Role) -> Self {
        Self {
            inner,
            early: Early { bytes: initial.to_vec(), at: 0 },
            head: [0; HEAD_BUF],
            start: 0,
            end: 0,
            remaining: 0,
            mask: None,
            offset: 0,
            role,
        }
    }

    /// Reads the next frame header. `Ok(None)` is a clean end of stream between frames;
    /// an end inside a frame is `UnexpectedEof`. The previous frame's payload must have
    /// been read to the end first.
    pub async fn header(&mut self) -> io::Result<Option<FrameHeader>> {
        debug_assert_eq!(self.remaining, 0, "payload not drained");
        loop {
            if let Some((h, n)) = FrameHeader::parse(&self.head[self.start..self.end]).map_err(invalid)? {
                self.start += n;
                let masked = h.mask.is_some();
                if masked != (self.role == Role::Server) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        if masked { "masked frame from a server" } else { "unmasked frame from a client" },
                    ));
                }
                self.remaining = h.len;
                self.mask = h.mask;
                self.offset = 0;
                return Ok(Some(h));
            }
            if self.start > 0 {
                self.head.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            let space = &mut self.head[self.end..];
            let n = match self.early.take(space) {
                Some(n) => n,
                None => self.inner.read(space).await?,
            };
            if n == 0 {
                return if self.end == 0 { Ok(None) } else { Err(io::ErrorKind::UnexpectedEof.into()) };
            }
            self.end += n;
        }
    }

    /// Payload bytes of the current frame still to read.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Reads up to `out.len()` payload bytes of the current frame, unmasked. Returns 0
    /// when the frame's payload is complete.
    pub async fn payload(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let want = out.len().min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = if self.start < self.end {
            let mut n = want.min(self.end - self.start);
            out[..n].copy_from_slice(&self.head[self.start..self.start + n]);
            self.start += n;
            if self.start == self.end {
                (self.start, self.end) = (0, 0);
                // Add what the stream already has, so that the caller does not pass the
                // few bytes that came with the header on as a piece of their own.
                // An error shows again on the next read.
                if n < want
                    && self.early.at == self.early.bytes.len()
                    && let Some(Ok(more)) = try_read(&mut self.inner, &mut out[n..want]).await
                {
                    n += more;
                }
            }
            n
        } else {
            let n = match self.early.take(&mut out[..want]) {
                Some(n) => n,
                None => self.inner.read(&mut out[..want]).await?,
            };
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            n
        };
        if let Some(mask) = self.mask {
            apply_mask(&mut out[..n], mask, self.offset);
        }
        self.offset += n as u64;
        self.remaining -= n as u64;
        Ok(n)
    }

    /// Reads a whole control frame payload (at most 125 bytes).
    pub async fn control_payload(&mut self) -> io::Result<Vec<u8>> {
        let mut out = vec![0; self.remaining as usize];
        debug_assert!(out.len() <= MAX_CONTROL_PAYLOAD);
        let mut at = 0;
        while at < out.len() {
            at += self.payload(&mut out[at..]).await?;
        }
        Ok(out)
    }

    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }
}

/// Reads what `inner` has at hand without waiting: `None` if it would have to wait.
pub async fn try_read<R: AsyncRead + Unpin>(inner: &mut R, out: &mut [u8]) -> Option<io::Result<usize>> {
    std::future::poll_fn(|cx| {
        let mut buf = ReadBuf::new(out);
        match Pin::new(&mut *inner).poll_read(cx, &mut buf) {
            Poll::Pending => Poll::Ready(None),
            Poll::Ready(r) => Poll::Ready(Some(r.map(|()| buf.filled().len()))),
        }
    })
    .await
}

/// Writes frames, masking them in place in the client role.
pub struct FrameWriter<W> {
    inner: W,
    role: Role,
    /// The mask and payload offset of a frame whose payload is still being written.
    mask: Option<[u8; 4]>,
    offset: u64,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    pub fn new(inner: W, role: Role) -> Self {
        Self { inner, role, mask: None, offset: 0 }
    }

    /// Sends a frame header followed by the first `len` payload bytes, which the caller
    /// placed at `buf[MAX_HEADER_LEN..]` so that header and data go out in one write.
    /// With `len < header.len` the rest follows through [`FrameWriter::continue_payload`].
    /// The header's mask is replaced by this writer's own.
    pub async fn send_with_header(&mut self, mut header: FrameHeader, buf: &mut [u8], len: usize) -> io::Result<()> {
        header.mask = (self.role == Role::Client).then(rand::random);
        self.mask = header.mask;
        self.offset = 0;
        let mut head = [0; MAX_HEADER_LEN];
        let n = header.encode(&mut head);
        let from = MAX_HEADER_LEN - n;
        buf[from..MAX_HEADER_LEN].copy_from_slice(&head[..n]);
        self.mask_payload(&mut buf[MAX_HEADER_LEN..MAX_HEADER_LEN + len]);
        self.inner.write_all(&buf[from..MAX_HEADER_LEN + len]).await
    }

    /// Sends more payload of the frame begun by [`FrameWriter::send_with_header`].
    pub async fn continue_payload(&mut self, payload: &mut [u8]) -> io::Result<()> {
        self.mask_payload(payload);
        self.inner.write_all(payload).await
    }

    fn mask_payload(&mut self, payload: &mut [u8]) {
        if let Some(mask) = self.mask {
            apply_mask(payload, mask, self.offset);
        }
        self.offset += payload.len() as u64;
    }

    /// Sends one whole frame with a short payload (control frames, small messages).
    pub async fn send(&mut self, opcode: OpCode, payload: &[u8]) -> io::Result<()> {
        let mut buf = vec![0; MAX_HEADER_LEN + payload.len()];
        buf[MAX_HEADER_LEN..].copy_from_slice(payload);
        let header = FrameHeader { fin: true, opcode, mask: None, len: payload.len() as u64 };
        self.send_with_header(header, &mut buf, payload.len()).await
    }

    /// Sends a Close frame; `None` sends one with no status.
    pub async fn send_close(&mut self, close: Option<&CloseFrame>) -> io::Result<()> {
        let payload = close.map(CloseFrame::to_payload).unwrap_or_default();
        self.send(OpCode::Close, &payload).await?;
        self.inner.flush().await
    }

    pub async fn flush(&mut self) -> io::Result<()> {
        self.inner.flush().await
    }

    /// Shuts the underlying stream's write side (TCP FIN, or TLS close_notify).
    pub async fn shutdown(&mut self) -> io::Result<()> {
        self.inner.shutdown().await
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn client_frames_reach_a_server_reader_in_pieces() {
        let (a, b) = tokio::io::duplex(37);
        let writer = tokio::spawn(async move {
            let mut w = FrameWriter::new(a, Role::Client);
            let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
            let header = FrameHeader { fin: true, opcode: OpCode::Binary, mask: None, len: data.len() as u64 };
            let mut buf = vec![0; MAX_HEADER_LEN + 1000];
            buf[MAX_HEADER_LEN..].copy_from_slice(&data[..1000]);
            w.send_with_header(header, &mut buf, 1000).await.unwrap();
            let mut rest = data[1000..].to_vec();
            w.continue_payload(&mut rest).await.unwrap();
            w.send(OpCode::Ping, b"hi").await.unwrap();
            w.send_close(Some(&CloseFrame::new(1000, "done"))).await.unwrap();
        });
        let mut r = FrameReader::new(b, &[], Role::Server);
        let h = r.header().await.unwrap().unwrap();
        assert_eq!((h.opcode, h.len), (OpCode::Binary, 100_000));
        let mut got = Vec::new();
        let mut chunk = [0; 333];
        loop {
            let n = r.payload(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&chunk[..n]);
        }
        assert!(got.iter().enumerate().all(|(i, b)| *b == i as u8));
        let h = r.header().await.unwrap().unwrap();
        assert_eq!(h.opcode, OpCode::Ping);
        assert_eq!(r.control_payload().await.unwrap(), b"hi");
        let h = r.header().await.unwrap().unwrap();
        assert_eq!(h.opcode, OpCode::Close);
        let close = CloseFrame::parse(&r.control_payload().await.unwrap()).unwrap();
        assert_eq!(close, Some(CloseFrame::new(1000, "done")));
        writer.await.unwrap();
        assert!(r.header().await.unwrap().is_none(), "clean end after the last frame");
    }

    #[tokio::test]
    async fn unmasked_client_frame_and_truncated_frame_are_errors() {
        let mut r = FrameReader::new(&b"\x82\x01x"[..], &[], Role::Server);
        assert_eq!(r.header().await.unwrap_err().kind(), io::ErrorKind::InvalidData);
        let mut r = FrameReader::new(&b"\x82\x05ab"[..], &[], Role::Client);
        r.header().await.unwrap().unwrap();
        let mut out = [0; 8];
        assert_eq!(r.payload(&mut out).await.unwrap(), 2);
        assert_eq!(r.payload(&mut out).await.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        let mut r = FrameReader::new(&b"\x82"[..], &[], Role::Client);
        assert_eq!(r.header().await.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn many_frames_from_the_handshake_then_the_stream() {
        // More than the reader's header buffer arrives with the handshake: three frames
        // and the start of a fourth, whose rest comes from the stream.
        let mut wire = Vec::new();
        for i in 0..4u8 {
            wire.extend_from_slice(&[0x82, 100]);
            wire.extend(std::iter::repeat_n(i, 100));
        }
        let (initial, rest) = wire.split_at(350);
        let mut r = FrameReader::new(rest, initial, Role::Client);
        for i in 0..4u8 {
            assert_eq!(r.header().await.unwrap().unwrap().len, 100);
            let mut out = [0; 100];
            let mut at = 0;
            while at < 100 {
                at += r.payload(&mut out[at..]).await.unwrap();
            }
            assert!(out.iter().all(|b| *b == i), "frame {i}");
        }
        assert!(r.header().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn bytes_from_the_handshake_are_read_first() {
        let mut r = FrameReader::new(&b"cd"[..], b"\x82\x04ab", Role::Client);
        assert_eq!(r.header().await.unwrap().unwrap().len, 4);
        let mut out = [0; 4];
        let mut at = 0;
        while at < 4 {
            at += r.payload(&mut out[at..]).await.unwrap();
        }
        assert_eq!(&out, b"abcd");
    }
}
