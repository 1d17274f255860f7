//! Shell completions (`completions/`) and man pages (`man/`) are generated from the clap
//! definitions and checked in. This test regenerates them in memory and fails when a
//! checked-in file is stale or missing; `HYCO_UPDATE_GENERATED=1 cargo test --test generated`
//! rewrites them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use hyco::generated::SHELLS;

/// Every generated file, by path relative to the repository root.
fn generate() -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    for shell in SHELLS {
        let (name, script) = hyco::generated::completion(shell);
        files.insert(Path::new("completions").join(name), script);
    }
    for (name, page) in hyco::generated::man_pages() {
        files.insert(Path::new("man").join(name), page);
    }
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
    for (unit, sub) in [("hyco-serve.service", "serve"), ("hyco-listen@.service", "listen"), ("hyco-up.service", "up")]
    {
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

#[test]
fn completions_offer_profile_names_and_man_pages_have_examples_and_environment() {
    let files = generate();
    let text = |p: &str| String::from_utf8(files[Path::new(p)].clone()).unwrap();
    let bash = text("completions/hyco.bash");
    assert!(bash.contains("complete -F _hyco_with_profiles") && bash.contains("hyco profile list --names"), "bash");
    let zsh = text("completions/_hyco");
    assert!(
        zsh.matches(":_hyco_profiles'").count() >= 6,
        "zsh: --profile on listen/connect/token, show/default/remove"
    );
    assert!(text("completions/hyco.fish").contains("-l profile -r -f -a \"(hyco profile list --names"), "fish");
    let top = text("man/hyco.1");
    for var in ["HYCO_PROFILE", "HYCO_CONFIG", "HYCO_DATA_DIR", "HYCO_CONNECTION_STRING"] {
        assert!(top.contains(&format!(".TP\n\\fB{}\\fR", var)), "{var} in hyco.1's ENVIRONMENT");
    }
    for page in ["hyco.1", "hyco-serve.1", "hyco-listen.1", "hyco-connect.1", "hyco-token.1"] {
        let man = text(&format!("man/{page}"));
        assert!(man.contains(".SH EXAMPLES") && man.contains(".SH ENVIRONMENT"), "{page}");
    }
    // Synopses show what each flag takes, and leave the global flags to hyco.1.
    let serve = text("man/hyco-serve.1");
    assert!(serve.contains("[\\-\\-bind [HOST:]PORT]") && serve.contains("[GLOBAL OPTIONS]"), "{serve}");
    let synopsis = serve.split(".SH SYNOPSIS").nth(1).unwrap().split(".SH").next().unwrap();
    assert!(!synopsis.contains("verbose"), "{synopsis}");
}

#[test]
fn subcommand_help_does_not_repeat_the_global_flags() {
    let mut cmd = hyco::cli::Cli::command();
    let short = cmd.find_subcommand_mut("listen").unwrap().render_help().to_string();
    assert!(!short.contains("--log-format") && short.contains("HYCO_PROFILE"), "{short}");
    let top = hyco::cli::Cli::command().render_long_help().to_string();
    for var in ["HYCO_PROFILE", "HYCO_CONFIG", "HYCO_DATA_DIR", "Exit status"] {
        assert!(top.contains(var), "{var} in hyco --help");
    }
}
