//! What an autoscaler needs when several load balancers share one etcd: one leader at a
//! time ([`EtcdStore::try_lead`], the held [`Leadership`]) and every node's latest signals
//! ([`EtcdStore::publish_signals`], [`EtcdStore::published_signals`]).
//!
//! Leadership is one key, `<prefix>autoscale/leader`, holding the leader's node name and
//! attached to a lease of the leader's: it is created only if absent (a transaction on
//! `create_revision == 0`), so at most one lease holds it at a time. A background task
//! renews the lease and checks the key; the leadership counts as lost from the moment the
//! lease could have expired on etcd's side (the last successful renewal's send time plus the
//! TTL), when the renewal finds the lease gone, or when the key is gone or no longer ours.
//!
//! Signals are keys `<prefix>autoscale/signals/<node>` on one lease per process, renewed by
//! each publish: a node that stops publishing drops out after the TTL.

use super::transport::Retry;
use super::{Client, Compare, EtcdStore, KeyValue, Op};
use anyhow::{anyhow, bail, Context, Result};
use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest node name accepted, in bytes (before escaping).
const MAX_NODE_LEN: usize = 253;

/// Checks a node name: not empty, at most 253 bytes, no control characters (it is printed
/// in messages and stored as a value).
pub(crate) fn validate_node(node: &str) -> Result<()> {
    if node.is_empty() {
        bail!("the node name is empty");
    }
    if node.len() > MAX_NODE_LEN {
        bail!("the node name is longer than {MAX_NODE_LEN} bytes");
    }
    if node.chars().any(char::is_control) {
        bail!("the node name {node:?} contains control characters");
    }
    Ok(())
}

/// The node name as one key segment: ASCII letters, digits, `.`, `_` and `-` stay, every
/// other byte (`/` and `%` included) becomes `%XX`, so the key cannot leave its prefix or
/// collide with another node's. Validates the name first.
pub(crate) fn node_segment(node: &str) -> Result<String> {
    validate_node(node)?;
    let mut out = String::with_capacity(node.len());
    for b in node.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            out.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
    Ok(out)
}

/// The node name a key segment made by [`node_segment`] stands for; `None` for a segment
/// it could not have made.
pub(crate) fn node_from_segment(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = segment.get(i + 1..i + 3)?;
                if !hex
                    .bytes()
                    .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
                {
                    return None;
                }
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') => {
                out.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    let node = String::from_utf8(out).ok()?;
    // Only the canonical spelling: one node, one key.
    (node_segment(&node).ok()? == segment).then_some(node)
}

/// A lease TTL in whole seconds, rounded up, at least 1.
fn ttl_secs(ttl: Duration) -> i64 {
    let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    i64::try_from(secs).unwrap_or(i64::MAX).max(1)
}

/// Runs `f` unless `deadline` passes first.
async fn within<F: Future>(deadline: Instant, f: F) -> Option<F::Output> {
    let left = deadline.saturating_duration_since(Instant::now());
    tokio::time::timeout(left, f).await.ok()
}

/// Leadership of `<prefix>autoscale/leader`, held while its lease is renewed (by a
/// background task, stopped when this is dropped or resigned). Check [`Leadership::is_lost`]
/// before acting as the leader; give it up with [`Leadership::resign`] on a clean shutdown.
/// Dropping it without resigning leaves the key until the lease's TTL runs out.
#[derive(Debug)]
pub struct Leadership {
    held: Option<Held>,
}

/// The etcd side of a [`Leadership`].
#[derive(Debug)]
struct Held {
    client: Client,
    key: String,
    lease: i64,
    create_revision: i64,
    state: Arc<LeaseState>,
    keepalive: tokio::task::JoinHandle<()>,
}

/// What the renewal task knows about the lease, shared with [`Leadership::is_lost`].
#[derive(Debug)]
struct LeaseState {
    /// Set when the renewal found the lease expired, or the key gone or not ours.
    lost: AtomicBool,
    /// Until when etcd certainly keeps the lease: the last successful renewal's send time
    /// plus the TTL it reported (the grant's send time plus the requested TTL at first).
    valid_until: Mutex<Instant>,
}

impl LeaseState {
    fn valid_until(&self) -> Instant {
        *self.valid_until.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Lost for good: once the lease may have lapsed, a later renewal does not bring it
    /// back.
    fn is_lost(&self) -> bool {
        if self.lost.load(Ordering::SeqCst) {
            return true;
        }
        let valid_until = self.valid_until.lock().unwrap_or_else(|p| p.into_inner());
        if Instant::now() >= *valid_until {
            self.lost.store(true, Ordering::SeqCst);
            return true;
        }
        false
    }

    /// Moves `valid_until` on to `until`, unless the leadership is lost already.
    fn renewed(&self, until: Instant) -> bool {
        let mut valid_until = self.valid_until.lock().unwrap_or_else(|p| p.into_inner());
        if self.lost.load(Ordering::SeqCst) || Instant::now() >= *valid_until {
            return false;
        }
        *valid_until = until;
        true
    }
}

impl Leadership {
    /// The leadership of a store with a single load balancer (the file store): always held,
    /// never lost; resigning does nothing.
    pub fn local() -> Leadership {
        Leadership { held: None }
    }

    /// True once the leadership may be someone else's: the lease expired or could not be
    /// renewed within its TTL (etcd unreachable), or the leader key vanished or changed
    /// hands. Once true it stays true: try to lead again.
    pub fn is_lost(&self) -> bool {
        self.held.as_ref().is_some_and(|h| h.state.is_lost())
    }

    /// The leader key (`<prefix>autoscale/leader`); `None` for [`Leadership::local`].
    pub fn key(&self) -> Option<&str> {
        self.held.as_ref().map(|h| h.key.as_str())
    }

    /// The leader key's create revision, to fence writes made as the leader with
    /// `Compare::CreateRevision(key, create_revision)`; `None` for [`Leadership::local`].
    pub fn create_revision(&self) -> Option<i64> {
        self.held.as_ref().map(|h| h.create_revision)
    }

    /// Gives the leadership up at once: stops the renewal and revokes the lease, which
    /// deletes the leader key, so another node can lead without waiting for the TTL. A lease
    /// that already expired is not an error.
    pub async fn resign(mut self) -> Result<()> {
        let Some(h) = self.held.take() else {
            return Ok(());
        };
        h.keepalive.abort();
        h.state.lost.store(true, Ordering::SeqCst);
        h.client
            .lease_revoke(h.lease)
            .await
            .with_context(|| format!("cannot resign the leadership {}", h.key))
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        if let Some(h) = &self.held {
            h.keepalive.abort();
        }
    }
}

/// The leadership's renewal loop: renews the lease every `ttl/3` and checks that the key is
/// still ours; sets `lost` and ends when it is not, or when `valid_until` passes without a
/// successful renewal.
async fn renew_leadership(
    client: Client,
    key: String,
    lease: i64,
    ttl_secs: i64,
    state: Arc<LeaseState>,
) {
    let period = Duration::from_millis(u64::try_from(ttl_secs).unwrap_or(1).max(1) * 1000 / 3)
        .max(Duration::from_millis(100));
    let retry = (period / 4).max(Duration::from_millis(50));
    let mut pause = period;
    loop {
        let valid_until = state.valid_until();
        let wake = (Instant::now() + pause).min(valid_until);
        tokio::time::sleep_until(wake.into()).await;
        if Instant::now() >= valid_until {
            log::warn!(
                "etcd: could not renew the leadership lease {lease:x} within its TTL; the leadership is lost"
            );
            break;
        }
        let sent = Instant::now();
        let renew = async {
            let ttl = client.lease_keepalive(lease).await?;
            let kv = client.get(&key).await?;
            anyhow::Ok((ttl, kv))
        };
        match within(valid_until, renew).await {
            None => {} // valid_until passed: caught at the top of the loop
            Some(Ok((0, _))) => {
                log::warn!("etcd: the leadership lease {lease:x} expired; the leadership is lost");
                break;
            }
            Some(Ok((ttl, kv))) => {
                if kv.is_none_or(|kv| kv.lease != lease) {
                    log::warn!("etcd: the leader key {key} is gone or no longer ours; the leadership is lost");
                    break;
                }
                let secs = u64::try_from(ttl).unwrap_or(0);
                if !state.renewed(sent + Duration::from_secs(secs)) {
                    log::warn!(
                        "etcd: the leadership lease {lease:x} was renewed only after its TTL; the leadership is lost"
                    );
                    break;
                }
                pause = period;
            }
            Some(Err(e)) => {
                log::debug!(
                    "etcd: renewing the leadership lease {lease:x} failed ({e:#}); retrying in {retry:?}"
                );
                pause = retry;
            }
        }
    }
    state.lost.store(true, Ordering::SeqCst);
}

/// This process's signals lease: its ID and TTL.
#[derive(Debug, Clone, Copy)]
pub struct SignalsLease {
    lease: i64,
    ttl_secs: i64,
}

impl EtcdStore {
    /// The leader key, `<prefix>autoscale/leader`.
    pub fn leader_key(&self) -> String {
        format!("{}autoscale/leader", self.settings.prefix)
    }

    /// The prefix of the signals keys, `<prefix>autoscale/signals/`.
    pub fn signals_prefix(&self) -> String {
        format!("{}autoscale/signals/", self.settings.prefix)
    }

    /// Tries to become the autoscaler's leader, returning within about `wait` (short, e.g.
    /// 1 s): `Some(Leadership)` when this node leads now, `None` when another node holds it.
    ///
    /// While another node leads, this waits (up to `wait`) for its key to go, so a leader
    /// that resigns is followed at once. Leading means a lease of `ttl` (rounded up to whole
    /// seconds; etcd may raise tiny TTLs) holding `<prefix>autoscale/leader` with `node` as
    /// its value, renewed in the background: a leader that dies is replaced within about
    /// `ttl`. A leader key left by an earlier run under the same node name is not taken
    /// over: it lapses with its lease. Errors when etcd cannot be reached (within about
    /// `wait` plus the request timeout).
    pub async fn try_lead(
        &self,
        node: &str,
        ttl: Duration,
        wait: Duration,
    ) -> Result<Option<Leadership>> {
        validate_node(node)?;
        let key = self.leader_key();
        let ttl_secs = ttl_secs(ttl);
        let deadline = Instant::now() + wait;
        let hard = deadline + self.client.inner.timeout;
        let timed_out = || anyhow!("etcd: timed out trying to lead {key}");
        let mut granted: Option<(i64, Instant)> = None;
        let outcome: Result<Option<KeyValue>> = async {
            // Bounded by the deadlines; the iteration cap is a backstop.
            for _ in 0..10_000 {
                let (kvs, revision) = within(hard, self.client.range_prefix(&key))
                    .await
                    .ok_or_else(timed_out)??;
                if let Some(kv) = kvs.into_iter().find(|kv| kv.key == key) {
                    if let Some((lease, _)) = granted {
                        if kv.lease == lease {
                            // Our create went through although its first answer was lost.
                            return Ok(Some(kv));
                        }
                        // Another node's: our lease is of no use while we wait.
                        granted = None;
                        self.revoke_quietly(lease).await;
                    }
                    if Instant::now() >= deadline {
                        return Ok(None);
                    }
                    self.wait_for_change(&key, revision, deadline).await;
                    continue;
                }
                let (lease, _) = match granted {
                    Some(g) => g,
                    None => {
                        let sent = Instant::now();
                        let lease = within(hard, self.client.lease_grant(ttl_secs))
                            .await
                            .ok_or_else(timed_out)??;
                        *granted.insert((lease, sent))
                    }
                };
                let create = [Compare::CreateRevision(key.clone(), 0)];
                let put = [Op::Put {
                    key: key.clone(),
                    value: node.to_string(),
                    lease: Some(lease),
                }];
                // Repeating it after an unknown outcome is safe: a create of ours that went
                // through shows as the key on our lease above.
                let txn = self.client.txn_with(&create, &put, &[], Retry::Always);
                match within(hard, txn).await {
                    Some(Ok(r)) if r.succeeded => {
                        return Ok(Some(KeyValue {
                            key: key.clone(),
                            value: node.to_string(),
                            create_revision: r.revision,
                            mod_revision: r.revision,
                            version: 1,
                            lease,
                        }))
                    }
                    Some(Ok(_)) => {} // someone else was faster: look again
                    Some(Err(e)) => return Err(e),
                    None => return Err(timed_out()),
                }
            }
            bail!("etcd: {key} changed too often to take")
        }
        .await;
        match (outcome, granted) {
            (Ok(Some(kv)), Some((lease, sent))) => {
                let state = Arc::new(LeaseState {
                    lost: AtomicBool::new(false),
                    valid_until: Mutex::new(sent + Duration::from_secs(ttl_secs.unsigned_abs())),
                });
                let keepalive = tokio::spawn(renew_leadership(
                    self.client.clone(),
                    key.clone(),
                    lease,
                    ttl_secs,
                    state.clone(),
                ));
                log::debug!("etcd: {node} leads {key} (lease {lease:x})");
                Ok(Some(Leadership {
                    held: Some(Held {
                        client: self.client.clone(),
                        key,
                        lease,
                        create_revision: kv.create_revision,
                        state,
                        keepalive,
                    }),
                }))
            }
            (outcome, granted) => {
                if let Some((lease, _)) = granted {
                    self.revoke_quietly(lease).await;
                }
                match outcome {
                    Ok(_) => Ok(None),
                    Err(e) => Err(e.context(format!("cannot try to lead {key}"))),
                }
            }
        }
    }

    /// Waits until `key` may have changed after `revision`, or `deadline` passes.
    async fn wait_for_change(&self, key: &str, revision: i64, deadline: Instant) {
        let mut watch = self.client.watch(key, revision + 1);
        loop {
            match within(deadline, watch.next()).await {
                None => return,
                Some(Ok(events)) if events.iter().any(|e| e.key() == key) => return,
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    // Look again soon rather than trust a broken watch.
                    log::debug!("etcd: watching {key} failed ({e:#}); looking again");
                    let pause = Duration::from_millis(100);
                    tokio::time::sleep_until((Instant::now() + pause).min(deadline).into()).await;
                    return;
                }
            }
        }
    }

    /// Revokes `lease`, within the request timeout; a failure only delays its expiry.
    async fn revoke_quietly(&self, lease: i64) {
        let revoke = self.client.lease_revoke(lease);
        match tokio::time::timeout(self.client.inner.timeout, revoke).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => log::debug!("etcd: revoking lease {lease:x} failed: {e:#}"),
            Err(_) => log::debug!("etcd: revoking lease {lease:x} timed out"),
        }
    }

    /// The node name of the current leader, if any.
    pub async fn leader(&self) -> Result<Option<String>> {
        let key = self.leader_key();
        let kv = self
            .client
            .get(&key)
            .await
            .with_context(|| format!("cannot read etcd key {key}"))?;
        Ok(kv.map(|kv| kv.value))
    }

    /// Publishes this node's latest signals (an opaque JSON text) under a lease-bound key
    /// `<prefix>autoscale/signals/<node>` (the node name escaped to one key segment), so a
    /// node that dies stops counting within `ttl`. Calling it again replaces the value and
    /// renews the lease: the entry lasts `ttl` (rounded up to whole seconds) after the last
    /// publish. The process keeps one lease for this, granted on the first call (and again
    /// when it expired or `ttl` changed).
    pub async fn publish_signals(&self, node: &str, json: &str, ttl: Duration) -> Result<()> {
        let key = format!("{}{}", self.signals_prefix(), node_segment(node)?);
        let ttl_secs = ttl_secs(ttl);
        let mut slot = self.signals.lock().await;
        let result = async {
            // Bounded: a fresh lease is granted at most twice.
            for _ in 0..3 {
                let current = match *slot {
                    Some(s) if s.ttl_secs == ttl_secs => {
                        if self.client.lease_keepalive(s.lease).await? > 0 {
                            Some(s.lease)
                        } else {
                            log::debug!("etcd: the signals lease {:x} expired", s.lease);
                            None
                        }
                    }
                    Some(s) => {
                        self.revoke_quietly(s.lease).await;
                        None
                    }
                    None => None,
                };
                let lease = match current {
                    Some(lease) => lease,
                    None => {
                        *slot = None;
                        let lease = self.client.lease_grant(ttl_secs).await?;
                        *slot = Some(SignalsLease { lease, ttl_secs });
                        lease
                    }
                };
                match self.client.put(&key, json, Some(lease)).await {
                    Ok(_) => return Ok(()),
                    // Expired between the renewal and the put: grant a fresh one.
                    Err(e) if format!("{e:#}").contains("requested lease not found") => {
                        *slot = None;
                    }
                    Err(e) => return Err(e),
                }
            }
            bail!("the signals lease keeps expiring")
        }
        .await;
        result.with_context(|| format!("cannot publish signals to etcd key {key}"))
    }

    /// Every live node's published signals: (node, json), sorted by node.
    pub async fn published_signals(&self) -> Result<Vec<(String, String)>> {
        let prefix = self.signals_prefix();
        let (kvs, _) = self
            .client
            .range_prefix(&prefix)
            .await
            .with_context(|| format!("cannot read etcd keys {prefix}*"))?;
        let mut out: Vec<(String, String)> = kvs
            .into_iter()
            .filter_map(|kv| {
                let segment = kv.key.strip_prefix(&prefix)?;
                let node = node_from_segment(segment);
                if node.is_none() {
                    log::debug!("etcd: ignoring {} (not a node's signals key)", kv.key);
                }
                Some((node?, kv.value))
            })
            .collect();
        out.sort();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_become_one_key_segment_and_back() {
        for (node, segment) in [
            ("lb-1.example.com", "lb-1.example.com"),
            ("lb_2", "lb_2"),
            ("a/b", "a%2Fb"),
            ("../../inventory", "..%2F..%2Finventory"),
            ("/", "%2F"),
            ("100%", "100%25"),
            ("a%2Fb", "a%252Fb"),
            ("sp ace", "sp%20ace"),
            ("ünï", "%C3%BCn%C3%AF"),
        ] {
            let got = node_segment(node).unwrap();
            assert_eq!(got, segment, "{node:?}");
            assert!(!got.contains('/'), "{got}");
            assert_eq!(node_from_segment(&got).as_deref(), Some(node), "{got}");
        }
        // Distinct names, distinct keys.
        assert_ne!(node_segment("a/b").unwrap(), node_segment("a%2Fb").unwrap());
    }

    #[test]
    fn bad_node_names_are_refused() {
        let long = "x".repeat(MAX_NODE_LEN + 1);
        for bad in ["", "a\nb", "tab\there", "nul\0", long.as_str()] {
            assert!(node_segment(bad).is_err(), "{bad:?}");
            assert!(validate_node(bad).is_err(), "{bad:?}");
        }
        assert!(node_segment(&"x".repeat(MAX_NODE_LEN)).is_ok());
    }

    #[test]
    fn only_canonical_segments_are_read_as_node_names() {
        for bad in [
            "a/b", "%2f", "%2", "%", "%ZZ", "a b", "%61", "", "%C3", "x%0A",
        ] {
            assert_eq!(node_from_segment(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn ttls_round_up_to_whole_seconds() {
        assert_eq!(ttl_secs(Duration::from_secs(2)), 2);
        assert_eq!(ttl_secs(Duration::from_millis(1500)), 2);
        assert_eq!(ttl_secs(Duration::ZERO), 1);
        assert_eq!(ttl_secs(Duration::from_millis(1)), 1);
    }

    #[test]
    fn a_lease_past_its_validity_is_lost_for_good() {
        let state = LeaseState {
            lost: AtomicBool::new(false),
            valid_until: Mutex::new(Instant::now() + Duration::from_millis(50)),
        };
        assert!(!state.is_lost());
        assert!(state.renewed(Instant::now() + Duration::from_millis(60)));
        assert!(!state.is_lost());
        std::thread::sleep(Duration::from_millis(80));
        assert!(state.is_lost());
        // A renewal answered too late does not bring it back.
        assert!(!state.renewed(Instant::now() + Duration::from_secs(10)));
        assert!(state.is_lost());

        // Nor does one that comes after the validity ran out with nobody asking meanwhile.
        let unasked = LeaseState {
            lost: AtomicBool::new(false),
            valid_until: Mutex::new(Instant::now()),
        };
        std::thread::sleep(Duration::from_millis(5));
        assert!(!unasked.renewed(Instant::now() + Duration::from_secs(10)));
        assert!(unasked.is_lost());
        // And a leadership given up (resigned) stays given up while still valid.
        let resigned = LeaseState {
            lost: AtomicBool::new(true),
            valid_until: Mutex::new(Instant::now() + Duration::from_secs(10)),
        };
        assert!(!resigned.renewed(Instant::now() + Duration::from_secs(20)));
        assert!(resigned.is_lost());
    }

    #[tokio::test]
    async fn local_leadership_is_held_and_resigns_quietly() {
        let l = Leadership::local();
        assert!(!l.is_lost());
        assert_eq!((l.key(), l.create_revision()), (None, None));
        l.resign().await.unwrap();
    }
}
