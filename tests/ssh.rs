//! A real `ssh` through `hyco connect --stdio` (its ProxyCommand) to a real `sshd` on
//! loopback, all under a pseudo-terminal (`script`), as a person runs it: the screen shows
//! the session and nothing of hyco's, a normal logout is a normal end in every log, and
//! a broken tunnel shows as an error.
//!
//! Needs `sshd`, `ssh` and `script` (Debian: openssh-server, openssh-client, util-linux)
//! and root (sshd's privilege separation). Without them the tests are skipped with a
//! note, or fail if `HYCO_REQUIRE_SSH=1` (CI sets it).

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::bridge::*;
use tokio::io::AsyncWriteExt;

const SSHD: &str = "/usr/sbin/sshd";

/// Why these tests cannot run here, if they cannot.
fn missing() -> Option<String> {
    let have = |tool: &str| {
        std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !Path::new(SSHD).exists() {
        return Some(format!("{SSHD} is missing (apt-get install openssh-server)"));
    }
    for tool in ["ssh", "ssh-keygen", "script"] {
        if !have(tool) {
            return Some(format!("{tool} is missing"));
        }
    }
    let uid = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    if uid.ok().as_deref() != Some("0") {
        return Some("sshd needs root here".into());
    }
    None
}

/// Whether to run: `false` (with a note) when a tool is missing, a failure when CI asks
/// for these tests.
fn can_run() -> bool {
    match missing() {
        None => true,
        Some(why) if std::env::var("HYCO_REQUIRE_SSH").as_deref() == Ok("1") => panic!("HYCO_REQUIRE_SSH=1 but {why}"),
        Some(why) => {
            eprintln!("skipped: {why}");
            false
        }
    }
}

/// An `sshd` on a loopback port with its own host key, config and authorized key in
/// `dir`; killed on drop.
struct Sshd {
    _proc: Proc,
    port: u16,
    /// The client's private key.
    identity: PathBuf,
}

impl Sshd {
    async fn start(dir: &Path) -> Self {
        let keygen = |path: &Path| {
            let status = std::process::Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(path)
                .stdout(Stdio::null())
                .status()
                .expect("ssh-keygen");
            assert!(status.success(), "ssh-keygen {}", path.display());
        };
        let (host_key, identity) = (dir.join("host_key"), dir.join("id"));
        keygen(&host_key);
        keygen(&identity);
        std::fs::copy(dir.join("id.pub"), dir.join("authorized_keys")).expect("authorized_keys");
        // sshd's privilege separation directory (Debian's package makes it at boot).
        std::fs::create_dir_all("/run/sshd").expect("/run/sshd");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "ListenAddress 127.0.0.1:{port}\nHostKey {}\nAuthorizedKeysFile {}\nPidFile none\n\
                 PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPrintMotd no\nPrintLastLog no\nLogLevel VERBOSE\n",
                host_key.display(),
                dir.join("authorized_keys").display()
            ),
        )
        .expect("sshd_config");
        let mut cmd = tokio::process::Command::new(SSHD);
        cmd.arg("-D").arg("-e").arg("-f").arg(&config);
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        let proc = Proc::spawn(cmd);
        proc.stderr.wait_for(PROC_STEP, "sshd listening", |l| l.contains("Server listening")).await;
        Self { _proc: proc, port, identity }
    }
}

/// A relay (`hyco serve`, which writes the `local` profile) and a listener for `box`
/// bridging to `sshd`, both the real binary in `home`.
async fn relay_and_listener(home: &Path, sshd: &Sshd) -> (Proc, Proc) {
    let mut cmd = hyco(home);
    cmd.args(["serve", "--bind", "127.0.0.1:0"]);
    let serve = Proc::spawn(cmd);
    serve.stdout.wait_for(PROC_STEP, "serve's profile line", |l| l.starts_with("Profile 'local' written")).await;
    let mut cmd = hyco(home);
    cmd.args(["listen", "box", "--to", &format!("127.0.0.1:{}", sshd.port)]);
    let listen = Proc::spawn(cmd);
    listen.stderr.wait_for(PROC_STEP, "the listener online", |l| l.contains(" listening")).await;
    (serve, listen)
}

/// `ssh -tt … root@box REMOTE` with `hyco connect box --stdio` as its ProxyCommand, under
/// a pseudo-terminal (`script`): its stdout is the screen. Stdin is piped, for typing.
fn ssh_under_pty(home: &Path, sshd: &Sshd, remote: &str) -> Proc {
    let proxy = format!("{} connect box --stdio", env!("CARGO_BIN_EXE_hyco"));
    let ssh = format!(
        "ssh -F /dev/null -tt -i '{}' -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=no \
         -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o 'ProxyCommand={proxy}' root@box {remote}",
        sshd.identity.display()
    );
    let mut cmd = tokio::process::Command::new("script");
    cmd.args(["-q", "-e", "-c", &ssh, "/dev/null"]);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("TERM", "dumb")
        .env("HYCO_CONFIG", home.join("config.toml"))
        .env("HYCO_DATA_DIR", home.join("data"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    Proc::spawn(cmd)
}

fn report(what: &[(&str, &Proc)]) -> String {
    what.iter()
        .map(|(name, p)| format!("==== {name} stdout\n{}\n==== {name} stderr\n{}\n", p.stdout.text(), p.stderr.text()))
        .collect()
}

/// Log levels and hyco's status line: none of it may reach ssh's screen or (above INFO)
/// a log of a session that ended normally.
fn noise(text: &str) -> Option<&str> {
    text.lines().find(|l| {
        l.contains("INFO")
            || l.contains("WARN")
            || l.contains("ERROR")
            || l.contains("tunnels")
            || l.contains("hyco")
            || l.chars().any(|c| ('\u{2800}'..='\u{28ff}').contains(&c))
    })
}

#[tokio::test]
async fn an_ssh_session_and_its_logout_are_clean_on_screen_and_in_every_log() {
    if !can_run() {
        return;
    }
    let home = TempDir::new("ssh-session");
    let sshd = Sshd::start(home.path()).await;
    let (mut serve, mut listen) = relay_and_listener(home.path(), &sshd).await;

    let mut session = ssh_under_pty(home.path(), &sshd, "");
    let mut keys = session.child.stdin.take().expect("piped stdin");
    // Typed ahead: the remote terminal holds it until the shell reads it.
    keys.write_all(b"echo mark-$((6*7))\n").await.expect("type");
    session.stdout.wait_for(PROC_STEP, "the command's output", |l| l.contains("mark-42") && !l.contains("$((")).await;
    keys.write_all(b"exit\n").await.expect("type");
    let status = session.exit(PROC_STEP).await;
    drop(keys);
    let screen = session.stdout.text();
    assert!(status.success(), "ssh exit {status}\n{}", report(&[("ssh", &session), ("listen", &listen)]));
    assert!(screen.contains("logout"), "a normal logout:\n{screen}");
    if let Some(line) = noise(&screen) {
        panic!("hyco drew on ssh's screen: {line:?}\n==== screen\n{screen}");
    }

    // The listener says the tunnel closed, normally, and nothing else happened anywhere.
    let closed = listen.stderr.wait_for(PROC_STEP, "the tunnel's line", |l| l.contains(" -> box -> 127.0.0.1:")).await;
    assert!(closed.contains("INFO") && closed.ends_with("; closed"), "{closed}");
    assert!(closed.contains("out ") && closed.contains(", in "), "bytes each way: {closed}");
    listen.terminate().await;
    serve.terminate().await;
    for (name, proc) in [("listen", &listen), ("serve", &serve)] {
        if let Some(line) = proc.stderr.text().lines().find(|l| l.contains("WARN") || l.contains("ERROR")) {
            panic!("{name} logged {line:?} for a normal logout\n{}", report(&[(name, proc)]));
        }
    }
}

#[tokio::test]
async fn a_tunnel_that_breaks_under_ssh_is_an_error_on_its_screen() {
    if !can_run() {
        return;
    }
    let home = TempDir::new("ssh-broken");
    let sshd = Sshd::start(home.path()).await;
    let (_serve, mut listen) = relay_and_listener(home.path(), &sshd).await;

    let mut session = ssh_under_pty(home.path(), &sshd, "'echo ready; sleep 60'");
    session.stdout.wait_for(PROC_STEP, "the remote command running", |l| l.contains("ready")).await;
    listen.child.start_kill().expect("SIGKILL the listener");
    let status = session.exit(PROC_STEP).await;
    assert!(!status.success(), "ssh exit {status}");
    let screen = session.stdout.text();
    assert!(
        screen.lines().any(|l| l.starts_with("hyco: tunnel aborted: ") && l.contains("1011")),
        "the connector says the tunnel broke:\n{screen}"
    );
}
