//! The everyday commands that manage credentials rather than move bytes: `hyco profile`,
//! `hyco token` and `hyco completions`.

use std::io::{Read, Write};
use std::path::Path;

use crate::cli::{ProfileAddArgs, ProfileCommand, TokenArgs, TokenRights};
use crate::connstr::{self, ConnectionString, Credential, Endpoint};
use crate::credentials::{self, config_failure};
use crate::error::{Kind, failure};
use crate::profile::{Profile, ProfileStore};
use crate::protocol;
use crate::sas::{self, DEFAULT_KEY_NAME, LISTEN_KEY_NAME, SEND_KEY_NAME};
use crate::secret::Secret;

/// The largest key, token or connection string file read.
pub(crate) const MAX_SECRET_FILE: u64 = 16 * 1024;

/// Reads a secret from `path`, or stdin for `-`; surrounding whitespace is dropped.
fn read_secret(path: &Path, what: &str) -> anyhow::Result<Secret> {
    let mut text = String::new();
    let read = if path == Path::new("-") {
        std::io::stdin().take(MAX_SECRET_FILE + 1).read_to_string(&mut text)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(MAX_SECRET_FILE + 1).read_to_string(&mut text))
    };
    let source = if path == Path::new("-") { "stdin".to_owned() } else { path.display().to_string() };
    read.map_err(|e| failure(Kind::Config, format!("cannot read the {what} from {source}: {e}")))?;
    if text.len() as u64 > MAX_SECRET_FILE {
        return Err(failure(Kind::Config, format!("the {what} in {source} is over {MAX_SECRET_FILE} bytes")));
    }
    let text = text.trim();
    if text.is_empty() {
        return Err(failure(Kind::Config, format!("no {what} in {source}")));
    }
    Ok(Secret::new(text))
}

/// How a profile names an endpoint: `sb://host/` for TLS on 443, else `ws[s]://host:port`.
fn endpoint_text(endpoint: &Endpoint) -> String {
    if endpoint.secure && endpoint.port == 443 { endpoint.sb_uri() } else { endpoint.ws_base() }
}

/// Runs `hyco profile …`; output goes to `out`.
pub fn profile(command: ProfileCommand, out: &mut impl Write) -> anyhow::Result<()> {
    let (path, mut store) = credentials::load_store()?;
    let config = |e: &dyn std::fmt::Display| failure(Kind::Config, e.to_string());
    match command {
        ProfileCommand::Add(args) => {
            let name = args.name.clone();
            let profile = new_profile(args.clone_without_default(), &mut store)?;
            store.set(&name, profile).map_err(|e| config(&e))?;
            if args.default || store.default_name().is_none_or(|d| store.get(d).is_none()) {
                store.set_default(&name).map_err(|e| config(&e))?;
            }
            store.save(&path).map_err(|e| config_failure(e, "fix the profile file's place (HYCO_CONFIG)"))?;
            writeln!(out, "profile '{name}' saved to {}", path.display())?;
        }
        ProfileCommand::List { names: true } => {
            for name in store.names() {
                writeln!(out, "{name}")?;
            }
        }
        ProfileCommand::List { names: false } => {
            if store.is_empty() {
                writeln!(
                    out,
                    "no profiles in {}{} (add one with `hyco profile add`, or run `hyco serve`)",
                    path.display(),
                    if path.exists() { "" } else { ", which does not exist yet" }
                )?;
            }
            let default = store.default_name().map(str::to_owned);
            for name in store.names() {
                let p = store.get(name).expect("listed");
                let mark = if default.as_deref() == Some(name) { '*' } else { ' ' };
                writeln!(out, "{mark} {name:<16} {:<40} {}", p.endpoint, credential_summary(p))?;
            }
        }
        ProfileCommand::Show { name, show_secret } => {
            let p = store.require(&name).map_err(|e| config(&e))?;
            let reveal =
                |s: &Secret| if show_secret { s.expose().to_owned() } else { "*** (--show-secret to print)".into() };
            writeln!(
                out,
                "name:            {name}{}",
                if store.default_name() == Some(&name) { " (default)" } else { "" }
            )?;
            writeln!(out, "endpoint:        {}", p.endpoint)?;
            if let (Some(n), Some(k)) = (&p.key_name, &p.key) {
                writeln!(out, "key name:        {n}")?;
                writeln!(out, "key:             {}", reveal(k))?;
            }
            if let Some(t) = &p.token {
                writeln!(out, "token:           {}", reveal(t))?;
                writeln!(out, "                 {}", credential_summary(p))?;
            }
            if let Some(f) = &p.tls_fingerprint {
                writeln!(out, "tls fingerprint: {f}")?;
            }
            writeln!(out, "file:            {}", path.display())?;
        }
        ProfileCommand::Remove { name } => {
            store.require(&name).map_err(|e| config(&e))?;
            store.remove(&name);
            store.save(&path).map_err(|e| config_failure(e, "fix the profile file's place (HYCO_CONFIG)"))?;
            writeln!(out, "profile '{name}' removed")?;
        }
        ProfileCommand::Default { name } => {
            store.set_default(&name).map_err(|e| config(&e))?;
            store.save(&path).map_err(|e| config_failure(e, "fix the profile file's place (HYCO_CONFIG)"))?;
            writeln!(out, "'{name}' is now the default profile")?;
        }
    }
    Ok(())
}

impl ProfileAddArgs {
    fn clone_without_default(&self) -> Self {
        Self {
            name: self.name.clone(),
            endpoint: self.endpoint.clone(),
            key_name: self.key_name.clone(),
            key_file: self.key_file.clone(),
            token_file: self.token_file.clone(),
            connection_string_file: self.connection_string_file.clone(),
            tls_fingerprint: self.tls_fingerprint.clone(),
            default: false,
        }
    }
}

fn new_profile(args: ProfileAddArgs, _store: &mut ProfileStore) -> anyhow::Result<Profile> {
    let mut profile = if let Some(file) = &args.connection_string_file {
        let text = read_secret(file, "connection string")?;
        let cs = connstr::parse(text.expose()).map_err(|e| failure(Kind::Config, format!("connection string: {e}")))?;
        let endpoint = endpoint_text(&cs.endpoint);
        match cs.credential {
            Credential::Key { name, key } => Profile::with_key(endpoint, name, key),
            Credential::Token(token) => Profile::with_token(endpoint, token),
            Credential::None => {
                let source = if file == Path::new("-") { "stdin".into() } else { file.display().to_string() };
                return Err(failure(Kind::Config, format!("{source}: {}", credentials::NO_CREDENTIAL)));
            }
        }
    } else {
        // clap requires --endpoint or --connection-string-file.
        let endpoint = args.endpoint.join(", ");
        match (&args.key_name, &args.key_file, &args.token_file) {
            (Some(name), Some(file), None) => Profile::with_key(endpoint, name, read_secret(file, "key")?),
            (None, None, Some(file)) => Profile::with_token(endpoint, read_secret(file, "token")?),
            _ => Profile {
                endpoint,
                key_name: None,
                key: None,
                token: None,
                tls_fingerprint: None,
                proxy: None,
                token_command: None,
            },
        }
    };
    profile.tls_fingerprint = args.tls_fingerprint;
    profile.validate().map_err(|e| failure(Kind::Config, format!("profile '{}': {e}", args.name)))?;
    Ok(profile)
}

fn credential_summary(p: &Profile) -> String {
    match (&p.key_name, &p.token) {
        (Some(n), _) => format!("key {n}"),
        (None, Some(t)) => match sas::parse(t.expose()) {
            Ok(t) if t.is_expired(protocol::unix_now(), 0) => {
                format!("token, EXPIRED at {}", protocol::rfc3339(t.expiry()))
            }
            Ok(t) => format!("token for {}, expires {}", t.resource(), protocol::rfc3339(t.expiry())),
            Err(_) => "token (malformed)".into(),
        },
        (None, None) => "no credential".into(),
    }
}

/// Runs `hyco token`: prints a token (or a connection string holding one) on `out`.
pub fn token(args: TokenArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let resolved = credentials::resolve_relay(&args.credentials)?;
    let Credential::Key { name, key } = &resolved.credential else {
        return Err(failure(
            Kind::Config,
            format!("{} holds no key (a token cannot mint another); use a profile with a key", resolved.source),
        ));
    };
    let (key_name, key) = match args.rights {
        TokenRights::Key => (name.clone(), key.clone()),
        rights => {
            if resolved.endpoint.azure_domain().is_some() {
                return Err(failure(
                    Kind::Config,
                    "--rights send|listen works with hyco relays; an Azure key carries its policy's rights: \
                     sign with the key of a policy that grants only what you mean to hand out, with --rights key",
                ));
            }
            if name != DEFAULT_KEY_NAME {
                return Err(failure(
                    Kind::Config,
                    format!(
                        "--rights send|listen derives its key from a hyco relay's {DEFAULT_KEY_NAME}; {} holds \
                         '{name}' (--rights key signs with it as it is)",
                        resolved.source
                    ),
                ));
            }
            let rule = if rights == TokenRights::Send { SEND_KEY_NAME } else { LISTEN_KEY_NAME };
            (rule.to_owned(), sas::derive_key(key, rule))
        }
    };
    let hc = &if args.namespace {
        String::new()
    } else {
        credentials::choose_hc(args.hc.as_deref(), &resolved).map_err(|e| failure(Kind::Config, e.to_string()))?
    };
    let expiry = protocol::unix_now() + args.ttl.as_secs();
    let token = sas::mint(&protocol::token_audience(&resolved.endpoint.host, hc), &key_name, &key, expiry);
    if args.as_connection_string {
        let cs = ConnectionString {
            use_development_emulator: !resolved.endpoint.secure,
            endpoint: resolved.endpoint.clone(),
            credential: Credential::Token(token),
            entity_path: Some(hc.to_owned()),
        };
        writeln!(out, "{}", cs.to_string_with_secrets())?;
    } else {
        writeln!(out, "{}", token.expose())?;
    }
    let rights = match args.rights {
        TokenRights::Send => "Send".to_owned(),
        TokenRights::Listen => "Listen".to_owned(),
        TokenRights::Key => format!("all those of rule '{key_name}'"),
    };
    let audience = if hc.is_empty() { "the whole namespace".to_owned() } else { format!("'{hc}'") };
    tracing::info!("token for {audience}, rights {rights}, expires {}", protocol::rfc3339(expiry));
    Ok(())
}

/// Runs `hyco completions SHELL`.
pub fn completions(shell: clap_complete::Shell, out: &mut impl Write) -> anyhow::Result<()> {
    out.write_all(&crate::generated::completion(shell).1)?;
    Ok(())
}
