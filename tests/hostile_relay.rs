//! A relay that lies. `FakeRelay`, written for these tests, takes `hyco listen`'s control
//! channel like a relay and then sends accept messages of its choosing. The listener must
//! connect only back to the relay (its scheme, host and port), write nothing the relay
//! chose into a request line or header, and work on a bounded number of rendezvous at
//! once, so that a flood of accepts cannot make it open connections without end.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::bridge::*;
use common::*;
use futures_util::{SinkExt, StreamExt};
use hyco::protocol::{Accept, RelayMessage};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

type Control = WebSocketStream<TcpStream>;

/// A relay that completes the control channel's upgrade and hands it to the test; every
/// other connection (a rendezvous) has its request head recorded and is then held open,
/// unanswered, until the relay is dropped.
struct FakeRelay {
    addr: SocketAddr,
    controls: mpsc::Receiver<Control>,
    /// Request heads of rendezvous attempts, as text, in arrival order.
    heads: watch::Receiver<Vec<String>>,
    held: Arc<Mutex<Vec<TcpStream>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeRelay {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the fake relay");
        let addr = listener.local_addr().expect("fake relay address");
        let (control_tx, controls) = mpsc::channel(4);
        let (heads_tx, heads) = watch::channel(Vec::new());
        let held = Arc::new(Mutex::new(Vec::new()));
        let keep = held.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let (control_tx, heads_tx, keep) = (control_tx.clone(), heads_tx.clone(), keep.clone());
                tokio::spawn(async move {
                    let Ok((req, _)) = hyco::http1::read_request(&mut tcp, 64 * 1024).await else { return };
                    if req.target.contains("sb-hc-action=listen") {
                        let key = hyco::ws::handshake::websocket_key(&req).expect("an upgrade").to_owned();
                        use tokio::io::AsyncWriteExt;
                        let answer = hyco::ws::handshake::switching_protocols(&key, None);
                        tcp.write_all(answer.as_bytes()).await.expect("101");
                        let ws = WebSocketStream::from_raw_socket(tcp, Role::Server, None).await;
                        let _ = control_tx.send(ws).await;
                    } else {
                        let head = std::iter::once(format!("{} {}", req.method, req.target))
                            .chain(req.headers.iter().map(|(n, v)| format!("{n}: {v}")))
                            .collect::<Vec<_>>()
                            .join("\n");
                        heads_tx.send_modify(|h| h.push(head));
                        keep.lock().expect("held").push(tcp);
                    }
                });
            }
        });
        Self { addr, controls, heads, held, task }
    }

    /// An address on this relay for `hc`, as a relay builds an accept address.
    fn address(&self, id: &str) -> String {
        format!("ws://{}/$hc/hc?sb-hc-action=accept&sb-hc-id={id}", self.addr)
    }

    async fn wait_heads(&mut self, n: usize) -> Vec<String> {
        within("rendezvous attempts at the fake relay", self.heads.wait_for(|h| h.len() >= n))
            .await
            .expect("fake relay alive")
            .clone()
    }
}

impl Drop for FakeRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn accept(address: String, id: &str, protocol: Option<&str>) -> Message {
    let connect_headers =
        protocol.map(|p| [("Sec-WebSocket-Protocol".to_owned(), p.to_owned())].into()).unwrap_or_default();
    let message = RelayMessage::Accept(Accept { address, id: id.to_owned(), connect_headers, remote_endpoint: None });
    Message::text(serde_json::to_string(&message).expect("serializes"))
}

/// Waits until the listener has read everything sent before: it answers a ping only after
/// the messages ahead of it.
async fn settled(control: &mut Control) {
    control.send(Message::Ping(b"settle".to_vec().into())).await.expect("ping");
    within("the listener's pong", async {
        while let Some(msg) = control.next().await {
            if matches!(msg, Ok(Message::Pong(_))) {
                return;
            }
        }
        panic!("the control channel closed");
    })
    .await;
}

/// A TCP port that counts the connections it accepts and keeps them open.
struct Counting {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    _target: Target,
}

impl Counting {
    async fn start() -> Self {
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let target = Target::spawn(move |tcp| {
            count.fetch_add(1, Ordering::SeqCst);
            async move {
                let mut tcp = tcp;
                let _ = read_until_end(&mut tcp).await;
            }
        })
        .await;
        Self { addr: target.addr, accepted, _target: target }
    }

    fn count(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn accepts_that_lead_anywhere_but_the_relay_are_ignored() {
    let mut relay = FakeRelay::start().await;
    let target = Counting::start().await;
    let honeypot = Counting::start().await;
    let mut settings = listen_settings("hc", &[target.addr.to_string()]);
    settings.drain_timeout = std::time::Duration::from_millis(100);
    let listening = Listening::start(client(relay.addr), settings).await;
    let mut control = within("the control channel", relay.controls.recv()).await.expect("a control channel");
    let port = relay.addr.port();

    for (why, address) in [
        ("another port", format!("ws://127.0.0.1:{}/$hc/hc?sb-hc-action=accept&sb-hc-id=a", honeypot.addr.port())),
        ("another host", format!("ws://localhost:{port}/$hc/hc?sb-hc-action=accept&sb-hc-id=b")),
        ("another host", format!("ws://[::1]:{port}/$hc/hc?sb-hc-action=accept&sb-hc-id=c")),
        ("another scheme", format!("wss://127.0.0.1:{port}/$hc/hc?sb-hc-action=accept&sb-hc-id=d")),
        ("a line break", format!("{}\r\nX-Evil: 1", relay.address("e"))),
        ("a space", relay.address("f g")),
        ("not a URL", "gopher://127.0.0.1/".to_owned()),
    ] {
        control.send(accept(address, why, None)).await.expect("send a hostile accept");
    }
    // An honest address, with a subprotocol no header may carry.
    control.send(accept(relay.address("honest"), "honest", Some("p\r\nX-Evil: 1"))).await.expect("send");
    let heads = relay.wait_heads(1).await;
    settled(&mut control).await;

    assert_eq!(heads.len(), 1, "only the honest address was opened: {heads:#?}");
    assert!(heads[0].contains("sb-hc-id=honest"), "{heads:#?}");
    assert!(!heads[0].contains("X-Evil"), "nothing the relay chose became a header: {}", heads[0]);
    assert!(!heads[0].to_ascii_lowercase().contains("sec-websocket-protocol"), "{}", heads[0]);
    assert_eq!(honeypot.count(), 0, "the listener never connected where the relay pointed it");
    assert_eq!(target.count(), 1, "the target was reached for the honest accept only");
    drop((control, relay));
    listening.stop().await.expect("listener stops");
}

#[tokio::test]
async fn a_flood_of_accepts_opens_a_bounded_number_of_connections() {
    const CAP: usize = 8;
    let mut relay = FakeRelay::start().await;
    let target = Counting::start().await;
    let mut settings = listen_settings("hc", &[target.addr.to_string()]);
    settings.max_rendezvous = CAP;
    settings.drain_timeout = std::time::Duration::from_millis(100);
    let listening = Listening::start(client(relay.addr), settings).await;
    let mut control = within("the control channel", relay.controls.recv()).await.expect("a control channel");

    for i in 0..500 {
        control.send(accept(relay.address(&format!("flood{i}")), "flood", None)).await.expect("send");
    }
    settled(&mut control).await;
    let heads = relay.wait_heads(CAP).await;
    assert_eq!(heads.len(), CAP, "rendezvous opened at once");
    assert_eq!(target.count(), CAP, "target connections made at once");

    // The held rendezvous fail when the relay drops them, and their slots come back: the
    // accepts waiting in line take them, then a new one gets its turn.
    within("slots to come back", async {
        loop {
            relay.held.lock().expect("held").clear();
            control.send(accept(relay.address("later"), "later", None)).await.expect("send");
            settled(&mut control).await;
            if relay.heads.borrow().iter().any(|h| h.contains("sb-hc-id=later")) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    // What waited in line went through; the rest of the flood was dropped: 8 waiting per
    // slot (listen.rs WAITING_PER_SLOT) besides the slots themselves.
    let flood = relay.heads.borrow().iter().filter(|h| h.contains("sb-hc-id=flood")).count();
    assert!(flood > CAP && flood <= CAP * (1 + 8), "{flood} of 500 flood accepts were opened");
    drop((control, relay));
    listening.stop().await.expect("listener stops");
}

#[tokio::test]
async fn what_a_relay_puts_in_an_accept_cannot_forge_log_lines() {
    let mut relay = FakeRelay::start().await;
    let home = TempDir::new("logforge");
    let mut cmd = hyco(home.path());
    let endpoint = format!("ws://{}", relay.addr);
    cmd.args(["listen", "hc", "--to", "web=127.0.0.1:1"]).args(key_flags(&endpoint, KEY));
    let mut listen = Proc::spawn(cmd);
    let mut control = within("the control channel", relay.controls.recv()).await.expect("a control channel");
    // A tracking id and a target name that try to end the log line and clear the screen.
    let id = "x\r\n2026-01-01T00:00:00Z ERROR FAKE forged line\x1b[2J\x1b[1A";
    let address = format!("ws://{}/$hc/hc/nosuch?sb-hc-action=accept&sb-hc-id=x", relay.addr);
    control.send(accept(address, id, None)).await.expect("send");
    let heads = relay.wait_heads(1).await;
    assert!(heads[0].contains("statusCode=404"), "the listener rejected the unknown target: {}", heads[0]);
    relay.held.lock().expect("held").clear();
    drop(control);
    listen.terminate().await;
    let logs = listen.stderr.text();
    assert!(logs.contains("rejecting"), "the rejection was logged:\n{logs}");
    assert!(!logs.lines().any(|l| l.contains("FAKE") && !l.contains("rejecting")), "a forged line:\n{logs}");
    assert!(!logs.contains('\x1b') && !logs.contains('\r'), "control characters reached the log:\n{logs:?}");
    assert!(logs.contains("\\r\\n2026-01-01T00:00:00Z ERROR FAKE"), "the id is there, escaped:\n{logs}");
}
