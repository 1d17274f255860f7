//! Who gets in: a new connection takes a slot against the relay's connection limit, and,
//! until its upgrade request has been read, one of the slots its source address may hold
//! in handshake (docs/protocol.md 8), so that one address cannot fill the relay with
//! half-sent handshakes. Counting only: the accept loop answers the rejection, and what a
//! connection becomes after its handshake (a control channel, a tunnel) is not limited
//! per address here.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::config::Limits;
use super::metrics::Reason;
use super::rejection::Rejection;

/// Connections in handshake, by source group ([`source_group`]); groups at 0 are removed.
type Counts = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// The connection limit and the per-address handshake counts.
pub(super) struct Admission {
    connections: Arc<Semaphore>,
    max_handshakes_per_ip: usize,
    exempt: Vec<IpAddr>,
    handshakes: Counts,
}

/// A source address's place among the connections in handshake; dropping it (once the
/// upgrade request is read, or the connection is done with) gives it back.
pub(super) struct Handshake(Option<(Counts, IpAddr)>);

impl Drop for Handshake {
    fn drop(&mut self) {
        if let Some((handshakes, group)) = self.0.take() {
            let mut counts = handshakes.lock().expect("handshake counts lock");
            if let Some(n) = counts.get_mut(&group) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(&group);
                }
            }
        }
    }
}

impl Admission {
    pub(super) fn new(limits: &Limits) -> Self {
        Self {
            connections: Arc::new(Semaphore::new(limits.max_connections)),
            max_handshakes_per_ip: limits.max_handshakes_per_ip,
            exempt: limits.handshake_limit_exempt.iter().map(|ip| ip.to_canonical()).collect(),
            handshakes: Arc::default(),
        }
    }

    /// The slots of the connection limit, for connections admitted elsewhere (a public
    /// port's visitors).
    pub(super) fn connections(&self) -> Arc<Semaphore> {
        self.connections.clone()
    }

    /// Admits a connection from `peer`: its slot against the connection limit and its
    /// place in handshake, or the rejection (503) when either is full.
    pub(super) fn admit(&self, peer: IpAddr) -> Result<(OwnedSemaphorePermit, Handshake), Rejection> {
        let handshake = self.enter_handshake(peer)?;
        let permit = self
            .connections
            .clone()
            .try_acquire_owned()
            .map_err(|_| Rejection::new(503, Reason::ConnectionLimit, "Relay at its connection limit"))?;
        Ok((permit, handshake))
    }

    fn enter_handshake(&self, peer: IpAddr) -> Result<Handshake, Rejection> {
        let peer = peer.to_canonical();
        if self.max_handshakes_per_ip == 0 || self.exempt.contains(&peer) {
            return Ok(Handshake(None));
        }
        let group = source_group(peer);
        let mut counts = self.handshakes.lock().expect("handshake counts lock");
        let n = counts.entry(group).or_insert(0);
        if *n >= self.max_handshakes_per_ip {
            let text = "Too many connections in handshake from this address";
            return Err(Rejection::new(503, Reason::AddressLimit, text));
        }
        *n += 1;
        Ok(Handshake(Some((self.handshakes.clone(), group))))
    }
}

/// The group an address is counted in: an IPv4 address alone, an IPv6 address with its
/// /64 (one subscriber's network, as providers hand them out).
fn source_group(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(v6.to_bits() & !u128::from(u64::MAX))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(per_ip: usize, connections: usize) -> Admission {
        let limits = Limits { max_handshakes_per_ip: per_ip, max_connections: connections, ..Limits::default() };
        Admission::new(&limits)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_address_holds_its_share_of_handshakes_and_gets_it_back() {
        let a = admission(2, 10);
        let held = [a.admit(ip("192.0.2.1")).unwrap(), a.admit(ip("192.0.2.1")).unwrap()];
        let third = a.admit(ip("192.0.2.1")).err().unwrap();
        assert_eq!((third.status(), third.reason()), (503, Reason::AddressLimit));
        assert!(a.admit(ip("192.0.2.2")).is_ok(), "another address");
        // IPv6 by /64; an IPv4-mapped address is its IPv4 address.
        let _v6 = [a.admit(ip("2001:db8::1")).unwrap(), a.admit(ip("2001:db8::ffff:2")).unwrap()];
        assert!(a.admit(ip("2001:db8:0:0:1::3")).is_err(), "same /64");
        assert!(a.admit(ip("2001:db8:0:1::1")).is_ok(), "another /64");
        assert!(a.admit(ip("::ffff:192.0.2.1")).is_err(), "mapped");
        // The handshake over, the connection keeps its slot but not its place in handshake.
        let [(permit, handshake), _] = held;
        drop(handshake);
        assert!(a.admit(ip("192.0.2.1")).is_ok());
        drop(permit);
        // Loopback is exempt by default.
        let _local: Vec<_> = (0..5).map(|_| a.admit(ip("127.0.0.1")).unwrap()).collect();
        assert!(a.admit(ip("::1")).is_ok());
        assert!(admission(0, 10).enter_handshake(ip("192.0.2.1")).is_ok_and(|h| h.0.is_none()), "0: off");
    }

    #[test]
    fn the_connection_limit_still_holds() {
        let a = admission(5, 1);
        let _one = a.admit(ip("192.0.2.1")).unwrap();
        let second = a.admit(ip("192.0.2.2")).err().unwrap();
        assert_eq!((second.status(), second.reason()), (503, Reason::ConnectionLimit));
        assert!(a.handshakes.lock().unwrap().get(&ip("192.0.2.2")).is_none(), "its place given back");
    }
}
