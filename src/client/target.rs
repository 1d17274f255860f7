//! A listener's targets: which local service a sender reaches (`--to`, by name or one
//! for everything), and opening the connection to it (TCP, or a Unix socket written
//! `unix:PATH`). Used by both listener paths,
//! tunnels ([`super::listen`]) and HTTP mode ([`super::http`]); speaks no protocol.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::bail;

use crate::local::{LocalStream, UNIX_SCHEME};
use crate::protocol::HcAddress;
use crate::public::{self, Ask, PortAsk, Proto};

/// Time to open a connection to a target, unless told otherwise.
pub(super) const TARGET_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where accepted connections go: by name (the sender's path suffix), or one unnamed
/// target for everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Targets {
    pub named: BTreeMap<String, String>,
    pub default: Option<String>,
}

/// A TCP or UDP target (`addr`, from the `--to` value `spec`), as kept: a port alone is
/// on 127.0.0.1, a UDP target keeps its scheme (only a public UDP port reaches it).
fn tcp_or_udp(spec: &str, addr: &str) -> anyhow::Result<String> {
    let (scheme, addr) = match addr.strip_prefix(UDP_SCHEME) {
        Some(rest) => (UDP_SCHEME, rest),
        None => ("", addr),
    };
    // A port alone means this machine, as `--bind PORT` does.
    let addr = if !addr.is_empty() && addr.bytes().all(|b| b.is_ascii_digit()) {
        format!("127.0.0.1:{addr}")
    } else {
        addr.to_owned()
    };
    let Some((host, port)) = addr.rsplit_once(':').filter(|(h, _)| !h.is_empty()) else {
        bail!("target {spec:?} is not PORT, host:port, unix:PATH or name=host:port");
    };
    match port.parse::<u64>() {
        Ok(p) if (1..=u64::from(u16::MAX)).contains(&p) => {}
        Ok(p) => bail!("target {spec:?}: port {p} is out of range (1 to 65535)"),
        Err(_) => bail!("target {spec:?} is not PORT, host:port, unix:PATH or name=host:port ({host:?} has no port)"),
    }
    Ok(format!("{scheme}{addr}"))
}

impl Targets {
    /// Parses `--to` values: `host:port` or `name=host:port`; a port alone (`8080`, `web=8080`)
    /// is on 127.0.0.1; `unix:PATH` (or `name=unix:PATH`) a Unix socket, kept as written.
    pub fn parse<S: AsRef<str>>(specs: &[S]) -> anyhow::Result<Self> {
        let mut t = Self::default();
        for spec in specs {
            let spec = spec.as_ref();
            let (name, addr) = match spec.split_once('=') {
                // A Unix socket's path may hold '=': only a name before `unix:` is one.
                Some((n, a)) if !is_unix(spec) => (Some(n), a),
                _ => (None, spec),
            };
            let addr = match unix_path(addr) {
                Some(path) => {
                    crate::local::check_path(path).map_err(|e| anyhow::anyhow!("target {spec:?}: {e}"))?;
                    addr.to_owned()
                }
                None => tcp_or_udp(spec, addr)?,
            };
            let addr = addr.as_str();
            match name {
                Some(n) if n.is_empty() || n.contains(['/', '?', '#', ' ']) => {
                    bail!("target name {n:?} is not a path segment")
                }
                Some(n) if t.named.insert(n.to_owned(), addr.to_owned()).is_some() => bail!("target {n:?} given twice"),
                Some(_) => {}
                None if t.default.replace(addr.to_owned()).is_some() => bail!("only one unnamed target may be given"),
                None => {}
            }
        }
        if t.named.is_empty() && t.default.is_none() {
            bail!("give at least one target with --to");
        }
        Ok(t)
    }

    /// The public ports `--public` asks for (docs/protocol.md 10.2), one per spec: `""`
    /// every target on any port, `PORT` the unnamed (or only) target, `NAME` or
    /// `NAME=PORT` a named one. A `udp://` target gets a UDP port, any other a TCP port.
    pub fn public_asks<S: AsRef<str>>(&self, specs: &[S]) -> anyhow::Result<Vec<Ask>> {
        let ask = |name: &str, target: &str, port: PortAsk| Ask {
            proto: if is_udp(target) { Proto::Udp } else { Proto::Tcp },
            port,
            target: name.to_owned(),
        };
        let mut asks: Vec<Ask> = Vec::new();
        for spec in specs {
            let spec = spec.as_ref().trim();
            if spec.is_empty() {
                asks.extend(self.default.iter().map(|t| ask("", t, PortAsk::Any)));
                asks.extend(self.named.iter().map(|(n, t)| ask(n, t, PortAsk::Any)));
                continue;
            }
            let (name, port) = match spec.split_once('=') {
                Some((n, p)) => (Some(n), Some(p)),
                None if spec.bytes().all(|b| b.is_ascii_digit()) => (None, Some(spec)),
                None => (Some(spec), None),
            };
            let port = match port {
                None => PortAsk::Any,
                Some(p) => match p.parse::<u16>() {
                    Ok(0) => PortAsk::Any,
                    Ok(n) => PortAsk::Exactly(n),
                    Err(_) => bail!("--public {spec:?}: {p:?} is not a port (1 to 65535)"),
                },
            };
            let (name, target) = match name {
                Some(n) => match self.named.get(n) {
                    Some(t) => (n, t.as_str()),
                    None => bail!("--public {spec:?}: no target named {n:?} (give it with --to {n}=HOST:PORT)"),
                },
                None => match (&self.default, self.named.len()) {
                    (Some(t), _) => ("", t.as_str()),
                    (None, 1) => self.named.iter().next().map(|(n, t)| (n.as_str(), t.as_str())).expect("one"),
                    (None, _) => bail!("--public {spec:?}: name the target (--public NAME=PORT)"),
                },
            };
            asks.push(ask(name, target, port));
        }
        asks.dedup_by(|a, b| a.proto == b.proto && a.target == b.target && a.port == b.port);
        for (i, a) in asks.iter().enumerate() {
            if asks[..i].iter().any(|b| b.proto == a.proto && b.target == a.target) {
                bail!("--public names target {:?} twice", a.target);
            }
        }
        if asks.len() > public::MAX_ASKS {
            bail!("--public: at most {} ports", public::MAX_ASKS);
        }
        Ok(asks)
    }

    /// The target for a sender's path suffix, whose first segment names the target. A name
    /// this listener lacks goes to the unnamed target, if there is one, except a name that
    /// differs from one of this listener's only in case: a relay that compares names
    /// without case (Azure's entity names are case-insensitive) may have let a token for
    /// `web` through for `WEB`, and that must not reach another target.
    pub fn pick(&self, suffix: &[String]) -> Result<&str, String> {
        let known = || self.named.keys().map(String::as_str).collect::<Vec<_>>().join(", ");
        match suffix.first() {
            Some(name) => match self.named.get(name) {
                Some(target) => Ok(target),
                None if self.named.keys().any(|n| n.eq_ignore_ascii_case(name)) => {
                    Err(format!("No target named '{name}' (names are case-sensitive; this listener has: {})", known()))
                }
                None => self
                    .default
                    .as_deref()
                    .ok_or_else(|| format!("No target named '{name}' (this listener has: {})", known())),
            },
            None => self
                .default
                .as_deref()
                .ok_or_else(|| format!("Name a target in the path (this listener has: {})", known())),
        }
    }
}

/// The path suffix of a rendezvous address (after the HC's `hc_segments` segments),
/// segment by segment as [`HcAddress::parse`] reads it; an address it cannot read names
/// no target, and never the unnamed one.
pub(super) fn address_suffix(address: &str, hc_segments: usize) -> Result<Vec<String>, String> {
    super::split_url(address)
        .and_then(|(_, _, _, target)| HcAddress::parse(&target).ok())
        .map(|a| a.segments.into_iter().skip(hc_segments).collect())
        .ok_or_else(|| "The path does not name a target".to_owned())
}

/// The scheme of a UDP target (`udp://host:port`).
pub const UDP_SCHEME: &str = "udp://";

/// Whether `target` is a UDP target.
pub fn is_udp(target: &str) -> bool {
    target.starts_with(UDP_SCHEME)
}

/// Whether `target` is a Unix socket (`unix:PATH`).
pub fn is_unix(target: &str) -> bool {
    unix_path(target).is_some()
}

/// The path of a Unix-socket target.
fn unix_path(target: &str) -> Option<&std::path::Path> {
    target.strip_prefix(UNIX_SCHEME).map(std::path::Path::new)
}

/// Opens a listener's connection to its `target` (TCP, or a Unix socket); a failure is
/// the HTTP status and text to answer the sender with (502 refused or failed, 504 timed
/// out).
pub(super) async fn connect_target(target: &str, timeout: Duration) -> Result<LocalStream, (u16, String)> {
    use std::io::ErrorKind;
    if is_udp(target) {
        return Err((
            502,
            format!(
                "The target {target} is UDP: only UDP senders reach it (hyco connect --bind udp:PORT, a public UDP port)"
            ),
        ));
    }
    let connecting = async {
        match unix_path(target) {
            #[cfg(unix)]
            Some(path) => crate::local::connect_unix(path).await.map(LocalStream::Unix),
            #[cfg(not(unix))]
            Some(_) => Err(std::io::Error::new(ErrorKind::Unsupported, "Unix sockets are not supported here")),
            None => crate::net::connect(target).await.map(LocalStream::Tcp),
        }
    };
    match tokio::time::timeout(timeout, connecting).await {
        Ok(Ok(local)) => Ok(local),
        Ok(Err(e)) if e.kind() == ErrorKind::ConnectionRefused => Err((502, format!("Connection to {target} refused"))),
        Ok(Err(e)) if e.kind() == ErrorKind::NotFound && is_unix(target) => {
            Err((502, format!("Connection to {target} failed: no such socket")))
        }
        Ok(Err(e)) => Err((502, format!("Connection to {target} failed: {e}"))),
        Err(_) => Err((504, format!("Connection to {target} timed out"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_pick() {
        let t = Targets::parse(&["ssh=127.0.0.1:22", "web=127.0.0.1:8080"]).unwrap();
        assert_eq!(t.pick(&["ssh".into()]), Ok("127.0.0.1:22"));
        assert!(t.pick(&["db".into()]).unwrap_err().contains("No target named 'db'"));
        assert!(t.pick(&[]).is_err());
        let t = Targets::parse(&["127.0.0.1:9"]).unwrap();
        assert_eq!(t.pick(&["anything".into()]), Ok("127.0.0.1:9"));
        assert_eq!(t.pick(&[]), Ok("127.0.0.1:9"));
        let t = Targets::parse(&["api=127.0.0.1:1", "127.0.0.1:2"]).unwrap();
        assert_eq!(t.pick(&["other".into()]), Ok("127.0.0.1:2"));
        assert!(t.pick(&["API".into()]).unwrap_err().contains("case-sensitive"), "never the unnamed one");
        let suffix = |a: &str| address_suffix(a, 1);
        assert_eq!(suffix("ws://h:1/$hc/web/api/x?sb-hc-action=accept"), Ok(vec!["api".into(), "x".into()]));
        assert!(suffix("ws://h:1/$hc/web/api%2Fadmin?sb-hc-action=accept").is_err());
        assert!(suffix("ws://h:1/$hc/web/%zz").is_err());
        for bad in [&["x"][..], &["a=1:2", "a=1:3"], &["1:2", "1:3"], &[], &["=1:2"], &["h:99999"], &["0"]] {
            assert!(Targets::parse(bad).is_err(), "{bad:?}");
        }
        let t = Targets::parse(&["8080", "ssh=22"]).unwrap();
        assert_eq!(t.default.as_deref(), Some("127.0.0.1:8080"));
        assert_eq!(t.named["ssh"], "127.0.0.1:22");
        let err = Targets::parse(&["99999"]).unwrap_err().to_string();
        assert!(err.contains("port 99999 is out of range"), "{err}");
    }

    #[test]
    fn public_asks_follow_the_targets() {
        let t = Targets::parse(&["8080", "dns=udp://127.0.0.1:53"]).unwrap();
        assert_eq!(t.named["dns"], "udp://127.0.0.1:53");
        let asks = |specs: &[&str]| t.public_asks(specs).map(|a| a.iter().map(Ask::to_string).collect::<Vec<_>>());
        assert_eq!(asks(&[""]).unwrap(), ["tcp:0:", "udp:0:dns"]);
        assert_eq!(asks(&["8000", "dns=5353"]).unwrap(), ["tcp:8000:", "udp:5353:dns"]);
        assert_eq!(asks(&["dns"]).unwrap(), ["udp:0:dns"]);
        assert!(asks(&["web"]).unwrap_err().to_string().contains("no target named"));
        assert!(asks(&["8000", "9000"]).unwrap_err().to_string().contains("twice"));
        assert!(asks(&["dns=x"]).is_err());
        let only = Targets::parse(&["web=80"]).unwrap();
        assert_eq!(only.public_asks(&["21000"]).unwrap()[0].to_string(), "tcp:21000:web");
        let two = Targets::parse(&["a=1", "b=2"]).unwrap();
        assert!(two.public_asks(&["21000"]).unwrap_err().to_string().contains("name the target"));
        assert!(Targets::parse(&["udp://x"]).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn unix_targets_keep_their_path_and_get_tcp_ports() {
        let t = Targets::parse(&["unix:/run/app=1.sock", "db=unix:/run/postgresql/.s.PGSQL.5432"]).unwrap();
        assert_eq!(t.default.as_deref(), Some("unix:/run/app=1.sock"), "an '=' in a path names nothing");
        assert_eq!(t.named["db"], "unix:/run/postgresql/.s.PGSQL.5432");
        assert!(is_unix(&t.named["db"]) && !is_unix("127.0.0.1:5432") && !is_udp(&t.named["db"]));
        assert_eq!(t.pick(&["db".into()]), Ok("unix:/run/postgresql/.s.PGSQL.5432"));
        let asks = t.public_asks(&[""]).unwrap();
        assert_eq!(asks.iter().map(Ask::to_string).collect::<Vec<_>>(), ["tcp:0:", "tcp:0:db"]);
        assert!(Targets::parse(&["unix:"]).is_err(), "a path is needed");
        let max = crate::local::MAX_SOCKET_PATH;
        let fits = format!("unix:/{}", "x".repeat(max - 1));
        assert!(Targets::parse(&[fits.as_str()]).is_ok());
        let long = format!("unix:/{}", "x".repeat(max));
        let err = format!("{:#}", Targets::parse(&[long.as_str()]).unwrap_err());
        assert!(err.contains(&format!("at most {max}")), "{err}");
    }
}
