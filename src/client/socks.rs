//! `hyco connect --socks`: a SOCKS5 server (RFC 1928) on a local port. Each CONNECT opens
//! a sender WebSocket to the hybrid connection naming its destination in the
//! `Hyco-Destination` connect header (docs/protocol.md 10.5); the listener's `--allow`
//! decides ([`super::allow`]).
//!
//! No authentication (method 0x00), or with `--socks-user` a user name and password
//! (RFC 1929, method 0x02, the only one offered then); CONNECT only (BIND and UDP
//! ASSOCIATE are answered 0x07), and no prewarming: the destination is known only
//! from the request. The reply waits for the listener's accept, which a listener gives
//! only once it has reached the destination, so 0x00 means connected (BND.ADDR is
//! 0.0.0.0:0: the listener's address is not the client's business); a rejection becomes
//! the reply code that says why ([`reply_for`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use super::allow::{self, Destination, HEADER_DESTINATION, Host};
use super::connect::{ConnectSettings, DRAIN_TIMEOUT};
use super::pump::{self, LocalSide};
use super::tunnel::{Tunnel, short_id};
use super::{OpenError, Opened, RejectedBy, RelayClient};
use crate::error::{Failure, Kind, failure};
use crate::protocol::{self, Action};
use crate::status::{Stats, Tally};

/// How long a client has for its greeting and its request, from its connection.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// SOCKS sessions at once (in their handshake or with their tunnel open); a connection
/// beyond them is reset at once.
pub const MAX_SESSIONS: usize = 256;
/// After a failure reply, how long the client has to close before the connection is
/// dropped (closing at once with its unread bytes would reset it, and the reply with it).
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// What is read and discarded in [`CLOSE_GRACE`] at most.
const CLOSE_DRAIN: usize = 4096;

const VERSION: u8 = 5;
const NO_AUTHENTICATION: u8 = 0x00;
const USER_PASSWORD: u8 = 0x02;
const NO_ACCEPTABLE_METHOD: u8 = 0xFF;
/// RFC 1929's sub-negotiation version, and its statuses.
const AUTH_VERSION: u8 = 1;
const AUTH_OK: u8 = 0;
const AUTH_FAILED: u8 = 1;

/// The user name and password a SOCKS client must give (`--socks-user` and
/// `HYCO_SOCKS_PASSWORD`); `None`: no authentication.
#[derive(Clone, Debug)]
pub struct SocksAuth {
    pub user: String,
    pub password: crate::secret::Secret,
}
const CMD_CONNECT: u8 = 1;
const ATYP_IPV4: u8 = 1;
const ATYP_NAME: u8 = 3;
const ATYP_IPV6: u8 = 4;

/// RFC 1928's reply codes (section 6).
mod reply {
    pub(super) const SUCCEEDED: u8 = 0x00;
    pub(super) const GENERAL_FAILURE: u8 = 0x01;
    pub(super) const NOT_ALLOWED: u8 = 0x02;
    pub(super) const NETWORK_UNREACHABLE: u8 = 0x03;
    pub(super) const HOST_UNREACHABLE: u8 = 0x04;
    pub(super) const CONNECTION_REFUSED: u8 = 0x05;
    pub(super) const COMMAND_NOT_SUPPORTED: u8 = 0x07;
    pub(super) const ADDRESS_TYPE_NOT_SUPPORTED: u8 = 0x08;
}

/// The reply code for a sender WebSocket that did not open (docs/protocol.md 10.5): the
/// listener's statuses for a dynamic destination say why, the relay's 404 says no
/// listener is online; anything else (the relay unreachable, the credentials rejected)
/// is a general failure.
fn reply_for(e: &OpenError) -> u8 {
    match e {
        OpenError::Rejected { by: RejectedBy::Listener, status, .. } => match *status {
            allow::STATUS_NOT_ALLOWED => reply::NOT_ALLOWED,
            allow::STATUS_NO_SUCH_NAME | allow::STATUS_UNREACHABLE | allow::STATUS_TIMED_OUT => reply::HOST_UNREACHABLE,
            allow::STATUS_REFUSED => reply::CONNECTION_REFUSED,
            _ => reply::GENERAL_FAILURE,
        },
        OpenError::Rejected { by: RejectedBy::Relay, status: 404, .. } => reply::NETWORK_UNREACHABLE,
        _ => reply::GENERAL_FAILURE,
    }
}

/// Why a handshake ended without a destination: the reply to send, if one is still due,
/// and the reason for the log.
#[derive(Debug, PartialEq, Eq)]
struct Refusal {
    reply: Option<u8>,
    why: String,
}

impl Refusal {
    fn new(reply: Option<u8>, why: impl Into<String>) -> Self {
        Self { reply, why: why.into() }
    }
}

/// Runs the server side of a SOCKS5 handshake on `s` up to the request: the destination
/// of a CONNECT, or why not. Reads exactly what the protocol says is there (at most 257
/// bytes of greeting and 262 of request), so nothing past the request is consumed.
async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    auth: Option<&SocksAuth>,
) -> Result<Destination, Refusal> {
    let io = |e: std::io::Error| Refusal::new(None, format!("connection lost in the handshake: {e}"));
    let mut head = [0u8; 2];
    s.read_exact(&mut head).await.map_err(io)?;
    if head[0] != VERSION {
        return Err(Refusal::new(None, format!("not SOCKS5 (version {})", head[0])));
    }
    let mut methods = vec![0u8; usize::from(head[1])];
    s.read_exact(&mut methods).await.map_err(io)?;
    let method = if auth.is_some() { USER_PASSWORD } else { NO_AUTHENTICATION };
    if !methods.contains(&method) {
        s.write_all(&[VERSION, NO_ACCEPTABLE_METHOD]).await.map_err(io)?;
        let why = match auth {
            Some(_) => "the client offers no user name and password (this SOCKS port asks for them)",
            None => "the client offers no method without authentication",
        };
        return Err(Refusal::new(None, why));
    }
    s.write_all(&[VERSION, method]).await.map_err(io)?;
    if let Some(auth) = auth {
        // RFC 1929: VER, ULEN, UNAME, PLEN, PASSWD; each length one byte.
        let mut version = [0u8; 2];
        s.read_exact(&mut version).await.map_err(io)?;
        let mut user = vec![0u8; usize::from(version[1])];
        s.read_exact(&mut user).await.map_err(io)?;
        let mut len = [0u8; 1];
        s.read_exact(&mut len).await.map_err(io)?;
        let mut password = vec![0u8; usize::from(len[0])];
        s.read_exact(&mut password).await.map_err(io)?;
        let password = crate::secret::Secret::new(String::from_utf8_lossy(&password).into_owned());
        // Both compared, whatever the first says, so the time does not tell which was wrong.
        let user_ok = crate::secret::Secret::new(String::from_utf8_lossy(&user).into_owned())
            == crate::secret::Secret::new(auth.user.as_str());
        let password_ok = password == auth.password;
        if version[0] != AUTH_VERSION || !(user_ok & password_ok) {
            s.write_all(&[AUTH_VERSION, AUTH_FAILED]).await.map_err(io)?;
            return Err(Refusal::new(None, "wrong user name or password"));
        }
        s.write_all(&[AUTH_VERSION, AUTH_OK]).await.map_err(io)?;
    }
    let mut request = [0u8; 4];
    s.read_exact(&mut request).await.map_err(io)?;
    let [version, command, _, atyp] = request;
    if version != VERSION {
        return Err(Refusal::new(Some(reply::GENERAL_FAILURE), format!("a request of version {version}")));
    }
    let host = match atyp {
        ATYP_IPV4 => {
            let mut ip = [0u8; 4];
            s.read_exact(&mut ip).await.map_err(io)?;
            Ok(Host::Ip(ip.into()))
        }
        ATYP_IPV6 => {
            let mut ip = [0u8; 16];
            s.read_exact(&mut ip).await.map_err(io)?;
            Ok(Host::Ip(ip.into()))
        }
        ATYP_NAME => {
            let mut len = [0u8; 1];
            s.read_exact(&mut len).await.map_err(io)?;
            let mut name = vec![0u8; usize::from(len[0])];
            s.read_exact(&mut name).await.map_err(io)?;
            Err(name)
        }
        other => {
            let why = format!("address type {other} is not one of RFC 1928's");
            return Err(Refusal::new(Some(reply::ADDRESS_TYPE_NOT_SUPPORTED), why));
        }
    };
    let mut port = [0u8; 2];
    s.read_exact(&mut port).await.map_err(io)?;
    let port = u16::from_be_bytes(port);
    if command != CMD_CONNECT {
        let what = match command {
            2 => "BIND".to_owned(),
            3 => "UDP ASSOCIATE".to_owned(),
            n => format!("command {n}"),
        };
        return Err(Refusal::new(Some(reply::COMMAND_NOT_SUPPORTED), format!("{what} is not supported")));
    }
    let text = match host {
        Ok(Host::Ip(ip)) => protocol::authority(&ip.to_string(), port),
        Ok(Host::Name(n)) => protocol::authority(&n, port),
        Err(name) => format!("{}:{port}", String::from_utf8_lossy(&name)),
    };
    Destination::parse(&text).map_err(|why| Refusal::new(Some(reply::GENERAL_FAILURE), why))
}

/// A reply with BND.ADDR 0.0.0.0:0.
fn reply_bytes(code: u8) -> [u8; 10] {
    [VERSION, code, 0, ATYP_IPV4, 0, 0, 0, 0, 0, 0]
}

/// Sends a failure reply and closes: the write side first, then the rest once the client
/// closed too, or after [`CLOSE_GRACE`].
async fn fail(mut tcp: TcpStream, code: Option<u8>) {
    if let Some(code) = code {
        let _ = tcp.write_all(&reply_bytes(code)).await;
    }
    let _ = tcp.shutdown().await;
    let drain = async {
        let mut buf = [0u8; 512];
        let mut left = CLOSE_DRAIN;
        while left > 0 {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, drain).await;
}

/// Checks the relay and the credentials once ([`super::connect::check`]; no listener
/// online, or a listener that rejects the check, is not an error: SOCKS tunnels are
/// decided one by one), then serves SOCKS5 on `listener` until `shutdown`. At shutdown
/// handshakes end at once, and open tunnels may finish for [`DRAIN_TIMEOUT`].
pub async fn run(
    client: RelayClient,
    settings: ConnectSettings,
    auth: Option<SocksAuth>,
    listener: TcpListener,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (hc, label) = (&settings.hc, settings.label());
    if settings.suffix.is_some() {
        let why =
            format!("--socks reaches the destinations the listener allows, not a named target: give {hc}, not {label}");
        return Err(failure(Kind::Config, why));
    }
    if settings.azbridge.is_some() {
        return Err(failure(Kind::Config, "--socks does not go with --azbridge-port"));
    }
    let checked = tokio::select! {
        c = super::connect::check(&client, &settings) => c,
        () = shutdown.cancelled() => return Ok(()),
    };
    match checked {
        Ok(checked) => {
            if checked.waiting() {
                info!("no listener on '{hc}' yet: SOCKS requests get 0x03 (network unreachable) until one is");
            }
            checked.close().await;
        }
        Err(e) if e.chain().find_map(|e| e.downcast_ref::<Failure>()).is_some_and(|f| f.kind == Kind::Rejected) => {
            debug!("the listener rejected the path check: {e:#}");
        }
        Err(e) => return Err(e),
    }
    let local = listener.local_addr()?;
    info!("SOCKS5 on {local} for {hc}");
    match &auth {
        Some(auth) => info!("SOCKS5 clients must give user '{}' and its password", auth.user),
        None if !local.ip().is_loopback() => warn!(
            "SOCKS5 on {local} asks for no password: whoever reaches it reaches what the listener allows \
             (--socks-user and HYCO_SOCKS_PASSWORD ask for one)"
        ),
        None => {}
    }
    let auth = auth.map(Arc::new);
    let sessions = Arc::new(Semaphore::new(MAX_SESSIONS));
    let tunnels = TaskTracker::new();
    let force = CancellationToken::new();
    let mut turned_away = 0u64;
    while let Some((tcp, peer)) = crate::net::accept(&listener, &shutdown, "SOCKS port").await {
        let Ok(permit) = sessions.clone().try_acquire_owned() else {
            turned_away += 1;
            if turned_away.is_power_of_two() {
                warn!("{MAX_SESSIONS} SOCKS sessions at once: reset {peer}'s connection ({turned_away} so far)");
            }
            crate::net::reset(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let session =
            Session { client: client.clone(), hc: hc.clone(), auth: auth.clone(), tcp, peer, stats: stats.clone() };
        let (shutdown, force) = (shutdown.clone(), force.clone());
        let id = protocol::new_guid();
        let span = info_span!(parent: None, "socks", id = %short_id(&id));
        tunnels.spawn(
            async move {
                session.run(id, &shutdown, &force).await;
                drop(permit);
            }
            .instrument(span),
        );
    }
    drop(listener);
    pump::drain(&tunnels, &stats, DRAIN_TIMEOUT, &force).await;
    info!("stopped: {}", stats.summary());
    Ok(())
}

/// One SOCKS client connection.
struct Session {
    client: RelayClient,
    hc: String,
    auth: Option<Arc<SocksAuth>>,
    tcp: TcpStream,
    peer: std::net::SocketAddr,
    stats: Arc<Stats>,
}

impl Session {
    /// Reads the request, opens the sender WebSocket (tracking id `id`) and answers; then
    /// pumps until the tunnel ends. Everything before the pump ends at `shutdown`.
    async fn run(mut self, id: String, shutdown: &CancellationToken, force: &CancellationToken) {
        let peer = self.peer;
        let asked = tokio::select! {
            a = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&mut self.tcp, self.auth.as_deref())) => Some(a),
            () = shutdown.cancelled() => None,
        };
        let to = match asked {
            None => return crate::net::reset(self.tcp),
            Some(Err(_)) => {
                info!("{peer}: no SOCKS request within {} s", HANDSHAKE_TIMEOUT.as_secs());
                return crate::net::reset(self.tcp);
            }
            Some(Ok(Err(refusal))) => {
                info!("{peer}: SOCKS: {}", refusal.why);
                return fail(self.tcp, refusal.reply).await;
            }
            Some(Ok(Ok(to))) => to,
        };
        let what = format!("{peer} -> {} -> {to}", self.hc);
        let opening = async {
            let url = |endpoint: &_| RelayClient::url_at(endpoint, &self.hc, None, Action::Connect, Some(&id));
            let headers = [(HEADER_DESTINATION.to_owned(), to.authority())];
            match self.client.open_relay(&self.hc, url, &headers).await {
                Err(e) => Err((reply::GENERAL_FAILURE, format!("{e:#}"))),
                Ok(Err(e)) => Err((reply_for(&e), e.to_string())),
                Ok(Ok((opened, ..))) => Ok(opened),
            }
        };
        let opened = tokio::select! {
            o = opening => Some(o),
            () = shutdown.cancelled() => None,
        };
        let Opened { stream, initial, .. } = match opened {
            None => return crate::net::reset(self.tcp),
            Some(Ok(opened)) => opened,
            Some(Err((code, why))) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                warn!("{what}: {why} (SOCKS reply {code:#04x})");
                return fail(self.tcp, Some(code)).await;
            }
        };
        let tunnel = Tunnel::new(stream, &initial).keepalive(self.client.keepalive);
        if let Err(e) = self.tcp.write_all(&reply_bytes(reply::SUCCEEDED)).await {
            debug!("{what}: the client left before the reply: {e}");
        }
        let Self { client, tcp, stats, .. } = self;
        drop((client, initial));
        pump::pump_local(
            crate::local::LocalStream::Tcp(tcp),
            tunnel,
            Tally::new(stats),
            LocalSide::Client,
            &what,
            force,
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs [`handshake`] against `input` written by a client all at once; the result
    /// and what the server wrote.
    async fn shake(input: &[u8]) -> (Result<Destination, Refusal>, Vec<u8>) {
        shake_with(input, None).await
    }

    /// The handshake of a server that asks for `auth`, on `input`.
    async fn shake_with(input: &[u8], auth: Option<&SocksAuth>) -> (Result<Destination, Refusal>, Vec<u8>) {
        let (mut client, mut server) = tokio::io::duplex(64);
        let input = input.to_vec();
        let writer = tokio::spawn(async move {
            let _ = client.write_all(&input).await;
            let _ = client.shutdown().await;
            let mut out = Vec::new();
            let _ = client.read_to_end(&mut out).await;
            out
        });
        let result = handshake(&mut server, auth).await;
        drop(server);
        (result, writer.await.unwrap())
    }

    fn request(cmd: u8, atyp: u8, addr: &[u8], port: u16) -> Vec<u8> {
        let mut r = vec![5, 1, 0, 5, cmd, 0, atyp];
        r.extend_from_slice(addr);
        r.extend_from_slice(&port.to_be_bytes());
        r
    }

    #[tokio::test]
    async fn connect_requests_of_every_address_type() {
        let (got, wrote) = shake(&request(1, ATYP_IPV4, &[127, 0, 0, 1], 80)).await;
        assert_eq!(got.unwrap().to_string(), "127.0.0.1:80");
        assert_eq!(wrote, [5, 0], "only the method choice: the reply waits for the listener");
        let mut v6 = [0u8; 16];
        v6[15] = 1;
        assert_eq!(shake(&request(1, ATYP_IPV6, &v6, 22)).await.0.unwrap().to_string(), "[::1]:22");
        let mut name = vec![9];
        name.extend_from_slice(b"Localhost");
        assert_eq!(shake(&request(1, ATYP_NAME, &name, 8080)).await.0.unwrap().to_string(), "localhost:8080");
        // A long greeting (255 methods, the last the one) is fine.
        let mut greeting = vec![5, 255];
        greeting.extend(std::iter::repeat_n(0x80, 254));
        greeting.push(0);
        greeting.extend_from_slice(&request(1, ATYP_IPV4, &[10, 0, 0, 1], 1)[3..]);
        assert_eq!(shake(&greeting).await.0.unwrap().to_string(), "10.0.0.1:1");
    }

    #[tokio::test]
    async fn a_user_name_and_password_are_asked_for_when_set() {
        let auth = SocksAuth { user: "ann".into(), password: crate::secret::Secret::new("s3cret") };
        let connect = request(CMD_CONNECT, ATYP_IPV4, &[127, 0, 0, 1], 80);
        // Offers 0x02; gives ann/s3cret; then its request.
        let mut given = vec![5, 2, 0, 2, 1, 3, b'a', b'n', b'n', 6];
        given.extend_from_slice(b"s3cret");
        given.extend_from_slice(&connect[3..]);
        let (got, wrote) = shake_with(&given, Some(&auth)).await;
        assert_eq!(got.map(|d| d.to_string()).ok().as_deref(), Some("127.0.0.1:80"));
        assert_eq!(wrote[..4], [5, 2, 1, 0], "method 0x02 chosen, then success");
        // A wrong password: status 1, and nothing more is read.
        let mut wrong = vec![5, 1, 2, 1, 3, b'a', b'n', b'n', 5];
        wrong.extend_from_slice(b"wrong");
        let (got, wrote) = shake_with(&wrong, Some(&auth)).await;
        assert!(got.unwrap_err().why.contains("wrong user name or password"));
        assert_eq!(wrote, [5, 2, 1, 1]);
        // A wrong user with the right password fails the same way.
        let mut user = vec![5, 1, 2, 1, 3, b'b', b'o', b'b', 6];
        user.extend_from_slice(b"s3cret");
        assert_eq!(shake_with(&user, Some(&auth)).await.1, [5, 2, 1, 1]);
        // A client offering only "no authentication" is turned away.
        let (got, wrote) = shake_with(&[5, 1, 0], Some(&auth)).await;
        assert!(got.unwrap_err().why.contains("asks for them"));
        assert_eq!(wrote, [5, 0xFF]);
        assert!(!format!("{auth:?}").contains("s3cret"), "the password never prints");
    }

    #[tokio::test]
    async fn what_is_not_served_is_refused_with_its_code() {
        let (got, wrote) = shake(&[5, 1, 2]).await;
        assert_eq!(got.unwrap_err().reply, None);
        assert_eq!(wrote, [5, 0xFF], "username/password only: no acceptable method");
        assert_eq!(shake(&[5, 0]).await.1, [5, 0xFF], "no methods at all");
        let (got, wrote) = shake(&[4, 1, 0, 80, 127, 0, 0, 1, 0]).await;
        assert!(got.unwrap_err().why.contains("not SOCKS5"));
        assert!(wrote.is_empty());
        for (cmd, what) in [(2, "BIND"), (3, "UDP ASSOCIATE"), (9, "command 9")] {
            let refusal = shake(&request(cmd, ATYP_IPV4, &[127, 0, 0, 1], 80)).await.0.unwrap_err();
            assert_eq!(refusal.reply, Some(reply::COMMAND_NOT_SUPPORTED));
            assert!(refusal.why.contains(what), "{refusal:?}");
        }
        let refusal = shake(&request(1, 7, &[], 80)).await.0.unwrap_err();
        assert_eq!(refusal.reply, Some(reply::ADDRESS_TYPE_NOT_SUPPORTED));
        for bad in [&b"\x00"[..], b"\x03a b", b"\x03a:b"] {
            let refusal = shake(&request(1, ATYP_NAME, bad, 80)).await.0.unwrap_err();
            assert_eq!(refusal.reply, Some(reply::GENERAL_FAILURE), "{bad:?}");
        }
        assert_eq!(shake(&request(1, ATYP_IPV4, &[1, 2, 3, 4], 0)).await.0.unwrap_err().reply, Some(1), "port 0");
        // Truncated anywhere: no reply, no destination.
        let full = request(1, ATYP_IPV4, &[127, 0, 0, 1], 80);
        for cut in 0..full.len() {
            let refusal = shake(&full[..cut]).await.0.unwrap_err();
            assert_eq!(refusal.reply, None, "cut at {cut}");
        }
    }

    #[test]
    fn rejections_map_to_reply_codes() {
        let by = |by, status| reply_for(&OpenError::Rejected { by, status, text: String::new() });
        use RejectedBy::{Listener, Relay};
        assert_eq!(by(Listener, 403), reply::NOT_ALLOWED);
        assert_eq!(by(Listener, 404), reply::HOST_UNREACHABLE);
        assert_eq!(by(Listener, 502), reply::CONNECTION_REFUSED);
        assert_eq!(by(Listener, 503), reply::HOST_UNREACHABLE);
        assert_eq!(by(Listener, 504), reply::HOST_UNREACHABLE);
        assert_eq!(by(Listener, 400), reply::GENERAL_FAILURE);
        assert_eq!(by(Relay, 404), reply::NETWORK_UNREACHABLE);
        for status in [401, 403, 503, 504] {
            assert_eq!(by(Relay, status), reply::GENERAL_FAILURE, "{status}");
        }
        assert_eq!(reply_for(&OpenError::Timeout), reply::GENERAL_FAILURE);
    }
}
