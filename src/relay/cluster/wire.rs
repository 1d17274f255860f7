//! What nodes of a cluster write to Redis and say to each other through it
//! (docs/protocol.md 11): key and channel names, listener entries, node messages, the
//! Lua scripts, and the checks everything read back passes. Pure: no connection here.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::encoding::encode_component;
use crate::protocol::{self, Action, RelayMessage, name_key};

/// How long a listener's (or a node's) entry lives unless refreshed.
pub const ENTRY_TTL: Duration = Duration::from_secs(6);
/// How often a node refreshes its entries: a third of [`ENTRY_TTL`], so that two missed
/// refreshes in a row do not yet drop a live node.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(2);
/// Bytes of one node message read from Redis: an accept or request message within the
/// control channel limit, and its envelope. Larger ones are dropped and counted.
pub const MAX_NODE_MESSAGE: usize = protocol::MAX_CONTROL_MESSAGE + 1024;
/// Bytes of a node id: ASCII letters, digits, `-`, `_` and `.`.
pub const MAX_NODE_ID: usize = 64;
/// Listener entries of one HC read back at once: an HC has at most its listener limit of
/// them, unless someone else writes to Redis.
pub const MAX_ENTRIES_READ: usize = 256;
/// Path prefixes of a sender's address looked up in Redis when this node has no HC of
/// that name (longest first).
pub const MAX_RESOLVE_PREFIXES: usize = 8;

/// Every key and channel starts with this: one Redis database serves one cluster.
const PREFIX: &str = "hyco:";

/// The sorted set of an HC's listener entries, on every node.
pub fn hc_key(hc: &str) -> String {
    format!("{PREFIX}hc:{}", name_key(hc))
}

/// The sorted set of live nodes (member: node id).
pub fn nodes_key() -> String {
    format!("{PREFIX}nodes")
}

/// The key that says which run of a node holds its id (value: that run's random
/// instance token), so that two live nodes never share one.
pub fn owner_key(node: &str) -> String {
    format!("{PREFIX}owner:{node}")
}

/// A random token for one run of a node, the value of its [`owner_key`].
pub fn random_instance() -> String {
    rand::random::<[u8; 16]>().iter().map(|b| format!("{b:02x}")).collect()
}

/// `KEYS[1]`: a node's [`owner_key`]; `ARGV`: this run's instance token, TTL (ms). Takes
/// or refreshes the id if it is free or this run's: 1; held by another run: 0.
pub const CLAIM_SCRIPT: &str = "local v = redis.call('GET', KEYS[1])
if v == false or v == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0";

/// `KEYS[1]`: a node's [`owner_key`]; `ARGV[1]`: this run's instance token. Frees the
/// id if this run holds it.
pub const RELEASE_SCRIPT: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

/// The pub/sub channel a node reads its messages on.
pub fn node_channel(node: &str) -> String {
    format!("{PREFIX}node:{node}")
}

/// Whether `id` is a node id: 1 to [`MAX_NODE_ID`] bytes of `[A-Za-z0-9._-]`.
pub fn valid_node_id(id: &str) -> bool {
    (1..=MAX_NODE_ID).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// A fresh random node id.
pub fn random_node_id() -> String {
    rand::random::<[u8; 6]>().iter().map(|b| format!("{b:02x}")).collect()
}

/// One listener of an HC as Redis lists it: `NODE LISTENER-ID HC-NAME`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub node: String,
    pub listener: u64,
    /// The HC's spelling on the node that has the listener.
    pub hc: String,
}

impl Entry {
    pub fn encode(&self) -> String {
        format!("{} {} {}", self.node, self.listener, self.hc)
    }

    /// An entry read back for an HC; `None` if it is malformed or for another HC
    /// (`expect_hc`, compared without case), when given.
    pub fn parse(text: &str, expect_hc: Option<&str>) -> Option<Self> {
        let mut parts = text.splitn(3, ' ');
        let (node, listener, hc) = (parts.next()?, parts.next()?, parts.next()?);
        if !valid_node_id(node) || hc.is_empty() || hc.len() > super::super::config::MAX_HC_NAME_BYTES {
            return None;
        }
        if expect_hc.is_some_and(|want| name_key(want) != name_key(hc)) {
            return None;
        }
        let listener = listener.parse().ok().filter(|_| listener.bytes().all(|b| b.is_ascii_digit()))?;
        Some(Self { node: node.to_owned(), listener, hc: hc.to_owned() })
    }
}

/// What became of a message a node was asked to hand to one of its listeners.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Delivery {
    /// In the listener's control queue.
    Delivered,
    /// The listener's queue stayed full for as long as the asker would wait.
    Busy,
    /// No such listener (any more), or its node did not answer.
    Gone,
}

/// A message from one node to another on the second's channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
pub enum NodeMessage {
    /// Hand `message` (an accept, or an address-only request, with a rendezvous address
    /// on node `from`) to listener `listener` of `hc`, waiting up to `wait_ms` for room in
    /// its queue; answer with an [`NodeMessage::Outcome`] under `seq`.
    #[serde(rename_all = "camelCase")]
    Deliver { from: String, seq: u64, hc: String, listener: u64, wait_ms: u64, message: Box<RelayMessage> },
    /// The answer to the `seq`th [`NodeMessage::Deliver`] of the node it goes to.
    #[serde(rename_all = "camelCase")]
    Outcome { from: String, seq: u64, outcome: Delivery },
}

/// Why a node message read from Redis was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dropped {
    TooLarge,
    Malformed,
}

impl NodeMessage {
    /// Reads and checks a message from the channel: within [`MAX_NODE_MESSAGE`], valid
    /// JSON of a known shape, a valid sender node id; a delivery's message must be one a
    /// listener of `hc` can act on ([`check_rendezvous`]) and its wait within `max_wait`.
    pub fn parse(payload: &[u8], max_wait: Duration) -> Result<Self, Dropped> {
        if payload.len() > MAX_NODE_MESSAGE {
            return Err(Dropped::TooLarge);
        }
        let msg: Self = serde_json::from_slice(payload).map_err(|_| Dropped::Malformed)?;
        let ok = match &msg {
            Self::Outcome { from, .. } => valid_node_id(from),
            Self::Deliver { from, hc, wait_ms, message, .. } => {
                valid_node_id(from)
                    && u128::from(*wait_ms) <= max_wait.as_millis()
                    && !hc.is_empty()
                    && hc.len() <= super::super::config::MAX_HC_NAME_BYTES
                    && check_rendezvous(message, hc)
            }
        };
        if ok { Ok(msg) } else { Err(Dropped::Malformed) }
    }
}

/// Whether `message` is one a listener of `hc` may be given from another node: an accept
/// or an address-only request whose address is a `ws`/`wss` URL of `hc`'s path with the
/// matching action, within the size a listener's request head can carry.
pub fn check_rendezvous(message: &RelayMessage, hc: &str) -> bool {
    let (address, action) = match message {
        RelayMessage::Accept(a) => (a.address.as_str(), Action::Accept),
        RelayMessage::Request(r) if !r.is_complete() && r.body.is_none() => {
            (r.address.as_deref().unwrap_or_default(), Action::Request)
        }
        RelayMessage::Request(_) => return false,
    };
    if address.len() > protocol::MAX_HANDSHAKE_HEADERS {
        return false;
    }
    let Some((scheme, rest)) = address.split_once("://") else { return false };
    let Some((host, path)) = rest.split_once('/') else { return false };
    let path_hc: String = hc.split('/').map(encode_component).collect::<Vec<_>>().join("/");
    let Some(after) = path.strip_prefix("$hc/").and_then(|p| p.get(..path_hc.len()).map(|h| (h, &p[h.len()..]))) else {
        return false;
    };
    matches!(scheme, "ws" | "wss")
        && !host.is_empty()
        && !host.contains(['@', ' ', '?', '#'])
        && after.0.eq_ignore_ascii_case(&path_hc)
        && (after.1.starts_with('/') || after.1.starts_with('?'))
        && address.contains(&format!("{}={}&", protocol::PARAM_ACTION, action.as_str()))
}

/// Milliseconds of Redis's own clock, in each script: entries expire by one clock, not
/// by each node's.
const NOW_MS: &str =
    "local t = redis.call('TIME')\nlocal now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n";

/// `KEYS[1]`: an HC's set; `ARGV`: entry, TTL (ms), limit. Drops expired entries, then
/// adds (or refreshes) the entry unless the HC has `limit` others. The count after, or -1.
pub fn admit_script() -> String {
    format!(
        "{NOW_MS}redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return -1
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return redis.call('ZCARD', KEYS[1])"
    )
}

/// `KEYS[1]`: a set; `ARGV`: TTL (ms), then members. Refreshes (or adds back) each
/// member, drops expired ones; the count after.
pub fn refresh_script() -> String {
    format!(
        "{NOW_MS}for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[i])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return redis.call('ZCARD', KEYS[1])"
    )
}

/// `KEYS`: sets, in order; `ARGV[1]`: a limit. For the first set with live members:
/// its index (from 1) and up to `limit` of them; else nothing.
pub fn live_script() -> String {
    format!(
        "{NOW_MS}for i = 1, #KEYS do
  local m = redis.call('ZRANGEBYSCORE', KEYS[i], string.format('(%.0f', now), '+inf', 'LIMIT', 0, tonumber(ARGV[1]))
  if m[1] then return {{i, m}} end
end
return false"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Accept, HttpRequest};

    fn accept(address: &str) -> RelayMessage {
        RelayMessage::Accept(Accept {
            address: address.into(),
            id: "t".into(),
            connect_headers: Default::default(),
            remote_endpoint: None,
        })
    }

    #[test]
    fn entries_round_trip_and_reject_what_is_not_one() {
        let e = Entry { node: "n-1".into(), listener: 7, hc: "Team/My HC".into() };
        assert_eq!(Entry::parse(&e.encode(), Some("team/my hc")), Some(e.clone()));
        assert_eq!(Entry::parse(&e.encode(), Some("other")), None);
        for bad in ["n 1", "n x hc", "n -1 hc", "n +1 hc", "bad:node 1 hc", "n 1 ", ""] {
            assert_eq!(Entry::parse(bad, None), None, "{bad:?}");
        }
        assert!(!valid_node_id(&"x".repeat(MAX_NODE_ID + 1)) && valid_node_id(&"x".repeat(MAX_NODE_ID)));
        assert!(valid_node_id(&random_node_id()));
    }

    #[test]
    fn node_messages_are_bounded_and_checked() {
        let hour = Duration::from_secs(3600);
        let good = NodeMessage::Deliver {
            from: "b".into(),
            seq: 1,
            hc: "web/api".into(),
            listener: 3,
            wait_ms: 10,
            message: Box::new(accept("ws://b:1/$hc/web/api?sb-hc-action=accept&sb-hc-id=t_s")),
        };
        let json = serde_json::to_vec(&good).unwrap();
        assert_eq!(NodeMessage::parse(&json, hour), Ok(good));
        assert_eq!(NodeMessage::parse(&json, Duration::from_millis(5)), Err(Dropped::Malformed), "wait too long");
        assert_eq!(NodeMessage::parse(&vec![b' '; MAX_NODE_MESSAGE + 1], hour), Err(Dropped::TooLarge));
        assert_eq!(NodeMessage::parse(b"{\"type\":\"outcome\"}", hour), Err(Dropped::Malformed));
        let extra = br#"{"type":"outcome","from":"a","seq":1,"outcome":"gone","x":1}"#;
        assert_eq!(NodeMessage::parse(extra, hour), Err(Dropped::Malformed), "unknown fields");
        let outcome = br#"{"type":"outcome","from":"a","seq":1,"outcome":"busy"}"#;
        assert!(matches!(NodeMessage::parse(outcome, hour), Ok(NodeMessage::Outcome { outcome: Delivery::Busy, .. })));
    }

    #[test]
    fn only_rendezvous_of_the_hc_pass() {
        let ok = "wss://b.example:443/$hc/Web/api/sub?x=1&sb-hc-action=accept&sb-hc-id=t_s";
        assert!(check_rendezvous(&accept(ok), "web/api"));
        for bad in [
            "http://b/$hc/web/api?sb-hc-action=accept&sb-hc-id=t_s",
            "ws://b/$hc/web/apix?sb-hc-action=accept&sb-hc-id=t_s",
            "ws://b/$hc/other?sb-hc-action=accept&sb-hc-id=t_s",
            "ws://u@b/$hc/web/api?sb-hc-action=accept&sb-hc-id=t_s",
            "ws:///$hc/web/api?sb-hc-action=accept&sb-hc-id=t_s",
            "ws://b/$hc/web/api?sb-hc-action=request&sb-hc-id=t_s",
        ] {
            assert!(!check_rendezvous(&accept(bad), "web/api"), "{bad}");
        }
        let request = |address: &str, method: Option<&str>| {
            RelayMessage::Request(HttpRequest {
                address: Some(address.into()),
                method: method.map(Into::into),
                ..HttpRequest::default()
            })
        };
        let addr = "ws://b/$hc/web?sb-hc-action=request&sb-hc-id=t_s";
        assert!(check_rendezvous(&request(addr, None), "web"));
        assert!(!check_rendezvous(&request(addr, Some("GET")), "web"), "only address-only requests");
    }
}
