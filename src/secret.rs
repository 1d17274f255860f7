//! `Secret`: a string (a key or a SAS token) that never shows up in `Debug` or `Display`.
//!
//! Pure. It masks accidental printing only; it does not zero memory, and serde writes the
//! real value on purpose (the profile file must hold the key).

use std::fmt;

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// A secret string: a shared access key or a SAS token.
///
/// `Debug` and `Display` print `***`; use [`Secret::expose`] to reach the text. Equality
/// is constant time in the content. Serializes transparently as the plain string.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret text. Call only where the value is needed (signing, sending).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl PartialEq for Secret {
    /// Constant time over the bytes; the length of the values may still leak.
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for Secret {}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg=";

    #[test]
    fn debug_and_display_mask() {
        let s = Secret::new(KEY);
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{s}"), "***");
        assert!(!format!("{s:?}").contains("0123"));
        assert!(!format!("{s:#?}").contains("0123"));
    }

    #[test]
    fn debug_masks_inside_structs() {
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Profile {
            name: String,
            key: Secret,
        }
        let p = Profile { name: "main".into(), key: Secret::new(KEY) };
        let out = format!("{p:?}");
        assert!(out.contains("main"));
        assert!(!out.contains(KEY));
        assert!(!out.contains("ABCDEF"));
    }

    #[test]
    fn expose_gives_value() {
        let s = Secret::new(String::from("k"));
        assert_eq!(s.expose(), "k");
        assert_eq!(Secret::from("x").expose(), "x");
        assert_eq!(Secret::from(String::from("y")).expose(), "y");
        assert_eq!(Secret::default().expose(), "");
    }

    #[test]
    fn clone_and_eq() {
        let a = Secret::new(KEY);
        let b = a.clone();
        assert_eq!(a, b);
        assert_ne!(a, Secret::new("other"));
        assert_ne!(a, Secret::new(&KEY[..KEY.len() - 1]));
        assert_ne!(Secret::new("abc"), Secret::new("abd"));
        assert_eq!(Secret::new(""), Secret::new(""));
    }

    #[test]
    fn serde_is_transparent_and_writes_the_value() {
        let s = Secret::new(KEY);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, format!("\"{KEY}\""));
        let back: Secret = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn serde_in_toml_struct() {
        #[derive(Serialize, Deserialize)]
        struct Profile {
            key: Secret,
        }
        let text = toml::to_string(&Profile { key: Secret::new(KEY) }).unwrap();
        assert!(text.contains(KEY));
        let back: Profile = toml::from_str(&text).unwrap();
        assert_eq!(back.key.expose(), KEY);
    }
}
