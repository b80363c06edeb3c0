//! A small pool of read-only connections. Reads run on tokio's blocking pool, at most one per
//! connection (a semaphore bounds them; waiting for a permit is the backpressure), each in its own
//! transaction so that it sees one consistent WAL snapshot.
//!
//! Point reads (one conversation and a membership, by key: what every `join` asks) may instead
//! run on the calling thread, on connections of their own that never wait: handing a read of a
//! few microseconds to the blocking pool and back costs more than the read (two thread wake-ups,
//! a third of the server's CPU per connection while thousands of clients connected and joined).
//! Such a connection has no sleeping busy handler: when the database is locked (another process
//! recovering it or holding it exclusively) the read gives up at once and the caller falls back
//! to the blocking pool, whose connections wait as usual.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::Connection;
use tokio::sync::Semaphore;

use super::schema;
use crate::{Result, StoreError};

/// The read connections and the permits that bound their use.
pub(super) struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
    /// Connections for [`ReadPool::read_now`], which never wait for one.
    now: Mutex<Vec<NowConnection>>,
}

/// A read-only connection whose busy handler refuses at once and says so.
struct NowConnection {
    conn: Connection,
    /// Set by the busy handler: the last read met a locked database.
    refused: Arc<AtomicBool>,
}

impl ReadPool {
    /// Opens `size` read-only connections (at least one) on the migrated database at `path`, and
    /// `now` more for reads on the calling thread (0 sends every read to the blocking pool).
    pub(super) fn open(path: &Path, size: usize, now: usize) -> Result<Arc<ReadPool>> {
        let size = size.max(1);
        let idle = (0..size)
            .map(|_| schema::open_reader(path))
            .collect::<Result<Vec<_>>>()?;
        let now = (0..now)
            .map(|_| {
                let refused = Arc::new(AtomicBool::new(false));
                let flag = refused.clone();
                let conn = schema::open_reader_with(path, move |_| {
                    flag.store(true, Ordering::Relaxed);
                    false
                })?;
                Ok(NowConnection { conn, refused })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Arc::new(ReadPool {
            path: path.to_owned(),
            idle: Mutex::new(idle),
            permits: Arc::new(Semaphore::new(size)),
            now: Mutex::new(now),
        }))
    }

    /// Runs a short `query` (a lookup by key, no scan) on this thread, inside one read
    /// transaction, if a connection for it is free and the database is not locked. `None` means
    /// it did not run: use [`ReadPool::read`]. Never waits, so it may run on an async worker.
    pub(super) fn read_now<T, F>(&self, query: F) -> Option<Result<T>>
    where
        F: FnOnce(&Connection) -> Result<T>,
    {
        self.now_on(|conn| in_snapshot(conn, query))
    }

    /// Like [`ReadPool::read_now`] for a `query` of one statement, which needs no transaction
    /// around it: SQLite runs a statement in autocommit mode in a read transaction of its own,
    /// one snapshot, and a `BEGIN` and `ROLLBACK` around it were two more statements to run on
    /// every join.
    pub(super) fn read_statement_now<T, F>(&self, query: F) -> Option<Result<T>>
    where
        F: FnOnce(&Connection) -> Result<T>,
    {
        self.now_on(query)
    }

    /// Runs `query` on a connection for reads on this thread (see [`ReadPool::read_now`]).
    fn now_on<T, F>(&self, query: F) -> Option<Result<T>>
    where
        F: FnOnce(&Connection) -> Result<T>,
    {
        let taken = self
            .now
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()?;
        taken.refused.store(false, Ordering::Relaxed);
        let outcome = query(&taken.conn);
        let refused = taken.refused.load(Ordering::Relaxed);
        self.now
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(taken);
        if refused && outcome.is_err() {
            return None;
        }
        Some(outcome)
    }

    /// Runs `query` on a pooled connection, off the async runtime, inside one read transaction.
    pub(super) async fn read<T, F>(self: &Arc<Self>, query: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Unavailable)?;
        let pool = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let conn = pool.checkout()?;
            let outcome = in_snapshot(&conn, query);
            pool.checkin(conn);
            drop(permit);
            outcome
        })
        .await
        .map_err(|err| StoreError::internal("read task failed", err))?
    }

    /// An idle connection; a new one if one was lost (its read panicked).
    fn checkout(&self) -> Result<Connection> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        match idle {
            Some(conn) => Ok(conn),
            None => schema::open_reader(&self.path),
        }
    }

    fn checkin(&self, conn: Connection) {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(conn);
    }
}

/// Runs `query` in one read transaction. `BEGIN` and `ROLLBACK` are cached statements: parsing
/// them anew for every read (as `Connection::transaction` does) cost as much as a point read.
fn in_snapshot<T>(conn: &Connection, query: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    conn.prepare_cached("BEGIN")?.execute([])?;
    let outcome = query(conn);
    // Nothing was written: ending the transaction only releases the snapshot. An error may
    // have ended it already.
    if !conn.is_autocommit() {
        let ended = conn
            .prepare_cached("ROLLBACK")
            .and_then(|mut end| end.execute([]));
        if outcome.is_ok() {
            ended?;
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database in rollback-journal mode, where a writer's exclusive lock makes readers wait
    /// (in WAL mode readers almost never do, which is why the case is staged like this).
    fn database(dir: &Path) -> PathBuf {
        let path = dir.join("pool.db");
        let conn = Connection::open(&path).expect("open");
        conn.execute_batch("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1);")
            .expect("create");
        path
    }

    fn count(conn: &Connection) -> Result<i64> {
        Ok(conn.query_row("SELECT count(*) FROM t", [], |row| row.get(0))?)
    }

    #[tokio::test]
    async fn a_point_read_runs_on_the_calling_thread() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = ReadPool::open(&database(dir.path()), 1, 1).expect("pool");
        let caller = std::thread::current().id();
        let ran_on = pool.read_now(|conn| {
            count(conn)?;
            Ok(std::thread::current().id())
        });
        assert_eq!(ran_on.expect("ran").expect("read"), caller);
        // Its connection came back: a second read runs too.
        assert_eq!(pool.read_now(count).expect("ran").expect("read"), 1);
    }

    /// A read of one statement runs here too, without a transaction of its own around it (the
    /// statement's implicit one is its snapshot); a read of several is inside one.
    #[tokio::test]
    async fn a_one_statement_read_runs_here_without_begin() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = ReadPool::open(&database(dir.path()), 1, 1).expect("pool");
        let caller = std::thread::current().id();
        let ran = pool.read_statement_now(|conn| {
            Ok((
                count(conn)?,
                conn.is_autocommit(),
                std::thread::current().id(),
            ))
        });
        assert_eq!(ran.expect("ran").expect("read"), (1, true, caller));
        let snapshot = pool.read_now(|conn| Ok(conn.is_autocommit()));
        assert!(!snapshot.expect("ran").expect("read"));
    }

    #[tokio::test]
    async fn without_inline_connections_every_read_goes_to_the_pool() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = ReadPool::open(&database(dir.path()), 1, 0).expect("pool");
        assert!(pool.read_now(count).is_none());
        assert_eq!(pool.read(count).await.expect("read"), 1);
    }

    #[tokio::test]
    async fn an_error_of_the_query_itself_is_the_answer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = ReadPool::open(&database(dir.path()), 1, 1).expect("pool");
        let outcome = pool.read_now(|conn| -> Result<i64> {
            Ok(conn.query_row("SELECT x FROM missing", [], |row| row.get(0))?)
        });
        assert!(matches!(outcome, Some(Err(StoreError::Internal { .. }))));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_locked_database_sends_the_read_to_the_waiting_pool() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = database(dir.path());
        let pool = ReadPool::open(&path, 1, 1).expect("pool");
        let locker = Connection::open(&path).expect("open");
        locker
            .execute_batch("BEGIN EXCLUSIVE; INSERT INTO t VALUES (2);")
            .expect("lock");

        // Refused at once, without sleeping in the busy handler: not run here.
        assert!(pool.read_now(count).is_none());

        // The pool's reader waits for the lock, which is released while it waits.
        let waiting = tokio::spawn({
            let pool = pool.clone();
            async move { pool.read(count).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        locker.execute_batch("COMMIT").expect("commit");
        assert_eq!(waiting.await.expect("join").expect("read"), 2);

        // Unlocked, the inline connection serves again.
        assert_eq!(pool.read_now(count).expect("ran").expect("read"), 2);
    }
}
