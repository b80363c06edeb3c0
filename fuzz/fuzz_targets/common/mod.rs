//! What the media targets share: a runtime and a local media store in a temporary directory
//! (`$FUZZ_MEDIA_DIR`, which scripts/fuzz puts on `/dev/shm` when there is one: the store writes
//! a file or two per input; else the system's temporary directory), made once per process.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use confab_storage::media::Media;

/// The tenant every file is stored under.
pub const TENANT: &str = "t1";

pub struct Fixture {
    pub runtime: tokio::runtime::Runtime,
    pub media: Media,
    pub dir: PathBuf,
}

/// The process's fixture.
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        // scripts/fuzz names a directory (on /dev/shm) and removes it after the run.
        let parent =
            std::env::var_os("FUZZ_MEDIA_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
        let dir = parent.join(format!("confab-fuzz-media-{}", std::process::id()));
        // A directory of an earlier process with the same id would make its files look leaked.
        let _ = std::fs::remove_dir_all(&dir);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let media = Media::local(&dir).expect("a local media store");
        Fixture {
            runtime,
            media,
            dir,
        }
    })
}

/// Fails when any file is left under `dir` (directories may stay).
pub fn assert_no_files(dir: &Path, when: &str) {
    let mut left = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&next) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                left.push(path);
            }
        }
    }
    assert!(left.is_empty(), "files left {when}: {left:?}");
}
