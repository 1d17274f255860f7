//! `hyco listen --http`'s calls to local servers: one request on one connection (its head
//! and body out, the response head back, an early answer watched for), the bounds on the
//! server's side, and why a call failed. The pool of kept connections is
//! [`super::http_pool`]; what the relay asked and gets back is [`super::http`].

use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt, ReadHalf};
use tokio::time::{Instant, sleep_until, timeout};

use super::http_pool::LocalConn;
use super::inspect::Kept;
use crate::http1::{self, BodyReader, HeadError, LAST_CHUNK};
use crate::net::ClientStream;
use crate::protocol::{self, MAX_CONTROL_MESSAGE};
use crate::ws::message::{MessageReader, Next, PIECE};

/// How long the local server, or the relay, may stall a request or response.
pub(super) const STALL_TIMEOUT: Duration = protocol::HTTP_RESPONSE_TIMEOUT;
/// The largest response head the local server may send.
const MAX_LOCAL_HEAD: usize = 32 * 1024;

/// A rendezvous with the relay for one request.
pub(super) type RvReader = MessageReader<ReadHalf<ClientStream>>;
/// Why a request failed before its response began: the status and text of the answer
/// the listener gives of its own.
#[derive(Debug)]
pub(crate) struct ErrorAnswer {
    pub(super) status: u16,
    pub(super) text: String,
}

pub(super) fn error_answer(status: u16, text: impl Into<String>) -> ErrorAnswer {
    ErrorAnswer { status, text: text.into() }
}

/// Where a request's body comes from.
pub(super) enum Source<'a> {
    None,
    /// All of it, at hand (it can be sent again).
    Inline(Vec<u8>),
    /// The binary message that follows the request on its rendezvous.
    Rendezvous(&'a mut RvReader),
}

async fn write_local<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8]) -> Result<(), ErrorAnswer> {
    match timeout(STALL_TIMEOUT, w.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(error_answer(502, format!("Writing to the local server failed: {e}"))),
        Err(_) => Err(error_answer(504, "The local server stopped reading the request")),
    }
}

/// Sends the request body to the local server; a body from the rendezvous is also counted
/// into `tee` (the inspector's copy) as it goes.
async fn send_body<W: AsyncWrite + Unpin>(
    w: &mut W,
    source: &mut Source<'_>,
    length: Option<u64>,
    mut tee: Option<&mut Kept>,
) -> Result<(), ErrorAnswer> {
    match source {
        Source::None => Ok(()),
        Source::Inline(body) => write_local(w, body).await,
        Source::Rendezvous(from) => {
            let cut = || error_answer(502, "The request body from the relay was cut off");
            match timeout(STALL_TIMEOUT, from.next(MAX_CONTROL_MESSAGE)).await {
                Ok(Ok(Next::Binary)) => {}
                _ => return Err(cut()),
            }
            let mut buf = vec![0; PIECE];
            let mut sent = 0u64;
            loop {
                let n = match timeout(STALL_TIMEOUT, from.read_binary(&mut buf)).await {
                    Ok(Ok(n)) => n,
                    _ => return Err(cut()),
                };
                if n == 0 {
                    break;
                }
                sent += n as u64;
                if let Some(kept) = tee.as_deref_mut() {
                    kept.push(&buf[..n]);
                }
                match length {
                    Some(len) if sent > len => {
                        return Err(error_answer(400, "Request body longer than its Content-Length"));
                    }
                    Some(_) => write_local(w, &buf[..n]).await?,
                    None => {
                        let chunk = timeout(STALL_TIMEOUT, http1::write_chunk(w, &buf[..n])).await;
                        chunk
                            .map_err(|_| error_answer(504, "The local server stopped reading the request"))?
                            .map_err(|e| error_answer(502, format!("Writing to the local server failed: {e}")))?;
                    }
                }
            }
            match length {
                Some(len) if sent != len => Err(error_answer(400, "Request body shorter than its Content-Length")),
                Some(_) => Ok(()),
                None => write_local(w, LAST_CHUNK).await,
            }
        }
    }
}

/// Reads the local server's final response head (interim 1xx answers skipped).
async fn local_response<R: AsyncBufRead + Unpin>(r: &mut R) -> Result<http1::Response, ErrorAnswer> {
    loop {
        let head = match timeout(STALL_TIMEOUT, http1::read_response_head(r, MAX_LOCAL_HEAD)).await {
            Ok(Ok(h)) => h,
            Ok(Err(HeadError::TooLarge)) => {
                return Err(error_answer(502, "The local server's response head is too large"));
            }
            Ok(Err(e)) => return Err(error_answer(502, format!("Bad response from the local server: {e}"))),
            Err(_) => return Err(error_answer(504, "The local server did not answer in time")),
        };
        match head.status {
            101 => return Err(error_answer(502, "The local server switched protocols")),
            100..=199 => continue,
            _ => return Ok(head),
        }
    }
}

/// Methods a request may be sent again with (RFC 9110 9.2.2).
pub(super) fn idempotent(method: &str) -> bool {
    matches!(method, "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS" | "TRACE")
}

/// A failed call to the local server; `stale` when nothing came back, as when the server
/// had closed a kept connection.
pub(super) struct Failed {
    pub(super) answer: ErrorAnswer,
    pub(super) stale: bool,
}

/// Sends the request on `conn` and reads the response head, the body going up while an
/// early answer is watched for. Returns the head and whether the request body was all sent.
/// A body from the rendezvous is counted into `tee` as it goes.
pub(super) async fn call_local(
    conn: &mut LocalConn,
    head: &str,
    source: &mut Source<'_>,
    length: Option<u64>,
    tee: Option<&mut Kept>,
) -> Result<(http1::Response, bool), Failed> {
    let LocalConn { reader, writer } = conn;
    let sending = async {
        write_local(writer, head.as_bytes()).await?;
        send_body(writer, source, length, tee).await?;
        writer.flush().await.map_err(|e| error_answer(502, format!("Writing to the local server failed: {e}")))
    };
    let answered = async {
        match timeout(STALL_TIMEOUT, reader.fill_buf()).await {
            Ok(Ok(b)) if !b.is_empty() => {}
            Ok(_) => {
                let answer = error_answer(502, "The local server closed the connection without an answer");
                return Err(Failed { answer, stale: true });
            }
            Err(_) => {
                let answer = error_answer(504, "The local server did not answer in time");
                return Err(Failed { answer, stale: false });
            }
        }
        local_response(reader).await.map_err(|answer| Failed { answer, stale: false })
    };
    tokio::pin!(sending, answered);
    let mut sent = false;
    let mut deadline = Instant::now() + STALL_TIMEOUT;
    loop {
        tokio::select! {
            // A write that failed (not one that timed out) is what a closed connection gives.
            r = &mut sending, if !sent => match r {
                Ok(()) => {
                    sent = true;
                    deadline = Instant::now() + STALL_TIMEOUT;
                }
                Err(answer) => {
                    let stale = answer.status == 502;
                    return Err(Failed { answer, stale });
                }
            },
            r = &mut answered => return r.map(|head| (head, sent)),
            () = sleep_until(deadline), if sent => {
                return Err(Failed { answer: error_answer(504, "The local server did not answer in time"), stale: false });
            }
        }
    }
}

pub(super) async fn read_local<R: AsyncBufRead + Unpin>(
    body: &mut BodyReader,
    r: &mut R,
    buf: &mut [u8],
) -> Result<usize, ErrorAnswer> {
    match timeout(STALL_TIMEOUT, body.read(r, buf)).await {
        Ok(Ok(n)) => Ok(n),
        Ok(Err(e)) => Err(error_answer(502, format!("The local server's response body failed: {e}"))),
        Err(_) => Err(error_answer(504, "The local server's response body stalled")),
    }
}
