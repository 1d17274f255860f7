//! HTTP-mode interop (docs/protocol.md 7, interop/NOTES-https.md): Microsoft's npm listener
//! hyco-https 1.4.5 (`interop/https-listener.js`) answers plain HTTP clients through the
//! relay in-process, small and large both ways; and `hyco listen --http` answers curl
//! (or, without curl, hyco's raw client) through the relay.
//!
//! The hyco-https tests need `node` and `interop/node_modules/hyco-https`
//! (`bash interop/setup.sh`). Without them they print why and pass, unless
//! `HYCO_REQUIRE_NODE_INTEROP=1` (CI) makes that a failure.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::bridge::{Listening, client, listen_settings, noise_digest};
use common::http::{Body, HttpServer, PIECE, Reply, hex, request};
use common::node::{interop_dir, node_available};
use common::*;
use hyco::http1::Framing;
use hyco::protocol::TOKEN_HEADER;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// How long a node script may take to start and do its part (node's start-up included).
const NODE_STEP: Duration = Duration::from_secs(20);

/// A running `https-listener.js`; killed on drop.
struct NodeHttpsListener {
    _child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl NodeHttpsListener {
    async fn start(relay: &TestRelay, hc: &str) -> Self {
        let mut child = Command::new("node")
            .arg(interop_dir().join("https-listener.js"))
            .args([relay.base().as_str(), hc, KEY_NAME, KEY])
            .current_dir(interop_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn node");
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut l = Self { _child: child, lines };
        l.expect("READY").await;
        l
    }

    async fn expect(&mut self, prefix: &str) -> String {
        loop {
            let line = within_for(NODE_STEP, "a line from https-listener.js", self.lines.next_line()).await;
            match line.expect("https-listener.js stdout") {
                Some(l) if l.starts_with("ERROR") => panic!("https-listener.js: {l}"),
                Some(l) if l.starts_with(prefix) => return l,
                Some(_) => {}
                None => panic!("https-listener.js exited"),
            }
        }
    }

    /// The next `REQUEST <via> <method> <url> <headers>` line: via, method, url, headers.
    async fn next_request(&mut self) -> (String, String, String, serde_json::Value) {
        let line = self.expect("REQUEST ").await;
        let mut parts = line.splitn(5, ' ').skip(1);
        let mut next = || parts.next().expect("REQUEST <via> <method> <url> <json>").to_owned();
        let (via, method, url) = (next(), next(), next());
        (via, method, url, serde_json::from_str(&next()).expect("headers JSON"))
    }
}

async fn call(relay: &TestRelay, method: &str, target: &str, headers: &[(&str, &str)], body: Body) -> Reply {
    within_for(NODE_STEP, "an HTTP exchange through the relay", request(relay.addr, method, target, headers, body))
        .await
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

#[tokio::test]
async fn hyco_https_listener_answers_http_clients_through_the_relay() {
    if !node_available("hyco-https") {
        return;
    }
    let relay = TestRelay::start(settings()).await;
    let mut node = NodeHttpsListener::start(&relay, "hc").await;
    let tok = token("hc");
    let auth = (TOKEN_HEADER, tok.as_str());

    // Small: a complete request on the control channel, the answer back on it.
    let reply = call(&relay, "GET", "/hc/small?x=1", &[auth, ("X-App", "app value")], Body::Empty).await;
    assert_eq!((reply.status, reply.text().as_str()), (200, "small response"), "{reply:?}");
    assert_eq!(reply.header("x-listener"), Some("hyco-https"));
    assert_eq!(reply.header("Via"), Some("1.1 hyco"));
    let (via, method, url, headers) = node.next_request().await;
    assert_eq!((via.as_str(), method.as_str(), url.as_str()), ("control", "GET", "/hc/small?x=1"));
    assert_eq!(headers["x-app"], "app value");
    assert!(headers.get("servicebusauthorization").is_none(), "{headers}");

    // HEAD: body:false and hyco-https's stray empty binary message; the channel lives on.
    let reply = call(&relay, "HEAD", "/hc/small", &[auth], Body::Empty).await;
    assert_eq!((reply.status, reply.body.len()), (200, 0));
    node.next_request().await;

    // A response over 64 KiB: hyco-https moves it to a rendezvous and streams fragments.
    let n = 300_000;
    let reply = call(&relay, "GET", &format!("/hc/big?n={n}"), &[auth], Body::Empty).await;
    assert_eq!((reply.status, reply.framing, reply.complete), (200, Framing::Chunked, true));
    assert!(reply.body == pattern(n), "the 300 KB body arrived intact");
    assert_eq!(node.next_request().await.0, "control", "the request itself was small");

    // POST bodies: 1 KiB inline; 200 KiB (Content-Length) and 150 KiB (chunked) over 64 KiB,
    // so address-only: hyco-https fetches them over a rendezvous and answers on it.
    for (what, body, len, via) in [
        ("1 KiB", Body::Noise { seed: 1, len: 1024, chunked: false }, 1024, "control"),
        ("200 KiB", Body::Noise { seed: 2, len: 200 * 1024, chunked: false }, 200 * 1024, "rendezvous"),
        ("150 KiB chunked", Body::Noise { seed: 3, len: 150 * 1024, chunked: true }, 150 * 1024, "rendezvous"),
    ] {
        let seed = match body {
            Body::Noise { seed, .. } => seed,
            _ => unreachable!(),
        };
        let reply = call(&relay, "POST", "/hc/echo", &[auth], body).await;
        assert_eq!(reply.status, 200, "{what}: {}", reply.text());
        assert_eq!(reply.header("x-body-length"), Some(len.to_string().as_str()), "{what}");
        let digest = <sha2::Sha256 as sha2::Digest>::digest(&reply.body);
        assert_eq!(hex(&digest), hex(&noise_digest(seed, len, PIECE)), "{what}: echoed intact");
        let (seen_via, method, _, _) = node.next_request().await;
        assert_eq!((seen_via.as_str(), method.as_str()), (via, "POST"), "{what}");
    }

    let reply = call(&relay, "GET", "/hc/missing", &[auth], Body::Empty).await;
    assert_eq!((reply.status, reply.text().as_str()), (404, "no route"));
}

/// curl's answer to one request: status, headers and body (`-D -` then the body).
async fn curl(args: &[&str]) -> Option<(u16, String, Vec<u8>)> {
    let out = Command::new("curl").args(["-sS", "-D", "-", "--max-time", "30"]).args(args).output();
    let out = within_for(Duration::from_secs(40), "curl", out).await.ok()?;
    assert!(out.status.success(), "curl failed: {}", String::from_utf8_lossy(&out.stderr));
    let end = out.stdout.windows(4).rposition(|w| w == b"\r\n\r\n").expect("curl's head") + 4;
    let head = String::from_utf8_lossy(&out.stdout[..end]).into_owned();
    // The last head (after any 100 Continue).
    let last = head.trim_end().rsplit("\r\n\r\n").next().unwrap_or_default().to_owned();
    let status = last.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status");
    Some((status, last, out.stdout[end..].to_vec()))
}

#[tokio::test]
async fn hyco_listen_http_answers_curl_through_the_relay() {
    let relay = TestRelay::start(settings()).await;
    let mut server = HttpServer::start().await;
    let mut ls = listen_settings("web", &[server.addr.to_string()]);
    ls.http = true;
    let _l = Listening::start(client(relay.addr), ls).await;
    let tok = token("web");
    let base = format!("http://{}/web", relay.addr);
    let has_curl = std::process::Command::new("curl").arg("--version").output().is_ok_and(|o| o.status.success());
    if has_curl {
        let auth = format!("{TOKEN_HEADER}: {tok}");
        let (status, head, body) = curl(&["-H", &auth, &format!("{base}/hello")]).await.expect("curl ran");
        assert_eq!((status, body.as_slice()), (200, &b"hello from the server"[..]), "{head}");
        assert!(head.to_ascii_lowercase().contains("via: 1.1 hyco"), "{head}");
        assert_eq!(server.next_seen().await.target, "/hello");
        // A 2 MiB upload: curl sends Expect: 100-continue, the relay answers it.
        let file = std::env::temp_dir().join(format!("hyco-curl-{}.bin", std::process::id()));
        std::fs::write(&file, pattern(2 << 20)).expect("write the upload");
        let data = format!("@{}", file.display());
        let (status, _, body) =
            curl(&["-H", &auth, "--data-binary", &data, &format!("{base}/upload")]).await.expect("curl ran");
        let _ = std::fs::remove_file(&file);
        let digest = <sha2::Sha256 as sha2::Digest>::digest(pattern(2 << 20));
        assert_eq!((status, String::from_utf8_lossy(&body).into_owned()), (200, hex(&digest)));
        assert_eq!(server.next_seen().await.body_len, 2 << 20);
        let (status, _, body) = curl(&[&format!("{base}/hello")]).await.expect("curl ran");
        assert_eq!(status, 401, "{}", String::from_utf8_lossy(&body));
    } else {
        eprintln!("curl not installed: using hyco's raw HTTP client");
        let reply = call(&relay, "GET", "/web/hello", &[(TOKEN_HEADER, &tok)], Body::Empty).await;
        assert_eq!((reply.status, reply.text().as_str()), (200, "hello from the server"));
        assert_eq!(server.next_seen().await.target, "/hello");
    }
}
