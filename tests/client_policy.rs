//! The real binary's choices about what it talks to and for how long (issue 15 A.5-A.7): a
//! connection string's `EntityPath` as the default hybrid connection, and a listener that
//! keeps retrying through the relay's rejections once it has been up, against real relays.

mod common;

use std::path::Path;
use std::time::Duration;

use common::bridge::*;
use common::*;

fn report(p: &Proc) -> String {
    format!("stdout:\n{}\nstderr:\n{}", p.stdout.text(), p.stderr.text())
}

/// A connection string for the relay `serve` with its key, `Endpoint` path `path` and
/// `EntityPath` `entity`.
fn connection_string(serve: &ServeProc, path: &str, entity: &str) -> String {
    format!(
        "Endpoint=sb://{}{path};SharedAccessKeyName={KEY_NAME};SharedAccessKey={};EntityPath={entity};\
         UseDevelopmentEmulator=true",
        serve.addr, serve.key
    )
}

/// `hyco ARGS` in `home` with `HYCO_CONNECTION_STRING` set to `cs`.
fn hyco_with(home: &Path, cs: &str, args: &[&str]) -> tokio::process::Command {
    let mut cmd = hyco(home);
    cmd.env("HYCO_CONNECTION_STRING", cs).args(args);
    cmd
}

/// Waits for a listener's "listening" log line for `hc`.
async fn listening(listen: &Proc, hc: &str) -> String {
    let want = format!("hc={hc} ");
    listen.stderr.wait_for(PROC_STEP, "the listener online", |l| l.contains(" listening") && l.contains(&want)).await
}

/// Runs `cmd` to completion; returns (exit code, stderr).
async fn run(mut cmd: tokio::process::Command) -> (i32, String) {
    let out = within_for(PROC_STEP, "hyco to exit", cmd.output()).await.expect("run hyco");
    (out.status.code().expect("an exit code"), String::from_utf8_lossy(&out.stderr).into_owned())
}

// ---------------------------------------------------------------------------------------
// A.5: EntityPath

#[tokio::test]
async fn entity_path_is_the_default_hc_and_another_is_rejected_naming_both() {
    let home = TempDir::new("entity-path");
    let serve = ServeProc::start(home.path()).await;
    let target = Target::echo().await;
    let cs = connection_string(&serve, "/", "web");

    // listen and connect with no HC argument: the EntityPath's.
    let listen = Proc::spawn(hyco_with(home.path(), &cs, &["listen", "--to", &target.spec()]));
    listening(&listen, "web").await;
    let connect = Proc::spawn(hyco_with(home.path(), &cs, &["connect", "--bind", "127.0.0.1:0"]));
    let line = connect.stderr.wait_for(PROC_STEP, "connect's bind line", |l| l.starts_with("hyco: 127.0.0.1:")).await;
    assert!(line.ends_with("-> web"), "{line}");
    let addr: std::net::SocketAddr =
        line.trim_start_matches("hyco: ").split_whitespace().next().unwrap().parse().unwrap();
    let mut tcp = within("connect", tokio::net::TcpStream::connect(addr)).await.unwrap();
    assert_eq!(within_for(PROC_STEP, "a round trip", round_trip(&mut tcp, b"hi")).await.unwrap(), b"hi");

    // The same name (any case) is fine; `HC/NAME` keeps working.
    let (code, stderr) =
        run(hyco_with(home.path(), &cs, &["token", "WEB", "--rights", "key", "--as-connection-string"])).await;
    assert_eq!(code, 0, "{stderr}");
    let (code, stderr) = run(hyco_with(home.path(), &cs, &["connect", "web/nosuch", "--stdio"])).await;
    assert_ne!(code, 3, "web/NAME is the EntityPath's HC with a target name: {stderr}");

    // Another HC: a configuration error (exit 3) naming both, for each command.
    for args in [
        &["listen", "db", "--to", "9"][..],
        &["connect", "db", "--stdio"],
        &["connect", "db/web", "--stdio"],
        &["connect", "db", "--target", "x", "--stdio"],
        &["token", "db", "--rights", "key"],
    ] {
        let (code, stderr) = run(hyco_with(home.path(), &cs, args)).await;
        assert_eq!(code, 3, "{args:?}: {stderr}");
        assert!(stderr.contains("'db") && stderr.contains("'web'") && stderr.contains("EntityPath"), "{stderr}");
    }
    // No HC anywhere: says how to give one.
    let (code, stderr) = run(hyco_with(
        home.path(),
        &format!("Endpoint=sb://{}/;SharedAccessKeyName={KEY_NAME};SharedAccessKey={}", serve.addr, serve.key),
        &["listen", "--to", "9"],
    ))
    .await;
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("EntityPath"), "{stderr}");
}

#[tokio::test]
async fn an_endpoint_path_resolves_against_entity_path_or_says_what_to_write() {
    let home = TempDir::new("endpoint-path");
    let serve = ServeProc::start(home.path()).await;
    let target = Target::echo().await;

    // `sb://host/team/` + `ssh` is `team/ssh`, as Microsoft's SDKs resolve it.
    let cs = connection_string(&serve, "/team/", "ssh");
    let listen = Proc::spawn(hyco_with(home.path(), &cs, &["listen", "--to", &target.spec()]));
    let line = listening(&listen, "team/ssh").await;
    assert!(line.contains("hc=team/ssh"), "{}", report(&listen));

    // A path and no EntityPath: refused with what to write.
    let cs = format!("Endpoint=sb://{}/team/ssh;SharedAccessKeyName={KEY_NAME};SharedAccessKey=k", serve.addr);
    let (code, stderr) = run(hyco_with(home.path(), &cs, &["listen", "hc", "--to", "9"])).await;
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("EntityPath=team/ssh"), "{stderr}");
}

// ---------------------------------------------------------------------------------------
// A.7: rejections at first start and once online

#[tokio::test]
async fn a_403_for_the_listener_limit_at_first_start_exits_naming_the_limit() {
    let mut settings = settings();
    settings.limits.max_listeners_per_hc = 1;
    let relay = TestRelay::start(settings).await;
    let home = TempDir::new("listener-limit");
    let target = Target::echo().await;
    let endpoint = relay.base();
    let listen = |home: &Path| {
        let mut cmd = hyco(home);
        cmd.args(["listen", "hc", "--to", &target.spec()]).args(key_flags(&endpoint, KEY));
        cmd
    };
    let first = Proc::spawn(listen(home.path()));
    listening(&first, "hc").await;
    let (code, stderr) = run(listen(home.path())).await;
    assert_eq!(code, 5, "{stderr}");
    assert!(stderr.contains("reached a limit for hc") && stderr.contains("Listener limit of 1"), "{stderr}");
    assert!(!stderr.contains("Listen right"), "{stderr}");
}

#[tokio::test]
async fn a_listener_that_was_online_retries_through_a_401_and_comes_back() {
    let home = TempDir::new("retry-401");
    let other = TempDir::new("retry-401-other");
    let mut serve = ServeProc::start(home.path()).await;
    let (addr, key) = (serve.addr, serve.key.clone());
    let target = Target::echo().await;
    let endpoint = format!("ws://{addr}");
    let mut cmd = hyco(home.path());
    cmd.args(["listen", "hc", "--to", &target.spec()]).args(key_flags(&endpoint, &key));
    let mut listen = Proc::spawn(cmd);
    listening(&listen, "hc").await;

    // The relay comes back with another key: this listener's key is refused now.
    serve.proc.terminate().await;
    let mut rotated = ServeProc::restart_on(other.path(), addr).await;
    assert_ne!(rotated.key, key);
    let line = listen
        .stderr
        .wait_for(Duration::from_secs(20), "the 401 logged", |l| l.contains("401") && l.contains("retrying"))
        .await;
    assert!(line.contains("refused the credentials"), "{line}");
    assert!(listen.child.try_wait().expect("try_wait").is_none(), "still running\n{}", report(&listen));

    // The key is good again: the listener is back online by itself.
    rotated.proc.terminate().await;
    let _serve = ServeProc::restart_on(home.path(), addr).await;
    within_for(Duration::from_secs(30), "the listener back online", async {
        while listen.stderr.text().matches(" listening").count() < 2 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(listen.child.try_wait().expect("try_wait").is_none(), "{}", report(&listen));
    listen.terminate().await;
}
