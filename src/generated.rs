//! The shell completions and man pages, generated from the clap definitions in
//! [`crate::cli`] (checked in under `completions/` and `man/`, kept fresh by
//! `tests/generated.rs`; `hyco completions SHELL` prints the same scripts). On top of what
//! clap writes: profile names completed from the profile file (`hyco profile list
//! --names`), and man pages with synopses that show each flag's argument, and EXAMPLES and
//! ENVIRONMENT sections. No behaviour of the commands themselves lives here.

use clap::{ArgAction, Command, CommandFactory};
use clap_complete::Shell;

use crate::cli::Cli;

/// The shells `completions/` holds a script for.
pub const SHELLS: [Shell; 5] = [Shell::Bash, Shell::Zsh, Shell::Fish, Shell::PowerShell, Shell::Elvish];

/// What completes a profile name: the names in the profile file, one a line.
const NAMES: &str = "hyco profile list --names 2>/dev/null";

/// The completion script for `shell`, and the file name it is kept under.
pub fn completion(shell: Shell) -> (String, Vec<u8>) {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "hyco", &mut out);
    let script = String::from_utf8(out).expect("clap writes UTF-8");
    let script = match shell {
        Shell::Bash => bash_profiles(&script),
        Shell::Zsh => zsh_profiles(&script),
        Shell::Fish => fish_profiles(script),
        _ => script,
    };
    let name = match shell {
        Shell::Bash => "hyco.bash",
        Shell::Zsh => "_hyco",
        Shell::Fish => "hyco.fish",
        Shell::PowerShell => "_hyco.ps1",
        _ => "hyco.elv",
    };
    (name.to_owned(), script.into_bytes())
}

/// Bash: a wrapper that completes profile names after `--profile` and `profile
/// show|default|remove`, and hands everything else to clap's `_hyco`.
fn bash_profiles(script: &str) -> String {
    let wrapper = format!(
        r#"_hyco_with_profiles() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD-1]}}" before=""
    if [[ ${{COMP_CWORD}} -ge 2 ]]; then
        before="${{COMP_WORDS[COMP_CWORD-2]}}"
    fi
    if [[ "${{prev}}" == "--profile" ]] || [[ "${{before}}" == "profile" && "${{prev}}" =~ ^(show|default|remove)$ ]]; then
        COMPREPLY=( $(compgen -W "$({NAMES})" -- "${{cur}}") )
        return 0
    fi
    _hyco "$@"
}}

"#
    );
    let registration = "if [[ \"${BASH_VERSINFO[0]}\"";
    let at = script.rfind(registration).expect("clap's bash registration");
    let (body, tail) = script.split_at(at);
    format!("{body}{wrapper}{}", tail.replace("complete -F _hyco ", "complete -F _hyco_with_profiles "))
}

/// Zsh: `_hyco_profiles` for `--profile PROFILE` and `profile show|default|remove PROFILE`.
fn zsh_profiles(script: &str) -> String {
    let function = format!(
        r#"(( $+functions[_hyco_profiles] )) ||
_hyco_profiles() {{
    local -a names
    names=(${{(f)"$({NAMES})"}})
    _describe -t profiles 'profile' names
}}

"#
    );
    let script = script
        .replace(":PROFILE:_default'", ":PROFILE:_hyco_profiles'")
        .replace(&format!("':name -- {EXISTING}:_default'"), &format!("':name -- {EXISTING}:_hyco_profiles'"));
    let registration = "if [ \"$funcstack[1]\" = \"_hyco\" ]";
    let at = script.rfind(registration).expect("clap's zsh registration");
    let (body, tail) = script.split_at(at);
    format!("{body}{function}{tail}")
}

/// The help of `profile show|default|remove`'s argument, which the zsh script is found by.
pub(crate) const EXISTING: &str = "Profile name (`hyco profile list` shows them)";

/// Fish: candidates from the profile file for the same places.
fn fish_profiles(mut script: String) -> String {
    script.push_str(&format!(
        "complete -c hyco -l profile -r -f -a \"({NAMES})\"\n\
         complete -c hyco -n \"__fish_hyco_using_subcommand profile; and __fish_seen_subcommand_from show default \
         remove\" -f -a \"({NAMES})\"\n"
    ));
    script
}

/// Every man page: (file name, roff text), one for `hyco` and one per subcommand.
pub fn man_pages() -> Vec<(String, Vec<u8>)> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut pages = Vec::new();
    collect(&cmd, &mut pages);
    pages
}

fn collect(cmd: &Command, pages: &mut Vec<(String, Vec<u8>)>) {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        collect(sub, pages);
    }
    let name = cmd.get_bin_name().unwrap_or(cmd.get_name()).to_owned();
    let man = clap_mangen::Man::new(cmd.clone().override_usage(synopsis(cmd, &name)));
    let mut page = Vec::new();
    man.render(&mut page).expect("rendering into memory");
    let page = String::from_utf8(page).expect("roff is UTF-8");
    let extra = format!("{}{}", examples(&name), environment(&name));
    let page = match page.find(".SH VERSION") {
        Some(at) => format!("{}{extra}{}", &page[..at], &page[at..]),
        None => page + &extra,
    };
    pages.push((format!("{}.1", man.get_filename().trim_end_matches(".1")), page.into_bytes()));
}

/// `hyco serve [--bind [HOST:]PORT] [--config FILE] …`: every option with its argument.
fn synopsis(cmd: &Command, name: &str) -> String {
    let mut line = name.to_owned();
    let top = !name.contains(' ');
    let mut positionals = Vec::new();
    for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
        if arg.is_global_set() && !top {
            continue;
        }
        if matches!(arg.get_action(), ArgAction::Help | ArgAction::HelpLong | ArgAction::Version) {
            continue;
        }
        let value = arg
            .get_value_names()
            .map(|v| v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|| arg.get_id().as_str().to_uppercase());
        if arg.is_positional() {
            positionals.push(if arg.is_required_set() { format!("<{value}>") } else { format!("[{value}]") });
            continue;
        }
        let flag = match (arg.get_short(), arg.get_long()) {
            (Some(s), Some(l)) => format!("-{s}|--{l}"),
            (Some(s), None) => format!("-{s}"),
            (None, Some(l)) => format!("--{l}"),
            (None, None) => continue,
        };
        let takes_value = !matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse | ArgAction::Count);
        let text = if takes_value { format!("{flag} {value}") } else { flag };
        let repeat = matches!(arg.get_action(), ArgAction::Count | ArgAction::Append);
        let dots = if repeat { "..." } else { "" };
        line.push_str(&if arg.is_required_set() { format!(" {text}{dots}") } else { format!(" [{text}]{dots}") });
    }
    if !top {
        line.push_str(" [GLOBAL OPTIONS]");
    }
    for p in positionals {
        line.push(' ');
        line.push_str(&p);
    }
    if cmd.has_subcommands() {
        line.push_str(" <COMMAND>");
    }
    line
}

/// Examples per page, as a reader types them.
fn examples(name: &str) -> String {
    let lines: &[&str] = match name {
        "hyco" => &[
            "hyco demo                                  # everything in one process",
            "hyco serve                                 # a relay on ws://127.0.0.1:9400",
            "hyco listen web --to 8080                  # expose 127.0.0.1:8080",
            "hyco connect web --bind 9000               # reach it on 127.0.0.1:9000",
        ],
        "hyco serve" => &[
            "hyco serve",
            "hyco serve --bind 0.0.0.0:9400 --public-host relay.example.net",
            "hyco serve --bind 0.0.0.0:9443 --public-host relay.example.net --tls-self-signed",
            "hyco serve --bind 0.0.0.0:443 --public-host relay.example.net --config /etc/hyco/relay.toml \\",
            "    --tls-cert /etc/hyco/fullchain.pem --tls-key /etc/hyco/privkey.pem",
        ],
        "hyco listen" => &[
            "hyco listen web --to 8080",
            "hyco listen box --to ssh=127.0.0.1:22 --to web=127.0.0.1:8080",
            "hyco listen web --http --to 127.0.0.1:3000",
        ],
        "hyco connect" => &[
            "hyco connect web --bind 9000",
            "hyco connect box/web --bind 9000",
            "hyco connect box -L 2222:ssh -L 9000:web        # several forwards, one process",
            "ssh -o ProxyCommand='hyco connect ssh --stdio' user@anything",
        ],
        "hyco up" => &[
            "hyco up --check                            # each entry of ~/.config/hyco/up.toml as its command",
            "hyco up /etc/hyco/up.toml",
        ],
        "hyco demo" => &["hyco demo", "hyco demo --to 127.0.0.1:8080 --bind 9401"],
        "hyco token" => &[
            "hyco token ssh --rights send --ttl 8h --as-connection-string",
            "hyco token web --rights listen --ttl 30d --as-connection-string",
        ],
        "hyco profile" | "hyco profile add" => &[
            "hyco profile add work --endpoint sb://contoso.servicebus.windows.net \\",
            "    --key-name RootManageSharedAccessKey --key-file ~/contoso.key --default",
            "pbpaste | hyco profile add colleague --connection-string-file -",
        ],
        "hyco profile list" => &["hyco profile list"],
        "hyco profile show" => &["hyco profile show work", "hyco profile show work --show-secret"],
        "hyco profile default" => &["hyco profile default local"],
        "hyco profile remove" => &["hyco profile remove colleague"],
        "hyco completions" => &[
            "mkdir -p ~/.local/share/bash-completion/completions",
            "hyco completions bash > ~/.local/share/bash-completion/completions/hyco",
        ],
        _ => &[],
    };
    if lines.is_empty() {
        return String::new();
    }
    format!(".SH EXAMPLES\n.nf\n{}\n.fi\n", lines.iter().map(|l| roff_text(l)).collect::<Vec<_>>().join("\n"))
}

/// The environment variables a page's command reads.
fn environment(name: &str) -> String {
    const VARS: [(&str, &str); 9] = [
        ("HYCO_CONNECTION_STRING", "A connection string; beats HYCO_PROFILE and the default profile, not the flags."),
        ("HYCO_PROFILE", "The profile to use instead of the default one."),
        ("HYCO_CONFIG", "The profile file (default ~/.config/hyco/config.toml)."),
        ("HYCO_DATA_DIR", "Where serve keeps its generated key and certificate (default ~/.local/share/hyco)."),
        ("HYCO_THREADS", "Worker threads, as --threads."),
        ("RUST_LOG", "Log filter; overrides -v and -q."),
        ("HOME", "Where the default profile file and data directory are."),
        (
            "HTTPS_PROXY",
            "HTTP proxy to wss:// relays (http://[user:pass@]host:port); HTTP_PROXY for ws:// ones, ALL_PROXY for \
             both, lower-case forms first. --proxy beats them, and they beat the profile's proxy.",
        ),
        ("NO_PROXY", "Relay hosts reached directly: names (with their subdomains), IP addresses or networks, or *."),
    ];
    let wanted: &[&str] = match name {
        "hyco" => {
            &["HYCO_CONNECTION_STRING", "HYCO_PROFILE", "HYCO_CONFIG", "HYCO_DATA_DIR", "HYCO_THREADS", "RUST_LOG"]
        }
        "hyco listen" | "hyco connect" | "hyco up" => &[
            "HYCO_CONNECTION_STRING",
            "HYCO_PROFILE",
            "HYCO_CONFIG",
            "HYCO_THREADS",
            "RUST_LOG",
            "HTTPS_PROXY",
            "NO_PROXY",
        ],
        "hyco token" => &["HYCO_CONNECTION_STRING", "HYCO_PROFILE", "HYCO_CONFIG", "HYCO_THREADS", "RUST_LOG"],
        "hyco serve" => &["HYCO_DATA_DIR", "HYCO_CONFIG", "HYCO_THREADS", "RUST_LOG"],
        "hyco demo" => &["HYCO_THREADS", "RUST_LOG"],
        n if n.starts_with("hyco profile") => &["HYCO_CONFIG"],
        _ => &[],
    };
    if wanted.is_empty() {
        return String::new();
    }
    let mut out = String::from(".SH ENVIRONMENT\n");
    for (var, text) in VARS.iter().filter(|(v, _)| wanted.contains(v)) {
        out.push_str(&format!(".TP\n\\fB{}\\fR\n{}\n", roff_text(var), roff_text(text)));
    }
    out
}

/// Text escaped for roff: backslashes doubled, hyphens as `\-`, a leading `.` or `'`
/// kept from being read as a request.
fn roff_text(text: &str) -> String {
    let escaped = text.replace('\\', "\\\\").replace('-', "\\-");
    if escaped.starts_with(['.', '\'']) { format!("\\&{escaped}") } else { escaped }
}
