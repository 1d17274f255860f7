//! The WebSocket layer's pure parsers: upgrade request and response heads
//! (`http1::parse_request` / `parse_response`, then `ws::handshake::websocket_key`), frame
//! headers (`FrameHeader::parse` / `encode`), Close payloads and masking.
//!
//! Invariants: a parsed head's length is within the input and parsing is deterministic;
//! a parsed frame header re-encodes to a header that parses to the same value (to the
//! same bytes when the input used the minimal length form); a Close payload of at most
//! 125 bytes re-encodes to itself; masking twice is the identity, in any split.
#![no_main]

use hyco::ws::frame::{self, CloseFrame, FrameHeader, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN};
use hyco::http1;
use hyco::ws::handshake;
use libfuzzer_sys::fuzz_target;

fn check_heads(data: &[u8]) {
    match http1::parse_request(data) {
        Ok(Some((req, n))) => {
            assert!(n <= data.len());
            if let Ok(key) = handshake::websocket_key(&req) {
                let answer =
                    handshake::switching_protocols(key, http1::header(&req.headers, "Sec-WebSocket-Protocol"));
                let (resp, m) =
                    http1::parse_response(answer.as_bytes()).expect("our 101 parses").expect("complete");
                assert_eq!(m, answer.len());
                assert_eq!(resp.status, 101);
                assert_eq!(
                    http1::header(&resp.headers, "Sec-WebSocket-Accept"),
                    Some(handshake::accept_key(key).as_str())
                );
            }
            // The head alone parses to the same request.
            let (again, m) = http1::parse_request(&data[..n]).expect("prefix parses").expect("complete");
            assert_eq!((again, m), (req, n));
        }
        Ok(None) => {}
        Err(e) => {
            let _ = e.to_string();
        }
    }
    match http1::parse_response(data) {
        Ok(Some((resp, n))) => {
            assert!(n <= data.len());
            let _ = http1::header_count(&resp.headers, "Sec-WebSocket-Accept");
        }
        Ok(None) => {}
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

fn check_frame(data: &[u8]) {
    let Ok(Some((h, n))) = FrameHeader::parse(data) else { return };
    assert!(n <= MAX_HEADER_LEN && n <= data.len());
    let mut out = [0; MAX_HEADER_LEN];
    let m = h.encode(&mut out);
    assert_eq!(FrameHeader::parse(&out[..m]), Ok(Some((h, m))), "{:02x?}", &data[..n]);
    let minimal = match data[1] & 0x7F {
        126 => h.len >= 126,
        127 => h.len > u64::from(u16::MAX),
        _ => true,
    };
    if minimal {
        assert_eq!(&out[..m], &data[..n]);
    }
    for short in 0..m {
        assert_eq!(FrameHeader::parse(&out[..short]), Ok(None));
    }

    // The payload after the header: unmask, Close parse.
    let payload = &data[n..];
    let take = payload.len().min(usize::try_from(h.len).unwrap_or(usize::MAX));
    let mut body = payload[..take].to_vec();
    if let Some(mask) = h.mask {
        let split = usize::from(data[0]) % (body.len() + 1);
        let (a, b) = body.split_at_mut(split);
        frame::apply_mask(a, mask, 0);
        frame::apply_mask(b, mask, split as u64);
        let mut whole = payload[..take].to_vec();
        frame::apply_mask(&mut whole, mask, 0);
        assert_eq!(whole, body);
        frame::apply_mask(&mut whole, mask, 0);
        assert_eq!(whole, &payload[..take]);
    }
    if h.opcode == frame::OpCode::Close {
        check_close(&body);
    }
}

fn check_close(payload: &[u8]) {
    match CloseFrame::parse(payload) {
        Ok(None) => assert!(payload.is_empty()),
        Ok(Some(close)) => {
            assert!(frame::close_code_allowed(close.code));
            let bytes = close.to_payload();
            assert!(bytes.len() <= MAX_CONTROL_PAYLOAD);
            let again = CloseFrame::parse(&bytes).expect("our payload parses").expect("has a code");
            assert_eq!(again.code, close.code);
            if payload.len() <= MAX_CONTROL_PAYLOAD {
                assert_eq!(bytes, payload);
                assert_eq!(again, close);
            } else {
                assert!(close.reason.starts_with(&again.reason));
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check_heads(data);
    check_frame(data);
    check_close(data);
});
