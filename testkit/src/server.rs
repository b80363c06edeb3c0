//! Start, readiness, stop and restart, shared by every server type.

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::process::{Launch, ServerProcess, log_tail};
use crate::{Error, Result};

/// How much of a server's log an error quotes.
const LOG_TAIL_BYTES: u64 = 4000;

/// A readiness check: one protocol round trip to the port.
pub(crate) type Probe = fn(u16) -> std::io::Result<()>;

/// One server: what to run, where its data lives, and the process when it runs.
#[derive(Debug)]
pub(crate) struct Server {
    name: &'static str,
    launch: Launch,
    /// The port the readiness probe talks to.
    port: u16,
    probe: Probe,
    ready_timeout: Duration,
    process: Mutex<Option<ServerProcess>>,
    /// Dropped last: the process must be gone before its data directory is removed.
    dir: TempDir,
}

impl Server {
    /// A temporary directory for a server's data and log.
    pub(crate) fn data_dir(name: &str) -> Result<TempDir> {
        tempfile::Builder::new()
            .prefix(&format!("confab-{name}-"))
            .tempdir()
            .map_err(Error::io(format!("creating a data directory for {name}")))
    }

    /// Starts the server described by `launch` (its log under `dir`) and waits until `probe`
    /// succeeds on `port`.
    pub(crate) fn start(
        name: &'static str,
        launch: Launch,
        dir: TempDir,
        port: u16,
        probe: Probe,
        ready_timeout: Duration,
    ) -> Result<Server> {
        let server = Server {
            name,
            launch,
            port,
            probe,
            ready_timeout,
            process: Mutex::new(None),
            dir,
        };
        server.ensure_started()?;
        Ok(server)
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn process(&self) -> MutexGuard<'_, Option<ServerProcess>> {
        self.process.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the process is running (it may not be ready yet).
    pub(crate) fn is_running(&self) -> bool {
        let mut process = self.process();
        match process.as_mut().map(ServerProcess::try_wait) {
            Some(Ok(None)) => true,
            Some(_) => {
                *process = None;
                false
            }
            None => false,
        }
    }

    /// Stops the server (graceful, then forced); its data directory stays. Stopping a stopped
    /// server does nothing.
    pub(crate) fn stop(&self) -> Result<()> {
        match self.process().take() {
            Some(process) => process.stop(),
            None => Ok(()),
        }
    }

    /// Freezes the server (`SIGSTOP`): its port still accepts connections, nothing answers — a
    /// hung server or a network partition, with its state kept.
    pub(crate) fn pause(&self) -> Result<()> {
        self.running_signal("STOP")
    }

    /// Lets a paused server go on (`SIGCONT`).
    pub(crate) fn resume(&self) -> Result<()> {
        self.running_signal("CONT")
    }

    fn running_signal(&self, signal: &str) -> Result<()> {
        match self.process().as_ref() {
            Some(process) => process.signal(signal),
            None => Err(Error::Io {
                what: format!("signalling {}", self.name),
                source: std::io::Error::other("it is not running"),
            }),
        }
    }

    /// Stops the server if it runs, then starts it again on the same port and data.
    pub(crate) fn restart(&self) -> Result<()> {
        self.stop()?;
        self.ensure_started()
    }

    fn ensure_started(&self) -> Result<()> {
        let mut slot = self.process();
        if slot.is_some() {
            return Ok(());
        }
        let mut process = ServerProcess::spawn(&self.launch)?;
        let started = Instant::now();
        loop {
            let last_check = match (self.probe)(self.port) {
                Ok(()) => break,
                Err(err) => err,
            };
            if let Some(status) = process.try_wait()? {
                return Err(Error::Exited {
                    name: self.name,
                    status: status.to_string(),
                    log: self.log_tail(),
                });
            }
            if started.elapsed() >= self.ready_timeout {
                // Stop it first so that the log is complete.
                let _ = process.stop();
                return Err(Error::NotReady {
                    name: self.name,
                    port: self.port,
                    waited: started.elapsed(),
                    last_check: last_check.to_string(),
                    log: self.log_tail(),
                });
            }
            thread::sleep(Duration::from_millis(50));
        }
        *slot = Some(process);
        Ok(())
    }

    fn log_tail(&self) -> String {
        log_tail(&self.launch.log, LOG_TAIL_BYTES)
    }
}
