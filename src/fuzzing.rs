//! Entry points for the fuzz targets in `fuzz/`, built only with `--cfg fuzzing` (which
//! cargo-fuzz sets): pieces that are private to their modules, strung together the way
//! the running code strings them, so that a target can check what crosses from one to
//! the next.

use std::collections::BTreeMap;

use crate::client::target::Targets;
use crate::http1;
use crate::protocol::{HttpRequest, RemoteEndpoint};

/// What HTTP mode makes of one request head, from the relay's reading of its path to the
/// head `hyco listen --http` writes to the app (docs/protocol.md 7).
#[derive(Debug)]
pub struct HttpModeTrace {
    /// The method and target the client sent.
    pub method: String,
    /// The path's leading segments that are names, decoded, as the relay reads them: the
    /// HC's name, the target's, and what a token's audience is compared with.
    pub relay_names: Vec<String>,
    /// Whether a segment that is no name follows them.
    pub relay_more: bool,
    /// The request target the listener is given (the client's, less `sb-hc-token`).
    pub forward: String,
    /// The target the listener picks and the path it sends, or why it rejects.
    pub listener: Result<(String, String), String>,
    /// The head written to the app, when the listener goes ahead.
    pub local_head: Option<String>,
}

/// Reads `head` as an HTTP-mode request for hybrid connection `hc` and follows it through
/// the relay's path reading and the listener's choice of target and head. `None` when the
/// head is no complete request, or the relay would refuse its target outright.
pub fn http_mode(head: &[u8], hc: &str, targets: &Targets) -> Option<HttpModeTrace> {
    let (req, _) = http1::parse_request(head).ok()??;
    let target = crate::relay::http_transfer::parse_target(&req.target).ok()?;
    let (relay_names, relay_more) = target.names();
    let mut request_headers = BTreeMap::new();
    for (name, value) in &req.headers {
        request_headers
            .entry(name.clone())
            .and_modify(|v: &mut String| {
                v.push_str(", ");
                v.push_str(value);
            })
            .or_insert_with(|| value.clone());
    }
    let message = HttpRequest {
        request_target: Some(target.forward.clone()),
        method: Some(req.method.clone()),
        request_headers,
        remote_endpoint: Some(RemoteEndpoint { address: "203.0.113.7".into(), port: 40000 }),
        ..HttpRequest::default()
    };
    let listener = crate::client::http::local_target(&target.forward, hc, targets, false);
    let local_head = listener
        .as_ref()
        .ok()
        .and_then(|(picked, path)| crate::client::http::local_head(&message, picked, path, Some(0), false).ok());
    Some(HttpModeTrace { method: req.method, relay_names, relay_more, forward: target.forward, listener, local_head })
}
