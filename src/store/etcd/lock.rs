//! The lease-based lock: [`Client::lock`], its lease renewal loop and the held [`Lock`].

use super::transport::Retry;
use super::{Client, Compare, Op, Watch};
use anyhow::{anyhow, bail, Result};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

impl Client {
    /// Lease-based mutual exclusion (the etcd lock recipe): grant a lease of `ttl_secs`,
    /// create `<name>/<lease in hex>` attached to it, then wait until that key has the
    /// lowest create revision under `<name>/` (waiters queue in arrival order). Gives up
    /// after `timeout` (revoking the lease). While the [`Lock`] lives, a background task
    /// renews the lease every `ttl/3`; a holder that dies loses the lock when the lease
    /// expires.
    pub async fn lock(&self, name: &str, ttl_secs: i64, timeout: Duration) -> Result<Lock> {
        let deadline = Instant::now() + timeout;
        let lease = within(deadline, self.lease_grant(ttl_secs))
            .await
            .unwrap_or_else(|| Err(anyhow!("timed out granting a lease")))
            .map_err(|e| anyhow!("etcd lock {name:?}: {e}"))?;
        let lost = Arc::new(AtomicBool::new(false));
        let keepalive = tokio::spawn(keep_alive(self.clone(), lease, ttl_secs, lost.clone()));
        let key = format!("{name}/{lease:x}");
        match self.wait_for_lock(name, &key, lease, deadline, &lost).await {
            Ok(create_revision) => Ok(Lock {
                client: self.clone(),
                key,
                lease,
                create_revision,
                keepalive,
                lost,
            }),
            Err(e) => {
                keepalive.abort();
                let revoke = self.lease_revoke(lease);
                match tokio::time::timeout(self.inner.timeout, revoke).await {
                    Ok(Ok(())) => {}
                    // The lease lapses by itself after its TTL.
                    Ok(Err(re)) => {
                        log::debug!("etcd lock {name:?}: revoking lease {lease:x} failed: {re}")
                    }
                    Err(_) => log::debug!("etcd lock {name:?}: revoking lease {lease:x} timed out"),
                }
                Err(anyhow!("etcd lock {name:?}: {e}"))
            }
        }
    }

    /// Creates our key and waits for our turn; returns our key's create revision.
    async fn wait_for_lock(
        &self,
        name: &str,
        key: &str,
        lease: i64,
        deadline: Instant,
        lost: &AtomicBool,
    ) -> Result<i64> {
        let prefix = format!("{name}/");
        let create = [Compare::CreateRevision(key.to_string(), 0)];
        let put = [Op::Put {
            key: key.to_string(),
            value: String::new(),
            lease: Some(lease),
        }];
        // The key is unique to our lease, so repeating this after an unknown outcome is safe.
        let txn = self.txn_with(&create, &put, &[], Retry::Always);
        within(deadline, txn)
            .await
            .unwrap_or_else(|| Err(anyhow!("timed out creating the lock key")))?;
        let mut watch: Option<Watch> = None;
        // Bounded by the deadline; the iteration cap is a backstop.
        for _ in 0..1_000_000 {
            let ranged = within(deadline, self.range_prefix(&prefix)).await;
            let (kvs, revision) = match ranged {
                Some(r) => r?,
                None => break,
            };
            let Some(mine) = kvs.iter().find(|kv| kv.key == key) else {
                bail!("our lock key {key:?} disappeared (lease {lease:x} expired?)");
            };
            let first = kvs.iter().min_by_key(|kv| kv.create_revision);
            if first.is_some_and(|kv| kv.key == key) {
                if lost.load(Ordering::SeqCst) {
                    bail!("lease {lease:x} expired while waiting");
                }
                return Ok(mine.create_revision);
            }
            // Wait for a change under the prefix (a release, an expiry), at most 1 s
            // between checks.
            let w = watch.get_or_insert_with(|| self.watch(&prefix, revision + 1));
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let wait = (deadline - now).min(Duration::from_secs(1));
            match tokio::time::timeout(wait, w.next()).await {
                Ok(Ok(_)) | Err(_) => {}
                Ok(Err(e)) => {
                    log::debug!("etcd lock {name:?}: watching {prefix:?} failed ({e}); polling");
                    watch = None;
                    tokio::time::sleep(Duration::from_millis(50).min(wait)).await;
                }
            }
        }
        let holder = tokio::time::timeout(self.inner.timeout, self.range_prefix(&prefix))
            .await
            .ok()
            .and_then(Result::ok)
            .and_then(|(kvs, _)| kvs.into_iter().min_by_key(|kv| kv.create_revision))
            .map(|kv| format!(" (held by {})", kv.key))
            .unwrap_or_default();
        bail!("timed out waiting for the lock{holder}")
    }
}

/// Runs `f` unless `deadline` passes first.
async fn within<F: Future>(deadline: Instant, f: F) -> Option<F::Output> {
    let left = deadline.saturating_duration_since(Instant::now());
    tokio::time::timeout(left, f).await.ok()
}

/// The lock's lease renewal loop (aborted when the lock is released or dropped).
async fn keep_alive(client: Client, lease: i64, ttl_secs: i64, lost: Arc<AtomicBool>) {
    let period =
        Duration::from_millis((ttl_secs.max(1) as u64) * 1000 / 3).max(Duration::from_millis(100));
    let retry = (period / 4).max(Duration::from_millis(50));
    let mut pause = period;
    loop {
        tokio::time::sleep(pause).await;
        match tokio::time::timeout(period, client.lease_keepalive(lease)).await {
            Ok(Ok(ttl)) if ttl > 0 => pause = period,
            Ok(Ok(_)) => {
                log::debug!("etcd lock: lease {lease:x} expired; the lock is lost");
                lost.store(true, Ordering::SeqCst);
                return;
            }
            // Transient failure: try again soon (the lease outlives a few misses).
            Ok(Err(e)) => {
                log::debug!(
                    "etcd lock: renewing lease {lease:x} failed ({e}); retrying in {retry:?}"
                );
                pause = retry;
            }
            Err(_) => {
                log::debug!("etcd lock: renewing lease {lease:x} timed out; retrying in {retry:?}");
                pause = retry;
            }
        }
    }
}

/// A held lock. Release it with [`Lock::unlock`]; dropping it only stops the lease renewal,
/// so the lock is released when the lease expires.
#[derive(Debug)]
pub struct Lock {
    client: Client,
    key: String,
    lease: i64,
    create_revision: i64,
    keepalive: tokio::task::JoinHandle<()>,
    lost: Arc<AtomicBool>,
}

impl Lock {
    /// Releases the lock (revokes the lease, which deletes the lock key).
    pub async fn unlock(self) -> Result<()> {
        self.keepalive.abort();
        self.client.lease_revoke(self.lease).await
    }

    /// The lease holding the lock.
    pub fn lease(&self) -> i64 {
        self.lease
    }

    /// The lock key (`<name>/<lease in hex>`).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The lock key's create revision: guard writes made under the lock with
    /// `Compare::CreateRevision(lock.key(), lock.create_revision())` so that they fail
    /// if the lock was lost meanwhile.
    pub fn create_revision(&self) -> i64 {
        self.create_revision
    }

    /// True once the renewal found the lease expired: the lock is no longer held.
    /// The flag the lease keep-alive sets when the lease lapsed (shared, for fencing).
    pub fn lost_flag(&self) -> Arc<AtomicBool> {
        self.lost.clone()
    }

    /// True once the lease could not be renewed in time: the lock may be someone else's.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        self.keepalive.abort();
    }
}
