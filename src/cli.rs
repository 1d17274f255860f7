//! The command line, as clap definitions only: no behaviour here. It also feeds the
//! generated completions and man pages.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::client::inspect::{DEFAULT_INSPECT_BODY_BYTES, DEFAULT_INSPECT_REQUESTS};
use crate::client::listen::{DEFAULT_MAX_RENDEZVOUS, MAX_RENDEZVOUS};

/// Reach a TCP port behind NAT through an Azure Relay Hybrid Connections relay, or run
/// that relay yourself.
#[derive(Debug, Parser)]
#[command(name = "hyco", version, propagate_version = true, max_term_width = 100,
          after_help = GLOBAL_NOTE, after_long_help = TOP_LONG_HELP)]
pub struct Cli {
    /// More log output (repeat for more); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = GLOBAL, hide_short_help = true)]
    pub verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose", help_heading = GLOBAL, hide_short_help = true)]
    pub quiet: bool,
    /// Log line format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, help_heading = GLOBAL,
          hide_short_help = true)]
    pub log_format: LogFormat,
    /// Worker threads. Default: one per core for `serve` and `demo`, one for the rest
    /// (a tunnel needs little CPU, and one thread wakes faster than several).
    #[arg(long, global = true, env = "HYCO_THREADS", value_name = "N", help_heading = GLOBAL, hide_short_help = true,
          value_parser = clap::value_parser!(u16).range(1..=MAX_THREADS))]
    pub threads: Option<u16>,
    #[command(subcommand)]
    pub command: Command,
}

/// The most worker threads `--threads` allows.
pub(crate) const MAX_THREADS: i64 = 1024;

/// The heading the options every subcommand takes go under. `-h` leaves them out (they
/// would repeat in every subcommand's summary); `--help` shows them under this heading.
const GLOBAL: &str = "Global options (any subcommand, --help lists them)";

/// What `hyco -h` says about the options it leaves out.
const GLOBAL_NOTE: &str = "\
Global options, before or after the subcommand: -v/--verbose, -q/--quiet, --log-format, --threads N
(`hyco --help` describes them, with the environment variables and exit codes).";

/// `hyco --help`'s tail and the man page's: environment, then exit codes (see
/// `crate::error::Kind`).
const TOP_LONG_HELP: &str = concat!(
    "Environment:\n",
    "  HYCO_CONNECTION_STRING  a connection string (beats HYCO_PROFILE and the default profile)\n",
    "  HYCO_PROFILE            the profile to use instead of the default one\n",
    "  HYCO_CONFIG             the profile file (default ~/.config/hyco/config.toml)\n",
    "  HYCO_DATA_DIR           where `serve` keeps its generated key and certificate\n",
    "                          (default ~/.local/share/hyco)\n",
    "  HYCO_THREADS            worker threads (--threads)\n",
    "  RUST_LOG                log filter (overrides -v and -q)\n",
    "  HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY\n",
    "                          HTTP proxy to wss:// and ws:// relays, and hosts reached directly\n",
    "                          (listen and connect; --proxy beats them)\n",
    "\n",
    "Exit status:\n",
    "  0  success\n",
    "  1  any other failure (for example a tunnel that broke in --stdio mode)\n",
    "  2  usage error (unknown flag, missing argument)\n",
    "  3  configuration: bad connection string, profile, config file, certificate file or flag value\n",
    "  4  the relay cannot be reached: refused, timeout, TLS failure, certificate mismatch, or an\n",
    "     HTTP proxy that failed or rejected the tunnel\n",
    "  5  the relay refused the credentials (401) or their rights (403), or the token expired\n",
    "  6  not found (404): the hybrid connection does not exist, or no listener is online\n",
    "  7  a local address could not be bound (port or socket in use, a file in the way, no permission)\n",
    "  8  the listener refused the connection (unknown target, target refused)\n",
    "  9  the relay refused what was asked of it: a public port that is taken or none free, a name\n",
    "     that nests with another hybrid connection's (409), or a relay without public ports"
);

/// The environment a command that finds a relay reads, for its `--help`.
const CLIENT_ENV: &str = "\
Environment: HYCO_CONNECTION_STRING, HYCO_PROFILE, HYCO_CONFIG (flags beat them; `hyco --help` says more).";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a Hybrid Connections relay (Azure-compatible). SIGHUP reads --config again
    /// (rules, keys and hybrid connections), keeping everyone connected.
    #[command(
        after_help = "Environment: HYCO_DATA_DIR (generated key and certificate), HYCO_CONFIG (the profile written)."
    )]
    Serve(ServeArgs),
    /// Accept connections for a hybrid connection and bridge them to local TCP targets.
    #[command(after_help = CLIENT_ENV)]
    Listen(ListenArgs),
    /// Bridge local TCP or Unix-socket connections (or stdin/stdout, or SOCKS5 clients) through
    /// the relay to a listener.
    #[command(after_help = CLIENT_ENV)]
    Connect(ConnectArgs),
    /// Run a machine's whole set of listeners and connectors from one file (`[[listen]]`
    /// and `[[connect]]` tables of their flags), each retried on its own when it fails;
    /// SIGHUP reads the file again (changed entries restart, the others keep running).
    #[command(after_help = UP_HELP)]
    Up(UpArgs),
    /// Run a relay, a listener and a connector in one process: a local port that reaches
    /// a target through the relay, with no account and no setup.
    Demo(DemoArgs),
    /// Manage the profiles that hold relay endpoints and keys.
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// Mint a SAS token for one hybrid connection, to hand out instead of a key.
    #[command(after_help = CLIENT_ENV)]
    Token(TokenArgs),
    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// Add or replace a profile. Keys and tokens are read from a file or stdin (`-`), never
    /// from the command line, so they stay out of shell history and `ps`.
    #[command(group(clap::ArgGroup::new("source").required(true).args(["endpoint", "connection_string_file"])))]
    Add(ProfileAddArgs),
    /// List profiles; `*` marks the default.
    List {
        /// Print the names only, one a line (for shell completion).
        #[arg(long, hide = true)]
        names: bool,
    },
    /// Show a profile, keys masked.
    Show {
        /// Profile name (`hyco profile list` shows them).
        #[arg(value_name = "PROFILE")]
        name: String,
        /// Print keys and tokens in full.
        #[arg(long)]
        show_secret: bool,
    },
    /// Remove a profile.
    Remove {
        /// Profile name (`hyco profile list` shows them).
        #[arg(value_name = "PROFILE")]
        name: String,
    },
    /// Make a profile the default.
    Default {
        /// Profile name (`hyco profile list` shows them).
        #[arg(value_name = "PROFILE")]
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct ProfileAddArgs {
    /// Profile name (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// Relay endpoint (`sb://ns.servicebus.windows.net`, `ws://host:port`, `wss://host:port`).
    /// Repeat it (or separate with commas) for the nodes of one relay.
    #[arg(long, value_name = "URL")]
    pub endpoint: Vec<String>,
    /// Key name (SAS rule); the key comes from --key-file.
    #[arg(long, value_name = "NAME", requires = "key_file", requires = "endpoint")]
    pub key_name: Option<String>,
    /// File holding the key, or `-` for stdin.
    #[arg(long, value_name = "FILE", requires = "key_name")]
    pub key_file: Option<PathBuf>,
    /// File holding a SAS token (instead of a key), or `-` for stdin.
    #[arg(long, value_name = "FILE", requires = "endpoint", conflicts_with = "key_file")]
    pub token_file: Option<PathBuf>,
    /// File holding a connection string, or `-` for stdin.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["endpoint", "key_file", "token_file"])]
    pub connection_string_file: Option<PathBuf>,
    /// SHA-256 fingerprint of a self-signed relay certificate to trust.
    #[arg(long, value_name = "HEX")]
    pub tls_fingerprint: Option<String>,
    /// Make it the default profile.
    #[arg(long)]
    pub default: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TokenRights {
    /// Send only: a `hyco serve` relay's derived `hyco-send` rule.
    Send,
    /// Listen only: a `hyco serve` relay's derived `hyco-listen` rule.
    Listen,
    /// Whatever the signing key's own rule grants (a relay's root key: everything; an
    /// Azure policy's key: that policy's rights).
    Key,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Hybrid connection the token is for (its audience); default: the connection
    /// string's EntityPath.
    #[arg(conflicts_with = "namespace")]
    pub hc: Option<String>,
    /// A token for the whole namespace (every hybrid connection), e.g. a Manage token for
    /// a relay's status page (`--rights key` with the root key).
    #[arg(long, conflicts_with = "as_connection_string")]
    pub namespace: bool,
    /// Lifetime: seconds, or a number with s, m, h or d (`90s`, `15m`, `1h`, `7d`).
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub ttl: std::time::Duration,
    /// What the token may do. `send` and `listen` sign with a `hyco serve` relay's
    /// Send-only or Listen-only rule, derived from its root key. `key` signs with the key
    /// as it is and carries all its rule grants: with Azure, use the key of a policy that
    /// grants only what you mean to hand out.
    #[arg(long, value_enum, required = true)]
    pub rights: TokenRights,
    /// Print a connection string (endpoint, token, hybrid connection) instead of the token.
    #[arg(long)]
    pub as_connection_string: bool,
    #[command(flatten)]
    pub credentials: CredentialArgs,
}

/// Parses `90`, `90s`, `15m`, `1h`, `7d`.
pub(crate) fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let (digits, unit) =
        text.trim().split_at(text.trim().find(|c: char| !c.is_ascii_digit()).unwrap_or(text.trim().len()));
    let n: u64 = digits.parse().map_err(|_| format!("{text:?} is not a duration like 90s, 15m, 1h or 7d"))?;
    let secs = match unit {
        "" | "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86_400),
        _ => None,
    };
    match secs {
        Some(s) if s > 0 && s <= 10 * 365 * 86_400 => Ok(std::time::Duration::from_secs(s)),
        _ => Err(format!("{text:?} is not a duration between 1s and 10 years (90s, 15m, 1h, 7d)")),
    }
}

/// `hyco up --help`'s example.
const UP_HELP: &str = "\
Example up.toml (keys are the commands' flags without --; keys and connection strings stay in profiles):
  profile = \"home\"
  [[listen]]
  hc = \"box\"
  to = [\"ssh=22\", \"web=8080\", \"dns=udp://127.0.0.1:53\"]
  [[connect]]
  hc = \"office\"
  forward = [\"2222:ssh\", \"udp:5353:dns\"]";

#[derive(Debug, Args)]
pub struct UpArgs {
    /// The file (default: up.toml in the config directory, ~/.config/hyco/up.toml on Linux).
    pub file: Option<PathBuf>,
    /// Read the file, print each entry as the command it runs, and exit.
    #[arg(long)]
    pub check: bool,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where tunnelled connections go (default: a built-in echo service).
    #[arg(long = "to", value_name = "HOST:PORT")]
    pub target: Option<String>,
    /// Local port that reaches the target through the relay: `PORT` or `HOST:PORT`.
    #[arg(long, default_value = "127.0.0.1:9401", value_name = "[HOST:]PORT", value_parser = bind_text)]
    pub bind: String,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to listen on: `PORT` (on 127.0.0.1, this machine only) or
    /// `HOST:PORT` (`0.0.0.0:9400` for every interface).
    #[arg(long, default_value = "127.0.0.1:9400", value_name = "[HOST:]PORT", value_parser = parse_bind)]
    pub bind: SocketAddr,
    /// Relay configuration (TOML: rules, hybrid connections, limits). Without it, a
    /// throwaway relay with a generated key that creates hybrid connections on first listen.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// TLS certificate chain (PEM); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key", conflicts_with = "tls_self_signed")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve TLS with a self-signed certificate (kept in the data directory) and print
    /// its SHA-256 fingerprint for clients to pin.
    #[arg(long)]
    pub tls_self_signed: bool,
    /// Host name other machines use to reach this relay, for the printed connection
    /// string and the self-signed certificate (default: the bind address, or this
    /// machine's host name when bound to all interfaces).
    #[arg(long, value_name = "HOST")]
    pub public_host: Option<String>,
    /// Without --config: the ports listeners may open for anyone (`hyco listen --public`),
    /// `FIRST-LAST`, or `off`. They are bound on the --bind address. With --config,
    /// `[public_ports]` in the file says.
    #[arg(long, value_name = "FIRST-LAST|off", default_value = "20000-29999", conflicts_with = "config")]
    pub public_ports: String,
    /// Do not write a profile for clients on this machine.
    #[arg(long)]
    pub no_profile: bool,
    /// The profile to write for clients on this machine. An existing profile of that name
    /// that points at another relay is left alone (serve says so).
    #[arg(long, value_name = "NAME", default_value = "local", conflicts_with = "no_profile")]
    pub profile_name: String,
    /// Serve Prometheus metrics at http://HOST:PORT/metrics (plain HTTP, no auth: keep it
    /// on loopback or a private network), e.g. 127.0.0.1:9464.
    #[arg(long, value_name = "[HOST:]PORT", value_parser = parse_bind)]
    pub metrics: Option<SocketAddr>,
    /// Serve the relay's status page at http://HOST:PORT/ (JSON at /api/status), e.g.
    /// 127.0.0.1:8470. Open on loopback; on any other address each request needs a
    /// Manage-rights SAS token of the namespace, or HYCO_DASHBOARD_SECRET, in Authorization.
    #[arg(long, value_name = "[HOST:]PORT", value_parser = parse_bind)]
    pub dashboard: Option<SocketAddr>,
    /// Be one node of a relay of several that share listeners through this Redis
    /// (`redis://HOST:6379/0`, `rediss://` for TLS; no password in it: use `[cluster]
    /// password_file`). Overrides `[cluster] redis` in --config.
    #[arg(long, value_name = "REDIS_URL")]
    pub cluster: Option<String>,
}

/// Where the relay is and how to authenticate: flags beat the environment, which beats
/// the default profile.
#[derive(Debug, Args, Default)]
pub struct CredentialArgs {
    /// Profile name in the config file (HYCO_PROFILE, when no flag names the relay).
    #[arg(long, value_name = "PROFILE")]
    pub profile: Option<String>,
    /// Connection string (`Endpoint=sb://…;SharedAccessKeyName=…;SharedAccessKey=…`).
    /// Prefer HYCO_CONNECTION_STRING or a profile: arguments are visible to other users.
    #[arg(long, value_name = "STRING", hide_env_values = true)]
    pub connection_string: Option<String>,
    /// Relay endpoint (`sb://ns.servicebus.windows.net`, `ws://host:port`, `wss://host:port`).
    /// Repeat it (or separate with commas) for the nodes of one relay: each connection
    /// tries them in random order, the next when one cannot be reached.
    #[arg(long, value_name = "URL")]
    pub endpoint: Vec<String>,
    /// Key name (SAS rule).
    #[arg(long, value_name = "NAME", requires = "key")]
    pub key_name: Option<String>,
    /// Key. Prefer a profile: arguments are visible to other users.
    #[arg(long, value_name = "KEY", requires = "key_name", hide_env_values = true)]
    pub key: Option<String>,
    /// SHA-256 fingerprint of a self-signed relay certificate to trust.
    #[arg(long, value_name = "HEX")]
    pub tls_fingerprint: Option<String>,
}

#[derive(Debug, Args)]
pub struct ListenArgs {
    /// Hybrid connection name; default: the connection string's EntityPath.
    pub hc: Option<String>,
    /// Target for accepted connections: `PORT` (on 127.0.0.1), `host:port`, a Unix socket
    /// `unix:PATH`, or `name=host:port` (`name=unix:PATH`) chosen by the sender's path
    /// (`hyco connect HC/name`); `udp://host:port` for a UDP service (reached by `hyco
    /// connect --bind udp:…` or a public UDP port). Repeatable. Optional with --allow.
    #[arg(long = "to", value_name = "[NAME=]HOST:PORT", required_unless_present = "allow")]
    pub targets: Vec<String>,
    /// Let senders (`hyco connect HC --socks`) reach destinations this rule matches:
    /// `CIDR:PORTS`, `IP:PORTS`, `HOST:PORTS` or `*.DOMAIN:PORTS` (sub-domains only), PORTS
    /// `N`, `N-M` or `*`, IPv6 in brackets. A name rule lets the name reach what it
    /// resolves to; an address rule is checked against the resolved addresses. Repeatable;
    /// default: no dynamic destinations at all.
    #[arg(long, value_name = "HOST:PORTS")]
    pub allow: Vec<String>,
    /// Control channels to keep open, for availability (1-25).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=25))]
    pub connections: u8,
    /// Also answer plain HTTP requests for the hybrid connection (`https://relay/HC/…`) by
    /// calling the target over HTTP/1.1, with `/HC` taken off the path. WebSocket senders
    /// keep reaching the same target. Without it, HTTP requests get 501.
    #[arg(long)]
    pub http: bool,
    /// With --http: pass the path on as the client sent it, `/HC` included.
    #[arg(long, requires = "http")]
    pub keep_path_prefix: bool,
    /// With --http: serve a request inspector at http://HOST:PORT/ (JSON at /api/requests):
    /// the last requests with their headers and bodies (credentials masked), and replay.
    /// Open on loopback; on any other address each request needs HYCO_INSPECT_SECRET in
    /// Authorization, and without it listen exits.
    #[arg(long, value_name = "[HOST:]PORT", value_parser = parse_bind, requires = "http")]
    pub inspect: Option<SocketAddr>,
    /// With --inspect: how many requests the inspector keeps (at most 10000).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_INSPECT_REQUESTS, requires = "inspect")]
    pub inspect_requests: usize,
    /// With --inspect: bytes kept of each request and response body (at most 1048576; 0
    /// keeps none). A request whose body was not kept whole cannot be replayed.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_INSPECT_BODY_BYTES, requires = "inspect")]
    pub inspect_body_bytes: usize,
    /// Rendezvous (accepted connections being opened, HTTP requests being answered) to
    /// work on at once; the relay's accepts beyond it are dropped.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_RENDEZVOUS as u16,
          value_parser = clap::value_parser!(u16).range(1..=MAX_RENDEZVOUS as i64))]
    pub max_rendezvous: u16,
    /// Ask the relay (`hyco serve`) for a public port anyone reaches with a plain TCP or
    /// UDP client: `--public` every target on any free port, `--public PORT` the unnamed
    /// (or only) target, `--public NAME` or `--public NAME=PORT` a named one. A `udp://`
    /// target gets a UDP port. Prints `reachable at HOST:PORT`; the port comes back after
    /// a reconnect. Repeatable. Azure Relay has no public ports.
    #[arg(long, value_name = "[NAME=]PORT", num_args = 0..=1, default_missing_value = "", action = clap::ArgAction::Append)]
    pub public: Vec<String>,
    /// Seconds a tunnel may stay silent before hyco pings through it, so that relays and
    /// firewalls do not drop an idle tunnel (Azure Relay drops idle connections after about
    /// 4 minutes); 0: never.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_KEEPALIVE_SECS)]
    pub keepalive: u64,
    /// Senders are azbridge (Azure Relay Bridge `-L`): read each one's preamble, pick the
    /// target by its port name (`--to NAME=…`; with one target, any port number), and
    /// answer it as an azbridge listener does.
    #[arg(long)]
    pub azbridge: bool,
    /// When the relay cannot be reached at startup, retry with backoff instead of exiting
    /// (exit code 4): for a service that may start before the network is up. Rejected
    /// credentials and a missing hybrid connection still exit at startup (once online, the
    /// listener retries through them).
    #[arg(long)]
    pub wait_for_relay: bool,
    /// Seconds a UDP session from `hyco connect --bind udp:…` may go without a datagram
    /// either way before the listener ends it (a public port's sessions have the relay's).
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_UDP_IDLE_SECS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub udp_idle: u64,
    /// HTTP proxy to the relay: `http://[USER:PASS@]HOST:PORT`, or `none` to go direct
    /// whatever HTTPS_PROXY, HTTP_PROXY, ALL_PROXY or the profile's `proxy` say. NO_PROXY
    /// still exempts hosts. Targets are always reached directly.
    #[arg(long, value_name = "URL", hide_env_values = true)]
    pub proxy: Option<String>,
    /// Shell command that prints a JWT (Microsoft Entra ID, managed identity), run through
    /// `sh -c` at startup and before the token expires, e.g. `az account get-access-token
    /// --resource https://relay.azure.net/ --query accessToken -o tsv`. Replaces the key or
    /// token; give the relay with --endpoint or a profile.
    #[arg(long, value_name = "CMD")]
    pub token_command: Option<String>,
    #[command(flatten)]
    pub credentials: CredentialArgs,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("mode").required(true).multiple(true).args(["bind", "stdio", "forwards", "socks"])))]
pub struct ConnectArgs {
    /// Hybrid connection, optionally with a target name: `HC` or `HC/NAME`; default: the
    /// connection string's EntityPath.
    pub hc: Option<String>,
    /// Take the whole of HC as the hybrid connection name (for names holding `/`) and
    /// use this target name.
    #[arg(long, value_name = "NAME")]
    pub target: Option<String>,
    /// Where to accept local connections: `PORT` (on 127.0.0.1), `HOST:PORT`, a Unix
    /// socket `unix:PATH` (created; a stale socket there is replaced; removed on exit), or
    /// with `udp:` (`udp:5353`, `udp:0.0.0.0:5353`) a UDP port, each peer address a session
    /// with a tunnel of its own, to a listener's `udp://` target.
    #[arg(long, value_name = "[udp:][HOST:]PORT|unix:PATH", value_parser = local_bind_text)]
    pub bind: Option<String>,
    /// For a Unix socket (--bind or -L unix:PATH): the socket's permissions, in octal (default
    /// 0600: its owner only; 0660 lets its group in).
    #[arg(long, value_name = "OCTAL", requires = "bind", value_parser = parse_mode)]
    pub bind_mode: Option<u32>,
    /// Bridge stdin/stdout instead (for `ssh -o ProxyCommand='hyco connect HC/ssh --stdio'`).
    #[arg(long, conflicts_with_all = ["bind", "forwards", "socks"])]
    pub stdio: bool,
    /// Forward a local address to a target, as ssh -L does: `LOCAL:REMOTE`, LOCAL as
    /// --bind takes it, REMOTE a target name of HC (`9000:web`, `127.0.0.1:2222:ssh`,
    /// `udp:5353:dns`), or `HC` / `HC/NAME` when no HC is given (`9000:home/web`).
    /// Repeatable: each forward runs beside the others, with its own tunnels and counters.
    #[arg(short = 'L', long = "forward", value_name = "LOCAL:REMOTE", conflicts_with = "target")]
    pub forwards: Vec<String>,
    /// Serve SOCKS5 here (as `ssh -D`; beside --bind and -L if given): each CONNECT reaches its
    /// destination through the listener, which allows it or not (`hyco listen --allow`). No
    /// authentication unless --socks-user: bind to loopback or a trusted network. `PORT` (on
    /// 127.0.0.1) or `HOST:PORT`.
    #[arg(long, short = 'D', value_name = "[HOST:]PORT", value_parser = bind_text,
          conflicts_with_all = ["prewarm", "azbridge_port"])]
    pub socks: Option<String>,
    /// With --socks: clients must give this user name and the password in
    /// HYCO_SOCKS_PASSWORD (RFC 1929); those that offer no user name and password are
    /// turned away.
    #[arg(long, value_name = "NAME", requires = "socks")]
    pub socks_user: Option<String>,
    /// With --bind and -L: tunnels to keep open ahead of need, so that a new connection does
    /// not wait for the rendezvous (0 turns this off). A hyco listener reaches the target only
    /// when a tunnel is used; with another listener this turns itself off. Default: 8, and 0
    /// against Azure Relay (*.servicebus.windows.net and its other clouds), where it is
    /// unverified.
    #[arg(long, value_name = "N", conflicts_with = "stdio",
          value_parser = clap::value_parser!(u8).range(0..=MAX_PREWARM))]
    pub prewarm: Option<u8>,
    /// Seconds a tunnel may stay silent before hyco pings through it, so that relays and
    /// firewalls do not drop an idle tunnel (Azure Relay drops idle connections after about
    /// 4 minutes); 0: never.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_KEEPALIVE_SECS)]
    pub keepalive: u64,
    /// The listener is azbridge (Azure Relay Bridge `-T`): start each tunnel with its
    /// preamble for this port name (its `-T` name, by default the target's port number).
    /// No prewarming.
    #[arg(long, value_name = "NAME")]
    pub azbridge_port: Option<String>,
    /// For a UDP forward (udp:… with --bind or -L): seconds a session may go without a datagram
    /// either way before it ends (its peer's next datagram opens a new one). Default: 60.
    #[arg(long, value_name = "SECS", conflicts_with = "stdio", value_parser = clap::value_parser!(u64).range(1..))]
    pub udp_idle: Option<u64>,
    /// For a UDP forward (udp:… with --bind or -L): sessions (local peer addresses) at once; a
    /// new peer's datagrams beyond are dropped, counted and logged. Default: 1024.
    #[arg(long, value_name = "N", conflicts_with = "stdio",
          value_parser = clap::value_parser!(u32).range(1..=MAX_UDP_SESSIONS))]
    pub udp_sessions: Option<u32>,
    /// HTTP proxy to the relay: `http://[USER:PASS@]HOST:PORT`, or `none` to go direct
    /// whatever HTTPS_PROXY, HTTP_PROXY, ALL_PROXY or the profile's `proxy` say. NO_PROXY
    /// still exempts hosts. Targets are always reached directly.
    #[arg(long, value_name = "URL", hide_env_values = true)]
    pub proxy: Option<String>,
    /// Shell command that prints a JWT (Microsoft Entra ID, managed identity), run through
    /// `sh -c` at startup and before the token expires, e.g. `az account get-access-token
    /// --resource https://relay.azure.net/ --query accessToken -o tsv`. Replaces the key or
    /// token; give the relay with --endpoint or a profile.
    #[arg(long, value_name = "CMD")]
    pub token_command: Option<String>,
    #[command(flatten)]
    pub credentials: CredentialArgs,
}

const DEFAULT_KEEPALIVE_SECS: u64 = crate::ws::pump::DEFAULT_KEEPALIVE.as_secs();
const MAX_PREWARM: i64 = crate::client::prewarm::MAX_TUNNELS as i64;
const DEFAULT_UDP_IDLE_SECS: u64 = crate::client::datagram::DEFAULT_IDLE.as_secs();
const MAX_UDP_SESSIONS: i64 = crate::client::datagram::MAX_SESSIONS as i64;
/// The prefix of a `--bind` value for a UDP port.
pub const UDP_BIND: &str = "udp:";

/// Parses an address to bind, the same for every `--bind` (and `--metrics`): `PORT`
/// (on 127.0.0.1), `IP:PORT`, `[IPv6]:PORT` or `NAME:PORT` (a name is resolved, its
/// first IPv4 address preferred: `localhost:9000` is 127.0.0.1:9000). Port 0 picks a free
/// port.
pub fn parse_bind(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    let usage = || format!("{text:?} is not PORT or HOST:PORT (9000, 127.0.0.1:9000, 0.0.0.0:9000, localhost:9000)");
    let (host, port) = match text.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() => (Some(host), port),
        Some(_) => return Err(usage()),
        None => (None, text),
    };
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(usage());
    }
    let port: u16 = match port.parse::<u64>() {
        Ok(p) if p <= u64::from(u16::MAX) => p as u16,
        _ => return Err(format!("port {port} is out of range: ports go from 1 to 65535 (0 picks a free one)")),
    };
    let Some(host) = host else { return Ok(SocketAddr::from(([127, 0, 0, 1], port))) };
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse::<std::net::Ipv6Addr>().map(|ip| SocketAddr::from((ip, port))).map_err(|_| usage());
    }
    // An IPv6 address takes brackets: `::1:9` could be either.
    if host.contains([':', '[', ']']) || host.contains(char::is_whitespace) {
        return Err(usage());
    }
    let bare = host;
    if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    use std::net::ToSocketAddrs;
    let addrs: Vec<SocketAddr> = (bare, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot bind {text:?}: the name {bare:?} does not resolve ({e})"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("cannot bind {text:?}: the name {bare:?} resolves to no address"))
}

/// Checks a `--bind` value that the command keeps as text.
fn bind_text(text: &str) -> Result<String, String> {
    parse_bind(text).map(|_| text.to_owned())
}

/// Checks a `connect --bind` value: an address as [`parse_bind`] takes, the same with
/// `udp:` before it, or `unix:PATH`.
fn local_bind_text(text: &str) -> Result<String, String> {
    match text.strip_prefix(crate::local::UNIX_SCHEME) {
        Some("") => Err("unix: needs a path (unix:/run/user/1000/hyco.sock)".to_owned()),
        Some(_) => Ok(text.to_owned()),
        None => parse_bind(text.strip_prefix(UDP_BIND).unwrap_or(text)).map(|_| text.to_owned()),
    }
}

/// Parses a file mode in octal (`0600`, `660`), at most `0777`.
fn parse_mode(text: &str) -> Result<u32, String> {
    match u32::from_str_radix(text, 8) {
        Ok(mode) if mode <= 0o777 => Ok(mode),
        _ => Err(format!("{text:?} is not a mode in octal from 0 to 0777 (e.g. 0600)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn threads_and_prewarm_have_limits() {
        let parse = |args: &[&str]| Cli::try_parse_from([&["hyco"], args].concat());
        assert_eq!(parse(&["--threads", "1", "serve"]).unwrap().threads, Some(1));
        assert_eq!(parse(&["--threads", &MAX_THREADS.to_string(), "serve"]).unwrap().threads, Some(1024));
        for bad in ["0", &(MAX_THREADS + 1).to_string()] {
            assert!(parse(&["--threads", bad, "serve"]).is_err(), "--threads {bad}");
        }
        let connect = |n: &str| parse(&["connect", "hc", "--bind", "9000", "--prewarm", n]);
        assert!(connect(&MAX_PREWARM.to_string()).is_ok());
        let Command::Connect(args) = parse(&["connect", "hc", "--bind", "9000"]).unwrap().command else { panic!() };
        assert_eq!(args.prewarm, None, "not given: the relay decides the default");
        assert!(connect(&(MAX_PREWARM + 1).to_string()).is_err());
        assert!(parse(&["connect", "hc", "--stdio", "--prewarm", "2"]).is_err(), "prewarming is for --bind");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("15m").unwrap().as_secs(), 900);
        assert_eq!(parse_duration("1h").unwrap().as_secs(), 3600);
        assert_eq!(parse_duration("7d").unwrap().as_secs(), 604_800);
        for bad in ["", "0", "1w", "h", "-1h", "99999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bind_forms() {
        assert_eq!(parse_bind("9000").unwrap().to_string(), "127.0.0.1:9000");
        assert_eq!(parse_bind("0.0.0.0:22").unwrap().to_string(), "0.0.0.0:22");
        assert_eq!(parse_bind("localhost:9013").unwrap().to_string(), "127.0.0.1:9013");
        assert_eq!(parse_bind("[::1]:9").unwrap().to_string(), "[::1]:9");
        assert_eq!(parse_bind("::1:9").ok(), None, "IPv6 takes brackets");
        assert_eq!(parse_bind("127.0.0.1:0").unwrap().port(), 0);
        for bad in ["x", "", ":9", "h:", "1.2.3.4:x", "a b:1"] {
            assert!(parse_bind(bad).is_err(), "{bad:?}");
        }
        let err = parse_bind("99999").unwrap_err();
        assert!(err.contains("port 99999 is out of range"), "{err}");
        assert!(parse_bind("0.0.0.0:70000").unwrap_err().contains("out of range"));
        // The same syntax for every --bind.
        let parse = |args: &[&str]| Cli::try_parse_from([&["hyco"], args].concat());
        let Command::Serve(serve) = parse(&["serve", "--bind", "9401"]).unwrap().command else { panic!() };
        assert_eq!(serve.bind.to_string(), "127.0.0.1:9401");
        assert!(parse(&["connect", "hc", "--bind", "localhost:9013"]).is_ok());
        assert!(parse(&["connect", "hc", "--bind", "udp:5353", "--udp-sessions", "2", "--udp-idle", "5"]).is_ok());
        assert!(parse(&["connect", "hc", "--bind", "udp:0.0.0.0:99999"]).is_err());
        assert!(parse(&["connect", "hc", "--bind", "udp:5353", "--udp-sessions", "0"]).is_err());
        assert!(parse(&["connect", "hc", "--bind", "udp:5353", "--udp-sessions", "65537"]).is_err());
        assert!(parse(&["connect", "hc", "--bind", "udp:5353", "--udp-idle", "0"]).is_err());
        assert!(parse(&["demo", "--bind", "99999"]).is_err());
    }

    #[test]
    fn token_needs_its_rights_spelled_out() {
        let parse = |args: &[&str]| Cli::try_parse_from([&["hyco", "token", "web"], args].concat());
        assert!(parse(&[]).is_err());
        assert!(parse(&["--rights", "send"]).is_ok());
        assert!(parse(&["--rights", "key"]).is_ok());
    }
}
