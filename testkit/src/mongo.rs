//! A MongoDB-protocol server: secantusdb (WiredTiger inside), with its data on disk.

use std::time::Duration;

use crate::net::Ports;
use crate::process::Launch;
use crate::server::Server;
use crate::{Result, probe, tools};

/// A secantusdb server on a free loopback port. Dropping it stops the server.
///
/// It presents itself as a one-node replica set (so transactions and change streams work):
/// connect with `directConnection=true`, as [`MongoServer::url`] does. It is functional but slow
/// (and has no text indexes): use it for correctness, never for benchmarks.
#[derive(Debug)]
pub struct MongoServer {
    server: Server,
}

impl MongoServer {
    /// Starts a server and waits until it answers `ping`.
    pub fn start() -> Result<MongoServer> {
        let program = tools::secantusd()?;
        let dir = Server::data_dir("secantusdb")?;
        let mut ports = Ports::default();
        let port = ports.take()?;
        let data = dir.path().join("data");
        let launch = Launch::new(
            program,
            dir.path(),
            "secantusd.log",
            [
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--storage-path",
                &data.display().to_string(),
                "--log-level",
                "WARNING",
            ],
        );
        drop(ports);
        let server = Server::start(
            "secantusd-py",
            launch,
            dir,
            port,
            probe::mongo_ping,
            Duration::from_secs(60),
        )?;
        Ok(MongoServer { server })
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// `mongodb://127.0.0.1:PORT/?directConnection=true`.
    pub fn url(&self) -> String {
        format!("mongodb://127.0.0.1:{}/?directConnection=true", self.port())
    }

    /// Whether the process runs.
    pub fn is_running(&self) -> bool {
        self.server.is_running()
    }

    /// Stops the server; its data stays for [`MongoServer::restart`].
    pub fn stop(&self) -> Result<()> {
        self.server.stop()
    }

    /// Starts the server again on the same port and data (stopping it first if it runs).
    pub fn restart(&self) -> Result<()> {
        self.server.restart()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_stops_and_restarts_on_the_same_port_and_data() {
        let mongo =
            MongoServer::start().expect("start secantusdb (run scripts/install-test-services)");
        let port = mongo.port();
        assert_eq!(
            mongo.url(),
            format!("mongodb://127.0.0.1:{port}/?directConnection=true")
        );
        probe::mongo_ping(port).expect("ping");
        mongo.stop().expect("stop");
        assert!(!mongo.is_running());
        assert!(probe::mongo_ping(port).is_err(), "stopped");
        mongo.restart().expect("restart");
        probe::mongo_ping(port).expect("ping after restart");
        drop(mongo);
        assert!(probe::mongo_ping(port).is_err(), "dropped");
    }
}
