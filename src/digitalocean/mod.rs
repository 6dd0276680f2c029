//! A thin DigitalOcean API v2 client: auth, timeouts, retries that respect rate limits,
//! pagination, create without duplicates, typed errors.

mod droplet;
mod error;
mod retry;

pub use droplet::{Action, ActionLink, Droplet, DropletSpec, IntOrString, NetworkV4, Networks};
pub use error::{ApiError, Error};
pub use retry::{is_retryable_status, Backoff, RetryPolicy};

use crate::secret::Secret;
use droplet::{ActionBody, CreateResponse, DropletBody, ListPage};
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode, Url};
use retry::{header_str, header_u64, retry_hint};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How to reach the API (the `api_url`, `token`, `api_timeout` and `retry` keys).
#[derive(Debug, Clone)]
pub struct Settings {
    /// API base URL without a trailing slash.
    pub api_url: String,
    /// The API token.
    pub token: Secret,
    /// Per-request timeout (connecting times out after at most 10 s).
    pub timeout: Duration,
    /// Retries of idempotent requests.
    pub retry: RetryPolicy,
}

/// The most names the API accepts in one create request.
pub const MAX_NAMES_PER_CREATE: usize = 10;
/// The largest page the list endpoint serves.
pub const PER_PAGE: u32 = 200;

/// A droplet just accepted by the API, with its create action when the answer named one.
#[derive(Debug, Clone)]
pub struct Created {
    /// The droplet as the 202 described it (status `new`, no addresses yet).
    pub droplet: Droplet,
    /// The create action, to tell an asynchronous failure from a slow list.
    pub action_id: Option<u64>,
}

/// A single API answer, before status handling.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

/// Observer for API traffic (verbose logs, counters in benchmarks).
pub type Observer = Box<dyn Fn(&Event) + Send + Sync>;

/// What an [`Observer`] is told.
#[derive(Debug, Clone)]
pub enum Event {
    /// A request finished (or failed without an answer).
    Request(RequestEvent),
    /// A request is about to be retried after `delay`.
    Retry {
        /// Method.
        method: &'static str,
        /// Path and query.
        path: String,
        /// The attempt that failed (1-based).
        attempt: u32,
        /// The wait before the next attempt.
        delay: Duration,
        /// Why.
        error: String,
    },
}

/// One finished API request, as reported to an [`Observer`].
#[derive(Debug, Clone)]
pub struct RequestEvent {
    /// Method.
    pub method: &'static str,
    /// Path and query.
    pub path: String,
    /// Status, or `None` for a transport failure.
    pub status: Option<u16>,
    /// `x-request-id` of the answer.
    pub request_id: Option<String>,
    /// `ratelimit-remaining` of the answer.
    pub ratelimit_remaining: Option<u64>,
    /// Time the request took.
    pub elapsed: Duration,
}

/// The client. Cheap to share by reference; one per process.
pub struct Client {
    http: reqwest::Client,
    base: String,
    auth: HeaderValue,
    backoff: Backoff,
    requests: AtomicU64,
    ratelimit_remaining: AtomicU64,
    observer: Option<Observer>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Builds a client for the API `settings` name (e.g. `https://api.digitalocean.com`).
    pub fn new(settings: &Settings) -> anyhow::Result<Client> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10).min(settings.timeout))
            .timeout(settings.timeout)
            .user_agent(concat!("doproxy/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", settings.token.expose()))
            .map_err(|_| {
                anyhow::anyhow!("token: contains characters not allowed in an HTTP header")
            })?;
        auth.set_sensitive(true);
        Ok(Client {
            http,
            base: settings.api_url.trim_end_matches('/').to_string(),
            auth,
            backoff: Backoff::new(settings.retry.clone()),
            requests: AtomicU64::new(0),
            ratelimit_remaining: AtomicU64::new(u64::MAX),
            observer: None,
        })
    }

    /// The URL of `path` (which may carry a query) under the API base.
    fn url(&self, path: &str) -> Result<Url, Error> {
        Url::parse(&format!("{}{}", self.base, path)).map_err(|e| Error::Transport {
            method: "GET",
            path: path.to_string(),
            detail: format!("invalid URL: {e}"),
            ambiguous: false,
        })
    }

    /// Installs an observer called after every request.
    pub fn with_observer(mut self, observer: Observer) -> Self {
        self.observer = Some(observer);
        self
    }

    /// How many HTTP requests this client has sent.
    pub fn request_count(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// The last `ratelimit-remaining` the API reported (`None` before any answer).
    pub fn ratelimit_remaining(&self) -> Option<u64> {
        match self.ratelimit_remaining.load(Ordering::Relaxed) {
            u64::MAX => None,
            n => Some(n),
        }
    }

    async fn send_once(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Answer, Error> {
        let url = self.url(path)?;
        let m = Method::from_bytes(method.as_bytes()).unwrap_or(Method::GET);
        let mut req = self
            .http
            .request(m, url)
            .header(AUTHORIZATION, self.auth.clone())
            .header(ACCEPT, "application/json");
        if let Some(b) = body {
            req = req.header(CONTENT_TYPE, "application/json").json(b);
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let result = req.send().await;
        let answer = match result {
            Ok(resp) => {
                let status = resp.status();
                let headers = resp.headers().clone();
                match resp.bytes().await {
                    Ok(b) => Ok(Answer {
                        status,
                        headers,
                        body: b.to_vec(),
                    }),
                    Err(e) => Err(transport(method, path, &e)),
                }
            }
            Err(e) => Err(transport(method, path, &e)),
        };
        let (status, request_id, remaining) = match &answer {
            Ok(a) => {
                let rem = header_u64(&a.headers, "ratelimit-remaining");
                if let Some(r) = rem {
                    self.ratelimit_remaining.store(r, Ordering::Relaxed);
                }
                (
                    Some(a.status.as_u16()),
                    header_str(&a.headers, "x-request-id"),
                    rem,
                )
            }
            Err(_) => (None, None, None),
        };
        self.emit(|| {
            Event::Request(RequestEvent {
                method,
                path: path.to_string(),
                status,
                request_id,
                ratelimit_remaining: remaining,
                elapsed: started.elapsed(),
            })
        });
        answer
    }

    fn emit(&self, event: impl FnOnce() -> Event) {
        if let Some(obs) = &self.observer {
            obs(&event());
        }
    }

    fn retrying(
        &self,
        method: &'static str,
        path: &str,
        attempt: u32,
        delay: Duration,
        err: &Error,
    ) {
        self.emit(|| Event::Retry {
            method,
            path: path.to_string(),
            attempt,
            delay,
            error: err.to_string(),
        });
    }

    /// Sends an idempotent request (GET, DELETE), retrying 429, 5xx and transport errors
    /// with exponential backoff and jitter under the policy's budget; honours `retry-after`
    /// and the `ratelimit-reset` epoch. Returns the first non-retryable answer.
    async fn send_idempotent(&self, method: &'static str, path: &str) -> Result<Answer, Error> {
        let mut waited = Duration::ZERO;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let outcome = self.send_once(method, path, None).await;
            let err = match outcome {
                Ok(a) if is_retryable_status(a.status.as_u16()) => api_error(method, path, &a),
                Ok(a) => return Ok(a),
                Err(e) => e,
            };
            let delay = self.backoff.delay(attempt, err.retry_after());
            if !self.backoff.allows(attempt, waited, delay) {
                return Err(err);
            }
            self.retrying(method, path, attempt, delay, &err);
            waited += delay;
            tokio::time::sleep(delay).await;
        }
    }

    /// `GET /v2/droplets/{id}`; `Ok(None)` on 404.
    pub async fn get_droplet(&self, id: u64) -> Result<Option<Droplet>, Error> {
        let path = format!("/v2/droplets/{id}");
        let a = self.send_idempotent("GET", &path).await?;
        if a.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let body: DropletBody = decode("GET", &path, &a)?;
        Ok(Some(body.droplet))
    }

    /// `GET /v2/actions/{id}`.
    pub async fn get_action(&self, id: u64) -> Result<Action, Error> {
        let path = format!("/v2/actions/{id}");
        let a = self.send_idempotent("GET", &path).await?;
        let body: ActionBody = decode("GET", &path, &a)?;
        Ok(body.action)
    }

    /// Every droplet carrying `tag` (every page, `per_page=200`; a failed page fails the
    /// whole listing rather than being silently dropped).
    pub async fn list_by_tag(&self, tag: &str) -> Result<Vec<Droplet>, Error> {
        self.list(("tag_name", tag)).await
    }

    /// Droplets named exactly `name` (case-insensitive, as the API matches).
    pub async fn list_by_name(&self, name: &str) -> Result<Vec<Droplet>, Error> {
        self.list(("name", name)).await
    }

    async fn list(&self, filter: (&str, &str)) -> Result<Vec<Droplet>, Error> {
        let mut by_id: BTreeMap<u64, Droplet> = BTreeMap::new();
        let mut page = 1u32;
        loop {
            let mut url = self.url("/v2/droplets")?;
            url.query_pairs_mut()
                .append_pair("page", &page.to_string())
                .append_pair("per_page", &PER_PAGE.to_string())
                .append_pair(filter.0, filter.1);
            let path = format!("{}?{}", url.path(), url.query().unwrap_or_default());
            let a = self.send_idempotent("GET", &path).await?;
            let body: ListPage = decode("GET", &path, &a)?;
            let n = body.droplets.len();
            for d in body.droplets {
                // A droplet can move between pages while we page: keep one copy.
                by_id.insert(d.id, d);
            }
            let has_next = body
                .links
                .and_then(|l| l.pages)
                .and_then(|p| p.next)
                .is_some();
            // Follow `next` by page number rather than by the URL the server sent, so the
            // token is only ever sent to the configured API base.
            if !has_next || n == 0 || u64::from(page) * u64::from(PER_PAGE) >= body.meta.total {
                break;
            }
            page += 1;
        }
        Ok(by_id.into_values().collect())
    }

    /// `DELETE /v2/droplets/{id}`; a 404 means it is already gone, which is success.
    pub async fn delete_droplet(&self, id: u64) -> Result<(), Error> {
        let path = format!("/v2/droplets/{id}");
        let a = self.send_idempotent("DELETE", &path).await?;
        if a.status.is_success() || a.status == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(api_error("DELETE", &path, &a))
        }
    }

    /// One `POST /v2/droplets` for up to ten names. Not retried: see [`Client::create`].
    async fn post_create(
        &self,
        names: &[String],
        fields: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Vec<Created>, Error> {
        let mut body = fields.clone();
        if names.len() == 1 {
            body.insert("name".into(), names[0].clone().into());
        } else {
            body.insert("names".into(), names.to_vec().into());
        }
        let path = "/v2/droplets";
        let a = self
            .send_once("POST", path, Some(&serde_json::Value::Object(body)))
            .await?;
        if !a.status.is_success() {
            return Err(api_error("POST", path, &a));
        }
        let r: CreateResponse = decode("POST", path, &a)?;
        let droplets = match (r.droplet, r.droplets) {
            (Some(d), _) => vec![d],
            (None, Some(ds)) => ds,
            (None, None) => {
                return Err(Error::Decode {
                    method: "POST",
                    path: path.into(),
                    status: a.status.as_u16(),
                    detail: "neither `droplet` nor `droplets`".into(),
                })
            }
        };
        let actions: Vec<ActionLink> = r.links.map(|l| l.actions).unwrap_or_default();
        Ok(droplets
            .into_iter()
            .enumerate()
            .map(|(i, droplet)| Created {
                droplet,
                // Multi-create lists one action per droplet, in the same order.
                action_id: actions.get(i).map(|l| l.id),
            })
            .collect())
    }

    /// Creates droplets named `names` (unique names, at most ten) without ever creating a
    /// duplicate: after an ambiguous failure (timeout, reset, 5xx) it looks for the names
    /// among the droplets carrying `tag` before sending the POST again, and only re-sends
    /// it for names not found. A 429 is waited out; other 4xx fail at once.
    pub async fn create(
        &self,
        names: &[String],
        tag: &str,
        fields: &serde_json::Map<String, serde_json::Value>,
        settle: Duration,
    ) -> Result<Vec<Created>, Error> {
        assert!(names.len() <= MAX_NAMES_PER_CREATE);
        let mut pending: Vec<String> = names.to_vec();
        let mut done: Vec<Created> = Vec::new();
        let mut waited = Duration::ZERO;
        let mut attempt = 0u32;
        while !pending.is_empty() {
            attempt += 1;
            let err = match self.post_create(&pending, fields).await {
                Ok(created) => {
                    done.extend(created);
                    break;
                }
                Err(e) => e,
            };
            let rate_limited = err.status() == Some(429);
            if !rate_limited && !err.is_ambiguous() {
                return Err(err);
            }
            if err.is_ambiguous() {
                // The POST may have been carried out. Look for the names before resending;
                // a droplet can be missing from lists for a moment after its create.
                let found = self.find_created(&pending, tag, settle).await?;
                pending.retain(|n| !found.iter().any(|d| d.name.eq_ignore_ascii_case(n)));
                done.extend(found.into_iter().map(|droplet| Created {
                    droplet,
                    action_id: None,
                }));
                if pending.is_empty() {
                    break;
                }
            }
            let delay = self.backoff.delay(attempt, err.retry_after());
            if !self.backoff.allows(attempt, waited, delay) {
                return Err(err);
            }
            self.retrying("POST", "/v2/droplets", attempt, delay, &err);
            waited += delay;
            tokio::time::sleep(delay).await;
        }
        Ok(done)
    }

    /// Looks for droplets named in `names` among those tagged `tag`, for up to `settle`.
    async fn find_created(
        &self,
        names: &[String],
        tag: &str,
        settle: Duration,
    ) -> Result<Vec<Droplet>, Error> {
        let started = Instant::now();
        loop {
            let found: Vec<Droplet> = self
                .list_by_tag(tag)
                .await?
                .into_iter()
                .filter(|d| names.iter().any(|n| d.name.eq_ignore_ascii_case(n)))
                .collect();
            if found.len() == names.len() || started.elapsed() >= settle {
                return Ok(found);
            }
            tokio::time::sleep((settle / 4).max(Duration::from_millis(10))).await;
        }
    }
}

fn transport(method: &'static str, path: &str, e: &reqwest::Error) -> Error {
    // A refused connection never reached the server; anything later may have.
    let ambiguous = !e.is_connect();
    Error::Transport {
        method,
        path: path.to_string(),
        detail: crate::error::chain(e),
        ambiguous,
    }
}

fn api_error(method: &'static str, path: &str, a: &Answer) -> Error {
    #[derive(serde::Deserialize)]
    struct Body {
        id: Option<String>,
        message: Option<String>,
        request_id: Option<String>,
    }
    let parsed: Option<Body> = serde_json::from_slice(&a.body).ok();
    let header_rid = header_str(&a.headers, "x-request-id");
    let (id, message, request_id) = match parsed {
        Some(b) => (
            b.id.unwrap_or_default(),
            b.message.unwrap_or_else(|| "(no message)".into()),
            b.request_id.or(header_rid),
        ),
        None => {
            let text = String::from_utf8_lossy(&a.body);
            let snippet: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
            let snippet: String = snippet.chars().take(120).collect();
            let msg = if snippet.is_empty() {
                "(empty body)".to_string()
            } else {
                format!("non-JSON body: {snippet}")
            };
            (String::new(), msg, header_rid)
        }
    };
    Error::Api(Box::new(ApiError {
        method,
        path: path.to_string(),
        status: a.status.as_u16(),
        id,
        message,
        request_id,
        retry_after: retry_hint(&a.headers),
    }))
}

fn decode<T: serde::de::DeserializeOwned>(
    method: &'static str,
    path: &str,
    a: &Answer,
) -> Result<T, Error> {
    if !a.status.is_success() {
        return Err(api_error(method, path, a));
    }
    serde_json::from_slice(&a.body).map_err(|e| Error::Decode {
        method,
        path: path.to_string(),
        status: a.status.as_u16(),
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_queries_are_encoded() {
        let c = Client::new(&Settings {
            api_url: "http://127.0.0.1:1".into(),
            token: Secret::new("t".into()),
            timeout: Duration::from_secs(1),
            retry: RetryPolicy::default(),
        })
        .unwrap();
        let mut url = c.url("/v2/droplets").unwrap();
        url.query_pairs_mut()
            .append_pair("tag_name", "env:prod")
            .append_pair("name", "a b&c");
        assert_eq!(url.query(), Some("tag_name=env%3Aprod&name=a+b%26c"));
    }
}
