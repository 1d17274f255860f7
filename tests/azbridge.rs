//! azbridge (Microsoft's Azure Relay Bridge) on either side of a hybrid connection:
//! `hyco listen --azbridge` against the bytes azbridge's `-L` sends, `hyco connect
//! --azbridge-port` against the answers its `-T` gives, and the two hyco ends together;
//! and `hyco listen --azbridge` carrying azbridge's length-prefixed datagrams to a UDP
//! target. The byte exchange is the one azure-relay-bridge's TcpLocalForwardBridge.cs,
//! RemoteForwardBridge.cs and UdpRemoteForwarder.cs define (interop/NOTES.md); .NET
//! cannot run here.

mod common;

use common::bridge::*;
use common::*;
use futures_util::{SinkExt, StreamExt};
use hyco::client::connect::ConnectSettings;
use hyco::client::prewarm::Prewarm;
use hyco::protocol::Action;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

/// An azbridge `-L` sender: opens a sender WebSocket and writes the preamble as azbridge
/// does (two writes: version, mode and length, then the name); the listener's answer.
async fn azbridge_sender(relay: &TestRelay, hc: &str, preamble: &[u8]) -> (Ws, Option<Vec<u8>>) {
    let url = relay.url(hc, Action::Connect);
    let (mut ws, _) = within("sender", ws_connect(relay.addr, &url, &[auth(&token(hc))])).await.expect("sender");
    let (head, name) = preamble.split_at(4.min(preamble.len()));
    ws.send(Message::binary(head.to_vec())).await.expect("preamble head");
    if !name.is_empty() {
        ws.send(Message::binary(name.to_vec())).await.expect("preamble name");
    }
    let answer = within("the answer", async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Binary(b))) => return Some(b.to_vec()),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                _ => return None,
            }
        }
    })
    .await;
    (ws, answer)
}

#[tokio::test]
async fn hyco_listen_answers_azbridge_senders_as_azbridge_does() {
    let relay = TestRelay::start(settings()).await;
    let target = Target::echo().await;
    let mut ls = listen_settings("bridge", &[format!("ssh={}", target.addr), "dns=udp://127.0.0.1:53".to_owned()]);
    ls.azbridge = true;
    let _listening = Listening::start(client(relay.addr), ls).await;

    // A known name: 01 00 00, then the stream.
    let (mut ws, answer) = azbridge_sender(&relay, "bridge", &[1, 0, 0, 3, b's', b's', b'h']).await;
    assert_eq!(answer.as_deref(), Some(&[1u8, 0, 0][..]));
    ws.send(Message::binary(b"through azbridge".to_vec())).await.expect("data");
    match within("the echo", ws.next()).await {
        Some(Ok(Message::Binary(b))) => assert_eq!(&b[..], b"through azbridge"),
        other => panic!("expected the echo, got {other:?}"),
    }
    // Refusals, byte for byte.
    let cases: [(&[u8], Option<&[u8]>); 4] = [
        (&[1, 0, 0, 4, b'n', b'o', b'n', b'e'], None), // unknown name: closed, no answer
        (&[1, 0, 0, 3, b'd', b'n', b's'], Some(&[0, 0, 1])), // a stream to a UDP port
        (&[1, 0, 1, 3, b's', b's', b'h'], Some(&[0, 0, 0xFF])), // datagram mode to a stream port
        (&[2, 0, 0, 0], Some(&[0, 0, 0])),             // a version it does not speak
    ];
    for (preamble, want) in cases {
        let (_, answer) = azbridge_sender(&relay, "bridge", preamble).await;
        assert_eq!(answer.as_deref(), want, "{preamble:?}");
    }
}

/// A raw azbridge `-T` listener on `hc`: takes one accept, reads the preamble, answers
/// `answer`; with `01 00 00`, echoes what follows. Returns the preamble it read.
async fn azbridge_listener(relay: &TestRelay, hc: &str, answer: [u8; 3]) -> tokio::task::JoinHandle<Vec<u8>> {
    let mut l = listen(relay, hc).await;
    let addr = relay.addr;
    tokio::spawn(async move {
        // hyco connect checks its path with a tunnel it closes at once: skip such ones.
        let (mut ws, preamble) = loop {
            let accept = l.next_accept().await;
            let mut ws = accept_ws(addr, &accept).await;
            let mut preamble = Vec::new();
            while preamble.len() < 4 || preamble.len() < 4 + usize::from(preamble[3]) {
                match ws.next().await {
                    Some(Ok(Message::Binary(b))) => preamble.extend_from_slice(&b),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    _ => break,
                }
            }
            if preamble.len() >= 4 && preamble.len() == 4 + usize::from(preamble[3]) {
                break (ws, preamble);
            }
        };
        ws.send(Message::binary(answer.to_vec())).await.expect("answer");
        if answer == [1, 0, 0] {
            while let Some(Ok(Message::Binary(b))) = ws.next().await {
                if ws.send(Message::binary(b)).await.is_err() {
                    break;
                }
            }
        } else {
            let _ = ws.close(None).await;
        }
        drop(l);
        preamble
    })
}

async fn accept_ws(addr: std::net::SocketAddr, accept: &hyco::protocol::Accept) -> Ws {
    common::accept(addr, accept, &[]).await
}

fn azbridge_settings(hc: &str, port: &str) -> ConnectSettings {
    ConnectSettings { hc: hc.into(), suffix: None, azbridge: Some(port.into()) }
}

#[tokio::test]
async fn hyco_connect_sends_azbridges_preamble_and_heeds_its_answer() {
    let relay = TestRelay::start(settings()).await;
    let bridge = azbridge_listener(&relay, "tee", [1, 0, 0]).await;
    let bound = Bound::start_settings(client(relay.addr), azbridge_settings("tee", "22"), Prewarm::off()).await;
    let mut tcp = bound.connect().await;
    tcp.write_all(b"hello").await.expect("write");
    let mut back = [0; 5];
    within("the echo", tcp.read_exact(&mut back)).await.expect("read");
    assert_eq!(&back, b"hello");
    drop(tcp);
    assert_eq!(within("the listener's preamble", bridge).await.expect("task"), [1, 0, 0, 2, b'2', b'2']);

    // A refusal: the local connection is reset, and the log says what azbridge meant.
    let refusing = azbridge_listener(&relay, "udp-port", [0, 0, 1]).await;
    let bound = Bound::start_settings(client(relay.addr), azbridge_settings("udp-port", "53"), Prewarm::off()).await;
    let mut tcp = bound.connect().await;
    let mut buf = [0; 1];
    let read = within("the local connection to end", tcp.read(&mut buf)).await;
    assert!(read.is_err(), "a reset, not a clean end: {read:?}");
    within("the listener", refusing).await.expect("task");
    assert_eq!(bound.stats.failed.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[tokio::test]
async fn hyco_connect_and_hyco_listen_speak_azbridge_to_each_other() {
    let relay = TestRelay::start(settings()).await;
    let target = Target::echo().await;
    let mut ls = listen_settings("both", &[target.spec()]);
    ls.azbridge = true;
    let _listening = Listening::start(client(relay.addr), ls).await;
    // One target: any port number picks it, as azbridge's `-T` with one forwarder.
    let bound = Bound::start_settings(client(relay.addr), azbridge_settings("both", "8080"), Prewarm::off()).await;
    let mut tcp = bound.connect().await;
    tcp.write_all(b"both hyco").await.expect("write");
    let mut back = [0; 9];
    within("the echo", tcp.read_exact(&mut back)).await.expect("read");
    assert_eq!(&back, b"both hyco");
}

/// A UDP echo target; its address.
async fn udp_echo() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind the UDP target");
    let addr = socket.local_addr().expect("target addr");
    let task = tokio::spawn(async move {
        let mut buf = vec![0; 65_536];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let _ = socket.send_to(&buf[..n], from).await;
        }
    });
    (addr, task)
}

/// `datagram` as azbridge puts it on the stream: a 2-byte big-endian length, then it.
fn framed(datagram: &[u8]) -> Vec<u8> {
    [&u16::try_from(datagram.len()).expect("a datagram").to_be_bytes()[..], datagram].concat()
}

/// Reads the next length-prefixed datagram from `ws`, keeping what follows it in `rest`.
async fn next_datagram(ws: &mut Ws, rest: &mut Vec<u8>) -> Vec<u8> {
    within("a datagram back", async {
        loop {
            if let [hi, lo, ..] = rest[..] {
                let end = 2 + usize::from(u16::from_be_bytes([hi, lo]));
                if rest.len() >= end {
                    let datagram = rest[2..end].to_vec();
                    rest.drain(..end);
                    return datagram;
                }
            }
            match ws.next().await {
                Some(Ok(Message::Binary(b))) => rest.extend_from_slice(&b),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                other => panic!("expected datagram bytes, got {other:?}"),
            }
        }
    })
    .await
}

#[tokio::test]
async fn hyco_listen_carries_azbridge_datagrams_to_a_udp_target() {
    let relay = TestRelay::start(settings()).await;
    let (echo, _echo) = udp_echo().await;
    let mut ls = listen_settings("dgram", &[format!("dns=udp://{echo}")]);
    ls.azbridge = true;
    let _listening = Listening::start(client(relay.addr), ls).await;

    // A stream to the UDP port is still refused; datagram mode is answered 01 00 01.
    let (_, answer) = azbridge_sender(&relay, "dgram", &[1, 0, 0, 3, b'd', b'n', b's']).await;
    assert_eq!(answer.as_deref(), Some(&[0u8, 0, 1][..]));
    let (mut ws, answer) = azbridge_sender(&relay, "dgram", &[1, 0, 1, 3, b'd', b'n', b's']).await;
    assert_eq!(answer.as_deref(), Some(&[1u8, 0, 1][..]));

    // One datagram per message, several sizes up to near the most UDP takes.
    let mut rest = Vec::new();
    for size in [1, 100, 1400, 9_000, 60_000] {
        let datagram: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        ws.send(Message::binary(framed(&datagram))).await.expect("send");
        assert_eq!(next_datagram(&mut ws, &mut rest).await, datagram, "{size} bytes");
    }
    // One datagram split across three frames, its length split too.
    let split = framed(b"split across frames");
    for piece in [&split[..1], &split[1..6], &split[6..]] {
        ws.send(Message::binary(piece.to_vec())).await.expect("send a piece");
    }
    assert_eq!(next_datagram(&mut ws, &mut rest).await, b"split across frames");
    // Two datagrams and the start of a third in one frame, the third's end in the next.
    let third = framed(b"third");
    let frame = [framed(b"first"), framed(b"second!"), third[..3].to_vec()].concat();
    ws.send(Message::binary(frame)).await.expect("send two and a bit");
    ws.send(Message::binary(third[3..].to_vec())).await.expect("send the rest");
    for want in [&b"first"[..], b"second!", b"third"] {
        assert_eq!(next_datagram(&mut ws, &mut rest).await, want, "boundaries kept");
    }
    assert!(rest.is_empty(), "nothing more than the datagrams: {rest:?}");

    // The sender's Close ends the tunnel, answered.
    ws.close(None).await.expect("close");
    let end = within("the close", async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => {}
                _ => return None,
            }
        }
    })
    .await;
    assert_eq!(end, Some(1000));
}
