//! Node.js peers for the interop tests: where the harness lives, and whether it can run.

use std::path::PathBuf;
use std::process::Stdio;

/// `interop/` in the repository: the scripts and their `node_modules`.
pub fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop")
}

/// Whether node and `interop/node_modules/{package}` are there. When they are not, the
/// test is skipped with a note, or fails if `HYCO_REQUIRE_NODE_INTEROP=1` (CI sets it).
pub fn node_available(package: &str) -> bool {
    let why = match std::process::Command::new("node").arg("--version").output() {
        Err(e) => format!("node not runnable: {e}"),
        Ok(out) if !out.status.success() => "node --version failed".to_owned(),
        Ok(_) if !interop_dir().join("node_modules").join(package).join("package.json").is_file() => {
            format!("interop/node_modules/{package} missing (run bash interop/setup.sh)")
        }
        Ok(_) => return true,
    };
    if std::env::var("HYCO_REQUIRE_NODE_INTEROP").as_deref() == Ok("1") {
        panic!("HYCO_REQUIRE_NODE_INTEROP=1 but {why}");
    }
    eprintln!("skipping {package} interop test: {why}");
    false
}

/// `node interop/<script> <args>` with `env`, run in `interop/`, stdout and stderr piped,
/// killed on drop.
pub fn node(script: &str, args: &[&str], env: &[(&str, &str)]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(interop_dir().join(script))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(interop_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}
