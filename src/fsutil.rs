//! Files as a careful daemon writes them: every write goes to a temp file with a random
//! name in the target's folder, created `O_CREAT|O_EXCL|O_NOFOLLOW` with mode 0600 (or the
//! replaced file's mode, owner and group), fsynced, renamed into place, and the folder
//! fsynced. A temp file is removed on every exit path (errors and interrupted runs drop
//! it; a run killed outright leaves one behind, which the next write into that folder
//! sweeps because its process is gone).

use anyhow::{Context, Result};
use std::collections::hash_map::RandomState;
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// `O_NOFOLLOW` on Linux (the `libc` value; `create_new` already refuses any existing path,
/// symlinks included, so this is belt and braces).
pub const O_NOFOLLOW: i32 = 0o400_000;

/// How much of the replaced file's permissions a new version may keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privacy {
    /// Keep the replaced file's mode (new files: 0600).
    Keep,
    /// The contents hold a secret (stats credentials, a token): never group- or
    /// world-readable, whatever the replaced file's mode was.
    Secret,
}

/// Writes `contents` to `path` atomically: a reader sees the old file or the new one, never a
/// mix, and a crash leaves one of the two in place. Whatever is at `path` — a file or a
/// symlink — is replaced, never followed.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    write_file(path, contents, Privacy::Keep)
}

/// [`write_atomic`] for contents that hold a secret (mode never wider than 0700).
pub fn write_secret(path: &Path, contents: &[u8]) -> Result<()> {
    write_file(path, contents, Privacy::Secret)
}

/// [`write_atomic`] through a symlink at `path`: the link's final target is replaced (a
/// shared inventory behind a link stays shared), the link itself is kept.
pub fn write_through(path: &Path, contents: &[u8]) -> Result<()> {
    let target = match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => fs::canonicalize(path)
            .with_context(|| format!("{} is a symlink to nothing", path.display()))?,
        _ => path.to_path_buf(),
    };
    write_file(&target, contents, Privacy::Keep)
}

fn write_file(path: &Path, contents: &[u8], privacy: Privacy) -> Result<()> {
    let replaced = fs::symlink_metadata(path)
        .ok()
        .filter(|m| m.file_type().is_file());
    let mut tmp = TempFile::new(path)?;
    if let Some(meta) = &replaced {
        // Keep the owner and group (e.g. haproxy.cfg root:haproxy); as a non-root user this
        // only works for our own files, which is all that is needed then.
        let _ = std::os::unix::fs::fchown(tmp.file(), Some(meta.uid()), Some(meta.gid()));
    }
    let mut mode = replaced.as_ref().map_or(0o600, |m| m.mode() & 0o7777);
    if privacy == Privacy::Secret {
        mode &= 0o700;
    }
    tmp.file()
        .set_permissions(fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of {}", tmp.path.display()))?;
    tmp.file()
        .write_all(contents)
        .with_context(|| format!("cannot write {}", tmp.path.display()))?;
    tmp.file()
        .sync_all()
        .with_context(|| format!("cannot sync {}", tmp.path.display()))?;
    tmp.persist(path)?;
    if let Ok(d) = File::open(parent_dir(path)) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// A temp file beside a target, removed when dropped unless persisted.
#[derive(Debug)]
pub struct TempFile {
    file: File,
    path: PathBuf,
    persisted: bool,
}

impl TempFile {
    /// Creates a new empty temp file (mode 0600) in `target`'s folder, first sweeping the
    /// temp files of dead doproxy processes left there.
    pub fn new(target: &Path) -> Result<TempFile> {
        let dir = parent_dir(target);
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".into());
        sweep_stale(&dir, &name);
        let path = dir.join(format!(
            ".{name}.doproxy-{}-{:016x}.tmp",
            std::process::id(),
            random_u64()
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(O_NOFOLLOW)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(TempFile {
            file,
            path,
            persisted: false,
        })
    }

    /// A temp file in `target`'s folder holding `contents` (for a check command to read).
    pub fn with_contents(target: &Path, contents: &[u8]) -> Result<TempFile> {
        let mut t = TempFile::new(target)?;
        t.file()
            .write_all(contents)
            .and_then(|()| t.file().flush())
            .with_context(|| format!("cannot write {}", t.path.display()))?;
        Ok(t)
    }

    /// The temp file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// Renames the temp file to `to` (replacing what is there, never following it).
    pub fn persist(mut self, to: &Path) -> Result<()> {
        fs::rename(&self.path, to).with_context(|| {
            format!("cannot rename {} to {}", self.path.display(), to.display())
        })?;
        self.persisted = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Removes `.<name>.doproxy-<pid>-*.tmp` files in `dir` whose process is gone (a run killed
/// with `kill -9` or a power cut between create and rename).
fn sweep_stale(dir: &Path, name: &str) {
    let prefix = format!(".{name}.doproxy-");
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(rest) = file_name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|r| r.strip_suffix(".tmp"))
        else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// A random number, different in every call and process (names, jitter seeds).
pub fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// The folder holding `path` (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("inv");
        write_atomic(&p, b"1\n").unwrap();
        write_atomic(&p, b"2\n").unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "2\n");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn new_files_are_0600_and_replacements_keep_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cfg");
        write_atomic(&p, b"a").unwrap();
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        write_atomic(&p, b"b").unwrap();
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o644);
        write_secret(&p, b"c").unwrap();
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_symlink_is_replaced_not_followed_unless_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "precious").unwrap();
        let link = dir.path().join("cfg");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        write_atomic(&link, b"new").unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        assert!(!fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());

        let shared = dir.path().join("shared-inventory");
        fs::write(&shared, "1\n").unwrap();
        let inv = dir.path().join("inventory");
        std::os::unix::fs::symlink(&shared, &inv).unwrap();
        write_through(&inv, b"2\n").unwrap();
        assert_eq!(fs::read_to_string(&shared).unwrap(), "2\n");
        assert!(fs::symlink_metadata(&inv).unwrap().file_type().is_symlink());
    }

    #[test]
    fn stale_temps_of_dead_processes_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        // PID 0 is never a live process's ID in /proc.
        let stale = dir.path().join(".cfg.doproxy-0-00000000000000ab.tmp");
        fs::write(&stale, "left by kill -9").unwrap();
        let mine = TempFile::new(&dir.path().join("cfg")).unwrap();
        assert!(!stale.exists());
        let kept = mine.path().to_path_buf();
        assert!(kept.exists());
        drop(mine);
        assert!(!kept.exists());
    }
}
