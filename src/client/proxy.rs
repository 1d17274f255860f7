//! HTTP proxies between a client and its relay: which proxy a connection uses (`--proxy`,
//! the `*_PROXY` variables, the profile, `NO_PROXY`) and the `CONNECT` through it. TLS to
//! the relay runs inside the proxy's tunnel, unchanged; targets never use a proxy. No
//! SOCKS, no TLS to the proxy itself.

use std::fmt;
use std::net::IpAddr;

use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::encoding::decode_component;
use crate::ipnet::IpNet;
use crate::secret::Secret;

/// The largest answer head a proxy may send to `CONNECT`.
pub const MAX_PROXY_RESPONSE_HEAD: usize = 8 * 1024;

/// The port of a proxy URL without one (as curl assumes).
const DEFAULT_PROXY_PORT: u16 = 1080;

/// What `--proxy` (or the profile's `proxy`) takes to mean: no proxy, whatever the
/// environment says.
pub const NO_PROXY_WORD: &str = "none";

/// One `http://[user:pass@]host[:port]` proxy. `Debug` and `Display` show `host:port`
/// only: the credentials never reach a log or an error.
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    host: String,
    port: u16,
    /// `Basic` credentials, base64 of `user:pass`.
    auth: Option<Secret>,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Proxy({self})")
    }
}

impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::protocol::authority(&self.host, self.port))
    }
}

/// Why a proxy setting cannot be used. Never holds the URL (it may carry credentials).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadProxy(String);

impl fmt::Display for BadProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadProxy {}

impl Proxy {
    /// Parses `http://[user:pass@]host[:port][/]`; `host:port` alone means `http://`.
    pub fn parse(url: &str) -> Result<Self, BadProxy> {
        let url = url.trim();
        let rest = match url.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) => {
                return Err(BadProxy(format!(
                    "proxy scheme {:?} is not supported: only http:// proxies (CONNECT)",
                    scheme.chars().take(16).collect::<String>()
                )));
            }
            None => url,
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#']) {
            return Err(BadProxy("a proxy URL has no path: use http://[user:pass@]host:port".into()));
        }
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) =
                v6.split_once(']').ok_or_else(|| BadProxy("the proxy's IPv6 address lacks its ]".into()))?;
            match after.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None if after.is_empty() => (h, None),
                None => return Err(BadProxy("junk after the proxy's IPv6 address".into())),
            }
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() || !host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b)) {
            return Err(BadProxy("the proxy URL has no usable host: use http://[user:pass@]host:port".into()));
        }
        let port = match port {
            None => DEFAULT_PROXY_PORT,
            Some(p) => {
                p.parse().ok().filter(|&p| p != 0).ok_or_else(|| BadProxy("the proxy's port is not a port".into()))?
            }
        };
        let auth = match userinfo {
            None => None,
            Some(u) => {
                let (user, pass) = u.split_once(':').unwrap_or((u, ""));
                let decode = |s| {
                    decode_component(s, false)
                        .map_err(|_| BadProxy("the proxy's credentials are not valid percent-encoding".into()))
                };
                let pair = format!("{}:{}", decode(user)?, decode(pass)?);
                Some(Secret::new(base64::engine::general_purpose::STANDARD.encode(pair)))
            }
        };
        Ok(Self { host: host.to_owned(), port, auth })
    }
}

/// Which proxy each relay connection uses, decided once at start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Proxies {
    /// For `wss://` relays.
    secure: Option<Proxy>,
    /// For `ws://` relays.
    plain: Option<Proxy>,
    /// `NO_PROXY`: hosts reached directly.
    no_proxy: String,
    /// Where the proxy came from, for messages: `--proxy`, `HTTPS_PROXY`, …
    source: &'static str,
}

impl Proxies {
    /// No proxy at all.
    pub fn none() -> Self {
        Self::default()
    }

    /// Decides from `--proxy` (`flag`), the environment (read through `env`) and the
    /// profile's `proxy`, in that order (a `none` ends the search with no proxy).
    /// `https_proxy` then `HTTPS_PROXY` serve `wss://` relays, `http_proxy` then
    /// `HTTP_PROXY` serve `ws://` ones, and `all_proxy`/`ALL_PROXY` both; `no_proxy`/
    /// `NO_PROXY` applies to any proxy, as curl reads it. Empty variables count as unset.
    pub fn resolve(
        flag: Option<&str>,
        profile: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, BadProxy> {
        let get = |names: [&'static str; 2]| {
            names.into_iter().find_map(|n| env(n).filter(|v| !v.trim().is_empty()).map(|v| (n, v)))
        };
        let no_proxy = get(["no_proxy", "NO_PROXY"]).map(|(_, v)| v).unwrap_or_default();
        let one = |text: &str, source: &'static str| -> Result<Self, BadProxy> {
            if text.trim().eq_ignore_ascii_case(NO_PROXY_WORD) {
                return Ok(Self::none());
            }
            let proxy = Proxy::parse(text).map_err(|e| BadProxy(format!("{source}: {e}")))?;
            Ok(Self { secure: Some(proxy.clone()), plain: Some(proxy), no_proxy: no_proxy.clone(), source })
        };
        if let Some(flag) = flag {
            return one(flag, "--proxy");
        }
        let all = get(["all_proxy", "ALL_PROXY"]);
        let secure = get(["https_proxy", "HTTPS_PROXY"]).or_else(|| all.clone());
        let plain = get(["http_proxy", "HTTP_PROXY"]).or_else(|| all.clone());
        if secure.is_some() || plain.is_some() {
            let parse = |v: Option<(&'static str, String)>| {
                v.map(|(name, text)| Proxy::parse(&text).map_err(|e| BadProxy(format!("{}: {e}", name.to_uppercase()))))
                    .transpose()
            };
            let source = secure.as_ref().or(plain.as_ref()).map_or("", |(n, _)| *n);
            return Ok(Self { secure: parse(secure)?, plain: parse(plain)?, no_proxy, source });
        }
        match profile {
            Some(p) => one(p, "the profile's proxy"),
            None => Ok(Self::none()),
        }
    }

    /// The proxy for a relay at `host` (`secure`: `wss://`), if any.
    pub(crate) fn for_relay(&self, secure: bool, host: &str) -> Option<&Proxy> {
        let proxy = if secure { self.secure.as_ref() } else { self.plain.as_ref() }?;
        (!no_proxy_matches(&self.no_proxy, host)).then_some(proxy)
    }

    /// Where the proxies came from (`--proxy`, `https_proxy`, …), or "" for none.
    pub(crate) fn source(&self) -> &'static str {
        self.source
    }
}

/// Whether `NO_PROXY` (`list`) exempts `host`, as curl reads it: `*` alone exempts all;
/// entries are separated by commas or blanks; a name matches itself and its subdomains
/// (a leading or trailing dot is ignored), case-blind; an IP address matches an entry
/// that is that address or a network holding it (`10.0.0.0/8`, `fd00::/8`). Ports play
/// no part: `example.com` exempts `example.com` on every port, and an entry with a port
/// matches nothing.
pub fn no_proxy_matches(list: &str, host: &str) -> bool {
    let list = list.trim();
    if list == "*" {
        return true;
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip = host.parse::<IpAddr>().ok();
    let name = host.strip_suffix('.').unwrap_or(host);
    list.split([',', ' ', '\t']).filter(|t| !t.is_empty()).any(|token| match ip {
        Some(ip) => ip_matches(ip, token),
        None => {
            let token = token.strip_suffix('.').unwrap_or(token);
            let token = token.strip_prefix('.').unwrap_or(token);
            if token.is_empty() || token.len() > name.len() {
                return false;
            }
            let (head, tail) = name.split_at(name.len() - token.len());
            tail.eq_ignore_ascii_case(token) && (head.is_empty() || head.ends_with('.'))
        }
    })
}

/// Whether `ip` is the address in `token` or in its network (`addr/bits`, [`IpNet`]).
fn ip_matches(ip: IpAddr, token: &str) -> bool {
    let token = match token.split_once('/') {
        Some((addr, bits)) => format!("{}/{bits}", addr.trim_start_matches('[').trim_end_matches(']')),
        None => token.trim_start_matches('[').trim_end_matches(']').to_owned(),
    };
    IpNet::parse(&token).is_ok_and(|net| net.contains(ip))
}

/// Why a `CONNECT` through a proxy failed; the text names the proxy (host:port) and,
/// where it can, the fix.
#[derive(Debug)]
pub(crate) struct ProxyFailure(pub(crate) String);

/// Opens a tunnel through `proxy` to `host:port` (the relay): TCP to the proxy, then
/// `CONNECT`, reading the answer's head one byte at a time so that nothing of the relay's
/// own bytes is taken. The caller bounds the time.
pub(crate) async fn connect(proxy: &Proxy, host: &str, port: u16) -> Result<TcpStream, ProxyFailure> {
    let at = proxy.to_string();
    tracing::debug!(proxy = %at, "connecting through the proxy");
    let mut tcp =
        crate::net::connect(&at).await.map_err(|e| ProxyFailure(format!("cannot reach the proxy at {at}: {e}")))?;
    let target = crate::protocol::authority(host, port);
    let mut head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(auth) = &proxy.auth {
        head.push_str(&format!("Proxy-Authorization: Basic {}\r\n", auth.expose()));
    }
    head.push_str("\r\n");
    tcp.write_all(head.as_bytes()).await.map_err(|e| ProxyFailure(format!("the proxy at {at} failed: {e}")))?;
    let mut buf = Vec::with_capacity(256);
    let response = loop {
        let mut byte = [0u8; 1];
        let n = tcp.read(&mut byte).await.map_err(|e| ProxyFailure(format!("the proxy at {at} failed: {e}")))?;
        if n == 0 {
            return Err(ProxyFailure(format!("the proxy at {at} closed the connection without answering CONNECT")));
        }
        buf.push(byte[0]);
        if buf.ends_with(b"\r\n\r\n") {
            match crate::http1::parse_response(&buf) {
                Ok(Some((response, _))) => break response,
                _ => return Err(ProxyFailure(format!("the proxy at {at} answered CONNECT with something not HTTP"))),
            }
        }
        if buf.len() >= MAX_PROXY_RESPONSE_HEAD {
            return Err(ProxyFailure(format!(
                "the proxy at {at} answered CONNECT with a head over {MAX_PROXY_RESPONSE_HEAD} bytes"
            )));
        }
    };
    let reason = crate::http1::sanitize(&response.reason);
    match response.status {
        200..=299 => Ok(tcp),
        // 407 asks for credentials; some proxies (tinyproxy) answer wrong ones with 401.
        401 | 407 if proxy.auth.is_some() => Err(ProxyFailure(format!(
            "the proxy at {at} did not accept the credentials ({} {reason}): fix the user and password in \
             --proxy http://USER:PASS@{at}, HTTPS_PROXY/HTTP_PROXY, or the profile's proxy",
            response.status
        ))),
        401 | 407 => Err(ProxyFailure(format!(
            "the proxy at {at} wants credentials ({} {reason}): put them in the proxy URL, \
             --proxy http://USER:PASS@{at}, HTTPS_PROXY/HTTP_PROXY, or the profile's proxy",
            response.status
        ))),
        status => Err(ProxyFailure(format!(
            "the proxy at {at} rejected the tunnel to the relay at {target} ({status} {reason}); \
             if the relay should be reached directly, add its host to NO_PROXY or pass --proxy none"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls_parse_and_never_show_credentials() {
        let p = Proxy::parse("http://al%40ce:s3cr%3At@proxy.corp:3128/").unwrap();
        assert_eq!(p.to_string(), "proxy.corp:3128");
        assert_eq!(format!("{p:?}"), "Proxy(proxy.corp:3128)");
        let basic = base64::engine::general_purpose::STANDARD.encode("al@ce:s3cr:t");
        assert_eq!(p.auth.as_ref().map(Secret::expose), Some(basic.as_str()));
        assert_eq!(Proxy::parse("proxy:8080").unwrap().to_string(), "proxy:8080");
        assert_eq!(Proxy::parse("HTTP://proxy").unwrap().to_string(), "proxy:1080");
        assert_eq!(Proxy::parse("http://[::1]:3128").unwrap().to_string(), "[::1]:3128");
        for bad in [
            "https://u:hunter2@p:1",
            "socks5://u:hunter2@p:1",
            "http://u:hunter2@p:x",
            "http://u:hunter2@/",
            "http://u:hunter2@p:1/path",
            "http://u:hunter2@p:0",
        ] {
            let e = Proxy::parse(bad).unwrap_err().to_string();
            assert!(!e.contains("hunter2"), "{bad}: {e}");
        }
    }

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned())
    }

    #[test]
    fn the_flag_beats_the_environment_which_beats_the_profile() {
        let vars = &[("HTTPS_PROXY", "http://e:1"), ("http_proxy", "http://p:2"), ("NO_PROXY", "direct.example")];
        let from_env = Proxies::resolve(None, Some("http://prof:3"), env(vars)).unwrap();
        assert_eq!(from_env.for_relay(true, "relay.example").unwrap().to_string(), "e:1");
        assert_eq!(from_env.for_relay(false, "relay.example").unwrap().to_string(), "p:2");
        assert_eq!(from_env.for_relay(true, "direct.example"), None);
        let flag = Proxies::resolve(Some("http://f:4"), Some("http://prof:3"), env(vars)).unwrap();
        assert_eq!(flag.for_relay(false, "relay.example").unwrap().to_string(), "f:4");
        assert_eq!(flag.for_relay(false, "x.direct.example"), None, "NO_PROXY applies to --proxy too");
        assert_eq!(Proxies::resolve(Some("none"), None, env(vars)).unwrap(), Proxies::none());
        let profile = Proxies::resolve(None, Some("http://prof:3"), env(&[])).unwrap();
        assert_eq!(profile.for_relay(true, "r").unwrap().to_string(), "prof:3");
        let lower_first =
            Proxies::resolve(None, None, env(&[("HTTPS_PROXY", "http://u:1"), ("https_proxy", "http://l:1")]));
        assert_eq!(lower_first.unwrap().for_relay(true, "r").unwrap().to_string(), "l:1");
        let all = Proxies::resolve(None, None, env(&[("ALL_PROXY", "http://a:1"), ("https_proxy", "")])).unwrap();
        assert_eq!(all.for_relay(true, "r").unwrap().to_string(), "a:1");
        assert_eq!(all.for_relay(false, "r").unwrap().to_string(), "a:1");
        let e = Proxies::resolve(None, None, env(&[("HTTPS_PROXY", "socks5://u:pw@h:1")])).unwrap_err();
        assert!(e.to_string().starts_with("HTTPS_PROXY: ") && !e.to_string().contains("pw"), "{e}");
    }

    /// A fake proxy on loopback: hands each request head it reads to `seen`, then writes
    /// `answer` (and, with `endless`, header lines for ever).
    async fn fake_proxy(answer: &'static [u8], endless: bool) -> (Proxy, tokio::sync::oneshot::Receiver<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, seen) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                let mut byte = [0u8; 1];
                if tcp.read(&mut byte).await.unwrap_or(0) == 0 {
                    return;
                }
                head.push(byte[0]);
            }
            let _ = tx.send(String::from_utf8_lossy(&head).into_owned());
            let _ = tcp.write_all(answer).await;
            while endless && tcp.write_all(b"X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n").await.is_ok() {}
            let mut rest = Vec::new();
            let _ = tcp.read_to_end(&mut rest).await;
        });
        (Proxy::parse(&format!("http://alice:pw@{addr}")).unwrap(), seen)
    }

    #[tokio::test]
    async fn connect_sends_host_and_credentials_and_leaves_the_relay_bytes_alone() {
        let (proxy, seen) = fake_proxy(b"HTTP/1.1 200 Connection established\r\n\r\nrelay-bytes", false).await;
        let mut tcp = connect(&proxy, "relay.example", 443).await.unwrap();
        let basic = base64::engine::general_purpose::STANDARD.encode("alice:pw");
        assert_eq!(
            seen.await.unwrap(),
            format!(
                "CONNECT relay.example:443 HTTP/1.1\r\nHost: relay.example:443\r\nProxy-Authorization: Basic {basic}\r\n\r\n"
            )
        );
        let mut first = [0u8; 11];
        tcp.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"relay-bytes", "nothing after the proxy's head is swallowed");
    }

    #[tokio::test]
    async fn a_proxy_answer_head_over_the_limit_is_cut_off() {
        let (proxy, _seen) = fake_proxy(b"HTTP/1.1 200 OK\r\n", true).await;
        let e = connect(&proxy, "relay.example", 443).await.unwrap_err().0;
        assert!(e.contains(&format!("head over {MAX_PROXY_RESPONSE_HEAD} bytes")) && !e.contains("pw"), "{e}");
        let (proxy, _seen) = fake_proxy(b"HTTP/1.1 502 Bad Gateway\r\n\r\n", false).await;
        let e = connect(&proxy, "relay.example", 443).await.unwrap_err().0;
        assert!(
            e.starts_with(&format!(
                "the proxy at {proxy} rejected the tunnel to the relay at relay.example:443 (502 Bad Gateway)"
            )),
            "{e}"
        );
    }

    #[test]
    fn no_proxy_is_read_as_curl_reads_it() {
        let list = "example.com, .corp.net,10.0.0.0/8 ::1 fd00::/8,host.with:8080";
        for direct in [
            "example.com",
            "www.EXAMPLE.com",
            "example.com.",
            "a.corp.net",
            "corp.net",
            "10.1.2.3",
            "::1",
            "[::1]",
            "fd12::5",
        ] {
            assert!(no_proxy_matches(list, direct), "{direct}");
        }
        for proxied in ["notexample.com", "example.com.evil", "11.0.0.1", "::2", "host.with", "relay"] {
            assert!(!no_proxy_matches(list, proxied), "{proxied}");
        }
        assert!(no_proxy_matches("*", "anything"));
        assert!(!no_proxy_matches("*.example.com", "www.example.com"), "only a lone * is a wildcard");
        assert!(no_proxy_matches("127.0.0.1", "127.0.0.1"));
        assert!(no_proxy_matches("0.0.0.0/0", "192.0.2.1"));
        assert!(!no_proxy_matches("10.0.0.0/33", "10.0.0.1"));
        assert!(!no_proxy_matches("", "x"));
    }
}
