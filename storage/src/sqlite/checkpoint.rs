//! Checkpoints off the writer thread.
//!
//! In WAL mode every commit appends its pages to the log; a checkpoint copies them back into the
//! database file. SQLite's default runs that copy on the committing connection (after any commit
//! that leaves 1,000 or more frames in the log), which made it about a tenth of the writer's CPU
//! under load. Here a thread of its own, on its own connection, runs `PASSIVE` checkpoints (they
//! never block the writer or the readers) at most every [`INTERVAL`] while commits arrive. The
//! writer keeps a high auto-checkpoint threshold ([`WRITER_AUTOCHECKPOINT`]) only as a safety
//! net: when the log has been fully copied, its own checkpoint has almost nothing left to do and
//! lets the log start over from the beginning. After a second without commits, and when the
//! store closes, the log is emptied (`TRUNCATE`), so that it does not keep its high-water size
//! on disk.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::schema;
use crate::{Result, StoreError};

/// Least time between two checkpoints: frames committed meanwhile are copied together, and a
/// page rewritten by several commits is copied once. Each checkpoint also syncs the database
/// file; at 20 ms the checkpointer took 0.015 cores of a chat load of 1,000 msg/s, at 250 ms
/// 0.003, with the writer's own commits a little faster (benches/RESULTS.md, issue 16). The log
/// holds a quarter of a second more frames in between (readers look them up in its index).
const INTERVAL: Duration = Duration::from_millis(250);

/// Without commits for this long, the log is emptied (`TRUNCATE`).
const QUIET: Duration = Duration::from_secs(1);

/// Frames in the log past which the writer checkpoints by itself (SQLite's default is 1,000).
const WRITER_AUTOCHECKPOINT: u32 = 10_000;

#[derive(Default)]
struct Signal {
    /// Commits since the last checkpoint started.
    pending: bool,
    stopping: bool,
}

#[derive(Default)]
struct Shared {
    signal: Mutex<Signal>,
    wake: Condvar,
}

/// The handle on the checkpoint thread, held by the writer thread.
pub(super) struct Checkpointer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Opens a connection of its own on the migrated database at `path` and starts the thread;
    /// `writer` (the write connection) keeps only the safety-net threshold.
    pub(super) fn spawn(path: &Path, writer: &Connection) -> Result<Checkpointer> {
        writer.pragma_update(None, "wal_autocheckpoint", WRITER_AUTOCHECKPOINT)?;
        let conn = schema::open_checkpointer(path)?;
        let shared = Arc::new(Shared::default());
        let thread = std::thread::Builder::new()
            .name("confab-sqlite-ckpt".to_owned())
            .spawn({
                let shared = shared.clone();
                move || run(&conn, &shared)
            })
            .map_err(|err| StoreError::internal("spawning the checkpointer", err))?;
        Ok(Checkpointer {
            shared,
            thread: Some(thread),
        })
    }

    /// Says that a commit added frames to the log. Never blocks on a checkpoint in progress.
    pub(super) fn committed(&self) {
        let mut signal = self
            .shared
            .signal
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !signal.pending {
            signal.pending = true;
            self.shared.wake.notify_one();
        }
    }
}

impl Drop for Checkpointer {
    /// Stops the thread after the checkpoint it may be running, and waits for it.
    fn drop(&mut self) {
        self.shared
            .signal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stopping = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the sqlite checkpointer panicked");
        }
    }
}

fn run(conn: &Connection, shared: &Shared) {
    let mut last: Option<Instant> = None;
    // Whether commits came since the log was last emptied.
    let mut dirty = false;
    loop {
        {
            let mut signal = shared.signal.lock().unwrap_or_else(PoisonError::into_inner);
            while !signal.pending && !signal.stopping {
                if !dirty {
                    signal = shared
                        .wake
                        .wait(signal)
                        .unwrap_or_else(PoisonError::into_inner);
                    continue;
                }
                let (guard, waited) = shared
                    .wake
                    .wait_timeout(signal, QUIET)
                    .unwrap_or_else(PoisonError::into_inner);
                signal = guard;
                if waited.timed_out() && !signal.pending && !signal.stopping {
                    // Quiet: give the log's space back (under load it grows to about
                    // WRITER_AUTOCHECKPOINT frames before the writer restarts it).
                    // Readers still in the log make it give up (after a short wait, see
                    // `schema::open_checkpointer`): then it tries again after the next quiet
                    // second.
                    drop(signal);
                    dirty = !checkpoint(conn, "TRUNCATE");
                    signal = shared.signal.lock().unwrap_or_else(PoisonError::into_inner);
                }
            }
            if signal.stopping {
                break;
            }
        }
        // Let commits gather before copying them.
        if let Some(since) = last.map(|at| at.elapsed())
            && since < INTERVAL
        {
            std::thread::sleep(INTERVAL - since);
        }
        shared
            .signal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pending = false;
        last = Some(Instant::now());
        checkpoint(conn, "PASSIVE");
        dirty = true;
    }
    tracing::debug!("sqlite checkpointer stopped");
}

/// Runs `PRAGMA wal_checkpoint(mode)` and says whether it completed. A busy database (another
/// checkpoint, another process holding a lock, readers still in the log) is not an error: the
/// next commit, or the next quiet spell, tries again.
pub(super) fn checkpoint(conn: &Connection, mode: &str) -> bool {
    let outcome = conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, i64>(1)?,
            row.get::<_, i64>(2)?,
        ))
    });
    match outcome {
        Ok((busy, log, copied)) => {
            tracing::trace!(mode, busy, log, copied, "sqlite checkpoint");
            busy == 0
        }
        Err(err) => {
            tracing::debug!(mode, error = %err, "sqlite checkpoint did not run");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `TRUNCATE` that finds a reader in the log gives up after a short wait, instead of
    /// holding the write lock for the whole busy timeout (5 s), and the writer commits at once
    /// after it; once the reader is gone the next one empties the log.
    #[test]
    fn a_truncate_behind_a_reader_gives_up_and_lets_the_writer_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db.sqlite");
        let mut writer = schema::open_writer(&path).expect("open");
        schema::migrate(&mut writer).expect("migrate");
        writer
            .execute_batch("CREATE TABLE t (v INTEGER); INSERT INTO t VALUES (1);")
            .expect("write");
        let checkpointer = schema::open_checkpointer(&path).expect("checkpointer");
        let reader = schema::open_reader(&path).expect("reader");
        reader.execute_batch("BEGIN").expect("begin");
        let seen: i64 = reader
            .query_row("SELECT count(*) FROM t", [], |row| row.get(0))
            .expect("read");
        assert_eq!(seen, 1);

        let started = Instant::now();
        assert!(
            !checkpoint(&checkpointer, "TRUNCATE"),
            "a reader is in the log"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "it waited {:?}, near the busy timeout",
            started.elapsed()
        );
        // The write lock is free: a writer that does not wait at all gets it.
        writer
            .busy_handler(None::<fn(i32) -> bool>)
            .expect("no waiting");
        writer
            .execute("INSERT INTO t VALUES (2)", [])
            .expect("the writer is not held up");

        reader.execute_batch("ROLLBACK").expect("end the read");
        assert!(checkpoint(&checkpointer, "TRUNCATE"), "no reader left");
        let wal = dir.path().join("db.sqlite-wal");
        assert_eq!(std::fs::metadata(&wal).map_or(0, |meta| meta.len()), 0);
    }

    #[test]
    fn commits_reach_the_database_file_and_a_quiet_log_is_emptied() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db.sqlite");
        let mut conn = schema::open_writer(&path).expect("open");
        schema::migrate(&mut conn).expect("migrate");
        conn.execute_batch("CREATE TABLE t (v BLOB NOT NULL)")
            .expect("create");
        let checkpointer = Checkpointer::spawn(&path, &conn).expect("spawn");
        let before = std::fs::metadata(&path).expect("stat").len();
        // ~400 KiB of rows, far under the writer's own threshold of 10,000 frames.
        for _ in 0..100 {
            conn.execute("INSERT INTO t (v) VALUES (zeroblob(4000))", [])
                .expect("insert");
            checkpointer.committed();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::metadata(&path).expect("stat").len() < before + 300 * 1024 {
            assert!(
                Instant::now() < deadline,
                "the checkpointer never copied the log into the database file"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        // Then, once quiet, the log is emptied.
        let wal = dir.path().join("db.sqlite-wal");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::metadata(&wal).map_or(0, |meta| meta.len()) > 0 {
            assert!(
                Instant::now() < deadline,
                "the log was never truncated once writes stopped"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(checkpointer);
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |row| row.get(0))
            .expect("count");
        assert_eq!(rows, 100);
    }
}
