//! IP networks in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`) and whether an address
//! is in one: the one place for the relay's `allow_from` and `trusted_proxies`, the
//! clients' `NO_PROXY` addresses and a listener's `--allow` rules. Pure: no sockets, no
//! names (a host name is never a network here).

use std::net::IpAddr;

use anyhow::{Context, bail};

/// A network in CIDR notation (`203.0.113.0/24`, `2001:db8::/32`), or one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Parses `addr` or `addr/prefix`; the address's bits past the prefix are ignored.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr.trim().parse().with_context(|| format!("{text:?} is no IP address or network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.trim().parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => bail!("{text:?}: the prefix length must be 0 to {max}"),
            },
        };
        Ok(Self { addr, prefix })
    }

    /// Whether `ip` is in this network (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let keep = |bits: u32| self.prefix.min(bits as u8);
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(keep(32))).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(keep(128))).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_parse_and_match() {
        let net = IpNet::parse("203.0.113.0/24").unwrap();
        assert!(net.contains("203.0.113.9".parse().unwrap()));
        assert!(net.contains("::ffff:203.0.113.9".parse().unwrap()), "IPv4-mapped");
        assert!(!net.contains("203.0.114.9".parse().unwrap()));
        assert!(!net.contains("2001:db8::1".parse().unwrap()));
        assert!(IpNet::parse("0.0.0.0/0").unwrap().contains("198.51.100.1".parse().unwrap()));
        let one = IpNet::parse("::1").unwrap();
        assert!(one.contains("::1".parse().unwrap()) && !one.contains("::2".parse().unwrap()));
        assert!(IpNet::parse("2001:db8::/32").unwrap().contains("2001:db8:ffff::1".parse().unwrap()));
        for bad in ["", "10.0.0.0/33", "::/129", "10.0.0.0/-1", "host/8", "10.0.0.0/"] {
            assert!(IpNet::parse(bad).is_err(), "{bad}");
        }
    }
}
