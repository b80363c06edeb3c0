//! The one error type of the server. Every failure, REST or WebSocket, becomes an [`AppError`]:
//! a stable [`ErrorCode`] plus text safe to show. Internal details are logged here and never sent.

use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use confab_protocol::{ErrorBody, ErrorCode, ErrorDetail, ServerFrame};
use confab_storage::StoreError;
use confab_storage::media::MediaError;

/// A failed request or command.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub struct AppError {
    pub code: ErrorCode,
    pub message: String,
    /// How long until a retry may succeed, for rate limits: `Retry-After` (whole seconds,
    /// rounded up) on REST, `retry_after_ms` on a WebSocket `error` frame.
    pub retry_after: Option<Duration>,
}

impl AppError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        AppError {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        AppError::new(ErrorCode::Unauthorized, message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        AppError::new(ErrorCode::Invalid, message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        AppError::new(ErrorCode::TooLarge, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        AppError::new(ErrorCode::Forbidden, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        AppError::new(ErrorCode::NotFound, message)
    }

    /// The server cannot serve this now; the client should retry (maybe on another node).
    pub fn unavailable(message: impl Into<String>) -> Self {
        AppError::new(ErrorCode::Unavailable, message)
    }

    /// An internal failure: the cause is logged, the client sees only "internal error".
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        AppError::new(ErrorCode::Internal, "internal error")
    }

    /// Sets how long until a retry may succeed.
    pub fn with_retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }

    /// The WebSocket `error` frame, answering the command with `reference`.
    pub fn into_frame(self, reference: Option<String>) -> ServerFrame {
        ServerFrame::Error {
            reference,
            code: self.code,
            message: self.message,
            retry_after_ms: self.retry_after.map(duration_millis_ceil),
        }
    }

    /// The body of the REST response and of the WebSocket `error` frame.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message.clone(),
            },
        }
    }
}

impl From<StoreError> for AppError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable | StoreError::CannotCommit(_) => {
                AppError::unavailable("storage is unavailable; retry")
            }
            StoreError::Busy => AppError::unavailable("storage is busy; retry"),
            StoreError::Internal { .. } => AppError::internal(ErrorChain(&err)),
            other => AppError::new(other.code(), other.to_string()),
        }
    }
}

impl From<MediaError> for AppError {
    fn from(err: MediaError) -> Self {
        match err {
            MediaError::NotFound => AppError::not_found("media not found"),
            MediaError::Invalid(message) => AppError::invalid(message),
            MediaError::Backend { .. } => AppError::internal(ErrorChain(&err)),
            other => AppError::new(other.code(), other.to_string()),
        }
    }
}

/// An error with every cause behind it, `outer: cause: root cause`, for the log (a store
/// error's `Display` says only what failed; its causes are its `source` chain).
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(err) = cause {
            write!(f, ": {err}")?;
            cause = err.source();
        }
        Ok(())
    }
}

/// Whole milliseconds, rounded up, so that waiting that long is always enough.
fn duration_millis_ceil(wait: Duration) -> u64 {
    let millis = wait.as_nanos().div_ceil(1_000_000);
    u64::try_from(millis).unwrap_or(u64::MAX)
}

/// Whole seconds for `Retry-After`, rounded up and at least 1 (0 would invite a busy retry).
fn retry_after_seconds(wait: Duration) -> u64 {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    seconds.max(1)
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(self.body())).into_response();
        if let Some(wait) = self.retry_after {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                retry_after_seconds(wait).into(),
            );
        }
        if status == StatusCode::UNAUTHORIZED {
            // RFC 6750: which scheme to retry with.
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"confab\""),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_keep_their_code_and_hide_internals() {
        let err = AppError::from(StoreError::NotMember);
        assert_eq!(err.code, ErrorCode::NotMember);
        let cause = std::io::Error::other("disk on fire at /secret/path");
        let err = AppError::from(StoreError::internal("writing", cause));
        assert_eq!(err.code, ErrorCode::Internal);
        assert_eq!(err.message, "internal error");
        let err = AppError::from(StoreError::Unavailable);
        assert_eq!(err.code, ErrorCode::Unavailable);
        let err = AppError::from(StoreError::Busy);
        assert_eq!(
            (err.code, err.message.as_str()),
            (ErrorCode::Unavailable, "storage is busy; retry")
        );
    }

    #[test]
    fn the_log_line_carries_every_cause() {
        let cause = std::io::Error::other("disk on fire");
        let err = StoreError::internal("writing a batch", cause);
        assert_eq!(
            ErrorChain(&err).to_string(),
            "storage backend error: writing a batch: disk on fire"
        );
    }

    #[test]
    fn responses_carry_the_code_status() {
        let response = AppError::new(ErrorCode::RateLimited, "slow down").into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    }
}
