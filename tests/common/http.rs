//! Helpers for the HTTP-mode tests (`tests/http_mode.rs`, `tests/hostile_http.rs`,
//! `tests/interop_hyco_https.rs`): a small HTTP/1.1 server that records what reaches it, a
//! raw HTTP/1.1 client, both on hyco's own `http1` framing, one request per connection,
//! and the usual relay + server + `hyco listen --http` setup.

use std::net::SocketAddr;

use hyco::http1::{self, BodyReader, Framing};
use hyco::http1::{Headers, header};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

/// A relay, the HTTP server, and `hyco listen hc --http --to server`, in process.
pub struct Setup {
    pub relay: super::TestRelay,
    pub server: HttpServer,
    pub _listener: super::bridge::Listening,
}

/// [`Setup`] with relay settings changed by `tweak`.
pub async fn setup(tweak: impl FnOnce(&mut hyco::relay::RelaySettings)) -> Setup {
    let mut s = super::settings();
    tweak(&mut s);
    let relay = super::TestRelay::start(s).await;
    let server = HttpServer::start().await;
    let mut ls = super::bridge::listen_settings("hc", &[server.addr.to_string()]);
    ls.http = true;
    let listener = super::bridge::Listening::start(super::bridge::client(relay.addr), ls).await;
    Setup { relay, server, _listener: listener }
}

use super::bridge::Noise;
use super::within_for;

/// Bytes per piece when streaming noise (a multiple of 8, as [`Noise`] needs for a stream
/// that does not depend on the piece size).
pub const PIECE: usize = 64 * 1024;

/// A request as the local server saw it.
#[derive(Debug)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub headers: Headers,
    pub body_len: u64,
    pub body_sha256: [u8; 32],
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

/// The HTTP server behind `hyco listen --http`, one request per connection (it says
/// `Connection: close`, so the listener never keeps one). Routes:
/// - `/hello`: 200, a short text, `X-Reply: from-server`, and a hop-by-hop `X-Server-Hop`;
/// - `/upload`: 200, the hex SHA-256 of the request body;
/// - `/big?n=N&seed=S[&chunked]`: N bytes of [`Noise`] from S, by Content-Length or chunked;
/// - `/stall`: never answers;
/// - `/status/NNN`: status NNN, no body;
/// - `/cookies?n=N`: 200, two `Set-Cookie` headers and N bytes of body;
/// - anything else: 404.
pub struct HttpServer {
    pub addr: SocketAddr,
    pub seen: mpsc::UnboundedReceiver<Seen>,
    task: JoinHandle<()>,
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HttpServer {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the HTTP server");
        let addr = listener.local_addr().expect("addr");
        let (tx, seen) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            while let Ok((tcp, _)) = listener.accept().await {
                conns.spawn(serve(tcp, tx.clone()));
                while conns.try_join_next().is_some() {}
            }
        });
        Self { addr, seen, task }
    }

    /// The next request that reached the server.
    pub async fn next_seen(&mut self) -> Seen {
        within_for(std::time::Duration::from_secs(30), "a request at the HTTP server", self.seen.recv())
            .await
            .expect("server alive")
    }
}

async fn serve(tcp: TcpStream, seen: mpsc::UnboundedSender<Seen>) {
    let (r, mut w) = tcp.into_split();
    let mut r = BufReader::new(r);
    let Ok(req) = http1::read_request_head(&mut r, 64 * 1024).await else { return };
    let Ok(framing) = http1::request_framing(&req.headers) else { return };
    let mut body = BodyReader::new(framing);
    let mut hash = Sha256::new();
    let mut buf = vec![0; PIECE];
    loop {
        match body.read(&mut r, &mut buf).await {
            Ok(0) => break,
            Ok(n) => hash.update(&buf[..n]),
            Err(_) => return,
        }
    }
    let digest: [u8; 32] = hash.finalize().into();
    let _ = seen.send(Seen {
        method: req.method.clone(),
        target: req.target.clone(),
        headers: req.headers.clone(),
        body_len: body.read_so_far(),
        body_sha256: digest,
    });
    let head_only = req.method == "HEAD";
    let (path, query) = req.target.split_once('?').unwrap_or((&req.target, ""));
    let param =
        |name: &str| query.split('&').find_map(|p| p.strip_prefix(name).and_then(|v| v.strip_prefix('=').or(Some(""))));
    let reply = |status: u16, headers: &[(&str, &str)], body: &[u8]| {
        let mut h: Vec<(String, String)> = headers.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect();
        h.push(("Content-Length".into(), body.len().to_string()));
        if !h.iter().any(|(n, _)| n.eq_ignore_ascii_case("Connection")) {
            h.push(("Connection".into(), "close".into()));
        }
        let mut out = http1::head(&format!("HTTP/1.1 {status} {}", http1::reason(status)), &h).into_bytes();
        if !head_only {
            out.extend_from_slice(body);
        }
        out
    };
    let out = match path {
        "/hello" => reply(
            200,
            &[
                ("Content-Type", "text/plain"),
                ("X-Reply", "from-server"),
                ("Connection", "close, X-Server-Hop"),
                ("X-Server-Hop", "1"),
            ],
            b"hello from the server",
        ),
        "/upload" => reply(200, &[("Content-Type", "text/plain")], hex(&digest).as_bytes()),
        "/big" => {
            let n: usize = param("n").and_then(|v| v.parse().ok()).unwrap_or(0);
            let seed: u64 = param("seed").and_then(|v| v.parse().ok()).unwrap_or(1);
            let chunked = param("chunked").is_some();
            let framing =
                if chunked { ("Transfer-Encoding", "chunked".to_owned()) } else { ("Content-Length", n.to_string()) };
            let head = http1::head(
                "HTTP/1.1 200 OK",
                &[
                    ("Content-Type".into(), "application/octet-stream".into()),
                    (framing.0.into(), framing.1),
                    ("Connection".into(), "close".into()),
                ],
            );
            if w.write_all(head.as_bytes()).await.is_err() || head_only {
                return;
            }
            let mut noise = Noise::new(seed);
            let mut left = n;
            while left > 0 {
                let k = left.min(PIECE);
                noise.fill(&mut buf[..k]);
                let sent =
                    if chunked { http1::write_chunk(&mut w, &buf[..k]).await } else { w.write_all(&buf[..k]).await };
                if sent.is_err() {
                    return;
                }
                left -= k;
            }
            if chunked {
                let _ = w.write_all(http1::LAST_CHUNK).await;
            }
            let _ = w.shutdown().await;
            return;
        }
        "/cookies" => {
            let n: usize = param("n").and_then(|v| v.parse().ok()).unwrap_or(0);
            let cookies =
                [("Set-Cookie", "a=1; Path=/; HttpOnly"), ("Set-Cookie", "b=2; Expires=Wed, 21 Oct 2037 07:28:00 GMT")];
            reply(200, &cookies, &vec![b'c'; n])
        }
        "/stall" => {
            std::future::pending::<()>().await;
            return;
        }
        p if p.starts_with("/status/") => {
            let status = p["/status/".len()..].parse().unwrap_or(500);
            let h = http1::head(
                &format!("HTTP/1.1 {status} {}", http1::reason(status)),
                &[("Connection".into(), "close".into())],
            );
            h.into_bytes()
        }
        _ => reply(404, &[], b"no route"),
    };
    let _ = w.write_all(&out).await;
    let _ = w.shutdown().await;
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A request body for [`request`].
pub enum Body {
    Empty,
    Bytes(Vec<u8>),
    /// `len` bytes of [`Noise`] from `seed`, with Content-Length or chunked.
    Noise {
        seed: u64,
        len: usize,
        chunked: bool,
    },
}

/// An HTTP response as a client got it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub reason: String,
    pub headers: Headers,
    pub body: Vec<u8>,
    /// Whether the body ended as its framing said (not cut off).
    pub complete: bool,
    /// How the body was framed.
    pub framing: Framing,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The JSON body of a relay's error answer.
    pub fn error_json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// Sends one request to `addr` (`Connection: close`) and reads the whole answer.
pub async fn request(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)], body: Body) -> Reply {
    let mut tcp = TcpStream::connect(addr).await.expect("connect to the relay");
    let mut h: Vec<(String, String)> = vec![("Host".into(), addr.to_string()), ("Connection".into(), "close".into())];
    h.extend(headers.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())));
    match &body {
        Body::Empty => {}
        Body::Bytes(b) => h.push(("Content-Length".into(), b.len().to_string())),
        Body::Noise { len, chunked: false, .. } => h.push(("Content-Length".into(), len.to_string())),
        Body::Noise { chunked: true, .. } => h.push(("Transfer-Encoding".into(), "chunked".into())),
    }
    let head = http1::head(&format!("{method} {target} HTTP/1.1"), &h);
    let (r, mut w) = tcp.split();
    let send = async {
        w.write_all(head.as_bytes()).await?;
        match body {
            Body::Empty => {}
            Body::Bytes(b) => w.write_all(&b).await?,
            Body::Noise { seed, len, chunked } => {
                let mut noise = Noise::new(seed);
                let mut buf = vec![0; PIECE];
                let mut left = len;
                while left > 0 {
                    let k = left.min(PIECE);
                    noise.fill(&mut buf[..k]);
                    if chunked {
                        http1::write_chunk(&mut w, &buf[..k]).await?;
                    } else {
                        w.write_all(&buf[..k]).await?;
                    }
                    left -= k;
                }
                if chunked {
                    w.write_all(http1::LAST_CHUNK).await?;
                }
            }
        }
        w.flush().await
    };
    let receive = async {
        let mut r = BufReader::new(r);
        // Skip interim answers (100 Continue).
        let head = loop {
            let head = http1::read_response_head(&mut r, 64 * 1024).await.expect("a response head");
            if !(100..200).contains(&head.status) {
                break head;
            }
        };
        let framing = http1::response_framing(head.status, method == "HEAD", &head.headers).expect("response framing");
        let mut reader = BodyReader::new(framing);
        let mut body = Vec::new();
        let mut buf = vec![0; PIECE];
        let complete = loop {
            match reader.read(&mut r, &mut buf).await {
                Ok(0) => break true,
                Ok(n) => body.extend_from_slice(&buf[..n]),
                Err(_) => break false,
            }
        };
        Reply { status: head.status, reason: head.reason, headers: head.headers, body, complete, framing }
    };
    // The relay may answer before the body is all sent (a refusal): both run at once, and
    // a send cut short by an early answer is fine.
    let (_, reply) = tokio::join!(send, receive);
    reply
}
