//! The original's inventory file: read and written whole (atomically, through a symlink to
//! a shared target), locked with `<file>.lock`, watched by polling its contents.

use crate::fsutil;
use crate::inventory::Inventory;
use crate::lock::{self, FileLock};
use crate::store::journal::Journal;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Reads and parses an inventory file. A missing file is an error (as in the original: it
/// may mean a wrong path).
pub fn read(path: &Path) -> Result<Inventory> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "inventory file {} doesn't exist; create an empty one (touch {}) to start",
            path.display(),
            path.display()
        ),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read inventory file {}", path.display()))
        }
    };
    Inventory::parse(&path.display().to_string(), &text)
}

/// Writes the inventory file atomically.
pub fn write(path: &Path, inv: &Inventory) -> Result<()> {
    fsutil::write_through(path, inv.render().as_bytes())
        .with_context(|| format!("cannot write inventory file {}", path.display()))
}

/// The journal beside an inventory file: `<file>.journal`.
pub fn journal_path(inventory: &Path) -> PathBuf {
    let mut name = inventory.file_name().unwrap_or_default().to_os_string();
    name.push(".journal");
    fsutil::parent_dir(inventory).join(name)
}

/// Reads the journal beside `inventory` (absent: empty).
pub fn read_journal(inventory: &Path) -> Result<Journal> {
    let path = journal_path(inventory);
    match std::fs::read_to_string(&path) {
        Ok(t) => Journal::parse(&path.display().to_string(), &t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Journal::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Writes the journal beside `inventory` atomically.
pub fn write_journal(inventory: &Path, journal: &Journal) -> Result<()> {
    let path = journal_path(inventory);
    fsutil::write_atomic(&path, journal.render().as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The inventory kept in a line file.
#[derive(Debug)]
pub struct FileStore {
    /// The inventory file.
    pub path: PathBuf,
    /// How long to wait for the lock.
    pub lock_timeout: Duration,
}

impl FileStore {
    /// Takes `<file>.lock` (released when the guard drops or the process dies).
    pub async fn lock(&self) -> Result<FileLock> {
        FileLock::acquire(&lock::beside(&self.path), self.lock_timeout).await
    }

    /// Change notices, by polling the inventory's and the journal's contents every `poll`.
    pub fn changes(&self, poll: Duration) -> FileChanges {
        let paths = [self.path.clone(), journal_path(&self.path)];
        FileChanges {
            last: paths.iter().map(|p| std::fs::read(p).ok()).collect(),
            paths,
            poll,
        }
    }
}

/// Polls the inventory file and its journal for `reload --watch`.
#[derive(Debug)]
pub struct FileChanges {
    paths: [PathBuf; 2],
    last: Vec<Option<Vec<u8>>>,
    poll: Duration,
}

impl FileChanges {
    /// Returns when either file's contents changed. Cancel safe.
    pub async fn next(&mut self) -> Result<()> {
        loop {
            tokio::time::sleep(self.poll).await;
            let now: Vec<Option<Vec<u8>>> =
                self.paths.iter().map(|p| std::fs::read(p).ok()).collect();
            if now != self.last {
                self.last = now;
                return Ok(());
            }
        }
    }
}
