//! Typed API errors: callers branch on the variant and status, never on message text.

use std::fmt;

/// What went wrong talking to the API.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API answered with a non-success status.
    #[error("{method} {path}: HTTP {status} {}", ApiDetail { id, message, request_id })]
    Api {
        /// Request method.
        method: &'static str,
        /// Request path (never the query's secrets: there are none; the token is a header).
        path: String,
        /// HTTP status.
        status: u16,
        /// The error body's `id` (e.g. `not_found`), or empty when the body had none.
        id: String,
        /// The error body's `message`, or a summary of a non-JSON body.
        message: String,
        /// `request_id` from the body or the `x-request-id` header.
        request_id: Option<String>,
    },
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

struct ApiDetail<'a> {
    id: &'a str,
    message: &'a str,
    request_id: &'a Option<String>,
}

impl fmt::Display for ApiDetail<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.id.is_empty() {
            write!(f, "{}: ", self.id)?;
        }
        write!(f, "{}", self.message)?;
        if let Some(r) = self.request_id {
            write!(f, " (request id {r})")?;
        }
        Ok(())
    }
}

impl Error {
    /// The HTTP status, when the API answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } | Error::Decode { status, .. } => Some(*status),
            Error::Transport { .. } => None,
        }
    }

    /// True for 404.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// Worth retrying for an idempotent request: 429, 5xx except 501, and transport errors.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Api { status, .. } => matches!(status, 429 | 500 | 502 | 503 | 504),
            Error::Transport { .. } => true,
            Error::Decode { .. } => false,
        }
    }

    /// True when a POST that failed this way may nevertheless have been carried out.
    pub fn is_ambiguous(&self) -> bool {
        match self {
            Error::Api { status, .. } => matches!(status, 500 | 502 | 503 | 504),
            Error::Transport { ambiguous, .. } => *ambiguous,
            Error::Decode { .. } => true,
        }
    }
}
