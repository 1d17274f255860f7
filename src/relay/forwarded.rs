//! Who an HTTP-mode request came from, as the app behind a listener learns it
//! (docs/protocol.md 7): the relay owns `Forwarded`, `X-Forwarded-*` and `X-Real-IP`. It
//! drops a client's own unless the client is a proxy it was told to trust
//! (`trusted_proxies`), then sets `X-Forwarded-For`, `-Proto` and `-Host` itself. Pure: no
//! sockets, no registry.

use std::net::IpAddr;

use crate::http1::is_field_value;

/// Whether `name` is a header by which a proxy says who its client was.
pub(super) fn is_forwarding(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower == "forwarded" || lower == "x-real-ip" || lower.starts_with("x-forwarded-")
}

/// Sets the forwarding headers on `headers` (the request's, repeats joined, the client's
/// forwarding headers already dropped unless `trusted`): `X-Forwarded-For` ends with the
/// client's address `peer`; `-Proto` and `-Host` say how the relay was reached, unless a
/// trusted proxy said so already.
pub(super) fn set_forwarding(headers: &mut Vec<(String, String)>, peer: IpAddr, tls: bool, host: Option<&str>) {
    let find =
        |headers: &[(String, String)], name: &str| headers.iter().position(|(n, _)| n.eq_ignore_ascii_case(name));
    let peer = peer.to_canonical().to_string();
    match find(headers, "X-Forwarded-For") {
        Some(i) => headers[i].1 = format!("{}, {peer}", headers[i].1),
        None => headers.push(("X-Forwarded-For".to_owned(), peer)),
    }
    if find(headers, "X-Forwarded-Proto").is_none() {
        headers.push(("X-Forwarded-Proto".to_owned(), if tls { "https" } else { "http" }.to_owned()));
    }
    if let Some(host) = host.map(str::trim).filter(|h| !h.is_empty() && is_field_value(h))
        && find(headers, "X-Forwarded-Host").is_none()
    {
        headers.push(("X-Forwarded-Host".to_owned(), host.to_owned()));
    }
}

/// How a trusted proxy says its client reached it: the scheme (`http`/`https`, or
/// `ws`/`wss`) and host, from `Forwarded` (its first element's `proto` and `host`) or else
/// `X-Forwarded-Proto` and `X-Forwarded-Host` (their first values). Only for a peer in
/// `trusted_proxies`: anyone else's say nothing.
pub(super) fn forwarded_origin(headers: &[(String, String)]) -> (Option<String>, Option<String>) {
    let first = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.split(',').next())
            .map(|v| v.trim().trim_matches('"').to_owned())
            .filter(|v| !v.is_empty())
    };
    let mut proto = None;
    let mut host = None;
    if let Some(element) = first("Forwarded") {
        for pair in element.split(';') {
            match pair.split_once('=') {
                Some((k, v)) if k.trim().eq_ignore_ascii_case("proto") => {
                    proto = Some(v.trim().trim_matches('"').to_owned())
                }
                Some((k, v)) if k.trim().eq_ignore_ascii_case("host") => {
                    host = Some(v.trim().trim_matches('"').to_owned())
                }
                _ => {}
            }
        }
    }
    let proto = proto.or_else(|| first("X-Forwarded-Proto")).map(|p| p.to_ascii_lowercase());
    let host = host.or_else(|| first("X-Forwarded-Host"));
    (proto, host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarding_headers_end_with_the_peer() {
        let h = |pairs: &[(&str, &str)]| pairs.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect();
        let mut headers: Vec<(String, String)> = h(&[("X-App", "1")]);
        set_forwarding(&mut headers, "198.51.100.7".parse().unwrap(), false, Some("relay.example"));
        let want: Vec<(String, String)> = h(&[
            ("X-App", "1"),
            ("X-Forwarded-For", "198.51.100.7"),
            ("X-Forwarded-Proto", "http"),
            ("X-Forwarded-Host", "relay.example"),
        ]);
        assert_eq!(headers, want);
        // From a trusted proxy: its values stay, the peer is appended to the chain.
        let mut headers = h(&[("x-forwarded-for", "192.0.2.1"), ("X-Forwarded-Proto", "https")]);
        set_forwarding(&mut headers, "::ffff:10.0.0.1".parse().unwrap(), false, None);
        assert_eq!(headers, h(&[("x-forwarded-for", "192.0.2.1, 10.0.0.1"), ("X-Forwarded-Proto", "https")]));
        assert!(is_forwarding("X-Forwarded-Host") && is_forwarding("forwarded") && is_forwarding("X-Real-IP"));
        assert!(!is_forwarding("X-Forwardedness") && !is_forwarding("Via"));
    }

    #[test]
    fn a_proxy_says_how_it_was_reached() {
        let h = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect()
        };
        let some = |s: &str| Some(s.to_owned());
        let forwarded = h(&[
            ("Forwarded", "for=1.2.3.4;proto=https;host=\"relay.example\", proto=http"),
            ("X-Forwarded-Proto", "http"),
        ]);
        assert_eq!(forwarded_origin(&forwarded), (some("https"), some("relay.example")));
        let x = h(&[("X-Forwarded-Proto", "HTTPS, http"), ("X-Forwarded-Host", "r.example:8443")]);
        assert_eq!(forwarded_origin(&x), (some("https"), some("r.example:8443")));
        assert_eq!(forwarded_origin(&h(&[("Host", "x")])), (None, None));
    }
}
