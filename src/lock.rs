//! An exclusive lock file (`flock`) shared by doproxy processes on one machine: taken
//! without blocking the async runtime, released when dropped or when the holder dies.

use anyhow::{bail, Context, Result};
use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Set for a dry run: a lock file is never created (see [`FileLock::acquire`]).
static DRY_RUN: AtomicBool = AtomicBool::new(false);

/// Marks the process as a dry run (from the command line, before any lock is taken): a
/// dry run writes no file, not even a lock file.
pub fn set_dry_run(on: bool) {
    DRY_RUN.store(on, Ordering::Relaxed);
}

/// The lock file that guards `path`: `<path>.lock` beside it.
pub fn beside(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    crate::fsutil::parent_dir(path).join(name)
}

/// An exclusive lock held until dropped.
#[derive(Debug)]
pub struct FileLock {
    /// `None` for a dry run's lock on a file that does not exist (nothing to exclude: no
    /// doproxy run has changed anything there yet, and a dry run changes nothing).
    _file: Option<File>,
    path: PathBuf,
}

impl FileLock {
    /// Takes the lock on the file at `path` (created when missing), waiting up to `timeout`
    /// for another doproxy process to release it. The wait sleeps on the async runtime, so
    /// other tasks (an etcd lease's keep-alive, a signal handler) keep running. In a dry
    /// run ([`set_dry_run`]) a missing lock file is not created: the dry run goes on
    /// unlocked (it only reads, and every file it reads is replaced atomically); an
    /// existing one is opened read-only and locked as usual.
    pub async fn acquire(path: &Path, timeout: Duration) -> Result<FileLock> {
        Self::acquire_as(path, timeout, DRY_RUN.load(Ordering::Relaxed)).await
    }

    async fn acquire_as(path: &Path, timeout: Duration, dry_run: bool) -> Result<FileLock> {
        let opened = if dry_run {
            OpenOptions::new()
                .read(true)
                .custom_flags(crate::fsutil::O_NOFOLLOW)
                .open(path)
        } else {
            // A symlink planted at the lock's path is never followed (root would otherwise
            // create or truncate its target).
            OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(0o600)
                .custom_flags(crate::fsutil::O_NOFOLLOW)
                .open(path)
        };
        let file = match opened {
            Ok(f) => f,
            Err(e) if dry_run && e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(FileLock {
                    _file: None,
                    path: path.to_path_buf(),
                })
            }
            Err(e) => {
                return Err(e).with_context(|| format!("cannot open lock file {}", path.display()))
            }
        };
        let started = Instant::now();
        let mut told = false;
        loop {
            match file.try_lock() {
                Ok(()) => {
                    if !dry_run {
                        // Who holds it, for the others waiting (`waiting for ... held by`).
                        let _ = file.set_len(0);
                        let _ = std::io::Write::write_all(
                            &mut &file,
                            format!("{}\n", std::process::id()).as_bytes(),
                        );
                    }
                    return Ok(FileLock {
                        _file: Some(file),
                        path: path.to_path_buf(),
                    });
                }
                Err(TryLockError::WouldBlock) => {
                    if started.elapsed() >= timeout {
                        bail!(
                            "another doproxy is still holding {} after {:.0?}; try again later",
                            path.display(),
                            timeout
                        );
                    }
                    if !told && started.elapsed() >= Duration::from_secs(1) {
                        // Waiting is never invisible.
                        let holder = std::fs::read_to_string(path)
                            .ok()
                            .map(|t| t.trim().to_string())
                            .filter(|t| !t.is_empty())
                            .map(|pid| format!(" (held by process {pid})"))
                            .unwrap_or_default();
                        crate::output::note(&format!(
                            "waiting for the lock {}{holder}, up to {timeout:.0?} (lock_timeout)",
                            path.display()
                        ));
                        told = true;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("cannot lock {}", path.display()))
                }
            }
        }
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_planted_symlink_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        let lock = dir.path().join("inventory.lock");
        std::os::unix::fs::symlink(&target, &lock).unwrap();
        let e = FileLock::acquire(&lock, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("cannot open lock file"), "{e:#}");
        assert!(!target.exists(), "the symlink's target was created");
    }

    #[tokio::test]
    async fn lock_excludes_a_second_holder() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("inventory.lock");
        let held = FileLock::acquire(&lock, Duration::from_secs(1))
            .await
            .unwrap();
        let e = FileLock::acquire(&lock, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("another doproxy"), "{e}");
        drop(held);
        FileLock::acquire(&lock, Duration::from_millis(50))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_dry_run_creates_no_lock_file_but_waits_on_an_existing_one() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("inventory.lock");
        FileLock::acquire_as(&missing, Duration::from_millis(50), true)
            .await
            .unwrap();
        assert!(!missing.exists(), "a dry run created {}", missing.display());
        let held = FileLock::acquire(&missing, Duration::from_secs(1))
            .await
            .unwrap();
        let e = FileLock::acquire_as(&missing, Duration::from_millis(50), true).await;
        assert!(e.is_err(), "a dry run ignored a held lock");
        drop(held);
    }
}
