//! The relay's rendezvous (docs/protocol.md 5.2-5.4, 6): accept and reject, the accept address,
//! what the listener learns about the sender, subprotocols, spreading senders over
//! listeners, and the tunnel afterwards (half-close, close codes, a vanishing side).

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use hyco::encoding::encode_component;
use hyco::protocol::{Action, client_url};
use hyco::relay::HcSettings;
use hyco::ws::frame::{CloseFrame, OpCode};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame as WsCloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// A connect header by case-insensitive name.
fn connect_header<'a>(a: &'a hyco::protocol::Accept, name: &str) -> Option<&'a str> {
    a.connect_headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn accept_relays_data_both_ways() {
    let relay = TestRelay::start(settings()).await;
    let mut l = listen(&relay, "hc").await;
    let (mut s, mut lws) = rendezvous(&relay, &mut l, "hc").await;
    exchange(&mut s, &mut lws).await;

    // A message far larger than the relay's forwarding buffer, each way at once.
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let (mut s_tx, mut s_rx) = s.split();
    let (mut l_tx, mut l_rx) = lws.split();
    let (sent_s, sent_l, got_l, got_s) = within("big messages both ways", async {
        tokio::join!(
            s_tx.send(Message::binary(big.clone())),
            l_tx.send(Message::binary(big.clone())),
            l_rx.next(),
            s_rx.next(),
        )
    })
    .await;
    sent_s.expect("sender send");
    sent_l.expect("listener send");
    assert_eq!(got_l.expect("listener stream").expect("listener read"), Message::binary(big.clone()));
    assert_eq!(got_s.expect("sender stream").expect("sender read"), Message::binary(big));
}

#[tokio::test]
async fn fragments_and_pings_pass_through_as_sent() {
    let relay = TestRelay::start(settings()).await;
    let mut l = listen(&relay, "hc").await;
    let (addr, url) = (relay.addr, relay.url("hc", Action::Connect));
    let sender = tokio::spawn(async move { raw_upgrade(addr, &url, &[auth(&token("hc"))]).await });
    let a = l.next_accept().await;
    let mut lws = accept(relay.addr, &a, &[]).await;
    let mut s = within("sender", sender).await.unwrap().expect("sender upgrade");

    // A text message in three fragments with a ping between them: the listener's
    // WebSocket library reassembles it and answers the ping, through the relay.
    s.send_frame(false, OpCode::Text, b"frag").await;
    s.send(OpCode::Ping, b"p1").await;
    s.send_frame(false, OpCode::Continuation, b"men").await;
    s.send_frame(true, OpCode::Continuation, b"ted").await;
    assert_eq!(next_message(&mut lws).await, Message::text("fragmented"));
    let (h, payload) = s.next_frame().await.expect("pong");
    assert_eq!((h.opcode, payload.as_slice()), (OpCode::Pong, &b"p1"[..]));
}

#[tokio::test]
async fn reject_reaches_the_sender_and_the_listener_gets_410() {
    let relay = TestRelay::start(settings()).await;
    let mut l = listen(&relay, "hc").await;
    // .NET and Java send prefixed names; old Node code the plain ones (docs/protocol.md 5.4).
    for (code_param, text_param) in
        [("sb-hc-statusCode", "sb-hc-statusDescription"), ("statusCode", "statusDescription")]
    {
        let (addr, url) = (relay.addr, relay.url("hc", Action::Connect));
        let sender = tokio::spawn(async move { raw_upgrade(addr, &url, &[auth(&token("hc"))]).await });
        let a = l.next_accept().await;
        let reject =
            format!("{}&{code_param}=418&{text_param}={}", a.address, encode_component("No teapots here, sorry"));
        let (status, _) = refused(raw_upgrade(relay.addr, &reject, &[]).await);
        assert_eq!(status, 410, "the listener's reject upgrade fails with 410 Gone");
        let (status, reason) = refused(within("sender answer", sender).await.unwrap());
        assert_eq!((status, reason.as_str()), (418, "No teapots here, sorry"));
    }
}

#[tokio::test]
async fn accept_address_is_single_use_and_unguessable() {
    let relay = TestRelay::start(settings()).await;
    let mut l = listen(&relay, "hc").await;
    let sender = spawn_sender(relay.addr, relay.url("hc", Action::Connect), vec![auth(&token("hc"))]);
    let a = l.next_accept().await;
    let mut lws = accept(relay.addr, &a, &[]).await;
    let (mut s, _) = within("sender", sender).await.unwrap().expect("sender upgrade");

    let (status, reason) = refused(raw_upgrade(relay.addr, &a.address, &[]).await);
    assert_eq!(status, 403, "second use of an accept address");
    assert!(reason.contains("TrackingId:"), "{reason}");

    // The same address with the secret part changed is refused as well.
    let sender = spawn_sender(relay.addr, relay.url("hc", Action::Connect), vec![auth(&token("hc"))]);
    let a2 = l.next_accept().await;
    assert_ne!(a.address, a2.address);
    let (head, last) = a2.address.split_at(a2.address.len() - 1);
    let forged = format!("{head}{}", if last == "0" { "1" } else { "0" });
    assert_eq!(refused(raw_upgrade(relay.addr, &forged, &[]).await).0, 403, "forged accept address");
    // The genuine one still works.
    let mut lws2 = accept(relay.addr, &a2, &[]).await;
    let (mut s2, _) = within("sender 2", sender).await.unwrap().expect("sender 2 upgrade");
    exchange(&mut s, &mut lws).await;
    exchange(&mut s2, &mut lws2).await;
}

#[tokio::test]
async fn sender_gets_504_when_the_listener_never_answers() {
    let mut settings = settings();
    settings.limits.accept_window = Duration::from_millis(600);
    let relay = TestRelay::start(settings).await;
    let mut l = listen(&relay, "hc").await;
    let (addr, url) = (relay.addr, client_url(&relay.base(), "hc", None, "", Action::Connect, Some("sender-504")));
    let started = Instant::now();
    let sender = tokio::spawn(async move { raw_upgrade(addr, &url, &[auth(&token("hc"))]).await });
    let a = l.next_accept().await;
    assert_eq!(a.id, "sender-504");
    let (status, reason) = refused(within("sender answer", sender).await.unwrap());
    assert_eq!(status, 504, "{reason}");
    assert!(reason.contains("TrackingId:sender-504"), "{reason}");
    assert!(started.elapsed() >= Duration::from_millis(500), "answered before the window: {:?}", started.elapsed());
}

#[tokio::test]
async fn accept_address_expires_with_the_accept_window() {
    let mut settings = settings();
    settings.limits.accept_window = Duration::from_millis(500);
    let relay = TestRelay::start(settings).await;
    let mut l = listen(&relay, "hc").await;
    let (addr, url) = (relay.addr, relay.url("hc", Action::Connect));
    let sender = tokio::spawn(async move { raw_upgrade(addr, &url, &[auth(&token("hc"))]).await });
    let a = l.next_accept().await;
    // The sender's 504 marks the end of the window; the address must be dead from then on.
    assert_eq!(refused(within("sender answer", sender).await.unwrap()).0, 504);
    let (status, reason) = refused(raw_upgrade(relay.addr, &a.address, &[]).await);
    assert_eq!(status, 403, "accept after the window: {reason}");
}

#[tokio::test]
async fn suffix_query_and_headers_reach_the_listener() {
    let relay = TestRelay::start(settings()).await;
    let mut l = listen(&relay, "hc").await;
    let tcp = TcpStream::connect(relay.addr).await.unwrap();
    let sender_port = tcp.local_addr().unwrap().port();
    let url = client_url(&relay.base(), "hc", Some("sub/dir x"), "app=1&q=a%20b", Action::Connect, None);
    let headers = vec![auth(&token("hc")), ("X-App", "app value".to_owned())];
    let sender = tokio::spawn(async move { ws_over(tcp, &url, &headers).await });
    let a = l.next_accept().await;

    let prefix = format!("{}/$hc/hc/sub/dir%20x?app=1&q=a%20b&", relay.base());
    assert!(a.address.starts_with(&prefix), "{} should start with {prefix}", a.address);
    assert!(a.address.contains("sb-hc-action=accept"), "{}", a.address);
    assert_eq!(connect_header(&a, "X-App"), Some("app value"));
    assert!(connect_header(&a, "Sec-WebSocket-Key").is_some_and(|k| k.len() == 24), "{:?}", a.connect_headers);
    assert_eq!(connect_header(&a, "Sec-WebSocket-Version"), Some("13"));
    assert_eq!(connect_header(&a, "ServiceBusAuthorization"), None, "the token must not reach the listener");
    let remote = a.remote_endpoint.as_ref().expect("remoteEndpoint");
    assert_eq!((remote.address.as_str(), remote.port), ("127.0.0.1", sender_port));

    let mut lws = accept(relay.addr, &a, &[]).await;
    let (mut s, _) = within("sender", sender).await.unwrap().expect("sender upgrade");
    exchange(&mut s, &mut lws).await;
}

#[tokio::test]
async fn sender_without_an_action_is_a_connect() {
    let relay = TestRelay::start(settings()).await;
    let mut l = listen(&relay, "hc").await;
    let url = format!("{}/$hc/hc", relay.base());
    let sender = spawn_sender(relay.addr, url, vec![auth(&token("hc"))]);
    let a = l.next_accept().await;
    let mut lws = accept(relay.addr, &a, &[]).await;
    let (mut s, _) = within("sender", sender).await.unwrap().expect("sender upgrade");
    exchange(&mut s, &mut lws).await;
}

#[tokio::test]
async fn sb_hc_id_is_the_accept_id() {
    let relay = TestRelay::start(settings()).await;
    let mut l = listen(&relay, "hc").await;
    let id = "4cb542c3-047a-4d40-a19f-bdc66441e736";
    let url = client_url(&relay.base(), "hc", None, "", Action::Connect, Some(id));
    let sender = spawn_sender(relay.addr, url, vec![auth(&token("hc"))]);
    let a = l.next_accept().await;
    assert_eq!(a.id, id);
    let _lws = accept(relay.addr, &a, &[]).await;
    within("sender", sender).await.unwrap().expect("sender upgrade");

    // Without one, the relay makes up a distinct id per sender.
    let mut ids = Vec::new();
    for _ in 0..2 {
        let sender = spawn_sender(relay.addr, relay.url("hc", Action::Connect), vec![auth(&token("hc"))]);
        let a = l.next_accept().await;
        assert_eq!(a.id.len(), 36, "a GUID: {}", a.id);
        ids.push(a.id.clone());
        let _lws = accept(relay.addr, &a, &[]).await;
        within("sender", sender).await.unwrap().expect("sender upgrade");
    }
    assert_ne!(ids[0], ids[1]);
}

#[tokio::test]
async fn subprotocol_chosen_by_the_listener_reaches_the_sender() {
    let relay = TestRelay::start(settings()).await;
    let mut l = listen(&relay, "hc").await;

    let offer = vec![auth(&token("hc")), ("Sec-WebSocket-Protocol", "a, b".to_owned())];
    let sender = spawn_sender(relay.addr, relay.url("hc", Action::Connect), offer);
    let a = l.next_accept().await;
    assert_eq!(connect_header(&a, "Sec-WebSocket-Protocol"), Some("a, b"));
    let mut lws = accept(relay.addr, &a, &[("Sec-WebSocket-Protocol", "b".to_owned())]).await;
    let (mut s, resp) = within("sender", sender).await.unwrap().expect("sender upgrade");
    assert_eq!(resp.headers().get("Sec-WebSocket-Protocol").map(|v| v.to_str().unwrap()), Some("b"));
    exchange(&mut s, &mut lws).await;

    // A sender that offered none gets none.
    let sender = spawn_sender(relay.addr, relay.url("hc", Action::Connect), vec![auth(&token("hc"))]);
    let a = l.next_accept().await;
    assert_eq!(connect_header(&a, "Sec-WebSocket-Protocol"), None);
    let mut raw = raw_upgrade(relay.addr, &a.address, &[]).await.expect("accept");
    assert!(hyco::http1::header(&raw.response.headers, "Sec-WebSocket-Protocol").is_none());
    let (_s, resp) = within("sender", sender).await.unwrap().expect("sender upgrade");
    assert!(resp.headers().get("Sec-WebSocket-Protocol").is_none(), "{:?}", resp.headers());
    raw.send(OpCode::Text, b"hello").await;
}

#[tokio::test]
async fn senders_spread_over_listeners() {
    const LISTENERS: usize = 3;
    const SENDERS: usize = 30;
    let relay = TestRelay::start(settings()).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut listener_tasks = Vec::new();
    for i in 0..LISTENERS {
        let mut l = listen(&relay, "hc").await;
        let (tx, addr) = (tx.clone(), relay.addr);
        listener_tasks.push(tokio::spawn(async move {
            let mut open = Vec::new();
            loop {
                let a = l.next_accept().await;
                open.push(accept(addr, &a, &[]).await);
                tx.send(i).unwrap();
            }
        }));
    }
    let senders: Vec<_> = (0..SENDERS)
        .map(|_| spawn_sender(relay.addr, relay.url("hc", Action::Connect), vec![auth(&token("hc"))]))
        .collect();
    for s in senders {
        within("sender", s).await.unwrap().expect("sender upgrade");
    }
    let mut counts = HashMap::new();
    for _ in 0..SENDERS {
        *counts.entry(within("accept count", rx.recv()).await.unwrap()).or_insert(0) += 1;
    }
    for t in listener_tasks {
        t.abort();
    }
    for i in 0..LISTENERS {
        assert!(counts.get(&i).copied().unwrap_or(0) > 0, "listener {i} got no sender: {counts:?}");
    }
}

/// Half-close: `first` closes, the other side keeps sending and `first` keeps receiving,
/// until the other side closes too; then both connections end.
async fn half_close(sender_first: bool) {
    let relay = TestRelay::start(settings()).await;
    let mut l = listen(&relay, "hc").await;
    let (addr, url) = (relay.addr, relay.url("hc", Action::Connect));
    let sender = tokio::spawn(async move { raw_upgrade(addr, &url, &[auth(&token("hc"))]).await });
    let a = l.next_accept().await;
    let listener = raw_upgrade(relay.addr, &a.address, &[]).await.expect("accept");
    let sender = within("sender", sender).await.unwrap().expect("sender upgrade");
    let (mut first, mut second) = if sender_first { (sender, listener) } else { (listener, sender) };

    first.send(OpCode::Text, b"before").await;
    assert_eq!(second.next_data().await, (OpCode::Text, b"before".to_vec()));
    first.send_close(1000, "first done").await;
    assert_eq!(second.next_close().await, Some(CloseFrame::new(1000, "first done")));

    // `second` has not answered the Close: its data must still flow to `first`.
    second.send(OpCode::Binary, b"after 1").await;
    second.send(OpCode::Text, b"after 2").await;
    assert_eq!(first.next_data().await, (OpCode::Binary, b"after 1".to_vec()));
    assert_eq!(first.next_data().await, (OpCode::Text, b"after 2".to_vec()));

    second.send_close(4000, "second done").await;
    assert_eq!(first.next_close().await, Some(CloseFrame::new(4000, "second done")));
    first.expect_eof().await;
    second.expect_eof().await;
}

#[tokio::test]
async fn half_close_sender_first() {
    half_close(true).await;
}

#[tokio::test]
async fn half_close_listener_first() {
    half_close(false).await;
}

#[tokio::test]
async fn close_code_and_reason_pass_through() {
    let relay = TestRelay::start(settings()).await;
    let mut l = listen(&relay, "hc").await;
    let (mut s, mut lws) = rendezvous(&relay, &mut l, "hc").await;
    let frame = WsCloseFrame { code: CloseCode::from(4001), reason: "bye".into() };
    within("listener close", lws.close(Some(frame))).await.expect("listener close");
    assert_eq!(next_close(&mut s).await, (4001, "bye".to_owned()));
    // tungstenite echoes the Close (flushed on the sender's next read); the echo comes back
    // to the listener through the relay, and then both connections end.
    let (sender_end, echo) = tokio::join!(within("sender end", s.next()), next_close(&mut lws));
    assert!(sender_end.is_none(), "{sender_end:?}");
    assert_eq!(echo, (4001, "bye".to_owned()));
}

#[tokio::test]
async fn a_side_vanishing_without_close_gets_the_other_1011() {
    let relay = TestRelay::start(settings()).await;
    let mut l = listen(&relay, "hc").await;
    for sender_vanishes in [true, false] {
        let (addr, url) = (relay.addr, relay.url("hc", Action::Connect));
        let sender = tokio::spawn(async move { raw_upgrade(addr, &url, &[auth(&token("hc"))]).await });
        let a = l.next_accept().await;
        let listener = raw_upgrade(relay.addr, &a.address, &[]).await.expect("accept");
        let sender = within("sender", sender).await.unwrap().expect("sender upgrade");
        let (gone, mut left) = if sender_vanishes { (sender, listener) } else { (listener, sender) };
        drop(gone);
        let close = left.next_close().await.expect("a close code");
        assert_eq!(close.code, 1011, "sender vanished: {sender_vanishes}; {close:?}");
        left.expect_eof().await;
    }
}

#[tokio::test]
async fn unknown_hc_no_listener_and_bad_paths_get_404_or_400() {
    let mut settings = settings();
    settings.hcs.push(HcSettings {
        name: "quiet".into(),
        requires_client_authorization: true,
        rules: Vec::new(),
        ports: Vec::new(),
    });
    let relay = TestRelay::start(settings).await;

    let url = client_url(&relay.base(), "nowhere", None, "", Action::Connect, Some("track-404"));
    let (status, reason) = refused(raw_upgrade(relay.addr, &url, &[auth(&token("nowhere"))]).await);
    assert_eq!(status, 404, "{reason}");
    assert!(reason.contains("TrackingId:track-404, Timestamp:"), "{reason}");

    let url = relay.url("quiet", Action::Connect);
    let (status, reason) = refused(raw_upgrade(relay.addr, &url, &[auth(&token("quiet"))]).await);
    assert_eq!(status, 404, "HC without a listener: {reason}");

    let url = format!("{}/elsewhere?sb-hc-action=connect", relay.base());
    assert_eq!(refused(raw_upgrade(relay.addr, &url, &[]).await).0, 404, "outside $hc/");

    let url = format!("{}/$hc/quiet?sb-hc-action=dance", relay.base());
    assert_eq!(refused(raw_upgrade(relay.addr, &url, &[auth(&token("quiet"))]).await).0, 400, "bad action");

    let not_ws = format!("GET /$hc/quiet?sb-hc-action=connect HTTP/1.1\r\nHost: {}\r\n\r\n", relay.addr);
    assert_eq!(status_of(&raw_http(relay.addr, not_ws.as_bytes()).await), 400, "not a WebSocket upgrade");
    assert_eq!(status_of(&raw_http(relay.addr, b"\x16\x03\x01garbage\r\n\r\n").await), 400, "not HTTP");
}

/// The address a listener that reached the relay with `headers` is given for a sender.
async fn accept_address(relay: &TestRelay, hc: &str, headers: &[(&str, String)]) -> String {
    let url = relay.url(hc, Action::Listen);
    let mut all = vec![auth(&token(hc))];
    all.extend(headers.iter().cloned());
    let (ws, _) = within("listen", ws_connect(relay.addr, &url, &all)).await.expect("listen");
    let mut l = Listener { ws };
    let _sender = spawn_sender(relay.addr, relay.url(hc, Action::Connect), vec![auth(&token(hc))]);
    l.next_accept().await.address
}

#[tokio::test]
async fn behind_a_tls_proxy_accept_addresses_use_the_proxys_scheme_and_host() {
    let forwarded = [("X-Forwarded-Proto", "https".to_owned()), ("X-Forwarded-Host", "relay.example.net".to_owned())];
    // A trusted proxy (here: loopback) says how it was reached.
    let mut s = settings();
    s.limits.trusted_proxies = vec![hyco::relay::config::IpNet::parse("127.0.0.0/8").unwrap()];
    let relay = TestRelay::start(s).await;
    let address = accept_address(&relay, "p1", &forwarded).await;
    assert!(address.starts_with("wss://relay.example.net/$hc/p1?"), "{address}");
    let rfc = [("Forwarded", "for=192.0.2.1;proto=https;host=r.example:8443".to_owned())];
    let address = accept_address(&relay, "p2", &rfc).await;
    assert!(address.starts_with("wss://r.example:8443/$hc/p2?"), "{address}");
    // Anyone else's forwarding headers say nothing.
    let relay = TestRelay::start(settings()).await;
    let address = accept_address(&relay, "p3", &forwarded).await;
    assert!(address.starts_with(&format!("ws://{}/$hc/p3?", relay.addr)), "{address}");
    // The operator's external_url wins over everything.
    let mut s = settings();
    s.external_url = Some("wss://fixed.example".into());
    let relay = TestRelay::start(s).await;
    let address = accept_address(&relay, "p4", &forwarded).await;
    assert!(address.starts_with("wss://fixed.example/$hc/p4?"), "{address}");
}
