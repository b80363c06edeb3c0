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

use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use super::cache::WriteCache;
use super::checkpoint::Checkpointer;
use crate::{EventSink, Result, StoreError, StoredEvent};

/// A queued write, type-erased so that jobs of any result type share one queue.
trait Job: Send {
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
    fn answer(self: Box<Self>, batch: std::result::Result<(), &str>);
}

type BoxedJob = Box<dyn Job>;

/// A job and the caller waiting for its result.
struct Pending<T, F> {
    work: Option<F>,
    guarded: bool,
    outcome: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
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
            .unwrap_or_else(|_| Err(StoreError::Internal("write job panicked".to_owned())));
        let keep = outcome.is_ok();
        self.outcome = Some(outcome);
        keep
    }

    fn guarded(&self) -> bool {
        self.guarded
    }

    fn answer(self: Box<Self>, batch: std::result::Result<(), &str>) {
        let outcome = match (self.outcome, batch) {
            // A failed job was rolled back whatever became of the batch: its own error stands.
            (Some(Err(err)), _) => Err(err),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (_, Err(reason)) => Err(StoreError::Internal(format!(
                "write batch failed: {reason}"
            ))),
            (None, Ok(())) => Err(StoreError::Internal("write job never ran".to_owned())),
        };
        if self.reply.send(outcome).is_err() {
            tracing::debug!("write caller went away before its answer");
        }
    }
}

/// The handle on the writer thread held by the store.
pub(super) struct Writer {
    /// `None` once closed: new writes are refused.
    sender: Mutex<Option<mpsc::Sender<BoxedJob>>>,
    /// Taken by the first `close`; an async mutex so a second `close` waits for the first.
    thread: tokio::sync::Mutex<Option<JoinHandle<()>>>,
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
        let thread = spawn_thread(conn, sink, checkpointer, cache, receiver, max_batch.max(1))?;
        Ok(Writer {
            sender: Mutex::new(Some(sender)),
            thread: tokio::sync::Mutex::new(Some(thread)),
        })
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
            .map_err(|err| StoreError::Internal(format!("joining the writer: {err}")))?;
        joined.map_err(|_| StoreError::Internal("the writer thread panicked".to_owned()))
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
) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("confab-sqlite-writer".to_owned())
        .spawn(move || {
            run(
                conn,
                sink.as_ref(),
                checkpointer,
                cache,
                receiver,
                max_batch,
            )
        })
        .map_err(|err| StoreError::Internal(format!("spawning the writer thread: {err}")))
}

/// The writer thread's loop; returns when the queue is closed and drained (stopping the
/// checkpointer on the way out).
fn run(
    mut conn: Connection,
    sink: &dyn EventSink,
    checkpointer: Option<Checkpointer>,
    mut cache: WriteCache,
    mut receiver: mpsc::Receiver<BoxedJob>,
    max_batch: usize,
) {
    let mut batch: Vec<BoxedJob> = Vec::with_capacity(max_batch);
    while let Some(first) = receiver.blocking_recv() {
        batch.push(first);
        while batch.len() < max_batch {
            match receiver.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut events = Vec::new();
        match commit_batch(&mut conn, &mut cache, &mut batch, &mut events) {
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
                tracing::error!(error = %err, jobs = batch.len(), "write batch failed");
                let reason = err.to_string();
                for job in batch.drain(..) {
                    job.answer(Err(&reason));
                }
            }
        }
    }
    // Everything is committed: stop copying, and leave an empty log behind.
    drop(checkpointer);
    super::checkpoint::checkpoint(&conn, "TRUNCATE");
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::RecordingSink;
    use confab_protocol::EventKind;

    fn event(seq: u64) -> StoredEvent {
        StoredEvent {
            tenant: "t".to_owned(),
            conversation: "c".to_owned(),
            seq,
            kind: EventKind::Message,
            subject: None,
            ts: 0,
            frame: String::new(),
        }
    }

    type Queued<T> = (BoxedJob, oneshot::Receiver<Result<T>>);

    fn job<T: Send + 'static>(
        work: impl FnOnce(&Connection, &mut Vec<StoredEvent>) -> Result<T> + Send + 'static,
    ) -> Queued<T> {
        without_cache(work, true)
    }

    /// A job without a savepoint of its own, as [`Writer::enqueue_checked`] queues.
    fn checked<T: Send + 'static>(
        work: impl FnOnce(&Connection, &mut Vec<StoredEvent>) -> Result<T> + Send + 'static,
    ) -> Queued<T> {
        without_cache(work, false)
    }

    fn without_cache<T: Send + 'static>(
        work: impl FnOnce(&Connection, &mut Vec<StoredEvent>) -> Result<T> + Send + 'static,
        guarded: bool,
    ) -> Queued<T> {
        queued(
            move |conn, _: &mut WriteCache, events| work(conn, events),
            guarded,
        )
    }

    fn queued<T: Send + 'static>(
        work: impl FnOnce(&Connection, &mut WriteCache, &mut Vec<StoredEvent>) -> Result<T>
        + Send
        + 'static,
        guarded: bool,
    ) -> (BoxedJob, oneshot::Receiver<Result<T>>) {
        let (reply, answer) = oneshot::channel();
        (
            Box::new(Pending {
                work: Some(work),
                guarded,
                outcome: None,
                reply,
            }),
            answer,
        )
    }

    fn insert(value: i64) -> impl FnOnce(&Connection, &mut Vec<StoredEvent>) -> Result<()> {
        move |conn, events| {
            conn.execute("INSERT INTO t (v) VALUES (?1)", [value])?;
            events.push(event(u64::try_from(value).expect("positive")));
            Ok(())
        }
    }

    #[test]
    fn a_failing_job_rolls_back_alone_and_the_batch_commits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db.sqlite");
        let conn = Connection::open(&path).expect("open");
        conn.execute_batch("CREATE TABLE t (v INTEGER NOT NULL)")
            .expect("create");

        // Every job is queued before the thread starts, so that they form a single batch.
        let (first, first_answer) = job(insert(1));
        let (failing, failing_answer) = job(|conn, events| {
            insert(2)(conn, events)?;
            Err::<(), _>(StoreError::NotMember)
        });
        let (panicking, panicking_answer) =
            job::<()>(|conn: &Connection, events: &mut Vec<StoredEvent>| {
                insert(3)(conn, events)?;
                panic!("job bug");
            });
        let (last, last_answer) = job(insert(4));
        let sink = run_to_end(conn, vec![first, failing, panicking, last]);

        assert!(first_answer.blocking_recv().expect("answered").is_ok());
        assert!(matches!(
            failing_answer.blocking_recv().expect("answered"),
            Err(StoreError::NotMember)
        ));
        assert!(matches!(
            panicking_answer.blocking_recv().expect("answered"),
            Err(StoreError::Internal(_))
        ));
        assert!(last_answer.blocking_recv().expect("answered").is_ok());

        let seqs: Vec<u64> = sink.events().iter().map(|event| event.seq).collect();
        assert_eq!(
            seqs,
            [1, 4],
            "only the kept jobs' events are published, in order"
        );
        let conn = Connection::open(&path).expect("reopen");
        let mut statement = conn.prepare("SELECT v FROM t ORDER BY v").expect("prepare");
        let values: Vec<i64> = statement
            .query_map([], |row| row.get(0))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows");
        assert_eq!(values, [1, 4]);
    }

    /// Queues `jobs` before the writer starts (so that they form one batch), runs the writer
    /// on `conn` until the queue is drained, and returns what it published.
    fn run_to_end(conn: Connection, jobs: Vec<BoxedJob>) -> Arc<RecordingSink> {
        let (sender, receiver) = mpsc::channel(16);
        for queued in jobs {
            sender
                .try_send(queued)
                .map_err(|_| "queue full")
                .expect("queue");
        }
        drop(sender);
        let sink = Arc::new(RecordingSink::default());
        spawn_thread(
            conn,
            sink.clone(),
            None,
            WriteCache::default(),
            receiver,
            16,
        )
        .expect("spawn")
        .join()
        .expect("writer exits once drained");
        sink
    }

    /// Runs `jobs` as one batch on a fresh database with table `t`; returns the sink's seqs and
    /// the committed values.
    fn run_batch(jobs: Vec<BoxedJob>) -> (Vec<u64>, Vec<i64>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db.sqlite");
        let conn = Connection::open(&path).expect("open");
        conn.execute_batch("CREATE TABLE t (v INTEGER NOT NULL)")
            .expect("create");
        let sink = run_to_end(conn, jobs);
        let seqs = sink.events().iter().map(|event| event.seq).collect();
        let conn = Connection::open(&path).expect("reopen");
        let mut statement = conn.prepare("SELECT v FROM t ORDER BY v").expect("prepare");
        let values = statement
            .query_map([], |row| row.get(0))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows");
        (seqs, values)
    }

    #[test]
    fn a_checked_job_failing_before_it_writes_fails_alone() {
        let (first, first_answer) = checked(insert(1));
        let (refused, refused_answer) =
            checked::<()>(|_: &Connection, _: &mut Vec<StoredEvent>| Err(StoreError::NotMember));
        let (guarded, guarded_answer) = job(insert(3));
        let (last, last_answer) = checked(insert(4));
        let (seqs, values) = run_batch(vec![first, refused, guarded, last]);
        assert!(first_answer.blocking_recv().expect("answered").is_ok());
        assert!(matches!(
            refused_answer.blocking_recv().expect("answered"),
            Err(StoreError::NotMember)
        ));
        assert!(guarded_answer.blocking_recv().expect("answered").is_ok());
        assert!(last_answer.blocking_recv().expect("answered").is_ok());
        assert_eq!(seqs, [1, 3, 4]);
        assert_eq!(values, [1, 3, 4]);
    }

    #[test]
    fn a_checked_job_failing_after_it_wrote_rolls_the_batch_back() {
        let (first, first_answer) = job(insert(1));
        let (halfway, halfway_answer) = checked(|conn, events| {
            insert(2)(conn, events)?;
            Err::<(), _>(StoreError::Internal("disk trouble".to_owned()))
        });
        let (after, after_answer) = checked(insert(3));
        let (seqs, values) = run_batch(vec![first, halfway, after]);
        assert!(matches!(
            first_answer.blocking_recv().expect("answered"),
            Err(StoreError::Internal(reason)) if reason.contains("write batch failed")
        ));
        assert!(matches!(
            halfway_answer.blocking_recv().expect("answered"),
            Err(StoreError::Internal(reason)) if reason == "disk trouble"
        ));
        assert!(matches!(
            after_answer.blocking_recv().expect("answered"),
            Err(StoreError::Internal(_))
        ));
        assert!(seqs.is_empty(), "nothing of a failed batch is published");
        assert!(values.is_empty(), "nothing of a failed batch is kept");
    }

    #[test]
    fn a_failed_batch_forgets_the_client_ids_it_stored() {
        let (_dir, conn) = super::super::schema::seeded_for_tests();
        let append = || {
            queued(
                |conn: &Connection, cache: &mut WriteCache, events: &mut Vec<StoredEvent>| {
                    super::super::message_ops::append_message(
                        conn,
                        cache,
                        events,
                        crate::NewMessage {
                            tenant: "t1".to_owned(),
                            conversation: "c1".to_owned(),
                            author: "ann".to_owned(),
                            client_msg_id: "once".to_owned(),
                            body: "hello".to_owned(),
                            reply_to: None,
                            attachments: Vec::new(),
                        },
                    )
                },
                false,
            )
        };
        // The append is stored and remembered, then its batch fails (both queued before the
        // thread starts, so that they form one batch).
        let (sender, receiver) = mpsc::channel(16);
        let (stored, stored_answer) = append();
        let (halfway, halfway_answer) = checked(|conn, events| {
            insert_member(conn, events)?;
            Err::<(), _>(StoreError::Internal("disk trouble".to_owned()))
        });
        for queued in [stored, halfway] {
            sender.try_send(queued).map_err(|_| "full").expect("queue");
        }
        let sink = Arc::new(RecordingSink::default());
        let thread = spawn_thread(
            conn,
            sink.clone(),
            None,
            WriteCache::default(),
            receiver,
            16,
        )
        .expect("spawn");
        assert!(stored_answer.blocking_recv().expect("answered").is_err());
        assert!(halfway_answer.blocking_recv().expect("answered").is_err());

        // Sent again, it is a new message, not a repeat of one that was never kept.
        let (again, again_answer) = append();
        sender.try_send(again).map_err(|_| "full").expect("queue");
        let appended = again_answer
            .blocking_recv()
            .expect("answered")
            .expect("stored");
        assert!(!appended.duplicate);
        assert_eq!(appended.seq, 1);
        drop(sender);
        thread.join().expect("writer exits");
        assert_eq!(sink.events().len(), 1);
    }

    fn insert_member(conn: &Connection, _: &mut Vec<StoredEvent>) -> Result<()> {
        conn.execute(
            "INSERT INTO members (tenant, conversation_id, user_id, role, joined_at)
             VALUES ('t1', 'c1', 'bob', 'member', 0)",
            [],
        )?;
        Ok(())
    }

    #[test]
    fn a_failed_commit_fails_every_job_and_publishes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conn = Connection::open(dir.path().join("db.sqlite")).expect("open");
        conn.execute_batch(
            "CREATE TABLE parent (id INTEGER PRIMARY KEY);
             CREATE TABLE t (v INTEGER NOT NULL REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);
             PRAGMA foreign_keys = ON;",
        )
        .expect("create");

        // Both jobs succeed on their own, but the deferred foreign key fails the COMMIT.
        let (good, good_answer) = job(|_: &Connection, events: &mut Vec<StoredEvent>| {
            events.push(event(1));
            Ok(())
        });
        let (dangling, dangling_answer) = job(insert(7));
        let sink = run_to_end(conn, vec![good, dangling]);

        assert!(matches!(
            good_answer.blocking_recv().expect("answered"),
            Err(StoreError::Internal(_))
        ));
        assert!(matches!(
            dangling_answer.blocking_recv().expect("answered"),
            Err(StoreError::Internal(_))
        ));
        assert!(sink.events().is_empty());
    }
}
