//! The writer thread's loop: take a batch, run each job in its savepoint (or without one),
//! commit, then publish and answer.

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::mpsc;

use super::job::BoxedJob;
use super::turns::Turns;
use crate::sqlite::cache::WriteCache;
use crate::sqlite::checkpoint::{self, Checkpointer};
use crate::sqlite::integrity::CommitHealth;
use crate::sqlite::schema;
use crate::{EventSink, StoredEvent};

/// The write connection, and this process's turns at writing its file (`None` in memory).
pub(super) struct Db {
    pub(super) conn: Connection,
    pub(super) turns: Option<Turns>,
}

/// The writer thread's loop; returns when the queue is closed and drained (stopping the
/// checkpointer on the way out).
pub(super) fn run(
    db: Db,
    sink: &dyn EventSink,
    checkpointer: Option<Checkpointer>,
    mut cache: WriteCache,
    mut receiver: mpsc::Receiver<BoxedJob>,
    max_batch: usize,
    health: &CommitHealth,
) {
    let Db { mut conn, turns } = db;
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
        let started = Instant::now();
        // Held until the batch is committed or rolled back, not while it is published.
        let turn = turns
            .as_ref()
            .map(|turns| turns.take(schema::BUSY_TIMEOUT))
            .transpose();
        let mut times = Times::default();
        let committed = match turn {
            Ok(_turn) => {
                times.waited_for_turn = started.elapsed();
                commit_batch(&mut conn, &mut cache, &mut batch, &mut events, &mut times)
            }
            Err(_) => Err(turn_timed_out()),
        };
        commit_duration.record(started.elapsed().as_secs_f64());
        times.report(batch.len());
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
    let _emptied = checkpoint::checkpoint(&conn, "TRUNCATE");
    tracing::debug!("sqlite writer stopped");
}

/// Runs every job of the batch in one transaction, each in its own savepoint unless it is
/// unguarded, and commits. Events of jobs that failed are dropped with their changes; an
/// unguarded job that fails after writing fails the batch (rolled back whole).
///
/// The transaction and savepoints are driven by cached statements (`BEGIN IMMEDIATE`,
/// `SAVEPOINT job`, …): rusqlite's `Transaction` and `Savepoint` run theirs through
/// `execute_batch`, which parses the SQL again on every batch and every job (about 3 % of a
/// node's CPU under chat load, `sqlite3RunParser` in `perf`).
fn commit_batch(
    conn: &mut Connection,
    cache: &mut WriteCache,
    batch: &mut [BoxedJob],
    events: &mut Vec<StoredEvent>,
    times: &mut Times,
) -> rusqlite::Result<()> {
    let mut lap = Instant::now();
    let mut split = |into: &mut Duration| {
        let now = Instant::now();
        *into = now - lap;
        lap = now;
    };
    let begun = run_cached(conn, "BEGIN IMMEDIATE");
    split(&mut times.begin);
    begun?;
    let ran = run_jobs(conn, cache, batch, events);
    split(&mut times.jobs);
    let outcome = ran.and_then(|()| run_cached(conn, "COMMIT"));
    split(&mut times.commit);
    if outcome.is_err() && !conn.is_autocommit() {
        // A failed statement may have ended the transaction already; else it ends here.
        if let Err(err) = run_cached(conn, "ROLLBACK") {
            tracing::error!(error = %err, "cannot roll back a failed write batch");
        }
    }
    outcome
}

/// The body of [`commit_batch`], inside its transaction.
fn run_jobs(
    conn: &Connection,
    cache: &mut WriteCache,
    batch: &mut [BoxedJob],
    events: &mut Vec<StoredEvent>,
) -> rusqlite::Result<()> {
    if let Err(err) = cache.revalidate(conn) {
        tracing::warn!(error = %err, "cannot tell whether the write cache is current; clearing it");
        cache.clear();
    }
    for job in batch.iter_mut() {
        let mark = events.len();
        if !job.guarded() {
            let changes = conn.total_changes();
            if !job.run(conn, cache, events) {
                events.truncate(mark);
                // Its changes cannot be told apart from the batch's: roll everything back. A
                // failed statement (I/O, memory) may also have ended the transaction already.
                if conn.total_changes() != changes || conn.is_autocommit() {
                    return Err(batch_aborted(
                        "a write failed halfway; the batch was rolled back".to_owned(),
                    ));
                }
            }
            continue;
        }
        // It may change what the cache remembers (members, archiving).
        cache.forget_members();
        run_cached(conn, "SAVEPOINT job")?;
        if job.run(conn, cache, events) {
            run_cached(conn, "RELEASE job")?;
        } else {
            events.truncate(mark);
            run_cached(conn, "ROLLBACK TO job")?;
            run_cached(conn, "RELEASE job")?;
        }
    }
    cache
        .before_commit(conn)
        .map_err(|err| batch_aborted(format!("merging client ids: {err}")))
}

/// Where a batch's time went, for the log when it held the database long.
#[derive(Debug, Default)]
struct Times {
    /// For this process's turn at a shared file.
    waited_for_turn: Duration,
    /// In `BEGIN IMMEDIATE`: SQLite's own write lock (another connection, a checkpoint).
    begin: Duration,
    jobs: Duration,
    /// In `COMMIT`: the log's sync.
    commit: Duration,
}

impl Times {
    /// Past this, a batch is logged at `warn`: every writer of the file waits while it holds
    /// the lock, and a wait past `schema::BUSY_TIMEOUT` refuses writes as busy.
    const LONG: Duration = Duration::from_secs(1);

    fn report(&self, jobs: usize) {
        let held = self.begin + self.jobs + self.commit;
        if held >= Self::LONG || self.waited_for_turn >= Self::LONG {
            tracing::warn!(
                jobs,
                waited_for_turn_ms = self.waited_for_turn.as_millis(),
                begin_ms = self.begin.as_millis(),
                jobs_ms = self.jobs.as_millis(),
                commit_ms = self.commit.as_millis(),
                "a write batch waited or held the database long"
            );
        }
    }
}

/// Runs a statement without parameters or rows through the statement cache.
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

/// Why a batch is rolled back though SQLite itself reported nothing wrong.
fn batch_aborted(reason: String) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
        Some(reason),
    )
}

/// Another process held the turn at writing the file past the busy timeout: the batch fails
/// as SQLite's own lock would have it (`Busy`, retryable).
fn turn_timed_out() -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
        Some("another process held the database's write lock past the busy timeout".to_owned()),
    )
}

/// Hands committed events to the sink; a panicking sink must not stop the writer.
fn publish(sink: &dyn EventSink, events: Vec<StoredEvent>) {
    if panic::catch_unwind(AssertUnwindSafe(|| sink.publish(events))).is_err() {
        tracing::error!("event sink panicked; committed events were not all published");
    }
}
