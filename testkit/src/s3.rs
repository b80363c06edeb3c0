//! S3: SeaweedFS `weed mini` (master, volume, filer and S3 gateway in one process).

use std::time::Duration;

use crate::net::Ports;
use crate::process::Launch;
use crate::server::Server;
use crate::{Result, probe, tools};

/// `weed mini` derives its worker's connection to the admin server from the admin port plus this
/// offset, whatever `-admin.port.grpc` says: both ports must be free.
const GRPC_OFFSET: u16 = 10_000;

/// Volume slots, whatever the disk's free space: enough for a bucket per check of a test file.
const VOLUME_SLOTS: u32 = 128;

/// The size at which a volume stops taking writes (they are not preallocated).
const VOLUME_SIZE_MB: u32 = 64;

/// A SeaweedFS server whose S3 gateway listens on a free loopback port, with every other port it
/// opens (master, volume, filer, admin and their gRPC ports) pinned to free ones too. It enforces
/// SigV4 with [`S3Server::ACCESS_KEY`] / [`S3Server::SECRET_KEY`]. Dropping it stops the server.
#[derive(Debug)]
pub struct S3Server {
    server: Server,
    buckets: Vec<String>,
}

impl S3Server {
    /// The access key id the server accepts.
    pub const ACCESS_KEY: &str = "confab-test";
    /// The secret access key the server accepts.
    pub const SECRET_KEY: &str = "confab-test-secret";
    /// The region to sign requests for.
    pub const REGION: &str = "us-east-1";
    /// The bucket [`S3Server::start`] creates.
    pub const BUCKET: &str = "confab-test";

    /// Starts a server with the bucket [`S3Server::BUCKET`] and waits until S3 answers HTTP.
    pub fn start() -> Result<S3Server> {
        S3Server::start_with_buckets(&[S3Server::BUCKET])
    }

    /// Starts a server with these buckets (created at startup; empty: none).
    pub fn start_with_buckets(buckets: &[&str]) -> Result<S3Server> {
        let program = tools::weed()?;
        let dir = Server::data_dir("seaweedfs")?;
        let mut ports = Ports::default();
        let s3 = ports.take()?;
        let admin = ports.take_with_offset(GRPC_OFFSET)?;
        let mut args = vec![
            "mini".to_owned(),
            format!("-dir={}", dir.path().join("data").display()),
            format!("-admin.dataDir={}", dir.path().join("admin").display()),
            "-ip=127.0.0.1".to_owned(),
            "-ip.bind=127.0.0.1".to_owned(),
            "-admin.ui=false".to_owned(),
            // Left to itself, `weed mini` sizes its volume slots from the free disk space (free
            // space divided by a volume size of up to 1 GiB): on a host with a few GiB free that
            // is three or four slots, each bucket is a collection that needs its own volume, and
            // writes to the fifth bucket fail with `500 InternalError`. Volume files grow as they
            // are written, so a fixed count of small volumes costs no disk up front.
            format!("-volume.max={VOLUME_SLOTS}"),
            format!("-master.volumeSizeLimitMB={VOLUME_SIZE_MB}"),
            "-master.telemetry=false".to_owned(),
            "-webdav=false".to_owned(),
            "-s3.port.iceberg=0".to_owned(),
            "-s3.port.lance=0".to_owned(),
            format!("-s3.port={s3}"),
            format!("-admin.port={admin}"),
            format!("-admin.port.grpc={}", admin + GRPC_OFFSET),
        ];
        for flag in [
            "s3.port.grpc",
            "master.port",
            "master.port.grpc",
            "volume.port",
            "volume.port.grpc",
            "filer.port",
            "filer.port.grpc",
        ] {
            args.push(format!("-{flag}={}", ports.take()?));
        }
        if !buckets.is_empty() {
            args.push(format!("-bucket={}", buckets.join(",")));
        }
        std::fs::create_dir_all(dir.path().join("data"))
            .map_err(crate::Error::io("creating the SeaweedFS data directory"))?;
        let launch = Launch {
            envs: vec![
                (
                    "AWS_ACCESS_KEY_ID".to_owned(),
                    S3Server::ACCESS_KEY.to_owned(),
                ),
                (
                    "AWS_SECRET_ACCESS_KEY".to_owned(),
                    S3Server::SECRET_KEY.to_owned(),
                ),
            ],
            ..Launch::new(program, dir.path(), "weed.log", args)
        };
        drop(ports);
        let server = Server::start(
            "weed mini",
            launch,
            dir,
            s3,
            probe::http_get,
            Duration::from_secs(60),
        )?;
        Ok(S3Server {
            server,
            buckets: buckets.iter().map(|bucket| (*bucket).to_owned()).collect(),
        })
    }

    /// The S3 gateway's port (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// The S3 endpoint, `http://127.0.0.1:PORT` (path-style addressing).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port())
    }

    /// The buckets created at startup.
    pub fn buckets(&self) -> &[String] {
        &self.buckets
    }

    /// Whether the process runs.
    pub fn is_running(&self) -> bool {
        self.server.is_running()
    }

    /// Stops the server; its data stays for [`S3Server::restart`].
    pub fn stop(&self) -> Result<()> {
        self.server.stop()
    }

    /// Starts the server again on the same ports and data (stopping it first if it runs).
    pub fn restart(&self) -> Result<()> {
        self.server.restart()
    }

    /// Where the server keeps its data and log.
    pub fn data_dir(&self) -> &std::path::Path {
        self.server.dir()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_stops_and_restarts_on_the_same_port() {
        let s3 = S3Server::start().expect("start weed (run scripts/install-test-services)");
        let port = s3.port();
        assert_eq!(s3.url(), format!("http://127.0.0.1:{port}"));
        assert_eq!(s3.buckets(), [S3Server::BUCKET]);
        probe::http_get(port).expect("http");
        s3.stop().expect("stop");
        assert!(!s3.is_running());
        assert!(probe::http_get(port).is_err(), "stopped");
        s3.restart().expect("restart");
        probe::http_get(port).expect("http after restart");
        drop(s3);
        assert!(probe::http_get(port).is_err(), "dropped");
    }
}
