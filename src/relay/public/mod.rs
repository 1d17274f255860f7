//! Public ports (docs/protocol.md 10.2): ports on the relay's host that anyone reaches with
//! a plain TCP or UDP client. A listener asks for them on its `listen` handshake and holds a
//! [`Lease`] per port for as long as its control channel lives; the operator may declare
//! ports in the configuration too. Each open port has a task that serves its visitors
//! ([`tcp`], [`udp`]), meeting a listener of the HC as a sender would.
//!
//! [`Ports`] is the one owner of which ports are open, whose they are, and for how long
//! (the grace period after the last holder); it never touches a visitor's socket.

mod tcp;
mod udp;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Relay;
use super::config::{DeclaredPort, IpNet, PublicSettings};
use super::metrics::{PortCounters, Reason};
use super::rejection::Rejection;
use crate::public::{self, Ask, Grant, PortAsk, Proto};

/// The most ports of the range tried when any free one will do: beyond that the range
/// counts as full (a port the table thinks free may be taken by another program).
const MAX_BIND_ATTEMPTS: usize = 256;

/// A port asked for: whose it is, by HC, protocol and target name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    hc: String,
    proto: Proto,
    target: String,
}

/// A port a listener asked for.
struct Entry {
    port: u16,
    /// Control channels holding it.
    holders: usize,
    /// How many times it has lost its last holder: a grace timer checks that this has not
    /// changed since it was set.
    emptied: u64,
    /// Closes the port's socket and ends its task.
    stop: CancellationToken,
}

/// Who has a port number.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// A listener asked for it.
    Asked,
    /// The operator declared it.
    Declared,
}

#[derive(Default)]
struct Table {
    asked: HashMap<Key, Entry>,
    numbers: HashMap<(Proto, u16), Owner>,
}

/// What serving one open port needs to know.
pub(super) struct PortInfo {
    hc: String,
    target: String,
    proto: Proto,
    /// The socket address it is bound to.
    addr: SocketAddr,
    /// Sources allowed to connect; empty: anyone.
    allow_from: Vec<IpNet>,
    counters: Arc<PortCounters>,
}

impl PortInfo {
    fn allows(&self, ip: IpAddr) -> bool {
        self.allow_from.is_empty() || self.allow_from.iter().any(|n| n.contains(ip))
    }
}

/// The relay's public ports.
pub(super) struct Ports {
    settings: PublicSettings,
    /// The address ports asked for are bound on.
    bind_ip: IpAddr,
    table: Mutex<Table>,
}

/// A bound socket, not yet served.
enum Bound {
    Tcp(std::net::TcpListener),
    Udp(std::net::UdpSocket),
}

impl Bound {
    fn bind(proto: Proto, addr: SocketAddr) -> std::io::Result<Self> {
        Ok(match proto {
            Proto::Tcp => Self::Tcp(std::net::TcpListener::bind(addr)?),
            Proto::Udp => Self::Udp(std::net::UdpSocket::bind(addr)?),
        })
    }
}

impl Ports {
    /// The relay's ports; those asked for are bound on `settings.bind`, else `relay_ip`.
    pub(super) fn new(settings: PublicSettings, relay_ip: IpAddr) -> Self {
        let bind_ip = settings.bind.unwrap_or(relay_ip);
        Self { settings, bind_ip, table: Mutex::default() }
    }

    pub(super) fn settings(&self) -> &PublicSettings {
        &self.settings
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().expect("public ports lock")
    }

    /// Whether the rule `rule` may ask for ports.
    fn may_ask(&self, rule: &str) -> bool {
        self.settings.rules.as_ref().is_none_or(|names| names.iter().any(|n| n == rule))
    }

    /// Whether the operator's policy lets a listener have port `n`.
    fn policy(&self, n: u16) -> Result<(), Rejection> {
        let range = &self.settings.range;
        if !range.contains(&n) {
            let text = format!("Public port {n} is outside this relay's range {}-{}", range.start(), range.end());
            return Err(Rejection::new(403, Reason::Forbidden, text));
        }
        if n < 1024 && !self.settings.allow_privileged {
            let text = format!("Public port {n} is below 1024, which this relay does not allow");
            return Err(Rejection::new(403, Reason::Forbidden, text));
        }
        Ok(())
    }

    /// Binds a port for `ask` that nobody holds, or says why not.
    fn bind_new(&self, table: &Table, ask: &Ask, taken: &[(Proto, u16)]) -> Result<(u16, Bound), Rejection> {
        let free = |n: u16| !table.numbers.contains_key(&(ask.proto, n)) && !taken.contains(&(ask.proto, n));
        let try_bind = |n: u16| Bound::bind(ask.proto, SocketAddr::new(self.bind_ip, n));
        let exact = match ask.port {
            PortAsk::Exactly(n) => Some(n),
            _ => None,
        };
        if let Some(n) = exact {
            self.policy(n)?;
            if let Some(owner) = table.numbers.get(&(ask.proto, n)) {
                let whose = match owner {
                    Owner::Asked => "belongs to another hybrid connection",
                    Owner::Declared => "is declared in the relay's configuration",
                };
                let text = format!("Public {} port {n} {whose}", ask.proto);
                return Err(Rejection::new(409, Reason::PortConflict, text));
            }
            return try_bind(n).map(|b| (n, b)).map_err(|e| {
                let text = format!("Public {} port {n} is in use on the relay's host ({e})", ask.proto);
                Rejection::new(409, Reason::PortConflict, text)
            });
        }
        if let PortAsk::Prefer(n) = ask.port
            && self.policy(n).is_ok()
            && free(n)
            && let Ok(bound) = try_bind(n)
        {
            return Ok((n, bound));
        }
        let (first, last) = (*self.settings.range.start(), *self.settings.range.end());
        let first = if self.settings.allow_privileged { first } else { first.max(1024) };
        let span = u32::from(last.saturating_sub(first)) + 1;
        let offset = rand::random::<u32>() % span.max(1);
        let mut attempts = 0;
        for i in 0..span {
            let n = u16::try_from(u32::from(first) + (offset + i) % span).expect("within the range");
            if n > last || !free(n) {
                continue;
            }
            if let Ok(bound) = try_bind(n) {
                return Ok((n, bound));
            }
            attempts += 1;
            if attempts >= MAX_BIND_ATTEMPTS {
                break;
            }
        }
        let text = format!("No public {} port of {first}-{last} is free on this relay", ask.proto);
        Err(Rejection::new(409, Reason::PortConflict, text))
    }
}

/// A control channel's hold on one public port; dropped, it lets the port go once no
/// channel holds it and the grace period has passed.
pub(super) struct Lease {
    relay: Arc<Relay>,
    key: Key,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.relay.release_port(&self.key);
    }
}

/// The operator's public ports, bound (docs/protocol.md 10.2).
pub struct DeclaredPorts(Vec<(String, DeclaredPort, Bound)>);

/// Binds every port the configuration declares; an error names the one that cannot be
/// bound (the relay does not start then).
pub fn bind_declared(settings: &super::RelaySettings) -> anyhow::Result<DeclaredPorts> {
    let mut bound = Vec::new();
    for hc in &settings.hcs {
        for d in &hc.ports {
            let socket = Bound::bind(d.proto, d.addr).map_err(|e| {
                anyhow::anyhow!(
                    "cannot open public {} port {} of hybrid connection {:?}: {e}",
                    d.proto,
                    d.addr,
                    hc.name
                )
            })?;
            bound.push((hc.name.clone(), d.clone(), socket));
        }
    }
    Ok(DeclaredPorts(bound))
}

/// The `hyco-public` asks among a `listen` handshake's query parameters (still encoded).
pub(super) fn asks(app_query: &[String]) -> Result<Vec<Ask>, Rejection> {
    let bad = |text: String| Rejection::new(400, Reason::BadRequest, text);
    let mut asks: Vec<Ask> = Vec::new();
    for raw in app_query {
        let Some(value) = raw.strip_prefix(public::PARAM_PUBLIC).and_then(|v| v.strip_prefix('=')) else { continue };
        let value = crate::encoding::decode_component(value, true)
            .map_err(|_| bad("A hyco-public value is not UTF-8".into()))?;
        let ask = Ask::parse(&value).map_err(bad)?;
        if asks.iter().any(|a| a.proto == ask.proto && a.target == ask.target) {
            return Err(bad(format!("Two {} ports asked for target {:?}", ask.proto, ask.target)));
        }
        asks.push(ask);
        if asks.len() > public::MAX_ASKS {
            return Err(bad(format!("At most {} public ports may be asked for at once", public::MAX_ASKS)));
        }
    }
    Ok(asks)
}

impl Relay {
    /// Grants every port of `asks` to `hc` for a listener whose token `rule` signed, or
    /// none; each held by a [`Lease`] until the control channel ends.
    pub(super) fn lease_ports(
        self: &Arc<Self>,
        hc: &str,
        rule: &str,
        asks: &[Ask],
    ) -> Result<Vec<(Grant, Lease)>, Rejection> {
        let ports = &self.ports;
        if !ports.may_ask(rule) {
            let text = if ports.settings.rules.as_ref().is_some_and(Vec::is_empty) {
                "This relay has no public ports (its operator enables them with [public_ports])".to_owned()
            } else {
                format!("The rule '{rule}' may not open public ports on this relay")
            };
            return Err(Rejection::new(403, Reason::Forbidden, text));
        }
        let mut table = ports.table();
        // First decide every ask without changing anything, so that a refusal leaves no trace.
        let mut decided = Vec::with_capacity(asks.len());
        let mut taken = Vec::new();
        let mut held = table.asked.keys().filter(|k| k.hc == hc).count();
        for ask in asks {
            let key = Key { hc: hc.to_owned(), proto: ask.proto, target: ask.target.clone() };
            if let Some(entry) = table.asked.get(&key) {
                if let PortAsk::Exactly(n) = ask.port
                    && n != entry.port
                {
                    let text = format!(
                        "This hybrid connection has public {} port {} for target {:?} already",
                        ask.proto, entry.port, ask.target
                    );
                    return Err(Rejection::new(409, Reason::PortConflict, text));
                }
                decided.push((key, None));
                continue;
            }
            if held >= ports.settings.max_per_hc {
                let text = format!("A hybrid connection may have at most {} public ports", ports.settings.max_per_hc);
                return Err(Rejection::new(409, Reason::PortConflict, text));
            }
            let (n, bound) = ports.bind_new(&table, ask, &taken)?;
            taken.push((ask.proto, n));
            held += 1;
            decided.push((key, Some((n, bound))));
        }
        let mut granted = Vec::with_capacity(decided.len());
        for (key, new) in decided {
            let port = match new {
                None => {
                    let entry = table.asked.get_mut(&key).expect("decided above");
                    entry.holders += 1;
                    entry.port
                }
                Some((n, bound)) => {
                    let stop = self.shutdown.child_token();
                    let info = PortInfo {
                        hc: key.hc.clone(),
                        target: key.target.clone(),
                        proto: key.proto,
                        addr: SocketAddr::new(ports.bind_ip, n),
                        allow_from: ports.settings.allow_from.clone(),
                        counters: self.metrics.public_port(key.proto, n, &key.hc),
                    };
                    if let Err(e) = self.serve_port(info, bound, stop.clone()) {
                        warn!("public {} port {n}: {e}", key.proto);
                        let text = format!("Public {} port {n} could not be served ({e})", key.proto);
                        self.metrics.forget_public_port(key.proto, n);
                        return Err(Rejection::new(500, Reason::Internal, text));
                    }
                    info!(hc = %key.hc, "public {} port {n} opened for target {:?}", key.proto, key.target);
                    table.numbers.insert((key.proto, n), Owner::Asked);
                    table.asked.insert(key.clone(), Entry { port: n, holders: 1, emptied: 0, stop });
                    n
                }
            };
            let grant = Grant { proto: key.proto, port, target: key.target.clone() };
            granted.push((grant, Lease { relay: self.clone(), key }));
        }
        Ok(granted)
    }

    /// Serves the operator's ports, bound already ([`bind_declared`]).
    pub(super) fn open_declared(self: &Arc<Self>, declared: DeclaredPorts) -> anyhow::Result<()> {
        for (hc, d, bound) in declared.0 {
            let info = PortInfo {
                hc: hc.clone(),
                target: d.target.clone(),
                proto: d.proto,
                addr: d.addr,
                allow_from: d.allow_from.clone(),
                counters: self.metrics.public_port(d.proto, d.addr.port(), &hc),
            };
            self.serve_port(info, bound, self.shutdown.child_token())?;
            info!(hc, "public {} port {} declared for target {:?}", d.proto, d.addr, d.target);
            self.ports.table().numbers.insert((d.proto, d.addr.port()), Owner::Declared);
        }
        Ok(())
    }

    /// Starts the task that serves a bound port until `stop` fires.
    fn serve_port(self: &Arc<Self>, info: PortInfo, bound: Bound, stop: CancellationToken) -> std::io::Result<()> {
        let info = Arc::new(info);
        match bound {
            Bound::Tcp(listener) => {
                listener.set_nonblocking(true)?;
                let listener = tokio::net::TcpListener::from_std(listener)?;
                self.tasks.spawn(tcp::serve(self.clone(), listener, info, stop));
            }
            Bound::Udp(socket) => {
                socket.set_nonblocking(true)?;
                let socket = tokio::net::UdpSocket::from_std(socket)?;
                self.tasks.spawn(udp::serve(self.clone(), socket, info, stop));
            }
        }
        Ok(())
    }

    /// A lease ended: with no holder left, the port closes after the grace period unless
    /// a channel of the same HC takes it again.
    fn release_port(self: &Arc<Self>, key: &Key) {
        let mut table = self.ports.table();
        let Some(entry) = table.asked.get_mut(key) else { return };
        entry.holders -= 1;
        if entry.holders > 0 {
            return;
        }
        entry.emptied += 1;
        let emptied = entry.emptied;
        let grace = self.ports.settings.grace;
        if grace.is_zero() {
            return self.close_port(&mut table, key, emptied);
        }
        drop(table);
        // Outside a runtime (unit tests) nothing closes.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let (relay, key) = (self.clone(), key.clone());
        runtime.spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(grace) => {}
                () = relay.shutdown.cancelled() => {}
            }
            let mut table = relay.ports.table();
            relay.close_port(&mut table, &key, emptied);
        });
    }

    /// Closes `key`'s port if nobody took it since it lost its last holder for the
    /// `emptied`th time.
    fn close_port(&self, table: &mut Table, key: &Key, emptied: u64) {
        if !table.asked.get(key).is_some_and(|e| e.holders == 0 && e.emptied == emptied) {
            return;
        }
        let entry = table.asked.remove(key).expect("checked above");
        table.numbers.remove(&(key.proto, entry.port));
        entry.stop.cancel();
        self.metrics.forget_public_port(key.proto, entry.port);
        info!(hc = %key.hc, "public {} port {} closed: no listener holds it", key.proto, entry.port);
    }

    /// The host visitors use, as a listener reached the relay at `base` (`ws://host:port`).
    pub(super) fn public_host(&self, base: &str) -> String {
        if let Some(host) = &self.ports.settings.host {
            return host.clone();
        }
        let authority = base.split_once("://").map_or(base, |(_, rest)| rest);
        match authority.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !host.ends_with(':') => host,
            _ => authority,
        }
        .trim_matches(['[', ']'])
        .to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| format!("{}={}", public::PARAM_PUBLIC, crate::encoding::encode_component(v))).collect()
    }

    #[test]
    fn asks_are_read_from_the_query_and_bounded() {
        let mut q = query(&["tcp:0:", "udp:~5353:dns"]);
        q.insert(0, "other=1".into());
        let read = asks(&q).unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(read[1].port, PortAsk::Prefer(5353));
        let status = |q: &[String]| asks(q).err().map(|r| r.status());
        assert_eq!(status(&query(&["tcp:0:", "tcp:1:"])), Some(400), "one port per protocol and target");
        assert_eq!(status(&query(&["tcp:x:"])), Some(400));
        let many: Vec<String> = (0..=public::MAX_ASKS).map(|i| format!("tcp:0:t{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(status(&query(&many)), Some(400));
        assert!(asks(&query(&many[..public::MAX_ASKS])).is_ok());
        assert_eq!(status(&["hyco-public=%ff".to_owned()]), Some(400));
    }

    #[test]
    fn policy_range_and_privileged_ports() {
        let mut settings = PublicSettings { range: 1000..=1100, ..PublicSettings::default() };
        let ports = Ports::new(settings.clone(), IpAddr::from([127, 0, 0, 1]));
        assert_eq!(ports.policy(999).err().map(|r| r.status()), Some(403));
        assert_eq!(ports.policy(1023).err().map(|r| r.status()), Some(403), "below 1024");
        assert!(ports.policy(1024).is_ok());
        settings.allow_privileged = true;
        assert!(Ports::new(settings, IpAddr::from([127, 0, 0, 1])).policy(1023).is_ok());
        assert!(ports.may_ask("anyone"), "the throwaway relay: any listen credential");
        let named =
            Ports::new(PublicSettings { rules: Some(vec!["a".into()]), ..PublicSettings::default() }, ports.bind_ip);
        assert!(named.may_ask("a") && !named.may_ask("b"));
        assert!(!Ports::new(PublicSettings::off(), ports.bind_ip).may_ask("a"));
    }
}
