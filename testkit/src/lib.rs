//! Real servers for Confab's tests, each a child process with its data in a temporary
//! directory: Confab itself ([`ConfabServer`]), and the backends it talks to: Redis, a
//! Kafka-protocol broker (tansu), a MongoDB-protocol server (secantusdb) and S3 (SeaweedFS).
//! This is the one harness that starts server processes: `server/tests/common` adds clients
//! (and serves tests that need no process in-process, through `confab_server::spawn`).
//!
//! `scripts/install-test-services` installs the backends' binaries (Debian's `redis-server`; the
//! others in Python venvs under `<workspace>/.tools/`). A missing binary is an error that says to
//! run it: tests fail loudly rather than skip.
//!
//! Every server type has the same shape: `start()` spawns the process and waits for a real
//! protocol round trip (Redis `PING`, Kafka `ApiVersions`, MongoDB `ping`, an S3 HTTP response,
//! Confab's `GET /ready`); `port()`/`url()` say where it listens; `Drop` ends the process and
//! removes its directory. Confab binds port 0 and prints the address it got, which the harness
//! reads back; the backends, which cannot report theirs, get a port reserved just before they
//! start. The backends `stop()` and `restart()` on the same port and data (e.g. to test a client's
//! reconnection); Confab is killed (`kill9`) or asked to shut down (`terminate`) and restarted on
//! its data, on a new port. The calls block for up to a few seconds: from async code, call them
//! from a blocking context or accept that a test's worker thread waits.
//!
//! Layout: `tools` finds binaries, `process` supervises a child process (it also dies with the
//! test process), `probe` holds the wire-level readiness checks, `net` the ports and probe
//! connections, `server` the start/stop logic shared by the backends in `redis`, `kafka`, `mongo`
//! and `s3`; `confab` starts Confab.

// Functions stay short enough to read at once (threshold in clippy.toml); tests may not.
#![warn(clippy::too_many_lines)]

mod confab;
mod error;
mod kafka;
mod mongo;
mod net;
mod probe;
mod process;
mod redis;
mod s3;
mod server;
mod tools;

pub use confab::{ConfabBuilder, ConfabServer};
pub use error::{Error, Result};
pub use kafka::KafkaServer;
pub use mongo::MongoServer;
pub use redis::RedisServer;
pub use s3::S3Server;
pub use tools::workspace_root;
