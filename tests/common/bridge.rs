//! Helpers for the end-to-end client tests (`tests/bridge.rs`, `tests/cli.rs`,
//! `tests/interop_bridge.rs`): TCP targets, `hyco listen` and `hyco connect --bind` run
//! in-process against a [`super::TestRelay`], the real binary as a child process, temp
//! directories, and a fast deterministic byte stream for bulk transfers.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyco::client::RelayClient;
use hyco::client::connect::{self, ConnectSettings};
use hyco::client::listen::{self, ListenSettings};
use hyco::client::prewarm::Prewarm;
use hyco::client::target::Targets;
use hyco::connstr::{Credential, Endpoint};
use hyco::secret::Secret;
use hyco::status::Stats;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use super::{KEY, KEY_NAME, within, within_for};

// ---------------------------------------------------------------------------------------
// Targets: the TCP servers behind a listener

/// A TCP server on `127.0.0.1:0`; every connection runs `handler`. Dropping it aborts the
/// accept loop and every connection it started.
pub struct Target {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Target {
    pub async fn spawn<F, Fut>(handler: F) -> Self
    where
        F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a target");
        let addr = listener.local_addr().expect("target address");
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            while let Ok((tcp, _)) = listener.accept().await {
                conns.spawn(handler(tcp));
                while conns.try_join_next().is_some() {}
            }
        });
        Self { addr, task }
    }

    /// Echoes every byte back; ends its write side at EOF.
    pub async fn echo() -> Self {
        Self::spawn(|mut tcp| async move {
            let (mut r, mut w) = tcp.split();
            if tokio::io::copy(&mut r, &mut w).await.is_ok() {
                let _ = w.shutdown().await;
            }
        })
        .await
    }

    /// Reads everything until EOF, then answers with it upper-cased and closes: it only
    /// replies after the client's half-close.
    pub async fn upper_after_eof() -> Self {
        Self::spawn(|mut tcp| async move {
            let mut all = Vec::new();
            if tcp.read_to_end(&mut all).await.is_ok() {
                let _ = tcp.write_all(&all.to_ascii_uppercase()).await;
                let _ = tcp.shutdown().await;
            }
        })
        .await
    }

    /// Sends `name` and a newline, then echoes.
    pub async fn greeter(name: &'static str) -> Self {
        Self::spawn(move |mut tcp| async move {
            if tcp.write_all(format!("{name}\n").as_bytes()).await.is_ok() {
                let (mut r, mut w) = tcp.split();
                if tokio::io::copy(&mut r, &mut w).await.is_ok() {
                    let _ = w.shutdown().await;
                }
            }
        })
        .await
    }

    /// The `host:port` spec for [`Targets::parse`].
    pub fn spec(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An address on 127.0.0.1 where nothing listens (bound, then closed), so a connect is refused.
pub async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    drop(l);
    addr
}

/// Ends `tcp` with a reset (SO_LINGER 0), as a crashing process would.
pub fn abort_socket(tcp: TcpStream) {
    socket2::SockRef::from(&tcp).set_linger(Some(Duration::ZERO)).expect("SO_LINGER 0");
    drop(tcp);
}

// ---------------------------------------------------------------------------------------
// hyco listen / hyco connect, in-process

/// A client for the relay at `relay` with the test namespace key.
pub fn client(relay: SocketAddr) -> RelayClient {
    let endpoint = Endpoint { secure: false, host: relay.ip().to_string(), port: relay.port() };
    let credential = Credential::Key { name: KEY_NAME.into(), key: Secret::new(KEY) };
    RelayClient::new(endpoint, credential, None).expect("relay client")
}

/// Listen settings for `hc` with `--to` specs.
pub fn listen_settings(hc: &str, to: &[String]) -> ListenSettings {
    ListenSettings::new(hc, Targets::parse(to).expect("targets"))
}

/// `listen::run` in a task. Dropping it signals shutdown.
pub struct Listening {
    pub stats: Arc<Stats>,
    pub shutdown: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Listening {
    /// Starts a listener and returns once its first control channel is registered.
    pub async fn start(client: RelayClient, settings: ListenSettings) -> Self {
        let stats = Arc::new(Stats::default());
        let shutdown = CancellationToken::new();
        let mut task = tokio::spawn(listen::run(client, settings, stats.clone(), shutdown.clone()));
        let mut channels = stats.channels.subscribe();
        within("the listener's control channel", async {
            tokio::select! {
                r = channels.wait_for(|n| *n >= 1) => { r.expect("stats alive"); }
                r = &mut task => panic!("listener ended before registering: {r:?}"),
            }
        })
        .await;
        Self { stats, shutdown, task: Some(task) }
    }

    /// Signals shutdown and waits for `run` to return.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        let task = self.task.take().expect("running");
        within("listen::run to return", task).await.expect("listener task panicked")
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// `connect::run_bind` on `127.0.0.1:0` in a task. Dropping it signals shutdown.
pub struct Bound {
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
    pub shutdown: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Bound {
    /// With the default prewarming, as `hyco connect --bind` runs.
    pub async fn start(client: RelayClient, hc: &str, suffix: Option<&str>) -> Self {
        Self::start_with(client, hc, suffix, Prewarm::default()).await
    }

    pub async fn start_with(client: RelayClient, hc: &str, suffix: Option<&str>, prewarm: Prewarm) -> Self {
        let settings = ConnectSettings { hc: hc.into(), suffix: suffix.map(Into::into), azbridge: None };
        Self::start_settings(client, settings, prewarm).await
    }

    /// With `settings` as they are.
    pub async fn start_settings(client: RelayClient, settings: ConnectSettings, prewarm: Prewarm) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind connect's port");
        let addr = listener.local_addr().expect("addr");
        let stats = Arc::new(Stats::default());
        let shutdown = CancellationToken::new();
        let task =
            tokio::spawn(connect::run_bind(client, settings, prewarm, listener, stats.clone(), shutdown.clone()));
        Self { addr, stats, shutdown, task: Some(task) }
    }

    pub async fn connect(&self) -> TcpStream {
        within("connect to hyco connect's port", TcpStream::connect(self.addr)).await.expect("connect")
    }

    /// Stops taking connections; live tunnels may finish for up to
    /// [`connect::DRAIN_TIMEOUT`], then are closed.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        let task = self.task.take().expect("running");
        within_for(connect::DRAIN_TIMEOUT + super::STEP, "run_bind to return", task)
            .await
            .expect("connect task panicked")
    }
}

impl Drop for Bound {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Sends `data`, half-closes, and reads everything back until EOF.
pub async fn round_trip(tcp: &mut TcpStream, data: &[u8]) -> std::io::Result<Vec<u8>> {
    let (mut r, mut w) = tcp.split();
    let write = async {
        w.write_all(data).await?;
        w.shutdown().await
    };
    let mut got = Vec::new();
    let (wrote, read) = tokio::join!(write, r.read_to_end(&mut got));
    wrote?;
    read?;
    Ok(got)
}

/// Reads until EOF or an error; returns the bytes read and how it ended.
pub async fn read_until_end<R: AsyncRead + Unpin>(r: &mut R) -> (u64, std::io::Result<()>) {
    let mut buf = vec![0; 64 * 1024];
    let mut total = 0u64;
    loop {
        match r.read(&mut buf).await {
            Ok(0) => return (total, Ok(())),
            Ok(n) => total += n as u64,
            Err(e) => return (total, Err(e)),
        }
    }
}

/// Waits until every tunnel counted in `stats.active` has ended.
pub async fn until_idle(what: &str, stats: &Stats) {
    within(what, async {
        while stats.active.load(Ordering::Relaxed) != 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Bulk data

/// A deterministic pseudo-random byte stream (xorshift64*), fast enough in debug builds.
pub struct Noise(u64);

impl Noise {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next().to_le_bytes();
        let n = rest.len();
        rest.copy_from_slice(&last[..n]);
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// The SHA-256 of `len` bytes of [`Noise`] from `seed`, written in pieces of `piece`.
pub fn noise_digest(seed: u64, len: usize, piece: usize) -> [u8; 32] {
    let mut noise = Noise::new(seed);
    let mut buf = vec![0; piece];
    let mut hash = Sha256::new();
    let mut left = len;
    while left > 0 {
        let n = left.min(piece);
        noise.fill(&mut buf[..n]);
        hash.update(&buf[..n]);
        left -= n;
    }
    hash.finalize().into()
}

// ---------------------------------------------------------------------------------------
// The real binary

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let dir = std::env::temp_dir().join(format!("hyco-test-{tag}-{}-{n}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The flags that name a relay at `endpoint` and sign with `key` under the tests' rule
/// name ([`KEY_NAME`]), for the real binary.
pub fn key_flags<'a>(endpoint: &'a str, key: &'a str) -> [&'a str; 6] {
    ["--endpoint", endpoint, "--key-name", KEY_NAME, "--key", key]
}

/// `hyco` with a clean environment: only `HYCO_CONFIG` and `HYCO_DATA_DIR` (inside `home`)
/// and `HOME`, so the developer's own profiles and variables never leak in.
pub fn hyco(home: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_hyco"));
    cmd.env_clear()
        .env("HOME", home)
        .env("HYCO_CONFIG", home.join("config.toml"))
        .env("HYCO_DATA_DIR", home.join("data"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Lines a child printed on one stream, as they arrive.
#[derive(Clone)]
pub struct Lines {
    lines: Arc<Mutex<Vec<String>>>,
    /// Bumped on every line; dropped (closed) at EOF.
    seen: watch::Receiver<usize>,
}

impl Lines {
    fn collect<R: AsyncRead + Unpin + Send + 'static>(stream: R) -> Self {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, seen) = watch::channel(0);
        let store = lines.clone();
        tokio::spawn(async move {
            let mut r = BufReader::new(stream).lines();
            while let Ok(Some(line)) = r.next_line().await {
                store.lock().expect("lines").push(line);
                tx.send_modify(|n| *n += 1);
            }
        });
        Self { lines, seen }
    }

    /// Everything so far, one line each.
    pub fn text(&self) -> String {
        self.lines.lock().expect("lines").join("\n")
    }

    /// Waits (up to `limit`) for a line matching `pred` and returns it. Panics with all the
    /// output if the stream ends or the time runs out first.
    pub async fn wait_for(&self, limit: Duration, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let mut seen = self.seen.clone();
        let found = tokio::time::timeout(limit, async {
            loop {
                if let Some(l) = self.lines.lock().expect("lines").iter().find(|l| pred(l)) {
                    return Some(l.clone());
                }
                if seen.changed().await.is_err() {
                    // Closed: one last look at what arrived before EOF.
                    return self.lines.lock().expect("lines").iter().find(|l| pred(l)).cloned();
                }
            }
        })
        .await;
        match found {
            Ok(Some(l)) => l,
            Ok(None) => panic!("output ended without {what}:\n{}", self.text()),
            Err(_) => panic!("no {what} within {limit:?}:\n{}", self.text()),
        }
    }

    /// Waits until the stream has ended (the child closed it or exited).
    pub async fn closed(&self) {
        let mut seen = self.seen.clone();
        while seen.changed().await.is_ok() {}
    }
}

/// A running `hyco` child; killed on drop.
pub struct Proc {
    pub child: tokio::process::Child,
    pub stdout: Lines,
    pub stderr: Lines,
}

impl Proc {
    pub fn spawn(mut cmd: tokio::process::Command) -> Self {
        let mut child = cmd.spawn().expect("spawn hyco");
        let stdout = Lines::collect(child.stdout.take().expect("piped stdout"));
        let stderr = Lines::collect(child.stderr.take().expect("piped stderr"));
        Self { child, stdout, stderr }
    }

    /// Sends `SIG{name}` to the running child through kill(1) (std offers only SIGKILL);
    /// whether kill(1) says it was delivered.
    pub fn signal(&self, name: &str) -> bool {
        let pid = self.child.id().expect("the child is running");
        std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .expect("kill")
            .success()
    }

    /// Asks the child to stop (SIGTERM, a graceful shutdown) and waits for it to exit and
    /// for its output to be read to the end.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        if self.child.id().is_some() {
            self.signal("TERM");
        }
        let status = within("hyco to exit after SIGTERM", self.child.wait()).await.expect("wait");
        within("hyco's output to end", async {
            self.stdout.closed().await;
            self.stderr.closed().await;
        })
        .await;
        status
    }

    /// Waits for the child to exit by itself, and for its output to end.
    pub async fn exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let status = match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(s) => s.expect("wait"),
            Err(_) => panic!(
                "hyco did not exit within {limit:?}\nstdout:\n{}\nstderr:\n{}",
                self.stdout.text(),
                self.stderr.text()
            ),
        };
        within("hyco's output to end", async {
            self.stdout.closed().await;
            self.stderr.closed().await;
        })
        .await;
        status
    }
}

/// Spawns `cmd`, a `hyco listen …`, and waits until its control channel is up (its
/// `listening` log line).
pub async fn spawn_listening(cmd: tokio::process::Command) -> Proc {
    let listen = Proc::spawn(cmd);
    listen
        .stderr
        .wait_for(PROC_STEP, "the listener's 'listening' log", |l| l.contains(" listening") && l.contains("hc="))
        .await;
    listen
}

/// The longest a step involving a child process (start-up, a session) may take.
pub const PROC_STEP: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------------------
// A real relay process, clients for its key, and process memory

/// The relay's address in `hyco serve`'s "… (bound to ADDR)" line, if `line` is that line.
pub fn bound_address(line: &str) -> Option<SocketAddr> {
    line.split_once("(bound to ").and_then(|(_, rest)| rest.trim_end_matches(')').parse().ok())
}

/// Waits for `hyco serve` running as `serve` to say where it is bound; that address.
pub async fn relay_address(serve: &Proc) -> SocketAddr {
    let line = serve.stdout.wait_for(PROC_STEP, "serve's bound address", |l| bound_address(l).is_some()).await;
    bound_address(&line).expect("an address")
}

/// `hyco serve --no-profile` running as a child, its bound address and the namespace key
/// it keeps in `HYCO_DATA_DIR` (so a restart in the same home keeps the key).
pub struct ServeProc {
    pub proc: Proc,
    pub addr: SocketAddr,
    pub key: String,
}

impl ServeProc {
    /// Starts `hyco serve --bind BIND` in `home`; `Err` with its output if it exits (a
    /// port still in use) before it says where it listens.
    pub async fn try_start(home: &Path, bind: &str) -> Result<Self, String> {
        let mut cmd = hyco(home);
        cmd.args(["serve", "--no-profile", "--bind", bind]);
        let mut proc = Proc::spawn(cmd);
        let started = std::time::Instant::now();
        let addr = loop {
            let bound = proc.stdout.text().lines().find_map(bound_address);
            if let Some(addr) = bound {
                break addr;
            }
            if let Ok(Some(status)) = proc.child.try_wait() {
                let _ = tokio::time::timeout(Duration::from_secs(2), proc.stderr.closed()).await;
                return Err(format!("hyco serve exited ({status}):\n{}", proc.stderr.text()));
            }
            assert!(started.elapsed() < PROC_STEP, "hyco serve did not start:\n{}", proc.stderr.text());
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let key = std::fs::read_to_string(home.join("data/namespace.key")).expect("the relay's key file");
        Ok(Self { proc, addr, key: key.trim().to_owned() })
    }

    /// Starts a relay on `127.0.0.1:0` in `home`.
    pub async fn start(home: &Path) -> Self {
        Self::try_start(home, "127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts a relay on a port that was just in use: retries while the bind fails.
    pub async fn restart_on(home: &Path, addr: SocketAddr) -> Self {
        let started = std::time::Instant::now();
        loop {
            match Self::try_start(home, &addr.to_string()).await {
                Ok(s) => return s,
                Err(e) if started.elapsed() < Duration::from_secs(5) && e.contains("cannot listen") => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("restarting the relay on {addr}: {e}"),
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.proc.child.id().expect("the relay is running")
    }

    /// A client of this relay with its namespace key.
    pub fn client(&self) -> RelayClient {
        key_client(self.addr, &self.key)
    }

    /// A token for `hc` signed with this relay's key, valid for an hour.
    pub fn token(&self, hc: &str) -> String {
        super::token_with(hc, KEY_NAME, &self.key, hyco::protocol::unix_now() + 3600)
    }
}

/// A client for the relay at `relay` with the namespace key `key`.
pub fn key_client(relay: SocketAddr, key: &str) -> RelayClient {
    let endpoint = Endpoint { secure: false, host: relay.ip().to_string(), port: relay.port() };
    let credential = Credential::Key { name: KEY_NAME.into(), key: Secret::new(key) };
    RelayClient::new(endpoint, credential, None).expect("relay client")
}

/// A `kB` field (`VmRSS`, `VmHWM`, …) of `/proc/{pid}/status`, in KiB.
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Raises this process's open-file limit as far as allowed and returns it: the load tests
/// hold thousands of sockets.
pub fn raise_fd_limit(need: u64) -> u64 {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let (soft, _) = rlimit::Resource::NOFILE.get().expect("RLIMIT_NOFILE");
    assert!(soft >= need, "RLIMIT_NOFILE is {soft}; this test needs {need}");
    soft
}

/// SHA-256 fast enough for gigabytes in a debug build: `ring`'s assembly through rustls
/// (the `sha2` crate unoptimized manages about 25 MiB/s).
pub struct FastSha256(Box<dyn rustls::crypto::hash::Context>);

impl FastSha256 {
    pub fn new() -> Self {
        let suite = rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256.tls13().expect("a TLS 1.3 suite");
        Self(suite.common.hash_provider.start())
    }

    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    pub fn finish(self) -> [u8; 32] {
        self.0.finish().as_ref().try_into().expect("32 bytes")
    }
}

impl Default for FastSha256 {
    fn default() -> Self {
        Self::new()
    }
}
