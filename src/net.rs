//! A TCP connection with or without TLS, behind one type, for both the relay (server
//! TLS) and the clients (client TLS).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Plain TCP, or TLS (`T`: tokio-rustls' server or client stream) over TCP.
pub enum MaybeTls<T> {
    Plain(TcpStream),
    Tls(Box<T>),
}

/// A connection accepted by the relay.
pub type ServerStream = MaybeTls<tokio_rustls::server::TlsStream<TcpStream>>;
/// A connection a client opened to a relay.
pub type ClientStream = MaybeTls<tokio_rustls::client::TlsStream<TcpStream>>;

impl ServerStream {
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(s) => s,
            Self::Tls(s) => s.get_ref().0,
        }
    }
}

impl ClientStream {
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(s) => s,
            Self::Tls(s) => s.get_ref().0,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for MaybeTls<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for MaybeTls<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Accepts the next connection on `listener`, or `None` once `shutdown` fires. Accept
/// errors (out of descriptors and the like) are logged and retried after a pause that
/// grows to a second: a failing accept never ends a server, nor spins it.
pub async fn accept(
    listener: &tokio::net::TcpListener,
    shutdown: &tokio_util::sync::CancellationToken,
    what: &str,
) -> Option<(TcpStream, std::net::SocketAddr)> {
    let mut backoff = std::time::Duration::from_millis(5);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => return Some(a),
                Err(e) => tracing::warn!("{what}: accept failed: {e}; retrying in {backoff:?}"),
            },
            () = shutdown.cancelled() => return None,
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = shutdown.cancelled() => return None,
        }
        backoff = (backoff * 2).min(std::time::Duration::from_secs(1));
    }
}

/// How long a connection attempt runs alone before the next address is tried beside it
/// (RFC 8305's connection attempt delay): one address that drops packets cannot use up a
/// caller's whole timeout.
pub const ATTEMPT_DELAY: std::time::Duration = std::time::Duration::from_millis(250);

/// Opens a TCP connection to `target` (`host:port`), with Nagle off. Its addresses are
/// tried as RFC 8305 (Happy Eyeballs) has it: the families interleaved, the first family
/// the resolver gave first, a new attempt every [`ATTEMPT_DELAY`] or as soon as one fails,
/// the first to connect winning. A connection the kernel completes at once (a target on
/// this host) is used without a trip through the reactor.
pub async fn connect(target: &str) -> io::Result<TcpStream> {
    connect_any(interleave(tokio::net::lookup_host(target).await?.collect())).await
}

/// Opens a TCP connection to one of `addrs` (already resolved), as [`connect`] does.
pub async fn connect_addrs(addrs: Vec<std::net::SocketAddr>) -> io::Result<TcpStream> {
    connect_any(interleave(addrs)).await
}

/// Orders `addrs` by alternating families, starting with the first one's.
fn interleave(addrs: Vec<std::net::SocketAddr>) -> Vec<std::net::SocketAddr> {
    let Some(first) = addrs.first() else { return addrs };
    let first_v6 = first.is_ipv6();
    let (mut same, mut other): (std::collections::VecDeque<std::net::SocketAddr>, std::collections::VecDeque<_>) =
        addrs.iter().partition(|a| a.is_ipv6() == first_v6);
    let mut out = Vec::with_capacity(addrs.len());
    while !same.is_empty() || !other.is_empty() {
        out.extend(same.pop_front());
        out.extend(other.pop_front());
    }
    out
}

/// Races connection attempts to `addrs` in order, [`ATTEMPT_DELAY`] apart.
async fn connect_any(addrs: Vec<std::net::SocketAddr>) -> io::Result<TcpStream> {
    use futures_util::StreamExt;
    if let [addr] = addrs[..] {
        // One address (a target on this host, most often): nothing to race.
        return connect_addr(addr).await;
    }
    let mut waiting = addrs.into_iter();
    let mut attempts = futures_util::stream::FuturesUnordered::new();
    let mut last = None;
    loop {
        if attempts.is_empty() {
            match waiting.next() {
                Some(addr) => attempts.push(connect_addr(addr)),
                None => {
                    return Err(last.unwrap_or_else(|| {
                        io::Error::new(io::ErrorKind::InvalidInput, "the name resolved to no address")
                    }));
                }
            }
        }
        tokio::select! {
            Some(result) = attempts.next() => match result {
                Ok(stream) => return Ok(stream),
                // A failed attempt lets the next one start at once.
                Err(e) => {
                    last = Some(e);
                    if let Some(addr) = waiting.next() {
                        attempts.push(connect_addr(addr));
                    }
                }
            },
            () = tokio::time::sleep(ATTEMPT_DELAY), if waiting.len() > 0 => {
                attempts.push(connect_addr(waiting.next().expect("one left")));
            }
        }
    }
}

async fn connect_addr(addr: std::net::SocketAddr) -> io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if in_progress(&e) => {}
        Err(e) => return Err(e),
    }
    let stream = TcpStream::from_std(std::net::TcpStream::from(socket))?;
    if stream.peer_addr().is_err() {
        stream.writable().await?;
        if let Some(e) = stream.take_error()? {
            return Err(e);
        }
        stream.peer_addr()?;
    }
    Ok(stream)
}

/// Whether a non-blocking connect's error only says "not yet".
fn in_progress(e: &io::Error) -> bool {
    #[cfg(unix)]
    return e.raw_os_error() == Some(libc::EINPROGRESS);
    #[cfg(not(unix))]
    return e.kind() == io::ErrorKind::WouldBlock;
}

/// Ends a TCP connection with a reset rather than a FIN, so the application on the
/// other end sees an error, not a clean end of data.
pub fn reset(stream: TcpStream) {
    let socket = socket2::SockRef::from(&stream);
    let _ = socket.set_linger(Some(std::time::Duration::ZERO));
    drop(stream);
}

/// The read half of a [`MaybeTls`]: a plain connection splits into halves that need no
/// lock between them, and whose socket can be reached (for splicing).
pub enum ReadPart<T> {
    Plain(tokio::net::tcp::OwnedReadHalf),
    Tls(tokio::io::ReadHalf<MaybeTls<T>>),
}

/// The write half of a [`MaybeTls`].
pub enum WritePart<T> {
    Plain(tokio::net::tcp::OwnedWriteHalf),
    Tls(tokio::io::WriteHalf<MaybeTls<T>>),
}

impl<T: AsyncRead + AsyncWrite + Unpin> MaybeTls<T> {
    /// Splits into halves that can be driven at once.
    pub fn split(self) -> (ReadPart<T>, WritePart<T>) {
        match self {
            Self::Plain(s) => {
                let (r, w) = s.into_split();
                (ReadPart::Plain(r), WritePart::Plain(w))
            }
            tls => {
                let (r, w) = tokio::io::split(tls);
                (ReadPart::Tls(r), WritePart::Tls(w))
            }
        }
    }
}

impl<T> ReadPart<T> {
    /// The socket, when there is no TLS over it.
    pub fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Self::Plain(r) => Some(r.as_ref()),
            Self::Tls(_) => None,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ReadPart<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(r) => Pin::new(r).poll_read(cx, buf),
            Self::Tls(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WritePart<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(w) => Pin::new(w).poll_write(cx, buf),
            Self::Tls(w) => Pin::new(w).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(w) => Pin::new(w).poll_write_vectored(cx, bufs),
            Self::Tls(w) => Pin::new(w).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(w) => w.is_write_vectored(),
            Self::Tls(w) => w.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(w) => Pin::new(w).poll_flush(cx),
            Self::Tls(w) => Pin::new(w).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(w) => Pin::new(w).poll_shutdown(cx),
            Self::Tls(w) => Pin::new(w).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_interleave_from_the_first() {
        let a = |s: &str| s.parse::<std::net::SocketAddr>().unwrap();
        let got = interleave(vec![a("[::1]:1"), a("[::2]:1"), a("127.0.0.1:1"), a("[::3]:1"), a("127.0.0.2:1")]);
        assert_eq!(got, [a("[::1]:1"), a("127.0.0.1:1"), a("[::2]:1"), a("127.0.0.2:1"), a("[::3]:1")]);
        assert!(interleave(Vec::new()).is_empty());
    }

    #[tokio::test]
    async fn an_address_that_drops_connections_does_not_hold_up_the_next() {
        // A listener with a full accept queue drops new SYNs: a black hole on loopback.
        let hole = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        hole.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into()).unwrap();
        hole.listen(0).unwrap();
        let hole_addr = hole.local_addr().unwrap().as_socket().unwrap();
        let mut fillers = Vec::new();
        while fillers.len() < 8 {
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            s.set_nonblocking(true).unwrap();
            let _ = s.connect(&hole_addr.into());
            fillers.push(s);
        }
        // The hole really holds a connect.
        let held = tokio::time::timeout(std::time::Duration::from_millis(600), connect_addr(hole_addr)).await;
        assert!(held.is_err(), "a connect to the full listener should hang: {held:?}");
        let good = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let good_addr = good.local_addr().unwrap();
        let started = std::time::Instant::now();
        let stream = tokio::time::timeout(std::time::Duration::from_secs(5), connect_any(vec![hole_addr, good_addr]))
            .await
            .expect("the second address within the timeout")
            .expect("connected");
        assert_eq!(stream.peer_addr().unwrap(), good_addr);
        assert!(started.elapsed() >= ATTEMPT_DELAY, "the first address had its head start");
    }
}
