//! Typed API errors: callers branch on the variant and status, never on message text.

use std::fmt;

/// What went wrong talking to the API.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API answered with a non-success status.
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
    /// A success status with a body that is not what the API documents.
    #[error("{method} {path}: HTTP {status} with an unexpected body: {detail}")]
    Decode {
        /// Request method.
        method: &'static str,
        /// Request path.
        path: String,
        /// HTTP status.
        status: u16,
        /// The decoder's complaint.
        detail: String,
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
    /// The error body's `message`, or a summary of a non-JSON body.
    pub message: String,
    /// `request_id` from the body or the `x-request-id` header.
    pub request_id: Option<String>,
    /// How long the answer asked the client to wait before trying again.
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
            Error::Decode { status, .. } => Some(*status),
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

    /// Worth retrying for an idempotent request: 429, 5xx except 501, and transport errors.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Api(a) => super::is_retryable_status(a.status),
            Error::Transport { .. } => true,
            Error::Decode { .. } => false,
        }
    }

    /// True when a POST that failed this way may nevertheless have been carried out.
    pub fn is_ambiguous(&self) -> bool {
        match self {
            Error::Api(a) => matches!(a.status, 500 | 502 | 503 | 504),
            Error::Transport { ambiguous, .. } => *ambiguous,
            Error::Decode { .. } => true,
        }
    }
}
