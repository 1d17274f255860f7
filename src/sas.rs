//! Shared Access Signature tokens (docs/protocol.md 3): mint, parse, verify, audience.
//!
//! Pure: no I/O and no clock; callers pass `now` as Unix seconds. Looking up the rule
//! named by `skn` and checking its rights (steps 1 and 5 of "Verifying") are the relay's
//! job, not this module's.

use std::fmt;

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::encoding::{decode_component, encode_component};
use crate::secret::Secret;

/// The token prefix, matched case-insensitively when parsing.
pub const PREFIX: &str = "SharedAccessSignature ";

/// Longest token text [`parse`] accepts, in bytes. Real tokens are a few hundred bytes.
pub const MAX_TOKEN_LEN: usize = 4096;

/// Lifetime the official clients give a token: 60 minutes.
pub const DEFAULT_TOKEN_TTL_SECS: u64 = 60 * 60;

/// URL schemes an `sr` may carry; all are treated alike.
const SR_SCHEMES: [&str; 5] = ["http", "https", "sb", "ws", "wss"];

/// One of the four token fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SasField {
    /// `sr`, the resource URI (audience).
    Sr,
    /// `sig`, the base64 HMAC.
    Sig,
    /// `se`, the expiry in Unix seconds.
    Se,
    /// `skn`, the authorization rule (key) name.
    Skn,
}

impl SasField {
    fn name(self) -> &'static str {
        match self {
            SasField::Sr => "sr",
            SasField::Sig => "sig",
            SasField::Se => "se",
            SasField::Skn => "skn",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        [SasField::Sr, SasField::Sig, SasField::Se, SasField::Skn]
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for SasField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a token could not be parsed. Messages never contain token text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SasError {
    /// The token is longer than [`MAX_TOKEN_LEN`].
    TooLong,
    /// The token does not start with `SharedAccessSignature `.
    MissingPrefix,
    /// A `&`-separated part has no `=`.
    MalformedField,
    /// A field name other than `sr`, `sig`, `se`, `skn`.
    UnknownField,
    /// A field appears more than once.
    DuplicateField(SasField),
    /// A required field is absent.
    MissingField(SasField),
    /// A field's value is empty or has a bad percent-escape.
    InvalidField(SasField),
    /// `se` is not an unsigned integer that fits in 64 bits.
    BadExpiry,
}

impl fmt::Display for SasError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SasError::TooLong => write!(f, "SAS token longer than {MAX_TOKEN_LEN} bytes"),
            SasError::MissingPrefix => write!(f, "SAS token does not start with {PREFIX:?}"),
            SasError::MalformedField => f.write_str("SAS token has a field without '='"),
            SasError::UnknownField => f.write_str("SAS token has an unknown field"),
            SasError::DuplicateField(k) => write!(f, "SAS token has field '{k}' twice"),
            SasError::MissingField(k) => write!(f, "SAS token lacks field '{k}'"),
            SasError::InvalidField(k) => {
                write!(f, "SAS token field '{k}' is empty or badly encoded")
            }
            SasError::BadExpiry => f.write_str("SAS token expiry 'se' is not a valid Unix time"),
        }
    }
}

impl std::error::Error for SasError {}

/// base64(HMAC-SHA256(key as UTF-8, `{encoded_sr}\n{se}`)), where `se` is the exact text.
fn sign(key: &str, encoded_sr: &str, se: &str) -> String {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.as_bytes()).expect("HMAC accepts any key length");
    mac.update(encoded_sr.as_bytes());
    mac.update(b"\n");
    mac.update(se.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The `sig` value (base64, before its own percent-encoding): HMAC-SHA256 keyed with the
/// UTF-8 bytes of `key` as written, over `encoded_sr + "\n" + expiry`.
pub fn signature(key: &str, encoded_sr: &str, expiry: u64) -> String {
    sign(key, encoded_sr, &expiry.to_string())
}

/// Mints the token text
/// `SharedAccessSignature sr={enc(uri)}&sig={enc(sig)}&se={expiry}&skn={key_name}`.
///
/// `key_name` is percent-encoded too; Azure rule names (letters, digits, `-_.`) are left
/// unchanged by that, and [`parse`] decodes it.
pub fn mint(resource_uri: &str, key_name: &str, key: &Secret, expiry: u64) -> Secret {
    let sr = encode_component(resource_uri);
    let sig = signature(key.expose(), &sr, expiry);
    Secret::new(format!(
        "{PREFIX}sr={sr}&sig={}&se={expiry}&skn={}",
        encode_component(&sig),
        encode_component(key_name),
    ))
}

/// The rule (and key) name a hyco relay's throwaway default creates, as Azure names a namespace's first rule.
pub const DEFAULT_KEY_NAME: &str = "RootManageSharedAccessKey";
/// The throwaway default's Send-only rule, its key derived from the root key.
pub const SEND_KEY_NAME: &str = "hyco-send";
/// The throwaway default's Listen-only rule, its key derived from the root key.
pub const LISTEN_KEY_NAME: &str = "hyco-listen";

/// A key derived from `root` for the rule `rule_name`: base64 of HMAC-SHA256 keyed with
/// the root key's text over the rule name. `hyco serve`'s throwaway relay declares such
/// rules (Send only, Listen only), so that whoever holds the root key can mint tokens
/// that carry fewer rights (`hyco token --rights`).
pub fn derive_key(root: &Secret, rule_name: &str) -> Secret {
    let mut mac = Hmac::<Sha256>::new_from_slice(root.expose().as_bytes()).expect("HMAC takes any key length");
    mac.update(rule_name.as_bytes());
    Secret::new(base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}

/// A parsed SAS token. `Debug` masks the signature.
#[derive(Clone)]
pub struct SasToken {
    raw_sr: String,
    resource: String,
    sig: String,
    raw_se: String,
    expiry: u64,
    key_name: String,
}

impl fmt::Debug for SasToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SasToken")
            .field("resource", &self.resource)
            .field("key_name", &self.key_name)
            .field("expiry", &self.expiry)
            .field("sig", &"***")
            .finish()
    }
}

/// Parses token text. Field order is free, names and the prefix are case-insensitive;
/// each of `sr`, `sig`, `se`, `skn` must appear exactly once. Empty `&` parts are ignored.
pub fn parse(token: &str) -> Result<SasToken, SasError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(SasError::TooLong);
    }
    let body = match token.get(..PREFIX.len()) {
        Some(head) if head.eq_ignore_ascii_case(PREFIX) => &token[PREFIX.len()..],
        _ => return Err(SasError::MissingPrefix),
    };

    let mut values: [Option<&str>; 4] = [None; 4];
    for part in body.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = part.split_once('=').ok_or(SasError::MalformedField)?;
        let field = SasField::from_name(name).ok_or(SasError::UnknownField)?;
        let slot = &mut values[field as usize];
        if slot.is_some() {
            return Err(SasError::DuplicateField(field));
        }
        *slot = Some(value);
    }
    let get = |field: SasField| -> Result<&str, SasError> {
        let value = values[field as usize].ok_or(SasError::MissingField(field))?;
        if value.is_empty() {
            return Err(SasError::InvalidField(field));
        }
        Ok(value)
    };
    let decode = |field: SasField| -> Result<String, SasError> {
        decode_component(get(field)?, false).map_err(|_| SasError::InvalidField(field))
    };

    let raw_sr = get(SasField::Sr)?.to_owned();
    let resource = decode(SasField::Sr)?;
    let sig = decode(SasField::Sig)?;
    let key_name = decode(SasField::Skn)?;
    let raw_se = get(SasField::Se)?;
    // `u64::from_str` would also take a leading `+`; the wire form is digits only.
    if !raw_se.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SasError::BadExpiry);
    }
    let expiry = raw_se.parse::<u64>().map_err(|_| SasError::BadExpiry)?;

    Ok(SasToken { raw_sr, resource, sig, raw_se: raw_se.to_owned(), expiry, key_name })
}

impl SasToken {
    /// The decoded resource URI (`sr`), the token's audience.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The `sr` text exactly as it appeared in the token (still percent-encoded).
    pub fn raw_resource(&self) -> &str {
        &self.raw_sr
    }

    /// The authorization rule name (`skn`), decoded.
    pub fn key_name(&self) -> &str {
        &self.key_name
    }

    /// Expiry (`se`), Unix seconds.
    pub fn expiry(&self) -> u64 {
        self.expiry
    }

    /// Recomputes the HMAC over the raw `sr` and `se` text and compares it with `sig` in
    /// constant time.
    pub fn verify_signature(&self, key: &Secret) -> bool {
        let expected = sign(key.expose(), &self.raw_sr, &self.raw_se);
        expected.as_bytes().ct_eq(self.sig.as_bytes()).into()
    }

    /// True when the token expired more than `skew_secs` before `now`: `se + skew < now`.
    pub fn is_expired(&self, now: u64, skew_secs: u64) -> bool {
        self.expiry.saturating_add(skew_secs) < now
    }
}

/// Splits an authority `host[:port]`, `[v6][:port]` or bare `v6` into its host, without
/// brackets.
/// `None` when the host is empty, userinfo is present or the port is not numeric.
fn authority_host(authority: &str) -> Option<&str> {
    if authority.contains('@') {
        return None;
    }
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':')?)),
        }
    } else if authority.matches(':').count() > 1 {
        // A bare IPv6 address, as a caller may pass for `host`.
        (authority, None)
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() || !port.is_none_or(|p| p.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    Some(host)
}

/// Rule 4 of "Verifying": does the decoded `sr` cover hybrid connection `hc_path`
/// (e.g. `hyco` or `team/ssh`, without `$hc/`)?
///
/// `sr` must be `scheme://host[:port][/path]` with scheme http, https, sb, ws or wss. Its
/// non-empty path segments, each percent-decoded once, must be a prefix of `hc_path`'s
/// segments, compared without case ([`crate::protocol::name_key`]); scheme, port and a
/// trailing slash are ignored, so an `sr` without a path
/// covers every HC. When `host` is given (a bare host, or `host:port`), it must equal
/// sr's host ignoring case; `None` skips the host check (`hyco serve`).
pub fn audience_covers(sr: &str, hc_path: &str, host: Option<&str>) -> bool {
    let Some((scheme, rest)) = sr.split_once("://") else {
        return false;
    };
    if !SR_SCHEMES.iter().any(|s| s.eq_ignore_ascii_case(scheme)) {
        return false;
    }
    if rest.contains(['?', '#']) {
        return false;
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let Some(sr_host) = authority_host(authority) else {
        return false;
    };
    if let Some(expected) = host {
        match authority_host(expected) {
            Some(h) if h.eq_ignore_ascii_case(sr_host) => {}
            _ => return false,
        }
    }

    let mut hc_segments = hc_path.split('/').filter(|s| !s.is_empty());
    for raw in path.split('/').filter(|s| !s.is_empty()) {
        let Ok(segment) = decode_component(raw, false) else {
            return false;
        };
        // Names compare without case, as Azure's do (crate::protocol::name_key).
        if hc_segments.next().map(crate::protocol::name_key) != Some(crate::protocol::name_key(&segment)) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_keys_differ_by_rule_and_root() {
        let root = Secret::new("root-key");
        let send = derive_key(&root, "hyco-send");
        assert_eq!(send, derive_key(&root, "hyco-send"), "deterministic");
        assert_ne!(send, derive_key(&root, "hyco-listen"));
        assert_ne!(send, derive_key(&Secret::new("other"), "hyco-send"));
        assert_eq!(send.expose().len(), 44, "32 bytes in base64, an Azure key's shape");
    }

    const KEY: &str = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg=";
    const SKN: &str = "RootManageSharedAccessKey";
    const SE: u64 = 1_700_000_000;
    const HOST: &str = "contoso.servicebus.windows.net";

    /// docs/protocol.md 3 test vectors: (sr before encoding, sig).
    const VECTORS: [(&str, &str); 3] = [
        ("http://contoso.servicebus.windows.net/hyco/", "3o5XBbdcRrcduxDvR9yKIJ1Bh1TNLPhkNfq0TF6n+JM="),
        ("http://contoso.servicebus.windows.net:443/hyco", "Asjv0pAzPh45AWRFNLCeK8XUX4OIUTBadEC67Ep7/wQ="),
        ("sb://contoso.servicebus.windows.net/hyco", "RUNwUhjNqXTC5obLsNTbOhsSsduddra31L3+CkqBaUg="),
    ];

    const ROW1_TOKEN: &str = "SharedAccessSignature sr=http%3A%2F%2Fcontoso.servicebus.windows.net%2Fhyco%2F&sig=3o5XBbdcRrcduxDvR9yKIJ1Bh1TNLPhkNfq0TF6n%2BJM%3D&se=1700000000&skn=RootManageSharedAccessKey";

    fn key() -> Secret {
        Secret::new(KEY)
    }

    #[test]
    fn signature_vectors() {
        for (sr, sig) in VECTORS {
            assert_eq!(signature(KEY, &encode_component(sr), SE), sig, "sr {sr}");
        }
    }

    #[test]
    fn mint_row1_exact() {
        let token = mint(VECTORS[0].0, SKN, &key(), SE);
        assert_eq!(token.expose(), ROW1_TOKEN);
    }

    #[test]
    fn mint_parse_verify_roundtrip_all_vectors() {
        for (sr, sig) in VECTORS {
            let token = mint(sr, SKN, &key(), SE);
            let parsed = parse(token.expose()).unwrap();
            assert_eq!(parsed.resource(), sr);
            assert_eq!(parsed.raw_resource(), encode_component(sr));
            assert_eq!(parsed.key_name(), SKN);
            assert_eq!(parsed.expiry(), SE);
            assert_eq!(parsed.sig, sig);
            assert!(parsed.verify_signature(&key()));
            assert!(audience_covers(parsed.resource(), "hyco", Some(HOST)));
        }
    }

    #[test]
    fn parse_row1() {
        let t = parse(ROW1_TOKEN).unwrap();
        assert_eq!(t.resource(), "http://contoso.servicebus.windows.net/hyco/");
        assert_eq!(t.key_name(), SKN);
        assert_eq!(t.expiry(), SE);
        // `%2B` decodes to `+`, which must survive (no form decoding).
        assert_eq!(t.sig, "3o5XBbdcRrcduxDvR9yKIJ1Bh1TNLPhkNfq0TF6n+JM=");
        assert!(t.verify_signature(&key()));
    }

    #[test]
    fn parse_any_order_and_case() {
        let t = parse(
            "sharedaccesssignature SKN=RootManageSharedAccessKey&Se=1700000000&SIG=3o5XBbdcRrcduxDvR9yKIJ1Bh1TNLPhkNfq0TF6n%2BJM%3D&sR=http%3A%2F%2Fcontoso.servicebus.windows.net%2Fhyco%2F",
        )
        .unwrap();
        assert_eq!(t.resource(), VECTORS[0].0);
        assert_eq!(t.key_name(), SKN);
        assert!(t.verify_signature(&key()));
    }

    #[test]
    fn parse_ignores_empty_parts() {
        let token = format!("{ROW1_TOKEN}&");
        assert!(parse(&token).unwrap().verify_signature(&key()));
    }

    #[test]
    fn verify_uses_raw_sr_not_reencoded() {
        // Lowercase escapes: decoding and re-encoding would give uppercase and a
        // different string to sign. The raw text is what the signer signed.
        let raw_sr = "http%3a%2f%2fcontoso.servicebus.windows.net%2fhyco%2f";
        let sig = signature(KEY, raw_sr, SE);
        let token = format!("SharedAccessSignature sr={raw_sr}&sig={}&se={SE}&skn={SKN}", encode_component(&sig));
        let t = parse(&token).unwrap();
        assert_eq!(t.resource(), VECTORS[0].0);
        assert_eq!(t.raw_resource(), raw_sr);
        assert!(t.verify_signature(&key()));
        assert_ne!(sig, VECTORS[0].1);
    }

    #[test]
    fn verify_fails_on_wrong_key_or_tampering() {
        let t = parse(ROW1_TOKEN).unwrap();
        assert!(!t.verify_signature(&Secret::new("wrong")));
        assert!(!t.verify_signature(&Secret::new(&KEY[..KEY.len() - 1])));
        assert!(!t.verify_signature(&Secret::new(KEY.to_lowercase())));
        let tampered = ROW1_TOKEN.replace("se=1700000000", "se=1700000001");
        assert!(!parse(&tampered).unwrap().verify_signature(&key()));
        let tampered = ROW1_TOKEN.replace("%2Fhyco%2F", "%2Fhycp%2F");
        assert!(!parse(&tampered).unwrap().verify_signature(&key()));
        // A `+` that became a space (form decoding upstream) does not verify.
        let spaced = ROW1_TOKEN.replace("%2BJM", " JM");
        assert!(!parse(&spaced).unwrap().verify_signature(&key()));
    }

    #[test]
    fn sig_plus_is_kept_literally() {
        // A token whose sig `+` was not percent-encoded still verifies: no form decoding.
        let token = ROW1_TOKEN.replace("%2BJM", "+JM");
        let t = parse(&token).unwrap();
        assert_eq!(t.sig, VECTORS[0].1);
        assert!(t.verify_signature(&key()));
    }

    #[test]
    fn missing_prefix() {
        assert_eq!(parse(&ROW1_TOKEN["SharedAccessSignature ".len()..]).unwrap_err(), SasError::MissingPrefix);
        assert_eq!(parse("SharedAccessSignaturesr=x").unwrap_err(), SasError::MissingPrefix);
        assert_eq!(parse("").unwrap_err(), SasError::MissingPrefix);
        assert_eq!(parse("Bearer abc").unwrap_err(), SasError::MissingPrefix);
        // Multi-byte text near the prefix boundary must not panic.
        assert_eq!(parse("SharedAccessSignatur€ sr=x").unwrap_err(), SasError::MissingPrefix);
    }

    #[test]
    fn duplicate_missing_unknown_fields() {
        let dup = format!("{ROW1_TOKEN}&SKN=other");
        assert_eq!(parse(&dup).unwrap_err(), SasError::DuplicateField(SasField::Skn));
        let dup = format!("{ROW1_TOKEN}&se=1");
        assert_eq!(parse(&dup).unwrap_err(), SasError::DuplicateField(SasField::Se));
        let extra = format!("{ROW1_TOKEN}&foo=bar");
        assert_eq!(parse(&extra).unwrap_err(), SasError::UnknownField);
        let no_eq = format!("{ROW1_TOKEN}&skn");
        assert_eq!(parse(&no_eq).unwrap_err(), SasError::MalformedField);

        let missing = "SharedAccessSignature sr=a&sig=b&se=1";
        assert_eq!(parse(missing).unwrap_err(), SasError::MissingField(SasField::Skn));
        let missing = "SharedAccessSignature sr=a&se=1&skn=k";
        assert_eq!(parse(missing).unwrap_err(), SasError::MissingField(SasField::Sig));
        let missing = "SharedAccessSignature sig=a&se=1&skn=k";
        assert_eq!(parse(missing).unwrap_err(), SasError::MissingField(SasField::Sr));
        let missing = "SharedAccessSignature sr=a&sig=b&skn=k";
        assert_eq!(parse(missing).unwrap_err(), SasError::MissingField(SasField::Se));
        assert_eq!(parse("SharedAccessSignature ").unwrap_err(), SasError::MissingField(SasField::Sr));
    }

    #[test]
    fn empty_or_badly_encoded_values() {
        assert_eq!(
            parse("SharedAccessSignature sr=&sig=b&se=1&skn=k").unwrap_err(),
            SasError::InvalidField(SasField::Sr)
        );
        assert_eq!(
            parse("SharedAccessSignature sr=a&sig=%zz&se=1&skn=k").unwrap_err(),
            SasError::InvalidField(SasField::Sig)
        );
        assert_eq!(
            parse("SharedAccessSignature sr=a%&sig=b&se=1&skn=k").unwrap_err(),
            SasError::InvalidField(SasField::Sr)
        );
        assert_eq!(
            parse("SharedAccessSignature sr=a&sig=b&se=1&skn=").unwrap_err(),
            SasError::InvalidField(SasField::Skn)
        );
    }

    #[test]
    fn expiry_parsing() {
        let with_se = |se: &str| format!("SharedAccessSignature sr=a&sig=b&se={se}&skn=k");
        assert_eq!(parse(&with_se("18446744073709551615")).unwrap().expiry(), u64::MAX);
        for bad in ["18446744073709551616", "99999999999999999999999", "-1", "+1", "1.5", "1e9", " 1", "abc"] {
            assert_eq!(parse(&with_se(bad)).unwrap_err(), SasError::BadExpiry, "se={bad}");
        }
        assert_eq!(parse(&with_se("")).unwrap_err(), SasError::InvalidField(SasField::Se));
    }

    #[test]
    fn too_long() {
        let long = format!("{ROW1_TOKEN}&{}", "x".repeat(MAX_TOKEN_LEN));
        assert_eq!(parse(&long).unwrap_err(), SasError::TooLong);
        let at_limit = format!("{ROW1_TOKEN}{}", "&".repeat(MAX_TOKEN_LEN - ROW1_TOKEN.len()));
        assert_eq!(at_limit.len(), MAX_TOKEN_LEN);
        assert!(parse(&at_limit).is_ok());
        let over = format!("{at_limit}&");
        assert_eq!(parse(&over).unwrap_err(), SasError::TooLong);
    }

    #[test]
    fn debug_masks_signature() {
        let t = parse(ROW1_TOKEN).unwrap();
        let out = format!("{t:?}");
        assert!(out.contains(SKN));
        assert!(!out.contains("3o5XBbdc"));
        assert!(!out.contains("3o5XBbdcRrcduxDvR9yKIJ1Bh1TNLPhkNfq0TF6n"));
        let minted = mint(VECTORS[0].0, SKN, &key(), SE);
        assert_eq!(format!("{minted:?}"), "***");
    }

    #[test]
    fn errors_do_not_echo_token_text() {
        let secretish = "SharedAccessSignature sr=a&sig=TOPSECRET&se=1&TOPSECRET2=x";
        let err = parse(secretish).unwrap_err();
        assert_eq!(err, SasError::UnknownField);
        assert!(!err.to_string().contains("TOPSECRET"));
        let _: &dyn std::error::Error = &err;
        for e in [
            SasError::TooLong,
            SasError::MissingPrefix,
            SasError::MalformedField,
            SasError::DuplicateField(SasField::Sig),
            SasError::MissingField(SasField::Skn),
            SasError::InvalidField(SasField::Sr),
            SasError::BadExpiry,
        ] {
            assert!(!e.to_string().is_empty());
        }
        assert!(SasError::DuplicateField(SasField::Sig).to_string().contains("sig"));
    }

    #[test]
    fn skn_is_encoded_and_decoded() {
        let token = mint("sb://h/hyco", "odd name&x=y", &key(), SE);
        assert!(token.expose().ends_with("&skn=odd%20name%26x%3Dy"));
        let t = parse(token.expose()).unwrap();
        assert_eq!(t.key_name(), "odd name&x=y");
        assert!(t.verify_signature(&key()));
    }

    #[test]
    fn expiry_with_skew() {
        let t = parse(ROW1_TOKEN).unwrap();
        assert!(!t.is_expired(SE - 1, 0));
        assert!(!t.is_expired(SE, 0));
        assert!(t.is_expired(SE + 1, 0));
        assert!(!t.is_expired(SE + 300, 300));
        assert!(t.is_expired(SE + 301, 300));
        let far = parse("SharedAccessSignature sr=a&sig=b&se=18446744073709551615&skn=k").unwrap();
        assert!(!far.is_expired(u64::MAX, u64::MAX));
    }

    #[test]
    fn audience_three_client_styles_and_namespace_wide() {
        for sr in [
            "http://contoso.servicebus.windows.net/hyco/",
            "http://contoso.servicebus.windows.net:443/hyco",
            "sb://contoso.servicebus.windows.net/hyco",
            "sb://contoso.servicebus.windows.net",
            "sb://contoso.servicebus.windows.net/",
        ] {
            assert!(audience_covers(sr, "hyco", Some(HOST)), "{sr}");
            assert!(audience_covers(sr, "hyco", None), "{sr}");
        }
        // Namespace-wide covers every HC.
        assert!(audience_covers("sb://contoso.servicebus.windows.net", "team/ssh", None));
    }

    #[test]
    fn audience_schemes() {
        for scheme in ["http", "https", "sb", "ws", "wss", "HTTPS", "Sb"] {
            assert!(audience_covers(&format!("{scheme}://h/hyco"), "hyco", Some("h")));
        }
        for sr in ["ftp://h/hyco", "h/hyco", "//h/hyco", "hyco", "", "sb:/h/hyco", "://h/hyco"] {
            assert!(!audience_covers(sr, "hyco", None), "{sr}");
        }
    }

    #[test]
    fn audience_segment_prefix_not_string_prefix() {
        assert!(!audience_covers("http://h/hy", "hyco", None));
        assert!(!audience_covers("http://h/hyco", "hy", None));
        assert!(!audience_covers("http://h/hycoo", "hyco", None));
        assert!(!audience_covers("http://h/other", "hyco", None));
        assert!(!audience_covers("http://h/hyco/x", "hyco", None));
        assert!(audience_covers("http://h/team", "team/ssh", None));
        assert!(audience_covers("http://h/team/", "team/ssh", None));
        assert!(audience_covers("http://h/team/ssh", "team/ssh", None));
        assert!(audience_covers("http://h/team/ssh/", "team/ssh/", None));
        assert!(!audience_covers("http://h/team/db", "team/ssh", None));
        // Segments compare without case, as HC names do (Azure's entity names).
        assert!(audience_covers("http://h/Hyco", "hyco", None));
        assert!(audience_covers("http://h/team/SSH", "Team/ssh", None));
        assert!(!audience_covers("http://h/Hyco", "hycoo", None));
    }

    #[test]
    fn audience_trailing_and_double_slashes() {
        assert!(audience_covers("sb://h/hyco/", "hyco", None));
        assert!(audience_covers("sb://h/hyco//", "hyco", None));
        assert!(audience_covers("sb://h//team//ssh", "team/ssh", None));
    }

    #[test]
    fn audience_host_rules() {
        assert!(audience_covers("sb://Contoso.ServiceBus.Windows.NET/hyco", "hyco", Some(HOST)));
        assert!(audience_covers(
            "sb://contoso.servicebus.windows.net/hyco",
            "hyco",
            Some("CONTOSO.servicebus.windows.net")
        ));
        assert!(!audience_covers("sb://other.servicebus.windows.net/hyco", "hyco", Some(HOST)));
        assert!(audience_covers("sb://other.servicebus.windows.net/hyco", "hyco", None));
        // Port ignored on both sides.
        assert!(audience_covers("sb://h:9443/hyco", "hyco", Some("h")));
        assert!(audience_covers("sb://h/hyco", "hyco", Some("h:8080")));
        assert!(audience_covers("http://127.0.0.1:80/hyco", "hyco", Some("127.0.0.1")));
        // IPv6 literals.
        assert!(audience_covers("ws://[::1]:8080/hyco", "hyco", Some("[::1]")));
        assert!(audience_covers("ws://[::1]/hyco", "hyco", Some("::1")));
        assert!(audience_covers("ws://[::1]/hyco", "hyco", Some("[::1]:9000")));
        assert!(!audience_covers("ws://[::1]/hyco", "hyco", Some("[::2]")));
    }

    #[test]
    fn audience_rejects_odd_authorities() {
        assert!(!audience_covers("sb:///hyco", "hyco", None));
        assert!(!audience_covers("sb://:443/hyco", "hyco", None));
        assert!(!audience_covers("sb://h:x/hyco", "hyco", None));
        assert!(!audience_covers("sb://user@h/hyco", "hyco", None));
        assert!(!audience_covers("sb://[::1/hyco", "hyco", None));
        assert!(!audience_covers("sb://h/hyco?x=1", "hyco", None));
        assert!(!audience_covers("sb://h/hyco#f", "hyco", None));
        assert!(!audience_covers("sb://h/hyco", "hyco", Some("")));
    }

    #[test]
    fn audience_decodes_segments_once() {
        assert!(audience_covers("sb://h/my%20hc", "my hc", None));
        assert!(audience_covers("sb://h/t%65am/ssh", "team/ssh", None));
        // `%2F` inside a segment does not split it.
        assert!(!audience_covers("sb://h/team%2Fssh", "team/ssh", None));
        // Decoded once only: `%2520` is the literal text `%20`.
        assert!(!audience_covers("sb://h/my%2520hc", "my hc", None));
        assert!(audience_covers("sb://h/my%2520hc", "my%20hc", None));
        // Bad escapes never match.
        assert!(!audience_covers("sb://h/hy%zzco", "hyco", None));
    }
}
