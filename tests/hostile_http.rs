//! HTTP mode under attack, end to end over real sockets (docs/protocol.md 2, 7): a token
//! scoped to one named target, drip-fed request bodies, repeated response headers,
//! forwarded headers a client makes up, HTTP/1.0 and bare-LF request heads.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::bridge::{Listening, client, listen_settings};
use common::http::{Body, HttpServer, Setup, request, setup};
use common::*;
use hyco::protocol::TOKEN_HEADER;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `hyco listen web2 --http --to api=… --to …` on a fresh relay: the relay, the listener,
/// the server behind `api` and the unnamed one.
async fn two_targets() -> (TestRelay, Listening, HttpServer, HttpServer) {
    let relay = TestRelay::start(settings()).await;
    let (api, other) = (HttpServer::start().await, HttpServer::start().await);
    let mut ls = listen_settings("web2", &[format!("api={}", api.addr), other.addr.to_string()]);
    ls.http = true;
    let listener = Listening::start(client(relay.addr), ls).await;
    (relay, listener, api, other)
}

#[tokio::test]
async fn a_token_for_one_named_target_reaches_no_other() {
    let (relay, _listener, mut api, mut other) = two_targets().await;
    let t = token("web2/api");
    let ok = request(relay.addr, "GET", "/web2/api/hello", &[(TOKEN_HEADER, &t)], Body::Empty).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(api.next_seen().await.target, "/hello");
    for (path, status) in [
        ("/web2/api%2Fadmin", 400),
        ("/web2/api%2fadmin/hello", 400),
        ("/web2/api%2F..%2Fhello", 400),
        ("/web2%2Fapi/hello", 400),
        ("/web2/api%5Chello", 400),
        ("/web2/api%00/hello", 400),
        // The relay compares names without case, as Azure does; the listener then refuses a
        // case variant of one of its target names, and never hands it to the unnamed target.
        ("/web2/API/hello", 404),
        ("/web2/hello", 401),
    ] {
        let r = request(relay.addr, "GET", path, &[(TOKEN_HEADER, &t)], Body::Empty).await;
        assert_eq!(r.status, status, "{path}: {}", r.text());
    }
    // A WebSocket sender gets the same reading: an encoded slash is no name.
    let url = format!("{}/$hc/web2/api%2Fadmin?sb-hc-action=connect", relay.base());
    let (status, _) = refused(raw_upgrade(relay.addr, &url, &[auth(&t)]).await);
    assert_eq!(status, 400);
    let r = request(relay.addr, "GET", "/web2/api/hello", &[(TOKEN_HEADER, &t)], Body::Empty).await;
    assert_eq!(r.status, 200, "the honest path still works");
    assert_eq!(api.next_seen().await.target, "/hello");
    assert!(other.seen.try_recv().is_err(), "nothing reached the unnamed target");
}

/// Sends a request head with `Content-Length: len`, then its body one byte every 200 ms
/// until the relay answers; the status and how long that took.
async fn drip(addr: SocketAddr, target: String, len: usize, token: String) -> (u16, Duration) {
    let started = tokio::time::Instant::now();
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    let head = format!("POST {target} HTTP/1.1\r\nHost: x\r\n{TOKEN_HEADER}: {token}\r\nContent-Length: {len}\r\n\r\n");
    tcp.write_all(head.as_bytes()).await.expect("head");
    let (mut r, mut w) = tcp.into_split();
    let trickle = async move {
        for _ in 0..len {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if w.write_all(b"x").await.is_err() {
                break;
            }
        }
        std::future::pending::<()>().await;
    };
    let mut answer = Vec::new();
    let read = async {
        let mut buf = [0; 1024];
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::select! {
        () = read => {}
        () = trickle => {}
    }
    let answer = String::from_utf8_lossy(&answer).into_owned();
    (if answer.is_empty() { 0 } else { status_of(&answer) }, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drip_fed_bodies_end_at_their_deadline_and_starve_no_one() {
    let Setup { relay, server: _server, _listener } = setup(|s| {
        s.limits.max_pending_senders_per_hc = 4;
        s.limits.max_pending_requests_per_hc = 4;
        s.limits.http_request_body_timeout = Duration::from_secs(3);
        s.limits.http_response_timeout = Duration::from_secs(30);
    })
    .await;
    let t = token("hc");
    // As many slow small uploads (which could go inline) as requests may wait, then two
    // slow large ones (streamed over a rendezvous).
    let mut drips: Vec<_> =
        (0..4).map(|_| tokio::spawn(drip(relay.addr, "/hc/upload".into(), 1_000, t.clone()))).collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    drips.extend((0..2).map(|_| tokio::spawn(drip(relay.addr, "/hc/upload".into(), 1 << 20, t.clone()))));
    tokio::time::sleep(Duration::from_millis(500)).await;
    // While they trickle, a WebSocket sender and an honest request get through.
    let url = relay.url("hc", hyco::protocol::Action::Connect);
    let sender = raw_upgrade(relay.addr, &url, &[auth(&t)]).await;
    assert!(sender.is_ok(), "a sender got {:?}", sender.err().map(|e| e.to_string()));
    let honest = request(relay.addr, "POST", "/hc/upload", &[(TOKEN_HEADER, &t)], Body::Bytes(b"abc".to_vec())).await;
    assert_eq!(honest.status, 200, "{}", honest.text());
    for d in drips {
        let (status, took) = within_for(Duration::from_secs(15), "a slow upload's answer", d).await.expect("drip");
        assert_eq!(status, 408, "after {took:?}");
        assert!(took < Duration::from_secs(10), "408 only after {took:?}");
    }
    let honest = request(relay.addr, "POST", "/hc/upload", &[(TOKEN_HEADER, &t)], Body::Bytes(b"abc".to_vec())).await;
    assert_eq!(honest.status, 200, "{}", honest.text());
}

#[tokio::test]
async fn waiting_requests_have_a_limit_of_their_own() {
    use futures_util::StreamExt;
    let mut s = settings();
    s.limits.max_pending_requests_per_hc = 2;
    s.limits.max_pending_senders_per_hc = 2;
    let relay = TestRelay::start(s).await;
    let mut l = listen(&relay, "hc").await;
    let t = token("hc");
    // Two requests the listener never answers wait on the HC, the most allowed.
    let _waiting: Vec<_> = (0..2)
        .map(|_| {
            let (addr, t) = (relay.addr, t.clone());
            tokio::spawn(async move { request(addr, "GET", "/hc/x", &[(TOKEN_HEADER, &t)], Body::Empty).await })
        })
        .collect();
    for _ in 0..2 {
        let m = within("a request message", l.ws.next()).await.expect("open").expect("message");
        assert!(m.to_text().unwrap().starts_with(r#"{"request""#), "{m:?}");
    }
    let third = request(relay.addr, "GET", "/hc/x", &[(TOKEN_HEADER, &t)], Body::Empty).await;
    assert_eq!(third.status, 503, "{}", third.text());
    assert!(third.text().contains("Too many requests waiting"), "{}", third.text());
    // Senders wait within their own limit.
    let sender = spawn_sender(relay.addr, relay.url("hc", hyco::protocol::Action::Connect), vec![auth(&t)]);
    let a = l.next_accept().await;
    let _lws = accept(relay.addr, &a, &[]).await;
    within("the sender", sender).await.unwrap().expect("the sender got through");
}

/// What the app saw of a request carrying made-up forwarding headers, through a relay
/// that trusts `trusted` (CIDR networks) in front of it.
async fn forwarded_as_seen(trusted: &[&str]) -> common::http::Seen {
    let Setup { relay, mut server, _listener } = setup(|s| {
        s.limits.trusted_proxies = trusted.iter().map(|n| hyco::relay::config::IpNet::parse(n).unwrap()).collect();
    })
    .await;
    let made_up = [
        (TOKEN_HEADER, token("hc")),
        ("X-Forwarded-For", "198.51.100.66".to_owned()),
        ("X-Forwarded-Host", "evil.example".to_owned()),
        ("X-Forwarded-Proto", "https".to_owned()),
        ("X-Forwarded-Prefix", "/admin".to_owned()),
        ("X-Real-IP", "198.51.100.66".to_owned()),
        ("Forwarded", "for=198.51.100.66;host=evil.example".to_owned()),
    ];
    let headers: Vec<(&str, &str)> = made_up.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let r = request(relay.addr, "GET", "/hc/hello", &headers, Body::Empty).await;
    assert_eq!(r.status, 200, "{}", r.text());
    server.next_seen().await
}

#[tokio::test]
async fn the_relay_sets_forwarding_headers_and_drops_a_clients_own() {
    let seen = forwarded_as_seen(&[]).await;
    assert_eq!(seen.header("X-Forwarded-For"), Some("127.0.0.1"));
    assert_eq!(seen.header("X-Forwarded-Proto"), Some("http"));
    let host = seen.header("X-Forwarded-Host").unwrap();
    assert!(host.starts_with("127.0.0.1:"), "the Host the client sent: {host}");
    for gone in ["X-Real-IP", "Forwarded", "X-Forwarded-Prefix"] {
        assert_eq!(seen.header(gone), None, "{gone}");
    }
    assert!(seen.header("Host").unwrap().starts_with("127.0.0.1:"), "Host is the target");
    // Behind a proxy the relay trusts, the proxy's headers stay and the chain grows.
    let seen = forwarded_as_seen(&["10.0.0.0/8", "127.0.0.0/8"]).await;
    assert_eq!(seen.header("X-Forwarded-For"), Some("198.51.100.66, 127.0.0.1"));
    assert_eq!(seen.header("X-Forwarded-Host"), Some("evil.example"));
    assert_eq!(seen.header("X-Forwarded-Proto"), Some("https"));
    assert_eq!(seen.header("X-Real-IP"), Some("198.51.100.66"));
    assert_eq!(seen.header("Forwarded"), Some("for=198.51.100.66;host=evil.example"));
}

#[tokio::test]
async fn several_set_cookie_headers_arrive_one_by_one() {
    let Setup { relay, server: _server, _listener } = setup(|_| {}).await;
    let t = token("hc");
    // A small answer comes on the control channel, a large one on a rendezvous.
    for n in [5, 200_000] {
        let target = format!("/hc/cookies?n={n}");
        let r = request(relay.addr, "GET", &target, &[(TOKEN_HEADER, &t)], Body::Empty).await;
        assert_eq!((r.status, r.body.len()), (200, n), "{}", r.text());
        let cookies: Vec<&str> =
            r.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("Set-Cookie")).map(|(_, v)| v.as_str()).collect();
        assert_eq!(cookies, ["a=1; Path=/; HttpOnly", "b=2; Expires=Wed, 21 Oct 2037 07:28:00 GMT"], "n={n}");
    }
}

#[tokio::test]
async fn http_1_0_is_answered_and_bare_lf_heads_are_refused() {
    let Setup { relay, server: _server, _listener } = setup(|_| {}).await;
    let t = token("hc");
    let ask = |head: String| async move { raw_http(relay.addr, head.as_bytes()).await };
    // HTTP/1.0: a known length as Content-Length, an unknown one until the connection ends.
    let small = ask(format!("GET /hc/hello HTTP/1.0\r\n{TOKEN_HEADER}: {t}\r\n\r\n")).await;
    assert_eq!(status_of(&small), 200, "{small}");
    assert!(small.contains("Content-Length: 21\r\n") && small.ends_with("hello from the server"), "{small}");
    let mut tcp = TcpStream::connect(relay.addr).await.unwrap();
    let head = format!("GET /hc/big?n=200000&chunked HTTP/1.0\r\n{TOKEN_HEADER}: {t}\r\n\r\n");
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut big = Vec::new();
    within("the answer to the end", tcp.read_to_end(&mut big)).await.unwrap();
    let end = big.windows(4).position(|w| w == b"\r\n\r\n").expect("a head") + 4;
    let head = String::from_utf8_lossy(&big[..end]);
    assert_eq!(status_of(&head), 200, "{head}");
    assert!(!head.contains("Transfer-Encoding") && !head.contains("Content-Length"), "{head}");
    assert!(head.contains("Connection: close"), "{head}");
    assert_eq!(big.len() - end, 200_000, "the whole body, then the end of the connection");
    let upload = ask(format!("POST /hc/upload HTTP/1.0\r\n{TOKEN_HEADER}: {t}\r\nContent-Length: 3\r\n\r\nabc")).await;
    assert_eq!(status_of(&upload), 200, "{upload}");
    let no_continue = format!(
        "POST /hc/upload HTTP/1.0\r\n{TOKEN_HEADER}: {t}\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc"
    );
    let answer = ask(no_continue).await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "no 100 Continue for HTTP/1.0: {answer}");
    let chunked = ask(format!(
        "POST /hc/upload HTTP/1.0\r\n{TOKEN_HEADER}: {t}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    ))
    .await;
    assert_eq!(status_of(&chunked), 400, "{chunked}");
    // A WebSocket upgrade still needs HTTP/1.1.
    let upgrade = format!(
        "GET /$hc/hc?sb-hc-action=connect HTTP/1.0\r\nHost: x\r\n{TOKEN_HEADER}: {t}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    assert_eq!(status_of(&ask(upgrade).await), 400);
    // Bare LF line ends: refused, whole or in part.
    for head in [
        format!("GET /hc/hello HTTP/1.1\nHost: x\n{TOKEN_HEADER}: {t}\n\n"),
        format!("GET /hc/hello HTTP/1.1\r\nHost: x\n{TOKEN_HEADER}: {t}\r\n\r\n"),
    ] {
        let answer = ask(head).await;
        assert_eq!(status_of(&answer), 400, "{answer}");
    }
}
