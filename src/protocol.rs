//! The Hybrid Connections wire vocabulary (docs/protocol.md 2, 5, 6, 7): addresses, query
//! parameters, control messages, status and close codes, and the limits both sides
//! keep. Pure: no sockets here; the relay and the clients share these types.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::encoding::{DecodeError, decode_component, encode_component, parse_query};

/// The fixed first path segment of every Hybrid Connections address.
pub const HC_SEGMENT: &str = "$hc";
/// Listeners one HC may have at once; the next is refused (docs/protocol.md 5.1).
pub const MAX_LISTENERS_PER_HC: usize = 25;
/// How long a sender waits for a listener to accept or reject.
pub const ACCEPT_WINDOW: Duration = Duration::from_secs(30);
/// The largest control channel message either side sends (the official clients' buffers).
pub const MAX_CONTROL_MESSAGE: usize = 64 * 1024;
/// The largest upgrade request head the relay reads.
pub const MAX_HANDSHAKE_HEADERS: usize = 32 * 1024;
/// The lifetime the official clients give their tokens.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);
/// How long past its expiry a listener's token is tolerated before 1008 (docs/protocol.md 5.5).
pub const DEFAULT_RENEW_GRACE: Duration = Duration::from_secs(300);
/// Clock skew allowed when checking a token's expiry.
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);
/// HTTP mode: the largest body that travels inline with its `request` or `response` on
/// the control channel (the official clients' buffers); larger ones take a rendezvous.
pub const MAX_INLINE_BODY: usize = 64 * 1024;
/// HTTP mode: how long a relay waits for a listener's `response` (Azure's 60 s).
pub const HTTP_RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
/// HTTP mode: the largest request body the relay forwards by default.
pub const MAX_HTTP_REQUEST_BODY: u64 = 64 * 1024 * 1024;

/// The HTTP header the official clients put their token in.
pub const TOKEN_HEADER: &str = "ServiceBusAuthorization";
/// The subprotocol a listener that connects to its target at once picks (offered first;
/// docs/protocol.md 10.1).
pub const PREWARM_IMMEDIATE: &str = "hyco.immediate";
/// The subprotocol a hyco listener picks to defer its target until *start* (10.1).
pub const PREWARM_DEFERRED: &str = "hyco.deferred";
/// The connect header of a sender whose tunnel carries datagrams (`udp`) rather than a
/// byte stream (`tcp`, the same as none), docs/protocol.md 10.4.
pub const HEADER_PROTO: &str = "Hyco-Proto";
pub const PARAM_ACTION: &str = "sb-hc-action";
pub const PARAM_ID: &str = "sb-hc-id";
pub const PARAM_TOKEN: &str = "sb-hc-token";
pub const PARAM_STATUS_CODE: &str = "sb-hc-statusCode";
pub const PARAM_STATUS_DESCRIPTION: &str = "sb-hc-statusDescription";

/// Close codes (RFC 6455 7.4.1) with the meanings docs/protocol.md gives them.
pub mod close {
    /// Normal end: the peer closed its side.
    pub const NORMAL: u16 = 1000;
    /// HC deleted or the relay shutting down.
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// A text message that is not UTF-8.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// Token expired or invalid renewal.
    pub const POLICY_VIOLATION: u16 = 1008;
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// Relay fault, or the other end of a tunnel vanished without a Close.
    pub const INTERNAL_ERROR: u16 = 1011;
}

/// What a client asks the relay to do (`sb-hc-action`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Listen,
    Connect,
    Accept,
    Request,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Listen => "listen",
            Self::Connect => "connect",
            Self::Accept => "accept",
            Self::Request => "request",
        }
    }
}

/// Why a request target is not a Hybrid Connections address: the relay answers 400
/// (or 404 when the path is outside `$hc/`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddressError {
    NotHc,
    BadPath(&'static str),
    BadQuery(String),
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotHc => f.write_str("path must start with /$hc/"),
            Self::BadPath(why) => write!(f, "bad path: {why}"),
            Self::BadQuery(why) => write!(f, "bad query: {why}"),
        }
    }
}

impl std::error::Error for AddressError {}

impl From<DecodeError> for AddressError {
    fn from(e: DecodeError) -> Self {
        Self::BadQuery(e.to_string())
    }
}

/// A parsed `/$hc/...` request target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HcAddress {
    /// Decoded path segments after `$hc/`: the HC name, then any suffix. The relay
    /// decides where the name ends, since names may hold `/`.
    pub segments: Vec<String>,
    pub action: Action,
    pub id: Option<String>,
    /// The token from `sb-hc-token`, if sent there.
    pub token: Option<String>,
    /// A rejecting listener's status and text (prefixed or plain names).
    pub status_code: Option<u16>,
    pub status_description: Option<String>,
    /// Query parameters not starting with `sb-hc-`, still encoded as sent, in order.
    pub app_query: Vec<String>,
}

/// The form in which hybrid connection names (and the paths tokens name) are compared:
/// without case, as Azure compares its entity names (docs/protocol.md 2). `Web` and `web`
/// are one HC; it keeps the spelling it was made with.
pub fn name_key(name: &str) -> String {
    name.to_lowercase()
}

/// The longest HC path (name plus suffix) in segments.
pub const MAX_PATH_SEGMENTS: usize = 32;

/// Whether `id` may be an `sb-hc-id` (a client's tracking id, or the relay's
/// `{tracking id}_{secret}` in a rendezvous address): one or more printable ASCII
/// characters, so that it can go into logs and status texts as it is. Its length is
/// bounded by the request head's (`max_header_bytes`).
pub fn is_tracking_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

/// Reads one path segment that names something (an HC's segment or a listener's target):
/// decoded once, non-empty, not `.` or `..`, and free of `/ \ ? #` and control characters
/// once decoded, so that every party splits the path into the same segments
/// (docs/protocol.md 2, 7). The relay and the listener both read names with this.
pub fn name_segment(raw: &str) -> Result<String, AddressError> {
    let seg = decode_component(raw, false).map_err(|_| AddressError::BadPath("bad percent-encoding"))?;
    if seg.is_empty() {
        return Err(AddressError::BadPath("empty segment"));
    }
    if seg == "." || seg == ".." {
        return Err(AddressError::BadPath("dot segment"));
    }
    if seg.contains(['/', '\\', '?', '#']) || seg.chars().any(char::is_control) {
        return Err(AddressError::BadPath("reserved character in a segment"));
    }
    Ok(seg)
}

impl HcAddress {
    /// Parses a request target such as `/$hc/db/x?a=1&sb-hc-action=connect`.
    pub fn parse(target: &str) -> Result<Self, AddressError> {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let rest = path
            .strip_prefix("/$hc/")
            .or_else(|| path.strip_prefix("/%24hc/"))
            .or_else(|| path.strip_prefix("/%24HC/"))
            .ok_or(AddressError::NotHc)?;
        let segments = rest.trim_end_matches('/').split('/').map(name_segment).collect::<Result<Vec<_>, _>>()?;
        if segments.len() > MAX_PATH_SEGMENTS {
            return Err(AddressError::BadPath("too many segments"));
        }
        let mut addr = Self {
            segments,
            action: Action::Connect,
            id: None,
            token: None,
            status_code: None,
            status_description: None,
            app_query: Vec::new(),
        };
        let mut action = None;
        for raw in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = parse_query(raw)?.pop().unwrap_or_default();
            let once = |slot: &Option<String>| {
                if slot.is_some() {
                    Err(AddressError::BadQuery(format!("{name} given twice")))
                } else {
                    Ok(Some(value.clone()))
                }
            };
            match name.as_str() {
                PARAM_ACTION => {
                    if action.is_some() {
                        return Err(AddressError::BadQuery(format!("{PARAM_ACTION} given twice")));
                    }
                    action = Some(match value.as_str() {
                        "listen" => Action::Listen,
                        "connect" => Action::Connect,
                        "accept" => Action::Accept,
                        "request" => Action::Request,
                        _ => return Err(AddressError::BadQuery(format!("unknown {PARAM_ACTION}"))),
                    });
                }
                PARAM_ID if !is_tracking_id(&value) => {
                    let why = format!("{PARAM_ID} must be printable ASCII characters");
                    return Err(AddressError::BadQuery(why));
                }
                PARAM_ID => addr.id = once(&addr.id)?,
                PARAM_TOKEN => addr.token = once(&addr.token)?,
                PARAM_STATUS_CODE | "statusCode" => {
                    let code = value.trim().parse::<u16>().ok().filter(|c| (100..=599).contains(c));
                    addr.status_code = Some(code.ok_or_else(|| AddressError::BadQuery("bad status code".into()))?);
                }
                PARAM_STATUS_DESCRIPTION | "statusDescription" => addr.status_description = Some(value),
                n if n.starts_with("sb-hc-") => {}
                _ => addr.app_query.push(raw.to_owned()),
            }
        }
        addr.action = action.unwrap_or(Action::Connect);
        Ok(addr)
    }
}

/// Builds a client's address: `{base}/$hc/{hc}[/{suffix}]?[{app_query}&]sb-hc-action=…`.
/// `hc` and `suffix` are encoded segment by segment, keeping their `/`.
pub fn client_url(
    base: &str,
    hc: &str,
    suffix: Option<&str>,
    app_query: &str,
    action: Action,
    id: Option<&str>,
) -> String {
    let encode_path =
        |p: &str| p.split('/').filter(|s| !s.is_empty()).map(encode_component).collect::<Vec<_>>().join("/");
    let mut url = format!("{}/$hc/{}", base.trim_end_matches('/'), encode_path(hc));
    if let Some(s) = suffix.filter(|s| !s.is_empty()) {
        url.push('/');
        url.push_str(&encode_path(s));
    }
    url.push('?');
    if !app_query.is_empty() {
        url.push_str(app_query);
        url.push('&');
    }
    url.push_str(&format!("{PARAM_ACTION}={}", action.as_str()));
    if let Some(id) = id {
        url.push_str(&format!("&{PARAM_ID}={}", encode_component(id)));
    }
    url
}

/// The resource URI a client signs for an HC, in .NET's style: `http://{host}/{hc}/`.
pub fn token_audience(host: &str, hc: &str) -> String {
    match hc.trim_matches('/') {
        "" => format!("http://{host}/"),
        hc => format!("http://{host}/{hc}/"),
    }
}

/// The sender's address as the listener sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteEndpoint {
    pub address: String,
    pub port: u16,
}

/// `accept` (relay to listener, docs/protocol.md 5.2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Accept {
    pub address: String,
    pub id: String,
    #[serde(default)]
    pub connect_headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_endpoint: Option<RemoteEndpoint>,
}

/// `renewToken` (listener to relay, docs/protocol.md 5.5).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewToken {
    pub token: String,
}

/// `request` (relay to listener, HTTP mode, docs/protocol.md 7; interop/NOTES-https.md).
///
/// Complete (`method` and `body` present, the body following as one binary message when
/// `body` is true), or address-only (`address` and `id`): the listener then fetches the
/// request over a rendezvous to `address`. hyco-https tells the two apart by `method`,
/// .NET by `body`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRequest {
    /// The rendezvous (`sb-hc-action=request`) for this request: where an address-only
    /// request is fetched, and where a response too large for the control channel goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default)]
    pub id: String,
    /// Path and query as the HTTP client sent them, the HC's name included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub request_headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_endpoint: Option<RemoteEndpoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<bool>,
    /// Relay-internal, never on the wire: the bytes of the binary message that follows a
    /// complete request with `body: true` on the control channel.
    #[serde(skip)]
    pub inline_body: InlineBody,
}

impl HttpRequest {
    /// Whether the request is all here (else: fetch it from `address`).
    pub fn is_complete(&self) -> bool {
        self.method.is_some()
    }
}

/// A body carried next to a message inside the relay; `Debug` shows only its length.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct InlineBody(pub Vec<u8>);

impl fmt::Debug for InlineBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes>", self.0.len())
    }
}

/// `response` (listener to relay, HTTP mode). A body follows as one binary message (maybe
/// fragmented; its FIN ends the body) when `body` is true.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpResponse {
    #[serde(default)]
    pub request_id: String,
    /// A number (hyco-https) or a numeric string (.NET's documented form).
    #[serde(deserialize_with = "number_or_string")]
    pub status_code: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_description: Option<String>,
    /// The headers, in order, a name as often as it occurs. On the wire an object: a name
    /// that occurs more than once is an array of its values, each item its own header line
    /// (how a response carries several `Set-Cookie`, docs/protocol.md 7); numbers and
    /// booleans are taken as text, `null` is dropped, and a name repeated in the object
    /// adds its values too.
    #[serde(
        default,
        deserialize_with = "header_lines",
        serialize_with = "header_object",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub response_headers: Vec<(String, String)>,
    #[serde(default)]
    pub body: bool,
}

fn number_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    use serde::de::Error;
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| D::Error::custom("statusCode must be a number from 0 to 65535"))
}

fn header_lines<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<(String, String)>, D::Error> {
    use serde_json::Value;
    fn texts(v: Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s),
            Value::Number(n) => out.push(n.to_string()),
            Value::Bool(b) => out.push(b.to_string()),
            Value::Array(items) => items.into_iter().filter(|i| !i.is_array()).for_each(|i| texts(i, out)),
            Value::Null | Value::Object(_) => {}
        }
    }
    struct Lines;
    impl<'de> serde::de::Visitor<'de> for Lines {
        type Value = Vec<(String, String)>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object of header names and values")
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut lines = Vec::new();
            while let Some((name, value)) = map.next_entry::<String, Value>()? {
                let mut values = Vec::new();
                texts(value, &mut values);
                lines.extend(values.into_iter().map(|v| (name.clone(), v)));
            }
            Ok(lines)
        }
    }
    d.deserialize_any(Lines)
}

fn header_object<S: serde::Serializer>(lines: &[(String, String)], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut names: Vec<&str> = Vec::new();
    for (n, _) in lines {
        if !names.contains(&n.as_str()) {
            names.push(n);
        }
    }
    let mut map = s.serialize_map(Some(names.len()))?;
    for name in names {
        let values: Vec<&str> = lines.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect();
        match values.as_slice() {
            [one] => map.serialize_entry(name, one)?,
            many => map.serialize_entry(name, many)?,
        }
    }
    map.end()
}

/// Messages the relay sends on a control channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RelayMessage {
    #[serde(rename = "accept")]
    Accept(Accept),
    #[serde(rename = "request")]
    Request(HttpRequest),
}

/// Messages a listener sends on its control channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ListenerMessage {
    #[serde(rename = "renewToken")]
    RenewToken(RenewToken),
    #[serde(rename = "response")]
    Response(HttpResponse),
}

/// A random GUID (version 4), the form the official clients use for tracking ids.
pub fn new_guid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0F) | 0x40;
    b[8] = (b[8] & 0x3F) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// `host:port`, with brackets around an IPv6 address (one that has none yet).
pub fn authority(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `2026-11-27T10:00:00Z` for a Unix time.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem / 60 % 60, rem % 60)
}

/// A status text in Azure's form: `{text}. TrackingId:{id}, Timestamp:{time}`.
pub fn status_text(text: &str, tracking_id: &str) -> String {
    format!("{}. TrackingId:{tracking_id}, Timestamp:{}", text.trim_end_matches('.'), rfc3339(unix_now()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_audiences_name_an_hc_or_the_whole_namespace() {
        assert_eq!(token_audience("relay", "/web/api/"), "http://relay/web/api/");
        assert_eq!(token_audience("relay", ""), "http://relay/");
        assert_eq!(token_audience("relay", "/"), "http://relay/");
    }

    #[test]
    fn parses_a_sender_address() {
        let a = HcAddress::parse("/$hc/team/ssh/x%20y?a=1&sb-hc-action=connect&b=%2F&sb-hc-id=abc&sb-hc-token=S+A")
            .unwrap();
        assert_eq!(a.segments, ["team", "ssh", "x y"]);
        assert_eq!(a.action, Action::Connect);
        assert_eq!(a.id.as_deref(), Some("abc"));
        assert_eq!(a.token.as_deref(), Some("S A"), "form encoding: + is a space");
        assert_eq!(a.app_query, ["a=1", "b=%2F"]);
    }

    #[test]
    fn no_action_is_connect_and_reject_params_parse() {
        assert_eq!(HcAddress::parse("/$hc/a").unwrap().action, Action::Connect);
        let a = HcAddress::parse("/$hc/a?sb-hc-action=accept&sb-hc-id=1&statusCode=502&statusDescription=no%20way")
            .unwrap();
        assert_eq!((a.status_code, a.status_description.as_deref()), (Some(502), Some("no way")));
        let a = HcAddress::parse("/$hc/a?sb-hc-action=accept&sb-hc-statusCode=404&sb-hc-statusDescription=x").unwrap();
        assert_eq!(a.status_code, Some(404));
    }

    #[test]
    fn hostile_addresses_are_refused() {
        for bad in [
            "/hc/a",
            "/$hc/",
            "/$hc/a//b",
            "/$hc/../a",
            "/$hc/a/%2e%2e",
            "/$hc/a%2Fb",
            "/$hc/a%zz",
            "/$hc/a%00",
            "/$hc/a?sb-hc-action=bogus",
            "/$hc/a?sb-hc-action=listen&sb-hc-action=connect",
            "/$hc/a?sb-hc-id=a%0D%0AX",
            "/$hc/a?sb-hc-id=a%1B%5B2J",
            "/$hc/a?sb-hc-id=",
            "/$hc/a?sb-hc-id=%C3%A9",
            "/$hc/a?sb-hc-id=1&sb-hc-id=2",
            "/$hc/a?sb-hc-action=accept&sb-hc-statusCode=99999",
            "/$hc/a?x=%ff",
        ] {
            assert!(HcAddress::parse(bad).is_err(), "{bad}");
        }
        let deep = format!("/$hc/{}", "a/".repeat(MAX_PATH_SEGMENTS + 1));
        assert!(HcAddress::parse(&deep).is_err());
        let long_id = format!("/$hc/a?sb-hc-id={}", "\"".repeat(20_000));
        assert!(HcAddress::parse(&long_id).is_ok(), "any printable text, bounded by the head's size");
    }

    #[test]
    fn client_urls_round_trip() {
        let url = client_url("ws://h:1/", "team/ssh", Some("x y"), "q=1", Action::Connect, Some("id 1"));
        assert_eq!(url, "ws://h:1/$hc/team/ssh/x%20y?q=1&sb-hc-action=connect&sb-hc-id=id%201");
        let a = HcAddress::parse(&url["ws://h:1".len()..]).unwrap();
        assert_eq!(a.segments, ["team", "ssh", "x y"]);
        assert_eq!(a.id.as_deref(), Some("id 1"));
    }

    #[test]
    fn control_messages_have_the_wire_shape() {
        let m: RelayMessage = serde_json::from_str(
            r#"{"accept":{"address":"wss://r/$hc/h?sb-hc-action=accept","id":"1","connectHeaders":{"Sec-WebSocket-Key":"k"},"remoteEndpoint":{"address":"1.2.3.4","port":5},"extra":1}}"#,
        )
        .unwrap();
        let RelayMessage::Accept(a) = &m else { panic!("{m:?}") };
        assert_eq!(a.remote_endpoint.as_ref().unwrap().port, 5);
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["accept"]["connectHeaders"]["Sec-WebSocket-Key"], "k");
        let r: ListenerMessage = serde_json::from_str(r#"{"renewToken":{"token":"t"}}"#).unwrap();
        assert_eq!(r, ListenerMessage::RenewToken(RenewToken { token: "t".into() }));
        assert!(serde_json::from_str::<ListenerMessage>(r#"{"bogus":{}}"#).is_err());
    }

    #[test]
    fn http_mode_messages_have_the_wire_shape() {
        // A complete request, as hyco-https and .NET read it: method and body both present.
        let r = HttpRequest {
            address: Some("ws://r/$hc/h?sb-hc-action=request&sb-hc-id=1_s".into()),
            id: "1".into(),
            request_target: Some("/h/x?q=1".into()),
            method: Some("POST".into()),
            request_headers: [("X-App".to_owned(), "1".to_owned())].into(),
            remote_endpoint: Some(RemoteEndpoint { address: "1.2.3.4".into(), port: 5 }),
            body: Some(true),
            inline_body: InlineBody(b"secret body".to_vec()),
        };
        let json = serde_json::to_string(&RelayMessage::Request(r.clone())).unwrap();
        assert_eq!(
            json,
            r#"{"request":{"address":"ws://r/$hc/h?sb-hc-action=request&sb-hc-id=1_s","id":"1","requestTarget":"/h/x?q=1","method":"POST","requestHeaders":{"X-App":"1"},"remoteEndpoint":{"address":"1.2.3.4","port":5},"body":true}}"#
        );
        assert!(format!("{r:?}").contains("<11 bytes>"), "bodies stay out of Debug");
        // Address-only: neither method nor body.
        let a = HttpRequest { address: Some("ws://r/x".into()), id: "2".into(), ..HttpRequest::default() };
        let json = serde_json::to_string(&RelayMessage::Request(a)).unwrap();
        assert_eq!(json, r#"{"request":{"address":"ws://r/x","id":"2"}}"#);
        let RelayMessage::Request(back) = serde_json::from_str(&json).unwrap() else { panic!() };
        assert!(!back.is_complete());

        // hyco-https: a number, lowercased names, a number as a value, no description.
        let m: ListenerMessage = serde_json::from_str(
            r#"{"response":{"requestId":"1","statusCode":200,"responseHeaders":{"content-type":"text/plain","x-n":5,"x-null":null,"set-cookie":["a=1","b=2"]},"body":true}}"#,
        )
        .unwrap();
        let ListenerMessage::Response(resp) = m else { panic!("{m:?}") };
        assert_eq!((resp.status_code, resp.body, resp.status_description.as_deref()), (200, true, None));
        let line = |n: &str, v: &str| (n.to_owned(), v.to_owned());
        assert_eq!(
            resp.response_headers,
            [
                line("content-type", "text/plain"),
                line("x-n", "5"),
                line("set-cookie", "a=1"),
                line("set-cookie", "b=2")
            ],
            "an array is one line per item; null is dropped"
        );
        let json = serde_json::to_string(&ListenerMessage::Response(resp)).unwrap();
        assert!(
            json.contains(r#""responseHeaders":{"content-type":"text/plain","x-n":"5","set-cookie":["a=1","b=2"]}"#),
            "{json}"
        );
        let m: ListenerMessage =
            serde_json::from_str(r#"{"response":{"statusCode":200,"responseHeaders":{"a":"1","a":"2"}}}"#).unwrap();
        let ListenerMessage::Response(resp) = m else { panic!("{m:?}") };
        assert_eq!(resp.response_headers, [line("a", "1"), line("a", "2")], "a repeated name adds a line");
        // .NET's documented form: a string status.
        let m: ListenerMessage = serde_json::from_str(
            r#"{"response":{"requestId":"1","statusCode":"404","statusDescription":"Not Found","body":false}}"#,
        )
        .unwrap();
        let ListenerMessage::Response(resp) = m else { panic!("{m:?}") };
        assert_eq!(resp.status_code, 404);
        for bad in [
            r#"{"response":{"requestId":"1","statusCode":"abc","body":true}}"#,
            r#"{"response":{"requestId":"1","statusCode":70000,"body":true}}"#,
            r#"{"response":{"requestId":"1","body":true}}"#,
        ] {
            assert!(serde_json::from_str::<ListenerMessage>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn guids_and_times() {
        let g = new_guid();
        assert_eq!(g.len(), 36);
        assert_eq!(&g[14..15], "4");
        assert_ne!(g, new_guid());
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(1_709_164_800), "2024-02-29T00:00:00Z");
        assert!(
            status_text("Endpoint does not exist", "t1")
                .starts_with("Endpoint does not exist. TrackingId:t1, Timestamp:")
        );
    }
}
