//! Datagrams over the frame layer (docs/protocol.md 10.2, 10.4): one WebSocket message is
//! one UDP datagram, whatever its fragmentation. [`Datagrams`] reads whole messages up to a
//! size limit, reassembling continuation frames and reading past (and dropping) a message
//! over the limit in bounded memory; [`send`] writes one datagram as one binary frame, and
//! [`push_frame`] and [`send_batch`] several in one write. Used by every datagram tunnel's
//! ends: the relay's of a public UDP port (`relay::public::udp`), the listener's and the
//! connector's (`client::datagram`). It answers nothing itself: pings and Closes go to the
//! caller, as does what to do with the datagrams.

use std::io;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::frame::{CloseFrame, FrameHeader, MAX_HEADER_LEN, OpCode, apply_mask};
use super::stream::{FrameReader, FrameWriter, Role};

/// Bytes read at a time while dropping a message over the limit.
const DISCARD_PIECE: usize = 4 * 1024;

/// What the next message was.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A whole message within the limit: one datagram (possibly empty).
    Datagram(Vec<u8>),
    /// A message over the limit, read to its end and dropped.
    Oversize,
    /// A ping, with its payload for the Pong the caller owes.
    Ping(Vec<u8>),
    /// The other side's Close (its frame, if it had one); answering it is the caller's.
    Close(Option<CloseFrame>),
    /// The connection ended between frames, without a Close.
    End,
}

/// A message being reassembled from its fragments.
struct Partial {
    buf: Vec<u8>,
    /// Over the limit: the rest of it is read and dropped.
    oversize: bool,
}

/// Reads one datagram per message off a [`FrameReader`]. Not cancel-safe: a message cut
/// short by dropping [`Datagrams::next`] leaves the stream mid-frame.
pub struct Datagrams {
    limit: usize,
    /// A data frame whose header was read elsewhere (a *start* carrying data).
    pending: Option<FrameHeader>,
    partial: Option<Partial>,
}

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

impl Datagrams {
    /// Messages of at most `limit` bytes are datagrams; `pending` is a data frame whose
    /// header was read already, its payload not.
    pub fn new(limit: usize, pending: Option<FrameHeader>) -> Self {
        Self { limit, pending, partial: None }
    }

    /// Reads up to the next whole message, ping or Close. A protocol violation (a
    /// continuation outside a message, a new message inside one, a malformed Close) is an
    /// `InvalidData` error.
    pub async fn next<R: AsyncRead + Unpin>(&mut self, reader: &mut FrameReader<R>) -> io::Result<Incoming> {
        loop {
            let header = match self.pending.take() {
                Some(h) => h,
                None => match reader.header().await? {
                    Some(h) => h,
                    None if self.partial.is_some() => return Err(io::ErrorKind::UnexpectedEof.into()),
                    None => return Ok(Incoming::End),
                },
            };
            match header.opcode {
                OpCode::Ping => return Ok(Incoming::Ping(reader.control_payload().await?)),
                OpCode::Pong => {
                    reader.control_payload().await?;
                }
                OpCode::Close => {
                    let payload = reader.control_payload().await?;
                    let frame = CloseFrame::parse(&payload).map_err(|_| invalid("malformed close frame"))?;
                    return Ok(Incoming::Close(frame));
                }
                OpCode::Binary | OpCode::Text => {
                    if self.partial.is_some() {
                        return Err(invalid("a new message inside a fragmented one"));
                    }
                    self.partial = Some(Partial { buf: Vec::new(), oversize: false });
                    if let Some(done) = self.take_payload(reader, &header).await? {
                        return Ok(done);
                    }
                }
                OpCode::Continuation => {
                    if self.partial.is_none() {
                        return Err(invalid("a continuation frame outside a message"));
                    }
                    if let Some(done) = self.take_payload(reader, &header).await? {
                        return Ok(done);
                    }
                }
            }
        }
    }

    /// Adds `header`'s payload to the message being read; the message once its last
    /// frame is in.
    async fn take_payload<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut FrameReader<R>,
        header: &FrameHeader,
    ) -> io::Result<Option<Incoming>> {
        let partial = self.partial.as_mut().expect("a message is being read");
        let fits = (partial.buf.len() as u64).saturating_add(header.len) <= self.limit as u64;
        if !partial.oversize && fits {
            let mut at = partial.buf.len();
            partial.buf.resize(at + header.len as usize, 0);
            while reader.remaining() > 0 {
                at += reader.payload(&mut partial.buf[at..]).await?;
            }
        } else {
            partial.oversize = true;
            partial.buf = Vec::new();
            let mut scratch = [0; DISCARD_PIECE];
            while reader.remaining() > 0 {
                reader.payload(&mut scratch).await?;
            }
        }
        if !header.fin {
            return Ok(None);
        }
        let done = self.partial.take().expect("a message is being read");
        Ok(Some(if done.oversize { Incoming::Oversize } else { Incoming::Datagram(done.buf) }))
    }
}

/// Sends `datagram` as one binary frame and flushes it.
pub async fn send<W: AsyncWrite + Unpin>(writer: &mut FrameWriter<W>, datagram: &[u8]) -> io::Result<()> {
    let mut buf = vec![0; MAX_HEADER_LEN + datagram.len()];
    buf[MAX_HEADER_LEN..].copy_from_slice(datagram);
    send_in_place(writer, &mut buf, datagram.len()).await
}

/// Sends the datagram at `buf[MAX_HEADER_LEN..MAX_HEADER_LEN + len]` (room for the header
/// before it) as one binary frame, without copying it, and flushes it.
pub async fn send_in_place<W: AsyncWrite + Unpin>(
    writer: &mut FrameWriter<W>,
    buf: &mut [u8],
    len: usize,
) -> io::Result<()> {
    let header = FrameHeader { fin: true, opcode: OpCode::Binary, mask: None, len: len as u64 };
    writer.send_with_header(header, buf, len).await?;
    writer.flush().await
}

/// Appends `datagram` to `batch` as one binary frame, masked when written by a client:
/// several datagrams waiting together then go out in one write ([`send_batch`]).
pub fn push_frame(batch: &mut Vec<u8>, datagram: &[u8], role: Role) {
    let mask = (role == Role::Client).then(rand::random);
    let header = FrameHeader { fin: true, opcode: OpCode::Binary, mask, len: datagram.len() as u64 };
    let mut head = [0; MAX_HEADER_LEN];
    let n = header.encode(&mut head);
    batch.extend_from_slice(&head[..n]);
    let at = batch.len();
    batch.extend_from_slice(datagram);
    if let Some(mask) = mask {
        apply_mask(&mut batch[at..], mask, 0);
    }
}

/// Writes the whole frames in `batch` ([`push_frame`]) and flushes them.
pub async fn send_batch<W: AsyncWrite + Unpin>(writer: &mut FrameWriter<W>, batch: &[u8]) -> io::Result<()> {
    writer.get_mut().write_all(batch).await?;
    writer.flush().await
}

/// Completes once nothing has moved for `timeout` since `started` + `last` milliseconds: a
/// datagram session's idle timer (a public UDP port's, and a connector's or listener's),
/// whose ends store when a datagram last went either way.
pub(crate) async fn idle(
    timeout: std::time::Duration,
    started: tokio::time::Instant,
    last: &std::sync::atomic::AtomicU64,
) {
    loop {
        let at = started + std::time::Duration::from_millis(last.load(std::sync::atomic::Ordering::Relaxed)) + timeout;
        if tokio::time::Instant::now() >= at {
            return;
        }
        tokio::time::sleep_until(at).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames as a client would send them, read back by a server-role [`Datagrams`].
    async fn read_all(limit: usize, frames: &[(bool, OpCode, &[u8])]) -> Vec<io::Result<Incoming>> {
        let (a, b) = tokio::io::duplex(64);
        let frames: Vec<(bool, OpCode, Vec<u8>)> = frames.iter().map(|(f, o, p)| (*f, *o, p.to_vec())).collect();
        let writer = tokio::spawn(async move {
            let mut w = FrameWriter::new(a, Role::Client);
            for (fin, opcode, payload) in frames {
                let mut buf = vec![0; MAX_HEADER_LEN + payload.len()];
                buf[MAX_HEADER_LEN..].copy_from_slice(&payload);
                let header = FrameHeader { fin, opcode, mask: None, len: payload.len() as u64 };
                w.send_with_header(header, &mut buf, payload.len()).await.unwrap();
            }
        });
        let mut reader = FrameReader::new(b, &[], Role::Server);
        let mut datagrams = Datagrams::new(limit, None);
        let mut out = Vec::new();
        loop {
            let next = datagrams.next(&mut reader).await;
            let end = !matches!(next, Ok(Incoming::Datagram(_) | Incoming::Oversize | Incoming::Ping(_)));
            out.push(next);
            if end {
                break;
            }
        }
        writer.await.unwrap();
        out
    }

    #[tokio::test]
    async fn fragments_are_one_datagram_and_boundaries_stay() {
        let big = vec![7; 3000];
        let got = read_all(
            4096,
            &[
                (true, OpCode::Binary, b"a"),
                (true, OpCode::Binary, b""),
                (false, OpCode::Binary, b"he"),
                (true, OpCode::Ping, b"p"),
                (false, OpCode::Continuation, b"ll"),
                (true, OpCode::Continuation, b"o"),
                (true, OpCode::Binary, &big),
            ],
        )
        .await;
        let got: Vec<Incoming> = got.into_iter().map(Result::unwrap).collect();
        assert_eq!(
            got,
            [
                Incoming::Datagram(b"a".to_vec()),
                Incoming::Datagram(Vec::new()),
                Incoming::Ping(b"p".to_vec()),
                Incoming::Datagram(b"hello".to_vec()),
                Incoming::Datagram(big),
                Incoming::End,
            ]
        );
    }

    #[tokio::test]
    async fn a_message_over_the_limit_is_dropped_whole() {
        let got = read_all(
            4,
            &[
                (true, OpCode::Binary, b"12345"),
                (false, OpCode::Binary, b"123"),
                (true, OpCode::Continuation, b"45"),
                (true, OpCode::Binary, b"1234"),
                (true, OpCode::Close, &CloseFrame::new(1000, "bye").to_payload()),
            ],
        )
        .await;
        let got: Vec<Incoming> = got.into_iter().map(Result::unwrap).collect();
        assert_eq!(
            got,
            [
                Incoming::Oversize,
                Incoming::Oversize,
                Incoming::Datagram(b"1234".to_vec()),
                Incoming::Close(Some(CloseFrame::new(1000, "bye"))),
            ]
        );
    }

    #[tokio::test]
    async fn a_batch_is_one_frame_per_datagram() {
        let mut batch = Vec::new();
        for d in [&b"one"[..], b"", &[9; 300]] {
            push_frame(&mut batch, d, Role::Client);
        }
        let (a, b) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            let mut w = FrameWriter::new(a, Role::Client);
            send_batch(&mut w, &batch).await.unwrap();
        });
        let mut reader = FrameReader::new(b, &[], Role::Server);
        let mut datagrams = Datagrams::new(1000, None);
        for want in [&b"one"[..], b"", &[9; 300]] {
            assert_eq!(datagrams.next(&mut reader).await.unwrap(), Incoming::Datagram(want.to_vec()));
        }
        writer.await.unwrap();
        assert_eq!(datagrams.next(&mut reader).await.unwrap(), Incoming::End);
    }

    #[tokio::test]
    async fn stray_fragments_are_protocol_errors() {
        let got = read_all(16, &[(true, OpCode::Continuation, b"x")]).await;
        assert_eq!(got[0].as_ref().unwrap_err().kind(), io::ErrorKind::InvalidData);
        let got = read_all(16, &[(false, OpCode::Binary, b"x"), (true, OpCode::Binary, b"y")]).await;
        assert_eq!(got[0].as_ref().unwrap_err().kind(), io::ErrorKind::InvalidData);
        let got = read_all(16, &[(false, OpCode::Binary, b"x")]).await;
        assert_eq!(got[0].as_ref().unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }
}
