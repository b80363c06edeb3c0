//! The data dir: one server per directory, and private files.
//!
//! A server holds a lock on `<data_dir>/confab.lock` for its whole life (an `flock`, which the
//! kernel drops when the process dies, even by `kill -9`): a second `confab serve` on the same
//! directory refuses to start, instead of serving clients that would miss the first one's live
//! events. Nodes of a cluster that deliberately share one SQLite file (a stand-in for MongoDB on
//! one host) say so with `shared_data_dir`, which takes a shared lock instead and needs a
//! cluster hub; a server without it still refuses to join them.
//!
//! Files are private whatever the umask: the process creates files with umask `077` (the
//! database, the generated key, media, the search index), and the data dir itself is `0700`.

use std::fs::{File, TryLockError};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, bail};

use crate::config::{Config, HubBackend};

/// The lock file under the data dir.
pub const LOCK_FILE: &str = "confab.lock";

/// The lock, held until dropped (at exit).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

/// Makes new files private (`0600`, directories `0700`) for the rest of the process.
pub fn private_files() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// Creates the data dir (`0700`) and takes its lock: exclusive, or shared with
/// `shared_data_dir`.
pub fn prepare(config: &Config) -> anyhow::Result<DataDirLock> {
    let dir = &config.data_dir;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create data dir {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot make data dir {} private", dir.display()))?;
    if config.shared_data_dir && config.hub == HubBackend::Local {
        bail!(
            "shared_data_dir needs a cluster hub (hub = redis://…): without one, clients of \
             different nodes would not see each other's live messages"
        );
    }
    lock(dir, config.shared_data_dir)
}

fn lock(dir: &Path, shared: bool) -> anyhow::Result<DataDirLock> {
    let path = dir.join(LOCK_FILE);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let taken = if shared {
        file.try_lock_shared()
    } else {
        file.try_lock()
    };
    match taken {
        Ok(()) => Ok(DataDirLock { _file: file }),
        Err(TryLockError::WouldBlock) if shared => bail!(
            "data dir {} is in use by a server that does not share it (started without \
             shared_data_dir)",
            dir.display()
        ),
        Err(TryLockError::WouldBlock) => bail!(
            "data dir {} is in use by another confab server; give each server its own \
             --data-dir (nodes that deliberately share one SQLite file set shared_data_dir \
             and a cluster hub)",
            dir.display()
        ),
        Err(TryLockError::Error(err)) => {
            Err(err).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_exclusive_holder_or_many_shared_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = lock(dir.path(), false).expect("first");
        let refused = lock(dir.path(), false).expect_err("second");
        assert!(refused.to_string().contains("in use"), "{refused}");
        assert!(lock(dir.path(), true).is_err(), "shared while exclusive");
        drop(first);
        let a = lock(dir.path(), true).expect("shared a");
        let b = lock(dir.path(), true).expect("shared b");
        assert!(lock(dir.path(), false).is_err(), "exclusive while shared");
        drop((a, b));
        lock(dir.path(), false).expect("free again");
    }
}
