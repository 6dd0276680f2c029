//! The resumable watch of a key prefix: [`Client::watch`], [`Watch`], its events, [`Compacted`].

use super::transport::REQUIRE_LEADER;
use super::wire::{
    b64_encode, classify_status, parse_answer, prefix_range, stream_error, take_line, CallError,
    WatchResponse, AUTH_MESSAGES,
};
use super::{Client, KeyValue};
use anyhow::{bail, Result};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// A watch stream silent for this long is checked with a linearizable read on its member.
const WATCH_IDLE_PROBE: Duration = Duration::from_secs(5);
/// Longest pause between two watch reconnection attempts.
const WATCH_MAX_BACKOFF: Duration = Duration::from_millis(500);
/// Biggest watch message accepted (etcd's own request limit is 1.5 MiB; events can be
/// bigger, but not this big).
const WATCH_MAX_LINE: usize = 64 << 20;

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

impl Client {
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
                    Ok(Err(e)) => self.broken(crate::error::chain(&e)),
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
        let failed = self.endpoint;
        self.endpoint = (self.endpoint + 1) % n;
        log::debug!(
            "etcd watch of {:?}: {} failed ({}); reconnecting to {} at revision {}",
            self.prefix,
            self.client.inner.endpoints[failed],
            self.last_error,
            self.client.inner.endpoints[self.endpoint],
            self.next_revision
        );
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
            Ok(Err(e)) => return Err(client.clean(&crate::error::chain(&e), endpoint)),
            Err(_) => return Err(format!("{endpoint}: timed out starting the watch")),
        };
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let body = tokio::time::timeout(inner.timeout, resp.bytes()).await;
            let body = body.ok().and_then(|b| b.ok()).unwrap_or_default();
            let why = match parse_answer(status, &body) {
                Err(CallError::Auth(m)) => {
                    log::debug!(
                        "etcd watch of {:?}: auth token refused; authenticating again",
                        self.prefix
                    );
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
                    log::debug!(
                        "etcd watch of {:?}: auth token refused; authenticating again",
                        self.prefix
                    );
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
                log::debug!(
                    "etcd watch of {:?}: auth token refused; authenticating again",
                    self.prefix
                );
                self.client.set_token(None);
            }
            return Line::Reconnect(format!("watch canceled: {}", resp.cancel_reason));
        }
        if resp.created {
            let mut resumed_on = None;
            if let Some(c) = self.conn.as_mut() {
                c.created = true;
                self.failures = 0;
                if self.down_since.take().is_some() {
                    resumed_on = Some(c.endpoint);
                }
                self.client
                    .inner
                    .preferred
                    .store(c.endpoint, Ordering::Relaxed);
            }
            if self.next_revision == 0 {
                self.next_revision = resp.header.revision + 1;
            }
            if let Some(idx) = resumed_on {
                log::debug!(
                    "etcd watch of {:?}: resumed on {} at revision {}",
                    self.prefix,
                    self.client.inner.endpoints[idx],
                    self.next_revision
                );
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
