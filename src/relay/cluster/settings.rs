//! A cluster node's settings: the `[cluster]` table of the relay configuration and
//! `hyco serve --cluster URL`. Reads the Redis password file; never prints the password.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use redis::IntoConnectionInfo;
use serde::Deserialize;

use super::wire::{MAX_NODE_ID, random_node_id, valid_node_id};
use crate::secret::Secret;

/// How this relay joins a cluster of relays that share routing through Redis.
#[derive(Clone, Debug)]
pub struct ClusterSettings {
    /// `redis://host:port/db` or `rediss://…` (TLS), with no password in it.
    pub redis_url: String,
    /// The Redis password (`password_file`), if Redis wants one.
    pub password: Option<Secret>,
    /// PEM certificates that `rediss://` trusts instead of the system's roots (`ca_file`).
    pub ca: Option<Vec<u8>>,
    /// This node's id, unique in the cluster.
    pub node_id: String,
    /// The base (`ws://host:port`, `wss://…`) at which listeners on other nodes reach this
    /// node for rendezvous. `None`: the relay's `external_url`, else its bound address.
    pub url: Option<String>,
}

impl ClusterSettings {
    /// Settings for `--cluster URL` with no `[cluster]` table: a random node id.
    pub fn new(redis_url: &str) -> anyhow::Result<Self> {
        check_redis_url(redis_url)?;
        Ok(Self { redis_url: redis_url.to_owned(), password: None, ca: None, node_id: random_node_id(), url: None })
    }
}

/// `[cluster]` in the relay configuration.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::relay) struct FileCluster {
    redis: String,
    password_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    node_id: Option<String>,
    url: Option<String>,
}

impl FileCluster {
    /// Relative `password_file` paths are taken from `base`.
    pub(in crate::relay) fn resolve(self, base: &Path) -> anyhow::Result<ClusterSettings> {
        check_redis_url(&self.redis)?;
        let password = match self.password_file {
            None => None,
            Some(file) => {
                let path = base.join(file);
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("[cluster] reading password_file {}", path.display()))?;
                let password = text.trim_end_matches(['\r', '\n']);
                if password.is_empty() {
                    bail!("[cluster] password_file {} is empty", path.display());
                }
                Some(Secret::new(password))
            }
        };
        let ca = match self.ca_file {
            None => None,
            Some(_) if !self.redis.starts_with("rediss://") => {
                bail!("[cluster] ca_file is for TLS: the Redis URL must start with rediss://")
            }
            Some(file) => {
                let path = base.join(file);
                let pem =
                    std::fs::read(&path).with_context(|| format!("[cluster] reading ca_file {}", path.display()))?;
                if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
                    bail!("[cluster] ca_file {} holds no PEM certificate", path.display());
                }
                Some(pem)
            }
        };
        let node_id = self.node_id.unwrap_or_else(random_node_id);
        if !valid_node_id(&node_id) {
            bail!("[cluster] node_id {node_id:?} must be 1 to {MAX_NODE_ID} letters, digits, '-', '_' or '.'");
        }
        let url =
            self.url.as_deref().map(super::super::config::parse_external_url).transpose().context("[cluster] url")?;
        Ok(ClusterSettings { redis_url: self.redis, password, ca, node_id, url })
    }
}

/// A Redis URL the client takes, with no password in it: a password belongs in
/// `password_file`, as URLs end up in logs and process lists. The error never repeats
/// the URL.
fn check_redis_url(url: &str) -> anyhow::Result<()> {
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        bail!("the Redis URL must start with redis:// (or rediss:// for TLS)");
    }
    let info =
        url.into_connection_info().map_err(|e| anyhow::anyhow!("the Redis URL is not valid ({:?})", e.kind()))?;
    if info.redis_settings().password().is_some() {
        bail!("the Redis URL holds a password: put it in [cluster] password_file instead");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, dir: &Path) -> anyhow::Result<ClusterSettings> {
        toml::from_str::<FileCluster>(text)?.resolve(dir)
    }

    #[test]
    fn a_cluster_table_reads_its_password_from_a_file_and_never_shows_it() {
        let dir = std::env::temp_dir().join(format!("hyco-cluster-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("pw"), "s3cret-pass\n").unwrap();
        let s = parse(
            "redis = \"redis://10.0.0.5:6379/2\"\npassword_file = \"pw\"\nnode_id = \"relay-1\"\nurl = \"wss://r1.example/\"",
            &dir,
        )
        .unwrap();
        assert_eq!(s.password.as_ref().map(Secret::expose), Some("s3cret-pass"));
        assert_eq!((s.node_id.as_str(), s.url.as_deref()), ("relay-1", Some("wss://r1.example")));
        assert!(!format!("{s:?}").contains("s3cret"));
        let with_password = parse("redis = \"redis://:s3cret@h:6379/0\"", &dir).err().unwrap();
        assert!(
            format!("{with_password:#}").contains("password_file") && !format!("{with_password:#}").contains("s3cret")
        );
        assert!(parse("redis = \"http://h\"", &dir).is_err());
        assert!(parse("redis = \"redis://h\"\nnode_id = \"a b\"", &dir).is_err());
        assert!(parse("redis = \"redis://h\"\nbogus = 1", &dir).is_err());
        assert!(parse("redis = \"redis://h\"\npassword_file = \"missing\"", &dir).is_err());
        std::fs::write(dir.join("ca.pem"), "-----BEGIN CERTIFICATE-----\nx\n").unwrap();
        assert!(parse("redis = \"redis://h\"\nca_file = \"ca.pem\"", &dir).is_err(), "ca_file without TLS");
        assert!(parse("redis = \"rediss://h\"\nca_file = \"ca.pem\"", &dir).unwrap().ca.is_some());
        assert!(parse("redis = \"rediss://h\"\nca_file = \"pw\"", &dir).is_err(), "not PEM");
        let random = parse("redis = \"redis://h\"", &dir).unwrap();
        assert!(valid_node_id(&random.node_id) && random.password.is_none());
        assert!(ClusterSettings::new("redis://u:pw@h/0").is_err() && ClusterSettings::new("redis://h/0").is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
