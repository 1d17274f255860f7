//! `hyco connect`'s forwards: each local address (`--bind`, or every `-L LOCAL:REMOTE`)
//! and what it reaches, bound and checked before anything is said, then run side by side
//! in one process, each with its own counters ([`Stats::forward`]) and its own tunnels.
//! Which forms a local address takes is [`crate::cli::parse_bind`]'s; opening tunnels is
//! [`super::connect`]'s.

use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::RelayClient;
use super::connect::{self, ConnectSettings};
use super::datagram::{self, UdpOptions};
use super::prewarm::Prewarm;
use crate::credentials::{self, HcError, Resolved};
use crate::error::{Kind, failure};
use crate::local::LocalListener;
use crate::status::Stats;

/// One forward: where it accepts (a `--bind` value) and what it reaches.
#[derive(Clone, Debug)]
pub struct Forward {
    pub local: String,
    pub settings: ConnectSettings,
    /// The flag that gave it (`--bind`, `-L`, `--socks`), for the messages about it.
    pub flag: &'static str,
}

/// The local addresses a `connect` was given.
#[derive(Clone, Copy, Debug, Default)]
pub struct Locals<'a> {
    /// `--bind`: reaches the HC argument (and `--target`).
    pub bind: Option<&'a str>,
    /// Each `-L LOCAL:REMOTE`.
    pub specs: &'a [String],
    /// `--socks`: a SOCKS5 server whose destinations the HC's listener allows.
    pub socks: Option<&'a str>,
}

impl Forward {
    /// Whether this is `--socks`'s SOCKS5 server ([`super::socks`]).
    fn is_socks(&self) -> bool {
        self.flag == SOCKS_FLAG
    }
}

/// The flag of the SOCKS5 forward.
const SOCKS_FLAG: &str = "--socks";

/// Splits an `-L` value, `LOCAL:REMOTE`, at its last colon: LOCAL is what `--bind` takes,
/// REMOTE a target name (or `HC`, `HC/NAME` when the command names no HC).
pub fn split(spec: &str) -> Result<(&str, &str), String> {
    match spec.rsplit_once(':') {
        Some((local, remote)) if !local.is_empty() => Ok((local, remote)),
        _ => Err(format!("-L {spec:?} is not LOCAL:REMOTE (9000:web, 127.0.0.1:9000:web, 9000:myhc/web)")),
    }
}

/// The forwards of one `connect`: `--bind` with the HC argument (`given`) and `--target`,
/// `--socks` with the HC argument, and one per `-L` spec. A spec's REMOTE names a target of
/// the HC the argument (or the credential's `EntityPath`) chose, or, when neither names
/// one, the HC itself (`HC` or `HC/NAME`, so that one process may reach several HCs).
pub fn choose(
    given: Option<&str>,
    target: Option<&str>,
    locals: Locals<'_>,
    resolved: &Resolved,
) -> Result<Vec<Forward>, String> {
    let settings = |(hc, suffix): (String, Option<String>)| ConnectSettings { hc, suffix, azbridge: None };
    let mut forwards = Vec::new();
    if let Some(local) = locals.bind {
        let chosen = credentials::choose_connect(given, target, resolved).map_err(|e| e.to_string())?;
        forwards.push(Forward { local: local.to_owned(), settings: settings(chosen), flag: "--bind" });
    }
    if let Some(local) = locals.socks {
        let chosen = credentials::choose_connect(given, None, resolved).map_err(|e| e.to_string())?;
        forwards.push(Forward { local: local.to_owned(), settings: settings(chosen), flag: SOCKS_FLAG });
    }
    let specs = locals.specs;
    if specs.is_empty() {
        return Ok(forwards);
    }
    let base = match credentials::choose_connect(given, None, resolved) {
        Ok(base) => Some(base),
        Err(HcError::Missing) => None,
        Err(e) => return Err(e.to_string()),
    };
    for spec in specs {
        let (local, remote) = split(spec)?;
        let remote = remote.trim_matches('/');
        let chosen = match &base {
            Some((hc, Some(name))) if !remote.is_empty() => {
                return Err(format!(
                    "-L {spec:?} names target '{remote}', and {hc}/{name} names one already: give the HC alone \
                     (hyco connect {hc} -L …)"
                ));
            }
            Some(_) if remote.contains('/') => {
                return Err(format!(
                    "-L {spec:?}: '{remote}' is not a target name; with an HC given, REMOTE names one of its targets"
                ));
            }
            Some((hc, name)) => (hc.clone(), if remote.is_empty() { name.clone() } else { Some(remote.to_owned()) }),
            None if remote.is_empty() => {
                return Err(format!("-L {spec:?} names no hybrid connection: give HC (hyco connect HC -L …)"));
            }
            None => credentials::choose_connect(Some(remote), None, resolved).map_err(|e| e.to_string())?,
        };
        forwards.push(Forward { local: local.to_owned(), settings: settings(chosen), flag: "-L" });
    }
    for (i, f) in forwards.iter().enumerate() {
        if forwards[..i].iter().any(|g| g.local == f.local) {
            return Err(format!("{} is given twice as a local address", f.local));
        }
    }
    Ok(forwards)
}

/// How a connector's forwards run, beside what each reaches.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The prewarm pool of each stream forward.
    pub prewarm: Prewarm,
    /// `--bind-mode`: the mode of the Unix sockets the forwards create.
    pub bind_mode: Option<u32>,
    /// The sessions of each UDP forward (their prewarm pool is `prewarm`'s size).
    pub udp: UdpOptions,
    /// What the SOCKS5 server asks its clients for (`--socks-user`).
    pub socks_auth: Option<super::socks::SocksAuth>,
}

/// A forward's local side, bound.
enum Bound {
    /// A TCP port or a Unix socket whose connections each take a tunnel.
    Stream(LocalListener),
    Socks(TcpListener),
    /// `udp:[HOST:]PORT` ([`datagram`]).
    Udp(UdpSocket),
}

impl Bound {
    /// What it is bound to, as the lines about it say.
    fn describe(&self) -> anyhow::Result<String> {
        match self {
            Bound::Stream(l) => Ok(l.label()),
            Bound::Socks(l) => Ok(format!("SOCKS5 on {}", l.local_addr()?)),
            Bound::Udp(s) => Ok(format!("{}{}", crate::cli::UDP_BIND, s.local_addr()?)),
        }
    }
}

/// What checking a forward's path found ([`connect::check`], [`datagram::check`]); the
/// SOCKS5 server checks its own.
enum Checked {
    None,
    Stream(connect::Checked),
    Udp(datagram::Checked),
}

/// Binds a forward's local address: a bad one is [`Kind::Config`], a taken or forbidden
/// one [`Kind::LocalPort`].
async fn bind(forward: &Forward, options: &Options) -> anyhow::Result<Bound> {
    let flag = forward.flag;
    if let Some(local) = forward.local.strip_prefix(crate::cli::UDP_BIND) {
        if forward.is_socks() {
            return Err(failure(Kind::Config, format!("{flag} serves SOCKS5 over TCP, not on a UDP port")));
        }
        let addr = crate::cli::parse_bind(local).map_err(|e| failure(Kind::Config, format!("{flag}: {e}")))?;
        let socket = UdpSocket::bind(addr).await.map_err(|e| {
            failure(Kind::LocalPort, format!("cannot bind UDP {addr}: {e}; choose another port with {flag}"))
        })?;
        return Ok(Bound::Udp(socket));
    }
    let unix = forward.local.starts_with(crate::local::UNIX_SCHEME);
    if unix && forward.is_socks() {
        return Err(failure(Kind::Config, format!("{flag} serves SOCKS5 on a TCP port, not a Unix socket")));
    }
    let mode = if unix { options.bind_mode } else { None };
    match LocalListener::bind(&forward.local, mode, flag).await? {
        LocalListener::Tcp(listener) if forward.is_socks() => Ok(Bound::Socks(listener)),
        listener => Ok(Bound::Stream(listener)),
    }
}

/// Binds every forward, checks each one's path ([`connect::check`]), says where each
/// accepts, then runs them all until `shutdown`. Nothing runs unless everything bound
/// and checked: the first failure is the command's. With several forwards each has its own
/// counters, shown together on the status line.
pub async fn run(
    client: RelayClient,
    forwards: Vec<Forward>,
    options: Options,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    if options.bind_mode.is_some() && !forwards.iter().any(|f| f.local.starts_with(crate::local::UNIX_SCHEME)) {
        return Err(failure(Kind::Config, "--bind-mode is for a Unix socket (--bind unix:PATH)"));
    }
    let prewarm = options.prewarm;
    let mut bound = Vec::with_capacity(forwards.len());
    for forward in &forwards {
        bound.push(bind(forward, &options).await?);
    }
    let mut ready = Vec::with_capacity(forwards.len());
    for (forward, local) in forwards.into_iter().zip(bound) {
        // The path, checked once before saying anything: a relay that cannot be reached or
        // that rejects the credentials is an error now, not at the first connection.
        // (The SOCKS5 server checks its own: a listener's rejection is not fatal there.)
        let checked = match &local {
            Bound::Socks(_) => Checked::None,
            Bound::Stream(_) => tokio::select! {
                c = connect::check(&client, &forward.settings) => Checked::Stream(c?),
                () = shutdown.cancelled() => return Ok(()),
            },
            Bound::Udp(_) => tokio::select! {
                c = datagram::check(&client, &forward.settings) => Checked::Udp(c?),
                () = shutdown.cancelled() => return Ok(()),
            },
        };
        let (addr, label) = (local.describe()?, forward.settings.label());
        info!("accepting on {addr} for {label}");
        eprintln!("hyco: {addr} -> {label}");
        ready.push((forward, local, checked, addr));
    }
    let several = ready.len() > 1;
    stats.show();
    let mut running = tokio::task::JoinSet::new();
    for (forward, local, checked, addr) in ready {
        let stats =
            if several { stats.forward(&format!("{addr} -> {}", forward.settings.label())) } else { stats.clone() };
        let (client, shutdown, socks_auth, udp) =
            (client.clone(), shutdown.clone(), options.socks_auth.clone(), options.udp);
        running.spawn(async move {
            match (local, checked) {
                (Bound::Stream(listener), Checked::Stream(checked)) => {
                    connect::run_checked(client, forward.settings, prewarm, checked, listener, stats, shutdown).await
                }
                (Bound::Udp(socket), Checked::Udp(checked)) => {
                    let udp = UdpOptions { prewarm: prewarm.tunnels, ..udp };
                    datagram::run_checked(client, forward.settings, udp, checked, socket, stats, shutdown).await
                }
                (Bound::Socks(listener), _) => {
                    super::socks::run(client, forward.settings, socks_auth, listener, stats, shutdown).await
                }
                (Bound::Stream(_) | Bound::Udp(_), _) => unreachable!("every bound port was checked"),
            }
        });
    }
    let mut result = Ok(());
    while let Some(joined) = running.join_next().await {
        if let Err(e) = joined.context("forward task failed").and_then(|r| r) {
            if result.is_ok() {
                result = Err(e);
            }
            shutdown.cancel();
        }
    }
    if several {
        info!("all forwards stopped: {}", stats.summary());
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved(entity_path: Option<&str>) -> Resolved {
        Resolved {
            endpoint: crate::connstr::parse_endpoint("ws://127.0.0.1:9400", false).unwrap(),
            others: Vec::new(),
            credential: crate::connstr::Credential::None,
            entity_path: entity_path.map(str::to_owned),
            tls_fingerprint: None,
            source: "--connection-string".into(),
            proxy: None,
            token_command: None,
        }
    }

    fn chosen(given: Option<&str>, specs: &[&str], r: &Resolved) -> Result<Vec<String>, String> {
        let specs: Vec<String> = specs.iter().map(|s| (*s).to_owned()).collect();
        choose(given, None, Locals { specs: &specs, ..Locals::default() }, r)
            .map(|fs| fs.iter().map(|f| format!("{} {}", f.local, f.settings.label())).collect())
    }

    #[test]
    fn remote_names_a_target_of_the_hc_or_the_hc() {
        let none = resolved(None);
        assert_eq!(
            chosen(Some("home"), &["9000:web", "udp:5353:dns"], &none).unwrap(),
            ["9000 home/web", "udp:5353 home/dns"]
        );
        assert_eq!(
            chosen(None, &["127.0.0.1:2222:home/ssh", "[::1]:80:office"], &none).unwrap(),
            ["127.0.0.1:2222 home/ssh", "[::1]:80 office"]
        );
        assert_eq!(chosen(Some("home"), &["9000:"], &none).unwrap(), ["9000 home"], "the unnamed target");
        assert_eq!(chosen(None, &["9000:web"], &resolved(Some("box"))).unwrap(), ["9000 box/web"]);
        let err = |given, specs: &[&str]| chosen(given, specs, &none).unwrap_err();
        assert!(err(Some("home/ssh"), &["9000:web"]).contains("names one already"));
        assert!(err(Some("home"), &["9000:a/b"]).contains("not a target name"));
        assert!(err(None, &["9000:"]).contains("names no hybrid connection"));
        assert!(err(Some("home"), &["9000"]).contains("not LOCAL:REMOTE"));
        assert!(err(Some("home"), &[":web"]).contains("not LOCAL:REMOTE"));
        assert!(err(Some("home"), &["9000:a", "9000:b"]).contains("given twice"));
        let mismatch = chosen(Some("other"), &["9000:web"], &resolved(Some("box"))).unwrap_err();
        assert!(mismatch.contains("EntityPath"), "{mismatch}");
    }
}
