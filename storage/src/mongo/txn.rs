//! The write path: a gate that `close` shuts, per-conversation locks that keep the sink in seq
//! order, and multi-document transactions retried on transient errors.
//!
//! A write that creates an event runs as: take the gate (refused once closed), lock the
//! conversation (in this process), run the operation in a transaction, commit, publish its events
//! to the sink, unlock. Holding the lock until the events are published is what makes each
//! conversation's events reach the sink in seq order, and only once committed. Across processes
//! the transactions themselves keep seqs gapless: two of them bumping the same conversation's
//! `last_seq` conflict, and the loser is retried from the start.

use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use mongodb::error::{
    ErrorKind, TRANSIENT_TRANSACTION_ERROR, UNKNOWN_TRANSACTION_COMMIT_RESULT, WriteFailure,
};
use mongodb::options::WriteConcern;
use mongodb::{Client, ClientSession};
use tokio::sync::{Mutex, OwnedMutexGuard, RwLock, RwLockReadGuard};

use super::schema::Collections;
use crate::{EventSink, StoreError, StoredEvent};

/// MongoDB's duplicate key error code.
const DUPLICATE_KEY: i32 = 11000;
/// How long one write keeps retrying its transaction (transient errors, write conflicts with
/// other processes, duplicate-key races), as the drivers' `withTransaction` helpers do.
const RETRY_FOR: Duration = Duration::from_secs(30);
/// Longest pause between two attempts.
const MAX_BACKOFF: Duration = Duration::from_millis(100);
/// Attempts of one commit whose outcome is unknown.
const MAX_COMMIT_ATTEMPTS: u32 = 4;

/// Why an operation failed: the caller's fault (final) or the database's (maybe retried).
#[derive(Debug)]
pub(super) enum OpError {
    Store(StoreError),
    Db(mongodb::error::Error),
}

impl From<StoreError> for OpError {
    fn from(err: StoreError) -> Self {
        OpError::Store(err)
    }
}

impl From<mongodb::error::Error> for OpError {
    fn from(err: mongodb::error::Error) -> Self {
        OpError::Db(err)
    }
}

impl From<OpError> for StoreError {
    fn from(err: OpError) -> Self {
        match err {
            OpError::Store(err) => err,
            OpError::Db(err) => internal(err),
        }
    }
}

pub(super) type OpResult<T> = std::result::Result<T, OpError>;

/// A driver failure, for the log (never sent to clients).
pub(super) fn internal(err: mongodb::error::Error) -> StoreError {
    StoreError::internal("mongodb", err)
}

/// Whether the error is a unique-index violation.
pub(super) fn is_duplicate_key(err: &mongodb::error::Error) -> bool {
    match err.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(write)) => write.code == DUPLICATE_KEY,
        ErrorKind::Command(command) => command.code == DUPLICATE_KEY,
        ErrorKind::InsertMany(insert) => insert
            .write_errors
            .iter()
            .flatten()
            .any(|write| write.code == DUPLICATE_KEY),
        _ => false,
    }
}

/// What an operation works with: the collections, a session (in a transaction on the write
/// path), and the events it records for the sink.
pub(super) struct Ctx {
    pub db: Collections,
    pub session: ClientSession,
    pub events: Vec<StoredEvent>,
}

impl Ctx {
    pub(super) async fn new(client: &Client, db: &Collections) -> crate::Result<Ctx> {
        let session = client.start_session().await.map_err(internal)?;
        Ok(Ctx {
            db: db.clone(),
            session,
            events: Vec::new(),
        })
    }
}

/// A boxed operation future borrowing its context.
pub(super) type OpFuture<'s, T> = Pin<Box<dyn Future<Output = OpResult<T>> + Send + 's>>;

/// Admits writes until `close`, which waits for those in flight (write-preferring: once `close`
/// waits, new writes queue behind it and then see the store closed).
#[derive(Debug)]
pub(super) struct Gate {
    open: RwLock<bool>,
}

impl Gate {
    pub(super) fn new() -> Gate {
        Gate {
            open: RwLock::new(true),
        }
    }

    /// Admits one write: hold the guard until it is done.
    pub(super) async fn enter(&self) -> crate::Result<RwLockReadGuard<'_, bool>> {
        let open = self.open.read().await;
        if *open {
            Ok(open)
        } else {
            Err(StoreError::Unavailable)
        }
    }

    /// Whether writes are admitted (without waiting).
    pub(super) fn is_open(&self) -> bool {
        self.open.try_read().map(|open| *open).unwrap_or(false)
    }

    /// Waits for the writes in flight, then refuses new ones.
    pub(super) async fn close(&self) {
        *self.open.write().await = false;
    }
}

/// One async mutex per conversation with writes in flight in this process; entries go away with
/// their last user.
#[derive(Debug, Default)]
pub(super) struct ConversationLocks {
    locks: DashMap<String, Arc<Mutex<()>>>,
}

/// A held conversation lock.
pub(super) struct ConversationGuard<'a> {
    guard: Option<OwnedMutexGuard<()>>,
    locks: &'a ConversationLocks,
    conversation: String,
}

impl ConversationLocks {
    pub(super) async fn lock(&self, conversation: &str) -> ConversationGuard<'_> {
        // The DashMap guard is released at the end of this statement, before any await.
        let mutex = self
            .locks
            .entry(conversation.to_owned())
            .or_default()
            .clone();
        ConversationGuard {
            guard: Some(mutex.lock_owned().await),
            locks: self,
            conversation: conversation.to_owned(),
        }
    }
}

impl Drop for ConversationGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        // Only the map's own reference left: nobody holds or waits for it.
        self.locks
            .locks
            .remove_if(&self.conversation, |_, mutex| Arc::strong_count(mutex) == 1);
    }
}

/// Runs `op` in a transaction on `cx`, retrying it whole on transient errors (write conflicts
/// with another process) and duplicate-key races, then publishes its events to `sink` once
/// committed. A `StoreError` from `op` aborts the transaction and is returned as is.
pub(super) async fn transact<C, T, F>(
    cx: &mut Ctx,
    sink: &dyn EventSink,
    context: &C,
    op: F,
) -> crate::Result<T>
where
    C: Sync + ?Sized,
    F: for<'s> Fn(&'s mut Ctx, &'s C) -> OpFuture<'s, T>,
{
    let started = Instant::now();
    let mut attempt: u32 = 1;
    loop {
        cx.events.clear();
        // Acknowledged means durable on a majority: a failover cannot roll it back.
        cx.session
            .start_transaction()
            .write_concern(WriteConcern::majority())
            .await
            .map_err(internal)?;
        let failure = match op(cx, context).await {
            Ok(value) => match commit(&mut cx.session).await {
                Ok(()) => {
                    metrics::histogram!(crate::metrics::COMMIT_DURATION, "backend" => "mongodb")
                        .record(started.elapsed().as_secs_f64());
                    let events = std::mem::take(&mut cx.events);
                    if !events.is_empty() {
                        publish(sink, events);
                    }
                    return Ok(value);
                }
                Err(err) => err,
            },
            Err(OpError::Store(err)) => {
                abort(&mut cx.session).await;
                return Err(err);
            }
            Err(OpError::Db(err)) => {
                abort(&mut cx.session).await;
                err
            }
        };
        let retry =
            failure.contains_label(TRANSIENT_TRANSACTION_ERROR) || is_duplicate_key(&failure);
        if !retry || started.elapsed() >= RETRY_FOR {
            tracing::warn!(error = %failure, attempt, "mongodb transaction failed");
            return Err(internal(failure));
        }
        tracing::debug!(error = %failure, attempt, "retrying mongodb transaction");
        tokio::time::sleep(backoff(attempt)).await;
        attempt += 1;
    }
}

/// Exponential backoff with jitter, so that conflicting writers stop colliding.
fn backoff(attempt: u32) -> Duration {
    let ceiling = Duration::from_millis(2)
        .saturating_mul(1 << attempt.min(10))
        .min(MAX_BACKOFF);
    let jitter = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|now| now.subsec_nanos())
        .unwrap_or(0);
    let ceiling_micros = u32::try_from(ceiling.as_micros())
        .unwrap_or(u32::MAX)
        .max(1);
    Duration::from_micros(u64::from(
        ceiling_micros / 2 + jitter % (ceiling_micros / 2 + 1),
    ))
}

/// Hands committed events to the sink; a panicking sink must not fail a committed write.
fn publish(sink: &dyn EventSink, events: Vec<StoredEvent>) {
    if panic::catch_unwind(AssertUnwindSafe(|| sink.publish(events))).is_err() {
        tracing::error!("event sink panicked; committed events were not all published");
    }
}

async fn commit(session: &mut ClientSession) -> mongodb::error::Result<()> {
    let mut attempt = 1;
    loop {
        match session.commit_transaction().await {
            Err(err)
                if err.contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT)
                    && attempt < MAX_COMMIT_ATTEMPTS =>
            {
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

async fn abort(session: &mut ClientSession) {
    if let Err(err) = session.abort_transaction().await {
        tracing::debug!(error = %err, "aborting a mongodb transaction");
    }
}

#[cfg(test)]
mod tests {
    use mongodb::bson::doc;

    use super::*;
    use crate::conformance::RecordingSink;
    use crate::mongo::common::{next_seq, seq_from_db};
    use crate::mongo::schema::ConversationDoc;

    #[tokio::test]
    async fn conversation_locks_serialize_and_clean_up() {
        let locks = ConversationLocks::default();
        let first = locks.lock("c1").await;
        let other = locks.lock("c2").await;
        assert_eq!(locks.locks.len(), 2);
        let waiting = tokio::time::timeout(Duration::from_millis(50), locks.lock("c1")).await;
        assert!(waiting.is_err(), "a second writer waits for the first");
        drop(first);
        let second = locks.lock("c1").await;
        drop(second);
        drop(other);
        assert!(locks.locks.is_empty(), "unused locks are removed");
    }

    #[tokio::test]
    async fn the_gate_drains_then_refuses() {
        let gate = Arc::new(Gate::new());
        let in_flight = gate.enter().await.expect("open");
        let closing = tokio::spawn({
            let gate = gate.clone();
            async move { gate.close().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !closing.is_finished(),
            "close waits for the write in flight"
        );
        drop(in_flight);
        closing.await.expect("closed");
        assert!(matches!(gate.enter().await, Err(StoreError::Unavailable)));
        assert!(!gate.is_open());
    }

    /// A failed operation leaves nothing behind, not even the seq it took, and publishes
    /// nothing: the server really rolls transactions back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_operation_rolls_back_its_seq() {
        let server = tokio::task::spawn_blocking(confab_testkit::MongoServer::start)
            .await
            .expect("join")
            .expect("start secantusdb (run scripts/install-test-services)");
        let client = Client::with_uri_str(server.url()).await.expect("client");
        let db = Collections::new(&client.database("txn_test"));
        db.create_indexes().await.expect("indexes");
        let conversation = ConversationDoc {
            id: "c1".to_owned(),
            tenant: "t".to_owned(),
            kind: "group".to_owned(),
            title: None,
            created_by: "alice".to_owned(),
            created_at: 0,
            archived: false,
            last_seq: 0,
            last_activity: 0,
            direct_key: None,
        };
        db.conversations
            .insert_one(&conversation)
            .await
            .expect("insert");
        let sink = RecordingSink::new();

        let mut cx = Ctx::new(&client, &db).await.expect("ctx");
        let failed: crate::Result<u64> = transact(&mut cx, sink.as_ref(), &(), |cx, _| {
            Box::pin(async move {
                next_seq(cx, "c1", 1).await?;
                Err(StoreError::Invalid("changed my mind".to_owned()).into())
            })
        })
        .await;
        assert!(matches!(failed, Err(StoreError::Invalid(_))));
        let stored = db
            .conversations
            .find_one(doc! { "_id": "c1" })
            .await
            .expect("find")
            .expect("conversation");
        assert_eq!(stored.last_seq, 0, "the seq was rolled back");

        let seq = transact(&mut cx, sink.as_ref(), &(), |cx, _| {
            Box::pin(async move { next_seq(cx, "c1", 2).await })
        })
        .await
        .expect("commit");
        assert_eq!(seq, 1);
        let stored = db
            .conversations
            .find_one(doc! { "_id": "c1" })
            .await
            .expect("find")
            .expect("conversation");
        assert_eq!((seq_from_db(stored.last_seq), stored.last_activity), (1, 2));
        assert!(sink.events().is_empty(), "no event was recorded");
    }
}
