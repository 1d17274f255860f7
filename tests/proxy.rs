//! The real `hyco listen` and `hyco connect` through a real HTTP proxy on loopback
//! (Debian's tinyproxy, started here with its own config and log): the control channel,
//! senders, prewarmed tunnels, accepts and HTTP mode's rendezvous all go through its
//! `CONNECT` (its log names the relay), while NO_PROXY and `--proxy none` go direct; a
//! proxy that wants credentials, gets wrong ones, or rejects the relay's port gives an
//! error naming the proxy, with exit code 4; TLS to a `wss://` relay runs inside the
//! proxy's tunnel. Without tinyproxy these tests skip with a note, or fail if
//! `HYCO_REQUIRE_PROXY=1` (CI sets it).

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::bridge::*;
use common::http::{Body, HttpServer, request};
use common::{KEY_NAME, within_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TINYPROXY: &str = "tinyproxy";

/// Whether tinyproxy is here; if not, skips (or fails when `HYCO_REQUIRE_PROXY=1`).
fn have_tinyproxy() -> bool {
    let found = std::process::Command::new(TINYPROXY)
        .arg("-v")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok();
    match (found, std::env::var("HYCO_REQUIRE_PROXY").as_deref() == Ok("1")) {
        (true, _) => true,
        (false, true) => panic!("HYCO_REQUIRE_PROXY=1 but {TINYPROXY} is not installed (apt-get install tinyproxy)"),
        (false, false) => {
            eprintln!("skipped: {TINYPROXY} is not installed (apt-get install tinyproxy)");
            false
        }
    }
}

/// A tinyproxy on a loopback port with its config and log in `dir`; killed on drop.
struct Tinyproxy {
    _proc: tokio::process::Child,
    addr: SocketAddr,
    log: std::path::PathBuf,
}

impl Tinyproxy {
    /// Starts tinyproxy with `extra` config lines (`BasicAuth …`, `ConnectPort …`).
    async fn start(dir: &Path, extra: &str) -> Self {
        for _ in 0..5 {
            // tinyproxy wants a fixed port: take a free one and hand it over.
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let log = dir.join(format!("tinyproxy-{port}.log"));
            let conf = dir.join(format!("tinyproxy-{port}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "Port {port}\nListen 127.0.0.1\nTimeout 30\nMaxClients 100\nLogFile \"{}\"\nLogLevel Connect\n{extra}\n",
                    log.display()
                ),
            )
            .expect("write the tinyproxy config");
            let mut child = tokio::process::Command::new(TINYPROXY)
                .arg("-d")
                .arg("-c")
                .arg(&conf)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .expect("spawn tinyproxy");
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let started = std::time::Instant::now();
            while started.elapsed() < PROC_STEP {
                if is_tinyproxy(addr).await {
                    return Self { _proc: child, addr, log };
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break; // the port was taken meanwhile: try another
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        panic!("tinyproxy did not start");
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The `CONNECT` requests tinyproxy logged for `target` (`host:port`).
    fn connects_to(&self, target: SocketAddr) -> usize {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        log.lines().filter(|l| l.contains(&format!("CONNECT {target} HTTP/1.1"))).count()
    }

    /// Waits until tinyproxy logged at least `n` `CONNECT`s to `target`.
    async fn wait_connects(&self, target: SocketAddr, n: usize) -> usize {
        let started = std::time::Instant::now();
        loop {
            let seen = self.connects_to(target);
            if seen >= n {
                return seen;
            }
            assert!(started.elapsed() < PROC_STEP, "tinyproxy logged {seen} CONNECTs to {target}, not {n}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Whether tinyproxy answers at `addr` (and not some other test's server that took the
/// port meanwhile).
async fn is_tinyproxy(addr: SocketAddr) -> bool {
    let Ok(mut tcp) = tokio::net::TcpStream::connect(addr).await else { return false };
    if tcp.write_all(b"GET / HTTP/1.0\r\n\r\n").await.is_err() {
        return false;
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(PROC_STEP, tcp.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).contains("tinyproxy")
}

/// `hyco listen HC --to TARGET --http` against `serve`, with `env` and `extra` flags.
fn listen_cmd(home: &Path, serve: &ServeProc, target: SocketAddr, env: &[(&str, &str)], extra: &[&str]) -> Proc {
    let endpoint = format!("ws://{}", serve.addr);
    let mut cmd = hyco(home);
    cmd.args(["listen", "hc", "--to", &target.to_string(), "--http"])
        .args(key_flags(&endpoint, &serve.key))
        .args(extra)
        .envs(env.iter().copied());
    Proc::spawn(cmd)
}

async fn listening(listen: &Proc) {
    listen
        .stderr
        .wait_for(PROC_STEP, "the listener's 'listening' log", |l| l.contains(" listening") && l.contains("hc="))
        .await;
}

/// `hyco connect hc --bind 127.0.0.1:0` against `serve`; returns it with its address.
async fn start_connect(home: &Path, serve: &ServeProc, env: &[(&str, &str)], extra: &[&str]) -> (Proc, SocketAddr) {
    let endpoint = format!("ws://{}", serve.addr);
    let mut cmd = hyco(home);
    cmd.args(["connect", "hc", "--bind", "127.0.0.1:0"])
        .args(key_flags(&endpoint, &serve.key))
        .args(extra)
        .envs(env.iter().copied());
    bound(cmd).await
}

/// Runs a `hyco connect --bind 127.0.0.1:0` command; returns it with its address.
async fn bound(cmd: tokio::process::Command) -> (Proc, SocketAddr) {
    let connect = Proc::spawn(cmd);
    let line = connect.stderr.wait_for(PROC_STEP, "connect's bind line", |l| l.starts_with("hyco: 127.0.0.1:")).await;
    let addr = line.trim_start_matches("hyco: ").split_whitespace().next().expect("an address");
    (connect, addr.parse().expect("a socket address"))
}

/// One HTTP request to the server behind the listener through `hyco connect`'s port:
/// bytes flow both ways through the tunnel.
async fn hello_through(bound: SocketAddr) {
    let mut tcp = tokio::net::TcpStream::connect(bound).await.expect("connect's port");
    tcp.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    within_for(PROC_STEP, "the answer through the tunnel", tcp.read_to_end(&mut answer)).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn listen_connect_prewarm_and_http_mode_go_through_the_proxy() {
    if !have_tinyproxy() {
        return;
    }
    let home = TempDir::new("proxy");
    let proxy = Tinyproxy::start(home.path(), "").await;
    let serve = ServeProc::start(home.path()).await;
    let server = HttpServer::start().await;
    let url = proxy.url();
    // A ws:// relay: http_proxy for the listener, ALL_PROXY for the sender.
    let listen = listen_cmd(home.path(), &serve, server.addr, &[("http_proxy", &url)], &["-v"]);
    listening(&listen).await;
    assert_eq!(proxy.wait_connects(serve.addr, 1).await, 1, "the control channel");
    assert!(
        listen.stderr.text().contains(&format!("proxy={}", proxy.addr)),
        "the proxy in use is logged at debug:\n{}",
        listen.stderr.text()
    );

    let (connect, bound) = start_connect(home.path(), &serve, &[("ALL_PROXY", &url)], &["--prewarm", "2"]).await;
    // The availability check, two prewarmed tunnels, and the listener's accepts for them.
    let before = proxy.wait_connects(serve.addr, 1 + 2 * 2).await;
    hello_through(bound).await;
    hello_through(bound).await;
    assert!(proxy.connects_to(serve.addr) > before, "used tunnels are replaced through the proxy too");

    // HTTP mode: a request too large for the control channel comes by a rendezvous,
    // which the listener opens through the proxy.
    let before = proxy.connects_to(serve.addr);
    let token = serve.token("hc");
    let body = Body::Noise { seed: 7, len: 256 * 1024, chunked: false };
    let reply = within_for(
        PROC_STEP,
        "an HTTP-mode request",
        request(serve.addr, "POST", "/hc/upload", &[(hyco::protocol::TOKEN_HEADER, &token)], body),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    proxy.wait_connects(serve.addr, before + 1).await;
    drop(connect);
}

#[tokio::test]
async fn no_proxy_and_proxy_none_go_direct() {
    if !have_tinyproxy() {
        return;
    }
    let home = TempDir::new("proxy-direct");
    let proxy = Tinyproxy::start(home.path(), "").await;
    let serve = ServeProc::start(home.path()).await;
    let server = HttpServer::start().await;
    let url = proxy.url();
    let ip = serve.addr.ip().to_string();
    let listen = listen_cmd(home.path(), &serve, server.addr, &[("HTTP_PROXY", &url), ("NO_PROXY", &ip)], &[]);
    listening(&listen).await;
    let (_connect, bound) = start_connect(home.path(), &serve, &[("HTTP_PROXY", &url)], &["--proxy", "none"]).await;
    hello_through(bound).await;
    let (_connect, bound) =
        start_connect(home.path(), &serve, &[("http_proxy", &url), ("no_proxy", "example.com, 127.0.0.0/8")], &[])
            .await;
    hello_through(bound).await;
    assert_eq!(proxy.connects_to(serve.addr), 0, "nothing went through the proxy");
}

#[tokio::test]
async fn a_proxy_that_wants_credentials_gets_them_from_the_url_or_the_profile() {
    if !have_tinyproxy() {
        return;
    }
    let home = TempDir::new("proxy-auth");
    let proxy = Tinyproxy::start(home.path(), "BasicAuth alice s3cret").await;
    let serve = ServeProc::start(home.path()).await;
    let server = HttpServer::start().await;
    let good = format!("http://alice:s3cret@{}", proxy.addr);

    // From the profile, with no variable set.
    let config = format!(
        "default = \"p\"\n[profiles.p]\nendpoint = \"ws://{}\"\nkey_name = \"{KEY_NAME}\"\nkey = \"{}\"\nproxy = \"{good}\"\n",
        serve.addr, serve.key
    );
    std::fs::write(home.path().join("config.toml"), config).unwrap();
    let mut cmd = hyco(home.path());
    cmd.args(["listen", "hc", "--to", &server.addr.to_string()]);
    let listen = Proc::spawn(cmd);
    listening(&listen).await;
    proxy.wait_connects(serve.addr, 1).await;

    // From --proxy.
    let (_connect, bound) = start_connect(home.path(), &serve, &[], &["--proxy", &good, "--prewarm", "0"]).await;
    hello_through(bound).await;

    // None, then wrong ones: exit 4, the proxy named, the password nowhere.
    for (proxy_url, says) in [
        (format!("http://{}", proxy.addr), "wants credentials (407"),
        (format!("http://alice:hunter2@{}", proxy.addr), "did not accept the credentials"),
    ] {
        let mut failed = listen_cmd(home.path(), &serve, server.addr, &[("HTTP_PROXY", &proxy_url)], &["-v"]);
        let status = failed.exit(PROC_STEP).await;
        let err = failed.stderr.text();
        assert_eq!(status.code(), Some(4), "{err}");
        assert!(err.contains(says) && err.contains(&format!("proxy at {}", proxy.addr)), "{err}");
        assert!(!err.contains("hunter2") && !err.contains("YWxpY2U6aHVudGVyMg"), "credentials leaked:\n{err}");
    }
}

#[tokio::test]
async fn a_proxy_that_rejects_the_relay_port_is_named_in_the_error() {
    if !have_tinyproxy() {
        return;
    }
    let home = TempDir::new("proxy-reject");
    // Only 443 may be tunnelled to: the relay's port is not.
    let proxy = Tinyproxy::start(home.path(), "ConnectPort 443").await;
    let serve = ServeProc::start(home.path()).await;
    let server = HttpServer::start().await;
    let url = proxy.url();
    let mut listen = listen_cmd(home.path(), &serve, server.addr, &[("HTTP_PROXY", &url)], &[]);
    let status = listen.exit(PROC_STEP).await;
    let err = listen.stderr.text();
    assert_eq!(status.code(), Some(4), "{err}");
    assert!(
        err.contains(&format!("the proxy at {} rejected the tunnel", proxy.addr)) && err.contains("(403 "),
        "{err}"
    );
    assert!(err.contains("NO_PROXY"), "the fix is named:\n{err}");

    // A sender as well.
    let endpoint = format!("ws://{}", serve.addr);
    let mut cmd = hyco(home.path());
    cmd.args(["connect", "hc", "--stdio", "--proxy", &url]).args(key_flags(&endpoint, &serve.key));
    let mut connect = Proc::spawn(cmd);
    let status = connect.exit(PROC_STEP).await;
    let err = connect.stderr.text();
    assert_eq!(status.code(), Some(4), "{err}");
    assert!(err.contains(&format!("the proxy at {} rejected the tunnel", proxy.addr)), "{err}");
}

#[tokio::test]
async fn tls_to_the_relay_runs_inside_the_proxy_tunnel() {
    if !have_tinyproxy() {
        return;
    }
    let home = TempDir::new("proxy-tls");
    let proxy = Tinyproxy::start(home.path(), "").await;
    let mut cmd = hyco(home.path());
    cmd.args(["serve", "--bind", "127.0.0.1:0", "--tls-self-signed", "--profile-name", "tls"]);
    let serve = Proc::spawn(cmd);
    let line = serve.stdout.wait_for(PROC_STEP, "the profile line", |l| l.starts_with("Profile 'tls'")).await;
    let relay: SocketAddr = line
        .split("wss://")
        .nth(1)
        .and_then(|rest| rest.split([',', ' ']).next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no wss:// address in {line}"));
    let server = HttpServer::start().await;
    // A wss:// relay: HTTPS_PROXY; the profile pins the relay's certificate.
    let url = proxy.url();
    let mut cmd = hyco(home.path());
    cmd.args(["listen", "hc", "--to", &server.addr.to_string(), "--profile", "tls"]).env("HTTPS_PROXY", &url);
    let listen = Proc::spawn(cmd);
    listening(&listen).await;
    let mut cmd = hyco(home.path());
    cmd.args(["connect", "hc", "--bind", "127.0.0.1:0", "--profile", "tls", "--prewarm", "0"]).env("https_proxy", &url);
    let (_connect, addr) = bound(cmd).await;
    hello_through(addr).await;
    // The control channel, the sender and its accept.
    proxy.wait_connects(relay, 3).await;
}
