//! A small etcd v3 client speaking the JSON gateway (`POST /v3/...` over HTTP/1.1), for the
//! shared inventory backend: key-value reads and writes, compare-and-swap transactions,
//! leases, a lease-based lock and a watch that survives member restarts.
//!
//! Wire format (etcd's gRPC gateway, protobuf JSON mapping with the proto field names):
//! `bytes` fields (keys, values) are base64 strings, `int64` fields are decimal strings on
//! the way out (numbers are accepted too), and fields holding their zero value are left out.
//! Streaming RPCs (`/v3/watch`, `/v3/lease/keepalive`) answer with newline-delimited
//! `{"result":{...}}` objects, or `{"error":{...}}` when the stream fails.
//!
//! Failover: every unary call starts at the endpoint that last answered and moves on to the
//! next one on a connection error, a timeout or an "unavailable" answer (5xx), with a short
//! backoff after each full pass, until every endpoint was tried and a total deadline of two
//! request timeouts has passed. Calls that are safe to repeat (reads, puts, deletes, lease
//! calls) are retried whatever the failure; a transaction is only retried when the failure
//! proves it was not applied (connection refused, "no leader", ...): otherwise its error says
//! the outcome is unknown, and the caller re-reads and decides (compare-and-swap loops
//! should check whether their change is already there). Every request asks etcd to
//! require a leader, so a member cut off from the cluster answers "no leader" at once
//! (and drops its watch streams) instead of stalling.
//!
//! Auth: with a username, the client gets a token from `/v3/auth/authenticate` before its
//! first call and sends it in the `Authorization` header; an "invalid auth token" answer
//! makes it authenticate again (once per call). Errors are one line and never contain
//! the password.

use anyhow::{anyhow, bail, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Keys a range call asks for at a time (`range_prefix` pages through bigger ranges).
const RANGE_PAGE: i64 = 500;
/// Upper bound on unary attempts, whatever the deadline says.
const MAX_ATTEMPTS: usize = 64;
/// A watch stream silent for this long is checked with a linearizable read on its member.
const WATCH_IDLE_PROBE: Duration = Duration::from_secs(5);
/// Longest pause between two watch reconnection attempts.
const WATCH_MAX_BACKOFF: Duration = Duration::from_millis(500);
/// Sent with every request (the gateway turns `Grpc-Metadata-*` headers into gRPC metadata):
/// a member without a leader then refuses requests at once ("no leader", safe to retry
/// elsewhere) instead of letting them wait for a timeout, and cuts its watch streams when
/// it loses its leader, so a watch never sits on a member cut off from the cluster.
const REQUIRE_LEADER: (&str, &str) = ("grpc-metadata-hasleader", "true");
/// Biggest watch message accepted (etcd's own request limit is 1.5 MiB; events can be
/// bigger, but not this big).
const WATCH_MAX_LINE: usize = 64 << 20;

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

/// A change seen by a [`Watch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// A key was created or changed; holds its new value and metadata.
    Put(KeyValue),
    /// A key was deleted.
    Delete {
        /// The deleted key.
        key: String,
        /// The store revision of the delete.
        mod_revision: i64,
    },
}

impl WatchEvent {
    /// The revision of the change.
    pub fn revision(&self) -> i64 {
        match self {
            WatchEvent::Put(kv) => kv.mod_revision,
            WatchEvent::Delete { mod_revision, .. } => *mod_revision,
        }
    }

    /// The key changed.
    pub fn key(&self) -> &str {
        match self {
            WatchEvent::Put(kv) => &kv.key,
            WatchEvent::Delete { key, .. } => key,
        }
    }
}

/// The error a [`Watch`] returns when it cannot resume because etcd compacted the revisions
/// it still needs: re-read the whole prefix, then watch again from the read's revision + 1.
#[derive(Debug, Clone, thiserror::Error)]
#[error("etcd watch of {prefix:?} cannot continue from revision {requested}: etcd compacted its history up to revision {compact_revision}; re-read the prefix and watch again")]
pub struct Compacted {
    /// The key prefix the watch covers.
    pub prefix: String,
    /// The revision the watch needed to resume from.
    pub requested: i64,
    /// etcd's compaction revision: revisions older than it are gone.
    pub compact_revision: i64,
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

/// Whether a call may be repeated after a failure that leaves its outcome unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Repeating it is harmless (reads, puts, deletes, lease calls).
    Always,
    /// Only repeated when the failure proves it was not applied.
    IfNotApplied,
}

/// Why one attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum CallError {
    /// The request never reached etcd, or etcd refused it before applying it.
    NotApplied(String),
    /// No (complete) answer: timeout, connection lost, 5xx. It may have been applied.
    Unknown(String),
    /// The auth token is missing, expired or invalid.
    Auth(String),
    /// A definite answer: bad request, not found, permission denied...
    Rejected(String),
}

/// Server messages meaning "nothing was applied, try again (elsewhere)".
const NOT_APPLIED_MESSAGES: &[&str] = &[
    "etcdserver: no leader",
    "etcdserver: not capable",
    "etcdserver: too many requests",
    "raft proposal dropped",
];

/// Server messages meaning "get a new auth token".
const AUTH_MESSAGES: &[&str] = &["invalid auth token", "user name is empty"];

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
                    error_chain(&e)
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
        let http = builder
            .build()
            .map_err(|e| anyhow!("etcd: cannot build the HTTP client: {}", error_chain(&e)))?;
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
            Err(e) if e.to_string().contains("requested lease not found") => Ok(()),
            Err(e) => Err(e),
        }
    }

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
                let _ = tokio::time::timeout(self.inner.timeout, revoke).await;
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
                Ok(Err(_)) => {
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

    /// Streams the changes to keys under `prefix` from `start_revision` (0 = from now on).
    /// See [`Watch`].
    pub fn watch(&self, prefix: &str, start_revision: i64) -> Watch {
        let (key, range_end) = prefix_range(prefix.as_bytes());
        let start = start_revision.max(0);
        Watch {
            client: self.clone(),
            prefix: prefix.to_string(),
            key,
            range_end,
            next_revision: start,
            conn: None,
            endpoint: self.inner.preferred.load(Ordering::Relaxed) % self.inner.endpoints.len(),
            failures: 0,
            down_since: None,
            last_error: String::new(),
            compacted: None,
        }
    }

    // ---- the request machinery -------------------------------------------------------

    async fn call<T: DeserializeOwned>(&self, path: &str, body: &Value, retry: Retry) -> Result<T> {
        let value = self.call_value(path, body, retry).await?;
        serde_json::from_value(value).map_err(|e| anyhow!("etcd {path}: unexpected answer: {e}"))
    }

    async fn call_value(&self, path: &str, body: &Value, retry: Retry) -> Result<Value> {
        let inner = &self.inner;
        let n = inner.endpoints.len();
        let first = inner.preferred.load(Ordering::Relaxed) % n;
        let started = Instant::now();
        let deadline = started + inner.timeout * 2;
        let mut reauthenticated = false;
        let mut last_error = String::new();
        let mut attempt = 0usize;
        while attempt < MAX_ATTEMPTS {
            if attempt > 0 && attempt.is_multiple_of(n) {
                let pass = (attempt / n) as u32;
                let pause = Duration::from_millis(100 * u64::from(pass.min(5)));
                tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now())))
                    .await;
            }
            let idx = (first + attempt) % n;
            let endpoint = &inner.endpoints[idx];
            let result = match self.ensure_token(idx).await {
                Ok(token) => self.send(idx, path, body, token.as_deref()).await,
                // The request itself was not sent.
                Err(CallError::Unknown(m)) => Err(CallError::NotApplied(m)),
                Err(e) => Err(e),
            };
            match result {
                Ok(v) => {
                    inner.preferred.store(idx, Ordering::Relaxed);
                    return Ok(v);
                }
                Err(CallError::Auth(msg)) if inner.credentials.is_some() && !reauthenticated => {
                    // Expired or unknown token: authenticate again, same endpoint.
                    reauthenticated = true;
                    self.set_token(None);
                    last_error = self.clean(&msg, endpoint);
                    continue;
                }
                Err(CallError::Auth(msg)) | Err(CallError::Rejected(msg)) => {
                    bail!("etcd {path}: {}", self.clean(&msg, endpoint));
                }
                Err(CallError::Unknown(msg)) if retry == Retry::IfNotApplied => {
                    bail!(
                        "etcd {path}: {} (outcome unknown: it may or may not have been applied; re-read before retrying)",
                        self.clean(&msg, endpoint)
                    );
                }
                Err(CallError::Unknown(msg)) | Err(CallError::NotApplied(msg)) => {
                    last_error = self.clean(&msg, endpoint);
                }
            }
            attempt += 1;
            if attempt >= n && Instant::now() >= deadline {
                break;
            }
        }
        bail!(
            "etcd {path}: no endpoint answered ({attempt} attempts in {:.1}s); last error: {last_error}",
            started.elapsed().as_secs_f64()
        )
    }

    /// The token to send, authenticating at endpoint `idx` first if credentials are set
    /// and there is no token yet.
    async fn ensure_token(&self, idx: usize) -> Result<Option<String>, CallError> {
        let Some((user, password)) = &self.inner.credentials else {
            return Ok(None);
        };
        if let Some(t) = self.token() {
            return Ok(Some(t));
        }
        let body = json!({ "name": user, "password": password });
        let resp = self.send(idx, "/v3/auth/authenticate", &body, None).await;
        let resp = resp.map_err(|e| match e {
            CallError::Auth(m) | CallError::Rejected(m) => {
                CallError::Rejected(format!("authentication as {user:?} failed: {m}"))
            }
            other => other,
        })?;
        let token = resp
            .get("token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                CallError::Rejected(
                    "authentication answer has no token (is auth enabled?)".to_string(),
                )
            })?
            .to_string();
        self.set_token(Some(token.clone()));
        Ok(Some(token))
    }

    fn token(&self) -> Option<String> {
        match self.inner.token.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn set_token(&self, token: Option<String>) {
        match self.inner.token.lock() {
            Ok(mut g) => *g = token,
            Err(p) => *p.into_inner() = token,
        }
    }

    /// One request to one endpoint.
    async fn send(
        &self,
        idx: usize,
        path: &str,
        body: &Value,
        token: Option<&str>,
    ) -> Result<Value, CallError> {
        let url = format!("{}{path}", self.inner.endpoints[idx]);
        let mut req = self
            .inner
            .http
            .post(&url)
            .timeout(self.inner.timeout)
            .header(REQUIRE_LEADER.0, REQUIRE_LEADER.1)
            .json(body);
        if let Some(t) = token {
            req = req.header(reqwest::header::AUTHORIZATION, t);
        }
        let resp = req.send().await.map_err(|e| classify_transport(&e))?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| classify_transport(&e))?;
        parse_answer(status, &bytes)
    }

    /// Makes a server or transport message fit for an error: one line, endpoint named,
    /// never the password.
    fn clean(&self, msg: &str, endpoint: &str) -> String {
        let mut s = format!("{endpoint}: {msg}");
        if let Some((_, pw)) = &self.inner.credentials {
            if !pw.is_empty() {
                s = s.replace(pw.as_str(), "<redacted>");
            }
        }
        s.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

/// Turns one HTTP answer into a JSON value or a classified error. Streaming endpoints
/// answer `{"result":...}` lines; the first one is used.
fn parse_answer(status: u16, bytes: &[u8]) -> Result<Value, CallError> {
    let text = String::from_utf8_lossy(bytes);
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let parsed: Option<Value> = serde_json::from_str(first).ok();
    if (200..300).contains(&status) {
        let Some(v) = parsed else {
            return Err(CallError::Unknown(format!(
                "HTTP {status} with an unreadable body: {}",
                snippet(first)
            )));
        };
        if let Some(result) = v.get("result") {
            return Ok(result.clone());
        }
        if let Some(err) = v.get("error").filter(|e| e.is_object()) {
            let (code, msg) = stream_error(err);
            return Err(classify_status(code, &msg));
        }
        return Ok(v);
    }
    let msg = parsed
        .as_ref()
        .and_then(|v| {
            v.get("message")
                .or_else(|| v.get("error"))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| snippet(first));
    Err(classify_status(status, &format!("{msg} (HTTP {status})")))
}

/// The HTTP status and message of a mid-stream `{"error":{...}}` object.
fn stream_error(err: &Value) -> (u16, String) {
    let code = err
        .get("http_code")
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .unwrap_or(500);
    let msg = err
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("stream error")
        .to_string();
    (code, msg)
}

fn classify_status(status: u16, msg: &str) -> CallError {
    if status == 401 || AUTH_MESSAGES.iter().any(|m| msg.contains(m)) {
        CallError::Auth(msg.to_string())
    } else if NOT_APPLIED_MESSAGES.iter().any(|m| msg.contains(m)) {
        CallError::NotApplied(msg.to_string())
    } else if status >= 500 || status == 429 || status == 408 {
        CallError::Unknown(msg.to_string())
    } else {
        CallError::Rejected(msg.to_string())
    }
}

fn classify_transport(e: &reqwest::Error) -> CallError {
    let msg = error_chain(e);
    if e.is_connect() {
        CallError::NotApplied(msg)
    } else {
        CallError::Unknown(msg)
    }
}

/// An error and its sources on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

fn snippet(s: &str) -> String {
    let s: String = s.chars().take(200).collect();
    if s.is_empty() {
        "(empty body)".to_string()
    } else {
        s
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
    let mut pause = period;
    loop {
        tokio::time::sleep(pause).await;
        match tokio::time::timeout(period, client.lease_keepalive(lease)).await {
            Ok(Ok(ttl)) if ttl > 0 => pause = period,
            Ok(Ok(_)) => {
                lost.store(true, Ordering::SeqCst);
                return;
            }
            // Transient failure: try again soon (the lease outlives a few misses).
            Ok(Err(_)) | Err(_) => pause = (period / 4).max(Duration::from_millis(50)),
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
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        self.keepalive.abort();
    }
}

/// A resumable watch of a key prefix.
///
/// [`Watch::next`] returns the next batch of events (never empty), in revision order; it
/// waits as long as the stream is healthy and quiet (wrap it in a timeout to bound that).
/// When the stream breaks (member killed or restarted, connection lost, member lost its
/// leader, stream silent for 5 s and its member unable to serve a linearizable read), the
/// watch reconnects, to the next endpoint each time with a short backoff (50 ms doubling
/// to 500 ms), and resumes at the revision after the last one it delivered, so nothing is
/// lost or repeated. If no endpoint takes the watch for
/// `max(4 × timeout, 10 s)`, `next` returns an error; calling it again keeps trying.
/// If etcd compacted the revisions still needed, `next` returns a [`Compacted`] error
/// (every call from then on). `next` is cancel safe: dropping its future (e.g. in a
/// `timeout`) loses nothing.
#[derive(Debug)]
pub struct Watch {
    client: Client,
    prefix: String,
    key: Vec<u8>,
    range_end: Vec<u8>,
    /// The revision the stream continues at (0 until the first stream from "now" exists).
    next_revision: i64,
    conn: Option<WatchConn>,
    endpoint: usize,
    failures: u32,
    down_since: Option<Instant>,
    last_error: String,
    compacted: Option<Compacted>,
}

#[derive(Debug)]
struct WatchConn {
    resp: reqwest::Response,
    buf: Vec<u8>,
    endpoint: usize,
    created: bool,
}

/// What one stream message means for the watch.
enum Line {
    Events(Vec<WatchEvent>),
    Nothing,
    Reconnect(String),
}

impl Watch {
    /// Every event up to this revision has been delivered (the last delivered event's
    /// revision, or the revision the watch started after).
    pub fn revision(&self) -> i64 {
        (self.next_revision - 1).max(0)
    }

    /// The endpoint of the current stream, if connected.
    pub fn endpoint(&self) -> Option<&str> {
        self.conn
            .as_ref()
            .map(|c| self.client.inner.endpoints[c.endpoint].as_str())
    }

    /// The next batch of events; see [`Watch`].
    pub async fn next(&mut self) -> Result<Vec<WatchEvent>> {
        let budget = (self.client.inner.timeout * 4).max(Duration::from_secs(10));
        // Bounded: every iteration either handles a message, reads from the stream,
        // probes it, or makes a (backed-off) connection attempt counted against `budget`.
        loop {
            if let Some(c) = &self.compacted {
                return Err(c.clone().into());
            }
            // 1. Messages already received.
            while let Some(line) = self.conn.as_mut().and_then(|c| take_line(&mut c.buf)) {
                match self.handle_line(&line) {
                    Line::Events(ev) => return Ok(ev),
                    Line::Nothing => {}
                    Line::Reconnect(why) => {
                        self.broken(why);
                        break;
                    }
                }
            }
            if let Some(c) = &self.compacted {
                return Err(c.clone().into());
            }
            // 2. Read more from the stream.
            if let Some(conn) = self.conn.as_mut() {
                match tokio::time::timeout(WATCH_IDLE_PROBE, conn.resp.chunk()).await {
                    Ok(Ok(Some(bytes))) => {
                        conn.buf.extend_from_slice(&bytes);
                        if conn.buf.len() > WATCH_MAX_LINE {
                            self.broken("watch message too big".to_string());
                        }
                    }
                    Ok(Ok(None)) => self.broken("stream ended".to_string()),
                    Ok(Err(e)) => self.broken(error_chain(&e)),
                    Err(_) => {
                        let idx = conn.endpoint;
                        if !self.probe(idx).await {
                            self.broken("stream silent and its member unavailable".to_string());
                        }
                    }
                }
                continue;
            }
            // 3. (Re)connect.
            if let Some(since) = self.down_since {
                if since.elapsed() >= budget {
                    self.down_since = None;
                    bail!(
                        "etcd watch of {:?}: no endpoint took the watch for {:.1}s (will keep trying on the next call); last error: {}",
                        self.prefix,
                        budget.as_secs_f64(),
                        self.last_error
                    );
                }
            }
            if self.failures > 0 {
                let exp = self.failures.saturating_sub(1).min(5);
                let pause = Duration::from_millis(50u64 << exp).min(WATCH_MAX_BACKOFF);
                tokio::time::sleep(pause).await;
            }
            if let Err(why) = self.connect().await {
                self.broken(why);
            }
        }
    }

    /// Records a broken stream: drop it, move to the next endpoint.
    fn broken(&mut self, why: String) {
        self.last_error = why.split_whitespace().collect::<Vec<_>>().join(" ");
        let n = self.client.inner.endpoints.len();
        // A stream that was working is retried elsewhere after a token pause (50 ms, so
        // that a server that keeps accepting and dropping watches cannot make this spin);
        // repeated failures back off up to WATCH_MAX_BACKOFF.
        let was_working = self.conn.as_ref().is_some_and(|c| c.created);
        self.conn = None;
        self.endpoint = (self.endpoint + 1) % n;
        if was_working {
            self.failures = 1;
        } else {
            self.failures = self.failures.saturating_add(1);
        }
        if self.down_since.is_none() {
            self.down_since = Some(Instant::now());
        }
    }

    async fn connect(&mut self) -> Result<(), String> {
        let idx = self.endpoint;
        let client = &self.client;
        let inner = &client.inner;
        let endpoint = &inner.endpoints[idx];
        let token = match client.ensure_token(idx).await {
            Ok(t) => t,
            Err(CallError::Rejected(m)) | Err(CallError::Auth(m)) => {
                // Permanent: wrong credentials. Counted against the budget like the rest.
                return Err(client.clean(&m, endpoint));
            }
            Err(CallError::Unknown(m)) | Err(CallError::NotApplied(m)) => {
                return Err(client.clean(&m, endpoint))
            }
        };
        let mut create = json!({
            "key": b64_encode(&self.key),
            "range_end": b64_encode(&self.range_end),
        });
        if self.next_revision > 0 {
            create["start_revision"] = json!(self.next_revision.to_string());
        }
        let body = json!({ "create_request": create });
        let mut req = inner
            .http
            .post(format!("{endpoint}/v3/watch"))
            .header(REQUIRE_LEADER.0, REQUIRE_LEADER.1)
            .json(&body);
        if let Some(t) = &token {
            req = req.header(reqwest::header::AUTHORIZATION, t);
        }
        let resp = match tokio::time::timeout(inner.timeout, req.send()).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(client.clean(&error_chain(&e), endpoint)),
            Err(_) => return Err(format!("{endpoint}: timed out starting the watch")),
        };
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let body = tokio::time::timeout(inner.timeout, resp.bytes()).await;
            let body = body.ok().and_then(|b| b.ok()).unwrap_or_default();
            let why = match parse_answer(status, &body) {
                Err(CallError::Auth(m)) => {
                    client.set_token(None);
                    m
                }
                Err(CallError::Unknown(m) | CallError::NotApplied(m) | CallError::Rejected(m)) => m,
                Ok(_) => format!("HTTP {status}"),
            };
            return Err(client.clean(&why, endpoint));
        }
        self.conn = Some(WatchConn {
            resp,
            buf: Vec::new(),
            endpoint: idx,
            created: false,
        });
        Ok(())
    }

    /// Is the member at `idx` able to serve a linearizable read?
    async fn probe(&self, idx: usize) -> bool {
        let client = &self.client;
        let token = match client.ensure_token(idx).await {
            Ok(t) => t,
            Err(CallError::Rejected(_)) | Err(CallError::Auth(_)) => return true,
            Err(_) => return false,
        };
        let body = json!({
            "key": b64_encode(&self.key),
            "range_end": b64_encode(&self.range_end),
            "count_only": true,
        });
        !matches!(
            client
                .send(idx, "/v3/kv/range", &body, token.as_deref())
                .await,
            Err(CallError::Unknown(_)) | Err(CallError::NotApplied(_))
        )
    }

    fn handle_line(&mut self, line: &[u8]) -> Line {
        let v: Value = match serde_json::from_slice(line) {
            Ok(v) => v,
            Err(e) => return Line::Reconnect(format!("unreadable watch message: {e}")),
        };
        let resp: WatchResponse = match v.get("result") {
            Some(r) => match serde_json::from_value(r.clone()) {
                Ok(r) => r,
                Err(e) => return Line::Reconnect(format!("unreadable watch message: {e}")),
            },
            None => {
                let (code, msg) = v
                    .get("error")
                    .map(stream_error)
                    .unwrap_or((500, String::new()));
                if matches!(classify_status(code, &msg), CallError::Auth(_)) {
                    self.client.set_token(None);
                }
                return Line::Reconnect(format!("watch stream error: {msg}"));
            }
        };
        if resp.canceled {
            if resp.compact_revision > 0 {
                self.conn = None;
                self.compacted = Some(Compacted {
                    prefix: self.prefix.clone(),
                    requested: self.next_revision,
                    compact_revision: resp.compact_revision,
                });
                return Line::Nothing;
            }
            if AUTH_MESSAGES.iter().any(|m| resp.cancel_reason.contains(m)) {
                self.client.set_token(None);
            }
            return Line::Reconnect(format!("watch canceled: {}", resp.cancel_reason));
        }
        if resp.created {
            if let Some(c) = self.conn.as_mut() {
                c.created = true;
                self.failures = 0;
                self.down_since = None;
                self.client
                    .inner
                    .preferred
                    .store(c.endpoint, Ordering::Relaxed);
            }
            if self.next_revision == 0 {
                self.next_revision = resp.header.revision + 1;
            }
        }
        let mut events = Vec::with_capacity(resp.events.len());
        for raw in resp.events {
            let ev = match raw.decode() {
                Ok(ev) => ev,
                Err(e) => return Line::Reconnect(e.to_string()),
            };
            // Already delivered (cannot happen with a well-behaved server).
            if ev.revision() < self.next_revision {
                continue;
            }
            events.push(ev);
        }
        match events.last() {
            Some(last) => {
                self.next_revision = last.revision() + 1;
                Line::Events(events)
            }
            None => Line::Nothing,
        }
    }
}

/// Removes and returns the first complete line of `buf` (blank lines skipped).
fn take_line(buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    loop {
        let pos = buf.iter().position(|&b| b == b'\n')?;
        let mut line: Vec<u8> = buf.drain(..=pos).collect();
        line.pop();
        if line.iter().any(|b| !b.is_ascii_whitespace()) {
            return Some(line);
        }
    }
}

// ---- request bodies ------------------------------------------------------------------

/// The `[key, range_end)` of a prefix (an empty prefix means every key).
fn prefix_range(prefix: &[u8]) -> (Vec<u8>, Vec<u8>) {
    if prefix.is_empty() {
        return (vec![0], vec![0]);
    }
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return (prefix.to_vec(), end);
        }
    }
    // All 0xff: every key from the prefix on.
    (prefix.to_vec(), vec![0])
}

fn put_body(key: &str, value: &str, lease: Option<i64>) -> Value {
    let mut body = json!({
        "key": b64_encode(key.as_bytes()),
        "value": b64_encode(value.as_bytes()),
    });
    if let Some(l) = lease.filter(|&l| l != 0) {
        body["lease"] = json!(l.to_string());
    }
    body
}

fn compare_json(c: &Compare) -> Value {
    let (target, key, field, value) = match c {
        Compare::Version(k, v) => ("VERSION", k, "version", json!(v.to_string())),
        Compare::CreateRevision(k, v) => ("CREATE", k, "create_revision", json!(v.to_string())),
        Compare::ModRevision(k, v) => ("MOD", k, "mod_revision", json!(v.to_string())),
        Compare::Value(k, v) => ("VALUE", k, "value", json!(b64_encode(v.as_bytes()))),
    };
    let mut obj = json!({
        "result": "EQUAL",
        "target": target,
        "key": b64_encode(key.as_bytes()),
    });
    obj[field] = value;
    obj
}

fn op_json(op: &Op) -> Value {
    match op {
        Op::Put { key, value, lease } => json!({ "request_put": put_body(key, value, *lease) }),
        Op::Delete { key } => {
            json!({ "request_delete_range": { "key": b64_encode(key.as_bytes()) } })
        }
        Op::DeletePrefix { prefix } => {
            let (key, end) = prefix_range(prefix.as_bytes());
            json!({ "request_delete_range": {
                "key": b64_encode(&key),
                "range_end": b64_encode(&end),
            } })
        }
    }
}

fn txn_body(compares: &[Compare], success: &[Op], failure: &[Op]) -> Value {
    json!({
        "compare": compares.iter().map(compare_json).collect::<Vec<_>>(),
        "success": success.iter().map(op_json).collect::<Vec<_>>(),
        "failure": failure.iter().map(op_json).collect::<Vec<_>>(),
    })
}

// ---- answers -------------------------------------------------------------------------

/// An int64 as the gateway writes it (a string), or as a plain number.
fn de_i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int {
        Num(i64),
        Str(String),
    }
    match Int::deserialize(d)? {
        Int::Num(n) => Ok(n),
        Int::Str(s) => s
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("invalid int64 {s:?}"))),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Header {
    #[serde(deserialize_with = "de_i64")]
    revision: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct HeaderOnly {
    header: Header,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawKv {
    key: String,
    value: String,
    #[serde(deserialize_with = "de_i64")]
    create_revision: i64,
    #[serde(deserialize_with = "de_i64")]
    mod_revision: i64,
    #[serde(deserialize_with = "de_i64")]
    version: i64,
    #[serde(deserialize_with = "de_i64")]
    lease: i64,
}

impl RawKv {
    fn decode(self) -> Result<KeyValue> {
        let key = String::from_utf8(b64_decode(&self.key)?)
            .map_err(|_| anyhow!("etcd key {:?} (base64) is not UTF-8", self.key))?;
        let value = String::from_utf8(b64_decode(&self.value)?)
            .map_err(|_| anyhow!("the value of etcd key {key:?} is not UTF-8"))?;
        Ok(KeyValue {
            key,
            value,
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
            lease: self.lease,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RangeResponse {
    header: Header,
    kvs: Vec<RawKv>,
    more: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DeleteResponse {
    header: Header,
    #[serde(deserialize_with = "de_i64")]
    deleted: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TxnResponse {
    header: Header,
    succeeded: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LeaseGrantResponse {
    #[serde(rename = "ID", deserialize_with = "de_i64")]
    id: i64,
    error: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LeaseKeepAliveResponse {
    #[serde(rename = "TTL", deserialize_with = "de_i64")]
    ttl: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WatchResponse {
    header: Header,
    created: bool,
    canceled: bool,
    #[serde(deserialize_with = "de_i64")]
    compact_revision: i64,
    cancel_reason: String,
    events: Vec<RawEvent>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawEvent {
    /// "PUT" (the default, usually left out) or "DELETE".
    #[serde(rename = "type")]
    kind: String,
    kv: RawKv,
}

impl RawEvent {
    fn decode(self) -> Result<WatchEvent> {
        let delete = match self.kind.as_str() {
            "" | "PUT" => false,
            "DELETE" => true,
            other => bail!("unknown etcd event type {other:?}"),
        };
        let kv = self.kv.decode()?;
        Ok(if delete {
            WatchEvent::Delete {
                key: kv.key,
                mod_revision: kv.mod_revision,
            }
        } else {
            WatchEvent::Put(kv)
        })
    }
}

// ---- base64 (standard alphabet, padded; decoding also takes URL-safe and unpadded) ----

const B64_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn b64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b1 = chunk.get(1).copied().unwrap_or(0);
        let b2 = chunk.get(2).copied().unwrap_or(0);
        let n = (u32::from(chunk[0]) << 16) | (u32::from(b1) << 8) | u32::from(b2);
        for i in 0..4 {
            if i <= chunk.len() {
                let sextet = (n >> (18 - 6 * i)) & 63;
                out.push(char::from(B64_ALPHABET[sextet as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn b64_decode(s: &str) -> Result<Vec<u8>> {
    let data = s.trim_end_matches('=');
    if data.len() % 4 == 1 || s.len() - data.len() > 2 {
        bail!("invalid base64 (length {})", s.len());
    }
    let mut out = Vec::with_capacity(data.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for c in data.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => bail!("invalid base64 character {:?}", char::from(c)),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_known_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, enc) in cases {
            assert_eq!(b64_encode(plain.as_bytes()), enc);
            assert_eq!(b64_decode(enc).unwrap(), plain.as_bytes());
        }
    }

    #[test]
    fn base64_round_trips_every_byte_and_length() {
        let all: Vec<u8> = (0..=255u8).collect();
        for len in 0..all.len() {
            let data = &all[..len];
            assert_eq!(b64_decode(&b64_encode(data)).unwrap(), data, "len {len}");
        }
        // Non-ASCII text survives too.
        let text = "inventory/ü/✓";
        assert_eq!(
            b64_decode(&b64_encode(text.as_bytes())).unwrap(),
            text.as_bytes()
        );
    }

    #[test]
    fn base64_decode_accepts_url_safe_and_unpadded_and_rejects_garbage() {
        assert_eq!(b64_decode("-_8").unwrap(), b64_decode("+/8=").unwrap());
        assert_eq!(b64_decode("Zg").unwrap(), b"f");
        assert!(b64_decode("Zm9v!").is_err());
        assert!(b64_decode("Z").is_err());
        assert!(b64_decode("Zg===").is_err());
    }

    #[test]
    fn prefix_ranges() {
        assert_eq!(prefix_range(b"abc"), (b"abc".to_vec(), b"abd".to_vec()));
        assert_eq!(prefix_range(b"a\xff"), (b"a\xff".to_vec(), b"b".to_vec()));
        assert_eq!(prefix_range(b"\xff\xff"), (b"\xff\xff".to_vec(), vec![0]));
        assert_eq!(prefix_range(b""), (vec![0], vec![0]));
    }

    #[test]
    fn txn_body_uses_the_gateway_shapes() {
        let body = txn_body(
            &[
                Compare::ModRevision("k".into(), 7),
                Compare::CreateRevision("l".into(), 0),
                Compare::Version("m".into(), 2),
                Compare::Value("n".into(), "v".into()),
            ],
            &[
                Op::Put {
                    key: "k".into(),
                    value: "x".into(),
                    lease: Some(255),
                },
                Op::Delete { key: "d".into() },
            ],
            &[Op::DeletePrefix {
                prefix: "p/".into(),
            }],
        );
        let want = json!({
            "compare": [
                {"result": "EQUAL", "target": "MOD", "key": "aw==", "mod_revision": "7"},
                {"result": "EQUAL", "target": "CREATE", "key": "bA==", "create_revision": "0"},
                {"result": "EQUAL", "target": "VERSION", "key": "bQ==", "version": "2"},
                {"result": "EQUAL", "target": "VALUE", "key": "bg==", "value": "dg=="},
            ],
            "success": [
                {"request_put": {"key": "aw==", "value": "eA==", "lease": "255"}},
                {"request_delete_range": {"key": "ZA=="}},
            ],
            "failure": [
                {"request_delete_range": {"key": "cC8=", "range_end": "cDA="}},
            ],
        });
        assert_eq!(body, want);
        // No lease: no lease field.
        assert_eq!(put_body("a", "", None), json!({"key": "YQ==", "value": ""}));
    }

    #[test]
    fn parses_range_answers_with_string_int64s_and_missing_zero_fields() {
        let text = r#"{"header":{"cluster_id":"8331526191021593177","member_id":"3474563437252470173","revision":"12","raft_term":"2"},"kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"9","version":"3","value":"YmFy","lease":"7322186823211720971"},{"key":"Zm9w","create_revision":"4","mod_revision":"4","version":"1"}],"more":true,"count":"5"}"#;
        let v = parse_answer(200, text.as_bytes()).unwrap();
        let r: RangeResponse = serde_json::from_value(v).unwrap();
        assert_eq!(r.header.revision, 12);
        assert!(r.more);
        let kvs: Vec<KeyValue> = r.kvs.into_iter().map(|k| k.decode().unwrap()).collect();
        assert_eq!(
            kvs[0],
            KeyValue {
                key: "foo".into(),
                value: "bar".into(),
                create_revision: 2,
                mod_revision: 9,
                version: 3,
                lease: 7322186823211720971,
            }
        );
        // Empty value and no lease are left out by the gateway.
        assert_eq!(kvs[1].value, "");
        assert_eq!(kvs[1].lease, 0);
        // An empty range has no kvs at all.
        let r: RangeResponse = serde_json::from_str(r#"{"header":{"revision":"3"}}"#).unwrap();
        assert!(r.kvs.is_empty() && !r.more);
    }

    #[test]
    fn parses_txn_lease_and_delete_answers() {
        let t: TxnResponse = serde_json::from_str(
            r#"{"header":{"revision":"3"},"succeeded":true,"responses":[{"response_put":{"header":{"revision":"3"}}}]}"#,
        )
        .unwrap();
        assert!(t.succeeded);
        assert_eq!(t.header.revision, 3);
        // A failed compare leaves `succeeded` out.
        let t: TxnResponse = serde_json::from_str(r#"{"header":{"revision":"3"}}"#).unwrap();
        assert!(!t.succeeded);
        let g: LeaseGrantResponse = serde_json::from_str(
            r#"{"header":{"revision":"3"},"ID":"7322186823211720971","TTL":"5"}"#,
        )
        .unwrap();
        assert_eq!(g.id, 7322186823211720971);
        assert!(g.error.is_empty());
        // Keepalive answers are stream results; an expired lease has no TTL.
        let v = parse_answer(200, br#"{"result":{"header":{"revision":"3"},"ID":"1"}}"#).unwrap();
        let k: LeaseKeepAliveResponse = serde_json::from_value(v).unwrap();
        assert_eq!(k.ttl, 0);
        let d: DeleteResponse =
            serde_json::from_str(r#"{"header":{"revision":"4"},"deleted":"1"}"#).unwrap();
        assert_eq!(d.deleted, 1);
        // Plain JSON numbers are accepted as well.
        let h: Header = serde_json::from_str(r#"{"revision":42}"#).unwrap();
        assert_eq!(h.revision, 42);
        assert!(serde_json::from_str::<Header>(r#"{"revision":"x"}"#).is_err());
    }

    #[test]
    fn parses_watch_messages() {
        let line = br#"{"result":{"header":{"revision":"4"},"events":[{"kv":{"key":"Zm9v","create_revision":"2","mod_revision":"2","version":"1","value":"YmFy"}},{"type":"DELETE","kv":{"key":"Zm9v","mod_revision":"4"}}]}}"#;
        let v: Value = serde_json::from_slice(line).unwrap();
        let w: WatchResponse = serde_json::from_value(v["result"].clone()).unwrap();
        let events: Vec<WatchEvent> = w.events.into_iter().map(|e| e.decode().unwrap()).collect();
        assert_eq!(
            events,
            vec![
                WatchEvent::Put(KeyValue {
                    key: "foo".into(),
                    value: "bar".into(),
                    create_revision: 2,
                    mod_revision: 2,
                    version: 1,
                    lease: 0,
                }),
                WatchEvent::Delete {
                    key: "foo".into(),
                    mod_revision: 4
                },
            ]
        );
        let w: WatchResponse = serde_json::from_str(
            r#"{"header":{"raft_term":"2"},"canceled":true,"compact_revision":"3"}"#,
        )
        .unwrap();
        assert!(w.canceled && w.compact_revision == 3);
        let w: WatchResponse = serde_json::from_str(
            r#"{"header":{"revision":"4"},"watch_id":"-1","created":true,"canceled":true,"cancel_reason":"rpc error: code = Unauthenticated desc = etcdserver: invalid auth token"}"#,
        )
        .unwrap();
        assert!(w.created && w.canceled && w.cancel_reason.contains("invalid auth token"));
    }

    #[test]
    fn stream_lines_are_split_on_newlines() {
        let mut buf = b"{\"a\":1}\n\n{\"b\":".to_vec();
        assert_eq!(take_line(&mut buf).unwrap(), b"{\"a\":1}");
        assert_eq!(take_line(&mut buf), None);
        buf.extend_from_slice(b"2}\n");
        assert_eq!(take_line(&mut buf).unwrap(), b"{\"b\":2}");
        assert!(buf.is_empty());
    }

    #[test]
    fn classifies_gateway_errors() {
        let e = parse_answer(
            404,
            br#"{"error":"etcdserver: requested lease not found","message":"etcdserver: requested lease not found","code":5}"#,
        );
        assert!(
            matches!(e, Err(CallError::Rejected(ref m)) if m.contains("requested lease not found")),
            "{e:?}"
        );
        let e = parse_answer(
            401,
            br#"{"error":"etcdserver: invalid auth token","message":"etcdserver: invalid auth token","code":16}"#,
        );
        assert!(matches!(e, Err(CallError::Auth(_))), "{e:?}");
        let e = parse_answer(
            400,
            br#"{"error":"etcdserver: user name is empty","code":3}"#,
        );
        assert!(matches!(e, Err(CallError::Auth(_))), "{e:?}");
        let e = parse_answer(
            503,
            br#"{"error":"etcdserver: request timed out","code":14}"#,
        );
        assert!(matches!(e, Err(CallError::Unknown(_))), "{e:?}");
        let e = parse_answer(503, br#"{"error":"etcdserver: no leader","code":14}"#);
        assert!(matches!(e, Err(CallError::NotApplied(_))), "{e:?}");
        let e = parse_answer(
            200,
            br#"{"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: no leader","http_status":"Service Unavailable"}}"#,
        );
        assert!(matches!(e, Err(CallError::NotApplied(_))), "{e:?}");
        let e = parse_answer(502, b"<html>bad gateway</html>");
        assert!(
            matches!(e, Err(CallError::Unknown(ref m)) if m.contains("bad gateway")),
            "{e:?}"
        );
    }

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
