//! The storage error type: every backend maps its failures onto these variants.

use confab_protocol::ErrorCode;

/// Result alias of this crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Why a store operation failed. Variants other than `Unavailable` and `Internal` are the
/// caller's fault and carry text that is safe to show to the client.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such conversation, message or member for this tenant.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The acting user is not a member of the conversation.
    #[error("not a member of this conversation")]
    NotMember,
    /// The acting user's role or the object's state forbids the action.
    #[error("{0}")]
    Forbidden(String),
    /// The change conflicts with the current state (e.g. the last owner leaving).
    #[error("{0}")]
    Conflict(String),
    /// A field is out of range (e.g. a read marker past the last seq).
    #[error("{0}")]
    Invalid(String),
    /// The store is shutting down or its writer has stopped.
    #[error("store unavailable")]
    Unavailable,
    /// A backend failure; the text is logged, never sent to clients.
    #[error("storage backend error: {0}")]
    Internal(String),
}

impl StoreError {
    /// The wire error code for this failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            StoreError::NotFound(_) => ErrorCode::NotFound,
            StoreError::NotMember => ErrorCode::NotMember,
            StoreError::Forbidden(_) => ErrorCode::Forbidden,
            StoreError::Conflict(_) => ErrorCode::Conflict,
            StoreError::Invalid(_) => ErrorCode::Invalid,
            StoreError::Unavailable => ErrorCode::Unavailable,
            StoreError::Internal(_) => ErrorCode::Internal,
        }
    }
}
