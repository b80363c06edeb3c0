//! Configuration: CLI flags over `CONFAB_*` environment variables over an optional TOML file
//! (`--config`), over built-in defaults. `confab.example.toml` lists every key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;

use crate::accept::ConnLimits;

/// The `confab` command line.
#[derive(Debug, Parser)]
#[command(name = "confab", version, about = "Confab real-time chat server")]
pub struct Cli {
    #[command(subcommand)]
    pub command: CliCommand,
}

#[derive(Debug, Subcommand)]
pub enum CliCommand {
    /// Run the server.
    Serve(Box<ServeArgs>),
    /// Print a JWT signed with the key the server in this data dir uses.
    Token(TokenArgs),
}

/// JWT algorithms accepted for externally issued tokens verified with a public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
pub enum PublicKeyAlg {
    #[value(name = "RS256")]
    #[serde(rename = "RS256")]
    Rs256,
    #[value(name = "ES256")]
    #[serde(rename = "ES256")]
    Es256,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Flags of `confab serve`. Every one is optional here so that the TOML file can supply it.
#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// TOML config file (keys as in confab.example.toml).
    #[arg(long, env = "CONFAB_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "CONFAB_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Directory for the database, the generated signing key and media [default: ./data].
    #[arg(long, env = "CONFAB_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Messages one user may send per minute; 0 turns the limit off [default: 60].
    #[arg(long, env = "CONFAB_MESSAGE_RATE_PER_MINUTE")]
    pub message_rate_per_minute: Option<u32>,
    /// HS256 secret for tokens (overrides the generated key in the data dir).
    #[arg(long, env = "CONFAB_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// PEM public key verifying RS256/ES256 tokens issued elsewhere (see --jwt-alg).
    #[arg(long, env = "CONFAB_JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<PathBuf>,
    /// Algorithm of --jwt-public-key-file [default: RS256].
    #[arg(long, env = "CONFAB_JWT_ALG")]
    pub jwt_alg: Option<PublicKeyAlg>,
    /// Largest WebSocket text frame accepted, in bytes [default: 65536].
    #[arg(long, env = "CONFAB_MAX_FRAME_BYTES")]
    pub max_frame_bytes: Option<usize>,
    /// Largest message body, in bytes [default: 16384].
    #[arg(long, env = "CONFAB_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Largest REST request body, in bytes [default: 1048576].
    #[arg(long, env = "CONFAB_MAX_HTTP_BODY_BYTES")]
    pub max_http_body_bytes: Option<usize>,
    /// Most events replayed on join with `since` [default: 1000].
    #[arg(long, env = "CONFAB_REPLAY_CAP")]
    pub replay_cap: Option<u32>,
    /// Seconds between server heartbeats (WebSocket pings) [default: 25].
    #[arg(long, env = "CONFAB_HEARTBEAT_SECS")]
    pub heartbeat_secs: Option<u64>,
    /// Seconds of client silence after which a connection is closed [default: 60].
    #[arg(long, env = "CONFAB_IDLE_TIMEOUT_SECS")]
    pub idle_timeout_secs: Option<u64>,
    /// Seconds a connection has to send its `auth` frame [default: 5].
    #[arg(long, env = "CONFAB_AUTH_TIMEOUT_SECS")]
    pub auth_timeout_secs: Option<u64>,
    /// Frames queued per connection before it is cut off as a slow consumer [default: 1024].
    #[arg(long, env = "CONFAB_OUTBOUND_QUEUE")]
    pub outbound_queue: Option<usize>,
    /// Conversations one connection may join at once [default: 1000].
    #[arg(long, env = "CONFAB_MAX_JOINED")]
    pub max_joined: Option<usize>,
    /// Milliseconds a delivery to a busy connection (written to less than this long ago) may
    /// wait so that its deliveries share one write; 0 writes each at once [default: 0, at most
    /// 1000].
    #[arg(long, env = "CONFAB_WRITE_DELAY_MS")]
    pub write_delay_ms: Option<u64>,
    /// Seconds to wait for sessions to close on shutdown [default: 10].
    #[arg(long, env = "CONFAB_SHUTDOWN_GRACE_SECS")]
    pub shutdown_grace_secs: Option<u64>,
    /// Time a client has to send a request's line and headers, from their first byte (from the
    /// accept, for a new connection), e.g. `10s` [default: 10s].
    #[arg(long, env = "CONFAB_HEADER_READ_TIMEOUT", value_parser = humantime::parse_duration)]
    pub header_read_timeout: Option<Duration>,
    /// Longest wait for each next piece of a request body [default: 10s].
    #[arg(long, env = "CONFAB_BODY_READ_TIMEOUT", value_parser = humantime::parse_duration)]
    pub body_read_timeout: Option<Duration>,
    /// Time an HTTP connection with no request in progress is kept open [default: 30s].
    #[arg(long, env = "CONFAB_KEEP_ALIVE_TIMEOUT", value_parser = humantime::parse_duration)]
    pub keep_alive_timeout: Option<Duration>,
    /// Open TCP connections (HTTP and WebSocket) at most; past it the oldest plain HTTP
    /// connection is closed to make room [default: 100000].
    #[arg(long, env = "CONFAB_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Storage: `sqlite` (under the data dir) or a `mongodb://` URI (needs a build with the
    /// `mongo` feature) [default: sqlite].
    #[arg(long, env = "CONFAB_STORE")]
    pub store: Option<String>,
    /// MongoDB database name [default: confab].
    #[arg(long, env = "CONFAB_STORE_DATABASE")]
    pub store_database: Option<String>,
    /// Fan-out between nodes: `local` (one node) or `redis://host:port` [default: local].
    #[arg(long, env = "CONFAB_HUB")]
    pub hub: Option<String>,
    /// Event stream: `none`, or `kafka://host:port[,host:port…][?librdkafka.property=value&…]`
    /// (needs a build with the `kafka` feature) [default: none].
    #[arg(long, env = "CONFAB_EVENTS")]
    pub events: Option<String>,
    /// Kafka topic of the event stream [default: confab.events].
    #[arg(long, env = "CONFAB_EVENTS_TOPIC")]
    pub events_topic: Option<String>,
    /// Log filter, in `RUST_LOG` syntax [default: info].
    #[arg(long, env = "CONFAB_LOG")]
    pub log: Option<String>,
    /// Log format [default: text].
    #[arg(long, env = "CONFAB_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
}

/// The same keys as [`ServeArgs`], read from the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    message_rate_per_minute: Option<u32>,
    jwt_secret: Option<String>,
    jwt_public_key_file: Option<PathBuf>,
    jwt_alg: Option<PublicKeyAlg>,
    max_frame_bytes: Option<usize>,
    max_body_bytes: Option<usize>,
    max_http_body_bytes: Option<usize>,
    replay_cap: Option<u32>,
    heartbeat_secs: Option<u64>,
    idle_timeout_secs: Option<u64>,
    auth_timeout_secs: Option<u64>,
    outbound_queue: Option<usize>,
    max_joined: Option<usize>,
    write_delay_ms: Option<u64>,
    shutdown_grace_secs: Option<u64>,
    header_read_timeout: Option<String>,
    body_read_timeout: Option<String>,
    keep_alive_timeout: Option<String>,
    max_connections: Option<usize>,
    store: Option<String>,
    store_database: Option<String>,
    hub: Option<String>,
    events: Option<String>,
    events_topic: Option<String>,
    log: Option<String>,
    log_format: Option<LogFormat>,
}

/// Flags of `confab token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// User id (`sub`).
    #[arg(long)]
    pub user: String,
    /// Tenant id (`tid`).
    #[arg(long)]
    pub tenant: String,
    /// Display name.
    #[arg(long)]
    pub name: Option<String>,
    /// Lifetime, e.g. `30m`, `1h`, `7d`.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    /// Data dir of the server whose key signs the token [default: ./data].
    #[arg(long, env = "CONFAB_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// HS256 secret, when the server is configured with one.
    #[arg(long, env = "CONFAB_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// TOML config file (its `data_dir` and `jwt_secret` are used).
    #[arg(long, env = "CONFAB_CONFIG")]
    pub config: Option<PathBuf>,
}

/// Where the signing key comes from.
#[derive(Debug, Clone)]
pub enum JwtSource {
    /// A configured HS256 secret.
    Secret(String),
    /// A configured public key (tokens are minted elsewhere).
    PublicKey { path: PathBuf, alg: PublicKeyAlg },
    /// The HS256 key generated under the data dir on first start.
    Generated,
}

/// The longest write delay accepted: past it, chat stops feeling live.
const MAX_WRITE_DELAY: Duration = Duration::from_secs(1);

/// The resolved server configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub message_rate_per_minute: u32,
    pub jwt: JwtSource,
    pub max_frame_bytes: usize,
    pub max_body_bytes: usize,
    pub max_http_body_bytes: usize,
    pub replay_cap: u32,
    pub heartbeat: Duration,
    pub idle_timeout: Duration,
    pub auth_timeout: Duration,
    pub outbound_queue: usize,
    pub max_joined: usize,
    /// Longest a delivery is held back to share a write (zero: never).
    pub write_delay: Duration,
    pub shutdown_grace: Duration,
    /// HTTP timeouts and the connection cap.
    pub conn_limits: ConnLimits,
    pub store: StoreBackend,
    pub hub: HubBackend,
    pub events: EventsBackend,
    pub events_topic: String,
    pub log: String,
    pub log_format: LogFormat,
}

/// Where conversations and messages are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreBackend {
    /// SQLite under the data dir (the embedded default).
    Sqlite,
    /// MongoDB at this URI, in this database.
    Mongo { uri: String, database: String },
}

impl StoreBackend {
    fn parse(value: &str, database: Option<String>) -> Result<StoreBackend, ConfigError> {
        match value {
            "sqlite" => Ok(StoreBackend::Sqlite),
            uri if uri.starts_with("mongodb://") || uri.starts_with("mongodb+srv://") => {
                let database = database.unwrap_or_else(|| "confab".to_owned());
                if database.is_empty() || database.contains(['/', '.', ' ', '$']) {
                    return Err(ConfigError::Invalid(format!(
                        "invalid store_database {database:?}"
                    )));
                }
                Ok(StoreBackend::Mongo {
                    uri: uri.to_owned(),
                    database,
                })
            }
            other => Err(ConfigError::Invalid(format!(
                "store must be `sqlite` or a mongodb:// URI, not {other:?}"
            ))),
        }
    }
}

/// How rooms fan out between nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubBackend {
    /// One node: the in-process hub only.
    Local,
    /// Redis pub/sub at this URL.
    Redis(String),
}

impl HubBackend {
    fn parse(value: &str) -> Result<HubBackend, ConfigError> {
        match value {
            "local" => Ok(HubBackend::Local),
            url if url.starts_with("redis://") || url.starts_with("rediss://") => {
                Ok(HubBackend::Redis(url.to_owned()))
            }
            other => Err(ConfigError::Invalid(format!(
                "hub must be `local` or a redis:// URL, not {other:?}"
            ))),
        }
    }
}

/// Where committed durable events are published (see `docs/events.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventsBackend {
    /// Nowhere.
    None,
    /// Kafka, at this `kafka://` URL (checked by [`crate::events::KafkaUrl::parse`]).
    Kafka(String),
}

impl EventsBackend {
    fn parse(value: &str) -> Result<EventsBackend, ConfigError> {
        if value == "none" {
            return Ok(EventsBackend::None);
        }
        crate::events::KafkaUrl::parse(value)
            .map(|_| EventsBackend::Kafka(value.to_owned()))
            .map_err(|err| ConfigError::Invalid(format!("events: {err}")))
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

fn read_file_config(path: Option<&Path>) -> Result<FileConfig, ConfigError> {
    let Some(path) = path else {
        return Ok(FileConfig::default());
    };
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_owned(),
        source: Box::new(source),
    })
}

/// A duration from the TOML file, in humantime form (`10s`, `500ms`).
fn file_duration(key: &str, value: Option<String>) -> Result<Option<Duration>, ConfigError> {
    value
        .map(|text| {
            humantime::parse_duration(&text)
                .map_err(|err| ConfigError::Invalid(format!("{key}: {err}")))
        })
        .transpose()
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            message_rate_per_minute: 60,
            jwt: JwtSource::Generated,
            max_frame_bytes: 64 * 1024,
            max_body_bytes: 16 * 1024,
            max_http_body_bytes: 1024 * 1024,
            replay_cap: 1000,
            heartbeat: Duration::from_secs(25),
            idle_timeout: Duration::from_secs(60),
            auth_timeout: Duration::from_secs(5),
            outbound_queue: 1024,
            max_joined: 1000,
            write_delay: Duration::ZERO,
            shutdown_grace: Duration::from_secs(10),
            conn_limits: ConnLimits::default(),
            store: StoreBackend::Sqlite,
            hub: HubBackend::Local,
            events: EventsBackend::None,
            events_topic: crate::events::DEFAULT_TOPIC.to_owned(),
            log: "info".to_owned(),
            log_format: LogFormat::Text,
        }
    }
}

impl Config {
    /// Resolves flags and environment (already merged by clap) over the TOML file over defaults.
    pub fn resolve(args: ServeArgs) -> Result<Config, ConfigError> {
        let file = read_file_config(args.config.as_deref())?;
        let d = Config::default();
        let secs = Duration::from_secs;
        let jwt_secret = args.jwt_secret.or(file.jwt_secret);
        let public_key = args.jwt_public_key_file.or(file.jwt_public_key_file);
        let alg = args.jwt_alg.or(file.jwt_alg).unwrap_or(PublicKeyAlg::Rs256);
        let jwt = match (jwt_secret, public_key) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Invalid(
                    "set either jwt_secret or jwt_public_key_file, not both".into(),
                ));
            }
            (Some(secret), None) => JwtSource::Secret(secret),
            (None, Some(path)) => JwtSource::PublicKey { path, alg },
            (None, None) => JwtSource::Generated,
        };
        let config = Config {
            listen: args.listen.or(file.listen).unwrap_or(d.listen),
            data_dir: args.data_dir.or(file.data_dir).unwrap_or(d.data_dir),
            message_rate_per_minute: args
                .message_rate_per_minute
                .or(file.message_rate_per_minute)
                .unwrap_or(d.message_rate_per_minute),
            jwt,
            max_frame_bytes: args
                .max_frame_bytes
                .or(file.max_frame_bytes)
                .unwrap_or(d.max_frame_bytes),
            max_body_bytes: args
                .max_body_bytes
                .or(file.max_body_bytes)
                .unwrap_or(d.max_body_bytes),
            max_http_body_bytes: args
                .max_http_body_bytes
                .or(file.max_http_body_bytes)
                .unwrap_or(d.max_http_body_bytes),
            replay_cap: args.replay_cap.or(file.replay_cap).unwrap_or(d.replay_cap),
            heartbeat: args
                .heartbeat_secs
                .or(file.heartbeat_secs)
                .map(secs)
                .unwrap_or(d.heartbeat),
            idle_timeout: args
                .idle_timeout_secs
                .or(file.idle_timeout_secs)
                .map(secs)
                .unwrap_or(d.idle_timeout),
            auth_timeout: args
                .auth_timeout_secs
                .or(file.auth_timeout_secs)
                .map(secs)
                .unwrap_or(d.auth_timeout),
            outbound_queue: args
                .outbound_queue
                .or(file.outbound_queue)
                .unwrap_or(d.outbound_queue),
            max_joined: args.max_joined.or(file.max_joined).unwrap_or(d.max_joined),
            write_delay: args
                .write_delay_ms
                .or(file.write_delay_ms)
                .map(Duration::from_millis)
                .unwrap_or(d.write_delay),
            shutdown_grace: args
                .shutdown_grace_secs
                .or(file.shutdown_grace_secs)
                .map(secs)
                .unwrap_or(d.shutdown_grace),
            conn_limits: ConnLimits {
                header_read_timeout: args
                    .header_read_timeout
                    .map_or_else(
                        || file_duration("header_read_timeout", file.header_read_timeout),
                        |d| Ok(Some(d)),
                    )?
                    .unwrap_or(d.conn_limits.header_read_timeout),
                body_read_timeout: args
                    .body_read_timeout
                    .map_or_else(
                        || file_duration("body_read_timeout", file.body_read_timeout),
                        |d| Ok(Some(d)),
                    )?
                    .unwrap_or(d.conn_limits.body_read_timeout),
                keep_alive_timeout: args
                    .keep_alive_timeout
                    .map_or_else(
                        || file_duration("keep_alive_timeout", file.keep_alive_timeout),
                        |d| Ok(Some(d)),
                    )?
                    .unwrap_or(d.conn_limits.keep_alive_timeout),
                max_connections: args
                    .max_connections
                    .or(file.max_connections)
                    .unwrap_or(d.conn_limits.max_connections),
            },
            store: match args.store.or(file.store) {
                Some(value) => {
                    StoreBackend::parse(&value, args.store_database.or(file.store_database))?
                }
                None => d.store,
            },
            hub: match args.hub.or(file.hub) {
                Some(value) => HubBackend::parse(&value)?,
                None => d.hub,
            },
            events: match args.events.or(file.events) {
                Some(value) => EventsBackend::parse(&value)?,
                None => d.events,
            },
            events_topic: args
                .events_topic
                .or(file.events_topic)
                .unwrap_or(d.events_topic),
            log: args.log.or(file.log).unwrap_or(d.log),
            log_format: args.log_format.or(file.log_format).unwrap_or(d.log_format),
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |text: &str| Err(ConfigError::Invalid(text.to_owned()));
        if self.max_frame_bytes < 1024 {
            return invalid("max_frame_bytes must be at least 1024");
        }
        if self.max_body_bytes == 0 || self.max_body_bytes > self.max_frame_bytes {
            return invalid("max_body_bytes must be between 1 and max_frame_bytes");
        }
        if self.heartbeat.is_zero() || self.idle_timeout <= self.heartbeat {
            return invalid("heartbeat_secs must be positive and below idle_timeout_secs");
        }
        if self.auth_timeout.is_zero() {
            return invalid("auth_timeout_secs must be positive");
        }
        if self.outbound_queue < 16 {
            return invalid("outbound_queue must be at least 16");
        }
        if self.max_joined == 0 {
            return invalid("max_joined must be positive");
        }
        if self.write_delay > MAX_WRITE_DELAY {
            return invalid("write_delay_ms must be at most 1000");
        }
        let limits = &self.conn_limits;
        if limits.header_read_timeout.is_zero()
            || limits.body_read_timeout.is_zero()
            || limits.keep_alive_timeout.is_zero()
        {
            return invalid(
                "header_read_timeout, body_read_timeout and keep_alive_timeout must be positive",
            );
        }
        if limits.max_connections == 0 {
            return invalid("max_connections must be positive");
        }
        if !crate::events::is_valid_topic(&self.events_topic) {
            return invalid(
                "events_topic must be 1 to 249 characters of a-z, A-Z, 0-9, '.', '_' and '-'",
            );
        }
        Ok(())
    }
}

impl TokenArgs {
    /// The data dir and the configured secret, if any, as `serve` would see them.
    pub fn key_location(&self) -> Result<(PathBuf, Option<String>), ConfigError> {
        let file = read_file_config(self.config.as_deref())?;
        let data_dir = self
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| Config::default().data_dir);
        Ok((data_dir, self.jwt_secret.clone().or(file.jwt_secret)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("confab.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\nreplay_cap = 50\nmax_joined = 7\n",
        )
        .expect("write config");
        let args = ServeArgs {
            config: Some(path),
            replay_cap: Some(10),
            ..ServeArgs::default()
        };
        let config = Config::resolve(args).expect("resolve");
        assert_eq!(config.listen, SocketAddr::from(([127, 0, 0, 1], 9000)));
        assert_eq!(config.replay_cap, 10);
        assert_eq!(config.max_joined, 7);
        assert_eq!(config.message_rate_per_minute, 60);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("confab.toml");
        std::fs::write(&path, "listne = \"127.0.0.1:9000\"\n").expect("write");
        let err = Config::resolve(ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        });
        assert!(matches!(err, Err(ConfigError::Parse { .. })));

        let err = Config::resolve(ServeArgs {
            heartbeat_secs: Some(90),
            idle_timeout_secs: Some(60),
            ..ServeArgs::default()
        });
        assert!(matches!(err, Err(ConfigError::Invalid(_))));

        let config = Config::resolve(ServeArgs {
            store: Some("mongodb://127.0.0.1:27017/?replicaSet=rs0".into()),
            ..ServeArgs::default()
        })
        .expect("mongo store");
        assert_eq!(
            config.store,
            StoreBackend::Mongo {
                uri: "mongodb://127.0.0.1:27017/?replicaSet=rs0".into(),
                database: "confab".into()
            }
        );
        let err = Config::resolve(ServeArgs {
            store: Some("postgres://x".into()),
            ..ServeArgs::default()
        });
        assert!(matches!(err, Err(ConfigError::Invalid(_))));

        let config = Config::resolve(ServeArgs {
            keep_alive_timeout: Some(Duration::from_secs(75)),
            max_connections: Some(5000),
            ..ServeArgs::default()
        })
        .expect("connection limits");
        assert_eq!(
            config.conn_limits.keep_alive_timeout,
            Duration::from_secs(75)
        );
        assert_eq!(config.conn_limits.max_connections, 5000);
        assert_eq!(
            config.conn_limits.header_read_timeout,
            Duration::from_secs(10)
        );
        let err = Config::resolve(ServeArgs {
            header_read_timeout: Some(Duration::ZERO),
            ..ServeArgs::default()
        });
        assert!(matches!(err, Err(ConfigError::Invalid(_))));
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("limits.toml");
        std::fs::write(
            &path,
            "body_read_timeout = \"1500ms\"\nheader_read_timeout = \"soon\"\n",
        )
        .expect("write");
        let err = Config::resolve(ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        });
        assert!(matches!(err, Err(ConfigError::Invalid(_))), "{err:?}");

        let config = Config::resolve(ServeArgs {
            write_delay_ms: Some(1000),
            ..ServeArgs::default()
        })
        .expect("the longest write delay");
        assert_eq!(config.write_delay, Duration::from_secs(1));
        assert_eq!(Config::default().write_delay, Duration::ZERO);
        let err = Config::resolve(ServeArgs {
            write_delay_ms: Some(1001),
            ..ServeArgs::default()
        });
        assert!(matches!(err, Err(ConfigError::Invalid(_))));

        let err = Config::resolve(ServeArgs {
            hub: Some("mqtt://x".into()),
            ..ServeArgs::default()
        });
        assert!(matches!(err, Err(ConfigError::Invalid(_))));
        let config = Config::resolve(ServeArgs {
            hub: Some("redis://127.0.0.1:6379".into()),
            ..ServeArgs::default()
        })
        .expect("redis hub");
        assert_eq!(
            config.hub,
            HubBackend::Redis("redis://127.0.0.1:6379".into())
        );

        for events in ["kafka:/x", "kafka://", "kafka://host", "nats://x:1"] {
            let err = Config::resolve(ServeArgs {
                events: Some(events.into()),
                ..ServeArgs::default()
            });
            assert!(matches!(err, Err(ConfigError::Invalid(_))), "{events}");
        }
        let err = Config::resolve(ServeArgs {
            events_topic: Some("no spaces".into()),
            ..ServeArgs::default()
        });
        assert!(matches!(err, Err(ConfigError::Invalid(_))));
        let config = Config::resolve(ServeArgs {
            events: Some("kafka://127.0.0.1:9092".into()),
            ..ServeArgs::default()
        })
        .expect("kafka events");
        assert_eq!(
            config.events,
            EventsBackend::Kafka("kafka://127.0.0.1:9092".into())
        );
        assert_eq!(config.events_topic, "confab.events");
    }

    #[test]
    fn the_example_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../confab.example.toml");
        let config = Config::resolve(ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        })
        .expect("example config resolves");
        assert_eq!(config.listen, SocketAddr::from(([127, 0, 0, 1], 8080)));
    }
}
