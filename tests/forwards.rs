//! Many forwards in one process, with the real binary: `hyco connect -L` given several
//! times (each forward reaching its own target; a taken port stops the command at start,
//! exit 7), and `hyco up` running a file's listeners and connectors together, where one
//! failing entry (its port taken, its profile missing) is said and retried while the
//! others serve, and comes up once its port is free.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use common::bridge::*;
use common::{KEY_NAME, within};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;

/// Writes a profile `relay` (the default) for `serve` into `home`'s config, through the CLI.
async fn add_profile(home: &Path, serve: &ServeProc) {
    let key_file = home.join("relay.key");
    std::fs::write(&key_file, &serve.key).unwrap();
    let endpoint = format!("ws://{}", serve.addr);
    let out = hyco(home)
        .args(["profile", "add", "relay", "--endpoint", &endpoint, "--key-name", KEY_NAME, "--key-file"])
        .arg(&key_file)
        .arg("--default")
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "profile add: {}", String::from_utf8_lossy(&out.stderr));
}

/// The local address a connector printed for `label` (`hyco: ADDR -> LABEL`).
async fn bound_for(proc: &Proc, label: &str) -> SocketAddr {
    let suffix = format!(" -> {label}");
    let line = proc.stderr.wait_for(PROC_STEP, label, |l| l.starts_with("hyco: ") && l.ends_with(&suffix)).await;
    line["hyco: ".len()..line.len() - suffix.len()].parse().expect("an address")
}

/// Connects to `addr` and reads the greeter's first line.
async fn greeting(addr: SocketAddr) -> String {
    let tcp = TcpStream::connect(addr).await.expect("connect to the forward");
    let mut lines = BufReader::new(tcp).lines();
    let line = tokio::time::timeout(PROC_STEP, lines.next_line()).await.expect("a greeting in time");
    line.expect("read").expect("a line")
}

/// Writes `text` as `up.toml` in `home`; its path.
fn up_file(home: &Path, text: &str) -> PathBuf {
    let file = home.join("up.toml");
    std::fs::write(&file, text).unwrap();
    file
}

/// `hyco up FILE` in `home`.
fn spawn_up(home: &Path, file: &Path) -> Proc {
    let mut cmd = hyco(home);
    cmd.arg("up").arg(file);
    Proc::spawn(cmd)
}

/// Starts `hyco listen box` on the profile with the named `targets`; waits until it listens.
async fn listen(home: &Path, targets: &[String]) -> Proc {
    let mut cmd = hyco(home);
    cmd.args(["listen", "box"]);
    for t in targets {
        cmd.args(["--to", t]);
    }
    spawn_listening(cmd).await
}

#[tokio::test]
async fn connect_takes_l_many_times_and_each_forward_reaches_its_target() {
    let home = TempDir::new("fwd-l");
    let serve = ServeProc::start(home.path()).await;
    add_profile(home.path(), &serve).await;
    let (a, b) = (Target::greeter("alpha").await, Target::greeter("beta").await);
    let _listen = listen(home.path(), &[format!("a={}", a.spec()), format!("b={}", b.spec())]).await;

    let mut cmd = hyco(home.path());
    cmd.args(["connect", "box", "-L", "0:a", "--forward", "127.0.0.1:0:b"]);
    let mut connect = Proc::spawn(cmd);
    let (to_a, to_b) = (bound_for(&connect, "box/a").await, bound_for(&connect, "box/b").await);
    assert_ne!(to_a, to_b);
    for _ in 0..3 {
        assert_eq!(greeting(to_a).await, "alpha");
        assert_eq!(greeting(to_b).await, "beta");
    }
    // Without an HC argument, each REMOTE names its own.
    let mut cmd = hyco(home.path());
    cmd.args(["connect", "-L", "0:box/b"]);
    let mut second = Proc::spawn(cmd);
    assert_eq!(greeting(bound_for(&second, "box/b").await).await, "beta");
    assert!(second.terminate().await.success());

    assert!(connect.terminate().await.success());
    let err = connect.stderr.text();
    assert!(err.contains("all forwards stopped: 6 tunnels (0 failed)"), "{err}");

    // One taken port: nothing starts, exit 7 naming the flag.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let spec = format!("{}:b", taken.local_addr().unwrap());
    let out = hyco(home.path()).args(["connect", "box", "-L", "0:a", "-L", &spec]).output().await.unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "{err}");
    assert!(err.contains("cannot listen on") && err.contains("-L"), "{err}");
    assert!(!err.contains("-> box/a"), "nothing was announced: {err}");
    // A REMOTE that is not a target name of the HC given: a configuration error.
    let out = hyco(home.path()).args(["connect", "box/a", "-L", "0:b"]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn up_runs_every_entry_and_a_failing_one_leaves_the_others_serving() {
    let home = TempDir::new("fwd-up");
    let serve = ServeProc::start(home.path()).await;
    add_profile(home.path(), &serve).await;
    let (a, b) = (Target::greeter("alpha").await, Target::greeter("beta").await);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap();
    let file = up_file(
        home.path(),
        &format!(
            r#"
profile = "relay"

[[listen]]
hc = "box"
to = ["a={a}", "b={b}"]

[[listen]]
name = "elsewhere"
hc = "other"
to = ["9"]
profile = "missing"

[[connect]]
hc = "box"
forward = ["127.0.0.1:0:a"]

[[connect]]
name = "late"
hc = "box/b"
bind = "{taken_addr}"
"#,
            a = a.spec(),
            b = b.spec()
        ),
    );

    let out = hyco(home.path()).args(["up", "--check"]).arg(&file).output().await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("listen box: hyco listen box --to a="), "{text}");
    assert!(text.contains(&format!("late: hyco connect box/b --bind {taken_addr} --profile relay")), "{text}");

    let mut up = spawn_up(home.path(), &file);
    let to_a = bound_for(&up, "box/a").await;
    assert_eq!(greeting(to_a).await, "alpha");
    // The failing entries are said, and retried.
    up.stderr.wait_for(PROC_STEP, "the taken port said", |l| l.contains("late: cannot listen on")).await;
    up.stderr
        .wait_for(PROC_STEP, "the missing profile said", |l| l.contains("elsewhere: ") && l.contains("missing"))
        .await;
    assert_eq!(greeting(to_a).await, "alpha", "the others go on");
    // Its port freed, the late entry comes up by itself.
    drop(taken);
    let late = bound_for(&up, "box/b").await;
    assert_eq!(late, taken_addr);
    assert_eq!(greeting(late).await, "beta");
    assert!(up.terminate().await.success());
    let err = up.stderr.text();
    assert!(err.contains("stopped: 3 tunnels"), "{err}");

    // A broken file: exit 3, naming the entry and the key.
    std::fs::write(&file, "[[listen]]\nhc = \"box\"\nto = [\"22\"]\ntoo = 1\n").unwrap();
    let out = hyco(home.path()).arg("up").arg(&file).output().await.unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("[[listen]] #1") && err.contains("'too'"), "{err}");
    let out = hyco(home.path()).args(["up", "/nonexistent/up.toml"]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(3));
}

/// `hyco up` reloads its file on SIGHUP: an unchanged entry keeps running (a connection
/// through it stays open), a removed one stops (its port is freed), a new one starts, and
/// a file with a mistake changes nothing.
#[tokio::test]
async fn up_reloads_its_file_on_sighup_and_keeps_what_did_not_change() {
    let home = TempDir::new("fwd-reload");
    let serve = ServeProc::start(home.path()).await;
    add_profile(home.path(), &serve).await;
    let (a, b) = (Target::greeter("alpha").await, Target::greeter("beta").await);
    let listen =
        format!("profile = \"relay\"\n[[listen]]\nhc = \"box\"\nto = [\"a={}\", \"b={}\"]\n", a.spec(), b.spec());
    let keep = "[[connect]]\nname = \"keep\"\nhc = \"box\"\nforward = [\"127.0.0.1:0:a\"]\n";
    let old_entry = "[[connect]]\nname = \"old\"\nhc = \"box/b\"\nbind = \"127.0.0.1:0\"\n";
    let file = up_file(home.path(), &format!("{listen}{keep}{old_entry}"));
    let mut up = spawn_up(home.path(), &file);
    let to_a = bound_for(&up, "box/a").await;
    let old = bound_for(&up, "box/b").await;
    assert_eq!(greeting(old).await, "beta");
    // A connection through the entry that stays, open across the reload.
    let held = TcpStream::connect(to_a).await.expect("connect");
    let mut held = BufReader::new(held);
    let mut line = String::new();
    within("the greeting", held.read_line(&mut line)).await.expect("read");
    assert_eq!(line, "alpha\n");

    // "old" removed, "new" added, the rest unchanged.
    std::fs::write(
        &file,
        format!("{listen}{keep}[[connect]]\nname = \"new\"\nhc = \"box/b\"\nbind = \"127.0.0.1:0\"\n"),
    )
    .unwrap();
    assert!(up.signal("HUP"));
    up.stderr.wait_for(PROC_STEP, "the reload", |l| l.contains("2 unchanged, 1 stopped, 1 started")).await;
    let new = within("the new entry's port", async {
        loop {
            let text = up.stderr.text();
            let found = text.lines().filter(|l| l.starts_with("hyco: ") && l.ends_with(" -> box/b")).nth(1);
            if let Some(l) = found {
                break l["hyco: ".len()..l.len() - " -> box/b".len()].parse::<SocketAddr>().expect("an address");
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(greeting(new).await, "beta");
    assert!(TcpStream::connect(old).await.is_err() || old == new, "the removed entry's port is closed");
    use tokio::io::AsyncWriteExt;
    held.get_mut().write_all(b"still here\n").await.expect("write");
    line.clear();
    within("the echo", held.read_line(&mut line)).await.expect("read");
    assert_eq!(line, "still here\n", "the unchanged entry's connection survived the reload");

    // A mistake: said, and everything goes on.
    std::fs::write(&file, format!("{listen}{keep}[[connect]]\nhc = \"box/b\"\nbind = 7\ntoo = 1\n")).unwrap();
    assert!(up.signal("HUP"));
    up.stderr
        .wait_for(PROC_STEP, "the failed reload", |l| l.contains("reload:") && l.contains("go on unchanged"))
        .await;
    assert_eq!(greeting(new).await, "beta");
    assert_eq!(greeting(to_a).await, "alpha");
    drop(held);
    assert!(up.terminate().await.success());
    let err = up.stderr.text();
    // 5 tunnels at the listener, 5 at the connectors: the stopped entry's one still counted.
    assert!(err.contains("stopped: 10 tunnels (0 failed)"), "{err}");
}

#[tokio::test]
async fn a_key_in_the_file_is_refused_without_showing_it() {
    let home = TempDir::new("fwd-key");
    let file =
        up_file(home.path(), "[[connect]]\nhc = \"box/a\"\nbind = \"0\"\nkey_name = \"k\"\nkey = \"c2VjcmV0a2V5\"\n");
    let out = hyco(home.path()).arg("up").arg(&file).output().await.unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("profile") && !err.contains("c2VjcmV0a2V5"), "{err}");
}

/// The line a forward printed for `label`, and the local address in it (`udp:`, `unix:` and
/// `SOCKS5 on ` kept).
async fn announced(proc: &Proc, label: &str, prefix: &str) -> String {
    let suffix = format!(" -> {label}");
    let start = format!("hyco: {prefix}");
    let line = proc.stderr.wait_for(PROC_STEP, label, |l| l.starts_with(&start) && l.ends_with(&suffix)).await;
    line[start.len()..line.len() - suffix.len()].to_owned()
}

#[tokio::test]
async fn up_runs_a_forward_of_every_kind_and_one_failing_leaves_the_others() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let home = TempDir::new("fwd-kinds");
    let serve = ServeProc::start(home.path()).await;
    add_profile(home.path(), &serve).await;
    // The targets: TCP, UDP echo, a Unix socket, and one reached only through SOCKS.
    let tcp = Target::greeter("alpha").await;
    let dynamic = Target::greeter("delta").await;
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let udp_addr = udp.local_addr().unwrap();
    let echo = tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = udp.recv_from(&mut buf).await {
            let _ = udp.send_to(&buf[..n], from).await;
        }
    });
    let unix_path = home.path().join("gamma.sock");
    let unix = tokio::net::UnixListener::bind(&unix_path).unwrap();
    let greeter = tokio::spawn(async move {
        while let Ok((mut s, _)) = unix.accept().await {
            let _ = s.write_all(b"gamma\n").await;
        }
    });
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let local_sock = home.path().join("x.sock");
    let file = up_file(
        home.path(),
        &format!(
            r#"
profile = "relay"

[[listen]]
hc = "box"
to = ["a={tcp}", "u=udp://{udp_addr}", "x=unix:{unix}"]
allow = ["127.0.0.1:{dyn_port}"]

[[connect]]
hc = "box"
forward = ["127.0.0.1:0:a", "udp:127.0.0.1:0:u", "unix:{local}:x"]

[[connect]]
hc = "box"
socks = "127.0.0.1:0"

[[connect]]
name = "taken"
hc = "box/a"
bind = "{taken}"
"#,
            tcp = tcp.spec(),
            unix = unix_path.display(),
            dyn_port = dynamic.addr.port(),
            local = local_sock.display(),
            taken = taken.local_addr().unwrap(),
        ),
    );
    let mut up = spawn_up(home.path(), &file);
    up.stderr.wait_for(PROC_STEP, "the taken port said", |l| l.contains("taken: cannot listen on")).await;

    // TCP.
    let to_a = bound_for(&up, "box/a").await;
    assert_eq!(greeting(to_a).await, "alpha");
    // UDP: a datagram comes back whole.
    let to_u: SocketAddr = announced(&up, "box/u", "udp:").await.parse().unwrap();
    let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    peer.send_to(b"one datagram", to_u).await.unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = tokio::time::timeout(PROC_STEP, peer.recv_from(&mut buf)).await.expect("an echo").unwrap();
    assert_eq!(&buf[..n], b"one datagram");
    // A Unix socket to a Unix socket.
    let to_x = announced(&up, "box/x", "unix:").await;
    assert_eq!(to_x, local_sock.display().to_string());
    let mut s = tokio::net::UnixStream::connect(&local_sock).await.unwrap();
    let mut got = String::new();
    tokio::time::timeout(PROC_STEP, s.read_to_string(&mut got)).await.expect("a greeting").unwrap();
    assert_eq!(got, "gamma\n");
    drop(s);
    // SOCKS5 by hand to the allowed destination.
    let socks: SocketAddr = announced(&up, "box", "SOCKS5 on ").await.parse().unwrap();
    let mut s = TcpStream::connect(socks).await.unwrap();
    s.write_all(&[5, 1, 0]).await.unwrap();
    let mut hello = [0u8; 2];
    s.read_exact(&mut hello).await.unwrap();
    assert_eq!(hello, [5, 0]);
    let port = dynamic.addr.port().to_be_bytes();
    s.write_all(&[5, 1, 0, 1, 127, 0, 0, 1, port[0], port[1]]).await.unwrap();
    let mut reply = [0u8; 10];
    tokio::time::timeout(PROC_STEP, s.read_exact(&mut reply)).await.expect("a reply").unwrap();
    assert_eq!(reply[..2], [5, 0], "succeeded");
    let mut line = String::new();
    tokio::time::timeout(PROC_STEP, BufReader::new(s).read_line(&mut line)).await.expect("a greeting").unwrap();
    assert_eq!(line, "delta\n");

    assert!(up.terminate().await.success());
    assert!(!local_sock.exists(), "the Unix socket is removed at exit");
    echo.abort();
    greeter.abort();
}
