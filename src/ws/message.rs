//! Whole messages over the frame layer, for HTTP mode's rendezvous (docs/protocol.md 7): a
//! text message is read whole (bounded), a binary message is read and written in pieces,
//! fragmented or as one long frame, so a body of any size passes in bounded memory.
//!
//! Ping and Pong frames are skipped, not answered: the peers of an HTTP rendezvous
//! (hyco-https, .NET, hyco) do not ping. A Close ends reading; answering it is the caller's.

use std::io;

use tokio::io::{AsyncRead, AsyncWrite};

use super::frame::{CloseFrame, FrameHeader, MAX_HEADER_LEN, OpCode};
use super::stream::{FrameReader, FrameWriter};

/// How much of a message body moves at a time: the payload bytes a [`MessageWriter`]
/// sends per frame write, and what HTTP mode reads per step when it streams a body
/// between an HTTP connection and a message (the relay and `hyco listen --http` alike).
pub const PIECE: usize = 32 * 1024;

/// The start of the next message.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Text(String),
    /// A binary message: read its payload with [`MessageReader::read_binary`].
    Binary,
    Close(Option<CloseFrame>),
    /// The connection ended between messages.
    End,
}

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// Reads messages off a [`FrameReader`].
pub struct MessageReader<R> {
    frames: FrameReader<R>,
    /// Inside a binary message, and whether its current frame is the last.
    binary: Option<bool>,
}

impl<R: AsyncRead + Unpin> MessageReader<R> {
    pub fn new(frames: FrameReader<R>) -> Self {
        Self { frames, binary: None }
    }

    /// The next data frame header, Ping and Pong skipped; `None` at the end of the stream.
    async fn data_header(&mut self) -> io::Result<Option<FrameHeader>> {
        loop {
            let Some(h) = self.frames.header().await? else { return Ok(None) };
            if matches!(h.opcode, OpCode::Ping | OpCode::Pong) {
                self.frames.control_payload().await?;
                continue;
            }
            return Ok(Some(h));
        }
    }

    async fn payload_into(&mut self, out: &mut Vec<u8>, limit: usize) -> io::Result<()> {
        let len = usize::try_from(self.frames.remaining()).unwrap_or(usize::MAX);
        if len > limit.saturating_sub(out.len()) {
            return Err(invalid("text message too large"));
        }
        let start = out.len();
        out.resize(start + len, 0);
        let mut at = start;
        while at < out.len() {
            at += self.frames.payload(&mut out[at..]).await?;
        }
        Ok(())
    }

    /// Starts the next message; a text message is read whole, at most `max_text` bytes.
    /// The previous binary message must have been read to its end.
    pub async fn next(&mut self, max_text: usize) -> io::Result<Next> {
        if self.binary.is_some() {
            return Err(invalid("previous binary message not read to its end"));
        }
        let Some(h) = self.data_header().await? else { return Ok(Next::End) };
        match h.opcode {
            OpCode::Close => {
                let payload = self.frames.control_payload().await?;
                Ok(Next::Close(CloseFrame::parse(&payload).map_err(|_| invalid("bad close frame"))?))
            }
            OpCode::Binary => {
                self.binary = Some(h.fin);
                Ok(Next::Binary)
            }
            OpCode::Text => {
                let mut text = Vec::new();
                self.payload_into(&mut text, max_text).await?;
                let mut fin = h.fin;
                while !fin {
                    match self.data_header().await? {
                        Some(h) if h.opcode == OpCode::Continuation => {
                            self.payload_into(&mut text, max_text).await?;
                            fin = h.fin;
                        }
                        Some(_) => return Err(invalid("a new message inside a fragmented one")),
                        None => return Err(io::ErrorKind::UnexpectedEof.into()),
                    }
                }
                String::from_utf8(text).map(Next::Text).map_err(|_| invalid("text message is not UTF-8"))
            }
            _ => Err(invalid("continuation frame without a message")),
        }
    }

    /// Reads payload of the current binary message; 0 when the message is complete. A
    /// Close or the end of the stream inside the message is `UnexpectedEof`.
    pub async fn read_binary(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(last) = self.binary else { return Ok(0) };
            if self.frames.remaining() > 0 {
                return self.frames.payload(out).await;
            }
            if last {
                self.binary = None;
                return Ok(0);
            }
            match self.data_header().await? {
                Some(h) if h.opcode == OpCode::Continuation => self.binary = Some(h.fin),
                Some(h) if h.opcode == OpCode::Close => return Err(io::ErrorKind::UnexpectedEof.into()),
                Some(_) => return Err(invalid("a new message inside a fragmented one")),
                None => return Err(io::ErrorKind::UnexpectedEof.into()),
            }
        }
    }
}

/// Writes messages to a [`FrameWriter`].
pub struct MessageWriter<W> {
    frames: FrameWriter<W>,
    buf: Box<[u8]>,
    /// Bytes still owed to a frame begun with [`MessageWriter::begin_binary`].
    owed: u64,
}

impl<W: AsyncWrite + Unpin> MessageWriter<W> {
    pub fn new(frames: FrameWriter<W>) -> Self {
        Self { frames, buf: vec![0; MAX_HEADER_LEN + PIECE].into_boxed_slice(), owed: 0 }
    }

    /// Whether a frame is half written (so that no Close may follow now).
    pub fn mid_frame(&self) -> bool {
        self.owed > 0
    }

    async fn frame(&mut self, fin: bool, opcode: OpCode, data: &[u8]) -> io::Result<()> {
        debug_assert_eq!(self.owed, 0, "a frame is half written");
        let mut rest = data;
        let mut opcode = opcode;
        // Long payloads go out in frames of at most PIECE bytes, all but the last without FIN.
        loop {
            let n = rest.len().min(PIECE);
            let last = n == rest.len();
            self.buf[MAX_HEADER_LEN..MAX_HEADER_LEN + n].copy_from_slice(&rest[..n]);
            let header = FrameHeader { fin: fin && last, opcode, mask: None, len: n as u64 };
            self.frames.send_with_header(header, &mut self.buf, n).await?;
            rest = &rest[n..];
            if last {
                return Ok(());
            }
            opcode = OpCode::Continuation;
        }
    }

    /// Sends a whole text message.
    pub async fn send_text(&mut self, text: &str) -> io::Result<()> {
        self.frame(true, OpCode::Text, text.as_bytes()).await
    }

    /// Sends one fragment of a binary message: the first is a Binary frame, the others
    /// Continuation frames; `fin` ends the message.
    pub async fn send_fragment(&mut self, first: bool, fin: bool, data: &[u8]) -> io::Result<()> {
        self.frame(fin, if first { OpCode::Binary } else { OpCode::Continuation }, data).await
    }

    /// Begins a binary message of exactly `len` bytes as one frame; its payload follows
    /// through [`MessageWriter::write_payload`].
    pub async fn begin_binary(&mut self, len: u64) -> io::Result<()> {
        let header = FrameHeader { fin: true, opcode: OpCode::Binary, mask: None, len };
        self.frames.send_with_header(header, &mut self.buf, 0).await?;
        self.owed = len;
        Ok(())
    }

    /// Writes payload of the frame begun by [`MessageWriter::begin_binary`]; more than it
    /// announced is an error.
    pub async fn write_payload(&mut self, data: &[u8]) -> io::Result<()> {
        if data.len() as u64 > self.owed {
            return Err(invalid("more payload than the frame announced"));
        }
        for piece in data.chunks(PIECE) {
            let n = piece.len();
            self.buf[..n].copy_from_slice(piece);
            self.frames.continue_payload(&mut self.buf[..n]).await?;
            self.owed -= n as u64;
        }
        Ok(())
    }

    pub async fn flush(&mut self) -> io::Result<()> {
        self.frames.flush().await
    }

    /// Sends a Close (unless a frame is half written) and shuts the write side; errors
    /// are ignored, the connection is over either way.
    pub async fn close(&mut self, close: Option<CloseFrame>) {
        if let Some(frame) = close.filter(|_| self.owed == 0) {
            let _ = self.frames.send_close(Some(&frame)).await;
        }
        let _ = self.frames.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::stream::Role;

    #[tokio::test]
    async fn messages_cross_in_pieces_both_ways() {
        let (a, b) = tokio::io::duplex(1000);
        let big: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let sent = big.clone();
        let writer = tokio::spawn(async move {
            let mut w = MessageWriter::new(FrameWriter::new(a, Role::Client));
            w.send_text(&"t".repeat(70_000)).await.unwrap();
            w.send_fragment(true, false, &sent[..10]).await.unwrap();
            w.send_fragment(false, false, &sent[10..50_000]).await.unwrap();
            w.send_fragment(false, true, &sent[50_000..]).await.unwrap();
            w.begin_binary(sent.len() as u64).await.unwrap();
            w.write_payload(&sent[..1]).await.unwrap();
            assert!(w.mid_frame());
            w.write_payload(&sent[1..]).await.unwrap();
            assert!(w.write_payload(b"x").await.is_err(), "more than announced");
            w.send_fragment(true, true, b"").await.unwrap();
            w.close(Some(CloseFrame::new(1000, "done"))).await;
        });
        let mut r = MessageReader::new(FrameReader::new(b, &[], Role::Server));
        assert_eq!(r.next(70_000).await.unwrap(), Next::Text("t".repeat(70_000)));
        for _ in 0..2 {
            assert_eq!(r.next(10).await.unwrap(), Next::Binary);
            let mut got = Vec::new();
            let mut buf = [0; 777];
            loop {
                let n = r.read_binary(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            assert_eq!(got, big);
        }
        assert_eq!(r.next(10).await.unwrap(), Next::Binary);
        assert_eq!(r.read_binary(&mut [0; 4]).await.unwrap(), 0, "an empty message");
        assert_eq!(r.next(10).await.unwrap(), Next::Close(Some(CloseFrame::new(1000, "done"))));
        writer.await.unwrap();
        assert_eq!(r.next(10).await.unwrap(), Next::End);
    }

    #[tokio::test]
    async fn oversize_text_and_broken_messages_are_errors() {
        // Server-role writers send unmasked frames, which a client-role reader expects.
        let frames = |build: fn(&mut Vec<u8>)| {
            let mut wire = Vec::new();
            build(&mut wire);
            MessageReader::new(FrameReader::new(std::io::Cursor::new(wire), &[], Role::Client))
        };
        let mut r = frames(|w| w.extend_from_slice(b"\x81\x05hello"));
        assert_eq!(r.next(4).await.unwrap_err().kind(), io::ErrorKind::InvalidData);
        // A binary message cut by a Close.
        let mut r = frames(|w| w.extend_from_slice(b"\x02\x01a\x88\x02\x03\xe8"));
        assert_eq!(r.next(4).await.unwrap(), Next::Binary);
        assert_eq!(r.read_binary(&mut [0; 4]).await.unwrap(), 1);
        assert_eq!(r.read_binary(&mut [0; 4]).await.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        // A continuation with no message; a text inside a binary message.
        let mut r = frames(|w| w.extend_from_slice(b"\x80\x00"));
        assert!(r.next(4).await.is_err());
        let mut r = frames(|w| w.extend_from_slice(b"\x02\x00\x81\x00"));
        assert_eq!(r.next(4).await.unwrap(), Next::Binary);
        assert!(r.read_binary(&mut [0; 4]).await.is_err());
        // Pings between fragments are skipped.
        let mut r = frames(|w| w.extend_from_slice(b"\x01\x02ab\x89\x00\x80\x01c"));
        assert_eq!(r.next(4).await.unwrap(), Next::Text("abc".into()));
    }
}
