//! The conformance suite on [`SqliteStore`], plus checks of what only SQLite has: files,
//! migrations and the group-committing writer.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use confab_protocol::rest::{ConversationKind, Role};
use confab_storage::conformance::{RecordingSink, keyed_message as message};
use confab_storage::sqlite::{SCHEMA_VERSION, SqliteOptions, SqliteStore};
use confab_storage::{Appended, DynStore, NewConversation, PageQuery, StoreError};
use tempfile::TempDir;
use tokio::task::JoinSet;

fn db_path(dir: &Path) -> PathBuf {
    dir.join("confab.db")
}

fn open(dir: &Path, options: SqliteOptions) -> (DynStore, Arc<RecordingSink>) {
    let sink = RecordingSink::new();
    let store = SqliteStore::open(&db_path(dir), sink.clone(), options).expect("open sqlite store");
    (Arc::new(store), sink)
}

async fn factory() -> (DynStore, Arc<RecordingSink>, TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, sink) = open(dir.path(), SqliteOptions::default());
    (store, sink, dir)
}

async fn reopen(dir: &TempDir) -> (DynStore, Arc<RecordingSink>) {
    open(dir.path(), SqliteOptions::default())
}

confab_storage::store_conformance_suite!(factory, reopen = reopen);

/// The suite again, with client ids merged into their table at every commit rather than kept in
/// memory (both halves of duplicate detection answer every check), and with no inline readers,
/// so that point reads take the blocking pool too.
mod merging_every_commit {
    use super::*;

    fn options() -> SqliteOptions {
        SqliteOptions {
            merge_client_ids_at: 1,
            inline_readers: 0,
            ..SqliteOptions::default()
        }
    }

    async fn factory() -> (DynStore, Arc<RecordingSink>, TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, sink) = open(dir.path(), options());
        (store, sink, dir)
    }

    async fn reopen(dir: &TempDir) -> (DynStore, Arc<RecordingSink>) {
        open(dir.path(), options())
    }

    confab_storage::store_conformance_suite!(factory, reopen = reopen);
}

const TENANT: &str = "acme";

async fn group(store: &DynStore, creator: &str, members: &[&str]) -> String {
    let new = NewConversation {
        tenant: TENANT.to_owned(),
        creator: creator.to_owned(),
        kind: ConversationKind::Group,
        title: None,
        members: members.iter().map(|member| (*member).to_owned()).collect(),
    };
    store.create_conversation(new).await.expect("create").0.id
}

fn user_version(dir: &Path) -> i64 {
    let conn = rusqlite::Connection::open(db_path(dir)).expect("open raw");
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
        .expect("user_version")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_keeps_everything_and_migrations_run_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _) = open(dir.path(), SqliteOptions::default());
    let id = group(&store, "alice", &["bob"]).await;
    for n in 0..5 {
        store
            .append_message(message(&id, "bob", &format!("m{n}")))
            .await
            .expect("send");
    }
    let page = PageQuery {
        limit: 50,
        ..PageQuery::default()
    };
    let before = store
        .messages(TENANT, "alice", &id, page)
        .await
        .expect("page");
    let (events_before, _) = store
        .events_after(TENANT, "alice", &id, 0, 100)
        .await
        .expect("events");
    store.close().await.expect("close");
    drop(store);
    assert_eq!(user_version(dir.path()), i64::from(SCHEMA_VERSION));

    for _ in 0..2 {
        let (store, _) = open(dir.path(), SqliteOptions::default());
        let after = store
            .messages(TENANT, "alice", &id, page)
            .await
            .expect("page");
        assert_eq!(after.messages, before.messages);
        let (events, last_seq) = store
            .events_after(TENANT, "bob", &id, 0, 100)
            .await
            .expect("events");
        assert_eq!(events, events_before);
        assert_eq!(last_seq, 5);
        let list = store
            .list_conversations(TENANT, "alice")
            .await
            .expect("list");
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].unread, 5);
        store.close().await.expect("close");
        assert_eq!(user_version(dir.path()), i64::from(SCHEMA_VERSION));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_jobs_do_not_spoil_their_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A single reader and a small queue make the writer batch and the callers wait.
    let options = SqliteOptions {
        readers: 1,
        max_batch: 64,
        queue: 8,
        ..SqliteOptions::default()
    };
    let (store, sink) = open(dir.path(), options);
    let id = group(&store, "alice", &["bob"]).await;

    let mut tasks = JoinSet::new();
    for n in 0..100 {
        let store = store.clone();
        let id = id.clone();
        tasks.spawn(async move {
            // Every third write comes from a stranger and must fail alone.
            let author = if n % 3 == 0 { "mallory" } else { "bob" };
            (
                author,
                store
                    .append_message(message(&id, author, &format!("m{n}")))
                    .await,
            )
        });
    }
    let mut acked = Vec::new();
    for (author, outcome) in tasks.join_all().await {
        match (author, outcome) {
            ("mallory", Err(StoreError::NotMember)) => {}
            ("bob", Ok(appended)) => acked.push(appended.seq),
            (author, outcome) => panic!("{author}: unexpected {outcome:?}"),
        }
    }
    acked.sort_unstable();
    assert_eq!(
        acked,
        (1..=66).collect::<Vec<u64>>(),
        "the failures took no seq"
    );
    let published: Vec<u64> = sink.events_of(&id).iter().map(|event| event.seq).collect();
    assert_eq!(published, acked);
    store.close().await.expect("close");

    let (store, _) = open(dir.path(), SqliteOptions::default());
    let (events, last_seq) = store
        .events_after(TENANT, "bob", &id, 0, 1000)
        .await
        .expect("events");
    assert_eq!((events.len(), last_seq), (66, 66));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_without_close_still_commits_what_was_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _) = open(dir.path(), SqliteOptions::default());
    let id = group(&store, "alice", &["bob"]).await;
    let sent = store
        .append_message(message(&id, "bob", "m1"))
        .await
        .expect("send");
    drop(store);

    let (store, _) = open(dir.path(), SqliteOptions::default());
    let read = store
        .message(TENANT, "alice", &sent.id)
        .await
        .expect("persisted");
    assert_eq!(read.seq, 1);
    store
        .add_member(TENANT, "alice", &id, "carol", Role::Member)
        .await
        .expect("writable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_keep_working_after_close() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _) = open(
        dir.path(),
        SqliteOptions {
            readers: 2,
            ..SqliteOptions::default()
        },
    );
    let id = group(&store, "alice", &["bob"]).await;
    store.close().await.expect("close");
    assert_eq!(
        store
            .conversation(TENANT, "bob", &id)
            .await
            .expect("read")
            .id,
        id
    );
}

#[test]
fn opening_a_directory_fails_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = RecordingSink::new();
    let opened = SqliteStore::open(dir.path(), sink, SqliteOptions::default());
    let Err(err) = opened else {
        panic!("a directory opened as a database");
    };
    assert!(matches!(err, StoreError::Internal { .. }), "{err:?}");
    // The cause survives: SQLite's own error, for the log.
    let cause = std::error::Error::source(&err).expect("a cause");
    assert!(
        cause.downcast_ref::<rusqlite::Error>().is_some(),
        "{cause:?}"
    );
}

fn raw_count(dir: &Path, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(db_path(dir)).expect("open raw");
    conn.query_row(sql, [], |row| row.get(0)).expect("count")
}

/// Sends `m{n}` again for each `(author, original)` at index `n`: each is answered as a repeat.
async fn assert_repeats(store: &DynStore, id: &str, originals: &[(&str, Appended)]) {
    for (n, (author, original)) in originals.iter().enumerate() {
        let again = store
            .append_message(message(id, author, &format!("m{n}")))
            .await
            .expect("repeat");
        assert!(again.duplicate, "m{n} is a repeat");
        assert_eq!((&again.id, again.seq), (&original.id, original.seq));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_client_ids_are_found_merged_unmerged_and_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = SqliteOptions {
        merge_client_ids_at: 4,
        ..SqliteOptions::default()
    };
    let (store, _) = open(dir.path(), options);
    let id = group(&store, "alice", &["bob"]).await;
    let mut originals = Vec::new();
    for n in 0..10 {
        let author = if n % 2 == 0 { "alice" } else { "bob" };
        let sent = store
            .append_message(message(&id, author, &format!("m{n}")))
            .await
            .expect("send");
        assert!(!sent.duplicate);
        originals.push((author, sent));
    }
    // Each commit here holds one message: merges ran at 4 and 8; 2 are left in memory.
    assert_eq!(raw_count(dir.path(), "SELECT count(*) FROM client_ids"), 8);
    assert_repeats(&store, &id, &originals).await;
    let other = store
        .append_message(message(&id, "bob", "m0"))
        .await
        .expect("bob's m0");
    assert!(!other.duplicate, "client ids are per author");
    originals.push(("bob", other));
    store.close().await.expect("close");
    drop(store);

    // After a restart the unmerged ones are reloaded from the messages.
    let (store, _) = open(dir.path(), options);
    assert_repeats(&store, &id, &originals[..10]).await;
    let again = store
        .append_message(message(&id, "bob", "m0"))
        .await
        .expect("repeat");
    assert_eq!(again.id, originals[10].1.id);
    assert_eq!(raw_count(dir.path(), "SELECT count(*) FROM messages"), 11);
    store.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_on_one_file_see_each_others_client_ids() {
    let dir = tempfile::tempdir().expect("tempdir");
    // As two nodes on one host sharing the file: each its own writer and memory.
    let (first, _) = open(dir.path(), SqliteOptions::default());
    let (second, _) = open(dir.path(), SqliteOptions::default());
    let id = group(&first, "alice", &["bob"]).await;
    // Both load their (empty) memory of unmerged ids first.
    let warm = second
        .append_message(message(&id, "alice", "warm-up"))
        .await
        .expect("second writes");
    let sent = first
        .append_message(message(&id, "bob", "once"))
        .await
        .expect("first writes");
    let repeat = second
        .append_message(message(&id, "bob", "once"))
        .await
        .expect("second repeats it");
    assert!(repeat.duplicate, "the other writer's message is found");
    assert_eq!((repeat.id, repeat.seq), (sent.id, sent.seq));
    let back = first
        .append_message(message(&id, "alice", "warm-up"))
        .await
        .expect("and the other way round");
    assert!(back.duplicate);
    assert_eq!(back.id, warm.id);
    first.close().await.expect("close");
    second.close().await.expect("close");
}

/// Seqs come from the events (and each writer's memory of them, forgotten when another
/// process commits): two writers on one file interleaving appends and other changes still hand
/// out every seq once, in order, and both report the same last seq.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_on_one_file_take_seqs_in_turn() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (first, _) = open(dir.path(), SqliteOptions::default());
    let (second, _) = open(dir.path(), SqliteOptions::default());
    let id = group(&first, "alice", &["bob"]).await;
    let mut seqs = Vec::new();
    for n in 0..6 {
        let (store, other) = if n % 2 == 0 {
            (&first, &second)
        } else {
            (&second, &first)
        };
        // Twice in a row on one writer (its remembered seq), then once on the other.
        for k in 0..2 {
            let sent = store
                .append_message(message(&id, "bob", &format!("m{n}-{k}")))
                .await
                .expect("append");
            seqs.push(sent.seq);
        }
        let edited = other
            .edit_message(
                TENANT,
                "bob",
                &sent_id(store, &id).await,
                format!("edit {n}"),
            )
            .await
            .expect("edit on the other writer");
        seqs.push(edited);
    }
    assert_eq!(seqs, (1..=18).collect::<Vec<u64>>());
    for store in [&first, &second] {
        let (events, last_seq) = store
            .events_after(TENANT, "alice", &id, 0, 100)
            .await
            .expect("events");
        assert_eq!(last_seq, 18);
        let got: Vec<u64> = events.iter().map(|event| event.seq).collect();
        assert_eq!(got, seqs);
        let conversation = store
            .conversation(TENANT, "alice", &id)
            .await
            .expect("conversation");
        assert_eq!(conversation.last_seq, 18);
    }
    first.close().await.expect("close");
    second.close().await.expect("close");
}

/// The id of the latest message of `conversation`.
async fn sent_id(store: &DynStore, conversation: &str) -> String {
    let page = PageQuery {
        limit: 1,
        ..PageQuery::default()
    };
    let latest = store
        .messages(TENANT, "alice", conversation, page)
        .await
        .expect("page");
    latest.messages[0].id.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_leaves_an_empty_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _) = open(dir.path(), SqliteOptions::default());
    let id = group(&store, "alice", &["bob"]).await;
    for n in 0..200 {
        store
            .append_message(message(&id, "bob", &format!("m{n}")))
            .await
            .expect("send");
    }
    let wal = dir.path().join("confab.db-wal");
    assert!(
        std::fs::metadata(&wal).map_or(0, |meta| meta.len()) > 0,
        "the writes went through the log"
    );
    store.close().await.expect("close");
    assert_eq!(
        std::fs::metadata(&wal).map_or(0, |meta| meta.len()),
        0,
        "close empties the log"
    );
    // Everything is in the database file itself.
    assert_eq!(
        raw_count(
            dir.path(),
            "SELECT count(*) FROM messages WHERE author = 'bob'"
        ),
        200
    );
}
