//! Refusing a database that should exist but is gone, empty or damaged, and telling whether
//! commits work.
//!
//! - The *created marker* (`<database>.created`, next to the database) is written once the
//!   database has been created and migrated. While it exists, a missing or zero-length database
//!   is an error, not a fresh install: the data was lost (a truncating copy, a restore gone
//!   wrong), and starting empty would hide it. A database of an older build gets its marker on its
//!   first open by this one.
//! - A bounded `PRAGMA quick_check` at open: it reads every page (so its time grows with the
//!   database's size: 0.5 s for a 477 MB database in the page cache, 9 s read cold from this
//!   project's test machine's disk) and is interrupted after
//!   [`QUICK_CHECK_BUDGET`], in which case the open goes on with a warning. Damage found refuses
//!   the open.
//! - [`CommitHealth`]: the outcome of the writer's last commit, for readiness. After a commit
//!   failed on a full disk, the file system must have [`RECOVERED_FREE_BYTES`] free again before
//!   a probe commit may call it recovered: a small probe fits in the space the failed commit had
//!   already taken at the end of the write-ahead log, while the next batch of messages would not.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode};

use crate::{Result, StoreError};

/// Longest the integrity check at open may take before it is abandoned.
pub const QUICK_CHECK_BUDGET: Duration = Duration::from_secs(30);

/// Free space a full disk must have again before commits count as possible.
pub const RECOVERED_FREE_BYTES: u64 = 4 << 20;

/// Whether the file system holding `db` has less than [`RECOVERED_FREE_BYTES`] free (for the
/// unprivileged user); `false` when it cannot tell.
pub(super) fn short_of_space(db: &Path) -> bool {
    let dir = db
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    match rustix::fs::statvfs(dir) {
        Ok(stat) => stat.f_bavail.saturating_mul(stat.f_frsize) < RECOVERED_FREE_BYTES,
        Err(err) => {
            tracing::debug!(error = %err, "cannot read the free space of the data dir");
            false
        }
    }
}

/// Problems `quick_check` lists at most (the first ones are enough to refuse).
const QUICK_CHECK_ROWS: u32 = 10;

/// Where the created marker of the database at `db` lives.
pub fn created_marker(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".created");
    db.with_file_name(name)
}

/// Refuses a database whose marker says it was created but that is now missing or empty.
pub(super) fn refuse_lost(db: &Path) -> Result<()> {
    let marker = created_marker(db);
    if !marker.exists() {
        return Ok(());
    }
    let len = match std::fs::metadata(db) {
        Ok(meta) => meta.len(),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(StoreError::internal_bare(format!(
                "the database {} is missing, but {} says it was created: refusing to start empty \
                 (restore the database, or remove the marker to start a new one)",
                db.display(),
                marker.display()
            )));
        }
        Err(err) => {
            return Err(StoreError::internal(
                format!("cannot stat {}", db.display()),
                err,
            ));
        }
    };
    if len == 0 {
        return Err(StoreError::internal_bare(format!(
            "the database {} is empty (0 bytes), but {} says it was created: refusing to start \
             empty (restore the database, or remove both to start a new one)",
            db.display(),
            marker.display()
        )));
    }
    Ok(())
}

/// Writes the created marker (and syncs the directory) if it is not there yet.
pub(super) fn mark_created(db: &Path) -> Result<()> {
    let marker = created_marker(db);
    if marker.exists() {
        return Ok(());
    }
    let write = || -> std::io::Result<()> {
        let file = std::fs::File::create(&marker)?;
        file.sync_all()?;
        if let Some(dir) = marker.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    };
    write().map_err(|err| StoreError::internal(format!("cannot write {}", marker.display()), err))
}

/// Runs `PRAGMA quick_check` on `conn` for up to `budget`; refuses a damaged database.
pub(super) fn quick_check(conn: &Connection, db: &Path, budget: Duration) -> Result<()> {
    let started = std::time::Instant::now();
    let interrupt = conn.get_interrupt_handle();
    let (done, timer_stop) = std::sync::mpsc::channel::<()>();
    let timer = std::thread::Builder::new()
        .name("confab-quick-check".to_owned())
        .spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = timer_stop.recv_timeout(budget)
            {
                interrupt.interrupt();
            }
        })
        .map_err(|err| StoreError::internal("spawning the integrity check's timer", err))?;
    let found = run_quick_check(conn);
    drop(done);
    let _ = timer.join();
    match found {
        Ok(problems) if problems.is_empty() => {
            tracing::info!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                "database integrity check passed"
            );
            Ok(())
        }
        Ok(problems) => Err(StoreError::internal_bare(format!(
            "the database {} is damaged (PRAGMA quick_check: {}); restore it from a backup",
            db.display(),
            problems.join("; ")
        ))),
        Err(err) if err.sqlite_error_code() == Some(ErrorCode::OperationInterrupted) => {
            tracing::warn!(
                budget_s = budget.as_secs(),
                "database integrity check did not finish in time; skipped"
            );
            Ok(())
        }
        Err(err) if is_damage(&err) => Err(StoreError::internal(
            format!(
                "the database {} is damaged; restore it from a backup",
                db.display()
            ),
            err,
        )),
        Err(err) => Err(StoreError::internal("running the integrity check", err)),
    }
}

fn run_quick_check(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut statement = conn.prepare(&format!("PRAGMA quick_check({QUICK_CHECK_ROWS})"))?;
    let rows = statement.query_map([], |row| row.get::<_, String>(0))?;
    let mut problems = Vec::new();
    for row in rows {
        let row = row?;
        if row != "ok" {
            problems.push(row);
        }
    }
    Ok(problems)
}

fn is_damage(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
    )
}

/// Why commits fail, in a word for `/ready`; `None` while they work.
#[derive(Debug, Clone, Default)]
pub(super) struct CommitHealth(Arc<Mutex<Option<&'static str>>>);

impl CommitHealth {
    /// Records the outcome of a commit. A commit that found the database busy (another process
    /// sharing the file held it past the timeout) says nothing about whether commits work.
    pub(super) fn record(&self, outcome: std::result::Result<(), &rusqlite::Error>) {
        if outcome.is_err_and(super::common::is_busy) {
            return;
        }
        let fault = outcome.err().map(fault_of);
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = fault;
    }

    /// Why the last commit failed, if it did.
    pub(super) fn fault(&self) -> Option<&'static str> {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A commit failure in a word: `disk_full`, `read_only`, `io_error`, `corrupt` or
/// `commit_failed`.
fn fault_of(err: &rusqlite::Error) -> &'static str {
    match err.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => "disk_full",
        Some(ErrorCode::ReadOnly) => "read_only",
        Some(ErrorCode::SystemIoFailure | ErrorCode::CannotOpen) => "io_error",
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => "corrupt",
        _ => "commit_failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_database_that_is_empty_or_missing_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("confab.db");
        refuse_lost(&db).expect("no marker, no database: a fresh install");
        std::fs::write(&db, b"").expect("empty db");
        refuse_lost(&db).expect("no marker: an interrupted first start");
        mark_created(&db).expect("marker");
        let err = refuse_lost(&db).expect_err("empty after creation");
        assert!(err.to_string().contains("empty"), "{err}");
        std::fs::remove_file(&db).expect("rm");
        let err = refuse_lost(&db).expect_err("missing after creation");
        assert!(err.to_string().contains("missing"), "{err}");
    }
}
