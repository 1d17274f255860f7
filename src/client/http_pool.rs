//! `hyco listen --http`'s idle connections to local servers, for reuse by later requests:
//! at most [`MAX_IDLE_PER_TARGET`] per target, each closed once unused for
//! [`IDLE_TIMEOUT`] or as soon as it is found closed by the server. Whether a connection
//! may come back after a request is the HTTP exchange's call ([`super::http`]), not the
//! pool's.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::io::BufReader;
use tokio::time::Instant;

use crate::local::{LocalReadHalf, LocalStream, LocalWriteHalf};

use crate::ws::message::PIECE;

/// Idle connections kept per target; a connection put back beyond it closes the oldest.
pub(super) const MAX_IDLE_PER_TARGET: usize = 8;
/// How long an idle connection is kept unused.
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often expired idle connections are closed when no request takes or returns one.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// A connection to a local server: its buffered read side and its write side.
pub(super) struct LocalConn {
    pub(super) reader: BufReader<LocalReadHalf>,
    pub(super) writer: LocalWriteHalf,
}

impl LocalConn {
    pub(super) fn new(local: LocalStream) -> Self {
        let (r, w) = local.into_split();
        Self { reader: BufReader::with_capacity(PIECE, r), writer: w }
    }

    /// Whether an idle connection still looks usable: nothing buffered, and the server
    /// has neither closed it nor sent anything unasked.
    fn looks_open(&self) -> bool {
        self.reader.buffer().is_empty()
            && matches!(self.reader.get_ref().try_read(&mut [0; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }
}

/// Idle connections by target.
#[derive(Default)]
pub(super) struct Pool {
    idle: Mutex<HashMap<String, VecDeque<(LocalConn, Instant)>>>,
}

impl Pool {
    /// A pool whose expired connections a background task closes while the pool lives.
    pub(super) fn new() -> Arc<Self> {
        let pool = Arc::new(Self::default());
        let weak: Weak<Self> = Arc::downgrade(&pool);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(SWEEP_EVERY).await;
                let Some(pool) = weak.upgrade() else { return };
                pool.sweep(Instant::now());
            }
        });
        pool
    }

    /// The most recently returned usable connection to `target`, if any; connections
    /// found expired or closed on the way are dropped.
    pub(super) fn take(&self, target: &str) -> Option<LocalConn> {
        let now = Instant::now();
        let mut idle = self.idle.lock().expect("pool lock");
        let conns = idle.get_mut(target)?;
        while let Some((conn, since)) = conns.pop_back() {
            if now.duration_since(since) < IDLE_TIMEOUT && conn.looks_open() {
                return Some(conn);
            }
        }
        None
    }

    /// Keeps `conn` for a later request to `target`.
    pub(super) fn put(&self, target: &str, conn: LocalConn) {
        let mut idle = self.idle.lock().expect("pool lock");
        let conns = idle.entry(target.to_owned()).or_default();
        if conns.len() >= MAX_IDLE_PER_TARGET {
            conns.pop_front();
        }
        conns.push_back((conn, Instant::now()));
    }

    /// Closes the connections idle for [`IDLE_TIMEOUT`] by `now`.
    fn sweep(&self, now: Instant) {
        let mut idle = self.idle.lock().expect("pool lock");
        for conns in idle.values_mut() {
            conns.retain(|(_, since)| now.duration_since(*since) < IDLE_TIMEOUT);
        }
    }

    /// Idle connections to `target` now.
    #[cfg(test)]
    fn idle(&self, target: &str) -> usize {
        self.idle.lock().expect("pool lock").get(target).map_or(0, VecDeque::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    /// A connection to `listener` and the server's end of it.
    async fn pair(listener: &TcpListener) -> (LocalConn, TcpStream) {
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (LocalConn::new(LocalStream::Tcp(client)), server)
    }

    #[tokio::test]
    async fn idle_connections_are_bounded_expire_and_are_dropped_once_closed() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pool = Pool::default();
        let mut servers = Vec::new();
        for _ in 0..MAX_IDLE_PER_TARGET + 2 {
            let (conn, server) = pair(&listener).await;
            pool.put("t", conn);
            servers.push(server);
        }
        assert_eq!(pool.idle("t"), MAX_IDLE_PER_TARGET, "the oldest go beyond the bound");
        assert!(pool.take("other").is_none());
        // The server closes the most recent one: it is skipped, the next one is taken.
        servers.last_mut().unwrap().shutdown().await.unwrap();
        drop(servers.pop());
        tokio::time::sleep(Duration::from_millis(50)).await;
        let taken = pool.take("t").expect("an open connection");
        assert!(taken.looks_open());
        assert_eq!(pool.idle("t"), MAX_IDLE_PER_TARGET - 2);
        // Unsolicited bytes from the server: not reused either.
        let (conn, mut server) = pair(&listener).await;
        server.write_all(b"HTTP/1.1 408 Request Timeout\r\n\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!conn.looks_open());
        pool.sweep(Instant::now() + IDLE_TIMEOUT);
        assert_eq!(pool.idle("t"), 0, "expired connections are closed");
    }
}
