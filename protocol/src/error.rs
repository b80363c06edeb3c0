//! The closed set of error codes, shared by REST bodies and WebSocket `error` frames.

use serde::{Deserialize, Serialize};

/// A stable, machine-readable error code. Clients branch on these; the text beside them is for
/// humans and may change.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Missing, malformed, expired or wrongly signed token.
    Unauthorized,
    /// Authenticated, but the role or state does not allow this action.
    Forbidden,
    /// The user is not a member of the conversation.
    NotMember,
    /// No such object for this tenant.
    NotFound,
    /// The request is malformed or a field is out of range.
    Invalid,
    /// A frame, body or field is larger than allowed.
    TooLarge,
    /// Too many requests; retry later.
    RateLimited,
    /// The request conflicts with the current state.
    Conflict,
    /// The client took too long to send its request (a stalled body).
    Timeout,
    /// The HTTP method is not one this route answers.
    MethodNotAllowed,
    /// The connection fell too far behind its outbound queue and is being closed; reconnect
    /// and resume with `since`.
    SlowConsumer,
    /// The tenant's media quota has no room for this file (HTTP 507).
    QuotaExceeded,
    /// Uploaded bytes do not match the SHA-256 the client announced.
    ChecksumMismatch,
    /// The requested byte range selects no byte of the file (HTTP 416).
    RangeNotSatisfiable,
    /// The file's type, sniffed from its bytes, is not one this server accepts (HTTP 415).
    UnsupportedMediaType,
    /// The server cannot serve this now (shutting down, or its store is unreachable or busy);
    /// retry, possibly on another node.
    Unavailable,
    /// The server failed; details are logged, never sent.
    Internal,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotMember => "not_member",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Invalid => "invalid",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Timeout => "timeout",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::SlowConsumer => "slow_consumer",
            ErrorCode::QuotaExceeded => "quota_exceeded",
            ErrorCode::ChecksumMismatch => "checksum_mismatch",
            ErrorCode::RangeNotSatisfiable => "range_not_satisfiable",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }

    /// The HTTP status a REST response carries for this code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden | ErrorCode::NotMember => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Invalid => 400,
            ErrorCode::TooLarge => 413,
            ErrorCode::RateLimited => 429,
            ErrorCode::Conflict => 409,
            ErrorCode::Timeout => 408,
            ErrorCode::MethodNotAllowed => 405,
            // Sent only as a WebSocket frame; the status is for completeness.
            ErrorCode::SlowConsumer => 503,
            ErrorCode::QuotaExceeded => 507,
            ErrorCode::ChecksumMismatch => 422,
            ErrorCode::RangeNotSatisfiable => 416,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::Unavailable => 503,
            ErrorCode::Internal => 500,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The one JSON error shape of every REST error response: `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// Code and human-readable text of an error.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialize_as_their_wire_names() {
        for code in [
            ErrorCode::Unauthorized,
            ErrorCode::Forbidden,
            ErrorCode::NotMember,
            ErrorCode::NotFound,
            ErrorCode::Invalid,
            ErrorCode::TooLarge,
            ErrorCode::RateLimited,
            ErrorCode::Conflict,
            ErrorCode::Timeout,
            ErrorCode::MethodNotAllowed,
            ErrorCode::SlowConsumer,
            ErrorCode::QuotaExceeded,
            ErrorCode::ChecksumMismatch,
            ErrorCode::RangeNotSatisfiable,
            ErrorCode::UnsupportedMediaType,
            ErrorCode::Unavailable,
            ErrorCode::Internal,
        ] {
            let json = serde_json::to_string(&code).expect("serialize");
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }
}
