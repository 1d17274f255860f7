//! `--token-command`: a JWT (Microsoft Entra ID, a managed identity) from a command the
//! user gives, run through `sh -c`, cached until shortly before the token's `exp`. It reads
//! the JWT's payload only for `exp` and never verifies it (the relay does); it never logs
//! the token.

use std::fmt;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use tokio::io::AsyncReadExt as _;
use tokio::sync::Mutex;

use crate::error::{Kind, failure};
use crate::protocol;
use crate::secret::Secret;

/// How long the command may run before hyco gives up on it (and kills it).
pub(crate) const TOKEN_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a token without `exp` (or with one hyco cannot read) is reused.
pub(crate) const TOKEN_REUSE_WITHOUT_EXP: Duration = Duration::from_secs(5 * 60);
/// A cached token is run for again this long before its `exp`.
pub(crate) const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);
/// The most of the command's stderr an error message carries.
pub(crate) const MAX_STDERR_SHOWN: usize = 2048;
/// The most of the command's stdout read (a JWT is a few kB).
const MAX_TOKEN_BYTES: u64 = 64 * 1024;

/// A command that prints a token, and the token it printed last.
pub(crate) struct TokenCommand {
    command: String,
    cached: Mutex<Option<(Secret, u64)>>,
}

impl fmt::Debug for TokenCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCommand").field("command", &self.command).finish_non_exhaustive()
    }
}

impl TokenCommand {
    pub(crate) fn new(command: impl Into<String>) -> Self {
        Self { command: command.into(), cached: Mutex::new(None) }
    }

    /// A token and the time (Unix seconds) it stops being used: the cached one while it is
    /// more than [`TOKEN_REFRESH_MARGIN`] from its `exp`, else a new one from the command.
    pub(crate) async fn token(&self) -> anyhow::Result<(Secret, u64)> {
        let mut cached = self.cached.lock().await;
        let now = protocol::unix_now();
        if let Some((token, until)) = cached.as_ref()
            && now < *until
        {
            return Ok((token.clone(), *until));
        }
        let token = self.run().await?;
        let until = usable_until(token.expose(), now);
        *cached = Some((token.clone(), until));
        Ok((token, until))
    }

    async fn run(&self) -> anyhow::Result<Secret> {
        let fail = |what: String| failure(Kind::Unauthorized, format!("--token-command {what}"));
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&self.command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| fail(format!("could not start `sh`: {e}")))?;
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut stdout = child.stdout.take().expect("piped").take(MAX_TOKEN_BYTES);
        let mut stderr = child.stderr.take().expect("piped").take(MAX_STDERR_SHOWN as u64);
        let ran = tokio::time::timeout(TOKEN_COMMAND_TIMEOUT, async {
            let (_, _, status) = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err), child.wait());
            status
        })
        .await;
        let shown = String::from_utf8_lossy(&err).trim().to_owned();
        let stderr_part = if shown.is_empty() { String::new() } else { format!(": {shown}") };
        let status = match ran {
            Err(_) => return Err(fail(format!("did not finish within {} s", TOKEN_COMMAND_TIMEOUT.as_secs()))),
            Ok(Err(e)) => return Err(fail(format!("failed: {e}"))),
            Ok(Ok(status)) => status,
        };
        if !status.success() {
            return Err(fail(format!("failed ({status}){stderr_part}")));
        }
        let token = String::from_utf8(out).map_err(|_| fail("printed something that is not text".into()))?;
        let token = token.trim();
        if token.is_empty() {
            return Err(fail(format!("printed no token{stderr_part}")));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(fail("printed more than one token, or characters a header cannot carry".into()));
        }
        Ok(Secret::new(token))
    }
}

/// Until when (Unix seconds) a token fetched at `now` is used: [`TOKEN_REFRESH_MARGIN`]
/// before its `exp` (at least a minute from now, and at most half its remaining life ahead
/// of it), or [`TOKEN_REUSE_WITHOUT_EXP`] when it has none.
fn usable_until(token: &str, now: u64) -> u64 {
    match jwt_exp(token) {
        Some(exp) => {
            let left = exp.saturating_sub(now);
            now + left.saturating_sub(TOKEN_REFRESH_MARGIN.as_secs()).max(left / 2).max(1)
        }
        None => now + TOKEN_REUSE_WITHOUT_EXP.as_secs(),
    }
}

/// The `exp` claim of a JWT (`header.payload.signature`, base64url), unverified.
pub(crate) fn jwt_exp(token: &str) -> Option<u64> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    match claims.get("exp")? {
        serde_json::Value::Number(n) => n.as_u64().or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        let b = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.sig", b(r#"{"alg":"RS256","typ":"JWT"}"#), b(payload))
    }

    #[test]
    fn reads_exp_without_verifying() {
        assert_eq!(jwt_exp(&jwt(r#"{"aud":"https://relay.azure.net","exp":1700000000}"#)), Some(1_700_000_000));
        assert_eq!(jwt_exp(&jwt(r#"{"aud":"x"}"#)), None);
        assert_eq!(jwt_exp("not-a-jwt"), None);
    }

    #[test]
    fn usable_until_refreshes_before_exp() {
        let now = 1_000_000;
        assert_eq!(usable_until(&jwt(&format!(r#"{{"exp":{}}}"#, now + 3600)), now), now + 3600 - 300);
        // A short-lived token is renewed at half its life, not after it expired.
        assert_eq!(usable_until(&jwt(&format!(r#"{{"exp":{}}}"#, now + 60)), now), now + 30);
        assert_eq!(usable_until("opaque", now), now + TOKEN_REUSE_WITHOUT_EXP.as_secs());
    }

    #[tokio::test]
    async fn failing_or_empty_command_is_an_error_with_its_stderr() {
        let e = TokenCommand::new("echo 'az: please run az login' >&2; exit 3").token().await.unwrap_err();
        assert!(format!("{e:#}").contains("please run az login"), "{e:#}");
        assert_eq!(crate::error::exit_code(&e), 5);
        let e = TokenCommand::new("true").token().await.unwrap_err();
        assert!(format!("{e:#}").contains("printed no token"), "{e:#}");
    }

    #[tokio::test]
    async fn caches_the_token_and_keeps_it_out_of_debug() {
        let dir = std::env::temp_dir().join(format!("hyco-tokcmd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let count = dir.join("runs");
        let token = jwt(&format!(r#"{{"exp":{}}}"#, protocol::unix_now() + 3600));
        std::fs::write(dir.join("token"), &token).unwrap();
        let cmd = TokenCommand::new(format!("echo x >> '{}'; cat '{}'", count.display(), dir.join("token").display()));
        assert_eq!(cmd.token().await.unwrap().0.expose(), token);
        assert_eq!(cmd.token().await.unwrap().0.expose(), token);
        assert_eq!(std::fs::read_to_string(&count).unwrap().lines().count(), 1);
        assert!(!format!("{cmd:?}").contains(&token));
        std::fs::remove_dir_all(&dir).ok();
    }
}
