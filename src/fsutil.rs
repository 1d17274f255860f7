//! Files that hold secrets: written with mode 0600 from the start, never widened later,
//! never through a symbolic link, and only in a directory other users cannot write to
//! (or a sticky one, such as /tmp, where the file must be ours). Key files are checked
//! for the form of a key before they are used.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::Engine as _;

/// How many bytes a key holds, decoded: Azure's keys and the ones `hyco serve` generates
/// are 32 random bytes in base64 (44 characters).
pub const KEY_BYTES: usize = 32;

/// Writes `data` to `path` (replacing it) readable and writable by the owner only.
///
/// The data goes to a new file with a unique name, created exclusively and without
/// following links, which then replaces `path`. A `path` that is a symbolic link, or
/// that sits in a directory other users may write to (unless the directory is sticky and
/// the file is ours), is refused: a link there could point the secret anywhere.
pub fn write_private(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    create_private_dir(&dir)?;
    let shared = check_dir(&dir)?;
    let existing = std::fs::symlink_metadata(path).ok();
    if let Some(meta) = &existing {
        if meta.file_type().is_symlink() {
            bail!(
                "{} is a symbolic link; hyco writes secrets only to a regular file: remove the link, or name the file it points to",
                path.display()
            );
        }
        if !meta.is_file() {
            bail!("{} is not a regular file", path.display());
        }
    }
    let name = path.file_name().with_context(|| format!("{} names no file", path.display()))?;
    let tmp = dir.join(format!(".{}.{:016x}.tmp", name.to_string_lossy(), rand::random::<u64>()));
    let mut file = create_new_private(&tmp)?;
    let result = (|| {
        if shared && existing.as_ref().is_some_and(|m| !same_owner(m, &file)) {
            bail!(
                "{} belongs to another user and sits in a directory others can write to; hyco will not replace it",
                path.display()
            );
        }
        file.write_all(data).and_then(|()| file.sync_all()).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Reads a key file: one key of [`KEY_BYTES`] bytes or more in base64, on one line. What
/// else a path could point at (a hostname, a certificate) is refused, never used as a key.
pub fn read_key(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let key = text.trim_end_matches(['\r', '\n']);
    if !is_key(key) {
        bail!(
            "{} does not hold a key: a key is {KEY_BYTES} or more random bytes in base64 on one line \
             (`openssl rand -base64 {KEY_BYTES}` makes one)",
            path.display()
        );
    }
    Ok(key.to_owned())
}

/// Whether `text` has the form of a key: base64 of at least [`KEY_BYTES`] bytes.
pub fn is_key(text: &str) -> bool {
    base64::engine::general_purpose::STANDARD.decode(text).is_ok_and(|raw| raw.len() >= KEY_BYTES)
}

/// Whether a file can be read by users other than its owner.
pub fn readable_by_others(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        false
    }
}

/// Creates `dir` and its missing parents, the new ones private to the owner.
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).with_context(|| format!("creating {}", dir.display()))
}

/// Refuses a directory other users may write to, unless it is sticky; returns whether it
/// is such a shared sticky directory.
fn check_dir(dir: &Path) -> anyhow::Result<bool> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir).with_context(|| format!("reading {}", dir.display()))?.permissions().mode();
        let others_write = mode & 0o022 != 0;
        if others_write && mode & 0o1000 == 0 {
            bail!(
                "{} can be written by other users, who could replace a secret kept there; \
                 run `chmod go-w {}` or keep the file elsewhere",
                dir.display(),
                dir.display()
            );
        }
        Ok(others_write)
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(false)
    }
}

/// Creates a file that must not exist yet, not through a link, mode 0600.
fn create_new_private(path: &Path) -> anyhow::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    options.open(path).with_context(|| format!("creating {}", path.display()))
}

/// Whether the file `meta` describes has the same owner as `ours` (a file we created).
fn same_owner(meta: &std::fs::Metadata, ours: &std::fs::File) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        ours.metadata().is_ok_and(|m| m.uid() == meta.uid())
    }
    #[cfg(not(unix))]
    {
        let _ = (meta, ours);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("hyco-fsutil-{}-{tag}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            create_private_dir(&dir).unwrap();
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.') && n.ends_with(".tmp"))
            .collect()
    }

    #[test]
    fn private_files_are_0600() {
        let dir = Scratch::new("mode");
        let path = dir.0.join("sub/secret");
        write_private(&path, b"k").unwrap();
        assert!(!readable_by_others(&path));
        assert_eq!(std::fs::read(&path).unwrap(), b"k");
        write_private(&path, b"k2").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"k2");
        assert!(leftovers(&dir.0.join("sub")).is_empty());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let sub = std::fs::metadata(dir.0.join("sub")).unwrap().permissions().mode();
            assert_eq!(sub & 0o777, 0o700, "a directory made for a secret is private");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(readable_by_others(&path));
        }
    }

    #[cfg(unix)]
    #[test]
    fn links_are_never_written_through() {
        let dir = Scratch::new("links");
        let victim = dir.0.join("victim");
        std::fs::write(&victim, b"untouched").unwrap();
        // A link where the secret goes.
        let path = dir.0.join("namespace.key");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        let err = write_private(&path, b"secret").unwrap_err();
        assert!(format!("{err:#}").contains("symbolic link"), "{err:#}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"untouched");
        assert!(std::fs::symlink_metadata(&path).unwrap().file_type().is_symlink(), "the link is left alone");
        // A link planted where the old code put its fixed temporary file changes nothing.
        let path = dir.0.join("config.toml");
        std::os::unix::fs::symlink(&victim, dir.0.join("config.tmp")).unwrap();
        write_private(&path, b"profile").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"profile");
        assert_eq!(std::fs::read(&victim).unwrap(), b"untouched");
        assert!(leftovers(&dir.0).is_empty());
        // The temporary file itself is never opened through a link.
        let tmp = dir.0.join("planted.tmp");
        std::os::unix::fs::symlink(&victim, &tmp).unwrap();
        assert!(create_new_private(&tmp).is_err());
        assert_eq!(std::fs::read(&victim).unwrap(), b"untouched");
    }

    #[cfg(unix)]
    #[test]
    fn directories_others_can_write_are_refused_unless_sticky() {
        use std::os::unix::fs::PermissionsExt;
        let dir = Scratch::new("shared");
        let path = dir.0.join("config.toml");
        std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = write_private(&path, b"x").unwrap_err();
        assert!(format!("{err:#}").contains("can be written by other users"), "{err:#}");
        assert!(!path.exists());
        std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o770)).unwrap();
        assert!(write_private(&path, b"x").is_err(), "group-writable counts too");
        // Sticky, like /tmp: our own file may be written.
        std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o1777)).unwrap();
        write_private(&path, b"ours").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"ours");
    }

    #[test]
    fn key_files_must_hold_a_key() {
        let dir = Scratch::new("keys");
        let path = dir.0.join("k");
        let good = base64::engine::general_purpose::STANDARD.encode([7u8; KEY_BYTES]);
        std::fs::write(&path, format!("{good}\n")).unwrap();
        assert_eq!(read_key(&path).unwrap(), good);
        let short = base64::engine::general_purpose::STANDARD.encode([7u8; KEY_BYTES - 1]);
        for bad in ["vm\n", "", "not base64 at all!\n", &short, &format!("{good}\n{good}\n")] {
            std::fs::write(&path, bad).unwrap();
            let err = read_key(&path).unwrap_err();
            assert!(format!("{err:#}").contains("does not hold a key"), "{bad:?}: {err:#}");
            assert!(!format!("{err:#}").contains(bad.trim()) || bad.trim().is_empty(), "the content is not echoed");
        }
        assert!(read_key(&dir.0.join("missing")).is_err());
    }
}
