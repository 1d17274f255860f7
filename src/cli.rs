//! The command line, as clap definitions only: no behaviour here. It also feeds the
//! generated completions and man pages.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Reach a TCP port behind NAT through an Azure Relay Hybrid Connections relay, or run
/// that relay yourself.
#[derive(Debug, Parser)]
#[command(name = "hyco", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    /// More log output (repeat for more); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Log line format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a Hybrid Connections relay (Azure-compatible).
    Serve(ServeArgs),
    /// Accept connections for a hybrid connection and bridge them to local TCP targets.
    Listen(ListenArgs),
    /// Bridge local TCP connections (or stdin/stdout) through the relay to a listener.
    Connect(ConnectArgs),
    /// Run a relay, a listener and a connector in one process: a local port that reaches
    /// a target through the relay, with no account and no setup.
    Demo(DemoArgs),
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where tunnelled connections go (default: a built-in echo service).
    #[arg(long = "to", value_name = "HOST:PORT")]
    pub target: Option<String>,
    /// Local port that reaches the target through the relay: `PORT` or `ADDR:PORT`.
    #[arg(long, default_value = "127.0.0.1:9401", value_name = "[ADDR:]PORT")]
    pub bind: String,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to listen on.
    #[arg(long, default_value = "127.0.0.1:9400", value_name = "ADDR:PORT")]
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
    /// Do not write the `local` profile for clients on this machine.
    #[arg(long)]
    pub no_profile: bool,
}

/// Where the relay is and how to authenticate: flags beat the environment, which beats
/// the default profile.
#[derive(Debug, Args, Default)]
pub struct CredentialArgs {
    /// Profile name in the config file.
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
    /// Connection string (`Endpoint=sb://…;SharedAccessKeyName=…;SharedAccessKey=…`).
    /// Prefer HYCO_CONNECTION_STRING or a profile: arguments are visible to other users.
    #[arg(long, value_name = "STRING", hide_env_values = true)]
    pub connection_string: Option<String>,
    /// Relay endpoint (`sb://ns.servicebus.windows.net`, `ws://host:port`, `wss://host:port`).
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
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
    /// Hybrid connection name.
    pub hc: String,
    /// Target for accepted connections: `host:port`, or `name=host:port` chosen by the
    /// sender's path (`hyco connect HC/name`). Repeatable.
    #[arg(long = "to", value_name = "[NAME=]HOST:PORT", required = true)]
    pub targets: Vec<String>,
    /// Control channels to keep open, for availability (1-25).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=25))]
    pub connections: u8,
    #[command(flatten)]
    pub credentials: CredentialArgs,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("mode").required(true).args(["bind", "stdio"])))]
pub struct ConnectArgs {
    /// Hybrid connection, optionally with a target name: `HC` or `HC/NAME`.
    pub hc: String,
    /// Take the whole of HC as the hybrid connection name (for names holding `/`) and
    /// use this target name.
    #[arg(long, value_name = "NAME")]
    pub target: Option<String>,
    /// Local port to accept connections on: `PORT` or `ADDR:PORT` (default address 127.0.0.1).
    #[arg(long, value_name = "[ADDR:]PORT")]
    pub bind: Option<String>,
    /// Bridge stdin/stdout instead (for `ssh -o ProxyCommand='hyco connect HC/ssh --stdio'`).
    #[arg(long)]
    pub stdio: bool,
    #[command(flatten)]
    pub credentials: CredentialArgs,
}

/// Parses `--bind` for connect: `PORT` or `ADDR:PORT`.
pub fn parse_bind(text: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.parse().map_err(|_| anyhow::anyhow!("--bind takes PORT or ADDR:PORT, not {text:?}"))
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
    fn bind_forms() {
        assert_eq!(parse_bind("9000").unwrap().to_string(), "127.0.0.1:9000");
        assert_eq!(parse_bind("0.0.0.0:22").unwrap().to_string(), "0.0.0.0:22");
        assert!(parse_bind("x").is_err());
    }
}
