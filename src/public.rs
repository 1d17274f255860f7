//! Public ports' wire values (docs/protocol.md 10.2): what a listener asks for in
//! `hyco-public` query parameters, and what the relay grants in its `Hyco-Public` header.
//! Pure: no sockets. The relay's side is `relay::public`, the listener's `client::listen`.

use std::fmt;

/// The query parameter of a `listen` handshake that asks for one public port.
pub const PARAM_PUBLIC: &str = "hyco-public";
/// The 101 header listing the ports granted, in the order asked.
pub const HEADER_PUBLIC: &str = "Hyco-Public";
/// The 101 header naming the host visitors use.
pub const HEADER_PUBLIC_HOST: &str = "Hyco-Public-Host";
/// The `connectHeaders` entry of an accept for a visitor of a public port: `tcp` or `udp`.
pub const HEADER_VISITOR: &str = "Hyco-Public";
/// The most ports one `listen` handshake may ask for.
pub const MAX_ASKS: usize = 16;

/// A public port's protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "tcp" => Some(Self::Tcp),
            "udp" => Some(Self::Udp),
            _ => None,
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which port a listener asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortAsk {
    /// Any free port of the relay's range (`0`).
    Any,
    /// Exactly this one (`N`).
    Exactly(u16),
    /// This one if the HC may have it, else any (`~N`): a listener coming back.
    Prefer(u16),
}

/// One `hyco-public` value: `PROTO:PORT:TARGET`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ask {
    pub proto: Proto,
    pub port: PortAsk,
    /// The target name (a path segment), or empty for the unnamed target.
    pub target: String,
}

impl Ask {
    /// Parses a decoded `hyco-public` value; the error says what is wrong.
    pub fn parse(value: &str) -> Result<Self, String> {
        let bad = || format!("{PARAM_PUBLIC} value {value:?} is not PROTO:PORT:TARGET");
        let mut parts = value.splitn(3, ':');
        let (Some(proto), Some(port), Some(target)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        let proto =
            Proto::parse(proto).ok_or_else(|| format!("{PARAM_PUBLIC}: unknown protocol {proto:?} (tcp or udp)"))?;
        let number = |digits: &str| {
            (!digits.is_empty() && digits.len() <= 5 && digits.bytes().all(|b| b.is_ascii_digit()))
                .then(|| digits.parse::<u16>().ok())
                .flatten()
                .ok_or_else(|| format!("{PARAM_PUBLIC}: port {port:?} is not 0, N or ~N (N from 1 to 65535)"))
        };
        let port = match port.strip_prefix('~') {
            Some(n) => PortAsk::Prefer(number(n)?),
            None => match number(port)? {
                0 => PortAsk::Any,
                n => PortAsk::Exactly(n),
            },
        };
        if matches!(port, PortAsk::Prefer(0)) {
            return Err(format!("{PARAM_PUBLIC}: ~0 names no port"));
        }
        if target.contains(['/', '?', '#', ':', ' ']) || target.bytes().any(|b| !(0x21..=0x7e).contains(&b)) {
            return Err(format!("{PARAM_PUBLIC}: target {target:?} is not a target name"));
        }
        Ok(Self { proto, port, target: target.to_owned() })
    }
}

impl fmt::Display for Ask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            PortAsk::Any => write!(f, "{}:0:{}", self.proto, self.target),
            PortAsk::Exactly(n) => write!(f, "{}:{n}:{}", self.proto, self.target),
            PortAsk::Prefer(n) => write!(f, "{}:~{n}:{}", self.proto, self.target),
        }
    }
}

/// A granted port: an element of `Hyco-Public`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub proto: Proto,
    pub port: u16,
    pub target: String,
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.proto, self.port, self.target)
    }
}

/// Writes the `Hyco-Public` header value for `grants`.
pub fn grants_header(grants: &[Grant]) -> String {
    grants.iter().map(Grant::to_string).collect::<Vec<_>>().join(", ")
}

/// Reads a `Hyco-Public` header value; `None` if any element is malformed.
pub fn parse_grants(value: &str) -> Option<Vec<Grant>> {
    value
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(|g| {
            let mut parts = g.splitn(3, ':');
            let proto = Proto::parse(parts.next()?)?;
            let port = parts.next()?.parse::<u16>().ok().filter(|p| *p != 0)?;
            Some(Grant { proto, port, target: parts.next()?.to_owned() })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asks_parse_and_print() {
        let ask = |s: &str| Ask::parse(s);
        assert_eq!(ask("tcp:0:"), Ok(Ask { proto: Proto::Tcp, port: PortAsk::Any, target: String::new() }));
        assert_eq!(ask("udp:5353:dns").unwrap().port, PortAsk::Exactly(5353));
        assert_eq!(ask("tcp:~43210:web").unwrap().port, PortAsk::Prefer(43210));
        for v in ["tcp:0:", "udp:5353:dns", "tcp:~43210:web"] {
            assert_eq!(ask(v).unwrap().to_string(), v);
        }
        for bad in ["tcp", "tcp:0", "sctp:0:", "tcp:65536:", "tcp:-1:", "tcp::", "tcp:~0:", "tcp:0:a/b", "tcp:0:a b"] {
            assert!(ask(bad).is_err(), "{bad}");
        }
        assert!(ask("tcp:x:").unwrap_err().contains("not 0, N or ~N"));
    }

    #[test]
    fn grants_round_trip() {
        let grants = vec![
            Grant { proto: Proto::Tcp, port: 43210, target: "web".into() },
            Grant { proto: Proto::Udp, port: 43211, target: String::new() },
        ];
        let header = grants_header(&grants);
        assert_eq!(header, "tcp:43210:web, udp:43211:");
        assert_eq!(parse_grants(&header), Some(grants));
        assert_eq!(parse_grants("tcp:0:"), None);
        assert_eq!(parse_grants("tcp:1"), None);
        assert_eq!(crate::protocol::authority("::1", 9), "[::1]:9");
        assert_eq!(crate::protocol::authority("[::1]", 9), "[::1]:9");
        assert_eq!(crate::protocol::authority("relay.example.net", 9), "relay.example.net:9");
    }
}
