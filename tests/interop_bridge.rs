//! hyco's clients with Microsoft's npm client hyco-ws 1.0.5 (interop/NOTES.md), through
//! an in-process relay: a hyco-ws sender served by `hyco listen` (in-process, bridging to
//! a TCP target), and a hyco-ws listener serving `hyco connect` (in-process, `run_bind`).
//!
//! Needs `node` and `interop/node_modules/hyco-ws` (`bash interop/setup.sh`). Without
//! them each test prints why and passes, unless `HYCO_REQUIRE_NODE_INTEROP=1` (CI) makes
//! that a failure.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::bridge::*;
use common::node::{node, node_available};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a node script may take to start and do its part (node's start-up included).
const NODE_STEP: Duration = Duration::from_secs(15);

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn hyco_listen_serves_a_hyco_ws_sender() {
    if !node_available("hyco-ws") {
        return;
    }
    let relay = TestRelay::start(settings()).await;
    // sender.js sends its text message, then one binary message; the listener's bridge
    // turns both into bytes for the target. This target gathers all of them and echoes
    // them in one write, so they come back as one binary message.
    let message = "hello from hyco-ws";
    let binary: Vec<u8> = [&[0x00, 0x01, 0xfe, 0xff][..], b"and binary"].concat();
    let expected: Vec<u8> = [message.as_bytes(), &binary].concat();
    let want = expected.len();
    let target = Target::spawn(move |mut tcp| async move {
        let mut got = vec![0; want];
        if tcp.read_exact(&mut got).await.is_ok() && tcp.write_all(&got).await.is_ok() {
            let (mut r, mut w) = tcp.split();
            if tokio::io::copy(&mut r, &mut w).await.is_ok() {
                let _ = w.shutdown().await;
            }
        }
    })
    .await;
    let listening = Listening::start(client(relay.addr), listen_settings("interop", &[target.spec()])).await;

    let binary_hex = hex(&binary);
    let env = [("HYCO_EXPECT", "1"), ("HYCO_BINARY_HEX", binary_hex.as_str())];
    let mut sender = Proc::spawn(node("sender.js", &[&relay.base(), "interop", KEY_NAME, KEY, message], &env));
    let status = sender.exit(NODE_STEP).await;
    let out = sender.stdout.text();
    assert!(status.success(), "sender.js failed:\n{out}\n{}", sender.stderr.text());
    assert!(out.lines().any(|l| l == format!("RECV binary {}", hex(&expected))), "the bytes came back:\n{out}");
    // Its Close 1000 went through hyco's bridge (a half-close of the target) and came back.
    assert!(out.lines().any(|l| l.starts_with("CLOSED 1000")), "{out}");
    until_idle("the listener's tunnel to end", &listening.stats).await;
    assert_eq!(listening.stats.total.load(Ordering::Relaxed), 1);
    assert_eq!(listening.stats.failed.load(Ordering::Relaxed), 0, "a clean end");
}

#[tokio::test]
async fn a_hyco_ws_listener_serves_hyco_connect() {
    if !node_available("hyco-ws") {
        return;
    }
    let relay = TestRelay::start(settings()).await;
    let listener = Proc::spawn(node("listener.js", &[&relay.base(), "interop", KEY_NAME, KEY], &[]));
    listener.stdout.wait_for(NODE_STEP, "listener.js READY", |l| l == "READY").await;
    let bound = Bound::start(client(relay.addr), "interop", None).await;
    // hyco connect prewarms: its first tunnel offers `hyco.immediate, hyco.deferred`; the
    // official listener takes the first, so the connector closes that one tunnel and opens
    // one per connection from then on.
    listener.stdout.wait_for(NODE_STEP, "the probe tunnel closed", |l| l.starts_with("CLOSED 1 ")).await;
    let out = listener.stdout.text();
    assert!(out.contains(r#""protocol":"hyco.immediate""#), "{out}");
    assert!(out.lines().any(|l| l == "CLOSED 1 1000 prewarming not supported"), "{out}");

    // Several frames' worth (the bridge sends what each local read returns, up to 32 KiB);
    // the hyco-ws listener echoes each binary message.
    let mut data = vec![0; 100_000];
    Noise::new(7).fill(&mut data);
    let mut tcp = bound.connect().await;
    let got = within_for(NODE_STEP, "the echo", round_trip(&mut tcp, &data)).await.expect("round trip");
    assert!(got == data, "{} bytes back of {}", got.len(), data.len());

    // What listener.js saw: binary messages only, adding up to the data, then the Close
    // our half-close sent (ws 1.1.5 echoes it, which ended the tunnel cleanly above).
    listener.stdout.wait_for(NODE_STEP, "listener.js CLOSED", |l| l.starts_with("CLOSED 2 ")).await;
    let out = listener.stdout.text();
    let received: String = out.lines().filter_map(|l| l.strip_prefix("RECV 2 binary ")).collect();
    assert!(received == hex(&data), "listener.js got other bytes:\n{}", &out[..out.len().min(2000)]);
    assert!(!out.lines().any(|l| l.starts_with("RECV 2 text") || l.starts_with("RECV 1 ")), "binary only, none early");
    assert!(out.lines().any(|l| l.starts_with("CLOSED 2 1000")), "{}", &out[out.len().saturating_sub(500)..]);
    assert!(!out.lines().any(|l| l.starts_with("ACCEPTED 3 ")), "no more prewarmed tunnels:\n{out}");
    until_idle("the connect side's tunnel to end", &bound.stats).await;
    assert_eq!(bound.stats.failed.load(Ordering::Relaxed), 0, "a clean end");
}
