//! `hyco profile` and `hyco token` with the real binary: secrets go in through stdin or
//! files and stay masked on the way out; a minted token carries the rights it names.

mod common;

use std::process::Stdio;

use common::bridge::*;
use common::*;
use tokio::io::AsyncWriteExt;

/// Runs `hyco ARGS` in `home` with `input` on stdin; returns (exit code, stdout, stderr).
async fn run(home: &TempDir, args: &[&str], input: &str) -> (i32, String, String) {
    let mut cmd = hyco(home.path());
    cmd.args(args).stdin(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn hyco");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    let out = within_for(PROC_STEP, "hyco to exit", child.wait_with_output()).await.expect("run hyco");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().expect("exit code"), text(&out.stdout), text(&out.stderr))
}

const KEY: &str = "c2VjcmV0LWtleS10aGF0LW11c3Qtbm90LWJlLXNob3du";

#[tokio::test]
async fn profiles_are_added_from_stdin_listed_masked_and_removed() {
    let home = TempDir::new("profile-cli");
    let (code, out, err) = run(
        &home,
        &[
            "profile",
            "add",
            "work",
            "--endpoint",
            "wss://relay.example.net:9443",
            "--key-name",
            "root",
            "--key-file",
            "-",
        ],
        &format!("{KEY}\n"),
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("profile 'work' saved"), "{out}");
    let file = home.path().join("config.toml");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let cs = "Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=b3RoZXIta2V5";
    let (code, _, err) = run(&home, &["profile", "add", "azure", "--connection-string-file", "-"], cs).await;
    assert_eq!(code, 0, "{err}");

    let (code, out, _) = run(&home, &["profile", "list"], "").await;
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.iter().any(|l| l.starts_with("* work") && l.contains("wss://relay.example.net:9443")), "{out}");
    assert!(
        lines.iter().any(|l| l.starts_with("  azure") && l.contains("sb://contoso.servicebus.windows.net/")),
        "{out}"
    );
    assert!(!out.contains(KEY) && !out.contains("b3RoZXIta2V5"), "list shows no key");

    let (_, out, _) = run(&home, &["profile", "show", "work"], "").await;
    assert!(out.contains("key name:        root") && out.contains("***") && !out.contains(KEY), "{out}");
    let (_, out, _) = run(&home, &["profile", "show", "work", "--show-secret"], "").await;
    assert!(out.contains(KEY), "--show-secret prints the key");

    let (code, _, _) = run(&home, &["profile", "default", "azure"], "").await;
    assert_eq!(code, 0);
    let (_, out, _) = run(&home, &["profile", "list"], "").await;
    assert!(out.lines().any(|l| l.starts_with("* azure")), "{out}");
    let (code, _, _) = run(&home, &["profile", "remove", "work"], "").await;
    assert_eq!(code, 0);
    let (code, _, err) = run(&home, &["profile", "show", "work"], "").await;
    assert_eq!(code, 3, "a removed profile is gone: {err}");
    assert!(err.contains("no profile named 'work'"), "{err}");
    let (code, _, err) =
        run(&home, &["profile", "add", "empty", "--endpoint", "ws://h:1", "--key-name", "k", "--key-file", "-"], "")
            .await;
    assert_eq!(code, 3, "an empty key is refused: {err}");
    assert!(!std::fs::read_to_string(&file).unwrap().contains("[profiles.empty]"));
}

#[tokio::test]
async fn a_send_token_connects_but_cannot_listen() {
    let home = TempDir::new("token-cli");
    let mut cmd = hyco(home.path());
    cmd.args(["serve", "--bind", "127.0.0.1:0"]);
    let serve = Proc::spawn(cmd);
    serve.stdout.wait_for(PROC_STEP, "serve's profile line", |l| l.starts_with("Profile 'local' written")).await;
    let target = Target::echo().await;
    let mut cmd = hyco(home.path());
    cmd.args(["listen", "tok", "--to", &target.spec()]);
    let listen = Proc::spawn(cmd);
    listen.stderr.wait_for(PROC_STEP, "the listener", |l| l.contains(" listening")).await;

    let (code, cs, err) =
        run(&home, &["token", "tok", "--rights", "send", "--ttl", "5m", "--as-connection-string"], "").await;
    assert_eq!(code, 0, "{err}");
    let parsed = hyco::connstr::parse(cs.trim()).expect("a connection string");
    assert_eq!(parsed.entity_path.as_deref(), Some("tok"));
    let hyco::connstr::Credential::Token(token) = &parsed.credential else { panic!("a token credential") };
    let token = hyco::sas::parse(token.expose()).unwrap();
    assert_eq!(token.key_name(), "hyco-send");
    let left = token.expiry() - hyco::protocol::unix_now();
    assert!((290..=300).contains(&left), "expires in 5 minutes, not {left} s");

    // The colleague's machine: only the connection string.
    let colleague = TempDir::new("token-colleague");
    let mut cmd = hyco(colleague.path());
    cmd.args(["connect", "tok", "--stdio"]).env("HYCO_CONNECTION_STRING", cs.trim()).stdin(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"through with a token").await.unwrap();
    drop(stdin);
    let out = within_for(PROC_STEP, "connect to exit", child.wait_with_output()).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, b"through with a token");

    let mut cmd = hyco(colleague.path());
    cmd.args(["listen", "tok", "--to", "127.0.0.1:1"]).env("HYCO_CONNECTION_STRING", cs.trim());
    let out = within_for(PROC_STEP, "listen to exit", cmd.output()).await.unwrap();
    assert_eq!(out.status.code(), Some(5), "a Send token may not listen");
    assert!(String::from_utf8_lossy(&out.stderr).contains("403"));

    // A token cannot mint another; --rights means nothing to Azure keys.
    let (code, _, err) =
        run(&colleague, &["token", "tok", "--rights", "key", "--connection-string", cs.trim()], "").await;
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("holds no key"), "{err}");
    let azure = "Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=a2V5";
    let (code, _, err) = run(&colleague, &["token", "tok", "--rights", "send", "--connection-string", azure], "").await;
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("policy"), "{err}");
    drop(serve);
}

#[tokio::test]
async fn an_expired_token_in_a_profile_says_so() {
    let home = TempDir::new("token-expired");
    let key = hyco::secret::Secret::new("k");
    let expired = hyco::sas::mint("http://127.0.0.1/hc/", "root", &key, hyco::protocol::unix_now() - 60);
    let (code, _, err) =
        run(&home, &["profile", "add", "old", "--endpoint", "ws://127.0.0.1:9", "--token-file", "-"], expired.expose())
            .await;
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = run(&home, &["profile", "list"], "").await;
    assert!(out.contains("EXPIRED"), "{out}");
    let (code, _, err) = run(&home, &["connect", "hc", "--stdio", "--profile", "old"], "").await;
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("expired at"), "{err}");
    assert!(!err.contains(expired.expose()), "the token itself stays out of the message");
}
