//! Turns at writing a database file that several processes share (nodes on one host with
//! `shared_data_dir`).
//!
//! SQLite's write lock has no queue. A writer that finds it taken sleeps and tries again
//! (`schema::wait_when_busy`: 50 µs, doubling up to 1 ms), while the process that just
//! committed takes it again at once if it has more to write. With ten processes on one file a
//! writer could sleep through every moment the lock was free, past the busy timeout: chat acks
//! took hundreds of milliseconds and some writes failed as `storage is busy`
//! (benches/RESULTS.md, issue 17). So each batch first takes an exclusive `flock` on a file
//! beside the database (`<db>-writer`), and the kernel wakes its waiters as soon as it is
//! released: the write lock goes from process to process without sleeps. Within one process
//! it costs two system calls per batch and never waits.
//!
//! A blocking `flock` has no timeout, and a wait must end like SQLite's (after
//! `schema::BUSY_TIMEOUT`, with `Busy`). So a thread of its own waits in `flock` and the writer
//! waits for that thread, with a timeout; a turn that comes after the writer gave up is
//! released at once. A kernel lock also ends with its process: a node that crashes while
//! holding it does not stop the others.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::{Result, StoreError};

/// The lock file of the database at `db`: `confab.db` → `confab.db-writer`.
pub(crate) fn lock_file(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push("-writer");
    db.with_file_name(name)
}

/// This process's claim on the turns at writing one database file.
pub(crate) struct Turns {
    shared: Arc<Shared>,
}

struct Shared {
    file: File,
    state: Mutex<State>,
    changed: Condvar,
}

/// Tickets: the writer asks for a turn with the next one; the waiting thread grants it.
#[derive(Default)]
struct State {
    asked: u64,
    granted: u64,
    /// The last ticket the writer stopped waiting for.
    given_up: u64,
    /// The thread is in `flock` for a ticket. The writer then takes no turn by itself: the
    /// lock belongs to the file, not the thread, so the thread's release of a turn given up
    /// would end the writer's.
    waiting: bool,
    closed: bool,
}

/// The turn while held; dropping it ends the turn.
pub(crate) struct Turn<'a> {
    file: &'a File,
}

/// No turn came within the wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TurnTimedOut;

impl Turns {
    /// Opens (creating if needed) the lock file of the database at `db` and starts the thread
    /// that waits for turns.
    pub(crate) fn open(db: &Path) -> Result<Turns> {
        let path = lock_file(db);
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&path).map_err(|err| {
            StoreError::internal(format!("opening the write lock {}", path.display()), err)
        })?;
        let shared = Arc::new(Shared {
            file,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let waiting = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("confab-sqlite-turn".to_owned())
            .spawn(move || wait_for_turns(&waiting))
            .map_err(|err| StoreError::internal("spawning the write lock's thread", err))?;
        Ok(Turns { shared })
    }

    /// Waits up to `wait` for this process's turn to write.
    pub(crate) fn take(&self, wait: Duration) -> std::result::Result<Turn<'_>, TurnTimedOut> {
        let file = &self.shared.file;
        let mut state = self.shared.state();
        if !state.waiting {
            match file.try_lock() {
                Ok(()) => return Ok(Turn { file }),
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(err)) => {
                    // A file system without locks: SQLite's own lock still keeps writes apart.
                    tracing::warn!(error = %err, "cannot lock the database's write lock file; writing without turns");
                    return Ok(Turn { file });
                }
            }
        }
        let deadline = Instant::now() + wait;
        state.asked += 1;
        let ticket = state.asked;
        self.shared.changed.notify_all();
        loop {
            if state.granted >= ticket {
                return Ok(Turn { file });
            }
            let now = Instant::now();
            if now >= deadline {
                state.given_up = ticket;
                return Err(TurnTimedOut);
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

impl Drop for Turns {
    fn drop(&mut self) {
        self.shared.state().closed = true;
        self.shared.changed.notify_all();
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        if let Err(err) = self.file.unlock() {
            tracing::warn!(error = %err, "cannot release the database's write lock");
        }
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // The state is a few counters, valid whatever a panicking holder did.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The waiting thread: for each ticket asked, waits in `flock` until the lock is free, then
/// grants it, or releases it at once if the writer gave up meanwhile. Ends once the turns are
/// closed and nothing is asked.
fn wait_for_turns(shared: &Shared) {
    let mut served = 0;
    loop {
        let mut state = shared.state();
        while state.asked == served && !state.closed {
            state = shared
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if state.asked == served {
            return;
        }
        served = state.asked;
        if state.given_up >= served {
            // Given up before this thread came to it: the writer may hold the lock by now
            // (taken at once), and a turn taken here would be released under it.
            continue;
        }
        state.waiting = true;
        drop(state);
        let locked = shared.file.lock();
        let mut state = shared.state();
        state.waiting = false;
        match locked {
            Ok(()) if state.given_up >= served => {
                if let Err(err) = shared.file.unlock() {
                    tracing::warn!(error = %err, "cannot release the database's write lock");
                }
            }
            Ok(()) => state.granted = served,
            Err(err) => {
                tracing::warn!(error = %err, "cannot wait for the database's write lock; writing without it");
                state.granted = served;
            }
        }
        shared.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(db: &Path) -> File {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(lock_file(db))
            .expect("open the lock file as another process");
        file.lock().expect("hold the turn");
        file
    }

    #[test]
    fn a_turn_is_taken_at_once_when_nobody_holds_it_and_ends_when_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("confab.db");
        let turns = Turns::open(&db).expect("open");
        let turn = turns.take(Duration::ZERO).expect("free");
        let other = File::open(lock_file(&db)).expect("open");
        assert!(matches!(other.try_lock(), Err(TryLockError::WouldBlock)));
        drop(turn);
        other.try_lock().expect("released");
    }

    #[test]
    fn a_turn_held_elsewhere_comes_when_it_is_released() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("confab.db");
        let turns = Turns::open(&db).expect("open");
        let other = holder(&db);
        std::thread::scope(|scope| {
            let waiting = scope.spawn(|| turns.take(Duration::from_secs(30)).map(drop));
            std::thread::sleep(Duration::from_millis(100));
            assert!(!waiting.is_finished(), "the turn waits while held");
            other.unlock().expect("release");
            waiting.join().expect("no panic").expect("the turn came");
        });
    }

    #[test]
    fn a_turn_that_does_not_come_in_time_times_out_and_is_not_kept_when_it_comes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("confab.db");
        let turns = Turns::open(&db).expect("open");
        let other = holder(&db);
        assert_eq!(
            turns.take(Duration::from_millis(50)).map(drop),
            Err(TurnTimedOut)
        );
        other.unlock().expect("release");
        // The waiting thread gets the lock it no longer needs and must let it go.
        let third = File::open(lock_file(&db)).expect("open");
        let deadline = Instant::now() + Duration::from_secs(10);
        while third.try_lock().is_err() {
            assert!(Instant::now() < deadline, "the abandoned turn was kept");
            std::thread::sleep(Duration::from_millis(5));
        }
        third.unlock().expect("release");
        // Held again, then released: the next wait is granted its own ticket.
        let other = holder(&db);
        std::thread::scope(|scope| {
            let waiting = scope.spawn(|| turns.take(Duration::from_secs(30)).map(drop));
            std::thread::sleep(Duration::from_millis(50));
            other.unlock().expect("release");
            waiting.join().expect("no panic").expect("the turn came");
        });
    }
}
