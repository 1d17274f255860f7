//! Hostile input against an in-process relay: malformed and bent upgrade requests, paths,
//! queries and tokens, guessed accept addresses, framing errors on tunnels and control
//! channels, frames the relay must pass through untouched, accept messages too large for a
//! listener, peers that stop reading, and thousands of slow clients.
//!
//! Each case must get a sensible answer (an HTTP status on the upgrade, or a close code),
//! never access, never a hang and never a panic anywhere in the relay; and an honest
//! listener and sender must work afterwards. Panics in the relay's connection tasks do not
//! fail a test by themselves (tokio catches them), so a panic hook records every panic that
//! is not a test's own, and each test checks that there were none.

mod common;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::bridge::*;
use common::*;
use futures_util::StreamExt;
use hyco::protocol::{self, Action, client_url};
use hyco::secret::Secret;
use hyco::ws::frame::{FrameHeader, MAX_HEADER_LEN, OpCode};
use hyco::ws::handshake;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

// ---------------------------------------------------------------------------------------
// Panics outside the tests' own code

static FOREIGN_PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Records every panic whose location is not under `tests/` (the relay's, or a library's
/// on the relay's behalf), then lets the default hook print it.
fn watch_panics() {
    static HOOK: OnceLock<()> = OnceLock::new();
    HOOK.get_or_init(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !info.location().is_some_and(|l| l.file().starts_with("tests/")) {
                FOREIGN_PANICS.lock().unwrap_or_else(|e| e.into_inner()).push(info.to_string());
            }
            default(info);
        }));
    });
}

fn assert_no_panics() {
    let panics = FOREIGN_PANICS.lock().unwrap_or_else(|e| e.into_inner());
    assert!(panics.is_empty(), "the relay panicked: {panics:#?}");
}

/// An honest listener and sender on a fresh HC can still meet and talk.
async fn honest_pair_works(relay: &TestRelay) {
    static N: AtomicUsize = AtomicUsize::new(0);
    let hc = format!("honest-{}", N.fetch_add(1, Ordering::Relaxed));
    let mut l = listen(relay, &hc).await;
    let (mut s, mut lws) = rendezvous(relay, &mut l, &hc).await;
    exchange(&mut s, &mut lws).await;
}

/// The relay with its honest check and the panic watch, for the end of each test.
async fn relay_still_fine(relay: &TestRelay) {
    honest_pair_works(relay).await;
    assert_no_panics();
}

// ---------------------------------------------------------------------------------------
// Raw requests

const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// An upgrade request head for `target` carrying the usual headers (a good listen token
/// for `hc` among them) except those named in `without`, then `extra`.
fn head(target: &str, without: &[&str], extra: &[(&str, &str)]) -> String {
    let token = token("hc");
    let usual = [
        ("Host", "127.0.0.1"),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", WS_KEY),
        ("Sec-WebSocket-Version", "13"),
        (protocol::TOKEN_HEADER, token.as_str()),
    ];
    let mut out = format!("GET {target} HTTP/1.1\r\n");
    for (name, value) in usual.iter().filter(|(n, _)| !without.iter().any(|w| w.eq_ignore_ascii_case(n))) {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    for (name, value) in extra {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out
}

const LISTEN: &str = "/$hc/hc?sb-hc-action=listen";

/// `ServiceBusAuthorization: token` for [`head`]'s extra headers.
fn auth_header(token: &str) -> (&'static str, &str) {
    (protocol::TOKEN_HEADER, token)
}

/// Writes `request` on a fresh connection and returns the status of the answer. After an
/// error answer the relay must hang up; a 101 is dropped at once.
async fn status_for(relay: &TestRelay, request: &[u8]) -> u16 {
    let mut tcp = within("connect", TcpStream::connect(relay.addr)).await.expect("connect");
    // A relay that refuses early may stop reading (and reset) before all of a huge
    // request is written; its answer is what counts.
    let _ = within("write the request", tcp.write_all(request)).await;
    let mut got = Vec::new();
    let mut buf = [0; 4096];
    let end = within("the relay's answer", async {
        loop {
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                return Some(end);
            }
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&got).into_owned();
    let Some(end) = end else { panic!("no answer to {:?}; got {text:?}", String::from_utf8_lossy(request)) };
    let status = status_of(&text[..end]);
    assert_ne!(status, 500, "a relay fault: {text}");
    if status != 101 {
        within("the relay to hang up after an error answer", async {
            while let Ok(n) = tcp.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
    }
    status
}

/// Checks each `(what, request, status)`.
async fn expect_statuses(relay: &TestRelay, cases: Vec<(&str, Vec<u8>, u16)>) {
    let mut wrong = Vec::new();
    for (what, request, want) in cases {
        let got = status_for(relay, &request).await;
        if got != want {
            wrong.push(format!("{what}: got {got}, want {want}"));
        }
    }
    assert!(wrong.is_empty(), "unexpected answers:\n{}", wrong.join("\n"));
}

#[tokio::test]
async fn malformed_upgrade_requests_get_400_or_431() {
    watch_panics();
    let relay = TestRelay::start(settings()).await;
    let ok = head(LISTEN, &[], &[]);
    let mut non_utf8 = head(LISTEN, &[], &[]).into_bytes();
    non_utf8.truncate(non_utf8.len() - 2);
    non_utf8.extend_from_slice(b"X-Bytes: \xff\xfe\xfd\r\n\r\n");
    let many: Vec<(String, String)> = (0..200).map(|i| (format!("X-H{i}"), "v".to_owned())).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let huge = "h".repeat(40 * 1024);
    let b = |s: String| s.into_bytes();
    let cases = vec![
        ("the request as is", b(ok.clone()), 101),
        ("a garbage request line", b"HELLO\r\n\r\n".to_vec(), 400),
        ("binary noise", b"\x00\x01\x02\x03\x04\r\n\r\n".to_vec(), 400),
        ("HTTP/1.0", b(ok.replace("HTTP/1.1", "HTTP/1.0")), 400),
        ("the HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(), 400),
        ("POST", b(ok.replacen("GET", "POST", 1)), 400),
        ("no Upgrade", b(head(LISTEN, &["Upgrade"], &[])), 400),
        ("Upgrade: h2c", b(head(LISTEN, &["Upgrade"], &[("Upgrade", "h2c")])), 400),
        ("no Connection", b(head(LISTEN, &["Connection"], &[])), 400),
        ("no Sec-WebSocket-Key", b(head(LISTEN, &["Sec-WebSocket-Key"], &[])), 400),
        ("two Sec-WebSocket-Key", b(head(LISTEN, &[], &[("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAAAA==")])), 400),
        ("a short key", b(head(LISTEN, &["Sec-WebSocket-Key"], &[("Sec-WebSocket-Key", "c2hvcnQ=")])), 400),
        ("a key not in base64", b(head(LISTEN, &["Sec-WebSocket-Key"], &[("Sec-WebSocket-Key", "!!!!")])), 400),
        ("version 8", b(head(LISTEN, &["Sec-WebSocket-Version"], &[("Sec-WebSocket-Version", "8")])), 400),
        ("two versions", b(head(LISTEN, &[], &[("Sec-WebSocket-Version", "13")])), 400),
        ("a header line without a colon", b(ok.replacen("\r\n", "\r\nBogus\r\n", 1)), 400),
        ("a space in a header name", b(head(LISTEN, &[], &[("Bad Name", "x")])), 400),
        ("a folded header line", b(ok.replacen("\r\n", "\r\nX-Folded: a\r\n b\r\n", 1)), 400),
        ("a header value that is not UTF-8", non_utf8, 400),
        ("a 40 KiB header", b(head(LISTEN, &[], &[("X-Huge", &huge)])), 431),
        ("200 headers", b(head(LISTEN, &[], &many)), 431),
    ];
    expect_statuses(&relay, cases).await;
    relay_still_fine(&relay).await;
}

#[tokio::test]
async fn hostile_paths_and_queries_get_400_or_404() {
    watch_panics();
    let relay = TestRelay::start(settings()).await;
    let listen_at = |target: &str| head(target, &[], &[]).into_bytes();
    let deep = format!("/$hc/{}?sb-hc-action=listen", ["a"; 40].join("/"));
    let cases = vec![
        ("bad percent-encoding", listen_at("/$hc/%zz?sb-hc-action=listen"), 400),
        ("a truncated escape", listen_at("/$hc/hc%?sb-hc-action=listen"), 400),
        ("an escape that is not UTF-8", listen_at("/$hc/%C3%28?sb-hc-action=listen"), 400),
        ("a dot-dot segment", listen_at("/$hc/..?sb-hc-action=listen"), 400),
        ("a dot-dot after the name", listen_at("/$hc/hc/..?sb-hc-action=listen"), 400),
        ("an encoded dot-dot", listen_at("/$hc/%2e%2E?sb-hc-action=listen"), 400),
        ("a dot segment", listen_at("/$hc/./hc?sb-hc-action=listen"), 400),
        ("an encoded slash", listen_at("/$hc/a%2Fb?sb-hc-action=listen"), 400),
        ("an encoded backslash", listen_at("/$hc/a%5Cb?sb-hc-action=listen"), 400),
        ("an encoded NUL", listen_at("/$hc/a%00b?sb-hc-action=listen"), 400),
        ("an encoded line feed", listen_at("/$hc/a%0D%0Ab?sb-hc-action=listen"), 400),
        ("an encoded question mark", listen_at("/$hc/a%3Fb?sb-hc-action=listen"), 400),
        ("an empty segment", listen_at("/$hc//hc?sb-hc-action=listen"), 400),
        ("no name at all", listen_at("/$hc/?sb-hc-action=listen"), 400),
        ("40 segments", listen_at(&deep), 400),
        ("no $hc/ prefix", listen_at("/$hc?sb-hc-action=listen"), 404),
        ("the root", listen_at("/"), 404),
        ("dot-dot before $hc", listen_at("/../$hc/hc?sb-hc-action=listen"), 404),
        ("a double slash before $hc", listen_at("//$hc/hc?sb-hc-action=listen"), 404),
        ("an absolute-form target", listen_at("http://127.0.0.1/$hc/hc?sb-hc-action=listen"), 404),
        ("an asterisk target", listen_at("*"), 404),
        ("two actions", listen_at("/$hc/hc?sb-hc-action=listen&sb-hc-action=listen"), 400),
        ("an action in capitals", listen_at("/$hc/hc?sb-hc-action=LISTEN"), 400),
        ("an empty action", listen_at("/$hc/hc?sb-hc-action="), 400),
        ("two ids", listen_at("/$hc/hc?sb-hc-action=listen&sb-hc-id=a&sb-hc-id=b"), 400),
        ("two query tokens", listen_at("/$hc/hc?sb-hc-action=listen&sb-hc-token=a&sb-hc-token=b"), 400),
        ("a bad escape in a parameter name", listen_at("/$hc/hc?%zz=1&sb-hc-action=listen"), 400),
        ("a bad escape in a parameter value", listen_at("/$hc/hc?a=%&sb-hc-action=listen"), 400),
        ("a bad status code", listen_at("/$hc/hc?sb-hc-action=accept&sb-hc-id=x_y&sb-hc-statusCode=abc"), 400),
        ("an absurd status code", listen_at("/$hc/hc?sb-hc-action=accept&sb-hc-id=x_y&sb-hc-statusCode=99999"), 400),
        // Odd but valid: a listener gets its control channel.
        (
            "a UTF-8 name",
            head("/$hc/caf%C3%A9?sb-hc-action=listen", &[protocol::TOKEN_HEADER], &[auth_header(&token("café"))])
                .into_bytes(),
            101,
        ),
        (
            "2,500 unknown sb-hc- parameters",
            listen_at(&format!("/$hc/hc?{}sb-hc-action=listen", "sb-hc-x=1&".repeat(2500))),
            101,
        ),
        ("10,000 app parameters", listen_at(&format!("/$hc/hc?{}sb-hc-action=listen", "a&".repeat(10_000))), 101),
        ("a 30 KiB parameter", listen_at(&format!("/$hc/hc?p={}&sb-hc-action=listen", "v".repeat(30 * 1024))), 101),
        ("50,000 parameters", listen_at(&format!("/$hc/hc?{}sb-hc-action=listen", "a&".repeat(50_000))), 431),
    ];
    expect_statuses(&relay, cases).await;
    relay_still_fine(&relay).await;
}

#[tokio::test]
async fn absurd_queries_reach_the_listener_untouched() {
    watch_panics();
    let relay = TestRelay::start(settings()).await;
    let mut l = listen(&relay, "hc").await;
    for app_query in ["a&".repeat(10_000).trim_end_matches('&').to_owned(), format!("big={}", "v".repeat(30 * 1024))] {
        let url = client_url(&relay.base(), "hc", None, &app_query, Action::Connect, None);
        let (addr, headers) = (relay.addr, vec![auth(&token("hc"))]);
        let sender = tokio::spawn(async move { raw_upgrade(addr, &url, &headers).await });
        let a = l.next_accept().await;
        assert!(a.address.contains(&format!("?{app_query}&sb-hc-action=accept")), "the app query, untouched");
        let mut lws = raw_upgrade(relay.addr, &a.address, &[]).await.expect("accept");
        let mut s = within("sender", sender).await.expect("sender task").expect("sender upgrade");
        s.send(OpCode::Binary, b"through").await;
        assert_eq!(lws.next_data().await, (OpCode::Binary, b"through".to_vec()));
    }
    relay_still_fine(&relay).await;
}

// ---------------------------------------------------------------------------------------
// Tokens

/// The fields of a good token for `hc`, in the order the clients write them.
fn token_fields(hc: &str, key_name: &str, key: &str, expiry: u64) -> Vec<String> {
    let t = token_with(hc, key_name, key, expiry);
    t.trim_start_matches("SharedAccessSignature ").split('&').map(str::to_owned).collect()
}

fn token_of(fields: &[String]) -> String {
    format!("SharedAccessSignature {}", fields.join("&"))
}

#[tokio::test]
async fn bent_tokens_are_refused_and_odd_valid_ones_are_served() {
    watch_panics();
    let relay = TestRelay::start(settings()).await;
    let later = protocol::unix_now() + 3600;
    let good = token_fields("hc", KEY_NAME, KEY, later);
    let [sr, sig, se, skn] = [0, 1, 2, 3].map(|i| good[i].clone());
    let with_token =
        |token: &str| head(LISTEN, &[protocol::TOKEN_HEADER], &[(protocol::TOKEN_HEADER, token)]).into_bytes();
    let send_key = hyco::sas::derive_key(&Secret::new(KEY), hyco::sas::SEND_KEY_NAME);
    let f = |parts: &[&String]| token_of(&parts.iter().map(|s| (*s).clone()).collect::<Vec<_>>());
    let cases = vec![
        ("the token as minted", with_token(&token_of(&good)), 101),
        ("fields reordered", with_token(&f(&[&skn, &se, &sig, &sr])), 101),
        (
            "the prefix in lower case",
            with_token(&token_of(&good).replacen("SharedAccessSignature", "sharedaccesssignature", 1)),
            101,
        ),
        ("empty parts", with_token(&format!("SharedAccessSignature &{}&&{}&{}&{}&", sr, sig, se, skn)), 101),
        ("another host, same path", with_token(&token_with_audience("http://elsewhere.example/hc", later)), 101),
        ("an extra field", with_token(&format!("{}&foo=bar", token_of(&good))), 401),
        ("no sr", with_token(&f(&[&sig, &se, &skn])), 401),
        ("no sig", with_token(&f(&[&sr, &se, &skn])), 401),
        ("no se", with_token(&f(&[&sr, &sig, &skn])), 401),
        ("no skn", with_token(&f(&[&sr, &sig, &se])), 401),
        ("se twice", with_token(&f(&[&sr, &sig, &se, &se, &skn])), 401),
        ("sig twice", with_token(&f(&[&sr, &sig, &sig, &se, &skn])), 401),
        ("se past u64", with_token(&f(&[&sr, &sig, &"se=99999999999999999999999".into(), &skn])), 401),
        ("se negative", with_token(&f(&[&sr, &sig, &"se=-1".into(), &skn])), 401),
        ("se with a plus", with_token(&f(&[&sr, &sig, &format!("se=+{later}"), &skn])), 401),
        ("se changed", with_token(&f(&[&sr, &sig, &format!("se={}", later + 1), &skn])), 401),
        ("an unknown key name", with_token(&f(&[&sr, &sig, &se, &"skn=Nobody".into()])), 401),
        ("another rule's name", with_token(&f(&[&sr, &sig, &se, &"skn=hyco-send".into()])), 401),
        ("a garbage signature", with_token(&f(&[&sr, &"sig=AAAA".into(), &se, &skn])), 401),
        ("a bad escape in sig", with_token(&f(&[&sr, &"sig=%zz".into(), &se, &skn])), 401),
        ("an empty signature", with_token(&f(&[&sr, &"sig=".into(), &se, &skn])), 401),
        ("no prefix", with_token(&good.join("&")), 401),
        ("a Bearer token", with_token("Bearer abc"), 401),
        ("an empty header", with_token(""), 401),
        ("no token", head(LISTEN, &[protocol::TOKEN_HEADER], &[]).into_bytes(), 401),
        ("an expired token", with_token(&token_with("hc", KEY_NAME, KEY, protocol::unix_now() - 3600)), 401),
        ("a wrong key", with_token(&token_with("hc", KEY_NAME, "guess", later)), 401),
        ("a token for another HC", with_token(&token_with("other", KEY_NAME, KEY, later)), 401),
        ("a token for a name prefix", with_token(&token_with("h", KEY_NAME, KEY, later)), 401),
        ("a dot-dot audience", with_token(&token_with_audience("http://127.0.0.1/other/../hc", later)), 401),
        ("a Send-only rule", with_token(&token_with("hc", "hyco-send", send_key.expose(), later)), 403),
        ("an 8 KiB token", with_token(&format!("{}&x={}", token_of(&good), "x".repeat(8 * 1024))), 401),
        ("a 40 KiB token", with_token(&format!("{}&x={}", token_of(&good), "x".repeat(40 * 1024))), 431),
        (
            "a bad query token beside a good header",
            head(&format!("{LISTEN}&sb-hc-token=garbage"), &[], &[]).into_bytes(),
            101,
        ),
        (
            "a good query token beside a bad header",
            head(
                &format!("{LISTEN}&sb-hc-token={}", hyco::encoding::encode_component(&token("hc"))),
                &[protocol::TOKEN_HEADER],
                &[(protocol::TOKEN_HEADER, "garbage")],
            )
            .into_bytes(),
            401,
        ),
    ];
    expect_statuses(&relay, cases).await;
    relay_still_fine(&relay).await;
}

/// A token signed with [`KEY`] for the audience `sr` as given.
fn token_with_audience(sr: &str, expiry: u64) -> String {
    hyco::sas::mint(sr, KEY_NAME, &Secret::new(KEY), expiry).expose().to_owned()
}

#[tokio::test]
async fn a_token_that_expires_at_the_end_of_time_is_served() {
    watch_panics();
    let relay = TestRelay::start(settings()).await;
    // A key holder may sign any expiry; the largest one must not overflow the relay's clock.
    let forever = token_with("hc", KEY_NAME, KEY, u64::MAX);
    let url = relay.url("hc", Action::Listen);
    let (ws, _) = within("listen", ws_connect(relay.addr, &url, &[auth(&forever)])).await.expect("listen");
    let mut l = Listener { ws };
    let (mut s, mut lws) = rendezvous(&relay, &mut l, "hc").await;
    exchange(&mut s, &mut lws).await;
    // The same as a renewal on a live control channel.
    let mut l2 = listen(&relay, "hc2").await;
    l2.send_text(
        serde_json::json!({ "renewToken": { "token": token_with("hc2", KEY_NAME, KEY, u64::MAX) } }).to_string(),
    )
    .await;
    let (mut s, mut lws) = rendezvous(&relay, &mut l2, "hc2").await;
    exchange(&mut s, &mut lws).await;
    // And a sender with one.
    let sender = spawn_sender(
        relay.addr,
        relay.url("hc", Action::Connect),
        vec![auth(&token_with("hc", KEY_NAME, KEY, u64::MAX))],
    );
    let a = l.next_accept().await;
    let _lws = accept(relay.addr, &a, &[]).await;
    within("sender", sender).await.expect("sender task").expect("sender upgrade");
    relay_still_fine(&relay).await;
}

#[tokio::test]
async fn guessed_accept_addresses_get_403_and_the_real_one_still_works() {
    watch_panics();
    let relay = TestRelay::start(settings()).await;
    let mut l = listen(&relay, "hc").await;
    let sender = spawn_sender(relay.addr, relay.url("hc", Action::Connect), vec![auth(&token("hc"))]);
    let a = l.next_accept().await;
    let (_, secret) = a.address.rsplit_once("_").expect("an id with a secret");
    let accept_at =
        |query: &str| head(&format!("/$hc/hc?sb-hc-action=accept{query}"), &[protocol::TOKEN_HEADER], &[]).into_bytes();
    let cases = vec![
        ("no id", accept_at(""), 403),
        ("an id without a secret", accept_at(&format!("&sb-hc-id={}", a.id)), 403),
        ("an empty secret", accept_at(&format!("&sb-hc-id={}_", a.id)), 403),
        ("only an underscore", accept_at("&sb-hc-id=_"), 403),
        ("a zero secret", accept_at(&format!("&sb-hc-id={}_{}", a.id, "0".repeat(32))), 403),
        ("the secret in capitals", accept_at(&format!("&sb-hc-id={}_{}", a.id, secret.to_uppercase())), 403),
        ("the secret cut short", accept_at(&format!("&sb-hc-id={}_{}", a.id, &secret[..secret.len() - 1])), 403),
        ("the secret twice", accept_at(&format!("&sb-hc-id={}_{secret}{secret}", a.id)), 403),
        ("a huge id", accept_at(&format!("&sb-hc-id={}_{secret}", "x".repeat(20_000))), 101),
    ];
    // The last case knows the secret (the id before it is free text): it takes the sender.
    expect_statuses(&relay, cases).await;
    let (status, _) = refused(raw_upgrade(relay.addr, &a.address, &[]).await);
    assert_eq!(status, 403, "the accept address was used");
    // The sender was joined to the last case's connection, which is gone: it ends.
    let (mut s, _) = within("sender", sender).await.expect("sender task").expect("sender upgrade");
    let end = within("the sender's tunnel to end", s.next()).await;
    assert!(!matches!(end, Some(Ok(Message::Binary(_) | Message::Text(_)))), "{end:?}");

    // A fresh sender with a real accept still works.
    let (mut s, mut lws) = rendezvous(&relay, &mut l, "hc").await;
    exchange(&mut s, &mut lws).await;
    relay_still_fine(&relay).await;
}

// ---------------------------------------------------------------------------------------
// After the handshake

/// A raw sender and a raw accepting listener joined through the relay on `hc`.
async fn raw_pair(relay: &TestRelay, l: &mut Listener, hc: &'static str) -> (RawWs, RawWs) {
    let (addr, url) = (relay.addr, relay.url(hc, Action::Connect));
    let sender = tokio::spawn(async move { raw_upgrade(addr, &url, &[auth(&token(hc))]).await });
    let a = l.next_accept().await;
    let listener = raw_upgrade(relay.addr, &a.address, &[]).await.expect("accept");
    let sender = within("sender", sender).await.expect("sender task").expect("sender upgrade");
    (sender, listener)
}

/// How a raw connection ends: the code of a Close (pings, pongs and data skipped), `None`
/// if it ends without one.
async fn close_code(ws: &mut RawWs) -> Option<u16> {
    within("the connection to close", async {
        loop {
            let h = match ws.reader.header().await {
                Ok(Some(h)) => h,
                Ok(None) | Err(_) => return None,
            };
            let mut payload = Vec::new();
            let mut buf = [0; 4096];
            loop {
                match ws.reader.payload(&mut buf).await {
                    Ok(0) => break,
                    Ok(n) => payload.extend_from_slice(&buf[..n]),
                    Err(_) => return None,
                }
            }
            if h.opcode == OpCode::Close {
                return Some(payload.get(..2).map_or(1005, |c| u16::from_be_bytes([c[0], c[1]])));
            }
        }
    })
    .await
}

const MASK: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

/// Raw frame bytes from a client: `b0`, then a masked length byte and the mask.
fn masked(b0: u8, len: u8) -> Vec<u8> {
    let mut out = vec![b0, 0x80 | len];
    out.extend_from_slice(&MASK);
    out.extend(std::iter::repeat_n(0, usize::from(len)));
    out
}

/// Frames that break RFC 6455 section 5, as a client would send them.
fn bad_frames() -> Vec<(&'static str, Vec<u8>)> {
    let mut long_ping = vec![0x89, 0x80 | 126, 0, 126];
    long_ping.extend_from_slice(&MASK);
    long_ping.extend(std::iter::repeat_n(0, 126));
    let mut huge_len = vec![0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0];
    huge_len.extend_from_slice(&MASK);
    vec![
        ("RSV1 set", masked(0xC2, 0)),
        ("RSV3 set", masked(0x92, 0)),
        ("a reserved data opcode", masked(0x83, 0)),
        ("a reserved control opcode", masked(0x8B, 0)),
        ("an unmasked client frame", vec![0x82, 0x01, b'x']),
        ("a fragmented ping", masked(0x09, 0)),
        ("a 126-byte ping", long_ping),
        ("a length over 2^63", huge_len),
    ]
}

#[tokio::test]
async fn framing_errors_on_a_tunnel_close_the_offender_with_1002_and_its_peer_with_1011() {
    watch_panics();
    let relay = TestRelay::start(settings()).await;
    let mut l = listen(&relay, "hc").await;
    let (mut bystander_s, mut bystander_l) = rendezvous(&relay, &mut l, "hc").await;
    for (sender_offends, (what, bytes)) in
        bad_frames().into_iter().map(|c| (true, c)).chain([(false, bad_frames().remove(0))])
    {
        let (sender, listener) = raw_pair(&relay, &mut l, "hc").await;
        let (mut offender, mut peer) = if sender_offends { (sender, listener) } else { (listener, sender) };
        // Some good traffic first, so that the error comes mid-stream.
        offender.send(OpCode::Binary, b"fine so far").await;
        assert_eq!(peer.next_data().await, (OpCode::Binary, b"fine so far".to_vec()));
        within("write a bad frame", offender.writer.get_mut().write_all(&bytes)).await.expect("write");
        let side = if sender_offends { "sender" } else { "listener" };
        assert_eq!(close_code(&mut offender).await, Some(1002), "{what} from the {side}");
        assert_eq!(close_code(&mut peer).await, Some(1011), "the peer of {what} from the {side}");
    }
    exchange(&mut bystander_s, &mut bystander_l).await;
    relay_still_fine(&relay).await;
}

#[tokio::test]
async fn text_and_oversize_frames_pass_through_a_tunnel_uninterpreted() {
    watch_panics();
    let relay = TestRelay::start(settings()).await;
    let mut l = listen(&relay, "hc").await;
    let (mut bystander_s, mut bystander_l) = rendezvous(&relay, &mut l, "hc").await;

    // Text that is not UTF-8, and a continuation with nothing to continue: the relay does
    // not judge messages, only frames; the ends do.
    let (mut s, mut lws) = raw_pair(&relay, &mut l, "hc").await;
    s.send(OpCode::Text, b"\xff\xfe not UTF-8").await;
    assert_eq!(
        lws.next_frame().await.map(|(h, p)| (h.opcode, p)),
        Some((OpCode::Text, b"\xff\xfe not UTF-8".to_vec()))
    );
    s.send(OpCode::Continuation, b"orphan").await;
    assert_eq!(lws.next_frame().await.map(|(h, p)| (h.opcode, p)), Some((OpCode::Continuation, b"orphan".to_vec())));

    // A frame that claims a terabyte is streamed in pieces as it comes.
    const CLAIM: u64 = 1 << 40;
    const SENT: usize = 4 << 20;
    let header = FrameHeader { fin: true, opcode: OpCode::Binary, mask: None, len: CLAIM };
    let mut buf = vec![7u8; MAX_HEADER_LEN + 64 * 1024];
    within("the frame's start", s.writer.send_with_header(header, &mut buf, 64 * 1024)).await.expect("send");
    let got = lws.reader.header().await.expect("header").expect("a frame");
    assert_eq!((got.opcode, got.len), (OpCode::Binary, CLAIM));
    let reading = async {
        let mut buf = vec![0; 64 * 1024];
        let mut n = 0;
        while n < SENT {
            n += lws.reader.payload(&mut buf).await.expect("payload");
        }
    };
    let writing = async {
        for _ in 1..SENT / (64 * 1024) {
            let mut piece = vec![7u8; 64 * 1024];
            s.writer.continue_payload(&mut piece).await.expect("more payload");
        }
    };
    within("4 MiB of the claimed terabyte", async { tokio::join!(reading, writing) }).await;
    // The sender leaves mid-frame: no Close can follow, the listener's stream just ends.
    drop(s);
    let mut rest = vec![0; 64 * 1024];
    let end = within("the listener's stream to end", async {
        loop {
            match lws.reader.payload(&mut rest).await {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e.kind()),
            }
        }
    })
    .await;
    assert_eq!(end, Err(std::io::ErrorKind::UnexpectedEof));

    // Through `hyco listen`, a text frame is bytes like any other.
    let target = Target::echo().await;
    let _listening = Listening::start(client(relay.addr), listen_settings("bridged", &[target.spec()])).await;
    let (addr, url) = (relay.addr, relay.url("bridged", Action::Connect));
    let mut s = raw_upgrade(addr, &url, &[auth(&token("bridged"))]).await.expect("sender");
    s.send(OpCode::Text, b"text as bytes").await;
    assert_eq!(s.next_data().await, (OpCode::Binary, b"text as bytes".to_vec()));

    exchange(&mut bystander_s, &mut bystander_l).await;
    relay_still_fine(&relay).await;
}

#[tokio::test]
async fn framing_errors_and_bad_messages_on_a_control_channel_close_it_with_a_code() {
    watch_panics();
    let relay = TestRelay::start(settings()).await;
    let mut bystander = listen(&relay, "hc").await;
    let raw_listener = || async {
        raw_upgrade(relay.addr, &relay.url("hc", Action::Listen), &[auth(&token("hc"))]).await.expect("listen")
    };
    // tungstenite checks a frame's length against the limit first: 1009 for that one.
    let mut cases: Vec<(&str, Vec<u8>, u16)> =
        bad_frames().into_iter().map(|(w, b)| (w, b, if w == "a length over 2^63" { 1009 } else { 1002 })).collect();
    cases.push(("a continuation with nothing to continue", masked(0x80, 0), 1002));
    let mut giant = vec![0x81, 0x80 | 127, 0, 0, 0, 0, 0x40, 0, 0, 0];
    giant.extend_from_slice(&MASK);
    cases.push(("a frame claiming 1 GiB", giant, 1009));
    let mut wrong = Vec::new();
    for (what, bytes, want) in cases {
        let mut l = raw_listener().await;
        within("write", l.writer.get_mut().write_all(&bytes)).await.expect("write");
        let got = close_code(&mut l).await;
        if got != Some(want) {
            wrong.push(format!("{what}: got {got:?}, want {want}"));
        }
    }
    let messages: Vec<(&str, OpCode, Vec<u8>, u16)> = vec![
        ("text that is not UTF-8", OpCode::Text, b"{\"renewToken\xff".to_vec(), 1007),
        ("JSON nested 50,000 deep", OpCode::Text, "[".repeat(50_000).into_bytes(), 1003),
        ("renewToken without a token", OpCode::Text, br#"{"renewToken":{}}"#.to_vec(), 1003),
        ("renewToken with a number", OpCode::Text, br#"{"renewToken":{"token":5}}"#.to_vec(), 1003),
        ("two commands at once", OpCode::Text, br#"{"renewToken":{"token":"x"},"accept":{}}"#.to_vec(), 1003),
        ("an accept, backwards", OpCode::Text, br#"{"accept":{"address":"ws://x","id":"y"}}"#.to_vec(), 1003),
        ("a JSON string", OpCode::Text, br#""renewToken""#.to_vec(), 1003),
        ("renewToken with garbage", OpCode::Text, br#"{"renewToken":{"token":"garbage"}}"#.to_vec(), 1008),
    ];
    for (what, opcode, payload, want) in messages {
        let mut l = raw_listener().await;
        l.send(opcode, &payload).await;
        let got = close_code(&mut l).await;
        if got != Some(want) {
            wrong.push(format!("{what}: got {got:?}, want {want}"));
        }
    }
    assert!(wrong.is_empty(), "unexpected ends:\n{}", wrong.join("\n"));

    // A renewal in three fragments, with a ping between them, is fine.
    let mut l = raw_listener().await;
    let renew = serde_json::json!({ "renewToken": { "token": token("hc") } }).to_string();
    let (a, rest) = renew.as_bytes().split_at(10);
    let (b, c) = rest.split_at(10);
    l.send_frame(false, OpCode::Text, a).await;
    l.send_frame(false, OpCode::Continuation, b).await;
    l.send(OpCode::Ping, b"still here").await;
    l.send_frame(true, OpCode::Continuation, c).await;
    let pong = l.next_frame().await.expect("a pong");
    assert_eq!((pong.0.opcode, pong.1.as_slice()), (OpCode::Pong, &b"still here"[..]));
    drop(l);

    let (mut s, mut lws) = rendezvous(&relay, &mut bystander, "hc").await;
    exchange(&mut s, &mut lws).await;
    relay_still_fine(&relay).await;
}

#[tokio::test]
async fn an_accept_too_large_for_the_listener_is_refused_to_the_sender_with_431() {
    watch_panics();
    let relay = TestRelay::start(settings()).await;
    let target = Target::echo().await;
    let listening = Listening::start(client(relay.addr), listen_settings("big", &[target.spec()])).await;
    let mut channels = listening.stats.channels.subscribe();
    channels.mark_unchanged();
    let base = relay.base();
    // Within the 32 KiB head limit, but the accept grows: each `!` of the path suffix is 3
    // bytes in the accept address (`%21`); each `"` of the id is 3 there and 2 more in
    // the JSON `id`, and each `"` of a header 2 in the JSON. Neither the listener (or any
    // official client: 64 KiB buffers) could read such an accept, nor the relay take its
    // address back on the listener's accept request.
    let quotes = "\"".repeat(24_000);
    let too_big = [
        (format!("{base}/$hc/big/{}?sb-hc-action=connect", "!".repeat(30_000)), None),
        (format!("{base}/$hc/big?sb-hc-action=connect&sb-hc-id={}", "\"".repeat(6_000)), Some(quotes)),
    ];
    for (url, header) in too_big {
        let mut headers = vec![auth(&token("big"))];
        headers.extend(header.map(|q| ("X-Quotes", q)));
        let started = Instant::now();
        let (status, reason) = refused(raw_upgrade(relay.addr, &url, &headers).await);
        assert_eq!(status, 431, "{reason}");
        assert!(started.elapsed() < Duration::from_secs(1), "refused only after {:?}", started.elapsed());
        assert!(!channels.has_changed().expect("stats alive"), "the listener's control channel went down");
    }
    // A big one that fits is delivered and accepted.
    let url = format!("{base}/$hc/big/{}?sb-hc-action=connect", "!".repeat(9_000));
    let mut s = raw_upgrade(relay.addr, &url, &[auth(&token("big"))]).await.expect("a big accept that fits");
    s.send(OpCode::Binary, b"made it").await;
    assert_eq!(s.next_data().await, (OpCode::Binary, b"made it".to_vec()));
    assert!(!channels.has_changed().expect("stats alive"), "the listener's control channel went down");
    relay_still_fine(&relay).await;
}

// ---------------------------------------------------------------------------------------
// Slow peers

/// Opens a sender to `url` with extra headers and waits (up to 20 s) for the answer;
/// `Err` with the status of a refusal.
async fn sender_answer(addr: std::net::SocketAddr, url: String, headers: Vec<(String, String)>) -> Result<(), String> {
    let (host, target) = split_url(&url);
    let attempt = async {
        let mut tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        handshake::client(&mut tcp, host, target, &headers, 64 * 1024).await.map(drop).map_err(|e| e.to_string())
    };
    tokio::time::timeout(Duration::from_secs(20), attempt).await.unwrap_or_else(|_| Err("no answer in 20 s".into()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_that_stop_reading_do_not_hold_the_relay() {
    const MUTE_SENDERS: usize = 200;
    watch_panics();
    let mut settings = settings();
    settings.limits.ping_interval = Duration::from_secs(1);
    settings.limits.drain_timeout = Duration::from_millis(500);
    let relay = TestRelay::start(settings).await;

    // A listener that pings (so it is never silent) but never reads its control channel,
    // and senders whose accept messages (60 KiB each: a header of 29 KiB of `"`, escaped
    // in JSON) fill its socket; the relay's send buffer alone takes megabytes.
    let mut mute =
        raw_upgrade(relay.addr, &relay.url("mute", Action::Listen), &[auth(&token("mute"))]).await.expect("mute");
    let pinger = tokio::spawn(async move {
        while mute.writer.send(OpCode::Ping, b"alive").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let quotes = "\"".repeat(29 * 1024);
    let started = Instant::now();
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..MUTE_SENDERS {
        let headers = vec![(protocol::TOKEN_HEADER.to_owned(), token("mute")), ("X-Quotes".to_owned(), quotes.clone())];
        senders.spawn(sender_answer(relay.addr, relay.url("mute", Action::Connect), headers));
    }
    // A tunnel stalled both ways: each end pushes and neither reads.
    let mut l = listen(&relay, "hc").await;
    let (s, lws) = raw_pair(&relay, &mut l, "hc").await;
    let pushed = Arc::new(AtomicU64::new(0));
    let pushers: Vec<_> = [s, lws]
        .into_iter()
        .map(|mut ws| {
            let pushed = pushed.clone();
            tokio::spawn(async move {
                let frame = vec![9u8; 1 << 20];
                while ws.writer.send(OpCode::Binary, &frame).await.is_ok() {
                    pushed.fetch_add(1, Ordering::Relaxed);
                }
                ws
            })
        })
        .collect();

    // The relay gives up on the listener once an accept has waited a ping interval.
    within_for(Duration::from_secs(15), "the relay to drop the listener that stopped reading", async {
        while relay.metrics.listeners("mute") > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let dropped_after = started.elapsed();
    assert!(dropped_after >= Duration::from_millis(950), "dropped after {dropped_after:?}, before any send waited 1 s");
    within("the tunnel to stall", async {
        let mut last = (u64::MAX, Instant::now());
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = pushed.load(Ordering::Relaxed);
            if now != last.0 {
                last = (now, Instant::now());
            } else if last.1.elapsed() >= Duration::from_millis(500) {
                return;
            }
        }
    })
    .await;
    // Meanwhile everyone else is served.
    honest_pair_works(&relay).await;

    // Shutdown is not held up by the stalled tunnel: it ends after the drain period.
    let stopping = Instant::now();
    relay.stop().await.expect("relay run");
    let took = stopping.elapsed();
    eprintln!("mute listener dropped {dropped_after:?} after the senders came; shutdown took {took:?}");
    assert!(took < Duration::from_secs(4), "shutdown took {took:?} with a drain period of 500 ms");
    let answers = within_for(Duration::from_secs(25), "the waiting senders to be answered", async {
        let mut answers = Vec::new();
        while let Some(r) = senders.join_next().await {
            answers.push(r.expect("sender task"));
        }
        answers
    })
    .await;
    assert!(answers.iter().all(Result::is_err), "a sender to a listener that never reads got through");
    pinger.abort();
    for p in pushers {
        p.abort();
    }
    assert_no_panics();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_slow_clients_do_not_stop_honest_ones() {
    const HALF_OPEN: usize = 1000;
    const TRICKLING: usize = 1000;
    // Short, with room for opening 2,000 connections on a busy machine first.
    const TIMEOUT: Duration = Duration::from_secs(3);
    watch_panics();
    raise_fd_limit(2 * (HALF_OPEN + TRICKLING) as u64 + 500);
    let mut settings = settings();
    settings.limits.handshake_timeout = TIMEOUT;
    let relay = TestRelay::start(settings).await;

    // Each is timed from before its connect: the relay cannot start its clock earlier.
    let started = Instant::now();
    let mut half_open = tokio::task::JoinSet::new();
    for _ in 0..HALF_OPEN {
        let opened = Instant::now();
        let mut tcp = within("connect", TcpStream::connect(relay.addr)).await.expect("connect");
        tcp.write_all(b"GET /$hc/hc?sb-hc-action=listen HTTP/1.1\r\nHost: x\r\n").await.expect("half a head");
        half_open.spawn(async move {
            let mut buf = [0; 64];
            let n = within_for(TIMEOUT * 4, "the relay to drop a half-open request", tcp.read(&mut buf)).await;
            assert!(matches!(n, Ok(0) | Err(_)), "the relay answered a half request: {n:?}");
            (opened, Instant::now())
        });
    }
    // A byte every 100 ms, never finishing the head.
    let mut trickling = Vec::new();
    for _ in 0..TRICKLING {
        let opened = Instant::now();
        let tcp = within("connect", TcpStream::connect(relay.addr)).await.expect("connect");
        tcp.try_write(b"GET /").expect("the first bytes");
        trickling.push((tcp, opened, None::<Instant>));
    }
    let opened_all = started.elapsed();
    let trickle = tokio::spawn(async move {
        let deadline = Instant::now() + TIMEOUT * 4;
        while trickling.iter().any(|t| t.2.is_none()) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            for (tcp, _, dropped) in trickling.iter_mut().filter(|t| t.2.is_none()) {
                let mut buf = [0; 64];
                let gone = match tcp.try_read(&mut buf) {
                    Ok(0) => true,
                    Ok(_) => panic!("the relay answered a trickling request"),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => tcp.try_write(b"a").is_err(),
                    Err(_) => true,
                };
                if gone {
                    *dropped = Some(Instant::now());
                }
            }
        }
        trickling.into_iter().map(|(_, opened, dropped)| (opened, dropped)).collect::<Vec<_>>()
    });

    // The honest pair, while all of them hang on.
    let honest_started = Instant::now();
    honest_pair_works(&relay).await;
    let honest_done = Instant::now();

    let mut ends = Vec::new();
    while let Some(r) = half_open.join_next().await {
        ends.push(r.expect("half-open task"));
    }
    let trickled = within_for(TIMEOUT * 5, "the trickle task", trickle).await.expect("trickle task");
    assert!(trickled.iter().all(|t| t.1.is_some()), "trickling connections outlived the handshake timeout");
    ends.extend(trickled.into_iter().map(|(opened, dropped)| (opened, dropped.expect("dropped"))));
    for (opened, dropped) in &ends {
        let lived = *dropped - *opened;
        assert!(lived >= TIMEOUT - Duration::from_millis(10), "dropped after only {lived:?}");
    }
    let first_drop = ends.iter().map(|e| e.1).min().expect("some");
    let last_drop = ends.iter().map(|e| e.1).max().expect("some");
    eprintln!(
        "{HALF_OPEN} half-open + {TRICKLING} trickling opened in {opened_all:?}; honest pair in {:?}; \
         dropped from {:?} to {:?} after the first was opened",
        honest_done - honest_started,
        first_drop - started,
        last_drop - started,
    );
    assert!(
        honest_done < first_drop,
        "the honest pair finished only after the first slow client was dropped (all opened in {opened_all:?})"
    );
    relay_still_fine(&relay).await;
}
