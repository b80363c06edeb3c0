//! The testkit's error type.

use std::path::PathBuf;
use std::time::Duration;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a test server could not be started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server's binary is not installed.
    #[error("{name} not found (looked for {looked:?}): run scripts/install-test-services")]
    MissingBinary {
        name: &'static str,
        looked: Vec<PathBuf>,
    },
    /// An operating-system call failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The process exited before it became ready.
    #[error("{name} exited during startup ({status}); its log ends with:\n{log}")]
    Exited {
        name: &'static str,
        status: String,
        log: String,
    },
    /// The server is not running (it was killed, or has exited).
    #[error("{name} is not running")]
    NotRunning { name: &'static str },
    /// The server still runs (a restart needs it stopped first).
    #[error("{name} is still running")]
    StillRunning { name: &'static str },
    /// The process kept running but never answered the readiness check.
    #[error(
        "{name} was not ready on port {port} after {waited:?} (last check: {last_check}); its log ends with:\n{log}"
    )]
    NotReady {
        name: &'static str,
        port: u16,
        waited: Duration,
        last_check: String,
        log: String,
    },
}

impl Error {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}
