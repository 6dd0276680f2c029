//! A thin DigitalOcean API v2 client: auth, timeouts, retries that respect rate limits,
//! pagination, create without duplicates, typed errors — built for the API as it really
//! behaves (API notes §6): Cloudflare's 52x pages, `null` where arrays belong, `Retry-After`
//! dates, scoped tokens. Redirects are never followed; bodies are read up to
//! [`BODY_LIMIT`]; listings stop at what `meta.total` allows; impossible values (an ID of 0,
//! a droplet without a name) are rejected naming the field; upstream text reaches an error
//! line only truncated and stripped of control characters; loopback API URLs never go
//! through a proxy.

mod create;
mod droplet;
mod error;
mod retry;

#[cfg(test)]
mod conformance_tests;
#[cfg(test)]
mod hostile_tests;

pub use create::{CreateFailure, CreateOutcome, Created};
pub use droplet::{
    Action, ActionLink, Droplet, DropletSpec, IntOrString, NetworkV4, NetworkV6, Networks,
};
pub use error::{printable, ApiError, Error, ECHO_LIMIT};
pub use retry::{is_retryable_status, parse_retry_after, Backoff, RetryPolicy, MAX_HINT};

use crate::secret::Secret;
use droplet::{ActionBody, DropletBody, ErrorBody, ListPage};
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
/// The largest answer body the client reads (a full page of 200 droplets is under 1 MiB).
pub const BODY_LIMIT: usize = 8 << 20;
/// The most pages one listing follows, whatever `meta.total` says (200,000 droplets).
pub const MAX_LIST_PAGES: u32 = 1000;

/// What `GET /v2/actions/{id}` found.
#[derive(Debug, Clone)]
pub enum ActionLookup {
    /// The action.
    Found(Action),
    /// 403: the token lacks the `actions:read` scope. The caller falls back to the
    /// droplet's own status.
    Forbidden,
    /// 404, or (for [`Client::find_create_action`]) no candidate acts on the droplet.
    NotFound,
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
    token: Secret,
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
    /// Redirects are never followed. A loopback API URL (a simulator) is reached directly;
    /// any other keeps reqwest's proxy behaviour (`HTTPS_PROXY`, `NO_PROXY` honoured).
    pub fn new(settings: &Settings) -> anyhow::Result<Client> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10).min(settings.timeout))
            .timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("doproxy/", env!("CARGO_PKG_VERSION")));
        if is_loopback_url(&settings.api_url) {
            builder = builder.no_proxy();
        }
        let http = builder.build()?;
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", settings.token.expose()))
            .map_err(|_| {
                anyhow::anyhow!("token: contains characters not allowed in an HTTP header")
            })?;
        auth.set_sensitive(true);
        Ok(Client {
            http,
            base: settings.api_url.trim_end_matches('/').to_string(),
            auth,
            token: settings.token.clone(),
            backoff: Backoff::new(settings.retry.clone()),
            requests: AtomicU64::new(0),
            ratelimit_remaining: AtomicU64::new(u64::MAX),
            observer: None,
        })
    }

    /// The URL of `path` (which may carry a query) under the API base.
    fn url(&self, method: &'static str, path: &str) -> Result<Url, Error> {
        Url::parse(&format!("{}{}", self.base, path)).map_err(|e| Error::Transport {
            method,
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

    /// Upstream text made fit for an error line (see [`printable`]), the token redacted.
    fn echo(&self, text: &str) -> String {
        printable(text, Some(self.token.expose()), ECHO_LIMIT)
    }

    async fn send_once(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Answer, Error> {
        let url = self.url(method, path)?;
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
        let mut seen: Option<(u16, HeaderMap)> = None;
        let answer = match req.send().await {
            Ok(mut resp) => {
                let status = resp.status();
                let headers = resp.headers().clone();
                seen = Some((status.as_u16(), headers.clone()));
                match read_capped(&mut resp, BODY_LIMIT).await {
                    Ok(body) => Ok(Answer {
                        status,
                        headers,
                        body,
                    }),
                    Err(ReadError::TooLarge) => Err(Error::BodyTooLarge {
                        method,
                        path: path.to_string(),
                        status: status.as_u16(),
                        limit: BODY_LIMIT,
                    }),
                    // The answer had begun: the request reached the server.
                    Err(ReadError::Http(e)) => Err(self.transport(method, path, &e, true)),
                }
            }
            Err(e) => Err(self.transport(method, path, &e, false)),
        };
        let (status, request_id, remaining) = match &seen {
            Some((status, headers)) => {
                let rem = header_u64(headers, "ratelimit-remaining");
                if let Some(r) = rem {
                    self.ratelimit_remaining.store(r, Ordering::Relaxed);
                }
                (Some(*status), header_str(headers, "x-request-id"), rem)
            }
            None => (None, None, None),
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
        log::debug!("{method} {path}: attempt {attempt} failed ({err}); retrying in {delay:?}");
        self.emit(|| Event::Retry {
            method,
            path: path.to_string(),
            attempt,
            delay,
            error: err.to_string(),
        });
    }

    /// Sends an idempotent request (GET, DELETE), retrying what [`is_retryable_status`]
    /// names (429, 5xx except 501) and transport errors with exponential backoff and jitter
    /// under the policy's budget; honours `retry-after` and the `ratelimit-reset` epoch.
    /// Returns the first non-retryable answer.
    async fn send_idempotent(&self, method: &'static str, path: &str) -> Result<Answer, Error> {
        let mut waited = Duration::ZERO;
        let mut attempt = 0u32;
        loop {
            attempt = attempt.saturating_add(1);
            let err = match self.send_once(method, path, None).await {
                Ok(a) if is_retryable_status(a.status.as_u16()) => self.api_error(method, path, &a),
                Ok(a) => return Ok(a),
                Err(e) if e.is_retryable() => e,
                Err(e) => return Err(e),
            };
            let delay = self.backoff.delay(attempt, err.retry_after());
            if !self.backoff.allows(attempt, waited, delay) {
                return Err(err);
            }
            self.retrying(method, path, attempt, delay, &err);
            waited = waited.saturating_add(delay);
            tokio::time::sleep(delay).await;
        }
    }

    /// `GET /v2/droplets/{id}`; `Ok(None)` on 404. An answer describing another droplet, or
    /// an impossible one, is an error.
    pub async fn get_droplet(&self, id: u64) -> Result<Option<Droplet>, Error> {
        let path = format!("/v2/droplets/{id}");
        let a = self.send_idempotent("GET", &path).await?;
        if a.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let body: DropletBody = self.decode("GET", &path, &a, StatusCode::OK)?;
        let d = body.droplet;
        self.valid("GET", &path, &a, d.check())?;
        if d.id != id {
            return Err(self.invalid(
                "GET",
                &path,
                &a,
                format!("`droplet.id` is {} instead of {id}", d.id),
            ));
        }
        Ok(Some(d))
    }

    /// `GET /v2/actions/{id}`: the action, or [`ActionLookup::Forbidden`] (403, a token
    /// without `actions:read`) or [`ActionLookup::NotFound`] (404), which leave the caller to
    /// judge by the droplet's own status.
    pub async fn get_action(&self, id: u64) -> Result<ActionLookup, Error> {
        let path = format!("/v2/actions/{id}");
        let a = self.send_idempotent("GET", &path).await?;
        match a.status {
            StatusCode::FORBIDDEN => {
                log::debug!("GET {path}: 403 forbidden (a token without actions:read?)");
                return Ok(ActionLookup::Forbidden);
            }
            StatusCode::NOT_FOUND => return Ok(ActionLookup::NotFound),
            _ => {}
        }
        let body: ActionBody = self.decode("GET", &path, &a, StatusCode::OK)?;
        let action = body.action;
        self.valid("GET", &path, &a, action.check())?;
        if action.id != id {
            return Err(self.invalid(
                "GET",
                &path,
                &a,
                format!("`action.id` is {} instead of {id}", action.id),
            ));
        }
        Ok(ActionLookup::Found(action))
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
        let mut cap = MAX_LIST_PAGES;
        loop {
            let mut url = self.url("GET", "/v2/droplets")?;
            url.query_pairs_mut()
                .append_pair("page", &page.to_string())
                .append_pair("per_page", &PER_PAGE.to_string())
                .append_pair(filter.0, filter.1);
            let path = format!("{}?{}", url.path(), url.query().unwrap_or_default());
            let a = self.send_idempotent("GET", &path).await?;
            let body: ListPage = self.decode("GET", &path, &a, StatusCode::OK)?;
            let total = self.valid("GET", &path, &a, body.total())?;
            if page == 1 {
                cap = page_cap(total);
            }
            let has_next = body.has_next();
            let n = body.droplets.len();
            for d in body.droplets {
                self.valid("GET", &path, &a, d.check())?;
                // A droplet can move between pages while we page: keep one copy.
                by_id.insert(d.id, d);
            }
            let received = by_id.len() as u64;
            if received > total {
                return Err(self.invalid(
                    "GET",
                    &path,
                    &a,
                    format!("`meta.total` is {total}, below the {received} droplets received"),
                ));
            }
            // Follow `next` by page number rather than by the URL the server sent, so the
            // token is only ever sent to the configured API base.
            if !has_next || n == 0 || u64::from(page) * u64::from(PER_PAGE) >= total {
                break;
            }
            if page >= cap {
                return Err(self.invalid(
                    "GET",
                    &path,
                    &a,
                    format!("`links.pages.next` still set after {page} pages, more than `meta.total` ({total}) allows"),
                ));
            }
            page += 1;
        }
        Ok(by_id.into_values().collect())
    }

    /// `GET /v2/account`: how many droplets the account may hold (`droplet_limit`).
    pub async fn droplet_limit(&self) -> Result<u32, Error> {
        #[derive(serde::Deserialize)]
        struct Account {
            droplet_limit: u32,
        }
        #[derive(serde::Deserialize)]
        struct Body {
            account: Account,
        }
        let path = "/v2/account";
        let a = self.send_idempotent("GET", path).await?;
        let body: Body = self.decode("GET", path, &a, StatusCode::OK)?;
        Ok(body.account.droplet_limit)
    }

    /// `GET /v2/sizes` (at most [`MAX_LIST_PAGES`] pages): the hourly price of size `slug`
    /// in dollars, `None` when no page lists it. A price that is not a number ≥ 0 is an
    /// error naming the field.
    pub async fn hourly_price(&self, slug: &str) -> Result<Option<f64>, Error> {
        #[derive(serde::Deserialize)]
        struct Size {
            slug: String,
            price_hourly: f64,
        }
        #[derive(serde::Deserialize)]
        struct Page {
            #[serde(
                default,
                deserialize_with = "crate::digitalocean::droplet::null_default"
            )]
            sizes: Vec<Size>,
        }
        for page in 1..=MAX_LIST_PAGES {
            let mut url = self.url("GET", "/v2/sizes")?;
            url.query_pairs_mut()
                .append_pair("page", &page.to_string())
                .append_pair("per_page", &PER_PAGE.to_string());
            let path = format!("{}?{}", url.path(), url.query().unwrap_or_default());
            let a = self.send_idempotent("GET", &path).await?;
            let body: Page = self.decode("GET", &path, &a, StatusCode::OK)?;
            if let Some(size) = body.sizes.iter().find(|s| s.slug == slug) {
                let p = size.price_hourly;
                if !(p.is_finite() && p >= 0.0) {
                    return Err(self.invalid(
                        "GET",
                        &path,
                        &a,
                        format!("`sizes[].price_hourly` of {slug} is {p}"),
                    ));
                }
                return Ok(Some(p));
            }
            if body.sizes.len() < PER_PAGE as usize {
                break;
            }
        }
        Ok(None)
    }

    /// `DELETE /v2/droplets/{id}`; a 404 means it is already gone, which is success.
    pub async fn delete_droplet(&self, id: u64) -> Result<(), Error> {
        let path = format!("/v2/droplets/{id}");
        let a = self.send_idempotent("DELETE", &path).await?;
        if a.status.is_success() || a.status == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(self.api_error("DELETE", &path, &a))
        }
    }

    fn transport(
        &self,
        method: &'static str,
        path: &str,
        e: &reqwest::Error,
        answered: bool,
    ) -> Error {
        // A refused connection never reached the server; anything later may have.
        let ambiguous = answered || !e.is_connect();
        Error::Transport {
            method,
            path: path.to_string(),
            detail: self.echo(&crate::error::chain(e)),
            ambiguous,
        }
    }

    /// The error for an answer whose status is not the one expected: the API's error body
    /// (or a summary of a non-JSON one, e.g. Cloudflare's HTML page) for a 4xx or 5xx, the
    /// target of a redirect (never followed), or a note for an unexpected 2xx.
    fn api_error(&self, method: &'static str, path: &str, a: &Answer) -> Error {
        let parsed: Option<ErrorBody> = serde_json::from_slice(&a.body).ok();
        let header_rid = header_str(&a.headers, "x-request-id");
        let nonempty = |s: Option<String>| s.map(|s| self.echo(&s)).filter(|s| !s.is_empty());
        let (id, message, request_id) = match parsed {
            Some(b) => (
                nonempty(b.id).unwrap_or_default(),
                nonempty(b.message).unwrap_or_else(|| "(no message)".into()),
                nonempty(b.request_id).or(header_rid),
            ),
            None => (String::new(), self.summary(&a.body), header_rid),
        };
        let message = if a.status.is_redirection() {
            let to = header_str(&a.headers, "location").map(|l| self.echo(&l));
            format!(
                "redirect to {} (redirects are not followed)",
                to.as_deref().unwrap_or("(no location)")
            )
        } else if a.status.is_success() || a.status.is_informational() {
            format!("unexpected status ({message})")
        } else {
            message
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

    /// A non-JSON body in a few words: an HTML page's `<title>` (Cloudflare's error pages
    /// name the error there), else the start of the text.
    fn summary(&self, body: &[u8]) -> String {
        let text = String::from_utf8_lossy(body);
        if let Some(title) = html_title(&text) {
            let t = self.echo(title);
            if !t.is_empty() {
                return format!("HTML page: {t}");
            }
        }
        let snippet = self.echo(&text);
        if snippet.is_empty() {
            "(empty body)".to_string()
        } else {
            format!("non-JSON body: {snippet}")
        }
    }

    /// The body as `T` when the status is `expected`, else the status's error.
    fn decode<T: serde::de::DeserializeOwned>(
        &self,
        method: &'static str,
        path: &str,
        a: &Answer,
        expected: StatusCode,
    ) -> Result<T, Error> {
        if a.status != expected {
            return Err(self.api_error(method, path, a));
        }
        serde_json::from_slice(&a.body).map_err(|e| self.invalid(method, path, a, e.to_string()))
    }

    /// An answer with a success status that is not what the API documents.
    fn invalid(&self, method: &'static str, path: &str, a: &Answer, detail: String) -> Error {
        Error::Decode {
            method,
            path: path.to_string(),
            status: a.status.as_u16(),
            detail: self.echo(&detail),
        }
    }

    /// `check`'s value, or its complaint as an [`Error::Decode`].
    fn valid<T>(
        &self,
        method: &'static str,
        path: &str,
        a: &Answer,
        check: Result<T, String>,
    ) -> Result<T, Error> {
        check.map_err(|d| self.invalid(method, path, a, d))
    }
}

/// The most pages a listing whose first page says `meta.total` is `total` may take: the
/// pages that total needs plus two (droplets created while paging), and never more than
/// [`MAX_LIST_PAGES`]. Endless `next` links cannot keep a listing going.
pub(crate) fn page_cap(total: u64) -> u32 {
    let pages = total.div_ceil(u64::from(PER_PAGE)).saturating_add(2);
    u32::try_from(pages).map_or(MAX_LIST_PAGES, |p| p.min(MAX_LIST_PAGES))
}

/// The text inside an HTML page's `<title>`, if any.
fn html_title(text: &str) -> Option<&str> {
    let lower = text.get(..text.len().min(BODY_LIMIT))?.to_ascii_lowercase();
    let open = lower.find("<title")?;
    let start = open + lower[open..].find('>')? + 1;
    let end = start + lower[start..].find("</title")?;
    text.get(start..end)
}

/// True for a URL whose host is a loopback address or `localhost` (a simulator): such a URL
/// is never sent through a proxy.
pub(crate) fn is_loopback_url(url: &str) -> bool {
    let Some(host) = Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
    else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => ip.is_loopback(),
        Ok(std::net::IpAddr::V6(ip)) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => host.trim_end_matches('.').eq_ignore_ascii_case("localhost"),
    }
}

/// Why a body was not read whole.
pub(crate) enum ReadError {
    /// Longer than the limit (by its `content-length` or as it streamed in).
    TooLarge,
    /// The connection failed while reading.
    Http(reqwest::Error),
}

/// The body of `resp`, read chunk by chunk and abandoned as soon as it exceeds `limit`
/// bytes (a declared `content-length` over the limit is refused before reading), so that a
/// huge or endless body is never buffered.
pub(crate) async fn read_capped(
    resp: &mut reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, ReadError> {
    if resp
        .content_length()
        .is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX))
    {
        return Err(ReadError::TooLarge);
    }
    let hint = resp.content_length().unwrap_or(0).min(64 << 10);
    let mut body = Vec::with_capacity(usize::try_from(hint).unwrap_or(0));
    while let Some(chunk) = resp.chunk().await.map_err(ReadError::Http)? {
        if body.len().saturating_add(chunk.len()) > limit {
            return Err(ReadError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
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
        let mut url = c.url("GET", "/v2/droplets").unwrap();
        url.query_pairs_mut()
            .append_pair("tag_name", "env:prod")
            .append_pair("name", "a b&c");
        assert_eq!(url.query(), Some("tag_name=env%3Aprod&name=a+b%26c"));
    }

    #[test]
    fn loopback_urls() {
        for u in [
            "http://127.0.0.1:8080",
            "http://127.9.9.9",
            "http://localhost:1/x",
            "http://LOCALHOST.",
            "http://[::1]:1",
            "http://[::ffff:127.0.0.1]:1",
        ] {
            assert!(is_loopback_url(u), "{u}");
        }
        for u in [
            "https://api.digitalocean.com",
            "http://169.254.169.254",
            "http://localhost.example.com",
            "http://10.0.0.1",
            "http://[::2]",
            "not a url",
            "",
        ] {
            assert!(!is_loopback_url(u), "{u}");
        }
    }

    #[test]
    fn page_caps() {
        assert_eq!(page_cap(0), 2);
        assert_eq!(page_cap(1), 3);
        assert_eq!(page_cap(200), 3);
        assert_eq!(page_cap(201), 4);
        assert_eq!(page_cap(450), 5);
        assert_eq!(page_cap(199_600), MAX_LIST_PAGES);
        assert_eq!(page_cap(1_000_000_000), MAX_LIST_PAGES);
        assert_eq!(page_cap(u64::MAX), MAX_LIST_PAGES);
    }

    #[test]
    fn html_titles() {
        let page = "<!DOCTYPE html>\n<html><head><TITLE>api.digitalocean.com | 522: Connection timed out</TITLE></head>";
        assert_eq!(
            html_title(page),
            Some("api.digitalocean.com | 522: Connection timed out")
        );
        assert_eq!(html_title("<title lang=en>x</title>"), Some("x"));
        assert_eq!(html_title("<title>unterminated"), None);
        assert_eq!(html_title("plain"), None);
    }
}
