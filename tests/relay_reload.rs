//! `hyco serve --config FILE` reads FILE again on SIGHUP, with the real binary: a rotated
//! key takes effect for new handshakes while a listener signed in with the old one stays,
//! a hybrid connection added is served and one removed is gone, settings only a restart
//! applies are said, and a file with a mistake changes nothing.

mod common;

use std::net::SocketAddr;
use std::path::Path;

use common::bridge::*;
use common::{KEY_NAME, auth, raw_upgrade, refused, token_with};
use hyco::client::prewarm::Prewarm;
use hyco::protocol::{Action, unix_now};

const OLD_KEY: &str = "b2xkLWtleS1vbGQta2V5LW9sZC1rZXktb2xkLWtleSE=";
const NEW_KEY: &str = "bmV3LWtleS1uZXcta2V5LW5ldy1rZXktbmV3LWtleSE=";

/// A relay configuration with the root rule's `key`, the HC `a`, and `more`.
fn config(key: &str, more: &str) -> String {
    format!(
        "[[rules]]\nname = \"{KEY_NAME}\"\nkey = \"{key}\"\nrights = [\"Manage\"]\n\n\
         [[hybrid_connections]]\nname = \"a\"\n{more}"
    )
}

/// The status a sender to `hc` with `token` (none: no header) is refused with.
async fn sender_refused(relay: SocketAddr, hc: &str, token: Option<String>) -> u16 {
    let url = format!("ws://{relay}/$hc/{hc}?sb-hc-action={}", Action::Connect.as_str());
    let headers: Vec<(&str, String)> = token.iter().map(|t| auth(t)).collect();
    refused(raw_upgrade(relay, &url, &headers).await).0
}

/// A round trip through a new tunnel to `hc`'s echo, signed with `key`.
async fn echoes(relay: SocketAddr, key: &str, data: &[u8]) -> std::io::Result<Vec<u8>> {
    let bound = Bound::start_with(key_client(relay, key), "a", None, Prewarm::off()).await;
    let mut tcp = bound.connect().await;
    let back = round_trip(&mut tcp, data).await;
    drop(tcp);
    let _ = bound.stop().await;
    back
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[tokio::test]
async fn serve_reloads_rules_and_hybrid_connections_on_sighup() {
    let home = TempDir::new("reload");
    let file = home.path().join("relay.toml");
    write(&file, &config(OLD_KEY, "[[hybrid_connections]]\nname = \"gone\"\n"));
    let mut cmd = hyco(home.path());
    cmd.args(["serve", "--no-profile", "--bind", "127.0.0.1:0", "--config"]).arg(&file);
    let mut serve = Proc::spawn(cmd);
    let relay = relay_address(&serve).await;
    let echo = Target::echo().await;
    let _listening = Listening::start(key_client(relay, OLD_KEY), listen_settings("a", &[echo.spec()])).await;
    assert_eq!(echoes(relay, OLD_KEY, b"before").await.expect("echo"), b"before");

    // The key rotated, `gone` removed, `open` added (no token needed), and a limit changed.
    let open = "[[hybrid_connections]]\nname = \"open\"\nrequires_client_authorization = false\n\n\
                [limits]\nmax_connections = 500\n";
    write(&file, &config(NEW_KEY, open));
    assert!(serve.signal("HUP"));
    let said = serve.stderr.wait_for(PROC_STEP, "the reload", |l| l.contains("reloaded ")).await;
    assert!(said.contains("1 added, 1 kept, 1 removed, 0 removed once"), "{said}");
    serve.stderr.wait_for(PROC_STEP, "what waits for a restart", |l| l.contains("[limits] changed in")).await;
    // The listener signed in with the old key is still there; new handshakes need the new key.
    assert_eq!(echoes(relay, NEW_KEY, b"after").await.expect("echo"), b"after");
    let old = token_with("a", KEY_NAME, OLD_KEY, unix_now() + 3600);
    assert_eq!(sender_refused(relay, "a", Some(old)).await, 401, "the old key no longer signs");
    assert_eq!(sender_refused(relay, "a", None).await, 401);
    // `open` is served without a token (404: no listener yet, not 401); `gone` is gone.
    assert_eq!(sender_refused(relay, "open", None).await, 404);
    let new = token_with("gone", KEY_NAME, NEW_KEY, unix_now() + 3600);
    assert_eq!(sender_refused(relay, "gone", Some(new)).await, 404);

    // A file with a mistake: said, and nothing changes.
    write(&file, "[[rules]]\nname = 7\n");
    assert!(serve.signal("HUP"));
    serve.stderr.wait_for(PROC_STEP, "the failed reload", |l| l.contains("reload:") && l.contains("as it was")).await;
    assert_eq!(echoes(relay, NEW_KEY, b"still").await.expect("echo"), b"still");
    assert!(serve.terminate().await.success(), "{}", serve.stderr.text());
}

/// Without --config there is nothing to read again: SIGHUP is said and ignored (it no
/// longer ends the relay).
#[tokio::test]
async fn serve_without_a_config_file_ignores_sighup() {
    let home = TempDir::new("reload-none");
    let mut cmd = hyco(home.path());
    cmd.args(["serve", "--no-profile", "--bind", "127.0.0.1:0"]);
    let mut serve = Proc::spawn(cmd);
    relay_address(&serve).await;
    assert!(serve.signal("HUP"));
    serve.stderr.wait_for(PROC_STEP, "SIGHUP said", |l| l.contains("nothing to reload")).await;
    assert!(serve.child.try_wait().unwrap().is_none(), "still running");
    assert!(serve.terminate().await.success(), "{}", serve.stderr.text());
}
