//! A server child process that cannot outlive the test process.
//!
//! The server runs under a tiny `sh` supervisor whose stdin is a pipe from us. When that pipe
//! closes (an explicit stop, a `Drop`, or the test process exiting or crashing, which also covers
//! servers kept in a `static` that is never dropped) the supervisor sends the server `SIGTERM`,
//! waits for it, and (except after an explicit stop) removes its data directory. The supervisor
//! exits with the server, so `try_wait` tells whether the server is still alive.

use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// `$1` is the log file, `$2` a directory to remove with the server (or empty), the rest the
/// server's command line. Prints the server's pid; at EOF on stdin (read through fd 3, because a
/// background job's stdin is `/dev/null`) stops the server, and removes the directory unless a
/// `keep` line came first (an explicit stop, to be followed by a restart). The watcher ignores
/// `SIGTERM` once it has started stopping the server, so that its verdict always arrives.
const SUPERVISOR: &str = r#"
log="$1"; cleanup="$2"; shift 2
exec 3<&0 2>>"$log"
"$@" </dev/null >>"$log" 2>&1 3<&- &
pid=$!
echo "$pid"
{
  remove=1
  while read -r line <&3; do [ "$line" = keep ] && remove=0; done
  trap '' TERM
  kill -TERM "$pid" 2>/dev/null
  exit "$remove"
} &
watcher=$!
exec 3<&-
wait "$pid"
status=$?
kill "$watcher" 2>/dev/null
wait "$watcher"
if [ "$?" -eq 1 ] && [ -n "$cleanup" ]; then rm -rf "$cleanup"; fi
exit "$status"
"#;

/// How long a server gets to exit after `SIGTERM` before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// What to run.
#[derive(Debug, Clone)]
pub(crate) struct Launch {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub envs: Vec<(String, String)>,
    /// Variables of the test's environment the server must not see.
    pub env_remove: Vec<String>,
    pub log: PathBuf,
    /// Removed by the supervisor if the test process exits without stopping the server.
    pub cleanup: Option<PathBuf>,
}

impl Launch {
    /// `program` with `args`, logging to the file `log` in `dir`, which the supervisor removes if
    /// the test process exits without stopping the server.
    pub(crate) fn new<S: Into<OsString>>(
        program: PathBuf,
        dir: &Path,
        log: &str,
        args: impl IntoIterator<Item = S>,
    ) -> Launch {
        Launch {
            program,
            args: args.into_iter().map(Into::into).collect(),
            envs: Vec::new(),
            env_remove: Vec::new(),
            log: dir.join(log),
            cleanup: Some(dir.to_path_buf()),
        }
    }
}

/// A running server (see the module docs). Dropping it stops the server.
#[derive(Debug)]
pub(crate) struct ServerProcess {
    supervisor: Child,
    /// Closing it asks the supervisor to stop the server.
    stdin: Option<ChildStdin>,
    pid: u32,
}

impl ServerProcess {
    pub(crate) fn spawn(launch: &Launch) -> Result<ServerProcess> {
        let program = launch.program.display().to_string();
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(SUPERVISOR)
            .arg("confab-testkit-supervisor")
            .arg(&launch.log)
            .arg(launch.cleanup.as_deref().unwrap_or(Path::new("")))
            .arg(&launch.program)
            .args(&launch.args)
            .envs(launch.envs.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for key in &launch.env_remove {
            command.env_remove(key);
        }
        let mut supervisor = command
            .spawn()
            .map_err(Error::io(format!("spawning {program}")))?;
        let stdin = supervisor.stdin.take();
        let pid = match read_pid(&mut supervisor) {
            Ok(pid) => pid,
            Err(err) => {
                let _ = supervisor.kill();
                let _ = supervisor.wait();
                return Err(err);
            }
        };
        Ok(ServerProcess {
            supervisor,
            stdin,
            pid,
        })
    }

    /// The server's exit status, if it has exited.
    pub(crate) fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        self.supervisor
            .try_wait()
            .map_err(Error::io("checking the server process"))
    }

    /// The server's process id (not the supervisor's).
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends `SIGTERM` and waits for the server to exit (`SIGKILL` after a grace period),
    /// keeping its data directory.
    pub(crate) fn stop(mut self) -> Result<()> {
        self.request_stop();
        self.terminate()
    }

    /// Has the supervisor send `SIGTERM`, keeping the data directory, and returns at once: the
    /// caller watches the shutdown with [`ServerProcess::try_wait`].
    pub(crate) fn request_stop(&mut self) {
        if let Some(stdin) = self.stdin.as_mut() {
            // A supervisor that is already gone cannot read it: nothing to keep then.
            let _ = stdin.write_all(b"keep\n");
        }
        drop(self.stdin.take());
    }

    /// Kills the server with `SIGKILL` (a crash: no shutdown code runs) and waits for it. The
    /// data directory stays: the supervisor removes it only when asked to stop the server.
    pub(crate) fn kill(&mut self) -> Result<ExitStatus> {
        let status = Command::new("kill")
            .arg("-KILL")
            .arg(self.pid.to_string())
            .status()
            .map_err(Error::io("running kill -KILL"))?;
        if !status.success() {
            return Err(Error::Io {
                what: format!("killing server pid {}", self.pid),
                source: std::io::Error::other(format!("kill -KILL exited with {status}")),
            });
        }
        self.supervisor
            .wait()
            .map_err(Error::io("waiting for the killed server"))
    }

    /// Sends `signal` (a name `kill` knows: `STOP`, `CONT`) to the server.
    pub(crate) fn signal(&self, signal: &str) -> Result<()> {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid.to_string())
            .status()
            .map_err(Error::io("running kill"))?;
        if status.success() {
            return Ok(());
        }
        Err(Error::Io {
            what: format!("sending SIG{signal} to server pid {}", self.pid),
            source: std::io::Error::other(format!("kill exited with {status}")),
        })
    }

    fn terminate(&mut self) -> Result<()> {
        drop(self.stdin.take());
        let deadline = Instant::now() + STOP_GRACE;
        loop {
            if self.try_wait()?.is_some() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        // The server ignored SIGTERM: kill it, then its supervisor.
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg(self.pid.to_string())
            .status();
        let _ = self.supervisor.kill();
        self.supervisor
            .wait()
            .map_err(Error::io("waiting for the server process"))?;
        Ok(())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Err(err) = self.terminate() {
            eprintln!("confab-testkit: stopping server pid {}: {err}", self.pid);
        }
    }
}

fn read_pid(supervisor: &mut Child) -> Result<u32> {
    let stdout = supervisor.stdout.take().ok_or_else(|| Error::Io {
        what: "reading the server's pid".to_owned(),
        source: std::io::Error::other("no stdout pipe"),
    })?;
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(Error::io("reading the server's pid"))?;
    line.trim().parse().map_err(|_| Error::Io {
        what: "reading the server's pid".to_owned(),
        source: std::io::Error::other(format!("supervisor printed {line:?}")),
    })
}

/// The last `max` bytes of a log file, for error messages.
pub(crate) fn log_tail(path: &Path, max: u64) -> String {
    let Ok(mut file) = File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let len = file.metadata().map(|meta| meta.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alive(pid: u32) -> bool {
        // A zombie (exited, not yet reaped) counts as gone.
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            !stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
    }

    fn sleeper(dir: &Path) -> Launch {
        let data = dir.join("data");
        std::fs::create_dir_all(&data).expect("data dir");
        Launch {
            program: PathBuf::from("/bin/sleep"),
            args: vec!["300".into()],
            envs: Vec::new(),
            env_remove: Vec::new(),
            log: dir.join("log"),
            cleanup: Some(data),
        }
    }

    #[test]
    fn stop_keeps_the_data_and_drop_removes_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let mut process = ServerProcess::spawn(&sleeper(dir.path())).expect("spawn");
        let pid = process.pid;
        assert!(alive(pid));
        assert!(process.try_wait().expect("try_wait").is_none());
        process.stop().expect("stop");
        assert!(!alive(pid));
        assert!(
            data.exists(),
            "an explicit stop keeps the data for a restart"
        );

        let process = ServerProcess::spawn(&sleeper(dir.path())).expect("spawn");
        let pid = process.pid;
        drop(process);
        assert!(!alive(pid));
        assert!(!data.exists(), "dropping removes the data");
    }

    #[test]
    fn a_server_outliving_the_test_process_is_stopped_and_its_data_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("data dir");
        let pid_file = dir.path().join("pid");
        // An intermediate shell plays the test process: it starts the supervisor with a stdin
        // that closes after a second (a FIFO fed by `sleep`), and exits at once.
        let script = r#"mkfifo "$4"
sleep 1 > "$4" &
/bin/sh -c "$0" supervisor "$1" "$2" /bin/sleep 300 < "$4" > "$3" &"#;
        let status = Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .arg(SUPERVISOR)
            .arg(dir.path().join("log"))
            .arg(&data)
            .arg(&pid_file)
            .arg(dir.path().join("stdin"))
            .status()
            .expect("spawn");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        while data.exists() {
            assert!(
                Instant::now() < deadline,
                "the orphaned server's data was not removed"
            );
            thread::sleep(Duration::from_millis(50));
        }
        let pid: u32 = std::fs::read_to_string(&pid_file)
            .expect("pid")
            .trim()
            .parse()
            .expect("a pid");
        assert!(!alive(pid), "the orphaned server was stopped");
    }

    #[test]
    fn an_exiting_server_is_noticed_and_its_log_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let launch = Launch {
            program: PathBuf::from("/bin/sh"),
            args: vec!["-c".into(), "echo failing on purpose; exit 3".into()],
            envs: Vec::new(),
            env_remove: Vec::new(),
            log: dir.path().join("log"),
            cleanup: None,
        };
        let mut process = ServerProcess::spawn(&launch).expect("spawn");
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = process.try_wait().expect("try_wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "the server should have exited");
            thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(status.code(), Some(3));
        assert!(log_tail(&launch.log, 100).contains("failing on purpose"));
    }
}
