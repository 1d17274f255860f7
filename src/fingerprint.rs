//! SHA-256 certificate fingerprints, the one way a client pins a self-signed relay: how
//! the relay prints one and how a client reads one back. Pure: no TLS here.

use std::fmt;

use sha2::{Digest, Sha256};

/// Why a text is not a fingerprint: what one looks like, for every place that reads one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotAFingerprint;

impl fmt::Display for NotAFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a TLS fingerprint is a SHA-256 fingerprint: 64 hex digits, optionally colon-separated, as `hyco serve` prints it")
    }
}

impl std::error::Error for NotAFingerprint {}

/// The SHA-256 fingerprint of a DER certificate, as colon-separated uppercase hex (the
/// form `openssl x509 -fingerprint -sha256` prints and `--tls-fingerprint` takes).
pub fn of(cert_der: &[u8]) -> String {
    Sha256::digest(cert_der).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// Normalizes a fingerprint to the form [`of`] prints; accepts it with or without colons,
/// in either case.
pub fn normalize(text: &str) -> Result<String, NotAFingerprint> {
    let hex: String = text.chars().filter(|&c| c != ':').collect::<String>().to_ascii_uppercase();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(NotAFingerprint);
    }
    let pairs: Vec<&str> = (0..32).map(|i| &hex[2 * i..2 * i + 2]).collect();
    Ok(pairs.join(":"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_normalize() {
        let colons = (0..32).map(|i| format!("{i:02X}")).collect::<Vec<_>>().join(":");
        let compact = colons.replace(':', "").to_lowercase();
        assert_eq!(normalize(&compact).unwrap(), colons);
        assert_eq!(normalize(&colons.to_lowercase()).unwrap(), colons);
        assert_eq!(normalize(&colons).unwrap(), colons);
        for bad in ["", "AB:CD", &format!("{colons}:00"), &"zz".repeat(32), &colons.replace('A', "G")] {
            assert_eq!(normalize(bad), Err(NotAFingerprint), "{bad}");
        }
    }

    #[test]
    fn fingerprint_of_a_certificate_reads_back_unchanged() {
        let printed = of(b"not really a certificate, but any bytes hash");
        assert_eq!(printed.len(), 32 * 3 - 1);
        assert_eq!(normalize(&printed).unwrap(), printed);
    }
}
