//! What can go wrong with one API request.

use crate::config::KeyError;

/// A failed API request. Messages carry the HTTP status and Respan's `detail`,
/// never the key.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The key file could not be read.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The key cannot be put in an HTTP header.
    #[error("the API key contains characters not allowed in an HTTP header")]
    KeyNotHeaderSafe,
    /// The API answered with an error status.
    #[error("HTTP {status}{}", detail_suffix(.detail))]
    Status {
        /// The HTTP status code.
        status: u16,
        /// Respan's `detail`, or a short description of a non-JSON body.
        detail: Option<String>,
        /// Seconds to wait, from `Retry-After` or the body's `retry_after`.
        retry_after: Option<f64>,
    },
    /// No answer within the request timeout.
    #[error("no answer within the {0:?} request timeout")]
    Timeout(std::time::Duration),
    /// The connection could not be made.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// Any other transport failure (reset connection, broken body, TLS).
    #[error("transport error: {0}")]
    Transport(String),
    /// The answer is not a well-formed page.
    #[error("answer is not a valid customers page: {0}")]
    Decode(String),
}

fn detail_suffix(detail: &Option<String>) -> String {
    detail
        .as_ref()
        .map(|d| format!(": {d}"))
        .unwrap_or_default()
}

impl ApiError {
    /// The `code` label of `respan_api_requests_total` for this outcome, when
    /// the request reached the network.
    pub fn code_label(&self) -> Option<String> {
        match self {
            ApiError::Status { status, .. } => Some(status.to_string()),
            ApiError::Timeout(_) => Some("timeout".into()),
            ApiError::Connect(_) => Some("connect".into()),
            ApiError::Transport(_) => Some("error".into()),
            // Decode errors happen on a 200 that was already counted.
            ApiError::Decode(_) | ApiError::Key(_) | ApiError::KeyNotHeaderSafe => None,
        }
    }

    /// The `reason` label of `respan_poll_failures_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::Key(_) | ApiError::KeyNotHeaderSafe => "key_file",
            ApiError::Status {
                status: 401 | 403, ..
            } => "auth",
            ApiError::Status { status: 429, .. } => "rate_limited",
            ApiError::Status { status, .. } if *status >= 500 => "server_error",
            ApiError::Status { .. } => "client_error",
            ApiError::Timeout(_) => "timeout",
            ApiError::Connect(_) => "connect",
            ApiError::Transport(_) => "transport",
            ApiError::Decode(_) => "bad_answer",
        }
    }

    /// Whether asking again for the same page may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            ApiError::Status { status, .. } => *status == 429 || *status >= 500,
            ApiError::Timeout(_) | ApiError::Connect(_) | ApiError::Transport(_) => true,
            _ => false,
        }
    }
}

/// An error message with its chain of causes, on one line.
pub(crate) fn chain(err: &dyn std::error::Error) -> String {
    let mut msg = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = cause.source();
    }
    msg
}
