//! Unix domain sockets on both ends, with the real binary: `hyco listen --to unix:PATH`
//! (a real Redis from Debian listening only on a Unix socket, reached from a TCP `--bind`
//! and from a `--bind unix:` socket; a Unix web app in HTTP mode), `hyco connect --bind
//! unix:PATH` (its mode, removal at exit on SIGTERM and SIGINT, stale sockets replaced,
//! live sockets and other files left alone, the sun_path limit), half-close each way
//! through Unix -> tunnel -> Unix, a public TCP port to a Unix target, and what a Unix
//! client sees when the listener dies.
//! Without redis-server the Redis test skips with a note, or fails if
//! `HYCO_REQUIRE_REDIS=1` (CI sets it).
#![cfg(unix)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::bridge::*;
use common::http::{Body, request};
use common::within_for;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixListener, UnixStream};

const REDIS: &str = "redis-server";

/// `hyco listen hc --to SPEC…` against `serve`, waited for until it is listening.
async fn listen(home: &Path, serve: &ServeProc, to: &[String], extra: &[&str]) -> Proc {
    let endpoint = format!("ws://{}", serve.addr);
    let mut cmd = hyco(home);
    cmd.args(["listen", "hc"]);
    for spec in to {
        cmd.args(["--to", spec]);
    }
    cmd.args(key_flags(&endpoint, &serve.key)).args(extra);
    spawn_listening(cmd).await
}

/// `hyco connect HC --bind BIND …` against `serve` (not waited for).
fn connect_cmd(home: &Path, serve: &ServeProc, hc: &str, bind: &str, extra: &[&str]) -> Proc {
    let endpoint = format!("ws://{}", serve.addr);
    let mut cmd = hyco(home);
    cmd.args(["connect", hc, "--bind", bind]).args(key_flags(&endpoint, &serve.key)).args(extra);
    Proc::spawn(cmd)
}

/// `connect_cmd`, waited for until it says where it accepts; returns that too.
async fn connect(home: &Path, serve: &ServeProc, hc: &str, bind: &str, extra: &[&str]) -> (Proc, String) {
    let proc = connect_cmd(home, serve, hc, bind, extra);
    let line = proc.stderr.wait_for(PROC_STEP, "connect's bind line", |l| l.starts_with("hyco: ")).await;
    let at = line.trim_start_matches("hyco: ").split(" -> ").next().expect("an address").to_owned();
    (proc, at)
}

/// `hyco connect` that must fail before it reaches any relay: its exit code and stderr.
async fn connect_fails(home: &Path, bind: &str, extra: &[&str]) -> (i32, String) {
    let mut cmd = hyco(home);
    cmd.args(["connect", "hc", "--bind", bind]).args(key_flags("ws://127.0.0.1:9", common::KEY)).args(extra);
    let mut proc = Proc::spawn(cmd);
    let status = proc.exit(PROC_STEP).await;
    (status.code().expect("an exit code"), proc.stderr.text())
}

/// A connection to what `connect` printed: `unix:PATH` or `HOST:PORT`.
enum Client {
    Tcp(TcpStream),
    Unix(UnixStream),
}

async fn dial(at: &str) -> Client {
    match at.strip_prefix("unix:") {
        Some(path) => Client::Unix(UnixStream::connect(path).await.expect("connect to the Unix socket")),
        None => Client::Tcp(TcpStream::connect(at).await.expect("connect to the TCP port")),
    }
}

impl Client {
    fn split(&mut self) -> (Box<dyn AsyncRead + Unpin + Send + '_>, Box<dyn AsyncWrite + Unpin + Send + '_>) {
        match self {
            Self::Tcp(s) => {
                let (r, w) = s.split();
                (Box::new(r), Box::new(w))
            }
            Self::Unix(s) => {
                let (r, w) = s.split();
                (Box::new(r), Box::new(w))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Redis on a Unix socket

/// Whether redis-server is here; if not, skips (or fails when `HYCO_REQUIRE_REDIS=1`).
fn have_redis() -> bool {
    let found = std::process::Command::new(REDIS).arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("HYCO_REQUIRE_REDIS").as_deref() != Ok("1"),
            "HYCO_REQUIRE_REDIS=1 but {REDIS} is missing"
        );
        eprintln!("skipping: {REDIS} is not installed (apt-get install redis-server)");
    }
    found
}

/// A redis-server of its own on a Unix socket in `dir` only (no TCP port, nothing saved).
struct Redis {
    child: tokio::process::Child,
    socket: PathBuf,
}

impl Redis {
    async fn start(dir: &Path) -> Self {
        let socket = dir.join("redis.sock");
        let child = tokio::process::Command::new(REDIS)
            .args(["--port", "0", "--unixsocket"])
            .arg(&socket)
            .args(["--unixsocketperm", "700", "--save", "", "--appendonly", "no", "--dir"])
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn redis-server");
        within_for(PROC_STEP, "redis-server's socket", async {
            while UnixStream::connect(&socket).await.is_err() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        Self { child, socket }
    }
}

/// Reads one RESP line (without its CRLF).
async fn resp_line(r: &mut (impl AsyncRead + Unpin)) -> String {
    let mut line = Vec::new();
    loop {
        let b = r.read_u8().await.expect("a RESP line");
        if b == b'\n' && line.last() == Some(&b'\r') {
            line.pop();
            return String::from_utf8(line).expect("UTF-8");
        }
        line.push(b);
    }
}

/// SET then GET a 1 MiB value by hand in RESP through `at`: the same bytes come back.
async fn set_and_get_a_mebibyte(at: &str, key: &str, seed: u64) {
    let value = noise_vec(seed, 1 << 20);
    let mut client = dial(at).await;
    let (mut r, mut w) = client.split();
    let mut set = format!("*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n", key.len(), value.len()).into_bytes();
    set.extend_from_slice(&value);
    set.extend_from_slice(b"\r\n");
    within_for(PROC_STEP, "SET", w.write_all(&set)).await.expect("SET sent");
    assert_eq!(within_for(PROC_STEP, "SET's answer", resp_line(&mut r)).await, "+OK");
    let get = format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len());
    w.write_all(get.as_bytes()).await.expect("GET sent");
    assert_eq!(within_for(PROC_STEP, "GET's length", resp_line(&mut r)).await, format!("${}", value.len()));
    let mut got = vec![0; value.len() + 2];
    within_for(PROC_STEP, "GET's value", r.read_exact(&mut got)).await.expect("the value");
    assert!(got.ends_with(b"\r\n"));
    got.truncate(value.len());
    let digest = |b: &[u8]| {
        let mut h = FastSha256::new();
        h.update(b);
        h.finish()
    };
    assert_eq!(digest(&got), digest(&value), "the value came back intact ({} bytes)", got.len());
}

fn noise_vec(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0; len];
    Noise::new(seed).fill(&mut v);
    v
}

#[tokio::test]
async fn redis_on_a_unix_socket_is_reached_from_tcp_and_from_a_unix_socket() {
    if !have_redis() {
        return;
    }
    let home = TempDir::new("unix-redis");
    let redis = Redis::start(home.path()).await;
    let serve = ServeProc::start(home.path()).await;
    let to = format!("unix:{}", redis.socket.display());
    let _listen = listen(home.path(), &serve, &[format!("db={to}")], &[]).await;

    let (_tcp_connect, tcp_at) = connect(home.path(), &serve, "hc/db", "127.0.0.1:0", &[]).await;
    set_and_get_a_mebibyte(&tcp_at, "from-tcp", 1).await;

    let sock = home.path().join("c.sock");
    let (_unix_connect, unix_at) =
        connect(home.path(), &serve, "hc/db", &format!("unix:{}", sock.display()), &[]).await;
    assert_eq!(unix_at, format!("unix:{}", sock.display()));
    set_and_get_a_mebibyte(&unix_at, "from-unix", 2).await;
    // And without prewarming: a tunnel opened per connection.
    let sock2 = home.path().join("c2.sock");
    let (_c2, at2) =
        connect(home.path(), &serve, "hc/db", &format!("unix:{}", sock2.display()), &["--prewarm", "0"]).await;
    set_and_get_a_mebibyte(&at2, "from-unix-2", 3).await;
    drop(redis.child);
}

// ---------------------------------------------------------------------------------------
// Half-close and aborts through Unix -> tunnel -> Unix

/// A Unix server in `dir` that, per connection, says `hello` and half-closes, then
/// reads to the end and reports what it read on the channel.
async fn greeter_then_sink(dir: &Path) -> (PathBuf, tokio::sync::mpsc::UnboundedReceiver<std::io::Result<Vec<u8>>>) {
    let path = dir.join("target.sock");
    let listener = UnixListener::bind(&path).expect("bind the target socket");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = w.write_all(b"hello").await;
                let _ = w.shutdown().await;
                let mut got = Vec::new();
                let read = r.read_to_end(&mut got).await.map(|_| got);
                let _ = tx.send(read);
            });
        }
    });
    (path, rx)
}

#[tokio::test]
async fn half_close_goes_each_way_through_unix_sockets_on_both_ends() {
    let home = TempDir::new("unix-half");
    let serve = ServeProc::start(home.path()).await;
    let (target, mut reads) = greeter_then_sink(home.path()).await;
    let _listen = listen(home.path(), &serve, &[format!("unix:{}", target.display())], &[]).await;
    let bind = format!("unix:{}", home.path().join("c.sock").display());
    let (_connect, at) = connect(home.path(), &serve, "hc", &bind, &[]).await;
    for _ in 0..2 {
        let Client::Unix(mut s) = dial(&at).await else { unreachable!() };
        // The target's half-close reaches the client, whose own side stays open ...
        let mut hello = Vec::new();
        within_for(PROC_STEP, "hello and the end of it", s.read_to_end(&mut hello)).await.expect("read");
        assert_eq!(hello, b"hello");
        // ... and what it sends after that reaches the target, then its own half-close.
        let data = noise_vec(5, 300_000);
        s.write_all(&data).await.expect("write after the other side's half-close");
        s.shutdown().await.expect("half-close");
        let got = within_for(PROC_STEP, "the target's read", reads.recv()).await.expect("a report");
        assert_eq!(got.expect("the target read to a clean end").len(), data.len());
    }
}

#[tokio::test]
async fn a_public_tcp_port_reaches_a_unix_target() {
    let home = TempDir::new("unix-public");
    let serve = ServeProc::start(home.path()).await;
    let (target, mut reads) = greeter_then_sink(home.path()).await;
    let to = format!("unix:{}", target.display());
    let listen = listen(home.path(), &serve, &[to], &["--public"]).await;
    let line = listen.stderr.wait_for(PROC_STEP, "the 'reachable at' line", |l| l.contains("reachable at ")).await;
    let public = line.split("reachable at ").nth(1).and_then(|r| r.split_whitespace().next()).expect("an address");
    let Client::Tcp(mut tcp) = dial(public).await else { unreachable!() };
    let mut hello = Vec::new();
    within_for(PROC_STEP, "hello and the end of it", tcp.read_to_end(&mut hello)).await.expect("read");
    assert_eq!(hello, b"hello");
    tcp.write_all(b"visitor").await.expect("write after the target's half-close");
    tcp.shutdown().await.expect("half-close");
    let got = within_for(PROC_STEP, "the target's read", reads.recv()).await.expect("a report");
    assert_eq!(got.expect("a clean end"), b"visitor");
}

#[tokio::test]
async fn a_unix_client_sees_an_error_when_the_listener_dies_mid_stream() {
    let home = TempDir::new("unix-reset");
    let serve = ServeProc::start(home.path()).await;
    // A target that reads everything and never answers.
    let target = home.path().join("sink.sock");
    let sink = UnixListener::bind(&target).expect("bind");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = sink.accept().await {
            tokio::spawn(async move { while s.read(&mut [0; 65536]).await.is_ok_and(|n| n > 0) {} });
        }
    });
    let mut listen = listen(home.path(), &serve, &[format!("unix:{}", target.display())], &[]).await;
    let bind = format!("unix:{}", home.path().join("c.sock").display());
    let (_connect, at) = connect(home.path(), &serve, "hc", &bind, &["--prewarm", "0"]).await;
    let Client::Unix(s) = dial(&at).await else { unreachable!() };
    let (mut r, mut w) = s.into_split();
    let writing = tokio::spawn(async move {
        let chunk = vec![7; 64 * 1024];
        let mut sent = 0u64;
        loop {
            match w.write_all(&chunk).await {
                Ok(()) => sent += chunk.len() as u64,
                Err(e) => return (sent, e),
            }
        }
    });
    // Data flows first, then the listener is killed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    listen.child.start_kill().expect("kill the listener");
    let (sent, write_error) = within_for(PROC_STEP, "the client's write to fail", writing).await.expect("writer");
    assert!(sent > 0, "data flowed before the kill");
    assert!(
        matches!(write_error.kind(), std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset),
        "{write_error:?}"
    );
    // The read side ends too: with ECONNRESET when hyco closed with the client's bytes
    // unread (nearly always, with a writer this busy), else with the end of data (a Unix
    // socket has no reset to send: docs/protocol.md 10.3); the write's EPIPE above is what
    // the application always sees.
    let read = within_for(PROC_STEP, "the client's read to end", r.read(&mut [0; 16])).await;
    assert!(
        matches!(read.as_ref().map_err(|e| e.kind()), Err(std::io::ErrorKind::ConnectionReset) | Ok(0)),
        "{read:?}"
    );
}

#[tokio::test]
async fn a_unix_target_sees_an_error_when_the_connector_dies_mid_stream() {
    let home = TempDir::new("unix-reset-target");
    let serve = ServeProc::start(home.path()).await;
    // A target that writes until its write fails, and says how that went.
    let target = home.path().join("source.sock");
    let source = UnixListener::bind(&target).expect("bind");
    let (tx, mut ended) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = source.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let chunk = vec![9; 64 * 1024];
                let mut sent = 0u64;
                let error = loop {
                    match s.write_all(&chunk).await {
                        Ok(()) => sent += chunk.len() as u64,
                        Err(e) => break e,
                    }
                };
                let _ = tx.send((sent, error));
            });
        }
    });
    let _listen = listen(home.path(), &serve, &[format!("unix:{}", target.display())], &[]).await;
    let (mut connect, at) = connect(home.path(), &serve, "hc", "127.0.0.1:0", &["--prewarm", "0"]).await;
    let Client::Tcp(mut tcp) = dial(&at).await else { unreachable!() };
    let mut first = vec![0; 1 << 20];
    within_for(PROC_STEP, "data from the target", tcp.read_exact(&mut first)).await.expect("read");
    connect.child.start_kill().expect("kill the connector");
    let (sent, error) = within_for(PROC_STEP, "the target's write to fail", ended.recv()).await.expect("a report");
    assert!(sent >= 1 << 20, "data flowed before the kill");
    assert!(matches!(error.kind(), std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset), "{error:?}");
}

#[tokio::test]
async fn a_missing_or_dead_unix_target_is_a_reset_with_the_reason_logged() {
    let home = TempDir::new("unix-missing");
    let serve = ServeProc::start(home.path()).await;
    let missing = home.path().join("missing.sock");
    let dead = home.path().join("dead.sock");
    drop(std::os::unix::net::UnixListener::bind(&dead).expect("bind")); // a stale socket file
    let to = [format!("gone=unix:{}", missing.display()), format!("dead=unix:{}", dead.display())];
    let listen = listen(home.path(), &serve, &to, &[]).await;
    for (name, text) in [("gone", "no such socket"), ("dead", "refused")] {
        let (_connect, at) = connect(home.path(), &serve, &format!("hc/{name}"), "127.0.0.1:0", &[]).await;
        let Client::Tcp(mut tcp) = dial(&at).await else { unreachable!() };
        let mut buf = Vec::new();
        let read = within_for(PROC_STEP, "the reset", tcp.read_to_end(&mut buf)).await;
        assert_eq!(read.map_err(|e| e.kind()).err(), Some(std::io::ErrorKind::ConnectionReset), "{name}");
        listen.stderr.wait_for(PROC_STEP, "the reason in the listener's log", |l| l.contains(text)).await;
    }
}

// ---------------------------------------------------------------------------------------
// HTTP mode to a web app on a Unix socket

#[tokio::test]
async fn http_mode_reaches_a_web_app_on_a_unix_socket() {
    let home = TempDir::new("unix-http");
    let serve = ServeProc::start(home.path()).await;
    let app = home.path().join("app.sock");
    let listener = UnixListener::bind(&app).expect("bind");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") {
                    match s.read_u8().await {
                        Ok(b) => head.push(b),
                        Err(_) => return,
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let line = head.lines().next().unwrap_or_default().to_owned();
                let host = head.lines().find_map(|l| l.strip_prefix("Host: ")).unwrap_or_default().to_owned();
                let body = format!("{line} host={host}");
                let answer =
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
                let _ = s.write_all(answer.as_bytes()).await;
            });
        }
    });
    let _listen = listen(home.path(), &serve, &[format!("unix:{}", app.display())], &["--http"]).await;
    let token = serve.token("hc");
    let reply = within_for(
        PROC_STEP,
        "an HTTP-mode request",
        request(serve.addr, "GET", "/hc/status?x=1", &[(hyco::protocol::TOKEN_HEADER, &token)], Body::Empty),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "GET /status?x=1 HTTP/1.1 host=localhost");
}

// ---------------------------------------------------------------------------------------
// `--bind unix:PATH`: mode, removal, what is there already, limits

fn mode_of(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).expect("the socket file").permissions().mode() & 0o777
}

/// Sends `signal` (by name, for kill(1)) to `proc` and waits for it to exit.
async fn signal(proc: &mut Proc, signal: &str) -> std::process::ExitStatus {
    proc.signal(signal);
    proc.exit(PROC_STEP).await
}

#[tokio::test]
async fn a_bound_socket_has_its_mode_and_is_removed_at_exit() {
    let home = TempDir::new("unix-mode");
    let serve = ServeProc::start(home.path()).await;
    for (mode, want, sig) in [(None, 0o600, "TERM"), (Some("0660"), 0o660, "INT"), (Some("0777"), 0o777, "TERM")] {
        let sock = home.path().join("m.sock");
        let extra: Vec<&str> = mode.map(|m| vec!["--bind-mode", m]).unwrap_or_default();
        let (mut proc, _) = connect(home.path(), &serve, "hc", &format!("unix:{}", sock.display()), &extra).await;
        assert_eq!(mode_of(&sock), want, "--bind-mode {mode:?}");
        let status = signal(&mut proc, sig).await;
        assert!(status.success(), "SIG{sig}: {status}\n{}", proc.stderr.text());
        assert!(!sock.exists(), "the socket is removed at exit (SIG{sig})");
    }
}

#[tokio::test]
async fn the_socket_goes_when_connect_fails_after_binding_it() {
    let home = TempDir::new("unix-fail");
    let sock = home.path().join("f.sock");
    // Bound first, then the relay (nothing on port 9) cannot be reached: exit 4.
    let (code, err) = connect_fails(home.path(), &format!("unix:{}", sock.display()), &[]).await;
    assert_eq!(code, 4, "{err}");
    assert!(!sock.exists(), "the socket is removed on the error path too");
}

#[tokio::test]
async fn a_stale_socket_is_replaced_and_a_live_one_is_left_alone() {
    let home = TempDir::new("unix-stale");
    let serve = ServeProc::start(home.path()).await;
    let sock = home.path().join("s.sock");
    drop(std::os::unix::net::UnixListener::bind(&sock).expect("bind")); // nobody listens now
    let bind = format!("unix:{}", sock.display());
    let (mut proc, _) = connect(home.path(), &serve, "hc", &bind, &[]).await;
    proc.stderr.wait_for(PROC_STEP, "the stale socket said", |l| l.contains("removed the stale socket")).await;
    UnixStream::connect(&sock).await.expect("connect's own socket now");

    // hyco's socket is live now: a second connect must not take it.
    let (code, err) = connect_fails(home.path(), &bind, &[]).await;
    assert_eq!(code, 7, "{err}");
    assert!(err.contains("is in use by another process"), "{err}");
    UnixStream::connect(&sock).await.expect("the first connect still has it");
    assert!(signal(&mut proc, "TERM").await.success());
}

#[tokio::test]
async fn what_is_not_a_socket_is_left_alone() {
    let home = TempDir::new("unix-files");
    let file = home.path().join("notes.txt");
    std::fs::write(&file, "keep me").unwrap();
    let dir = home.path().join("adir");
    std::fs::create_dir(&dir).unwrap();
    let link = home.path().join("link.sock");
    std::os::unix::fs::symlink(&file, &link).unwrap();
    for (path, what) in [(&file, "a regular file"), (&dir, "a directory"), (&link, "a symbolic link")] {
        let (code, err) = connect_fails(home.path(), &format!("unix:{}", path.display()), &[]).await;
        assert_eq!(code, 7, "{err}");
        assert!(err.contains(what) && err.contains("remove it or choose another path"), "{err}");
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
    assert!(dir.is_dir() && link.is_symlink());
}

#[tokio::test]
async fn paths_past_sun_path_and_bad_modes_are_refused() {
    let home = TempDir::new("unix-long");
    let max = hyco::local::MAX_SOCKET_PATH;
    let long = format!("/tmp/{}", "x".repeat(max + 1 - "/tmp/".len()));
    assert_eq!(long.len(), max + 1);
    let (code, err) = connect_fails(home.path(), &format!("unix:{long}"), &[]).await;
    assert_eq!(code, 3, "{err}");
    assert!(err.contains(&format!("at most {max}")) && err.contains("sun_path"), "{err}");
    assert!(!Path::new(&long).exists());
    // The longest path that fits is taken.
    let dir = home.path().join("d");
    std::fs::create_dir(&dir).unwrap();
    let fits = format!("{}/{}", dir.display(), "y".repeat(max - dir.as_os_str().len() - 1));
    assert_eq!(fits.len(), max);
    let serve = ServeProc::start(home.path()).await;
    let (mut proc, at) = connect(home.path(), &serve, "hc", &format!("unix:{fits}"), &[]).await;
    assert_eq!(at, format!("unix:{fits}"));
    assert!(signal(&mut proc, "TERM").await.success());
    // A target's path past the limit is refused at start.
    let mut cmd = hyco(home.path());
    cmd.args(["listen", "hc", "--to", &format!("unix:{long}")]).args(key_flags("ws://127.0.0.1:9", common::KEY));
    let mut listen = Proc::spawn(cmd);
    assert_eq!(listen.exit(PROC_STEP).await.code(), Some(3), "{}", listen.stderr.text());
    // Modes: octal, at most 0777, and only for a Unix socket.
    for (mode, code) in [("0800", 2), ("1777", 2), ("rw", 2)] {
        let (got, err) =
            connect_fails(home.path(), &format!("unix:{}/z.sock", dir.display()), &["--bind-mode", mode]).await;
        assert_eq!(got, code, "{mode}: {err}");
    }
    let (got, err) = connect_fails(home.path(), "127.0.0.1:0", &["--bind-mode", "0600"]).await;
    assert_eq!(got, 3, "{err}");
    assert!(err.contains("--bind-mode is for a Unix socket"), "{err}");
}
