//! The TOML profile store and credential resolution: which relay a client talks to, and how
//! it proves itself.
//!
//! Parsing, validation and [`resolve`] are pure; only [`ProfileStore::load`],
//! [`ProfileStore::save`], [`write_local_profile`] and the `from_env`/[`default_path`]
//! helpers touch the file system or the process environment. Nothing here prints: warnings
//! are handed back to the caller. Error messages and `Debug` output never contain a key or
//! token value.
//!
//! ```toml
//! default = "local"
//! [profiles.local]
//! endpoint = "ws://127.0.0.1:9999"        # or sb://ns.servicebus.windows.net/, wss://host:port
//! key_name = "RootManageSharedAccessKey"  # key_name + key, or token, or neither
//! key = "..."
//! tls_fingerprint = "AB:CD:..."           # optional: pin a self-signed relay
//! ```

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use serde::{Deserialize, Serialize};

use crate::connstr::{self, ConnStrError, Credential, Endpoint};
use crate::fingerprint::{self, NotAFingerprint};
use crate::fsutil;
use crate::sas;
use crate::secret::Secret;

/// Environment variable holding the path of the profile file (overrides the platform path).
pub const ENV_CONFIG: &str = "HYCO_CONFIG";
/// Environment variable naming the profile to use.
pub const ENV_PROFILE: &str = "HYCO_PROFILE";
/// Environment variable holding a connection string.
pub const ENV_CONNECTION_STRING: &str = "HYCO_CONNECTION_STRING";

/// Longest profile name accepted.
pub const MAX_NAME_LEN: usize = 64;

/// One relay: where it is and the credential to use. Validate with [`Profile::validate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// `sb://host[:port]/` (secure, 443 by default), `wss://host[:port]` or `ws://host[:port]`.
    pub endpoint: String,
    /// Authorization rule name; comes with `key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_name: Option<String>,
    /// Authorization rule key; comes with `key_name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Secret>,
    /// A ready-made SAS token, used as is; excludes `key_name`/`key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// SHA-256 fingerprint of the relay's certificate, for a self-signed relay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_fingerprint: Option<String>,
}

impl Profile {
    /// A profile with a rule name and key.
    pub fn with_key(endpoint: impl Into<String>, key_name: impl Into<String>, key: Secret) -> Self {
        Profile {
            endpoint: endpoint.into(),
            key_name: Some(key_name.into()),
            key: Some(key),
            token: None,
            tls_fingerprint: None,
        }
    }

    /// A profile with a ready-made SAS token.
    pub fn with_token(endpoint: impl Into<String>, token: Secret) -> Self {
        Profile { endpoint: endpoint.into(), key_name: None, key: None, token: Some(token), tls_fingerprint: None }
    }

    /// Checks every field; same as [`Profile::parts`] without the result.
    pub fn validate(&self) -> Result<(), ProfileError> {
        self.parts().map(drop)
    }

    /// The parsed endpoint, the credential and the normalized fingerprint.
    ///
    /// A `ws://` endpoint means plain WebSocket: there is no emulator flag in a profile.
    pub fn parts(&self) -> Result<(Endpoint, Credential, Option<String>), ProfileError> {
        let endpoint = connstr::parse_endpoint(&self.endpoint, false).map_err(ProfileError::Endpoint)?;
        let credential = match (&self.key_name, &self.key, &self.token) {
            (None, None, None) => Credential::None,
            (Some(name), Some(key), None) => {
                if name.is_empty() {
                    return Err(ProfileError::Empty("key_name"));
                }
                if key.expose().is_empty() {
                    return Err(ProfileError::Empty("key"));
                }
                Credential::Key { name: name.clone(), key: key.clone() }
            }
            (None, None, Some(token)) => {
                sas::parse(token.expose()).map_err(ProfileError::Token)?;
                Credential::Token(token.clone())
            }
            (_, _, Some(_)) => return Err(ProfileError::TokenWithKey),
            (Some(_), None, None) => return Err(ProfileError::KeyNameWithoutKey),
            (None, Some(_), None) => return Err(ProfileError::KeyWithoutKeyName),
        };
        let fingerprint = match &self.tls_fingerprint {
            None => None,
            Some(f) => Some(fingerprint::normalize(f).map_err(|_| ProfileError::Fingerprint)?),
        };
        Ok((endpoint, credential, fingerprint))
    }
}

/// What is wrong with a profile. Never carries a key or token value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProfileError {
    /// The name is empty, too long, or has characters other than letters, digits, `-_.`.
    InvalidName,
    /// `endpoint` is not a usable URI.
    Endpoint(ConnStrError),
    /// The named field is present but empty.
    Empty(&'static str),
    /// `key_name` without `key`.
    KeyNameWithoutKey,
    /// `key` without `key_name`.
    KeyWithoutKeyName,
    /// `token` together with `key_name` or `key`.
    TokenWithKey,
    /// `token` is not a SAS token.
    Token(sas::SasError),
    /// `tls_fingerprint` is not a SHA-256 fingerprint.
    Fingerprint,
}

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProfileError::InvalidName => {
                write!(f, "profile names are 1 to {MAX_NAME_LEN} letters, digits, '-', '_' or '.'")
            }
            ProfileError::Endpoint(e) => write!(f, "endpoint: {e}"),
            ProfileError::Empty(field) => write!(f, "{field} is empty"),
            ProfileError::KeyNameWithoutKey => f.write_str("key_name is set but key is missing"),
            ProfileError::KeyWithoutKeyName => f.write_str("key is set but key_name is missing"),
            ProfileError::TokenWithKey => f.write_str("token cannot be combined with key_name/key"),
            ProfileError::Token(e) => write!(f, "token: {e}"),
            ProfileError::Fingerprint => write!(f, "tls_fingerprint: {NotAFingerprint}"),
        }
    }
}

impl std::error::Error for ProfileError {}

/// Whether `name` can name a profile: 1 to [`MAX_NAME_LEN`] of `A-Za-z0-9-_.`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A profile name that is not in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownProfile {
    /// The name asked for.
    pub name: String,
    /// The names the store has, sorted.
    pub known: Vec<String>,
}

impl fmt::Display for UnknownProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no profile named '{}'", self.name)?;
        if self.known.is_empty() {
            f.write_str(" (no profiles configured; add one with `hyco profile add`)")
        } else {
            write!(f, " (known profiles: {})", self.known.join(", "))
        }
    }
}

impl std::error::Error for UnknownProfile {}

/// The file as serde sees it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    default: Option<String>,
    #[serde(default)]
    profiles: BTreeMap<String, Profile>,
}

/// The named profiles and the default, as held in the TOML file. Every profile in a store
/// is valid. Saving rewrites the whole file: comments are not kept.
#[derive(Debug, Clone, Default)]
pub struct ProfileStore {
    file: ConfigFile,
    warnings: Vec<String>,
}

impl ProfileStore {
    /// Reads the store at `path`; a missing file is an empty store. A file others can read
    /// and a default naming no profile are reported by [`ProfileStore::warnings`].
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ProfileStore::default()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let mut store = Self::from_toml(&text).with_context(|| format!("in {}", path.display()))?;
        if fsutil::readable_by_others(path) {
            store.warnings.insert(
                0,
                format!(
                    "{} holds secrets but other users can read it; run `chmod 600 {}`",
                    path.display(),
                    path.display()
                ),
            );
        }
        Ok(store)
    }

    /// Parses and validates the file text. Pure.
    pub fn from_toml(text: &str) -> anyhow::Result<Self> {
        let file: ConfigFile = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
        for (name, profile) in &file.profiles {
            if !valid_name(name) {
                return Err(anyhow!("profile '{}': {}", name.escape_debug(), ProfileError::InvalidName));
            }
            profile.validate().map_err(|e| anyhow!("profile '{name}': {e}"))?;
        }
        let mut warnings = Vec::new();
        if let Some(default) = &file.default
            && !file.profiles.contains_key(default)
        {
            warnings.push(format!("the default profile '{}' does not exist", default.escape_debug()));
        }
        Ok(ProfileStore { file, warnings })
    }

    /// The file text, secrets included. Pure.
    pub fn to_toml(&self) -> String {
        let body = toml::to_string(&self.file).expect("profiles serialize to TOML");
        format!("# hyco profiles (written by hyco; holds secrets, keep it mode 0600)\n{body}")
    }

    /// Writes the store to `path`, readable by the owner only (0600), replacing it atomically.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        fsutil::write_private(path, self.to_toml().as_bytes())
    }

    /// Problems found by [`ProfileStore::load`] that the caller should log.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The profile called `name`.
    pub fn get(&self, name: &str) -> Option<&Profile> {
        self.file.profiles.get(name)
    }

    /// The profile called `name`, or an error listing the known names.
    pub fn require(&self, name: &str) -> Result<&Profile, UnknownProfile> {
        self.get(name)
            .ok_or_else(|| UnknownProfile { name: name.to_owned(), known: self.names().map(String::from).collect() })
    }

    /// Adds or replaces the profile `name` after validating both.
    pub fn set(&mut self, name: &str, profile: Profile) -> Result<(), ProfileError> {
        if !valid_name(name) {
            return Err(ProfileError::InvalidName);
        }
        profile.validate()?;
        self.file.profiles.insert(name.to_owned(), profile);
        Ok(())
    }

    /// Removes and returns the profile `name`; if it was the default, there is no default after.
    pub fn remove(&mut self, name: &str) -> Option<Profile> {
        let removed = self.file.profiles.remove(name);
        if self.file.default.as_deref() == Some(name) {
            self.file.default = None;
        }
        removed
    }

    /// Makes the existing profile `name` the default.
    pub fn set_default(&mut self, name: &str) -> Result<(), UnknownProfile> {
        self.require(name)?;
        self.file.default = Some(name.to_owned());
        Ok(())
    }

    /// Leaves the store without a default profile.
    pub fn clear_default(&mut self) {
        self.file.default = None;
    }

    /// The default profile's name as written in the file (it may name no profile).
    pub fn default_name(&self) -> Option<&str> {
        self.file.default.as_deref()
    }

    /// The profile names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.file.profiles.keys().map(String::as_str)
    }

    /// Whether the store has no profiles.
    pub fn is_empty(&self) -> bool {
        self.file.profiles.is_empty()
    }
}

/// A TOML error as `line L, column C: message`, without the source excerpt the `toml` crate
/// quotes (it would show the line holding a key) and with any value serde echoes removed.
fn toml_error(text: &str, e: &toml::de::Error) -> anyhow::Error {
    let message = redact_unexpected(e.message());
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            anyhow!("line {line}, column {column}: {message}")
        }
        None => anyhow!("{message}"),
    }
}

/// Turns serde's `invalid type: string "VALUE", expected …` into `invalid type: string,
/// expected …` (same for `invalid value:`), since the value could be a key.
fn redact_unexpected(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix)
            && let Some(at) = rest.rfind(", expected ")
        {
            let unexpected = &rest[..at];
            let kind = unexpected.split(['"', '`', '\'']).next().unwrap_or("").trim_end();
            return format!("{prefix}{kind}{}", &rest[at..]);
        }
    }
    message.to_owned()
}

/// Where the profile file is: `$HYCO_CONFIG` if set and non-empty, else `config.toml` in
/// the platform config directory (`~/.config/hyco/config.toml` on Linux).
pub fn default_path() -> anyhow::Result<PathBuf> {
    path_from(std::env::var_os(ENV_CONFIG))
}

fn path_from(hyco_config: Option<OsString>) -> anyhow::Result<PathBuf> {
    if let Some(p) = hyco_config.filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let dirs = directories::ProjectDirs::from("", "", "hyco")
        .context("no home directory to keep profiles in; set HYCO_CONFIG to a file path")?;
    Ok(dirs.config_dir().join("config.toml"))
}

/// Credential-related command-line flags, filled from clap by the caller.
#[derive(Debug, Clone, Default)]
pub struct CredentialSources {
    /// `--profile NAME`.
    pub profile: Option<String>,
    /// `--connection-string`.
    pub connection_string: Option<Secret>,
    /// `--endpoint`.
    pub endpoint: Option<String>,
    /// `--key-name`.
    pub key_name: Option<String>,
    /// `--key`.
    pub key: Option<Secret>,
    /// `--tls-fingerprint`.
    pub tls_fingerprint: Option<String>,
}

/// The environment variables [`resolve`] looks at, read by the caller so tests need not
/// touch the process environment.
#[derive(Debug, Clone, Default)]
pub struct EnvSources {
    /// `HYCO_PROFILE`.
    pub profile: Option<String>,
    /// `HYCO_CONNECTION_STRING`.
    pub connection_string: Option<Secret>,
}

impl EnvSources {
    /// Reads the variables from the process environment.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the variables through `lookup`; empty values count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let get = |name| lookup(name).filter(|v| !v.is_empty());
        EnvSources { profile: get(ENV_PROFILE), connection_string: get(ENV_CONNECTION_STRING).map(Secret::new) }
    }
}

/// The relay to use and how to authenticate, after [`resolve`]. `Debug` masks secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Where the relay is.
    pub endpoint: Endpoint,
    /// Key, token or nothing.
    pub credential: Credential,
    /// The hybrid connection, when a connection string named one.
    pub entity_path: Option<String>,
    /// Pinned SHA-256 certificate fingerprint, normalized to `AB:CD:…`.
    pub tls_fingerprint: Option<String>,
    /// Where it came from, for messages: `profile 'local'`, `--connection-string`, …
    pub source: String,
}

/// Which setting named a profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileOrigin {
    /// `--profile`.
    Flag,
    /// `HYCO_PROFILE`.
    Env,
    /// The `default` in the profile file.
    Default,
}

impl fmt::Display for ProfileOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProfileOrigin::Flag => "--profile",
            ProfileOrigin::Env => ENV_PROFILE,
            ProfileOrigin::Default => "the default profile",
        })
    }
}

/// Why no relay could be resolved. Never carries a key or token value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolveError {
    /// Two flags that each choose the relay.
    Conflict(&'static str, &'static str),
    /// A connection string (from the named flag or variable) did not parse.
    ConnectionString(&'static str, ConnStrError),
    /// `--endpoint` did not parse.
    Endpoint(ConnStrError),
    /// `--key-name` without `--key`.
    KeyNameWithoutKey,
    /// `--key` with no `--key-name` and no key name to keep from the profile.
    KeyWithoutKeyName,
    /// `--key-name` or `--key` is empty.
    EmptyFlag(&'static str),
    /// `--tls-fingerprint` is not a SHA-256 fingerprint.
    Fingerprint,
    /// A profile named by a flag, variable or the default is not in the store.
    UnknownProfile(ProfileOrigin, UnknownProfile),
    /// A profile is invalid (only possible for a store built by hand).
    InvalidProfile(String, ProfileError),
    /// Nothing says which relay to use.
    NotConfigured,
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolveError::Conflict(a, b) => write!(f, "{a} cannot be combined with {b}"),
            ResolveError::ConnectionString(origin, e) => write!(f, "{origin}: {e}"),
            ResolveError::Endpoint(e) => write!(f, "--endpoint: {e}"),
            ResolveError::KeyNameWithoutKey => f.write_str("--key-name needs --key"),
            ResolveError::KeyWithoutKeyName => {
                f.write_str("--key needs --key-name (the chosen relay has no key name to keep)")
            }
            ResolveError::EmptyFlag(flag) => write!(f, "{flag} is empty"),
            ResolveError::Fingerprint => write!(f, "--tls-fingerprint: {NotAFingerprint}"),
            ResolveError::UnknownProfile(origin, e) => write!(f, "{origin}: {e}"),
            ResolveError::InvalidProfile(name, e) => write!(f, "profile '{name}': {e}"),
            ResolveError::NotConfigured => f.write_str(
                "no relay configured: run `hyco serve` on this machine, or pass --connection-string, \
                 or add a profile with `hyco profile add`",
            ),
        }
    }
}

impl std::error::Error for ResolveError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ResolveError::ConnectionString(_, e) | ResolveError::Endpoint(e) => Some(e),
            ResolveError::UnknownProfile(_, e) => Some(e),
            ResolveError::InvalidProfile(_, e) => Some(e),
            _ => None,
        }
    }
}

/// Picks the relay and credential. The first of these wins:
///
/// 1. flags: `--connection-string`, `--endpoint` (credential from `--key-name`/`--key`, or
///    none), `--profile NAME` (at most one of the three);
/// 2. `HYCO_CONNECTION_STRING`, then `HYCO_PROFILE`;
/// 3. the default profile.
///
/// `--key-name`/`--key` replace the credential of whatever profile or `HYCO_CONNECTION_STRING`
/// was chosen (`--key` alone keeps the key name); `--tls-fingerprint` replaces the profile's.
pub fn resolve(flags: &CredentialSources, env: &EnvSources, store: &ProfileStore) -> Result<Resolved, ResolveError> {
    let chosen = [
        ("--connection-string", flags.connection_string.is_some()),
        ("--endpoint", flags.endpoint.is_some()),
        ("--profile", flags.profile.is_some()),
    ];
    let mut given = chosen.iter().filter(|(_, set)| *set).map(|(flag, _)| *flag);
    if let (Some(a), Some(b)) = (given.next(), given.next()) {
        return Err(ResolveError::Conflict(a, b));
    }
    if flags.connection_string.is_some() {
        for (flag, set) in [("--key-name", flags.key_name.is_some()), ("--key", flags.key.is_some())] {
            if set {
                return Err(ResolveError::Conflict("--connection-string", flag));
            }
        }
    }
    for (flag, empty) in [
        ("--key-name", flags.key_name.as_deref() == Some("")),
        ("--key", flags.key.as_ref().is_some_and(|k| k.expose().is_empty())),
    ] {
        if empty {
            return Err(ResolveError::EmptyFlag(flag));
        }
    }

    let mut resolved = if let Some(cs) = &flags.connection_string {
        from_connection_string("--connection-string", cs)?
    } else if let Some(endpoint) = &flags.endpoint {
        let endpoint = connstr::parse_endpoint(endpoint, false).map_err(ResolveError::Endpoint)?;
        Resolved {
            endpoint,
            credential: Credential::None,
            entity_path: None,
            tls_fingerprint: None,
            source: "--endpoint".into(),
        }
    } else if let Some(name) = &flags.profile {
        from_profile(store, name, ProfileOrigin::Flag)?
    } else if let Some(cs) = &env.connection_string {
        from_connection_string(ENV_CONNECTION_STRING, cs)?
    } else if let Some(name) = &env.profile {
        from_profile(store, name, ProfileOrigin::Env)?
    } else if let Some(name) = store.default_name() {
        from_profile(store, name, ProfileOrigin::Default)?
    } else {
        return Err(ResolveError::NotConfigured);
    };

    match (&flags.key_name, &flags.key) {
        (None, None) => {}
        (Some(_), None) => return Err(ResolveError::KeyNameWithoutKey),
        (Some(name), Some(key)) => {
            resolved.credential = Credential::Key { name: name.clone(), key: key.clone() };
            resolved.source.push_str(" with --key-name/--key");
        }
        (None, Some(key)) => {
            let Credential::Key { name, .. } = &resolved.credential else {
                return Err(ResolveError::KeyWithoutKeyName);
            };
            resolved.credential = Credential::Key { name: name.clone(), key: key.clone() };
            resolved.source.push_str(" with --key");
        }
    }
    if let Some(f) = &flags.tls_fingerprint {
        resolved.tls_fingerprint = Some(fingerprint::normalize(f).map_err(|_| ResolveError::Fingerprint)?);
    }
    Ok(resolved)
}

fn from_connection_string(origin: &'static str, cs: &Secret) -> Result<Resolved, ResolveError> {
    let cs = connstr::parse(cs.expose()).map_err(|e| ResolveError::ConnectionString(origin, e))?;
    Ok(Resolved {
        endpoint: cs.endpoint,
        credential: cs.credential,
        entity_path: cs.entity_path,
        tls_fingerprint: None,
        source: origin.into(),
    })
}

fn from_profile(store: &ProfileStore, name: &str, origin: ProfileOrigin) -> Result<Resolved, ResolveError> {
    let profile = store.require(name).map_err(|e| ResolveError::UnknownProfile(origin, e))?;
    let (endpoint, credential, tls_fingerprint) =
        profile.parts().map_err(|e| ResolveError::InvalidProfile(name.to_owned(), e))?;
    Ok(Resolved { endpoint, credential, entity_path: None, tls_fingerprint, source: format!("profile '{name}'") })
}

/// Adds or updates profile `name` in the file at `path` for a relay on this machine (what
/// `hyco serve` calls), keeping the other profiles. With `make_default_if_none`, `name`
/// becomes the default when there is none or the default names no existing profile; an
/// existing default is left alone.
pub fn write_local_profile(
    path: &Path,
    name: &str,
    endpoint_ws_base: &str,
    key_name: &str,
    key: &Secret,
    tls_fingerprint: Option<&str>,
    make_default_if_none: bool,
) -> anyhow::Result<()> {
    let mut store = ProfileStore::load(path)?;
    let mut profile = Profile::with_key(endpoint_ws_base, key_name, key.clone());
    profile.tls_fingerprint = tls_fingerprint.map(str::to_owned);
    store.set(name, profile).with_context(|| format!("profile '{name}'"))?;
    if make_default_if_none && store.default_name().is_none_or(|d| store.get(d).is_none()) {
        store.set_default(name).expect("the profile was just added");
    }
    store.save(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET_KEY: &str = "Zm9vYmFyU0VDUkVUa2V5MTIzNDU2Nzg5MGFiY2RlZmdo";
    const TOKEN: &str = "SharedAccessSignature sr=http%3A%2F%2Fcontoso.servicebus.windows.net%2Fhyco%2F&sig=3o5XBbdcRrcduxDvR9yKIJ1Bh1TNLPhkNfq0TF6n%2BJM%3D&se=1700000000&skn=RootManageSharedAccessKey";
    const FP: &str = "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89";

    /// A scratch directory removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static N: AtomicUsize = AtomicUsize::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("hyco-profile-{}-{tag}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn file(&self) -> PathBuf {
            self.0.join("hyco").join("config.toml")
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn key_profile(endpoint: &str) -> Profile {
        Profile::with_key(endpoint, "RootManageSharedAccessKey", Secret::new(SECRET_KEY))
    }

    fn store_with(profiles: &[(&str, Profile)], default: Option<&str>) -> ProfileStore {
        let mut store = ProfileStore::default();
        for (name, p) in profiles {
            store.set(name, p.clone()).unwrap();
        }
        if let Some(d) = default {
            store.set_default(d).unwrap();
        }
        store
    }

    fn ep(secure: bool, host: &str, port: u16) -> Endpoint {
        Endpoint { secure, host: host.into(), port }
    }

    fn no_secret(text: &str) {
        assert!(!text.contains(SECRET_KEY), "{text}");
        assert!(!text.contains(&SECRET_KEY[..12]), "{text}");
        assert!(!text.contains("3o5XBbdc"), "{text}");
    }

    #[test]
    fn round_trip_through_a_file() {
        let dir = TempDir::new("roundtrip");
        let path = dir.file();
        let mut store = ProfileStore::load(&path).unwrap();
        assert!(store.is_empty());
        assert!(store.warnings().is_empty());
        assert_eq!(store.default_name(), None);

        let mut local = key_profile("ws://127.0.0.1:9999");
        local.tls_fingerprint = Some(FP.to_lowercase());
        store.set("local", local.clone()).unwrap();
        store.set("azure", Profile::with_token("sb://contoso.servicebus.windows.net/", Secret::new(TOKEN))).unwrap();
        store.set_default("local").unwrap();
        store.save(&path).unwrap();

        let back = ProfileStore::load(&path).unwrap();
        assert!(back.warnings().is_empty(), "{:?}", back.warnings());
        assert_eq!(back.default_name(), Some("local"));
        assert_eq!(back.names().collect::<Vec<_>>(), ["azure", "local"]);
        assert_eq!(back.get("local"), Some(&local));
        assert_eq!(back.get("azure").unwrap().token.as_ref().unwrap().expose(), TOKEN);
        assert_eq!(back.get("nope"), None);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("default = \"local\""), "{text}");
        assert!(text.contains("[profiles.local]"), "{text}");
        assert!(text.contains(SECRET_KEY));
        assert_eq!(ProfileStore::from_toml(&back.to_toml()).unwrap().to_toml(), back.to_toml());
    }

    #[test]
    fn parses_the_documented_format() {
        let text = format!(
            r#"
default = "local"
[profiles.local]
endpoint = "ws://127.0.0.1:9999"      # a comment
key_name = "RootManageSharedAccessKey"
key = "{SECRET_KEY}"
tls_fingerprint = "{FP}"

[profiles.azure]
endpoint = "sb://ns.servicebus.windows.net/"
token = "{TOKEN}"

[profiles.open]
endpoint = "wss://relay.example:8443"
"#
        );
        let store = ProfileStore::from_toml(&text).unwrap();
        let (e, c, f) = store.get("local").unwrap().parts().unwrap();
        assert_eq!(e, ep(false, "127.0.0.1", 9999));
        assert_eq!(c, Credential::Key { name: "RootManageSharedAccessKey".into(), key: Secret::new(SECRET_KEY) });
        assert_eq!(f.as_deref(), Some(FP));
        let (e, c, _) = store.get("azure").unwrap().parts().unwrap();
        assert_eq!(e, ep(true, "ns.servicebus.windows.net", 443));
        assert_eq!(c, Credential::Token(Secret::new(TOKEN)));
        let (e, c, f) = store.get("open").unwrap().parts().unwrap();
        assert_eq!((e, c, f), (ep(true, "relay.example", 8443), Credential::None, None));
    }

    #[cfg(unix)]
    #[test]
    fn saved_file_is_0600_and_a_0644_file_warns() {
        use std::os::unix::fs::PermissionsExt;
        let dir = TempDir::new("mode");
        let path = dir.file();
        store_with(&[("local", key_profile("ws://127.0.0.1:9999"))], Some("local")).save(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(ProfileStore::load(&path).unwrap().warnings().is_empty());

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let store = ProfileStore::load(&path).unwrap();
        assert_eq!(store.warnings().len(), 1);
        assert!(store.warnings()[0].contains("other users can read"), "{:?}", store.warnings());
        assert!(store.warnings()[0].contains(&path.display().to_string()));
        // Saving again narrows it back.
        store.save(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = ProfileStore::from_toml("[profiles.a]\nendpoint = \"ws://h:1\"\nkye = \"x\"\n").unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("kye") && msg.contains("line 3"), "{msg}");
        let err = ProfileStore::from_toml("defualt = \"a\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("defualt"));
        assert!(ProfileStore::from_toml("[profiles.a]\n").is_err(), "endpoint is required");
    }

    #[test]
    fn load_errors_name_the_file_and_hide_secrets() {
        let dir = TempDir::new("badfile");
        let path = dir.file();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let cases = [
            format!("[profiles.a]\nendpoint = \"ws://h:1\"\nkye = \"{SECRET_KEY}\"\n"),
            format!("[profiles]\na = \"Endpoint=sb://h/;SharedAccessKeyName=n;SharedAccessKey={SECRET_KEY}\"\n"),
            format!("[profiles.a]\nendpoint = \"ws://h:1\"\nkey = \"{SECRET_KEY}\"\n"),
            format!("[profiles.a]\nendpoint = \"ws://h:1\"\nkey = \"{SECRET_KEY}\nkey_name = \"n\"\n"),
            format!("[profiles.a]\nendpoint = \"ws://h:1\"\ntoken = \"{SECRET_KEY}\"\n"),
            format!("[profiles.a]\nendpoint = \"ws://h:1\"\nkey = [\"{SECRET_KEY}\"]\nkey_name = \"n\"\n"),
        ];
        for text in &cases {
            std::fs::write(&path, text).unwrap();
            let msg = format!("{:#}", ProfileStore::load(&path).unwrap_err());
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            no_secret(&msg);
        }
    }

    #[test]
    fn serde_values_are_redacted_from_messages() {
        assert_eq!(
            redact_unexpected("invalid type: string \"s3cr\\\"et, x\", expected struct Profile"),
            "invalid type: string, expected struct Profile"
        );
        assert_eq!(
            redact_unexpected("invalid type: integer `123`, expected a string"),
            "invalid type: integer, expected a string"
        );
        assert_eq!(redact_unexpected("unknown field `kye`"), "unknown field `kye`");
    }

    #[test]
    fn profile_validation() {
        let bad_endpoint = Profile { endpoint: "ftp://h".into(), ..key_profile("") };
        assert!(matches!(bad_endpoint.validate(), Err(ProfileError::Endpoint(_))));
        assert!(matches!(key_profile("sb://h/hyco").validate(), Err(ProfileError::Endpoint(_))));
        let key_only = Profile { key_name: None, ..key_profile("ws://h:1") };
        assert_eq!(key_only.validate(), Err(ProfileError::KeyWithoutKeyName));
        let name_only = Profile { key: None, ..key_profile("ws://h:1") };
        assert_eq!(name_only.validate(), Err(ProfileError::KeyNameWithoutKey));
        let both = Profile { token: Some(Secret::new(TOKEN)), ..key_profile("ws://h:1") };
        assert_eq!(both.validate(), Err(ProfileError::TokenWithKey));
        let bad_token = Profile::with_token("ws://h:1", Secret::new(SECRET_KEY));
        assert_eq!(bad_token.validate(), Err(ProfileError::Token(sas::SasError::MissingPrefix)));
        let empty = Profile { key: Some(Secret::new("")), ..key_profile("ws://h:1") };
        assert_eq!(empty.validate(), Err(ProfileError::Empty("key")));
        let empty = Profile { key_name: Some(String::new()), ..key_profile("ws://h:1") };
        assert_eq!(empty.validate(), Err(ProfileError::Empty("key_name")));
        let fp = Profile { tls_fingerprint: Some("AB:CD".into()), ..key_profile("ws://h:1") };
        assert_eq!(fp.validate(), Err(ProfileError::Fingerprint));

        for e in [ProfileError::KeyWithoutKeyName, ProfileError::Token(sas::SasError::MissingPrefix)] {
            no_secret(&e.to_string());
        }
        // The file says the same.
        let err = ProfileStore::from_toml(&format!("[profiles.a]\nendpoint = \"ws://h:1\"\nkey = \"{SECRET_KEY}\"\n"))
            .unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("profile 'a'") && msg.contains("key_name is missing"), "{msg}");
        no_secret(&msg);
        let err = ProfileStore::from_toml("[profiles.a]\nendpoint = \"tcp://h\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("endpoint"), "{err:#}");
    }

    #[test]
    fn endpoint_schemes_in_profiles() {
        let parts = |e: &str| Profile { endpoint: e.into(), ..key_profile("") }.parts().unwrap().0;
        assert_eq!(parts("ws://127.0.0.1:9999"), ep(false, "127.0.0.1", 9999));
        assert_eq!(parts("wss://h:8443"), ep(true, "h", 8443));
        assert_eq!(parts("sb://ns.servicebus.windows.net/"), ep(true, "ns.servicebus.windows.net", 443));
        assert_eq!(parts("ws://localhost"), ep(false, "localhost", 80));
    }

    #[test]
    fn names_and_defaults() {
        let mut store = ProfileStore::default();
        for bad in ["", "a b", "a/b", "ä", &"x".repeat(MAX_NAME_LEN + 1)] {
            assert_eq!(store.set(bad, key_profile("ws://h:1")), Err(ProfileError::InvalidName), "{bad:?}");
        }
        assert!(ProfileStore::from_toml("[profiles.\"a b\"]\nendpoint = \"ws://h:1\"\n").is_err());
        store.set("a-1.b_c", key_profile("ws://h:1")).unwrap();
        store.set("z", key_profile("ws://h:2")).unwrap();
        let err = store.set_default("missing").unwrap_err();
        assert_eq!(err.known, ["a-1.b_c", "z"]);
        assert!(err.to_string().contains("known profiles: a-1.b_c, z"), "{err}");
        store.set_default("z").unwrap();
        assert_eq!(store.default_name(), Some("z"));
        assert!(store.remove("a-1.b_c").is_some());
        assert_eq!(store.default_name(), Some("z"));
        assert!(store.remove("z").is_some());
        assert_eq!(store.default_name(), None, "removing the default clears it");
        assert!(store.remove("z").is_none());
        store.set("a", key_profile("ws://h:1")).unwrap();
        store.set_default("a").unwrap();
        store.clear_default();
        assert_eq!(store.default_name(), None);
        assert!(UnknownProfile { name: "x".into(), known: vec![] }.to_string().contains("hyco profile add"));
    }

    #[test]
    fn dangling_default_warns() {
        let store = ProfileStore::from_toml("default = \"gone\"\n[profiles.a]\nendpoint = \"ws://h:1\"\n").unwrap();
        assert_eq!(store.warnings().len(), 1);
        assert!(store.warnings()[0].contains("'gone'"));
        let err = resolve(&CredentialSources::default(), &EnvSources::default(), &store).unwrap_err();
        assert!(matches!(err, ResolveError::UnknownProfile(ProfileOrigin::Default, _)), "{err:?}");
        assert!(err.to_string().contains("known profiles: a"), "{err}");
    }

    #[test]
    fn default_path_prefers_hyco_config() {
        assert_eq!(path_from(Some("/tmp/x/h.toml".into())).unwrap(), PathBuf::from("/tmp/x/h.toml"));
        // Unset or empty: the platform path, when there is a home directory.
        if let Ok(p) = path_from(Some(OsString::new())) {
            assert!(p.ends_with("config.toml"), "{}", p.display());
            assert!(p.parent().unwrap().ends_with("hyco"), "{}", p.display());
        }
    }

    #[test]
    fn env_sources_from_lookup() {
        let env = EnvSources::from_lookup(|name| match name {
            ENV_PROFILE => Some("p".into()),
            ENV_CONNECTION_STRING => Some(String::new()),
            _ => None,
        });
        assert_eq!(env.profile.as_deref(), Some("p"));
        assert!(env.connection_string.is_none(), "empty counts as unset");
    }

    fn two_profiles() -> ProfileStore {
        let mut local = key_profile("ws://127.0.0.1:9999");
        local.tls_fingerprint = Some(FP.into());
        store_with(
            &[
                ("local", local),
                ("azure", Profile::with_token("sb://contoso.servicebus.windows.net/", Secret::new(TOKEN))),
            ],
            Some("local"),
        )
    }

    fn cs(host: &str) -> Secret {
        Secret::new(format!("Endpoint=sb://{host}/;SharedAccessKeyName=n;SharedAccessKey={SECRET_KEY};EntityPath=hc"))
    }

    #[test]
    fn default_profile_is_the_fallback() {
        let r = resolve(&CredentialSources::default(), &EnvSources::default(), &two_profiles()).unwrap();
        assert_eq!(r.endpoint, ep(false, "127.0.0.1", 9999));
        assert_eq!(
            r.credential,
            Credential::Key { name: "RootManageSharedAccessKey".into(), key: Secret::new(SECRET_KEY) }
        );
        assert_eq!(r.tls_fingerprint.as_deref(), Some(FP));
        assert_eq!(r.entity_path, None);
        assert_eq!(r.source, "profile 'local'");
    }

    #[test]
    fn nothing_configured() {
        let err = resolve(&CredentialSources::default(), &EnvSources::default(), &ProfileStore::default()).unwrap_err();
        assert_eq!(err, ResolveError::NotConfigured);
        let msg = err.to_string();
        assert!(msg.contains("hyco serve") && msg.contains("--connection-string") && msg.contains("hyco profile add"));
        // A store with profiles but no default is still not configured.
        let store = store_with(&[("a", key_profile("ws://h:1"))], None);
        assert_eq!(
            resolve(&CredentialSources::default(), &EnvSources::default(), &store),
            Err(ResolveError::NotConfigured)
        );
    }

    #[test]
    fn env_beats_default_and_connection_string_beats_profile() {
        let store = two_profiles();
        let env = EnvSources { profile: Some("azure".into()), connection_string: None };
        let r = resolve(&CredentialSources::default(), &env, &store).unwrap();
        assert_eq!(r.source, "profile 'azure'");
        assert_eq!(r.credential, Credential::Token(Secret::new(TOKEN)));
        assert_eq!(r.tls_fingerprint, None);

        let env = EnvSources { profile: Some("azure".into()), connection_string: Some(cs("envhost")) };
        let r = resolve(&CredentialSources::default(), &env, &store).unwrap();
        assert_eq!(r.source, "HYCO_CONNECTION_STRING");
        assert_eq!(r.endpoint, ep(true, "envhost", 443));
        assert_eq!(r.entity_path.as_deref(), Some("hc"));

        let env = EnvSources { profile: Some("nope".into()), connection_string: None };
        let err = resolve(&CredentialSources::default(), &env, &store).unwrap_err();
        assert!(matches!(err, ResolveError::UnknownProfile(ProfileOrigin::Env, _)));
        assert!(err.to_string().starts_with("HYCO_PROFILE: no profile named 'nope'"), "{err}");
        assert!(err.to_string().contains("azure, local"), "{err}");
    }

    #[test]
    fn flags_beat_env() {
        let store = two_profiles();
        let env = EnvSources { profile: Some("azure".into()), connection_string: Some(cs("envhost")) };

        let flags = CredentialSources { profile: Some("local".into()), ..Default::default() };
        assert_eq!(resolve(&flags, &env, &store).unwrap().source, "profile 'local'");

        let flags = CredentialSources { connection_string: Some(cs("flaghost")), ..Default::default() };
        let r = resolve(&flags, &env, &store).unwrap();
        assert_eq!((r.source.as_str(), r.endpoint.host.as_str()), ("--connection-string", "flaghost"));

        let flags = CredentialSources {
            endpoint: Some("wss://flag:8443".into()),
            key_name: Some("n".into()),
            key: Some(Secret::new(SECRET_KEY)),
            ..Default::default()
        };
        let r = resolve(&flags, &env, &store).unwrap();
        assert_eq!(r.endpoint, ep(true, "flag", 8443));
        assert_eq!(r.credential, Credential::Key { name: "n".into(), key: Secret::new(SECRET_KEY) });
        assert!(r.source.starts_with("--endpoint"), "{}", r.source);

        let flags = CredentialSources { endpoint: Some("ws://flag:1".into()), ..Default::default() };
        assert_eq!(resolve(&flags, &env, &store).unwrap().credential, Credential::None);
    }

    #[test]
    fn flag_profile_must_exist() {
        let flags = CredentialSources { profile: Some("staging".into()), ..Default::default() };
        let err = resolve(&flags, &EnvSources::default(), &two_profiles()).unwrap_err();
        assert_eq!(err.to_string(), "--profile: no profile named 'staging' (known profiles: azure, local)");
    }

    #[test]
    fn key_flags_override_the_profile_credential() {
        let store = two_profiles();
        let env = EnvSources::default();
        let flags = CredentialSources {
            key_name: Some("Other".into()),
            key: Some(Secret::new("newkey")),
            tls_fingerprint: Some(FP.replace(':', "")),
            ..Default::default()
        };
        let r = resolve(&flags, &env, &store).unwrap();
        assert_eq!(r.credential, Credential::Key { name: "Other".into(), key: Secret::new("newkey") });
        assert_eq!(r.source, "profile 'local' with --key-name/--key");
        assert_eq!(r.tls_fingerprint.as_deref(), Some(FP));

        // --key alone keeps the profile's key name...
        let flags = CredentialSources { key: Some(Secret::new("newkey")), ..Default::default() };
        let r = resolve(&flags, &env, &store).unwrap();
        assert_eq!(
            r.credential,
            Credential::Key { name: "RootManageSharedAccessKey".into(), key: Secret::new("newkey") }
        );
        // ...but a token profile has none.
        let flags =
            CredentialSources { profile: Some("azure".into()), key: Some(Secret::new("k")), ..Default::default() };
        assert_eq!(resolve(&flags, &env, &store), Err(ResolveError::KeyWithoutKeyName));
        // With --key-name and --key a token profile switches to the key.
        let flags = CredentialSources {
            profile: Some("azure".into()),
            key_name: Some("n".into()),
            key: Some(Secret::new("k")),
            ..Default::default()
        };
        assert!(matches!(resolve(&flags, &env, &store).unwrap().credential, Credential::Key { .. }));
    }

    #[test]
    fn flag_errors() {
        let store = two_profiles();
        let env = EnvSources::default();
        let run = |flags: CredentialSources| resolve(&flags, &env, &store).unwrap_err();

        let err = run(CredentialSources {
            endpoint: Some("ws://h:1".into()),
            key_name: Some("n".into()),
            ..Default::default()
        });
        assert_eq!(err, ResolveError::KeyNameWithoutKey);
        let err = run(CredentialSources { key_name: Some("n".into()), ..Default::default() });
        assert_eq!(err, ResolveError::KeyNameWithoutKey);
        let err = run(CredentialSources {
            endpoint: Some("ws://h:1".into()),
            key: Some(Secret::new(SECRET_KEY)),
            ..Default::default()
        });
        assert_eq!(err, ResolveError::KeyWithoutKeyName);
        let err = run(CredentialSources { endpoint: Some("ftp://h".into()), ..Default::default() });
        assert!(matches!(err, ResolveError::Endpoint(_)));
        assert!(err.to_string().starts_with("--endpoint:"), "{err}");
        let err = run(CredentialSources {
            endpoint: Some("ws://h:1".into()),
            profile: Some("local".into()),
            ..Default::default()
        });
        assert_eq!(err, ResolveError::Conflict("--endpoint", "--profile"));
        let err = run(CredentialSources {
            connection_string: Some(cs("h")),
            key: Some(Secret::new(SECRET_KEY)),
            ..Default::default()
        });
        assert_eq!(err, ResolveError::Conflict("--connection-string", "--key"));
        let err = run(CredentialSources { key: Some(Secret::new("")), ..Default::default() });
        assert_eq!(err, ResolveError::EmptyFlag("--key"));
        let err = run(CredentialSources { tls_fingerprint: Some("zz".into()), ..Default::default() });
        assert_eq!(err, ResolveError::Fingerprint);
    }

    #[test]
    fn resolve_errors_never_show_secrets() {
        let store = two_profiles();
        let bad_cs = Secret::new(format!("Endpoint=sb://h/;SharedAccessKey={SECRET_KEY}"));
        let cases = [
            (
                CredentialSources { connection_string: Some(bad_cs.clone()), ..Default::default() },
                EnvSources::default(),
            ),
            (CredentialSources::default(), EnvSources { connection_string: Some(bad_cs), profile: None }),
            (
                CredentialSources {
                    endpoint: Some("ws://h:1".into()),
                    key: Some(Secret::new(SECRET_KEY)),
                    ..Default::default()
                },
                EnvSources::default(),
            ),
            (
                CredentialSources {
                    profile: Some("azure".into()),
                    key: Some(Secret::new(SECRET_KEY)),
                    ..Default::default()
                },
                EnvSources::default(),
            ),
            (
                CredentialSources {
                    connection_string: Some(cs("h")),
                    key: Some(Secret::new(SECRET_KEY)),
                    ..Default::default()
                },
                EnvSources::default(),
            ),
            (
                CredentialSources {
                    connection_string: Some(Secret::new(format!("Endpoint=sb://h/;{SECRET_KEY}=="))),
                    ..Default::default()
                },
                EnvSources::default(),
            ),
        ];
        for (flags, env) in &cases {
            let err = resolve(flags, env, &store).unwrap_err();
            no_secret(&err.to_string());
            no_secret(&format!("{err:?}"));
            no_secret(&format!("{:#}", anyhow::Error::new(err)));
        }
        // A hand-built invalid profile.
        let mut store = ProfileStore::default();
        store.file.profiles.insert("bad".into(), Profile::with_token("ws://h:1", Secret::new(SECRET_KEY)));
        let flags = CredentialSources { profile: Some("bad".into()), ..Default::default() };
        let err = resolve(&flags, &EnvSources::default(), &store).unwrap_err();
        assert!(matches!(err, ResolveError::InvalidProfile(..)));
        no_secret(&err.to_string());
        no_secret(&format!("{err:?}"));
    }

    #[test]
    fn debug_output_masks_secrets() {
        let flags =
            CredentialSources { key_name: Some("n".into()), key: Some(Secret::new(SECRET_KEY)), ..Default::default() };
        let env = EnvSources { profile: None, connection_string: Some(cs("h")) };
        let r = resolve(&flags, &env, &ProfileStore::default()).unwrap();
        let token = resolve(
            &CredentialSources { profile: Some("azure".into()), ..Default::default() },
            &EnvSources::default(),
            &two_profiles(),
        )
        .unwrap();
        for shown in [
            format!("{r:?}"),
            format!("{r:#?}"),
            format!("{token:?}"),
            format!("{flags:?}"),
            format!("{env:?}"),
            format!("{:?}", two_profiles()),
        ] {
            no_secret(&shown);
        }
        assert!(format!("{r:?}").contains("***"));
    }

    #[test]
    fn write_local_profile_adds_and_respects_the_default() {
        let dir = TempDir::new("local");
        let path = dir.file();
        let key = Secret::new(SECRET_KEY);
        write_local_profile(&path, "local", "ws://127.0.0.1:9999", "RootManageSharedAccessKey", &key, None, true)
            .unwrap();
        let store = ProfileStore::load(&path).unwrap();
        assert_eq!(store.default_name(), Some("local"));
        let r = resolve(&CredentialSources::default(), &EnvSources::default(), &store).unwrap();
        assert_eq!(r.endpoint, ep(false, "127.0.0.1", 9999));
        assert_eq!(r.credential, Credential::Key { name: "RootManageSharedAccessKey".into(), key: key.clone() });

        // Updating the default profile keeps it the default.
        write_local_profile(&path, "local", "wss://127.0.0.1:9443", "k", &key, Some(FP), true).unwrap();
        let store = ProfileStore::load(&path).unwrap();
        assert_eq!(store.default_name(), Some("local"));
        assert_eq!(store.get("local").unwrap().endpoint, "wss://127.0.0.1:9443");
        assert_eq!(store.get("local").unwrap().tls_fingerprint.as_deref(), Some(FP));

        // Another profile does not take over an existing default.
        write_local_profile(&path, "other", "ws://127.0.0.1:1", "k", &key, None, true).unwrap();
        let store = ProfileStore::load(&path).unwrap();
        assert_eq!(store.default_name(), Some("local"));
        assert_eq!(store.names().collect::<Vec<_>>(), ["local", "other"]);

        // Without make_default_if_none an empty file gets no default.
        let path2 = dir.0.join("second.toml");
        write_local_profile(&path2, "local", "ws://127.0.0.1:1", "k", &key, None, false).unwrap();
        assert_eq!(ProfileStore::load(&path2).unwrap().default_name(), None);

        // A bad endpoint fails and leaves the file alone.
        let before = std::fs::read(&path).unwrap();
        assert!(write_local_profile(&path, "x", "tcp://h", "k", &key, None, true).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), before);
        // So does a broken file, which is never overwritten.
        std::fs::write(&path2, "not toml [").unwrap();
        assert!(write_local_profile(&path2, "local", "ws://h:1", "k", &key, None, true).is_err());
        assert_eq!(std::fs::read(&path2).unwrap(), b"not toml [");
    }

    #[test]
    fn write_local_profile_replaces_a_dangling_default() {
        let dir = TempDir::new("dangling");
        let path = dir.file();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "default = \"gone\"\n").unwrap();
        write_local_profile(&path, "local", "ws://127.0.0.1:9", "k", &Secret::new("v"), None, true).unwrap();
        assert_eq!(ProfileStore::load(&path).unwrap().default_name(), Some("local"));
    }
}
