//! The TOML profile store: named relays with their credentials, in a file written 0600.
//! Which profile a command uses is [`crate::credentials`]'s decision.
//!
//! Parsing and validation are pure; only [`ProfileStore::load`], [`ProfileStore::save`],
//! [`write_local_profile`] and [`default_path`] touch the file system or the process
//! environment. Nothing here prints: warnings
//! are handed back to the caller. Error messages and `Debug` output never contain a key or
//! token value.
//!
//! ```toml
//! default = "local"
//! [profiles.local]
//! endpoint = "ws://127.0.0.1:9999"        # or sb://ns.servicebus.windows.net/, wss://host:port,
//!                                         # or a relay's nodes: ["wss://n1:443", "wss://n2:443"]
//! key_name = "RootManageSharedAccessKey"  # key_name + key, or token, or neither
//! key = "..."
//! tls_fingerprint = "AB:CD:..."           # optional: pin a self-signed relay
//! proxy = "http://proxy.corp:3128"        # optional: the HTTP proxy to the relay, or "none"
//! token_command = "az account get-access-token ..."  # optional: a JWT instead of key/token
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
pub(crate) const ENV_CONFIG: &str = "HYCO_CONFIG";

/// Longest profile name accepted.
pub const MAX_NAME_LEN: usize = 64;

/// One relay: where it is and the credential to use. Validate with [`Profile::validate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// `sb://host[:port]/` (secure, 443 by default), `wss://host[:port]` or `ws://host[:port]`;
    /// for a relay of several nodes, several (an array, or one text with commas).
    #[serde(deserialize_with = "endpoint_list")]
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
    /// The HTTP proxy to reach the relay through (`http://[user:pass@]host:port`, or
    /// `none`), when no `--proxy` or proxy variable says otherwise. A `Secret`: the URL
    /// may carry credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<Secret>,
    /// A shell command printing a JWT, used instead of a key or token (`--token-command`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_command: Option<String>,
}

/// Reads `endpoint`: one text, or an array of them kept as one text with commas between,
/// as [`connstr::parse_endpoints`] reads it.
fn endpoint_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(one) => one,
        OneOrMany::Many(many) => many.join(", "),
    })
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
            proxy: None,
            token_command: None,
        }
    }

    /// A profile with a ready-made SAS token.
    pub fn with_token(endpoint: impl Into<String>, token: Secret) -> Self {
        Profile {
            endpoint: endpoint.into(),
            key_name: None,
            key: None,
            token: Some(token),
            tls_fingerprint: None,
            proxy: None,
            token_command: None,
        }
    }

    /// Checks every field; same as [`Profile::parts`] without the result.
    pub fn validate(&self) -> Result<(), ProfileError> {
        self.parts().map(drop)
    }

    /// Every endpoint of the relay (its nodes), the first as written first.
    pub fn endpoints(&self) -> Result<Vec<Endpoint>, ProfileError> {
        connstr::parse_endpoints(&self.endpoint, false).map_err(ProfileError::Endpoint)
    }

    /// The parsed (first) endpoint, the credential and the normalized fingerprint.
    ///
    /// A `ws://` endpoint means plain WebSocket: there is no emulator flag in a profile.
    pub fn parts(&self) -> Result<(Endpoint, Credential, Option<String>), ProfileError> {
        let endpoint = self.endpoints()?.swap_remove(0);
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
        match &self.token_command {
            Some(c) if c.trim().is_empty() => return Err(ProfileError::Empty("token_command")),
            Some(_) if credential != Credential::None => return Err(ProfileError::CommandWithCredential),
            _ => {}
        }
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
    /// `token_command` together with `key_name`, `key` or `token`: which credential is
    /// meant cannot be guessed.
    CommandWithCredential,
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
            ProfileError::CommandWithCredential => {
                f.write_str("token_command cannot be combined with key_name/key or token: keep one of them")
            }
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
    pub(crate) fn to_toml(&self) -> String {
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

    /// Puts `profile` in the store without the checks of [`ProfileStore::set`], for tests of
    /// what happens to a profile the file could hold but `set` would refuse.
    #[cfg(test)]
    pub(crate) fn insert_unchecked(&mut self, name: &str, profile: Profile) {
        self.file.profiles.insert(name.into(), profile);
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

/// What [`write_local_profile`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalProfile {
    /// Written (added, or updated for the same endpoint); `default` when it is the default.
    Written { default: bool },
    /// A profile of that name points at another relay (`endpoint`) and was left alone.
    Kept { endpoint: String },
}

/// Adds profile `name` to the file at `path` for a relay on this machine (what
/// `hyco serve` calls), keeping the other profiles, or updates it when it names the same
/// endpoint (its key or fingerprint may have changed). A profile of that name that points
/// at another endpoint is left alone: a second relay must not take over the clients of the
/// first. With `make_default_if_none`, `name` becomes the default when there is none or
/// the default names no existing profile; an existing default is left alone.
pub fn write_local_profile(
    path: &Path,
    name: &str,
    endpoint_ws_base: &str,
    key_name: &str,
    key: &Secret,
    tls_fingerprint: Option<&str>,
    make_default_if_none: bool,
) -> anyhow::Result<LocalProfile> {
    let mut store = ProfileStore::load(path)?;
    if let Some(existing) = store.get(name)
        && !existing.endpoint.trim_end_matches('/').eq_ignore_ascii_case(endpoint_ws_base.trim_end_matches('/'))
    {
        return Ok(LocalProfile::Kept { endpoint: existing.endpoint.clone() });
    }
    let mut profile = Profile::with_key(endpoint_ws_base, key_name, key.clone());
    profile.tls_fingerprint = tls_fingerprint.map(str::to_owned);
    store.set(name, profile).with_context(|| format!("profile '{name}'"))?;
    if make_default_if_none && store.default_name().is_none_or(|d| store.get(d).is_none()) {
        store.set_default(name).expect("the profile was just added");
    }
    store.save(path)?;
    Ok(LocalProfile::Written { default: store.default_name() == Some(name) })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const SECRET_KEY: &str = "Zm9vYmFyU0VDUkVUa2V5MTIzNDU2Nzg5MGFiY2RlZmdo";
    pub(crate) const TOKEN: &str = "SharedAccessSignature sr=http%3A%2F%2Fcontoso.servicebus.windows.net%2Fhyco%2F&sig=3o5XBbdcRrcduxDvR9yKIJ1Bh1TNLPhkNfq0TF6n%2BJM%3D&se=1700000000&skn=RootManageSharedAccessKey";
    pub(crate) const FP: &str =
        "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89";

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

    pub(crate) fn key_profile(endpoint: &str) -> Profile {
        Profile::with_key(endpoint, "RootManageSharedAccessKey", Secret::new(SECRET_KEY))
    }

    pub(crate) fn store_with(profiles: &[(&str, Profile)], default: Option<&str>) -> ProfileStore {
        let mut store = ProfileStore::default();
        for (name, p) in profiles {
            store.set(name, p.clone()).unwrap();
        }
        if let Some(d) = default {
            store.set_default(d).unwrap();
        }
        store
    }

    pub(crate) fn ep(secure: bool, host: &str, port: u16) -> Endpoint {
        Endpoint { secure, host: host.into(), port }
    }

    pub(crate) fn no_secret(text: &str) {
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
proxy = "http://alice:pr0xy-pass@proxy.corp:3128"

[profiles.entra]
endpoint = "sb://ns.servicebus.windows.net/"
token_command = "az account get-access-token --resource https://relay.azure.net/ --query accessToken -o tsv"

[profiles.nodes]
endpoint = ["wss://n1.example.net", "wss://n2.example.net:8443"]
"#
        );
        let store = ProfileStore::from_toml(&text).unwrap();
        let entra = store.get("entra").unwrap();
        assert!(entra.token_command.as_deref().is_some_and(|c| c.starts_with("az account get-access-token")));
        assert_eq!(entra.parts().unwrap().1, Credential::None, "the command stands in for a key");
        let mut both = entra.clone();
        both.key_name = Some("RootManageSharedAccessKey".into());
        both.key = Some(Secret::new("k"));
        assert_eq!(both.validate(), Err(ProfileError::CommandWithCredential), "one credential, not two");
        let mut empty = entra.clone();
        empty.token_command = Some("  ".into());
        assert_eq!(empty.validate(), Err(ProfileError::Empty("token_command")));
        let open = store.get("open").unwrap();
        assert_eq!(open.proxy.as_ref().map(Secret::expose), Some("http://alice:pr0xy-pass@proxy.corp:3128"));
        assert!(!format!("{open:?}").contains("pr0xy-pass"), "the proxy's credentials stay out of Debug");
        let (e, c, f) = store.get("local").unwrap().parts().unwrap();
        assert_eq!(e, ep(false, "127.0.0.1", 9999));
        assert_eq!(c, Credential::Key { name: "RootManageSharedAccessKey".into(), key: Secret::new(SECRET_KEY) });
        assert_eq!(f.as_deref(), Some(FP));
        let (e, c, _) = store.get("azure").unwrap().parts().unwrap();
        assert_eq!(e, ep(true, "ns.servicebus.windows.net", 443));
        assert_eq!(c, Credential::Token(Secret::new(TOKEN)));
        let (e, c, f) = store.get("open").unwrap().parts().unwrap();
        assert_eq!((e, c, f), (ep(true, "relay.example", 8443), Credential::None, None));
        let nodes = store.get("nodes").unwrap();
        assert_eq!(nodes.endpoints().unwrap(), [ep(true, "n1.example.net", 443), ep(true, "n2.example.net", 8443)]);
        assert_eq!(nodes.parts().unwrap().0, ep(true, "n1.example.net", 443), "the first is the relay's name");
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
    fn write_local_profile_adds_and_respects_the_default() {
        let dir = TempDir::new("local");
        let path = dir.file();
        let key = Secret::new(SECRET_KEY);
        write_local_profile(&path, "local", "ws://127.0.0.1:9999", "RootManageSharedAccessKey", &key, None, true)
            .unwrap();
        let store = ProfileStore::load(&path).unwrap();
        assert_eq!(store.default_name(), Some("local"));
        let (endpoint, credential, _) = store.get("local").unwrap().parts().unwrap();
        assert_eq!(endpoint, ep(false, "127.0.0.1", 9999));
        assert_eq!(credential, Credential::Key { name: "RootManageSharedAccessKey".into(), key: key.clone() });

        // Updating the default profile for the same relay keeps it the default.
        let other_key = Secret::new("b3RoZXI=");
        let written = write_local_profile(&path, "local", "ws://127.0.0.1:9999/", "k", &other_key, Some(FP), true);
        assert_eq!(written.unwrap(), LocalProfile::Written { default: true });
        let store = ProfileStore::load(&path).unwrap();
        assert_eq!(store.default_name(), Some("local"));
        assert_eq!(store.get("local").unwrap().key.as_ref(), Some(&other_key));
        assert_eq!(store.get("local").unwrap().tls_fingerprint.as_deref(), Some(FP));

        // A second relay elsewhere does not take the profile over.
        let before = std::fs::read(&path).unwrap();
        let kept = write_local_profile(&path, "local", "wss://127.0.0.1:9443", "k", &key, None, true).unwrap();
        assert_eq!(kept, LocalProfile::Kept { endpoint: "ws://127.0.0.1:9999/".into() });
        assert_eq!(std::fs::read(&path).unwrap(), before, "the file is left alone");

        // Another profile does not take over an existing default.
        let written = write_local_profile(&path, "other", "ws://127.0.0.1:1", "k", &key, None, true).unwrap();
        assert_eq!(written, LocalProfile::Written { default: false });
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
