//! Opening connections and migrating the schema.
//!
//! Migrations are embedded SQL files applied in order, each in its own transaction together with
//! the bump of `PRAGMA user_version`, so a crash leaves the database at a whole version. A
//! migration whose data SQL cannot convert (the old events' frames, version 3) adds a Rust step
//! in the same transaction.

use std::path::Path;
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::{Result, StoreError};

/// One schema version: its SQL, then a conversion in Rust if it needs one.
struct Migration {
    sql: &'static str,
    convert: Option<fn(&Connection) -> Result<()>>,
}

const fn sql(sql: &'static str) -> Migration {
    Migration { sql, convert: None }
}

/// The embedded migrations; the schema version is the number applied.
const MIGRATIONS: &[Migration] = &[
    sql(include_str!("../../migrations/0001_init.sql")),
    sql(include_str!("../../migrations/0002_client_ids.sql")),
    Migration {
        sql: include_str!("../../migrations/0003_event_form.sql"),
        convert: Some(super::migrate_events::events_to_form),
    },
    sql(include_str!("../../migrations/0004_media.sql")),
    sql(include_str!("../../migrations/0005_people.sql")),
    sql(include_str!("../../migrations/0006_user_events.sql")),
    sql(include_str!("../../migrations/0007_recent_queries.sql")),
    sql(include_str!("../../migrations/0008_derived_seq.sql")),
    sql(include_str!("../../migrations/0009_message_pos.sql")),
];

/// The schema version this build writes (`PRAGMA user_version` once migrated).
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// How long a connection waits on a lock (a checkpoint, another process) before failing.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_millis(5000);

/// How long the checkpointer waits on a lock (see [`open_checkpointer`]).
const CHECKPOINT_WAIT: Duration = Duration::from_millis(20);
/// The first wait for a lock; each retry doubles it up to [`BUSY_MAX_SLEEP`].
const BUSY_FIRST_SLEEP: Duration = Duration::from_micros(50);
const BUSY_MAX_SLEEP: Duration = Duration::from_millis(1);

/// Prepared statements kept per connection: more than the store's distinct queries, so the hot
/// ones are never re-prepared.
const STATEMENT_CACHE: usize = 64;

/// Keeps every cached statement's plan across executions: turns on SQLite's query planner
/// stability guarantee, so that no plan depends on a bound value.
///
/// Without it SQLite (3.54 here) plans a `LIMIT ?n` with the value bound at the time and marks
/// the statement to be prepared again whenever that parameter is bound anew
/// (`computeLimitRegisters` → `sqlite3VdbeReprepareOnBind`), which rusqlite does on every
/// execution: each history page, resume read, per-user event page and recent-queries read was
/// parsed and planned again every time, as if the statement cache did not exist (at 20,000
/// joins with `since`, about 50,000 re-preparations in five seconds). The other plans that can
/// depend on a bound value need `sqlite_stat4` samples (this store never runs `ANALYZE`) or a
/// `LIKE`/`GLOB` pattern (it has none), so no plan gets worse.
fn plan_once(conn: &Connection) -> Result<()> {
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(())
}

/// Opens (creating if needed) the write connection: WAL, `synchronous=FULL` so that a commit is
/// on disk when it returns, foreign keys on.
pub(super) fn open_writer(path: &Path) -> Result<Connection> {
    let mut conn = Connection::open(path)?;
    wait_when_busy(&mut conn)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    plan_once(&conn)?;
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::internal_bare(format!(
            "cannot enable WAL on {} (journal_mode is {mode})",
            path.display()
        )));
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    Ok(conn)
}

/// Opens the checkpointer's connection on a database the writer has already opened and migrated:
/// read-write (a checkpoint writes the database file), `synchronous=FULL` so that the file is
/// synced before the log is reused. It waits for a lock at most [`CHECKPOINT_WAIT`]: a
/// `TRUNCATE` checkpoint holds the write lock while it waits for readers to leave the log, so
/// with the usual busy timeout every writer (this node's, and on a shared file every node's)
/// waited up to 5 s behind it while reads kept coming; it gives up instead, and the next quiet
/// spell tries again. (`PASSIVE` checkpoints never wait.)
pub(super) fn open_checkpointer(path: &Path) -> Result<Connection> {
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    wait_when_busy_for(&mut conn, CHECKPOINT_WAIT)?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

/// Opens a read-only connection on a database the writer has already opened and migrated.
pub(super) fn open_reader(path: &Path) -> Result<Connection> {
    let mut conn = open_read_only(path)?;
    wait_when_busy(&mut conn)?;
    Ok(conn)
}

/// Opens a read-only connection that asks `busy` whether to retry a locked database (its
/// argument: how many times it has asked for this lock).
pub(super) fn open_reader_with(
    path: &Path,
    busy: impl FnMut(i32) -> bool + Send + 'static,
) -> Result<Connection> {
    let mut conn = open_read_only(path)?;
    conn.busy_handler(Some(busy))?;
    Ok(conn)
}

fn open_read_only(path: &Path) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    plan_once(&conn)?;
    Ok(conn)
}

/// Retries a locked database for up to [`BUSY_TIMEOUT`], sleeping 50 µs, 100 µs, … up to 1 ms
/// between tries. SQLite's own `busy_timeout` sleeps 1, 2, 5, 10, … up to 100 ms, so two
/// processes sharing one file (two nodes on one host) would hand the write lock over in tens of
/// milliseconds instead of well under one.
fn wait_when_busy(conn: &mut Connection) -> Result<()> {
    wait_when_busy_for(conn, BUSY_TIMEOUT)
}

/// Like [`wait_when_busy`], giving up after `limit`.
fn wait_when_busy_for(conn: &mut Connection, limit: Duration) -> Result<()> {
    let mut started = std::time::Instant::now();
    conn.busy_handler(Some(move |attempt: i32| {
        if attempt == 0 {
            started = std::time::Instant::now();
        }
        if started.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(busy_sleep(attempt));
        true
    }))?;
    Ok(())
}

/// How long to sleep before retry `attempt` (counted from 0) of a locked database.
fn busy_sleep(attempt: i32) -> Duration {
    let doublings = u32::try_from(attempt).unwrap_or(0).min(16);
    BUSY_FIRST_SLEEP
        .saturating_mul(1 << doublings)
        .min(BUSY_MAX_SLEEP)
}

/// The schema version of the database.
pub(super) fn version(conn: &Connection) -> Result<u32> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    u32::try_from(version)
        .map_err(|err| StoreError::internal(format!("invalid schema version {version}"), err))
}

/// Applies every migration the database has not seen yet. Refuses a database written by a newer
/// build rather than guessing.
pub(super) fn migrate(conn: &mut Connection) -> Result<()> {
    migrate_to(conn, SCHEMA_VERSION)
}

/// Applies the migrations up to version `target`.
///
/// Foreign keys are off meanwhile, as SQLite's procedure for rebuilding a table asks (the pragma
/// is ignored inside a transaction); each migration checks them (`foreign_key_check`) before it
/// commits instead.
pub(super) fn migrate_to(conn: &mut Connection, target: u32) -> Result<()> {
    let current = version(conn)?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::internal_bare(format!(
            "database schema version {current} is newer than this build's {SCHEMA_VERSION}"
        )));
    }
    if current >= target {
        return Ok(());
    }
    let enforced: bool = conn.pragma_query_value(None, "foreign_keys", |row| row.get(0))?;
    conn.pragma_update(None, "foreign_keys", false)?;
    let applied = apply(conn, current, target);
    conn.pragma_update(None, "foreign_keys", enforced)?;
    applied?;
    // A migration that rewrote a table left all of it in the log (400 MB for a million
    // messages): copy it into the database file now, not whenever the next write comes.
    let _emptied = super::checkpoint::checkpoint(conn, "TRUNCATE");
    Ok(())
}

fn apply(conn: &mut Connection, current: u32, target: u32) -> Result<()> {
    let pending = MIGRATIONS
        .iter()
        .zip(1u32..)
        .skip(current as usize)
        .take_while(|(_, next)| *next <= target);
    for (migration, next) in pending {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(migration.sql)?;
        if let Some(convert) = migration.convert {
            convert(&tx)?;
        }
        let dangling: i64 =
            tx.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |row| {
                row.get(0)
            })?;
        if dangling > 0 {
            return Err(StoreError::internal_bare(format!(
                "migration to schema version {next} would leave {dangling} dangling references"
            )));
        }
        tx.pragma_update(None, "user_version", next)?;
        tx.commit()?;
        tracing::info!(version = next, "applied storage migration");
    }
    Ok(())
}

/// A migrated database holding group `c1` of tenant `t1` with its owner `ann` (the database
/// file is `db.sqlite` in the returned directory).
#[cfg(test)]
pub(super) fn seeded_for_tests() -> (tempfile::TempDir, Connection) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut conn = open_writer(&dir.path().join("db.sqlite")).expect("open");
    migrate(&mut conn).expect("migrate");
    conn.execute_batch(
        "INSERT INTO conversations (id, tenant, kind, created_by, created_at, activity_floor)
             VALUES ('c1', 't1', 'group', 'ann', 0, 0);
         INSERT INTO members (tenant, conversation_id, user_id, role, joined_at)
             VALUES ('t1', 'c1', 'ann', 'owner', 0);",
    )
    .expect("seed");
    (dir, conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrating_twice_is_a_no_op() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db.sqlite");
        let mut conn = open_writer(&path).expect("open");
        migrate(&mut conn).expect("first migration");
        assert_eq!(version(&conn).expect("version"), SCHEMA_VERSION);
        migrate(&mut conn).expect("second migration");
        assert_eq!(version(&conn).expect("version"), SCHEMA_VERSION);
    }

    /// A cached statement with a bound `LIMIT` keeps its plan when it runs again with another
    /// limit, on the writer and on a reader ([`plan_once`]); it used to be parsed and planned
    /// anew on every execution.
    #[test]
    fn a_cached_statement_with_a_bound_limit_is_not_prepared_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db.sqlite");
        let mut writer = open_writer(&path).expect("open");
        migrate(&mut writer).expect("migrate");
        let reader = open_reader(&path).expect("reader");
        for conn in [&writer, &reader] {
            for limit in [1, 2, 3, 2] {
                let mut statement = conn
                    .prepare_cached(
                        "SELECT seq FROM events WHERE conversation_id = ?1 AND seq > ?2
                         ORDER BY seq LIMIT ?3",
                    )
                    .expect("prepare");
                let found = statement
                    .query_map(("c1", 0, limit), |row| row.get::<_, i64>(0))
                    .expect("query")
                    .count();
                assert_eq!(found, 0);
                assert_eq!(
                    statement.get_status(rusqlite::StatementStatus::RePrepare),
                    0,
                    "prepared again at limit {limit}"
                );
            }
        }
    }

    #[test]
    fn the_writer_is_durable_wal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conn = open_writer(&dir.path().join("db.sqlite")).expect("open");
        let pragma = |name: &str| -> String {
            conn.pragma_query_value(None, name, |row| row.get::<_, rusqlite::types::Value>(0))
                .map(|value| format!("{value:?}"))
                .expect("pragma")
        };
        assert_eq!(pragma("journal_mode"), r#"Text("wal")"#);
        assert_eq!(pragma("synchronous"), "Integer(2)", "FULL");
        assert_eq!(pragma("foreign_keys"), "Integer(1)");
    }

    #[test]
    fn version_1_data_survives_the_move_to_version_2() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db.sqlite");
        let mut conn = open_writer(&path).expect("open");
        migrate_to(&mut conn, 1).expect("version 1");
        assert_eq!(version(&conn).expect("version"), 1);
        conn.execute_batch(
            "INSERT INTO conversations (id, tenant, kind, created_by, created_at, last_seq, last_activity)
                 VALUES ('c1', 't1', 'group', 'ann', 0, 2, 0);
             INSERT INTO members (tenant, conversation_id, user_id, role, joined_at)
                 VALUES ('t1', 'c1', 'ann', 'owner', 0);
             INSERT INTO messages (id, tenant, conversation_id, seq, author, client_msg_id, body, created_at)
                 VALUES ('m1', 't1', 'c1', 1, 'ann', 'x-1', 'first', 0),
                        ('m2', 't1', 'c1', 2, 'ann', 'x-2', 'second', 0);
             INSERT INTO reactions (message_id, user_id, emoji, created_at)
                 VALUES ('m2', 'ann', '👍', 0);",
        )
        .expect("version 1 rows");

        migrate(&mut conn).expect("to the current version");
        assert_eq!(version(&conn).expect("version"), SCHEMA_VERSION);
        let wal = dir.path().join("db.sqlite-wal");
        assert_eq!(
            std::fs::metadata(&wal).map_or(0, |meta| meta.len()),
            0,
            "the migration's pages were copied out of the log"
        );
        let foreign_keys: bool = conn
            .pragma_query_value(None, "foreign_keys", |row| row.get(0))
            .expect("pragma");
        assert!(foreign_keys, "foreign keys are enforced again");
        let rows: Vec<(i64, String, String)> = conn
            .prepare("SELECT pos, id, body FROM messages ORDER BY seq")
            .expect("prepare")
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows");
        assert_eq!(
            rows,
            [
                (1, "m1".to_owned(), "first".to_owned()),
                (2, "m2".to_owned(), "second".to_owned())
            ]
        );
        let merged: Vec<(String, i64)> = conn
            .prepare("SELECT client_msg_id, message_pos FROM client_ids ORDER BY 1")
            .expect("prepare")
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows");
        assert_eq!(merged, [("x-1".to_owned(), 1), ("x-2".to_owned(), 2)]);
        let watermark: i64 = conn
            .query_row("SELECT merged_pos FROM dedupe_state", [], |row| row.get(0))
            .expect("watermark");
        assert_eq!(watermark, 2);
        let reaction: String = conn
            .query_row("SELECT message_id FROM reactions", [], |row| row.get(0))
            .expect("the reaction is kept");
        assert_eq!(reaction, "m2");
        // The reaction's reference still resolves and is still enforced.
        assert!(
            conn.execute(
                "INSERT INTO reactions (message_id, user_id, emoji, created_at) VALUES ('nope', 'ann', 'x', 0)",
                [],
            )
            .is_err()
        );
    }

    /// A version-7 database: `c1` whose last seq is its last event's, and `c2` whose recorded
    /// last seq (3) is above its events' (1), as a database with lost events could be.
    fn version_7_database(path: &Path) {
        let mut conn = open_writer(path).expect("open");
        migrate_to(&mut conn, 7).expect("version 7");
        conn.execute_batch(
            "INSERT INTO conversations (id, tenant, kind, created_by, created_at, last_seq, last_activity)
                 VALUES ('c1', 't1', 'group', 'ann', 0, 2, 2000),
                        ('c2', 't1', 'group', 'ann', 0, 3, 5000),
                        ('c3', 't1', 'group', 'ann', 4000, 0, 4000);
             INSERT INTO members (tenant, conversation_id, user_id, role, joined_at)
                 VALUES ('t1', 'c1', 'ann', 'owner', 0), ('t1', 'c2', 'ann', 'owner', 0),
                        ('t1', 'c3', 'ann', 'owner', 4000);
             INSERT INTO messages (id, tenant, conversation_id, seq, author, client_msg_id, body, created_at)
                 VALUES ('m1', 't1', 'c1', 1, 'ann', 'x-1', 'first', 1000),
                        ('m2', 't1', 'c1', 2, 'ann', 'x-2', 'second', 2000),
                        ('m3', 't1', 'c2', 1, 'ann', 'x-3', 'third', 1000);
             INSERT INTO events (conversation_id, seq, kind, ts, v, data)
                 VALUES ('c1', 1, 'message', 1000, 1, NULL), ('c1', 2, 'message', 2000, 1, NULL),
                        ('c2', 1, 'message', 1000, 1, NULL);",
        )
        .expect("version 7 rows");
    }

    fn new_message(conversation: &str, client_msg_id: &str) -> crate::NewMessage {
        crate::NewMessage {
            tenant: "t1".to_owned(),
            conversation: conversation.to_owned(),
            author: "ann".to_owned(),
            client_msg_id: client_msg_id.to_owned(),
            body: format!("ann says {client_msg_id}"),
            reply_to: None,
            attachments: Vec::new(),
            repeat_only: false,
        }
    }

    /// The conversations `ann` lists, in order, with their last seqs.
    async fn listed(store: &super::super::SqliteStore) -> Vec<(String, u64)> {
        use crate::Store;
        let list = store.list_conversations("t1", "ann").await.expect("list");
        list.into_iter()
            .map(|summary| (summary.conversation.id, summary.conversation.last_seq))
            .collect()
    }

    fn pairs(expected: [(&str, u64); 3]) -> Vec<(String, u64)> {
        expected
            .into_iter()
            .map(|(id, seq)| (id.to_owned(), seq))
            .collect()
    }

    #[tokio::test]
    async fn version_7_seqs_activity_and_messages_carry_over() {
        use crate::Store;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db.sqlite");
        version_7_database(&path);
        let store = super::super::SqliteStore::open(
            &path,
            std::sync::Arc::new(crate::NullSink),
            super::super::SqliteOptions::default(),
        )
        .expect("open and migrate");
        // Listed by the activity version 7 recorded, with the seqs it recorded.
        assert_eq!(
            listed(&store).await,
            pairs([("c2", 3), ("c3", 0), ("c1", 2)])
        );
        // New seqs continue above both the events and the recorded last seq; distinct
        // milliseconds keep the activity order unambiguous.
        let mut seqs = Vec::new();
        for (conversation, key) in [("c2", "y-1"), ("c1", "y-2"), ("c3", "y-3")] {
            let sent = store
                .append_message(new_message(conversation, key))
                .await
                .expect("append");
            seqs.push(sent.seq);
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        assert_eq!(seqs, [4, 3, 1]);
        old_messages_are_read_and_edited(&store).await;
        // A repeat from before the migration is still answered with its original.
        let repeat = store
            .append_message(new_message("c1", "x-2"))
            .await
            .expect("repeat");
        assert!(repeat.duplicate);
        assert_eq!((repeat.id.as_str(), repeat.seq), ("m2", 2));
        // The newest activity first: the edit and the appends just made, latest first.
        assert_eq!(
            listed(&store).await,
            pairs([("c1", 4), ("c3", 1), ("c2", 4)])
        );
        store.close().await.expect("close");
        floors_are_kept_and_one_index_is_left(&path);
    }

    /// Messages from before the migration are found through their events' `pos`: in history,
    /// in the events a resume replays (with their text), and to edit (`c1`: seq 3 is new).
    async fn old_messages_are_read_and_edited(store: &super::super::SqliteStore) {
        use crate::Store;
        let (events, last_seq) = store
            .events_after("t1", "ann", "c1", 0, 10)
            .await
            .expect("events");
        assert_eq!(last_seq, 3);
        let texts: Vec<(u64, String)> = events
            .iter()
            .map(|event| match &event.body {
                crate::EventBody::Message(posted) => (event.seq, posted.body.clone()),
                other => (event.seq, format!("{other:?}")),
            })
            .collect();
        let expected = [(1, "first"), (2, "second"), (3, "ann says y-2")];
        let expected: Vec<(u64, String)> = expected
            .into_iter()
            .map(|(seq, text)| (seq, text.to_owned()))
            .collect();
        assert_eq!(texts, expected);
        let page = crate::PageQuery {
            limit: 10,
            ..crate::PageQuery::default()
        };
        let history = store.messages("t1", "ann", "c1", page).await.expect("page");
        let bodies: Vec<(u64, String)> = history
            .messages
            .into_iter()
            .map(|message| (message.seq, message.body))
            .collect();
        assert_eq!(bodies, expected);
        let edited = store
            .edit_message("t1", "ann", "m1", "first, edited".to_owned())
            .await
            .expect("edit");
        assert_eq!(edited, 4);
        let (replayed, _) = store
            .events_after("t1", "ann", "c1", 0, 1)
            .await
            .expect("events");
        assert!(
            matches!(&replayed[0].body, crate::EventBody::Message(posted) if posted.body == "first"),
            "the message event keeps the text it was posted with: {replayed:?}"
        );
    }

    fn floors_are_kept_and_one_index_is_left(path: &Path) {
        let conn = Connection::open(path).expect("reopen");
        assert_eq!(version(&conn).expect("version"), SCHEMA_VERSION);
        let floors: Vec<(String, i64, i64)> = conn
            .prepare("SELECT id, seq_floor, activity_floor FROM conversations ORDER BY id")
            .expect("prepare")
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows");
        assert_eq!(
            floors,
            [
                ("c1".to_owned(), 2, 2000),
                ("c2".to_owned(), 3, 5000),
                ("c3".to_owned(), 0, 4000)
            ],
            "the floors are what version 7 left, never written since"
        );
        let indexes: Vec<String> = conn
            .prepare("SELECT name FROM pragma_index_list('messages') ORDER BY name")
            .expect("prepare")
            .query_map([], |row| row.get(0))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows");
        assert_eq!(indexes.len(), 1, "only the id is indexed: {indexes:?}");
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db.sqlite");
        let mut conn = open_writer(&path).expect("open");
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .expect("bump");
        assert!(matches!(
            migrate(&mut conn),
            Err(StoreError::Internal { .. })
        ));
    }

    #[test]
    fn busy_sleeps_start_short_and_are_capped() {
        assert_eq!(busy_sleep(0), Duration::from_micros(50));
        assert_eq!(busy_sleep(1), Duration::from_micros(100));
        assert_eq!(busy_sleep(4), Duration::from_micros(800));
        assert_eq!(busy_sleep(5), BUSY_MAX_SLEEP);
        assert_eq!(busy_sleep(i32::MAX), BUSY_MAX_SLEEP);
        assert_eq!(busy_sleep(-1), BUSY_FIRST_SLEEP);
    }

    #[test]
    fn a_second_writer_waits_for_the_lock_instead_of_failing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db.sqlite");
        let mut first = open_writer(&path).expect("open");
        migrate(&mut first).expect("migrate");
        first
            .execute_batch("CREATE TABLE t (v INTEGER NOT NULL)")
            .expect("create");
        // Another process's writer, as two nodes on one host have.
        let mut second = open_writer(&path).expect("open the second writer");
        let (locked, wait_locked) = std::sync::mpsc::channel();
        let holder = std::thread::spawn(move || {
            let tx = first
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .expect("first takes the write lock");
            tx.execute("INSERT INTO t (v) VALUES (1)", [])
                .expect("insert");
            locked.send(()).expect("signal");
            std::thread::sleep(Duration::from_millis(50));
            tx.commit().expect("commit");
        });
        wait_locked.recv().expect("the lock is held");
        let tx = second
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .expect("the second writer waits, then gets the lock");
        tx.execute("INSERT INTO t (v) VALUES (2)", [])
            .expect("insert");
        tx.commit().expect("commit");
        holder.join().expect("holder");
        let values: i64 = second
            .query_row("SELECT count(*) FROM t", [], |row| row.get(0))
            .expect("count");
        assert_eq!(values, 2);
    }
}
