//! Confab's wire protocol: plain serde types shared by the server, the storage backends, bots and
//! the load generator.
//!
//! - [`frames`]: WebSocket frames, one JSON object per text frame, discriminated by `"type"`.
//! - [`rest`]: REST request and response bodies under `/v1`.
//! - [`error`]: the closed set of error codes used by both.
//! - `schema` (feature `schema`): the JSON Schema of every frame, derived from [`frames`].
//! - [`durable`]: durable events as stored and passed around ([`EventBody`]), and their
//!   rendering as frames.
//!
//! This crate depends on serde only (no tokio, no axum; utoipa and schemars behind features) so that any client can reuse it.

// Functions stay short enough to read at once (threshold in clippy.toml); tests may not.
#![warn(clippy::too_many_lines)]

pub mod durable;
pub mod error;
pub mod frames;
pub mod rest;
#[cfg(feature = "schema")]
pub mod schema;

pub use durable::{EventBody, Posted};
pub use error::{ErrorBody, ErrorCode, ErrorDetail};
pub use frames::{ClientFrame, Command, EventKind, ServerFrame};

/// Milliseconds since the Unix epoch, the timestamp unit of every frame and body.
pub type Millis = i64;

/// Limits on what a client may send; validated by the server, advertised in `welcome`.
pub mod limits {
    /// Longest `ref` a client may attach to a command.
    pub const MAX_REF_LEN: usize = 128;
    /// Longest `client_msg_id`, in characters (as JSON Schema's `maxLength` counts).
    pub const MAX_CLIENT_MSG_ID_LEN: usize = 128;
    /// Longest reaction emoji, in characters (a ZWJ family or a flag's tag sequence is 7).
    pub const MAX_EMOJI_LEN: usize = 16;
    /// Longest conversation title, in characters.
    pub const MAX_TITLE_LEN: usize = 256;
    /// Longest user id, in characters.
    pub const MAX_USER_ID_LEN: usize = 128;
    /// Most attachments on one message.
    pub const MAX_ATTACHMENTS: usize = 16;
    /// Most members named when creating a conversation.
    pub const MAX_INITIAL_MEMBERS: usize = 1000;
}
