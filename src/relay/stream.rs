//! The relay's connections: plain TCP or TLS over TCP.

/// A client connection to the relay, with or without TLS.
pub type RelayStream = crate::net::ServerStream;
