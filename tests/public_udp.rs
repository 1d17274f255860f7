//! Public UDP ports (docs/protocol.md 10.2), over real sockets: an in-process relay, a
//! `hyco listen` with a `udp://` target (or a raw listener where the test needs to see
//! frames), and visitors that are plain UDP sockets. Datagram boundaries, sessions per
//! visitor, the idle timeout, every limit exceeded, and ports whose protocol does not
//! match their target.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::bridge::{Listening, Target, client, listen_settings};
use common::{Listener, RawWs, TestRelay, auth, raw_upgrade, refused, settings, token, within};
use hyco::protocol::{self, Action};
use hyco::public::{Ask, PortAsk, Proto};
use hyco::relay::RelaySettings;
use hyco::relay::config::IpNet;
use hyco::relay::metrics::Unserved;
use hyco::ws::frame::OpCode;
use tokio::io::AsyncReadExt;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// How long a test waits to be sure a datagram does not come.
const QUIET: Duration = Duration::from_millis(300);

/// A UDP target answering each datagram with what `reply` makes of it (and its source).
struct UdpTarget {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl UdpTarget {
    async fn spawn(reply: impl Fn(&[u8], SocketAddr) -> Vec<Vec<u8>> + Send + 'static) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind the target");
        let addr = socket.local_addr().expect("target addr");
        let task = tokio::spawn(async move {
            let mut buf = vec![0; 65_536];
            loop {
                let Ok((n, from)) = socket.recv_from(&mut buf).await else { continue };
                for answer in reply(&buf[..n], from) {
                    let _ = socket.send_to(&answer, from).await;
                }
            }
        });
        Self { addr, task }
    }

    async fn echo() -> Self {
        Self::spawn(|d, _| vec![d.to_vec()]).await
    }

    fn spec(&self, name: &str) -> String {
        format!("{name}=udp://{}", self.addr)
    }
}

impl Drop for UdpTarget {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A listener of `hc` in-process, asking a public port for each of its `to` targets (or for
/// `asks` as given); returns it and the ports granted, in the order asked.
async fn listen_public(relay: &TestRelay, hc: &str, to: &[String], asks: Option<Vec<Ask>>) -> (Listening, Vec<u16>) {
    let mut ls = listen_settings(hc, to);
    ls.public = match asks {
        Some(asks) => asks,
        None => ls.targets.public_asks(&[""]).expect("asks"),
    };
    let listening = Listening::start(client(relay.addr), ls).await;
    let ports = listening
        .stats
        .public
        .borrow()
        .iter()
        .map(|a| a.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).expect("host:port"))
        .collect();
    (listening, ports)
}

/// A visitor: a UDP socket connected to public port `port`.
async fn visitor(port: u16) -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind a visitor");
    socket.connect(("127.0.0.1", port)).await.expect("connect the visitor");
    socket
}

async fn recv(socket: &UdpSocket) -> Vec<u8> {
    let mut buf = vec![0; 65_536];
    let n = within("a datagram back", socket.recv(&mut buf)).await.expect("recv");
    buf.truncate(n);
    buf
}

async fn send(socket: &UdpSocket, datagram: &[u8]) {
    let n = within("send a datagram", socket.send(datagram)).await.expect("send");
    assert_eq!(n, datagram.len());
}

/// Nothing arrives on `socket` for a while.
async fn silent(socket: &UdpSocket) {
    let mut buf = [0; 64];
    if let Ok(r) = tokio::time::timeout(QUIET, socket.recv(&mut buf)).await {
        panic!("expected no datagram, got {r:?}");
    }
}

/// The value of series `name` for UDP port `port` (with `label` among its labels).
fn metric(relay: &TestRelay, name: &str, port: u16, label: &str) -> u64 {
    let text = relay.metrics.render();
    let at = format!("{name}{{proto=\"udp\",port=\"{port}\",");
    let line = text
        .lines()
        .find(|l| l.starts_with(&at) && l.contains(label))
        .unwrap_or_else(|| panic!("no {name} for port {port} ({label}) in:\n{text}"));
    line.rsplit(' ').next().and_then(|n| n.parse().ok()).expect("a number")
}

fn rejected(relay: &TestRelay, port: u16, why: Unserved) -> u64 {
    relay.metrics.public_counters(Proto::Udp, port).expect("the port is open").rejected(why)
}

fn active(relay: &TestRelay, port: u16) -> u64 {
    relay.metrics.public_counters(Proto::Udp, port).expect("the port is open").active()
}

/// Waits until `f` holds, polling.
async fn until(what: &str, f: impl Fn() -> bool) {
    within(what, async {
        while !f() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

fn relay_settings(tweak: impl FnOnce(&mut RelaySettings)) -> RelaySettings {
    let mut s = settings();
    tweak(&mut s);
    s
}

#[tokio::test]
async fn datagrams_keep_their_boundaries_both_ways() {
    let relay = TestRelay::start_with_metrics(settings()).await;
    let target = UdpTarget::echo().await;
    let (listening, ports) = listen_public(&relay, "dns", &[target.spec("dns")], None).await;
    let port = ports[0];
    let v = visitor(port).await;
    let sizes = [1, 0, 2, 100, 1_400, 8_192, 60_000, 1];
    for (i, &size) in sizes.iter().enumerate() {
        let datagram: Vec<u8> = (0..size).map(|b| (b * 7 + i) as u8).collect();
        send(&v, &datagram).await;
        assert_eq!(recv(&v).await, datagram, "datagram {i} of {size} bytes");
    }
    // A burst: each datagram comes back whole, none merged or split.
    let burst: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 1 + usize::from(i) * 97]).collect();
    for d in &burst {
        send(&v, d).await;
    }
    for d in &burst {
        assert_eq!(&recv(&v).await, d);
    }
    let count = sizes.len() as u64 + 20;
    let bytes = sizes.iter().sum::<usize>() as u64 + burst.iter().map(Vec::len).sum::<usize>() as u64;
    assert_eq!(metric(&relay, "hyco_public_datagrams_total", port, "visitor_to_listener"), count);
    assert_eq!(metric(&relay, "hyco_public_datagrams_total", port, "listener_to_visitor"), count);
    assert_eq!(metric(&relay, "hyco_public_bytes_total", port, "visitor_to_listener"), bytes);
    assert_eq!(metric(&relay, "hyco_public_bytes_total", port, "listener_to_visitor"), bytes);
    assert_eq!(metric(&relay, "hyco_public_opened_total", port, ""), 1, "one visitor, one session");
    assert_eq!(active(&relay, port), 1);
    assert_eq!(relay.metrics.tunnels_active(), 1);
    // The status page lists the session as a tunnel of the port, with its bytes, and the
    // relay's totals count them.
    let status = hyco::relay::dashboard::status(&relay.metrics);
    let via = format!("udp/{port}");
    let session = status["tunnels"].as_array().unwrap().iter().find(|t| t["via"] == via.as_str()).cloned();
    let session = session.unwrap_or_else(|| panic!("no tunnel via {via}: {status:#}"));
    assert_eq!(session["hc"], "dns");
    assert_eq!(session["sender_to_listener"].as_u64(), Some(bytes), "{session}");
    assert_eq!(status["relayed_bytes"]["listener_to_sender"].as_u64(), Some(bytes), "{status:#}");
    let stats = &listening.stats;
    assert_eq!(stats.active.load(std::sync::atomic::Ordering::Relaxed), 1, "the listener counts the session");
    assert_eq!(stats.bytes_in.load(std::sync::atomic::Ordering::Relaxed), bytes);
    assert_eq!(stats.bytes_out.load(std::sync::atomic::Ordering::Relaxed), bytes);
    listening.stop().await.expect("listener stops");
    until("the session to end with the listener", || active(&relay, port) == 0).await;
}

#[tokio::test]
async fn each_visitor_gets_its_own_replies() {
    let relay = TestRelay::start(settings()).await;
    // The reply names the source the target saw: one socket per session.
    let target = UdpTarget::spawn(|d, from| vec![[d, b" from ", from.to_string().as_bytes()].concat()]).await;
    let (_listening, ports) = listen_public(&relay, "game", &[target.spec("game")], None).await;
    let (a, b) = (visitor(ports[0]).await, visitor(ports[0]).await);
    let mut sources = Vec::new();
    for round in 0..3 {
        send(&a, format!("a{round}").as_bytes()).await;
        send(&b, format!("b{round}").as_bytes()).await;
        for (v, name) in [(&a, "a"), (&b, "b")] {
            let reply = String::from_utf8(recv(v).await).expect("text");
            let (said, from) = reply.split_once(" from ").expect("a reply");
            assert_eq!(said, format!("{name}{round}"));
            sources.push((name, from.to_owned()));
        }
    }
    let of = |n: &str| sources.iter().filter(|(s, _)| *s == n).map(|(_, f)| f.clone()).collect::<Vec<_>>();
    let (from_a, from_b) = (of("a"), of("b"));
    assert!(from_a.iter().all(|f| *f == from_a[0]) && from_b.iter().all(|f| *f == from_b[0]), "{sources:?}");
    assert_ne!(from_a[0], from_b[0], "two sessions, two sockets at the listener");
    assert_eq!(active(&relay, ports[0]), 2);
}

#[tokio::test]
async fn an_idle_session_ends_and_the_next_datagram_opens_another() {
    let relay = TestRelay::start_with_metrics(relay_settings(|s| {
        s.public.udp_idle_timeout = Duration::from_millis(400);
    }))
    .await;
    let target = UdpTarget::echo().await;
    let (listening, ports) = listen_public(&relay, "dns", &[target.spec("dns")], None).await;
    let port = ports[0];
    let v = visitor(port).await;
    // Datagrams closer together than the timeout keep the session.
    for i in 0..4u8 {
        send(&v, &[i]).await;
        assert_eq!(recv(&v).await, [i]);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(metric(&relay, "hyco_public_opened_total", port, ""), 1);
    until("the idle session to end", || active(&relay, port) == 0).await;
    let stats = listening.stats.clone();
    until("the listener's end of it too", || stats.active.load(std::sync::atomic::Ordering::Relaxed) == 0).await;
    assert_eq!(relay.metrics.tunnels_active(), 0);
    send(&v, b"again").await;
    assert_eq!(recv(&v).await, b"again");
    assert_eq!(metric(&relay, "hyco_public_opened_total", port, ""), 2, "a new session");
    assert_eq!(stats.total.load(std::sync::atomic::Ordering::Relaxed), 2);
}

#[tokio::test]
async fn sources_beyond_the_session_cap_are_dropped_and_counted() {
    let relay = TestRelay::start(relay_settings(|s| {
        s.public.max_udp_sessions_per_port = 2;
        s.public.udp_idle_timeout = Duration::from_millis(500);
    }))
    .await;
    let target = UdpTarget::echo().await;
    let (_listening, ports) = listen_public(&relay, "dns", &[target.spec("dns")], None).await;
    let port = ports[0];
    let (a, b, c) = (visitor(port).await, visitor(port).await, visitor(port).await);
    for v in [&a, &b] {
        send(v, b"in").await;
        assert_eq!(recv(v).await, b"in");
    }
    send(&c, b"third").await;
    send(&c, b"third again").await;
    silent(&c).await;
    assert_eq!(rejected(&relay, port, Unserved::SessionLimit), 2);
    // The sessions in place go on.
    send(&a, b"still").await;
    assert_eq!(recv(&a).await, b"still");
    // Once they have ended, the third source gets a session of its own.
    until("the sessions to end", || active(&relay, port) == 0).await;
    send(&c, b"now").await;
    assert_eq!(recv(&c).await, b"now");
    assert_eq!(rejected(&relay, port, Unserved::SessionLimit), 2);
}

#[tokio::test]
async fn datagrams_over_the_size_limit_are_dropped_both_ways() {
    let relay = TestRelay::start(relay_settings(|s| s.public.max_udp_datagram = 512)).await;
    // "grow" is answered with 1,000 bytes, anything else echoed.
    let target = UdpTarget::spawn(|d, _| vec![if d == b"grow" { vec![b'x'; 1000] } else { d.to_vec() }]).await;
    let (_listening, ports) = listen_public(&relay, "dns", &[target.spec("dns")], None).await;
    let port = ports[0];
    let v = visitor(port).await;
    send(&v, &[1; 1000]).await;
    silent(&v).await;
    assert_eq!(rejected(&relay, port, Unserved::Oversize), 1, "from the visitor");
    assert_eq!(metric(&relay, "hyco_public_datagrams_total", port, "visitor_to_listener"), 0, "nothing passed");
    send(&v, &[2; 512]).await;
    assert_eq!(recv(&v).await, [2; 512], "exactly the limit passes");
    send(&v, b"grow").await;
    silent(&v).await;
    assert_eq!(rejected(&relay, port, Unserved::Oversize), 2, "from the listener");
    assert_eq!(metric(&relay, "hyco_public_datagrams_total", port, "listener_to_visitor"), 1);
    send(&v, b"small").await;
    assert_eq!(recv(&v).await, b"small", "the session still works");
    assert_eq!(active(&relay, port), 1);
}

#[tokio::test]
async fn sources_outside_the_allowlist_are_dropped_and_counted() {
    let relay = TestRelay::start(relay_settings(|s| {
        s.public.allow_from = vec![IpNet::parse("192.0.2.0/24").expect("net")];
    }))
    .await;
    let target = UdpTarget::echo().await;
    let (_listening, ports) = listen_public(&relay, "dns", &[target.spec("dns")], None).await;
    let v = visitor(ports[0]).await;
    send(&v, b"let me in").await;
    silent(&v).await;
    assert_eq!(rejected(&relay, ports[0], Unserved::NotAllowed), 1);
    assert_eq!(active(&relay, ports[0]), 0);
}

/// A raw listener of `hc` asking for a UDP port for target `name`: its control channel
/// and the port.
async fn raw_listener(relay: &TestRelay, hc: &str, name: &str) -> (Listener, u16) {
    let query =
        format!("{}={}", hyco::public::PARAM_PUBLIC, hyco::encoding::encode_component(&format!("udp:0:{name}")));
    let url = protocol::client_url(&relay.base(), hc, None, &query, Action::Listen, None);
    let (ws, response) =
        within("listen", common::ws_connect(relay.addr, &url, &[auth(&token(hc))])).await.expect("listen");
    let granted = response.headers().get(hyco::public::HEADER_PUBLIC).expect("a grant").to_str().expect("text");
    let port = granted.split(':').nth(1).and_then(|p| p.parse().ok()).expect("udp:PORT:NAME");
    (Listener { ws }, port)
}

/// Takes the next accept on `l` as a hyco listener would: deferred, then *start*.
async fn take_session(relay: &TestRelay, l: &mut Listener) -> RawWs {
    let accept = l.next_accept().await;
    let header = |name: &str| accept.connect_headers.get(name).map(String::as_str);
    assert_eq!(header("Hyco-Public"), Some("udp"));
    assert_eq!(header("Sec-WebSocket-Protocol"), Some("hyco.immediate, hyco.deferred"));
    let protocol = [("Sec-WebSocket-Protocol", "hyco.deferred".to_owned())];
    let mut ws = raw_upgrade(relay.addr, &accept.address, &protocol).await.expect("accept");
    assert_eq!(ws.next_data().await, (OpCode::Binary, Vec::new()), "an empty start");
    ws
}

#[tokio::test]
async fn a_session_queues_64_datagrams_while_it_opens_and_drops_the_rest() {
    let relay = TestRelay::start(relay_settings(|s| s.public.max_udp_datagram = 512)).await;
    let (mut l, port) = raw_listener(&relay, "q", "").await;
    let v = visitor(port).await;
    for i in 0..100u8 {
        send(&v, &[i]).await;
    }
    until("the datagrams past the queue to be dropped", || rejected(&relay, port, Unserved::QueueFull) == 36).await;
    let mut ws = take_session(&relay, &mut l).await;
    for i in 0..64u8 {
        assert_eq!(ws.next_data().await, (OpCode::Binary, vec![i]), "queued datagram {i}");
    }
    // A fragmented message, a ping between its fragments, is one datagram; one over the
    // limit in fragments is dropped whole.
    ws.send_frame(false, OpCode::Binary, b"hel").await;
    ws.send(OpCode::Ping, b"p").await;
    ws.send_frame(false, OpCode::Continuation, b"l").await;
    ws.send_frame(true, OpCode::Continuation, b"o").await;
    assert_eq!(recv(&v).await, b"hello");
    assert_eq!(ws.next_frame().await.map(|(h, p)| (h.opcode, p)), Some((OpCode::Pong, b"p".to_vec())));
    ws.send_frame(false, OpCode::Binary, &[0; 300]).await;
    ws.send_frame(true, OpCode::Continuation, &[0; 300]).await;
    ws.send(OpCode::Binary, b"after").await;
    assert_eq!(recv(&v).await, b"after");
    assert_eq!(rejected(&relay, port, Unserved::Oversize), 1);
    // The listener's Close (any code) ends the session; the relay answers 1000.
    ws.send_close(1001, "going").await;
    assert_eq!(ws.next_close().await.map(|c| c.code), Some(1000));
    until("the session to end", || active(&relay, port) == 0).await;
    // The next datagram opens a new session.
    send(&v, b"new").await;
    let mut ws = take_session(&relay, &mut l).await;
    assert_eq!(ws.next_data().await, (OpCode::Binary, b"new".to_vec()));
    assert_eq!(rejected(&relay, port, Unserved::QueueFull), 36);
}

#[tokio::test]
async fn a_port_queues_at_most_4_mib_for_sessions_that_open() {
    let relay = TestRelay::start(settings()).await;
    let (mut l, port) = raw_listener(&relay, "budget", "").await;
    // One datagram from each of many sources: each opens a session (an accept the raw
    // listener reads and leaves unanswered) and queues there, until the port's budget is
    // spent. Each step waits for the relay to have taken its datagram, so none is lost
    // to a full socket buffer.
    let size = 60_000;
    let fits = (4 << 20) / (size + hyco::ws::frame::MAX_HEADER_LEN);
    let mut visitors = Vec::new();
    for i in 0..fits + 3 {
        let v = visitor(port).await;
        send(&v, &vec![1; size]).await;
        if i < fits {
            l.next_accept().await;
        } else {
            let dropped = (i - fits + 1) as u64;
            until("the datagram over the budget to be dropped", || {
                rejected(&relay, port, Unserved::QueueFull) == dropped
            })
            .await;
        }
        visitors.push(v);
    }
    // The budget comes back as sessions give up their datagrams (no listener took them).
    until("the unanswered sessions to give up", || rejected(&relay, port, Unserved::NoListener) == fits as u64).await;
    let v = visitor(port).await;
    send(&v, &vec![2; size]).await;
    l.next_accept().await;
    assert_eq!(rejected(&relay, port, Unserved::QueueFull), 3);
}

#[tokio::test]
async fn an_idle_session_is_closed_with_1000_and_a_stopping_relay_closes_with_1001() {
    let relay = TestRelay::start(relay_settings(|s| s.public.udp_idle_timeout = Duration::from_millis(300))).await;
    let (mut l, port) = raw_listener(&relay, "idle", "").await;
    let v = visitor(port).await;
    send(&v, b"x").await;
    let mut ws = take_session(&relay, &mut l).await;
    assert_eq!(ws.next_data().await, (OpCode::Binary, b"x".to_vec()));
    let close = ws.next_close().await.expect("a close frame");
    assert_eq!((close.code, close.reason.as_str()), (1000, "session idle"));
    send(&v, b"y").await;
    let mut ws = take_session(&relay, &mut l).await;
    assert_eq!(ws.next_data().await, (OpCode::Binary, b"y".to_vec()));
    relay.shutdown.cancel();
    let close = ws.next_close().await.expect("a close frame");
    assert_eq!((close.code, close.reason.as_str()), (1001, "public port closed"));
}

#[tokio::test]
async fn a_port_reaches_only_targets_of_its_protocol() {
    let relay = TestRelay::start(relay_settings(|s| s.public.prewarm = 0)).await;
    let udp = UdpTarget::echo().await;
    let tcp = Target::echo().await;
    let to = [udp.spec("dns"), format!("web={}", tcp.spec())];
    // Asked for against the targets' kinds: a TCP port to the UDP target, a UDP port to the TCP one.
    let ask = |proto, target: &str| Ask { proto, port: PortAsk::Any, target: target.to_owned() };
    let asks = vec![ask(Proto::Tcp, "dns"), ask(Proto::Udp, "web")];
    let (_listening, ports) = listen_public(&relay, "mixed", &to, Some(asks)).await;
    let (tcp_port, udp_port) = (ports[0], ports[1]);

    let mut visitor_tcp = within("connect", tokio::net::TcpStream::connect(("127.0.0.1", tcp_port))).await.unwrap();
    let mut buf = [0; 16];
    let read = within("the visitor's reset", visitor_tcp.read(&mut buf)).await;
    assert!(matches!(read, Ok(0) | Err(_)), "no tunnel to a UDP target: {read:?}");
    let tcp_counters = relay.metrics.public_counters(Proto::Tcp, tcp_port).expect("open");
    assert_eq!(tcp_counters.rejected(Unserved::NoListener), 1);

    let v = visitor(udp_port).await;
    send(&v, b"hello?").await;
    silent(&v).await;
    assert_eq!(rejected(&relay, udp_port, Unserved::NoListener), 1);

    // A sender (no public port) does not reach the UDP target either.
    let url = protocol::client_url(&relay.base(), "mixed", Some("dns"), "", Action::Connect, None);
    let (status, text) = refused(raw_upgrade(relay.addr, &url, &[auth(&token("mixed"))]).await);
    assert_eq!(status, 400);
    assert!(text.contains("This target is a UDP service: reach it with hyco connect --bind udp:PORT"), "{text}");
    // Nor one that claims to be a visitor: the relay drops a sender's own Hyco-Public.
    let forged = [auth(&token("mixed")), ("Hyco-Public", "udp".to_owned())];
    let (status, text) = refused(raw_upgrade(relay.addr, &url, &forged).await);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("This target is a UDP service: reach it with hyco connect --bind udp:PORT"), "{text}");
}
