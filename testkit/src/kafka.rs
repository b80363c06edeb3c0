//! A Kafka-protocol broker: tansu, with in-memory storage.

use std::time::Duration;

use crate::net::Ports;
use crate::process::Launch;
use crate::server::Server;
use crate::{Result, probe, tools};

/// A tansu broker on a free loopback port. Dropping it stops the broker.
///
/// Known tansu quirks (see `shared/DEPENDENCIES.md`): consumer-group joins are slow with the
/// default `session.timeout.ms` (use ~6000, `heartbeat.interval.ms` ~300), and the high watermark
/// is wrong after multi-record batches. Topics live in memory: a restart loses them.
#[derive(Debug)]
pub struct KafkaServer {
    server: Server,
}

impl KafkaServer {
    /// Starts a broker and waits until it answers `ApiVersions`.
    pub fn start() -> Result<KafkaServer> {
        let program = tools::tansu()?;
        let dir = Server::data_dir("tansu")?;
        let mut ports = Ports::default();
        let port = ports.take()?;
        let url = format!("tcp://127.0.0.1:{port}");
        let launch = Launch::new(
            program,
            dir.path(),
            "tansu.log",
            [
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "memory://tansu/",
            ],
        );
        drop(ports);
        let server = Server::start(
            "tansu",
            launch,
            dir,
            port,
            probe::kafka_api_versions,
            Duration::from_secs(30),
        )?;
        Ok(KafkaServer { server })
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// The bootstrap servers string for a client: `127.0.0.1:PORT`.
    pub fn bootstrap_servers(&self) -> String {
        format!("127.0.0.1:{}", self.port())
    }

    /// `kafka://127.0.0.1:PORT`, the form Confab's `--events` option takes.
    pub fn url(&self) -> String {
        format!("kafka://127.0.0.1:{}", self.port())
    }

    /// Whether the process runs.
    pub fn is_running(&self) -> bool {
        self.server.is_running()
    }

    /// Stops the broker.
    pub fn stop(&self) -> Result<()> {
        self.server.stop()
    }

    /// Freezes the broker (`SIGSTOP`): an unreachable broker whose topics survive. (A
    /// restart loses the topics, and a topic that comes back with a new id while a client runs
    /// crashes librdkafka 2.12's metadata cache: confluentinc/librdkafka#4964.)
    pub fn pause(&self) -> Result<()> {
        self.server.pause()
    }

    /// Lets a paused broker go on.
    pub fn resume(&self) -> Result<()> {
        self.server.resume()
    }

    /// Starts the broker again on the same port (stopping it first if it runs), empty.
    pub fn restart(&self) -> Result<()> {
        self.server.restart()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_stops_and_restarts_on_the_same_port() {
        let kafka = KafkaServer::start().expect("start tansu (run scripts/install-test-services)");
        let port = kafka.port();
        assert_eq!(kafka.bootstrap_servers(), format!("127.0.0.1:{port}"));
        probe::kafka_api_versions(port).expect("api versions");
        kafka.stop().expect("stop");
        assert!(!kafka.is_running());
        assert!(probe::kafka_api_versions(port).is_err(), "stopped");
        kafka.restart().expect("restart");
        probe::kafka_api_versions(port).expect("api versions after restart");
        drop(kafka);
        assert!(probe::kafka_api_versions(port).is_err(), "dropped");
    }
}
