//! The writer on real databases: batches, savepoints, failures and what gets published.

use std::sync::Arc;

use confab_protocol::EventBody;
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::job::{BoxedJob, Pending};
use super::spawn_thread;
use crate::conformance::RecordingSink;
use crate::sqlite::cache::WriteCache;
use crate::{Result, StoreError, StoredEvent};

fn event(seq: u64) -> StoredEvent {
    StoredEvent {
        tenant: "t".to_owned(),
        conversation: "c".to_owned(),
        seq,
        ts: 0,
        body: EventBody::MessageDeleted {
            message: "m".to_owned(),
            by: "u".to_owned(),
        },
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
    work: impl FnOnce(&Connection, &mut WriteCache, &mut Vec<StoredEvent>) -> Result<T> + Send + 'static,
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
        Err(StoreError::Internal { .. })
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
        Default::default(),
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
        Err::<(), _>(StoreError::internal_bare("disk trouble"))
    });
    let (after, after_answer) = checked(insert(3));
    let (seqs, values) = run_batch(vec![first, halfway, after]);
    assert!(matches!(
        first_answer.blocking_recv().expect("answered"),
        Err(StoreError::Internal { context, source: Some(cause) })
            if context == "write batch failed" && cause.to_string().contains("halfway")
    ));
    assert!(matches!(
        halfway_answer.blocking_recv().expect("answered"),
        Err(StoreError::Internal { context, .. }) if context == "disk trouble"
    ));
    assert!(matches!(
        after_answer.blocking_recv().expect("answered"),
        Err(StoreError::Internal { .. })
    ));
    assert!(seqs.is_empty(), "nothing of a failed batch is published");
    assert!(values.is_empty(), "nothing of a failed batch is kept");
}

#[test]
fn a_failed_batch_forgets_the_client_ids_it_stored() {
    let (_dir, conn) = crate::sqlite::schema::seeded_for_tests();
    let append = || {
        queued(
            |conn: &Connection, cache: &mut WriteCache, events: &mut Vec<StoredEvent>| {
                crate::sqlite::message_ops::append_message(
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
                        repeat_only: false,
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
        Err::<(), _>(StoreError::internal_bare("disk trouble"))
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
        Default::default(),
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
        Err(StoreError::Internal { .. })
    ));
    assert!(matches!(
        dangling_answer.blocking_recv().expect("answered"),
        Err(StoreError::Internal { .. })
    ));
    assert!(sink.events().is_empty());
}

/// Several processes on one shared file (`--shared-data-dir`): a write that finds the file
/// held past the busy timeout fails as `Busy` (retryable, `unavailable` on the wire), writes
/// nothing, and does not count as a failing commit (`/ready` stays up); once the lock is
/// released, writes work again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_held_by_another_process_is_busy_not_broken() {
    use crate::sqlite::{SqliteOptions, SqliteStore};
    use crate::{NullSink, Store};

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("confab.db");
    let store =
        SqliteStore::open(&path, Arc::new(NullSink), SqliteOptions::default()).expect("open");
    let holder = Connection::open(&path).expect("a second connection, as another node's");
    holder
        .execute_batch("BEGIN IMMEDIATE")
        .expect("hold the write lock");
    let write = || {
        store.write(|conn, _| {
            conn.execute("PRAGMA user_version = user_version", [])?;
            Ok(())
        })
    };
    let busy = write().await;
    assert!(matches!(busy, Err(StoreError::Busy)), "{busy:?}");
    assert_eq!(
        StoreError::Busy.code(),
        confab_protocol::ErrorCode::Unavailable
    );
    assert!(
        store.writer.commit_fault().is_none(),
        "busy is not a broken disk"
    );
    holder.execute_batch("COMMIT").expect("release");
    write().await.expect("writes work again");
    store.ping().await.expect("healthy");
    store.close().await.expect("close");
}

/// Another process's turn at writing the shared file (`<db>-writer`, [`super::turns`]): a
/// write waits for it instead of polling SQLite's lock, and goes on as soon as it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_waits_for_another_process_turn_and_goes_on_when_it_ends() {
    use crate::sqlite::{SqliteOptions, SqliteStore};
    use crate::{NullSink, Store};

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("confab.db");
    let store =
        SqliteStore::open(&path, Arc::new(NullSink), SqliteOptions::default()).expect("open");
    let holder = std::fs::File::options()
        .read(true)
        .write(true)
        .open(super::turns::lock_file(&path))
        .expect("the lock file, as another node opens it");
    holder.lock().expect("another node's turn");
    let store = Arc::new(store);
    let writing = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            store
                .write(|conn, _| {
                    conn.execute("PRAGMA user_version = user_version", [])?;
                    Ok(())
                })
                .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!writing.is_finished(), "the write waits for the turn");
    holder.unlock().expect("the other node's turn ends");
    writing.await.expect("no panic").expect("the write goes on");
    store.close().await.expect("close");
}

/// Four stores on one file, as four nodes sharing it, each appending to the same
/// conversation at once: every append is acked with its own seq, the seqs are dense, and each
/// store's history has them all in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_sharing_one_file_append_without_losing_or_repeating_a_seq() {
    use crate::sqlite::{SqliteOptions, SqliteStore};
    use crate::{ConversationKind, NewConversation, NullSink, Store};

    const STORES: usize = 4;
    const EACH: usize = 60;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("confab.db");
    let stores: Vec<Arc<SqliteStore>> = (0..STORES)
        .map(|_| {
            SqliteStore::open(&path, Arc::new(NullSink), SqliteOptions::default())
                .map(Arc::new)
                .expect("open")
        })
        .collect();
    let authors: Vec<String> = (0..STORES).map(|i| format!("u{i}")).collect();
    let (conversation, _) = stores[0]
        .create_conversation(NewConversation {
            tenant: "acme".to_owned(),
            creator: authors[0].clone(),
            kind: ConversationKind::Group,
            title: None,
            members: authors[1..].to_vec(),
        })
        .await
        .expect("create");
    let mut sending = tokio::task::JoinSet::new();
    for (store, author) in stores.iter().zip(&authors) {
        for n in 0..EACH {
            let (store, author) = (Arc::clone(store), author.clone());
            let message =
                crate::conformance::keyed_message(&conversation.id, &author, &format!("m{n}"));
            sending.spawn(async move { store.append_message(message).await });
        }
    }
    let mut seqs = Vec::new();
    while let Some(sent) = sending.join_next().await {
        let appended = sent.expect("no panic").expect("acked");
        assert!(!appended.duplicate);
        seqs.push(appended.seq);
    }
    seqs.sort_unstable();
    let total = (STORES * EACH) as u64;
    assert_eq!(seqs, (1..=total).collect::<Vec<_>>());
    for store in &stores {
        let (events, _) = store
            .events_after("acme", &authors[0], &conversation.id, 0, 1_000)
            .await
            .expect("history");
        let stored: Vec<u64> = events.iter().map(|event| event.seq).collect();
        assert_eq!(stored, seqs);
    }
    for store in &stores {
        store.close().await.expect("close");
    }
}
