//! A client's first bytes through the relay's handshake path, in process and without a
//! socket: `http1::read_request` over a tokio duplex pipe (fed in fuzz-chosen
//! chunks, so the incremental head parser sees partial reads), then what
//! `relay::Relay::serve_connection` does with the request: `HcAddress::parse` on the
//! target, the tracking id, `websocket_key`, the token lookup and `relay::auth::check`,
//! and the error or 101 answer it would write, which must itself be a valid response.
//!
//! Input: byte 0 picks the chunk size, byte 1 the head size limit; the rest is what the
//! client sends.
#![no_main]

use std::sync::OnceLock;

use hyco::protocol::{self, Action, HcAddress};
use hyco::relay::auth::{self, Right, Rule};
use hyco::secret::Secret;
use hyco::http1::{self, HeadError};
use hyco::ws::handshake;
use libfuzzer_sys::fuzz_target;
use tokio::io::AsyncWriteExt;

const KEY: &str = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg=";
/// docs/protocol.md 3's test vectors expire at 1700000000; "now" is just before.
const NOW: u64 = 1_699_999_000;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().build().expect("runtime"))
}

fn rules() -> &'static [Rule] {
    static RULES: OnceLock<Vec<Rule>> = OnceLock::new();
    RULES.get_or_init(|| {
        vec![
            Rule { name: "RootManageSharedAccessKey".into(), key: Secret::new(KEY), rights: vec![Right::Manage] },
            Rule { name: "send".into(), key: Secret::new(KEY), rights: vec![Right::Send] },
        ]
    })
}

/// The answer the relay writes for a refusal must be one well-formed response head.
fn check_answer(status: u16, text: &str) {
    let answer =
        http1::error_response(status, &protocol::status_text(text, "00000000-0000-0000-0000-000000000000"));
    match http1::parse_response(answer.as_bytes()) {
        Ok(Some((resp, n))) => {
            assert_eq!(resp.status, status);
            assert!(n < answer.len(), "the body follows the head");
        }
        other => panic!("relay answer {answer:?} does not parse: {other:?}"),
    }
}

async fn serve(input: &[u8], chunk: usize, limit: usize) {
    let (mut client, mut server) = tokio::io::duplex(chunk.max(64));
    let writer = async move {
        for piece in input.chunks(chunk) {
            if client.write_all(piece).await.is_err() {
                return;
            }
        }
        let _ = client.shutdown().await;
    };
    let reader = async move { http1::read_request(&mut server, limit).await };
    let ((), result) = tokio::join!(writer, reader);

    let (req, initial) = match result {
        Ok(parts) => parts,
        Err(HeadError::TooLarge) => return check_answer(431, "Request header fields too large"),
        Err(HeadError::Malformed(_)) => return check_answer(400, "Malformed request"),
        Err(HeadError::Closed) => return,
        Err(e) => panic!("unexpected handshake error from a pipe: {e}"),
    };
    // The same head as parsing everything at once, and the bytes after it kept in order.
    let (whole, n) = http1::parse_request(input).expect("head parses in one piece").expect("complete");
    assert_eq!(whole, req);
    assert!(input[n..].starts_with(&initial), "bytes after the head are kept in order");

    let addr = match HcAddress::parse(&req.target) {
        Ok(a) => a,
        Err(protocol::AddressError::NotHc) => return check_answer(404, "Not a hybrid connection address"),
        Err(e) => return check_answer(400, &e.to_string()),
    };
    let tracking_id = match (&addr.id, addr.action) {
        (Some(id), Action::Accept) => id.rsplit_once('_').map_or(id.as_str(), |(t, _)| t).to_owned(),
        (Some(id), _) => id.clone(),
        (None, _) => protocol::new_guid(),
    };
    let _ = protocol::status_text("x", &tracking_id);
    let key = match handshake::websocket_key(&req) {
        Ok(key) => key,
        Err(why) => return check_answer(400, why),
    };
    let need = match addr.action {
        Action::Listen | Action::Accept => Right::Listen,
        Action::Connect => Right::Send,
        Action::Request => return check_answer(400, "HTTP mode is not served by this relay"),
    };
    let token = auth::token_of(http1::header(&req.headers, protocol::TOKEN_HEADER), addr.token.as_deref());
    match token {
        None => check_answer(401, "Missing token"),
        Some(token) => {
            match auth::check(token, &addr.segments.join("/"), need, &[], rules(), NOW, protocol::CLOCK_SKEW.as_secs())
            {
                Ok(grant) => assert!(grant.expiry.saturating_add(protocol::CLOCK_SKEW.as_secs()) >= NOW),
                Err(r) => check_answer(r.status(), r.text()),
            }
        }
    }
    let answer = handshake::switching_protocols(key, http1::header(&req.headers, "Sec-WebSocket-Protocol"));
    let (resp, _) = http1::parse_response(answer.as_bytes()).expect("101 parses").expect("complete");
    assert_eq!(resp.status, 101);
}

fuzz_target!(|data: &[u8]| {
    let [c, l, input @ ..] = data else { return };
    let chunk = usize::from(*c) + 1;
    // Mostly the relay's real limit; sometimes a small one, to reach TooLarge.
    let limit = if *l < 0xF0 { protocol::MAX_HANDSHAKE_HEADERS } else { usize::from(*l - 0xEF) * 16 };
    runtime().block_on(serve(input, chunk, limit));
});
