//! Full-text search over messages.
//!
//! Empty on purpose for now: the search issue adds the tantivy index here, fed by the event
//! stream. The crate exists so the workspace layout is final and the server can depend on it.

// Functions stay short enough to read at once (threshold in clippy.toml); tests may not.
#![warn(clippy::too_many_lines)]
