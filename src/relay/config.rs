//! The relay's settings: the TOML file given with `--config`, the throwaway default used
//! without one, and the limits. Reading files happens here; the relay itself only sees
//! the resolved [`RelaySettings`].

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

use super::auth::{Right, Rule};
pub use super::cluster::ClusterSettings;
use super::cluster::FileCluster;
pub use crate::ipnet::IpNet;
use crate::protocol;
pub use crate::public::Proto;
use crate::sas::{LISTEN_KEY_NAME, SEND_KEY_NAME};
use crate::secret::Secret;

/// Bytes of a hybrid connection's name (its segments decoded, joined with `/`): longer
/// names are refused in the configuration and never created on first listen.
pub const MAX_HC_NAME_BYTES: usize = 256;

/// HTTP mode: how long a kept-alive client connection may sit idle between requests.
pub const HTTP_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// HTTP mode: requests served on one client connection; the last answer says
/// `Connection: close`.
pub const MAX_HTTP_REQUESTS_PER_CONNECTION: usize = 1_000;

/// Bounds on everything a peer controls. Each has a test that exceeds it.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Time from TCP accept to a complete upgrade request (TLS included).
    pub handshake_timeout: Duration,
    /// Bytes of the upgrade request head.
    pub max_header_bytes: usize,
    /// Bytes of one control channel message.
    pub max_control_message: usize,
    pub max_listeners_per_hc: usize,
    /// Open connections of every kind, handshakes included.
    pub max_connections: usize,
    /// Connections in handshake (accepted, upgrade request not yet read) from one source
    /// address, IPv6 taken by /64; more get 503. `0`: no limit.
    pub max_handshakes_per_ip: usize,
    /// Source addresses [`Limits::max_handshakes_per_ip`] does not apply to: by default
    /// the relay's own host, where a local proxy in front of it connects from.
    pub handshake_limit_exempt: Vec<IpAddr>,
    /// Hybrid connections created on first listen that may exist at once.
    pub max_auto_hcs: usize,
    /// How long a hybrid connection created on first listen outlives its last listener,
    /// so that a listener reconnecting finds it again.
    pub auto_hc_grace: Duration,
    /// Senders waiting for a listener's answer, per HC.
    pub max_pending_senders_per_hc: usize,
    /// How long a sender waits for accept or reject.
    pub accept_window: Duration,
    /// How long past its expiry a listener's token is tolerated.
    pub renew_grace: Duration,
    /// How often an idle control channel is pinged; a channel silent for twice this is dropped.
    pub ping_interval: Duration,
    /// How long live tunnels may drain at shutdown.
    pub drain_timeout: Duration,
    /// A tunnel that forwards no frame either way for this long is closed with 1001
    /// (a stalled peer counts as idle). `None`: tunnels may idle for ever.
    pub tunnel_idle_timeout: Option<Duration>,
    /// HTTP mode: the largest request body forwarded (413 over it).
    pub max_http_request_body: u64,
    /// HTTP mode: how long a listener may take to answer a request (504 after it), and
    /// how long either side of a relayed body may stall.
    pub http_response_timeout: Duration,
    /// HTTP mode: how long a request body may take in all, however it trickles (408).
    pub http_request_body_timeout: Duration,
    /// HTTP mode: how long a kept-alive connection may wait for its next request's first
    /// byte (then it is closed); the head itself then has [`Limits::handshake_timeout`].
    pub http_idle_timeout: Duration,
    /// HTTP mode: requests answered on one connection (at least 1).
    pub max_http_requests_per_connection: usize,
    /// HTTP mode: requests waiting for a listener's answer, per HC, apart from senders.
    pub max_pending_requests_per_hc: usize,
    /// HTTP mode: the proxies in front of the relay, whose `Forwarded`, `X-Forwarded-*`
    /// and `X-Real-IP` are kept; anyone else's are dropped (not a bound, but set here).
    pub trusted_proxies: Vec<IpNet>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            max_header_bytes: protocol::MAX_HANDSHAKE_HEADERS,
            max_control_message: protocol::MAX_CONTROL_MESSAGE,
            max_listeners_per_hc: protocol::MAX_LISTENERS_PER_HC,
            max_connections: 10_000,
            max_handshakes_per_ip: 64,
            handshake_limit_exempt: vec![IpAddr::from([127, 0, 0, 1]), IpAddr::V6(Ipv6Addr::LOCALHOST)],
            max_auto_hcs: 1_000,
            auto_hc_grace: Duration::from_secs(60),
            max_pending_senders_per_hc: 1_000,
            accept_window: protocol::ACCEPT_WINDOW,
            renew_grace: protocol::DEFAULT_RENEW_GRACE,
            ping_interval: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(10),
            tunnel_idle_timeout: None,
            max_http_request_body: protocol::MAX_HTTP_REQUEST_BODY,
            http_response_timeout: protocol::HTTP_RESPONSE_TIMEOUT,
            http_request_body_timeout: Duration::from_secs(300),
            http_idle_timeout: HTTP_IDLE_TIMEOUT,
            max_http_requests_per_connection: MAX_HTTP_REQUESTS_PER_CONNECTION,
            max_pending_requests_per_hc: 1_000,
            trusted_proxies: Vec::new(),
        }
    }
}

/// One hybrid connection the relay serves.
#[derive(Clone, Debug)]
pub struct HcSettings {
    pub name: String,
    /// Whether senders need a token with Send. Listeners always need Listen.
    pub requires_client_authorization: bool,
    pub rules: Vec<Rule>,
    /// Public ports the operator declares for it (docs/protocol.md 10.2).
    pub ports: Vec<DeclaredPort>,
}

impl HcSettings {
    /// An HC that requires client authorization, with no rules of its own and no ports.
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into(), requires_client_authorization: true, rules: Vec::new(), ports: Vec::new() }
    }
}

/// A public port the operator declares for an HC: open from the relay's start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeclaredPort {
    pub proto: Proto,
    pub addr: SocketAddr,
    /// The target name it leads to; empty: the listener's unnamed target.
    pub target: String,
    /// Sources allowed to connect; empty: anyone.
    pub allow_from: Vec<IpNet>,
}

/// Ports a listener opens on the relay for anyone (docs/protocol.md 10.2): who may ask,
/// which ports, and the bounds on what visitors use.
#[derive(Clone, Debug)]
pub struct PublicSettings {
    /// Names of the rules whose tokens may ask for ports; `None`: any rule that lets a
    /// listener listen (the throwaway relay). Empty: nobody (public ports off).
    pub rules: Option<Vec<String>>,
    /// Ports a listener may ask for.
    pub range: RangeInclusive<u16>,
    /// Whether ports below 1024 may be asked for (if in `range`).
    pub allow_privileged: bool,
    /// Ports one HC may hold at once, asked for (declared ones aside).
    pub max_per_hc: usize,
    /// The address ports are bound on; `None`: the relay's own listening address.
    pub bind: Option<IpAddr>,
    /// The host listeners are told visitors use; `None`: the host they used themselves.
    pub host: Option<String>,
    /// Sources allowed to connect to ports asked for; empty: anyone.
    pub allow_from: Vec<IpNet>,
    /// How long a port outlives the last control channel that asked for it.
    pub grace: Duration,
    /// Rendezvous a TCP port keeps open ahead of need.
    pub prewarm: usize,
    /// A UDP session with no datagram either way for this long ends.
    pub udp_idle_timeout: Duration,
    /// UDP sessions (source addresses) per port at once; datagrams from more are dropped.
    pub max_udp_sessions_per_port: usize,
    /// Bytes of one datagram, either way; larger ones are dropped.
    pub max_udp_datagram: usize,
}

/// Ports the throwaway relay lets listeners ask for.
pub const DEFAULT_PUBLIC_RANGE: RangeInclusive<u16> = 20000..=29999;

impl Default for PublicSettings {
    /// The throwaway relay's: any listener, ports 20000-29999.
    fn default() -> Self {
        Self {
            rules: None,
            range: DEFAULT_PUBLIC_RANGE,
            allow_privileged: false,
            max_per_hc: 8,
            bind: None,
            host: None,
            allow_from: Vec::new(),
            grace: Duration::from_secs(60),
            prewarm: 4,
            udp_idle_timeout: Duration::from_secs(60),
            max_udp_sessions_per_port: 1024,
            max_udp_datagram: 65_507,
        }
    }
}

impl PublicSettings {
    /// Nobody may ask for ports (a configured relay without `[public_ports]`).
    pub fn off() -> Self {
        Self { rules: Some(Vec::new()), ..Self::default() }
    }
}

/// Parses a port range `A-B` (or a single port).
pub fn parse_port_range(text: &str) -> anyhow::Result<RangeInclusive<u16>> {
    let (a, b) = text.split_once('-').unwrap_or((text, text));
    let port = |s: &str| s.trim().parse::<u16>().ok().filter(|p| *p > 0);
    match (port(a), port(b)) {
        (Some(a), Some(b)) if a <= b => Ok(a..=b),
        _ => bail!("port range {text:?} is not FIRST-LAST with 1 <= FIRST <= LAST <= 65535"),
    }
}

/// Everything the relay needs to run.
#[derive(Clone, Debug)]
pub struct RelaySettings {
    pub rules: Vec<Rule>,
    pub hcs: Vec<HcSettings>,
    pub public: PublicSettings,
    /// The URL clients reach the relay at (`wss://relay.example.net`), when that is not
    /// how they connect to it (a TLS-terminating proxy in front): rendezvous addresses
    /// start with it. `None`: as each client reached the relay (or a trusted proxy says).
    pub external_url: Option<String>,
    /// Create an HC when a listener first asks for it (the throwaway default).
    pub auto_create: bool,
    pub limits: Limits,
    /// Several relays sharing routing through Redis (docs/protocol.md 11); `None`: one.
    pub cluster: Option<ClusterSettings>,
}

impl RelaySettings {
    /// A relay with one namespace-wide Manage key that creates HCs on first listen, plus
    /// Send-only and Listen-only rules whose keys derive from it ([`crate::sas::derive_key`]).
    pub fn with_namespace_key(name: &str, key: Secret) -> Self {
        let derived = |rule: &str, right| Rule {
            name: rule.into(),
            key: crate::sas::derive_key(&key, rule),
            rights: vec![right],
        };
        Self {
            rules: vec![
                derived(SEND_KEY_NAME, Right::Send),
                derived(LISTEN_KEY_NAME, Right::Listen),
                Rule { name: name.into(), key: key.clone(), rights: vec![Right::Manage] },
            ],
            hcs: Vec::new(),
            public: PublicSettings::default(),
            external_url: None,
            auto_create: true,
            limits: Limits::default(),
            cluster: None,
        }
    }

    /// What differs between `self` (the settings the relay started with) and `new` that a
    /// reload does not apply (only rules and hybrid connections are reloaded): the names of
    /// those settings, for the log.
    pub fn restart_only(&self, new: &RelaySettings) -> Vec<&'static str> {
        let differs = |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") != format!("{b:?}");
        let ports = |s: &RelaySettings| {
            let mut p: Vec<(String, Vec<DeclaredPort>)> =
                s.hcs.iter().map(|h| (crate::protocol::name_key(&h.name), h.ports.clone())).collect();
            p.retain(|(_, ports)| !ports.is_empty());
            p.sort_by(|a, b| a.0.cmp(&b.0));
            p
        };
        [
            ("[limits]", differs(&self.limits, &new.limits)),
            ("[public_ports]", differs(&self.public, &new.public)),
            ("[cluster]", differs(&self.cluster, &new.cluster)),
            ("external_url", self.external_url != new.external_url),
            ("auto_create", self.auto_create != new.auto_create),
            ("declared ports", ports(self) != ports(new)),
        ]
        .into_iter()
        .filter_map(|(name, changed)| changed.then_some(name))
        .collect()
    }

    /// Reads a `--config` file.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_toml(&text, base).with_context(|| format!("in {}", path.display()))
    }

    /// Parses config text; relative `key_file` paths are taken from `base`.
    pub fn from_toml(text: &str, base: &Path) -> anyhow::Result<Self> {
        let file: FileConfig = toml::from_str(text)?;
        let rules = file.rules.into_iter().map(|r| r.resolve(base)).collect::<anyhow::Result<Vec<_>>>()?;
        let mut hcs = Vec::new();
        for hc in file.hybrid_connections {
            if hc.name.is_empty() || hc.name.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
                bail!("hybrid connection name {:?} is not a valid path", hc.name);
            }
            if hc.name.len() > MAX_HC_NAME_BYTES {
                bail!("hybrid connection name {:?} is longer than {MAX_HC_NAME_BYTES} bytes", hc.name);
            }
            if hcs
                .iter()
                .any(|h: &HcSettings| crate::protocol::name_key(&h.name) == crate::protocol::name_key(&hc.name))
            {
                bail!("hybrid connection {:?} declared twice", hc.name);
            }
            let ports = hc.declared_ports().with_context(|| format!("hybrid connection {:?}", hc.name))?;
            hcs.push(HcSettings {
                name: hc.name,
                requires_client_authorization: hc.requires_client_authorization,
                rules: hc.rules.into_iter().map(|r| r.resolve(base)).collect::<anyhow::Result<_>>()?,
                ports,
            });
        }
        let mut limits = Limits::default();
        let l = file.limits;
        let secs = |v: Option<u64>, d: Duration| v.map_or(d, Duration::from_secs);
        limits.handshake_timeout = secs(l.handshake_timeout_secs, limits.handshake_timeout);
        limits.max_header_bytes = l.max_header_bytes.unwrap_or(limits.max_header_bytes);
        limits.max_control_message = l.max_control_message.unwrap_or(limits.max_control_message);
        limits.max_listeners_per_hc = l.max_listeners_per_hc.unwrap_or(limits.max_listeners_per_hc);
        limits.max_connections = l.max_connections.unwrap_or(limits.max_connections);
        limits.max_handshakes_per_ip = l.max_handshakes_per_ip.unwrap_or(limits.max_handshakes_per_ip);
        limits.handshake_limit_exempt = l.handshake_limit_exempt.unwrap_or(limits.handshake_limit_exempt);
        limits.max_auto_hcs = l.max_auto_hcs.unwrap_or(limits.max_auto_hcs);
        limits.auto_hc_grace = secs(l.auto_hc_grace_secs, limits.auto_hc_grace);
        limits.max_pending_senders_per_hc = l.max_pending_senders_per_hc.unwrap_or(limits.max_pending_senders_per_hc);
        limits.accept_window = secs(l.accept_window_secs, limits.accept_window);
        limits.renew_grace = secs(l.renew_grace_secs, limits.renew_grace);
        limits.ping_interval = secs(l.ping_interval_secs, limits.ping_interval);
        limits.drain_timeout = secs(l.drain_timeout_secs, limits.drain_timeout);
        if let Some(t) = l.tunnel_idle_timeout_secs {
            limits.tunnel_idle_timeout = (t > 0).then(|| Duration::from_secs(t));
        }
        limits.max_http_request_body = l.max_http_request_body.unwrap_or(limits.max_http_request_body);
        limits.http_response_timeout = secs(l.http_response_timeout_secs, limits.http_response_timeout);
        limits.http_request_body_timeout = secs(l.http_request_body_timeout_secs, limits.http_request_body_timeout);
        limits.max_pending_requests_per_hc =
            l.max_pending_requests_per_hc.unwrap_or(limits.max_pending_requests_per_hc);
        limits.http_idle_timeout = secs(l.http_idle_timeout_secs, limits.http_idle_timeout);
        limits.max_http_requests_per_connection =
            l.max_http_requests_per_connection.unwrap_or(limits.max_http_requests_per_connection).max(1);
        limits.trusted_proxies = file.trusted_proxies.iter().map(|n| IpNet::parse(n)).collect::<anyhow::Result<_>>()?;
        if rules.is_empty() && hcs.iter().all(|h| h.rules.is_empty()) {
            bail!("no authorization rules: declare at least one [[rules]] entry");
        }
        let mut declared: Vec<_> = hcs.iter().flat_map(|h| &h.ports).map(|p| (p.proto, p.addr.port())).collect();
        declared.sort_unstable();
        if let Some(w) = declared.windows(2).find(|w| w[0] == w[1]) {
            bail!("public {} port {} declared twice", w[0].0, w[0].1);
        }
        let public = file.public_ports.map_or_else(|| Ok(PublicSettings::off()), FilePublic::resolve)?;
        let external_url = file.external_url.as_deref().map(parse_external_url).transpose()?;
        let rules = with_derived_rules(rules);
        let cluster = file.cluster.map(|c| c.resolve(base)).transpose()?;
        Ok(Self { rules, hcs, public, external_url, auto_create: file.auto_create, limits, cluster })
    }
}

/// Adds the Send-only and Listen-only rules whose keys derive from the namespace-wide
/// root rule (`RootManageSharedAccessKey`), as the throwaway relay has them, so that
/// `hyco token --rights send|listen` signed with the root key works against a configured
/// relay too. Only the rights the root rule grants are derived, and a rule the file
/// declares under either name wins.
fn with_derived_rules(mut rules: Vec<Rule>) -> Vec<Rule> {
    let Some(root) = rules.iter().find(|r| r.name == crate::sas::DEFAULT_KEY_NAME).cloned() else {
        return rules;
    };
    for (name, right) in [(SEND_KEY_NAME, Right::Send), (LISTEN_KEY_NAME, Right::Listen)] {
        if root.grants(right) && !rules.iter().any(|r| r.name == name) {
            rules.push(Rule { name: name.into(), key: crate::sas::derive_key(&root.key, name), rights: vec![right] });
        }
    }
    rules
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    rules: Vec<FileRule>,
    #[serde(default)]
    hybrid_connections: Vec<FileHc>,
    #[serde(default)]
    auto_create: bool,
    #[serde(default)]
    limits: FileLimits,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    public_ports: Option<FilePublic>,
    external_url: Option<String>,
    cluster: Option<FileCluster>,
}

/// Reads `external_url`: `wss://host[:port]` or `ws://…` (`https://`/`http://` taken as
/// such), no path; returned without a trailing slash.
pub(super) fn parse_external_url(text: &str) -> anyhow::Result<String> {
    let text = text.trim().trim_end_matches('/');
    let (scheme, rest) = text.split_once("://").unwrap_or(("", text));
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "wss" | "https" => "wss",
        "ws" | "http" => "ws",
        _ => bail!("external_url {text:?} must start with wss:// (or ws://)"),
    };
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        bail!("external_url {text:?} must be a scheme and a host[:port], nothing more");
    }
    Ok(format!("{scheme}://{rest}"))
}

/// `[public_ports]`: its presence turns public ports on for the rules it names.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePublic {
    rules: Vec<String>,
    range: Option<String>,
    #[serde(default)]
    allow_privileged: bool,
    max_per_hc: Option<usize>,
    bind: Option<IpAddr>,
    host: Option<String>,
    #[serde(default)]
    allow_from: Vec<String>,
    grace_secs: Option<u64>,
    prewarm: Option<usize>,
    udp_idle_timeout_secs: Option<u64>,
    max_udp_sessions_per_port: Option<usize>,
    max_udp_datagram: Option<usize>,
}

impl FilePublic {
    fn resolve(self) -> anyhow::Result<PublicSettings> {
        let d = PublicSettings::default();
        let secs = |v: Option<u64>, d: Duration| v.map_or(d, Duration::from_secs);
        let range = self.range.as_deref().map_or(Ok(d.range.clone()), parse_port_range)?;
        if *range.start() < 1024 && !self.allow_privileged {
            bail!("[public_ports] range starts below 1024: set allow_privileged = true, or start it at 1024 or above");
        }
        if let Some(host) = &self.host
            && (host.is_empty() || host.contains([' ', '/', '?', '#', '@']))
        {
            bail!("[public_ports] host {host:?} is not a host name or address");
        }
        let max_udp_datagram = self.max_udp_datagram.unwrap_or(d.max_udp_datagram);
        if !(1..=d.max_udp_datagram).contains(&max_udp_datagram) {
            bail!("[public_ports] max_udp_datagram must be between 1 and {}", d.max_udp_datagram);
        }
        Ok(PublicSettings {
            rules: Some(self.rules),
            range,
            allow_privileged: self.allow_privileged,
            max_per_hc: self.max_per_hc.unwrap_or(d.max_per_hc),
            bind: self.bind,
            host: self.host,
            allow_from: self.allow_from.iter().map(|n| IpNet::parse(n)).collect::<anyhow::Result<_>>()?,
            grace: secs(self.grace_secs, d.grace),
            prewarm: self.prewarm.unwrap_or(d.prewarm).min(MAX_PUBLIC_PREWARM),
            udp_idle_timeout: secs(self.udp_idle_timeout_secs, d.udp_idle_timeout),
            max_udp_sessions_per_port: self.max_udp_sessions_per_port.unwrap_or(d.max_udp_sessions_per_port),
            max_udp_datagram,
        })
    }
}

/// The most rendezvous a public TCP port may keep open ahead of need.
pub const MAX_PUBLIC_PREWARM: usize = 64;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRule {
    name: String,
    key: Option<Secret>,
    key_file: Option<PathBuf>,
    rights: Vec<Right>,
}

impl FileRule {
    fn resolve(self, base: &Path) -> anyhow::Result<Rule> {
        let key = match (self.key, self.key_file) {
            (Some(k), None) => k,
            (None, Some(file)) => {
                let path = base.join(file);
                let key = crate::fsutil::read_key(&path)
                    .with_context(|| format!("reading the key of rule {:?}", self.name))?;
                Secret::new(key)
            }
            _ => bail!("rule {:?} needs exactly one of key and key_file", self.name),
        };
        if key.expose().is_empty() {
            bail!("rule {:?} has an empty key", self.name);
        }
        if self.rights.is_empty() {
            bail!("rule {:?} grants no rights", self.name);
        }
        Ok(Rule { name: self.name, key, rights: self.rights })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHc {
    name: String,
    #[serde(default = "yes")]
    requires_client_authorization: bool,
    #[serde(default)]
    rules: Vec<FileRule>,
    #[serde(default)]
    public_tcp: Vec<SocketAddr>,
    #[serde(default)]
    public_udp: Vec<SocketAddr>,
    #[serde(default)]
    ports: Vec<FilePort>,
}

/// `[[hybrid_connections.ports]]`: one declared port with its target and allowlist.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePort {
    tcp: Option<SocketAddr>,
    udp: Option<SocketAddr>,
    #[serde(default)]
    target: String,
    #[serde(default)]
    allow_from: Vec<String>,
}

impl FileHc {
    fn declared_ports(&self) -> anyhow::Result<Vec<DeclaredPort>> {
        let plain = |proto, addr: &SocketAddr| DeclaredPort {
            proto,
            addr: *addr,
            target: String::new(),
            allow_from: Vec::new(),
        };
        let mut ports: Vec<_> = self.public_tcp.iter().map(|a| plain(Proto::Tcp, a)).collect();
        ports.extend(self.public_udp.iter().map(|a| plain(Proto::Udp, a)));
        for p in &self.ports {
            let (proto, addr) = match (p.tcp, p.udp) {
                (Some(a), None) => (Proto::Tcp, a),
                (None, Some(a)) => (Proto::Udp, a),
                _ => bail!("a [[hybrid_connections.ports]] entry needs exactly one of tcp and udp"),
            };
            if p.target.contains(['/', '?', '#', ':', ' ']) {
                bail!("port target {:?} is not a target name", p.target);
            }
            let allow_from = p.allow_from.iter().map(|n| IpNet::parse(n)).collect::<anyhow::Result<_>>()?;
            ports.push(DeclaredPort { proto, addr, target: p.target.clone(), allow_from });
        }
        if let Some(p) = ports.iter().find(|p| p.addr.port() == 0) {
            bail!("declared public {} port {} names no port", p.proto, p.addr);
        }
        Ok(ports)
    }
}

fn yes() -> bool {
    true
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    handshake_timeout_secs: Option<u64>,
    max_header_bytes: Option<usize>,
    max_control_message: Option<usize>,
    max_listeners_per_hc: Option<usize>,
    max_connections: Option<usize>,
    max_handshakes_per_ip: Option<usize>,
    handshake_limit_exempt: Option<Vec<IpAddr>>,
    max_auto_hcs: Option<usize>,
    auto_hc_grace_secs: Option<u64>,
    max_pending_senders_per_hc: Option<usize>,
    accept_window_secs: Option<u64>,
    renew_grace_secs: Option<u64>,
    ping_interval_secs: Option<u64>,
    drain_timeout_secs: Option<u64>,
    tunnel_idle_timeout_secs: Option<u64>,
    max_http_request_body: Option<u64>,
    http_response_timeout_secs: Option<u64>,
    http_request_body_timeout_secs: Option<u64>,
    max_pending_requests_per_hc: Option<usize>,
    http_idle_timeout_secs: Option<u64>,
    max_http_requests_per_connection: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_config_parses() {
        let s = RelaySettings::from_toml(
            r#"
            auto_create = false
            trusted_proxies = ["203.0.113.0/24", "::1"]
            external_url = "https://relay.example.net/"
            [[rules]]
            name = "root"
            key = "k1"
            rights = ["Manage"]
            [[hybrid_connections]]
            name = "team/ssh"
            requires_client_authorization = false
            [[hybrid_connections.rules]]
            name = "sshlisten"
            key = "k2"
            rights = ["Listen"]
            [limits]
            max_listeners_per_hc = 3
            accept_window_secs = 5
            max_http_request_body = 1048576
            http_response_timeout_secs = 7
            tunnel_idle_timeout_secs = 600
            max_handshakes_per_ip = 8
            handshake_limit_exempt = ["10.0.0.1"]
            max_auto_hcs = 5
            auto_hc_grace_secs = 0
            http_request_body_timeout_secs = 9
            max_pending_requests_per_hc = 4
            http_idle_timeout_secs = 11
            max_http_requests_per_connection = 0
            "#,
            Path::new("."),
        )
        .unwrap();
        assert_eq!(s.hcs[0].name, "team/ssh");
        assert!(!s.hcs[0].requires_client_authorization);
        assert_eq!(s.limits.max_listeners_per_hc, 3);
        assert_eq!(s.limits.accept_window, Duration::from_secs(5));
        assert_eq!(s.limits.tunnel_idle_timeout, Some(Duration::from_secs(600)));
        assert_eq!(Limits::default().tunnel_idle_timeout, None, "off unless configured");
        assert_eq!(s.limits.max_http_request_body, 1 << 20);
        assert_eq!(s.limits.http_response_timeout, Duration::from_secs(7));
        assert_eq!((s.limits.max_handshakes_per_ip, s.limits.max_auto_hcs), (8, 5));
        assert_eq!(s.limits.handshake_limit_exempt, [IpAddr::from([10, 0, 0, 1])]);
        assert_eq!(s.limits.auto_hc_grace, Duration::ZERO);
        assert!(Limits::default().handshake_limit_exempt.iter().all(IpAddr::is_loopback));
        assert_eq!(s.limits.http_request_body_timeout, Duration::from_secs(9));
        assert_eq!(s.limits.max_pending_requests_per_hc, 4);
        assert_eq!(s.limits.http_idle_timeout, Duration::from_secs(11));
        assert_eq!(s.limits.max_http_requests_per_connection, 1, "at least one request per connection");
        assert_eq!(s.limits.trusted_proxies.len(), 2);
        assert_eq!(s.external_url.as_deref(), Some("wss://relay.example.net"));
        assert!(!format!("{s:?}").contains("k1"), "keys stay out of Debug");
    }

    #[test]
    fn a_declared_root_rule_brings_the_derived_send_and_listen_rules() {
        let parse = |text: &str| RelaySettings::from_toml(text, Path::new(".")).unwrap().rules;
        let root = "[[rules]]\nname='RootManageSharedAccessKey'\nkey='k1'\nrights=['Manage']\n";
        let rules = parse(root);
        let derived = |name: &str| rules.iter().find(|r| r.name == name).cloned();
        let send = derived(SEND_KEY_NAME).expect("hyco-send");
        assert_eq!(
            (send.key.clone(), send.rights.clone()),
            (crate::sas::derive_key(&Secret::new("k1"), SEND_KEY_NAME), vec![Right::Send])
        );
        assert_eq!(derived(LISTEN_KEY_NAME).unwrap().rights, vec![Right::Listen]);
        // Only the rights the root grants; a declared rule of that name wins; no root, none.
        let rules = parse("[[rules]]\nname='RootManageSharedAccessKey'\nkey='k1'\nrights=['Send']\n");
        assert_eq!(
            rules.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["RootManageSharedAccessKey", SEND_KEY_NAME]
        );
        let rules = parse(&format!("{root}[[rules]]\nname='hyco-send'\nkey='mine'\nrights=['Send']\n"));
        assert_eq!(
            rules.iter().filter(|r| r.name == SEND_KEY_NAME).map(|r| r.key.expose()).collect::<Vec<_>>(),
            ["mine"]
        );
        assert_eq!(parse("[[rules]]\nname='root'\nkey='k1'\nrights=['Manage']\n").len(), 1);
    }

    #[test]
    fn public_ports_parse() {
        let s = RelaySettings::from_toml(
            r#"
            [[rules]]
            name = "root"
            key = "k1"
            rights = ["Manage"]
            [[hybrid_connections]]
            name = "box"
            public_tcp = ["127.0.0.1:2222"]
            public_udp = ["[::1]:5353"]
            [[hybrid_connections.ports]]
            tcp = "0.0.0.0:8443"
            target = "web"
            allow_from = ["203.0.113.0/24"]
            [public_ports]
            rules = ["root"]
            range = "30000-30009"
            max_per_hc = 2
            grace_secs = 0
            udp_idle_timeout_secs = 5
            max_udp_sessions_per_port = 3
            max_udp_datagram = 512
            "#,
            Path::new("."),
        )
        .unwrap();
        let ports = &s.hcs[0].ports;
        assert_eq!(ports.len(), 3);
        assert_eq!((ports[0].proto, ports[0].addr.port(), ports[0].target.as_str()), (Proto::Tcp, 2222, ""));
        assert_eq!((ports[1].proto, ports[2].target.as_str(), ports[2].allow_from.len()), (Proto::Udp, "web", 1));
        let p = &s.public;
        assert_eq!((p.rules.clone(), p.range.clone(), p.max_per_hc), (Some(vec!["root".to_owned()]), 30000..=30009, 2));
        assert_eq!((p.grace, p.udp_idle_timeout), (Duration::ZERO, Duration::from_secs(5)));
        assert_eq!((p.max_udp_sessions_per_port, p.max_udp_datagram), (3, 512));
        // No section: nobody may ask.
        let off = RelaySettings::from_toml("[[rules]]\nname='a'\nkey='k'\nrights=['Listen']", Path::new(".")).unwrap();
        assert_eq!(off.public.rules, Some(Vec::new()));
        assert_eq!(parse_port_range("8000").unwrap(), 8000..=8000);
        for bad in ["0-10", "10-5", "x", "1-70000"] {
            assert!(parse_port_range(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_readme_configuration_parses() {
        let readme = include_str!("../../README.md");
        let start = readme.find("The configuration file:").expect("the section");
        let block = readme[start..].split("```toml\n").nth(1).and_then(|b| b.split("```").next()).expect("its block");
        let block = block.replace("key_file = \"root.key\"", "key = \"k\"");
        let s = RelaySettings::from_toml(&block, Path::new(".")).unwrap();
        assert_eq!(s.hcs[0].ports.len(), 2);
        assert!(s.public.rules.as_ref().is_some_and(|r| r.len() == 2));
    }

    #[test]
    fn bad_configs_are_refused() {
        for bad in [
            "[[rules]]\nname='a'\nrights=['Send']",
            "[[rules]]\nname='a'\nkey='k'\nrights=[]",
            "[[rules]]\nname='a'\nkey='k'\nrights=['Fly']",
            "bogus = 1",
            "[[rules]]\nname='a'\nkey='k'\nrights=['Send']\n[[hybrid_connections]]\nname='../x'",
            &format!(
                "[[rules]]\nname='a'\nkey='k'\nrights=['Send']\n[[hybrid_connections]]\nname='{}'",
                "x".repeat(257)
            ),
            "[[rules]]\nname='a'\nkey='k'\nrights=['Send']\n[limits]\nhandshake_limit_exempt=['nowhere']",
            "[[rules]]\nname='a'\nkey='k'\nrights=['Send']\n[public_ports]\nrules=[]\nrange='80-90'",
            "[[rules]]\nname='a'\nkey='k'\nrights=['Send']\n[public_ports]\nrules=[]\nmax_udp_datagram=70000",
            "[[rules]]\nname='a'\nkey='k'\nrights=['Send']\n[public_ports]\nrules=[]\nallow_from=['x']",
            "[[rules]]\nname='a'\nkey='k'\nrights=['Send']\n[[hybrid_connections]]\nname='a'\npublic_tcp=['1.2.3.4:0']",
            "[[rules]]\nname='a'\nkey='k'\nrights=['Send']\n[[hybrid_connections]]\nname='a'\n[[hybrid_connections.ports]]\ntcp='1.2.3.4:5'\nudp='1.2.3.4:5'",
            "[[rules]]\nname='a'\nkey='k'\nrights=['Send']\n[[hybrid_connections]]\nname='a'\npublic_tcp=['1.2.3.4:5']\n[[hybrid_connections]]\nname='b'\npublic_tcp=['0.0.0.0:5']",
            "trusted_proxies=['10.0.0.0/33']\n[[rules]]\nname='a'\nkey='k'\nrights=['Send']",
            "external_url='ftp://x'\n[[rules]]\nname='a'\nkey='k'\nrights=['Send']",
            "external_url='wss://x/path'\n[[rules]]\nname='a'\nkey='k'\nrights=['Send']",
            "",
        ] {
            assert!(RelaySettings::from_toml(bad, Path::new(".")).is_err(), "{bad}");
        }
    }
}
