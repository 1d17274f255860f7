//! The real binary's choices about what it talks to and for how long (issue 15 A.5-A.7): a
//! connection string's `EntityPath` as the default hybrid connection, and a listener that
//! keeps retrying through the relay's rejections once it has been up, against real relays.

mod common;

use std::path::Path;

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
