//! An exclusive lock file (`flock`) shared by doproxy processes on one machine: taken
//! without blocking the async runtime, released when dropped or when the holder dies.

use anyhow::{bail, Context, Result};
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The lock file that guards `path`: `<path>.lock` beside it.
pub fn beside(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    crate::fsutil::parent_dir(path).join(name)
}

/// An exclusive lock held until dropped.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
    path: PathBuf,
}

impl FileLock {
    /// Takes the lock on the file at `path` (created when missing), waiting up to `timeout`
    /// for another doproxy process to release it. The wait sleeps on the async runtime, so
    /// other tasks (an etcd lease's keep-alive, a signal handler) keep running.
    pub async fn acquire(path: &Path, timeout: Duration) -> Result<FileLock> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open lock file {}", path.display()))?;
        let started = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => {
                    return Ok(FileLock {
                        _file: file,
                        path: path.to_path_buf(),
                    })
                }
                Err(TryLockError::WouldBlock) => {
                    if started.elapsed() >= timeout {
                        bail!(
                            "another doproxy is still holding {} after {:.0?}; try again later",
                            path.display(),
                            timeout
                        );
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
}
