//! Load: a thousand tunnels open at once through the real relay binary, each moving a MiB
//! both ways with every byte checked (SHA-256), and ten thousand senders one after another
//! spread over the 25 listeners one HC may have. Both print what they measured.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::bridge::*;
use common::*;
use futures_util::StreamExt;
use hyco::protocol::{self, Action, RelayMessage};
use hyco::ws::handshake;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Barrier;
use tokio_tungstenite::tungstenite::Message;

/// The SHA-256 of `data` rotated left by `offset`.
fn rotated_digest(data: &[u8], offset: usize) -> [u8; 32] {
    let mut hash = FastSha256::new();
    hash.update(&data[offset..]);
    hash.update(&data[..offset]);
    hash.finish()
}

/// One tunnel through `hyco connect` at `addr` to an echo target: proves the path with a
/// hello, holds it open until every tunnel has, then sends `data` rotated by `offset`
/// and checks what comes back.
async fn one_tunnel(
    addr: std::net::SocketAddr,
    i: usize,
    data: Arc<Vec<u8>>,
    offset: usize,
    all_open: Arc<Barrier>,
) -> Result<(), String> {
    let opened = async {
        let mut tcp = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
        let hello = format!("{i:08}");
        tcp.write_all(hello.as_bytes()).await.map_err(|e| format!("hello: {e}"))?;
        let mut back = [0; 8];
        tcp.read_exact(&mut back).await.map_err(|e| format!("hello back: {e}"))?;
        if back != hello.as_bytes() {
            return Err(format!("hello came back as {:?}", String::from_utf8_lossy(&back)));
        }
        Ok(tcp)
    }
    .await;
    // Wait for the others even after a failure, so that they do not wait forever.
    all_open.wait().await;
    let mut tcp = opened?;
    let (mut r, mut w) = tcp.split();
    let write = async {
        w.write_all(&data[offset..]).await?;
        w.write_all(&data[..offset]).await?;
        w.shutdown().await
    };
    let read = async {
        let mut hash = FastSha256::new();
        let mut buf = vec![0; 64 * 1024];
        let mut total = 0;
        loop {
            match r.read(&mut buf).await? {
                0 => return std::io::Result::Ok((total, hash.finish())),
                n => {
                    hash.update(&buf[..n]);
                    total += n;
                }
            }
        }
    };
    let (wrote, read) = tokio::join!(write, read);
    wrote.map_err(|e| format!("send: {e}"))?;
    let (len, digest) = read.map_err(|e| format!("receive: {e}"))?;
    if len != data.len() || digest != rotated_digest(&data, offset) {
        return Err(format!("{len} bytes back of {}, or different ones", data.len()));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_tunnels_at_once_each_moving_a_mib_both_ways_intact() {
    const TUNNELS: usize = 1000;
    const LEN: usize = 1 << 20;
    // Here: the local client, hyco connect's two sockets, hyco listen's two, the target.
    let fd_limit = raise_fd_limit(6 * TUNNELS as u64 + 500);
    let started = Instant::now();
    let home = TempDir::new("load-1000");
    let serve = ServeProc::start(home.path()).await;
    // An echo with a bigger buffer than `tokio::io::copy`'s: fewer wake-ups in a debug build.
    let target = Target::spawn(|mut tcp| async move {
        let mut buf = vec![0; 64 * 1024];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) if tcp.write_all(&buf[..n]).await.is_ok() => {}
                _ => return,
            }
        }
        let _ = tcp.shutdown().await;
    })
    .await;
    let mut ls = listen_settings("load", &[target.spec()]);
    ls.connections = 4;
    let listening = Listening::start(serve.client(), ls).await;
    let mut channels = listening.stats.channels.subscribe();
    within("4 control channels", channels.wait_for(|n| *n == 4)).await.expect("stats alive");
    let bound = Bound::start(serve.client(), "load", None).await;

    let mut data = vec![0; LEN];
    Noise::new(42).fill(&mut data);
    let data = Arc::new(data);
    // The listener's count of live tunnels, at its highest.
    let peak = Arc::new(AtomicU64::new(0));
    let watch = tokio::spawn({
        let (stats, peak) = (listening.stats.clone(), peak.clone());
        async move {
            loop {
                peak.fetch_max(stats.active.load(Ordering::Relaxed), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });
    let all_open = Arc::new(Barrier::new(TUNNELS));
    let mut tunnels = tokio::task::JoinSet::new();
    for i in 0..TUNNELS {
        // Each tunnel's bytes are the noise rotated by its own offset: two tunnels whose
        // data got crossed would not hash right.
        let offset = (i * 7919) % LEN;
        tunnels.spawn(one_tunnel(bound.addr, i, data.clone(), offset, all_open.clone()));
    }
    let failures = within_for(Duration::from_secs(240), "1,000 tunnels", async {
        let mut failures = Vec::new();
        while let Some(r) = tunnels.join_next().await {
            if let Err(e) = r.expect("tunnel task") {
                failures.push(e);
            }
        }
        failures
    })
    .await;
    watch.abort();
    let took = started.elapsed();
    let hwm = proc_status_kib(serve.pid(), "VmHWM");
    let rss = proc_status_kib(serve.pid(), "VmRSS");
    eprintln!(
        "{TUNNELS} tunnels x 1 MiB each way in {:.1} s; listener's live tunnels at most {}; relay (hyco serve, \
         debug) VmHWM {:.1} MiB, VmRSS now {:.1} MiB; RLIMIT_NOFILE here {fd_limit}",
        took.as_secs_f64(),
        peak.load(Ordering::Relaxed),
        hwm as f64 / 1024.0,
        rss as f64 / 1024.0,
    );
    assert!(
        failures.is_empty(),
        "{} of {TUNNELS} tunnels failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert_eq!(peak.load(Ordering::Relaxed), TUNNELS as u64, "all tunnels open at once");
    until_idle("the listener's tunnels to end", &listening.stats).await;
    until_idle("the connect side's tunnels to end", &bound.stats).await;
    assert_eq!(listening.stats.failed.load(Ordering::Relaxed), 0);
    assert_eq!(bound.stats.failed.load(Ordering::Relaxed), 0);
    assert_eq!(bound.stats.bytes_out.load(Ordering::Relaxed), (TUNNELS * (LEN + 8)) as u64, "bytes sent");
    assert_eq!(bound.stats.bytes_in.load(Ordering::Relaxed), (TUNNELS * (LEN + 8)) as u64, "bytes received");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_senders_in_turn_spread_over_25_listeners() {
    const LISTENERS: usize = protocol::MAX_LISTENERS_PER_HC;
    const SENDERS: usize = 10_000;
    let relay = TestRelay::start(settings()).await;
    let accepted: Arc<Vec<AtomicUsize>> = Arc::new((0..LISTENERS).map(|_| AtomicUsize::new(0)).collect());
    let mut listeners = tokio::task::JoinSet::new();
    for i in 0..LISTENERS {
        let mut l = listen(&relay, "spread").await;
        let (accepted, addr) = (accepted.clone(), relay.addr);
        // Accept each sender, and hang up at once.
        listeners.spawn(async move {
            while let Some(Ok(msg)) = l.ws.next().await {
                let Message::Text(text) = msg else { continue };
                let Ok(RelayMessage::Accept(a)) = serde_json::from_str(&text) else { panic!("not an accept: {text}") };
                let (host, target) = split_url(&a.address);
                let mut tcp = TcpStream::connect(addr).await.expect("connect to accept");
                handshake::client(&mut tcp, host, target, &[], 64 * 1024).await.expect("accept rendezvous");
                accepted[i].fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let url = relay.url("spread", Action::Connect);
    let (host, target) = split_url(&url);
    let headers = [(protocol::TOKEN_HEADER.to_owned(), token("spread"))];
    let started = Instant::now();
    let mut refused = Vec::new();
    within_for(Duration::from_secs(240), "10,000 senders", async {
        for n in 0..SENDERS {
            let mut tcp = TcpStream::connect(relay.addr).await.expect("connect");
            if let Err(e) = handshake::client(&mut tcp, host, target, &headers, 64 * 1024).await {
                refused.push(format!("sender {n}: {e}"));
            }
        }
    })
    .await;
    let took = started.elapsed();
    // A sender has its 101 a moment before its listener has counted its own.
    let total = || accepted.iter().map(|c| c.load(Ordering::Relaxed)).sum::<usize>();
    let _ = tokio::time::timeout(STEP, async {
        while total() < SENDERS - refused.len() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    listeners.abort_all();
    let counts: Vec<usize> = accepted.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    eprintln!(
        "{SENDERS} senders in {:.1} s ({:.2} ms each); per listener: {counts:?} (min {}, max {})",
        took.as_secs_f64(),
        took.as_secs_f64() * 1000.0 / SENDERS as f64,
        counts.iter().min().unwrap_or(&0),
        counts.iter().max().unwrap_or(&0),
    );
    assert!(refused.is_empty(), "{} senders not served: {:?}", refused.len(), &refused[..refused.len().min(5)]);
    assert_eq!(counts.iter().sum::<usize>(), SENDERS, "every sender accepted once");
    assert!(counts.iter().all(|&c| c >= 200), "a listener got fewer than 200 of {SENDERS}: {counts:?}");
}
