//! HTTP mode with connections that stay open (docs/protocol.md 7, 8): a relay and `hyco
//! listen --http` in-process, a web app of the test's own that counts its connections,
//! and clients on raw sockets that keep theirs: a browser-like series of 100 requests on
//! one connection, interleaved callers, pipelining, HTTP/1.0 with and without
//! keep-alive, apps that close between requests, a slow answer beside fast ones, the
//! relay's idle timeout, request cap and per-request head deadline. Then a real browser
//! (headless chromium) loading a page of 40 assets, and the listener binary's log line.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::bridge::{Listening, PROC_STEP, Proc, TempDir, client, hyco, key_flags, listen_settings};
use common::chromium::{HEADLESS, chromium};
use common::*;
use hyco::http1::{self, BodyReader, Framing, Headers, header};
use hyco::protocol::TOKEN_HEADER;
use hyco::relay::{HcSettings, RelaySettings};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How the test's web app treats its connections.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Keeps them, as HTTP/1.1 has it.
    KeepAlive,
    /// Answers every request with `Connection: close` and closes.
    SaysClose,
    /// Keeps them, but closes one idle this long, saying nothing.
    ClosesIdle(Duration),
    /// Reads a connection's second request, then closes it unanswered (as a server that
    /// closed an idle connection just as the request was on its way).
    DropsSecond,
}

/// The web app behind the listener. Routes: `/page` (HTML naming 40 assets), `/a/NAME`
/// (a small asset, typed by its extension), `/slow` (answers after 3 s), `/big/N` (N
/// bytes, chunked), `POST /echo` (the body back); else 404.
struct App {
    addr: std::net::SocketAddr,
    /// Connections accepted.
    connections: Arc<AtomicUsize>,
    /// Request targets served, in order.
    served: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Drop for App {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl App {
    async fn start(mode: Mode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let served = Arc::new(Mutex::new(Vec::new()));
        let (c, s) = (connections.clone(), served.clone());
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(app_connection(tcp, mode, s.clone()));
            }
        });
        Self { addr, connections, served, task }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

const ASSETS: usize = 40;

fn asset_names() -> Vec<String> {
    (0..ASSETS).map(|i| format!("{i}.{}", ["svg", "js", "css"][i % 3])).collect()
}

fn page() -> String {
    let mut html = String::from("<!doctype html><html><head><title>many</title>");
    for name in asset_names().iter().filter(|n| n.ends_with(".css")) {
        html.push_str(&format!("<link rel=\"stylesheet\" href=\"a/{name}\">"));
    }
    html.push_str("</head><body>");
    for name in asset_names() {
        if name.ends_with(".svg") {
            html.push_str(&format!("<img src=\"a/{name}\" onload=\"this.setAttribute('data-ok','1')\">"));
        } else if name.ends_with(".js") {
            html.push_str(&format!("<script src=\"a/{name}\"></script>"));
        }
    }
    html.push_str("<script>document.body.setAttribute('data-scripts', String(window.loaded || 0));</script>");
    html.push_str("</body></html>");
    html
}

fn asset(name: &str) -> (&'static str, String) {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("svg") => (
            "image/svg+xml",
            format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"2\" height=\"2\"><!-- {name} --></svg>"),
        ),
        Some("js") => ("application/javascript", format!("window.loaded = (window.loaded || 0) + 1; // {name}")),
        Some("css") => ("text/css", format!(".c{} {{ color: red }}", name.replace('.', "-"))),
        _ => ("text/plain", format!("asset {name}")),
    }
}

async fn app_connection(tcp: TcpStream, mode: Mode, served: Arc<Mutex<Vec<String>>>) {
    let (r, mut w) = tcp.into_split();
    let mut r = BufReader::new(r);
    for nth in 1.. {
        let head = match mode {
            Mode::ClosesIdle(idle) => tokio::time::timeout(idle, http1::read_request_head(&mut r, 64 * 1024)).await,
            _ => Ok(http1::read_request_head(&mut r, 64 * 1024).await),
        };
        let Ok(Ok(req)) = head else { return };
        let framing = http1::request_framing(&req.headers).unwrap_or(Framing::Empty);
        let mut body = BodyReader::new(framing);
        let (mut got, mut buf) = (Vec::new(), vec![0; 16 * 1024]);
        loop {
            match body.read(&mut r, &mut buf).await {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(_) => return,
            }
        }
        if mode == Mode::DropsSecond && nth == 2 {
            return;
        }
        served.lock().unwrap().push(req.target.clone());
        let (status, ctype, text, chunked) = match req.target.split_once('?').map_or(req.target.as_str(), |(p, _)| p) {
            "/page" => (200, "text/html", page().into_bytes(), false),
            "/slow" => {
                tokio::time::sleep(Duration::from_secs(3)).await;
                (200, "text/plain", b"slow".to_vec(), false)
            }
            "/echo" if req.method == "POST" => (200, "application/octet-stream", got, false),
            p if p.starts_with("/a/") => {
                let (ctype, text) = asset(&p[3..]);
                (200, ctype, text.into_bytes(), false)
            }
            p if p.starts_with("/big/") => {
                let n: usize = p[5..].parse().unwrap_or(0);
                (200, "application/octet-stream", vec![b'x'; n], true)
            }
            _ => (404, "text/plain", b"no route".to_vec(), false),
        };
        let mut headers: Vec<(String, String)> = vec![("Content-Type".into(), ctype.into())];
        if chunked {
            headers.push(("Transfer-Encoding".into(), "chunked".into()));
        } else {
            headers.push(("Content-Length".into(), text.len().to_string()));
        }
        if mode == Mode::SaysClose {
            headers.push(("Connection".into(), "close".into()));
        }
        let mut out = http1::head(&format!("HTTP/1.1 {status} {}", http1::reason(status)), &headers).into_bytes();
        if req.method != "HEAD" {
            if chunked {
                for piece in text.chunks(16 * 1024) {
                    http1::write_chunk(&mut out, piece).await.unwrap();
                }
                out.extend_from_slice(http1::LAST_CHUNK);
            } else {
                out.extend_from_slice(&text);
            }
        }
        if w.write_all(&out).await.is_err() || mode == Mode::SaysClose {
            let _ = w.shutdown().await;
            return;
        }
    }
}

/// The relay, the app and `hyco listen web --http --to app`, the HC open to anyone.
struct Web {
    relay: TestRelay,
    app: App,
    _listener: Listening,
}

async fn web(mode: Mode, tweak: impl FnOnce(&mut RelaySettings)) -> Web {
    let mut s = settings();
    s.hcs.push(HcSettings {
        name: "web".into(),
        requires_client_authorization: false,
        rules: Vec::new(),
        ports: Vec::new(),
    });
    tweak(&mut s);
    let relay = TestRelay::start(s).await;
    let app = App::start(mode).await;
    let mut ls = listen_settings("web", &[app.addr.to_string()]);
    ls.http = true;
    let listener = Listening::start(client(relay.addr), ls).await;
    Web { relay, app, _listener: listener }
}

/// An answer as a client read it.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Headers,
    body: Vec<u8>,
    framing: Framing,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn says_close(&self) -> bool {
        http1::has_token(self.header("Connection"), "close")
    }
}

/// A client connection to the relay that it keeps, as a browser does.
struct Conn {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
}

impl Conn {
    async fn open(addr: std::net::SocketAddr) -> Self {
        let (r, w) = TcpStream::connect(addr).await.unwrap().into_split();
        Self { r: BufReader::new(r), w }
    }

    async fn send(&mut self, raw: &str) {
        self.w.write_all(raw.as_bytes()).await.unwrap();
    }

    /// Reads one answer (to a request that was not HEAD).
    async fn answer(&mut self) -> Answer {
        within("an answer", async {
            let head = http1::read_response_head(&mut self.r, 64 * 1024).await.expect("a response head");
            let framing = http1::response_framing(head.status, false, &head.headers).expect("framing");
            let mut reader = BodyReader::new(framing);
            let (mut body, mut buf) = (Vec::new(), vec![0; 16 * 1024]);
            loop {
                let n = reader.read(&mut self.r, &mut buf).await.expect("the body");
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&buf[..n]);
            }
            Answer { status: head.status, headers: head.headers, body, framing }
        })
        .await
    }

    async fn get(&mut self, path: &str) -> Answer {
        self.send(&format!("GET {path} HTTP/1.1\r\nHost: relay\r\n\r\n")).await;
        self.answer().await
    }

    /// Whether the relay closes the connection within `limit` (after any answer bytes).
    async fn closed_within(&mut self, limit: Duration) -> bool {
        let mut rest = Vec::new();
        matches!(tokio::time::timeout(limit, self.r.read_to_end(&mut rest)).await, Ok(Ok(_)))
    }
}

#[tokio::test]
async fn a_browser_like_client_fetches_100_resources_over_one_connection() {
    let w = web(Mode::KeepAlive, |_| {}).await;
    let mut conn = Conn::open(w.relay.addr).await;
    for i in 0..100 {
        let a = conn.get(&format!("/web/a/{i}.txt")).await;
        assert_eq!((a.status, a.text()), (200, format!("asset {i}.txt")), "request {i}");
        assert!(!a.says_close(), "request {i}: {:?}", a.headers);
        assert_eq!(a.header("Via"), Some("1.1 hyco"));
    }
    assert_eq!(w.relay.metrics.http_connections(), 1, "one TCP connection to the relay");
    assert_eq!(w.relay.metrics.http_requests(), 100);
    assert_eq!(w.relay.metrics.http_responses(2), 100);
    assert_eq!(w.app.connections(), 1, "and one from the listener to the app");
    // A 404 from the app is counted as 4xx, and keeps the connection.
    assert_eq!(conn.get("/web/nothing").await.status, 404);
    assert_eq!(conn.get("/web/a/again.txt").await.text(), "asset again.txt");
    assert_eq!(w.relay.metrics.http_responses(4), 1);
}

#[tokio::test]
async fn interleaved_callers_on_their_own_connections_get_their_own_answers() {
    let w = web(Mode::KeepAlive, |_| {}).await;
    let callers = (0..6).map(|c| {
        let addr = w.relay.addr;
        tokio::spawn(async move {
            let mut conn = Conn::open(addr).await;
            for i in 0..25 {
                let name = format!("{c}-{i}.txt");
                let a = conn.get(&format!("/web/a/{name}")).await;
                assert_eq!(a.text(), format!("asset {name}"), "caller {c} got another's answer");
                // A POST now and then, its body echoed.
                if i % 5 == 0 {
                    let body = format!("body of {c}-{i}");
                    conn.send(&format!(
                        "POST /web/echo HTTP/1.1\r\nHost: relay\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    ))
                    .await;
                    assert_eq!(conn.answer().await.text(), body);
                }
            }
        })
    });
    for caller in callers.collect::<Vec<_>>() {
        within_for(Duration::from_secs(60), "a caller", caller).await.unwrap();
    }
    assert_eq!(w.relay.metrics.http_connections(), 6);
    let app = w.app.connections();
    assert!((1..=6 + 8).contains(&app), "the listener reuses its connections to the app: {app}");
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let w = web(Mode::KeepAlive, |_| {}).await;
    let mut conn = Conn::open(w.relay.addr).await;
    // Three at once, the first slow: answers come in the order asked, each whole.
    conn.send(
        "GET /web/slow HTTP/1.1\r\nHost: relay\r\n\r\n\
         GET /web/a/two.txt HTTP/1.1\r\nHost: relay\r\n\r\n\
         POST /web/echo HTTP/1.1\r\nHost: relay\r\nContent-Length: 5\r\n\r\nthree",
    )
    .await;
    let texts = [conn.answer().await.text(), conn.answer().await.text(), conn.answer().await.text()];
    assert_eq!(texts, ["slow", "asset two.txt", "three"]);
    // Read one at a time: the second reached the app only after the first was answered.
    assert_eq!(*w.app.served.lock().unwrap(), ["/slow", "/a/two.txt", "/echo"]);
}

#[tokio::test]
async fn http_1_0_is_served_kept_only_on_request_and_never_chunked() {
    let w = web(Mode::KeepAlive, |_| {}).await;
    // Without keep-alive: one answer, `Connection: close`, then the relay closes.
    let mut conn = Conn::open(w.relay.addr).await;
    conn.send("GET /web/a/x.txt HTTP/1.0\r\n\r\n").await;
    let a = conn.answer().await;
    assert_eq!((a.status, a.text().as_str(), a.says_close()), (200, "asset x.txt", true));
    assert!(conn.closed_within(STEP).await);
    // With keep-alive: `Connection: keep-alive`, and the next request on the same connection.
    let mut conn = Conn::open(w.relay.addr).await;
    for i in 0..3 {
        conn.send(&format!("GET /web/a/{i}.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")).await;
        let a = conn.answer().await;
        assert_eq!(a.text(), format!("asset {i}.txt"));
        assert_eq!(a.header("Connection"), Some("keep-alive"));
    }
    // A body of unknown length (streamed, chunked by the app): delimited by the close,
    // never chunked to HTTP/1.0, whatever the client asked.
    conn.send("GET /web/big/200000 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").await;
    let a = conn.answer().await;
    assert_eq!((a.framing, a.body.len(), a.says_close()), (Framing::UntilClose, 200_000, true), "{:?}", a.headers);
    assert_eq!(a.header("Transfer-Encoding"), None);
    assert_eq!(w.relay.metrics.http_connections(), 2);
}

#[tokio::test]
async fn apps_that_close_between_requests_get_fresh_connections() {
    // An app that says `Connection: close` every time: a new connection per request.
    let w = web(Mode::SaysClose, |_| {}).await;
    let mut conn = Conn::open(w.relay.addr).await;
    for i in 0..5 {
        assert_eq!(conn.get(&format!("/web/a/{i}.txt")).await.text(), format!("asset {i}.txt"));
    }
    assert_eq!(w.app.connections(), 5, "no connection the app closed is reused");
    assert!(!conn.get("/web/a/5.txt").await.says_close(), "the relay's connection stays open");

    // An app that closes idle connections without a word: GET and POST find a fresh one.
    let w = web(Mode::ClosesIdle(Duration::from_secs(1)), |_| {}).await;
    let mut conn = Conn::open(w.relay.addr).await;
    for round in 0..3 {
        assert_eq!(conn.get("/web/a/r.txt").await.text(), "asset r.txt", "round {round}");
        conn.send("POST /web/echo HTTP/1.1\r\nHost: relay\r\nContent-Length: 4\r\n\r\nbody").await;
        assert_eq!(conn.answer().await.text(), "body", "round {round}");
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    assert_eq!(w.app.connections(), 3, "one per round: reused within it, fresh after the app closed it");
}

#[tokio::test]
async fn a_request_lost_on_a_kept_connection_is_sent_again_only_if_idempotent() {
    let w = web(Mode::DropsSecond, |_| {}).await;
    let mut conn = Conn::open(w.relay.addr).await;
    assert_eq!(conn.get("/web/a/1.txt").await.text(), "asset 1.txt");
    // The kept connection is dropped under the GET: sent once more, on a fresh one.
    assert_eq!(conn.get("/web/a/2.txt").await.text(), "asset 2.txt");
    assert_eq!(w.app.connections(), 2);
    // A POST is not: the app may have acted on it.
    conn.send("POST /web/echo HTTP/1.1\r\nHost: relay\r\nContent-Length: 4\r\n\r\nbody").await;
    let a = conn.answer().await;
    assert_eq!(a.status, 502, "{}", a.text());
    assert!(a.text().contains("closed the connection without an answer"), "{}", a.text());
    assert_eq!(w.app.connections(), 2);
    assert_eq!(conn.get("/web/a/3.txt").await.text(), "asset 3.txt", "and the next request goes on");
}

#[tokio::test]
async fn a_slow_answer_on_one_connection_does_not_hold_up_others() {
    let w = web(Mode::KeepAlive, |_| {}).await;
    let mut slow = Conn::open(w.relay.addr).await;
    slow.send("GET /web/slow HTTP/1.1\r\nHost: relay\r\n\r\n").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let mut fast = Conn::open(w.relay.addr).await;
    for i in 0..20 {
        assert_eq!(fast.get(&format!("/web/a/{i}.txt")).await.text(), format!("asset {i}.txt"));
    }
    // The slow answer comes 3 s after its request: these came well before it.
    assert!(started.elapsed() < Duration::from_millis(2500), "took {:?} beside a slow answer", started.elapsed());
    assert_eq!(slow.answer().await.text(), "slow");
}

#[tokio::test]
async fn the_relay_closes_idle_connections_and_caps_requests_per_connection() {
    let w = web(Mode::KeepAlive, |s| {
        s.limits.http_idle_timeout = Duration::from_secs(1);
        s.limits.max_http_requests_per_connection = 3;
    })
    .await;
    let mut conn = Conn::open(w.relay.addr).await;
    let closes: Vec<bool> = [
        conn.get("/web/a/1.txt").await.says_close(),
        conn.get("/web/a/2.txt").await.says_close(),
        conn.get("/web/a/3.txt").await.says_close(),
    ]
    .into();
    assert_eq!(closes, [false, false, true], "the last answer under the cap says so");
    assert!(conn.closed_within(STEP).await, "and the relay closes");

    let mut idle = Conn::open(w.relay.addr).await;
    assert!(!idle.get("/web/a/1.txt").await.says_close());
    let started = Instant::now();
    assert!(idle.closed_within(STEP).await, "an idle connection is closed");
    assert!(started.elapsed() >= Duration::from_millis(900), "not before the idle timeout: {:?}", started.elapsed());
}

#[tokio::test]
async fn a_later_request_on_a_kept_connection_has_the_head_bounds_of_a_first() {
    // The handshake timeout (3 s in tests) bounds each head; the idle timeout is longer.
    let w = web(Mode::KeepAlive, |s| s.limits.http_idle_timeout = Duration::from_secs(30)).await;
    let mut conn = Conn::open(w.relay.addr).await;
    assert_eq!(conn.get("/web/a/1.txt").await.status, 200);
    let started = Instant::now();
    conn.send("GET /web/a/2.txt HTTP/1.1\r\nHost: rel").await;
    assert!(conn.closed_within(Duration::from_secs(6)).await, "a head that never ends");
    assert!(started.elapsed() >= Duration::from_millis(2500), "{:?}", started.elapsed());
    assert_eq!(w.relay.metrics.rejected(hyco::relay::metrics::Reason::Timeout), 1);

    // A second head over the size limit: 431, closed.
    let mut conn = Conn::open(w.relay.addr).await;
    assert_eq!(conn.get("/web/a/1.txt").await.status, 200);
    let big = format!("GET /web/a/2.txt HTTP/1.1\r\nHost: relay\r\nX-Big: {}\r\n\r\n", "b".repeat(40 * 1024));
    let _ = conn.w.write_all(big.as_bytes()).await;
    let head = within("the 431", http1::read_response_head(&mut conn.r, 64 * 1024)).await.unwrap();
    assert_eq!(head.status, 431);

    // At shutdown a kept connection waiting for its next request closes at once, before
    // the drain period (1 s in tests) is over.
    let mut idle = Conn::open(w.relay.addr).await;
    assert_eq!(idle.get("/web/a/1.txt").await.status, 200);
    w.relay.shutdown.cancel();
    assert!(idle.closed_within(Duration::from_millis(500)).await, "an idle kept connection at shutdown");
}

#[tokio::test]
async fn each_request_body_on_a_kept_connection_has_its_own_deadline() {
    let w = web(Mode::KeepAlive, |s| s.limits.http_request_body_timeout = Duration::from_secs(2)).await;
    let mut conn = Conn::open(w.relay.addr).await;
    assert_eq!(conn.get("/web/a/1.txt").await.status, 200);
    // Longer than a body may take: the deadline is the request's, not the connection's.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    conn.send("POST /web/echo HTTP/1.1\r\nHost: relay\r\nContent-Length: 4\r\n\r\nbody").await;
    assert_eq!(conn.answer().await.text(), "body");
    // A body that trickles past it: 408, and the connection closes (the rest is unread).
    conn.send("POST /web/echo HTTP/1.1\r\nHost: relay\r\nContent-Length: 10\r\n\r\nab").await;
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let _ = conn.w.write_all(b"c").await;
    }
    let a = conn.answer().await;
    assert_eq!((a.status, a.says_close()), (408, true), "{}", a.text());
    assert!(conn.closed_within(STEP).await);
}

#[tokio::test]
async fn an_unread_body_closes_the_connection_and_each_request_is_authorized() {
    let mut w = web(Mode::KeepAlive, |_| {}).await;
    // A rejected POST whose body holds what looks like a request: the relay does not read
    // the body, so it must not read on: it closes after the answer.
    let smuggled = "GET /web/a/smuggled.txt HTTP/1.1\r\nHost: relay\r\n\r\n";
    let mut conn = Conn::open(w.relay.addr).await;
    conn.send(&format!("POST /nohc/x HTTP/1.1\r\nHost: relay\r\nContent-Length: {}\r\n\r\n{smuggled}", smuggled.len()))
        .await;
    let a = conn.answer().await;
    assert_eq!((a.status, a.says_close()), (404, true));
    assert!(conn.closed_within(STEP).await);
    assert!(!w.app.served.lock().unwrap().iter().any(|t| t.contains("smuggled")));
    // A rejection with nothing unread keeps the connection.
    let mut conn = Conn::open(w.relay.addr).await;
    let a = conn.get("/nohc/x").await;
    assert_eq!((a.status, a.says_close()), (404, false));
    assert_eq!(conn.get("/web/a/after.txt").await.text(), "asset after.txt");

    // An HC that needs a token: each request on the connection shows its own.
    drop(w._listener);
    let mut s = settings();
    s.hcs.push(HcSettings { name: "web".into(), requires_client_authorization: true, rules: vec![], ports: vec![] });
    w.relay = TestRelay::start(s).await;
    let mut ls = listen_settings("web", &[w.app.addr.to_string()]);
    ls.http = true;
    w._listener = Listening::start(client(w.relay.addr), ls).await;
    let tok = token("web");
    let mut conn = Conn::open(w.relay.addr).await;
    conn.send(&format!("GET /web/a/1.txt HTTP/1.1\r\nHost: relay\r\n{TOKEN_HEADER}: {tok}\r\n\r\n")).await;
    assert_eq!(conn.answer().await.status, 200);
    assert_eq!(conn.get("/web/a/2.txt").await.status, 401, "the first request's token does not carry over");
    conn.send(&format!("GET /web/a/3.txt HTTP/1.1\r\nHost: relay\r\n{TOKEN_HEADER}: {tok}\r\n\r\n")).await;
    assert_eq!(conn.answer().await.text(), "asset 3.txt");
}

#[tokio::test]
async fn a_websocket_upgrade_after_http_mode_on_the_same_connection_is_served_as_one() {
    let w = web(Mode::KeepAlive, |_| {}).await;
    let mut conn = Conn::open(w.relay.addr).await;
    assert_eq!(conn.get("/web/a/1.txt").await.status, 200);
    conn.send(
        "GET /$hc/web?sb-hc-action=connect HTTP/1.1\r\nHost: relay\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await;
    let head = within("the upgrade's answer", http1::read_response_head(&mut conn.r, 64 * 1024)).await.unwrap();
    assert_eq!(head.status, 101, "{head:?}");
}

#[tokio::test]
async fn kept_connections_work_over_tls() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("tls-{}", hyco::protocol::new_guid()));
    let (config, _) = hyco::relay::tls::self_signed(&dir, &["localhost".to_owned()]).expect("self-signed certificate");
    let mut s = settings();
    s.hcs.push(HcSettings { name: "web".into(), requires_client_authorization: false, rules: vec![], ports: vec![] });
    let relay = TestRelay::start_with_tls(s, Some(config)).await;
    use rustls::pki_types::pem::PemObject;
    let cert = rustls::pki_types::CertificateDer::from_pem_file(dir.join("self-signed.crt")).expect("cert file");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).expect("add root");
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(relay.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(client)).connect(name, tcp).await.expect("TLS handshake");
    let mut tls = BufReader::new(tls);
    // No listener is online: each answer is the relay's own 502, on the one connection.
    for i in 0..3 {
        tls.get_mut().write_all(format!("GET /web/{i} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes()).await.unwrap();
        let head = within("an answer over TLS", http1::read_response_head(&mut tls, 64 * 1024)).await.unwrap();
        assert_eq!((head.status, http1::has_token(header(&head.headers, "Connection"), "close")), (502, false));
        let n: usize = header(&head.headers, "Content-Length").unwrap().parse().unwrap();
        let mut body = vec![0; n];
        within("the body", tls.read_exact(&mut body)).await.unwrap();
    }
    assert_eq!(relay.metrics.http_connections(), 1);
    assert_eq!(relay.metrics.http_responses(5), 3);
}

#[tokio::test]
async fn a_real_browser_loads_a_page_of_40_assets_over_a_handful_of_connections() {
    let Some(browser) = chromium() else { return };
    let w = web(Mode::KeepAlive, |_| {}).await;
    let profile = TempDir::new("chromium");
    let url = format!("http://{}/web/page", w.relay.addr);
    let mut cmd = tokio::process::Command::new(browser);
    cmd.args(HEADLESS)
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--dump-dom", &url])
        .env("HOME", profile.path())
        .kill_on_drop(true);
    let out = within_for(Duration::from_secs(90), "chromium --dump-dom", cmd.output()).await.expect("run chromium");
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(dom.contains("data-scripts=\"13\""), "every script ran:\n{dom}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(dom.matches("data-ok=\"1\"").count(), 14, "every image loaded:\n{dom}");
    let served = w.app.served.lock().unwrap().clone();
    for name in asset_names() {
        assert!(served.contains(&format!("/a/{name}")), "{name} was not fetched: {served:?}");
    }
    let (relay, app) = (w.relay.metrics.http_connections(), w.app.connections());
    eprintln!("chromium: {} requests over {relay} connections to the relay, {app} to the app", served.len());
    assert!(relay <= 8, "{relay} connections to the relay for {} requests", served.len());
    assert!(app <= 8, "{app} connections to the app for {} requests", served.len());
}

#[tokio::test]
async fn the_listener_logs_one_line_per_request_without_query_values() {
    let relay = TestRelay::start({
        let mut s = settings();
        s.hcs.push(HcSettings {
            name: "web".into(),
            requires_client_authorization: false,
            rules: vec![],
            ports: vec![],
        });
        s
    })
    .await;
    let app = App::start(Mode::KeepAlive).await;
    let home = TempDir::new("http-log");
    let mut cmd = hyco(home.path());
    cmd.args(["listen", "web", "--http", "--to", &app.addr.to_string()]).args(key_flags(&relay.base(), KEY));
    let listen = Proc::spawn(cmd);
    listen.stderr.wait_for(PROC_STEP, "the listener", |l| l.contains(" listening") && l.contains("hc=")).await;
    let mut conn = Conn::open(relay.addr).await;
    assert_eq!(conn.get("/web/a/x.txt?q=hunter2&page=2").await.status, 200);
    let line = listen.stderr.wait_for(PROC_STEP, "the request's log line", |l| l.contains("answered")).await;
    for want in ["method=GET", "path=/web/a/x.txt?q&page", "status=200", "bytes=11", "ms="] {
        assert!(line.contains(want), "{want} in {line}");
    }
    assert!(!listen.stderr.text().contains("hunter2"), "{}", listen.stderr.text());
}
