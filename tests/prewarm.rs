//! Prewarmed tunnels (`hyco connect --bind --prewarm N`, src/client/prewarm.rs): real
//! relay, listener and connector in-process, real TCP targets. A prewarmed tunnel must not
//! reach its target before a connection uses it; it must carry a server that speaks first;
//! a target gone at start must look like a failure; other listeners turn it off; unused
//! tunnels are replaced; a listener drops tunnels never started; the pool refills in
//! batches; the flag's limit holds.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::bridge::{Bound, Listening, Target, client, closed_port, listen_settings};
use common::{TestRelay, accept, listen, settings, within};
use futures_util::{SinkExt, StreamExt};
use hyco::client::connect::{ConnectSettings, open_sender_with};
use hyco::client::prewarm::{self, Prewarm};
use hyco::protocol::close;
use hyco::ws::frame::{CloseFrame, OpCode};
use hyco::ws::stream::{FrameReader, Role};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

/// An echo target that counts the connections it accepted.
async fn counting_echo() -> (Target, Arc<AtomicU64>) {
    let count = Arc::new(AtomicU64::new(0));
    let seen = count.clone();
    let target = Target::spawn(move |mut tcp| {
        seen.fetch_add(1, Ordering::SeqCst);
        async move {
            let (mut r, mut w) = tcp.split();
            if tokio::io::copy(&mut r, &mut w).await.is_ok() {
                let _ = w.shutdown().await;
            }
        }
    })
    .await;
    (target, count)
}

fn pool(tunnels: usize) -> Prewarm {
    Prewarm { tunnels, ..Prewarm::default() }
}

/// Waits until the relay has `n` tunnels open.
async fn tunnels_active(relay: &TestRelay, n: u64) {
    within(&format!("{n} tunnels open at the relay"), async {
        while relay.metrics.tunnels_active() != n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// Sends `text` through `bound`, half-closes, and returns what came back.
async fn round_trip(bound: &Bound, text: &[u8]) -> Vec<u8> {
    let mut tcp = bound.connect().await;
    within("echo through the tunnel", async {
        tcp.write_all(text).await.expect("write");
        tcp.shutdown().await.expect("half-close");
        let mut back = Vec::new();
        tcp.read_to_end(&mut back).await.expect("read the echo");
        back
    })
    .await
}

#[tokio::test]
async fn a_prewarmed_tunnel_reaches_the_target_only_when_used() {
    let relay = TestRelay::start(settings()).await;
    let (target, connects) = counting_echo().await;
    let listening = Listening::start(client(relay.addr), listen_settings("hc", &[target.spec()])).await;
    let bound = Bound::start_with(client(relay.addr), "hc", None, pool(3)).await;
    tunnels_active(&relay, 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(connects.load(Ordering::SeqCst), 0, "three tunnels open, and the target saw none of them");

    assert_eq!(round_trip(&bound, b"hello").await, b"hello");
    assert_eq!(connects.load(Ordering::SeqCst), 1, "the used tunnel reached the target, the others did not");
    assert_eq!(bound.stats.total.load(Ordering::SeqCst), 1);
    bound.stop().await.expect("run_bind");
    listening.stop().await.expect("listen::run");
}

#[tokio::test]
async fn a_server_that_speaks_first_is_heard_through_a_prewarmed_tunnel() {
    let relay = TestRelay::start(settings()).await;
    let target = Target::greeter("SSH-2.0-banner").await;
    let _listening = Listening::start(client(relay.addr), listen_settings("hc", &[target.spec()])).await;
    let bound = Bound::start_with(client(relay.addr), "hc", None, pool(1)).await;
    tunnels_active(&relay, 1).await;
    let tcp = bound.connect().await;
    let mut lines = BufReader::new(tcp);
    let mut banner = String::new();
    within("the banner, with nothing sent", lines.read_line(&mut banner)).await.expect("read the banner");
    assert_eq!(banner, "SSH-2.0-banner\n");
    let mut tcp = lines.into_inner();
    tcp.write_all(b"after the banner").await.expect("write");
    let mut back = [0; 16];
    within("the echo", tcp.read_exact(&mut back)).await.expect("read the echo");
    assert_eq!(&back, b"after the banner");
}

#[tokio::test]
async fn a_target_down_when_a_prewarmed_tunnel_starts_is_a_reset() {
    let relay = TestRelay::start(settings()).await;
    let gone = closed_port().await;
    let _listening = Listening::start(client(relay.addr), listen_settings("hc", &[gone.to_string()])).await;
    let bound = Bound::start_with(client(relay.addr), "hc", None, pool(1)).await;
    // The listener accepts without the target: it is only reached at start.
    tunnels_active(&relay, 1).await;
    let mut tcp = bound.connect().await;
    tcp.write_all(b"anyone there?").await.expect("write");
    let mut buf = [0; 16];
    let read = within("the reset", tcp.read(&mut buf)).await;
    match read {
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        Ok(n) => panic!("a target that is down must not look like the end of data (read {n} bytes)"),
    }
    within("the failure counted", async {
        while bound.stats.failed.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// A listener that picks the first subprotocol offered and reaches its target at once,
/// as the official clients do: the connector closes that tunnel and stops prewarming.
#[tokio::test]
async fn a_listener_that_connects_at_once_turns_prewarming_off() {
    let relay = TestRelay::start(settings()).await;
    let mut listener = listen(&relay, "hc").await;
    let bound = Bound::start_with(client(relay.addr), "hc", None, pool(1)).await;

    let offer = listener.next_accept().await;
    let offered = offer.connect_headers.get("Sec-WebSocket-Protocol").cloned().unwrap_or_default();
    assert_eq!(offered, format!("{}, {}", prewarm::IMMEDIATE, prewarm::DEFERRED));
    let mut first = accept(relay.addr, &offer, &[("Sec-WebSocket-Protocol", prewarm::IMMEDIATE.to_owned())]).await;
    let closed = within("the connector's close", first.next()).await;
    match closed {
        Some(Ok(Message::Close(Some(f)))) => {
            assert_eq!((u16::from(f.code), f.reason.as_str()), (close::NORMAL, "prewarming not supported"));
        }
        other => panic!("expected a close from the connector, got {other:?}"),
    }

    // From now on: a tunnel per connection, opened when it arrives, with no offer.
    let mut tcp = bound.connect().await;
    let on_demand = listener.next_accept().await;
    assert!(!on_demand.connect_headers.contains_key("Sec-WebSocket-Protocol"), "{:?}", on_demand.connect_headers);
    let mut tunnel = accept(relay.addr, &on_demand, &[]).await;
    tcp.write_all(b"ping").await.expect("write");
    match within("the bytes", tunnel.next()).await {
        Some(Ok(Message::Binary(b))) => assert_eq!(&b[..], b"ping"),
        other => panic!("expected the bytes, got {other:?}"),
    }
    within("answer", tunnel.send(Message::binary(b"pong".to_vec()))).await.expect("send");
    let mut back = [0; 4];
    within("the answer", tcp.read_exact(&mut back)).await.expect("read");
    assert_eq!(&back, b"pong");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(relay.metrics.rendezvous_count(), 2, "no more prewarmed tunnels after the refusal");
}

#[tokio::test]
async fn unused_prewarmed_tunnels_are_replaced() {
    let relay = TestRelay::start(settings()).await;
    let (target, connects) = counting_echo().await;
    let _listening = Listening::start(client(relay.addr), listen_settings("hc", &[target.spec()])).await;
    let prewarm = Prewarm { tunnels: 2, max_idle: Duration::from_millis(300) };
    let bound = Bound::start_with(client(relay.addr), "hc", None, prewarm).await;
    within("three generations of tunnels", async {
        while relay.metrics.tunnels_total() < 6 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(relay.metrics.tunnels_active() <= 2 + 2, "old tunnels are closed as new ones open");
    assert_eq!(round_trip(&bound, b"still fresh").await, b"still fresh");
    assert_eq!(connects.load(Ordering::SeqCst), 1, "replaced tunnels never reached the target");
}

#[tokio::test]
async fn a_listener_closes_a_tunnel_that_is_never_started() {
    let relay = TestRelay::start(settings()).await;
    let (target, connects) = counting_echo().await;
    let mut listen = listen_settings("hc", &[target.spec()]);
    listen.prewarm_start_timeout = Duration::from_millis(400);
    let _listening = Listening::start(client(relay.addr), listen).await;

    let settings = ConnectSettings { hc: "hc".into(), suffix: None, azbridge: None };
    let opened =
        within("a deferred tunnel", open_sender_with(&client(relay.addr), &settings, "id-1", &[prewarm::offer()]))
            .await
            .expect("rendezvous");
    let chosen = hyco::http1::header(&opened.response.headers, "Sec-WebSocket-Protocol");
    assert_eq!(chosen, Some(prewarm::DEFERRED), "a hyco listener defers");
    let started = std::time::Instant::now();
    let (read, _write) = opened.stream.split();
    let mut reader = FrameReader::new(read, &opened.initial, Role::Client);
    let header = within("the listener's close", reader.header()).await.expect("read").expect("a frame");
    assert_eq!(header.opcode, OpCode::Close);
    let payload = reader.control_payload().await.expect("close payload");
    let frame = CloseFrame::parse(&payload).expect("a close frame").expect("with a code");
    assert_eq!((frame.code, frame.reason.as_str()), (close::GOING_AWAY, "not started in time"));
    assert!(started.elapsed() >= Duration::from_millis(300), "closed after {:?}", started.elapsed());
    assert_eq!(connects.load(Ordering::SeqCst), 0, "never started, never reached the target");
}

#[tokio::test]
async fn the_pool_refills_in_batches_of_half() {
    let relay = TestRelay::start(settings()).await;
    let target = Target::echo().await;
    let _listening = Listening::start(client(relay.addr), listen_settings("hc", &[target.spec()])).await;
    let bound = Bound::start_with(client(relay.addr), "hc", None, pool(4)).await;
    tunnels_active(&relay, 4).await;
    assert_eq!(round_trip(&bound, b"one").await, b"one");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(relay.metrics.tunnels_total(), 4, "one of four used: no refill yet");
    assert_eq!(round_trip(&bound, b"two").await, b"two");
    within("a refill of two", async {
        while relay.metrics.tunnels_total() != 6 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    tunnels_active(&relay, 4).await;
}

#[test]
fn the_prewarm_flag_has_a_limit() {
    let run = |n: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_hyco"))
            .args(["connect", "hc", "--bind", "0", "--prewarm", n, "--endpoint", "ws://127.0.0.1:9"])
            .output()
            .expect("run hyco")
    };
    let over = run(&(prewarm::MAX_TUNNELS + 1).to_string());
    assert_eq!(over.status.code(), Some(2), "{over:?}");
    let text = String::from_utf8_lossy(&over.stderr);
    assert!(text.contains("--prewarm") && text.contains(&format!("0..={}", prewarm::MAX_TUNNELS)), "{text}");
}
