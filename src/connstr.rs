//! Connection strings (docs/protocol.md 4): parse, and write back with or without secrets.
//!
//! Pure: turns `Endpoint=sb://…;SharedAccessKeyName=…;…` into typed parts. It does not
//! mint tokens (see `sas`), read profiles or resolve host names. Error messages name the
//! offending key but never contain a key or token value.

use std::fmt;
use std::net::Ipv6Addr;

use crate::sas;
use crate::secret::Secret;

/// Default port of a secure (`wss`) endpoint.
pub const DEFAULT_SECURE_PORT: u16 = 443;
/// Default port of a plain (`ws`) endpoint.
pub const DEFAULT_PLAIN_PORT: u16 = 80;

/// The keys a connection string may hold (matched case-insensitively).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnStrKey {
    /// `Endpoint`: where the relay is.
    Endpoint,
    /// `SharedAccessKeyName`: the authorization rule name.
    SharedAccessKeyName,
    /// `SharedAccessKey`: the rule's key.
    SharedAccessKey,
    /// `SharedAccessSignature`: a ready-made token, used as is.
    SharedAccessSignature,
    /// `EntityPath`: the hybrid connection name.
    EntityPath,
    /// `UseDevelopmentEmulator`: `true` for a local relay over plain `ws://`.
    UseDevelopmentEmulator,
    /// `OperationTimeout`: Microsoft's SDKs' timeout for an operation (`hh:mm:ss`);
    /// accepted and checked, hyco's own timeouts apply.
    OperationTimeout,
    /// `Authentication`: Microsoft's SDKs' Entra ID / managed identity mode; refused with
    /// a pointer to `--token-command`.
    Authentication,
}

const ALL_KEYS: [ConnStrKey; 8] = [
    ConnStrKey::Endpoint,
    ConnStrKey::SharedAccessKeyName,
    ConnStrKey::SharedAccessKey,
    ConnStrKey::SharedAccessSignature,
    ConnStrKey::EntityPath,
    ConnStrKey::UseDevelopmentEmulator,
    ConnStrKey::OperationTimeout,
    ConnStrKey::Authentication,
];

impl ConnStrKey {
    /// The canonical spelling of the key.
    pub fn name(self) -> &'static str {
        match self {
            ConnStrKey::Endpoint => "Endpoint",
            ConnStrKey::SharedAccessKeyName => "SharedAccessKeyName",
            ConnStrKey::SharedAccessKey => "SharedAccessKey",
            ConnStrKey::SharedAccessSignature => "SharedAccessSignature",
            ConnStrKey::EntityPath => "EntityPath",
            ConnStrKey::UseDevelopmentEmulator => "UseDevelopmentEmulator",
            ConnStrKey::OperationTimeout => "OperationTimeout",
            ConnStrKey::Authentication => "Authentication",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        ALL_KEYS.into_iter().find(|k| k.name().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for ConnStrKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What is wrong with an endpoint URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointError {
    /// Not one of `sb://`, `ws://`, `wss://`, `http://`, `https://`.
    UnsupportedScheme,
    /// Nothing between `://` and the port or path.
    MissingHost,
    /// The host has characters a DNS name or IP literal cannot have.
    InvalidHost,
    /// The port is empty, not a number, 0 or above 65535.
    InvalidPort,
    /// Something other than an empty path or `/` follows the host (outside a connection
    /// string with `EntityPath`, see [`parse`]).
    UnexpectedPath,
    /// A path with characters other than letters, digits, `-._~/`, or a `.`/`..` segment.
    InvalidPath,
    /// A list of endpoints ([`parse_endpoints`]) mixes TLS and plain ones.
    MixedSchemes,
    /// A list of endpoints holds more than [`MAX_ENDPOINTS`].
    TooMany,
}

impl fmt::Display for EndpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EndpointError::UnsupportedScheme => "scheme must be sb://, wss://, ws://, https:// or http://",
            EndpointError::MissingHost => "host is missing",
            EndpointError::InvalidHost => "host is not a valid name or IP address",
            EndpointError::InvalidPort => "port must be a number from 1 to 65535",
            EndpointError::UnexpectedPath => {
                "only '/' may follow the host (give the hybrid connection as HC or EntityPath, not in the endpoint)"
            }
            EndpointError::InvalidPath => "the path may hold only letters, digits and -._~/ and no '.' or '..' segment",
            EndpointError::MixedSchemes => {
                "the endpoints of one relay are all TLS (sb://, wss://) or all plain (ws://)"
            }
            EndpointError::TooMany => "too many endpoints: at most 16",
        })
    }
}

impl std::error::Error for EndpointError {}

/// Why a connection string was rejected. Never carries a key or token value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnStrError {
    /// A `;`-separated part without `=`; `position` counts non-empty parts from 1.
    MalformedPart {
        /// 1-based index of the part among the non-empty parts.
        position: usize,
    },
    /// A key this parser does not know; `key` is `None` when it does not look like a key
    /// name and so might be a pasted secret.
    UnknownKey {
        /// The key as written, when safe to show.
        key: Option<String>,
        /// 1-based index of the part among the non-empty parts.
        position: usize,
    },
    /// A key given twice.
    DuplicateKey(ConnStrKey),
    /// A key with an empty value.
    EmptyValue(ConnStrKey),
    /// No `Endpoint`.
    MissingEndpoint,
    /// The `Endpoint` value is not a usable URI.
    InvalidEndpoint(EndpointError),
    /// `UseDevelopmentEmulator` is neither `true` nor `false`.
    InvalidBool(ConnStrKey),
    /// `SharedAccessSignature` together with `SharedAccessKeyName` or `SharedAccessKey`.
    SignatureWithKey,
    /// One of `SharedAccessKeyName` / `SharedAccessKey` without the other (names the missing one).
    MissingKeyPart(ConnStrKey),
    /// The `SharedAccessSignature` value is not a SAS token.
    InvalidSignature(sas::SasError),
    /// `OperationTimeout` is not a duration `[d.]hh:mm:ss[.fff]`.
    InvalidTimeout,
    /// `Authentication` (Entra ID, managed identity) is given: hyco speaks SAS only.
    UnsupportedAuthentication,
    /// `Endpoint` has a path but there is no `EntityPath` to resolve against it; holds the
    /// path without its outer slashes.
    EndpointPathWithoutEntityPath(String),
}

impl fmt::Display for ConnStrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnStrError::MalformedPart { position } => {
                write!(f, "connection string part {position} has no '='")
            }
            ConnStrError::UnknownKey { key: Some(key), .. } => {
                write!(f, "connection string has unknown key '{key}' (known: {})", known_keys())
            }
            ConnStrError::UnknownKey { key: None, position } => write!(
                f,
                "connection string part {position} has an unknown key, not shown in case it is a secret (known: {})",
                known_keys()
            ),
            ConnStrError::DuplicateKey(k) => write!(f, "connection string has {k} twice"),
            ConnStrError::EmptyValue(k) => write!(f, "connection string {k} is empty"),
            ConnStrError::MissingEndpoint => f.write_str("connection string lacks Endpoint"),
            ConnStrError::InvalidEndpoint(e) => write!(f, "invalid Endpoint: {e}"),
            ConnStrError::InvalidBool(k) => write!(f, "{k} must be true or false"),
            ConnStrError::SignatureWithKey => {
                f.write_str("SharedAccessSignature cannot be combined with SharedAccessKeyName/SharedAccessKey")
            }
            ConnStrError::MissingKeyPart(missing) => {
                let other = match missing {
                    ConnStrKey::SharedAccessKey => ConnStrKey::SharedAccessKeyName,
                    _ => ConnStrKey::SharedAccessKey,
                };
                write!(f, "connection string has {other} but lacks {missing}")
            }
            ConnStrError::InvalidSignature(e) => write!(f, "invalid SharedAccessSignature: {e}"),
            ConnStrError::InvalidTimeout => f.write_str("OperationTimeout must be a duration like 00:01:00"),
            ConnStrError::UnsupportedAuthentication => f.write_str(
                "connection string has Authentication=…, which is not supported there: for Microsoft Entra ID or a \
                 managed identity, give the \
                 relay with --endpoint sb://NAMESPACE.servicebus.windows.net and the token with --token-command \
                 'az account get-access-token --resource https://relay.azure.net/ --query accessToken -o tsv' \
                 (or token_command in a profile); or use a SAS key (SharedAccessKeyName and SharedAccessKey) \
                 or a token (SharedAccessSignature)",
            ),
            ConnStrError::EndpointPathWithoutEntityPath(path) => write!(
                f,
                "Endpoint has a path ('/{path}') and there is no EntityPath: write the Endpoint without a path \
                 and name the whole hybrid connection with EntityPath (e.g. EntityPath={path}) or the HC argument"
            ),
        }
    }
}

impl std::error::Error for ConnStrError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConnStrError::InvalidEndpoint(e) => Some(e),
            ConnStrError::InvalidSignature(e) => Some(e),
            _ => None,
        }
    }
}

/// Where the relay is: `ws[s]://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `wss` (TLS) when true, plain `ws` otherwise.
    pub secure: bool,
    /// DNS name or IP address as written; an IPv6 address without brackets.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

/// The service domains of Azure Relay's clouds: a namespace is `{name}.{domain}`, and its
/// gateways, which accept addresses name, are other hosts of the same domain.
pub const AZURE_SERVICE_DOMAINS: [&str; 4] =
    ["servicebus.windows.net", "servicebus.chinacloudapi.cn", "servicebus.usgovcloudapi.net", "servicebus.cloudapi.de"];

impl Endpoint {
    /// The Azure service domain this endpoint is a namespace of (`contoso.servicebus.windows.net`
    /// → `servicebus.windows.net`); `None` for any other relay, `hyco serve` included.
    pub fn azure_domain(&self) -> Option<&'static str> {
        let host = self.host.to_ascii_lowercase();
        let (name, domain) = host.split_once('.')?;
        (!name.is_empty()).then_some(())?;
        AZURE_SERVICE_DOMAINS.iter().copied().find(|d| *d == domain)
    }

    /// `host:port`, with brackets around an IPv6 host.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.url_host(), self.port)
    }

    /// The WebSocket base URI, `ws://host:port` or `wss://host:port`, no trailing slash.
    pub fn ws_base(&self) -> String {
        let scheme = if self.secure { "wss" } else { "ws" };
        format!("{scheme}://{}", self.authority())
    }

    /// The `sb://host[:port]/` form; the port is left out only for secure port 443.
    pub fn sb_uri(&self) -> String {
        if self.secure && self.port == DEFAULT_SECURE_PORT {
            format!("sb://{}/", self.url_host())
        } else {
            format!("sb://{}/", self.authority())
        }
    }

    fn url_host(&self) -> String {
        if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() }
    }
}

/// Parses an endpoint URI (scheme case-insensitive):
///
/// - `sb://host[:port][/]`: `wss`, port 443 unless given; with `emulator`, plain `ws`,
///   port 80 unless given.
/// - `wss://` / `https://` (default 443) and `ws://` / `http://` (default 80) are taken
///   literally whatever `emulator` says (a hyco extension).
///
/// An IPv6 host is written in brackets, `[::1]`. Nothing but `/` may follow the host.
pub fn parse_endpoint(s: &str, emulator: bool) -> Result<Endpoint, ConnStrError> {
    match split_endpoint(s, emulator) {
        Ok((endpoint, "" | "/")) => Ok(endpoint),
        Ok(_) => Err(ConnStrError::InvalidEndpoint(EndpointError::UnexpectedPath)),
        Err(e) => Err(ConnStrError::InvalidEndpoint(e)),
    }
}

/// The most endpoints one relay may be given as (its nodes).
pub const MAX_ENDPOINTS: usize = 16;

/// Parses the endpoints of one relay: one endpoint as [`parse_endpoint`] takes it, or
/// several separated by commas (a relay of several nodes, docs/protocol.md 11), all TLS
/// or all plain (a list must not let a client fall back from TLS). At most
/// [`MAX_ENDPOINTS`].
pub fn parse_endpoints(s: &str, emulator: bool) -> Result<Vec<Endpoint>, ConnStrError> {
    let endpoints = s
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| parse_endpoint(e, emulator))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(first) = endpoints.first() else {
        return Err(ConnStrError::InvalidEndpoint(EndpointError::MissingHost));
    };
    if endpoints.len() > MAX_ENDPOINTS {
        return Err(ConnStrError::InvalidEndpoint(EndpointError::TooMany));
    }
    if endpoints.iter().any(|e| e.secure != first.secure) {
        return Err(ConnStrError::InvalidEndpoint(EndpointError::MixedSchemes));
    }
    Ok(endpoints)
}

/// Parses an endpoint URI into the endpoint and what follows its host from the first `/`
/// (`""`, `/` or a path, with any query or fragment in it, for the caller to judge).
fn split_endpoint(s: &str, emulator: bool) -> Result<(Endpoint, &str), EndpointError> {
    let (scheme, rest) = s.split_once("://").ok_or(EndpointError::UnsupportedScheme)?;
    let secure = match scheme.to_ascii_lowercase().as_str() {
        "sb" => !emulator,
        "wss" | "https" => true,
        "ws" | "http" => false,
        _ => return Err(EndpointError::UnsupportedScheme),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };

    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (inner, after) = bracketed.split_once(']').ok_or(EndpointError::InvalidHost)?;
        inner.parse::<Ipv6Addr>().map_err(|_| EndpointError::InvalidHost)?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or(EndpointError::InvalidHost)?),
        };
        (inner, port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        if host.is_empty() {
            return Err(EndpointError::MissingHost);
        }
        let valid = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_');
        if !host.bytes().all(valid) {
            return Err(EndpointError::InvalidHost);
        }
        (host, port)
    };

    let port = match port {
        None if secure => DEFAULT_SECURE_PORT,
        None => DEFAULT_PLAIN_PORT,
        Some(p) => {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(EndpointError::InvalidPort);
            }
            match p.parse::<u16>() {
                Ok(0) | Err(_) => return Err(EndpointError::InvalidPort),
                Ok(port) => port,
            }
        }
    };

    Ok((Endpoint { secure, host: host.to_owned(), port }, path))
}

/// The hybrid connection an `Endpoint` path and an `EntityPath` name together, resolved as
/// Microsoft's SDKs resolve them (`new Uri(endpoint, entityPath)`, RFC 3986 5.2): an
/// `EntityPath` starting with `/` stands alone; otherwise it replaces what follows the
/// endpoint path's last `/` (`sb://h/a/` + `b` is `a/b`, `sb://h/a` + `b` is `b`).
fn resolve_entity_path(endpoint_path: &str, entity_path: &str) -> Result<String, EndpointError> {
    let valid = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/');
    if !endpoint_path.bytes().all(valid) {
        return Err(EndpointError::InvalidPath);
    }
    let merged = match entity_path.strip_prefix('/') {
        Some(absolute) => absolute.to_owned(),
        None => {
            let dir = &endpoint_path[..endpoint_path.rfind('/').map_or(0, |i| i + 1)];
            format!("{dir}{entity_path}")
        }
    };
    if merged.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(EndpointError::InvalidPath);
    }
    Ok(merged.trim_matches('/').to_owned())
}

/// How a client proves itself to the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// No credentials: a sender to an HC that does not require client authorization.
    None,
    /// A rule name and key, from which tokens are minted (and renewed).
    Key {
        /// `SharedAccessKeyName`.
        name: String,
        /// `SharedAccessKey`, used as text.
        key: Secret,
    },
    /// A ready-made token (`SharedAccessSignature`), used as is and never renewed.
    Token(Secret),
}

/// A parsed connection string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionString {
    /// Where the relay is.
    pub endpoint: Endpoint,
    /// Key, token or nothing.
    pub credential: Credential,
    /// `EntityPath`: the hybrid connection, if named.
    pub entity_path: Option<String>,
    /// `UseDevelopmentEmulator` as given.
    pub use_development_emulator: bool,
}

/// The keys a connection string may hold, for messages.
fn known_keys() -> String {
    ALL_KEYS.iter().filter(|k| **k != ConnStrKey::Authentication).map(|k| k.name()).collect::<Vec<_>>().join(", ")
}

/// What a pasted connection string is stripped of before parsing, wherever it comes from
/// (a flag, `HYCO_CONNECTION_STRING`, a file or stdin): surrounding whitespace (a trailing
/// newline or CRLF included), then one pair of matching quotes around it, then whitespace
/// again inside them.
pub fn clean(s: &str) -> &str {
    let s = s.trim();
    let unquoted = ['"', '\''].into_iter().find_map(|q| s.strip_prefix(q).and_then(|r| r.strip_suffix(q)));
    unquoted.map_or(s, str::trim)
}

/// Checks an `OperationTimeout` value: `[d.]hh:mm:ss[.fff]`, the form Microsoft's SDKs
/// write (a .NET `TimeSpan`).
fn valid_timeout(value: &str) -> bool {
    let parts: Vec<&str> = value.split(':').collect();
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let [hours, minutes, seconds] = parts[..] else { return false };
    let hours_ok = match hours.split_once('.') {
        Some((days, h)) => digits(days) && digits(h),
        None => digits(hours),
    };
    let seconds_ok = match seconds.split_once('.') {
        Some((s, fraction)) => digits(s) && digits(fraction),
        None => digits(seconds),
    };
    hours_ok && digits(minutes) && seconds_ok
}

/// A key name shown in an error only when it looks like one (short, letters only), so a
/// secret pasted without its key never reaches a message.
fn printable_key(key: &str) -> Option<String> {
    (!key.is_empty() && key.len() <= 32 && key.bytes().all(|b| b.is_ascii_alphabetic())).then(|| key.to_owned())
}

/// Parses a connection string (docs/protocol.md 4).
///
/// The text is [`clean`]ed first. Parts split on `;` (empty parts dropped), then on the
/// first `=`. Keys are case-insensitive, with surrounding ASCII whitespace ignored; values
/// are taken as written. Unknown, duplicate or empty-valued keys are errors.
pub fn parse(s: &str) -> Result<ConnectionString, ConnStrError> {
    let s = clean(s);
    let mut values: [Option<&str>; ALL_KEYS.len()] = [None; ALL_KEYS.len()];
    for (i, part) in s.split(';').filter(|p| !p.is_empty()).enumerate() {
        let (key, value) = part.split_once('=').ok_or(ConnStrError::MalformedPart { position: i + 1 })?;
        let key_text = key.trim_ascii();
        let key = ConnStrKey::from_name(key_text)
            .ok_or_else(|| ConnStrError::UnknownKey { key: printable_key(key_text), position: i + 1 })?;
        let slot = &mut values[key as usize];
        if slot.is_some() {
            return Err(ConnStrError::DuplicateKey(key));
        }
        if value.is_empty() {
            return Err(ConnStrError::EmptyValue(key));
        }
        *slot = Some(value);
    }
    let get = |k: ConnStrKey| values[k as usize];
    if get(ConnStrKey::Authentication).is_some() {
        return Err(ConnStrError::UnsupportedAuthentication);
    }
    if get(ConnStrKey::OperationTimeout).is_some_and(|v| !valid_timeout(v)) {
        return Err(ConnStrError::InvalidTimeout);
    }

    let use_development_emulator = match get(ConnStrKey::UseDevelopmentEmulator) {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(_) => {
            return Err(ConnStrError::InvalidBool(ConnStrKey::UseDevelopmentEmulator));
        }
    };
    let (endpoint, path) =
        split_endpoint(get(ConnStrKey::Endpoint).ok_or(ConnStrError::MissingEndpoint)?, use_development_emulator)
            .map_err(ConnStrError::InvalidEndpoint)?;
    let entity_path = match (path, get(ConnStrKey::EntityPath)) {
        ("" | "/", entity_path) => entity_path.map(str::to_owned),
        (path, Some(entity_path)) => {
            Some(resolve_entity_path(path, entity_path).map_err(ConnStrError::InvalidEndpoint)?)
        }
        (path, None) => {
            if resolve_entity_path(path, "x").is_err() {
                return Err(ConnStrError::InvalidEndpoint(EndpointError::InvalidPath));
            }
            return Err(ConnStrError::EndpointPathWithoutEntityPath(path.trim_matches('/').to_owned()));
        }
    };

    let credential = match (
        get(ConnStrKey::SharedAccessKeyName),
        get(ConnStrKey::SharedAccessKey),
        get(ConnStrKey::SharedAccessSignature),
    ) {
        (None, None, None) => Credential::None,
        (Some(name), Some(key), None) => Credential::Key { name: name.to_owned(), key: Secret::new(key) },
        (None, None, Some(token)) => {
            sas::parse(token).map_err(ConnStrError::InvalidSignature)?;
            Credential::Token(Secret::new(token))
        }
        (_, _, Some(_)) => return Err(ConnStrError::SignatureWithKey),
        (Some(_), None, None) => {
            return Err(ConnStrError::MissingKeyPart(ConnStrKey::SharedAccessKey));
        }
        (None, Some(_), None) => {
            return Err(ConnStrError::MissingKeyPart(ConnStrKey::SharedAccessKeyName));
        }
    };

    Ok(ConnectionString { endpoint, credential, entity_path, use_development_emulator })
}

impl ConnectionString {
    /// The connection string with the real key or token, e.g. for a profile file.
    /// A plain `ws` endpoint is written in emulator form:
    /// `Endpoint=sb://host:port/;…;UseDevelopmentEmulator=true`.
    pub fn to_string_with_secrets(&self) -> String {
        Revealed(self).to_string()
    }

    fn write(&self, out: &mut impl fmt::Write, reveal: bool) -> fmt::Result {
        let mask = |s: &Secret| {
            if reveal { s.expose().to_owned() } else { "***".to_owned() }
        };
        write!(out, "Endpoint={}", self.endpoint.sb_uri())?;
        match &self.credential {
            Credential::None => {}
            Credential::Key { name, key } => write!(out, ";SharedAccessKeyName={name};SharedAccessKey={}", mask(key))?,
            Credential::Token(token) => write!(out, ";SharedAccessSignature={}", mask(token))?,
        }
        if let Some(path) = &self.entity_path {
            write!(out, ";EntityPath={path}")?;
        }
        // The `sb://` form means wss unless the emulator flag says ws.
        if !self.endpoint.secure {
            out.write_str(";UseDevelopmentEmulator=true")?;
        }
        Ok(())
    }
}

/// Displays a connection string with its secret, for [`ConnectionString::to_string_with_secrets`].
struct Revealed<'a>(&'a ConnectionString);

impl fmt::Display for Revealed<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.write(f, true)
    }
}

impl fmt::Display for ConnectionString {
    /// Writes the connection string with the key or token shown as `***`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg=";
    const AZURE: &str = "Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg=;EntityPath=hyco";
    const TOKEN: &str = "SharedAccessSignature sr=http%3A%2F%2Fcontoso.servicebus.windows.net%2Fhyco%2F&sig=3o5XBbdcRrcduxDvR9yKIJ1Bh1TNLPhkNfq0TF6n%2BJM%3D&se=1700000000&skn=RootManageSharedAccessKey";

    fn ep(secure: bool, host: &str, port: u16) -> Endpoint {
        Endpoint { secure, host: host.into(), port }
    }

    #[test]
    fn parses_azure_portal_string() {
        let cs = parse(AZURE).unwrap();
        assert_eq!(cs.endpoint, ep(true, "contoso.servicebus.windows.net", 443));
        assert_eq!(cs.credential, Credential::Key { name: "RootManageSharedAccessKey".into(), key: Secret::new(KEY) });
        assert_eq!(cs.entity_path.as_deref(), Some("hyco"));
        assert!(!cs.use_development_emulator);
        assert_eq!(cs.to_string_with_secrets(), AZURE);
    }

    #[test]
    fn keys_case_insensitive_any_order_empty_parts_dropped() {
        let cs = parse(";;entitypath=hyco;SHAREDACCESSKEY=k=;endpoint=sb://h/;sharedAccessKeyName=n;").unwrap();
        assert_eq!(cs.endpoint, ep(true, "h", 443));
        assert_eq!(cs.credential, Credential::Key { name: "n".into(), key: Secret::new("k=") });
        assert_eq!(cs.entity_path.as_deref(), Some("hyco"));
    }

    #[test]
    fn splits_on_first_equals_and_keeps_values_untrimmed() {
        let cs = parse("Endpoint=sb://h;SharedAccessKeyName= n ;SharedAccessKey=a==b=").unwrap();
        let Credential::Key { name, key } = cs.credential else {
            panic!("expected key");
        };
        assert_eq!(name, " n ");
        assert_eq!(key.expose(), "a==b=");
        // An untrimmed endpoint value is not a valid URI.
        assert_eq!(
            parse("Endpoint= sb://h/").unwrap_err(),
            ConnStrError::InvalidEndpoint(EndpointError::UnsupportedScheme)
        );
        // Whitespace around a key is ignored.
        assert!(parse(" Endpoint =sb://h/; EntityPath=x").is_ok());
    }

    #[test]
    fn pasted_text_loses_whitespace_and_one_pair_of_quotes() {
        let plain = "Endpoint=sb://h:1/;SharedAccessKeyName=n;SharedAccessKey=k;UseDevelopmentEmulator=true";
        let want = parse(plain).unwrap();
        for pasted in [
            format!("{plain}\n"),
            format!("{plain}\r\n"),
            format!("  {plain} "),
            format!("'{plain}'"),
            format!("\"{plain}\"\n"),
            format!(" ' {plain}\n' "),
        ] {
            assert_eq!(parse(&pasted).as_ref(), Ok(&want), "{pasted:?}");
        }
        assert_eq!(clean("'a\""), "'a\"", "quotes must match");
        assert_eq!(clean("''x''"), "'x'", "one pair only");
        let err = parse(&format!("'{plain}")).unwrap_err();
        assert_eq!(err, ConnStrError::UnknownKey { key: None, position: 1 });
    }

    #[test]
    fn operation_timeout_is_accepted_and_authentication_has_its_own_message() {
        for ok in ["00:01:00", "1.02:03:04", "00:00:30.5"] {
            assert!(parse(&format!("Endpoint=sb://h/;OperationTimeout={ok}")).is_ok(), "{ok}");
        }
        for bad in ["60", "1:2", "a:b:c", "00:01:00x"] {
            assert_eq!(parse(&format!("Endpoint=sb://h/;OperationTimeout={bad}")), Err(ConnStrError::InvalidTimeout));
        }
        for auth in ["Managed Identity", "ManagedIdentity"] {
            let err = parse(&format!("Endpoint=sb://h/;Authentication={auth}")).unwrap_err();
            assert_eq!(err, ConnStrError::UnsupportedAuthentication);
            // It says how hyco does it instead (issue 15 A.3).
            let text = err.to_string();
            assert!(
                text.contains("--token-command 'az account get-access-token --resource https://relay.azure.net/"),
                "{err}"
            );
        }
    }

    #[test]
    fn no_credentials_is_allowed() {
        let cs = parse("Endpoint=sb://h/;EntityPath=hyco").unwrap();
        assert_eq!(cs.credential, Credential::None);
        assert_eq!(cs.to_string(), "Endpoint=sb://h/;EntityPath=hyco");
        let cs = parse("Endpoint=sb://h/").unwrap();
        assert_eq!(cs.entity_path, None);
    }

    #[test]
    fn token_credential() {
        let s = format!("Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessSignature={TOKEN};EntityPath=hyco");
        let cs = parse(&s).unwrap();
        assert_eq!(cs.credential, Credential::Token(Secret::new(TOKEN)));
        assert_eq!(cs.to_string_with_secrets(), s);
        assert_eq!(
            cs.to_string(),
            "Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessSignature=***;EntityPath=hyco"
        );
    }

    #[test]
    fn token_must_be_a_sas_token() {
        let err = parse("Endpoint=sb://h/;SharedAccessSignature=notatoken-SECRETSTUFF").unwrap_err();
        assert_eq!(err, ConnStrError::InvalidSignature(sas::SasError::MissingPrefix));
        assert!(!err.to_string().contains("SECRETSTUFF"));
    }

    #[test]
    fn token_cannot_combine_with_key() {
        for extra in [";SharedAccessKeyName=n", ";SharedAccessKey=k", ";SharedAccessKeyName=n;SharedAccessKey=k"] {
            let s = format!("Endpoint=sb://h/;SharedAccessSignature={TOKEN}{extra}");
            assert_eq!(parse(&s).unwrap_err(), ConnStrError::SignatureWithKey, "{extra}");
        }
    }

    #[test]
    fn key_name_and_key_come_together() {
        assert_eq!(
            parse("Endpoint=sb://h/;SharedAccessKeyName=n").unwrap_err(),
            ConnStrError::MissingKeyPart(ConnStrKey::SharedAccessKey)
        );
        let err = parse("Endpoint=sb://h/;SharedAccessKey=SECRETKEY").unwrap_err();
        assert_eq!(err, ConnStrError::MissingKeyPart(ConnStrKey::SharedAccessKeyName));
        assert!(err.to_string().contains("lacks SharedAccessKeyName"));
        assert!(!err.to_string().contains("SECRETKEY"));
    }

    #[test]
    fn endpoint_required() {
        assert_eq!(parse("").unwrap_err(), ConnStrError::MissingEndpoint);
        assert_eq!(parse("EntityPath=x").unwrap_err(), ConnStrError::MissingEndpoint);
    }

    #[test]
    fn unknown_duplicate_malformed_empty() {
        assert_eq!(
            parse("Endpoint=sb://h/;Foo=bar").unwrap_err(),
            ConnStrError::UnknownKey { key: Some("Foo".into()), position: 2 }
        );
        assert_eq!(
            parse("Endpoint=sb://h/;endpoint=sb://g/").unwrap_err(),
            ConnStrError::DuplicateKey(ConnStrKey::Endpoint)
        );
        assert_eq!(
            parse("Endpoint=sb://h/;EntityPath=a;ENTITYPATH=a").unwrap_err(),
            ConnStrError::DuplicateKey(ConnStrKey::EntityPath)
        );
        assert_eq!(parse("Endpoint=sb://h/;;EntityPath").unwrap_err(), ConnStrError::MalformedPart { position: 2 });
        assert_eq!(
            parse("Endpoint=sb://h/;EntityPath=").unwrap_err(),
            ConnStrError::EmptyValue(ConnStrKey::EntityPath)
        );
        assert_eq!(parse("Endpoint=").unwrap_err(), ConnStrError::EmptyValue(ConnStrKey::Endpoint));
    }

    #[test]
    fn errors_never_contain_secret_values() {
        let secret = "Zm9vYmFyU0VDUkVUa2V5MTIzNDU2Nzg5MGFiY2RlZmdo";
        let cases = [
            // A key pasted without `SharedAccessKey=` splits at its padding.
            format!("Endpoint=sb://h/;{secret}=="),
            format!("Endpoint=sb://h/;SharedAccessKey={secret}"),
            format!("Endpoint=sb://h/;SharedAccessKey={secret};SharedAccessKey={secret}"),
            format!("Endpoint=sb://h/;SharedAccessKeyName=n;SharedAccessKey={secret};{secret}"),
            format!("Endpoint=sb://h/;SharedAccessSignature=SharedAccessSignature sr=a&sig={secret}&se=x&skn=k"),
            format!("Endpoint=sb://h/;SharedAccessSignature=SharedAccessSignature sr=a&sig={secret}"),
            format!("Endpoint=sb://h/;SharedAccessSignature={secret};SharedAccessKey={secret}"),
            format!("Endpoint=sb://h/;UseDevelopmentEmulator={secret}"),
            format!("Endpoint=sb://h/;SharedAccessKeyName=n;SharedAccessKey={secret};Endpoint=x"),
        ];
        for s in &cases {
            let err = parse(s).unwrap_err();
            let msg = err.to_string();
            assert!(!msg.contains(secret), "{msg}");
            assert!(!msg.contains(&secret[..8]), "{msg}");
            assert!(!format!("{err:?}").contains(&secret[..8]), "{err:?}");
        }
    }

    #[test]
    fn error_messages_name_the_key() {
        assert!(ConnStrError::DuplicateKey(ConnStrKey::SharedAccessKey).to_string().contains("SharedAccessKey"));
        assert!(ConnStrError::EmptyValue(ConnStrKey::EntityPath).to_string().contains("EntityPath"));
        assert!(ConnStrError::UnknownKey { key: Some("Foo".into()), position: 2 }.to_string().contains("'Foo'"));
        let hidden = ConnStrError::UnknownKey { key: None, position: 2 }.to_string();
        assert!(hidden.contains("part 2") && hidden.contains("SharedAccessKey"), "{hidden}");
        assert!(
            ConnStrError::InvalidBool(ConnStrKey::UseDevelopmentEmulator)
                .to_string()
                .contains("UseDevelopmentEmulator")
        );
        let e = ConnStrError::InvalidEndpoint(EndpointError::InvalidPort);
        assert!(e.to_string().contains("Endpoint"));
        assert!(std::error::Error::source(&e).is_some());
        assert!(!ConnStrError::SignatureWithKey.to_string().is_empty());
        assert!(ConnStrError::MalformedPart { position: 3 }.to_string().contains('3'));
    }

    #[test]
    fn emulator_flag() {
        let cs = parse("Endpoint=sb://localhost:5672;UseDevelopmentEmulator=true;EntityPath=hyco").unwrap();
        assert!(cs.use_development_emulator);
        assert_eq!(cs.endpoint, ep(false, "localhost", 5672));
        assert_eq!(cs.endpoint.ws_base(), "ws://localhost:5672");
        let cs = parse("Endpoint=sb://localhost;UseDevelopmentEmulator=TRUE").unwrap();
        assert_eq!(cs.endpoint, ep(false, "localhost", 80));
        let cs = parse("Endpoint=sb://h;UseDevelopmentEmulator=False").unwrap();
        assert!(!cs.use_development_emulator);
        assert_eq!(cs.endpoint, ep(true, "h", 443));
        for bad in ["yes", "1", "true ", " true", "on"] {
            assert_eq!(
                // Followed by another part: the end of the whole string is trimmed (`clean`).
                parse(&format!("Endpoint=sb://h;UseDevelopmentEmulator={bad};EntityPath=x")).unwrap_err(),
                ConnStrError::InvalidBool(ConnStrKey::UseDevelopmentEmulator),
                "{bad}"
            );
        }
    }

    #[test]
    fn emulator_flag_applies_whatever_the_key_order() {
        let cs = parse("UseDevelopmentEmulator=true;Endpoint=sb://127.0.0.1:9000/").unwrap();
        assert_eq!(cs.endpoint, ep(false, "127.0.0.1", 9000));
    }

    #[test]
    fn endpoint_schemes_and_default_ports() {
        let cases = [
            ("sb://h", false, ep(true, "h", 443)),
            ("sb://h:9443/", false, ep(true, "h", 9443)),
            ("SB://h/", false, ep(true, "h", 443)),
            ("sb://h", true, ep(false, "h", 80)),
            ("sb://h:1234", true, ep(false, "h", 1234)),
            ("ws://h", false, ep(false, "h", 80)),
            ("ws://h:8080/", false, ep(false, "h", 8080)),
            ("wss://h", false, ep(true, "h", 443)),
            ("wss://h:8443", true, ep(true, "h", 8443)),
            ("http://h", false, ep(false, "h", 80)),
            ("https://h", false, ep(true, "h", 443)),
            ("HTTPS://h:1", false, ep(true, "h", 1)),
            ("ws://127.0.0.1:65535", false, ep(false, "127.0.0.1", 65535)),
        ];
        for (s, emulator, want) in cases {
            assert_eq!(parse_endpoint(s, emulator).unwrap(), want, "{s}");
        }
    }

    #[test]
    fn endpoint_path_resolves_with_entity_path_as_dotnet_does() {
        let hc = |s: &str| parse(s).map(|cs| (cs.endpoint, cs.entity_path));
        let h = ep(true, "h", 443);
        // `new Uri(endpoint, entityPath)`: the entity path replaces the last segment.
        assert_eq!(hc("Endpoint=sb://h/team/;EntityPath=ssh"), Ok((h.clone(), Some("team/ssh".into()))));
        assert_eq!(hc("Endpoint=sb://h/a/b/;EntityPath=c/d"), Ok((h.clone(), Some("a/b/c/d".into()))));
        assert_eq!(hc("Endpoint=sb://h/team;EntityPath=ssh"), Ok((h.clone(), Some("ssh".into()))));
        assert_eq!(hc("Endpoint=sb://h/a/b;EntityPath=ssh"), Ok((h.clone(), Some("a/ssh".into()))));
        assert_eq!(hc("Endpoint=sb://h/team/;EntityPath=/ssh"), Ok((h.clone(), Some("ssh".into()))));
        assert_eq!(hc("Endpoint=sb://h/;EntityPath=ssh/"), Ok((h.clone(), Some("ssh/".into()))));
        // Written back without the path: the same hybrid connection.
        let cs = parse("Endpoint=sb://h:9443/team/;EntityPath=ssh").unwrap();
        assert_eq!(cs.to_string(), "Endpoint=sb://h:9443/;EntityPath=team/ssh");
        for bad in ["sb://h/a/../", "sb://h/a%20b/", "sb://h/?x=1", "sb://h/a#f/"] {
            let e = parse(&format!("Endpoint={bad};EntityPath=x")).unwrap_err();
            assert_eq!(e, ConnStrError::InvalidEndpoint(EndpointError::InvalidPath), "{bad}");
        }
        let e = parse("Endpoint=sb://h/a/;EntityPath=../x").unwrap_err();
        assert_eq!(e, ConnStrError::InvalidEndpoint(EndpointError::InvalidPath));
        // Without EntityPath there is nothing to resolve: the message says what to write.
        let e = parse("Endpoint=sb://h/team/ssh;SharedAccessKeyName=n;SharedAccessKey=k").unwrap_err();
        assert_eq!(e, ConnStrError::EndpointPathWithoutEntityPath("team/ssh".into()));
        let text = e.to_string();
        assert!(text.contains("'/team/ssh'") && text.contains("EntityPath=team/ssh"), "{text}");
        // Outside a connection string (--endpoint, profiles) a path stays an error.
        assert!(parse_endpoint("sb://h/team/", false).is_err());
    }

    #[test]
    fn endpoint_ipv6() {
        assert_eq!(parse_endpoint("ws://[::1]:8080/", false).unwrap(), ep(false, "::1", 8080));
        let e = parse_endpoint("sb://[2001:db8::1]", false).unwrap();
        assert_eq!(e, ep(true, "2001:db8::1", 443));
        assert_eq!(e.ws_base(), "wss://[2001:db8::1]:443");
        assert_eq!(e.sb_uri(), "sb://[2001:db8::1]/");
        assert_eq!(e.authority(), "[2001:db8::1]:443");
        let e = parse_endpoint("ws://[::1]", false).unwrap();
        assert_eq!(e.sb_uri(), "sb://[::1]:80/");
        for bad in ["ws://[::1", "ws://[zz::1]", "ws://[::1]x", "ws://[]:80", "ws://::1"] {
            assert!(parse_endpoint(bad, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn endpoint_errors() {
        let err = |s: &str| match parse_endpoint(s, false).unwrap_err() {
            ConnStrError::InvalidEndpoint(e) => e,
            other => panic!("{other:?}"),
        };
        assert_eq!(err("ftp://h"), EndpointError::UnsupportedScheme);
        assert_eq!(err("h"), EndpointError::UnsupportedScheme);
        assert_eq!(err("contoso.servicebus.windows.net"), EndpointError::UnsupportedScheme);
        assert_eq!(err("sb:/h"), EndpointError::UnsupportedScheme);
        assert_eq!(err("sb://"), EndpointError::MissingHost);
        assert_eq!(err("sb:///"), EndpointError::MissingHost);
        assert_eq!(err("sb://:443"), EndpointError::MissingHost);
        assert_eq!(err("sb://h:"), EndpointError::InvalidPort);
        assert_eq!(err("sb://h:0"), EndpointError::InvalidPort);
        assert_eq!(err("sb://h:65536"), EndpointError::InvalidPort);
        assert_eq!(err("sb://h:99999999999999999999"), EndpointError::InvalidPort);
        assert_eq!(err("sb://h:+1"), EndpointError::InvalidPort);
        assert_eq!(err("sb://h:x"), EndpointError::InvalidPort);
        assert_eq!(err("sb://h/hyco"), EndpointError::UnexpectedPath);
        assert_eq!(err("sb://h//"), EndpointError::UnexpectedPath);
        assert_eq!(err("sb://h?x=1"), EndpointError::InvalidHost);
        assert_eq!(err("sb://h/?x=1"), EndpointError::UnexpectedPath);
        assert_eq!(err("sb://user@h"), EndpointError::InvalidHost);
        assert_eq!(err("sb://h h"), EndpointError::InvalidHost);
        assert_eq!(err("sb://hé"), EndpointError::InvalidHost);
        for e in [
            EndpointError::UnsupportedScheme,
            EndpointError::MissingHost,
            EndpointError::InvalidHost,
            EndpointError::InvalidPort,
            EndpointError::UnexpectedPath,
            EndpointError::InvalidPath,
        ] {
            assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn endpoint_lists() {
        let list = parse_endpoints("wss://a.example:9443, sb://b.example/,wss://c.example", false).unwrap();
        assert_eq!(list, [ep(true, "a.example", 9443), ep(true, "b.example", 443), ep(true, "c.example", 443)]);
        assert_eq!(parse_endpoints("ws://one:1", false).unwrap(), [ep(false, "one", 1)]);
        let err = |s: &str| parse_endpoints(s, false).unwrap_err().to_string();
        assert!(err("wss://a, ws://b:1").contains("all TLS"));
        assert!(err(" , ").contains("host is missing"));
        assert!(err("ws://a:1, ftp://b").contains("scheme"));
        let many = vec!["ws://h:1"; MAX_ENDPOINTS + 1].join(",");
        assert!(err(&many).contains(&format!("at most {MAX_ENDPOINTS}")));
        assert!(parse_endpoints(&vec!["ws://h:1"; MAX_ENDPOINTS].join(","), false).is_ok());
    }

    #[test]
    fn ws_base_and_sb_uri() {
        let e = ep(true, "contoso.servicebus.windows.net", 443);
        assert_eq!(e.ws_base(), "wss://contoso.servicebus.windows.net:443");
        assert_eq!(e.sb_uri(), "sb://contoso.servicebus.windows.net/");
        let e = ep(true, "h", 8443);
        assert_eq!(e.ws_base(), "wss://h:8443");
        assert_eq!(e.sb_uri(), "sb://h:8443/");
        let e = ep(false, "localhost", 80);
        assert_eq!(e.ws_base(), "ws://localhost:80");
        assert_eq!(e.sb_uri(), "sb://localhost:80/");
    }

    #[test]
    fn display_masks_key() {
        let cs = parse(AZURE).unwrap();
        let shown = cs.to_string();
        assert_eq!(
            shown,
            "Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=***;EntityPath=hyco"
        );
        assert!(!shown.contains(KEY));
        assert!(!format!("{cs:?}").contains(KEY));
        assert!(!format!("{cs:#?}").contains("0123456789"));
    }

    #[test]
    fn roundtrips() {
        for s in [
            AZURE,
            "Endpoint=sb://h:9443/;EntityPath=team/ssh",
            "Endpoint=sb://localhost:5000/;SharedAccessKeyName=n;SharedAccessKey=k;EntityPath=hyco;UseDevelopmentEmulator=true",
            "Endpoint=sb://[::1]:80/;UseDevelopmentEmulator=true",
        ] {
            let cs = parse(s).unwrap();
            assert_eq!(cs.to_string_with_secrets(), s);
            assert_eq!(parse(&cs.to_string_with_secrets()).unwrap(), cs);
        }
    }

    #[test]
    fn plain_ws_endpoint_writes_emulator_form() {
        let cs = parse("Endpoint=ws://relay.local:8080;SharedAccessKeyName=n;SharedAccessKey=k").unwrap();
        assert!(!cs.use_development_emulator);
        let s = cs.to_string_with_secrets();
        assert_eq!(
            s,
            "Endpoint=sb://relay.local:8080/;SharedAccessKeyName=n;SharedAccessKey=k;UseDevelopmentEmulator=true"
        );
        assert_eq!(parse(&s).unwrap().endpoint, cs.endpoint);
        // A secure endpoint never gets the flag, even if it was given with wss://.
        let cs = parse("Endpoint=wss://h:8443;UseDevelopmentEmulator=true").unwrap();
        assert_eq!(cs.endpoint, ep(true, "h", 8443));
        assert_eq!(cs.to_string_with_secrets(), "Endpoint=sb://h:8443/");
    }
}
