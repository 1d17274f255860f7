//! `hyco serve --dashboard`, with the real binary: the status page lists a listener and a
//! tunnel whose byte counts grow while data flows, as JSON and as HTML; the event stream
//! sends the throughput once a second; no key, token, signature or rendezvous secret is
//! on the page; and a page not on loopback answers 401 without a Manage token or the
//! configured secret.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use common::bridge::*;
use common::chromium::Page;
use common::{KEY_NAME, page_request, within};
use hyco::client::RelayClient;
use hyco::connstr::{Credential, Endpoint};
use hyco::secret::Secret;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `hyco serve --dashboard DASHBOARD` in `home`, with `env` set; the relay's address, the
/// page's, and the relay's key.
async fn serve(home: &Path, dashboard: &str, env: &[(&str, &str)]) -> (Proc, SocketAddr, SocketAddr, String) {
    let mut cmd = hyco(home);
    cmd.args(["serve", "--no-profile", "--bind", "127.0.0.1:0", "--dashboard", dashboard]);
    cmd.envs(env.iter().copied());
    let proc = Proc::spawn(cmd);
    let line = proc.stdout.wait_for(PROC_STEP, "the status page line", |l| l.starts_with("Status page on ")).await;
    let page: SocketAddr =
        line["Status page on http://".len()..].split('/').next().unwrap().parse().expect("an address");
    let relay = relay_address(&proc).await;
    let key = std::fs::read_to_string(home.join("data/namespace.key")).expect("the relay's key file");
    (proc, relay, page, key.trim().to_owned())
}

fn client(relay: SocketAddr, key: &str) -> RelayClient {
    let endpoint = Endpoint { secure: false, host: relay.ip().to_string(), port: relay.port() };
    RelayClient::new(endpoint, Credential::Key { name: KEY_NAME.into(), key: Secret::new(key) }, None).expect("client")
}

async fn status_json(page: SocketAddr) -> serde_json::Value {
    let (status, body) = page_request(page, "GET", "/api/status", &[]).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("JSON")
}

/// The most bytes a live tunnel carried sender to listener (a connector's prewarmed
/// tunnels are listed too, and carry none), once there is one.
fn tunnel_bytes(status: &serde_json::Value) -> Option<u64> {
    status["tunnels"].as_array()?.iter().filter_map(|t| t["sender_to_listener"].as_u64()).max()
}

#[tokio::test]
async fn the_page_shows_listeners_and_a_tunnel_whose_bytes_grow_and_no_secret() {
    let home = TempDir::new("dashboard");
    let (mut proc, relay, page, key) = serve(home.path(), "127.0.0.1:0", &[]).await;
    let echo = Target::echo().await;
    let listening = Listening::start(client(relay, &key), listen_settings("web", &[echo.spec()])).await;
    let status = status_json(page).await;
    let hc = &status["hybrid_connections"][0];
    assert_eq!(hc["name"], "web", "{status:#}");
    let listener = &hc["listeners"][0];
    assert!(listener["peer"].as_str().is_some_and(|p| p.starts_with("127.0.0.1:")), "{status:#}");
    assert!(listener["since"].as_u64().is_some(), "{status:#}");
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert!(status["limits"]["max_connections"].as_u64().is_some(), "{status:#}");

    // Data flows through one tunnel; its count grows between two looks while it is open.
    let bound = Bound::start(client(relay, &key), "web", None).await;
    let mut tcp = bound.connect().await;
    let mut buf = vec![0u8; 64 * 1024];
    let mut seen = Vec::new();
    for _ in 0..200 {
        tcp.write_all(&[7u8; 16 * 1024]).await.expect("write");
        let mut got = 0;
        while got < 16 * 1024 {
            got += within("the echo", tcp.read(&mut buf)).await.expect("read");
        }
        if let Some(n) = tunnel_bytes(&status_json(page).await) {
            seen.push(n);
            if seen.len() >= 2 && seen[seen.len() - 1] > seen[0] {
                break;
            }
        }
    }
    assert!(seen.len() >= 2 && seen[seen.len() - 1] > seen[0], "the tunnel's bytes grew: {seen:?}");
    let status = status_json(page).await;
    let tunnels = status["tunnels"].as_array().unwrap();
    assert!(tunnels.iter().all(|t| t["hc"] == "web"), "{status:#}");
    assert_eq!(status["tunnels_active"].as_u64(), Some(tunnels.len() as u64), "{status:#}");

    // The HTML shows the same, and every asset comes from the page itself.
    let (code, html) = page_request(page, "GET", "/", &[]).await;
    assert_eq!(code, 200);
    assert!(html.contains("<th scope=\"row\" rowspan=\"1\">web</th>"), "{html}");
    assert!(html.contains(&listener["peer"].as_str().unwrap().to_owned()), "{html}");
    assert!(html.contains("<h2 id=\"h-tun\">Tunnels</h2>") && html.contains(">web</td>"), "{html}");
    assert!(!html.contains("http://") || !html.contains("src=\"http"), "no asset from elsewhere");
    let (code, script) = page_request(page, "GET", "/dashboard.js", &[]).await;
    assert_eq!(code, 200);
    assert!(script.contains("EventSource(\"/api/events\")"));

    // Nothing secret: not the key, no token, no signature, no rendezvous address.
    for text in [html.as_str(), &status.to_string(), &script] {
        for secret in
            [key.as_str(), "SharedAccessSignature", "sig=", "sb-hc-token", "sb-hc-id", "sb-hc-action", "$hc/", "ws://"]
        {
            assert!(!text.contains(secret), "{secret:?} on the page: {text}");
        }
    }
    drop(tcp);
    bound.stop().await.expect("connect stops");
    listening.stop().await.expect("listen stops");
    assert!(proc.terminate().await.success(), "stderr:\n{}", proc.stderr.text());
}

#[tokio::test]
async fn the_event_stream_sends_an_event_a_second() {
    let home = TempDir::new("dashboard-sse");
    let (mut proc, _, page, _) = serve(home.path(), "127.0.0.1:0", &[]).await;
    let mut tcp = TcpStream::connect(page).await.expect("connect");
    tcp.write_all(b"GET /api/events HTTP/1.1\r\nHost: localhost\r\n\r\n").await.expect("write");
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    let started = std::time::Instant::now();
    while text.matches("\ndata: ").count() < 2 {
        let n = tokio::time::timeout(Duration::from_secs(3), tcp.read(&mut buf)).await.expect("an event in time");
        let n = n.expect("read");
        assert!(n > 0, "the stream ended: {text}");
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n") && text.contains("text/event-stream"), "{text}");
    assert!(started.elapsed() >= Duration::from_millis(900), "one a second: {:?}", started.elapsed());
    let event = text.split("\ndata: ").nth(2).unwrap().split("\n\n").next().unwrap();
    let event: serde_json::Value = serde_json::from_str(event).expect("JSON event");
    assert!(event["rate_sender_to_listener"].as_u64().is_some(), "{event}");
    drop(tcp);
    // HEAD gets the stream's head, and the connection closes.
    let mut tcp = TcpStream::connect(page).await.expect("connect");
    tcp.write_all(b"HEAD /api/events HTTP/1.1\r\nHost: localhost\r\n\r\n").await.expect("write");
    let mut head = String::new();
    within("the head and the close", tcp.read_to_string(&mut head)).await.expect("read");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.ends_with("\r\n\r\n"), "{head}");
    assert!(proc.terminate().await.success(), "stderr:\n{}", proc.stderr.text());
}

#[tokio::test]
async fn a_page_not_on_loopback_needs_a_manage_token_or_the_secret() {
    let home = TempDir::new("dashboard-auth");
    let secret = "correct horse battery staple";
    let (mut proc, relay, page, key) = serve(home.path(), "0.0.0.0:0", &[("HYCO_DASHBOARD_SECRET", secret)]).await;
    let page = SocketAddr::from(([127, 0, 0, 1], page.port()));
    for headers in
        [&[][..], &[("Authorization", "SharedAccessSignature sr=x&sig=y&se=1&skn=z")], &[("Authorization", "wrong")]]
    {
        let (code, body) = page_request(page, "GET", "/api/status", headers).await;
        assert_eq!(code, 401, "{headers:?}: {body}");
        assert!(body.contains("Manage-rights SAS token") && body.contains("Authorization"), "{body}");
        assert_eq!(page_request(page, "GET", "/", headers).await.0, 401);
        assert_eq!(page_request(page, "GET", "/api/events", headers).await.0, 401);
    }
    let expiry = hyco::protocol::unix_now() + 600;
    let token = hyco::sas::mint(&format!("http://{relay}/"), KEY_NAME, &Secret::new(key.as_str()), expiry);
    assert_eq!(page_request(page, "GET", "/api/status", &[("Authorization", token.expose())]).await.0, 200);
    // As an operator mints one: `hyco token --namespace --rights key` with the root key.
    let endpoint = format!("ws://{relay}");
    let out = hyco(home.path())
        .args(["token", "--namespace", "--rights", "key", "--ttl", "10m"])
        .args(key_flags(&endpoint, &key))
        .output()
        .await
        .expect("hyco token");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let minted = String::from_utf8(out.stdout).unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("token for the whole namespace"));
    assert_eq!(page_request(page, "GET", "/api/status", &[("Authorization", minted.trim())]).await.0, 200);
    let out = hyco(home.path()).args(["token", "--namespace", "web", "--rights", "key"]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(2), "an HC and --namespace conflict");
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("any:{secret}"));
    assert_eq!(page_request(page, "GET", "/", &[("Authorization", &format!("Basic {basic}"))]).await.0, 200);
    assert_eq!(page_request(page, "GET", "/", &[("Authorization", secret)]).await.0, 200);
    assert!(proc.terminate().await.success(), "stderr:\n{}", proc.stderr.text());
}

/// Headless Chromium opens the page before anything happens, then, without a reload (a
/// mark set on the page survives): a listener appears in the tables, a tunnel's bytes
/// grow there while data flows, the chart and the rates follow the events, and a
/// rejection shows with its count in the last minute. The README's screenshot is taken
/// here. Skipped without Chromium unless `HYCO_REQUIRE_CHROMIUM=1`.
#[tokio::test]
async fn in_chromium_a_listener_appears_and_bytes_grow_without_a_reload() {
    let home = TempDir::new("dashboard-chromium");
    let (mut proc, relay, page, key) = serve(home.path(), "127.0.0.1:0", &[]).await;
    let Some(mut browser) = Page::open(&format!("http://{page}/"), 1000, 1300).await else { return };
    let long = Duration::from_secs(15);
    let events = "Number((document.getElementById('events') || {}).textContent || 0)";
    browser.wait_for(long, "an event drawn", &format!("{events} >= 1")).await;
    browser.eval("window.hycoMark = 'kept'").await;
    let live = "document.getElementById('live').textContent";
    assert!(browser.eval(live).await.as_str().unwrap().contains("No hybrid connection yet"));

    // A listener connects: its HC and peer appear.
    let echo = Target::echo().await;
    let listening = Listening::start(client(relay, &key), listen_settings("web", &[echo.spec()])).await;
    browser
        .wait_for(long, "the listener's row", &format!("{live}.includes('web') && {live}.includes('127.0.0.1:')"))
        .await;

    // Data flows through a tunnel: its row appears and its bytes grow.
    let no_prewarm = hyco::client::prewarm::Prewarm { tunnels: 0, ..Default::default() };
    let bound = Bound::start_with(client(relay, &key), "web", None, no_prewarm).await;
    let mut tcp = bound.connect().await;
    let flowing = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            tcp.write_all(&[7u8; 64 * 1024]).await.expect("write");
            let mut got = 0;
            while got < 64 * 1024 {
                got += tcp.read(&mut buf).await.expect("read");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let bytes =
        "Number((document.querySelector('#live section[aria-labelledby=h-tun] td.num') || {}).textContent || 0)";
    browser.wait_for(long, "a tunnel's bytes", &format!("{bytes} > 0")).await;
    let first = browser.eval(bytes).await.as_u64().unwrap();
    browser.wait_for(long, "the tunnel's bytes to grow", &format!("{bytes} > {first}")).await;
    browser.wait_for(long, "a rate above 0", "Number(document.getElementById('rate-s2l').dataset.value) > 0").await;
    let points = browser.eval("document.getElementById('line-s2l').getAttribute('points')").await;
    assert!(points.as_str().is_some_and(|p| p.split(' ').count() >= 3), "the chart has points: {points}");

    // A sender without a token is rejected: counted in the last minute.
    let mut bad = TcpStream::connect(relay).await.expect("connect to the relay");
    bad.write_all(
        b"GET /$hc/web?sb-hc-action=connect HTTP/1.1\r\nHost: relay\r\nConnection: Upgrade\r\n\
        Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .expect("write");
    let mut answer = String::new();
    within("the rejection", bad.read_to_string(&mut answer)).await.expect("read");
    assert!(answer.starts_with("HTTP/1.1 401 "), "{answer}");
    let rejections = "document.querySelector('#live section[aria-labelledby=h-rej] tbody').textContent";
    browser.wait_for(long, "the rejection's row", &format!("{rejections}.includes('unauthorized')")).await;

    assert_eq!(browser.eval("window.hycoMark").await, "kept", "the page was not reloaded");
    // Updates do not move what is already on the page: the cumulative layout shift
    // Chromium measured since the page loaded stays under 0.1, the "good" threshold.
    let shift = browser
        .eval(
            "new Promise(done => { let sum = 0; new PerformanceObserver(list => { for (const e of list.getEntries()) \
             { sum += e.value; } }).observe({ type: 'layout-shift', buffered: true }); setTimeout(() => done(sum), 200); })",
        )
        .await;
    eprintln!("cumulative layout shift: {shift}");
    assert!(shift.as_f64().is_some_and(|s| s < 0.1), "layout shift {shift}");
    let (contrast, at) = browser.lowest_contrast().await;
    assert!(contrast >= 4.5, "text contrast {contrast:.2} below WCAG AA at {at}");
    browser.screenshot("dashboard").await;
    // The keyboard reaches the page's links, and focus shows.
    browser.press("Tab", "Tab", 9).await;
    browser.press("Tab", "Tab", 9).await;
    let focused = "[document.activeElement.textContent, getComputedStyle(document.activeElement).outlineStyle]";
    assert_eq!(browser.eval(focused).await, serde_json::json!(["/api/status", "solid"]));
    flowing.abort();
    browser.close().await;
    bound.stop().await.expect("connect stops");
    listening.stop().await.expect("listen stops");
    assert!(proc.terminate().await.success(), "stderr:\n{}", proc.stderr.text());
}

#[tokio::test]
async fn connections_over_the_limit_get_503() {
    use hyco::relay::dashboard::MAX_DASHBOARD_CONNECTIONS;
    let home = TempDir::new("dashboard-limit");
    let (mut proc, _, page, _) = serve(home.path(), "127.0.0.1:0", &[]).await;
    let mut streams = Vec::new();
    for _ in 0..MAX_DASHBOARD_CONNECTIONS {
        let mut tcp = TcpStream::connect(page).await.expect("connect");
        tcp.write_all(b"GET /api/events HTTP/1.1\r\nHost: localhost\r\n\r\n").await.expect("write");
        let mut buf = [0u8; 256];
        let n = within("the stream's head", tcp.read(&mut buf)).await.expect("read");
        assert!(buf[..n].starts_with(b"HTTP/1.1 200 OK"), "{}", String::from_utf8_lossy(&buf[..n]));
        streams.push(tcp);
    }
    // Over the limit: 503 at once, before any request (one sent would reset the answer).
    let mut over = TcpStream::connect(page).await.expect("connect");
    let mut answer = String::new();
    within("the 503", over.read_to_string(&mut answer)).await.expect("read");
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    streams.pop();
    // A slot comes back when a stream ends.
    let started = std::time::Instant::now();
    loop {
        // A connection that gets no 503 at once has a slot and waits for its request.
        let mut probe = TcpStream::connect(page).await.expect("connect");
        let mut answer = String::new();
        if tokio::time::timeout(Duration::from_millis(300), probe.read_to_string(&mut answer)).await.is_err() {
            probe.write_all(b"GET /api/status HTTP/1.1\r\nHost: localhost\r\n\r\n").await.expect("write");
            let _ = within("the status", probe.read_to_string(&mut answer)).await;
            if answer.starts_with("HTTP/1.1 200 OK") {
                break;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no slot came back: {answer}");
    }
    drop(streams);
    assert!(proc.terminate().await.success(), "stderr:\n{}", proc.stderr.text());
}
