//! HTTP mode from the client's request head to the head the listener writes to the app
//! (`hyco::fuzzing::http_mode`): the relay's reading of the path (the HC's and the
//! target's names, what a token is checked against), then the listener's choice of target
//! and path, then its head.
//!
//! Invariants: the listener reaches a named target exactly when the relay's reading names
//! that target right after the HC (so a token scoped to `hc/api` cannot reach another
//! target, the F1 finding of issue 12); the head written to the app parses as one request
//! with the listener's path as its target, one `Host`, the client's method, and nothing
//! that a request line or header cannot carry.
#![no_main]

use hyco::client::target::Targets;
use hyco::http1;
use libfuzzer_sys::fuzz_target;

const HC: &str = "web2";
const API: &str = "127.0.0.1:18080";
const ADMIN: &str = "127.0.0.1:18082";
const DEFAULT: &str = "127.0.0.1:18081";

fuzz_target!(|data: &[u8]| {
    let targets = Targets::parse(&[format!("api={API}"), format!("admin={ADMIN}"), DEFAULT.to_owned()])
        .expect("targets");
    let Some(trace) = hyco::fuzzing::http_mode(data, HC, &targets) else { return };
    // What the relay would let through: the HC's name first, and (docs/protocol.md 7) a
    // segment that is no name only after the target's.
    if trace.relay_names.first().map(String::as_str) != Some(HC) {
        return;
    }
    if trace.relay_more && trace.relay_names.len() < 2 {
        return;
    }
    let relay_target = trace.relay_names.get(1).map(String::as_str);
    match &trace.listener {
        Ok((picked, path)) => {
            for (name, addr) in [("api", API), ("admin", ADMIN)] {
                assert_eq!(
                    picked == addr,
                    relay_target == Some(name),
                    "the relay read target {relay_target:?}, the listener picked {picked} for {:?}",
                    trace.forward
                );
            }
            let Some(head) = &trace.local_head else { return };
            let (req, n) = http1::parse_request(head.as_bytes())
                .unwrap_or_else(|e| panic!("the app's head does not parse ({e}): {head:?}"))
                .unwrap_or_else(|| panic!("the app's head is incomplete: {head:?}"));
            assert_eq!(n, head.len(), "one request, nothing after it: {head:?}");
            assert_eq!(&req.target, path);
            assert_eq!(req.method, trace.method);
            assert_eq!(http1::header_count(&req.headers, "Host"), 1, "{head:?}");
            assert_eq!(http1::header(&req.headers, "Host"), Some(picked.as_str()));
            assert!(req.headers.iter().all(|(n, v)| http1::is_token(n) && http1::is_field_value(v)), "{head:?}");
        }
        Err(_) => {
            // The listener rejects only a target segment that is no name, or an unknown one
            // when it has no default: never one the relay read as a name it serves.
            assert!(!matches!(relay_target, Some("api" | "admin")), "rejected {:?}", trace.forward);
        }
    }
});
