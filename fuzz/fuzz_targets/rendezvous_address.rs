//! `hyco::client::check_rendezvous_address`: which accept and request addresses a
//! listener opens, for a relay endpoint (the first line, else one of two fixed ones: a
//! `hyco serve` and an Azure namespace) and an address (the rest).
//!
//! Invariants, checked against a reading of the address written here independently: an
//! address that passes has the relay's scheme, no space or control character anywhere,
//! a path that starts with `/`, and the relay's own host and port, or (Azure only) a host
//! of the namespace's service domain on 443; the answer is the same when asked twice.
#![no_main]

use hyco::client::check_rendezvous_address;
use hyco::connstr::{Endpoint, parse_endpoint};
use libfuzzer_sys::fuzz_target;

fn fixed(n: u8) -> Endpoint {
    match n % 2 {
        0 => Endpoint { secure: false, host: "127.0.0.1".into(), port: 9400 },
        _ => Endpoint { secure: true, host: "contoso.servicebus.windows.net".into(), port: 443 },
    }
}

/// (secure, host lowercased without IPv6 brackets, port, path and query) of a ws(s) URL.
fn read(address: &str) -> Option<(bool, String, u16, &str)> {
    let (secure, rest) = match address.split_once("://")? {
        ("ws", rest) => (false, rest),
        ("wss", rest) => (true, rest),
        _ => return None,
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']')?;
            (host, after.strip_prefix(':'))
        }
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => if secure { 443 } else { 80 },
    };
    Some((secure, host.to_ascii_lowercase(), port, path))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (relay, address) = match text.split_once('\n') {
        Some((first, rest)) => match parse_endpoint(first, first.starts_with("ws://")) {
            Ok(e) => (e, rest),
            Err(_) => (fixed(data[0]), rest),
        },
        None => (fixed(data.first().copied().unwrap_or(0)), text),
    };
    let verdict = check_rendezvous_address(&relay, address);
    assert_eq!(verdict, check_rendezvous_address(&relay, address), "deterministic");
    let Err(why) = &verdict else {
        let (secure, host, port, path) = read(address).expect("a trusted address is a ws(s) URL");
        assert_eq!(secure, relay.secure, "never another scheme: {address:?}");
        assert!(address.bytes().all(|b| b.is_ascii_graphic()), "nothing a request line cannot carry: {address:?}");
        assert!(path.is_empty() || path.starts_with('/') || path.starts_with('?'), "{address:?}");
        let own = host == relay.host.to_ascii_lowercase() && port == relay.port;
        let gateway = relay.azure_domain().is_some_and(|d| port == 443 && host.ends_with(&format!(".{d}")));
        assert!(own || gateway, "trusted {address:?} for {relay:?}");
        return;
    };
    // The reason never shows the rendezvous secret: an `sb-hc-id` of the secret's form
    // (16 or more letters, digits or `_`) that is not also part of the host.
    let (before, query) = address.split_once('?').unwrap_or((address, ""));
    if let Some(id) = query.split('&').find_map(|p| p.strip_prefix("sb-hc-id="))
        && id.len() >= 16
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !before.contains(id)
    {
        assert!(!why.to_string().contains(id), "{why}");
    }
});
