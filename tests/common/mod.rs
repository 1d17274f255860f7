//! Helpers shared by the integration tests: an in-process relay on `127.0.0.1:0`, tokens,
//! listeners and senders (tokio-tungstenite), and a raw frame-level client (hyco's own
//! `ws` layer) for what tungstenite hides: status lines, and Close frames it would answer
//! by itself.
#![allow(dead_code)]

/// End-to-end helpers for the clients (`hyco listen`, `hyco connect`, the binary).
pub mod bridge;
/// Headless Chromium over the DevTools protocol.
pub mod chromium;
/// HTTP mode: a local HTTP server and a raw HTTP client.
pub mod http;
/// Node.js peers (Microsoft's hyco-ws and hyco-https) for the interop tests.
pub mod node;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyco::http1::Response;
use hyco::protocol::{self, Accept, Action, RelayMessage};
use hyco::relay::RelaySettings;
use hyco::secret::Secret;
use hyco::ws::frame::{CloseFrame, FrameHeader, OpCode};
use hyco::ws::handshake::{self, HandshakeError};
use hyco::ws::stream::{FrameReader, FrameWriter, Role};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_util::sync::CancellationToken;

pub const KEY_NAME: &str = "RootManageSharedAccessKey";
pub const KEY: &str = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg=";

/// The longest any single step of a test may take: a broken relay fails the test
/// instead of hanging it.
pub const STEP: Duration = Duration::from_secs(5);

/// Awaits `f`, failing the test if it takes longer than [`STEP`].
pub async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    within_for(STEP, what, f).await
}

/// Awaits `f`, failing the test if it takes longer than `limit`.
pub async fn within_for<T>(limit: Duration, what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {limit:?}: {what}"),
    }
}

/// A relay with the namespace key [`KEY`] and limits short enough for tests.
pub fn settings() -> RelaySettings {
    let mut s = RelaySettings::with_namespace_key(KEY_NAME, Secret::new(KEY));
    s.limits.handshake_timeout = Duration::from_secs(3);
    s.limits.accept_window = Duration::from_secs(3);
    s.limits.drain_timeout = Duration::from_secs(1);
    s
}

/// A relay running in-process on `127.0.0.1:0`. Dropping it signals shutdown.
pub struct TestRelay {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    /// What the relay counts.
    pub metrics: Arc<hyco::relay::Metrics>,
    /// Where `/metrics` is served, if [`TestRelay::start_with_metrics`] started it.
    pub metrics_addr: Option<SocketAddr>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    scheme: &'static str,
}

impl TestRelay {
    pub async fn start(settings: RelaySettings) -> Self {
        Self::start_with_tls(settings, None).await
    }

    pub async fn start_with_tls(settings: RelaySettings, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let shutdown = CancellationToken::new();
        let scheme = if tls.is_some() { "wss" } else { "ws" };
        let metrics = Arc::new(hyco::relay::Metrics::new());
        let run = hyco::relay::run_with_metrics(listener, settings, tls, shutdown.clone(), metrics.clone());
        Self { addr, shutdown, metrics, metrics_addr: None, task: Some(tokio::spawn(run)), scheme }
    }

    /// A plain relay that also serves its metrics on another `127.0.0.1:0` listener.
    pub async fn start_with_metrics(settings: RelaySettings) -> Self {
        let mut relay = Self::start(settings).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        relay.metrics_addr = Some(listener.local_addr().expect("local addr"));
        tokio::spawn(hyco::relay::serve_metrics(listener, relay.metrics.clone(), relay.shutdown.clone()));
        relay
    }

    /// `ws://127.0.0.1:PORT` (or `wss://localhost:PORT` with TLS).
    pub fn base(&self) -> String {
        match self.scheme {
            "wss" => format!("wss://localhost:{}", self.addr.port()),
            _ => format!("ws://{}", self.addr),
        }
    }

    /// A client address for `hc` with `action`.
    pub fn url(&self, hc: &str, action: Action) -> String {
        protocol::client_url(&self.base(), hc, None, "", action, None)
    }

    /// Signals shutdown and waits for `run` to return.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        let task = self.task.take().expect("running");
        within("relay::run to return after shutdown", task).await.expect("relay task panicked")
    }
}

impl Drop for TestRelay {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A token for `hc` signed with [`KEY`], valid for an hour.
pub fn token(hc: &str) -> String {
    token_with(hc, KEY_NAME, KEY, protocol::unix_now() + 3600)
}

/// A token for `hc` (audience `http://127.0.0.1/{hc}/`) with the given key and expiry.
pub fn token_with(hc: &str, key_name: &str, key: &str, expiry: u64) -> String {
    hyco::sas::mint(&protocol::token_audience("127.0.0.1", hc), key_name, &Secret::new(key), expiry).expose().to_owned()
}

/// The `ServiceBusAuthorization` header carrying a token.
pub fn auth(token: &str) -> (&'static str, String) {
    (protocol::TOKEN_HEADER, token.to_owned())
}

// ---------------------------------------------------------------------------------------
// tokio-tungstenite clients

pub type Ws = WebSocketStream<TcpStream>;

/// The HTTP status of a refused upgrade, if that is what `e` is.
pub fn http_status(e: &tungstenite::Error) -> Option<u16> {
    match e {
        tungstenite::Error::Http(resp) => Some(resp.status().as_u16()),
        _ => None,
    }
}

/// Opens a WebSocket to `url` over `tcp` with extra headers.
pub async fn ws_over<S>(
    tcp: S,
    url: &str,
    headers: &[(&str, String)],
) -> Result<(WebSocketStream<S>, tungstenite::handshake::client::Response), tungstenite::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut req = url.into_client_request()?;
    for (name, value) in headers {
        req.headers_mut().append(
            HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            HeaderValue::from_str(value).expect("header value"),
        );
    }
    tokio_tungstenite::client_async(req, tcp).await
}

/// Opens a WebSocket to `url` on the relay at `addr`.
pub async fn ws_connect(
    addr: SocketAddr,
    url: &str,
    headers: &[(&str, String)],
) -> Result<(Ws, tungstenite::handshake::client::Response), tungstenite::Error> {
    let tcp = TcpStream::connect(addr).await?;
    ws_over(tcp, url, headers).await
}

/// Opens a listener's control channel for `hc` with a good token.
pub async fn listen(relay: &TestRelay, hc: &str) -> Listener {
    let url = relay.url(hc, Action::Listen);
    let (ws, _) = within("listen", ws_connect(relay.addr, &url, &[auth(&token(hc))])).await.expect("listen");
    Listener { ws }
}

/// A listener's control channel.
pub struct Listener {
    pub ws: Ws,
}

impl Listener {
    /// The next `accept` message (pings and pongs skipped).
    pub async fn next_accept(&mut self) -> Accept {
        within("an accept message", async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Text(text))) => match serde_json::from_str(&text).expect("accept JSON") {
                        RelayMessage::Accept(a) => return a,
                        other => panic!("expected an accept message, got {other:?}"),
                    },
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    other => panic!("expected an accept message, got {other:?}"),
                }
            }
        })
        .await
    }

    /// Reads until the relay closes the channel; returns its close code and reason.
    pub async fn next_close(&mut self) -> (u16, String) {
        next_close(&mut self.ws).await
    }

    pub async fn send_text(&mut self, text: impl Into<String>) {
        within("control channel send", self.ws.send(Message::text(text.into())))
            .await
            .expect("send on control channel");
    }
}

/// Reads `ws` until a Close arrives; returns its code and reason. Data is an error.
pub async fn next_close<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>) -> (u16, String) {
    within("a close frame", async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(Some(f)))) => return (u16::from(f.code), f.reason.to_string()),
                Some(Ok(Message::Close(None))) => panic!("close frame without a code"),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    })
    .await
}

/// The next data message on `ws` (pings and pongs skipped).
pub async fn next_message<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>) -> Message {
    within("a data message", async {
        loop {
            match ws.next().await {
                Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => return m,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                other => panic!("expected a data message, got {other:?}"),
            }
        }
    })
    .await
}

/// Opens a sender to `url` in the background; it completes when a listener answers.
pub fn spawn_sender(
    addr: SocketAddr,
    url: String,
    headers: Vec<(&'static str, String)>,
) -> JoinHandle<Result<(Ws, tungstenite::handshake::client::Response), tungstenite::Error>> {
    tokio::spawn(async move { ws_connect(addr, &url, &headers).await })
}

/// Accepts a sender by opening a WebSocket to the accept address.
pub async fn accept(addr: SocketAddr, accept: &Accept, headers: &[(&str, String)]) -> Ws {
    within("accept rendezvous", ws_connect(addr, &accept.address, headers)).await.expect("accept rendezvous").0
}

/// A sender and a listener joined through the relay on `hc` (which has a listener `l`).
pub async fn rendezvous(relay: &TestRelay, l: &mut Listener, hc: &str) -> (Ws, Ws) {
    let sender = spawn_sender(relay.addr, relay.url(hc, Action::Connect), vec![auth(&token(hc))]);
    let a = l.next_accept().await;
    let lws = accept(relay.addr, &a, &[]).await;
    let (sws, _) = within("sender 101", sender).await.expect("sender task").expect("sender upgrade");
    (sws, lws)
}

/// Sends a text message each way and checks it arrives.
pub async fn exchange<S, T>(a: &mut WebSocketStream<S>, b: &mut WebSocketStream<T>)
where
    S: AsyncRead + AsyncWrite + Unpin,
    T: AsyncRead + AsyncWrite + Unpin,
{
    within("send a->b", a.send(Message::text("ping from a"))).await.expect("send a->b");
    assert_eq!(next_message(b).await, Message::text("ping from a"));
    within("send b->a", b.send(Message::binary(vec![0u8, 1, 2, 255]))).await.expect("send b->a");
    assert_eq!(next_message(a).await, Message::binary(vec![0u8, 1, 2, 255]));
}

// ---------------------------------------------------------------------------------------
// Raw clients: status lines and frame-level control

/// `(host, target)` of `ws://host:port/path?query`.
pub fn split_url(url: &str) -> (&str, &str) {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let slash = rest.find('/').expect("a path");
    rest.split_at(slash)
}

/// The status and reason of a refused upgrade; panics on anything else.
pub fn refused(r: Result<RawWs, HandshakeError>) -> (u16, String) {
    match r {
        Err(HandshakeError::Rejected { status, reason }) => (status, reason),
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
        Ok(_) => panic!("expected an HTTP refusal, got 101"),
    }
}

/// Writes `request` as is on a fresh connection and returns everything the relay sends
/// back until it closes the connection.
pub async fn raw_http(addr: SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = within("connect", TcpStream::connect(addr)).await.expect("connect");
    within("write request", tcp.write_all(request)).await.expect("write request");
    let mut out = Vec::new();
    within("the relay's answer and close", async {
        let mut buf = [0; 4096];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

/// `METHOD path` on one of hyco's pages (the status page, the request inspector) with
/// `headers` (`Host: ADDR` unless one is given), on a connection of its own: the status
/// and the body.
pub async fn page_request(page: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut req = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("Host")) {
        req += &format!("Host: {page}\r\n");
    }
    for (n, v) in headers {
        req += &format!("{n}: {v}\r\n");
    }
    req += if method == "POST" { "Content-Length: 0\r\n\r\n" } else { "\r\n" };
    let answer = raw_http(page, req.as_bytes()).await;
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, answer.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned())
}

/// The status code of an HTTP response's first line.
pub fn status_of(response: &str) -> u16 {
    response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status in {response:?}"))
}

/// A WebSocket client that writes and reads frames itself: it never answers a Close.
pub struct RawWs {
    pub response: Response,
    pub reader: FrameReader<OwnedReadHalf>,
    pub writer: FrameWriter<OwnedWriteHalf>,
    pub local: SocketAddr,
}

/// Upgrades to `url` on the relay at `addr` with hyco's raw client.
pub async fn raw_upgrade(addr: SocketAddr, url: &str, headers: &[(&str, String)]) -> Result<RawWs, HandshakeError> {
    let tcp = TcpStream::connect(addr).await?;
    raw_upgrade_over(tcp, url, headers).await
}

/// Upgrades to `url` over an already connected `tcp`.
pub async fn raw_upgrade_over(
    mut tcp: TcpStream,
    url: &str,
    headers: &[(&str, String)],
) -> Result<RawWs, HandshakeError> {
    let local = tcp.local_addr()?;
    let (host, target) = split_url(url);
    let headers: Vec<(String, String)> = headers.iter().map(|(n, v)| ((*n).to_owned(), v.clone())).collect();
    let (response, initial) =
        within("raw upgrade", handshake::client(&mut tcp, host, target, &headers, 64 * 1024)).await?;
    let (r, w) = tcp.into_split();
    Ok(RawWs {
        response,
        reader: FrameReader::new(r, &initial, Role::Client),
        writer: FrameWriter::new(w, Role::Client),
        local,
    })
}

impl RawWs {
    pub async fn send(&mut self, opcode: OpCode, payload: &[u8]) {
        within("raw send", self.writer.send(opcode, payload)).await.expect("raw send");
        within("raw flush", self.writer.flush()).await.expect("raw flush");
    }

    /// Sends one frame, FIN as given (for fragmented messages).
    pub async fn send_frame(&mut self, fin: bool, opcode: OpCode, payload: &[u8]) {
        let header = FrameHeader { fin, opcode, mask: None, len: payload.len() as u64 };
        let mut buf = vec![0; hyco::ws::frame::MAX_HEADER_LEN + payload.len()];
        buf[hyco::ws::frame::MAX_HEADER_LEN..].copy_from_slice(payload);
        within("raw send", self.writer.send_with_header(header, &mut buf, payload.len())).await.expect("raw send");
        within("raw flush", self.writer.flush()).await.expect("raw flush");
    }

    pub async fn send_close(&mut self, code: u16, reason: &str) {
        within("raw close", self.writer.send_close(Some(&CloseFrame::new(code, reason)))).await.expect("raw close");
    }

    /// The next whole frame: opcode, FIN and payload; `None` at a clean end of stream.
    pub async fn next_frame(&mut self) -> Option<(FrameHeader, Vec<u8>)> {
        within("a raw frame", async {
            let header = self.reader.header().await.expect("frame header")?;
            let mut payload = vec![0; usize::try_from(header.len).expect("frame size")];
            let mut at = 0;
            while at < payload.len() {
                at += self.reader.payload(&mut payload[at..]).await.expect("frame payload");
            }
            Some((header, payload))
        })
        .await
    }

    /// The next data frame (pings and pongs skipped): opcode and payload.
    pub async fn next_data(&mut self) -> (OpCode, Vec<u8>) {
        loop {
            match self.next_frame().await {
                Some((h, p)) if matches!(h.opcode, OpCode::Text | OpCode::Binary) => return (h.opcode, p),
                Some((h, _)) if matches!(h.opcode, OpCode::Ping | OpCode::Pong) => {}
                other => panic!("expected a data frame, got {other:?}"),
            }
        }
    }

    /// The next frame must be a Close; returns it.
    pub async fn next_close(&mut self) -> Option<CloseFrame> {
        loop {
            match self.next_frame().await {
                Some((h, p)) if h.opcode == OpCode::Close => return CloseFrame::parse(&p).expect("close payload"),
                Some((h, _)) if matches!(h.opcode, OpCode::Ping | OpCode::Pong) => {}
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    }

    /// The stream must end cleanly (EOF between frames) next.
    pub async fn expect_eof(&mut self) {
        let end = within("end of stream", self.reader.header()).await.expect("clean end");
        assert!(end.is_none(), "expected the end of the stream, got {end:?}");
    }
}
