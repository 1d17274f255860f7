//! HTTP/1.1 in one place, for every part of hyco that speaks plain HTTP: the relay's
//! upgrade handshakes ([`crate::ws::handshake`] builds on [`head`]), HTTP mode towards
//! HTTP clients (docs/protocol.md 7), `hyco listen --http` towards the local server, and
//! the metrics endpoint. It knows nothing of WebSockets or Hybrid Connections.
//!
//! - [`head`]: request and response heads, header lookup, bounded reading, error answers.
//! - [`body`]: body framing, chunked and length-delimited bodies in bounded memory.
//! - here: which headers are hop-by-hop, and what may be written as a field.

pub mod body;
pub mod head;

pub use body::{
    BodyReader, Framing, FramingError, LAST_CHUNK, content_length, request_framing, response_framing, write_chunk,
};
pub use head::{
    HeadError, Headers, Request, Response, error_response, has_token, head, header, header_count, parse_request,
    parse_response, read_request, read_request_head, read_response_head, reason, reject, sanitize,
};

/// Headers that describe one connection, not the message (RFC 9110 7.6.1); `Proxy-*` too.
const HOP_BY_HOP: [&str; 7] =
    ["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"];

/// The lowercased tokens of every `Connection` header: more hop-by-hop header names.
pub fn connection_tokens(headers: &[(String, String)]) -> Vec<String> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("Connection"))
        .flat_map(|(_, v)| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// Whether `name` is hop-by-hop: a fixed one, any `Proxy-*`, or one `Connection` names.
pub fn is_hop_by_hop(name: &str, connection: &[String]) -> bool {
    let lower = name.to_ascii_lowercase();
    HOP_BY_HOP.contains(&lower.as_str()) || lower.starts_with("proxy-") || connection.contains(&lower)
}

/// Whether `name` is an HTTP field name (RFC 9110 5.1: a token).
pub fn is_token(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether `target` may be written as a request line's target: an absolute path with its
/// query, visible ASCII only (no space, CR, LF or other control character), so that what
/// a peer chose cannot end the line or add one.
pub fn is_request_target(target: &str) -> bool {
    target.starts_with('/') && target.bytes().all(|b| b.is_ascii_graphic())
}

/// Whether `value` may be written as a field value: no CR, LF, NUL or other control
/// character but tab (what a peer controls must not split or end a head).
pub fn is_field_value(value: &str) -> bool {
    !value.chars().any(|c| c.is_control() && c != '\t')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Headers {
        pairs.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn hop_by_hop_and_field_checks() {
        let conn = connection_tokens(&h(&[("Connection", "close, X-Private"), ("connection", "Keep-Alive")]));
        assert_eq!(conn, ["close", "x-private", "keep-alive"]);
        for name in [
            "Connection",
            "keep-alive",
            "Proxy-Authorization",
            "TE",
            "Trailer",
            "Transfer-Encoding",
            "Upgrade",
            "X-Private",
        ] {
            assert!(is_hop_by_hop(name, &conn), "{name}");
        }
        for name in ["Content-Length", "X-App", "Authorization", "Host"] {
            assert!(!is_hop_by_hop(name, &conn), "{name}");
        }
        assert!(is_token("X-App_1.~") && !is_token("Bad Name") && !is_token("") && !is_token("a:b"));
        assert!(is_field_value("a\tb c") && !is_field_value("a\r\nb") && !is_field_value("a\0"));
        assert!(is_request_target("/$hc/a?sb-hc-action=accept&sb-hc-id=1%202"));
        for bad in ["", "x/a", "/a b", "/a\r\nHost: evil", "/a\0", "/\u{e9}"] {
            assert!(!is_request_target(bad), "{bad:?}");
        }
    }
}
