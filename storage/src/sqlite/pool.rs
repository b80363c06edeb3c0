//! A small pool of read-only connections. Reads run on tokio's blocking pool, at most one per
//! connection (a semaphore bounds them; waiting for a permit is the backpressure), each in its own
//! transaction so that it sees one consistent WAL snapshot.

use std::path::{Path, PathBuf};
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
}

impl ReadPool {
    /// Opens `size` read-only connections (at least one) on the migrated database at `path`.
    pub(super) fn open(path: &Path, size: usize) -> Result<Arc<ReadPool>> {
        let size = size.max(1);
        let idle = (0..size)
            .map(|_| schema::open_reader(path))
            .collect::<Result<Vec<_>>>()?;
        Ok(Arc::new(ReadPool {
            path: path.to_owned(),
            idle: Mutex::new(idle),
            permits: Arc::new(Semaphore::new(size)),
        }))
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
            let mut conn = pool.checkout()?;
            let outcome = in_snapshot(&mut conn, query);
            pool.checkin(conn);
            drop(permit);
            outcome
        })
        .await
        .map_err(|err| StoreError::Internal(format!("read task failed: {err}")))?
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

fn in_snapshot<T>(
    conn: &mut Connection,
    query: impl FnOnce(&Connection) -> Result<T>,
) -> Result<T> {
    let tx = conn.transaction()?;
    let outcome = query(&tx)?;
    // Nothing was written: ending the transaction only releases the snapshot.
    tx.finish()?;
    Ok(outcome)
}
