//! Who may do what on the relay: authorization rules and the token check of
//! docs/protocol.md 3 ("Verifying"). Pure: the caller passes the clock. Which rules apply
//! to a request, and whether it needs a token at all, the registry decides.

use serde::{Deserialize, Serialize};

use super::metrics::Reason;
use super::rejection::Rejection;
use crate::sas;
use crate::secret::Secret;

/// One right a rule can grant. Manage implies the other two.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Right {
    Listen,
    Send,
    Manage,
}

/// A named key and the rights it grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub key: Secret,
    pub rights: Vec<Right>,
}

impl Rule {
    pub fn grants(&self, need: Right) -> bool {
        self.rights.iter().any(|r| *r == need || *r == Right::Manage)
    }
}

fn unauthorized(text: &'static str) -> Rejection {
    Rejection::new(401, Reason::Unauthorized, text)
}

/// What a token that passed [`check`] grants, beyond its right.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The name of the rule that signed the token.
    pub rule: String,
    /// The token's expiry (Unix seconds).
    pub expiry: u64,
    /// Whether its audience names the checked path itself or the whole namespace, rather
    /// than a shorter path above it: what creating an HC takes (docs/protocol.md 5.1).
    pub exact: bool,
}

/// Checks `token` for `need` on the resource at `hc_path` (an HC name, plus a sender's
/// path suffix), against the HC's own rules and then the namespace's. The token's host is
/// not compared (the same relay is reached by many names); its path must be a prefix of
/// `hc_path`.
pub fn check(
    token: &str,
    hc_path: &str,
    need: Right,
    hc_rules: &[Rule],
    namespace_rules: &[Rule],
    now: u64,
    skew_secs: u64,
) -> Result<Grant, Rejection> {
    let token = sas::parse(token).map_err(|_| unauthorized("Malformed token"))?;
    let rule = hc_rules
        .iter()
        .chain(namespace_rules)
        .find(|r| r.name == token.key_name())
        .ok_or_else(|| unauthorized("Unknown key name"))?;
    if !token.verify_signature(&rule.key) {
        return Err(unauthorized("Invalid signature"));
    }
    if token.is_expired(now, skew_secs) {
        return Err(unauthorized("Token expired"));
    }
    if !sas::audience_covers(token.resource(), hc_path, None) {
        return Err(unauthorized("Token audience does not cover this hybrid connection"));
    }
    if !rule.grants(need) {
        return Err(Rejection::new(403, Reason::Forbidden, "Token lacks the right for this action"));
    }
    // A one-segment path's parent is the namespace: any audience covering it is exact.
    let parent = hc_path.rsplit_once('/').map_or("", |(parent, _)| parent);
    let exact =
        sas::audience_covers(token.resource(), "", None) || !sas::audience_covers(token.resource(), parent, None);
    Ok(Grant { rule: rule.name.clone(), expiry: token.expiry(), exact })
}

/// The token a request carries: the `ServiceBusAuthorization` header first, then the
/// `sb-hc-token` query parameter.
pub fn token_of<'a>(header: Option<&'a str>, query: Option<&'a str>) -> Option<&'a str> {
    header.or(query).map(str::trim).filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg=";

    fn rule(name: &str, rights: &[Right]) -> Rule {
        Rule { name: name.into(), key: Secret::new(KEY), rights: rights.to_vec() }
    }

    fn token(sr: &str, name: &str, se: u64) -> String {
        sas::mint(sr, name, &Secret::new(KEY), se).expose().to_owned()
    }

    #[test]
    fn rights_audience_expiry_and_names() {
        let ns = [rule("root", &[Right::Manage]), rule("sendonly", &[Right::Send])];
        let now = 1_000_000;
        let t = token("http://relay/hyco/", "root", now + 60);
        assert_eq!(
            check(&t, "hyco", Right::Listen, &[], &ns, now, 0),
            Ok(Grant { rule: "root".into(), expiry: now + 60, exact: true })
        );
        let t = token("sb://relay", "root", now + 60);
        assert!(check(&t, "team/ssh", Right::Send, &[], &ns, now, 0).is_ok(), "namespace-wide");
        let t = token("http://relay/other", "root", now + 60);
        assert_eq!(check(&t, "hyco", Right::Send, &[], &ns, now, 0).unwrap_err().status(), 401);
        let t = token("http://relay/hyco", "sendonly", now + 60);
        assert_eq!(check(&t, "hyco", Right::Listen, &[], &ns, now, 0).unwrap_err().status(), 403);
        let t = token("http://relay/hyco", "root", now - 10);
        assert_eq!(check(&t, "hyco", Right::Send, &[], &ns, now, 0).unwrap_err().status(), 401);
        assert!(check(&t, "hyco", Right::Send, &[], &ns, now, 60).is_ok(), "within skew");
        let t = token("http://relay/hyco", "nobody", now + 60);
        assert_eq!(check(&t, "hyco", Right::Send, &[], &ns, now, 0).unwrap_err().status(), 401);
        let hc = [Rule { name: "hc".into(), key: Secret::new("other"), rights: vec![Right::Send] }];
        let t = sas::mint("http://relay/hyco", "hc", &Secret::new("other"), now + 60);
        assert!(check(t.expose(), "hyco", Right::Send, &hc, &ns, now, 0).is_ok(), "HC-level rule");
        let forged = sas::mint("http://relay/hyco", "root", &Secret::new("guess"), now + 60);
        assert_eq!(check(forged.expose(), "hyco", Right::Send, &[], &ns, now, 0).unwrap_err().status(), 401);
        assert_eq!(check("garbage", "hyco", Right::Send, &[], &ns, now, 0).unwrap_err().status(), 401);
    }

    #[test]
    fn only_an_audience_naming_the_path_or_the_namespace_is_exact() {
        let ns = [rule("root", &[Right::Manage])];
        let now = 1_000_000;
        let exact = |sr: &str, path: &str| check(&token(sr, "root", now + 60), path, Right::Listen, &[], &ns, now, 0);
        for (sr, path, is_exact) in [
            ("http://relay/box/", "box", true),
            ("sb://relay", "box/web", true),
            ("http://relay/", "a/b/c", true),
            ("http://relay/box/web", "box/web", true),
            ("http://relay/box", "box/web", false),
            ("http://relay/a/b", "a/b/c", false),
            ("http://relay/a", "a/b/c", false),
        ] {
            assert_eq!(exact(sr, path).map(|g| g.exact), Ok(is_exact), "{sr} for {path}");
        }
    }
}
