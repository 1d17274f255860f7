//! What each subcommand does, from parsed arguments to a running role: resolves
//! credentials and settings, prints what a person needs, and runs the library until the
//! shutdown token fires. `main` only parses, sets up logging and signals, and exits.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use base64::Engine as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::cli::{Command, ConnectArgs, CredentialArgs, DemoArgs, ListenArgs, ServeArgs};
use crate::client::RelayClient;
use crate::client::allow::Allowlist;
use crate::client::connect::{self, ConnectSettings};
use crate::client::forward;
use crate::client::inspect::{Inspect, Limits as InspectLimits};
use crate::client::listen::{self, ListenSettings};
use crate::client::prewarm::Prewarm;
use crate::client::proxy::Proxies;
use crate::client::target::Targets;
use crate::credentials::{self, config_failure};
use crate::error::{Kind, failure};
use crate::fsutil;
use crate::profile;
use crate::relay::{self, PublicSettings, RelaySettings};
use crate::sas::DEFAULT_KEY_NAME;
use crate::secret::Secret;
use crate::status::Stats;

/// Environment variable naming the directory for the throwaway relay's key and
/// certificate (default: the platform data directory).
pub(crate) const ENV_DATA_DIR: &str = "HYCO_DATA_DIR";
/// A secret that lets a request see a status page not on loopback (`serve --dashboard`).
const ENV_DASHBOARD_SECRET: &str = "HYCO_DASHBOARD_SECRET";
/// The password SOCKS5 clients must give with `connect --socks-user` (never a flag, so it
/// stays out of `ps`).
const ENV_SOCKS_PASSWORD: &str = "HYCO_SOCKS_PASSWORD";
/// A secret that lets a request see a request inspector not on loopback (`listen --inspect`).
const ENV_INSPECT_SECRET: &str = "HYCO_INSPECT_SECRET";

/// A secret from the environment variable `name` (never a flag, so that it stays out of
/// `ps`); `None` when unset or empty.
fn secret_from_env(name: &str) -> Option<Secret> {
    std::env::var(name).ok().filter(|s| !s.is_empty()).map(Secret::new)
}

/// Runs one subcommand until it ends or `shutdown` fires.
pub async fn run(command: Command, stats: Arc<Stats>, shutdown: CancellationToken) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => serve(args, shutdown).await,
        Command::Listen(args) => listen(args, stats, shutdown).await,
        Command::Connect(args) => connect(args, stats, shutdown).await,
        Command::Demo(args) => demo(args, stats, shutdown).await,
        Command::Up(args) => crate::up::run(args, stats, shutdown).await,
        Command::Profile(command) => crate::manage::profile(command, &mut std::io::stdout()),
        Command::Token(args) => crate::manage::token(args, &mut std::io::stdout()),
        Command::Completions { shell } => crate::manage::completions(shell, &mut std::io::stdout()),
    }
}

/// The log filter: `rust_log` (`RUST_LOG`) when given and valid, else `hyco={level},warn`.
/// Install it together with [`secret_cap`], which no directive here can loosen.
pub fn log_filter(level: &str, rust_log: Option<&str>) -> tracing_subscriber::EnvFilter {
    use tracing_subscriber::EnvFilter;
    rust_log
        .filter(|s| !s.is_empty())
        .and_then(|s| EnvFilter::try_new(s).ok())
        .unwrap_or_else(|| EnvFilter::new(format!("hyco={level},warn")))
}

/// A filter layer that drops the WebSocket library's `trace` events whatever the log
/// filter says (a more specific `RUST_LOG` directive such as
/// `tungstenite::protocol=trace` included): at trace it prints whole control messages,
/// and those carry secrets (a `renewToken`'s signature, an accept address).
pub fn secret_cap() -> tracing_subscriber::filter::FilterFn<fn(&tracing::Metadata<'_>) -> bool> {
    tracing_subscriber::filter::filter_fn(below_secret_level as fn(&tracing::Metadata<'_>) -> bool)
}

/// Whether an event or span may be logged at all: anything but the WebSocket library's
/// `trace` level (its tokio adapter's trace names poll calls, not payloads).
fn below_secret_level(meta: &tracing::Metadata<'_>) -> bool {
    let websocket = meta.target() == "tungstenite" || meta.target().starts_with("tungstenite::");
    !(websocket && *meta.level() == tracing::Level::TRACE)
}

/// The directory for the relay's generated key and certificate.
pub(crate) fn data_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os(ENV_DATA_DIR).filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let dirs = directories::ProjectDirs::from("", "", "hyco")
        .context("no home directory for the relay's key; set HYCO_DATA_DIR")?;
    Ok(dirs.data_dir().to_path_buf())
}

/// The throwaway relay's namespace key: read from `dir`, or generated there (0600) when
/// the file is missing or empty. A file that holds anything but a key is an error (the
/// path may point somewhere it should not), never replaced.
pub(crate) fn namespace_key(dir: &std::path::Path) -> anyhow::Result<Secret> {
    let path = dir.join("namespace.key");
    let empty = std::fs::metadata(&path).map(|m| m.len() == 0);
    if matches!(empty, Ok(false)) {
        let key = fsutil::read_key(&path)
            .map_err(|e| config_failure(e, "remove the file to have a new key generated, or put the key back"))?;
        if fsutil::readable_by_others(&path) {
            warn!("{} is readable by other users; chmod 600 it", path.display());
        }
        return Ok(Secret::new(key));
    }
    // 32 random bytes in base64, the shape of an Azure key.
    let key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; fsutil::KEY_BYTES]>());
    fsutil::write_private(&path, format!("{key}\n").as_bytes())
        .map_err(|e| config_failure(e, "fix the data directory (HYCO_DATA_DIR)"))?;
    info!("generated a namespace key in {}", path.display());
    Ok(Secret::new(key))
}

fn public_host(args: &ServeArgs) -> String {
    if let Some(h) = &args.public_host {
        return h.clone();
    }
    let ip = args.bind.ip();
    if !ip.is_unspecified() {
        return url_host(ip);
    }
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

fn url_host(ip: std::net::IpAddr) -> String {
    if ip.is_ipv6() { format!("[{ip}]") } else { ip.to_string() }
}

/// The host this machine's own clients use in the profile serve writes: the public name
/// when one was given and the relay is not bound to loopback (a token minted from the
/// profile then names the relay as others reach it), else the bound address (127.0.0.1
/// for all interfaces). A relay with a real certificate needs its name whatever the bind.
fn profile_host(args: &ServeArgs, host: &str) -> String {
    let ip = args.bind.ip();
    match &args.public_host {
        Some(_) if args.tls_cert.is_some() || !ip.is_loopback() => host.to_owned(),
        _ if ip.is_unspecified() => "127.0.0.1".to_owned(),
        _ => url_host(ip),
    }
}

/// Raises the soft open-file limit to the hard one: a relay holds two descriptors per
/// tunnel, a listener one per tunnel and one per target connection, a connector one per
/// tunnel and one per local connection. Out of descriptors, a listener cannot even send a
/// rejection, and its senders wait for the relay's 504.
fn raise_open_file_limit() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
}

async fn serve(args: ServeArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    raise_open_file_limit();
    // SIGHUP reloads (below), and must not end the relay meanwhile.
    #[cfg(unix)]
    let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot handle SIGHUP, which reloads the configuration")?;
    #[cfg(not(unix))]
    let hangup = ();
    let host = public_host(&args);
    let (mut settings, key) = match &args.config {
        Some(path) => {
            (RelaySettings::from_file(path).map_err(|e| config_failure(e, "fix the relay configuration"))?, None)
        }
        None => {
            let key = namespace_key(&data_dir()?)?;
            let mut settings = RelaySettings::with_namespace_key(DEFAULT_KEY_NAME, key.clone());
            settings.public = match args.public_ports.trim() {
                "off" => PublicSettings::off(),
                range => PublicSettings {
                    range: relay::config::parse_port_range(range)
                        .map_err(|e| failure(Kind::Config, format!("--public-ports: {e:#}")))?,
                    allow_privileged: true,
                    ..PublicSettings::default()
                },
            };
            (settings, Some(key))
        }
    };
    // As the file says, before the command line adds to it: what a reload compares with.
    let from_file = args.config.is_some().then(|| settings.clone());
    if settings.public.host.is_none() {
        settings.public.host = args.public_host.clone();
    }
    if let Some(url) = &args.cluster {
        let cluster =
            relay::ClusterSettings::new(url).map_err(|e| failure(Kind::Config, format!("--cluster: {e:#}")))?;
        settings.cluster = Some(match settings.cluster.take() {
            Some(configured) => relay::ClusterSettings { redis_url: cluster.redis_url, ..configured },
            None => cluster,
        });
    }
    let (tls, fingerprint) = match (&args.tls_cert, &args.tls_key, args.tls_self_signed) {
        (Some(cert), Some(key), _) => {
            let (config, print) = relay::tls::from_pem_files(cert, key)
                .map_err(|e| config_failure(e, "check --tls-cert and --tls-key"))?;
            (Some(config), Some(print))
        }
        (_, _, true) => {
            let names = vec![host.trim_matches(['[', ']']).to_owned(), "localhost".into(), "127.0.0.1".into()];
            let (config, print) = relay::tls::self_signed(&data_dir()?, &names)?;
            (Some(config), Some(print))
        }
        _ => (None, None),
    };
    let listener = TcpListener::bind(args.bind).await.map_err(|e| {
        failure(
            Kind::LocalPort,
            format!("cannot listen on {}: {e}; is another relay running? choose another with --bind", args.bind),
        )
    })?;
    let metrics_listener = bind_page(args.metrics, "metrics", "--metrics").await?;
    let dashboard_listener = bind_page(args.dashboard, "the dashboard", "--dashboard").await?;
    let declared = relay::bind_declared(&settings).map_err(|e| {
        failure(Kind::LocalPort, format!("{e:#}; free the port, or change it in the relay configuration"))
    })?;
    let port = listener.local_addr()?.port();
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    let base = format!("{scheme}://{host}:{port}");
    // A node bound to every interface is reached by other nodes' listeners as it says
    // it is reached (--public-host), unless the configuration names its URL.
    if let Some(cluster) = settings.cluster.as_mut()
        && cluster.url.is_none()
        && settings.external_url.is_none()
        && args.bind.ip().is_unspecified()
    {
        cluster.url = Some(base.clone());
    }
    println!("hyco relay listening on {base} (bound to {})", listener.local_addr()?);
    if let Some(print) = &fingerprint {
        println!("TLS certificate SHA-256 fingerprint: {print}");
    }
    let pin = fingerprint.as_ref().filter(|_| args.tls_self_signed);
    let loopback = args.bind.ip().is_loopback();
    if loopback {
        println!(
            "Bound to {}: only this machine can reach this relay. For other machines, bind to an address \
             they reach, e.g. --bind 0.0.0.0:{port} --public-host NAME.",
            args.bind.ip()
        );
    }
    if let Some(key) = &key {
        let emulator = if tls.is_none() { ";UseDevelopmentEmulator=true" } else { "" };
        if loopback {
            println!("A connection string for this machine (it holds the key; keep it private):");
        } else {
            println!("On another machine, paste this (it holds the key; keep it private):");
        }
        println!(
            "  export HYCO_CONNECTION_STRING='Endpoint=sb://{host}:{port}/;SharedAccessKeyName={DEFAULT_KEY_NAME};SharedAccessKey={}{emulator}'",
            key.expose()
        );
        if let Some(print) = pin {
            println!("  and pass --tls-fingerprint {print}");
        }
    } else if let Some(path) = &args.config {
        println!(
            "Clients need a key of a rule in {} or a token signed with one. To hand one out, run here \
             (with a profile holding the {DEFAULT_KEY_NAME} key):",
            path.display()
        );
        println!(
            "  hyco token HC --rights listen --ttl 30d --as-connection-string   # for a listener; send for a sender"
        );
        println!("and paste what it prints on the other machine as HYCO_CONNECTION_STRING.");
    }
    // The key this machine's profile holds: the throwaway relay's, or a configured root rule's.
    let profile_key = key.clone().map(|k| (DEFAULT_KEY_NAME.to_owned(), k)).or_else(|| root_rule(&settings));
    if !args.no_profile {
        match profile_key {
            Some((key_name, key)) => {
                let local_base = format!("{scheme}://{}:{port}", profile_host(&args, &host));
                write_profile(&args.profile_name, &local_base, &key_name, &key, pin.map(String::as_str))?;
            }
            None => println!(
                "No profile written: the configuration has no namespace-wide rule with the Manage right \
                 (add one with `hyco profile add`)."
            ),
        }
    }
    if args.config.is_none() {
        println!("Hybrid connections are created when a listener first asks for them.");
    }
    if let Some(cluster) = &settings.cluster {
        println!("Cluster node {}: listeners and senders shared with the other nodes through Redis.", cluster.node_id);
    }
    if settings.public.rules.as_ref().is_none_or(|r| !r.is_empty()) {
        let (first, last) = (settings.public.range.start(), settings.public.range.end());
        let ip = settings.public.bind.unwrap_or(args.bind.ip());
        println!(
            "Listeners may open public ports {first}-{last} on {ip} for anyone: hyco listen HC --to PORT --public"
        );
    }
    let metrics = Arc::new(relay::Metrics::new());
    // Scrapes and the status page go on through the drain period and stop when the relay has.
    let stop_pages = CancellationToken::new();
    let mut pages = Vec::new();
    if let Some(metrics_listener) = metrics_listener {
        println!("Prometheus metrics on http://{}/metrics", metrics_listener.local_addr()?);
        pages.push(tokio::spawn(relay::serve_metrics(metrics_listener, metrics.clone(), stop_pages.clone())));
    }
    if let Some(dashboard_listener) = dashboard_listener {
        let addr = dashboard_listener.local_addr()?;
        let access = relay::DashboardAccess::for_address(addr, secret_from_env(ENV_DASHBOARD_SECRET));
        let needs = if access.token_required() { " (needs a Manage token or HYCO_DASHBOARD_SECRET)" } else { "" };
        println!("Status page on http://{addr}/{needs}");
        let serving = relay::serve_dashboard(dashboard_listener, metrics.clone(), access, stop_pages.clone());
        pages.push(tokio::spawn(serving));
    }
    let reloads = reload_on_hangup(hangup, args.config.clone(), from_file, metrics.clone(), stop_pages.clone());
    pages.push(tokio::spawn(reloads));
    let result = relay::run_bound(listener, declared, settings, tls, shutdown, metrics).await;
    stop_pages.cancel();
    for page in pages {
        let _ = page.await;
    }
    result
}

/// `hyco serve` on SIGHUP: reads `--config` again and applies its rules and hybrid
/// connections to the running relay ([`relay::reload`]), saying what changed and what
/// only a restart applies; a file that cannot be read changes nothing. Without
/// `--config` there is nothing to read: said, and ignored. Until `stop`.
async fn reload_on_hangup(
    #[cfg(unix)] mut hangup: tokio::signal::unix::Signal,
    #[cfg(not(unix))] hangup: (),
    path: Option<PathBuf>,
    started: Option<RelaySettings>,
    metrics: Arc<relay::Metrics>,
    stop: CancellationToken,
) {
    #[cfg(unix)]
    {
        loop {
            tokio::select! {
                got = hangup.recv() => if got.is_none() { return },
                () = stop.cancelled() => return,
            }
            let (Some(path), Some(started)) = (&path, &started) else {
                info!("SIGHUP: nothing to reload (this relay runs without --config)");
                continue;
            };
            let new = match RelaySettings::from_file(path) {
                Ok(new) => new,
                Err(e) => {
                    warn!("reload: {e:#}; the relay goes on as it was");
                    continue;
                }
            };
            let Some(done) = relay::reload(&metrics, &new) else { continue };
            info!(
                "reloaded {}: {} rules; hybrid connections: {} added, {} kept, {} removed, {} removed once their \
                 listeners leave",
                path.display(),
                new.rules.len(),
                done.added,
                done.kept,
                done.removed,
                done.retiring
            );
            for name in &done.not_added {
                warn!("reload: hybrid connection '{name}' not added: it nests with one a listener created");
            }
            let later = started.restart_only(&new);
            if !later.is_empty() {
                warn!("reload: {} changed in {}: applied at the next restart", later.join(", "), path.display());
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (hangup, path, started, metrics);
        stop.cancelled().await;
    }
}

/// A configured relay's namespace-wide Manage rule for this machine's profile, the root
/// rule by its usual name first.
fn root_rule(settings: &RelaySettings) -> Option<(String, Secret)> {
    let manage = |r: &&relay::auth::Rule| r.rights.contains(&relay::auth::Right::Manage);
    let rules = &settings.rules;
    rules
        .iter()
        .filter(manage)
        .find(|r| r.name == DEFAULT_KEY_NAME)
        .or_else(|| rules.iter().find(manage))
        .map(|r| (r.name.clone(), r.key.clone()))
}

/// Writes (or keeps) the profile for this machine's clients and says which it did.
fn write_profile(name: &str, base: &str, key_name: &str, key: &Secret, pin: Option<&str>) -> anyhow::Result<()> {
    let path = profile::default_path()?;
    let fix = "fix the profile file's place (HYCO_CONFIG), or pass --no-profile";
    match profile::write_local_profile(&path, name, base, key_name, key, pin, true)
        .map_err(|e| config_failure(e, fix))?
    {
        profile::LocalProfile::Written { default: true } => println!(
            "Profile '{name}' written to {}: {base}, the default profile: hyco listen/connect on this machine \
             need no relay flags.",
            path.display()
        ),
        profile::LocalProfile::Written { default: false } => println!(
            "Profile '{name}' written to {}: {base}; use it with --profile {name} (or make it the default: \
             hyco profile default {name}).",
            path.display()
        ),
        profile::LocalProfile::Kept { endpoint } => println!(
            "Profile '{name}' in {} points at another relay ({endpoint}) and is left alone. For this relay, \
             start it with --profile-name NAME, or remove the old profile first (hyco profile remove {name}).",
            path.display()
        ),
    }
    Ok(())
}

/// Runs one entry of `hyco up`: a `listen` or a `connect`.
pub(crate) async fn run_entry(command: Command, stats: Arc<Stats>, shutdown: CancellationToken) -> anyhow::Result<()> {
    match command {
        Command::Listen(args) => listen(args, stats, shutdown).await,
        Command::Connect(args) => connect(args, stats, shutdown).await,
        _ => bail!("hyco up runs listen and connect only"),
    }
}

/// Resolves the relay and credential from flags, environment and profiles, with
/// `choose` the hybrid connection (the HC argument or the credential's `EntityPath`), and
/// the HTTP proxy from `--proxy` (`proxy`), the environment and the profile.
pub(crate) fn resolve_client<T>(
    args: &CredentialArgs,
    proxy: Option<&str>,
    token_command: Option<&str>,
    choose: impl FnOnce(&credentials::Resolved) -> Result<T, credentials::HcError>,
) -> anyhow::Result<(RelayClient, T)> {
    let resolved = credentials::resolve_relay(args)?;
    let chosen = choose(&resolved).map_err(|e| failure(Kind::Config, e.to_string()))?;
    info!(relay = %resolved.endpoint.ws_base(), source = %resolved.source, "relay");
    if !resolved.others.is_empty() {
        let others: Vec<String> = resolved.others.iter().map(|e| e.ws_base()).collect();
        info!("the relay's other endpoints: {}", others.join(", "));
    }
    let profile_proxy = resolved.proxy.as_ref().map(|p| p.expose());
    let proxies = Proxies::resolve(proxy, profile_proxy, |name| std::env::var(name).ok())
        .map_err(|e| failure(Kind::Config, e.to_string()))?;
    if let Some(p) = proxies.for_relay(resolved.endpoint.secure, &resolved.endpoint.host) {
        debug!(proxy = %p, from = proxies.source(), "relay connections go through an HTTP proxy");
    }
    let client = RelayClient::new(resolved.endpoint, resolved.credential, resolved.tls_fingerprint.as_deref())
        .map_err(|e| config_failure(e, "check the TLS settings"))?
        .with_others(resolved.others)
        .with_proxies(proxies)
        .with_token_command(token_command.map(str::to_owned).or(resolved.token_command));
    Ok((client, chosen))
}

async fn listen(args: ListenArgs, stats: Arc<Stats>, shutdown: CancellationToken) -> anyhow::Result<()> {
    let (mut client, hc) =
        resolve_client(&args.credentials, args.proxy.as_deref(), args.token_command.as_deref(), |r| {
            credentials::choose_hc(args.hc.as_deref(), r)
        })?;
    client.keepalive = keepalive(args.keepalive);
    let targets = match args.targets.is_empty() {
        true => Targets::default(),
        false => Targets::parse(&args.targets).map_err(|e| failure(Kind::Config, e.to_string()))?,
    };
    let mut settings = ListenSettings::new(hc, targets);
    settings.allow = Allowlist::parse(&args.allow).map_err(|e| failure(Kind::Config, format!("{e:#}")))?;
    settings.connections = usize::from(args.connections);
    settings.http = args.http;
    if args.http {
        eprintln!(
            "hyco: HTTP requests to {} reach {}",
            http_url(&client.endpoint, &settings.hc),
            args.targets.join(", ")
        );
    }
    settings.keep_path_prefix = args.keep_path_prefix;
    settings.inspect = inspector(&args).await?;
    settings.max_rendezvous = usize::from(args.max_rendezvous);
    settings.wait_for_relay = args.wait_for_relay;
    settings.azbridge = args.azbridge;
    settings.udp_idle = std::time::Duration::from_secs(args.udp_idle);
    settings.public = settings.targets.public_asks(&args.public).map_err(|e| failure(Kind::Config, e.to_string()))?;
    raise_open_file_limit();
    stats.show();
    listen::run(client, settings, stats, shutdown).await
}

/// The listener of a page of its own (metrics, the status page, the inspector) at `addr`,
/// if given; a port in use names the flag that moves it.
async fn bind_page(addr: Option<std::net::SocketAddr>, what: &str, flag: &str) -> anyhow::Result<Option<TcpListener>> {
    let Some(addr) = addr else { return Ok(None) };
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        failure(Kind::LocalPort, format!("cannot listen on {addr} for {what}: {e}; choose another with {flag}"))
    })?;
    Ok(Some(listener))
}

/// `--inspect ADDR`: the inspector's page bound, its limits checked; it says where it is.
async fn inspector(args: &ListenArgs) -> anyhow::Result<Option<Inspect>> {
    let Some(listener) = bind_page(args.inspect, "the inspector", "--inspect").await? else { return Ok(None) };
    let limits = InspectLimits { requests: args.inspect_requests, body_bytes: args.inspect_body_bytes };
    let inspect =
        Inspect::new(listener, limits, secret_from_env(ENV_INSPECT_SECRET)).map_err(|e| failure(Kind::Config, e))?;
    let needs = if inspect.needs_secret() { " (needs HYCO_INSPECT_SECRET)" } else { "" };
    println!("Inspector on http://{}/{needs}", inspect.addr());
    Ok(Some(inspect))
}

/// `--keepalive SECS`: 0 is never.
fn keepalive(secs: u64) -> Option<std::time::Duration> {
    (secs > 0).then(|| std::time::Duration::from_secs(secs))
}

async fn connect(args: ConnectArgs, stats: Arc<Stats>, shutdown: CancellationToken) -> anyhow::Result<()> {
    if args.stdio {
        let (mut client, (hc, suffix)) =
            resolve_client(&args.credentials, args.proxy.as_deref(), args.token_command.as_deref(), |r| {
                credentials::choose_connect(args.hc.as_deref(), args.target.as_deref(), r)
            })?;
        client.keepalive = keepalive(args.keepalive);
        let settings = ConnectSettings { hc, suffix, azbridge: args.azbridge_port.clone() };
        return connect::run_stdio(client, settings, stats, shutdown).await;
    }
    let (mut client, chosen) =
        resolve_client(&args.credentials, args.proxy.as_deref(), args.token_command.as_deref(), |r| {
            let locals =
                forward::Locals { bind: args.bind.as_deref(), specs: &args.forwards, socks: args.socks.as_deref() };
            Ok(forward::choose(args.hc.as_deref(), args.target.as_deref(), locals, r))
        })?;
    let mut forwards = chosen.map_err(|e| failure(Kind::Config, e))?;
    for f in &mut forwards {
        f.settings.azbridge = args.azbridge_port.clone();
    }
    client.keepalive = keepalive(args.keepalive);
    raise_open_file_limit();
    // An azbridge listener answers a preamble per tunnel, never a deferred start.
    let tunnels = if args.azbridge_port.is_some() { 0 } else { prewarm_tunnels(args.prewarm, &client.endpoint) };
    if args.prewarm.is_none() && tunnels == 0 && args.azbridge_port.is_none() {
        info!("prewarming is off against Azure Relay (--prewarm N turns it on)");
    }
    let udp = forwards.iter().any(|f| f.local.starts_with(crate::cli::UDP_BIND));
    if !udp && (args.udp_idle.is_some() || args.udp_sessions.is_some()) {
        bail!("--udp-idle and --udp-sessions are for a UDP forward (--bind udp:[HOST:]PORT, -L udp:PORT:NAME)");
    }
    if udp && args.azbridge_port.is_some() {
        bail!("--azbridge-port is for TCP forwards: hyco connect sends azbridge streams only");
    }
    let defaults = crate::client::datagram::UdpOptions::default();
    let udp = crate::client::datagram::UdpOptions {
        idle: args.udp_idle.map_or(defaults.idle, std::time::Duration::from_secs),
        sessions: args.udp_sessions.map_or(defaults.sessions, |n| n as usize),
        prewarm: tunnels,
    };
    let prewarm = Prewarm { tunnels, ..Prewarm::default() };
    let socks_auth = match &args.socks_user {
        None => None,
        Some(user) => {
            let password = secret_from_env(ENV_SOCKS_PASSWORD).ok_or_else(|| {
                failure(Kind::Config, format!("--socks-user needs the password in {ENV_SOCKS_PASSWORD}"))
            })?;
            if user.is_empty() || user.len() > 255 || password.expose().len() > 255 {
                bail!("a SOCKS5 user name and password are 1 to 255 bytes each (RFC 1929)");
            }
            Some(crate::client::socks::SocksAuth { user: user.clone(), password })
        }
    };
    let options = forward::Options { prewarm, bind_mode: args.bind_mode, udp, socks_auth };
    forward::run(client, forwards, options, stats, shutdown).await
}

/// How many tunnels `connect --bind` keeps prewarmed: `--prewarm N` when given; else none
/// against Azure Relay, where prewarming rests on what is not verified there (that the
/// relay returns the listener's chosen subprotocol and passes an empty binary frame) and
/// keeps that many connections churning per connector; else the default.
fn prewarm_tunnels(flag: Option<u8>, endpoint: &crate::connstr::Endpoint) -> usize {
    match flag {
        Some(n) => usize::from(n),
        None if endpoint.azure_domain().is_some() => 0,
        None => crate::client::prewarm::DEFAULT_TUNNELS,
    }
}

/// The public URL HTTP callers use for `hc` on the relay at `endpoint`: `https://` for a
/// TLS relay, `http://` for a plain one, the port only when not the scheme's default.
fn http_url(endpoint: &crate::connstr::Endpoint, hc: &str) -> String {
    let (scheme, default_port) = if endpoint.secure { ("https", 443) } else { ("http", 80) };
    let authority = if endpoint.port == default_port {
        endpoint.authority().trim_end_matches(&format!(":{default_port}")).to_owned()
    } else {
        endpoint.authority()
    };
    let path: Vec<String> = hc.split('/').map(crate::encoding::encode_component).collect();
    format!("{scheme}://{authority}/{}/", path.join("/"))
}

/// Echoes every byte back until the peer's EOF, then closes (the demo's default target).
async fn echo_service(listener: TcpListener, shutdown: CancellationToken) {
    while let Some((mut conn, _)) = crate::net::accept(&listener, &shutdown, "echo").await {
        tokio::spawn(async move {
            let (mut r, mut w) = conn.split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
        });
    }
}

async fn demo(args: DemoArgs, stats: Arc<Stats>, shutdown: CancellationToken) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    raise_open_file_limit();
    let key = Secret::new(base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>()));
    let relay_listener = TcpListener::bind("127.0.0.1:0").await?;
    let relay_addr = relay_listener.local_addr()?;
    let tasks = tokio_util::task::TaskTracker::new();
    // The relay stops last, so that the listener and connector say goodbye to it.
    let relay_stop = CancellationToken::new();
    let relay_task = tokio::spawn(relay::run(
        relay_listener,
        RelaySettings::with_namespace_key(DEFAULT_KEY_NAME, key.clone()),
        None,
        relay_stop.clone(),
    ));
    let echo = args.target.is_none();
    let target = match args.target {
        Some(t) => t,
        None => {
            let echo = TcpListener::bind("127.0.0.1:0").await?;
            let addr = echo.local_addr()?.to_string();
            tasks.spawn(echo_service(echo, shutdown.clone()));
            addr
        }
    };
    let endpoint = crate::connstr::parse_endpoint(&format!("ws://{relay_addr}"), false)?;
    let credential = crate::connstr::Credential::Key { name: DEFAULT_KEY_NAME.into(), key };
    let client = RelayClient::new(endpoint, credential, None)?;
    let local_addr = crate::cli::parse_bind(&args.bind).map_err(|e| failure(Kind::Config, e))?;
    let local = TcpListener::bind(local_addr).await.map_err(|e| {
        failure(Kind::LocalPort, format!("cannot listen on {local_addr}: {e}; choose another port with --bind"))
    })?;
    let local_addr = local.local_addr()?;
    let online = CancellationToken::new();
    let mut listen_settings = ListenSettings::new("demo", Targets::parse(&[&target])?);
    // The public-port path too (docs/protocol.md 10.2): visitors need no hyco at all.
    listen_settings.public = listen_settings.targets.public_asks(&[""])?;
    let mut public = stats.public.subscribe();
    let listen_task = tasks.spawn(listen::run_with_online(
        client.clone(),
        listen_settings,
        stats.clone(),
        shutdown.clone(),
        online.clone(),
    ));
    tokio::select! {
        () = online.cancelled() => {}
        r = listen_task => { r??; bail!("the listener stopped"); }
    }
    let public = public.wait_for(|p| !p.is_empty()).await?.first().cloned().unwrap_or_default();
    // After the listener is online, so that the first prewarmed tunnel finds it.
    tasks.spawn(connect::run_bind(
        client,
        ConnectSettings { hc: "demo".into(), suffix: None, azbridge: None },
        Prewarm::default(),
        local,
        stats.clone(),
        shutdown.clone(),
    ));
    println!("relay     ws://{relay_addr} (in this process, hybrid connection 'demo')");
    println!("listener  bridges to {target}");
    println!("connector {local_addr} -> relay -> listener -> {target}");
    println!("public    {public} -> relay -> listener -> {target} (any TCP client, no hyco needed)");
    // Prove both paths once, so a broken setup says so now rather than at first use.
    if echo {
        for (path, addr) in [("connector", local_addr.to_string()), ("public", public.clone())] {
            let started = std::time::Instant::now();
            let mut probe = tokio::net::TcpStream::connect(&addr).await?;
            probe.write_all(b"ping").await?;
            probe.shutdown().await?;
            let mut back = Vec::new();
            probe.read_to_end(&mut back).await?;
            anyhow::ensure!(back == b"ping", "the probe through {addr} came back as {back:?}");
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            println!("probe     4 bytes there and back through the {path} path in {ms:.1} ms");
        }
    }
    println!("ready: connect to {local_addr} or {public} (Ctrl-C to stop)");
    shutdown.cancelled().await;
    tasks.close();
    tasks.wait().await;
    relay_stop.cancel();
    relay_task.await??;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::filter::LevelFilter;

    #[test]
    fn prewarming_is_off_by_default_against_azure_only() {
        use crate::client::prewarm::DEFAULT_TUNNELS;
        let ep = |url: &str| crate::connstr::parse_endpoint(url, false).unwrap();
        for azure in ["sb://contoso.servicebus.windows.net", "sb://x.servicebus.chinacloudapi.cn"] {
            assert_eq!(prewarm_tunnels(None, &ep(azure)), 0, "{azure}");
            assert_eq!(prewarm_tunnels(Some(4), &ep(azure)), 4, "{azure}: --prewarm turns it on");
        }
        for other in ["ws://127.0.0.1:9400", "wss://relay.example.net", "sb://servicebus.windows.net.evil.net"] {
            assert_eq!(prewarm_tunnels(None, &ep(other)), DEFAULT_TUNNELS, "{other}");
            assert_eq!(prewarm_tunnels(Some(0), &ep(other)), 0, "{other}");
        }
    }

    #[test]
    fn the_log_filter_is_the_users_and_the_cap_holds_whatever_it_says() {
        assert_eq!(log_filter("info", None).max_level_hint(), Some(LevelFilter::INFO));
        assert_eq!(log_filter("debug", None).max_level_hint(), Some(LevelFilter::DEBUG));
        assert_eq!(log_filter("info", Some("hyco=trace")).to_string(), "hyco=trace");
        assert_eq!(log_filter("info", Some("not a [filter")).to_string(), log_filter("info", None).to_string());

        // The cap drops the WebSocket library's trace, and nothing else.
        use tracing::callsite::Identifier;
        use tracing::{Level, Metadata, field::FieldSet, metadata::Kind};
        struct Site;
        impl tracing::Callsite for Site {
            fn set_interest(&self, _: tracing::subscriber::Interest) {}
            fn metadata(&self) -> &Metadata<'_> {
                unreachable!()
            }
        }
        static SITE: Site = Site;
        let meta = |target: &'static str, level: Level| {
            Metadata::new("e", target, level, None, None, None, FieldSet::new(&[], Identifier(&SITE)), Kind::EVENT)
        };
        for target in ["tungstenite", "tungstenite::protocol", "tungstenite::protocol::frame"] {
            assert!(!below_secret_level(&meta(target, Level::TRACE)), "{target}");
            assert!(below_secret_level(&meta(target, Level::DEBUG)), "{target}");
        }
        for target in ["hyco", "hyco::relay", "rustls", "tokio_tungstenite", "tungstenitex"] {
            assert!(below_secret_level(&meta(target, Level::TRACE)), "{target}");
        }
    }
}
