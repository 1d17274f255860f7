//! The real `hyco` binary (`CARGO_BIN_EXE_hyco`) end to end: `connect --stdio`, the
//! profile `serve` writes and `listen`/`connect` pick up with no relay flags, credential
//! precedence, and secrets kept out of every log. Each child gets its own temp
//! `HYCO_CONFIG`/`HYCO_DATA_DIR` and a cleared environment, and is killed on drop.

mod common;

use std::path::Path;
use std::process::Stdio;

use common::bridge::*;
use common::*;
use tokio::io::AsyncWriteExt;

/// `ws://127.0.0.1:PORT` from serve's "hyco relay listening on ws://…" line.
async fn serve_base(serve: &Proc) -> String {
    let line =
        serve.stdout.wait_for(PROC_STEP, "serve's listening line", |l| l.starts_with("hyco relay listening on ")).await;
    line.trim_start_matches("hyco relay listening on ").split_whitespace().next().expect("a URL").to_owned()
}

/// Starts `hyco serve --bind 127.0.0.1:0` in `home`; returns it with its `ws://` base once
/// it has written its profile.
async fn start_serve(home: &Path, extra: &[&str]) -> (Proc, String) {
    let mut cmd = hyco(home);
    cmd.args(["serve", "--bind", "127.0.0.1:0"]).args(extra);
    let serve = Proc::spawn(cmd);
    let base = serve_base(&serve).await;
    serve.stdout.wait_for(PROC_STEP, "serve's profile line", |l| l.starts_with("Profile 'local' written")).await;
    (serve, base)
}

/// Starts `hyco listen HC --to TARGET` in `home` and waits until its control channel is up.
async fn start_listen(home: &Path, hc: &str, target: &str, extra: &[&str]) -> Proc {
    let mut cmd = hyco(home);
    cmd.args(["listen", hc, "--to", target]).args(extra);
    spawn_listening(cmd).await
}

/// Starts `hyco connect HC --bind 127.0.0.1:0` in `home`; returns it with its local address.
async fn start_connect(home: &Path, hc: &str, extra: &[&str]) -> (Proc, std::net::SocketAddr) {
    let mut cmd = hyco(home);
    cmd.args(["connect", hc, "--bind", "127.0.0.1:0"]).args(extra);
    let connect = Proc::spawn(cmd);
    let line = connect.stderr.wait_for(PROC_STEP, "connect's bind line", |l| l.starts_with("hyco: 127.0.0.1:")).await;
    let addr = line.trim_start_matches("hyco: ").split_whitespace().next().expect("an address");
    (connect, addr.parse().expect("a socket address"))
}

/// Runs `hyco connect … --stdio` with `input` on stdin; returns it after it exits.
async fn run_stdio(mut cmd: tokio::process::Command, input: &[u8]) -> (Proc, std::process::ExitStatus) {
    cmd.stdin(Stdio::piped());
    let mut proc = Proc::spawn(cmd);
    let mut stdin = proc.child.stdin.take().expect("piped stdin");
    // A process that fails early (a missing profile, say) exits before reading its input.
    match within("writing stdin", stdin.write_all(input)).await {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => panic!("write stdin: {e}"),
        _ => {}
    }
    drop(stdin);
    let status = proc.exit(PROC_STEP).await;
    (proc, status)
}

fn report(p: &Proc) -> String {
    format!("stdout:\n{}\nstderr:\n{}", p.stdout.text(), p.stderr.text())
}

/// A round trip through `hyco connect --bind` at `addr`.
async fn echo_via(addr: std::net::SocketAddr, msg: &str) {
    let mut tcp = within("connect to hyco connect", tokio::net::TcpStream::connect(addr)).await.expect("connect");
    let got = within_for(PROC_STEP, "a round trip", round_trip(&mut tcp, msg.as_bytes())).await.expect("round trip");
    assert_eq!(String::from_utf8_lossy(&got), msg);
}

// ---------------------------------------------------------------------------------------
// connect --stdio

#[tokio::test]
async fn connect_stdio_bridges_stdin_and_stdout() {
    let home = TempDir::new("stdio");
    let relay = TestRelay::start(settings()).await;
    let target = Target::upper_after_eof().await;
    let _listening = Listening::start(client(relay.addr), listen_settings("hc", &[target.spec()])).await;

    let mut cmd = hyco(home.path());
    cmd.args(["connect", "hc", "--stdio"]).args(key_flags(&relay.base(), KEY));
    let (proc, status) = run_stdio(cmd, b"hello over stdio\nsecond line\n").await;
    assert!(status.success(), "exit {status}\n{}", report(&proc));
    assert_eq!(proc.stdout.text(), "HELLO OVER STDIO\nSECOND LINE", "{}", report(&proc));
}

#[tokio::test]
async fn connect_stdio_exits_non_zero_with_the_502_when_the_target_refuses() {
    let home = TempDir::new("stdio-refused");
    let relay = TestRelay::start(settings()).await;
    let dead = closed_port().await;
    let _listening = Listening::start(client(relay.addr), listen_settings("hc", &[dead.to_string()])).await;

    let mut cmd = hyco(home.path());
    cmd.args(["connect", "hc", "--stdio"]).args(key_flags(&relay.base(), KEY));
    let (proc, status) = run_stdio(cmd, b"anyone there?\n").await;
    assert_eq!(status.code(), Some(8), "a refused tunnel exits 8 (rejected)\n{}", report(&proc));
    let stderr = proc.stderr.text();
    assert!(stderr.contains("502") && stderr.contains("refused"), "{}", report(&proc));
    assert_eq!(proc.stdout.text(), "", "nothing on stdout");
}

#[tokio::test]
async fn connect_stdio_ends_cleanly_when_signalled_as_ssh_does_after_closing_its_pipes() {
    let home = TempDir::new("stdio-hup");
    let relay = TestRelay::start(settings()).await;
    let target = Target::upper_after_eof().await;
    let listening = Listening::start(client(relay.addr), listen_settings("hc", &[target.spec()])).await;

    let mut cmd = hyco(home.path());
    cmd.args(["connect", "hc", "--stdio"]).args(key_flags(&relay.base(), KEY));
    cmd.stdin(Stdio::piped());
    let mut proc = Proc::spawn(cmd);
    let mut stdin = proc.child.stdin.take().expect("piped stdin");
    within("writing stdin", stdin.write_all(b"bye\n")).await.expect("write stdin");
    within("the tunnel to open", async {
        while listening.stats.total.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
    // SIGHUP from ssh, then another as its terminal closes, then stdin's EOF: an orderly end.
    for _ in 0..2 {
        proc.signal("HUP");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    drop(stdin);
    let status = proc.exit(PROC_STEP).await;
    assert!(status.success(), "exit {status}\n{}", report(&proc));
    assert_eq!(proc.stdout.text(), "BYE");
    assert_eq!(proc.stderr.text(), "", "quiet by default");
    until_idle("the listener's tunnel to end", &listening.stats).await;
    assert_eq!(listening.stats.failed.load(std::sync::atomic::Ordering::Relaxed), 0, "a normal end for the listener");
}

// ---------------------------------------------------------------------------------------
// connect --bind: the startup check, waiting for a listener, logs, Ctrl-C

#[tokio::test]
async fn connect_bind_waits_for_a_listener_rejects_clients_meanwhile_and_says_when_one_comes() {
    let home = TempDir::new("bind-wait");
    let (_serve, _base) = start_serve(home.path(), &[]).await;
    let target = Target::echo().await;
    let (connect, addr) = start_connect(home.path(), "hc", &[]).await;
    connect
        .stderr
        .wait_for(PROC_STEP, "the waiting line", |l| {
            l.contains("INFO") && l.ends_with("waiting for a listener on 'hc': is hyco listen hc running?")
        })
        .await;

    // A client now is turned away at once, and the log says why.
    let mut early = within("connect to hyco connect", tokio::net::TcpStream::connect(addr)).await.expect("connect");
    let (n, _) = within("the early client's end", read_until_end(&mut early)).await;
    assert_eq!(n, 0);
    connect
        .stderr
        .wait_for(PROC_STEP, "the rejection's reason", |l| {
            l.contains("WARN") && l.contains("rejected: no listener on 'hc' yet; is hyco listen hc running?")
        })
        .await;

    let mut listen = start_listen(home.path(), "hc", &target.spec(), &[]).await;
    connect.stderr.wait_for(PROC_STEP, "the listener's arrival", |l| l.ends_with("a listener is online on 'hc'")).await;
    echo_via(addr, "now there is someone").await;
    // One line per finished tunnel, on both sides, at the default level.
    let line = connect.stderr.wait_for(PROC_STEP, "connect's tunnel line", |l| l.contains(" -> hc: out ")).await;
    assert!(line.contains("INFO") && line.contains("out 20 B, in 20 B, ") && line.ends_with("; closed"), "{line}");
    let line = listen.stderr.wait_for(PROC_STEP, "listen's tunnel line", |l| l.contains(" -> hc -> 127.0.0.1:")).await;
    assert!(line.contains("INFO") && line.contains("out 20 B, in 20 B, ") && line.ends_with("; closed"), "{line}");
    listen.terminate().await;
    assert!(
        listen.stderr.text().lines().any(|l| l.contains("stopped: 1 tunnels (0 failed), out 20 B, in 20 B, over ")),
        "a summary at exit:\n{}",
        listen.stderr.text()
    );
}

#[tokio::test]
async fn ctrl_c_lets_live_tunnels_finish_and_a_second_one_stops_at_once() {
    use tokio::io::AsyncReadExt;
    let home = TempDir::new("drain");
    let (_serve, _base) = start_serve(home.path(), &[]).await;
    let target = Target::echo().await;
    let mut listen = start_listen(home.path(), "hc", &target.spec(), &[]).await;
    let (mut connect, addr) = start_connect(home.path(), "hc", &[]).await;
    let mut tcp = within("connect", tokio::net::TcpStream::connect(addr)).await.expect("connect");
    let mut buf = [0; 4];
    tcp.write_all(b"ping").await.expect("write");
    within("the echo", tcp.read_exact(&mut buf)).await.expect("read");

    // First signal, to both: the live tunnel goes on; new connections are refused.
    listen.signal("INT");
    listen
        .stderr
        .wait_for(PROC_STEP, "listen's drain line", |l| l.contains("stopping: letting 1 live tunnel(s) finish"))
        .await;
    connect.signal("INT");
    connect
        .stderr
        .wait_for(PROC_STEP, "connect's drain line", |l| l.contains("stopping: letting 1 live tunnel(s) finish"))
        .await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "a stopping connector takes no new connections");
    tcp.write_all(b"pong").await.expect("write while draining");
    within("the echo while draining", tcp.read_exact(&mut buf)).await.expect("read while draining");
    assert_eq!(&buf, b"pong");
    tcp.shutdown().await.expect("shutdown");
    let (_, end) = within("the tunnel's end", read_until_end(&mut tcp)).await;
    assert!(end.is_ok(), "a clean end: {end:?}");
    for (name, proc) in [("connect", &mut connect), ("listen", &mut listen)] {
        let status = proc.exit(PROC_STEP).await;
        assert!(status.success(), "{name} exit {status}\n{}", report(proc));
        let stderr = proc.stderr.text();
        assert!(stderr.contains("; closed") && !stderr.contains("WARN"), "{name}:\n{stderr}");
    }

    // A second signal does not wait for the live tunnel.
    let mut listen = start_listen(home.path(), "hc", &target.spec(), &[]).await;
    let (mut connect, addr) = start_connect(home.path(), "hc", &[]).await;
    let mut tcp = within("connect", tokio::net::TcpStream::connect(addr)).await.expect("connect");
    tcp.write_all(b"ping").await.expect("write");
    within("the echo", tcp.read_exact(&mut buf)).await.expect("read");
    connect.signal("INT");
    connect
        .stderr
        .wait_for(PROC_STEP, "connect's drain line", |l| l.contains("stopping: letting 1 live tunnel(s)"))
        .await;
    connect.signal("INT");
    let status = connect.exit(std::time::Duration::from_secs(3)).await;
    assert_eq!(status.code(), Some(130), "{}", report(&connect));
    listen.terminate().await;
}

#[tokio::test]
async fn listen_with_wait_for_relay_rides_out_a_relay_not_up_yet() {
    let home = TempDir::new("wait-for-relay");
    // A relay's address and key, then no relay there: the network at boot.
    let mut serve = ServeProc::start(home.path()).await;
    let (addr, key) = (serve.addr, serve.key.clone());
    serve.proc.child.start_kill().expect("SIGKILL the relay");
    within("the relay to die", serve.proc.child.wait()).await.expect("wait");

    let target = Target::echo().await;
    let endpoint = format!("ws://{addr}");
    let mut cmd = hyco(home.path());
    cmd.args(["listen", "hc", "--to", &target.spec(), "--wait-for-relay"]);
    cmd.args(key_flags(&endpoint, &key));
    let mut listen = Proc::spawn(cmd);
    listen.stderr.wait_for(PROC_STEP, "a retry", |l| l.contains("reconnecting in")).await;
    assert!(listen.child.try_wait().expect("try_wait").is_none(), "still running\n{}", report(&listen));
    let _serve = ServeProc::restart_on(home.path(), addr).await;
    listen.stderr.wait_for(PROC_STEP, "the listener online", |l| l.contains(" listening") && l.contains("hc=")).await;
}

/// `hyco ARGS` under a pseudo-terminal (`script`), as a person sees it; killed on drop.
struct Terminal {
    _child: tokio::process::Child,
    /// Everything written to the terminal so far, status line redraws included.
    screen: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Terminal {
    fn start(home: &Path, args: &str) -> Self {
        use tokio::io::AsyncReadExt;
        let mut cmd = tokio::process::Command::new("script");
        cmd.args(["-q", "-c", &format!("{} {args}", env!("CARGO_BIN_EXE_hyco")), "/dev/null"]);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", home)
            .env("TERM", "xterm")
            .env("HYCO_CONFIG", home.join("config.toml"))
            .env("HYCO_DATA_DIR", home.join("data"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("script");
        let mut out = child.stdout.take().expect("piped stdout");
        let screen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let keep = screen.clone();
        tokio::spawn(async move {
            let mut buf = [0; 4096];
            while let Ok(n @ 1..) = out.read(&mut buf).await {
                keep.lock().expect("screen").extend_from_slice(&buf[..n]);
            }
        });
        Self { _child: child, screen }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().expect("screen")).into_owned()
    }

    async fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let found = tokio::time::timeout(PROC_STEP, async {
            while !pred(&self.text()) {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        })
        .await;
        let text = self.text();
        assert!(found.is_ok(), "no {what} within {PROC_STEP:?}:\n{text}");
        text
    }
}

#[tokio::test]
async fn the_status_lines_say_what_they_mean_and_draw_below_what_was_printed_first() {
    if std::process::Command::new("script").arg("--version").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "script (util-linux) is missing");
        return eprintln!("skipped: script (util-linux) is missing");
    }
    let home = TempDir::new("status-line");
    let (_serve, _base) = start_serve(home.path(), &[]).await;
    let connect = Terminal::start(home.path(), "connect hc/web --bind 127.0.0.1:0");
    let screen = connect
        .wait_for("the status line while waiting", |t| {
            t.contains("waiting for a listener on 'hc' | 0 active / 0 total tunnels, 0 failed | out 0 B")
        })
        .await;
    let banner = screen.find("hyco: 127.0.0.1:").unwrap_or_else(|| panic!("no banner:\n{screen}"));
    assert!(
        !screen[..banner].chars().any(|c| ('\u{2800}'..='\u{28ff}').contains(&c)),
        "a spinner glyph above the banner:\n{screen}"
    );
    let banner_line = screen[banner..].lines().next().unwrap();
    assert!(banner_line.trim_end().ends_with(" -> hc/web"), "{banner_line:?}");
    assert!(screen[..banner].contains(" for hc/web"), "the log line names the same:\n{screen}");

    let target = Target::echo().await;
    let listen = Terminal::start(home.path(), &format!("listen hc --to web={}", target.spec()));
    listen.wait_for("the listener's status line", |t| t.contains("1 control channel to the relay | 0 active")).await;
    connect.wait_for("the listener's arrival", |t| t.contains("a listener is online on 'hc'")).await;
}

// ---------------------------------------------------------------------------------------
// Profiles

#[tokio::test]
async fn serve_writes_a_private_profile_that_listen_and_connect_use() {
    use std::os::unix::fs::PermissionsExt;
    let home = TempDir::new("profile");
    let (_serve, base) = start_serve(home.path(), &[]).await;
    assert!(base.starts_with("ws://127.0.0.1:"), "{base}");

    let profile = home.path().join("config.toml");
    let mode = std::fs::metadata(&profile).expect("the profile file").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "profile file mode {mode:o}");
    let text = std::fs::read_to_string(&profile).expect("read the profile");
    assert!(text.contains(&base), "the profile names the relay:\n{text}");

    // No relay flags at all: both find the relay through the default profile.
    let target = Target::echo().await;
    let _listen = start_listen(home.path(), "hc", &target.spec(), &[]).await;
    let (_connect, addr) = start_connect(home.path(), "hc", &[]).await;
    echo_via(addr, "through the local profile").await;
}

#[tokio::test]
async fn profile_flag_beats_the_environment_and_a_missing_profile_is_named() {
    let home = TempDir::new("precedence");
    let (_serve, _base) = start_serve(home.path(), &[]).await;
    let target = Target::upper_after_eof().await;
    let _listen = start_listen(home.path(), "hc", &target.spec(), &[]).await;
    let dead = closed_port().await;
    let bogus =
        format!("Endpoint=sb://{dead}/;SharedAccessKeyName=bogus;SharedAccessKey=bogus;UseDevelopmentEmulator=true");

    // The bogus variable is in force without --profile (it beats the default profile)...
    let mut cmd = hyco(home.path());
    cmd.env("HYCO_CONNECTION_STRING", &bogus).args(["connect", "hc", "--stdio"]);
    let (proc, status) = run_stdio(cmd, b"x").await;
    assert!(!status.success(), "{}", report(&proc));
    assert!(proc.stderr.text().contains(&dead.to_string()), "the variable's relay was tried\n{}", report(&proc));

    // ...and ignored with --profile.
    let mut cmd = hyco(home.path());
    cmd.env("HYCO_CONNECTION_STRING", &bogus).args(["connect", "hc", "--stdio", "--profile", "local"]);
    let (proc, status) = run_stdio(cmd, b"profile wins\n").await;
    assert!(status.success(), "exit {status}\n{}", report(&proc));
    assert_eq!(proc.stdout.text(), "PROFILE WINS");

    // HYCO_PROFILE naming a profile that does not exist.
    let mut cmd = hyco(home.path());
    cmd.env("HYCO_PROFILE", "missing").args(["connect", "hc", "--stdio"]);
    let (proc, status) = run_stdio(cmd, b"").await;
    assert!(!status.success(), "{}", report(&proc));
    let stderr = proc.stderr.text();
    assert!(
        stderr.contains("HYCO_PROFILE") && stderr.contains("no profile named 'missing'") && stderr.contains("local"),
        "{}",
        report(&proc)
    );
}

// ---------------------------------------------------------------------------------------
// Secrets

#[tokio::test]
async fn keys_and_signatures_stay_out_of_the_logs() {
    let home = TempDir::new("secrets");
    let loud = |mut cmd: tokio::process::Command| {
        // Trace everywhere, the WebSocket library's modules named too (a directive more
        // specific than any cap written as a directive).
        cmd.env("RUST_LOG", "trace,tungstenite=trace,tungstenite::protocol=trace").arg("-vv");
        cmd
    };
    let mut cmd = loud(hyco(home.path()));
    cmd.args(["serve", "--bind", "127.0.0.1:0"]);
    let mut serve = Proc::spawn(cmd);
    serve_base(&serve).await;
    serve.stdout.wait_for(PROC_STEP, "serve's profile line", |l| l.starts_with("Profile 'local' written")).await;
    let key = std::fs::read_to_string(home.path().join("data/namespace.key")).expect("the namespace key");
    let key = key.trim().to_owned();
    assert!(serve.stdout.text().contains(&key), "serve prints the key for the user (so this test can see it)");

    let target = Target::echo().await;
    let mut cmd = loud(hyco(home.path()));
    cmd.args(["listen", "hc", "--to", &target.spec()]);
    let mut listen = Proc::spawn(cmd);
    listen.stderr.wait_for(PROC_STEP, "'listening'", |l| l.contains(" listening") && l.contains("hc=")).await;
    let mut cmd = loud(hyco(home.path()));
    cmd.args(["connect", "hc", "--bind", "127.0.0.1:0"]);
    let mut connect = Proc::spawn(cmd);
    let line = connect.stderr.wait_for(PROC_STEP, "connect's bind line", |l| l.starts_with("hyco: 127.0.0.1:")).await;
    let addr = line.trim_start_matches("hyco: ").split_whitespace().next().expect("an address").parse().expect("addr");
    echo_via(addr, "a full session").await;
    echo_via(addr, "and another").await;

    connect.terminate().await;
    listen.terminate().await;
    serve.terminate().await;

    let encoded_key = hyco::encoding::encode_component(&key);
    let logs = [
        ("serve stderr", serve.stderr.text()),
        ("listen stdout", listen.stdout.text()),
        ("listen stderr", listen.stderr.text()),
        ("connect stdout", connect.stdout.text()),
        ("connect stderr", connect.stderr.text()),
    ];
    for (name, text) in &logs {
        if std::env::var_os("HYCO_TEST_SHOW_LOGS").is_some() {
            eprintln!("==== {name}\n{text}");
        }
        // An accept address carries its rendezvous secret.
        for secret in
            [key.as_str(), encoded_key.as_str(), "sig=", "sig%3D", "SharedAccessSignature", "sb-hc-action=accept"]
        {
            // Frame payloads reach trace logs as hex, so look for that form too.
            let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
            for form in [secret, hex.as_str()] {
                if let Some(line) = text.lines().find(|l| l.contains(form)) {
                    panic!("{name} shows {secret:?} (as {form:?}):\n{line}");
                }
            }
        }
    }
    // The logs were loud enough to have leaked: trace output from each role, tunnels included.
    for (name, text) in &logs[..] {
        if name.ends_with("stderr") {
            assert!(text.contains("TRACE") || text.contains("DEBUG"), "{name} has no debug output:\n{text}");
        }
    }
    assert!(logs[4].1.contains("tunnel open"), "connect logged its tunnels:\n{}", logs[4].1);
}

// ---------------------------------------------------------------------------------------
// First contact: a second relay, a configured relay's credentials, HTTP mode's URL

#[tokio::test]
async fn a_second_relay_leaves_the_local_profile_alone_and_says_so() {
    let home = TempDir::new("second-serve");
    let (serve, base) = start_serve(home.path(), &[]).await;
    let out = serve.stdout.text();
    assert!(out.contains("only this machine can reach this relay") && out.contains("--bind 0.0.0.0:"), "{out}");
    assert!(!out.contains("On another machine"), "a loopback relay is not for other machines:\n{out}");
    let profile = home.path().join("config.toml");
    let before = std::fs::read_to_string(&profile).unwrap();

    let mut cmd = hyco(home.path());
    cmd.args(["serve", "--bind", "127.0.0.1:0", "--public-host", "relay.example.net", "--tls-self-signed"]);
    let second = Proc::spawn(cmd);
    let line = second.stdout.wait_for(PROC_STEP, "the profile line", |l| l.starts_with("Profile 'local'")).await;
    assert!(
        line.contains("points at another relay") && line.contains(&base) && line.contains("--profile-name"),
        "{line}"
    );
    assert_eq!(std::fs::read_to_string(&profile).unwrap(), before, "the first relay's profile is untouched");

    // With a name of its own it writes one, for its bound address and its pin.
    let mut cmd = hyco(home.path());
    cmd.args(["serve", "--bind", "127.0.0.1:0", "--public-host", "relay.example.net", "--tls-self-signed"]);
    cmd.args(["--profile-name", "tls"]);
    let third = Proc::spawn(cmd);
    let line = third.stdout.wait_for(PROC_STEP, "the profile line", |l| l.starts_with("Profile 'tls'")).await;
    assert!(line.contains("wss://127.0.0.1:") && line.contains("--profile tls"), "{line}");
    let text = std::fs::read_to_string(&profile).unwrap();
    assert!(text.contains("default = \"local\"") && text.contains("[profiles.tls]"), "{text}");
    let target = Target::echo().await;
    let _listen = start_listen(home.path(), "hc", &target.spec(), &["--profile", "tls"]).await;
    drop((serve, second));
}

#[tokio::test]
async fn a_configured_relay_takes_tokens_minted_with_rights_and_its_401_says_how() {
    let home = TempDir::new("configured");
    // As the README has it: a key file, then the configuration.
    let key =
        std::process::Command::new("sh").args(["-c", "head -c 32 /dev/urandom | base64"]).output().expect("sh").stdout;
    std::fs::write(home.path().join("root.key"), &key).unwrap();
    let config = home.path().join("relay.toml");
    std::fs::write(
        &config,
        "[[rules]]\nname = \"RootManageSharedAccessKey\"\nkey_file = \"root.key\"\nrights = [\"Manage\"]\n\n\
         [[hybrid_connections]]\nname = \"web\"\n",
    )
    .unwrap();
    let mut cmd = hyco(home.path());
    cmd.args(["serve", "--bind", "127.0.0.1:0", "--config"]).arg(&config);
    let serve = Proc::spawn(cmd);
    let base = serve_base(&serve).await;
    serve.stdout.wait_for(PROC_STEP, "serve's profile line", |l| l.starts_with("Profile 'local' written")).await;
    assert!(serve.stdout.text().contains("hyco token HC --rights listen"), "{}", serve.stdout.text());

    // A Listen token for the app's machine, a Send token for a caller.
    let mut cmd = hyco(home.path());
    cmd.args(["token", "web", "--rights", "listen", "--ttl", "1h", "--as-connection-string"]);
    let out = within_for(PROC_STEP, "token", cmd.output()).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listen_cs = String::from_utf8(out.stdout).unwrap();
    let app = TempDir::new("configured-app");
    let target = Target::echo().await;
    let mut cmd = hyco(app.path());
    cmd.env("HYCO_CONNECTION_STRING", listen_cs.trim()).args(["listen", "web", "--http", "--to", &target.spec()]);
    let listen = Proc::spawn(cmd);
    let port = base.rsplit(':').next().unwrap();
    let url = format!("http://127.0.0.1:{port}/web/");
    listen.stderr.wait_for(PROC_STEP, "the public URL", |l| l.contains(&format!("HTTP requests to {url}"))).await;
    listen.stderr.wait_for(PROC_STEP, "the listener", |l| l.contains(" listening") && l.contains("hc=")).await;

    let mut cmd = hyco(home.path());
    cmd.args(["token", "web", "--rights", "send", "--ttl", "1h", "--as-connection-string"]);
    let out = within_for(PROC_STEP, "token", cmd.output()).await.unwrap();
    let send_cs = String::from_utf8(out.stdout).unwrap();
    let caller = TempDir::new("configured-caller");
    let mut cmd = hyco(caller.path());
    cmd.env("HYCO_CONNECTION_STRING", send_cs.trim()).args(["connect", "web", "--stdio"]);
    let (proc, status) = run_stdio(cmd, b"sent with a derived token").await;
    assert!(status.success(), "the relay accepts the hyco-send token\n{}", report(&proc));
    assert_eq!(proc.stdout.text(), "sent with a derived token");

    // A plain HTTP caller without a token learns how to present one.
    use tokio::io::AsyncReadExt;
    let mut tcp = tokio::net::TcpStream::connect(format!("127.0.0.1:{port}")).await.unwrap();
    tcp.write_all(b"GET /web/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    within("the 401", tcp.read_to_string(&mut answer)).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(answer.contains("ServiceBusAuthorization") && answer.contains("hyco token HC --rights send"), "{answer}");
}
