//! Confab itself: `confab serve --listen 127.0.0.1:0`, its port read back from the line the
//! server prints once bound (`{"listening":"127.0.0.1:PORT"}`), so no port is picked in advance
//! and none can be taken in between.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::process::{Launch, ServerProcess};
use crate::server::Server;
use crate::{Error, Result, probe};

/// How long a Confab server gets to bind and answer `GET /ready` with 200 (a debug build on a
/// loaded machine, a MongoDB store that is slow to open).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How much of the log an error quotes.
const LOG_TAIL_BYTES: usize = 8000;

/// What to start: the binary, its flags, and where its data lives.
#[derive(Debug)]
pub struct ConfabBuilder {
    program: PathBuf,
    args: Vec<OsString>,
    data_dir: Option<PathBuf>,
    envs: Vec<(String, String)>,
}

impl ConfabBuilder {
    /// One more flag or value after `serve --listen 127.0.0.1:0`.
    pub fn arg(mut self, arg: impl Into<OsString>) -> ConfabBuilder {
        self.args.push(arg.into());
        self
    }

    /// More flags and values.
    pub fn args<S: Into<OsString>>(mut self, args: impl IntoIterator<Item = S>) -> ConfabBuilder {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// An environment variable of the server (`AWS_ACCESS_KEY_ID` for an S3 media store, say).
    /// Not a `CONFAB_*` one: those are removed, so that only flags configure the server.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> ConfabBuilder {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// The `--data-dir` (several servers sharing one database); by default `data/` in the
    /// server's own temporary directory.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> ConfabBuilder {
        self.data_dir = Some(dir.into());
        self
    }

    /// Starts the server and waits until it has printed its address and answers `/ready`.
    pub fn start(self) -> Result<ConfabServer> {
        let dir = Server::data_dir("server")?;
        let data_dir = self.data_dir.unwrap_or_else(|| dir.path().join("data"));
        let mut args: Vec<OsString> = vec![
            "serve".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--data-dir".into(),
            data_dir.clone().into(),
        ];
        args.extend(self.args);
        let mut launch = Launch::new(self.program, dir.path(), "confab.log", args);
        // Uncoloured logs, and no `CONFAB_*` variable of the test's environment configuring the
        // server behind the test's back.
        launch.envs.push(("NO_COLOR".to_owned(), "1".to_owned()));
        launch.envs.extend(self.envs);
        launch.env_remove = std::env::vars_os()
            .map(|(key, _)| key.to_string_lossy().into_owned())
            .filter(|key| key.starts_with("CONFAB_"))
            .collect();
        let mut server = ConfabServer {
            launch,
            data_dir,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            process: None,
            log_from: 0,
            _dir: dir,
        };
        server.spawn()?;
        Ok(server)
    }
}

/// A `confab serve` process on an ephemeral loopback port, with its log and (by default) its
/// data in a temporary directory. Dropping it kills the server (`SIGKILL`: tests end fast) and
/// removes the directory; a panicking test prints the log first.
#[derive(Debug)]
pub struct ConfabServer {
    launch: Launch,
    data_dir: PathBuf,
    addr: SocketAddr,
    process: Option<ServerProcess>,
    /// Where the current process's output starts in the log (a restart appends to it).
    log_from: u64,
    /// Dropped last: the process must be gone before its directory is removed.
    _dir: TempDir,
}

impl ConfabServer {
    /// A server of `program` (the test's `env!("CARGO_BIN_EXE_confab")`), to configure and start.
    pub fn builder(program: impl Into<PathBuf>) -> ConfabBuilder {
        ConfabBuilder {
            program: program.into(),
            args: Vec::new(),
            data_dir: None,
            envs: Vec::new(),
        }
    }

    /// Starts `program serve --listen 127.0.0.1:0 --data-dir DIR ARGS…` and waits until it is
    /// ready.
    pub fn start<S: Into<OsString>>(
        program: impl Into<PathBuf>,
        args: impl IntoIterator<Item = S>,
    ) -> Result<ConfabServer> {
        ConfabServer::builder(program).args(args).start()
    }

    /// The address it listens on (of the current process: a restart binds a new port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The `--data-dir` it runs with.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(ServerProcess::pid)
    }

    /// Everything the server wrote to stdout and stderr, over all its restarts.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.launch.log).unwrap_or_default()
    }

    /// What the current (or last) process wrote.
    fn own_log(&self) -> String {
        let log = self.log();
        log.get(self.log_from as usize..)
            .unwrap_or_default()
            .to_owned()
    }

    /// Kills the server with `SIGKILL`, as a crash would; its data stays for a restart.
    pub fn kill9(&mut self) -> Result<ExitStatus> {
        match self.process.take() {
            Some(mut process) => process.kill(),
            None => Err(Error::NotRunning { name: "confab" }),
        }
    }

    /// Sends `SIGTERM` and returns at once: the server shuts down gracefully (closing its
    /// sessions) while the test watches; [`ConfabServer::try_wait`] tells when it has exited.
    pub fn terminate(&mut self) -> Result<()> {
        match self.process.as_mut() {
            Some(process) => {
                process.request_stop();
                Ok(())
            }
            None => Err(Error::NotRunning { name: "confab" }),
        }
    }

    /// The server's exit status once it has exited (then it counts as stopped, ready for a
    /// restart); `None` while it runs.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        let Some(process) = self.process.as_mut() else {
            return Err(Error::NotRunning { name: "confab" });
        };
        let status = process.try_wait()?;
        if status.is_some() {
            self.process = None;
        }
        Ok(status)
    }

    /// Starts the server again with the same flags and data directory, after it exited or was
    /// killed, on a new ephemeral port ([`ConfabServer::addr`] says which).
    pub fn restart(&mut self) -> Result<()> {
        if self.process.is_some() {
            return Err(Error::StillRunning { name: "confab" });
        }
        self.spawn()
    }

    fn spawn(&mut self) -> Result<()> {
        self.log_from = std::fs::metadata(&self.launch.log).map_or(0, |meta| meta.len());
        let mut process = ServerProcess::spawn(&self.launch)?;
        let started = Instant::now();
        let mut port = None;
        loop {
            if port.is_none() {
                port = listening_port(&self.own_log());
            }
            let last_check = match port.map(probe::confab_ready) {
                Some(Ok(())) => break,
                Some(Err(err)) => err.to_string(),
                None => "no listening line yet".to_owned(),
            };
            if let Some(status) = process.try_wait()? {
                return Err(Error::Exited {
                    name: "confab",
                    status: status.to_string(),
                    log: self.own_log_tail(),
                });
            }
            if started.elapsed() >= READY_TIMEOUT {
                let _ = process.kill();
                return Err(Error::NotReady {
                    name: "confab",
                    port: port.unwrap_or(0),
                    waited: started.elapsed(),
                    last_check,
                    log: self.own_log_tail(),
                });
            }
            thread::sleep(Duration::from_millis(25));
        }
        if let Some(port) = port {
            self.addr.set_port(port);
        }
        self.process = Some(process);
        Ok(())
    }

    /// The end of what the current process wrote, for error messages.
    fn own_log_tail(&self) -> String {
        let log = self.own_log();
        let mut from = log.len().saturating_sub(LOG_TAIL_BYTES);
        while !log.is_char_boundary(from) {
            from += 1;
        }
        log[from..].to_owned()
    }
}

impl Drop for ConfabServer {
    fn drop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
        }
        if thread::panicking() {
            eprintln!(
                "---- confab log ({}) ----\n{}---- end of log ----",
                self.addr,
                self.log()
            );
        }
    }
}

/// The port of the first `{"listening":"127.0.0.1:PORT"}` line in `log` (Confab's own one-line
/// format, so a prefix and suffix match is the whole parser).
fn listening_port(log: &str) -> Option<u16> {
    log.lines().find_map(|line| {
        let addr = line
            .trim()
            .strip_prefix(r#"{"listening":""#)?
            .strip_suffix(r#""}"#)?;
        addr.parse::<SocketAddr>().ok().map(|addr| addr.port())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for `confab serve` (the testkit cannot build the real one): binds port 0,
    /// prints the listening line, answers `/ready`, and leaves a file in its data dir.
    const FAKE_CONFAB: &str = r#"#!/usr/bin/env python3
import http.server, json, os, sys
data = sys.argv[sys.argv.index("--data-dir") + 1]
os.makedirs(data, exist_ok=True)
open(os.path.join(data, "started"), "a").write("x")
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/ready" else 404)
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
print("starting", flush=True)
print(json.dumps({"listening": "127.0.0.1:%d" % server.server_port}, separators=(",", ":")), flush=True)
server.serve_forever()
"#;

    fn fake_confab(dir: &Path) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("fake-confab");
        std::fs::write(&path, FAKE_CONFAB).expect("write the fake server");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }

    #[test]
    fn the_listening_line_gives_the_port() {
        let log = "starting\n{\"listening\":\"127.0.0.1:4242\"}\nmore\n";
        assert_eq!(listening_port(log), Some(4242));
        assert_eq!(listening_port("{\"listening\":\"nonsense\"}"), None);
        assert_eq!(listening_port(""), None);
    }

    #[test]
    fn starts_on_port_zero_survives_kill9_and_restarts_on_its_data() {
        let bin = tempfile::tempdir().expect("tempdir");
        let mut server = ConfabServer::start(fake_confab(bin.path()), ["--jwt-secret", "x"])
            .expect("start the fake server");
        let first = server.port();
        assert_ne!(first, 0);
        probe::confab_ready(first).expect("ready");
        assert!(server.pid().is_some());
        let data = server.data_dir().to_owned();

        server.kill9().expect("kill -9");
        assert!(server.pid().is_none());
        assert!(probe::confab_ready(first).is_err(), "killed");
        assert!(data.join("started").exists(), "a crash keeps the data");
        assert!(server.kill9().is_err(), "nothing left to kill");

        server.restart().expect("restart");
        probe::confab_ready(server.port()).expect("ready after the restart");
        let started = std::fs::read_to_string(data.join("started")).expect("data file");
        assert_eq!(started, "xx", "the restart ran on the same data dir");
        assert!(
            server.restart().is_err(),
            "a running server is not restarted"
        );

        server.terminate().expect("SIGTERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        while server
            .try_wait()
            .map(|status| status.is_none())
            .unwrap_or(false)
        {
            assert!(Instant::now() < deadline, "SIGTERM ends the server");
            thread::sleep(Duration::from_millis(20));
        }
        let port = server.port();
        let dir = data
            .parent()
            .expect("the data dir is in the server's")
            .to_owned();
        drop(server);
        assert!(probe::confab_ready(port).is_err(), "dropped");
        assert!(!dir.exists(), "dropping removes the directory");
    }

    #[test]
    fn a_server_that_exits_at_startup_is_an_error_with_its_log() {
        // `sh serve …` finds no script called `serve`.
        let err = ConfabServer::builder("/bin/sh")
            .start()
            .expect_err("the server exits");
        assert!(matches!(err, Error::Exited { .. }), "{err}");
    }
}
