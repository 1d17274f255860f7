//! Headless Chromium (Debian's `/usr/bin/chromium`) driven over the DevTools protocol
//! (a WebSocket, through tokio-tungstenite): open a page, evaluate script in it, take a
//! screenshot. A test that needs it is skipped when Chromium is missing, unless
//! `HYCO_REQUIRE_CHROMIUM=1` says it must be there.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use super::bridge::TempDir;
use super::within;

pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Chromium's path, or `None` (said on stderr) when it is missing and not required.
pub fn chromium() -> Option<&'static str> {
    if Path::new(CHROMIUM).exists() {
        return Some(CHROMIUM);
    }
    assert!(
        std::env::var_os("HYCO_REQUIRE_CHROMIUM").is_none(),
        "HYCO_REQUIRE_CHROMIUM is set but {CHROMIUM} is missing"
    );
    eprintln!("note: {CHROMIUM} is missing; the browser test is skipped (install Debian's chromium to run it)");
    None
}

/// Flags for a quiet headless Chromium that stays off the network.
pub const HEADLESS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
];

/// One page in a headless Chromium, under DevTools' control. Dropping it kills the browser.
pub struct Page {
    browser: tokio::process::Child,
    cdp: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>,
    next_id: u64,
    _profile: TempDir,
}

impl Page {
    /// Opens `url` in a new headless Chromium of `width`x`height` CSS pixels, or `None`
    /// when Chromium is missing (see [`chromium`]).
    pub async fn open(url: &str, width: u32, height: u32) -> Option<Self> {
        let path = chromium()?;
        let profile = TempDir::new("chromium");
        let mut browser = tokio::process::Command::new(path)
            .args(HEADLESS)
            .arg("--remote-debugging-port=0")
            .arg(format!("--window-size={width},{height}"))
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .env("HOME", profile.path())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromium");
        let mut lines = BufReader::new(browser.stderr.take().unwrap()).lines();
        let devtools = within("chromium's DevTools address", async {
            loop {
                let line = lines.next_line().await.expect("read").expect("chromium said where DevTools is");
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    break url.to_owned();
                }
            }
        })
        .await;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let debug: SocketAddr = devtools["ws://".len()..].split('/').next().unwrap().parse().expect("an address");
        let host = url.split("://").nth(1).and_then(|r| r.split('/').next()).unwrap_or_default().to_owned();
        // The page's own DevTools socket.
        let target = within("the page target", async {
            loop {
                let list: serde_json::Value = serde_json::from_str(&devtools_list(debug).await).unwrap_or_default();
                let found = list
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|t| t["type"] == "page" && t["url"].as_str().is_some_and(|u| u.contains(&host)));
                if let Some(url) = found.and_then(|t| t["webSocketDebuggerUrl"].as_str()) {
                    break url.to_owned();
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        // On the address DevTools listens on, whatever host name its list gives.
        let path = target.trim_start_matches("ws://").split_once('/').map_or("", |(_, p)| p);
        let (cdp, _) =
            tokio_tungstenite::connect_async(format!("ws://{debug}/{path}")).await.expect("DevTools WebSocket");
        Some(Page { browser, cdp, next_id: 0, _profile: profile })
    }

    /// Calls a DevTools method and returns its `result`.
    pub async fn call(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        self.next_id += 1;
        let id = self.next_id;
        let call = serde_json::json!({ "id": id, "method": method, "params": params });
        self.cdp.send(Message::text(call.to_string())).await.expect("send to DevTools");
        loop {
            let msg =
                within("a DevTools answer", self.cdp.next()).await.expect("DevTools open").expect("read DevTools");
            let v: serde_json::Value = serde_json::from_str(msg.to_text().unwrap_or("{}")).unwrap_or_default();
            if v["id"] == id {
                assert!(v.get("error").is_none(), "DevTools {method}: {}", v["error"]);
                break v["result"].clone();
            }
        }
    }

    /// Evaluates `expr` in the page (awaiting a promise) and returns its value.
    pub async fn eval(&mut self, expr: &str) -> serde_json::Value {
        let params = serde_json::json!({ "expression": expr, "returnByValue": true, "awaitPromise": true });
        let result = self.call("Runtime.evaluate", params).await;
        assert!(result.get("exceptionDetails").is_none(), "{expr}: {}", result["exceptionDetails"]);
        result["result"]["value"].clone()
    }

    /// Waits until `expr` is true in the page, for at most `limit`.
    pub async fn wait_for(&mut self, limit: Duration, what: &str, expr: &str) {
        let started = std::time::Instant::now();
        while self.eval(expr).await != serde_json::Value::Bool(true) {
            assert!(started.elapsed() < limit, "timed out after {limit:?} waiting for {what} ({expr})");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Presses and releases a key (`"Tab"`, `"Enter"`, …) in the page, as a person would.
    pub async fn press(&mut self, key: &str, code: &str, key_code: u32) {
        for kind in ["rawKeyDown", "keyUp"] {
            let mut params =
                serde_json::json!({ "type": kind, "key": key, "code": code, "windowsVirtualKeyCode": key_code });
            if kind == "rawKeyDown" && key == "Enter" {
                params["text"] = "\r".into();
                params["type"] = "keyDown".into();
            }
            self.call("Input.dispatchKeyEvent", params).await;
        }
    }

    /// The lowest contrast ratio (WCAG 2: 1 to 21) between the text shown on the page and
    /// the background behind it, and where it is: 4.5 is WCAG AA for normal text.
    pub async fn lowest_contrast(&mut self) -> (f64, String) {
        let found = self.eval(LOWEST_CONTRAST).await;
        (found[0].as_f64().expect("a ratio"), found[1].as_str().unwrap_or_default().to_owned())
    }

    /// A PNG of the whole viewport. With `HYCO_UPDATE_SCREENSHOTS=1` it is also written
    /// to `docs/screenshots/NAME.png` (checked in when it changes); otherwise to
    /// `target/screenshots/`.
    pub async fn screenshot(&mut self, name: &str) -> Vec<u8> {
        let shot = self.call("Page.captureScreenshot", serde_json::json!({ "format": "png" })).await;
        let png = base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().unwrap_or_default()).unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let dir = match std::env::var_os("HYCO_UPDATE_SCREENSHOTS") {
            Some(_) => root.join("docs/screenshots"),
            None => root.join("target/screenshots"),
        };
        std::fs::create_dir_all(&dir).expect("a screenshot directory");
        std::fs::write(dir.join(format!("{name}.png")), &png).expect("write the screenshot");
        png
    }

    pub async fn close(mut self) {
        let _ = self.browser.start_kill();
        let _ = self.browser.wait().await;
    }
}

/// Walks the page's visible text and computes WCAG 2's contrast ratio of each piece's color
/// against the first opaque background among its ancestors (white if none).
const LOWEST_CONTRAST: &str = r#"(() => {
  const channels = c => (c.match(/[\d.]+/g) || []).map(Number);
  const luminance = c => {
    const [r, g, b] = channels(c).slice(0, 3).map(v => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const background = el => {
    for (let e = el; e; e = e.parentElement) {
      const c = getComputedStyle(e).backgroundColor, v = channels(c);
      if (v.length === 3 || (v.length === 4 && v[3] > 0)) { return c; }
    }
    return "rgb(255, 255, 255)";
  };
  let worst = 21, where = "";
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const text = walker.currentNode, el = text.parentElement;
    if (!text.textContent.trim() || !el.getClientRects().length) { continue; }
    const a = luminance(getComputedStyle(el).color), b = luminance(background(el));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < worst) { worst = ratio; where = el.tagName + ": " + text.textContent.trim().slice(0, 40); }
  }
  return [worst, where];
})()"#;

/// DevTools' `/json/list` (its HTTP server keeps the connection: read by Content-Length).
async fn devtools_list(debug: SocketAddr) -> String {
    let mut tcp = TcpStream::connect(debug).await.expect("connect to DevTools");
    tcp.write_all(b"GET /json/list HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = tcp.read(&mut buf).await.expect("read DevTools");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>()))
                .and_then(Result::ok)
                .unwrap_or(0);
            if n == 0 || body.len() >= len {
                return body.to_owned();
            }
        }
        if n == 0 {
            return String::new();
        }
    }
}
