//! `hyco::protocol::HcAddress::parse` on arbitrary request targets, and
//! `hyco::encoding::{decode_component, parse_query}`.
//!
//! Invariants: decode(encode(decode(x))) == decode(x); a parsed address rebuilt with
//! `client_url` parses back to the same segments, action, id and app query.
#![no_main]

use hyco::encoding::{decode_component, encode_component, parse_query};
use hyco::protocol::{self, Action, HcAddress};
use libfuzzer_sys::fuzz_target;

const BASE: &str = "wss://contoso.servicebus.windows.net:443";

fn check_decode(text: &str) {
    for plus_as_space in [false, true] {
        if let Ok(decoded) = decode_component(text, plus_as_space) {
            let encoded = encode_component(&decoded);
            assert!(encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.~%".contains(&b)));
            assert_eq!(decode_component(&encoded, plus_as_space).as_deref(), Ok(decoded.as_str()));
            assert_eq!(decode_component(&encoded, !plus_as_space).as_deref(), Ok(decoded.as_str()));
        }
    }
    if let Ok(pairs) = parse_query(text) {
        assert!(pairs.len() <= text.split('&').count());
        let rebuilt: Vec<String> =
            pairs.iter().map(|(n, v)| format!("{}={}", encode_component(n), encode_component(v))).collect();
        assert_eq!(parse_query(&rebuilt.join("&")).as_ref(), Ok(&pairs));
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(target) = std::str::from_utf8(data) else { return };
    check_decode(target);

    let addr = match HcAddress::parse(target) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    assert!(!addr.segments.is_empty() && addr.segments.len() <= protocol::MAX_PATH_SEGMENTS);
    for seg in &addr.segments {
        assert!(!seg.is_empty() && seg != "." && seg != "..", "{target:?}: {seg:?}");
        assert!(!seg.contains(['/', '\\', '?', '#']), "{target:?}: {seg:?}");
    }
    let _ = protocol::token_audience("relay.example", &addr.segments.join("/"));

    // Rebuild the address as a client would and parse it again. Split the segments into
    // name and suffix at every point, as the relay may.
    let app_query = addr.app_query.join("&");
    for split in 1..=addr.segments.len().min(3) {
        let hc = addr.segments[..split].join("/");
        let suffix = addr.segments[split..].join("/");
        for action in [addr.action, Action::Listen, Action::Accept] {
            let url = protocol::client_url(BASE, &hc, Some(&suffix), &app_query, action, addr.id.as_deref());
            let rebuilt = url.strip_prefix(BASE).expect("client_url keeps its base");
            let again = match HcAddress::parse(rebuilt) {
                Ok(a) => a,
                Err(e) => panic!("{target:?} parsed but client_url gave {rebuilt:?}, which does not: {e}"),
            };
            assert_eq!(again.segments, addr.segments, "{target:?} -> {rebuilt:?}");
            assert_eq!(again.action, action, "{target:?} -> {rebuilt:?}");
            assert_eq!(again.id, addr.id, "{target:?} -> {rebuilt:?}");
            assert_eq!(again.app_query, addr.app_query, "{target:?} -> {rebuilt:?}");
            assert_eq!(again.token, None);
        }
    }
});
