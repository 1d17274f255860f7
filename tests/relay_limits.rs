//! Every bound the relay keeps on what a peer controls (docs/protocol.md 5.1, 5.5, 8; each
//! with a test that exceeds it): listeners per HC, header and control message size, control
//! message content, handshake time, connections, connections in handshake per source
//! address, waiting senders, token lifetime.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use hyco::protocol::{self, Action};
use hyco::relay::tls;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// Retries `attempt` until it returns `Some`, for at most [`STEP`]: for a slot the relay
/// frees after noticing that a peer left (there is no event to wait for).
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(what: &str, mut attempt: impl FnMut() -> F) -> T {
    within(what, async {
        loop {
            if let Some(v) = attempt().await {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

#[tokio::test]
async fn the_26th_listener_is_refused_until_one_leaves() {
    let relay = TestRelay::start(settings()).await;
    assert_eq!(relay_limit(), 25);
    let mut listeners = Vec::new();
    for _ in 0..25 {
        listeners.push(listen(&relay, "hc").await);
    }
    let url = relay.url("hc", Action::Listen);
    let (status, reason) = refused(raw_upgrade(relay.addr, &url, &[auth(&token("hc"))]).await);
    assert_eq!(status, 403, "{reason}");
    // Another HC is not affected.
    let _other = listen(&relay, "other").await;

    // A listener that closes cleanly gets the relay's Close back and frees its slot.
    let mut gone = listeners.pop().unwrap();
    within("listener close", gone.ws.close(None)).await.expect("close");
    let reply = within("the relay's Close", gone.ws.next()).await;
    assert!(matches!(reply, Some(Ok(Message::Close(_)))), "expected the relay's answering Close, got {reply:?}");
    let end = within("end of the control channel", gone.ws.next()).await;
    assert!(end.is_none(), "{end:?}");
    eventually("a free listener slot", || async { ws_connect(relay.addr, &url, &[auth(&token("hc"))]).await.ok() })
        .await;
}

fn relay_limit() -> usize {
    hyco::relay::Limits::default().max_listeners_per_hc
}

#[tokio::test]
async fn oversize_request_head_is_431() {
    let mut settings = settings();
    settings.limits.max_header_bytes = 4096;
    let relay = TestRelay::start(settings).await;
    let url = relay.url("hc", Action::Listen);
    // Within the limit: fine.
    let small = vec![auth(&token("hc")), ("X-Padding", "p".repeat(2000))];
    within("listen", ws_connect(relay.addr, &url, &small)).await.expect("a head under the limit");
    let big = vec![auth(&token("hc")), ("X-Padding", "p".repeat(8000))];
    let (status, reason) = refused(raw_upgrade(relay.addr, &url, &big).await);
    assert_eq!(status, 431, "{reason}");
}

#[tokio::test]
async fn oversize_control_message_closes_with_1009() {
    let mut settings = settings();
    settings.limits.max_control_message = 1024;
    let relay = TestRelay::start(settings).await;
    let mut l = listen(&relay, "hc").await;
    let renew = format!(r#"{{"renewToken":{{"token":"{}"}}}}"#, "x".repeat(2000));
    l.send_text(renew).await;
    let (code, reason) = l.next_close().await;
    assert_eq!(code, 1009, "{reason}");
}

#[tokio::test]
async fn garbage_control_messages_close_with_1003() {
    let relay = TestRelay::start(settings()).await;
    for garbage in [Message::text("not json"), Message::text(r#"{"dance":{}}"#), Message::binary(vec![1u8, 2, 3])] {
        let mut l = listen(&relay, "hc").await;
        within("send", l.ws.send(garbage.clone())).await.expect("send");
        let (code, reason) = l.next_close().await;
        assert_eq!(code, 1003, "{garbage:?}: {reason}");
    }
}

#[tokio::test]
async fn handshake_timeout_drops_half_requests_while_honest_clients_work() {
    const FLOOD: usize = 200;
    let timeout = Duration::from_millis(1500);
    let mut settings = settings();
    settings.limits.handshake_timeout = timeout;
    let relay = TestRelay::start(settings).await;

    let mut flood = Vec::new();
    for _ in 0..FLOOD {
        let mut tcp = within("flood connect", TcpStream::connect(relay.addr)).await.expect("connect");
        tcp.write_all(b"GET /$hc/hc?sb-hc-action=listen HTTP/1.1\r\nHost: x\r\n").await.expect("half a request");
        let opened = Instant::now();
        flood.push(tokio::spawn(async move {
            let mut buf = [0; 64];
            let n = within("the relay to drop a half request", tcp.read(&mut buf)).await;
            assert!(matches!(n, Ok(0) | Err(_)), "the relay sent something: {n:?}");
            (opened, Instant::now())
        }));
    }

    let mut l = listen(&relay, "hc").await;
    let (mut s, mut lws) = rendezvous(&relay, &mut l, "hc").await;
    exchange(&mut s, &mut lws).await;
    let honest_done = Instant::now();

    let mut first_drop = None::<Instant>;
    for f in flood {
        let (opened, dropped) = within("flood task", f).await.expect("flood task");
        assert!(dropped - opened >= timeout - Duration::from_millis(100), "dropped after {:?}", dropped - opened);
        first_drop = Some(first_drop.map_or(dropped, |d| d.min(dropped)));
    }
    assert!(honest_done < first_drop.unwrap(), "the honest pair finished only after the flood was dropped");
    // The timeout is for handshakes only: the tunnel and the control channel outlive it.
    exchange(&mut s, &mut lws).await;
    let (mut s2, mut lws2) = rendezvous(&relay, &mut l, "hc").await;
    exchange(&mut s2, &mut lws2).await;
}

#[tokio::test]
async fn connections_over_the_limit_get_503() {
    let mut settings = settings();
    settings.limits.max_connections = 3;
    let relay = TestRelay::start(settings).await;
    let _l = listen(&relay, "hc").await;
    let mut idle = Vec::new();
    for _ in 0..2 {
        idle.push(TcpStream::connect(relay.addr).await.unwrap());
    }
    let url = relay.url("hc", Action::Listen);
    let (status, reason) = refused(raw_upgrade(relay.addr, &url, &[auth(&token("hc"))]).await);
    assert_eq!(status, 503, "{reason}");

    // Capacity comes back when a connection ends.
    drop(idle.pop());
    eventually("a free connection slot", || async { ws_connect(relay.addr, &url, &[auth(&token("hc"))]).await.ok() })
        .await;
}

#[tokio::test]
async fn waiting_senders_over_the_limit_get_503() {
    let mut settings = settings();
    settings.limits.max_pending_senders_per_hc = 2;
    let relay = TestRelay::start(settings).await;
    let mut l = listen(&relay, "hc").await;
    let mut waiting = Vec::new();
    let mut accepts = Vec::new();
    for _ in 0..2 {
        waiting.push(spawn_sender(relay.addr, relay.url("hc", Action::Connect), vec![auth(&token("hc"))]));
        accepts.push(l.next_accept().await);
    }
    let url = relay.url("hc", Action::Connect);
    let (status, reason) = refused(raw_upgrade(relay.addr, &url, &[auth(&token("hc"))]).await);
    assert_eq!(status, 503, "{reason}");

    // Once one is answered, there is room for another, while the first one's tunnel is
    // still open: a joined sender no longer waits.
    let mut lws = accept(relay.addr, &accepts[0], &[]).await;
    let (mut s, _) = within("first sender", waiting.remove(0)).await.unwrap().expect("first sender");
    exchange(&mut s, &mut lws).await;
    let third = spawn_sender(relay.addr, url, vec![auth(&token("hc"))]);
    let a = l.next_accept().await;
    let _lws3 = accept(relay.addr, &a, &[]).await;
    within("third sender", third).await.unwrap().expect("third sender");
    exchange(&mut s, &mut lws).await;
}

/// A listener whose token expires at about now, on a relay with `grace`.
async fn short_lived_listener(grace: Duration) -> (TestRelay, Listener) {
    let mut settings = settings();
    settings.limits.renew_grace = grace;
    let relay = TestRelay::start(settings).await;
    let url = relay.url("hc", Action::Listen);
    // Accepted within the clock-skew allowance; the grace period counts from `se`.
    let short = token_with("hc", KEY_NAME, KEY, protocol::unix_now());
    let (ws, _) = within("listen", ws_connect(relay.addr, &url, &[auth(&short)])).await.expect("listen");
    (relay, Listener { ws })
}

fn renew_message(token: &str) -> String {
    serde_json::json!({ "renewToken": { "token": token } }).to_string()
}

#[tokio::test]
async fn expired_listener_token_closes_with_1008_after_the_grace() {
    let grace = Duration::from_millis(700);
    let started = Instant::now();
    let (_relay, mut l) = short_lived_listener(grace).await;
    let (code, reason) = l.next_close().await;
    assert_eq!(code, 1008, "{reason}");
    assert!(started.elapsed() >= grace - Duration::from_millis(100), "closed after only {:?}", started.elapsed());
}

#[tokio::test]
async fn renew_token_keeps_the_listener_past_its_first_expiry() {
    let grace = Duration::from_millis(1000);
    let (relay, mut l) = short_lived_listener(grace).await;
    l.send_text(renew_message(&token("hc"))).await;
    // Past the first token's expiry plus the grace: still open, nothing sent.
    let quiet = tokio::time::timeout(grace * 2, l.ws.next()).await;
    assert!(quiet.is_err(), "the control channel did not stay quiet: {quiet:?}");
    let (mut s, mut lws) = rendezvous(&relay, &mut l, "hc").await;
    exchange(&mut s, &mut lws).await;
}

#[tokio::test]
async fn invalid_renewal_closes_with_1008() {
    let relay = TestRelay::start(settings()).await;
    let later = protocol::unix_now() + 3600;
    for bad in [
        token_with("hc", KEY_NAME, "wrong key", later),
        token_with("other", KEY_NAME, KEY, later),
        token_with("hc", KEY_NAME, KEY, protocol::unix_now() - 3600),
    ] {
        let mut l = listen(&relay, "hc").await;
        l.send_text(renew_message(&bad)).await;
        let (code, reason) = l.next_close().await;
        assert_eq!(code, 1008, "{reason}");
    }
}

#[tokio::test]
async fn control_channel_keep_alive() {
    let mut settings = settings();
    settings.limits.ping_interval = Duration::from_millis(300);
    let relay = TestRelay::start(settings).await;
    let mut good = listen(&relay, "hc").await;

    // The relay answers a listener's ping and takes an unsolicited pong (.NET sends those).
    within("ping", good.ws.send(Message::Ping(b"are you there".to_vec().into()))).await.expect("ping");
    within("pong", good.ws.send(Message::Pong(b"unsolicited".to_vec().into()))).await.expect("pong");
    let reply = within("the relay's pong", good.ws.next()).await;
    assert!(matches!(&reply, Some(Ok(Message::Pong(p))) if p.as_ref() == b"are you there"), "{reply:?}");

    // A listener that never answers the relay's pings is dropped; one that does (tungstenite
    // answers while it reads) stays.
    let url = relay.url("hc", Action::Listen);
    let mut mute = raw_upgrade(relay.addr, &url, &[auth(&token("hc"))]).await.expect("mute listener");
    let mute_pings = async {
        let mut pings = 0;
        loop {
            match mute.next_frame().await {
                Some((h, _)) if h.opcode == hyco::ws::frame::OpCode::Ping => pings += 1,
                None => return pings,
                other => panic!("unexpected on a silent control channel: {other:?}"),
            }
        }
    };
    let good_reads = async {
        loop {
            match good.ws.next().await {
                Some(Ok(Message::Ping(_))) => {}
                other => panic!("the answering listener got {other:?}"),
            }
        }
    };
    let pings = tokio::select! {
        pings = mute_pings => pings,
        () = good_reads => unreachable!(),
    };
    assert!(pings >= 1, "the relay never pinged the silent listener");

    // An idle channel that answers is pinged every interval, and never dropped.
    let watch_until = tokio::time::Instant::now() + Duration::from_millis(1500);
    let mut pings = 0;
    while let Ok(next) = tokio::time::timeout_at(watch_until, good.ws.next()).await {
        match next {
            Some(Ok(Message::Ping(_))) => pings += 1,
            other => panic!("the answering listener got {other:?}"),
        }
    }
    assert!(pings >= 4, "{pings} pings in 1.5 s at an interval of 300 ms");
    let (mut s, mut lws) = rendezvous(&relay, &mut good, "hc").await;
    exchange(&mut s, &mut lws).await;
}

#[tokio::test]
async fn tls_listener_and_sender_meet_end_to_end() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("tls-{}", protocol::new_guid()));
    let (config, print) = tls::self_signed(&dir, &["localhost".to_owned()]).expect("self-signed certificate");
    let relay = TestRelay::start_with_tls(settings(), Some(config)).await;

    use rustls::pki_types::pem::PemObject;
    let cert = rustls::pki_types::CertificateDer::from_pem_file(dir.join("self-signed.crt")).expect("cert file");
    assert_eq!(hyco::fingerprint::of(&cert), print);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).expect("add root");
    let client =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client));
    let tls_ws = |url: String, headers: Vec<(&'static str, String)>| {
        let (connector, addr) = (connector.clone(), relay.addr);
        async move {
            let tcp = TcpStream::connect(addr).await.expect("connect");
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let tls = connector.connect(name, tcp).await.expect("TLS handshake against the self-signed cert");
            ws_over(tls, &url, &headers).await.expect("upgrade over TLS").0
        }
    };

    let mut control =
        within("listen over TLS", tls_ws(relay.url("hc", Action::Listen), vec![auth(&token("hc"))])).await;
    let sender = tokio::spawn(tls_ws(relay.url("hc", Action::Connect), vec![auth(&token("hc"))]));
    let Ok(protocol::RelayMessage::Accept(a)) = (match next_message(&mut control).await {
        Message::Text(t) => serde_json::from_str(&t),
        other => panic!("expected an accept, got {other:?}"),
    }) else {
        panic!("expected an accept message")
    };
    let base = format!("wss://localhost:{}/$hc/hc?", relay.addr.port());
    assert!(a.address.starts_with(&base), "{}", a.address);
    let mut lws = within("accept over TLS", tls_ws(a.address.clone(), vec![])).await;
    let mut s = within("sender over TLS", sender).await.expect("sender task");
    exchange(&mut s, &mut lws).await;

    // Plain HTTP on the TLS port gets no upgrade.
    let plain = relay.url("hc", Action::Listen).replace("wss://localhost", "ws://127.0.0.1");
    assert!(raw_upgrade(relay.addr, &plain, &[auth(&token("hc"))]).await.is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn shutdown_closes_control_channels_with_1001_and_drains_tunnels() {
    let mut settings = settings();
    settings.limits.drain_timeout = Duration::from_millis(800);
    let relay = TestRelay::start(settings).await;
    let mut l = listen(&relay, "hc").await;
    let (mut s, mut lws) = rendezvous(&relay, &mut l, "hc").await;

    let started = Instant::now();
    relay.shutdown.cancel();
    // The listener reads the Close but never answers it; that must not hold up shutdown.
    assert_eq!(l.next_close().await.0, 1001);
    // Live tunnels keep working during the drain period, then get 1001 too.
    exchange(&mut s, &mut lws).await;
    assert_eq!(next_close(&mut s).await.0, 1001);
    assert_eq!(next_close(&mut lws).await.0, 1001);
    let addr = relay.addr;
    relay.stop().await.expect("relay::run result");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(700), "tunnels were not given the drain period: {took:?}");
    assert!(took < Duration::from_millis(2000), "shutdown took {took:?} with a drain period of 800 ms");
    assert!(TcpStream::connect(addr).await.is_err(), "the relay still accepts connections");
}

#[tokio::test]
async fn idle_tunnels_close_with_1001_while_busy_ones_stay() {
    let mut s = settings();
    s.limits.tunnel_idle_timeout = Some(Duration::from_millis(800));
    let relay = TestRelay::start(s).await;
    let mut l = listen(&relay, "hc").await;
    let (mut sender, mut listener) = rendezvous(&relay, &mut l, "hc").await;
    // Busy for three timeouts: a message every 200 ms keeps the tunnel open.
    for i in 0..12 {
        within("send", sender.send(Message::text(format!("m{i}")))).await.expect("send");
        assert_eq!(next_message(&mut listener).await, Message::text(format!("m{i}")));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Then idle: both sides hear 1001.
    let quiet = std::time::Instant::now();
    let (to_sender, to_listener) = tokio::join!(next_close(&mut sender), next_close(&mut listener));
    assert_eq!(to_sender.0, 1001, "{to_sender:?}");
    assert_eq!(to_listener.0, 1001, "{to_listener:?}");
    assert!(to_sender.1.contains("idle"), "{to_sender:?}");
    assert!(quiet.elapsed() >= Duration::from_millis(500), "closed {:?} after the last message", quiet.elapsed());
}

/// A TCP connection to `addr` from `source` (any of 127.0.0.0/8 is this host on Linux: a
/// test's way of being several clients).
async fn connect_from(source: [u8; 4], addr: std::net::SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind((std::net::Ipv4Addr::from(source), 0).into()).expect("bind a loopback source address");
    within("connect", socket.connect(addr)).await.expect("connect")
}

/// A listener on `hc` and a sender joined through the relay, each from its own address.
async fn pair_from(relay: &TestRelay, hc: &str, listener: [u8; 4], sender: [u8; 4]) -> (Ws, Ws) {
    let url = relay.url(hc, Action::Listen);
    let tcp = connect_from(listener, relay.addr).await;
    let (ws, _) = within("listen", ws_over(tcp, &url, &[auth(&token(hc))])).await.expect("listen");
    let mut l = Listener { ws };
    let (addr, url, token) = (relay.addr, relay.url(hc, Action::Connect), token(hc));
    let sending = tokio::spawn(async move {
        let tcp = connect_from(sender, addr).await;
        ws_over(tcp, &url, &[auth(&token)]).await
    });
    let a = l.next_accept().await;
    let tcp = connect_from(listener, relay.addr).await;
    let (mut lws, _) = within("accept", ws_over(tcp, &a.address, &[])).await.expect("accept");
    let (mut sws, _) = within("sender 101", sending).await.expect("sender task").expect("sender upgrade");
    exchange(&mut sws, &mut lws).await;
    (sws, lws)
}

/// Issue 12 (F5): one address opening connections that never finish their handshake
/// holds at most `max_handshakes_per_ip` of them, not the whole connection limit; the rest
/// get 503, and clients elsewhere still get in.
#[tokio::test]
async fn one_address_holding_handshakes_leaves_room_for_others() {
    const HOLD: usize = 150;
    let mut settings = settings();
    settings.limits.max_connections = 100;
    settings.limits.handshake_timeout = Duration::from_secs(20);
    let per_ip = settings.limits.max_handshakes_per_ip;
    assert_eq!(per_ip, 64, "the default");
    let relay = TestRelay::start(settings).await;

    let mut held = Vec::new();
    for _ in 0..HOLD {
        held.push(connect_from([127, 0, 0, 2], relay.addr).await);
    }
    // Others get in meanwhile: a listener from 127.0.0.3 and a sender from 127.0.0.4.
    let (mut s, mut l) = pair_from(&relay, "hc", [127, 0, 0, 3], [127, 0, 0, 4]).await;
    // The relay answers those over the limit at once; the others wait for their heads.
    let answers = futures_util::future::join_all(held.iter_mut().map(|tcp| async move {
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(1), tcp.read_to_end(&mut answer)).await;
        String::from_utf8_lossy(&answer).into_owned()
    }))
    .await;
    let refused: Vec<_> = answers.iter().filter(|a| !a.is_empty()).collect();
    assert_eq!(refused.len(), HOLD - per_ip);
    assert!(refused.iter().all(|a| a.starts_with("HTTP/1.1 503 Too many connections in handshake from this address")));
    assert_eq!(relay.metrics.rejected(hyco::relay::metrics::Reason::AddressLimit), (HOLD - per_ip) as u64);
    for tcp in &mut held {
        let _ = tcp.write_all(b"GET /$hc/hc?sb-hc-action=listen HTTP/1.1\r\nHost: x\r\n").await;
    }
    exchange(&mut s, &mut l).await;
}

/// Only the handshake counts: control channels and tunnels from an address at its limit
/// of connections in handshake keep working, and more of them open once it has finished.
#[tokio::test]
async fn connections_past_their_handshake_do_not_count_against_their_address() {
    let mut settings = settings();
    settings.limits.max_handshakes_per_ip = 2;
    let relay = TestRelay::start(settings).await;
    const ADDR: [u8; 4] = [127, 0, 0, 5];
    let mut tunnels = Vec::new();
    for hc in ["a", "b", "c"] {
        tunnels.push(pair_from(&relay, hc, ADDR, ADDR).await);
    }
    let _half = [connect_from(ADDR, relay.addr).await, connect_from(ADDR, relay.addr).await];
    let tcp = connect_from(ADDR, relay.addr).await;
    let url = relay.url("other", Action::Listen);
    let r = raw_upgrade_over(tcp, &url, &[auth(&token("other"))]).await;
    let (status, reason) = refused(r);
    assert_eq!(status, 503, "{reason}");
    for (s, l) in &mut tunnels {
        exchange(s, l).await;
    }
    // Another address is not affected.
    let _other = pair_from(&relay, "d", [127, 0, 0, 6], [127, 0, 0, 6]).await;
}
