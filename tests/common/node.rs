//! Node.js peers for the interop tests: where the harness lives, and whether it can run.

use std::path::PathBuf;

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
