//! Redis: Debian's `redis-server`, without persistence.

use std::time::Duration;

use crate::net::Ports;
use crate::process::Launch;
use crate::server::Server;
use crate::{Result, probe, tools};

/// A `redis-server` on a free loopback port. Dropping it stops the server.
#[derive(Debug)]
pub struct RedisServer {
    server: Server,
}

impl RedisServer {
    /// Starts a server and waits until it answers `PING`.
    pub fn start() -> Result<RedisServer> {
        let program = tools::redis_server()?;
        let dir = Server::data_dir("redis")?;
        let mut ports = Ports::default();
        let port = ports.take()?;
        let launch = Launch::new(
            program,
            dir.path(),
            "redis.log",
            [
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
                &dir.path().display().to_string(),
            ],
        );
        drop(ports);
        let server = Server::start(
            "redis-server",
            launch,
            dir,
            port,
            probe::redis_ping,
            Duration::from_secs(20),
        )?;
        Ok(RedisServer { server })
    }

    /// Starts `count` servers, each on a free port of its own (the shards of a sharded
    /// fan-out), in order; stops those already started if one fails.
    pub fn start_many(count: usize) -> Result<Vec<RedisServer>> {
        (0..count).map(|_| RedisServer::start()).collect()
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port())
    }

    /// Whether the process runs.
    pub fn is_running(&self) -> bool {
        self.server.is_running()
    }

    /// Stops the server: clients see their connections drop. [`RedisServer::restart`] brings it
    /// back on the same port (nothing reserves the port meanwhile).
    pub fn stop(&self) -> Result<()> {
        self.server.stop()
    }

    /// Starts the server again on the same port (stopping it first if it runs). Redis keeps no
    /// data across a restart here: persistence is off.
    pub fn restart(&self) -> Result<()> {
        self.server.restart()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_stops_and_restarts_on_the_same_port() {
        let redis = RedisServer::start().expect("start redis (run scripts/install-test-services)");
        let port = redis.port();
        assert_eq!(redis.url(), format!("redis://127.0.0.1:{port}"));
        probe::redis_ping(port).expect("ping");
        redis.stop().expect("stop");
        assert!(!redis.is_running());
        assert!(probe::redis_ping(port).is_err(), "stopped");
        redis.stop().expect("stopping twice is harmless");
        redis.restart().expect("restart");
        assert!(redis.is_running());
        assert_eq!(redis.port(), port);
        probe::redis_ping(port).expect("ping after restart");
        drop(redis);
        assert!(probe::redis_ping(port).is_err(), "dropped");
    }
}
