//! `hyco up`: a machine's whole set of listeners and connectors from one file, run in one
//! process. Each `[[listen]]` and `[[connect]]` table is that command's flags, written as
//! TOML keys (`to = ["ssh=22"]` is `--to ssh=22`); the file is read through the same
//! command-line parser, so it takes exactly what the commands take and nothing else. Each
//! entry runs with its own counters and its own backoff: one that fails (a port taken, a
//! relay that cannot be reached, credentials rejected) is said, retried, and leaves the
//! others running. Keys stay in profiles: the file names one, never holds one. SIGHUP
//! reads the file again: changed entries restart, the others keep their tunnels.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use clap::Parser as _;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, info, info_span, warn};

use crate::backoff::{Backoff, HEALTHY_PERIOD};
use crate::cli::{Cli, Command, UpArgs};
use crate::error::{Kind, failure};
use crate::status::Stats;

/// The file `hyco up` reads when none is given, in the platform config directory
/// (`~/.config/hyco/up.toml` on Linux).
pub const DEFAULT_FILE: &str = "up.toml";

/// The most entries a file may hold.
pub const MAX_ENTRIES: usize = 64;

/// Waits between a failed entry's attempts; an entry that ran for [`HEALTHY_PERIOD`]
/// starts over from the first.
const RETRY: Backoff = Backoff(&[1, 2, 5, 10, 30, 60]);

/// How long connectors wait for the file's listeners to be online before they start.
const LISTENERS_FIRST: std::time::Duration = std::time::Duration::from_secs(5);

/// Keys a file may not hold: secrets belong in a profile (written 0600, shown masked),
/// and stdin/stdout belong to no entry.
const REFUSED_KEYS: [(&str, &str); 3] = [
    ("key", "keys belong in a profile: give `profile = \"NAME\"` (hyco profile add)"),
    ("connection-string", "connection strings belong in a profile: give `profile = \"NAME\"` (hyco profile add)"),
    ("stdio", "an entry of hyco up cannot use stdin and stdout"),
];

/// One entry of the file: the command it runs, as arguments, and its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `name = "…"`, or the command and its HC (`listen home`), numbered when that repeats.
    pub name: String,
    /// `listen` or `connect` and its arguments, as the command line would give them.
    pub args: Vec<String>,
}

impl Entry {
    /// The entry parsed as its command.
    fn command(&self) -> Result<Command, clap::Error> {
        let argv = std::iter::once("hyco".to_owned()).chain(self.args.iter().cloned());
        Cli::try_parse_from(argv).map(|cli| cli.command)
    }
}

/// Reads `path` into its entries, each checked by the command-line parser. Every mistake
/// is a [`Kind::Config`] error that names the entry and the key.
pub fn read(path: &Path) -> anyhow::Result<Vec<Entry>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        failure(
            Kind::Config,
            format!("cannot read {}: {e}; write one (README: \"Run a machine's whole set\")", path.display()),
        )
    })?;
    parse(&text).map_err(|e| failure(Kind::Config, format!("{}: {e}", path.display())))
}

/// Parses a file's text into its entries (see [`read`]).
pub fn parse(text: &str) -> Result<Vec<Entry>, String> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string().trim_end().to_owned())?;
    let profile = match table.get("profile") {
        None => None,
        Some(toml::Value::String(p)) => Some(p.clone()),
        Some(_) => return Err("`profile` must be a string (a profile's name)".into()),
    };
    if let Some(other) = table.keys().find(|k| !["profile", "listen", "connect"].contains(&k.as_str())) {
        return Err(format!(
            "unknown key `{other}`: a file for hyco up holds `profile`, [[listen]] and [[connect]] tables"
        ));
    }
    // Listeners first: a connector to one of this machine's own listeners then finds it.
    let mut entries = Vec::new();
    for command in ["listen", "connect"] {
        let Some(value) = table.get(command) else { continue };
        let Some(tables) = value.as_array() else {
            return Err(format!("`{command}` must be tables: write [[{command}]]"));
        };
        for (i, t) in tables.iter().enumerate() {
            let Some(t) = t.as_table() else { return Err(format!("`{command}` must be tables: write [[{command}]]")) };
            let at = format!("[[{command}]] #{}", i + 1);
            let entry = entry(command, t, profile.as_deref()).map_err(|e| format!("{at}: {e}"))?;
            entries.push(entry);
        }
    }
    if entries.is_empty() {
        return Err("no entries: add a [[listen]] or [[connect]] table".into());
    }
    if entries.len() > MAX_ENTRIES {
        return Err(format!("{} entries: at most {MAX_ENTRIES}", entries.len()));
    }
    for i in 0..entries.len() {
        let taken = entries[..i].iter().filter(|e| e.name == entries[i].name).count();
        if taken > 0 {
            entries[i].name = format!("{} ({})", entries[i].name, taken + 1);
        }
    }
    Ok(entries)
}

/// One table as its command's arguments: `hc` is the HC argument, `name` the entry's
/// name, every other key a flag (`_` and `-` alike): a string or number its value, `true`
/// the flag alone, an array the flag once per item.
fn entry(command: &str, table: &toml::Table, profile: Option<&str>) -> Result<Entry, String> {
    let mut args = vec![command.to_owned()];
    let mut name = None;
    let mut hc = None;
    let mut has_profile = false;
    for (key, value) in table {
        let flag = key.replace('_', "-");
        if let Some((_, why)) = REFUSED_KEYS.iter().find(|(k, _)| *k == flag) {
            return Err(format!("`{key}`: {why}"));
        }
        let scalar = |v: &toml::Value| match v {
            toml::Value::String(s) => Ok(s.clone()),
            toml::Value::Integer(n) => Ok(n.to_string()),
            _ => Err(format!("`{key}` takes a string or a number")),
        };
        match flag.as_str() {
            "name" => name = Some(scalar(value)?),
            "hc" => hc = Some(scalar(value)?),
            _ => {
                has_profile |= flag == "profile";
                let dashes = format!("--{flag}");
                match value {
                    toml::Value::Boolean(true) => args.push(dashes),
                    toml::Value::Boolean(false) => {}
                    toml::Value::Array(items) => {
                        for item in items {
                            args.push(dashes.clone());
                            args.push(scalar(item)?);
                        }
                    }
                    v => {
                        args.push(dashes);
                        args.push(scalar(v)?);
                    }
                }
            }
        }
    }
    if let Some(hc) = &hc {
        args.insert(1, hc.clone());
    }
    if let (false, Some(p)) = (has_profile, profile) {
        args.extend(["--profile".to_owned(), p.to_owned()]);
    }
    let name = name.unwrap_or_else(|| match &hc {
        Some(hc) => format!("{command} {hc}"),
        None => command.to_owned(),
    });
    let entry = Entry { name, args };
    entry.command().map_err(|e| parser_error(&e, command))?;
    Ok(entry)
}

/// A parser's complaint in the words of a file: its first line, keys without `--`.
fn parser_error(e: &clap::Error, command: &str) -> String {
    let text = e.to_string();
    let line = text.lines().next().unwrap_or_default().trim_start_matches("error: ");
    format!("{} (the keys are hyco {command}'s flags without --; see hyco {command} --help)", line.replace("'--", "'"))
}

/// Where `hyco up` finds its file: the argument, else [`DEFAULT_FILE`] in the platform
/// config directory.
fn path(args: &UpArgs) -> anyhow::Result<PathBuf> {
    if let Some(p) = &args.file {
        return Ok(p.clone());
    }
    let dirs = directories::ProjectDirs::from("", "", "hyco")
        .context("no home directory to find up.toml in; give the file: hyco up FILE")?;
    Ok(dirs.config_dir().join(DEFAULT_FILE))
}

/// Runs `hyco up`: reads the file, then (unless `--check`) runs every entry until
/// `shutdown`, each retried with backoff when it fails. SIGHUP reads the file again (see
/// [`reload`]).
pub async fn run(args: UpArgs, stats: Arc<Stats>, shutdown: CancellationToken) -> anyhow::Result<()> {
    let path = path(&args)?;
    let entries = read(&path)?;
    if args.check {
        for e in &entries {
            println!("{}: hyco {}", e.name, e.args.join(" "));
        }
        return Ok(());
    }
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot handle SIGHUP, which reloads the file")?;
    info!("{} entries from {}", entries.len(), path.display());
    let mut running = Vec::new();
    start(entries, &stats, &shutdown, &mut running).await;
    stats.show();
    loop {
        #[cfg(unix)]
        let hung_up = hangup.recv();
        #[cfg(not(unix))]
        let hung_up = std::future::pending::<Option<()>>();
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(()) = hung_up => reload(&path, &stats, &shutdown, &mut running).await,
        }
    }
    for entry in running {
        let _ = entry.task.await;
    }
    info!("stopped: {}", stats.summary());
    Ok(())
}

/// An entry running in its own task.
struct Running {
    entry: Entry,
    /// Stops this entry alone (a child of the whole command's shutdown).
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// Starts `entries` into `running`, listeners first: connectors start once the listeners
/// are online (or after [`LISTENERS_FIRST`]), so that a connector to this machine's own
/// listener finds it at once.
async fn start(entries: Vec<Entry>, stats: &Arc<Stats>, shutdown: &CancellationToken, running: &mut Vec<Running>) {
    let mut listeners = Vec::new();
    for entry in entries {
        let forward = stats.forward(&entry.name);
        if entry.args.first().is_some_and(|c| c == "listen") {
            listeners.push(forward.channels.subscribe());
        } else if !listeners.is_empty() {
            let online = futures_util::future::join_all(listeners.drain(..).map(|mut channels| async move {
                let _ = channels.wait_for(|n| *n > 0).await;
            }));
            tokio::select! {
                _ = tokio::time::timeout(LISTENERS_FIRST, online) => {}
                () = shutdown.cancelled() => {}
            }
        }
        let stop = shutdown.child_token();
        let span = info_span!("up", entry = %entry.name);
        let task = tokio::spawn(keep(entry.clone(), forward, stop.clone()).instrument(span));
        running.push(Running { entry, stop, task });
    }
}

/// Reads the file again and applies it: an entry whose table is unchanged keeps running
/// (its tunnels untouched); one removed or changed is stopped as a signal would stop it
/// (its tunnels drain), and then the new and changed ones start. A file that cannot be
/// read or has a mistake changes nothing: the entries running go on, and the log says why.
async fn reload(path: &Path, stats: &Arc<Stats>, shutdown: &CancellationToken, running: &mut Vec<Running>) {
    let entries = match read(path) {
        Ok(e) => e,
        Err(e) => return warn!("reload: {e:#}; the entries running go on unchanged"),
    };
    let (kept, gone): (Vec<Running>, Vec<Running>) = running.drain(..).partition(|r| entries.contains(&r.entry));
    let (stopped, unchanged) = (gone.len(), kept.len());
    for r in gone {
        info!("{}: not in the file as it runs now: stopping it", r.entry.name);
        r.stop.cancel();
        let _ = r.task.await;
        stats.retire_forward(&r.entry.name);
    }
    let fresh: Vec<Entry> = entries.into_iter().filter(|e| !kept.iter().any(|r| r.entry == *e)).collect();
    let started = fresh.len();
    *running = kept;
    start(fresh, stats, shutdown, running).await;
    info!("reloaded {}: {unchanged} unchanged, {stopped} stopped, {started} started", path.display());
}

/// Runs one entry until `shutdown`, again after each failure, with backoff.
async fn keep(entry: Entry, stats: Arc<Stats>, shutdown: CancellationToken) {
    let mut attempt = 0;
    loop {
        let command = entry.command().expect("checked when the file was read");
        let started = Instant::now();
        let result = crate::app::run_entry(command, stats.clone(), shutdown.clone()).await;
        if shutdown.is_cancelled() {
            if let Err(e) = result {
                warn!("{e:#}");
            }
            return;
        }
        if started.elapsed() >= HEALTHY_PERIOD {
            attempt = 0;
        }
        let delay = RETRY.delay(attempt);
        attempt += 1;
        let why = match result {
            Ok(()) => "it stopped".to_owned(),
            Err(e) => format!("{e:#}"),
        };
        warn!("{}: {why}; retrying in {} s (the other entries go on)", entry.name, delay.as_secs());
        stats.set_note(Some(format!("failed, retrying in {} s: {why}", delay.as_secs())));
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shutdown.cancelled() => return,
        }
        stats.set_note(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_become_the_commands_flags() {
        let entries = parse(
            r#"
            profile = "home"

            [[listen]]
            hc = "box"
            to = ["ssh=22", "web=8080", "dns=udp://127.0.0.1:53"]
            http = true
            max_rendezvous = 64

            [[connect]]
            name = "db tunnel"
            hc = "office/pg"
            bind = "127.0.0.1:5432"
            profile = "work"
            prewarm = 2

            [[connect]]
            hc = "box"
            forward = ["2222:ssh", "8080:web"]
            "#,
        )
        .unwrap();
        let line = |i: usize| format!("{}: {}", entries[i].name, entries[i].args.join(" "));
        assert_eq!(entries.len(), 3);
        assert_eq!(
            line(0),
            "listen box: listen box --http --max-rendezvous 64 --to ssh=22 --to web=8080 --to dns=udp://127.0.0.1:53 \
             --profile home",
            "listeners first"
        );
        assert_eq!(line(1), "db tunnel: connect office/pg --bind 127.0.0.1:5432 --prewarm 2 --profile work");
        assert_eq!(line(2), "connect box: connect box --forward 2222:ssh --forward 8080:web --profile home");
        assert!(matches!(entries[0].command().unwrap(), Command::Listen(_)));
    }

    #[test]
    fn the_readme_files_parse() {
        let readme = include_str!("../README.md");
        let start = readme.find("### Run a machine's whole set").expect("the section");
        let blocks: Vec<&str> =
            readme[start..].split("```toml\n").skip(1).take(2).filter_map(|b| b.split("```").next()).collect();
        assert_eq!(blocks.len(), 2, "the server's file and the laptop's");
        let server = parse(blocks[0]).unwrap();
        assert_eq!(server.len(), 2);
        assert!(
            server[0]
                .args
                .join(" ")
                .contains("--http --to ssh=22 --to web=unix:/run/app/gunicorn.sock --to dns=udp://127.0.0.1:53"),
            "{:?}",
            server[0].args
        );
        assert!(server[1].args.join(" ").contains("--allow 192.168.1.0/24:*"), "{:?}", server[1].args);
        let laptop = parse(blocks[1]).unwrap();
        assert_eq!(
            laptop[0].args.join(" "),
            "connect home --forward 2222:ssh --forward 8080:web --forward udp:5353:dns --profile relay"
        );
        assert_eq!(laptop[1].args.join(" "), "connect home-lan --socks 1080 --profile relay");
    }

    #[test]
    fn mistakes_name_the_entry_and_the_key() {
        let err = |text: &str| parse(text).unwrap_err();
        assert!(err("").contains("no entries"));
        assert!(err("[[serve]]\nbind = \"1\"").contains("unknown key `serve`"));
        assert!(err("[listen]\nhc = \"a\"").contains("write [[listen]]"));
        let e = err("[[listen]]\nhc = \"a\"\nto = [\"22\"]\n[[listen]]\nhc = \"b\"\ntoo = [\"22\"]");
        assert!(e.starts_with("[[listen]] #2: ") && e.contains("'too'") && e.contains("without --"), "{e}");
        let e = err("[[listen]]\nhc = \"a\"");
        assert!(e.contains("--to") || e.contains("required"), "{e}");
        let e = err("[[connect]]\nhc = \"a/b\"\nbind = \"99999\"");
        assert!(e.contains("out of range"), "{e}");
        let e = err("[[connect]]\nhc = \"a/b\"\nbind = \"9000\"\nkey = \"c2VjcmV0\"");
        assert!(e.contains("profile") && !e.contains("c2VjcmV0"), "{e}");
        assert!(err("[[connect]]\nhc = \"a\"\nconnection_string = \"x\"").contains("profile"));
        assert!(err("[[connect]]\nhc = \"a/b\"\nstdio = true").contains("stdin"));
        assert!(err("[[listen]]\nhc = \"a\"\nto = [1.5]").contains("string or a number"));
        assert!(err("profile = 3\n[[listen]]\nhc = \"a\"\nto = [\"1\"]").contains("`profile` must be a string"));
        let many = "[[connect]]\nhc = \"a/b\"\nbind = \"9000\"\n".repeat(MAX_ENTRIES + 1);
        assert!(err(&many).contains(&format!("at most {MAX_ENTRIES}")));
        let same = parse(&"[[connect]]\nhc = \"a/b\"\nbind = \"9000\"\n".repeat(2)).unwrap();
        assert_eq!(same[1].name, "connect a/b (2)", "names stay apart");
    }
}
