//! The relay's settings: the TOML file given with `--config`, the throwaway default used
//! without one, and the limits. Reading files happens here; the relay itself only sees
//! the resolved [`RelaySettings`].

use std::net::{IpAddr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

use super::auth::{Right, Rule};
pub use super::forwarded::IpNet;
use crate::protocol;
use crate::sas::{LISTEN_KEY_NAME, SEND_KEY_NAME};
use crate::secret::Secret;

/// Bytes of a hybrid connection's name (its segments decoded, joined with `/`): longer
/// names are refused in the configuration and never created on first listen.
pub const MAX_HC_NAME_BYTES: usize = 256;

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
}

/// Everything the relay needs to run.
#[derive(Clone, Debug)]
pub struct RelaySettings {
    pub rules: Vec<Rule>,
    pub hcs: Vec<HcSettings>,
    /// Create an HC when a listener first asks for it (the throwaway default).
    pub auto_create: bool,
    pub limits: Limits,
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
            auto_create: true,
            limits: Limits::default(),
        }
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
            if hcs.iter().any(|h: &HcSettings| h.name == hc.name) {
                bail!("hybrid connection {:?} declared twice", hc.name);
            }
            hcs.push(HcSettings {
                name: hc.name,
                requires_client_authorization: hc.requires_client_authorization,
                rules: hc.rules.into_iter().map(|r| r.resolve(base)).collect::<anyhow::Result<_>>()?,
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
        limits.trusted_proxies = file.trusted_proxies.iter().map(|n| IpNet::parse(n)).collect::<anyhow::Result<_>>()?;
        if rules.is_empty() && hcs.iter().all(|h| h.rules.is_empty()) {
            bail!("no authorization rules: declare at least one [[rules]] entry");
        }
        let rules = with_derived_rules(rules);
        Ok(Self { rules, hcs, auto_create: file.auto_create, limits })
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
}

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
        assert_eq!(s.limits.trusted_proxies.len(), 2);
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
            "trusted_proxies=['10.0.0.0/33']\n[[rules]]\nname='a'\nkey='k'\nrights=['Send']",
            "",
        ] {
            assert!(RelaySettings::from_toml(bad, Path::new(".")).is_err(), "{bad}");
        }
    }
}
