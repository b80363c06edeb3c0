//! A queued write, type-erased so that jobs of any result type share one queue, and the caller
//! waiting for its result.

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::sqlite::cache::WriteCache;
use crate::{Result, StoreError, StoredEvent};

/// A queued write, type-erased so that jobs of any result type share one queue.
pub(super) trait Job: Send {
    /// Runs the job (inside its savepoint if guarded); returns whether its changes should be kept.
    fn run(
        &mut self,
        conn: &Connection,
        cache: &mut WriteCache,
        events: &mut Vec<StoredEvent>,
    ) -> bool;

    /// Whether the job runs inside a savepoint of its own (else it fails only before writing).
    fn guarded(&self) -> bool;

    /// Answers the caller once the batch's fate is known (`Err` carries the commit failure).
    fn answer(self: Box<Self>, batch: std::result::Result<(), &Arc<rusqlite::Error>>);
}

pub(super) type BoxedJob = Box<dyn Job>;

/// A job and the caller waiting for its result.
pub(super) struct Pending<T, F> {
    pub work: Option<F>,
    pub guarded: bool,
    pub outcome: Option<Result<T>>,
    pub reply: oneshot::Sender<Result<T>>,
}

impl<T, F> Job for Pending<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection, &mut WriteCache, &mut Vec<StoredEvent>) -> Result<T> + Send + 'static,
{
    fn run(
        &mut self,
        conn: &Connection,
        cache: &mut WriteCache,
        events: &mut Vec<StoredEvent>,
    ) -> bool {
        let Some(work) = self.work.take() else {
            return false;
        };
        // A bug in one job must not take the writer (and every other caller) down with it.
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| work(conn, cache, events)))
            .unwrap_or_else(|_| Err(StoreError::internal_bare("write job panicked")));
        let keep = outcome.is_ok();
        self.outcome = Some(outcome);
        keep
    }

    fn guarded(&self) -> bool {
        self.guarded
    }

    fn answer(self: Box<Self>, batch: std::result::Result<(), &Arc<rusqlite::Error>>) {
        let outcome = match (self.outcome, batch) {
            // A failed job was rolled back whatever became of the batch: its own error stands.
            (Some(Err(err)), _) => Err(err),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (_, Err(cause)) if crate::sqlite::common::is_busy(cause) => Err(StoreError::Busy),
            (_, Err(cause)) => Err(StoreError::internal("write batch failed", cause.clone())),
            (None, Ok(())) => Err(StoreError::internal_bare("write job never ran")),
        };
        if self.reply.send(outcome).is_err() {
            tracing::debug!("write caller went away before its answer");
        }
    }
}
