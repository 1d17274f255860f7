//! UDP through a hybrid connection (docs/protocol.md 10.4), with the real binary: `hyco
//! serve`, `hyco listen --to NAME=udp://…` and `hyco connect HC/NAME --bind udp:…` as
//! child processes, and peers and targets that are plain UDP sockets (and Debian's
//! dnsmasq for a real DNS query). Datagram boundaries, a session per peer, the idle
//! timeouts on both ends, every limit exceeded, mismatches rejected both ways, and a
//! connector that starts before its listener.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::bridge::{PROC_STEP, Proc, ServeProc, Target, TempDir, hyco, key_flags, spawn_listening};
use common::{KEY, TestRelay, accept, listen, settings, within};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// How long a test waits to be sure a datagram does not come.
const QUIET: Duration = Duration::from_millis(300);

/// A relay to run the clients against: a `hyco serve` child, or an in-process one.
struct Relay {
    home: TempDir,
    endpoint: String,
    key: String,
    _serve: Option<ServeProc>,
}

impl Relay {
    async fn serve(tag: &str) -> Self {
        let home = TempDir::new(tag);
        let serve = ServeProc::start(home.path()).await;
        Self { endpoint: format!("ws://{}", serve.addr), key: serve.key.clone(), home, _serve: Some(serve) }
    }

    fn in_process(tag: &str, relay: &TestRelay) -> Self {
        Self { home: TempDir::new(tag), endpoint: relay.base(), key: KEY.to_owned(), _serve: None }
    }

    fn cmd(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = hyco(self.home.path());
        cmd.args(args).args(key_flags(&self.endpoint, &self.key));
        cmd
    }

    /// `hyco listen HC --to …` (and `extra`), once it is listening.
    async fn listen(&self, hc: &str, to: &[String], extra: &[&str]) -> Proc {
        let mut args = vec!["listen", hc];
        for t in to {
            args.extend(["--to", t.as_str()]);
        }
        args.extend(extra);
        spawn_listening(self.cmd(&args)).await
    }

    /// `hyco connect PATH --bind udp:127.0.0.1:0` (and `extra`) and the address it bound,
    /// once it serves datagrams.
    async fn connect(&self, path: &str, extra: &[&str]) -> (Proc, SocketAddr) {
        self.connect_on(path, "udp:127.0.0.1:0", extra).await
    }

    async fn connect_on(&self, path: &str, bind: &str, extra: &[&str]) -> (Proc, SocketAddr) {
        let mut args = vec!["connect", path, "--bind", bind];
        args.extend(extra);
        let connect = Proc::spawn(self.cmd(&args));
        let line = connect.stderr.wait_for(PROC_STEP, "the UDP port bound", |l| l.contains("accepting on udp:")).await;
        let addr = line.split("accepting on udp:").nth(1).and_then(|r| r.split(' ').next()).expect("an address");
        (connect, addr.parse().expect("a socket address"))
    }
}

/// A UDP target that echoes each datagram (or answers `big` with `BIG` bytes), and the
/// source addresses it has seen.
struct UdpTarget {
    addr: SocketAddr,
    sources: Arc<Mutex<BTreeSet<SocketAddr>>>,
    task: JoinHandle<()>,
}

/// What an IPv6 target answers `big` with: more than a datagram over IPv4 holds.
const BIG: usize = 65_520;

impl UdpTarget {
    async fn echo_on(bind: &str) -> Self {
        let socket = UdpSocket::bind(bind).await.expect("bind the target");
        let addr = socket.local_addr().expect("target addr");
        let sources = Arc::new(Mutex::new(BTreeSet::new()));
        let seen = sources.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0; 65_536];
            loop {
                let Ok((n, from)) = socket.recv_from(&mut buf).await else { continue };
                seen.lock().expect("sources").insert(from);
                let reply = if &buf[..n] == b"big" { vec![7; BIG] } else { buf[..n].to_vec() };
                let _ = socket.send_to(&reply, from).await;
            }
        });
        Self { addr, sources, task }
    }

    async fn echo() -> Self {
        Self::echo_on("127.0.0.1:0").await
    }

    fn spec(&self, name: &str) -> String {
        format!("{name}=udp://{}", self.addr)
    }

    fn sources(&self) -> usize {
        self.sources.lock().expect("sources").len()
    }
}

impl Drop for UdpTarget {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A peer of the connector: a UDP socket connected to its port.
async fn peer(to: SocketAddr) -> UdpSocket {
    let socket = UdpSocket::bind(SocketAddr::new(to.ip(), 0)).await.expect("bind a peer");
    socket.connect(to).await.expect("connect the peer");
    socket
}

async fn send(socket: &UdpSocket, datagram: &[u8]) {
    let n = within("send a datagram", socket.send(datagram)).await.expect("send");
    assert_eq!(n, datagram.len());
}

async fn recv(socket: &UdpSocket) -> Vec<u8> {
    let mut buf = vec![0; 65_536];
    let n = within("a datagram back", socket.recv(&mut buf)).await.expect("recv");
    buf.truncate(n);
    buf
}

/// Sends `datagram` and expects it back whole.
async fn echoed(socket: &UdpSocket, datagram: &[u8]) {
    send(socket, datagram).await;
    assert_eq!(recv(socket).await, datagram, "{} bytes", datagram.len());
}

/// Nothing arrives on `socket` for a while.
async fn silent(socket: &UdpSocket) {
    let mut buf = [0; 64];
    if let Ok(r) = tokio::time::timeout(QUIET, socket.recv(&mut buf)).await {
        panic!("expected no datagram, got {r:?}");
    }
}

/// Sends `datagram` every 100 ms until an answer comes (a session opened while the path
/// changes may fail; the next datagram tries again), within `limit`.
async fn echoed_eventually(socket: &UdpSocket, datagram: &[u8], limit: Duration) {
    let started = Instant::now();
    let mut buf = vec![0; 65_536];
    loop {
        send(socket, datagram).await;
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(100), socket.recv(&mut buf)).await {
            let n = r.expect("recv");
            assert_eq!(&buf[..n], datagram);
            return;
        }
        assert!(started.elapsed() < limit, "no answer within {limit:?}");
    }
}

/// The number `what` in the connector's summary at exit (`datagrams dropped: …`).
fn dropped(summary: &str, what: &str) -> u64 {
    let (before, _) = summary.split_once(what).unwrap_or_else(|| panic!("no {what:?} in {summary}"));
    before.trim_end().rsplit(' ').next().and_then(|n| n.parse().ok()).expect("a number")
}

async fn summary(connect: &mut Proc) -> String {
    connect.terminate().await;
    connect.stderr.wait_for(PROC_STEP, "the summary", |l| l.contains("datagrams dropped:")).await
}

#[tokio::test]
async fn datagrams_keep_their_boundaries_and_each_peer_gets_its_own_replies() {
    let relay = Relay::serve("hc-udp-echo").await;
    let target = UdpTarget::echo().await;
    let mut listen = relay.listen("hc", &[target.spec("dns")], &[]).await;
    let (mut connect, port) = relay.connect("hc/dns", &[]).await;

    let a = peer(port).await;
    let mut big = vec![0; 60_000];
    for (i, b) in big.iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    for datagram in [&b"x"[..], b"", &[1; 100], &[2; 1400], &big] {
        echoed(&a, datagram).await;
    }
    // A burst, all sent before any reply is read: each intact, in order.
    let burst: Vec<Vec<u8>> =
        (0..200u16).map(|i| [&i.to_be_bytes()[..], &vec![i as u8; usize::from(i % 300)]].concat()).collect();
    for d in &burst {
        send(&a, d).await;
    }
    for d in &burst {
        assert_eq!(&recv(&a).await, d);
    }

    // Two peers at once: each gets its own replies, and nothing of the other's.
    let b = peer(port).await;
    send(&a, b"from a").await;
    send(&b, b"from b").await;
    assert_eq!(recv(&b).await, b"from b");
    assert_eq!(recv(&a).await, b"from a");
    silent(&a).await;
    silent(&b).await;
    assert_eq!(target.sources(), 2, "a session (and a socket on the listener) per peer");
    // A session whose first datagram is empty (on a prewarmed tunnel, after the empty *start*).
    let c = peer(port).await;
    echoed(&c, b"").await;
    echoed(&c, b"after").await;

    let summary = summary(&mut connect).await;
    assert!(summary.contains("3 tunnels (0 failed)"), "{summary}");
    assert_eq!(dropped(&summary, "too long"), 0);
    listen.terminate().await;
    let log = listen.stderr.text();
    assert_eq!(log.matches("-> hc/dns -> udp://").count(), 3, "{log}");
    assert!(log.contains("datagrams in 206, out 206"), "{log}");
}

/// A DNS query for `name` (type A, class IN) with id `id`.
fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = [id.to_be_bytes(), [0x01, 0x00], [0, 1], [0, 0], [0, 0], [0, 0]].concat();
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend(label.as_bytes());
    }
    q.extend([0, 0, 1, 0, 1]);
    q
}

/// The A records of a DNS answer to a query `query` (one question, answers with name
/// pointers as dnsmasq writes them).
fn a_records(query: &[u8], answer: &[u8]) -> Vec<[u8; 4]> {
    assert_eq!(answer[..2], query[..2], "the query's id");
    assert_eq!(answer[3] & 0x0f, 0, "rcode NOERROR: {answer:02x?}");
    let count = u16::from_be_bytes([answer[6], answer[7]]);
    let mut at = query.len();
    let mut out = Vec::new();
    for _ in 0..count {
        assert_eq!(answer[at] & 0xc0, 0xc0, "a name pointer");
        let (kind, len) = (u16::from_be_bytes([answer[at + 2], answer[at + 3]]), answer[at + 11] as usize);
        if kind == 1 && len == 4 {
            out.push(answer[at + 12..at + 16].try_into().expect("4 bytes"));
        }
        at += 12 + len;
    }
    out
}

/// A dnsmasq answering `hyco.test` with 198.51.100.7 on 127.0.0.1, or `None` (the test
/// skips) when dnsmasq is missing and HYCO_REQUIRE_DNSMASQ is not set.
async fn dnsmasq(dir: &Path) -> Option<(tokio::process::Child, SocketAddr)> {
    const DNSMASQ: &str = "/usr/sbin/dnsmasq";
    if !Path::new(DNSMASQ).exists() {
        assert!(
            std::env::var_os("HYCO_REQUIRE_DNSMASQ").is_none(),
            "{DNSMASQ} is missing (apt-get install dnsmasq-base)"
        );
        eprintln!("skipped: {DNSMASQ} is missing (Debian: dnsmasq-base)");
        return None;
    }
    for _ in 0..5 {
        let port = std::net::UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).expect("a free port").port();
        let mut child = tokio::process::Command::new(DNSMASQ)
            .args(["--no-daemon", "--no-resolv", "--no-hosts", "--conf-file=/dev/null", "--bind-interfaces"])
            .args(["--listen-address=127.0.0.1", "--address=/hyco.test/198.51.100.7", "--log-facility=-"])
            .arg(format!("--port={port}"))
            .arg(format!("--pid-file={}", dir.join("dnsmasq.pid").display()))
            .args(if nix_root() { &["--user=root"][..] } else { &[] })
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start dnsmasq");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let probe = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let query = dns_query(1, "hyco.test");
        for _ in 0..50 {
            let _ = probe.send_to(&query, addr).await;
            let mut buf = [0; 512];
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(100), probe.recv_from(&mut buf)).await {
                return Some((child, addr));
            }
            if child.try_wait().expect("try_wait").is_some() {
                break; // the port was taken meanwhile: another one
            }
        }
        let _ = child.kill().await;
    }
    panic!("dnsmasq did not answer on loopback");
}

/// Whether the tests run as root (dnsmasq then drops to `nobody` unless told otherwise).
fn nix_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

/// The median time of `n` queries, each from a new source port (a new session).
async fn query_latency(port: SocketAddr, n: u16) -> Duration {
    let mut times = Vec::new();
    for id in 0..n {
        let socket = peer(port).await;
        let query = dns_query(id, "hyco.test");
        let started = Instant::now();
        send(&socket, &query).await;
        let answer = recv(&socket).await;
        times.push(started.elapsed());
        assert_eq!(a_records(&query, &answer), [[198, 51, 100, 7]]);
        // Let the pool replace the tunnel this query took.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    times.sort();
    times[times.len() / 2]
}

#[tokio::test]
async fn a_dns_query_is_answered_through_the_tunnel() {
    let relay = Relay::serve("hc-udp-dns").await;
    let Some((_dnsmasq, dns)) = dnsmasq(relay.home.path()).await else { return };
    let _listen = relay.listen("hc", &[format!("dns=udp://{dns}")], &[]).await;
    let (_prewarmed, port) = relay.connect("hc/dns", &[]).await;
    let (_on_demand, cold_port) = relay.connect("hc/dns", &["--prewarm", "0"]).await;
    // Direct, prewarmed, and with a rendezvous per query (what a DNS client's new source
    // port per query costs without prewarming).
    let direct = query_latency(dns, 20).await;
    let warm = query_latency(port, 20).await;
    let cold = query_latency(cold_port, 20).await;
    // And on one session: after the first query, no rendezvous at all.
    let socket = peer(port).await;
    let mut times = Vec::new();
    for id in 0..21 {
        let query = dns_query(id, "hyco.test");
        let started = Instant::now();
        send(&socket, &query).await;
        assert_eq!(a_records(&query, &recv(&socket).await), [[198, 51, 100, 7]]);
        times.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await; // as quiet as the others
    }
    times.remove(0);
    times.sort();
    let open = times[times.len() / 2];
    eprintln!(
        "DNS query, median of 20: direct {direct:?}; through the tunnel, each a new session: prewarmed {warm:?}, \
         on demand {cold:?}; on one session {open:?}"
    );
}

#[tokio::test]
async fn an_idle_session_ends_on_either_end_and_the_next_datagram_opens_another() {
    let relay = Relay::serve("hc-udp-idle").await;
    let target = UdpTarget::echo().await;
    let mut listen = relay.listen("hc", &[target.spec("dns")], &[]).await;
    let (connect, port) = relay.connect("hc/dns", &["--udp-idle", "1"]).await;
    let a = peer(port).await;
    echoed(&a, b"one").await;
    let line = connect.stderr.wait_for(PROC_STEP, "the session idle", |l| l.contains("closed: idle")).await;
    assert!(line.contains("datagrams in 1, out 1"), "{line}");
    echoed(&a, b"two").await;
    assert_eq!(target.sources(), 2, "a second session, a second socket on the listener");
    listen.stderr.wait_for(PROC_STEP, "the listener's end closed", |l| l.contains("(1000 session idle)")).await;
    listen.terminate().await;

    // The listener's own idle timeout: a connector that keeps its session does not pin
    // the listener's socket.
    let mut listen = relay.listen("hc", &[target.spec("dns")], &["--udp-idle", "1"]).await;
    let (connect, port) = relay.connect("hc/dns", &["--udp-idle", "600"]).await;
    let b = peer(port).await;
    echoed_eventually(&b, b"three", PROC_STEP).await;
    listen.stderr.wait_for(PROC_STEP, "the listener's idle timeout", |l| l.contains("closed: idle")).await;
    connect.stderr.wait_for(PROC_STEP, "the connector told", |l| l.contains("(1000 session idle)")).await;
    echoed(&b, b"four").await;
    listen.terminate().await;
}

/// A quiet session pings through its tunnel (`--keepalive`), so a relay that drops idle
/// tunnels (as Azure does after about 4 minutes; this one after 3 s) keeps it; without
/// pings the relay drops it and the next datagram needs a new session.
#[tokio::test]
async fn a_quiet_session_keeps_its_tunnel_with_pings() {
    let mut s = settings();
    s.limits.tunnel_idle_timeout = Some(Duration::from_secs(3));
    let test_relay = TestRelay::start(s).await;
    let relay = Relay::in_process("hc-udp-keepalive", &test_relay);
    let run = async |hc: &'static str, keepalive: &'static str| {
        let target = UdpTarget::echo().await;
        let _listen = relay.listen(hc, &[target.spec("dns")], &["--keepalive", keepalive]).await;
        let (connect, port) =
            relay.connect(&format!("{hc}/dns"), &["--keepalive", keepalive, "--udp-idle", "600"]).await;
        let a = peer(port).await;
        echoed(&a, b"before").await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        echoed_eventually(&a, b"after", PROC_STEP).await;
        (target.sources(), connect.stderr.text())
    };
    let ((kept, kept_log), (dropped, dropped_log)) = tokio::join!(run("kept", "1"), run("dropped", "0"));
    assert_eq!(kept, 1, "one session across 5 quiet seconds:\n{kept_log}");
    assert_eq!(dropped, 2, "without pings the relay dropped the first session:\n{dropped_log}");
}

#[tokio::test]
async fn a_new_peer_beyond_the_session_limit_is_dropped_and_counted() {
    let relay = Relay::serve("hc-udp-cap").await;
    let target = UdpTarget::echo().await;
    let _listen = relay.listen("hc", &[target.spec("dns")], &[]).await;
    let (mut connect, port) = relay.connect("hc/dns", &["--udp-sessions", "2", "--udp-idle", "2"]).await;
    let (a, b, c) = (peer(port).await, peer(port).await, peer(port).await);
    echoed(&a, b"a").await;
    echoed(&b, b"b").await;
    send(&c, b"c").await;
    silent(&c).await;
    let line = connect.stderr.wait_for(PROC_STEP, "the drop logged", |l| l.contains("dropped 1 datagram(s)")).await;
    assert!(line.contains("2 sessions at once (--udp-sessions)"), "{line}");
    // The sessions still there carry on; once one has gone idle, the new peer gets in.
    echoed(&a, b"a again").await;
    connect.stderr.wait_for(PROC_STEP, "b's session idle", |l| l.contains("closed: idle")).await;
    echoed_eventually(&c, b"c again", PROC_STEP).await;
    let summary = summary(&mut connect).await;
    assert_eq!(dropped(&summary, "over the session limit"), 1, "{summary}");
}

#[tokio::test]
async fn datagrams_too_long_are_dropped_both_ways() {
    let relay = Relay::serve("hc-udp-oversize").await;
    let target = match UdpSocket::bind("[::1]:0").await {
        Ok(probe) => {
            drop(probe);
            UdpTarget::echo_on("[::1]:0").await
        }
        Err(e) => return eprintln!("skipped: no IPv6 loopback ({e})"),
    };
    let _listen = relay.listen("hc", &[format!("dns=udp://{}", target.addr)], &[]).await;
    let (mut connect, port) = relay.connect_on("hc/dns", "udp:[::1]:0", &[]).await;
    let a = peer(port).await;
    echoed(&a, &[1; 65_507]).await;
    // From the peer: over IPv6 a datagram can be longer than hyco carries.
    send(&a, &[2; 65_508]).await;
    silent(&a).await;
    let line =
        connect.stderr.wait_for(PROC_STEP, "the drop", |l| l.contains("longer than 65507 bytes (from [::1]")).await;
    assert!(line.contains("dropped 1 datagram(s)"), "{line}");
    // From the tunnel: the target's reply is longer; the connector drops it.
    send(&a, b"big").await;
    silent(&a).await;
    connect.stderr.wait_for(PROC_STEP, "the drop", |l| l.contains("(from the tunnel of [::1]")).await;
    echoed(&a, b"still there").await;
    let summary = summary(&mut connect).await;
    assert_eq!(dropped(&summary, "too long"), 2, "{summary}");
}

#[tokio::test]
async fn a_udp_session_to_a_tcp_target_and_a_stream_to_a_udp_target_are_rejected() {
    let relay = Relay::serve("hc-udp-mismatch").await;
    let (udp, tcp) = (UdpTarget::echo().await, Target::echo().await);
    let _listen = relay.listen("hc", &[udp.spec("dns"), format!("web={}", tcp.addr)], &[]).await;

    let mut connect = Proc::spawn(relay.cmd(&["connect", "hc/web", "--bind", "udp:127.0.0.1:0"]));
    let status = connect.exit(PROC_STEP).await;
    let stderr = connect.stderr.text();
    assert_eq!(status.code(), Some(8), "a listener's rejection\n{stderr}");
    assert!(stderr.contains("400 This target is a TCP service: a UDP session"), "{stderr}");

    let mut connect = Proc::spawn(relay.cmd(&["connect", "hc/dns", "--bind", "127.0.0.1:0"]));
    let status = connect.exit(PROC_STEP).await;
    let stderr = connect.stderr.text();
    assert_eq!(status.code(), Some(8), "{stderr}");
    assert!(
        stderr.contains("400 This target is a UDP service: reach it with hyco connect --bind udp:PORT"),
        "{stderr}"
    );

    // The UDP settings are for a UDP port.
    let mut connect = Proc::spawn(relay.cmd(&["connect", "hc/web", "--bind", "127.0.0.1:0", "--udp-idle", "5"]));
    assert!(!connect.exit(PROC_STEP).await.success());
    let stderr = connect.stderr.text();
    assert!(stderr.contains("--udp-idle and --udp-sessions are for a UDP forward"), "{stderr}");
}

#[tokio::test]
async fn a_connector_started_before_its_listener_waits_then_carries() {
    let relay = Relay::serve("hc-udp-wait").await;
    let target = UdpTarget::echo().await;
    let (connect, port) = relay.connect("hc/dns", &[]).await;
    connect.stderr.wait_for(PROC_STEP, "the wait said", |l| l.contains("waiting for a listener on 'hc'")).await;
    let a = peer(port).await;
    send(&a, b"anyone?").await;
    silent(&a).await;
    connect.stderr.wait_for(PROC_STEP, "the failed session", |l| l.contains("no listener on 'hc' yet")).await;
    let _listen = relay.listen("hc", &[target.spec("dns")], &[]).await;
    echoed_eventually(&a, b"now?", PROC_STEP).await;
    connect.stderr.wait_for(PROC_STEP, "the listener seen", |l| l.contains("a listener is online on 'hc'")).await;
}

#[tokio::test]
async fn datagrams_beyond_a_session_queue_or_the_queued_bytes_are_dropped() {
    // A listener that accepts the path check, then leaves the sessions' accepts
    // unanswered: their datagrams wait in the queues.
    let test_relay = TestRelay::start(settings()).await;
    let relay = Relay::in_process("hc-udp-queue", &test_relay);
    let mut control = listen(&test_relay, "hc").await;
    let addr = test_relay.addr;
    let check = tokio::spawn(async move {
        let first = control.next_accept().await;
        drop(accept(addr, &first, &[]).await);
        control
    });
    let (mut connect, port) = relay.connect("hc", &["--prewarm", "0"]).await;
    let mut control = within("the check", check).await.expect("check task");

    let a = peer(port).await;
    for i in 0..300u16 {
        send(&a, &i.to_be_bytes()).await;
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    let _held = control.next_accept().await;
    connect
        .stderr
        .wait_for(PROC_STEP, "the queue full", |l| {
            l.contains("dropped 32 datagram(s) so far: the session's queue is full")
        })
        .await;
    let b = peer(port).await;
    for _ in 0..80 {
        send(&b, &[3; 60_000]).await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let summary = summary(&mut connect).await;
    // 256 wait in a's queue; of b's 4.8 MB, 4 MiB less a's bytes wait.
    let full = dropped(&summary, "with the queue full");
    assert!(full > 300 - 256, "{summary}");
    assert!(full >= 300 - 256 + 80 - 70, "{summary}");
}

#[tokio::test]
async fn a_udp_forward_runs_beside_a_tcp_one_in_one_connect() {
    let relay = Relay::serve("hc-udp-forwards").await;
    let (udp, tcp) = (UdpTarget::echo().await, Target::echo().await);
    let _listen = relay.listen("hc", &[udp.spec("dns"), format!("web={}", tcp.addr)], &[]).await;
    let args = ["connect", "hc", "-L", "udp:127.0.0.1:0:dns", "-L", "127.0.0.1:0:web"];
    let connect = Proc::spawn(relay.cmd(&args));
    let bound = |what: &'static str| {
        let stderr = connect.stderr.clone();
        async move {
            let line = stderr.wait_for(PROC_STEP, what, |l| l.contains("accepting on") && l.contains(what)).await;
            let addr = line.split("accepting on ").nth(1).and_then(|r| r.split(' ').next()).expect("an address");
            addr.trim_start_matches("udp:").parse::<SocketAddr>().expect("a socket address")
        }
    };
    let (udp_port, tcp_port) = (bound("for hc/dns").await, bound("for hc/web").await);
    let a = peer(udp_port).await;
    echoed(&a, b"datagram").await;
    let mut stream = within("connect", tokio::net::TcpStream::connect(tcp_port)).await.expect("connect");
    let echoed_bytes = within("an echo", common::bridge::round_trip(&mut stream, b"stream")).await.expect("echo");
    assert_eq!(echoed_bytes, b"stream");
}
