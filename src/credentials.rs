//! Which relay a command talks to and how it proves itself: flags beat the environment,
//! which beats the default profile (README "Credentials and profiles").
//!
//! [`resolve`] is pure: the caller passes the flags, the environment it read and the
//! profile store. [`load_store`] and [`resolve_relay`] are the commands' entry points:
//! they read the profile file (logging its warnings) and the process environment. Error
//! messages and `Debug` output never contain a key or token value. The file format itself
//! is [`crate::profile`]'s.

use std::fmt;
use std::path::PathBuf;

use tracing::warn;

use crate::cli::CredentialArgs;
use crate::connstr::{self, ConnStrError, Credential, Endpoint};
use crate::error::{Kind, failure};
use crate::fingerprint::{self, NotAFingerprint};
use crate::profile::{self, ProfileError, ProfileStore, UnknownProfile};
use crate::secret::Secret;

/// Environment variable naming the profile to use.
pub const ENV_PROFILE: &str = "HYCO_PROFILE";
/// Environment variable holding a connection string.
pub const ENV_CONNECTION_STRING: &str = "HYCO_CONNECTION_STRING";

/// Loads the profile store from its path ([`profile::default_path`]), logging its
/// warnings; errors are configuration failures that say what to fix.
pub fn load_store() -> anyhow::Result<(PathBuf, ProfileStore)> {
    let path = profile::default_path().map_err(|e| config_failure(e, "set HYCO_CONFIG"))?;
    let store = ProfileStore::load(&path).map_err(|e| config_failure(e, "fix or remove the profile file"))?;
    for w in store.warnings() {
        warn!("{w}");
    }
    Ok((path, store))
}

/// Resolves which relay and credential the flags, environment and profiles name.
pub fn resolve_relay(args: &CredentialArgs) -> anyhow::Result<Resolved> {
    let (_, store) = load_store()?;
    let flags = CredentialSources {
        profile: args.profile.clone(),
        connection_string: args.connection_string.clone().map(Secret::new),
        endpoint: (!args.endpoint.is_empty()).then(|| args.endpoint.join(", ")),
        key_name: args.key_name.clone(),
        key: args.key.clone().map(Secret::new),
        tls_fingerprint: args.tls_fingerprint.clone(),
    };
    resolve(&flags, &EnvSources::from_env(), &store).map_err(|e| match e {
        ResolveError::NotConfigured => not_configured(),
        e => failure(Kind::Config, e.to_string()),
    })
}

/// The error for no relay at all; a `HYCO_CONFIG` naming a file that does not exist is
/// the likely cause, so it says so.
fn not_configured() -> anyhow::Error {
    let named = std::env::var_os(profile::ENV_CONFIG).filter(|p| !p.is_empty()).map(PathBuf::from);
    match named {
        Some(path) if !path.exists() => failure(
            Kind::Config,
            format!(
                "no relay configured: {} names {}, which does not exist; fix or unset it, or create it: \
                 run `hyco serve` on this machine, or add a profile with `hyco profile add`",
                profile::ENV_CONFIG,
                path.display()
            ),
        ),
        _ => failure(Kind::Config, ResolveError::NotConfigured.to_string()),
    }
}

/// A configuration error with what to do about it, keeping the cause's own words.
pub fn config_failure(e: anyhow::Error, fix: &str) -> anyhow::Error {
    failure(Kind::Config, format!("{e:#}; {fix}"))
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
    /// Where the relay is (the first endpoint given).
    pub endpoint: Endpoint,
    /// The relay's other endpoints, when several were given (the nodes of one relay).
    pub others: Vec<Endpoint>,
    /// Key, token or nothing.
    pub credential: Credential,
    /// The hybrid connection, when a connection string named one.
    pub entity_path: Option<String>,
    /// Pinned SHA-256 certificate fingerprint, normalized to `AB:CD:…`.
    pub tls_fingerprint: Option<String>,
    /// Where it came from, for messages: `profile 'local'`, `--connection-string`, …
    pub source: String,
    /// The profile's `proxy`, when the relay came from a profile (it may hold credentials).
    pub proxy: Option<Secret>,
    /// The profile's `token_command`, when the relay came from a profile.
    pub token_command: Option<String>,
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
    /// A connection string (from the named flag or variable) holds no key and no token.
    NoCredential(&'static str),
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
            ResolveError::NoCredential(origin) => write!(f, "{origin}: {NO_CREDENTIAL}"),
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
        let mut endpoints = connstr::parse_endpoints(endpoint, false).map_err(ResolveError::Endpoint)?;
        Resolved {
            endpoint: endpoints.remove(0),
            others: endpoints,
            credential: Credential::None,
            entity_path: None,
            tls_fingerprint: None,
            source: "--endpoint".into(),
            proxy: None,
            token_command: None,
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
    // After --key-name/--key, which may supply what the string lacks.
    if resolved.credential == Credential::None
        && let Some(origin) = [ENV_CONNECTION_STRING, "--connection-string"].into_iter().find(|o| resolved.source == *o)
    {
        return Err(ResolveError::NoCredential(origin));
    }
    if let Some(f) = &flags.tls_fingerprint {
        resolved.tls_fingerprint = Some(fingerprint::normalize(f).map_err(|_| ResolveError::Fingerprint)?);
    }
    Ok(resolved)
}

/// Why no hybrid connection could be chosen for a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HcError {
    /// No HC argument, and the credential names none (`EntityPath`).
    Missing,
    /// The HC argument names another hybrid connection than the credential's `EntityPath`.
    Mismatch {
        /// The argument as given.
        given: String,
        /// The credential's `EntityPath`.
        entity_path: String,
        /// Where the credential came from (`--connection-string`, …).
        source: String,
    },
}

impl fmt::Display for HcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HcError::Missing => {
                f.write_str("no hybrid connection named: give HC, or use a connection string with EntityPath=HC")
            }
            HcError::Mismatch { given, entity_path, source } => write!(
                f,
                "the argument names hybrid connection '{given}', but {source} is for '{entity_path}' (its \
                 EntityPath): leave the argument out to use '{entity_path}', or use a credential for '{given}'"
            ),
        }
    }
}

impl std::error::Error for HcError {}

/// Whether `a` and `b` name the same hybrid connection: Azure matches names without
/// regard to ASCII case, and outer slashes never count.
fn same_hc(a: &str, b: &str) -> bool {
    a.trim_matches('/').eq_ignore_ascii_case(b.trim_matches('/'))
}

/// The hybrid connection a command works on: the HC argument, or the credential's
/// `EntityPath` when the argument is left out. An argument that names another one than
/// the `EntityPath` is an error (its token or key would be refused anyway); one that
/// differs only in case is taken in the `EntityPath`'s spelling.
pub fn choose_hc(given: Option<&str>, resolved: &Resolved) -> Result<String, HcError> {
    let entity_path = resolved.entity_path.as_deref().map(|p| p.trim_matches('/'));
    match (given.map(|g| g.trim_matches('/')), entity_path) {
        (None, None) => Err(HcError::Missing),
        (Some(given), None) => Ok(given.to_owned()),
        (None, Some(path)) => Ok(path.to_owned()),
        (Some(given), Some(path)) if same_hc(given, path) => Ok(path.to_owned()),
        (Some(given), Some(path)) => Err(mismatch(given, path, resolved)),
    }
}

/// `connect`'s hybrid connection and target name from its argument (`HC` or `HC/NAME`)
/// and `--target`: with an `EntityPath`, the argument may be left out (`--target` then
/// names the target), or start with the `EntityPath`'s segments and go on with a target
/// name. Without one, the HC is the argument's first segment, or the whole argument with
/// `--target`.
pub fn choose_connect(
    given: Option<&str>,
    target: Option<&str>,
    resolved: &Resolved,
) -> Result<(String, Option<String>), HcError> {
    let entity_path = resolved.entity_path.as_deref().map(|p| p.trim_matches('/'));
    let segments = |s: &str| s.split('/').filter(|s| !s.is_empty()).map(str::to_owned).collect::<Vec<_>>();
    let (given, entity_path) = match (given, entity_path, target) {
        (None, None, _) => return Err(HcError::Missing),
        (None, Some(path), target) => return Ok((path.to_owned(), target.map(str::to_owned))),
        (Some(given), _, Some(target)) => return Ok((choose_hc(Some(given), resolved)?, Some(target.to_owned()))),
        (Some(given), None, None) => {
            let mut parts = segments(given);
            if parts.is_empty() {
                return Err(HcError::Missing);
            }
            let rest = parts.split_off(1);
            return Ok((parts.remove(0), (!rest.is_empty()).then(|| rest.join("/"))));
        }
        (Some(given), Some(path), None) => (given, path),
    };
    let (parts, hc) = (segments(given), segments(entity_path));
    if parts.len() >= hc.len() && parts.iter().zip(&hc).all(|(a, b)| same_hc(a, b)) {
        let rest = parts[hc.len()..].join("/");
        return Ok((entity_path.to_owned(), (!rest.is_empty()).then_some(rest)));
    }
    Err(mismatch(given.trim_matches('/'), entity_path, resolved))
}

fn mismatch(given: &str, entity_path: &str, resolved: &Resolved) -> HcError {
    HcError::Mismatch { given: given.to_owned(), entity_path: entity_path.to_owned(), source: resolved.source.clone() }
}

/// What a connection string without a key or token is told.
pub(crate) const NO_CREDENTIAL: &str = "no key or token in the connection string: it needs SharedAccessKeyName \
     and SharedAccessKey, or SharedAccessSignature (for a hybrid connection open to any sender, give --endpoint \
     alone)";

fn from_connection_string(origin: &'static str, cs: &Secret) -> Result<Resolved, ResolveError> {
    let cs = connstr::parse(cs.expose()).map_err(|e| ResolveError::ConnectionString(origin, e))?;
    Ok(Resolved {
        endpoint: cs.endpoint,
        others: Vec::new(),
        credential: cs.credential,
        entity_path: cs.entity_path,
        tls_fingerprint: None,
        source: origin.into(),
        proxy: None,
        token_command: None,
    })
}

fn from_profile(store: &ProfileStore, name: &str, origin: ProfileOrigin) -> Result<Resolved, ResolveError> {
    let profile = store.require(name).map_err(|e| ResolveError::UnknownProfile(origin, e))?;
    let invalid = |e| ResolveError::InvalidProfile(name.to_owned(), e);
    let (endpoint, credential, tls_fingerprint) = profile.parts().map_err(invalid)?;
    let others = profile.endpoints().map_err(invalid)?.split_off(1);
    let source = format!("profile '{name}'");
    let (proxy, token_command) = (profile.proxy.clone(), profile.token_command.clone());
    Ok(Resolved { endpoint, others, credential, entity_path: None, tls_fingerprint, source, proxy, token_command })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Profile;
    use crate::profile::tests::{FP, SECRET_KEY, TOKEN, ep, key_profile, no_secret, store_with};

    fn with_entity_path(path: Option<&str>) -> Resolved {
        Resolved {
            endpoint: ep(true, "h", 443),
            others: Vec::new(),
            credential: Credential::None,
            entity_path: path.map(str::to_owned),
            tls_fingerprint: None,
            source: "--connection-string".into(),
            proxy: None,
            token_command: None,
        }
    }

    #[test]
    fn the_hc_defaults_to_entity_path_and_another_is_an_error() {
        let none = with_entity_path(None);
        let web = with_entity_path(Some("web"));
        assert_eq!(choose_hc(None, &none), Err(HcError::Missing));
        assert_eq!(choose_hc(Some("/db/"), &none), Ok("db".into()));
        assert_eq!(choose_hc(None, &web), Ok("web".into()));
        assert_eq!(choose_hc(Some("web/"), &web), Ok("web".into()));
        assert_eq!(choose_hc(Some("WEB"), &web), Ok("web".into()), "Azure's names ignore case");
        let e = choose_hc(Some("db"), &web).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("'db'") && text.contains("'web'") && text.contains("--connection-string"), "{text}");
        assert!(HcError::Missing.to_string().contains("EntityPath"));
    }

    #[test]
    fn connect_keeps_its_target_name_form_with_entity_path() {
        let pair = |hc: &str, t: Option<&str>| Ok((hc.to_owned(), t.map(str::to_owned)));
        let none = with_entity_path(None);
        assert_eq!(choose_connect(None, None, &none), Err(HcError::Missing));
        assert_eq!(choose_connect(Some("/"), None, &none), Err(HcError::Missing), "no segment names an HC");
        assert_eq!(choose_connect(Some("web/api"), None, &none), pair("web", Some("api")));
        assert_eq!(choose_connect(Some("team/ssh"), Some("x"), &none), pair("team/ssh", Some("x")));
        let web = with_entity_path(Some("web"));
        assert_eq!(choose_connect(None, None, &web), pair("web", None));
        assert_eq!(choose_connect(None, Some("api"), &web), pair("web", Some("api")));
        assert_eq!(choose_connect(Some("web"), None, &web), pair("web", None));
        assert_eq!(choose_connect(Some("Web/api/v1"), None, &web), pair("web", Some("api/v1")));
        assert_eq!(choose_connect(Some("web"), Some("api"), &web), pair("web", Some("api")));
        assert!(matches!(choose_connect(Some("db/api"), None, &web), Err(HcError::Mismatch { .. })));
        assert!(matches!(choose_connect(Some("db"), Some("api"), &web), Err(HcError::Mismatch { .. })));
        // An EntityPath holding `/` takes as many segments of the argument.
        let team = with_entity_path(Some("team/ssh"));
        assert_eq!(choose_connect(Some("team/ssh/box1"), None, &team), pair("team/ssh", Some("box1")));
        assert_eq!(choose_connect(Some("team/ssh"), None, &team), pair("team/ssh", None));
        assert!(matches!(choose_connect(Some("team"), None, &team), Err(HcError::Mismatch { .. })));
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
    fn a_connection_string_without_a_credential_says_so() {
        let bare = Secret::new("Endpoint=sb://h:9/;UseDevelopmentEmulator=true\r\n");
        let env = EnvSources { profile: None, connection_string: Some(bare.clone()) };
        let err = resolve(&CredentialSources::default(), &env, &ProfileStore::default()).unwrap_err();
        assert_eq!(err, ResolveError::NoCredential(ENV_CONNECTION_STRING));
        assert!(err.to_string().contains("no key or token in the connection string"), "{err}");
        let flags = CredentialSources { connection_string: Some(bare), ..Default::default() };
        let err = resolve(&flags, &EnvSources::default(), &ProfileStore::default()).unwrap_err();
        assert_eq!(err, ResolveError::NoCredential("--connection-string"));
        // --key-name/--key may supply the credential a variable's string lacks.
        let flags =
            CredentialSources { key_name: Some("n".into()), key: Some(Secret::new(SECRET_KEY)), ..Default::default() };
        assert!(resolve(&flags, &env, &ProfileStore::default()).is_ok());
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
        store.insert_unchecked("bad", Profile::with_token("ws://h:1", Secret::new(SECRET_KEY)));
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
    fn a_dangling_default_is_an_unknown_profile() {
        let store = ProfileStore::from_toml("default = \"gone\"\n[profiles.a]\nendpoint = \"ws://h:1\"\n").unwrap();
        let err = resolve(&CredentialSources::default(), &EnvSources::default(), &store).unwrap_err();
        assert!(matches!(err, ResolveError::UnknownProfile(ProfileOrigin::Default, _)), "{err:?}");
        assert!(err.to_string().contains("known profiles: a"), "{err}");
    }
}
