//! The inventory kept in one etcd key (the original file's text), changed by
//! compare-and-swap on the key's revision, locked with the lease lock under the same prefix,
//! watched with a resumable etcd watch.

use super::{Client, Compacted, Compare, Lock, Op, Settings, Watch};
use crate::inventory::Inventory;
use crate::store::journal::Journal;
use anyhow::{bail, Context, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A compare-and-swap that lost: someone else changed the inventory in between.
#[derive(Debug, thiserror::Error)]
#[error("{0} changed since it was read (another node changed the inventory); nothing was written, run the command again")]
pub struct Conflict(pub String);

/// The inventory in etcd.
#[derive(Debug)]
pub struct EtcdStore {
    /// The client.
    pub client: Client,
    /// Its settings.
    pub settings: Settings,
    /// How long to wait for the lock.
    pub lock_timeout: Duration,
    /// The lock this process holds, if any: every write is fenced by it.
    pub fence: Arc<Mutex<Option<Fence>>>,
    /// The lease this process's published autoscaler signals are bound to, once granted
    /// (see [`EtcdStore::publish_signals`]).
    pub signals: Arc<tokio::sync::Mutex<Option<super::SignalsLease>>>,
}

/// A held lock as writes see it: the lock key must still exist with this create revision
/// (compare in every transaction), and a lapsed lease stops writing at once.
#[derive(Debug, Clone)]
pub struct Fence {
    /// The lock key.
    pub key: String,
    /// Its create revision.
    pub create_revision: i64,
    /// Set when the lease lapsed.
    pub lost: Arc<AtomicBool>,
}

/// An inventory read from etcd, with the key's `mod_revision` (0: no key yet) for the
/// compare-and-swap that writes it back, and the cluster revision of the read (to watch
/// from).
#[derive(Debug)]
pub struct Read {
    /// The inventory.
    pub inventory: Inventory,
    /// The key's `mod_revision`.
    pub mod_revision: i64,
    /// The cluster revision the read was served at.
    pub header_revision: i64,
}

impl EtcdStore {
    /// The inventory key, `<prefix>inventory`.
    pub fn key(&self) -> String {
        format!("{}inventory", self.settings.prefix)
    }

    /// The journal key, `<prefix>journal`.
    pub fn journal_key(&self) -> String {
        format!("{}journal", self.settings.prefix)
    }

    /// Reads `key`: its text (empty when it does not exist), its `mod_revision` (0 then)
    /// and the cluster revision of the read.
    async fn read_key(&self, key: &str) -> Result<(String, i64, i64)> {
        let (kvs, header_revision) = self
            .client
            .range_prefix(key)
            .await
            .with_context(|| format!("cannot read etcd key {key}"))?;
        let kv = kvs.into_iter().find(|kv| kv.key == key);
        let (text, mod_revision) = kv.map_or((String::new(), 0), |kv| (kv.value, kv.mod_revision));
        Ok((text, mod_revision, header_revision))
    }

    /// Reads the inventory key. A missing key is an error, never an empty inventory (a
    /// deleted key would otherwise empty every load balancer): `doproxy inventory init`
    /// creates it.
    pub async fn read(&self) -> Result<Read> {
        let read = self.read_or_empty().await?;
        if read.mod_revision == 0 {
            bail!(
                "etcd key {} does not exist; run `doproxy inventory init` to create an empty inventory (a missing key is not read as an empty one)",
                self.key()
            );
        }
        Ok(read)
    }

    /// Reads the inventory key; a missing key reads as empty with `mod_revision` 0 (for
    /// `inventory init` and `import`, which create it).
    pub async fn read_or_empty(&self) -> Result<Read> {
        let key = self.key();
        let (text, mod_revision, header_revision) = self.read_key(&key).await?;
        let inventory = Inventory::parse(&format!("etcd key {key}"), &text)?;
        Ok(Read {
            inventory,
            mod_revision,
            header_revision,
        })
    }

    /// Reads the journal key (missing: an empty journal) and its `mod_revision`.
    pub async fn read_journal(&self) -> Result<(Journal, i64)> {
        let key = self.journal_key();
        let (text, mod_revision, _) = self.read_key(&key).await?;
        Ok((
            Journal::parse(&format!("etcd key {key}"), &text)?,
            mod_revision,
        ))
    }

    /// Writes the journal if its key is still at `mod_revision`.
    pub async fn write_journal(&self, journal: &Journal, mod_revision: i64) -> Result<()> {
        self.write_key(&self.journal_key(), journal.render(), mod_revision)
            .await
    }

    /// Writes `inv` if the key is still at `mod_revision` (0: if it does not exist yet).
    pub async fn write(&self, inv: &Inventory, mod_revision: i64) -> Result<()> {
        self.write_key(&self.key(), inv.render(), mod_revision)
            .await
    }

    /// Writes `value` to `key` if the key is still at `mod_revision` (0: absent) and, when
    /// this process holds the lock, only while it still holds it.
    async fn write_key(&self, key: &str, value: String, mod_revision: i64) -> Result<()> {
        let key = key.to_string();
        let fence = self.fence.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(f) = &fence {
            if f.lost.load(Ordering::SeqCst) {
                bail!(
                    "the etcd lock's lease lapsed (etcd unreachable for longer than lock_ttl); nothing more is written: run the command again"
                );
            }
        }
        let guard = if mod_revision == 0 {
            Compare::CreateRevision(key.clone(), 0)
        } else {
            Compare::ModRevision(key.clone(), mod_revision)
        };
        let mut guards = vec![guard];
        if let Some(f) = &fence {
            guards.push(Compare::CreateRevision(f.key.clone(), f.create_revision));
        }
        let put = Op::Put {
            key: key.clone(),
            value,
            lease: None,
        };
        let r = self
            .client
            .txn(guards, vec![put], vec![])
            .await
            .with_context(|| format!("cannot write etcd key {key}"))?;
        if !r.succeeded {
            if let Some(f) = &fence {
                let held = self.client.get(&f.key).await?;
                if held.is_none_or(|kv| kv.create_revision != f.create_revision) {
                    bail!(
                        "lost the etcd lock {} while writing {key} (its lease expired); nothing was written: run the command again",
                        f.key
                    );
                }
            }
            return Err(Conflict(format!("etcd key {key}")).into());
        }
        Ok(())
    }

    /// Takes the cluster-wide lease lock `<prefix>lock`; from then on this store's writes
    /// are fenced by it until [`EtcdStore::unfence`].
    pub async fn lock(&self) -> Result<Lock> {
        let ttl = i64::try_from(self.settings.lock_ttl.as_secs())
            .unwrap_or(10)
            .max(2);
        let name = format!("{}lock", self.settings.prefix);
        let lock = self
            .client
            .lock(&name, ttl, self.lock_timeout)
            .await
            .with_context(|| format!("cannot take the etcd lock {name}"))?;
        *self.fence.lock().unwrap_or_else(|p| p.into_inner()) = Some(Fence {
            key: lock.key().to_string(),
            create_revision: lock.create_revision(),
            lost: lock.lost_flag(),
        });
        Ok(lock)
    }

    /// Stops fencing writes (the lock was released).
    pub fn unfence(&self) {
        *self.fence.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Change notices (inventory or journal) after the cluster revision `revision`.
    pub fn changes(&self, revision: i64) -> EtcdChanges<'_> {
        EtcdChanges {
            store: self,
            watch: Box::new(self.client.watch(&self.settings.prefix, revision + 1)),
        }
    }

    /// Announces a node that routes to the inventory (a `reload --watch`): a key
    /// `<prefix>nodes/<node>` bound to a lease this process keeps alive, so a delete knows
    /// whom to wait for, and a dead node drops out after `lock_ttl`.
    pub async fn announce(&self, node: &str) -> Result<Presence> {
        let ttl = i64::try_from(self.settings.lock_ttl.as_secs())
            .unwrap_or(10)
            .max(2);
        let lease = self.client.lease_grant(ttl).await?;
        let key = format!("{}nodes/{node}", self.settings.prefix);
        self.client.put(&key, node, Some(lease)).await?;
        let client = self.client.clone();
        let keepalive = tokio::spawn(async move {
            let every = Duration::from_secs(u64::try_from(ttl).unwrap_or(10)) / 3;
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = client.lease_keepalive(lease).await {
                    log::debug!("node lease {lease:x}: keep-alive failed: {e:#}");
                }
            }
        });
        Ok(Presence {
            client: self.client.clone(),
            ack_key: format!("{}acks/{node}", self.settings.prefix),
            lease,
            keepalive,
        })
    }

    /// Waits (up to `timeout`) until every announced node acknowledged that it no longer
    /// routes to droplet `id`; returns the nodes that did not.
    pub async fn wait_acks(&self, id: u64, timeout: Duration) -> Result<Vec<String>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let nodes_prefix = format!("{}nodes/", self.settings.prefix);
        let acks_prefix = format!("{}acks/", self.settings.prefix);
        loop {
            let (nodes, _) = self.client.range_prefix(&nodes_prefix).await?;
            let (acks, _) = self.client.range_prefix(&acks_prefix).await?;
            let missing: Vec<String> = nodes
                .iter()
                .map(|n| n.key.trim_start_matches(&nodes_prefix).to_string())
                .filter(|node| {
                    let key = format!("{acks_prefix}{node}");
                    !acks.iter().any(|a| {
                        a.key == key
                            && serde_json::from_str::<Vec<u64>>(&a.value)
                                .is_ok_and(|ids| ids.contains(&id))
                    })
                })
                .collect();
            if missing.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(missing);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A node's announcement (see [`EtcdStore::announce`]); dropping it stops the lease's
/// keep-alive, so the node drops out of the cluster's view after the lease's TTL.
#[derive(Debug)]
pub struct Presence {
    client: Client,
    ack_key: String,
    lease: i64,
    keepalive: tokio::task::JoinHandle<()>,
}

impl Presence {
    /// Tells deletes that this node no longer routes to the droplets `leaving`.
    pub async fn ack(&self, leaving: &[u64]) -> Result<()> {
        let value = serde_json::to_string(leaving)?;
        self.client
            .put(&self.ack_key, &value, Some(self.lease))
            .await
            .map(|_| ())
    }
}

impl Drop for Presence {
    fn drop(&mut self) {
        self.keepalive.abort();
    }
}

/// An etcd watch on the inventory key for `reload --watch` (it reconnects and resumes by
/// itself, and starts over from a fresh read when etcd compacted the history it needs).
#[derive(Debug)]
pub struct EtcdChanges<'a> {
    store: &'a EtcdStore,
    watch: Box<Watch>,
}

impl EtcdChanges<'_> {
    /// Returns when the inventory changed (or may have: after a compaction). Cancel safe.
    pub async fn next(&mut self) -> Result<()> {
        loop {
            let ours = [self.store.key(), self.store.journal_key()];
            match self.watch.next().await {
                // The prefix also holds the lock, the nodes and their acks: only the
                // inventory and the journal change what a node routes to.
                Ok(events) if !events.iter().any(|e| ours.iter().any(|k| k == e.key())) => continue,
                Ok(_) => return Ok(()),
                Err(e) if e.downcast_ref::<Compacted>().is_some() => {
                    // History is gone: re-read and watch from now; the caller re-syncs.
                    log::warn!("{e:#}");
                    let read = self.store.read().await?;
                    *self.watch = self
                        .store
                        .client
                        .watch(&self.store.settings.prefix, read.header_revision + 1);
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
    }
}
