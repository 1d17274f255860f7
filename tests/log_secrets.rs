//! Secrets stay out of the most verbose logs the binary can produce: with the filter
//! `hyco` builds for a `RUST_LOG` that asks for trace everywhere, the WebSocket library's
//! modules by name included (`app::log_filter` and `app::secret_cap`), a listener renewing its token
//! every second and a tunnel through an in-process relay log no key, no signature and no
//! accept address (the rendezvous secret). This is its own test binary because it
//! installs the global subscriber; `tests/cli.rs` checks the binary's own output.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::bridge::*;
use common::*;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Log output, shared with the subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn trace_logs_hold_no_signature_key_or_accept_address() {
    let captured = Captured::default();
    let writer = captured.clone();
    // The most specific directives a user could write for the WebSocket library: a cap
    // written as a filter directive would lose to them.
    let rust_log = "trace,tungstenite=trace,tungstenite::protocol=trace,tokio_tungstenite=trace";
    tracing_subscriber::fmt()
        .with_env_filter(hyco::app::log_filter("trace", Some(rust_log)))
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish()
        .with(hyco::app::secret_cap())
        .init();

    let relay = TestRelay::start(settings()).await;
    let target = Target::echo().await;
    let mut c = client(relay.addr);
    c.token_ttl = Duration::from_secs(2); // renewed every second
    let listening = Listening::start(c.clone(), listen_settings("hc", &[target.spec()])).await;
    let bound = Bound::start(c, "hc", None).await;
    // Long enough for at least two renewals, then a tunnel.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut tcp = bound.connect().await;
    let got = within("a round trip", round_trip(&mut tcp, b"hello")).await.expect("round trip");
    assert_eq!(got, b"hello");
    bound.stop().await.expect("connect");
    listening.stop().await.expect("listen");
    relay.stop().await.expect("relay");

    let logs = String::from_utf8_lossy(&captured.0.lock().expect("log buffer")).into_owned();
    eprintln!(
        "TRACETARGETS {:?}",
        logs.lines()
            .filter(|l| l.contains("TRACE"))
            .map(|l| l.split_whitespace().nth(2).unwrap_or(""))
            .collect::<std::collections::BTreeSet<_>>()
    );
    assert!(
        logs.lines().any(|l| l.contains("TRACE") && l.contains("tokio_tungstenite")),
        "trace logging was on, for the WebSocket adapter too"
    );
    assert!(logs.matches("token renewed").count() >= 2, "renewals happened and were logged:\n{logs}");
    for secret in [KEY, "sig=", "sig%3D", "SharedAccessSignature", "sb-hc-action=accept"] {
        for form in [secret.to_owned(), hex(secret)] {
            if let Some(line) = logs.lines().find(|l| l.contains(&form)) {
                panic!("the logs show {secret:?} (as {form:?}):\n{line}");
            }
        }
    }
}
