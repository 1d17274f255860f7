//! The client's end of one tunnel: its WebSocket to the relay (client role), split into a
//! frame reader and a frame writer, and what happens to it before and after the pump:
//! sending *start* or waiting for it (see [`super::prewarm`]), answering the frames that
//! arrive while it is not in use, and the goodbye. Moving bytes is the pump's
//! ([`super::pump`]); opening the WebSocket is [`super::RelayClient::open`]'s.

use std::io;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::local::LocalStream;
use crate::net::{ClientStream, ReadPart, WritePart};
use crate::protocol::close;
use crate::ws::frame::{CloseFrame, FrameHeader, OpCode};
use crate::ws::pump::{StartError, send_start};
use crate::ws::stream::{FrameReader, FrameWriter, Role};

/// The tunnel's read half.
pub(super) type WsRead = ReadPart<tokio_rustls::client::TlsStream<TcpStream>>;
/// The tunnel's write half.
pub(super) type WsWrite = WritePart<tokio_rustls::client::TlsStream<TcpStream>>;

/// The longest a client spends sending a Close: a peer that stopped reading does not
/// hold up the end of a tunnel (or of a control channel).
pub(super) const GOODBYE_TIMEOUT: Duration = Duration::from_secs(2);

/// An open tunnel: the client's end of one sender<->listener connection.
pub(super) struct Tunnel {
    reader: FrameReader<WsRead>,
    writer: FrameWriter<WsWrite>,
    /// A data frame whose header has been read but whose payload has not: the pump
    /// delivers it first.
    pending: Option<FrameHeader>,
    /// How long the pump lets this end stay silent before it pings (`None`: never).
    keepalive: Option<Duration>,
}

/// What arrived on a tunnel that is not in use (yet).
pub(super) enum Idle {
    /// A ping (answered) or a pong.
    Control,
    /// The other side closed it (answered with a Close 1000); how, for the log.
    Closed(String),
    /// A data frame, its payload not read.
    Data(FrameHeader),
    /// The connection broke.
    Lost(String),
}

/// How a deferred tunnel on the listener's side ended before reaching the target.
#[derive(Debug)]
pub(super) enum NotStarted {
    /// The sender closed it (an unused prewarmed tunnel), or it broke.
    Closed(String),
    /// Not started within the time allowed, or the listener is stopping.
    Abandoned,
}

impl std::fmt::Display for NotStarted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Closed(why) => f.write_str(why),
            Self::Abandoned => f.write_str("not started in time, or the listener is stopping"),
        }
    }
}

impl Tunnel {
    /// A tunnel over `ws`; `initial` holds bytes that arrived after the 101 response.
    pub(super) fn new(ws: ClientStream, initial: &[u8]) -> Self {
        let (read, write) = ws.split();
        Self {
            reader: FrameReader::new(read, initial, Role::Client),
            writer: FrameWriter::new(write, Role::Client),
            pending: None,
            keepalive: Some(crate::ws::pump::DEFAULT_KEEPALIVE),
        }
    }

    /// This tunnel with `keepalive` ([`crate::ws::pump::pump`]): the client's setting.
    pub(super) fn keepalive(mut self, keepalive: Option<Duration>) -> Self {
        self.keepalive = keepalive;
        self
    }

    /// How long the pump lets this end stay silent before it pings.
    pub(super) fn keepalive_interval(&self) -> Option<Duration> {
        self.keepalive
    }

    /// Its parts, for the pump: reader, writer, and a data frame already begun.
    pub(super) fn into_parts(self) -> (FrameReader<WsRead>, FrameWriter<WsWrite>, Option<FrameHeader>) {
        (self.reader, self.writer, self.pending)
    }

    /// Sends `frame` as the tunnel's last word, for at most [`GOODBYE_TIMEOUT`]; errors
    /// are ignored, the tunnel being over.
    pub(super) async fn goodbye(&mut self, frame: &CloseFrame) {
        let _ = tokio::time::timeout(GOODBYE_TIMEOUT, self.writer.send_close(Some(frame))).await;
    }

    /// Sender side: sends *start* (what `local` has already sent, or an empty binary
    /// frame); returns the bytes sent.
    pub(super) async fn start(&mut self, local: &LocalStream) -> Result<usize, StartError> {
        send_start(&mut self.writer, |buf| local.try_read(buf)).await
    }

    /// Listener side: waits up to `timeout` for *start*: an empty binary frame, or a data
    /// frame, which stays pending for the pump. Pings are answered meanwhile; at the
    /// timeout or `stop` the tunnel says goodbye (1001).
    pub(super) async fn await_start(&mut self, timeout: Duration, stop: &CancellationToken) -> Result<(), NotStarted> {
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        loop {
            let frame = tokio::select! {
                h = self.next_frame() => h,
                () = &mut deadline => return Err(self.abandon("not started in time").await),
                () = stop.cancelled() => return Err(self.abandon("listener stopping").await),
            };
            match self.idle_frame(frame).await {
                Idle::Control => {}
                Idle::Closed(why) | Idle::Lost(why) => return Err(NotStarted::Closed(why)),
                Idle::Data(header) => {
                    if !is_empty_start(&header) {
                        self.pending = Some(header);
                    }
                    return Ok(());
                }
            }
        }
    }

    async fn abandon(&mut self, reason: &str) -> NotStarted {
        self.goodbye(&CloseFrame::new(close::GOING_AWAY, reason)).await;
        NotStarted::Abandoned
    }

    /// Reads the next data frame whole (at most `max` bytes; pings answered meanwhile),
    /// for a short exchange before the pump (azbridge's preamble). An error says why not:
    /// the other side closed, the connection broke, or the frame is too long.
    pub(super) async fn read_data_frame(&mut self, max: usize) -> Result<Vec<u8>, String> {
        loop {
            let frame = self.next_frame().await;
            let header = match self.idle_frame(frame).await {
                Idle::Control => continue,
                Idle::Closed(why) | Idle::Lost(why) => return Err(why),
                Idle::Data(header) => header,
            };
            let len = usize::try_from(header.len).ok().filter(|n| *n <= max);
            let Some(len) = len else { return Err(format!("a frame of {} bytes, more than {max}", header.len)) };
            let mut payload = vec![0; len];
            let mut got = 0;
            while got < len {
                match self.reader.payload(&mut payload[got..]).await {
                    Ok(0) => return Err("connection closed".into()),
                    Ok(n) => got += n,
                    Err(e) => return Err(format!("relay connection lost: {e}")),
                }
            }
            return Ok(payload);
        }
    }

    /// Sends `bytes` as one binary frame, before the pump takes over.
    pub(super) async fn send_binary(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.send(OpCode::Binary, bytes).await?;
        self.writer.flush().await
    }

    /// The next frame's header. Cancel-safe: a `select!` may drop it and call again.
    /// Hand what it returns to [`Self::idle_frame`].
    pub(super) async fn next_frame(&mut self) -> io::Result<Option<FrameHeader>> {
        self.reader.header().await
    }

    /// Handles `frame` (from [`Self::next_frame`]) on a tunnel that is not in use: on the
    /// sender's side waiting to be taken, on the listener's waiting for *start*. Pings
    /// are answered, a Close is answered with Close 1000; a data frame is left unread.
    pub(super) async fn idle_frame(&mut self, frame: io::Result<Option<FrameHeader>>) -> Idle {
        let lost = |e: io::Error| Idle::Lost(format!("relay connection lost: {e}"));
        let header = match frame {
            Ok(Some(h)) => h,
            Ok(None) => return Idle::Lost("connection closed".into()),
            Err(e) => return lost(e),
        };
        let payload = match header.opcode {
            OpCode::Ping | OpCode::Pong | OpCode::Close => match self.reader.control_payload().await {
                Ok(payload) => payload,
                Err(e) => return lost(e),
            },
            _ => return Idle::Data(header),
        };
        match header.opcode {
            OpCode::Ping => match self.writer.send(OpCode::Pong, &payload).await {
                Ok(()) => Idle::Control,
                Err(e) => lost(e),
            },
            OpCode::Pong => Idle::Control,
            _ => {
                self.goodbye(&CloseFrame::new(close::NORMAL, "")).await;
                Idle::Closed(match CloseFrame::parse(&payload) {
                    Ok(Some(c)) if !c.reason.is_empty() => {
                        format!("closed by the other side ({} {})", c.code, c.reason)
                    }
                    Ok(Some(c)) => format!("closed by the other side ({})", c.code),
                    _ => "closed by the other side".into(),
                })
            }
        }
    }
}

/// The first 8 characters of a tracking id: enough to find it in the relay's log, short
/// enough for a log line's prefix (`tunnel{id=6f1c0a2e}:`).
pub(super) fn short_id(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// An empty, final binary frame: *start* without data.
fn is_empty_start(h: &FrameHeader) -> bool {
    h.fin && h.opcode == OpCode::Binary && h.len == 0
}
