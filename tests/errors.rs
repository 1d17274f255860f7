//! Every failure a user can cause makes the real binary exit with its documented code
//! (see `hyco --help`) and one line on stderr that says what went wrong and what to do.

mod common;

use common::bridge::*;
use common::*;

/// Runs `hyco ARGS` in `home` to completion; returns (exit code, stderr).
async fn run(home: &std::path::Path, args: &[&str]) -> (i32, String) {
    let mut cmd = hyco(home);
    cmd.args(args);
    let out = within_for(PROC_STEP, "hyco to exit", cmd.output()).await.expect("run hyco");
    (out.status.code().expect("an exit code"), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The last line of stderr: the error line.
fn error_line(stderr: &str) -> &str {
    stderr.lines().rev().find(|l| l.starts_with("hyco: ")).unwrap_or_else(|| panic!("no error line in:\n{stderr}"))
}

fn assert_fails(code: i32, stderr: &str, want_code: i32, words: &[&str]) {
    assert_eq!(code, want_code, "exit code; stderr:\n{stderr}");
    let line = error_line(stderr);
    for w in words {
        assert!(line.contains(w), "{w:?} missing from {line:?}");
    }
}

/// A relay started by the real binary; its key, its `ws://` base and its home.
async fn serve(home: &TempDir, extra: &[&str]) -> (Proc, String) {
    let mut cmd = hyco(home.path());
    cmd.args(["serve", "--bind", "127.0.0.1:0", "--no-profile"]).args(extra);
    let serve = Proc::spawn(cmd);
    let line =
        serve.stdout.wait_for(PROC_STEP, "serve's listening line", |l| l.starts_with("hyco relay listening on ")).await;
    let base = line.trim_start_matches("hyco relay listening on ").split_whitespace().next().unwrap().to_owned();
    (serve, base)
}

fn key(home: &TempDir) -> String {
    std::fs::read_to_string(home.path().join("data/namespace.key")).unwrap().trim().to_owned()
}

#[tokio::test]
async fn a_bad_connection_string_is_a_configuration_error() {
    let home = TempDir::new("err-connstr");
    let (code, err) =
        run(home.path(), &["connect", "hc", "--stdio", "--connection-string", "Endpoint=sb://x/;Bogus=1"]).await;
    assert_fails(code, &err, 3, &["connection string", "Bogus"]);
}

#[tokio::test]
async fn a_missing_profile_is_a_configuration_error() {
    let home = TempDir::new("err-profile");
    let (code, err) = run(home.path(), &["listen", "hc", "--to", "127.0.0.1:1", "--profile", "nope"]).await;
    assert_fails(code, &err, 3, &["no profile named 'nope'"]);
    let (code, err) = run(home.path(), &["listen", "hc", "--to", "127.0.0.1:1"]).await;
    assert_fails(code, &err, 3, &["no relay configured", "hyco serve"]);
}

#[tokio::test]
async fn an_unreachable_relay_says_so() {
    let home = TempDir::new("err-unreachable");
    // A port nothing listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let endpoint = format!("ws://127.0.0.1:{port}");
    let creds = ["--endpoint", &endpoint, "--key-name", "k", "--key", "v"];
    let (code, err) = run(home.path(), &[&["listen", "hc", "--to", "127.0.0.1:1"][..], &creds].concat()).await;
    assert_fails(code, &err, 4, &["cannot reach the relay", "is the relay"]);
    let (code, err) = run(home.path(), &[&["connect", "hc", "--stdio"][..], &creds].concat()).await;
    assert_fails(code, &err, 4, &["cannot reach the relay"]);
}

#[tokio::test]
async fn wrong_key_wrong_right_and_missing_hc_are_401_403_404() {
    let home = TempDir::new("err-auth");
    let (serve, base) = serve(&home, &[]).await;
    let root = key(&home);
    let (code, err) =
        run(home.path(), &[&["listen", "hc", "--to", "127.0.0.1:1"][..], &key_flags(&base, "wrong")].concat()).await;
    assert_fails(code, &err, 5, &["401", "check the key"]);
    assert!(!err.contains(&root));
    // The relay's Send-only rule may not listen.
    let send_key = hyco::sas::derive_key(&hyco::secret::Secret::new(root.clone()), "hyco-send");
    let (code, err) = run(
        home.path(),
        &[
            "listen",
            "hc",
            "--to",
            "127.0.0.1:1",
            "--endpoint",
            &base,
            "--key-name",
            "hyco-send",
            "--key",
            send_key.expose(),
        ],
    )
    .await;
    assert_fails(code, &err, 5, &["403", "Listen right"]);
    let (code, err) =
        run(home.path(), &[&["connect", "nobody-here", "--stdio"][..], &key_flags(&base, &root)].concat()).await;
    assert_fails(code, &err, 6, &["404", "is a listener running"]);
    // The relay logged each refused attempt at its default level, with the peer and why.
    for status in ["status=401", "status=403", "status=404"] {
        let line = serve
            .stderr
            .wait_for(PROC_STEP, "the relay's log of a refused attempt", |l| {
                l.contains(status) && l.contains("rejected: ")
            })
            .await;
        assert!(line.contains("INFO") && line.contains("peer=127.0.0.1:"), "{line}");
    }
}

#[tokio::test]
async fn connect_bind_checks_the_path_at_startup_as_stdio_would() {
    let home = TempDir::new("err-bind-check");
    let bind = ["connect", "hc", "--bind", "127.0.0.1:0"];
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dead = format!("ws://127.0.0.1:{port}");
    let (code, err) =
        run(home.path(), &[&bind[..], &["--endpoint", &dead, "--key-name", "k", "--key", "v"]].concat()).await;
    assert_fails(code, &err, 4, &["cannot reach the relay", "is the relay running"]);
    assert!(!err.contains("hyco: 127.0.0.1:"), "no 'ready' line before the check:\n{err}");

    let (_serve, base) = serve(&home, &[]).await;
    let root = key(&home);
    let mut cmd = hyco(home.path());
    cmd.args(["listen", "hc", "--to", "127.0.0.1:1"]).args(key_flags(&base, &root));
    let listen = Proc::spawn(cmd);
    listen.stderr.wait_for(PROC_STEP, "the listener", |l| l.contains(" listening")).await;
    let (code, err) = run(home.path(), &[&bind[..], &key_flags(&base, "wrong")].concat()).await;
    assert_fails(code, &err, 5, &["hc: 401", "check the key"]);

    // An expired token, in a connection string as it is handed out.
    let host = base.trim_start_matches("ws://");
    let audience = hyco::protocol::token_audience(host.split(':').next().unwrap(), "hc");
    let token =
        hyco::sas::mint(&audience, "RootManageSharedAccessKey", &hyco::secret::Secret::new(root), 1_000_000_000);
    let connstr = format!("Endpoint=sb://{host}/;SharedAccessSignature={};UseDevelopmentEmulator=true", token.expose());
    let (code, err) = run(home.path(), &[&bind[..], &["--connection-string", &connstr]].concat()).await;
    assert_fails(code, &err, 5, &["expired"]);
}

#[tokio::test]
async fn a_port_in_use_is_a_local_port_error() {
    let home = TempDir::new("err-port");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, err) = run(home.path(), &["serve", "--bind", &addr, "--no-profile"]).await;
    assert_fails(code, &err, 7, &["cannot listen on", "--bind"]);
    let (code, err) = run(
        home.path(),
        &["connect", "hc", "--bind", &addr, "--endpoint", "ws://127.0.0.1:9", "--key-name", "k", "--key", "v"],
    )
    .await;
    assert_fails(code, &err, 7, &["cannot listen on", "--bind"]);
}

#[tokio::test]
async fn a_certificate_that_does_not_match_the_pin_is_refused() {
    let home = TempDir::new("err-cert");
    let (_serve, base) = serve(&home, &["--tls-self-signed"]).await;
    assert!(base.starts_with("wss://"), "{base}");
    let wrong = ["AB"; 32].join(":");
    let (code, err) = run(
        home.path(),
        &[&["listen", "hc", "--to", "127.0.0.1:1"][..], &key_flags(&base, &key(&home)), &["--tls-fingerprint", &wrong]]
            .concat(),
    )
    .await;
    assert_fails(code, &err, 4, &["fingerprint mismatch"]);
    // Without a pin the self-signed certificate is not trusted either: no "verify nothing".
    let (code, err) =
        run(home.path(), &[&["listen", "hc", "--to", "127.0.0.1:1"][..], &key_flags(&base, &key(&home))].concat())
            .await;
    assert_fails(code, &err, 4, &["TLS"]);
}

#[tokio::test]
async fn a_refused_target_is_exit_8() {
    let home = TempDir::new("err-target");
    let (_serve, base) = serve(&home, &[]).await;
    let root = key(&home);
    let creds = key_flags(&base, &root);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let target = format!("web=127.0.0.1:{port}");
    let mut cmd = hyco(home.path());
    cmd.args(["listen", "box", "--to", &target]).args(creds);
    let listen = Proc::spawn(cmd);
    listen.stderr.wait_for(PROC_STEP, "the listener", |l| l.contains(" listening")).await;
    let (code, err) = run(home.path(), &[&["connect", "box/web", "--stdio"][..], &creds].concat()).await;
    assert_fails(code, &err, 8, &["502", "refused"]);
    let (code, err) = run(home.path(), &[&["connect", "box/db", "--stdio"][..], &creds].concat()).await;
    assert_fails(code, &err, 8, &["404", "No target named 'db'"]);
}

// ---------------------------------------------------------------------------------------
// Secrets at rest: never written through a link, never read from a file that holds no key

#[tokio::test]
async fn a_namespace_key_path_pointing_at_another_file_is_refused() {
    let home = TempDir::new("err-keylink");
    let data = home.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // What a planted link to /etc/hostname looks like.
    let hostname = home.path().join("hostname");
    std::fs::write(&hostname, "vm\n").unwrap();
    std::os::unix::fs::symlink(&hostname, data.join("namespace.key")).unwrap();
    let (code, err) = run(home.path(), &["serve", "--bind", "127.0.0.1:0", "--no-profile"]).await;
    assert_fails(code, &err, 3, &["namespace.key", "does not hold a key", "remove the file"]);
    assert!(!err.contains("vm\n") && !error_line(&err).ends_with("vm"), "the file's content is not shown:\n{err}");
    assert_eq!(std::fs::read_to_string(&hostname).unwrap(), "vm\n", "the file is not replaced");
}

#[tokio::test]
async fn a_link_planted_beside_the_key_does_not_receive_it() {
    let home = TempDir::new("err-tmplink");
    let data = home.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let victim = home.path().join("victim");
    std::fs::write(&victim, "untouched").unwrap();
    // Where a fixed temporary name would have been written.
    std::os::unix::fs::symlink(&victim, data.join("namespace.tmp")).unwrap();
    let (mut serve, _) = serve(&home, &[]).await;
    serve.terminate().await;
    assert!(hyco::fsutil::is_key(&key(&home)), "a key was generated");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
    assert!(!std::fs::symlink_metadata(data.join("namespace.key")).unwrap().file_type().is_symlink());
}

#[tokio::test]
async fn profiles_are_not_written_where_other_users_can_write() {
    use std::os::unix::fs::PermissionsExt;
    let home = TempDir::new("err-shareddir");
    let shared = home.path().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut cmd = hyco(home.path());
    cmd.env("HYCO_CONFIG", shared.join("config.toml"));
    cmd.args(["profile", "add", "x", "--endpoint", "ws://127.0.0.1:9"]);
    let out = within_for(PROC_STEP, "hyco to exit", cmd.output()).await.expect("run hyco");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_fails(out.status.code().expect("a code"), &err, 3, &["can be written by other users", "chmod go-w"]);
    assert!(!shared.join("config.toml").exists());
    // A symlinked profile file is refused too, and its target left alone.
    let real = home.path().join("real.toml");
    std::fs::write(&real, "# mine\n").unwrap();
    let link = home.path().join("linked.toml");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let mut cmd = hyco(home.path());
    cmd.env("HYCO_CONFIG", &link);
    cmd.args(["profile", "add", "x", "--endpoint", "ws://127.0.0.1:9"]);
    let out = within_for(PROC_STEP, "hyco to exit", cmd.output()).await.expect("run hyco");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_fails(out.status.code().expect("a code"), &err, 3, &["symbolic link"]);
    assert_eq!(std::fs::read_to_string(&real).unwrap(), "# mine\n");
}

// ---------------------------------------------------------------------------------------
// First contact: pasted connection strings, TLS and scheme mistakes, addresses

#[tokio::test]
async fn pasted_connection_strings_are_cleaned_and_their_errors_name_the_problem() {
    let home = TempDir::new("err-pasted");
    let (_serve, base) = serve(&home, &[]).await;
    let authority = base.trim_start_matches("ws://");
    let good = format!(
        "Endpoint=sb://{authority}/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey={};UseDevelopmentEmulator=true",
        key(&home)
    );
    // A trailing CRLF, a space, quotes: the same string, wherever it comes from. The HC has
    // no listener, so getting as far as the relay's 404 proves the string was understood.
    for pasted in [format!("{good}\r\n"), format!("'{good}' "), format!("\"{good}\"\n")] {
        let mut cmd = hyco(home.path());
        cmd.env("HYCO_CONNECTION_STRING", &pasted).args(["connect", "nobody", "--stdio"]);
        let out = within_for(PROC_STEP, "hyco to exit", cmd.output()).await.unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_fails(out.status.code().unwrap(), &err, 6, &["404"]);
        let (code, err) = run(home.path(), &["connect", "nobody", "--stdio", "--connection-string", &pasted]).await;
        assert_fails(code, &err, 6, &["404"]);
    }
    let (code, err) =
        run(home.path(), &["connect", "hc", "--stdio", "--connection-string", "'Endpoint=sb://h/;Bogus=1'"]).await;
    assert_fails(code, &err, 3, &["unknown key 'Bogus'", "known: Endpoint"]);
    let bare = format!("Endpoint=sb://{authority}/;UseDevelopmentEmulator=true\n");
    let (code, err) = run(home.path(), &["listen", "hc", "--to", "1", "--connection-string", &bare]).await;
    assert_fails(code, &err, 3, &["no key or token in the connection string"]);
    let entra = "Endpoint=sb://contoso.servicebus.windows.net/;Authentication=Managed Identity";
    let (code, err) = run(home.path(), &["connect", "hc", "--stdio", "--connection-string", entra]).await;
    assert_fails(code, &err, 3, &["Authentication", "not supported"]);
    let timeout = format!("{good};OperationTimeout=00:01:00");
    let (code, err) = run(home.path(), &["connect", "nobody", "--stdio", "--connection-string", &timeout]).await;
    assert_fails(code, &err, 6, &["404"]);
}

#[tokio::test]
async fn tls_and_scheme_mistakes_name_the_cause_and_the_fix() {
    let home = TempDir::new("err-scheme");
    let (_tls, tls_base) = serve(&home, &["--tls-self-signed"]).await;
    let (_plain, plain_base) = serve(&home, &[]).await;
    let root = key(&home);
    let listen = |base: &str, extra: &[&str]| {
        let mut args: Vec<String> = ["listen", "hc", "--to", "127.0.0.1:1"].map(String::from).to_vec();
        args.extend(key_flags(base, &root).map(String::from));
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let unpinned = listen(&tls_base, &[]);
    let wrong = ["AB"; 32].join(":");
    let mispinned = listen(&tls_base, &["--tls-fingerprint", &wrong]);
    let plain_to_tls = listen(&tls_base.replace("wss://", "ws://"), &[]);
    let tls_to_plain = listen(&plain_base.replace("ws://", "wss://"), &[]);
    for (args, words) in [
        (&unpinned, &["UnknownIssuer", "pin the fingerprint", "--tls-fingerprint"][..]),
        (&mispinned, &["fingerprint mismatch", "pin the fingerprint the relay printed"]),
        (&plain_to_tls, &["speaks TLS", "use wss://"]),
        (&tls_to_plain, &["does not speak TLS", "use ws://"]),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, err) = run(home.path(), &args).await;
        assert_fails(code, &err, 4, words);
        assert!(!error_line(&err).contains("is the relay"), "no misleading hint: {err}");
    }
    // The connector says the same, with no "is the relay running" either.
    let mut args = vec!["connect", "hc", "--stdio"];
    let tls_to_plain = plain_base.replace("ws://", "wss://");
    args.extend(key_flags(&tls_to_plain, &root));
    let (code, err) = run(home.path(), &args).await;
    assert_fails(code, &err, 4, &["does not speak TLS", "use ws://"]);
    assert!(!error_line(&err).contains("is the relay"), "{err}");
}

#[tokio::test]
async fn one_address_syntax_and_ports_out_of_range() {
    let home = TempDir::new("err-addresses");
    let (code, err) = run(home.path(), &["serve", "--bind", "99999"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("port 99999 is out of range"), "{err}");
    let (code, err) = run(home.path(), &["listen", "hc", "--to", "99999", "--endpoint", "ws://127.0.0.1:9"]).await;
    assert_fails(code, &err, 3, &["port 99999 is out of range"]);
    // A port alone, or a name: serve binds them as connect does.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    let mut cmd = hyco(home.path());
    cmd.args(["serve", "--no-profile", "--bind", &port]);
    let serve = Proc::spawn(cmd);
    let line = serve.stdout.wait_for(PROC_STEP, "serve's listening line", |l| l.contains("(bound to ")).await;
    assert!(line.ends_with(&format!("(bound to 127.0.0.1:{port})")), "{line}");
    drop(serve);
    let mut cmd = hyco(home.path());
    cmd.args(["serve", "--no-profile", "--bind", "localhost:0"]);
    let serve = Proc::spawn(cmd);
    serve.stdout.wait_for(PROC_STEP, "serve on localhost", |l| l.contains("(bound to 127.0.0.1:")).await;
    // demo with its port taken: 7, as documented.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, err) = run(home.path(), &["demo", "--bind", &addr]).await;
    assert_fails(code, &err, 7, &["cannot listen on", "--bind"]);
    // token without --rights: a usage error, not a full-rights token.
    let (code, err) = run(home.path(), &["token", "web", "--endpoint", "ws://127.0.0.1:9"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--rights"), "{err}");
    // HYCO_CONFIG naming a file that is not there says so.
    let mut cmd = hyco(home.path());
    cmd.env("HYCO_CONFIG", home.path().join("nope/config.toml")).args(["connect", "hc", "--stdio"]);
    let out = within_for(PROC_STEP, "hyco to exit", cmd.output()).await.unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_fails(out.status.code().unwrap(), &err, 3, &["HYCO_CONFIG names", "does not exist"]);
}
