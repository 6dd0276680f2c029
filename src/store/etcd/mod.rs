//! The etcd v3 client: [`Client`], its [`Options`], and the key-value, transaction and lease calls.
//!
//! A small etcd v3 client speaking the JSON gateway (`POST /v3/...` over HTTP/1.1), for the
//! shared inventory backend: key-value reads and writes, compare-and-swap transactions,
//! leases, a lease-based lock and a watch that survives member restarts.
//!
//! The parts: `transport` (member failover, auth, the generic call path), `wire` (the JSON
//! wire format), `lock` (the lease lock), `watch` (the resumable watch) and `leader` (the
//! autoscaler's leader election and published signals).

mod inventory;
mod leader;
mod lock;
mod transport;
mod watch;
mod wire;

pub use inventory::{Conflict, EtcdChanges, EtcdStore, Presence, Read};

pub use leader::{Leadership, SignalsLease};
pub use lock::Lock;
pub use watch::{Compacted, Watch, WatchEvent};

use anyhow::{anyhow, bail, Result};
use serde_json::json;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use transport::Retry;
use wire::{
    b64_encode, prefix_range, put_body, txn_body, DeleteResponse, HeaderOnly, LeaseGrantResponse,
    LeaseKeepAliveResponse, RangeResponse, RawKv, TxnResponse,
};

/// Keys a range call asks for at a time (`range_prefix` pages through bigger ranges).
const RANGE_PAGE: i64 = 500;

/// The etcd inventory backend's settings (`inventory:` section of doproxy.yml).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Client URLs, e.g. `http://10.0.0.5:2379`.
    pub endpoints: Vec<String>,
    /// Key prefix; the inventory is `<prefix>inventory`, the lock `<prefix>lock/`.
    pub prefix: String,
    /// etcd user, if authentication is on.
    pub username: Option<String>,
    /// etcd password (never printed).
    pub password: Option<crate::secret::Secret>,
    /// Lease TTL of the lock: how long a dead holder keeps others waiting.
    pub lock_ttl: Duration,
    /// Per-request timeout.
    pub timeout: Duration,
    /// A PEM CA certificate for etcd's TLS certificates (private CA).
    pub ca_file: Option<std::path::PathBuf>,
    /// A PEM client certificate for etcd's `--client-cert-auth` (with `key_file`).
    pub cert_file: Option<std::path::PathBuf>,
    /// The client certificate's PEM private key.
    pub key_file: Option<std::path::PathBuf>,
}

impl Settings {
    /// The client options: the PEM files read, the password exposed for the login call.
    pub fn options(&self) -> Result<Options> {
        let read_pem = |field: &str, path: Option<&std::path::Path>| match path {
            None => Ok(None),
            Some(p) => std::fs::read(p)
                .map(Some)
                .map_err(|e| crate::usage_error(format!("{field} {}: {e}", p.display()))),
        };
        let identity_pem = match (
            read_pem("inventory.cert_file", self.cert_file.as_deref())?,
            read_pem("inventory.key_file", self.key_file.as_deref())?,
        ) {
            (Some(mut cert), Some(key)) => {
                cert.push(b'\n');
                cert.extend(key);
                Some(cert)
            }
            _ => None,
        };
        Ok(Options {
            endpoints: self.endpoints.clone(),
            timeout: self.timeout,
            username: self.username.clone(),
            password: self.password.as_ref().map(|p| p.expose().to_string()),
            ca_pem: read_pem("inventory.ca_file", self.ca_file.as_deref())?,
            identity_pem,
        })
    }
}

/// How to reach etcd.
#[derive(Clone)]
pub struct Options {
    /// Client URLs, e.g. `http://127.0.0.1:2379`; tried in order on failures.
    pub endpoints: Vec<String>,
    /// Time limit of one request (one attempt on one endpoint).
    pub timeout: Duration,
    /// User name for etcd authentication; `None` means the cluster is used without auth.
    pub username: Option<String>,
    /// Password of `username` (`None` with a username means an empty password); never logged.
    pub password: Option<String>,
    /// A PEM CA certificate to trust for `https://` endpoints, besides the public roots
    /// (for an etcd whose certificates come from a private CA).
    pub ca_pem: Option<Vec<u8>>,
    /// A PEM client certificate followed by its private key, for etcd's
    /// `--client-cert-auth`; never logged.
    pub identity_pem: Option<Vec<u8>>,
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("endpoints", &self.endpoints)
            .field("timeout", &self.timeout)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca_pem", &self.ca_pem.is_some())
            .field(
                "identity_pem",
                &self.identity_pem.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// One key and its metadata (values are UTF-8 text).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value (UTF-8 text).
    pub value: String,
    /// The store revision of the put that created the key (since its last delete).
    pub create_revision: i64,
    /// The store revision of the key's last modification (put).
    pub mod_revision: i64,
    /// Number of puts since the key was created (1 after the first); a delete resets it to 0.
    pub version: i64,
    /// ID of the lease the key is attached to; 0 when it has none.
    pub lease: i64,
}

/// A transaction guard; every comparison is "equal".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// The key's version (number of puts since creation); 0 = the key does not exist.
    Version(String, i64),
    /// The revision that created the key; 0 = the key does not exist.
    CreateRevision(String, i64),
    /// The revision of the key's last change.
    ModRevision(String, i64),
    /// The key's value (a missing key never compares equal).
    Value(String, String),
}

/// A transaction operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Sets `key` to `value`.
    Put {
        /// The key to set.
        key: String,
        /// The value to store.
        value: String,
        /// The lease to attach the key to; `None` (or `Some(0)`) puts it without a lease.
        lease: Option<i64>,
    },
    /// Deletes one key (a missing key is not an error).
    Delete {
        /// The key to delete.
        key: String,
    },
    /// Deletes every key starting with `prefix`.
    DeletePrefix {
        /// The prefix of the keys to delete.
        prefix: String,
    },
}

/// What a transaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnResult {
    /// True when every comparison held (the success branch ran).
    pub succeeded: bool,
    /// The store revision after the transaction.
    pub revision: i64,
}

/// An etcd v3 client. Cheap to clone (the clones share connections, the auth token and the
/// preferred endpoint).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    endpoints: Vec<String>,
    timeout: Duration,
    credentials: Option<(String, String)>,
    token: Mutex<Option<String>>,
    preferred: AtomicUsize,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("endpoints", &self.inner.endpoints)
            .field("timeout", &self.inner.timeout)
            .field(
                "username",
                &self.inner.credentials.as_ref().map(|(user, _)| user),
            )
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Checks the options and builds the HTTP client (nothing is sent yet).
    pub fn new(opts: Options) -> Result<Client> {
        if opts.endpoints.is_empty() {
            bail!("etcd: no endpoints configured");
        }
        let mut endpoints = Vec::with_capacity(opts.endpoints.len());
        for ep in &opts.endpoints {
            let ep = ep.trim().trim_end_matches('/');
            let rest = ep
                .strip_prefix("http://")
                .or_else(|| ep.strip_prefix("https://"));
            match rest {
                Some(host) if !host.is_empty() && !host.contains('@') && !host.contains('/') => {
                    endpoints.push(ep.to_string())
                }
                Some(host) if host.contains('@') => {
                    bail!("etcd endpoint must not contain credentials; use the username and password settings")
                }
                _ => bail!("etcd endpoint {ep:?} is not of the form http(s)://host:port"),
            }
        }
        if opts.timeout.is_zero() {
            bail!("etcd: the request timeout must be positive");
        }
        let credentials = match (opts.username, opts.password) {
            (Some(u), Some(p)) if !u.is_empty() => Some((u, p)),
            (None, None) => None,
            (Some(u), None) if !u.is_empty() => Some((u, String::new())),
            (None, Some(_)) => bail!("etcd: a password is set but no username"),
            _ => bail!("etcd: the username is empty"),
        };
        let mut builder = reqwest::Client::builder()
            .connect_timeout(opts.timeout)
            .no_proxy()
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(30));
        if let Some(pem) = &opts.ca_pem {
            let ca = reqwest::Certificate::from_pem(pem).map_err(|e| {
                anyhow!(
                    "etcd: the CA certificate is not usable PEM: {}",
                    crate::error::chain(&e)
                )
            })?;
            builder = builder.add_root_certificate(ca);
        }
        if let Some(pem) = &opts.identity_pem {
            // The error would only say "invalid"; it never contains the key.
            let id = reqwest::Identity::from_pem(pem).map_err(|_| {
                anyhow!("etcd: the client certificate and key are not usable PEM (certificate, then its private key)")
            })?;
            builder = builder.identity(id);
        }
        let http = builder.build().map_err(|e| {
            anyhow!(
                "etcd: cannot build the HTTP client: {}",
                crate::error::chain(&e)
            )
        })?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                endpoints,
                timeout: opts.timeout,
                credentials,
                token: Mutex::new(None),
                preferred: AtomicUsize::new(0),
            }),
        })
    }

    /// The endpoint the next call starts with (the last one that answered).
    pub fn current_endpoint(&self) -> &str {
        let i = self.inner.preferred.load(Ordering::Relaxed) % self.inner.endpoints.len();
        &self.inner.endpoints[i]
    }

    /// The value of one key.
    pub async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let body = json!({ "key": b64_encode(key.as_bytes()) });
        let resp: RangeResponse = self.call("/v3/kv/range", &body, Retry::Always).await?;
        resp.kvs.into_iter().next().map(RawKv::decode).transpose()
    }

    /// Every key under `prefix`, sorted by key, and the store revision they were read at
    /// (big ranges are read in pages, all at that revision).
    pub async fn range_prefix(&self, prefix: &str) -> Result<(Vec<KeyValue>, i64)> {
        let (mut key, end) = prefix_range(prefix.as_bytes());
        let mut revision = 0i64;
        let mut out = Vec::new();
        // Bounded: each page moves `key` forward; a billion keys is not an inventory.
        for _ in 0..2_000_000 {
            let mut body = json!({
                "key": b64_encode(&key),
                "range_end": b64_encode(&end),
                "limit": RANGE_PAGE.to_string(),
            });
            if revision > 0 {
                body["revision"] = json!(revision.to_string());
            }
            let resp: RangeResponse = self.call("/v3/kv/range", &body, Retry::Always).await?;
            if revision == 0 {
                revision = resp.header.revision;
            }
            let page = resp
                .kvs
                .into_iter()
                .map(RawKv::decode)
                .collect::<Result<Vec<_>>>()?;
            let Some(last) = page.last() else {
                return Ok((out, revision));
            };
            key = last.key.as_bytes().to_vec();
            key.push(0);
            out.extend(page);
            if !resp.more {
                return Ok((out, revision));
            }
        }
        bail!("etcd range of {prefix:?}: too many pages")
    }

    /// Sets a key (optionally attached to a lease); returns the new store revision.
    pub async fn put(&self, key: &str, value: &str, lease: Option<i64>) -> Result<i64> {
        let body = put_body(key, value, lease);
        let resp: HeaderOnly = self.call("/v3/kv/put", &body, Retry::Always).await?;
        Ok(resp.header.revision)
    }

    /// Deletes a key; returns how many keys were deleted (0 or 1).
    pub async fn delete(&self, key: &str) -> Result<i64> {
        let body = json!({ "key": b64_encode(key.as_bytes()) });
        let resp: DeleteResponse = self
            .call("/v3/kv/deleterange", &body, Retry::Always)
            .await?;
        Ok(resp.deleted)
    }

    /// Runs `success` if every comparison holds, else `failure`, atomically. An error may
    /// mean the outcome is unknown (it says so): re-read before retrying.
    pub async fn txn(
        &self,
        compares: Vec<Compare>,
        success: Vec<Op>,
        failure: Vec<Op>,
    ) -> Result<TxnResult> {
        self.txn_with(&compares, &success, &failure, Retry::IfNotApplied)
            .await
    }

    async fn txn_with(
        &self,
        compares: &[Compare],
        success: &[Op],
        failure: &[Op],
        retry: Retry,
    ) -> Result<TxnResult> {
        let body = txn_body(compares, success, failure);
        let resp: TxnResponse = self.call("/v3/kv/txn", &body, retry).await?;
        Ok(TxnResult {
            succeeded: resp.succeeded,
            revision: resp.header.revision,
        })
    }

    /// Grants a lease of `ttl_secs` seconds (etcd may raise very small TTLs); returns its ID.
    pub async fn lease_grant(&self, ttl_secs: i64) -> Result<i64> {
        if ttl_secs <= 0 {
            bail!("etcd lease TTL must be positive, not {ttl_secs}");
        }
        let body = json!({ "TTL": ttl_secs.to_string(), "ID": "0" });
        let resp: LeaseGrantResponse = self.call("/v3/lease/grant", &body, Retry::Always).await?;
        if !resp.error.is_empty() {
            bail!(
                "etcd lease grant: {}",
                self.clean(&resp.error, self.current_endpoint())
            );
        }
        if resp.id == 0 {
            bail!("etcd lease grant: no lease ID in the answer");
        }
        Ok(resp.id)
    }

    /// Renews a lease; returns the TTL it now has left, or 0 if it has expired (or never
    /// existed).
    pub async fn lease_keepalive(&self, lease: i64) -> Result<i64> {
        let body = json!({ "ID": lease.to_string() });
        let resp: LeaseKeepAliveResponse = self
            .call("/v3/lease/keepalive", &body, Retry::Always)
            .await?;
        Ok(resp.ttl.max(0))
    }

    /// Revokes a lease, deleting the keys attached to it. A lease that has already expired
    /// is not an error.
    pub async fn lease_revoke(&self, lease: i64) -> Result<()> {
        let body = json!({ "ID": lease.to_string() });
        match self
            .call::<HeaderOnly>("/v3/lease/revoke", &body, Retry::Always)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.to_string().contains("requested lease not found") => {
                log::debug!("etcd: lease {lease:x} was already gone when revoked");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn opts(endpoints: &[&str]) -> Options {
        Options {
            endpoints: endpoints.iter().map(|s| s.to_string()).collect(),
            timeout: Duration::from_secs(1),
            username: Some("root".into()),
            password: Some("hunter2-secret".into()),
            ca_pem: None,
            identity_pem: None,
        }
    }

    #[test]
    fn client_options_are_checked_and_never_show_the_password() {
        let c = Client::new(opts(&[
            "http://127.0.0.1:2379/",
            "https://etcd.example:2379",
        ]))
        .unwrap();
        assert_eq!(c.current_endpoint(), "http://127.0.0.1:2379");
        let dbg = format!("{c:?} {:?}", opts(&["http://a:1"]));
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("root"), "{dbg}");
        // The client's own: where it goes and as whom, never with what password.
        let dbg = format!("{c:?}");
        assert!(dbg.contains("https://etcd.example:2379"), "{dbg}");
        assert!(dbg.contains("\"root\""), "{dbg}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        let msg = c.clean("bad\nthing hunter2-secret", "http://x:1");
        assert_eq!(msg, "http://x:1: bad thing <redacted>");
        for bad in [
            &[][..],
            &["127.0.0.1:2379"][..],
            &["ftp://h:1"][..],
            &["http://"][..],
            &["http://u:hunter2-secret@h:1"][..],
        ] {
            let err = Client::new(opts(bad)).unwrap_err().to_string();
            assert!(!err.contains("hunter2"), "{err}");
        }
        let mut o = opts(&["http://h:1"]);
        o.username = None;
        assert!(Client::new(o).is_err());
    }

    #[tokio::test]
    async fn unreachable_endpoints_fail_within_the_deadline_with_one_line() {
        // Port 1 on loopback: nothing listens there, connections are refused at once.
        let mut o = opts(&["http://127.0.0.1:1", "http://127.0.0.1:1"]);
        o.timeout = Duration::from_millis(300);
        o.username = None;
        o.password = None;
        let c = Client::new(o).unwrap();
        let t = Instant::now();
        let err = c.get("k").await.unwrap_err().to_string();
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        assert!(err.contains("no endpoint answered"), "{err}");
        assert!(!err.contains('\n'), "{err}");
        // A transaction that was never sent is retried too, and fails the same way.
        let err = c.txn(vec![], vec![], vec![]).await.unwrap_err().to_string();
        assert!(err.contains("no endpoint answered"), "{err}");
    }
}
