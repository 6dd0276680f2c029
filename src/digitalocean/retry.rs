//! When and how long to retry an API request: the retryable-status rule, the policy's
//! exponential backoff with jitter, and the waits the API asks for in its headers.

use reqwest::header::HeaderMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Retry policy for GET and DELETE (POST is never blindly retried).
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// First backoff delay.
    pub min_delay: Duration,
    /// Longest single backoff delay.
    pub max_delay: Duration,
    /// Total time all retries of one request may spend waiting.
    pub budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            min_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            budget: Duration::from_secs(120),
        }
    }
}

/// Worth retrying for an idempotent request: 429 and the 5xx the API uses for "try again".
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 429 | 500 | 502 | 503 | 504)
}

/// Exponential backoff with jitter under a [`RetryPolicy`].
#[derive(Debug)]
pub struct Backoff {
    policy: RetryPolicy,
    rng: Mutex<u64>,
}

impl Backoff {
    /// A backoff for `policy`, with a jitter seed unique to this process and moment.
    pub fn new(policy: RetryPolicy) -> Backoff {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            ^ u64::from(std::process::id()).rotate_left(32);
        Backoff {
            policy,
            rng: Mutex::new(seed | 1),
        }
    }

    /// The policy.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// The wait before retry number `attempt` (1-based): what the server asked for when it
    /// said (`hint`, uncapped: retrying sooner only earns another 429; the caller's budget
    /// decides whether to wait that long at all), else exponential backoff with jitter.
    pub fn delay(&self, attempt: u32, hint: Option<Duration>) -> Duration {
        if let Some(h) = hint {
            return h;
        }
        let exp = self
            .policy
            .min_delay
            .saturating_mul(1u32 << (attempt - 1).min(16))
            .min(self.policy.max_delay);
        let half = exp / 2;
        half + half.mul_f64(self.random_unit())
    }

    /// True when another attempt after `attempt` failed ones, waiting `delay` on top of the
    /// `waited` so far, stays within the policy.
    pub fn allows(&self, attempt: u32, waited: Duration, delay: Duration) -> bool {
        attempt < self.policy.max_attempts && waited + delay <= self.policy.budget
    }

    fn random_unit(&self) -> f64 {
        let mut s = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        // xorshift64*
        *s ^= *s >> 12;
        *s ^= *s << 25;
        *s ^= *s >> 27;
        let v = s.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (v >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// How long the answer's headers ask a client to wait: `retry-after` (seconds), or until
/// the `ratelimit-reset` epoch when no request is left.
pub fn retry_hint(h: &HeaderMap) -> Option<Duration> {
    if let Some(secs) = header_u64(h, "retry-after") {
        return Some(Duration::from_secs(secs));
    }
    let remaining = header_u64(h, "ratelimit-remaining");
    if let (Some(0), Some(reset)) = (remaining, header_u64(h, "ratelimit-reset")) {
        // `ratelimit-reset` is a Unix epoch, not a delay.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        return Some(Duration::from_secs(reset.saturating_sub(now).max(1)));
    }
    None
}

/// A header's value as trimmed text.
pub(crate) fn header_str(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
}

/// A header's value as an unsigned number.
pub(crate) fn header_u64(h: &HeaderMap, name: &str) -> Option<u64> {
    header_str(h, name).and_then(|s| s.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn backoff_grows_and_is_capped() {
        let policy = RetryPolicy {
            max_attempts: 10,
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(800),
            budget: Duration::from_secs(60),
        };
        let c = Backoff::new(policy);
        for attempt in 1..10 {
            let d = c.delay(attempt, None);
            let cap =
                Duration::from_millis(100 * (1 << (attempt - 1))).min(Duration::from_millis(800));
            assert!(d >= cap / 2 && d <= cap, "attempt {attempt}: {d:?}");
        }
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("29"));
        assert_eq!(retry_hint(&h), Some(Duration::from_secs(29)));
        assert_eq!(c.delay(1, retry_hint(&h)), Duration::from_secs(29));
        let mut h = HeaderMap::new();
        h.insert("ratelimit-remaining", HeaderValue::from_static("0"));
        let reset = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 40;
        h.insert(
            "ratelimit-reset",
            HeaderValue::from_str(&reset.to_string()).unwrap(),
        );
        let hint = retry_hint(&h).unwrap();
        assert!(
            hint >= Duration::from_secs(39) && hint <= Duration::from_secs(40),
            "{hint:?}"
        );
    }
}
