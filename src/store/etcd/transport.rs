//! How a call reaches etcd: member failover, auth tokens, and one request to one endpoint.
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

use super::wire::{parse_answer, CallError};
use super::Client;
use anyhow::{anyhow, bail, Result};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Upper bound on unary attempts, whatever the deadline says.
const MAX_ATTEMPTS: usize = 64;

/// Sent with every request (the gateway turns `Grpc-Metadata-*` headers into gRPC metadata):
/// a member without a leader then refuses requests at once ("no leader", safe to retry
/// elsewhere) instead of letting them wait for a timeout, and cuts its watch streams when
/// it loses its leader, so a watch never sits on a member cut off from the cluster.
pub(super) const REQUIRE_LEADER: (&str, &str) = ("grpc-metadata-hasleader", "true");

/// Whether a call may be repeated after a failure that leaves its outcome unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Retry {
    /// Repeating it is harmless (reads, puts, deletes, lease calls).
    Always,
    /// Only repeated when the failure proves it was not applied.
    IfNotApplied,
}

impl Client {
    pub(super) async fn call<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &Value,
        retry: Retry,
    ) -> Result<T> {
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
                log::debug!("etcd {path}: no endpoint answered in pass {pass}; pausing {pause:?}");
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
                    if idx != first {
                        log::debug!("etcd {path}: failed over to {endpoint}");
                    }
                    inner.preferred.store(idx, Ordering::Relaxed);
                    return Ok(v);
                }
                Err(CallError::Auth(msg)) if inner.credentials.is_some() && !reauthenticated => {
                    // Expired or unknown token: authenticate again, same endpoint.
                    reauthenticated = true;
                    self.set_token(None);
                    last_error = self.clean(&msg, endpoint);
                    log::debug!(
                        "etcd {path}: auth token refused ({last_error}); authenticating again"
                    );
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
                    log::debug!("etcd {path}: attempt {} failed: {last_error}", attempt + 1);
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
    pub(super) async fn ensure_token(&self, idx: usize) -> Result<Option<String>, CallError> {
        let Some((user, password)) = &self.inner.credentials else {
            return Ok(None);
        };
        if let Some(t) = self.token() {
            return Ok(Some(t));
        }
        log::debug!(
            "etcd: authenticating as {user:?} at {}",
            self.inner.endpoints[idx]
        );
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

    pub(super) fn set_token(&self, token: Option<String>) {
        match self.inner.token.lock() {
            Ok(mut g) => *g = token,
            Err(p) => *p.into_inner() = token,
        }
    }

    /// One request to one endpoint.
    pub(super) async fn send(
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
    pub(super) fn clean(&self, msg: &str, endpoint: &str) -> String {
        let mut s = format!("{endpoint}: {msg}");
        if let Some((_, pw)) = &self.inner.credentials {
            if !pw.is_empty() {
                s = s.replace(pw.as_str(), "<redacted>");
            }
        }
        s.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

fn classify_transport(e: &reqwest::Error) -> CallError {
    let msg = crate::error::chain(e);
    if e.is_connect() {
        CallError::NotApplied(msg)
    } else {
        CallError::Unknown(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::super::Options;
    use super::*;

    /// A client with credentials whose endpoint (port 1 on loopback) refuses connections.
    fn client_with_credentials() -> Client {
        Client::new(Options {
            endpoints: vec!["http://127.0.0.1:1".into()],
            timeout: Duration::from_millis(100),
            username: Some("root".into()),
            password: Some("pw".into()),
            ca_pem: None,
            identity_pem: None,
        })
        .unwrap()
    }

    #[test]
    fn the_auth_token_is_kept_until_it_is_refused() {
        let c = client_with_credentials();
        assert_eq!(c.token(), None);
        c.set_token(Some("tok-1".into()));
        assert_eq!(c.token().as_deref(), Some("tok-1"));
        // A refused token is forgotten, so the next call authenticates again.
        c.set_token(None);
        assert_eq!(c.token(), None);
    }

    #[tokio::test]
    async fn a_kept_token_is_sent_without_authenticating_again() {
        let c = client_with_credentials();
        c.set_token(Some("tok-2".into()));
        // Nothing listens on port 1: had it tried to authenticate, this would fail.
        assert_eq!(c.ensure_token(0).await.unwrap().as_deref(), Some("tok-2"));
    }
}
