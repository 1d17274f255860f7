//! Who gets in (docs/protocol.md 3, 5.1, 6): token checks on listeners and senders, where the
//! token may travel, and HCs that let senders in without one.

mod common;

use common::*;
use hyco::encoding::encode_component;
use hyco::protocol::{self, Action};
use hyco::relay::HcSettings;
use hyco::relay::auth::{Right, Rule};
use hyco::secret::Secret;

/// The status the relay answers a listener (`listen`) or a sender (`connect`) with; 101 if
/// it let a listener in. Meant for refusals: a sender let in waits for an accept, and this
/// fails the test after [`STEP`].
async fn status(relay: &TestRelay, hc: &str, action: Action, headers: &[(&str, String)]) -> (u16, String) {
    let url = relay.url(hc, action);
    match raw_upgrade(relay.addr, &url, headers).await {
        Ok(_) => (101, String::new()),
        Err(e) => refused(Err(e)),
    }
}

/// A relay with a listener on `hc`, so that senders who pass the checks are held open
/// waiting for an accept rather than refused with 404.
async fn relay_with_listener(settings: hyco::relay::RelaySettings, hc: &str) -> (TestRelay, Listener) {
    let relay = TestRelay::start(settings).await;
    let l = listen(&relay, hc).await;
    (relay, l)
}

/// Checks that a sender with `headers` reaches the listener (its accept arrives).
async fn sender_gets_through(relay: &TestRelay, l: &mut Listener, url: String, headers: Vec<(&'static str, String)>) {
    let sender = spawn_sender(relay.addr, url, headers);
    let a = l.next_accept().await;
    let _lws = accept(relay.addr, &a, &[]).await;
    within("sender", sender).await.unwrap().expect("sender upgrade");
}

#[tokio::test]
async fn wrong_key_unknown_key_name_and_no_token_are_401() {
    let (relay, _l) = relay_with_listener(settings(), "hc").await;
    let forged = token_with("hc", KEY_NAME, "not the key", protocol::unix_now() + 3600);
    let stranger = token_with("hc", "SomeoneElse", KEY, protocol::unix_now() + 3600);
    for action in [Action::Listen, Action::Connect] {
        let (code, reason) = status(&relay, "hc", action, &[auth(&forged)]).await;
        assert_eq!(code, 401, "{action:?} with the wrong key: {reason}");
        assert!(reason.contains("TrackingId:") && reason.contains("Timestamp:"), "{reason}");
        assert_eq!(status(&relay, "hc", action, &[auth(&stranger)]).await.0, 401, "{action:?} unknown key name");
        assert_eq!(status(&relay, "hc", action, &[]).await.0, 401, "{action:?} without a token");
        let garbage = (protocol::TOKEN_HEADER, "SharedAccessSignature nonsense".to_owned());
        assert_eq!(status(&relay, "hc", action, &[garbage]).await.0, 401, "{action:?} malformed token");
    }
}

#[tokio::test]
async fn a_rule_without_the_right_is_403() {
    let mut settings = settings();
    settings.rules.push(Rule { name: "SendOnly".into(), key: Secret::new("send key"), rights: vec![Right::Send] });
    settings.rules.push(Rule {
        name: "ListenOnly".into(),
        key: Secret::new("listen key"),
        rights: vec![Right::Listen],
    });
    let (relay, mut l) = relay_with_listener(settings, "hc").await;
    let later = protocol::unix_now() + 3600;
    let send_only = token_with("hc", "SendOnly", "send key", later);
    let listen_only = token_with("hc", "ListenOnly", "listen key", later);

    let (code, reason) = status(&relay, "hc", Action::Listen, &[auth(&send_only)]).await;
    assert_eq!(code, 403, "a Send-only rule listening: {reason}");
    assert_eq!(status(&relay, "hc", Action::Connect, &[auth(&listen_only)]).await.0, 403, "Listen-only sending");

    // Each may do what it has the right for.
    sender_gets_through(&relay, &mut l, relay.url("hc", Action::Connect), vec![auth(&send_only)]).await;
    let url = relay.url("hc", Action::Listen);
    within("listen-only listener", ws_connect(relay.addr, &url, &[auth(&listen_only)])).await.expect("listen");
}

#[tokio::test]
async fn wrong_audience_is_401_and_a_namespace_token_covers_all() {
    let (relay, mut l) = relay_with_listener(settings(), "hc").await;
    let other = token("other");
    assert_eq!(status(&relay, "hc", Action::Listen, &[auth(&other)]).await.0, 401, "listener, other HC");
    assert_eq!(status(&relay, "hc", Action::Connect, &[auth(&other)]).await.0, 401, "sender, other HC");
    let deeper = token("hc/below");
    assert_eq!(status(&relay, "hc", Action::Connect, &[auth(&deeper)]).await.0, 401, "audience below the HC");

    let namespace = hyco::sas::mint("sb://anything.example", KEY_NAME, &Secret::new(KEY), protocol::unix_now() + 60)
        .expose()
        .to_owned();
    sender_gets_through(&relay, &mut l, relay.url("hc", Action::Connect), vec![auth(&namespace)]).await;
}

#[tokio::test]
async fn a_sender_token_may_name_the_path_suffix() {
    let (relay, mut l) = relay_with_listener(settings(), "hc").await;
    // docs/protocol.md 3: `sr` must be a prefix of the requested resource, suffix included
    // (hyco-ws signs the whole path it connects to).
    let url = hyco::protocol::client_url(&relay.base(), "hc", Some("sub/x"), "", Action::Connect, None);
    sender_gets_through(&relay, &mut l, url.clone(), vec![auth(&token("hc/sub"))]).await;
    sender_gets_through(&relay, &mut l, url.clone(), vec![auth(&token("hc/sub/x"))]).await;
    let (code, reason) = refused(raw_upgrade(relay.addr, &url, &[auth(&token("hc/other"))]).await);
    assert_eq!(code, 401, "a token for another suffix: {reason}");
    let (code, _) = refused(raw_upgrade(relay.addr, &url, &[auth(&token("hc/sub/x/y"))]).await);
    assert_eq!(code, 401, "a token for a longer path");
}

#[tokio::test]
async fn expired_token_is_401() {
    let (relay, _l) = relay_with_listener(settings(), "hc").await;
    // Well past the clock-skew allowance.
    let expired = token_with("hc", KEY_NAME, KEY, protocol::unix_now() - 3600);
    for action in [Action::Listen, Action::Connect] {
        let (code, reason) = status(&relay, "hc", action, &[auth(&expired)]).await;
        assert_eq!(code, 401, "{action:?}: {reason}");
    }
}

#[tokio::test]
async fn token_in_the_query_is_accepted_and_not_passed_on() {
    let relay = TestRelay::start(settings()).await;
    let with_token = |action| format!("{}&sb-hc-token={}", relay.url("hc", action), encode_component(&token("hc")));
    let (ws, _) = within("listen", ws_connect(relay.addr, &with_token(Action::Listen), &[])).await.expect("listen");
    let mut l = Listener { ws };

    let sender = spawn_sender(relay.addr, with_token(Action::Connect), vec![]);
    let a = l.next_accept().await;
    assert!(!a.address.contains("sb-hc-token"), "the token leaked into the accept address: {}", a.address);
    let mut lws = accept(relay.addr, &a, &[]).await;
    let (mut s, _) = within("sender", sender).await.unwrap().expect("sender upgrade");
    exchange(&mut s, &mut lws).await;

    // A bad token in the query is refused as in the header.
    let bad = format!("{}&sb-hc-token={}", relay.url("hc", Action::Connect), encode_component(&token("other")));
    assert_eq!(refused(raw_upgrade(relay.addr, &bad, &[]).await).0, 401);
}

#[tokio::test]
async fn hc_without_client_authorization_lets_senders_in_without_a_token() {
    let mut settings = settings();
    settings.hcs.push(HcSettings {
        name: "open".into(),
        requires_client_authorization: false,
        rules: Vec::new(),
        ports: Vec::new(),
    });
    settings.hcs.push(HcSettings {
        name: "closed".into(),
        requires_client_authorization: true,
        rules: Vec::new(),
        ports: Vec::new(),
    });
    let relay = TestRelay::start(settings).await;
    let mut open = listen(&relay, "open").await;
    let _closed = listen(&relay, "closed").await;

    sender_gets_through(&relay, &mut open, relay.url("open", Action::Connect), vec![]).await;
    assert_eq!(status(&relay, "closed", Action::Connect, &[]).await.0, 401, "an HC that requires a token");
    assert_eq!(status(&relay, "open", Action::Listen, &[]).await.0, 401, "listeners always need a token");
}

#[tokio::test]
async fn hc_rules_apply_to_their_hc_only() {
    let mut settings = settings();
    let rule = Rule { name: "TeamKey".into(), key: Secret::new("team key"), rights: vec![Right::Listen, Right::Send] };
    settings.hcs.push(HcSettings {
        name: "team/ssh".into(),
        requires_client_authorization: true,
        rules: vec![rule],
        ports: Vec::new(),
    });
    settings.hcs.push(HcSettings {
        name: "other".into(),
        requires_client_authorization: true,
        rules: Vec::new(),
        ports: Vec::new(),
    });
    let relay = TestRelay::start(settings).await;
    let later = protocol::unix_now() + 3600;

    let url = relay.url("team/ssh", Action::Listen);
    let team = token_with("team/ssh", "TeamKey", "team key", later);
    let (ws, _) = within("listen", ws_connect(relay.addr, &url, &[auth(&team)])).await.expect("team listener");
    let mut l = Listener { ws };
    sender_gets_through(&relay, &mut l, relay.url("team/ssh", Action::Connect), vec![auth(&team)]).await;

    let misused = token_with("other", "TeamKey", "team key", later);
    assert_eq!(status(&relay, "other", Action::Listen, &[auth(&misused)]).await.0, 401, "HC key on another HC");
}
