//! When and how long to retry an API request: the retryable-status rule, the policy's
//! exponential backoff with jitter, and the waits the API asks for in its headers
//! (`retry-after` as seconds or an HTTP date, the `ratelimit-reset` epoch). Every duration
//! here saturates: no header value can make a wait overflow or panic.

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

/// The longest wait an answer's headers can ask for; longer asks are cut to this (the
/// hourly rate limit resets within an hour).
pub const MAX_HINT: Duration = Duration::from_secs(3600);

/// Worth retrying for an idempotent request (GET, DELETE): 429 and every 5xx except 501
/// (Cloudflare's 520–524 included), as go-retryablehttp's default policy does. The one rule:
/// [`super::Error::is_retryable`] uses it too.
pub fn is_retryable_status(status: u16) -> bool {
    status == 429 || ((500..600).contains(&status) && status != 501)
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
    /// said (`hint`, not shortened to `max_delay`: retrying sooner only earns another 429;
    /// [`Backoff::allows`] decides whether to wait that long at all), else exponential
    /// backoff with jitter.
    pub fn delay(&self, attempt: u32, hint: Option<Duration>) -> Duration {
        if let Some(h) = hint {
            return h.min(MAX_HINT);
        }
        let exp = self
            .policy
            .min_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.policy.max_delay);
        let half = exp / 2;
        half + half.mul_f64(self.random_unit())
    }

    /// True when another attempt after `attempt` failed ones, waiting `delay` on top of the
    /// `waited` so far, stays within the policy.
    pub fn allows(&self, attempt: u32, waited: Duration, delay: Duration) -> bool {
        attempt < self.policy.max_attempts && waited.saturating_add(delay) <= self.policy.budget
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

/// How long the answer's headers ask a client to wait: `retry-after` (seconds or an HTTP
/// date), or until the `ratelimit-reset` epoch when no request is left (the hourly limit's
/// 429 carries only that). At most [`MAX_HINT`].
pub fn retry_hint(h: &HeaderMap) -> Option<Duration> {
    retry_hint_at(h, SystemTime::now())
}

/// [`retry_hint`] as seen at `now`.
pub(crate) fn retry_hint_at(h: &HeaderMap, now: SystemTime) -> Option<Duration> {
    if let Some(d) = header_str(h, "retry-after").and_then(|v| parse_retry_after(&v, now)) {
        return Some(d.min(MAX_HINT));
    }
    let remaining = header_u64(h, "ratelimit-remaining");
    if let (Some(0), Some(reset)) = (remaining, header_u64(h, "ratelimit-reset")) {
        // `ratelimit-reset` is a Unix epoch, not a delay.
        let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let secs = reset.saturating_sub(now).max(1);
        return Some(Duration::from_secs(secs).min(MAX_HINT));
    }
    None
}

/// A `Retry-After` value (RFC 9110 §10.2.3): delay-seconds, or an HTTP date (IMF-fixdate,
/// or the obsolete RFC 850 and asctime forms) turned into the time left until it from
/// `now` (zero when it is past). Seconds too large for a `u64` saturate; anything else
/// is `None`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(v.parse().unwrap_or(u64::MAX)));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A header's value as trimmed text, fit for an error line or a log (visible ASCII only,
/// at most [`super::error::ECHO_LIMIT`] characters).
pub(crate) fn header_str(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| super::error::printable(s, None, super::error::ECHO_LIMIT))
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

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn retryable_statuses() {
        for s in [
            429, 500, 502, 503, 504, 505, 507, 520, 521, 522, 523, 524, 530, 599,
        ] {
            assert!(is_retryable_status(s), "{s}");
        }
        for s in [
            200, 202, 204, 301, 302, 303, 400, 401, 403, 404, 409, 422, 501, 600, 999,
        ] {
            assert!(!is_retryable_status(s), "{s}");
        }
    }

    #[test]
    fn retry_after_as_seconds_or_http_date() {
        // Sun, 06 Nov 1994 08:49:37 GMT
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777);
        let p = |v| parse_retry_after(v, now);
        assert_eq!(p("29"), Some(Duration::from_secs(29)));
        assert_eq!(p(" 0 "), Some(Duration::ZERO));
        assert_eq!(
            p("18446744073709551615"),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(
            p("99999999999999999999999999"),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(
            p("Sun, 06 Nov 1994 08:50:07 GMT"),
            Some(Duration::from_secs(30))
        );
        // The obsolete forms HTTP still allows.
        assert_eq!(
            p("Sunday, 06-Nov-94 08:50:07 GMT"),
            Some(Duration::from_secs(30))
        );
        assert_eq!(p("Sun Nov  6 08:50:07 1994"), Some(Duration::from_secs(30)));
        // A date in the past: retry now.
        assert_eq!(p("Sun, 06 Nov 1994 08:00:00 GMT"), Some(Duration::ZERO));
        for bad in ["", "-1", "1.5", "soon", "Sun, 06 Nov 1994", "0x10", "+5"] {
            assert_eq!(p(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn hints_are_capped_and_never_overflow() {
        let now = SystemTime::now();
        let h = headers(&[("retry-after", "18446744073709551615")]);
        assert_eq!(retry_hint_at(&h, now), Some(MAX_HINT));
        let h = headers(&[("Retry-After", "Fri, 31 Dec 9999 23:59:59 GMT")]);
        assert_eq!(retry_hint_at(&h, now), Some(MAX_HINT));
        // An unparsable retry-after falls back to the reset epoch.
        let epoch = now.duration_since(UNIX_EPOCH).unwrap().as_secs();
        let h = headers(&[
            ("retry-after", "later"),
            ("ratelimit-remaining", "0"),
            ("ratelimit-reset", &(epoch + 10).to_string()),
        ]);
        assert_eq!(retry_hint_at(&h, now), Some(Duration::from_secs(10)));
        let h = headers(&[
            ("ratelimit-remaining", "0"),
            ("ratelimit-reset", "18446744073709551615"),
        ]);
        assert_eq!(retry_hint_at(&h, now), Some(MAX_HINT));
        // A reset in the past still waits a second; with requests left there is no hint.
        let h = headers(&[("ratelimit-remaining", "0"), ("ratelimit-reset", "5")]);
        assert_eq!(retry_hint_at(&h, now), Some(Duration::from_secs(1)));
        let h = headers(&[("ratelimit-remaining", "3"), ("ratelimit-reset", "5")]);
        assert_eq!(retry_hint_at(&h, now), None);

        let b = Backoff::new(RetryPolicy::default());
        assert_eq!(b.delay(1, Some(Duration::MAX)), MAX_HINT);
        assert!(!b.allows(1, Duration::MAX, Duration::MAX));
        assert!(!b.allows(1, Duration::ZERO, MAX_HINT));
        assert!(b.allows(1, Duration::ZERO, Duration::from_secs(1)));
        // Attempt 0 and huge attempt numbers do not underflow or overflow.
        assert!(b.delay(0, None) <= Duration::from_secs(1));
        assert!(b.delay(u32::MAX, None) <= Duration::from_secs(30));
    }

    #[test]
    fn the_policy_is_the_one_given() {
        let b = Backoff::new(RetryPolicy {
            max_attempts: 7,
            min_delay: Duration::from_millis(3),
            max_delay: Duration::from_millis(9),
            budget: Duration::from_secs(11),
        });
        let p = b.policy();
        assert_eq!(
            (p.max_attempts, p.min_delay, p.max_delay, p.budget),
            (
                7,
                Duration::from_millis(3),
                Duration::from_millis(9),
                Duration::from_secs(11)
            )
        );
    }

    #[test]
    fn jitter_spreads_the_delays_over_the_upper_half() {
        // Many clients retrying after one incident must not all come back at once: the
        // delays spread over [exp/2, exp], not one value, not one end.
        let b = Backoff::new(RetryPolicy {
            max_attempts: 10,
            min_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(1),
            budget: Duration::from_secs(60),
        });
        let delays: Vec<Duration> = (0..400).map(|_| b.delay(1, None)).collect();
        let half = Duration::from_millis(500);
        assert!(delays.iter().all(|d| *d >= half && *d <= half * 2));
        let mut distinct = delays.clone();
        distinct.sort();
        distinct.dedup();
        assert!(distinct.len() > 300, "{} distinct", distinct.len());
        let low = delays.iter().filter(|d| **d < half * 3 / 2).count();
        assert!((100..=300).contains(&low), "{low} of 400 in the lower half");
        // The last draws still vary (a generator stuck at one state would repeat).
        let mut tail = delays[300..].to_vec();
        tail.sort();
        tail.dedup();
        assert!(tail.len() > 90, "{} distinct of the last 100", tail.len());
    }
}
