//! Load probe for `bench/run.sh`: an echo target, connection setup latency, and many
//! idle tunnels. Loopback only; every loop is bounded in count and time.
//!
//! ```text
//! probe echo ADDR [SECS]        echo every byte back, for at most SECS (default 3600)
//! probe latency ADDR N [FILE]   N connections one after another: connect, send a byte,
//!                               time until it comes back; prints `p50_us p99_us`, and
//!                               appends each time (µs, one a line) to FILE if given
//! probe idle ADDR N [SECS]      open N connections (64 at a time), check each with one
//!                               echoed byte, print `open N`, hold them for SECS (default
//!                               600) or until killed
//! probe web ADDR [SECS]         a tiny HTTP/1.1 app: every request (a head, no body) gets
//!                               200 with a short fixed body; connections are kept unless
//!                               the request says `Connection: close`
//! ```
//!
//! Only tokio: this is a tool for the benchmark, not part of hyco.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Time one connection may take to echo its byte before the probe gives up.
const ROUND_TRIP_LIMIT: Duration = Duration::from_secs(30);
/// Connections opened at once by `idle`.
const IDLE_CONCURRENCY: usize = 64;

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str);
    let addr = |i: usize| -> io::Result<SocketAddr> {
        arg(i).and_then(|a| a.parse().ok()).ok_or_else(|| io::Error::other(format!("argument {i}: ADDR:PORT")))
    };
    let number = |i: usize, default: Option<u64>| -> io::Result<u64> {
        match arg(i) {
            Some(n) => n.parse().map_err(|_| io::Error::other(format!("argument {i}: a number"))),
            None => default.ok_or_else(|| io::Error::other(format!("argument {i}: a number"))),
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    match arg(0) {
        Some("echo") => runtime.block_on(echo(addr(1)?, Duration::from_secs(number(2, Some(3600))?))),
        Some("latency") => runtime.block_on(latency(addr(1)?, number(2, None)? as usize, arg(3))),
        Some("idle") => runtime.block_on(idle(addr(1)?, number(2, None)? as usize, number(3, Some(600))?)),
        Some("web") => runtime.block_on(web(addr(1)?, Duration::from_secs(number(2, Some(3600))?))),
        _ => Err(io::Error::other(
            "usage: probe echo ADDR [SECS] | latency ADDR N [FILE] | idle ADDR N [SECS] | web ADDR [SECS]",
        )),
    }
}

async fn echo(addr: SocketAddr, lifetime: Duration) -> io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    let serve = async {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let _ = tcp.set_nodelay(true);
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    };
    tokio::select! {
        () = serve => Ok(()),
        () = tokio::time::sleep(lifetime) => Ok(()),
    }
}

/// Connects, sends one byte and waits for it to come back; returns the stream and the
/// time from the start of the connect to the byte's return.
async fn round_trip(addr: SocketAddr, byte: u8) -> io::Result<(TcpStream, Duration)> {
    let started = Instant::now();
    let attempt = async {
        let mut tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        tcp.write_all(&[byte]).await?;
        let mut back = [0];
        tcp.read_exact(&mut back).await?;
        if back[0] != byte {
            return Err(io::Error::other("echo returned a different byte"));
        }
        Ok(tcp)
    };
    let tcp = tokio::time::timeout(ROUND_TRIP_LIMIT, attempt).await.map_err(|_| io::Error::other("no echo"))??;
    Ok((tcp, started.elapsed()))
}

async fn latency(addr: SocketAddr, n: usize, samples: Option<&str>) -> io::Result<()> {
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let (tcp, took) = round_trip(addr, i as u8).await?;
        times.push(took);
        drop(tcp);
    }
    if let Some(path) = samples {
        let lines: String = times.iter().map(|t| format!("{}\n", t.as_micros())).collect();
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        std::io::Write::write_all(&mut file, lines.as_bytes())?;
    }
    times.sort();
    let at = |q: f64| times.get(((times.len() as f64 * q).ceil() as usize).saturating_sub(1)).copied();
    let us = |d: Option<Duration>| d.map_or(0, |d| d.as_micros());
    println!("{} {}", us(at(0.50)), us(at(0.99)));
    Ok(())
}

async fn idle(addr: SocketAddr, n: usize, hold_secs: u64) -> io::Result<()> {
    let mut open = Vec::with_capacity(n);
    let mut started = 0;
    let mut running = tokio::task::JoinSet::new();
    while open.len() < n {
        while started < n && running.len() < IDLE_CONCURRENCY {
            running.spawn(round_trip(addr, started as u8));
            started += 1;
        }
        match running.join_next().await {
            Some(joined) => open.push(joined.map_err(io::Error::other)??.0),
            None => break,
        }
    }
    println!("open {}", open.len());
    // The script ends this process when it has measured; the hold time bounds it otherwise.
    tokio::time::sleep(Duration::from_secs(hold_secs)).await;
    drop(open);
    Ok(())
}

/// The most bytes of request heads `web` buffers on one connection.
const WEB_MAX_HEAD: usize = 64 * 1024;

async fn web(addr: SocketAddr, lifetime: Duration) -> io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    let serve = async {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let _ = tcp.set_nodelay(true);
            tokio::spawn(web_connection(tcp));
        }
    };
    tokio::select! {
        () = serve => Ok(()),
        () = tokio::time::sleep(lifetime) => Ok(()),
    }
}

/// Answers each request head on `tcp` in order (pipelined ones too) until the peer
/// closes or asks to.
async fn web_connection(mut tcp: TcpStream) {
    const BODY: &str = "hello from the benchmark's app\n";
    let answer = format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{BODY}", BODY.len());
    let (mut buf, mut piece) = (Vec::new(), vec![0; 16 * 1024]);
    loop {
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            buf.drain(..end + 4);
            let close = head.lines().any(|l| l.starts_with("connection:") && l.contains("close"));
            if tcp.write_all(answer.as_bytes()).await.is_err() || close {
                let _ = tcp.shutdown().await;
                return;
            }
        }
        if buf.len() > WEB_MAX_HEAD {
            return;
        }
        match tcp.read(&mut piece).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&piece[..n]),
        }
    }
}
