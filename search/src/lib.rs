//! Full-text search over messages.
//!
//! Empty on purpose for now: the search issue adds the tantivy index here, fed by the event
//! stream. The crate exists so the workspace layout is final and the server can depend on it.
