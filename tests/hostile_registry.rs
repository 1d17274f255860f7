//! Hostile listeners against the relay's registry of hybrid connections (docs/protocol.md
//! 5.1, 8): who may create an HC on first listen, that a created HC never captures the
//! senders of another HC's named targets, that created HCs are forgotten once unused, and
//! that their number and name length are bounded, so that the registry and `/metrics` stay
//! small whatever listeners do.

mod common;

use std::time::Duration;

use common::bridge::*;
use common::*;
use hyco::protocol::{self, Action};
use hyco::relay::metrics::Reason;
use hyco::relay::{HcSettings, RelaySettings};
use hyco::sas::{self, LISTEN_KEY_NAME};
use hyco::secret::Secret;

/// A Listen-only token (the throwaway relay's derived `hyco-listen` rule) for `audience`.
fn listen_token(audience: &str) -> String {
    let key = sas::derive_key(&Secret::new(KEY), LISTEN_KEY_NAME);
    token_with(audience, LISTEN_KEY_NAME, key.expose(), protocol::unix_now() + 3600)
}

/// A root token for the whole namespace.
fn namespace_token() -> String {
    sas::mint("http://127.0.0.1/", KEY_NAME, &Secret::new(KEY), protocol::unix_now() + 3600).expose().to_owned()
}

/// Opens a control channel for `hc` with `token`: the channel, or the status and text of
/// the rejection.
async fn try_listen(relay: &TestRelay, hc: &str, token: &str) -> Result<RawWs, (u16, String)> {
    match raw_upgrade(relay.addr, &relay.url(hc, Action::Listen), &[auth(token)]).await {
        Ok(ws) => Ok(ws),
        r => Err(refused(r)),
    }
}

/// The status a control channel for `hc` with `token` is refused with.
async fn listen_refused(relay: &TestRelay, hc: &str, token: &str) -> (u16, String) {
    match try_listen(relay, hc, token).await {
        Ok(_) => panic!("listening on {hc} was allowed"),
        Err(refusal) => refusal,
    }
}

/// The HCs `/metrics` lists, and the length of its text.
fn listed(relay: &TestRelay) -> (usize, usize) {
    let text = relay.metrics.render();
    (text.matches("hyco_listeners{").count(), text.len())
}

/// Waits until `/metrics` lists `n` HCs.
async fn until_listed(relay: &TestRelay, n: usize) {
    within_for(Duration::from_secs(10), "the registry to settle", async {
        while listed(relay).0 != n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

fn quick_forget(grace: Duration) -> RelaySettings {
    let mut s = settings();
    s.limits.auto_hc_grace = grace;
    s
}

/// The attack of issue 12 (F2): a victim listens on `box` with a target named `web`; an
/// attacker holding a Listen token for `box/web` (which a token for `box` covers) must not
/// get HC `box/web`, which would take every `connect box/web` meant for the victim.
#[tokio::test]
async fn a_listener_below_an_hc_cannot_take_its_named_targets() {
    let relay = TestRelay::start(settings()).await;
    let web = Target::greeter("victim's web").await;
    let _victim = Listening::start(client(relay.addr), listen_settings("box", &[format!("web={}", web.spec())])).await;

    for (audience, status) in [("box/web", 409), ("box", 403), ("", 409)] {
        let token = if audience.is_empty() { namespace_token() } else { listen_token(audience) };
        let (got, text) = listen_refused(&relay, "box/web", &token).await;
        assert_eq!(got, status, "a token for {audience:?}: {text}");
    }
    assert_eq!(relay.metrics.rejected(Reason::NameConflict), 2);
    assert_eq!(relay.metrics.listeners("box/web"), 0);

    let bound = Bound::start(client(relay.addr), "box", Some("web")).await;
    let mut tcp = bound.connect().await;
    let got = within("round trip", round_trip(&mut tcp, b"secret")).await.expect("round trip");
    assert_eq!(String::from_utf8_lossy(&got), "victim's web\nsecret", "the sender reached the victim");
}

/// A token scoped to one HC covers the paths below it for use, never for creating an HC
/// there; one naming a path exactly creates it, and nothing can then nest with it.
#[tokio::test]
async fn a_token_for_one_hc_creates_no_hc_below_it() {
    let relay = TestRelay::start(settings()).await;
    for name in ["box/web", "box/a/b", "box/x"] {
        let (status, text) = listen_refused(&relay, name, &listen_token("box")).await;
        assert_eq!(status, 403, "{name}: {text}");
        assert!(text.contains("exactly its name"), "{text}");
    }
    assert_eq!(listed(&relay).0, 0, "nothing created");

    // Exact: created; then `box` above it is refused while it exists.
    let below = try_listen(&relay, "box/web", &listen_token("box/web")).await.expect("exact token creates");
    let (status, text) = listen_refused(&relay, "box", &listen_token("box")).await;
    assert_eq!(status, 409, "{text}");
    assert!(text.contains("TrackingId:"), "{text}");
    drop(below);
}

/// A created HC outlives its last listener for the grace period (a reconnect finds it)
/// and is then forgotten: senders get `Endpoint does not exist`, `/metrics` drops it.
/// Configured HCs stay.
#[tokio::test]
async fn a_created_hc_is_forgotten_after_its_grace_and_kept_through_a_reconnect() {
    let grace = Duration::from_millis(600);
    let mut s = quick_forget(grace);
    s.hcs.push(HcSettings {
        name: "kept".into(),
        requires_client_authorization: true,
        rules: Vec::new(),
        ports: Vec::new(),
    });
    let relay = TestRelay::start(s).await;
    until_listed(&relay, 1).await;

    let sender_status = |hc: &'static str| {
        let relay_addr = relay.addr;
        let url = relay.url(hc, Action::Connect);
        async move { refused(raw_upgrade(relay_addr, &url, &[auth(&token(hc))]).await) }
    };
    drop(listen(&relay, "kept").await);
    drop(listen(&relay, "temp").await);
    within("the relay to see the listener go", async {
        while relay.metrics.listeners("temp") != 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    // Within the grace: still there, without a listener.
    let (status, text) = sender_status("temp").await;
    assert_eq!(status, 404);
    assert!(text.starts_with("No listener is online"), "{text}");
    let back = listen(&relay, "temp").await;
    tokio::time::sleep(grace * 2).await;
    assert_eq!(relay.metrics.listeners("temp"), 1, "kept through the reconnect");
    drop(back);
    until_listed(&relay, 1).await;
    let (status, text) = sender_status("temp").await;
    assert_eq!(status, 404);
    assert!(text.starts_with("Endpoint does not exist"), "{text}");
    let (status, text) = sender_status("kept").await;
    assert!(status == 404 && text.starts_with("No listener is online"), "configured HCs stay: {text}");
}

/// `max_auto_hcs` created HCs at most; the next is refused with 503 until one is forgotten.
#[tokio::test]
async fn created_hcs_are_capped() {
    let mut s = quick_forget(Duration::ZERO);
    s.limits.max_auto_hcs = 3;
    let relay = TestRelay::start(s).await;
    let mut held = Vec::new();
    for hc in ["a", "b", "c"] {
        held.push(listen(&relay, hc).await);
    }
    let (status, text) = listen_refused(&relay, "d", &token("d")).await;
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("maximum of 3 hybrid connections"), "{text}");
    assert_eq!(relay.metrics.rejected(Reason::HcLimit), 1);
    // An existing one still takes listeners.
    let _second = listen(&relay, "a").await;
    drop(held.pop());
    until_listed(&relay, 2).await;
    let _d = listen(&relay, "d").await;
}

/// Names over 256 bytes are never created, up to the 16 KB of issue 12's churn.
#[tokio::test]
async fn long_hc_names_are_refused() {
    let relay = TestRelay::start(settings()).await;
    let longest = format!("{}/{}", "a".repeat(127), "b".repeat(128));
    assert_eq!(longest.len(), hyco::relay::config::MAX_HC_NAME_BYTES);
    drop(listen(&relay, &longest).await);
    for name in [format!("{longest}c"), "n".repeat(16 * 1024), format!("{}/{}", "s".repeat(200), "t".repeat(200))] {
        let (status, text) = listen_refused(&relay, &name, &namespace_token()).await;
        assert_eq!(status, 400, "{text}");
        assert!(text.contains("at most 256 bytes"), "{text}");
    }
    assert_eq!(listed(&relay).0, 1, "only the longest allowed name");
}

/// Issue 12's churn: thousands of listen-and-close calls with fresh names. The relay
/// forgets each created HC; the registry and `/metrics` come back to where they started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_and_close_churn_leaves_the_registry_at_its_baseline() {
    const CYCLES: usize = 2_000;
    const AT_ONCE: usize = 50;
    let mut s = quick_forget(Duration::from_millis(50));
    s.limits.max_auto_hcs = AT_ONCE;
    let relay = TestRelay::start(s).await;
    drop(listen(&relay, "first").await);
    until_listed(&relay, 0).await;
    let baseline = listed(&relay);
    let token = namespace_token();
    let mut largest = 0;
    for batch in 0..CYCLES / AT_ONCE {
        let mut opened = tokio::task::JoinSet::new();
        for i in 0..AT_ONCE {
            let name = format!("{batch:04}-{i:03}-{}", "n".repeat(240));
            let (addr, url, token) = (relay.addr, relay.url(&name, Action::Listen), token.clone());
            opened.spawn(async move { raw_upgrade(addr, &url, &[auth(&token)]).await.is_ok() });
        }
        let mut channels = 0;
        while let Some(ok) = opened.join_next().await {
            channels += usize::from(ok.expect("listen task"));
        }
        assert_eq!(channels, AT_ONCE, "batch {batch}: every listener got in once the last batch was forgotten");
        largest = largest.max(listed(&relay).1);
        until_listed(&relay, baseline.0).await;
    }
    let (hcs, len) = listed(&relay);
    eprintln!("{CYCLES} created HCs: /metrics {len} bytes after ({} before, {largest} at most)", baseline.1);
    assert_eq!((hcs, len), baseline, "the registry is back at its baseline");
    assert!(largest < baseline.1 + AT_ONCE * 400, "/metrics grew to {largest} bytes");
    // Still serving.
    let mut l = listen(&relay, "after").await;
    let (mut s, mut lws) = rendezvous(&relay, &mut l, "after").await;
    exchange(&mut s, &mut lws).await;
}
