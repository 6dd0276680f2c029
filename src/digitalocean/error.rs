//! Typed API errors: callers branch on the variant and status, never on message text. Any
//! text that came from upstream (error messages, HTML pages, headers, decoder complaints
//! that quote the body) passes through [`printable`] before it is stored in an error, so an
//! error line stays one short line of plain text.

use std::fmt;

/// The most characters of upstream text an error keeps.
pub const ECHO_LIMIT: usize = 200;

/// What went wrong talking to the API.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API answered with a non-success status (or a redirect, which is never followed).
    #[error("{0}")]
    Api(Box<ApiError>),
    /// No HTTP answer: connection refused or reset, timeout, TLS failure.
    #[error("{method} {path}: {detail}")]
    Transport {
        /// Request method.
        method: &'static str,
        /// Request path.
        path: String,
        /// What failed.
        detail: String,
        /// True when the request may have reached the server (timeouts, resets).
        ambiguous: bool,
    },
    /// A success status with a body that is not what the API documents, or that holds an
    /// impossible value (an ID of 0, a droplet without a name, a create answer that does
    /// not match the request, a `meta.total` below what was received...).
    #[error("{method} {path}: HTTP {status} with an unexpected body: {detail}")]
    Decode {
        /// Request method.
        method: &'static str,
        /// Request path.
        path: String,
        /// HTTP status.
        status: u16,
        /// The decoder's complaint, or the field that holds the impossible value.
        detail: String,
    },
    /// The answer's body is larger than the client accepts; it was not read further.
    #[error("{method} {path}: HTTP {status}: the body exceeds the {limit}-byte limit and was not read further")]
    BodyTooLarge {
        /// Request method.
        method: &'static str,
        /// Request path.
        path: String,
        /// HTTP status.
        status: u16,
        /// The limit, in bytes.
        limit: usize,
    },
}

/// A non-success answer of the API, with what its body and headers said.
#[derive(Debug)]
pub struct ApiError {
    /// Request method.
    pub method: &'static str,
    /// Request path and query (the token is a header, never part of it).
    pub path: String,
    /// HTTP status.
    pub status: u16,
    /// The error body's `id` (e.g. `not_found`), or empty when the body had none.
    pub id: String,
    /// The error body's `message`, or a summary of a non-JSON body (at most
    /// [`ECHO_LIMIT`] characters, control characters removed).
    pub message: String,
    /// `request_id` from the body or the `x-request-id` header.
    pub request_id: Option<String>,
    /// How long the answer asked the client to wait before trying again (capped at
    /// [`super::retry::MAX_HINT`]).
    pub retry_after: Option<std::time::Duration>,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: HTTP {} ", self.method, self.path, self.status)?;
        if !self.id.is_empty() {
            write!(f, "{}: ", self.id)?;
        }
        write!(f, "{}", self.message)?;
        if let Some(r) = &self.request_id {
            write!(f, " (request id {r})")?;
        }
        if let Some(d) = &self.retry_after {
            write!(f, " (the API asks to retry after {}s)", d.as_secs())?;
        }
        Ok(())
    }
}

impl Error {
    /// The HTTP status, when the API answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api(a) => Some(a.status),
            Error::Decode { status, .. } | Error::BodyTooLarge { status, .. } => Some(*status),
            Error::Transport { .. } => None,
        }
    }

    /// How long the API asked to wait before retrying (`retry-after`, `ratelimit-reset`).
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Error::Api(a) => a.retry_after,
            _ => None,
        }
    }

    /// True for 404.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// True for 403 (e.g. a token without the scope the endpoint needs).
    pub fn is_forbidden(&self) -> bool {
        matches!(self, Error::Api(a) if a.status == 403)
    }

    /// Worth retrying for an idempotent request: the statuses of
    /// [`super::is_retryable_status`] (429, 5xx except 501) and transport errors.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Api(a) => super::is_retryable_status(a.status),
            Error::Transport { .. } => true,
            Error::Decode { .. } | Error::BodyTooLarge { .. } => false,
        }
    }

    /// True when a POST that failed this way may nevertheless have been carried out: any
    /// status that is not a 4xx (every 5xx including 501 and Cloudflare's 52x, a redirect,
    /// an unexpected 2xx), a timeout or a reset, a body that could not be read or decoded or
    /// does not match the request. Only a 4xx or a connection that was never made proves
    /// that nothing was created.
    pub fn is_ambiguous(&self) -> bool {
        match self {
            Error::Api(a) => !(400..500).contains(&a.status),
            Error::Transport { ambiguous, .. } => *ambiguous,
            Error::Decode { .. } | Error::BodyTooLarge { .. } => true,
        }
    }
}

/// `text` made fit for an error line: `secret` (when it is long enough to be a real
/// token) replaced by `[redacted]`, control characters dropped, runs of whitespace folded
/// into one space, and cut to `limit` characters (with `…` when cut).
pub fn printable(text: &str, secret: Option<&str>, limit: usize) -> String {
    let redacted;
    let text = match secret {
        Some(s) if s.len() >= 8 && text.contains(s) => {
            redacted = text.replace(s, "[redacted]");
            redacted.as_str()
        }
        _ => text,
    };
    let mut out = String::new();
    let mut count = 0usize;
    let mut pending_space = false;
    for c in text.chars() {
        if c.is_whitespace() {
            pending_space = !out.is_empty();
            continue;
        }
        if c.is_control() || is_invisible_format(c) {
            continue;
        }
        let needed = usize::from(pending_space) + 1;
        if count + needed > limit {
            out.push('…');
            return out;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        out.push(c);
        count += needed;
    }
    out
}

/// Characters that change how a terminal shows the text around them (bidirectional
/// overrides and isolates, zero-width characters) without being control characters.
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16) -> Error {
        Error::Api(Box::new(ApiError {
            method: "POST",
            path: "/v2/droplets".into(),
            status,
            id: String::new(),
            message: String::new(),
            request_id: None,
            retry_after: None,
        }))
    }

    #[test]
    fn ambiguity_of_each_kind_of_failure() {
        for s in [
            500, 501, 502, 503, 504, 520, 521, 522, 523, 524, 599, 200, 201, 204, 301, 303,
        ] {
            assert!(api(s).is_ambiguous(), "{s}");
        }
        for s in [400, 401, 403, 404, 422, 429] {
            assert!(!api(s).is_ambiguous(), "{s}");
        }
        let t = |ambiguous| Error::Transport {
            method: "POST",
            path: "/".into(),
            detail: String::new(),
            ambiguous,
        };
        assert!(t(true).is_ambiguous());
        assert!(!t(false).is_ambiguous());
        let d = Error::Decode {
            method: "POST",
            path: "/".into(),
            status: 202,
            detail: String::new(),
        };
        assert!(d.is_ambiguous() && !d.is_retryable());
        let big = Error::BodyTooLarge {
            method: "GET",
            path: "/".into(),
            status: 200,
            limit: 1,
        };
        assert!(big.is_ambiguous() && !big.is_retryable());
        assert!(api(403).is_forbidden() && !api(404).is_forbidden());
    }

    #[test]
    fn retryable_follows_the_one_rule() {
        for s in [429, 500, 502, 503, 504, 520, 521, 522, 523, 524] {
            assert!(api(s).is_retryable(), "{s}");
        }
        for s in [501, 400, 401, 403, 404, 422, 301, 303] {
            assert!(!api(s).is_retryable(), "{s}");
        }
    }

    #[test]
    fn printable_strips_folds_truncates_and_redacts() {
        assert_eq!(printable("a\r\n\tb\x1b[31mc\x07", None, 200), "a b[31mc");
        assert_eq!(
            printable("  lead  and trail  ", None, 200),
            "lead and trail"
        );
        assert_eq!(printable("x\u{202e}y\u{200b}z", None, 200), "xyz");
        let long = "é".repeat(500);
        let p = printable(&long, None, 200);
        assert_eq!(p.chars().count(), 201);
        assert!(p.ends_with('…'));
        assert_eq!(printable("abcdef", None, 3), "abc…");
        assert_eq!(printable("abc", None, 3), "abc");
        let token = "dop_v1_0123456789abcdef";
        let p = printable(&format!("echo: Bearer {token}!"), Some(token), 200);
        assert_eq!(p, "echo: Bearer [redacted]!");
        // Too short to be a token: left alone rather than mangling every message.
        assert_eq!(printable("test", Some("t"), 200), "test");
        assert_eq!(printable("", None, 200), "");
    }
}
