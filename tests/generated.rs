//! Shell completions (`completions/`) and man pages (`man/`) are generated from the clap
//! definitions and checked in. This test regenerates them in memory and fails when a
//! checked-in file is stale or missing; `HYCO_UPDATE_GENERATED=1 cargo test --test generated`
//! rewrites them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

const SHELLS: [Shell; 5] = [Shell::Bash, Shell::Zsh, Shell::Fish, Shell::PowerShell, Shell::Elvish];

/// Every generated file, by path relative to the repository root.
fn generate() -> BTreeMap<PathBuf, Vec<u8>> {
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let scratch = std::env::temp_dir().join(format!("hyco-generated-{}-{call}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let (completions, man) = (scratch.join("completions"), scratch.join("man"));
    std::fs::create_dir_all(&completions).unwrap();
    std::fs::create_dir_all(&man).unwrap();
    for shell in SHELLS {
        clap_complete::generate_to(shell, &mut hyco::cli::Cli::command(), "hyco", &completions).unwrap();
    }
    clap_mangen::generate_to(hyco::cli::Cli::command(), &man).unwrap();
    let mut files = BTreeMap::new();
    for dir in ["completions", "man"] {
        for entry in std::fs::read_dir(scratch.join(dir)).unwrap() {
            let entry = entry.unwrap();
            files.insert(Path::new(dir).join(entry.file_name()), std::fs::read(entry.path()).unwrap());
        }
    }
    std::fs::remove_dir_all(&scratch).unwrap();
    files
}

#[test]
fn completions_and_man_pages_are_fresh() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = generate();
    assert!(files.keys().any(|p| p.ends_with("hyco.1")), "the top man page");
    assert!(files.keys().any(|p| p.ends_with("hyco-serve.1")), "a page per subcommand");
    assert!(files.keys().any(|p| p.ends_with("hyco-profile-add.1")), "pages for nested subcommands");
    assert_eq!(files.keys().filter(|p| p.starts_with("completions")).count(), SHELLS.len());
    if std::env::var_os("HYCO_UPDATE_GENERATED").is_some() {
        for dir in ["completions", "man"] {
            let _ = std::fs::remove_dir_all(root.join(dir));
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        for (path, bytes) in &files {
            std::fs::write(root.join(path), bytes).unwrap();
        }
        return;
    }
    let mut stale = Vec::new();
    for (path, bytes) in &files {
        if std::fs::read(root.join(path)).ok().as_ref() != Some(bytes) {
            stale.push(path.display().to_string());
        }
    }
    for dir in ["completions", "man"] {
        for entry in std::fs::read_dir(root.join(dir)).into_iter().flatten().flatten() {
            let rel = Path::new(dir).join(entry.file_name());
            if !files.contains_key(&rel) {
                stale.push(format!("{} (no longer generated)", rel.display()));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "stale generated files: {}\nregenerate with: HYCO_UPDATE_GENERATED=1 cargo test --test generated",
        stale.join(", ")
    );
}

#[test]
fn the_man_page_documents_the_exit_codes() {
    let files = generate();
    let top = String::from_utf8(files[Path::new("man/hyco.1")].clone()).unwrap();
    for code in ["3", "4", "5", "6", "7", "8"] {
        assert!(top.contains(&format!("{code}  ")), "exit code {code} in hyco.1");
    }
    assert!(top.contains("Exit status"));
}

#[test]
fn the_systemd_units_use_flags_that_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (unit, sub) in [("hyco-serve.service", "serve"), ("hyco-listen@.service", "listen")] {
        let text = std::fs::read_to_string(root.join("dist/systemd").join(unit)).unwrap();
        // The ExecStart line and its `\` continuations.
        let mut exec = String::new();
        for line in text.split("ExecStart=").nth(1).expect("an ExecStart line").lines() {
            exec.push_str(line.trim_end_matches('\\'));
            exec.push(' ');
            if !line.ends_with('\\') {
                break;
            }
        }
        let command = hyco::cli::Cli::command();
        let sub = command.find_subcommand(sub).expect("subcommand");
        let known: Vec<String> = sub.get_arguments().filter_map(|a| a.get_long()).map(|l| format!("--{l}")).collect();
        for flag in exec.split_whitespace().filter(|w| w.starts_with("--")) {
            assert!(known.iter().any(|k| k == flag), "{unit} uses {flag}, which `hyco {}` lacks", sub.get_name());
        }
        assert!(
            !text.contains("--key ") && !text.contains("--connection-string "),
            "{unit}: no secret on a command line"
        );
    }
}
