//! Public TCP ports (docs/protocol.md 10.2) end to end over real sockets: visitors with
//! curl, python3 sockets and iperf3; half-close both ways; resets when a listener or a
//! target dies or no listener is online; allowlists; who may open which port (the real
//! binary's exit codes); the same port after a reconnect or a relay restart, kept from
//! other HCs meanwhile and freed after the grace period; named targets; declared ports;
//! no leak over 1,000 listen/leave cycles; the per-port metrics.
//!
//! iperf3 is needed by one test: without it that test is skipped with a note, or fails if
//! `HYCO_REQUIRE_IPERF=1`. curl and python3 are skipped the same way under
//! `HYCO_REQUIRE_CURL_PYTHON=1`.

mod common;

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::bridge::*;
use common::*;
use futures_util::SinkExt;
use hyco::protocol::{self, Action};
use hyco::public::Proto;
use hyco::relay::RelaySettings;
use hyco::relay::metrics::Unserved;
use hyco::status::Stats;
use hyco::ws::handshake::HandshakeError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

// ---------------------------------------------------------------------------------------
// Helpers

/// Whether `tool` runs here. If not, the test is skipped with a note, or fails when the
/// variable `require` is set to 1.
fn have(tool: &str, require: &str) -> bool {
    let runs = std::process::Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !runs {
        assert!(std::env::var(require).as_deref() != Ok("1"), "{require}=1 but {tool} is not installed");
        eprintln!("skipped: {tool} is not installed (set {require}=1 to make this a failure)");
    }
    runs
}

/// A configured relay's settings (as `--config` gives them): the tests' key as the root
/// rule, HCs created on first listen, `extra` appended, and the tests' short limits.
fn configured(extra: &str) -> RelaySettings {
    let text = format!(
        "auto_create = true\n[[rules]]\nname = \"{KEY_NAME}\"\nkey = \"{KEY}\"\nrights = [\"Manage\"]\n{extra}"
    );
    let mut s = RelaySettings::from_toml(&text, Path::new(".")).expect("the test configuration");
    s.limits = settings().limits;
    s
}

/// The addresses the relay granted a listener, once it has them.
async fn granted(stats: &Stats) -> Vec<SocketAddr> {
    let mut public = stats.public.subscribe();
    let addrs = within("the granted ports", public.wait_for(|p| !p.is_empty())).await.expect("stats alive").clone();
    addrs.iter().map(|a| a.parse().unwrap_or_else(|_| panic!("{a:?} is not HOST:PORT"))).collect()
}

/// `hyco listen` in-process for `hc` with `--to` specs and `--public` specs; returns it
/// with the addresses granted, in the order asked.
async fn listen_public(relay: SocketAddr, hc: &str, to: &[String], public: &[&str]) -> (Listening, Vec<SocketAddr>) {
    let mut settings = listen_settings(hc, to);
    settings.public = settings.targets.public_asks(public).expect("--public specs");
    let listening = Listening::start(client(relay), settings).await;
    let addrs = granted(&listening.stats).await;
    (listening, addrs)
}

/// The real `hyco listen ARGS` against the relay at `endpoint` signed with `key`; returns
/// it with the address from its first `reachable at` line.
async fn listen_proc(home: &Path, endpoint: &str, key: &str, args: &[&str]) -> (Proc, SocketAddr) {
    let mut cmd = hyco(home);
    cmd.arg("listen").args(args).args(key_flags(endpoint, key));
    let proc = Proc::spawn(cmd);
    let line = proc.stderr.wait_for(PROC_STEP, "the 'reachable at' line", |l| l.contains("reachable at ")).await;
    (proc, reachable(&line))
}

/// The address of a `reachable at HOST:PORT (…)` line.
fn reachable(line: &str) -> SocketAddr {
    let rest = line.split("reachable at ").nth(1).expect("reachable at");
    rest.split_whitespace().next().and_then(|a| a.parse().ok()).unwrap_or_else(|| panic!("no address in {line:?}"))
}

/// Runs the real `hyco listen ARGS` against `endpoint` to its exit; returns the exit code
/// and the error line (the last `hyco: ` line of stderr).
async fn listen_fails(endpoint: &str, key_name: &str, key: &str, args: &[&str]) -> (i32, String) {
    let home = TempDir::new("public-fail");
    let mut cmd = hyco(home.path());
    cmd.arg("listen").args(args).args(["--endpoint", endpoint, "--key-name", key_name, "--key", key]);
    let out = within_for(PROC_STEP, "hyco listen to exit", cmd.output()).await.expect("run hyco");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let line =
        stderr.lines().rev().find(|l| l.starts_with("hyco: ")).unwrap_or_else(|| panic!("no error line:\n{stderr}"));
    (out.status.code().expect("an exit code"), line.to_owned())
}

/// A raw control channel for `hc` on `relay` asking for one port (`ask`, a `hyco-public`
/// value): the channel and the relay's `Hyco-Public` answer, or the rejection.
async fn ask_port(relay: SocketAddr, hc: &str, ask: &str) -> Result<(RawWs, String), (u16, String)> {
    ask_ports(relay, hc, &[ask]).await
}

/// [`ask_port`] for several ports at once.
async fn ask_ports(relay: SocketAddr, hc: &str, asks: &[&str]) -> Result<(RawWs, String), (u16, String)> {
    let param = |ask: &&str| format!("{}={}", hyco::public::PARAM_PUBLIC, hyco::encoding::encode_component(ask));
    let query = asks.iter().map(param).collect::<Vec<_>>().join("&");
    let url = protocol::client_url(&format!("ws://{relay}"), hc, None, &query, Action::Listen, None);
    match raw_upgrade(relay, &url, &[auth(&token(hc))]).await {
        Ok(ws) => {
            let grant = hyco::http1::header(&ws.response.headers, hyco::public::HEADER_PUBLIC)
                .unwrap_or_else(|| panic!("no Hyco-Public in {:?}", ws.response.headers))
                .to_owned();
            Ok((ws, grant))
        }
        Err(HandshakeError::Rejected { status, reason }) => Err((status, reason)),
        Err(e) => panic!("asking for {asks:?}: {e}"),
    }
}

/// The port of a one-port `Hyco-Public` answer (`tcp:PORT:TARGET`).
fn grant_port(grant: &str) -> u16 {
    grant.split(':').nth(1).and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("no port in {grant:?}"))
}

/// A visitor's connection.
async fn visit(addr: SocketAddr) -> TcpStream {
    within("visitor connect", TcpStream::connect(addr)).await.expect("visitor connect")
}

/// Reads `tcp` to its end, which must be a reset, not a clean EOF; returns what came first.
async fn expect_reset(tcp: &mut TcpStream, what: &str) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0; 4096];
    within(what, async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) => panic!("{what}: a clean EOF after {} bytes, not a reset", got.len()),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{what}: {e}");
                    return;
                }
            }
        }
    })
    .await;
    got
}

/// Reads one line (up to `\n`) from `tcp`.
async fn read_line(tcp: &mut TcpStream) -> String {
    let mut line = Vec::new();
    within("a line from the target", async {
        let mut b = [0; 1];
        while line.last() != Some(&b'\n') {
            match tcp.read(&mut b).await {
                Ok(1) => line.push(b[0]),
                other => panic!("reading a line: {other:?} after {:?}", String::from_utf8_lossy(&line)),
            }
        }
    })
    .await;
    String::from_utf8(line).expect("UTF-8")
}

/// A value of `metrics` (the text format): the line that starts with `series` and a space.
fn metric(metrics: &str, series: &str) -> Option<u64> {
    metrics.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// The labels of a public TCP port's series.
fn port_labels(port: u16, hc: &str) -> String {
    format!("proto=\"tcp\",port=\"{port}\",hc=\"{hc}\"")
}

/// A TCP forwarder to `to` whose connections can all be cut at once, as a network drop
/// would: the path from a listener to its relay.
struct Cutter {
    addr: SocketAddr,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    task: JoinHandle<()>,
}

impl Cutter {
    async fn start(to: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the forwarder");
        let addr = listener.local_addr().expect("addr");
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let held = conns.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut down, _)) = listener.accept().await {
                let conn = tokio::spawn(async move {
                    if let Ok(mut up) = TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }
                });
                held.lock().expect("conns").push(conn);
            }
        });
        Self { addr, conns, task }
    }

    /// Drops every connection so far.
    fn cut(&self) {
        for conn in self.conns.lock().expect("conns").drain(..) {
            conn.abort();
        }
    }
}

impl Drop for Cutter {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}

/// A tiny HTTP/1.1 server: answers each request with `hello from PATH` (or, for `/big`,
/// 1 MiB of `x`), then closes.
async fn http_target() -> Target {
    Target::spawn(|mut tcp| async move {
        let mut head = Vec::new();
        let mut buf = [0; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let path = String::from_utf8_lossy(&head).split_whitespace().nth(1).unwrap_or("?").to_owned();
        let body = if path == "/big" { "x".repeat(1 << 20) } else { format!("hello from {path}\n") };
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
        let _ = tcp.write_all(head.as_bytes()).await;
        let _ = tcp.write_all(body.as_bytes()).await;
        let _ = tcp.shutdown().await;
    })
    .await
}

// ---------------------------------------------------------------------------------------
// Visitors with real clients

#[tokio::test]
async fn curl_fetches_pages_through_a_public_port_of_the_real_binaries() {
    if !have("curl", "HYCO_REQUIRE_CURL_PYTHON") {
        return;
    }
    let home = TempDir::new("public-curl");
    let serve = ServeProc::start(home.path()).await;
    let target = http_target().await;
    let endpoint = format!("ws://{}", serve.addr);
    let (_listen, public) =
        listen_proc(home.path(), &endpoint, &serve.key, &["web", "--to", &target.spec(), "--public"]).await;
    assert_eq!(public.ip().to_string(), "127.0.0.1", "the host the listener used");
    assert!((20000..=29999).contains(&public.port()), "the throwaway relay's range: {public}");

    let curl = |args: Vec<String>| async move {
        let mut curl = tokio::process::Command::new("curl");
        curl.args(["-sS", "--fail", "--max-time", "10"]).args(args);
        let out = within_for(PROC_STEP, "curl", curl.output()).await.expect("run curl");
        assert!(out.status.success(), "curl failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("UTF-8")
    };
    let pages = curl(vec![format!("http://{public}/one"), format!("http://{public}/two")]).await;
    assert_eq!(pages, "hello from /one\nhello from /two\n");
    let size = ["-o", "/dev/null", "-w", "%{size_download}"].map(String::from);
    let big = curl([&size[..], &[format!("http://{public}/big")]].concat()).await;
    assert_eq!(big, (1 << 20).to_string());
}

#[tokio::test]
async fn python_sockets_send_half_close_and_read_the_reply() {
    if !have("python3", "HYCO_REQUIRE_CURL_PYTHON") {
        return;
    }
    let relay = TestRelay::start(settings()).await;
    let target = Target::upper_after_eof().await;
    let (_listen, public) = listen_public(relay.addr, "py", &[target.spec()], &[""]).await;
    let script = r#"
import socket, sys
payload = b"hello from python " * 5000
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.sendall(payload)
s.shutdown(socket.SHUT_WR)
got = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    got += b
print(len(got), got == payload.upper())
"#;
    let mut py = tokio::process::Command::new("python3");
    py.args(["-c", script, &public[0].port().to_string()]);
    let out = within_for(PROC_STEP, "python3", py.output()).await.expect("run python3");
    assert!(out.status.success(), "python3 failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "90000 True");
}

#[tokio::test]
async fn iperf3_runs_both_ways_through_a_public_port_of_the_real_binaries() {
    if !have("iperf3", "HYCO_REQUIRE_IPERF") {
        return;
    }
    let home = TempDir::new("public-iperf");
    let iperf_port = closed_port().await.port().to_string();
    let mut server = tokio::process::Command::new("iperf3");
    server
        .args(["-s", "-B", "127.0.0.1", "-p", &iperf_port, "--forceflush"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let server = Proc::spawn(server);
    server.stdout.wait_for(PROC_STEP, "iperf3's server line", |l| l.contains("Server listening")).await;

    let serve = ServeProc::start(home.path()).await;
    let endpoint = format!("ws://{}", serve.addr);
    let to = format!("127.0.0.1:{iperf_port}");
    let (_listen, public) = listen_proc(home.path(), &endpoint, &serve.key, &["perf", "--to", &to, "--public"]).await;
    for (secs, reverse) in [("2", false), ("1", true)] {
        let mut client = tokio::process::Command::new("iperf3");
        client.args(["-c", "127.0.0.1", "-p", &public.port().to_string(), "-t", secs, "-J"]);
        if reverse {
            client.arg("-R");
        }
        let out = within_for(Duration::from_secs(20), "iperf3 -c", client.output()).await.expect("run iperf3");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("iperf3's JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
        assert!(out.status.success() && report.get("error").is_none(), "iperf3 (reverse {reverse}) failed: {report}");
        for sum in ["sum_sent", "sum_received"] {
            let bytes = report["end"][sum]["bytes"].as_u64().unwrap_or(0);
            assert!(bytes > 1 << 20, "iperf3 (reverse {reverse}) {sum}: {bytes} bytes");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Half-close and resets

#[tokio::test]
async fn a_visitor_that_shuts_its_write_side_still_reads_the_reply() {
    let relay = TestRelay::start(settings()).await;
    let target = Target::upper_after_eof().await;
    let (_listen, public) = listen_public(relay.addr, "half", &[target.spec()], &[""]).await;
    let mut visitor = visit(public[0]).await;
    let got = within("round trip", round_trip(&mut visitor, b"only after my eof")).await.expect("round trip");
    assert_eq!(got, b"ONLY AFTER MY EOF");
}

#[tokio::test]
async fn a_target_that_shuts_its_write_side_first_still_hears_the_visitor() {
    let relay = TestRelay::start(settings()).await;
    let (heard_tx, mut heard) = tokio::sync::mpsc::unbounded_channel();
    let target = Target::spawn(move |mut tcp| {
        let heard = heard_tx.clone();
        async move {
            tcp.write_all(b"bye for now").await.expect("target write");
            tcp.shutdown().await.expect("target shutdown");
            let mut all = Vec::new();
            tcp.read_to_end(&mut all).await.expect("target read");
            let _ = heard.send(all);
        }
    })
    .await;
    let (_listen, public) = listen_public(relay.addr, "half2", &[target.spec()], &[""]).await;
    let mut visitor = visit(public[0]).await;
    let mut first = Vec::new();
    within("the target's data and EOF", visitor.read_to_end(&mut first)).await.expect("a clean EOF");
    assert_eq!(first, b"bye for now");
    within("late write", visitor.write_all(b"still talking after your eof")).await.expect("late write");
    within("shutdown", visitor.shutdown()).await.expect("shutdown");
    let heard = within("the target to hear the visitor", heard.recv()).await.expect("heard");
    assert_eq!(heard, b"still talking after your eof");
}

#[tokio::test]
async fn killing_the_listener_process_mid_stream_resets_the_visitor_and_later_ones() {
    let relay = TestRelay::start(settings()).await;
    let home = TempDir::new("public-kill");
    let target = Target::echo().await;
    let (mut listen, public) =
        listen_proc(home.path(), &relay.base(), KEY, &["kill", "--to", &target.spec(), "--public"]).await;
    let mut visitor = visit(public).await;
    visitor.write_all(b"before").await.expect("write");
    let mut echo = [0; 6];
    within("echo", visitor.read_exact(&mut echo)).await.expect("echo");
    assert_eq!(&echo, b"before");
    within("kill the listener", listen.child.kill()).await.expect("kill");
    expect_reset(&mut visitor, "the visitor whose listener died").await;
    // The port stays the HC's (grace period) but nobody serves it: a reset, counted.
    let mut late = visit(public).await;
    expect_reset(&mut late, "a visitor with no listener online").await;
    let counters = relay.metrics.public_counters(Proto::Tcp, public.port()).expect("the port is still open");
    assert!(counters.rejected(Unserved::NoListener) >= 1);
}

#[tokio::test]
async fn a_target_reset_resets_the_visitor() {
    let relay = TestRelay::start(settings()).await;
    let target = Target::spawn(|mut tcp| async move {
        let mut b = [0; 5];
        if tcp.read_exact(&mut b).await.is_ok() {
            let _ = tcp.write_all(b"dying").await;
            abort_socket(tcp);
        }
    })
    .await;
    let (_listen, public) = listen_public(relay.addr, "crash", &[target.spec()], &[""]).await;
    let mut visitor = visit(public[0]).await;
    visitor.write_all(b"hello").await.expect("write");
    let got = expect_reset(&mut visitor, "the visitor whose target reset").await;
    assert!(b"dying".starts_with(&got), "{got:?}");
}

#[tokio::test]
async fn a_visitor_reset_resets_the_target() {
    let relay = TestRelay::start(settings()).await;
    let (tx, mut ends) = tokio::sync::mpsc::unbounded_channel();
    let target = Target::spawn(move |mut tcp| {
        let tx = tx.clone();
        async move {
            let mut first = [0; 5];
            tcp.read_exact(&mut first).await.expect("the visitor's first bytes");
            let _ = tx.send(None);
            let _ = tx.send(Some(read_until_end(&mut tcp).await.1.map_err(|e| e.kind())));
        }
    })
    .await;
    let (_listen, public) = listen_public(relay.addr, "vreset", &[target.spec()], &[""]).await;
    let mut visitor = visit(public[0]).await;
    visitor.write_all(b"hello").await.expect("write");
    assert_eq!(within("the target to hear", ends.recv()).await, Some(None));
    abort_socket(visitor);
    let end = within("the target's end", ends.recv()).await.expect("an end");
    assert_eq!(end, Some(Err(ErrorKind::ConnectionReset)), "the target sees a reset, not a clean EOF");
}

#[tokio::test]
async fn a_visitor_with_no_listener_online_is_reset_and_counted() {
    let relay = TestRelay::start(settings()).await;
    let target = Target::echo().await;
    let (listen, public) = listen_public(relay.addr, "gone", &[target.spec()], &[""]).await;
    listen.stop().await.expect("listener stops");
    let mut visitor = visit(public[0]).await;
    expect_reset(&mut visitor, "a visitor with no listener").await;
    let text = relay.metrics.render();
    let series =
        format!("hyco_public_rejected_total{{{},reason=\"no_listener\"}}", port_labels(public[0].port(), "gone"));
    assert_eq!(metric(&text, &series), Some(1), "{text}");
}

// ---------------------------------------------------------------------------------------
// Allowlists

#[tokio::test]
async fn an_allowlist_resets_a_visitor_outside_it_and_serves_one_inside() {
    let target = Target::echo().await;
    let rule = format!("[public_ports]\nrules = [\"{KEY_NAME}\"]\n");
    let outside = TestRelay::start(configured(&format!("{rule}allow_from = [\"203.0.113.0/24\"]\n"))).await;
    let (_l1, public) = listen_public(outside.addr, "allow", &[target.spec()], &[""]).await;
    let mut visitor = visit(public[0]).await;
    expect_reset(&mut visitor, "a loopback visitor outside 203.0.113.0/24").await;
    let text = outside.metrics.render();
    let series =
        format!("hyco_public_rejected_total{{{},reason=\"not_allowed\"}}", port_labels(public[0].port(), "allow"));
    assert_eq!(metric(&text, &series), Some(1), "{text}");
    let opened = format!("hyco_public_opened_total{{{}}}", port_labels(public[0].port(), "allow"));
    assert_eq!(metric(&text, &opened), Some(0), "{text}");

    let inside = TestRelay::start(configured(&format!("{rule}allow_from = [\"127.0.0.0/8\"]\n"))).await;
    let (_l2, public) = listen_public(inside.addr, "allow", &[target.spec()], &[""]).await;
    let mut visitor = visit(public[0]).await;
    assert_eq!(within("round trip", round_trip(&mut visitor, b"let me in")).await.expect("round trip"), b"let me in");
    let counters = inside.metrics.public_counters(Proto::Tcp, public[0].port()).expect("open");
    assert_eq!(counters.rejected(Unserved::NotAllowed), 0);
}

#[tokio::test]
async fn declared_ports_reset_until_a_listener_is_online_and_keep_their_own_allowlist() {
    let (plain, web, barred) = (closed_port().await.port(), closed_port().await.port(), closed_port().await.port());
    // No [public_ports]: nobody may ask, but the operator's ports are served.
    let relay = TestRelay::start(configured(&format!(
        "[[hybrid_connections]]\nname = \"box\"\npublic_tcp = [\"127.0.0.1:{plain}\"]\n\
         [[hybrid_connections.ports]]\ntcp = \"127.0.0.1:{web}\"\ntarget = \"web\"\nallow_from = [\"127.0.0.0/8\"]\n\
         [[hybrid_connections.ports]]\ntcp = \"127.0.0.1:{barred}\"\ntarget = \"web\"\nallow_from = [\"203.0.113.0/24\"]\n"
    )))
    .await;
    let at = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let counters = |port| relay.metrics.public_counters(Proto::Tcp, port).expect("declared ports are open");
    // The relay binds them as it starts (its task may not have run yet).
    within("the declared ports bound", async {
        while [plain, web, barred].iter().any(|p| relay.metrics.public_counters(Proto::Tcp, *p).is_none()) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    for port in [plain, web] {
        let mut visitor = visit(at(port)).await;
        expect_reset(&mut visitor, "a visitor of a declared port with no listener").await;
        assert_eq!(counters(port).rejected(Unserved::NoListener), 1);
    }

    let home = Target::greeter("home").await;
    let site = Target::greeter("web").await;
    let _listen =
        Listening::start(client(relay.addr), listen_settings("box", &[home.spec(), format!("web={}", site.spec())]))
            .await;
    let mut visitor = visit(at(plain)).await;
    assert_eq!(read_line(&mut visitor).await, "home\n");
    let mut visitor = visit(at(web)).await;
    assert_eq!(read_line(&mut visitor).await, "web\n");
    // The status page lists the visitor's tunnel, with the port it came through,
    // while it is open (the greeting's 4 bytes so far).
    let status = hyco::relay::dashboard::status(&relay.metrics);
    let via = format!("tcp/{web}");
    let tunnel = status["tunnels"].as_array().unwrap().iter().find(|t| t["via"] == via.as_str()).cloned();
    let tunnel = tunnel.unwrap_or_else(|| panic!("no tunnel via {via}: {status:#}"));
    assert_eq!((tunnel["hc"].as_str(), tunnel["listener_to_sender"].as_u64()), (Some("box"), Some(4)), "{status:#}");
    assert_eq!(within("round trip", round_trip(&mut visitor, b"echo")).await.expect("round trip"), b"echo");
    let mut visitor = visit(at(barred)).await;
    expect_reset(&mut visitor, "a loopback visitor outside the declared port's allowlist").await;
    assert_eq!(counters(barred).rejected(Unserved::NotAllowed), 1);
    assert_eq!(counters(barred).rejected(Unserved::NoListener), 0);
    let opened = format!("hyco_public_opened_total{{{}}}", port_labels(plain, "box"));
    assert_eq!(metric(&relay.metrics.render(), &opened), Some(1));
}

#[tokio::test]
async fn a_hyco_ws_listener_of_microsofts_serves_a_declared_port() {
    if !common::node::node_available("hyco-ws") {
        return;
    }
    let port = closed_port().await.port();
    let mut s = configured(&format!("[[hybrid_connections]]\nname = \"msft\"\npublic_tcp = [\"127.0.0.1:{port}\"]\n"));
    s.limits.accept_window = Duration::from_secs(10);
    let relay = TestRelay::start(s).await;
    let node = Proc::spawn(common::node::node("listener.js", &[&relay.base(), "msft", KEY_NAME, KEY], &[]));
    node.stdout.wait_for(PROC_STEP, "listener.js READY", |l| l == "READY").await;
    // It knows nothing of deferred starts: each visitor gets a rendezvous of its own.
    let mut visitor = visit(SocketAddr::from(([127, 0, 0, 1], port))).await;
    visitor.write_all(&[0, 1, 2, 255]).await.expect("write");
    let mut echo = [0; 4];
    let echoed = within_for(PROC_STEP, "the echo", visitor.read_exact(&mut echo)).await;
    echoed.unwrap_or_else(|e| panic!("no echo ({e}); listener.js said:\n{}", node.stdout.text()));
    assert_eq!(echo, [0, 1, 2, 255]);
    visitor.shutdown().await.expect("shutdown");
    let mut rest = Vec::new();
    within("a clean EOF", visitor.read_to_end(&mut rest)).await.expect("a clean EOF");
    assert!(rest.is_empty(), "{rest:?}");
    let me = visitor.local_addr().expect("addr").port();
    let line = node
        .stdout
        .wait_for(PROC_STEP, "the visitor's ACCEPTED line", |l| {
            l.starts_with("ACCEPTED ") && l.contains(&format!("\"port\":{me}"))
        })
        .await;
    assert!(line.contains("\"Hyco-Public\":\"tcp\""), "{line}");
}

// ---------------------------------------------------------------------------------------
// Who may open what

#[tokio::test]
async fn a_configured_relay_without_public_ports_refuses_public_with_exit_5() {
    let relay = TestRelay::start(configured("")).await;
    let (code, line) = listen_fails(&relay.base(), KEY_NAME, KEY, &["hc", "--to", "127.0.0.1:1", "--public"]).await;
    assert_eq!(code, 5, "{line}");
    assert!(line.contains("403") && line.contains("no public ports"), "{line}");
    assert!(line.contains("run without --public") && !line.contains("Listen right"), "{line}");
    assert!(!line.contains(KEY), "{line}");
}

#[tokio::test]
async fn only_the_rules_named_in_public_ports_may_open_them() {
    let other_key = "another-rule-key-0123456789";
    let relay = TestRelay::start(configured(&format!(
        "[[rules]]\nname = \"other\"\nkey = \"{other_key}\"\nrights = [\"Listen\"]\n[public_ports]\nrules = [\"other\"]\n"
    )))
    .await;
    let args = ["hc", "--to", "127.0.0.1:1", "--public"];
    let (code, line) = listen_fails(&relay.base(), KEY_NAME, KEY, &args).await;
    assert_eq!(code, 5, "{line}");
    assert!(line.contains("403") && line.contains(&format!("'{KEY_NAME}' may not open public ports")), "{line}");
    assert!(line.contains("run without --public") && !line.contains("Listen right"), "{line}");

    let home = TempDir::new("public-rule");
    let mut cmd = hyco(home.path());
    cmd.arg("listen").args(args).args(["--endpoint", &relay.base(), "--key-name", "other", "--key", other_key]);
    let listen = Proc::spawn(cmd);
    let line = listen.stderr.wait_for(PROC_STEP, "the 'reachable at' line", |l| l.contains("reachable at ")).await;
    assert!((20000..=29999).contains(&reachable(&line).port()), "{line}");
}

#[tokio::test]
async fn ports_outside_the_range_or_below_1024_are_403() {
    let mut s = settings();
    s.public.range = 1000..=30000;
    s.public.allow_privileged = false;
    let relay = TestRelay::start(s).await;
    let (status, text) = ask_port(relay.addr, "hc", "tcp:1000:").await.map(|_| ()).expect_err("below 1024");
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("below 1024"), "{text}");
    let (status, text) = ask_port(relay.addr, "hc", "tcp:30001:").await.map(|_| ()).expect_err("out of range");
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("outside this relay's range 1000-30000"), "{text}");
    // The binary says so and exits 5.
    let args = ["hc", "--to", "127.0.0.1:1", "--public", "30001"];
    let (code, line) = listen_fails(&relay.base(), KEY_NAME, KEY, &args).await;
    assert_eq!(code, 5, "{line}");
    assert!(line.contains("outside this relay's range"), "{line}");
    // Nothing was left open by the refusals.
    assert_eq!(metric(&relay.metrics.render(), "hyco_public_ports_open"), Some(0));
}

#[tokio::test]
async fn a_port_another_hc_holds_is_409_with_exit_9() {
    let relay = TestRelay::start(settings()).await;
    let (_held, grant) = ask_port(relay.addr, "first", "tcp:0:").await.expect("a port for first");
    let port = grant_port(&grant);
    let args = ["second", "--to", "127.0.0.1:1", "--public", &port.to_string()];
    let (code, line) = listen_fails(&relay.base(), KEY_NAME, KEY, &args).await;
    assert_eq!(code, 9, "{line}");
    assert!(line.contains("409") && line.contains("belongs to another hybrid connection"), "{line}");
}

#[tokio::test]
async fn public_against_azure_fails_at_once_with_exit_3() {
    let started = Instant::now();
    let args = ["hc", "--to", "127.0.0.1:1", "--public"];
    let (code, line) = listen_fails("sb://nowhere-x.servicebus.windows.net", "k", "v", &args).await;
    assert_eq!(code, 3, "{line}");
    assert!(line.contains("Azure Relay has no public ports"), "{line}");
    assert!(started.elapsed() < Duration::from_secs(5), "not at once: {:?}", started.elapsed());
}

#[tokio::test]
async fn a_relay_that_ignores_the_extension_stops_a_public_listener_with_exit_9() {
    // A WebSocket server that knows nothing of hyco-public: a 101 with no Hyco-Public.
    let foreign = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = foreign.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        while let Ok((tcp, _)) = foreign.accept().await {
            tokio::spawn(async move {
                if let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await {
                    use futures_util::StreamExt;
                    while let Some(Ok(_)) = ws.next().await {}
                }
            });
        }
    });
    let args = ["hc", "--to", "127.0.0.1:1", "--public"];
    let (code, line) = listen_fails(&format!("ws://{addr}"), KEY_NAME, KEY, &args).await;
    server.abort();
    assert_eq!(code, 9, "{line}");
    assert!(line.contains("does not offer public ports"), "{line}");
}

#[tokio::test]
async fn a_refused_ask_among_several_opens_none_of_them() {
    let mut s = settings();
    s.public.max_per_hc = 2;
    let relay = TestRelay::start(s).await;
    let (status, text) = ask_ports(relay.addr, "greedy", &["tcp:0:a", "tcp:0:b", "tcp:0:c"])
        .await
        .map(|_| ())
        .expect_err("over the cap");
    assert_eq!(status, 409, "{text}");
    assert!(text.contains("at most 2 public ports"), "{text}");
    assert_eq!(metric(&relay.metrics.render(), "hyco_public_ports_open"), Some(0), "all or none");
    let (_ws, grant) = ask_ports(relay.addr, "greedy", &["tcp:0:a", "tcp:0:b"]).await.expect("within the cap");
    assert_eq!(grant.split(", ").count(), 2, "{grant}");
    assert_eq!(metric(&relay.metrics.render(), "hyco_public_ports_open"), Some(2));
}

#[tokio::test]
async fn control_channels_of_one_hc_share_its_port_until_the_last_leaves() {
    let mut s = settings();
    s.public.grace = Duration::ZERO;
    let relay = TestRelay::start(s).await;
    let (first, grant) = ask_port(relay.addr, "shared", "tcp:0:").await.expect("a port");
    let port = grant_port(&grant);
    // `0` and `~N` (whatever N) take the HC's port; `N` for another is a conflict.
    let (second, again) = ask_port(relay.addr, "shared", "tcp:0:").await.expect("the same port");
    assert_eq!(again, grant);
    let (third, again) = ask_port(relay.addr, "shared", &format!("tcp:~{}:", port ^ 1)).await.expect("the same");
    assert_eq!(again, grant);
    let (status, text) =
        ask_port(relay.addr, "shared", &format!("tcp:{}:", port ^ 1)).await.map(|_| ()).expect_err("another port");
    assert_eq!(status, 409, "{text}");
    assert!(text.contains("already"), "{text}");
    let listeners = |n: u64| {
        let relay = &relay;
        async move {
            within("the relay to count the channels", async {
                while metric(&relay.metrics.render(), "hyco_listeners{hc=\"shared\"}").unwrap_or(0) != n {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await;
        }
    };
    listeners(3).await;
    drop((first, second));
    listeners(1).await;
    assert_eq!(metric(&relay.metrics.render(), "hyco_public_ports_open"), Some(1), "one holder left");
    drop(third);
    within("the port to close with its last holder", async {
        while metric(&relay.metrics.render(), "hyco_public_ports_open") != Some(0) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let refused = TcpStream::connect(("127.0.0.1", port)).await.expect_err("closed");
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
}

#[tokio::test]
async fn listeners_are_told_the_host_the_operator_names() {
    let mut s = settings();
    s.public.host = Some("relay.example.net".into());
    let relay = TestRelay::start(s).await;
    let target = Target::echo().await;
    let mut settings = listen_settings("named-host", &[target.spec()]);
    settings.public = settings.targets.public_asks(&[""]).expect("--public");
    let listen = Listening::start(client(relay.addr), settings).await;
    let mut public = listen.stats.public.subscribe();
    let addrs = within("the granted port", public.wait_for(|p| !p.is_empty())).await.expect("stats").clone();
    let port = addrs[0].strip_prefix("relay.example.net:").unwrap_or_else(|| panic!("{addrs:?}"));
    assert!(port.parse::<u16>().is_ok_and(|p| (20000..=29999).contains(&p)), "{addrs:?}");
}

#[tokio::test]
async fn an_idle_visitor_is_reset_after_the_tunnel_idle_timeout() {
    let mut s = settings();
    s.limits.tunnel_idle_timeout = Some(Duration::from_millis(400));
    let relay = TestRelay::start(s).await;
    let target = Target::echo().await;
    let (_listen, public) = listen_public(relay.addr, "idle", &[target.spec()], &[""]).await;
    let mut visitor = visit(public[0]).await;
    visitor.write_all(b"ping").await.expect("write");
    let mut echo = [0; 4];
    within("echo", visitor.read_exact(&mut echo)).await.expect("echo");
    let quiet = Instant::now();
    expect_reset(&mut visitor, "an idle visitor").await;
    assert!(quiet.elapsed() >= Duration::from_millis(300), "reset after {:?}", quiet.elapsed());
}

#[tokio::test]
async fn a_visitor_mid_stream_rides_out_a_relay_shutdown_until_the_drain_timeout() {
    let relay = TestRelay::start(settings()).await;
    let (addr, drain) = (relay.addr, settings().limits.drain_timeout);
    let target = Target::echo().await;
    let (_listen, public) = listen_public(addr, "drain", &[target.spec()], &[""]).await;
    let mut visitor = visit(public[0]).await;
    let mut echo = [0; 6];
    visitor.write_all(b"before").await.expect("write");
    within("echo", visitor.read_exact(&mut echo)).await.expect("echo");
    let stopping = Instant::now();
    let stop = tokio::spawn(relay.stop());
    // The port takes no one new, while the visitor inside goes on.
    within("the port to close", async {
        while TcpStream::connect(public[0]).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    visitor.write_all(b"during").await.expect("write");
    within("echo while draining", visitor.read_exact(&mut echo)).await.expect("echo");
    assert_eq!(&echo, b"during");
    expect_reset(&mut visitor, "a visitor still there at the end of the drain").await;
    assert!(stopping.elapsed() >= drain.mul_f32(0.8), "reset after {:?}", stopping.elapsed());
    within("relay::run to return", stop).await.expect("stop task").expect("relay stops cleanly");
}

#[tokio::test]
async fn a_visitor_beyond_the_connection_limit_is_reset_and_counted() {
    let mut s = settings();
    // The control channel, one visitor and its rendezvous.
    s.limits.max_connections = 3;
    s.public.prewarm = 0;
    let relay = TestRelay::start(s).await;
    let target = Target::echo().await;
    let (_listen, public) = listen_public(relay.addr, "full", &[target.spec()], &[""]).await;
    let mut first = visit(public[0]).await;
    first.write_all(b"in").await.expect("write");
    let mut echo = [0; 2];
    within("echo", first.read_exact(&mut echo)).await.expect("echo");
    let mut second = visit(public[0]).await;
    expect_reset(&mut second, "a visitor over max_connections").await;
    let counters = relay.metrics.public_counters(Proto::Tcp, public[0].port()).expect("open");
    assert_eq!(counters.rejected(Unserved::ConnectionLimit), 1);
    drop(first);
    within("a slot again", async {
        loop {
            let mut visitor = visit(public[0]).await;
            if let Ok(Ok(got)) = tokio::time::timeout(Duration::from_secs(1), round_trip(&mut visitor, b"again")).await
                && got == b"again"
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_listener_without_prewarming_gets_a_rendezvous_per_visitor() {
    // A plain WebSocket listener: it picks no subprotocol, so every rendezvous it accepts
    // is already joined to its "target" (here the test, echoing).
    let relay = TestRelay::start(settings()).await;
    let query = format!("{}={}", hyco::public::PARAM_PUBLIC, hyco::encoding::encode_component("tcp:0:"));
    let url = protocol::client_url(&relay.base(), "plain", None, &query, Action::Listen, None);
    let (ws, response) =
        within("listen", ws_connect(relay.addr, &url, &[auth(&token("plain"))])).await.expect("listen");
    let grant = response.headers().get("Hyco-Public").and_then(|v| v.to_str().ok()).expect("Hyco-Public").to_owned();
    let public = SocketAddr::from(([127, 0, 0, 1], grant_port(&grant)));
    let mut listener = Listener { ws };
    // The pool's first try: the relay sees no deferred start and lets it go (1000).
    let a = listener.next_accept().await;
    assert_eq!(a.connect_headers.get("Hyco-Public").map(String::as_str), Some("tcp"));
    // The upgrade headers a sender's accept has (hyco-ws needs the key).
    assert_eq!(a.connect_headers.get("Sec-WebSocket-Key").map(String::len), Some(24), "{:?}", a.connect_headers);
    assert_eq!(a.connect_headers.get("Sec-WebSocket-Version").map(String::as_str), Some("13"));
    let mut stray = accept(relay.addr, &a, &[]).await;
    assert_eq!(next_close(&mut stray).await.0, 1000);
    for round in 0..2 {
        let mut visitor = visit(public).await;
        let a = listener.next_accept().await;
        assert_eq!(a.remote_endpoint.as_ref().map(|e| e.port), Some(visitor.local_addr().expect("addr").port()));
        let mut lws = accept(relay.addr, &a, &[]).await;
        let text = format!("visitor {round}");
        visitor.write_all(text.as_bytes()).await.expect("write");
        visitor.shutdown().await.expect("shutdown");
        let Message::Binary(got) = next_message(&mut lws).await else { panic!("binary frames") };
        assert_eq!(got.as_ref(), text.as_bytes());
        within("echo", lws.send(Message::binary(got))).await.expect("echo");
        within("close", lws.close(None)).await.expect("close");
        let mut back = Vec::new();
        within("echo and EOF", visitor.read_to_end(&mut back)).await.expect("a clean EOF");
        assert_eq!(back, text.as_bytes());
    }
}

// ---------------------------------------------------------------------------------------
// Lifetime: reconnects, the grace period, relay restarts

#[tokio::test]
async fn a_restarted_listener_process_gets_its_port_back_and_nobody_else_meanwhile() {
    let relay = TestRelay::start(settings()).await;
    let home = TempDir::new("public-back");
    let target = Target::greeter("back").await;
    let args = ["back", "--to", &target.spec(), "--public"];
    let (mut first, public) = listen_proc(home.path(), &relay.base(), KEY, &args).await;
    within("kill the listener", first.child.kill()).await.expect("kill");
    // Meanwhile (the grace period) the port is nobody else's.
    let (status, text) =
        ask_port(relay.addr, "thief", &format!("tcp:{}:", public.port())).await.map(|_| ()).expect_err("taken");
    assert_eq!(status, 409, "{text}");
    assert!(text.contains("belongs to another hybrid connection"), "{text}");
    let (_other, grant) =
        ask_port(relay.addr, "thief", &format!("tcp:~{}:", public.port())).await.expect("any other port");
    assert_ne!(grant_port(&grant), public.port(), "~N of another HC's port gets another one");
    // A listener of the same HC, even one that asks for any port, gets it back.
    let (_second, again) = listen_proc(home.path(), &relay.base(), KEY, &args).await;
    assert_eq!(again, public);
    let mut visitor = visit(public).await;
    assert_eq!(read_line(&mut visitor).await, "back\n");
}

#[tokio::test]
async fn a_listener_whose_control_channel_drops_reconnects_to_the_same_port() {
    let relay = TestRelay::start(settings()).await;
    let path = Cutter::start(relay.addr).await;
    let target = Target::echo().await;
    let (listen, public) = listen_public(path.addr, "cut", &[target.spec()], &[""]).await;
    let mut visitor = visit(public[0]).await;
    assert_eq!(within("round trip", round_trip(&mut visitor, b"one")).await.expect("round trip"), b"one");
    path.cut();
    // The port is still the HC's while the listener comes back (asking ~N).
    let (status, _) =
        ask_port(relay.addr, "thief", &format!("tcp:{}:", public[0].port())).await.map(|_| ()).expect_err("taken");
    assert_eq!(status, 409);
    within("a visitor served again", async {
        loop {
            let mut visitor = visit(public[0]).await;
            if let Ok(Ok(got)) = tokio::time::timeout(Duration::from_secs(1), round_trip(&mut visitor, b"two")).await
                && got == b"two"
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(*listen.stats.public.borrow(), [public[0].to_string()], "the same port, announced once");
}

#[tokio::test]
async fn a_port_is_freed_after_the_grace_period() {
    let mut s = settings();
    s.public.grace = Duration::from_millis(500);
    let relay = TestRelay::start(s).await;
    let (held, grant) = ask_port(relay.addr, "first", "tcp:0:").await.expect("a port");
    let port = grant_port(&grant);
    let ask = format!("tcp:{port}:");
    drop(held);
    let (status, _) = ask_port(relay.addr, "second", &ask).await.map(|_| ()).expect_err("in its grace period");
    assert_eq!(status, 409);
    let started = Instant::now();
    let closed = within("the port to close", async {
        loop {
            match TcpStream::connect(("127.0.0.1", port)).await {
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => return started.elapsed(),
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await;
    assert!(closed >= Duration::from_millis(300), "closed before the grace period: {closed:?}");
    assert_eq!(metric(&relay.metrics.render(), "hyco_public_ports_open"), Some(0));
    let (_second, grant) = ask_port(relay.addr, "second", &ask).await.expect("free for another HC");
    assert_eq!(grant, format!("tcp:{port}:"));
}

#[tokio::test]
async fn named_targets_each_get_their_own_port() {
    let relay = TestRelay::start(settings()).await;
    let (home, a, b) = (Target::greeter("home").await, Target::greeter("alpha").await, Target::greeter("beta").await);
    let to = [home.spec(), format!("a={}", a.spec()), format!("b={}", b.spec())];
    // `--public a --public b`: in the order asked.
    let (listen, public) = listen_public(relay.addr, "many", &to, &["a", "b"]).await;
    assert_eq!(public.len(), 2);
    for (addr, want) in public.iter().zip(["alpha\n", "beta\n"]) {
        let mut visitor = visit(*addr).await;
        assert_eq!(read_line(&mut visitor).await, want);
    }
    listen.stop().await.expect("stop");
    // `--public`: every target, each on a port of its own.
    let (_listen, public) = listen_public(relay.addr, "all", &to, &[""]).await;
    assert_eq!(public.iter().collect::<BTreeSet<_>>().len(), 3, "{public:?}");
    let mut greetings = BTreeSet::new();
    for addr in &public {
        let mut visitor = visit(*addr).await;
        greetings.insert(read_line(&mut visitor).await);
    }
    assert_eq!(greetings, BTreeSet::from(["alpha\n".to_owned(), "beta\n".to_owned(), "home\n".to_owned()]));
}

#[tokio::test]
async fn after_a_relay_restart_the_listener_gets_its_port_back() {
    let home = TempDir::new("public-restart");
    let mut serve = ServeProc::start(home.path()).await;
    let addr = serve.addr;
    let target = Target::echo().await;
    let mut settings = listen_settings("again", &[target.spec()]);
    settings.public = settings.targets.public_asks(&[""]).expect("--public");
    let listen = Listening::start(key_client(addr, &serve.key), settings).await;
    let public = granted(&listen.stats).await[0];
    let mut visitor = visit(public).await;
    assert_eq!(within("round trip", round_trip(&mut visitor, b"before")).await.expect("round trip"), b"before");

    serve.proc.terminate().await;
    within("the listener to notice", listen.stats.channels.subscribe().wait_for(|n| *n == 0)).await.expect("stats");
    let _serve = ServeProc::restart_on(home.path(), addr).await;
    within_for(PROC_STEP, "the listener back", listen.stats.channels.subscribe().wait_for(|n| *n >= 1))
        .await
        .expect("stats");
    assert_eq!(*listen.stats.public.borrow(), [public.to_string()], "the same port after the restart");
    let mut visitor = visit(public).await;
    assert_eq!(within("round trip", round_trip(&mut visitor, b"after")).await.expect("round trip"), b"after");
}

// ---------------------------------------------------------------------------------------
// No leak, metrics

/// Listen/leave cycles in the leak test.
const CYCLES: usize = 1_000;

/// The open file descriptors of process `pid`.
fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).expect("/proc/PID/fd").count()
}

#[tokio::test]
async fn a_thousand_listen_leave_cycles_leak_no_port_and_no_descriptor() {
    let home = TempDir::new("public-leak");
    let config = home.path().join("relay.toml");
    let text = format!(
        "auto_create = true\n[[rules]]\nname = \"{KEY_NAME}\"\nkey = \"{KEY}\"\nrights = [\"Manage\"]\n\
         [public_ports]\nrules = [\"{KEY_NAME}\"]\ngrace_secs = 0\n"
    );
    std::fs::write(&config, text).expect("write the config");
    let mut cmd = hyco(home.path());
    cmd.args(["serve", "--no-profile", "--bind", "127.0.0.1:0", "--metrics", "127.0.0.1:0", "--config"]).arg(&config);
    let serve = Proc::spawn(cmd);
    let relay = relay_address(&serve).await;
    let line = serve.stdout.wait_for(PROC_STEP, "the metrics line", |l| l.starts_with("Prometheus metrics on ")).await;
    let metrics_addr: SocketAddr =
        line.trim_start_matches("Prometheus metrics on http://").trim_end_matches("/metrics").parse().expect("addr");
    let pid = serve.child.id().expect("running");
    let scrape = || async move {
        raw_http(metrics_addr, b"GET /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n").await
    };
    let ports_open = || async move { metric(&scrape().await, "hyco_public_ports_open") };
    let cycle = || async move {
        let (ws, grant) = ask_port(relay, "leak", "tcp:0:").await.expect("a port");
        assert!(grant.starts_with("tcp:"), "{grant}");
        drop(ws);
    };

    for _ in 0..20 {
        cycle().await;
    }
    within("warm-up ports closed", async {
        while ports_open().await != Some(0) {
            tokio::time::sleep(Duration::from_millis(20)).await
        }
    })
    .await;
    let before = fd_count(pid);
    let started = Instant::now();
    for _ in 0..CYCLES {
        cycle().await;
    }
    let took = started.elapsed();
    within("every port closed", async {
        while ports_open().await != Some(0) {
            tokio::time::sleep(Duration::from_millis(20)).await
        }
    })
    .await;
    let slack = 8;
    let mut after = fd_count(pid);
    let deadline = Instant::now() + STEP;
    while after > before + slack && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        after = fd_count(pid);
    }
    assert!(after <= before + slack, "the relay had {before} descriptors open, {after} after {CYCLES} cycles");
    let mut text = scrape().await;
    within("every control channel gone", async {
        while metric(&text, "hyco_connections_open") != Some(0) {
            tokio::time::sleep(Duration::from_millis(20)).await;
            text = scrape().await;
        }
    })
    .await;
    assert!(!text.contains("hyco_public_opened_total{"), "no port's series left:\n{text}");
    assert_eq!(metric(&text, "hyco_listeners{hc=\"leak\"}").unwrap_or(0), 0, "{text}");
    eprintln!("{CYCLES} listen/leave cycles in {took:?}; descriptors {before} -> {after}");
}

#[tokio::test]
async fn metrics_count_visitors_bytes_both_ways_and_rejections_per_port() {
    let relay = TestRelay::start_with_metrics(settings()).await;
    // Fewer bytes back than in, so that a swapped direction shows.
    let target = Target::spawn(|mut tcp| async move {
        let mut all = Vec::new();
        if tcp.read_to_end(&mut all).await.is_ok() {
            let _ = tcp.write_all(&all[..all.len() / 10]).await;
            let _ = tcp.shutdown().await;
        }
    })
    .await;
    let (listen, public) = listen_public(relay.addr, "meter", &[target.spec()], &[""]).await;
    let port = public[0].port();
    let labels = port_labels(port, "meter");
    let scrape = || async {
        let metrics = relay.metrics_addr.expect("metrics served");
        raw_http(metrics, b"GET /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n").await
    };
    let text = scrape().await;
    assert_eq!(metric(&text, "hyco_public_ports_open"), Some(1), "{text}");
    assert_eq!(metric(&text, &format!("hyco_public_opened_total{{{labels}}}")), Some(0), "{text}");

    let data = vec![7u8; 100_000];
    for _ in 0..2 {
        let mut visitor = visit(public[0]).await;
        let got = within("round trip", round_trip(&mut visitor, &data)).await.expect("round trip");
        assert_eq!(got.len(), data.len() / 10);
    }
    let series = |dir: &str| format!("hyco_public_bytes_total{{{labels},direction=\"{dir}\"}}");
    let (up, down) = (series("visitor_to_listener"), series("listener_to_visitor"));
    let want = 2 * data.len() as u64;
    let mut text = scrape().await;
    within("the byte counts", async {
        while metric(&text, &up) != Some(want) || metric(&text, &down) != Some(want / 10) {
            tokio::time::sleep(Duration::from_millis(20)).await;
            text = scrape().await;
        }
    })
    .await;
    assert_eq!(metric(&text, &format!("hyco_public_opened_total{{{labels}}}")), Some(2), "{text}");
    let rejected = |why: &str| format!("hyco_public_rejected_total{{{labels},reason=\"{why}\"}}");
    assert_eq!(metric(&text, &rejected("no_listener")), Some(0), "{text}");

    listen.stop().await.expect("stop");
    let mut visitor = visit(public[0]).await;
    expect_reset(&mut visitor, "a visitor with no listener").await;
    let text = scrape().await;
    assert_eq!(metric(&text, &rejected("no_listener")), Some(1), "{text}");
    assert_eq!(metric(&text, &rejected("not_allowed")), Some(0), "{text}");
    assert_eq!(metric(&text, &format!("hyco_public_opened_total{{{labels}}}")), Some(2), "{text}");
    assert_eq!(metric(&text, &format!("hyco_public_active{{{labels}}}")), Some(0), "{text}");
}

#[tokio::test]
async fn a_declared_port_that_cannot_be_bound_stops_serve_before_it_says_it_listens() {
    let home = TempDir::new("public-declared-taken");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let config = home.path().join("relay.toml");
    let text = format!(
        "[[rules]]\nname = \"{KEY_NAME}\"\nkey = \"{KEY}\"\nrights = [\"Manage\"]\n\
         [[hybrid_connections]]\nname = \"web\"\npublic_tcp = [\"127.0.0.1:{port}\"]\n"
    );
    std::fs::write(&config, text).expect("write the config");
    let mut cmd = hyco(home.path());
    cmd.args(["serve", "--no-profile", "--bind", "127.0.0.1:0", "--config"]).arg(&config);
    let out = within("serve to stop", cmd.output()).await.expect("serve runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(7), "{stdout}{stderr}");
    assert!(stderr.contains(&format!("cannot open public tcp port 127.0.0.1:{port}")), "{stderr}");
    assert!(!stdout.contains("listening"), "nothing said before every port is bound: {stdout}");
}
