//! Dynamic forwarding (docs/protocol.md 10.5): real `hyco serve`, `hyco listen --allow`
//! and `hyco connect --socks` processes, reached with curl (`--socks5-hostname`,
//! `--socks5`) and with SOCKS5 spoken by hand for the byte-level cases: allowed and
//! refused destinations and their reply codes, commands and methods not served, the
//! handshake deadline, the session cap, half-close and a large transfer.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::bridge::*;
use common::{within, within_for};
use hyco::client::socks::{HANDSHAKE_TIMEOUT, MAX_SESSIONS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A relay, and the flags that reach it with its key.
struct Relay {
    _serve: ServeProc,
    endpoint: String,
    key: String,
}

impl Relay {
    async fn start(home: &Path) -> Self {
        let serve = ServeProc::start(home).await;
        let (endpoint, key) = (format!("ws://{}", serve.addr), serve.key.clone());
        Self { _serve: serve, endpoint, key }
    }

    /// `hyco listen HC ARGS…`, once it is online.
    async fn listen(&self, home: &Path, hc: &str, args: &[&str]) -> Proc {
        let mut cmd = hyco(home);
        cmd.args(["listen", hc]).args(args).args(key_flags(&self.endpoint, &self.key));
        let listen = Proc::spawn(cmd);
        listen.stderr.wait_for(PROC_STEP, "the listener online", |l| l.contains(" listening")).await;
        listen
    }

    /// `hyco connect HC --socks 127.0.0.1:0`, and the address it serves SOCKS5 on.
    async fn socks(&self, home: &Path, hc: &str) -> (Proc, SocketAddr) {
        self.socks_with(home, hc, &[], &[]).await
    }

    /// [`Relay::socks`] with more `args` and `env`.
    async fn socks_with(&self, home: &Path, hc: &str, args: &[&str], env: &[(&str, &str)]) -> (Proc, SocketAddr) {
        let mut cmd = hyco(home);
        cmd.args(["connect", hc, "--socks", "127.0.0.1:0"]).args(args).envs(env.iter().copied());
        cmd.args(key_flags(&self.endpoint, &self.key));
        let proc = Proc::spawn(cmd);
        let line = proc.stderr.wait_for(PROC_STEP, "the SOCKS line", |l| l.starts_with("hyco: SOCKS5 on ")).await;
        let addr = line.trim_start_matches("hyco: SOCKS5 on ").split_whitespace().next().expect("an address");
        // The line comes before the path check: wait for the server to take requests.
        proc.stderr.wait_for(PROC_STEP, "SOCKS5 serving", |l| l.contains("SOCKS5 on ") && l.contains("INFO")).await;
        (proc, addr.parse().expect("a socket address"))
    }
}

/// A tiny HTTP server on 127.0.0.1 answering every request with `body`.
async fn http_server(body: &'static str) -> Target {
    Target::spawn(move |mut tcp| async move {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let answer = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        let _ = tcp.write_all(answer.as_bytes()).await;
        let _ = tcp.shutdown().await;
    })
    .await
}

/// curl through the SOCKS server at `socks` (`--socks5-hostname`, or `--socks5` when curl
/// resolves): its exit code, stdout and stderr.
async fn curl(socks: SocketAddr, hostname: bool, url: &str) -> (i32, String, String) {
    let flag = if hostname { "--socks5-hostname" } else { "--socks5" };
    curl_via(&[flag, &socks.to_string()], url).await
}

/// curl through the proxy its `proxy` arguments name.
async fn curl_via(proxy: &[&str], url: &str) -> (i32, String, String) {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(proxy)
        .arg(url)
        .env_clear()
        .output();
    let out = within_for(Duration::from_secs(30), "curl", out).await.expect("run curl");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// A SOCKS5 destination as a request carries it.
enum To<'a> {
    V4([u8; 4]),
    V6([u8; 16]),
    Name(&'a str),
}

/// Greets (no authentication) and sends a request with `command` for `to:port`; the
/// connection and the reply code.
async fn request(socks: SocketAddr, command: u8, to: To<'_>, port: u16) -> (TcpStream, u8) {
    let mut tcp = within("connect to the SOCKS port", TcpStream::connect(socks)).await.expect("connect");
    tcp.write_all(&[5, 1, 0]).await.expect("greeting");
    let mut choice = [0u8; 2];
    within("the method choice", tcp.read_exact(&mut choice)).await.expect("method choice");
    assert_eq!(choice, [5, 0]);
    let mut req = vec![5, command, 0];
    match to {
        To::V4(ip) => {
            req.push(1);
            req.extend_from_slice(&ip);
        }
        To::V6(ip) => {
            req.push(4);
            req.extend_from_slice(&ip);
        }
        To::Name(n) => {
            req.extend_from_slice(&[3, n.len() as u8]);
            req.extend_from_slice(n.as_bytes());
        }
    }
    req.extend_from_slice(&port.to_be_bytes());
    tcp.write_all(&req).await.expect("request");
    let mut reply = [0u8; 10];
    within_for(PROC_STEP, "the reply", tcp.read_exact(&mut reply)).await.expect("a reply");
    assert_eq!((reply[0], reply[2], reply[3]), (5, 0, 1), "{reply:?}");
    assert_eq!(&reply[4..], [0; 6], "BND.ADDR 0.0.0.0:0");
    (tcp, reply[1])
}

/// The reply code for a CONNECT to `to:port`.
async fn code(socks: SocketAddr, to: To<'_>, port: u16) -> u8 {
    request(socks, 1, to, port).await.1
}

fn report(procs: &[(&str, &Proc)]) -> String {
    procs.iter().map(|(n, p)| format!("--- {n} stderr:\n{}\n", p.stderr.text())).collect()
}

#[tokio::test]
async fn curl_reaches_allowed_destinations_by_name_and_by_address() {
    let home = TempDir::new("socks-curl");
    let relay = Relay::start(home.path()).await;
    let (by_name, by_net) = (http_server("by name\n").await, http_server("by network\n").await);
    let (a, b) = (by_name.addr.port(), by_net.addr.port());
    let listen = relay
        .listen(home.path(), "web", &["--allow", &format!("localhost:{a}"), "--allow", &format!("127.0.0.0/8:{b}")])
        .await;
    let (connect, socks) = relay.socks(home.path(), "web").await;
    let procs = [("listen", &listen), ("connect", &connect)];

    // The name travels (curl's --socks5-hostname) and a name rule lets it through.
    let (exit, body, err) = curl(socks, true, &format!("http://localhost:{a}/x")).await;
    assert_eq!((exit, body.as_str()), (0, "by name\n"), "{err}\n{}", report(&procs));
    // curl resolves (--socks5): an IPv4 destination, in the allowed network.
    let (exit, body, err) = curl(socks, false, &format!("http://127.0.0.1:{b}/")).await;
    assert_eq!((exit, body.as_str()), (0, "by network\n"), "{err}\n{}", report(&procs));
    // A name no name rule matches, resolved by the listener into the allowed network.
    let (exit, body, err) = curl(socks, true, &format!("http://localhost:{b}/")).await;
    assert_eq!((exit, body.as_str()), (0, "by network\n"), "{err}\n{}", report(&procs));
    // A name rule does not allow the name's address.
    let (exit, _, err) = curl(socks, false, &format!("http://127.0.0.1:{a}/")).await;
    assert_eq!(exit, 97, "curl's proxy error: {err}\n{}", report(&procs));
    // One line per dynamic tunnel at the listener, with its destination.
    listen
        .stderr
        .wait_for(PROC_STEP, "the tunnel's line", |l| l.contains(&format!("-> web -> localhost:{a} (127.0.0.1:{a})")))
        .await;
    listen
        .stderr
        .wait_for(PROC_STEP, "the rejection", |l| l.contains(&format!("Destination 127.0.0.1:{a} is not allowed")))
        .await;
}

/// `--socks-user` with `HYCO_SOCKS_PASSWORD`: curl with the user name and password gets
/// through; with a wrong password, or none, it is turned away (curl's proxy error, 97).
/// The password shows nowhere in hyco's output.
#[tokio::test]
async fn a_socks_port_with_a_user_lets_in_only_who_gives_the_password() {
    let home = TempDir::new("socks-auth");
    let relay = Relay::start(home.path()).await;
    let site = http_server("with a password\n").await;
    let port = site.addr.port();
    let listen = relay.listen(home.path(), "web", &["--allow", &format!("127.0.0.1:{port}")]).await;
    let password = "correct-horse-7";
    let (connect, socks) =
        relay.socks_with(home.path(), "web", &["--socks-user", "ann"], &[("HYCO_SOCKS_PASSWORD", password)]).await;
    let procs = [("listen", &listen), ("connect", &connect)];
    let url = format!("http://127.0.0.1:{port}/");
    let with = |user: &str| format!("socks5h://{user}@{socks}");
    let (exit, body, err) = curl_via(&["--proxy", &with(&format!("ann:{password}"))], &url).await;
    assert_eq!((exit, body.as_str()), (0, "with a password\n"), "{err}\n{}", report(&procs));
    let (exit, _, err) = curl_via(&["--proxy", &with("ann:wrong")], &url).await;
    assert_eq!(exit, 97, "a wrong password: {err}\n{}", report(&procs));
    let (exit, _, err) = curl(socks, true, &url).await;
    assert_eq!(exit, 97, "no password at all: {err}\n{}", report(&procs));
    connect.stderr.wait_for(PROC_STEP, "the refusal said", |l| l.contains("wrong user name or password")).await;
    assert!(!connect.stderr.text().contains(password), "the password shows:\n{}", connect.stderr.text());
    // Without the password in the environment: a configuration error, exit 3.
    let out = hyco(home.path())
        .args(["connect", "web", "--socks", "127.0.0.1:0", "--socks-user", "ann"])
        .args(key_flags(&relay.endpoint, &relay.key))
        .env_remove("HYCO_SOCKS_PASSWORD")
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("HYCO_SOCKS_PASSWORD"), "{err}");
}

#[tokio::test]
async fn refused_destinations_get_the_reply_code_that_says_why() {
    let home = TempDir::new("socks-refused");
    let relay = Relay::start(home.path()).await;
    let web = http_server("hello\n").await;
    let (p, closed) = (web.addr.port(), closed_port().await.port());
    let listen = relay
        .listen(
            home.path(),
            "web",
            &[
                "--allow",
                &format!("127.0.0.0/8:{}-{}", p.min(closed), p.max(closed)),
                "--allow",
                "10.0.0.0/8:9",
                "--allow",
                "*.internal:8443",
            ],
        )
        .await;
    // A listener with a target and no --allow.
    let target = Target::echo().await;
    let plain = relay.listen(home.path(), "plain", &["--to", &target.spec()]).await;
    let (connect, socks) = relay.socks(home.path(), "web").await;
    let (connect_plain, socks_plain) = relay.socks(home.path(), "plain").await;
    let (connect_none, socks_none) = relay.socks(home.path(), "nobody").await;
    let procs = [("listen", &listen), ("connect", &connect), ("plain", &plain)];

    assert_eq!(code(socks, To::V4([127, 0, 0, 1]), p).await, 0, "{}", report(&procs));
    // No --allow at all: 0x02, and curl says so with its proxy exit code.
    assert_eq!(code(socks_plain, To::V4([127, 0, 0, 1]), target.addr.port()).await, 2);
    let (exit, _, err) = curl(socks_plain, true, &format!("http://localhost:{}/", target.addr.port())).await;
    assert_eq!(exit, 97, "{err}");
    assert!(err.contains("(2)") || err.to_lowercase().contains("not allowed"), "curl names the reply: {err}");
    plain
        .stderr
        .wait_for(PROC_STEP, "the rejection", |l| {
            l.contains("dynamic destinations are not allowed on this listener (--allow)")
        })
        .await;
    // A port outside the allowed range.
    let outside = if p.max(closed) < u16::MAX { p.max(closed) + 1 } else { p.min(closed) - 1 };
    assert_eq!(code(socks, To::V4([127, 0, 0, 1]), outside).await, 2);
    // A name that resolves outside the allowed network: no way around a network rule.
    assert_eq!(code(socks, To::Name("localhost"), 9).await, 2, "{}", report(&procs));
    // `*.internal` matches names below it (one that does not resolve: host unreachable)
    // and not `internal` itself, nor another name.
    assert_eq!(code(socks, To::Name("a.internal"), 8443).await, 4, "{}", report(&procs));
    assert_eq!(code(socks, To::Name("internal"), 8443).await, 2);
    assert_eq!(code(socks, To::Name("example.com"), 8443).await, 2);
    // A destination that refuses.
    assert_eq!(code(socks, To::V4([127, 0, 0, 1]), closed).await, 5, "{}", report(&procs));
    let (exit, _, err) = curl(socks, false, &format!("http://127.0.0.1:{closed}/")).await;
    assert_eq!(exit, 97, "{err}");
    assert!(err.contains("(5)") || err.to_lowercase().contains("refused"), "curl names the reply: {err}");
    // No listener for the hybrid connection.
    assert_eq!(code(socks_none, To::V4([127, 0, 0, 1]), p).await, 3, "{}", connect_none.stderr.text());
    // After all that, the allowed destination still works.
    let (exit, body, err) = curl(socks, true, &format!("http://localhost:{p}/")).await;
    assert_eq!((exit, body.as_str()), (0, "hello\n"), "{err}\n{}", report(&procs));
    drop((connect_plain, connect_none));
}

#[tokio::test]
async fn what_is_not_served_is_answered_at_the_byte_level() {
    let home = TempDir::new("socks-bytes");
    let relay = Relay::start(home.path()).await;
    let web = http_server("hello\n").await;
    let _listen = relay.listen(home.path(), "web", &["--allow", &format!("127.0.0.1:{}", web.addr.port())]).await;
    let (connect, socks) = relay.socks(home.path(), "web").await;

    // BIND and UDP ASSOCIATE: command not supported.
    for command in [2, 3] {
        let (mut tcp, code) = request(socks, command, To::V4([127, 0, 0, 1]), web.addr.port()).await;
        assert_eq!(code, 7, "command {command}");
        let mut rest = Vec::new();
        within("the close after the reply", tcp.read_to_end(&mut rest)).await.expect("a clean close");
        assert!(rest.is_empty());
    }
    // A client that keeps talking after a failure reply is dropped all the same.
    let (mut tcp, reply) = request(socks, 2, To::V4([127, 0, 0, 1]), web.addr.port()).await;
    assert_eq!(reply, 7);
    let started = Instant::now();
    let chatter = async {
        while tcp.write_all(&[0u8; 1024]).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    within("the server to drop a chatty client", chatter).await;
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    // Username/password only: no acceptable method.
    let mut tcp = TcpStream::connect(socks).await.expect("connect");
    tcp.write_all(&[5, 1, 2]).await.expect("greeting");
    let mut answer = Vec::new();
    within("the answer and close", tcp.read_to_end(&mut answer)).await.expect("read");
    assert_eq!(answer, [5, 0xFF]);
    // Not SOCKS5 at all: closed without a word.
    let mut tcp = TcpStream::connect(socks).await.expect("connect");
    tcp.write_all(b"GET / HTTP/1.1\r\n\r\n").await.expect("write");
    let mut answer = Vec::new();
    let _ = within("the close", tcp.read_to_end(&mut answer)).await;
    assert!(answer.is_empty(), "{answer:?}");
    // The server still serves.
    assert_eq!(code(socks, To::V4([127, 0, 0, 1]), web.addr.port()).await, 0, "{}", connect.stderr.text());
    // A handshake in progress does not hold up the shutdown.
    let mut connect = connect;
    let mut waiting = TcpStream::connect(socks).await.expect("connect");
    waiting.write_all(&[5, 1, 0]).await.expect("greeting");
    let mut choice = [0u8; 2];
    within("the method choice", waiting.read_exact(&mut choice)).await.expect("choice");
    let started = Instant::now();
    let status = connect.terminate().await;
    assert!(status.success(), "{status}\n{}", connect.stderr.text());
    assert!(started.elapsed() < HANDSHAKE_TIMEOUT / 2, "{:?}", started.elapsed());
    assert!(connect.stderr.text().contains("stopped: "), "{}", connect.stderr.text());
}

#[tokio::test]
async fn a_slow_handshake_is_cut_at_the_deadline() {
    let home = TempDir::new("socks-slow");
    let relay = Relay::start(home.path()).await;
    let (connect, socks) = relay.socks(home.path(), "web").await;
    let started = Instant::now();
    let mut greeting_cut = TcpStream::connect(socks).await.expect("connect");
    greeting_cut.write_all(&[5, 2, 0]).await.expect("half a greeting");
    let mut request_cut = TcpStream::connect(socks).await.expect("connect");
    request_cut.write_all(&[5, 1, 0, 5, 1, 0, 3, 200, b'a']).await.expect("half a request");
    let mut choice = [0u8; 2];
    request_cut.read_exact(&mut choice).await.expect("the method choice");
    for mut tcp in [greeting_cut, request_cut] {
        let mut rest = Vec::new();
        let _ = within_for(HANDSHAKE_TIMEOUT + PROC_STEP, "the deadline's close", tcp.read_to_end(&mut rest)).await;
        assert!(rest.is_empty(), "no reply: {rest:?}");
    }
    let took = started.elapsed();
    assert!(took >= HANDSHAKE_TIMEOUT - Duration::from_millis(200), "closed after {took:?}");
    connect.stderr.wait_for(PROC_STEP, "the log line", |l| l.contains("no SOCKS request within 10 s")).await;
}

#[tokio::test]
async fn sessions_beyond_the_cap_are_reset() {
    let home = TempDir::new("socks-cap");
    let relay = Relay::start(home.path()).await;
    let (connect, socks) = relay.socks(home.path(), "web").await;
    // MAX_SESSIONS clients in their handshake (greeted, no request yet).
    let mut held = Vec::new();
    for _ in 0..MAX_SESSIONS {
        let mut tcp = TcpStream::connect(socks).await.expect("connect");
        tcp.write_all(&[5, 1, 0]).await.expect("greeting");
        held.push(tcp);
    }
    for tcp in &mut held {
        let mut choice = [0u8; 2];
        within("a held session's method choice", tcp.read_exact(&mut choice)).await.expect("choice");
    }
    // One more: reset before a word (so fast, at times, that the connect sees it).
    if let Ok(mut over) = TcpStream::connect(socks).await {
        let _ = over.write_all(&[5, 1, 0]).await;
        let mut answer = Vec::new();
        let _ = within("the reset", over.read_to_end(&mut answer)).await;
        assert!(answer.is_empty(), "{answer:?}");
    }
    connect
        .stderr
        .wait_for(PROC_STEP, "the cap's line", |l| l.contains(&format!("{MAX_SESSIONS} SOCKS sessions at once")))
        .await;
    // A freed slot takes a new session.
    drop(held.pop());
    let started = Instant::now();
    loop {
        let mut choice = [0u8; 2];
        let tried = async {
            let mut tcp = TcpStream::connect(socks).await?;
            tcp.write_all(&[5, 1, 0]).await?;
            tcp.read_exact(&mut choice).await
        };
        if within("a choice or a reset", tried).await.is_ok() {
            assert_eq!(choice, [5, 0]);
            break;
        }
        assert!(started.elapsed() < PROC_STEP, "the freed slot never came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn half_close_and_a_large_transfer_keep_every_byte() {
    const UP: usize = 24 << 20;
    const DOWN: usize = 16 << 20;
    const PIECE: usize = 64 << 10;
    let home = TempDir::new("socks-bulk");
    let relay = Relay::start(home.path()).await;
    // Hashes all it is sent until EOF, answers the digest, then sends DOWN bytes of noise.
    let target = Target::spawn(|mut tcp| async move {
        let mut hash = FastSha256::new();
        let mut buf = vec![0u8; PIECE];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => hash.update(&buf[..n]),
                Err(_) => return,
            }
        }
        let _ = tcp.write_all(&hash.finish()).await;
        let mut noise = Noise::new(2);
        let mut left = DOWN;
        while left > 0 {
            let n = left.min(PIECE);
            noise.fill(&mut buf[..n]);
            if tcp.write_all(&buf[..n]).await.is_err() {
                return;
            }
            left -= n;
        }
        let _ = tcp.shutdown().await;
    })
    .await;
    let listen = relay.listen(home.path(), "bulk", &["--allow", &format!("127.0.0.1:{}", target.addr.port())]).await;
    let (connect, socks) = relay.socks(home.path(), "bulk").await;
    let (tcp, code) = request(socks, 1, To::V4([127, 0, 0, 1]), target.addr.port()).await;
    assert_eq!(code, 0, "{}", report(&[("listen", &listen), ("connect", &connect)]));
    let (mut r, mut w) = tcp.into_split();
    let writer = tokio::spawn(async move {
        let mut noise = Noise::new(1);
        let mut buf = vec![0u8; PIECE];
        let mut left = UP;
        while left > 0 {
            let n = left.min(PIECE);
            noise.fill(&mut buf[..n]);
            w.write_all(&buf[..n]).await.expect("upload");
            left -= n;
        }
        // Half-close: the target answers only after our EOF.
        w.shutdown().await.expect("half-close");
        w
    });
    let mut digest = [0u8; 32];
    within_for(Duration::from_secs(120), "the upload's digest", r.read_exact(&mut digest)).await.expect("digest");
    assert_eq!(digest, noise_digest(1, UP, PIECE), "every byte up, in order");
    let mut hash = FastSha256::new();
    let mut buf = vec![0u8; PIECE];
    let mut got = 0;
    within_for(Duration::from_secs(120), "the download", async {
        loop {
            match r.read(&mut buf).await.expect("download") {
                0 => break,
                n => {
                    hash.update(&buf[..n]);
                    got += n;
                }
            }
        }
    })
    .await;
    assert_eq!(got, DOWN);
    assert_eq!(hash.finish(), noise_digest(2, DOWN, PIECE), "every byte down, in order");
    drop(within("the writer", writer).await.expect("writer"));
}

#[tokio::test]
async fn socks_refuses_a_named_target() {
    let home = TempDir::new("socks-named");
    let relay = Relay::start(home.path()).await;
    let mut cmd = hyco(home.path());
    cmd.args(["connect", "web/ssh", "--socks", "127.0.0.1:0"]).args(key_flags(&relay.endpoint, &relay.key));
    let mut proc = Proc::spawn(cmd);
    let status = proc.exit(PROC_STEP).await;
    assert!(!status.success());
    let err = proc.stderr.text();
    assert!(err.contains("give web, not web/ssh"), "{err}");
}

#[tokio::test]
async fn the_listener_takes_a_destination_only_for_the_hc_alone() {
    let home = TempDir::new("socks-header");
    let serve = ServeProc::start(home.path()).await;
    let echo = Target::echo().await;
    let port = echo.addr.port();
    let mut cmd = hyco(home.path());
    let endpoint = format!("ws://{}", serve.addr);
    cmd.args(["listen", "web", "--to", &format!("echo={}", echo.spec()), "--allow", &format!("127.0.0.1:{port}")])
        .args(key_flags(&endpoint, &serve.key));
    let listen = Proc::spawn(cmd);
    listen.stderr.wait_for(PROC_STEP, "the listener online", |l| l.contains(" listening")).await;
    let url = |suffix: Option<&str>| {
        hyco::protocol::client_url(&endpoint, "web", suffix, "", hyco::protocol::Action::Connect, None)
    };
    let sender = |suffix: Option<&'static str>, destination: Option<String>| {
        let (url, token) = (url(suffix), serve.token("web"));
        async move {
            let mut headers = vec![common::auth(&token)];
            headers.extend(destination.map(|d| ("hyco-destination", d)));
            common::raw_upgrade(serve.addr, &url, &headers).await
        }
    };
    // The HC alone, an allowed destination (the header's name in any case): a tunnel to it.
    let mut ws = sender(None, Some(format!("127.0.0.1:{port}"))).await.expect("a tunnel");
    ws.send(hyco::ws::frame::OpCode::Binary, b"ping").await;
    assert_eq!(ws.next_data().await.1, b"ping");
    // With a target name: 400, whatever the destination.
    let (status, text) = common::refused(sender(Some("echo"), Some(format!("127.0.0.1:{port}"))).await);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("not to a named target"), "{text}");
    // Malformed: 400.
    for bad in ["127.0.0.1", "[::1:80", "a b:80", "127.0.0.1:0"] {
        let (status, text) = common::refused(sender(None, Some(bad.to_owned())).await);
        assert_eq!(status, 400, "{bad}: {text}");
    }
    // Without the header, the named target as ever.
    let mut ws = sender(Some("echo"), None).await.expect("a tunnel to the target");
    ws.send(hyco::ws::frame::OpCode::Binary, b"plain").await;
    assert_eq!(ws.next_data().await.1, b"plain");
}

#[tokio::test]
async fn ipv6_destinations_travel_in_brackets() {
    let home = TempDir::new("socks-v6");
    let relay = Relay::start(home.path()).await;
    let listener = tokio::net::TcpListener::bind("[::1]:0").await.expect("IPv6 loopback");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = tcp.read(&mut buf).await;
                let _ = tcp.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nv6\n").await;
                let _ = tcp.shutdown().await;
            });
        }
    });
    let listen =
        relay.listen(home.path(), "web", &["--allow", &format!("[::1/128]:{port}"), "--allow", "[fd00::/8]:*"]).await;
    let (connect, socks) = relay.socks(home.path(), "web").await;
    let loopback = std::net::Ipv6Addr::LOCALHOST.octets();
    assert_eq!(
        code(socks, To::V6(loopback), port).await,
        0,
        "{}",
        report(&[("listen", &listen), ("connect", &connect)])
    );
    let other = if port == u16::MAX { port - 1 } else { port + 1 };
    assert_eq!(code(socks, To::V6(loopback), other).await, 2);
    let (exit, body, err) = curl(socks, false, &format!("http://[::1]:{port}/")).await;
    assert_eq!((exit, body.as_str()), (0, "v6\n"), "{err}");
    listen
        .stderr
        .wait_for(PROC_STEP, "the tunnel's line", |l| l.contains(&format!("-> web -> [::1]:{port} ([::1]:{port})")))
        .await;
}
