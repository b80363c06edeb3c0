//! The store's own metrics, recorded through the `metrics` facade (nothing without a recorder;
//! the server installs one and describes these names with the rest of `/metrics`).

/// Seconds from the start of a commit (a batch's transaction, or a MongoDB transaction with its
/// retries) to durable, by backend.
pub const COMMIT_DURATION: &str = "confab_store_commit_duration_seconds";
/// Jobs committed together by one SQLite group commit (one fsync).
pub const BATCH_JOBS: &str = "confab_store_batch_jobs";
