//! `--token-command` (issue 15 A.3): hyco runs a command for a JWT, sends it as Microsoft's
//! SDKs send one (the raw token in `ServiceBusAuthorization`), runs the command again before
//! the token's `exp` and renews the control channel with `renewToken`; a failing command
//! is exit 5 with its stderr. The relay is a stand-in (a tokio listener that records the
//! upgrade's headers), since `hyco serve` accepts SAS tokens only.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use common::bridge::*;
use common::*;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

/// A relay stand-in: each upgrade's `ServiceBusAuthorization` header goes to `tokens`; a
/// listen upgrade is answered 101 and its control channel handed to `controls`, any
/// other is answered 404.
struct StandIn {
    addr: SocketAddr,
    tokens: mpsc::UnboundedReceiver<Option<String>>,
    controls: mpsc::UnboundedReceiver<WebSocketStream<TcpStream>>,
    task: tokio::task::JoinHandle<()>,
}

impl StandIn {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tokens_tx, tokens) = mpsc::unbounded_channel();
        let (controls_tx, controls) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let (tokens_tx, controls_tx) = (tokens_tx.clone(), controls_tx.clone());
                tokio::spawn(async move {
                    let Ok((req, _)) = hyco::http1::read_request(&mut tcp, 64 * 1024).await else { return };
                    let token = hyco::http1::header(&req.headers, "ServiceBusAuthorization").map(str::to_owned);
                    let _ = tokens_tx.send(token);
                    if req.target.contains("sb-hc-action=listen") {
                        let key = hyco::ws::handshake::websocket_key(&req).expect("an upgrade").to_owned();
                        let answer = hyco::ws::handshake::switching_protocols(&key, None);
                        tcp.write_all(answer.as_bytes()).await.expect("101");
                        let _ = controls_tx.send(WebSocketStream::from_raw_socket(tcp, Role::Server, None).await);
                    } else {
                        let _ = tcp.write_all(b"HTTP/1.1 404 Endpoint does not exist. TrackingId:t, Timestamp:2026-11-27T10:00:00Z\r\nContent-Length: 0\r\n\r\n").await;
                    }
                });
            }
        });
        Self { addr, tokens, controls, task }
    }

    async fn next_token(&mut self) -> Option<String> {
        within("an upgrade at the stand-in", self.tokens.recv()).await.expect("stand-in alive")
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A JWT-shaped token (unsigned) with `exp` and a serial number.
fn jwt(exp: u64, n: u32) -> String {
    let b = |s: String| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    format!("{}.{}.c2ln", b(r#"{"alg":"RS256","typ":"JWT"}"#.into()), b(format!(r#"{{"exp":{exp},"n":{n}}}"#)))
}

/// Writes a script into `dir` that counts its runs in `dir/runs` and prints a JWT that
/// expires `life` seconds after it runs, with the run's number in it.
fn token_script(dir: &Path, life: u64) -> String {
    token_script_failing(dir, life, 0)
}

/// [`token_script`], except that run number `fail` exits 1 with a message on stderr.
fn token_script_failing(dir: &Path, life: u64, fail: u32) -> String {
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT"}"#);
    let runs = dir.join("runs");
    let script = dir.join("token.sh");
    std::fs::write(
        &script,
        format!(
            "echo run >> '{runs}'\n\
             n=$(wc -l < '{runs}')\n\
             if [ \"$n\" -eq {fail} ]; then echo 'IMDS is having a moment' >&2; exit 1; fi\n\
             exp=$(( $(date +%s) + {life} ))\n\
             payload=$(printf '{{\"exp\":%s,\"n\":%s}}' \"$exp\" \"$n\" | base64 | tr -d '=\\n' | tr '/+' '_-')\n\
             echo \"{header}.$payload.c2ln\"\n",
            runs = runs.display()
        ),
    )
    .expect("write the script");
    format!("sh '{}'", script.display())
}

fn runs(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("runs")).map(|s| s.lines().count()).unwrap_or(0)
}

fn claims(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).expect("base64url"))
        .expect("JSON")
}

#[test]
fn the_shape_of_the_test_token() {
    assert_eq!(claims(&jwt(5, 2))["n"], 2);
}

#[tokio::test]
async fn listen_sends_the_commands_jwt_and_renews_it_on_the_control_channel() {
    let mut relay = StandIn::start().await;
    let home = TempDir::new("tokcmd-listen");
    // A 2 s token: renewed (a new run) within about a second.
    let command = token_script(home.path(), 2);
    let mut cmd = hyco(home.path());
    let endpoint = format!("ws://{}", relay.addr);
    cmd.args(["-vv", "listen", "hc", "--to", "127.0.0.1:1", "--endpoint", &endpoint, "--token-command", &command]);
    let mut listen = Proc::spawn(cmd);
    let sent = relay.next_token().await.expect("a ServiceBusAuthorization header");
    // As Microsoft's SDKs send a JWT: the raw token, no "Bearer " or SAS prefix.
    assert_eq!(claims(&sent)["n"], 1, "the first run's token: {}", claims(&sent));
    let mut control = within("the control channel", relay.controls.recv()).await.expect("a control channel");
    let renewed = within_for(Duration::from_secs(10), "a renewToken with a new token", async {
        while let Some(msg) = control.next().await {
            if let Ok(Message::Text(text)) = msg {
                let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
                if let Some(token) = v["renewToken"]["token"].as_str()
                    && claims(token)["n"] != 1
                {
                    return token.to_owned();
                }
            }
        }
        panic!("the control channel closed");
    })
    .await;
    assert!(claims(&renewed)["n"].as_u64().expect("n") >= 2);
    assert!(runs(home.path()) >= 2, "the command ran again before expiry");
    drop(control);
    listen.terminate().await;
    let logs = listen.stderr.text();
    assert!(logs.contains("token renewed"), "the log is at debug level:\n{logs}");
    let signature = |t: &str| t.rsplit_once('.').map(|(head, _)| head.to_owned()).expect("a JWT");
    assert!(
        !logs.contains(&signature(&sent)) && !logs.contains(&signature(&renewed)),
        "a token reached the log:\n{logs}"
    );
}

#[tokio::test]
async fn connect_reuses_a_token_until_shortly_before_its_exp() {
    let mut relay = StandIn::start().await;
    let home = TempDir::new("tokcmd-connect");
    let command = token_script(home.path(), 3600);
    let mut cmd = hyco(home.path());
    let endpoint = format!("ws://{}", relay.addr);
    cmd.args(["connect", "hc", "--bind", "127.0.0.1:0", "--prewarm", "0", "--endpoint", &endpoint]);
    cmd.args(["--token-command", &command]);
    let mut bound = Proc::spawn(cmd);
    // The startup check, probes for a listener (answered 404 as the relay does) and two
    // connections: every upgrade carries the first run's token.
    let addr = bound_addr(&bound).await;
    let _first = TcpStream::connect(addr).await.expect("connect");
    let _second = TcpStream::connect(addr).await.expect("connect");
    for _ in 0..3 {
        let token = relay.next_token().await.expect("a token");
        assert_eq!(claims(&token)["n"], 1);
    }
    assert_eq!(runs(home.path()), 1, "one run for an hour-long token");
    bound.terminate().await;
}

/// The address `hyco connect --bind 127.0.0.1:0` says it bound.
async fn bound_addr(bound: &Proc) -> SocketAddr {
    let line =
        bound.stderr.wait_for(Duration::from_secs(10), "the bound address", |l| l.contains("accepting on")).await;
    let rest = line.split("accepting on ").nth(1).expect("an address");
    rest.split_whitespace().next().expect("an address").parse().expect("an address")
}

#[tokio::test]
async fn a_failing_command_is_exit_5_with_its_stderr() {
    let relay = StandIn::start().await;
    let home = TempDir::new("tokcmd-fail");
    let endpoint = format!("ws://{}", relay.addr);
    for args in [&["listen", "hc", "--to", "127.0.0.1:1"][..], &["connect", "hc", "--bind", "127.0.0.1:0"][..]] {
        let mut cmd = hyco(home.path());
        cmd.args(args).args(["--endpoint", &endpoint]);
        cmd.args(["--token-command", "echo 'ERROR: Please run az login to setup account.' >&2; exit 1"]);
        let mut proc = Proc::spawn(cmd);
        assert_eq!(proc.exit(Duration::from_secs(10)).await.code(), Some(5), "{args:?}");
        let logs = proc.stderr.text();
        assert!(logs.contains("Please run az login"), "{args:?}: the command's stderr is passed on:\n{logs}");
    }
    let mut cmd = hyco(home.path());
    cmd.args(["listen", "hc", "--to", "127.0.0.1:1", "--endpoint", &endpoint, "--token-command", "true"]);
    let mut proc = Proc::spawn(cmd);
    assert_eq!(proc.exit(Duration::from_secs(10)).await.code(), Some(5));
    assert!(proc.stderr.text().contains("printed no token"), "{}", proc.stderr.text());
}

#[tokio::test]
async fn a_renewal_whose_command_fails_warns_and_retries() {
    let mut relay = StandIn::start().await;
    let home = TempDir::new("tokcmd-retry");
    let command = token_script_failing(home.path(), 2, 2);
    let mut cmd = hyco(home.path());
    let endpoint = format!("ws://{}", relay.addr);
    cmd.args(["listen", "hc", "--to", "127.0.0.1:1", "--endpoint", &endpoint, "--token-command", &command]);
    let mut listen = Proc::spawn(cmd);
    assert_eq!(claims(&relay.next_token().await.expect("a token"))["n"], 1);
    let mut control = within("the control channel", relay.controls.recv()).await.expect("a control channel");
    within_for(Duration::from_secs(10), "a renewToken from the third run", async {
        while let Some(msg) = control.next().await {
            if let Ok(Message::Text(text)) = msg {
                let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
                if let Some(token) = v["renewToken"]["token"].as_str() {
                    assert_ne!(claims(token)["n"], 2, "the failed run printed no token");
                    if claims(token)["n"] == 3 {
                        return;
                    }
                }
            }
        }
        panic!("the control channel closed");
    })
    .await;
    drop(control);
    listen.terminate().await;
    let logs = listen.stderr.text();
    assert!(logs.contains("cannot renew the token") && logs.contains("IMDS is having a moment"), "{logs}");
}
