//! Where the inventory lives, behind one interface: the original's line file (default,
//! locked with `flock`) or an etcd v3 cluster shared by several load balancers (changes by
//! compare-and-swap, a lease-based lock, and a watch for `reload --watch`). Both keep the
//! same text — one droplet ID a line, in creation order — so line numbers mean the same.

pub mod etcd;

use crate::config::{Config, EtcdSettings, InventoryBackend};
use crate::inventory::Inventory;
use crate::lock::{self, FileLock};
use anyhow::{anyhow, Context, Result};
use std::path::PathBuf;
use std::time::Duration;

/// A compare-and-swap that lost: someone else changed the inventory in between.
#[derive(Debug, thiserror::Error)]
#[error("{0} changed since it was read (another node changed the inventory); nothing was written, run the command again")]
pub struct Conflict(pub String);

/// The inventory store.
#[derive(Debug)]
pub enum Store {
    /// A line file and its `<file>.lock`.
    File {
        /// The inventory file.
        path: PathBuf,
        /// How long to wait for the lock.
        lock_timeout: Duration,
    },
    /// One etcd key holding the inventory text, and a lock under the same prefix.
    Etcd {
        /// The client.
        client: etcd::Client,
        /// Its settings.
        settings: EtcdSettings,
        /// How long to wait for the lock.
        lock_timeout: Duration,
    },
}

/// The lock over inventory changes and config installs; release it with [`Guard::release`].
#[derive(Debug)]
pub enum Guard {
    /// An flock, released when dropped (or when the process dies).
    File(FileLock),
    /// An etcd lease lock; if never released, it lapses when its lease expires.
    Etcd(etcd::Lock),
}

impl Guard {
    /// Releases the lock.
    pub async fn release(self) -> Result<()> {
        match self {
            Guard::File(l) => {
                drop(l);
                Ok(())
            }
            Guard::Etcd(l) => l.unlock().await.context("releasing the etcd lock"),
        }
    }
}

/// Reads a PEM file named by config `field`.
fn read_pem(field: &str, path: Option<&std::path::Path>) -> Result<Option<Vec<u8>>> {
    match path {
        None => Ok(None),
        Some(p) => std::fs::read(p)
            .map(Some)
            .map_err(|e| crate::usage_error(format!("{field} {}: {e}", p.display()))),
    }
}

impl Store {
    /// The store the config names.
    pub fn new(cfg: &Config) -> Result<Store> {
        Ok(match &cfg.inventory {
            InventoryBackend::File(path) => Store::File {
                path: path.clone(),
                lock_timeout: cfg.lock_timeout,
            },
            InventoryBackend::Etcd(s) => Store::Etcd {
                client: etcd::Client::new(etcd::Options {
                    endpoints: s.endpoints.clone(),
                    timeout: s.timeout,
                    username: s.username.clone(),
                    password: s.password.as_ref().map(|p| p.expose().to_string()),
                    ca_pem: read_pem("inventory.ca_file", s.ca_file.as_deref())?,
                    identity_pem: match (
                        read_pem("inventory.cert_file", s.cert_file.as_deref())?,
                        read_pem("inventory.key_file", s.key_file.as_deref())?,
                    ) {
                        (Some(mut cert), Some(key)) => {
                            cert.push(b'\n');
                            cert.extend(key);
                            Some(cert)
                        }
                        _ => None,
                    },
                })
                .map_err(|e| {
                    crate::usage_error(format!("{}: inventory: {e:#}", cfg.path.display()))
                })?,
                settings: s.clone(),
                lock_timeout: cfg.lock_timeout,
            },
        })
    }

    /// For messages: the file's path or the etcd key.
    pub fn describe(&self) -> String {
        match self {
            Store::File { path, .. } => path.display().to_string(),
            Store::Etcd { settings, .. } => format!("etcd key {}", Self::key(settings)),
        }
    }

    fn key(s: &EtcdSettings) -> String {
        format!("{}inventory", s.prefix)
    }

    /// Takes the lock: the file's flock, or the cluster-wide etcd lock.
    pub async fn lock(&self) -> Result<Guard> {
        match self {
            Store::File { path, lock_timeout } => Ok(Guard::File(
                FileLock::acquire(&lock::beside(path), *lock_timeout).await?,
            )),
            Store::Etcd {
                client,
                settings,
                lock_timeout,
            } => {
                let ttl = i64::try_from(settings.lock_ttl.as_secs())
                    .unwrap_or(10)
                    .max(2);
                let name = format!("{}lock", settings.prefix);
                let l = client
                    .lock(&name, ttl, *lock_timeout)
                    .await
                    .with_context(|| format!("cannot take the etcd lock {name}"))?;
                Ok(Guard::Etcd(l))
            }
        }
    }

    /// Reads the inventory. A missing etcd key is an empty inventory; a missing file is an
    /// error (as in the original: it may mean a wrong path).
    pub async fn load(&self) -> Result<Inventory> {
        Ok(self.load_for_watch().await?.0)
    }

    /// Reads the inventory and the point to watch for changes from: for etcd, the cluster
    /// revision of the read (every later change has a higher one); 0 for a file.
    pub async fn load_for_watch(&self) -> Result<(Inventory, i64)> {
        match self {
            Store::File { path, .. } => Ok((Inventory::load(path)?, 0)),
            Store::Etcd {
                client, settings, ..
            } => {
                let key = Self::key(settings);
                let (kvs, header) = client
                    .range_prefix(&key)
                    .await
                    .with_context(|| format!("cannot read etcd key {key}"))?;
                let kv = kvs.into_iter().find(|kv| kv.key == key);
                let (text, rev) = kv.map_or((String::new(), 0), |kv| (kv.value, kv.mod_revision));
                let mut inv = Inventory::parse(&format!("etcd key {key}"), &text)?;
                inv.revision = rev;
                Ok((inv, header))
            }
        }
    }

    /// A stream of "the inventory changed" notices after `revision` (see
    /// [`Store::load_for_watch`]): an etcd watch, or polling the file's contents.
    pub fn changes(&self, revision: i64, poll: Duration) -> Changes {
        match self {
            Store::File { path, .. } => Changes::File {
                path: path.clone(),
                last: std::fs::read(path).ok(),
                poll,
            },
            Store::Etcd {
                client, settings, ..
            } => Changes::Etcd(Box::new(client.watch(&Self::key(settings), revision + 1))),
        }
    }

    /// Writes `inv` back. With etcd this is a compare-and-swap on the revision `inv` was read
    /// at: a change nobody else made in between, or an error.
    pub async fn save(&self, inv: &Inventory) -> Result<()> {
        match self {
            Store::File { path, .. } => inv.save(path),
            Store::Etcd {
                client, settings, ..
            } => {
                let key = Self::key(settings);
                let guard = if inv.revision == 0 {
                    etcd::Compare::CreateRevision(key.clone(), 0)
                } else {
                    etcd::Compare::ModRevision(key.clone(), inv.revision)
                };
                let put = etcd::Op::Put {
                    key: key.clone(),
                    value: inv.render(),
                    lease: None,
                };
                let r = client
                    .txn(vec![guard], vec![put], vec![])
                    .await
                    .with_context(|| format!("cannot write etcd key {key}"))?;
                if !r.succeeded {
                    return Err(Conflict(format!("etcd key {key}")).into());
                }
                Ok(())
            }
        }
    }

    /// Reads, changes with `f`, and writes back, retrying a lost compare-and-swap a few
    /// times (the caller normally holds the lock, so a conflict means someone bypassed it).
    pub async fn update(&self, mut f: impl FnMut(&mut Inventory)) -> Result<Inventory> {
        for _ in 0..5 {
            let mut inv = self.load().await?;
            f(&mut inv);
            match self.save(&inv).await {
                Ok(()) => return Ok(inv),
                Err(e) if e.downcast_ref::<Conflict>().is_some() => continue,
                Err(e) => return Err(e),
            }
        }
        Err(anyhow!(
            "{}: too many concurrent changes; run the command again",
            self.describe()
        ))
    }
}

/// Inventory change notices for `reload --watch`.
#[derive(Debug)]
pub enum Changes {
    /// Polls a file's contents.
    File {
        /// The inventory file.
        path: PathBuf,
        /// Its contents when last seen.
        last: Option<Vec<u8>>,
        /// How often to look.
        poll: Duration,
    },
    /// An etcd watch on the inventory key (it reconnects and resumes by itself).
    Etcd(Box<etcd::Watch>),
}

impl Changes {
    /// Returns when the inventory changed. Cancel safe.
    pub async fn next(&mut self) -> Result<()> {
        match self {
            Changes::File { path, last, poll } => loop {
                tokio::time::sleep(*poll).await;
                let now = std::fs::read(&*path).ok();
                if now != *last {
                    *last = now;
                    return Ok(());
                }
            },
            Changes::Etcd(w) => loop {
                if !w.next().await?.is_empty() {
                    return Ok(());
                }
            },
        }
    }
}
