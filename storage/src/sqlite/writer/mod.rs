//! The single writer: a dedicated thread that owns the write connection and commits jobs in
//! batches (group commit).
//!
//! Callers queue jobs on a bounded channel (a full queue makes `send` wait: backpressure). The
//! thread blocks for one job, drains up to `max_batch - 1` more without waiting, and runs them all
//! in one transaction, each inside its own savepoint so that a failing job rolls back only
//! itself. A job that makes every check before its first write (an append) may run without one
//! ([`Writer::enqueue_checked`]): a savepoint costs a statement journal of every page it
//! touches, about a tenth of the writer's time. Should such a job fail after writing anyway (an
//! I/O error), the whole batch is rolled back and fails. One fsync then covers the whole batch.
//! Only after the commit succeeds are the batch's events handed to the [`EventSink`] (in commit
//! order) and the callers answered; if the commit fails, every job gets an error and nothing is
//! published.
//!
//! - `job`: a queued write, type-erased, and how its caller is answered.
//! - `batch`: the thread's loop: a batch, its savepoints, the commit, the publication.
//! - `turns`: turns at writing a file that other processes write too.

mod batch;
mod job;
#[cfg(test)]
mod tests;
mod turns;

use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::cache::WriteCache;
use super::checkpoint::Checkpointer;
use super::integrity::CommitHealth;
use crate::{EventSink, Result, StoreError, StoredEvent};
use job::{BoxedJob, Pending};

/// The handle on the writer thread held by the store.
pub(super) struct Writer {
    /// `None` once closed: new writes are refused.
    sender: Mutex<Option<mpsc::Sender<BoxedJob>>>,
    /// Taken by the first `close`; an async mutex so a second `close` waits for the first.
    thread: tokio::sync::Mutex<Option<JoinHandle<()>>>,
    /// The outcome of the last commit, kept by the thread.
    health: CommitHealth,
}

impl Writer {
    /// Starts the writer thread on `conn`. Dropping the returned handle without `close` is safe:
    /// the thread still commits what was queued, then exits on its own.
    pub(super) fn spawn(
        conn: Connection,
        sink: Arc<dyn EventSink>,
        checkpointer: Option<Checkpointer>,
        cache: WriteCache,
        max_batch: usize,
        queue: usize,
    ) -> Result<Writer> {
        let (sender, receiver) = mpsc::channel(queue.max(1));
        let health = CommitHealth::default();
        let thread = spawn_thread(
            conn,
            sink,
            checkpointer,
            cache,
            receiver,
            max_batch.max(1),
            health.clone(),
        )?;
        Ok(Writer {
            sender: Mutex::new(Some(sender)),
            thread: tokio::sync::Mutex::new(Some(thread)),
            health,
        })
    }

    /// Why the last commit failed (`disk_full`, `read_only`, …); `None` if it succeeded.
    pub(super) fn commit_fault(&self) -> Option<&'static str> {
        self.health.fault()
    }

    /// Whether writes are still accepted.
    pub(super) fn is_open(&self) -> bool {
        self.sender
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Runs `work` in the writer's next batch and returns its result once the batch is durable
    /// and its events published. `Unavailable` after `close`.
    pub(super) async fn write<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut Vec<StoredEvent>) -> Result<T> + Send + 'static,
    {
        self.queue(
            move |conn, _: &mut WriteCache, events| work(conn, events),
            true,
        )
        .await
    }

    /// Queues `work` without a savepoint of its own, for `work` that returns an error only
    /// before its first write (if it fails after writing, its whole batch is rolled back and
    /// every job in it fails). `work` may use the writer's [`WriteCache`], and must not change
    /// anything the cache remembers. Returns once the job is in the queue; the returned future
    /// gives its result. Jobs run in the order they were queued.
    pub(super) async fn enqueue_checked<T, F>(
        &self,
        work: F,
    ) -> Result<impl Future<Output = Result<T>> + Send + Sync + 'static>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut WriteCache, &mut Vec<StoredEvent>) -> Result<T>
            + Send
            + 'static,
    {
        let answer = self.enqueue(work, false).await?;
        Ok(outcome(answer))
    }

    async fn queue<T, F>(&self, work: F, guarded: bool) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut WriteCache, &mut Vec<StoredEvent>) -> Result<T>
            + Send
            + 'static,
    {
        let answer = self.enqueue(work, guarded).await?;
        outcome(answer).await
    }

    /// Puts the job in the writer's queue (waiting while it is full); returns where its
    /// result will come.
    async fn enqueue<T, F>(&self, work: F, guarded: bool) -> Result<oneshot::Receiver<Result<T>>>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut WriteCache, &mut Vec<StoredEvent>) -> Result<T>
            + Send
            + 'static,
    {
        let sender = self
            .sender
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or(StoreError::Unavailable)?;
        let (reply, answer) = oneshot::channel();
        let job: BoxedJob = Box::new(Pending {
            work: Some(work),
            guarded,
            outcome: None,
            reply,
        });
        sender
            .send(job)
            .await
            .map_err(|_| StoreError::Unavailable)?;
        Ok(answer)
    }

    /// Stops accepting writes, lets the thread commit everything already queued, and waits for
    /// it to exit. Closing twice is harmless.
    pub(super) async fn close(&self) -> Result<()> {
        let mut thread = self.thread.lock().await;
        // Dropping our sender closes the queue once the writes in flight (holding clones) are in.
        drop(
            self.sender
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        let Some(handle) = thread.take() else {
            return Ok(());
        };
        let joined = tokio::task::spawn_blocking(move || handle.join())
            .await
            .map_err(|err| StoreError::internal("joining the writer", err))?;
        joined.map_err(|_| StoreError::internal_bare("the writer thread panicked"))
    }
}

/// A queued job's result, once its batch is decided; `Unavailable` if the writer went away.
async fn outcome<T>(answer: oneshot::Receiver<Result<T>>) -> Result<T> {
    answer.await.map_err(|_| StoreError::Unavailable)?
}

fn spawn_thread(
    conn: Connection,
    sink: Arc<dyn EventSink>,
    checkpointer: Option<Checkpointer>,
    cache: WriteCache,
    receiver: mpsc::Receiver<BoxedJob>,
    max_batch: usize,
    health: CommitHealth,
) -> Result<JoinHandle<()>> {
    let turns = match conn.path() {
        Some(path) if !path.is_empty() => Some(turns::Turns::open(std::path::Path::new(path))?),
        _ => None,
    };
    std::thread::Builder::new()
        .name("confab-sqlite-writer".to_owned())
        .spawn(move || {
            batch::run(
                batch::Db { conn, turns },
                sink.as_ref(),
                checkpointer,
                cache,
                receiver,
                max_batch,
                &health,
            )
        })
        .map_err(|err| StoreError::internal("spawning the writer thread", err))
}
