//! Interop with Microsoft's npm client hyco-ws 1.0.5 (interop/NOTES.md): its listener and
//! sender against the relay in-process, with each other and with raw Rust peers.
//!
//! Needs `node` and `interop/node_modules/hyco-ws` (`bash interop/setup.sh`). Without
//! them each test prints why and passes, unless `HYCO_REQUIRE_NODE_INTEROP=1` (CI) makes
//! that a failure.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::node::{node, node_available};
use common::*;
use futures_util::SinkExt;
use hyco::protocol::Action;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};
use tokio_tungstenite::tungstenite::Message;

/// How long a node script may take to start and do its part (node's start-up included).
const NODE_STEP: Duration = Duration::from_secs(15);

/// A running `listener.js`; killed on drop.
struct NodeListener {
    _child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl NodeListener {
    /// Starts `listener.js` for `hc` and waits for its `READY`.
    async fn start(relay: &TestRelay, hc: &str, env: &[(&str, &str)]) -> Self {
        let mut child = node("listener.js", &[&relay.base(), hc, KEY_NAME, KEY], env)
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn node");
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut l = Self { _child: child, lines };
        l.expect("READY").await;
        l
    }

    /// The next stdout line; `ERROR` lines and the end of output fail the test.
    async fn next_line(&mut self) -> String {
        let line = within_for(NODE_STEP, "a line from listener.js", self.lines.next_line()).await;
        match line.expect("listener.js stdout") {
            Some(l) if l.starts_with("ERROR") => panic!("listener.js: {l}"),
            Some(l) => l,
            None => panic!("listener.js exited"),
        }
    }

    /// Skips lines until one starts with `prefix`; returns it.
    async fn expect(&mut self, prefix: &str) -> String {
        loop {
            let line = self.next_line().await;
            if line.starts_with(prefix) {
                return line;
            }
        }
    }
}

/// Runs `sender.js` to completion: its exit success and stdout lines.
async fn run_sender(relay: &TestRelay, hc: &str, message: &str, env: &[(&str, &str)]) -> (bool, Vec<String>) {
    let cmd = node("sender.js", &[&relay.base(), hc, KEY_NAME, KEY, message], env).output();
    let out = within_for(NODE_STEP + Duration::from_secs(5), "sender.js to finish", cmd).await.expect("run node");
    let lines = String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect();
    (out.status.success(), lines)
}

/// The binary message sender.js sends by default: 00 01 fe ff then the text, in hex.
fn default_binary_hex(message: &str) -> String {
    let mut bytes = vec![0x00, 0x01, 0xfe, 0xff];
    bytes.extend_from_slice(message.as_bytes());
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn relay_settings() -> hyco::relay::RelaySettings {
    let mut s = hyco::relay::RelaySettings::with_namespace_key(KEY_NAME, hyco::secret::Secret::new(KEY));
    s.limits.accept_window = Duration::from_secs(10);
    s.limits.drain_timeout = Duration::from_secs(1);
    s
}

/// The JSON of a listener.js `ACCEPTED <n> <json>` line.
fn accepted_json(line: &str) -> serde_json::Value {
    let json = line.splitn(3, ' ').nth(2).expect("ACCEPTED <n> <json>");
    serde_json::from_str(json).expect("ACCEPTED json")
}

#[tokio::test]
async fn hyco_ws_sender_and_listener_echo_through_the_relay() {
    if !node_available("hyco-ws") {
        return;
    }
    let relay = TestRelay::start(relay_settings()).await;
    let mut listener = NodeListener::start(&relay, "interop", &[]).await;
    let message = "hello from hyco-ws";
    let (ok, lines) = run_sender(&relay, "interop", message, &[]).await;
    assert!(ok, "sender.js failed: {lines:#?}");
    assert!(lines.contains(&format!("RECV text echo:{message}")), "{lines:#?}");
    assert!(lines.contains(&format!("RECV binary {}", default_binary_hex(message))), "{lines:#?}");
    assert!(lines.iter().any(|l| l.starts_with("CLOSED 1000")), "{lines:#?}");

    let accepted = accepted_json(&listener.expect("ACCEPTED 1 ").await);
    let headers = accepted["connectHeaders"].as_object().expect("connectHeaders");
    assert!(headers.keys().any(|k| k.eq_ignore_ascii_case("sec-websocket-key")), "{headers:?}");
    assert!(!headers.keys().any(|k| k.eq_ignore_ascii_case("serviceBusAuthorization")), "{headers:?}");
    assert_eq!(listener.expect("RECV 1 text").await, format!("RECV 1 text {message}"));
    assert!(listener.expect("CLOSED 1 ").await.starts_with("CLOSED 1 1000"));
}

#[tokio::test]
async fn hyco_ws_id_query_token_protocols_and_headers_reach_a_hyco_ws_listener() {
    if !node_available("hyco-ws") {
        return;
    }
    let relay = TestRelay::start(relay_settings()).await;
    let mut listener = NodeListener::start(&relay, "interop", &[]).await;
    let id = "4cb542c3-047a-4d40-a19f-bdc66441e736";
    let env = [
        ("HYCO_ID", id),
        ("HYCO_TOKEN_IN_QUERY", "1"),
        ("HYCO_PROTOCOLS", "first,second"),
        ("HYCO_HEADERS", r#"{"X-App":"app value"}"#),
    ];
    let (ok, lines) = run_sender(&relay, "interop", "with options", &env).await;
    assert!(ok, "sender.js failed: {lines:#?}");
    // hyco-ws's listener picks the first offered subprotocol; the relay hands it back.
    assert_eq!(lines.first().map(String::as_str), Some("OPEN first"), "{lines:#?}");
    assert!(lines.contains(&"RECV text echo:with options".to_owned()), "{lines:#?}");

    let accepted = accepted_json(&listener.expect("ACCEPTED 1 ").await);
    assert_eq!(accepted["id"], id);
    assert_eq!(accepted["protocol"], "first");
    assert_eq!(accepted["connectHeaders"]["X-App"], "app value", "{accepted}");
    let query = accepted["query"].as_str().expect("query");
    assert!(!query.contains("sb-hc-token"), "the token leaked into the accept address: {query}");
}

#[tokio::test]
async fn hyco_ws_sender_with_a_path_suffix_and_app_query() {
    if !node_available("hyco-ws") {
        return;
    }
    let relay = TestRelay::start(relay_settings()).await;
    let mut listener = NodeListener::start(&relay, "interop", &[]).await;
    // hyco-ws signs the whole path it is given, suffix included (sr = http://host:port/interop/sub).
    let (ok, lines) = run_sender(&relay, "interop/sub?app=1", "suffixed", &[]).await;
    assert!(ok, "sender.js failed: {lines:#?}");
    assert!(lines.contains(&"RECV text echo:suffixed".to_owned()), "{lines:#?}");
    let accepted = accepted_json(&listener.expect("ACCEPTED 1 ").await);
    assert_eq!(accepted["path"], "interop/sub", "{accepted}");
    let query = accepted["query"].as_str().expect("query");
    assert!(query.starts_with("?app=1&"), "{query}");
}

#[tokio::test]
async fn hyco_ws_sender_reaches_a_rust_listener() {
    if !node_available("hyco-ws") {
        return;
    }
    let relay = TestRelay::start(relay_settings()).await;
    let mut l = listen(&relay, "interop").await;
    let addr = relay.addr;
    let echo = tokio::spawn(async move {
        let a = l.next_accept().await;
        let mut ws = accept(addr, &a, &[]).await;
        for _ in 0..2 {
            let reply = match next_message(&mut ws).await {
                Message::Text(t) => Message::text(format!("echo:{t}")),
                other => other,
            };
            ws.send(reply).await.expect("echo");
        }
        next_close(&mut ws).await
    });
    let message = "to a rust listener";
    let (ok, lines) = run_sender(&relay, "interop", message, &[]).await;
    assert!(ok, "sender.js failed: {lines:#?}");
    assert!(lines.contains(&format!("RECV text echo:{message}")), "{lines:#?}");
    assert!(lines.contains(&format!("RECV binary {}", default_binary_hex(message))), "{lines:#?}");
    let (code, reason) = within("rust listener", echo).await.expect("listener task");
    assert_eq!((code, reason.as_str()), (1000, "done"));
}

#[tokio::test]
async fn rust_sender_reaches_a_hyco_ws_listener() {
    if !node_available("hyco-ws") {
        return;
    }
    let relay = TestRelay::start(relay_settings()).await;
    let mut listener = NodeListener::start(&relay, "interop", &[]).await;
    let url = relay.url("interop", Action::Connect);
    let (mut ws, _) = within_for(NODE_STEP, "sender upgrade", ws_connect(relay.addr, &url, &[auth(&token("interop"))]))
        .await
        .expect("sender upgrade");
    ws.send(Message::text("from rust")).await.expect("send text");
    assert_eq!(next_message(&mut ws).await, Message::text("echo:from rust"));
    ws.send(Message::binary(vec![0u8, 255, 7])).await.expect("send binary");
    assert_eq!(next_message(&mut ws).await, Message::binary(vec![0u8, 255, 7]));
    ws.close(None).await.expect("close");
    assert_eq!(listener.expect("RECV 1 binary").await, "RECV 1 binary 00ff07");
    assert!(listener.expect("CLOSED 1 ").await.starts_with("CLOSED 1 1000"));
}

#[tokio::test]
async fn hyco_ws_listener_renews_its_token_and_stays() {
    if !node_available("hyco-ws") {
        return;
    }
    let mut settings = relay_settings();
    settings.limits.renew_grace = Duration::from_millis(1500);
    let relay = TestRelay::start(settings).await;
    // A token of 1 s, renewed by hyco-ws every 400 ms (instead of every hour).
    let mut listener =
        NodeListener::start(&relay, "interop", &[("HYCO_TOKEN_TTL", "1"), ("HYCO_RENEW_MS", "400")]).await;
    let mut renewals = 0;
    // Well past the first token's expiry plus the grace period.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
    while tokio::time::Instant::now() < deadline {
        let Ok(line) = tokio::time::timeout_at(deadline, listener.next_line()).await else { break };
        assert!(!line.starts_with("CONTROL_CLOSED") && !line.starts_with("RELISTEN"), "{line}");
        renewals += usize::from(line.starts_with("RENEW "));
    }
    assert!(renewals >= 3, "hyco-ws renewed only {renewals} times");
    let (ok, lines) = run_sender(&relay, "interop", "still there", &[]).await;
    assert!(ok, "sender.js failed after renewals: {lines:#?}");
}
