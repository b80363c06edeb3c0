//! The storage error type: every backend maps its failures onto these variants.

use std::borrow::Cow;

use confab_protocol::ErrorCode;

/// Result alias of this crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The cause of an internal failure (a driver's, the runtime's, serde's error).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

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
    /// The change conflicts with the current state (e.g. the last owner leaving, a read marker
    /// past the last seq).
    #[error("{0}")]
    Conflict(String),
    /// A field is out of range.
    #[error("{0}")]
    Invalid(String),
    /// The tenant's media files would take more than its quota.
    #[error("the media quota is exceeded: {used} of {quota} bytes are in use")]
    QuotaExceeded { used: u64, quota: u64 },
    /// The store is shutting down or its writer has stopped.
    #[error("store unavailable")]
    Unavailable,
    /// Another process held the database past the busy timeout (several nodes writing one
    /// shared SQLite file under load): nothing was written; retry.
    #[error("the store is busy: another writer held it past the busy timeout")]
    Busy,
    /// The last commit failed and a probe commit too; the cause in a word (`disk_full`,
    /// `read_only`, `io_error`, `corrupt`, `commit_failed`). Only `ping` returns it.
    #[error("the store cannot commit: {0}")]
    CannotCommit(&'static str),
    /// A backend failure: `context` says what failed and `source`, if any, why (with its own
    /// chain of causes). Logged whole, never sent to clients.
    #[error("storage backend error: {context}")]
    Internal {
        context: Cow<'static, str>,
        #[source]
        source: Option<BoxError>,
    },
}

impl StoreError {
    /// A backend failure caused by `source`.
    pub fn internal(context: impl Into<Cow<'static, str>>, source: impl Into<BoxError>) -> Self {
        StoreError::Internal {
            context: context.into(),
            source: Some(source.into()),
        }
    }

    /// A backend failure with no error behind it (corrupt data, a broken invariant).
    pub fn internal_bare(context: impl Into<Cow<'static, str>>) -> Self {
        StoreError::Internal {
            context: context.into(),
            source: None,
        }
    }

    /// The wire error code for this failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            StoreError::NotFound(_) => ErrorCode::NotFound,
            StoreError::NotMember => ErrorCode::NotMember,
            StoreError::Forbidden(_) => ErrorCode::Forbidden,
            StoreError::Conflict(_) => ErrorCode::Conflict,
            StoreError::Invalid(_) => ErrorCode::Invalid,
            StoreError::QuotaExceeded { .. } => ErrorCode::QuotaExceeded,
            StoreError::Unavailable | StoreError::Busy | StoreError::CannotCommit(_) => {
                ErrorCode::Unavailable
            }
            StoreError::Internal { .. } => ErrorCode::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn an_internal_error_keeps_its_cause() {
        let cause = std::io::Error::other("disk on fire");
        let err = StoreError::internal("writing a batch", cause);
        assert_eq!(err.to_string(), "storage backend error: writing a batch");
        assert_eq!(err.code(), ErrorCode::Internal);
        let source = err.source().expect("a source");
        assert!(source.downcast_ref::<std::io::Error>().is_some());
        assert_eq!(source.to_string(), "disk on fire");
        assert!(StoreError::internal_bare("corrupt").source().is_none());
    }
}
