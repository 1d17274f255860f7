//! URL component percent-encoding and decoding, query-string splitting, and escaping text
//! for HTML and XML.
//!
//! Pure functions on strings: no I/O, no URL parsing beyond `&`/`=` splitting of a query.
//! Encoding matches JavaScript's `encodeURIComponent` minus its extra safe set: every byte
//! but the RFC 3986 unreserved characters `A-Z a-z 0-9 - _ . ~` is escaped with uppercase
//! hex, which is what SAS signatures are computed over (docs/protocol.md 3).

use std::fmt;

/// Why a percent-encoded string could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// A `%` not followed by two more characters.
    TruncatedEscape {
        /// Byte offset of the `%` within the component being decoded.
        at: usize,
    },
    /// A `%` followed by something other than two hex digits.
    InvalidEscape {
        /// Byte offset of the `%` within the component being decoded.
        at: usize,
    },
    /// The decoded bytes are not valid UTF-8.
    InvalidUtf8,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::TruncatedEscape { at } => {
                write!(f, "truncated percent escape at byte {at}")
            }
            DecodeError::InvalidEscape { at } => {
                write!(f, "invalid percent escape at byte {at}")
            }
            DecodeError::InvalidUtf8 => f.write_str("percent-decoded text is not valid UTF-8"),
        }
    }
}

impl std::error::Error for DecodeError {}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

/// Percent-encodes every byte of `s` except the unreserved `A-Z a-z 0-9 - _ . ~`,
/// using uppercase hex (`/` becomes `%2F`, space `%20`, `+` `%2B`).
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if is_unreserved(b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX_UPPER[usize::from(b >> 4)] as char);
            out.push(HEX_UPPER[usize::from(b & 0x0F)] as char);
        }
    }
    out
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%XX` escapes (either hex case). With `plus_as_space`, `+` becomes a space
/// (form encoding, as used in query values); otherwise `+` is kept literally.
///
/// Fails on a truncated or non-hex escape, or when the decoded bytes are not UTF-8.
pub fn decode_component(s: &str, plus_as_space: bool) -> Result<String, DecodeError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                if i + 2 >= bytes.len() {
                    return Err(DecodeError::TruncatedEscape { at: i });
                }
                let hi = hex_value(bytes[i + 1]);
                let lo = hex_value(bytes[i + 2]);
                match (hi, lo) {
                    (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                    _ => return Err(DecodeError::InvalidEscape { at: i }),
                }
                i += 3;
            }
            b'+' if plus_as_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| DecodeError::InvalidUtf8)
}

/// Splits a query string (without the leading `?`) into decoded `(name, value)` pairs.
///
/// Parts are separated by `&`; empty parts are dropped; each part splits on its first `=`
/// (no `=` gives an empty value). Names and values are form-decoded (`+` is a space).
/// Order and duplicates are kept.
pub fn parse_query(q: &str) -> Result<Vec<(String, String)>, DecodeError> {
    q.split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (name, value) = part.split_once('=').unwrap_or((part, ""));
            Ok((decode_component(name, true)?, decode_component(value, true)?))
        })
        .collect()
}

/// `s` with the five characters special to HTML and XML escaped (`'` as `&#39;`, which
/// both read), for text from peers on the status pages and in runtime information.
pub fn escape_markup(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_keeps_unreserved() {
        let s = "ABCXYZabcxyz0189-_.~";
        assert_eq!(encode_component(s), s);
    }

    #[test]
    fn encode_escapes_reserved_uppercase() {
        assert_eq!(
            encode_component("http://contoso.servicebus.windows.net/hyco/"),
            "http%3A%2F%2Fcontoso.servicebus.windows.net%2Fhyco%2F"
        );
        assert_eq!(encode_component("a b+c=d&e"), "a%20b%2Bc%3Dd%26e");
        assert_eq!(
            encode_component("3o5XBbdcRrcduxDvR9yKIJ1Bh1TNLPhkNfq0TF6n+JM="),
            "3o5XBbdcRrcduxDvR9yKIJ1Bh1TNLPhkNfq0TF6n%2BJM%3D"
        );
        assert_eq!(encode_component("!*'()"), "%21%2A%27%28%29");
        assert_eq!(encode_component("%"), "%25");
    }

    #[test]
    fn encode_multibyte_utf8() {
        assert_eq!(encode_component("é"), "%C3%A9");
        assert_eq!(encode_component("€"), "%E2%82%AC");
        assert_eq!(encode_component(""), "");
    }

    #[test]
    fn decode_roundtrips_encode() {
        for s in ["", "plain", "a b+c/d?e=f&g", "é€ 😀", "%25%", "\n\t\0"] {
            assert_eq!(decode_component(&encode_component(s), false).unwrap(), s);
            assert_eq!(decode_component(&encode_component(s), true).unwrap(), s);
        }
    }

    #[test]
    fn decode_accepts_lowercase_hex() {
        assert_eq!(decode_component("%2f%2F", false).unwrap(), "//");
        assert_eq!(decode_component("%c3%a9", false).unwrap(), "é");
    }

    #[test]
    fn decode_plus_handling() {
        assert_eq!(decode_component("a+b", false).unwrap(), "a+b");
        assert_eq!(decode_component("a+b", true).unwrap(), "a b");
        assert_eq!(decode_component("a%2Bb", true).unwrap(), "a+b");
    }

    #[test]
    fn decode_passes_unescaped_text_through() {
        assert_eq!(decode_component("sb://h/x y", false).unwrap(), "sb://h/x y");
        assert_eq!(decode_component("é", false).unwrap(), "é");
    }

    #[test]
    fn decode_truncated_escape() {
        assert_eq!(decode_component("%", false), Err(DecodeError::TruncatedEscape { at: 0 }));
        assert_eq!(decode_component("ab%2", false), Err(DecodeError::TruncatedEscape { at: 2 }));
    }

    #[test]
    fn decode_non_hex_escape() {
        assert_eq!(decode_component("%zz", false), Err(DecodeError::InvalidEscape { at: 0 }));
        assert_eq!(decode_component("x%2g", false), Err(DecodeError::InvalidEscape { at: 1 }));
        // A multi-byte character right after `%` is not hex (and must not panic).
        assert_eq!(decode_component("%éé", false), Err(DecodeError::InvalidEscape { at: 0 }));
        assert_eq!(decode_component("%é", false), Err(DecodeError::InvalidEscape { at: 0 }));
    }

    #[test]
    fn decode_invalid_utf8() {
        assert_eq!(decode_component("%FF", false), Err(DecodeError::InvalidUtf8));
        assert_eq!(decode_component("%C3", false), Err(DecodeError::InvalidUtf8));
    }

    #[test]
    fn errors_display() {
        assert!(DecodeError::TruncatedEscape { at: 3 }.to_string().contains("truncated"));
        assert!(DecodeError::InvalidEscape { at: 3 }.to_string().contains('3'));
        assert!(DecodeError::InvalidUtf8.to_string().contains("UTF-8"));
        let _: &dyn std::error::Error = &DecodeError::InvalidUtf8;
    }

    #[test]
    fn query_basic() {
        let q = parse_query("sb-hc-action=listen&sb-hc-id=abc").unwrap();
        assert_eq!(
            q,
            vec![("sb-hc-action".to_string(), "listen".to_string()), ("sb-hc-id".to_string(), "abc".to_string()),]
        );
    }

    #[test]
    fn query_empty_and_missing_values() {
        assert_eq!(parse_query("").unwrap(), vec![]);
        assert_eq!(parse_query("&&").unwrap(), vec![]);
        assert_eq!(
            parse_query("a&b=&=c&&d").unwrap(),
            vec![("a".into(), "".into()), ("b".into(), "".into()), ("".into(), "c".into()), ("d".into(), "".into()),]
        );
    }

    #[test]
    fn query_splits_on_first_equals_and_keeps_duplicates() {
        assert_eq!(parse_query("x=1=2&x=3").unwrap(), vec![("x".into(), "1=2".into()), ("x".into(), "3".into())]);
    }

    #[test]
    fn query_form_decodes_names_and_values() {
        let token = "SharedAccessSignature sr=a%2Fb&sig=x%2By";
        let q = format!("sb-hc-token={}", encode_component(token));
        assert_eq!(parse_query(&q).unwrap(), vec![("sb-hc-token".into(), token.into())]);
        // Form encoding: a space may arrive as `+`.
        assert_eq!(
            parse_query("sb-hc-token=SharedAccessSignature+sr%3Dx&a+b=c+d").unwrap(),
            vec![("sb-hc-token".into(), "SharedAccessSignature sr=x".into()), ("a b".into(), "c d".into()),]
        );
    }

    #[test]
    fn query_bad_escape_is_error() {
        assert_eq!(parse_query("a=ok&b=%G1"), Err(DecodeError::InvalidEscape { at: 0 }));
        assert_eq!(parse_query("a%=1"), Err(DecodeError::TruncatedEscape { at: 1 }));
    }

    #[test]
    fn markup_escapes_the_five_special_characters() {
        assert_eq!(escape_markup("<a href='x'>&\"</a>"), "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;");
        assert_eq!(escape_markup("plain ü"), "plain ü");
    }
}
