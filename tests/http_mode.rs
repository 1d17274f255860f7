//! HTTP mode end to end (docs/protocol.md 7): an HTTP client, `hyco serve` and `hyco listen
//! --http` in-process, and a real HTTP server behind the listener. Bodies both ways (small
//! ones inline on the control channel, large or chunked ones over rendezvous), headers,
//! the relay's refusals (401, 403, 404, 413, 502, 504) and their limits.

mod common;

use std::time::Duration;

use common::bridge::{Bound, Listening, client, listen_settings, noise_digest};
use common::http::{Body, HttpServer, PIECE, Reply, hex, request, setup};
use common::*;
use futures_util::SinkExt;
use hyco::http1::Framing;
use hyco::protocol::{RelayMessage, TOKEN_HEADER};
use hyco::relay::HcSettings;
use hyco::ws::frame::OpCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode as WsOpCode};

/// Big transfers in debug builds on a shared machine get this long.
const BULK: Duration = Duration::from_secs(60);

async fn call(relay: &TestRelay, method: &str, target: &str, headers: &[(&str, &str)], body: Body) -> Reply {
    within_for(BULK, "an HTTP exchange through the relay", request(relay.addr, method, target, headers, body)).await
}

/// A relay refusal: status, JSON error code, and a tracking id in the message.
fn assert_refused(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status, status, "{}", reply.text());
    let json = reply.error_json();
    assert_eq!(json["error"]["code"], code, "{json}");
    assert!(json["error"]["message"].as_str().unwrap().contains("TrackingId:"), "{json}");
}

#[tokio::test]
async fn get_and_head_carry_headers_both_ways() {
    let mut s = setup(|_| {}).await;
    let tok = token("hc");
    let reply = call(
        &s.relay,
        "GET",
        "/hc/hello?x=1&y=%20",
        &[
            (TOKEN_HEADER, &tok),
            ("X-Custom", "42"),
            ("X-Custom", "43"),
            ("Connection", "X-Req-Hop"),
            ("X-Req-Hop", "1"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Upgrade", "h2c"),
            ("Proxy-Authorization", "Basic eA=="),
        ],
        Body::Empty,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "hello from the server");
    assert_eq!(reply.header("X-Reply"), Some("from-server"), "a response header reaches the client");
    assert_eq!(reply.header("Via"), Some("1.1 hyco"));
    assert_eq!(reply.header("Connection"), Some("close"));
    assert_eq!(reply.header("X-Server-Hop"), None, "hop-by-hop response headers are dropped");
    assert_eq!(reply.framing, Framing::Length(21), "a small body comes inline, with its length");

    let seen = s.server.next_seen().await;
    assert_eq!((seen.method.as_str(), seen.target.as_str()), ("GET", "/hello?x=1&y=%20"), "the /hc prefix is stripped");
    assert_eq!(seen.header("X-Custom"), Some("42, 43"), "a request header reaches the server, repeats joined");
    for gone in [TOKEN_HEADER, "X-Req-Hop", "Keep-Alive", "TE", "Upgrade", "Proxy-Authorization"] {
        assert_eq!(seen.header(gone), None, "{gone} must not reach the server");
    }
    let server_addr = s.server.addr.to_string();
    assert_eq!(seen.header("Host"), Some(server_addr.as_str()));
    assert_eq!(seen.header("X-Forwarded-Host"), Some(s.relay.addr.to_string().as_str()));
    assert_eq!(seen.header("X-Forwarded-For"), Some("127.0.0.1"));

    let reply = call(&s.relay, "HEAD", "/hc/hello", &[(TOKEN_HEADER, &tok)], Body::Empty).await;
    assert_eq!((reply.status, reply.body.len()), (200, 0));
    assert_eq!(reply.header("Content-Length"), Some("21"), "HEAD keeps the length a GET would get");
    assert_eq!(s.server.next_seen().await.method, "HEAD");

    let reply = call(&s.relay, "GET", "/hc/status/204", &[(TOKEN_HEADER, &tok)], Body::Empty).await;
    assert_eq!((reply.status, reply.body.len(), reply.framing), (204, 0, Framing::Empty));
    let reply = call(&s.relay, "DELETE", "/hc/nothing-here", &[(TOKEN_HEADER, &tok)], Body::Empty).await;
    assert_eq!((reply.status, reply.text().as_str()), (404, "no route"), "the server's own 404 passes through");
}

#[tokio::test]
async fn request_bodies_inline_chunked_and_10_mib() {
    let mut s = setup(|_| {}).await;
    let tok = token("hc");
    let auth = [(TOKEN_HEADER, tok.as_str())];
    // (what, body, length): inline on the control channel, inline though chunked, then over
    // a rendezvous as one long frame (Content-Length) and as fragments (chunked).
    let cases = [
        ("1 KiB, Content-Length", Body::Noise { seed: 1, len: 1024, chunked: false }, 1024),
        ("10 KiB, chunked", Body::Noise { seed: 2, len: 10 * 1024, chunked: true }, 10 * 1024),
        ("exactly 64 KiB", Body::Noise { seed: 3, len: 64 * 1024, chunked: false }, 64 * 1024),
        ("10 MiB, Content-Length", Body::Noise { seed: 4, len: 10 << 20, chunked: false }, 10 << 20),
        ("3 MiB, chunked", Body::Noise { seed: 5, len: 3 << 20, chunked: true }, 3 << 20),
    ];
    for (what, body, len) in cases {
        let seed = match body {
            Body::Noise { seed, .. } => seed,
            _ => unreachable!(),
        };
        let reply = call(&s.relay, "POST", "/hc/upload", &auth, body).await;
        let want = hex(&noise_digest(seed, len, PIECE));
        assert_eq!(reply.status, 200, "{what}: {}", reply.text());
        assert_eq!(reply.text(), want, "{what}: the server hashed what the client sent");
        let seen = s.server.next_seen().await;
        assert_eq!((seen.body_len, hex(&seen.body_sha256)), (len as u64, want), "{what}");
    }
    // An empty POST keeps its Content-Length: 0.
    let reply = call(&s.relay, "POST", "/hc/upload", &auth, Body::Bytes(Vec::new())).await;
    assert_eq!(reply.status, 200);
    assert_eq!(s.server.next_seen().await.header("Content-Length"), Some("0"));
    // Expect: 100-continue is answered by the relay, not passed on.
    let reply =
        call(&s.relay, "PUT", "/hc/upload", &[auth[0], ("Expect", "100-continue")], Body::Bytes(b"abc".to_vec())).await;
    assert_eq!(reply.status, 200);
    assert_eq!(s.server.next_seen().await.header("Expect"), None);
}

#[tokio::test]
async fn a_20_mib_response_streams_through() {
    let mut s = setup(|_| {}).await;
    let tok = token("hc");
    let n = 20 << 20;
    for (chunked, framing) in [(true, Framing::Chunked), (false, Framing::Length(n as u64))] {
        let target = format!("/hc/big?n={n}&seed=9{}", if chunked { "&chunked" } else { "" });
        let reply = call(&s.relay, "GET", &target, &[(TOKEN_HEADER, &tok)], Body::Empty).await;
        assert_eq!(reply.status, 200);
        assert!(reply.complete, "the body ended as framed");
        assert_eq!(reply.framing, framing, "chunked when the server did not say the length");
        assert_eq!(reply.body.len(), n);
        assert_eq!(
            hex(&sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(&reply.body))),
            hex(&noise_digest(9, n, PIECE))
        );
        assert_eq!(reply.header("Via"), Some("1.1 hyco"));
        s.server.next_seen().await;
    }
}

#[tokio::test]
async fn concurrent_requests_each_get_their_own_answer() {
    let s = setup(|_| {}).await;
    let tok = token("hc");
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..24u64 {
        let (addr, tok) = (s.relay.addr, tok.clone());
        calls.spawn(async move {
            // Small and large answers, inline and streamed, interleaved on one control channel.
            let n = if i % 3 == 0 { 200_000 } else { 100 + i as usize };
            let target = format!("/hc/big?n={n}&seed={i}");
            let reply = request(addr, "GET", &target, &[(TOKEN_HEADER, &tok)], Body::Empty).await;
            let digest = <sha2::Sha256 as sha2::Digest>::digest(&reply.body);
            (reply.status, hex(&digest) == hex(&noise_digest(i, n, PIECE)))
        });
    }
    let results = within_for(BULK, "24 concurrent requests", calls.join_all()).await;
    assert!(results.iter().all(|r| *r == (200, true)), "{results:?}");
}

#[tokio::test]
async fn no_listener_is_502_and_no_hc_is_404() {
    let relay = TestRelay::start({
        let mut s = settings();
        s.hcs.push(HcSettings {
            name: "idle".into(),
            requires_client_authorization: true,
            rules: Vec::new(),
            ports: Vec::new(),
        });
        s
    })
    .await;
    let tok = token("idle");
    let reply = call(&relay, "GET", "/idle/x", &[(TOKEN_HEADER, &tok)], Body::Empty).await;
    assert_refused(&reply, 502, "BadGateway");
    let reply = call(&relay, "GET", "/nope/x", &[(TOKEN_HEADER, &tok)], Body::Empty).await;
    assert_refused(&reply, 404, "EndpointNotFound");
    let reply = call(&relay, "GET", "/", &[], Body::Empty).await;
    assert_refused(&reply, 404, "EndpointNotFound");
}

#[tokio::test]
async fn a_stalled_listener_is_504_after_the_response_timeout() {
    let relay = TestRelay::start({
        let mut s = settings();
        s.limits.http_response_timeout = Duration::from_secs(1);
        s
    })
    .await;
    // A raw listener: it takes the request and never answers.
    let mut l = listen(&relay, "hc").await;
    let tok = token("hc");
    let call = tokio::spawn({
        let addr = relay.addr;
        let tok = tok.clone();
        async move { request(addr, "GET", "/hc/slow?q=1", &[(TOKEN_HEADER, &tok), ("X-App", "1")], Body::Empty).await }
    });
    let Message::Text(text) = next_message(&mut l.ws).await else { panic!("expected a text message") };
    let RelayMessage::Request(r) = serde_json::from_str(&text).expect("request JSON") else { panic!("{text}") };
    // The shape hyco-https and .NET expect of a complete request.
    assert!(r.is_complete() && r.body == Some(false), "{text}");
    assert_eq!(r.request_target.as_deref(), Some("/hc/slow?q=1"));
    assert_eq!(r.method.as_deref(), Some("GET"));
    assert_eq!(r.request_headers.get("X-App").map(String::as_str), Some("1"));
    assert!(!r.request_headers.contains_key(TOKEN_HEADER), "the token stays at the relay");
    assert_eq!(r.remote_endpoint.as_ref().map(|e| e.address.as_str()), Some("127.0.0.1"));
    let address = r.address.expect("every request carries its rendezvous address");
    assert!(address.contains("sb-hc-action=request&sb-hc-id="), "{address}");
    let started = std::time::Instant::now();
    let reply = within("the 504", call).await.expect("client task");
    assert_refused(&reply, 504, "GatewayTimeout");
    assert!(started.elapsed() < Duration::from_secs(3));
    // The rendezvous address died with the request.
    let late = raw_upgrade(relay.addr, &address, &[]).await;
    assert_eq!(refused(late).0, 403);
}

#[tokio::test]
async fn tokens_are_checked_in_every_place_and_kept_from_the_listener() {
    let mut s = setup(|_| {}).await;
    let reply = call(&s.relay, "GET", "/hc/hello", &[], Body::Empty).await;
    assert_refused(&reply, 401, "Unauthorized");
    let forged = token_with("hc", KEY_NAME, "not-the-key", hyco::protocol::unix_now() + 60);
    let reply = call(&s.relay, "GET", "/hc/hello", &[(TOKEN_HEADER, &forged)], Body::Empty).await;
    assert_refused(&reply, 401, "Unauthorized");
    let other = token("other");
    let reply = call(&s.relay, "GET", "/hc/hello", &[(TOKEN_HEADER, &other)], Body::Empty).await;
    assert_refused(&reply, 401, "Unauthorized");
    let listen_key = hyco::sas::derive_key(&hyco::secret::Secret::new(KEY), hyco::sas::LISTEN_KEY_NAME);
    let listen_only =
        token_with("hc", hyco::sas::LISTEN_KEY_NAME, listen_key.expose(), hyco::protocol::unix_now() + 60);
    let reply = call(&s.relay, "GET", "/hc/hello", &[(TOKEN_HEADER, &listen_only)], Body::Empty).await;
    assert_refused(&reply, 403, "Forbidden");

    // In the query (as hyco-https's createRelayHttpsUri puts it): stripped before forwarding.
    let tok = token("hc");
    let target = format!("/hc/hello?a=1&sb-hc-token={}&b=2", hyco::encoding::encode_component(&tok));
    let reply = call(&s.relay, "GET", &target, &[], Body::Empty).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(s.server.next_seen().await.target, "/hello?a=1&b=2");
    // In Authorization, when nothing else carries one: used, and not passed on.
    let reply = call(&s.relay, "GET", "/hc/hello", &[("Authorization", &tok)], Body::Empty).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(s.server.next_seen().await.header("Authorization"), None);
}

#[tokio::test]
async fn an_hc_without_client_authorization_serves_anyone() {
    let mut s = settings();
    s.hcs.push(HcSettings {
        name: "open".into(),
        requires_client_authorization: false,
        rules: Vec::new(),
        ports: Vec::new(),
    });
    let relay = TestRelay::start(s).await;
    let mut server = HttpServer::start().await;
    let mut ls = listen_settings("open", &[server.addr.to_string()]);
    ls.http = true;
    let _l = Listening::start(client(relay.addr), ls).await;
    let reply = call(&relay, "GET", "/open/hello", &[("Authorization", "Bearer app-token")], Body::Empty).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(server.next_seen().await.header("Authorization"), Some("Bearer app-token"), "the app's own auth passes");
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let mut s = setup(|s| s.limits.max_http_request_body = 100_000).await;
    let tok = token("hc");
    let auth = [(TOKEN_HEADER, tok.as_str())];
    // A declared length over the limit: refused before any listener hears of it.
    let reply =
        call(&s.relay, "POST", "/hc/upload", &auth, Body::Noise { seed: 1, len: 200_000, chunked: false }).await;
    assert_refused(&reply, 413, "PayloadTooLarge");
    // A chunked body found over the limit on the way.
    let reply = call(&s.relay, "POST", "/hc/upload", &auth, Body::Noise { seed: 1, len: 200_000, chunked: true }).await;
    assert_refused(&reply, 413, "PayloadTooLarge");
    // At the limit: fine.
    let reply =
        call(&s.relay, "POST", "/hc/upload", &auth, Body::Noise { seed: 1, len: 100_000, chunked: false }).await;
    assert_eq!(reply.status, 200);
    assert_eq!(s.server.next_seen().await.body_len, 100_000);
    // Framing that could smuggle a second request, and oversized heads.
    let both = [auth[0], ("Content-Length", "5"), ("Transfer-Encoding", "chunked")];
    assert_refused(&call(&s.relay, "POST", "/hc/upload", &both, Body::Empty).await, 400, "BadRequest");
    let huge = "h".repeat(40 * 1024);
    let reply = raw_http(s.relay.addr, format!("GET /hc/hello HTTP/1.1\r\nX-Huge: {huge}\r\n\r\n").as_bytes()).await;
    assert_eq!(status_of(&reply), 431);
}

#[tokio::test]
async fn websocket_senders_still_reach_the_same_target() {
    let mut s = setup(|_| {}).await;
    let bound = Bound::start(client(s.relay.addr), "hc", None).await;
    let mut tcp = bound.connect().await;
    tcp.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut all = Vec::new();
    within("the tunnelled answer", tcp.read_to_end(&mut all)).await.unwrap();
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 200 OK") && text.ends_with("hello from the server"), "{text}");
    assert_eq!(s.server.next_seen().await.target, "/hello", "raw bytes, no prefix to strip");
    // And HTTP mode alongside.
    let reply = call(&s.relay, "GET", "/hc/hello", &[(TOKEN_HEADER, &token("hc"))], Body::Empty).await;
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn an_app_that_is_down_is_a_502_from_the_listener() {
    let relay = TestRelay::start(settings()).await;
    let down = common::bridge::closed_port().await;
    let mut ls = listen_settings("hc", &[down.to_string()]);
    ls.http = true;
    let _l = Listening::start(client(relay.addr), ls).await;
    let reply = call(&relay, "GET", "/hc/x", &[(TOKEN_HEADER, &token("hc"))], Body::Empty).await;
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert!(reply.text().contains(&format!("Connection to {down} refused")), "{}", reply.text());
    assert_eq!(reply.header("Via"), Some("1.1 hyco"), "the listener's answer, relayed");
}

#[tokio::test]
async fn a_listener_without_http_answers_501() {
    let relay = TestRelay::start(settings()).await;
    let server = HttpServer::start().await;
    let _l = Listening::start(client(relay.addr), listen_settings("hc", &[server.addr.to_string()])).await;
    let reply = call(&relay, "POST", "/hc/upload", &[(TOKEN_HEADER, &token("hc"))], Body::Bytes(vec![1; 100])).await;
    assert_eq!(reply.status, 501, "{}", reply.text());
    assert!(reply.text().contains("--http"), "{}", reply.text());
}

/// The next `request` on a raw listener's control channel.
async fn next_request(l: &mut Listener) -> hyco::protocol::HttpRequest {
    let Message::Text(text) = next_message(&mut l.ws).await else { panic!("expected a text message") };
    match serde_json::from_str(&text).expect("request JSON") {
        RelayMessage::Request(r) => r,
        other => panic!("expected a request, got {other:?}"),
    }
}

fn spawn_call(
    relay: &TestRelay,
    method: &'static str,
    target: &'static str,
    body: Body,
) -> tokio::task::JoinHandle<Reply> {
    let (addr, tok) = (relay.addr, token("hc"));
    tokio::spawn(async move { request(addr, method, target, &[(TOKEN_HEADER, &tok)], body).await })
}

/// What hyco-https and .NET listeners send (interop/NOTES-https.md), from a raw listener:
/// a string status, a fragmented body on the control channel, the stray empty binary
/// message after a bodiless response, a response on a rendezvous that the listener never
/// closes, and an address-only request fetched over a rendezvous.
#[tokio::test]
async fn every_answer_form_of_the_official_listeners_is_understood() {
    let relay = TestRelay::start(settings()).await;
    let mut l = listen(&relay, "hc").await;

    // A string status and a body in three fragments on the control channel.
    let call = spawn_call(&relay, "GET", "/hc/a", Body::Empty);
    let r = next_request(&mut l).await;
    let json = format!(
        r#"{{"response":{{"requestId":"{}","statusCode":"201","statusDescription":"Made","responseHeaders":{{"x-n":5}},"body":true}}}}"#,
        r.id
    );
    l.send_text(json).await;
    for (part, fin, op) in
        [(&b"one "[..], false, Data::Binary), (b"two ", false, Data::Continue), (b"three", true, Data::Continue)]
    {
        l.ws.send(Message::Frame(Frame::message(part.to_vec(), WsOpCode::Data(op), fin))).await.unwrap();
    }
    let reply = within("the 201", call).await.unwrap();
    assert_eq!((reply.status, reply.reason.as_str(), reply.text().as_str()), (201, "Made", "one two three"));
    assert_eq!(reply.header("x-n"), Some("5"));

    // body:false, then the empty binary message hyco-https sends anyway.
    let call = spawn_call(&relay, "HEAD", "/hc/b", Body::Empty);
    let r = next_request(&mut l).await;
    l.send_text(format!(r#"{{"response":{{"requestId":"{}","statusCode":200,"body":false}}}}"#, r.id)).await;
    l.ws.send(Message::binary(Vec::<u8>::new())).await.unwrap();
    assert_eq!(within("the HEAD answer", call).await.unwrap().status, 200);

    // A large response to a small request: on a rendezvous, fragments, an empty FIN frame
    // at the end, and no Close from the listener (hyco-https never closes it).
    let call = spawn_call(&relay, "GET", "/hc/c", Body::Empty);
    let r = next_request(&mut l).await;
    assert_eq!(r.body, Some(false), "still on the control channel");
    let mut rv = raw_upgrade(relay.addr, r.address.as_deref().unwrap(), &[]).await.expect("response rendezvous");
    rv.send(
        OpCode::Text,
        format!(r#"{{"response":{{"requestId":"{}","statusCode":200,"body":true}}}}"#, r.id).as_bytes(),
    )
    .await;
    let big = vec![7u8; 100_000];
    rv.send_frame(false, OpCode::Binary, &big[..60_000]).await;
    rv.send_frame(false, OpCode::Continuation, &big[60_000..]).await;
    rv.send_frame(true, OpCode::Continuation, b"").await;
    let reply = within("the large answer", call).await.unwrap();
    assert_eq!((reply.status, reply.framing, reply.body.len(), reply.complete), (200, Framing::Chunked, 100_000, true));
    assert_eq!(rv.next_close().await.map(|c| c.code), Some(1000), "the relay closes the rendezvous");

    // A large request: address-only on the control channel, fetched over a rendezvous.
    let body = vec![9u8; 100_000];
    let call = spawn_call(&relay, "POST", "/hc/d?x=1", Body::Bytes(body.clone()));
    let r = next_request(&mut l).await;
    assert!(!r.is_complete() && r.body.is_none() && r.request_target.is_none(), "{r:?}");
    let mut rv = raw_upgrade(relay.addr, r.address.as_deref().unwrap(), &[]).await.expect("request rendezvous");
    let (op, json) = rv.next_data().await;
    assert_eq!(op, OpCode::Text);
    let RelayMessage::Request(full) = serde_json::from_slice(&json).unwrap() else { panic!() };
    assert!(full.is_complete() && full.body == Some(true));
    assert_eq!((full.id.as_str(), full.request_target.as_deref()), (r.id.as_str(), Some("/hc/d?x=1")));
    let (op, got) = rv.next_data().await;
    assert_eq!((op, got), (OpCode::Binary, body), "the body as one binary message");
    rv.send(
        OpCode::Text,
        format!(r#"{{"response":{{"requestId":"{}","statusCode":200,"body":true}}}}"#, r.id).as_bytes(),
    )
    .await;
    rv.send(OpCode::Binary, b"stored").await;
    let reply = within("the POST answer", call).await.unwrap();
    assert_eq!((reply.status, reply.text().as_str()), (200, "stored"));
    assert_eq!(rv.next_close().await.map(|c| c.code), Some(1000));

    // The control channel survived all of it.
    let call = spawn_call(&relay, "GET", "/hc/e", Body::Empty);
    let r = next_request(&mut l).await;
    l.send_text(format!(r#"{{"response":{{"requestId":"{}","statusCode":204,"body":false}}}}"#, r.id)).await;
    assert_eq!(within("the last answer", call).await.unwrap().status, 204);
}

#[tokio::test]
async fn a_udp_target_is_no_http_server_and_says_so() {
    let relay = TestRelay::start(settings()).await;
    let mut ls = listen_settings("hc", &["dns=udp://127.0.0.1:9".to_owned()]);
    ls.http = true;
    let _listener = Listening::start(client(relay.addr), ls).await;
    let tok = token("hc");
    let reply = call(&relay, "GET", "/hc/dns/x", &[(TOKEN_HEADER, &tok)], Body::Empty).await;
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert!(reply.text().contains("is UDP: only UDP senders reach it"), "{}", reply.text());
}

#[tokio::test]
async fn an_sdks_runtime_information_request_is_answered_by_the_relay() {
    let mut s = setup(|_| {}).await;
    let tok = token("hc");
    let ask = [("X-PROCESS-AT", "ServiceBus"), ("Authorization", tok.as_str())];
    let reply = call(&s.relay, "GET", "/hc?api-version=2016-07", &ask, Body::Empty).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("Content-Type"), Some("application/atom+xml;type=entry;charset=utf-8"));
    let body = reply.text();
    let description = body.split("<HybridConnectionDescription").nth(1).expect("a description");
    assert!(description.contains("<ListenerCount>1</ListenerCount>"), "{body}");
    assert!(description.contains("<RequiresClientAuthorization>true</RequiresClientAuthorization>"), "{body}");
    let order = ["<CreatedAt>", "<UpdatedAt>", "<RequiresClientAuthorization>", "<ListenerCount>"];
    let at: Vec<usize> = order.iter().map(|t| description.find(t).expect(t)).collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "the serializer's order: {body}");
    // No token, an unknown HC: the relay's own answers; the app never hears of any of it.
    let reply = call(&s.relay, "GET", "/hc?api-version=2016-07", &ask[..1], Body::Empty).await;
    assert_eq!(reply.status, 401, "{}", reply.text());
    let reply = call(&s.relay, "GET", "/nope?api-version=2016-07", &ask, Body::Empty).await;
    assert_eq!(reply.status, 404, "{}", reply.text());
    // A plain GET with the same path is the app's, as before.
    let reply = call(&s.relay, "GET", "/hc/hello?api-version=1", &[(TOKEN_HEADER, &tok)], Body::Empty).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(s.server.next_seen().await.target, "/hello?api-version=1");
}
