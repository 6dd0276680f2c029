//! Where the inventory lives, behind one interface: the original's line file (default,
//! locked with `flock`) or an etcd v3 cluster shared by several load balancers (changes by
//! compare-and-swap, a lease-based lock, and a watch for `reload --watch`). Both keep the
//! same text — one droplet ID a line, in creation order — so line numbers mean the same.

pub mod etcd;
pub mod file;
pub mod journal;

use crate::inventory::Inventory;
use crate::lock::FileLock;
use anyhow::{anyhow, Context, Result};
use etcd::{Conflict, EtcdChanges, EtcdStore, Leadership};
use file::{FileChanges, FileStore};
use journal::Journal;
use std::path::PathBuf;
use std::time::Duration;

/// Where the inventory lives (`inventory_file`, or the `inventory:` section).
#[derive(Debug, Clone)]
pub enum Backend {
    /// The original's line file (`inventory_file`).
    File(PathBuf),
    /// An etcd v3 cluster shared by several load balancers.
    Etcd(etcd::Settings),
}

/// The store's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the inventory lives.
    pub backend: Backend,
    /// How long to wait for another doproxy process to release the lock.
    pub lock_timeout: Duration,
}

/// The inventory store: two backends behind one set of calls (an enum rather than a trait
/// object: there are exactly two, and async calls stay plain `async fn`s).
#[derive(Debug)]
pub enum Store {
    /// A line file and its `<file>.lock`.
    File(FileStore),
    /// One etcd key holding the inventory text, and a lock under the same prefix.
    Etcd(EtcdStore),
}

/// The lock over inventory changes and config installs; release it with [`Store::release`].
#[derive(Debug)]
pub enum Guard {
    /// An flock, released when dropped (or when the process dies).
    File(FileLock),
    /// An etcd lease lock; if never released, it lapses when its lease expires.
    Etcd(etcd::Lock),
}

/// Inventory change notices for `reload --watch`.
#[derive(Debug)]
pub enum Changes<'a> {
    /// Polls a file's contents.
    File(FileChanges),
    /// An etcd watch on the inventory key.
    Etcd(EtcdChanges<'a>),
}

impl Changes<'_> {
    /// Returns when the inventory changed. Cancel safe.
    pub async fn next(&mut self) -> Result<()> {
        match self {
            Changes::File(c) => c.next().await,
            Changes::Etcd(c) => c.next().await,
        }
    }
}

impl Store {
    /// The store `settings` describe (`config` names the config file in errors).
    pub fn new(settings: &Settings, config: &std::path::Path) -> Result<Store> {
        Ok(match &settings.backend {
            Backend::File(path) => Store::File(FileStore {
                path: path.clone(),
                lock_timeout: settings.lock_timeout,
            }),
            Backend::Etcd(s) => Store::Etcd(EtcdStore {
                client: etcd::Client::new(s.options()?).map_err(|e| {
                    crate::usage_error(format!("{}: inventory: {e:#}", config.display()))
                })?,
                settings: s.clone(),
                lock_timeout: settings.lock_timeout,
                fence: Default::default(),
                signals: Default::default(),
            }),
        })
    }

    /// For messages: the file's path or the etcd key.
    pub fn describe(&self) -> String {
        match self {
            Store::File(f) => f.path.display().to_string(),
            Store::Etcd(e) => format!("etcd key {}", e.key()),
        }
    }

    /// Releases a lock taken with [`Store::lock`].
    pub async fn release(&self, guard: Guard) -> Result<()> {
        match guard {
            Guard::File(l) => {
                drop(l);
                Ok(())
            }
            Guard::Etcd(l) => {
                if let Store::Etcd(e) = self {
                    e.unfence();
                }
                l.unlock().await.context("releasing the etcd lock")
            }
        }
    }

    /// Creates an empty inventory where there is none yet (`doproxy inventory init`);
    /// returns false when one already exists (it is left as it is).
    pub async fn init(&self) -> Result<bool> {
        match self {
            Store::File(f) => {
                if f.path.exists() {
                    return Ok(false);
                }
                file::write(&f.path, &Inventory::default())?;
                Ok(true)
            }
            Store::Etcd(e) => {
                if e.read_or_empty().await?.mod_revision != 0 {
                    return Ok(false);
                }
                e.write(&Inventory::default(), 0).await?;
                Ok(true)
            }
        }
    }

    /// Takes the lock: the file's flock, or the cluster-wide etcd lock.
    pub async fn lock(&self) -> Result<Guard> {
        match self {
            Store::File(f) => Ok(Guard::File(f.lock().await?)),
            Store::Etcd(e) => Ok(Guard::Etcd(e.lock().await?)),
        }
    }

    /// Reads the inventory. A missing etcd key is an empty inventory; a missing file is an
    /// error (as in the original: it may mean a wrong path).
    pub async fn load(&self) -> Result<Inventory> {
        match self {
            Store::File(f) => file::read(&f.path),
            Store::Etcd(e) => Ok(e.read().await?.inventory),
        }
    }

    /// Reads the inventory and returns a stream of "the inventory changed" notices from
    /// that read on. A store that cannot be read is an error.
    pub async fn watch(&self, poll: Duration) -> Result<Changes<'_>> {
        match self {
            Store::File(f) => {
                file::read(&f.path)?;
                Ok(Changes::File(f.changes(poll)))
            }
            Store::Etcd(e) => {
                let read = e.read().await?;
                Ok(Changes::Etcd(e.changes(read.header_revision)))
            }
        }
    }

    /// Announces this node (`node` names it) as one that routes to the inventory, so
    /// deletes wait for its acknowledgement (etcd; a file store has one node: `None`).
    pub async fn announce(&self, node: &str) -> Result<Option<etcd::Presence>> {
        match self {
            Store::File(_) => Ok(None),
            Store::Etcd(e) => Ok(Some(e.announce(node).await?)),
        }
    }

    /// Waits until every announced node stopped routing to `id` (etcd); returns the nodes
    /// that did not acknowledge within `timeout`.
    pub async fn wait_acks(&self, id: u64, timeout: Duration) -> Result<Vec<String>> {
        match self {
            Store::File(_) => Ok(Vec::new()),
            Store::Etcd(e) => e.wait_acks(id, timeout).await,
        }
    }

    /// Tries to become the autoscaler's leader, returning within about `wait`:
    /// `Some(Leadership)` when this node leads now, `None` when another node does (see
    /// [`EtcdStore::try_lead`]). A file store has a single load balancer, which always
    /// leads ([`Leadership::local`]).
    pub async fn try_lead(
        &self,
        node: &str,
        ttl: Duration,
        wait: Duration,
    ) -> Result<Option<Leadership>> {
        match self {
            Store::File(_) => Ok(Some(Leadership::local())),
            Store::Etcd(e) => e.try_lead(node, ttl, wait).await,
        }
    }

    /// The node name of the autoscaler's current leader, if any (etcd; a file store names
    /// none).
    pub async fn leader(&self) -> Result<Option<String>> {
        match self {
            Store::File(_) => Ok(None),
            Store::Etcd(e) => e.leader().await,
        }
    }

    /// Publishes this node's latest autoscaler signals (opaque JSON) for the leader, valid
    /// for `ttl` after the call (see [`EtcdStore::publish_signals`]); a file store has no
    /// other node to tell: nothing is done.
    pub async fn publish_signals(&self, node: &str, json: &str, ttl: Duration) -> Result<()> {
        match self {
            Store::File(_) => Ok(()),
            Store::Etcd(e) => e.publish_signals(node, json, ttl).await,
        }
    }

    /// Every live node's published signals, (node, json) sorted by node (etcd; a file store
    /// has none: the leader uses its own).
    pub async fn published_signals(&self) -> Result<Vec<(String, String)>> {
        match self {
            Store::File(_) => Ok(Vec::new()),
            Store::Etcd(e) => e.published_signals().await,
        }
    }

    /// Reads the journal (creates not settled, deletes in progress).
    pub async fn journal(&self) -> Result<Journal> {
        match self {
            Store::File(f) => file::read_journal(&f.path),
            Store::Etcd(e) => Ok(e.read_journal().await?.0),
        }
    }

    /// Reads the journal, changes it with `f`, and writes it back (compare-and-swap for
    /// etcd). A journal that cannot be written fails here, before anything is spent.
    pub async fn update_journal(&self, mut f: impl FnMut(&mut Journal)) -> Result<Journal> {
        match self {
            Store::File(s) => {
                let mut j = file::read_journal(&s.path)?;
                f(&mut j);
                file::write_journal(&s.path, &j)?;
                Ok(j)
            }
            Store::Etcd(e) => {
                for _ in 0..5 {
                    let (mut j, rev) = e.read_journal().await?;
                    f(&mut j);
                    match e.write_journal(&j, rev).await {
                        Ok(()) => return Ok(j),
                        Err(err) if err.downcast_ref::<Conflict>().is_some() => continue,
                        Err(err) => return Err(err),
                    }
                }
                Err(anyhow!(
                    "{}: too many concurrent changes; run the command again",
                    e.journal_key()
                ))
            }
        }
    }

    /// Reads, changes with `f`, and writes back (for etcd a compare-and-swap on the revision
    /// read), retrying a lost compare-and-swap a few times (the caller normally holds the
    /// lock, so a conflict means someone bypassed it).
    pub async fn update(&self, mut f: impl FnMut(&mut Inventory)) -> Result<Inventory> {
        match self {
            Store::File(s) => {
                let mut inv = file::read(&s.path)?;
                f(&mut inv);
                file::write(&s.path, &inv)?;
                Ok(inv)
            }
            Store::Etcd(e) => {
                for _ in 0..5 {
                    let mut read = e.read().await?;
                    f(&mut read.inventory);
                    match e.write(&read.inventory, read.mod_revision).await {
                        Ok(()) => return Ok(read.inventory),
                        Err(err) if err.downcast_ref::<Conflict>().is_some() => continue,
                        Err(err) => return Err(err),
                    }
                }
                Err(anyhow!(
                    "{}: too many concurrent changes; run the command again",
                    self.describe()
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_file_store_always_leads_and_publishes_nothing() {
        let store = Store::File(FileStore {
            path: PathBuf::from("/nonexistent/doproxy-inventory"),
            lock_timeout: Duration::from_secs(1),
        });
        let second = Duration::from_secs(1);
        let lead = store.try_lead("lb-1", second, second).await;
        let lead = lead.ok().flatten().expect("a file store leads");
        assert!(!lead.is_lost());
        assert!(lead.resign().await.is_ok());
        assert_eq!(store.leader().await.ok(), Some(None));
        assert!(store.publish_signals("lb-1", "{}", second).await.is_ok());
        assert_eq!(store.published_signals().await.ok(), Some(vec![]));
    }
}
