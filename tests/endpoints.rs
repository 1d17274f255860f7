//! A relay given as several endpoints (the nodes of one relay), with the real binary and
//! real relays: `--endpoint` repeated (or a profile's list) skips an endpoint that cannot
//! be reached, for listeners and senders alike; a listener whose relay is killed comes
//! back on the other within one backoff step; none reachable exits 4 naming them all;
//! a list that mixes TLS and plain endpoints, or is too long, is a configuration error.

mod common;

use std::time::Duration;

use common::KEY_NAME;
use common::bridge::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;

/// `--endpoint` for each of `endpoints`, then the key.
fn relay_flags(endpoints: &[String], key: &str) -> Vec<String> {
    let mut flags = Vec::new();
    for e in endpoints {
        flags.extend(["--endpoint".to_owned(), e.clone()]);
    }
    flags.extend(["--key-name".into(), KEY_NAME.into(), "--key".into(), key.into()]);
    flags
}

/// Connects through `hyco connect` once and reads the greeter's line.
async fn greeting_through(home: &std::path::Path, flags: &[String]) -> String {
    let mut cmd = hyco(home);
    cmd.args(["connect", "box/a", "--bind", "127.0.0.1:0", "--prewarm", "0"]).args(flags);
    let mut connect = Proc::spawn(cmd);
    let line =
        connect.stderr.wait_for(PROC_STEP, "the bound line", |l| l.starts_with("hyco: ") && l.contains("->")).await;
    let addr = line["hyco: ".len()..line.find(" -> ").unwrap()].to_owned();
    let tcp = TcpStream::connect(&addr).await.unwrap();
    let got = tokio::time::timeout(PROC_STEP, BufReader::new(tcp).lines().next_line()).await.unwrap().unwrap();
    assert!(connect.terminate().await.success());
    got.expect("a greeting")
}

#[tokio::test]
async fn an_endpoint_that_cannot_be_reached_is_skipped_by_listeners_and_senders() {
    let home = TempDir::new("ep-skip");
    let relay = ServeProc::start(home.path()).await;
    let dead = closed_port().await;
    let endpoints = [format!("ws://{dead}"), format!("ws://{}", relay.addr)];
    let flags = relay_flags(&endpoints, &relay.key);
    let target = Target::greeter("alpha").await;
    let mut cmd = hyco(home.path());
    cmd.args(["listen", "box", "--to", &format!("a={}", target.spec()), "--connections", "2"]).args(&flags);
    let listen = Proc::spawn(cmd);
    listen.stderr.wait_for(PROC_STEP, "a channel up", |l| l.contains("listening")).await;
    // Whichever endpoint each sender starts at, the dead one gives way to the live one.
    for _ in 0..4 {
        assert_eq!(greeting_through(home.path(), &flags).await, "alpha");
    }
    // A profile holds the list too (`--endpoint` repeated when it is added).
    let key_file = home.path().join("k");
    std::fs::write(&key_file, &relay.key).unwrap();
    let mut add = hyco(home.path());
    add.args(["profile", "add", "two", "--key-name", KEY_NAME, "--default", "--key-file"]).arg(&key_file);
    for e in &endpoints {
        add.args(["--endpoint", e]);
    }
    assert!(add.output().await.unwrap().status.success());
    let config = std::fs::read_to_string(home.path().join("config.toml")).unwrap();
    assert!(config.contains(&format!("endpoint = \"{}, {}\"", endpoints[0], endpoints[1])), "{config}");
    assert_eq!(greeting_through(home.path(), &[]).await, "alpha");
    drop(listen);
}

#[tokio::test]
async fn a_listener_whose_relay_dies_comes_back_on_another_endpoint() {
    let home = TempDir::new("ep-failover");
    // Two relays with one key (the same data directory), as the nodes of one relay share it.
    let one = ServeProc::start(home.path()).await;
    let two = ServeProc::start(home.path()).await;
    assert_eq!(one.key, two.key);
    let endpoints = [format!("ws://{}", one.addr), format!("ws://{}", two.addr)];
    let flags = relay_flags(&endpoints, &one.key);
    let target = Target::greeter("alpha").await;
    let mut cmd = hyco(home.path());
    cmd.args(["listen", "box", "--to", &format!("a={}", target.spec())]).args(&flags);
    let listen = Proc::spawn(cmd);
    let first = listen.stderr.wait_for(PROC_STEP, "the channel up", |l| l.contains("listening")).await;
    let (mut on, other) = if first.contains(&endpoints[0]) { (one, two) } else { (two, one) };
    let other_base = format!("ws://{}", other.addr);
    // SIGKILL: the relay's connections just break.
    on.proc.child.start_kill().unwrap();
    on.proc.child.wait().await.unwrap();
    let started = std::time::Instant::now();
    listen
        .stderr
        .wait_for(PROC_STEP, "the channel on the other relay", |l| l.contains("listening") && l.contains(&other_base))
        .await;
    assert!(started.elapsed() < Duration::from_secs(5), "within the first backoff steps: {:?}", started.elapsed());
    assert_eq!(greeting_through(home.path(), &flags).await, "alpha");
}

#[tokio::test]
async fn endpoint_lists_that_cannot_work_are_refused() {
    let home = TempDir::new("ep-bad");
    let (a, b) = (closed_port().await, closed_port().await);
    let flags = relay_flags(&[format!("ws://{a}"), format!("ws://{b}")], "a2V5");
    let out = hyco(home.path()).args(["listen", "box", "--to", "9"]).args(&flags).output().await.unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains(&format!("ws://{a}, ws://{b}")), "names every endpoint: {err}");
    let out = hyco(home.path()).args(["connect", "box", "--stdio"]).args(&flags).output().await.unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stderr));

    let mixed = relay_flags(&["wss://a.example".into(), "ws://b.example:80".into()], "a2V5");
    let out = hyco(home.path()).args(["listen", "box", "--to", "9"]).args(&mixed).output().await.unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("all TLS") && err.contains("all plain"), "{err}");
    let many: Vec<String> = (1..=17).map(|i| format!("ws://n{i}.example:80")).collect();
    let out =
        hyco(home.path()).args(["listen", "box", "--to", "9"]).args(relay_flags(&many, "a2V5")).output().await.unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("at most 16"), "{err}");
}
