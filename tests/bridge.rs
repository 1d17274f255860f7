//! `hyco listen` and `hyco connect` end to end, in-process: an in-process relay on
//! `127.0.0.1:0`, the listener bridging to real TCP targets started here, and senders
//! through `connect::run_bind` (a local TCP port) or `connect::open_sender`.
//!
//! Covered: bulk data each way, many tunnels at once, half-close, refusals the sender can
//! read (502 refused, 404 unknown target), named targets, the listener surviving a relay
//! restart and short-lived tokens, abnormal ends reaching the application as resets,
//! and backpressure from a target that never reads.

mod common;

use std::io::ErrorKind;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::bridge::*;
use common::*;
use hyco::client::connect::{ConnectSettings, open_sender};
use hyco::client::prewarm::Prewarm;
use hyco::connstr::Credential;
use hyco::secret::Secret;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Sends a unique message through `bound` and checks it comes back from an echo target.
async fn echo_once(bound: &Bound, what: &str) {
    let mut tcp = bound.connect().await;
    let msg = format!("hello through the relay: {what}");
    let got = within(what, round_trip(&mut tcp, msg.as_bytes())).await.expect("round trip");
    assert_eq!(String::from_utf8_lossy(&got), msg, "{what}");
}

/// A relay whose shutdown drains for only a moment before it ends live tunnels.
fn quick_drain_settings() -> hyco::relay::RelaySettings {
    let mut s = settings();
    s.limits.drain_timeout = Duration::from_millis(50);
    s
}

// ---------------------------------------------------------------------------------------
// Data

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_mib_each_way_arrive_intact() {
    const LEN: usize = 64 << 20;
    const PIECE: usize = 256 * 1024;
    let started = Instant::now();
    let relay = TestRelay::start(settings()).await;
    // The target streams 64 MiB of its own while it reads (and hashes) the client's.
    let (report, mut reports) = mpsc::unbounded_channel();
    let target = Target::spawn(move |tcp| {
        let report = report.clone();
        async move {
            let (mut r, mut w) = tcp.into_split();
            let send = async move {
                let mut noise = Noise::new(2);
                let mut buf = vec![0; PIECE];
                for _ in 0..LEN / PIECE {
                    noise.fill(&mut buf);
                    w.write_all(&buf).await?;
                }
                w.shutdown().await
            };
            let receive = async move {
                let mut hash = Sha256::new();
                let mut buf = vec![0; PIECE];
                let mut total = 0;
                loop {
                    match r.read(&mut buf).await? {
                        0 => return std::io::Result::Ok((total, <[u8; 32]>::from(hash.finalize()))),
                        n => {
                            hash.update(&buf[..n]);
                            total += n;
                        }
                    }
                }
            };
            let (sent, received) = tokio::join!(send, receive);
            let _ = report.send((sent.map_err(|e| e.to_string()), received.map_err(|e| e.to_string())));
        }
    })
    .await;
    let _listening = Listening::start(client(relay.addr), listen_settings("bulk", &[target.spec()])).await;
    let bound = Bound::start(client(relay.addr), "bulk", None).await;

    let tcp = bound.connect().await;
    let (mut r, mut w) = tcp.into_split();
    let send = async move {
        let mut noise = Noise::new(1);
        let mut buf = vec![0; PIECE];
        for _ in 0..LEN / PIECE {
            noise.fill(&mut buf);
            w.write_all(&buf).await.expect("client write");
        }
        w.shutdown().await.expect("client half-close");
    };
    let receive = async move {
        let mut hash = Sha256::new();
        let mut buf = vec![0; PIECE];
        let mut total = 0;
        loop {
            match r.read(&mut buf).await.expect("client read") {
                0 => return (total, <[u8; 32]>::from(hash.finalize())),
                n => {
                    hash.update(&buf[..n]);
                    total += n;
                }
            }
        }
    };
    let ((), (got_len, got_hash)) =
        within_for(Duration::from_secs(120), "64 MiB each way", async { tokio::join!(send, receive) }).await;
    let (sent, received) = within("the target's report", reports.recv()).await.expect("a report");
    sent.expect("the target's send");
    let (target_len, target_hash) = received.expect("the target's receive");

    assert_eq!(got_len, LEN, "bytes the client got");
    assert_eq!(got_hash, noise_digest(2, LEN, PIECE), "SHA-256 of what the client got");
    assert_eq!(target_len, LEN, "bytes the target got");
    assert_eq!(target_hash, noise_digest(1, LEN, PIECE), "SHA-256 of what the target got");
    until_idle("the connect side's tunnel to end", &bound.stats).await;
    assert_eq!(bound.stats.failed.load(Ordering::Relaxed), 0);
    assert_eq!(bound.stats.bytes_out.load(Ordering::Relaxed), LEN as u64);
    assert_eq!(bound.stats.bytes_in.load(Ordering::Relaxed), LEN as u64);
    eprintln!("64 MiB each way: {:.1} s", started.elapsed().as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_tunnels_at_once() {
    let relay = TestRelay::start(settings()).await;
    let target = Target::echo().await;
    let listening = Listening::start(client(relay.addr), listen_settings("many", &[target.spec()])).await;
    let bound = Bound::start(client(relay.addr), "many", None).await;

    let mut tunnels = tokio::task::JoinSet::new();
    for i in 0..100u64 {
        let addr = bound.addr;
        tunnels.spawn(async move {
            let mut data = vec![0; 48 * 1024 + i as usize];
            Noise::new(1000 + i).fill(&mut data);
            let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let got = round_trip(&mut tcp, &data).await.unwrap_or_else(|e| panic!("tunnel {i}: {e}"));
            assert!(got == data, "tunnel {i}: {} bytes back, {} sent, or different", got.len(), data.len());
        });
    }
    within_for(Duration::from_secs(30), "100 tunnels", async {
        while let Some(r) = tunnels.join_next().await {
            r.expect("tunnel task");
        }
    })
    .await;
    until_idle("the listener's tunnels to end", &listening.stats).await;
    assert_eq!(listening.stats.total.load(Ordering::Relaxed), 100);
    assert_eq!(listening.stats.failed.load(Ordering::Relaxed), 0);
    assert_eq!(bound.stats.failed.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn half_close_keeps_the_answer_coming() {
    let relay = TestRelay::start(settings()).await;
    let target = Target::upper_after_eof().await;
    let _listening = Listening::start(client(relay.addr), listen_settings("half", &[target.spec()])).await;
    let bound = Bound::start(client(relay.addr), "half", None).await;

    // A request of several frames; the target answers only once it has seen our EOF.
    let request: Vec<u8> = b"request line; ".iter().copied().cycle().take(200_000).collect();
    let mut tcp = bound.connect().await;
    let (mut r, mut w) = tcp.split();
    within("send the request", w.write_all(&request)).await.expect("write");
    within("half-close", w.shutdown()).await.expect("shutdown write");
    let mut answer = Vec::new();
    within("the whole answer", r.read_to_end(&mut answer)).await.expect("read the answer");
    assert_eq!(answer, request.to_ascii_uppercase());
    until_idle("the tunnel to end cleanly", &bound.stats).await;
    assert_eq!(bound.stats.failed.load(Ordering::Relaxed), 0, "a half-closed tunnel is a clean end");
}

#[tokio::test]
async fn hc_names_compare_without_case_as_on_azure() {
    let relay = TestRelay::start(settings()).await;
    let target = Target::upper_after_eof().await;
    let _listening = Listening::start(client(relay.addr), listen_settings("Mixed", &[target.spec()])).await;
    let bound = Bound::start(client(relay.addr), "mIXED", None).await;
    let mut tcp = bound.connect().await;
    let (mut r, mut w) = tcp.split();
    within("send", w.write_all(b"case")).await.expect("write");
    within("half-close", w.shutdown()).await.expect("shutdown write");
    let mut answer = Vec::new();
    within("the answer", r.read_to_end(&mut answer)).await.expect("read");
    assert_eq!(answer, b"CASE");
}

// ---------------------------------------------------------------------------------------
// Refusals

#[tokio::test]
async fn a_refused_target_is_a_502_for_the_sender_and_a_reset_locally() {
    let relay = TestRelay::start(settings()).await;
    let dead = closed_port().await;
    let _listening = Listening::start(client(relay.addr), listen_settings("hc", &[dead.to_string()])).await;

    let settings = ConnectSettings { hc: "hc".into(), suffix: None };
    let err = within("open_sender", open_sender(&client(relay.addr), &settings)).await.err().expect("refused");
    let text = format!("{err:#}");
    assert!(text.contains("502") && text.contains("refused"), "{text}");

    // A tunnel opened for the connection (prewarmed ones: tests/prewarm.rs).
    let bound = Bound::start_with(client(relay.addr), "hc", None, Prewarm::off()).await;
    let mut tcp = bound.connect().await;
    let (n, end) = within("the local connection to end", read_until_end(&mut tcp)).await;
    assert_eq!(n, 0, "no data from a refused tunnel");
    assert_eq!(end.map_err(|e| e.kind()), Err(ErrorKind::ConnectionReset), "a reset, not a clean end");
    assert_eq!(bound.stats.failed.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn an_unknown_target_name_is_a_404() {
    let relay = TestRelay::start(settings()).await;
    let target = Target::echo().await;
    let to = [format!("a={}", target.spec())];
    let _listening = Listening::start(client(relay.addr), listen_settings("hc", &to)).await;

    let settings = ConnectSettings { hc: "hc".into(), suffix: Some("other".into()) };
    let err = within("open_sender", open_sender(&client(relay.addr), &settings)).await.err().expect("refused");
    let text = format!("{err:#}");
    assert!(text.contains("404") && text.contains("No target named 'other'"), "{text}");
    // The name the listener does have still works.
    let settings = ConnectSettings { hc: "hc".into(), suffix: Some("a".into()) };
    within("open_sender to a", open_sender(&client(relay.addr), &settings)).await.expect("target a");
}

#[tokio::test]
async fn named_targets_reach_different_servers() {
    let relay = TestRelay::start(settings()).await;
    let (alpha, beta) = (Target::greeter("alpha").await, Target::greeter("beta").await);
    let to = [format!("a={}", alpha.spec()), format!("b={}", beta.spec())];
    let _listening = Listening::start(client(relay.addr), listen_settings("hc", &to)).await;

    for (name, greeting) in [("a", "alpha"), ("b", "beta"), ("a", "alpha")] {
        let bound = Bound::start(client(relay.addr), "hc", Some(name)).await;
        let mut tcp = bound.connect().await;
        let got = within("round trip", round_trip(&mut tcp, b"ping")).await.expect("round trip");
        assert_eq!(String::from_utf8_lossy(&got), format!("{greeting}\nping"), "hc/{name}");
    }
}

// ---------------------------------------------------------------------------------------
// Staying up

#[tokio::test]
async fn the_listener_comes_back_after_a_relay_restart() {
    let relay = TestRelay::start(quick_drain_settings()).await;
    let addr = relay.addr;
    let target = Target::echo().await;
    let listening = Listening::start(client(addr), listen_settings("hc", &[target.spec()])).await;
    let bound = Bound::start(client(addr), "hc", None).await;
    echo_once(&bound, "before the restart").await;

    let mut channels = listening.stats.channels.subscribe();
    relay.stop().await.expect("relay run");
    within("the control channel to drop", channels.wait_for(|n| *n == 0)).await.expect("stats alive");

    // A new relay on the same port (the old socket may linger for a moment).
    let listener = within("rebinding the relay's port", async {
        loop {
            match TcpListener::bind(addr).await {
                Ok(l) => return l,
                Err(e) if e.kind() == ErrorKind::AddrInUse => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(e) => panic!("rebinding {addr}: {e}"),
            }
        }
    })
    .await;
    let shutdown = CancellationToken::new();
    let relay2 = tokio::spawn(hyco::relay::run(listener, quick_drain_settings(), None, shutdown.clone()));
    // Backoff 0 s then 1 s (docs/protocol.md 5.6): the second try finds the new relay.
    within_for(Duration::from_secs(10), "the listener to reconnect", channels.wait_for(|n| *n == 1))
        .await
        .expect("stats alive");
    echo_once(&bound, "after the restart").await;

    shutdown.cancel();
    within("the second relay to stop", relay2).await.expect("relay task").expect("relay run");
}

#[tokio::test]
async fn short_lived_tokens_are_renewed_on_the_same_control_channel() {
    const TTL: Duration = Duration::from_secs(3);
    const WATCH: Duration = Duration::from_secs(8);
    let mut s = settings();
    s.limits.renew_grace = Duration::from_secs(1);
    let relay = TestRelay::start(s).await;
    let target = Target::echo().await;

    let mut renewing = client(relay.addr);
    renewing.token_ttl = TTL;
    let listening = Listening::start(renewing.clone(), listen_settings("hc", &[target.spec()])).await;

    // The control: a listener holding one fixed token of the same lifetime, which it
    // cannot renew, is dropped by the relay within the window.
    let mut fixed = client(relay.addr);
    let token = token_with("other", KEY_NAME, KEY, hyco::protocol::unix_now() + TTL.as_secs());
    fixed.credential = Credential::Token(Secret::new(token));
    let control = Listening::start(fixed, listen_settings("other", &[target.spec()])).await;
    let mut control_channels = control.stats.channels.subscribe();

    // Any change (even down and straight back up) wakes `changed`: the renewing channel
    // must stay exactly as it is for the whole window.
    let mut channels = listening.stats.channels.subscribe();
    channels.mark_unchanged();
    let started = Instant::now();
    let (changed, dropped) = tokio::join!(
        tokio::time::timeout(WATCH, channels.changed()),
        tokio::time::timeout(WATCH, control_channels.wait_for(|n| *n == 0)),
    );
    assert!(
        changed.is_err(),
        "the renewing listener's control channel changed after {:?} (now {})",
        started.elapsed(),
        *channels.borrow()
    );
    assert!(dropped.is_ok(), "a listener that cannot renew must be dropped within {WATCH:?}");

    let bound = Bound::start(renewing, "hc", None).await;
    echo_once(&bound, "after several renewals").await;
}

// ---------------------------------------------------------------------------------------
// Abnormal ends and backpressure

#[tokio::test]
async fn a_target_dying_mid_transfer_is_a_reset_for_the_client() {
    let relay = TestRelay::start(settings()).await;
    let target = Target::spawn(|mut tcp| async move {
        let mut part = vec![0; 1 << 20];
        Noise::new(9).fill(&mut part);
        let _ = tcp.write_all(&part).await;
        abort_socket(tcp);
    })
    .await;
    let _listening = Listening::start(client(relay.addr), listen_settings("hc", &[target.spec()])).await;
    let bound = Bound::start(client(relay.addr), "hc", None).await;

    let mut tcp = bound.connect().await;
    let (n, end) = within("the tunnel to end", read_until_end(&mut tcp)).await;
    assert_eq!(end.map_err(|e| e.kind()), Err(ErrorKind::ConnectionReset), "after {n} bytes: a reset, never EOF");
    until_idle("the connect side's tunnel to end", &bound.stats).await;
    assert_eq!(bound.stats.failed.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn a_client_that_goes_away_mid_tunnel_is_not_counted_as_failed() {
    let relay = TestRelay::start(settings()).await;
    // A target that streams for as long as anyone reads.
    let target = Target::spawn(|mut tcp| async move {
        let chunk = vec![7u8; 64 * 1024];
        while tcp.write_all(&chunk).await.is_ok() {}
    })
    .await;
    let _listening = Listening::start(client(relay.addr), listen_settings("hc", &[target.spec()])).await;
    let bound = Bound::start(client(relay.addr), "hc", None).await;
    let mut tcp = bound.connect().await;
    tcp.write_all(b"go").await.expect("write");
    let mut part = vec![0; 256 * 1024];
    within("the download to start", tcp.read_exact(&mut part)).await.expect("read");
    abort_socket(tcp); // the client cancels: a reset
    until_idle("the connect side's tunnel to end", &bound.stats).await;
    assert_eq!(bound.stats.total.load(Ordering::Relaxed), 1);
    assert_eq!(bound.stats.failed.load(Ordering::Relaxed), 0, "the client's choice, not a failure");
}

#[tokio::test]
async fn a_relay_shut_down_mid_transfer_is_a_reset_for_the_client() {
    let relay = TestRelay::start(quick_drain_settings()).await;
    // A target that never stops talking.
    let target = Target::spawn(|mut tcp| async move {
        let mut buf = vec![0; 64 * 1024];
        Noise::new(3).fill(&mut buf);
        while tcp.write_all(&buf).await.is_ok() {}
    })
    .await;
    let _listening = Listening::start(client(relay.addr), listen_settings("hc", &[target.spec()])).await;
    let bound = Bound::start(client(relay.addr), "hc", None).await;

    let mut tcp = bound.connect().await;
    let mut buf = vec![0; 64 * 1024];
    let mut before = 0;
    within("the first MiB", async {
        while before < 1 << 20 {
            before += tcp.read(&mut buf).await.expect("read");
        }
    })
    .await;
    relay.shutdown.cancel();
    let (after, end) = within("the tunnel to end", read_until_end(&mut tcp)).await;
    assert_eq!(
        end.map_err(|e| e.kind()),
        Err(ErrorKind::ConnectionReset),
        "after {before} + {after} bytes: a reset, never EOF"
    );
    relay.stop().await.expect("relay run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_target_that_never_reads_stalls_the_sender() {
    // What the kernel alone may hold on the four TCP hops (app, relay both ways, target):
    // each hop's receive buffer can grow to tcp_rmem's maximum and its send buffer to
    // tcp_wmem's. Past that plus a little of hyco's own, a tunnel is buffering in memory.
    let sysctl_max = |name: &str| -> u64 {
        let text = std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}")).unwrap_or_default();
        text.split_whitespace().last().and_then(|v| v.parse().ok()).unwrap_or(8 << 20)
    };
    let kernel = 4 * (sysctl_max("tcp_rmem") + sysctl_max("tcp_wmem"));
    let limit = kernel + (8 << 20);
    let push: u64 = (256 << 20).max(limit + (64 << 20));
    let relay = TestRelay::start(settings()).await;
    // The target holds its connection without reading until told to drain it.
    let (drain_tx, drain_rx) = tokio::sync::watch::channel(false);
    let (report, mut reports) = mpsc::unbounded_channel();
    let target = Target::spawn(move |mut tcp| {
        let (mut drain, report) = (drain_rx.clone(), report.clone());
        async move {
            let _ = drain.wait_for(|d| *d).await;
            let _ = report.send(read_until_end(&mut tcp).await);
        }
    })
    .await;
    let mut ls = listen_settings("hc", &[target.spec()]);
    ls.drain_timeout = Duration::from_millis(200);
    let listening = Listening::start(client(relay.addr), ls).await;
    let bound = Bound::start(client(relay.addr), "hc", None).await;

    let tcp = bound.connect().await;
    // Dropped, this socket resets: the pushing application dies.
    socket2::SockRef::from(&tcp).set_linger(Some(Duration::ZERO)).expect("SO_LINGER 0");
    let written = Arc::new(AtomicU64::new(0));
    let pusher = tokio::spawn({
        let written = written.clone();
        async move {
            let mut tcp = tcp;
            let mut buf = vec![0; 64 * 1024];
            Noise::new(4).fill(&mut buf);
            while written.load(Ordering::Relaxed) < push {
                if tcp.write_all(&buf).await.is_err() {
                    break;
                }
                written.fetch_add(buf.len() as u64, Ordering::Relaxed);
            }
        }
    });
    // How far does the push get before it stops moving? Kernel socket buffers on the four
    // TCP hops hold some MiB; a bridge that buffered in memory would keep accepting. Waits
    // for a whole second without progress, at most 15 s, so a busy machine only slows it.
    let (mut last, mut still) = (0, 0);
    for _ in 0..75 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = written.load(Ordering::Relaxed);
        if now == last && now > 0 {
            still += 1;
            if still == 5 {
                break;
            }
        } else {
            (last, still) = (now, 0);
        }
    }
    eprintln!("accepted from the pusher before it stalled: {last} bytes");
    assert_eq!(still, 5, "the push never stalled ({last} bytes accepted so far)");
    assert!(last >= 1 << 20, "the tunnel carried too little to measure ({last} bytes)");
    assert!(last < limit, "{last} bytes accepted by a tunnel whose target reads nothing (kernel buffers: {kernel})");
    assert!(!pusher.is_finished(), "the pusher must be blocked, not done");

    // Abort: the pusher dies (reset) and hyco connect stops; its stalled tunnel must end.
    pusher.abort();
    let _ = pusher.await;
    // A write cut short by the abort may have handed over part of one more buffer.
    let pushed = written.load(Ordering::Relaxed) + 64 * 1024;
    bound.stop().await.expect("run_bind");
    // The listener's side learns of it once the target drains what is in flight: the
    // target must see a reset after less than was pushed, never a clean end.
    drain_tx.send(true).expect("target alive");
    let (received, end) = within("the target's connection to end", reports.recv()).await.expect("a report");
    assert!(received <= pushed, "target got {received} bytes, more than the {pushed} pushed");
    assert_eq!(end.map_err(|e| e.kind()), Err(ErrorKind::ConnectionReset), "after {received} bytes");
    until_idle("the listener's tunnel to end", &listening.stats).await;
    assert_eq!(listening.stats.failed.load(Ordering::Relaxed), 1);
}

/// Writes `bytes` on `tcp` and reads as many back; `None` if the tunnel is gone.
async fn echo_round(tcp: &mut tokio::net::TcpStream, bytes: &[u8]) -> Option<Vec<u8>> {
    tcp.write_all(bytes).await.ok()?;
    let mut back = vec![0; bytes.len()];
    match tokio::time::timeout(Duration::from_secs(5), tcp.read_exact(&mut back)).await {
        Ok(Ok(_)) => Some(back),
        _ => None,
    }
}

#[tokio::test]
async fn keepalives_carry_an_idle_tunnel_past_a_relays_idle_timeout() {
    // The relay drops a tunnel silent for 1 s, as Azure does after about 4 minutes.
    let mut s = settings();
    s.limits.tunnel_idle_timeout = Some(Duration::from_secs(1));
    let relay = TestRelay::start(s).await;
    let target = Target::echo().await;
    let with = |keepalive| {
        let mut c = client(relay.addr);
        c.keepalive = keepalive;
        c
    };
    for (keepalive, survives) in [(Some(Duration::from_millis(300)), true), (None, false)] {
        let hc = if survives { "kept" } else { "dropped" };
        let _listening = Listening::start(with(keepalive), listen_settings(hc, &[target.spec()])).await;
        let bound = Bound::start_with(with(keepalive), hc, None, Prewarm::off()).await;
        let mut tcp = bound.connect().await;
        assert_eq!(echo_round(&mut tcp, b"before").await.as_deref(), Some(&b"before"[..]));
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let after = echo_round(&mut tcp, b"after").await;
        if survives {
            assert_eq!(after.as_deref(), Some(&b"after"[..]), "kept alive across 2.5 idle seconds");
        } else {
            assert_eq!(after, None, "without keepalives the relay's idle timeout ends it");
        }
    }
}
