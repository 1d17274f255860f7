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
    let listen = Proc::spawn(cmd);
    listen
        .stderr
        .wait_for(PROC_STEP, "the listener's 'listening' log", |l| l.contains(" listening") && l.contains("hc="))
        .await;
    listen
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
    cmd.args(["connect", "hc", "--stdio", "--endpoint", &relay.base(), "--key-name", KEY_NAME, "--key", KEY]);
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
    cmd.args(["connect", "hc", "--stdio", "--endpoint", &relay.base(), "--key-name", KEY_NAME, "--key", KEY]);
    let (proc, status) = run_stdio(cmd, b"anyone there?\n").await;
    assert_eq!(status.code(), Some(8), "a refused tunnel exits 8 (rejected)\n{}", report(&proc));
    let stderr = proc.stderr.text();
    assert!(stderr.contains("502") && stderr.contains("refused"), "{}", report(&proc));
    assert_eq!(proc.stdout.text(), "", "nothing on stdout");
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
