//! The clients, `hyco listen` and `hyco connect`: how to reach a relay (endpoint,
//! credential, TLS), opening WebSockets to it, and tokens. The roles are in [`listen`]
//! and [`connect`]; a tunnel's end is a `tunnel::Tunnel`, which the pump (`pump`) joins
//! to a local byte stream; [`prewarm`] keeps tunnels open ahead of need; [`target`] is
//! where a listener forwards to; `proxy` is the HTTP proxy every relay connection may
//! go through; [`inspect`] is `hyco listen --inspect`'s request inspector.

mod accept;
pub mod allow;
mod azbridge;
pub mod connect;
pub mod datagram;
pub mod forward;
pub(crate) mod http;
mod http_local;
mod http_pool;
pub mod inspect;
pub mod listen;
pub mod prewarm;
pub(crate) mod proxy;
mod pump;
pub mod socks;
pub mod target;
mod tls;
mod token_command;
mod tunnel;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::connstr::{Credential, Endpoint};
use crate::error::{Kind, failure};
use crate::http1::HeadError;
use crate::http1::Response;
use crate::net::ClientStream;
use crate::protocol::{self, Action};
use crate::sas;
use crate::secret::Secret;
use crate::ws::handshake::{self, HandshakeError};

/// Time to open a connection to the relay: TCP (each address in turn, RFC 8305), the
/// proxy's tunnel if there is one, and TLS.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Time from the upgrade request to the relay's answer: for a sender that includes the
/// listener's accept (Azure holds a sender about 30 s, .NET's client waits 70 s).
pub(crate) const ANSWER_TIMEOUT: Duration = Duration::from_secs(70);

/// The largest upgrade response head a client reads.
const MAX_RESPONSE_HEAD: usize = 32 * 1024;

/// How a client reaches a relay.
#[derive(Clone)]
pub struct RelayClient {
    /// The relay (the first endpoint given).
    pub(crate) endpoint: Endpoint,
    /// The relay's other endpoints (the nodes of one relay, docs/protocol.md 11), tried as
    /// [`Self::endpoint_at`] says.
    others: Vec<Endpoint>,
    /// Where this client starts in its endpoints: random, so that clients spread over a
    /// relay's nodes.
    start: usize,
    /// Whether every connection tries the endpoints in the order given ([`Self::in_order`]).
    ordered: bool,
    pub credential: Credential,
    /// TLS settings for `wss://` endpoints (and accept addresses).
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Lifetime of the tokens this client mints.
    pub token_ttl: Duration,
    /// How long a tunnel end stays silent before it pings (`--keepalive`; `None`: never).
    pub keepalive: Option<Duration>,
    /// The HTTP proxies to reach the relay through (none by default).
    proxies: proxy::Proxies,
    /// `--token-command`: where JWTs come from, instead of the credential.
    token_command: Option<Arc<token_command::TokenCommand>>,
}

impl fmt::Debug for RelayClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayClient").field("endpoint", &self.endpoint.ws_base()).finish_non_exhaustive()
    }
}

impl RelayClient {
    /// A client for `endpoint`. `wss://` endpoints verify the relay against the system's
    /// roots, or against `tls_fingerprint` when given.
    pub fn new(endpoint: Endpoint, credential: Credential, tls_fingerprint: Option<&str>) -> anyhow::Result<Self> {
        let tls = match tls_fingerprint {
            Some(print) => Some(tls::pinned(print)?),
            None if endpoint.secure => Some(tls::system_roots()?),
            None => None,
        };
        Ok(Self {
            endpoint,
            others: Vec::new(),
            start: 0,
            ordered: false,
            credential,
            tls,
            token_ttl: protocol::DEFAULT_TOKEN_TTL,
            keepalive: Some(crate::ws::pump::DEFAULT_KEEPALIVE),
            proxies: proxy::Proxies::none(),
            token_command: None,
        })
    }

    /// This client, with more endpoints of the same relay (its other nodes): each
    /// connection to the relay starts at a random one of them all and goes on to the next
    /// when one cannot be reached ([`OpenError::may_try_another_endpoint`]).
    pub fn with_others(self, others: Vec<Endpoint>) -> Self {
        let start = if others.is_empty() { 0 } else { rand::random_range(0..=others.len()) };
        Self { others, start, ..self }
    }

    /// This client, trying its endpoints in the order given rather than from a random one:
    /// its listener's first control channel, and its senders, go to the first endpoint while
    /// it answers (tests that need a listener on one node of several).
    pub fn in_order(self) -> Self {
        Self { start: 0, ordered: true, ..self }
    }

    /// How many endpoints the relay was given as.
    pub(crate) fn endpoint_count(&self) -> usize {
        1 + self.others.len()
    }

    /// The `i`th endpoint to try, counting from where this client starts, round and round.
    pub(crate) fn endpoint_at(&self, i: usize) -> &Endpoint {
        match (self.start + i) % self.endpoint_count() {
            0 => &self.endpoint,
            n => &self.others[n - 1],
        }
    }

    /// Every endpoint, as `ws[s]://host:port`, for messages.
    pub(crate) fn endpoints_text(&self) -> String {
        std::iter::once(&self.endpoint).chain(&self.others).map(Endpoint::ws_base).collect::<Vec<_>>().join(", ")
    }

    /// Opens a sender's WebSocket to the relay for `hc` at the first endpoint that can be
    /// reached, starting at a random one (senders spread over a relay's nodes): `url` gives
    /// the address at an endpoint, and the token (if any) is made for it. Any answer from a relay is final;
    /// only an endpoint that cannot be reached gives way to the next. The endpoint that
    /// answered comes with the result, and with it the token's expiry.
    pub(crate) async fn open_relay(
        &self,
        hc: &str,
        url: impl Fn(&Endpoint) -> String,
        extra: &[(String, String)],
    ) -> anyhow::Result<Result<(Opened, &Endpoint, Option<u64>), OpenError>> {
        let count = self.endpoint_count();
        let from = if self.ordered { 0 } else { rand::random_range(0..count) };
        for i in 0..count {
            let endpoint = self.endpoint_at(from + i);
            let token = self.token_for(endpoint, hc).await?;
            let expiry = token.as_ref().map(|(_, e)| *e);
            match self.open(&url(endpoint), token.as_ref().map(|(t, _)| t), extra).await {
                Err(e) if i + 1 < count && e.may_try_another_endpoint() => {
                    tracing::debug!("{e}; trying the relay's next endpoint");
                }
                Err(e) => return Ok(Err(e)),
                Ok(opened) => return Ok(Ok((opened, endpoint, expiry))),
            }
        }
        unreachable!("a relay has at least one endpoint")
    }

    /// This client, presenting tokens that `command` prints (`--token-command`).
    pub(crate) fn with_token_command(self, command: Option<String>) -> Self {
        Self { token_command: command.map(|c| Arc::new(token_command::TokenCommand::new(c))), ..self }
    }

    /// This client, reaching the relay through `proxies` (every connection it opens).
    pub(crate) fn with_proxies(self, proxies: proxy::Proxies) -> Self {
        Self { proxies, ..self }
    }

    /// The token to present for `hc`: minted from a key (with its expiry), or the given
    /// token, or none; with a token command, its token (and when to renew it). A given
    /// token that has expired is an error. A minted token names the host of `endpoint`, the
    /// one it is for.
    pub(crate) async fn token_for(&self, endpoint: &Endpoint, hc: &str) -> anyhow::Result<Option<(Secret, u64)>> {
        if let Some(command) = &self.token_command {
            return command.token().await.map(Some);
        }
        match &self.credential {
            Credential::None => Ok(None),
            Credential::Key { name, key } => {
                let expiry = protocol::unix_now() + self.token_ttl.as_secs();
                let audience = protocol::token_audience(&endpoint.host, hc);
                Ok(Some((sas::mint(&audience, name, key, expiry), expiry)))
            }
            Credential::Token(token) => {
                let parsed = sas::parse(token.expose())
                    .map_err(|e| failure(Kind::Config, format!("the configured SAS token is malformed: {e}")))?;
                if parsed.is_expired(protocol::unix_now(), 0) {
                    return Err(failure(
                        Kind::Unauthorized,
                        format!(
                            "the configured SAS token expired at {}; ask its issuer for a new one (`hyco token`)",
                            protocol::rfc3339(parsed.expiry())
                        ),
                    ));
                }
                Ok(Some((token.clone(), parsed.expiry())))
            }
        }
    }

    /// Whether tokens can be renewed (a key or a token command is at hand).
    pub(crate) fn can_renew(&self) -> bool {
        self.token_command.is_some() || matches!(self.credential, Credential::Key { .. })
    }

    /// `ws[s]://host:port/$hc/{hc}[/{suffix}]?…sb-hc-action=…` at `endpoint`.
    pub(crate) fn url_at(
        endpoint: &Endpoint,
        hc: &str,
        suffix: Option<&str>,
        action: Action,
        id: Option<&str>,
    ) -> String {
        protocol::client_url(&endpoint.ws_base(), hc, suffix, "", action, id)
    }

    /// Opens the WebSocket of a rendezvous at an `address` the relay handed out (an
    /// accept or request address, docs/protocol.md 5.2 and 7), once [`Self::trusts`] it.
    pub(crate) async fn open_rendezvous(&self, address: &str, extra: &[(String, String)]) -> Result<Opened, OpenError> {
        self.trusts(address)?;
        self.open(address, None, extra).await
    }

    /// Whether an address the relay handed out leads back to it ([`check_rendezvous_address`]).
    /// Any of the relay's endpoints will do: a node of a relay of several hands out
    /// addresses on itself.
    pub(crate) fn trusts(&self, address: &str) -> Result<(), OpenError> {
        let mut first = None;
        for endpoint in std::iter::once(&self.endpoint).chain(&self.others) {
            match check_rendezvous_address(endpoint, address) {
                Ok(()) => return Ok(()),
                Err(e) => _ = first.get_or_insert(e),
            }
        }
        Err(OpenError::Untrusted(first.expect("one endpoint at least").0))
    }

    /// Opens a WebSocket to `url` with the token (if any) in `ServiceBusAuthorization`.
    pub(crate) async fn open(
        &self,
        url: &str,
        token: Option<&Secret>,
        extra: &[(String, String)],
    ) -> Result<Opened, OpenError> {
        let mut headers = extra.to_vec();
        if let Some(t) = token {
            headers.push((protocol::TOKEN_HEADER.to_owned(), t.expose().to_owned()));
        }
        open_ws(url, self.tls.as_ref(), &self.proxies, &headers, || self.timed_out(url)).await
    }

    /// The timeout of an open of `url`, naming the proxy when it went through one.
    fn timed_out(&self, url: &str) -> OpenError {
        let via = split_url(url).and_then(|(secure, host, ..)| self.proxies.for_relay(secure, &host).cloned());
        match via {
            Some(p) => OpenError::Proxy(format!(
                "no answer from the relay through the proxy at {p} within {} s; \
                 does the proxy reach the relay, or should the relay be in NO_PROXY?",
                CONNECT_TIMEOUT.as_secs()
            )),
            None => OpenError::Timeout,
        }
    }
}

/// Why a rendezvous address is not to be opened: what about it is wrong, without its
/// query (which holds the rendezvous secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Untrusted(pub String);

impl fmt::Display for Untrusted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether an address a relay at `relay` handed out (an accept or request address)
/// leads back to it: the relay's scheme (never a downgrade to plain `ws://`), and its own
/// host and port, or, for an Azure namespace, a gateway of its service domain on 443,
/// with a target a request line can carry. Anything else is a relay trying to make the
/// listener connect elsewhere (its own network, a loopback port).
pub fn check_rendezvous_address(relay: &Endpoint, address: &str) -> Result<(), Untrusted> {
    let Some((secure, host, port, target)) = split_url(address) else {
        return Err(Untrusted("not a ws:// or wss:// URL".into()));
    };
    if !crate::http1::is_request_target(&target) || !host.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Untrusted("it holds characters a request cannot carry".into()));
    }
    let shown = || format!("{}://{host}:{port}", if secure { "wss" } else { "ws" });
    if secure != relay.secure {
        return Err(Untrusted(format!("{} is not the relay's scheme", shown())));
    }
    let own = host.eq_ignore_ascii_case(&relay.host) && port == relay.port;
    let gateway = relay.azure_domain().is_some_and(|domain| {
        let host = host.to_ascii_lowercase();
        port == 443 && host.strip_suffix(domain).and_then(|h| h.strip_suffix('.')).is_some_and(|h| !h.is_empty())
    });
    if own || gateway { Ok(()) } else { Err(Untrusted(format!("{} is not the relay", shown()))) }
}

/// An open WebSocket to the relay, before any frame.
pub struct Opened {
    pub stream: ClientStream,
    pub response: Response,
    /// Bytes that arrived after the 101 response.
    pub initial: Vec<u8>,
}

/// Why a WebSocket to the relay could not be opened.
#[derive(Debug)]
pub(crate) enum OpenError {
    BadUrl(String),
    Connect {
        addr: String,
        error: std::io::Error,
    },
    Tls(std::io::Error),
    /// The relay, or a listener through it, answered with this status and text.
    Rejected {
        by: RejectedBy,
        status: u16,
        text: String,
    },
    Handshake(String),
    /// The relay answered, but not as the endpoint says it would: TLS where plain `ws://`
    /// was asked for or the reverse, or a certificate that is not trusted or not the pinned
    /// one. The text names the likely cause and the fix.
    Mismatch(String),
    Timeout,
    /// No answer to the upgrade within [`ANSWER_TIMEOUT`]; `listener`: a sender's, which
    /// waited for a listener to accept.
    NoAnswer {
        listener: bool,
    },
    /// The relay handed out an address that does not lead back to it ([`RelayClient::trusts`]).
    Untrusted(String),
    /// The HTTP proxy could not be reached or did not open the tunnel; the text names the
    /// proxy (`host:port`, never its credentials) and the fix.
    Proxy(String),
}

impl OpenError {
    /// A status the user cannot fix by waiting: bad credentials, missing HC, bad request.
    pub(crate) fn is_permanent(&self) -> bool {
        matches!(self, Self::Rejected { status: 400 | 401 | 403 | 404 | 409, .. } | Self::BadUrl(_))
    }

    /// What kind of failure this is, for the exit code: a listener's rejection is
    /// [`Kind::Rejected`] whatever its status; the relay's own statuses say what to fix.
    pub(crate) fn kind(&self) -> Kind {
        match self {
            Self::Rejected { by: RejectedBy::Listener, .. } => Kind::Rejected,
            Self::BadUrl(_) | Self::Rejected { status: 400, .. } => Kind::Config,
            Self::Rejected { status: 401 | 403, .. } => Kind::Unauthorized,
            Self::Rejected { status: 404, .. } => Kind::NotFound,
            Self::Rejected { status: 409, .. } => Kind::Conflict,
            Self::Rejected { .. } => Kind::Rejected,
            Self::Connect { .. }
            | Self::Tls(_)
            | Self::Handshake(_)
            | Self::Mismatch(_)
            | Self::Timeout
            | Self::NoAnswer { .. }
            | Self::Untrusted(_)
            | Self::Proxy(_) => Kind::Unreachable,
        }
    }

    /// Whether another endpoint of the relay may do better: this one could not be reached,
    /// or broke off before it answered. Any answer (a status, a certificate that is not
    /// the relay's, no accept in time) would be the same from every node.
    pub(crate) fn may_try_another_endpoint(&self) -> bool {
        matches!(self, Self::Connect { .. } | Self::Timeout | Self::Tls(_) | Self::Handshake(_))
    }

    /// Whether the text already names the cause and the fix, so that a generic "is the
    /// relay running?" would only mislead.
    pub(crate) fn names_its_fix(&self) -> bool {
        matches!(self, Self::Mismatch(_) | Self::Proxy(_))
    }
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Without the query: an accept address carries its rendezvous secret there.
            Self::BadUrl(u) => write!(f, "bad relay address {}", u.split('?').next().unwrap_or_default()),
            Self::Connect { addr, error } => write!(f, "cannot reach the relay at {addr}: {error}"),
            Self::Tls(e) => write!(f, "TLS handshake with the relay failed: {e}"),
            Self::Rejected { status, text, .. } => write!(f, "{status} {text}"),
            Self::Handshake(e) => write!(f, "WebSocket handshake with the relay failed: {e}"),
            Self::Mismatch(text) => f.write_str(text),
            Self::Timeout => write!(f, "no answer from the relay within {} s", CONNECT_TIMEOUT.as_secs()),
            Self::NoAnswer { listener: true } => {
                write!(f, "the listener did not answer within {} s", ANSWER_TIMEOUT.as_secs())
            }
            Self::NoAnswer { listener: false } => {
                write!(f, "the relay did not answer the upgrade within {} s", ANSWER_TIMEOUT.as_secs())
            }
            Self::Untrusted(why) => write!(f, "refusing an address the relay handed out: {why}"),
            Self::Proxy(text) => f.write_str(text),
        }
    }
}

impl std::error::Error for OpenError {}

/// Who said no to an upgrade: the relay itself, or a listener through it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RejectedBy {
    Relay,
    Listener,
}

/// Statuses a relay answers a WebSocket upgrade with on its own (docs/protocol.md 5.1,
/// 6, and hyco's relay: 409 for a public port or an HC name another HC has, 431 for a
/// head too large, 503 when stopping or full, 504 when no listener accepts in time).
const RELAY_STATUSES: [u16; 9] = [400, 401, 403, 404, 409, 431, 500, 503, 504];

impl RejectedBy {
    /// Who sent a rejection with `status` and `text`, as far as the answer tells.
    ///
    /// Nothing on the wire says so for certain: the relay passes a listener's rejection
    /// on (docs/protocol.md 5.4) in the same form as its own, with the listener's status
    /// and text. Two signals remain, in this order:
    /// - the status: one a relay never gives on its own (a listener's 502 for a target
    ///   that refused, say) comes from a listener;
    /// - the text: a relay's own text ends in its tracking suffix
    ///   (`… TrackingId:…, Timestamp:…`, Azure's and hyco's alike). hyco listeners send
    ///   none; a .NET listener's exception texts carry one too, which is why the status
    ///   is read first. A .NET listener's 404 or 504 with a tracking suffix is still read
    ///   as the relay's.
    fn of(status: u16, text: &str) -> Self {
        if RELAY_STATUSES.contains(&status) && text.contains("TrackingId:") { Self::Relay } else { Self::Listener }
    }
}

/// Splits `ws[s]://host[:port]/target` into (secure, host, port, target).
pub(crate) fn split_url(url: &str) -> Option<(bool, String, u16, String)> {
    let (secure, rest) =
        if let Some(r) = url.strip_prefix("wss://") { (true, r) } else { (false, url.strip_prefix("ws://")?) };
    let (authority, target) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_owned()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_owned()),
    };
    let default_port = if secure { 443 } else { 80 };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        (h.to_owned(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), p.parse().ok()?),
            None => (authority.to_owned(), default_port),
        }
    };
    (!host.is_empty()).then_some((secure, host, port, target))
}

/// Opens a WebSocket to `url`: connects (within [`CONNECT_TIMEOUT`], else `timed_out`),
/// then waits for the answer to its upgrade (within [`ANSWER_TIMEOUT`]).
async fn open_ws(
    url: &str,
    tls: Option<&Arc<rustls::ClientConfig>>,
    proxies: &proxy::Proxies,
    headers: &[(String, String)],
    timed_out: impl FnOnce() -> OpenError,
) -> Result<Opened, OpenError> {
    let (secure, host, port, target) = split_url(url).ok_or_else(|| OpenError::BadUrl(url.to_owned()))?;
    let addr = protocol::authority(&host, port);
    let connecting = async {
        // The one place a client dials its relay: through the proxy when one applies.
        let tcp = match proxies.for_relay(secure, &host) {
            Some(p) => proxy::connect(p, &host, port).await.map_err(|e| OpenError::Proxy(e.0))?,
            None => {
                crate::net::connect(&addr).await.map_err(|error| OpenError::Connect { addr: addr.clone(), error })?
            }
        };
        Ok::<_, OpenError>(if secure {
            let config = match tls {
                Some(c) => c.clone(),
                None => tls::system_roots().map_err(|e| OpenError::Tls(std::io::Error::other(e.to_string())))?,
            };
            let name =
                rustls::pki_types::ServerName::try_from(host.clone()).map_err(|_| OpenError::BadUrl(url.to_owned()))?;
            let connector = tokio_rustls::TlsConnector::from(config);
            ClientStream::Tls(Box::new(connector.connect(name, tcp).await.map_err(|e| tls_failure(e, &addr))?))
        } else {
            ClientStream::Plain(tcp)
        })
    };
    let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, connecting).await.map_err(|_| timed_out())??;
    let default_port = if secure { 443 } else { 80 };
    let host_header = match (host.contains(':'), port == default_port) {
        (true, true) => format!("[{host}]"),
        (true, false) => format!("[{host}]:{port}"),
        (false, true) => host.clone(),
        (false, false) => format!("{host}:{port}"),
    };
    let answer = handshake::client(&mut stream, &host_header, &target, headers, MAX_RESPONSE_HEAD);
    let Ok(answer) = tokio::time::timeout(ANSWER_TIMEOUT, answer).await else {
        // A sender's upgrade waits for a listener's accept; anything else only for the relay.
        let sender = target.contains(&format!("{}={}", protocol::PARAM_ACTION, Action::Connect.as_str()));
        return Err(OpenError::NoAnswer { listener: sender });
    };
    match answer {
        Ok((response, initial)) => Ok(Opened { stream, response, initial }),
        Err(HandshakeError::Rejected { status, reason }) => {
            Err(OpenError::Rejected { by: RejectedBy::of(status, &reason), status, text: reason })
        }
        Err(HandshakeError::Head(HeadError::Malformed(why))) if !secure => Err(OpenError::Mismatch(format!(
            "the relay at {addr} did not answer in HTTP ({why}): it likely speaks TLS there; \
             use wss:// (in a connection string, leave out UseDevelopmentEmulator=true)"
        ))),
        Err(e) => Err(OpenError::Handshake(e.to_string())),
    }
}

/// A failed TLS handshake with the relay at `addr`: the likely cause and its fix where the
/// error tells (a plain relay, a certificate no root vouches for, another pin), else as is.
fn tls_failure(e: std::io::Error, addr: &str) -> OpenError {
    use rustls::{CertificateError, Error, InvalidMessage};
    match e.get_ref().and_then(|inner| inner.downcast_ref::<Error>()) {
        Some(Error::InvalidMessage(InvalidMessage::InvalidContentType)) => OpenError::Mismatch(format!(
            "the relay at {addr} does not speak TLS: use ws:// instead of wss:// \
             (in a connection string, add UseDevelopmentEmulator=true to an sb:// endpoint)"
        )),
        Some(Error::InvalidCertificate(CertificateError::UnknownIssuer)) => OpenError::Mismatch(format!(
            "the relay at {addr} presented a certificate no trusted authority signed (UnknownIssuer): \
             for a self-signed relay (`hyco serve --tls-self-signed`), pin the fingerprint it printed \
             at start (`TLS certificate SHA-256 fingerprint: …`) with --tls-fingerprint or the profile's \
             tls_fingerprint"
        )),
        Some(Error::General(why)) if why.starts_with(tls::MISMATCH) => OpenError::Mismatch(format!(
            "{why}: pin the fingerprint the relay printed at start (`TLS certificate SHA-256 fingerprint: …`); \
             if it was not set up again (a new data directory makes a new certificate), this may not be your relay"
        )),
        _ => OpenError::Tls(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_answer_says_who_did_not_answer() {
        assert_eq!(
            OpenError::NoAnswer { listener: true }.to_string(),
            format!("the listener did not answer within {} s", ANSWER_TIMEOUT.as_secs())
        );
        assert!(OpenError::NoAnswer { listener: false }.to_string().starts_with("the relay did not answer"));
        assert_eq!(OpenError::NoAnswer { listener: true }.kind(), Kind::Unreachable);
        assert!(ANSWER_TIMEOUT >= Duration::from_secs(60) && CONNECT_TIMEOUT < ANSWER_TIMEOUT);
    }

    #[test]
    fn rejections_are_told_apart_by_status_then_tracking_suffix() {
        let relay = "Endpoint does not exist. TrackingId:6f1c, Timestamp:2026-11-27T10:00:00Z";
        assert_eq!(RejectedBy::of(404, relay), RejectedBy::Relay);
        assert_eq!(RejectedBy::of(401, relay), RejectedBy::Relay);
        // hyco listeners: no tracking suffix.
        assert_eq!(RejectedBy::of(404, "No target named 'db' (this listener has: a)"), RejectedBy::Listener);
        assert_eq!(RejectedBy::of(504, "Connection to 127.0.0.1:9 timed out"), RejectedBy::Listener);
        // A .NET listener's 502 carries its own tracking suffix: still the listener's.
        let dotnet =
            "Bad gateway. TrackingId:6f1c_G3, SystemTracker:ns:HybridConnection:hc, Timestamp:2026-11-27T10:00:00";
        assert_eq!(RejectedBy::of(502, dotnet), RejectedBy::Listener);
        let kind = |by, status| OpenError::Rejected { by, status, text: String::new() }.kind();
        assert_eq!(kind(RejectedBy::Listener, 404), Kind::Rejected);
        assert_eq!(kind(RejectedBy::Relay, 404), Kind::NotFound);
        assert_eq!(kind(RejectedBy::Relay, 403), Kind::Unauthorized);
        assert_eq!(kind(RejectedBy::Relay, 400), Kind::Config);
        assert_eq!(kind(RejectedBy::Relay, 503), Kind::Rejected);
        // The relay's own 409 (a public port or a name another HC has): exit 9, not 8.
        assert_eq!(kind(RejectedBy::of(409, relay), 409), Kind::Conflict);
    }

    fn relay(url: &str) -> RelayClient {
        let (secure, host, port, _) = split_url(url).unwrap();
        RelayClient {
            endpoint: Endpoint { secure, host, port },
            others: Vec::new(),
            start: 0,
            ordered: false,
            credential: Credential::None,
            tls: None,
            token_ttl: protocol::DEFAULT_TOKEN_TTL,
            keepalive: Some(crate::ws::pump::DEFAULT_KEEPALIVE),
            proxies: proxy::Proxies::none(),
            token_command: None,
        }
    }

    #[test]
    fn a_relay_of_several_endpoints_is_tried_round_from_a_random_start_and_trusts_each() {
        let node = |n: u16| Endpoint { secure: true, host: format!("n{n}.example.net"), port: 443 };
        let client = relay("wss://n0.example.net:443").with_others(vec![node(1), node(2)]);
        assert_eq!(client.endpoint_count(), 3);
        let seen: Vec<String> = (0..6).map(|i| client.endpoint_at(i).host.clone()).collect();
        assert_eq!(seen[..3], seen[3..], "round and round");
        let mut once = seen[..3].to_vec();
        once.sort();
        assert_eq!(once, ["n0.example.net", "n1.example.net", "n2.example.net"], "each once a round");
        let accept = "/$hc/a?sb-hc-action=accept&sb-hc-id=x";
        for n in 0..3 {
            assert!(client.trusts(&format!("wss://n{n}.example.net{accept}")).is_ok(), "node {n}");
        }
        assert!(client.trusts(&format!("wss://n3.example.net{accept}")).is_err());
        assert_eq!(
            client.endpoints_text(),
            "wss://n0.example.net:443, wss://n1.example.net:443, wss://n2.example.net:443"
        );
        assert!(OpenError::Timeout.may_try_another_endpoint());
        assert!(!OpenError::NoAnswer { listener: true }.may_try_another_endpoint(), "a relay's answer is final");
        let rejected = OpenError::Rejected { by: RejectedBy::Relay, status: 404, text: String::new() };
        assert!(!rejected.may_try_another_endpoint());
    }

    #[test]
    fn rendezvous_addresses_must_lead_back_to_the_relay() {
        let accept = "/$hc/a?sb-hc-action=accept&sb-hc-id=x";
        let hyco = relay("wss://relay.example.net:9443");
        assert!(hyco.trusts(&format!("wss://relay.example.net:9443{accept}")).is_ok());
        assert!(hyco.trusts(&format!("wss://RELAY.example.net:9443{accept}")).is_ok(), "host names are case-blind");
        for bad in [
            format!("ws://relay.example.net:9443{accept}"),
            format!("wss://relay.example.net:22{accept}"),
            format!("wss://127.0.0.1:9443{accept}"),
            format!("wss://g1.example.net{accept}"),
            format!("wss://relay.example.net:9443{accept}\r\nX: 1"),
            "https://relay.example.net:9443/".to_owned(),
        ] {
            assert!(hyco.trusts(&bad).is_err(), "{bad}");
        }
        // Azure's gateways are other hosts of the namespace's service domain, on 443.
        let azure = relay("wss://contoso.servicebus.windows.net");
        assert!(azure.trusts(&format!("wss://g19-prod-am3-003-sb.servicebus.windows.net{accept}")).is_ok());
        assert!(azure.trusts(&format!("wss://contoso.servicebus.windows.net:443{accept}")).is_ok());
        for bad in [
            format!("wss://evil.example.net{accept}"),
            format!("wss://servicebus.windows.net{accept}"),
            format!("wss://x.servicebus.windows.net.evil.net{accept}"),
            format!("wss://xservicebus.windows.net{accept}"),
            format!("wss://g1.servicebus.windows.net:8443{accept}"),
            format!("ws://g1.servicebus.windows.net{accept}"),
            format!("wss://g1.servicebus.chinacloudapi.cn{accept}"),
        ] {
            assert!(azure.trusts(&bad).is_err(), "{bad}");
        }
        // No downgrade, and no upgrade the relay never offered.
        assert!(relay("ws://127.0.0.1:9400").trusts(&format!("wss://127.0.0.1:9400{accept}")).is_err());
    }

    #[test]
    fn a_timeout_through_a_proxy_names_the_proxy() {
        let proxies = proxy::Proxies::resolve(Some("http://u:pw@proxy.corp:3128"), None, |_| None).unwrap();
        let client = relay("wss://relay.example.net").with_proxies(proxies);
        let e = client.timed_out("wss://relay.example.net/$hc/a");
        assert!(
            e.to_string().starts_with("no answer from the relay through the proxy at proxy.corp:3128 within"),
            "{e}"
        );
        assert!(!e.to_string().contains("pw") && e.kind() == Kind::Unreachable, "{e}");
        assert!(matches!(relay("wss://relay.example.net").timed_out("wss://relay.example.net/"), OpenError::Timeout));
    }

    #[test]
    fn urls_split() {
        assert_eq!(split_url("ws://h:1/$hc/a?x=1"), Some((false, "h".into(), 1, "/$hc/a?x=1".into())));
        assert_eq!(split_url("wss://h/$hc/a"), Some((true, "h".into(), 443, "/$hc/a".into())));
        assert_eq!(split_url("ws://[::1]:9/p"), Some((false, "::1".into(), 9, "/p".into())));
        assert_eq!(split_url("ws://h?q"), Some((false, "h".into(), 80, "/?q".into())));
        assert_eq!(split_url("http://h/"), None);
        assert_eq!(split_url("ws://h:x/"), None);
        assert_eq!(split_url("ws:///p"), None);
    }
}
