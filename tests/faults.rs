//! Faults from outside: the relay process killed (SIGKILL) and restarted on its port with
//! its key, a `hyco listen` process killed, targets that never accept or hang up on an
//! upload, and a sender that stops reading (the relay's memory stays bounded and other
//! tunnels keep their speed). Every application involved must see an error, never a
//! clean end of stream.
//!
//! Not here, because covered elsewhere: a refused or resetting target (tests/bridge.rs), a
//! listener token expiring without renewal (1008, tests/relay_limits.rs) and a listener
//! living through many token lifetimes by renewing (tests/bridge.rs).

mod common;

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::bridge::*;
use common::*;
use hyco::client::connect::{ConnectSettings, open_sender};
use hyco::protocol::{Action, client_url};
use hyco::ws::frame::OpCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// How a connection ended, as its application saw it: `Ok` is a clean end of stream.
type End = Result<(), ErrorKind>;

// A socket that is read and written at once reports a reset to whichever call comes first,
// and a read after that sees a plain end of stream. So each connection whose end is judged
// here has a reader only: data flows one way per connection.

/// A target that streams noise to every connection and never reads.
async fn streaming_target() -> Target {
    Target::spawn(|mut tcp| async move {
        let mut buf = vec![0; 64 * 1024];
        Noise::new(5).fill(&mut buf);
        while tcp.write_all(&buf).await.is_ok() {}
    })
    .await
}

/// A target that only reads; it counts what arrives and reports how its reading ended.
async fn sink_target() -> (Target, Arc<AtomicU64>, mpsc::UnboundedReceiver<End>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    let target = Target::spawn(move |mut tcp| {
        let (tx, counter) = (tx.clone(), counter.clone());
        async move {
            let mut buf = vec![0; 64 * 1024];
            let end = loop {
                match tcp.read(&mut buf).await {
                    Ok(0) => break Ok(()),
                    Ok(n) => counter.fetch_add(n as u64, Ordering::Relaxed),
                    Err(e) => break Err(e.kind()),
                };
            };
            let _ = tx.send(end);
        }
    })
    .await;
    (target, received, rx)
}

/// Reads from `tcp` until at least `bytes` have arrived.
async fn read_at_least(tcp: &mut TcpStream, bytes: u64) {
    let mut buf = vec![0; 64 * 1024];
    let mut got = 0u64;
    within("data through the tunnel", async {
        while got < bytes {
            match tcp.read(&mut buf).await {
                Ok(0) => panic!("the tunnel ended after {got} bytes"),
                Ok(n) => got += n as u64,
                Err(e) => panic!("the tunnel failed after {got} bytes: {e}"),
            }
        }
    })
    .await;
}

/// Writes noise into `tcp` until a write fails; returns how it failed.
fn push(mut tcp: TcpStream) -> tokio::task::JoinHandle<ErrorKind> {
    tokio::spawn(async move {
        let mut buf = vec![0; 64 * 1024];
        Noise::new(6).fill(&mut buf);
        loop {
            if let Err(e) = tcp.write_all(&buf).await {
                return e.kind();
            }
        }
    })
}

/// Waits until `counter` reaches `at_least`.
async fn until_count(what: &str, counter: &AtomicU64, at_least: u64) {
    within(what, async {
        while counter.load(Ordering::Relaxed) < at_least {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// Sends a unique message through `bound` and checks it comes back from an echo target.
async fn echo_once(bound: &Bound, what: &str) {
    let mut tcp = bound.connect().await;
    let msg = format!("hello through the relay: {what}");
    let got = within_for(PROC_STEP, what, round_trip(&mut tcp, msg.as_bytes())).await.expect("round trip");
    assert_eq!(String::from_utf8_lossy(&got), msg, "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_relay_is_an_error_at_both_ends_and_its_restart_serves_with_the_same_key() {
    let home = TempDir::new("fault-relay-kill");
    let mut serve = ServeProc::start(home.path()).await;
    let (addr, key) = (serve.addr, serve.key.clone());
    let (streaming, echo) = (streaming_target().await, Target::echo().await);
    let (sink, sunk, mut sink_ends) = sink_target().await;
    let to = [format!("down={}", streaming.spec()), format!("up={}", sink.spec()), format!("echo={}", echo.spec())];
    // The clients hold the key as read before the crash; the restarted relay must take it.
    let listening = Listening::start(key_client(addr, &key), listen_settings("hc", &to)).await;
    let down = Bound::start(key_client(addr, &key), "hc", Some("down")).await;
    let up = Bound::start(key_client(addr, &key), "hc", Some("up")).await;
    let echoing = Bound::start(key_client(addr, &key), "hc", Some("echo")).await;
    echo_once(&echoing, "before the crash").await;

    // Mid-transfer both ways: a download to one client, an upload from another.
    let mut downloading = down.connect().await;
    read_at_least(&mut downloading, 1 << 20).await;
    let uploading = push(up.connect().await);
    until_count("the upload to reach the target", &sunk, 1 << 20).await;
    let mut channels = listening.stats.channels.subscribe();
    serve.proc.child.start_kill().expect("SIGKILL the relay");
    within("the relay to die", serve.proc.child.wait()).await.expect("wait");

    let (n, end) = within("the downloading client's end", read_until_end(&mut downloading)).await;
    assert_eq!(end.map_err(|e| e.kind()), Err(ErrorKind::ConnectionReset), "client, {n} bytes after the kill");
    let target_end = within("the target's end of the upload", sink_ends.recv()).await.expect("a report");
    assert_eq!(target_end, Err(ErrorKind::ConnectionReset), "target: a reset, never a clean end");
    let upload_end = within("the upload to fail", uploading).await.expect("pusher task");
    assert!(matches!(upload_end, ErrorKind::ConnectionReset | ErrorKind::BrokenPipe), "{upload_end:?}");
    until_idle("the connect side's tunnels to end", &down.stats).await;
    until_idle("the connect side's tunnels to end", &up.stats).await;
    until_idle("the listener's tunnels to end", &listening.stats).await;
    assert_eq!(down.stats.failed.load(Ordering::Relaxed) + up.stats.failed.load(Ordering::Relaxed), 2);
    assert_eq!(listening.stats.failed.load(Ordering::Relaxed), 2, "the listener saw both tunnels abort");
    within("the control channel to drop", channels.wait_for(|n| *n == 0)).await.expect("stats alive");

    let restarted = Instant::now();
    let serve = ServeProc::restart_on(home.path(), addr).await;
    assert_eq!(serve.addr, addr);
    assert_eq!(serve.key, key, "the namespace key survives a crash");
    // Backoff 0 s, then 1 s, 2 s (docs/protocol.md 5.6).
    within_for(PROC_STEP, "the listener to reconnect", channels.wait_for(|n| *n == 1)).await.expect("stats alive");
    eprintln!("listener back {:.1} s after the restart", restarted.elapsed().as_secs_f64());
    echo_once(&echoing, "after the restart").await;
    read_at_least(&mut down.connect().await, 1 << 20).await;
    drop(serve);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_listener_is_an_error_for_its_sender_and_404_until_it_is_back() {
    let relay = TestRelay::start(settings()).await;
    let home = TempDir::new("fault-listener-kill");
    let streaming = streaming_target().await;
    let endpoint = format!("ws://{}", relay.addr);
    let start_listener = || {
        let mut cmd = hyco(home.path());
        cmd.args(["listen", "hc", "--to", &streaming.spec()]).args(key_flags(&endpoint, KEY));
        let p = Proc::spawn(cmd);
        async move {
            p.stderr.wait_for(PROC_STEP, "the listener's 'listening' log", |l| l.contains(" listening")).await;
            p
        }
    };
    let mut listener = start_listener().await;
    let bound = Bound::start(client(relay.addr), "hc", None).await;
    let mut downloading = bound.connect().await;
    read_at_least(&mut downloading, 1 << 20).await;

    listener.child.start_kill().expect("SIGKILL the listener");
    within("the listener to die", listener.child.wait()).await.expect("wait");
    let (n, end) = within("the sender's end of the tunnel", read_until_end(&mut downloading)).await;
    assert_eq!(end.map_err(|e| e.kind()), Err(ErrorKind::ConnectionReset), "sender, {n} bytes after the kill");
    until_idle("the connect side's tunnel to end", &bound.stats).await;
    assert_eq!(bound.stats.failed.load(Ordering::Relaxed), 1);

    // The relay forgets the listener as soon as its connection drops; a sender that raced
    // the drop could wait out the accept window (504), any later one gets 404 at once.
    let settings = ConnectSettings { hc: "hc".into(), suffix: None, azbridge: None };
    let sending = client(relay.addr);
    let sender = || open_sender(&sending, &settings);
    let mut answers = Vec::new();
    within_for(Duration::from_secs(10), "a 404 for a sender with no listener", async {
        loop {
            let err = sender().await.err().expect("no listener: the sender must be refused");
            let text = format!("{err:#}");
            if text.contains("404") {
                break;
            }
            answers.push(text);
        }
    })
    .await;
    assert!(answers.len() <= 1, "more than one sender raced the listener's drop: {answers:?}");
    assert_eq!(relay.metrics.listeners("hc"), 0);
    for i in 0..3 {
        let started = Instant::now();
        let err = within("a sender with no listener", sender()).await.err().expect("refused");
        assert!(format!("{err:#}").contains("404"), "sender {i}: {err:#}");
        assert!(started.elapsed() < Duration::from_secs(1), "a 404 must come at once, not after a wait");
    }

    let _listener = start_listener().await;
    within("a sender once the listener is back", sender()).await.expect("the new listener accepts");
    read_at_least(&mut bound.connect().await, 1 << 20).await;
}

/// A TCP port on 127.0.0.1 that never accepts: a listening socket with a backlog of one,
/// already filled. Further SYNs are dropped, so connecting hangs until a timeout.
struct Blackhole {
    addr: SocketAddr,
    _socket: socket2::Socket,
    _filler: std::net::TcpStream,
}

impl Blackhole {
    fn new() -> Self {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        socket.bind(&"127.0.0.1:0".parse::<SocketAddr>().expect("addr").into()).expect("bind");
        socket.listen(0).expect("listen");
        let addr = socket.local_addr().expect("addr").as_socket().expect("inet");
        let filler = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("fill the backlog");
        let probe = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300));
        assert!(probe.is_err(), "the blackhole accepted a connection");
        Self { addr, _socket: socket, _filler: filler }
    }
}

#[tokio::test]
async fn a_target_that_never_accepts_is_a_504_after_the_target_connect_timeout() {
    const TIMEOUT: Duration = Duration::from_millis(600);
    let relay = TestRelay::start(settings()).await;
    let hole = Blackhole::new();
    let echo = Target::echo().await;
    let mut ls = listen_settings("hc", &[format!("hole={}", hole.addr), format!("echo={}", echo.spec())]);
    ls.target_connect_timeout = TIMEOUT;
    let _listening = Listening::start(client(relay.addr), ls).await;

    let started = Instant::now();
    let settings = ConnectSettings { hc: "hc".into(), suffix: Some("hole".into()), azbridge: None };
    let err = within("open_sender", open_sender(&client(relay.addr), &settings)).await.err().expect("refused");
    let took = started.elapsed();
    let text = format!("{err:#}");
    assert!(text.contains("504") && text.contains("timed out"), "{text}");
    assert!(took >= TIMEOUT - Duration::from_millis(50), "answered after {took:?}, before the timeout");
    assert!(took < TIMEOUT + Duration::from_secs(2), "answered only after {took:?}");

    // Through hyco connect, the application gets a reset, not an empty clean stream.
    let bound = Bound::start(client(relay.addr), "hc", Some("hole")).await;
    let mut tcp = bound.connect().await;
    let (n, end) = within("the local connection to end", read_until_end(&mut tcp)).await;
    assert_eq!((n, end.map_err(|e| e.kind())), (0, Err(ErrorKind::ConnectionReset)));
    // The listener is unharmed.
    echo_once(&Bound::start(client(relay.addr), "hc", Some("echo")).await, "the other target").await;
}

#[tokio::test]
async fn a_target_hanging_up_on_an_upload_is_a_reset_for_the_sender() {
    let relay = TestRelay::start(settings()).await;
    // Accepts, never reads nor writes, and drops the connection with a reset.
    let target = Target::spawn(|tcp| async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        abort_socket(tcp);
    })
    .await;
    let _listening = Listening::start(client(relay.addr), listen_settings("hc", &[target.spec()])).await;
    let bound = Bound::start(client(relay.addr), "hc", None).await;

    let uploading = push(bound.connect().await);
    let upload_end = within("the upload to fail", uploading).await.expect("pusher task");
    assert!(matches!(upload_end, ErrorKind::ConnectionReset | ErrorKind::BrokenPipe), "{upload_end:?}");
    until_idle("the connect side's tunnel to end", &bound.stats).await;
    assert_eq!(bound.stats.failed.load(Ordering::Relaxed), 1);
}

// ---------------------------------------------------------------------------------------
// A stalled reader

/// A sender and an accepting listener joined through the relay at `addr`, both raw.
async fn raw_tunnel(addr: SocketAddr, l: &mut Listener, token: &str) -> (RawWs, RawWs) {
    let url = client_url(&format!("ws://{addr}"), "hc", None, "", Action::Connect, None);
    let headers = vec![auth(token)];
    let sender = tokio::spawn(async move { raw_upgrade(addr, &url, &headers).await });
    let a = l.next_accept().await;
    let listener = raw_upgrade(addr, &a.address, &[]).await.expect("accept rendezvous");
    let sender = within("sender 101", sender).await.expect("sender task").expect("sender upgrade");
    (sender, listener)
}

/// Reads data frames from `ws` until `total` payload bytes have arrived.
async fn read_payload(ws: &mut RawWs, total: u64) {
    let mut buf = vec![0; 256 * 1024];
    let mut got = 0;
    while got < total {
        let h = ws.reader.header().await.expect("frame header").expect("a frame");
        assert_eq!(h.opcode, OpCode::Binary);
        loop {
            let n = ws.reader.payload(&mut buf).await.expect("payload");
            if n == 0 {
                break;
            }
            got += n as u64;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_that_stops_reading_stalls_its_tunnel_only_and_the_relay_stays_small() {
    const PUSH: u64 = 200 << 20;
    const FRAME: usize = 1 << 20;
    const SECOND: u64 = 32 << 20;
    let home = TempDir::new("fault-stall");
    let serve = ServeProc::start(home.path()).await;
    let url = client_url(&format!("ws://{}", serve.addr), "hc", None, "", Action::Listen, None);
    let (ws, _) = within("listen", ws_connect(serve.addr, &url, &[auth(&serve.token("hc"))])).await.expect("listen");
    let mut l = Listener { ws };
    let token = serve.token("hc");

    // The stalled tunnel: its sender never reads, and keeps its socket open.
    let (_stalled_sender, mut stalled_listener) = raw_tunnel(serve.addr, &mut l, &token).await;
    let (mut fast_sender, mut fast_listener) = raw_tunnel(serve.addr, &mut l, &token).await;
    fast_listener.send(OpCode::Binary, &[1; 1000]).await;
    read_payload(&mut fast_sender, 1000).await;
    let rss_before = proc_status_kib(serve.pid(), "VmRSS");

    let pushed = Arc::new(AtomicU64::new(0));
    let pusher = tokio::spawn({
        let pushed = pushed.clone();
        async move {
            let mut frame = vec![0; FRAME];
            Noise::new(8).fill(&mut frame);
            while pushed.load(Ordering::Relaxed) < PUSH {
                stalled_listener.writer.send(OpCode::Binary, &frame).await.expect("push");
                pushed.fetch_add(FRAME as u64, Ordering::Relaxed);
            }
        }
    });
    // A measurement window: the push must stop moving (socket buffers full) well short of
    // what was offered.
    let stall_started = Instant::now();
    let stalled_at = within_for(Duration::from_secs(30), "the push to stall", async {
        let mut last = (0, Instant::now());
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = pushed.load(Ordering::Relaxed);
            if now != last.0 {
                last = (now, Instant::now());
            } else if last.1.elapsed() >= Duration::from_secs(1) {
                return now;
            }
        }
    })
    .await;
    assert!(!pusher.is_finished(), "the push of {PUSH} bytes went through to a reader that never reads");
    assert!(stalled_at < PUSH / 2, "{stalled_at} bytes in flight to a stalled reader");

    // Meanwhile another tunnel through the same relay moves 32 MiB at speed.
    let started = Instant::now();
    let frame = vec![3u8; FRAME];
    let send = async {
        for _ in 0..SECOND / FRAME as u64 {
            fast_listener.writer.send(OpCode::Binary, &frame).await.expect("send");
        }
    };
    within_for(Duration::from_secs(15), "32 MiB on the other tunnel", async {
        tokio::join!(send, read_payload(&mut fast_sender, SECOND))
    })
    .await;
    let second_took = started.elapsed();
    let rss_after = proc_status_kib(serve.pid(), "VmRSS");
    assert_eq!(pushed.load(Ordering::Relaxed), stalled_at, "the stalled push moved while the other tunnel ran");
    eprintln!(
        "stalled after {:.1} MiB in {:.1} s; other tunnel: 32 MiB in {:.2} s; relay VmRSS {rss_before} KiB -> {rss_after} KiB",
        stalled_at as f64 / (1 << 20) as f64,
        stall_started.elapsed().as_secs_f64() - 1.0,
        second_took.as_secs_f64(),
    );
    assert!(second_took < Duration::from_secs(8), "32 MiB took {second_took:?} beside a stalled tunnel");
    assert!(
        rss_after.saturating_sub(rss_before) < 4 * 1024,
        "the relay grew from {rss_before} KiB to {rss_after} KiB holding a stalled tunnel"
    );
    pusher.abort();
}
