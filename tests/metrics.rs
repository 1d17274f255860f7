//! `hyco serve --metrics`: real listeners, senders and tunnels through an in-process relay,
//! then a scrape over real HTTP whose numbers must match exactly what was done; and the
//! endpoint's own bounds (path, method, request size, request time, connections).

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use futures_util::SinkExt;
use hyco::protocol::{self, Action};
use hyco::relay::HcSettings;
use hyco::relay::metrics::{self, Flow, RENDEZVOUS_BUCKETS, Reason};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{Bytes, Message};

const GET_METRICS: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: metrics\r\n\r\n";

/// The series of one scrape, `name{labels}` to value.
type Scrape = BTreeMap<String, f64>;

/// Scrapes `/metrics` at `addr` over a fresh TCP connection; checks the status and the
/// content type of the text format 0.0.4.
async fn scrape(addr: SocketAddr) -> Scrape {
    let response = raw_http(addr, GET_METRICS).await;
    assert_eq!(status_of(&response), 200, "{response}");
    let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    assert!(
        head.lines().any(|l| l.eq_ignore_ascii_case("Content-Type: text/plain; version=0.0.4; charset=utf-8")),
        "{head}"
    );
    body.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("a sample line: {l:?}"));
            (series.to_owned(), value.parse().unwrap_or_else(|_| panic!("a number in {l:?}")))
        })
        .collect()
}

/// One series of a scrape; a missing series fails the test.
fn get(scrape: &Scrape, series: &str) -> f64 {
    *scrape.get(series).unwrap_or_else(|| panic!("no series {series} in {scrape:#?}"))
}

/// Scrapes until `ok` holds, for at most [`STEP`]: for what the relay counts only after a
/// peer left (there is no event to wait for).
async fn scrape_until(addr: SocketAddr, what: &str, ok: impl Fn(&Scrape) -> bool) -> Scrape {
    within(what, async {
        loop {
            let s = scrape(addr).await;
            if ok(&s) {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

fn listeners(hc: &str) -> String {
    format!("hyco_listeners{{hc=\"{hc}\"}}")
}

fn rejected(why: Reason) -> String {
    format!("hyco_rejected_handshakes_total{{reason=\"{}\"}}", why.label())
}

fn relayed(flow: Flow) -> String {
    format!("hyco_relayed_bytes_total{{direction=\"{}\"}}", flow.label())
}

/// Sends `msg` on `from` and checks that `to` receives it.
async fn pass(from: &mut Ws, to: &mut Ws, msg: Message) {
    within("send", from.send(msg.clone())).await.expect("send");
    assert_eq!(next_message(to).await, msg);
}

#[tokio::test]
async fn a_scrape_counts_listeners_tunnels_bytes_and_refusals_exactly() {
    let mut settings = settings();
    settings.hcs.push(HcSettings {
        name: "idle".into(),
        requires_client_authorization: true,
        rules: Vec::new(),
        ports: Vec::new(),
    });
    let relay = TestRelay::start_with_metrics(settings).await;
    let at = relay.metrics_addr.expect("metrics served");

    // Before anything: configured HCs listed at 0, every reason at 0, an empty histogram.
    let s = scrape(at).await;
    assert_eq!(get(&s, &listeners("idle")), 0.0);
    for why in Reason::ALL {
        assert_eq!(get(&s, &rejected(why)), 0.0, "{}", why.label());
    }
    assert_eq!(get(&s, "hyco_rendezvous_seconds_count"), 0.0);

    let mut alpha = listen(&relay, "alpha").await;
    let beta = [listen(&relay, "beta").await, listen(&relay, "beta").await];
    let s = scrape_until(at, "3 open connections", |s| get(s, "hyco_connections_open") == 3.0).await;
    assert_eq!(get(&s, &listeners("alpha")), 1.0);
    assert_eq!(get(&s, &listeners("beta")), 2.0);
    assert_eq!(get(&s, &listeners("idle")), 0.0);

    // Two tunnels with known payloads each way: one message over several relay chunks,
    // and control frames, which are not payload.
    let (mut s1, mut l1) = rendezvous(&relay, &mut alpha, "alpha").await;
    let (mut s2, mut l2) = rendezvous(&relay, &mut alpha, "alpha").await;
    pass(&mut s1, &mut l1, Message::binary(vec![7u8; 100_000])).await;
    pass(&mut s1, &mut l1, Message::text("hello")).await;
    within("ping", s1.send(Message::Ping(Bytes::from_static(b"not counted")))).await.expect("ping");
    pass(&mut l1, &mut s1, Message::binary(vec![1u8; 1_234])).await;
    pass(&mut s2, &mut l2, Message::text("seven!!")).await;
    pass(&mut l2, &mut s2, Message::binary(vec![2u8; 65_537])).await;
    let to_listener: u32 = 100_000 + 5 + 7;
    let to_sender: u32 = 1_234 + 65_537;

    // Refusals: a forged token, an HC with no listener, an HC that does not exist, and a
    // request that is not a WebSocket upgrade.
    let later = protocol::unix_now() + 3600;
    let forged = token_with("alpha", KEY_NAME, "not the key", later);
    let r = raw_upgrade(relay.addr, &relay.url("alpha", Action::Connect), &[auth(&forged)]).await;
    assert_eq!(refused(r).0, 401);
    let r = raw_upgrade(relay.addr, &relay.url("idle", Action::Connect), &[auth(&token("idle"))]).await;
    assert_eq!(refused(r).0, 404);
    let r = raw_upgrade(relay.addr, &relay.url("nowhere", Action::Connect), &[auth(&token("nowhere"))]).await;
    assert_eq!(refused(r).0, 404);
    let plain = raw_http(relay.addr, b"GET /$hc/alpha?sb-hc-action=connect HTTP/1.1\r\nHost: relay\r\n\r\n").await;
    assert_eq!(status_of(&plain), 400, "{plain}");

    let s = scrape(at).await;
    assert_eq!(get(&s, &listeners("alpha")), 1.0);
    assert_eq!(get(&s, &listeners("beta")), 2.0);
    assert_eq!(get(&s, "hyco_tunnels_total"), 2.0);
    assert_eq!(get(&s, "hyco_tunnels_active"), 2.0);
    assert_eq!(get(&s, &relayed(Flow::SenderToListener)), f64::from(to_listener));
    assert_eq!(get(&s, &relayed(Flow::ListenerToSender)), f64::from(to_sender));
    assert!(get(&s, "hyco_connections_open") >= 5.0, "3 listeners and 2 tunnels: {s:#?}");
    for (why, n) in
        [(Reason::Unauthorized, 1.0), (Reason::NoListener, 1.0), (Reason::NotFound, 1.0), (Reason::BadRequest, 1.0)]
    {
        assert_eq!(get(&s, &rejected(why)), n, "{}", why.label());
    }
    let counted: f64 = Reason::ALL.iter().map(|&why| get(&s, &rejected(why))).sum();
    assert_eq!(counted, 4.0, "no other refusals: {s:#?}");

    // The histogram: one observation per tunnel, cumulative buckets ending at the count,
    // a sum within what the sender waited.
    assert_eq!(get(&s, "hyco_rendezvous_seconds_count"), 2.0);
    assert_eq!(get(&s, "hyco_rendezvous_seconds_bucket{le=\"+Inf\"}"), 2.0);
    let sum = get(&s, "hyco_rendezvous_seconds_sum");
    assert!(sum > 0.0 && sum < 2.0 * STEP.as_secs_f64(), "sum {sum}");
    let mut last = 0.0;
    for le in RENDEZVOUS_BUCKETS {
        let n = get(&s, &format!("hyco_rendezvous_seconds_bucket{{le=\"{le}\"}}"));
        assert!(n >= last, "buckets are cumulative: {s:#?}");
        last = n;
    }

    // The same numbers in process.
    let m = &relay.metrics;
    assert_eq!((m.tunnels_total(), m.rendezvous_count(), m.listeners("beta")), (2, 2, 2));
    assert_eq!(m.relayed_bytes(Flow::SenderToListener), u64::from(to_listener));
    assert_eq!(m.rejected(Reason::Unauthorized), 1);

    // Tunnels end: active goes back to 0, totals stay; listeners leave: their gauges too.
    drop((s1, l1, s2, l2));
    let s = scrape_until(at, "no active tunnel", |s| {
        get(s, "hyco_tunnels_active") == 0.0 && get(s, "hyco_connections_open") == 3.0
    })
    .await;
    assert_eq!(get(&s, "hyco_tunnels_total"), 2.0);
    assert_eq!(get(&s, &relayed(Flow::ListenerToSender)), f64::from(to_sender));
    // A listener's registration ends before its connection does.
    drop((alpha, beta));
    let s = scrape_until(at, "no connection", |s| get(s, "hyco_connections_open") == 0.0).await;
    assert_eq!((get(&s, &listeners("alpha")), get(&s, &listeners("beta"))), (0.0, 0.0));
    relay.stop().await.expect("relay::run result");
}

#[tokio::test]
async fn a_listener_rejection_and_the_listener_limit_are_counted_by_reason() {
    let mut settings = settings();
    settings.limits.max_listeners_per_hc = 1;
    let relay = TestRelay::start_with_metrics(settings).await;
    let mut l = listen(&relay, "hc").await;
    let url = relay.url("hc", Action::Listen);
    assert_eq!(refused(raw_upgrade(relay.addr, &url, &[auth(&token("hc"))]).await).0, 403);

    let sender = spawn_sender(relay.addr, relay.url("hc", Action::Connect), vec![auth(&token("hc"))]);
    let a = l.next_accept().await;
    let reject = format!("{}&sb-hc-statusCode=418&sb-hc-statusDescription=nope", a.address);
    assert_eq!(refused(raw_upgrade(relay.addr, &reject, &[]).await).0, 410);
    let answer = within("the sender's refusal", sender).await.expect("sender task");
    assert_eq!(answer.as_ref().err().and_then(http_status), Some(418));
    // The used address is now unknown.
    assert_eq!(refused(raw_upgrade(relay.addr, &a.address, &[]).await).0, 403);

    let s = scrape(relay.metrics_addr.expect("metrics served")).await;
    for (why, n) in [(Reason::ListenerLimit, 1.0), (Reason::ListenerRejected, 1.0), (Reason::BadAcceptAddress, 1.0)] {
        assert_eq!(get(&s, &rejected(why)), n, "{}", why.label());
    }
    let counted: f64 = Reason::ALL.iter().map(|&why| get(&s, &rejected(why))).sum();
    assert_eq!(counted, 3.0, "the 410 that acknowledges a rejection is not a refusal: {s:#?}");
    assert_eq!((get(&s, "hyco_tunnels_total"), get(&s, "hyco_rendezvous_seconds_count")), (0.0, 0.0));
}

#[tokio::test]
async fn only_get_metrics_is_served() {
    let relay = TestRelay::start_with_metrics(settings()).await;
    let at = relay.metrics_addr.expect("metrics served");
    let other = raw_http(at, b"GET /other HTTP/1.1\r\nHost: metrics\r\n\r\n").await;
    assert_eq!(status_of(&other), 404, "{other}");
    assert_eq!(status_of(&raw_http(at, b"GET / HTTP/1.1\r\nHost: metrics\r\n\r\n").await), 404);
    let post = raw_http(at, b"POST /metrics HTTP/1.1\r\nHost: metrics\r\nContent-Length: 0\r\n\r\n").await;
    assert_eq!(status_of(&post), 405, "{post}");
    assert_eq!(status_of(&raw_http(at, b"NONSENSE\r\n\r\n").await), 400);
    let query = raw_http(at, b"GET /metrics?x=1 HTTP/1.1\r\nHost: metrics\r\n\r\n").await;
    assert_eq!(status_of(&query), 200, "{query}");
    let head = raw_http(at, b"HEAD /metrics HTTP/1.1\r\nHost: metrics\r\n\r\n").await;
    assert_eq!(status_of(&head), 200, "{head}");
    assert!(head.ends_with("\r\n\r\n"), "no body for HEAD: {head}");
}

#[tokio::test]
async fn an_oversize_or_slow_request_is_refused() {
    let relay = TestRelay::start_with_metrics(settings()).await;
    let at = relay.metrics_addr.expect("metrics served");
    let mut big = b"GET /metrics HTTP/1.1\r\nHost: metrics\r\nX-Pad: ".to_vec();
    big.resize(big.len() + 2 * metrics::MAX_REQUEST_BYTES, b'a');
    big.extend_from_slice(b"\r\n\r\n");
    let answer = raw_http(at, &big).await;
    assert_eq!(status_of(&answer), 431, "{answer}");

    let started = Instant::now();
    let answer = raw_http(at, b"GET /metrics HTTP/1.1\r\nHost: metr").await;
    assert_eq!(status_of(&answer), 408, "{answer}");
    assert!(started.elapsed() >= metrics::REQUEST_TIMEOUT - Duration::from_millis(100), "{:?}", started.elapsed());
    // Neither held the endpoint up.
    scrape(at).await;
}

/// Issue 12: eight idle connections held every scrape off for seconds. Connections that
/// have sent no request give way, oldest first, and the endpoint still serves at most
/// `MAX_SCRAPE_CONNECTIONS` at once.
#[tokio::test]
async fn idle_connections_give_way_to_a_scrape() {
    use tokio::io::AsyncReadExt;
    let relay = TestRelay::start_with_metrics(settings()).await;
    let at = relay.metrics_addr.expect("metrics served");
    let mut idle = Vec::new();
    for i in 0..2 * metrics::MAX_SCRAPE_CONNECTIONS {
        let mut tcp = within("connect", TcpStream::connect(at)).await.expect("connect");
        if i % 2 == 0 {
            within("a partial request", tcp.write_all(b"GET /metrics HTTP/1.1\r\n")).await.expect("write");
        }
        idle.push(tcp);
    }
    let started = Instant::now();
    let s = scrape(at).await;
    assert!(started.elapsed() < metrics::REQUEST_TIMEOUT, "answered after {:?}", started.elapsed());
    assert_eq!(get(&s, "hyco_tunnels_total"), 0.0);
    // The oldest gave way: closed unanswered, each to make room for the next.
    for (i, tcp) in idle.iter_mut().take(metrics::MAX_SCRAPE_CONNECTIONS + 1).enumerate() {
        let mut buf = [0; 64];
        let n = within("an idle connection to be closed", tcp.read(&mut buf)).await;
        assert!(matches!(n, Ok(0) | Err(_)), "connection {i}: {n:?}");
    }
}

/// The real binary: `hyco serve --metrics` prints where, serves there, and stops cleanly.
#[tokio::test]
async fn hyco_serve_metrics_flag() {
    use common::bridge::{PROC_STEP, Proc, TempDir, hyco};
    let home = TempDir::new("metrics");
    let mut cmd = hyco(home.path());
    cmd.args(["serve", "--bind", "127.0.0.1:0", "--no-profile", "--metrics", "127.0.0.1:0"]);
    let mut serve = Proc::spawn(cmd);
    let line = serve.stdout.wait_for(PROC_STEP, "the metrics line", |l| l.starts_with("Prometheus metrics on ")).await;
    let url = line.trim_start_matches("Prometheus metrics on http://");
    let addr: SocketAddr =
        url.trim_end_matches("/metrics").parse().unwrap_or_else(|_| panic!("an address in {line:?}"));
    let s = scrape(addr).await;
    assert_eq!(get(&s, "hyco_tunnels_total"), 0.0);
    assert!(serve.terminate().await.success(), "stderr:\n{}", serve.stderr.text());
}
