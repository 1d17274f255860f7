//! Failures a user can cause and act on, each with its own exit code (documented in the
//! man page). Anything else exits 1.

use std::fmt;

/// The kind of failure, which decides the exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A bad connection string, profile, config file, flag value or certificate file.
    Config,
    /// The relay cannot be reached: connection refused, no route, timeout, TLS failure,
    /// certificate mismatch, or an HTTP proxy that failed or rejected the tunnel.
    Unreachable,
    /// The relay rejected the credentials (401) or their rights (403), or a token has
    /// expired.
    Unauthorized,
    /// The hybrid connection does not exist, or no listener is online (404).
    NotFound,
    /// A local address could not be bound (port or Unix socket in use, a file that is not a
    /// socket in the way, no permission).
    LocalPort,
    /// The listener rejected the connection (its target is unknown or refused it).
    Rejected,
    /// The relay refused what was asked of it: a public port taken or none free, a name
    /// that nests with another HC's (409), or a relay without public ports.
    Conflict,
}

impl Kind {
    /// The process exit code. 1 is any other failure, 2 a usage error (clap).
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Config => 3,
            Self::Unreachable => 4,
            Self::Unauthorized => 5,
            Self::NotFound => 6,
            Self::LocalPort => 7,
            Self::Rejected => 8,
            Self::Conflict => 9,
        }
    }
}

/// An error with a [`Kind`], carried in an `anyhow::Error` chain.
#[derive(Debug)]
pub struct Failure {
    pub kind: Kind,
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// An `anyhow::Error` of the given kind.
pub fn failure(kind: Kind, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Failure { kind, message: message.into() })
}

/// The exit code for an error: the first [`Failure`] in its chain, else 1.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    error.chain().find_map(|e| e.downcast_ref::<Failure>()).map_or(1, |f| f.kind.exit_code())
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn codes_survive_context() {
        let e = Err::<(), _>(failure(Kind::Unauthorized, "401")).context("listening").unwrap_err();
        assert_eq!(exit_code(&e), 5);
        assert_eq!(exit_code(&anyhow::anyhow!("other")), 1);
    }
}
