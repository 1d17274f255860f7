//! Dynamic destinations at a listener (docs/protocol.md 10.5): the `Hyco-Destination`
//! connect header a sender (`connect --socks`) names its destination with, the
//! listener's allowlist (`--allow`) and reaching an allowed destination over TCP.
//!
//! A rule is `HOST:PORTS` where HOST is an IP address or CIDR network (IPv6 in brackets), a
//! name, or `*.domain` (sub-domains only), and PORTS is `N`, `N-M` or `*`. A name rule
//! matches the requested name and lets it reach whatever it resolves to; an address
//! rule matches addresses, and a requested name is resolved here and only its allowed
//! addresses are tried (so a name cannot lead past a network rule). Nothing is allowed
//! without a rule. Which accepts come here, and answering them, is [`super::listen`]'s.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::net::TcpStream;

use crate::ipnet::IpNet;
use crate::protocol;

/// The connect header that names a sender's destination: `HOST:PORT`, IPv6 in brackets.
pub(super) const HEADER_DESTINATION: &str = "Hyco-Destination";
/// The longest host name a destination may have (RFC 1035's 253 characters, a SOCKS5
/// request's name field holds 255).
const MAX_NAME_LEN: usize = 253;
/// The most `--allow` rules one listener takes.
const MAX_RULES: usize = 256;

/// The status and text a listener rejects a dynamic destination with.
pub(super) type Rejected = (u16, String);

/// The status for a destination that is malformed, or sent with a named target.
pub(super) const STATUS_BAD_DESTINATION: u16 = 400;
/// The status for a destination no rule allows.
pub(super) const STATUS_NOT_ALLOWED: u16 = 403;
/// The status for a name that does not resolve.
pub(super) const STATUS_NO_SUCH_NAME: u16 = 404;
/// The status for a destination that refused the connection.
pub(super) const STATUS_REFUSED: u16 = 502;
/// The status for a destination that could not be reached otherwise (unreachable).
pub(super) const STATUS_UNREACHABLE: u16 = 503;
/// The status for a destination that did not answer in time.
pub(super) const STATUS_TIMED_OUT: u16 = 504;

/// The text of a rejection for a dynamic destination on a listener with no `--allow`.
pub(super) const NONE_ALLOWED: &str = "dynamic destinations are not allowed on this listener (--allow)";

/// The destination an accept's `connectHeaders` ask for, if any: `Err` (a 400) when
/// it is malformed, when the sender also named a target (`named`: its path has a suffix
/// after the HC) or when the accept is a public port's visitor's.
pub(super) fn requested(headers: &BTreeMap<String, String>, named: bool) -> Option<Result<Destination, Rejected>> {
    let find = |name: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
    let value = find(HEADER_DESTINATION)?;
    let bad = |text: String| Err((STATUS_BAD_DESTINATION, text));
    Some(if named {
        bad(format!("{HEADER_DESTINATION} goes to the hybrid connection alone, not to a named target"))
    } else if find(crate::public::HEADER_VISITOR).is_some() {
        bad(format!("{HEADER_DESTINATION} does not come with a public port"))
    } else {
        Destination::parse(value).or_else(bad)
    })
}

/// A destination's host: an address, or a name (lower case, no trailing dot).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Host {
    Ip(IpAddr),
    Name(String),
}

/// Where a sender asks to go: `HOST:PORT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Destination {
    pub(super) host: Host,
    pub(super) port: u16,
}

impl Destination {
    /// Parses a `Hyco-Destination` value: `name:port`, `a.b.c.d:port` or `[v6]:port`,
    /// port 1 to 65535. A name is letters, digits, `-`, `_` and dots, at most
    /// [`MAX_NAME_LEN`] long, no empty label.
    pub(super) fn parse(text: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("Bad destination {:?}: {why}", truncated(text));
        let (host, port) = text.trim().rsplit_once(':').ok_or_else(|| bad("not HOST:PORT"))?;
        let port = match port.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(bad("the port must be 1 to 65535")),
        };
        let host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Some(v6) => match v6.parse::<std::net::Ipv6Addr>() {
                Ok(ip) => Host::Ip(IpAddr::V6(ip)),
                Err(_) => return Err(bad("not an IPv6 address in brackets")),
            },
            None => match host.parse::<std::net::Ipv4Addr>() {
                Ok(ip) => Host::Ip(IpAddr::V4(ip)),
                Err(_) => Host::Name(name(host).ok_or_else(|| bad("not an IP address or host name"))?),
            },
        };
        Ok(Self { host, port })
    }

    /// `host:port` as the header carries it.
    pub(super) fn authority(&self) -> String {
        match &self.host {
            Host::Ip(ip) => protocol::authority(&ip.to_string(), self.port),
            Host::Name(n) => protocol::authority(n, self.port),
        }
    }
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.authority())
    }
}

/// The start of `text`, for an error about it (a header may be long).
fn truncated(text: &str) -> &str {
    let end = text.char_indices().nth(64).map_or(text.len(), |(i, _)| i);
    &text[..end]
}

/// A host name, lower case without a trailing dot, if `text` is one.
fn name(text: &str) -> Option<String> {
    let text = text.strip_suffix('.').unwrap_or(text);
    let ok = !text.is_empty()
        && text.len() <= MAX_NAME_LEN
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    ok.then(|| text.to_ascii_lowercase())
}

/// The hosts a rule matches.
#[derive(Clone, Debug, PartialEq, Eq)]
enum HostRule {
    Net(IpNet),
    /// This name exactly.
    Name(String),
    /// Names below this domain (`*.internal`: `a.internal`, not `internal`); held with
    /// its leading dot.
    Below(String),
}

/// One `--allow` rule.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rule {
    host: HostRule,
    ports: (u16, u16),
}

/// A listener's `--allow` rules; empty (the default): no dynamic destination at all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allowlist {
    rules: Vec<Rule>,
}

impl Allowlist {
    /// Parses `--allow` values (see the module's documentation).
    pub fn parse<S: AsRef<str>>(specs: &[S]) -> anyhow::Result<Self> {
        if specs.len() > MAX_RULES {
            bail!("--allow: at most {MAX_RULES} rules");
        }
        let rules = specs.iter().map(|s| Rule::parse(s.as_ref())).collect::<anyhow::Result<_>>()?;
        Ok(Self { rules })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// What `to` may reach, decided before any name is resolved.
    fn decide(&self, to: &Destination) -> Decision {
        let rules = || self.rules.iter().filter(|r| (r.ports.0..=r.ports.1).contains(&to.port));
        match &to.host {
            Host::Ip(ip) if rules().any(|r| matches!(r.host, HostRule::Net(n) if n.contains(*ip))) => Decision::Any,
            Host::Name(n) if rules().any(|r| r.host.matches_name(n)) => Decision::Any,
            Host::Name(_) if rules().any(|r| matches!(r.host, HostRule::Net(_))) => Decision::Networks,
            _ => Decision::None,
        }
    }

    /// Whether an address rule for `port` holds `ip`.
    fn allows_ip(&self, ip: IpAddr, port: u16) -> bool {
        self.rules
            .iter()
            .any(|r| (r.ports.0..=r.ports.1).contains(&port) && matches!(r.host, HostRule::Net(n) if n.contains(ip)))
    }

    /// Resolves `to` (a name) and connects to its allowed addresses, all within `timeout`;
    /// the connection and the address it reached, or the status and text to reject the
    /// sender with. An unspecified address (`0.0.0.0`, `::`, which reach this host) is
    /// never tried.
    pub(super) async fn reach(&self, to: &Destination, timeout: Duration) -> Result<(TcpStream, SocketAddr), Rejected> {
        if self.is_empty() {
            return Err((STATUS_NOT_ALLOWED, NONE_ALLOWED.to_owned()));
        }
        let decision = self.decide(to);
        if decision == Decision::None {
            return Err((STATUS_NOT_ALLOWED, format!("Destination {to} is not allowed on this listener")));
        }
        let attempt = async {
            let addrs: Vec<SocketAddr> = match &to.host {
                Host::Ip(ip) => vec![SocketAddr::new(*ip, to.port)],
                Host::Name(n) => match tokio::net::lookup_host((n.as_str(), to.port)).await {
                    Ok(found) => found.collect(),
                    Err(_) => return Err((STATUS_NO_SUCH_NAME, format!("Name {n} does not resolve"))),
                },
            };
            let kept: Vec<SocketAddr> = addrs
                .iter()
                .filter(|a| !a.ip().to_canonical().is_unspecified())
                .filter(|a| decision == Decision::Any || self.allows_ip(a.ip(), to.port))
                .copied()
                .collect();
            if addrs.is_empty() {
                return Err((STATUS_NO_SUCH_NAME, format!("Name {to} resolves to no address")));
            }
            if kept.is_empty() {
                // The addresses stay in this log: the sender learns only that none is allowed.
                tracing::info!("{to} resolves to {addrs:?}, none of them allowed");
                return Err((STATUS_NOT_ALLOWED, format!("Destination {to} resolves to no allowed address")));
            }
            match crate::net::connect_addrs(kept).await {
                Ok(tcp) => {
                    let addr =
                        tcp.peer_addr().map_err(|e| (STATUS_UNREACHABLE, format!("Connection to {to} failed: {e}")))?;
                    Ok((tcp, addr))
                }
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    Err((STATUS_REFUSED, format!("Connection to {to} refused")))
                }
                Err(e) => Err((STATUS_UNREACHABLE, format!("Connection to {to} failed: {e}"))),
            }
        };
        tokio::time::timeout(timeout, attempt)
            .await
            .unwrap_or_else(|_| Err((STATUS_TIMED_OUT, format!("Connection to {to} timed out"))))
    }
}

/// What a destination may reach, by the rules for its port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decision {
    /// Nothing.
    None,
    /// Whatever its name resolves to (a name rule), or its address (an address rule).
    Any,
    /// Only the addresses its name resolves to that an address rule holds.
    Networks,
}

impl HostRule {
    fn matches_name(&self, n: &str) -> bool {
        match self {
            Self::Net(_) => false,
            Self::Name(rule) => rule == n,
            Self::Below(domain) => n.len() > domain.len() && n.ends_with(domain.as_str()),
        }
    }
}

impl Rule {
    fn parse(spec: &str) -> anyhow::Result<Self> {
        let usage = || {
            format!(
                "--allow {spec:?} is not HOST:PORTS (10.0.0.0/8:22, 192.0.2.7:443, [fd00::/8]:*, \
                 db.internal:5432, *.internal:8000-8099)"
            )
        };
        let (host, ports) = spec.trim().rsplit_once(':').with_context(usage)?;
        let ports = match ports.split_once('-') {
            _ if ports == "*" => (1, u16::MAX),
            Some((a, b)) => (port(a).with_context(usage)?, port(b).with_context(usage)?),
            None => {
                let p = port(ports).with_context(usage)?;
                (p, p)
            }
        };
        if ports.0 > ports.1 {
            bail!("--allow {spec:?}: the port range runs backwards");
        }
        let host = if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            let net = IpNet::parse(inner).with_context(usage)?;
            if !inner.contains(':') {
                bail!("{}: only IPv6 goes in brackets", usage());
            }
            HostRule::Net(net)
        } else if host.contains(':') {
            bail!("{}: put an IPv6 address or network in brackets", usage());
        } else if let Some(net) =
            host.starts_with(|c: char| c.is_ascii_digit()).then(|| IpNet::parse(host).ok()).flatten()
        {
            HostRule::Net(net)
        } else if let Some(domain) = host.strip_prefix("*.") {
            HostRule::Below(format!(".{}", name(domain).with_context(usage)?))
        } else {
            HostRule::Name(name(host).with_context(usage)?)
        };
        Ok(Self { host, ports })
    }
}

/// A port, 1 to 65535.
fn port(text: &str) -> Option<u16> {
    text.parse::<u16>().ok().filter(|p| *p > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(text: &str) -> Destination {
        Destination::parse(text).unwrap()
    }

    fn decide(rules: &[&str], to: &str) -> Decision {
        Allowlist::parse(rules).unwrap().decide(&dest(to))
    }

    #[test]
    fn destinations_parse() {
        assert_eq!(dest("Example.COM.:443"), Destination { host: Host::Name("example.com".into()), port: 443 });
        assert_eq!(dest("10.1.2.3:22").host, Host::Ip("10.1.2.3".parse().unwrap()));
        assert_eq!(dest("[2001:db8::1]:22").authority(), "[2001:db8::1]:22");
        assert_eq!(dest("a_b-c.internal:1").to_string(), "a_b-c.internal:1");
        let long = format!("{}:1", vec!["a".repeat(63); 4].join("."));
        for bad in [
            "host",
            "host:0",
            "host:65536",
            ":80",
            "2001:db8::1:22",
            "[10.0.0.1]:22",
            "a..b:1",
            "a b:1",
            "a/b:1",
            "%zz:1",
            "[fe80::1%eth0]:22",
            &long,
        ] {
            assert!(Destination::parse(bad).is_err(), "{bad}");
        }
        let err = Destination::parse(&"x".repeat(5000)).unwrap_err();
        assert!(err.len() < 200, "the text is cut short: {err}");
    }

    #[test]
    fn rules_parse() {
        for good in
            ["10.0.0.0/8:22", "192.0.2.7:443", "[fd00::/8]:*", "[::1]:1-1024", "db.internal:5432", "*.internal:*"]
        {
            Allowlist::parse(&[good]).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in [
            "10.0.0.0/8",
            "10.0.0.0/33:22",
            "::1:22",
            "[10.0.0.1]:22",
            "host:0",
            "host:2-1",
            "host:x",
            "host:1-",
            "*:22",
            "*.:22",
            "a.*.b:22",
            ":22",
        ] {
            assert!(Allowlist::parse(&[bad]).is_err(), "{bad}");
        }
        let too_many = vec!["h:1"; MAX_RULES + 1];
        assert!(Allowlist::parse(&too_many).unwrap_err().to_string().contains("at most"));
        assert!(Allowlist::parse(&too_many[1..]).is_ok());
    }

    #[test]
    fn names_match_names_and_addresses_match_networks() {
        let rules = ["127.0.0.0/8:8000-8099", "db.internal:5432", "*.svc.internal:*", "[fd00::/8]:22"];
        assert_eq!(decide(&rules, "127.0.0.1:8000"), Decision::Any);
        assert_eq!(decide(&rules, "127.9.9.9:8099"), Decision::Any);
        assert_eq!(decide(&rules, "127.0.0.1:8100"), Decision::None, "port outside the range");
        assert_eq!(decide(&rules, "10.0.0.1:8000"), Decision::None);
        assert_eq!(decide(&rules, "[fd12::1]:22"), Decision::Any);
        assert_eq!(decide(&rules, "[::ffff:127.0.0.1]:8000"), Decision::Any, "IPv4-mapped");
        assert_eq!(decide(&rules, "DB.internal:5432"), Decision::Any, "names are case-blind");
        assert_eq!(decide(&rules, "db.internal:5433"), Decision::None);
        assert_eq!(decide(&rules, "a.svc.internal:1"), Decision::Any);
        assert_eq!(decide(&rules, "a.b.svc.internal:1"), Decision::Any);
        assert_eq!(decide(&rules, "svc.internal:1"), Decision::None, "*.x is below x only");
        assert_eq!(decide(&rules, "evilsvc.internal:1"), Decision::None);
        // A name no name rule matches may still resolve into a network, checked address by address.
        assert_eq!(decide(&rules, "localhost:8000"), Decision::Networks);
        assert_eq!(decide(&rules, "localhost:9000"), Decision::None, "no rule for the port: not even resolved");
        // An address is never matched by a name rule, nor a name by its spelling as an address.
        assert_eq!(decide(&["localhost:1"], "127.0.0.1:1"), Decision::None);
        assert_eq!(decide(&[], "127.0.0.1:1"), Decision::None);
        let list = Allowlist::parse(&rules).unwrap();
        assert!(list.allows_ip("127.0.0.1".parse().unwrap(), 8000));
        assert!(!list.allows_ip("127.0.0.1".parse().unwrap(), 22));
        assert!(!list.allows_ip("10.0.0.1".parse().unwrap(), 8000));
    }

    #[test]
    fn a_destination_goes_to_the_hc_alone() {
        let headers = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        assert_eq!(requested(&headers(&[("X", "1")]), false), None);
        let asked = requested(&headers(&[("hyco-destination", "h:1")]), false);
        assert_eq!(asked, Some(Ok(dest("h:1"))));
        let named = requested(&headers(&[("Hyco-Destination", "h:1")]), true).unwrap().unwrap_err();
        assert_eq!(named.0, 400, "{named:?}");
        let public = requested(&headers(&[("Hyco-Destination", "h:1"), ("Hyco-Public", "tcp")]), false);
        assert_eq!(public.unwrap().unwrap_err().0, 400);
        assert_eq!(requested(&headers(&[("Hyco-Destination", "h")]), false).unwrap().unwrap_err().0, 400);
    }

    #[tokio::test]
    async fn reach_refuses_what_is_not_allowed_before_resolving() {
        let t = Duration::from_secs(5);
        let none = Allowlist::default();
        assert_eq!(none.reach(&dest("127.0.0.1:1"), t).await.unwrap_err(), (403, NONE_ALLOWED.to_owned()));
        let list = Allowlist::parse(&["127.0.0.0/8:1-65535", "0.0.0.0/0:7"]).unwrap();
        let (status, text) = list.reach(&dest("0.0.0.0:7"), t).await.unwrap_err();
        assert_eq!(status, STATUS_NOT_ALLOWED, "{text}");
        let (status, text) = list.reach(&dest("no-such-name.invalid:7"), t).await.unwrap_err();
        assert_eq!(status, STATUS_NO_SUCH_NAME, "{text}");
        let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = server.local_addr().unwrap().port();
        let (_, reached) = list.reach(&dest(&format!("localhost:{port}")), t).await.unwrap();
        assert_eq!(reached, server.local_addr().unwrap());
        drop(server);
        let (status, _) = list.reach(&dest(&format!("127.0.0.1:{port}")), t).await.unwrap_err();
        assert_eq!(status, STATUS_REFUSED);
    }
}
