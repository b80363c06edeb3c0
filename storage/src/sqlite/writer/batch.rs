//! The writer thread's loop: take a batch, run each job in its savepoint (or without one),
//! commit, then publish and answer.

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::mpsc;

use super::job::BoxedJob;
use crate::sqlite::cache::WriteCache;
use crate::sqlite::checkpoint::{self, Checkpointer};
use crate::sqlite::integrity::CommitHealth;
use crate::{EventSink, StoredEvent};

/// The writer thread's loop; returns when the queue is closed and drained (stopping the
/// checkpointer on the way out).
pub(super) fn run(
    mut conn: Connection,
    sink: &dyn EventSink,
    checkpointer: Option<Checkpointer>,
    mut cache: WriteCache,
    mut receiver: mpsc::Receiver<BoxedJob>,
    max_batch: usize,
    health: &CommitHealth,
) {
    let mut batch: Vec<BoxedJob> = Vec::with_capacity(max_batch);
    let commit_duration =
        metrics::histogram!(crate::metrics::COMMIT_DURATION, "backend" => "sqlite");
    let batch_jobs = metrics::histogram!(crate::metrics::BATCH_JOBS);
    while let Some(first) = receiver.blocking_recv() {
        batch.push(first);
        while batch.len() < max_batch {
            match receiver.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut events = Vec::new();
        let started = std::time::Instant::now();
        let committed = commit_batch(&mut conn, &mut cache, &mut batch, &mut events);
        commit_duration.record(started.elapsed().as_secs_f64());
        batch_jobs.record(batch.len() as f64);
        health.record(committed.as_ref().map(|_| ()));
        match committed {
            Ok(()) => {
                if let Some(checkpointer) = &checkpointer {
                    checkpointer.committed();
                }
                tracing::trace!(
                    jobs = batch.len(),
                    events = events.len(),
                    "committed write batch"
                );
                if !events.is_empty() {
                    publish(sink, events);
                }
                for job in batch.drain(..) {
                    job.answer(Ok(()));
                }
            }
            Err(err) => {
                // It may hold what the batch read of its own, rolled-back changes.
                cache.clear();
                if crate::sqlite::common::is_busy(&err) {
                    tracing::warn!(error = %err, jobs = batch.len(), "write batch found the database busy past the timeout");
                } else {
                    tracing::error!(error = %err, jobs = batch.len(), "write batch failed");
                }
                // Every job of the batch fails with the same cause.
                let cause = Arc::new(err);
                for job in batch.drain(..) {
                    job.answer(Err(&cause));
                }
            }
        }
    }
    // Everything is committed: stop copying, and leave an empty log behind.
    drop(checkpointer);
    checkpoint::checkpoint(&conn, "TRUNCATE");
    tracing::debug!("sqlite writer stopped");
}

/// Runs every job of the batch in one transaction, each in its own savepoint unless it is
/// unguarded, and commits. Events of jobs that failed are dropped with their changes; an
/// unguarded job that fails after writing fails the batch.
fn commit_batch(
    conn: &mut Connection,
    cache: &mut WriteCache,
    batch: &mut [BoxedJob],
    events: &mut Vec<StoredEvent>,
) -> rusqlite::Result<()> {
    let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if let Err(err) = cache.revalidate(&tx) {
        tracing::warn!(error = %err, "cannot tell whether the write cache is current; clearing it");
        cache.clear();
    }
    for job in batch.iter_mut() {
        let mark = events.len();
        if !job.guarded() {
            let changes = tx.total_changes();
            if !job.run(&tx, cache, events) {
                events.truncate(mark);
                // Its changes cannot be told apart from the batch's: roll everything back. A
                // failed statement (I/O, memory) may also have ended the transaction already.
                if tx.total_changes() != changes || tx.is_autocommit() {
                    return Err(batch_aborted(
                        "a write failed halfway; the batch was rolled back".to_owned(),
                    ));
                }
            }
            continue;
        }
        // It may change what the cache remembers (members, archiving).
        cache.forget_members();
        let savepoint = tx.savepoint()?;
        if job.run(&savepoint, cache, events) {
            savepoint.commit()?;
        } else {
            events.truncate(mark);
            // The default drop behavior: roll back to the savepoint, then release it.
            savepoint.finish()?;
        }
    }
    cache
        .before_commit(&tx)
        .map_err(|err| batch_aborted(format!("merging client ids: {err}")))?;
    tx.commit()
}

/// Why a batch is rolled back though SQLite itself reported nothing wrong.
fn batch_aborted(reason: String) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
        Some(reason),
    )
}

/// Hands committed events to the sink; a panicking sink must not stop the writer.
fn publish(sink: &dyn EventSink, events: Vec<StoredEvent>) {
    if panic::catch_unwind(AssertUnwindSafe(|| sink.publish(events))).is_err() {
        tracing::error!("event sink panicked; committed events were not all published");
    }
}
