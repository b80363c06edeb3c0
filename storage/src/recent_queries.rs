//! Each user's recent search queries: the distinct queries they ran, newest first. Searching a
//! query again moves it to the front; only the last [`RECENT_QUERIES_RETAINED`] are kept.

use confab_protocol::Millis;

/// How many queries are kept per user; older ones are forgotten as new ones are recorded.
pub const RECENT_QUERIES_RETAINED: u32 = 20;

/// One of a user's recent queries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentQuery {
    /// The query as recorded.
    pub query: String,
    /// When it was last run.
    pub at: Millis,
}
