//! Configuration of `confab serve`, declared once.
//!
//! [`Config`] is the one declaration of every key: its doc comment is the help text, and its
//! `#[arg]` attribute gives the flag (`--heartbeat`), the environment variable
//! (`CONFAB_HEARTBEAT`), the default and the `--help` section; the TOML key is the field name.
//! Values are layered, later winning: the defaults, the TOML file (`--config`), `CONFAB_*`
//! variables, flags. Every layer goes through the same clap value parsers, so a value means the
//! same wherever it is written; durations are human strings (`25s`, `100ms`, `1m`).
//!
//! Layout:
//! - `mod.rs`: [`Config`], its cross-key checks ([`Config::validate`]) and [`ConfigError`];
//! - `values.rs`: the value types (backends, JWT algorithm, log format);
//! - `cli.rs`: the command line ([`Cli`]: `serve`, `token`, `config`);
//! - `layers.rs`: [`ServeArgs`] and the layering (file, environment, flags, and the deprecated
//!   spellings from before durations took units, e.g. `--heartbeat-secs 25`);
//! - `docs.rs`: `confab.example.toml` and the README's configuration table, rendered from
//!   [`Config`]'s own metadata; unit tests fail when the files differ from the rendering.
//!
//! Adding a key is one change here: a field of [`Config`] with a doc comment and
//! `#[arg(long, env = "CONFAB_<KEY>", default_value = "…", help_heading = "…")]` (a unit test
//! holds every key to that naming), plus a check in [`Config::validate`] if it has bounds. Then
//! regenerate the documentation the tests compare with:
//!
//! ```sh
//! cargo run -p confab-server -- config --print-example > confab.example.toml
//! cargo run -p confab-server -- config --print-table   # replaces the table in README.md
//! ```

mod cli;
mod docs;
mod layers;
mod values;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

pub use cli::{Cli, CliCommand, ConfigCommand, TokenArgs};
pub use docs::{example_toml, readme_table};
pub use layers::ServeArgs;
pub use values::{
    EventsBackend, HubBackend, JwtSource, LogFormat, MediaBackend, Origins, PublicKeyAlg,
    RedisShards, StoreBackend, WriteDelay,
};

/// Secrets that were ever published in this repository (defaults, examples, benches): a server
/// reachable from other hosts refuses them.
const PUBLIC_SECRETS: &[&str] = &[
    "compose-demo-secret-change-me-0123456789abcdef",
    "benchsecretbenchsecretbenchsecret00",
];

/// A JWKS URL must be `https://`, or `http://` to this machine (keys fetched in the clear from
/// elsewhere could be swapped by anyone on the path).
fn check_jwks_url(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("jwt_jwks_url {url:?}: {e}"))?;
    let loopback = match parsed.host() {
        Some(url::Host::Domain(name)) => name == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => Err(format!(
            "jwt_jwks_url {url:?}: keys must be fetched over https (http only on a loopback host)"
        )),
        other => Err(format!("jwt_jwks_url {url:?}: {other}:// is not http(s)")),
    }
}

/// Every setting of `confab serve`, with its flag, environment variable, TOML key and default.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct Config {
    /// Address to listen on.
    #[arg(
        long,
        env = "CONFAB_LISTEN",
        default_value = "127.0.0.1:8080",
        help_heading = "Server"
    )]
    pub listen: SocketAddr,
    /// Directory for the SQLite database and the generated signing key.
    #[arg(
        long,
        env = "CONFAB_DATA_DIR",
        default_value = "./data",
        help_heading = "Server"
    )]
    pub data_dir: PathBuf,
    /// Messages one user may send per minute; 0 turns the limit off (load tests).
    #[arg(
        long,
        env = "CONFAB_MESSAGE_RATE_PER_MINUTE",
        default_value = "60",
        help_heading = "Server"
    )]
    pub message_rate_per_minute: u32,
    /// Reactions added or removed by one user per minute; 0 turns the limit off.
    #[arg(
        long,
        env = "CONFAB_REACTION_RATE_PER_MINUTE",
        default_value = "120",
        help_heading = "Server"
    )]
    pub reaction_rate_per_minute: u32,
    /// Message edits by one user per minute; 0 turns the limit off.
    #[arg(
        long,
        env = "CONFAB_EDIT_RATE_PER_MINUTE",
        default_value = "60",
        help_heading = "Server"
    )]
    pub edit_rate_per_minute: u32,
    /// Message deletes by one user per minute; 0 turns the limit off.
    #[arg(
        long,
        env = "CONFAB_DELETE_RATE_PER_MINUTE",
        default_value = "60",
        help_heading = "Server"
    )]
    pub delete_rate_per_minute: u32,
    /// WebSocket joins and leaves by one user per minute (each may be a presence change for the
    /// room; joining a joined conversation again is free), with the whole budget as a burst: at
    /// least `max_joined`, so a reconnect can join everything at once; 0 turns the limit off.
    #[arg(
        long,
        env = "CONFAB_JOIN_RATE_PER_MINUTE",
        default_value = "1000",
        help_heading = "Server"
    )]
    pub join_rate_per_minute: u32,
    /// Authenticated REST requests by one user per minute; 0 turns the limit off.
    #[arg(
        long,
        env = "CONFAB_REST_RATE_PER_MINUTE",
        default_value = "1200",
        help_heading = "Server"
    )]
    pub rest_rate_per_minute: u32,
    /// Reactions one message may carry in all (each person's each emoji counts one).
    #[arg(
        long,
        env = "CONFAB_MAX_REACTIONS_PER_MESSAGE",
        default_value = "500",
        help_heading = "Server"
    )]
    pub max_reactions_per_message: usize,
    /// Different reactions one person may put on one message.
    #[arg(
        long,
        env = "CONFAB_MAX_REACTIONS_PER_USER",
        default_value = "20",
        help_heading = "Server"
    )]
    pub max_reactions_per_user: usize,
    /// Open WebSocket connections one user may have on this node; 0: no cap.
    #[arg(
        long,
        env = "CONFAB_MAX_CONNECTIONS_PER_USER",
        default_value = "50",
        help_heading = "Server"
    )]
    pub max_connections_per_user: usize,
    /// Nodes that deliberately share this data dir's SQLite file (a one-host stand-in for a
    /// shared store) set this on every node, with a cluster `hub`; without it a second server
    /// on the same data dir refuses to start.
    #[arg(long, env = "CONFAB_SHARED_DATA_DIR", default_value = "false", value_name = "BOOL",
        num_args = 0..=1, default_missing_value = "true", help_heading = "Server")]
    pub shared_data_dir: bool,
    /// Browser origins allowed to call the API from other origins (CORS, preflight answered)
    /// and to open WebSockets, e.g. `https://app.example.com,http://localhost:3000`. Empty
    /// (the default): no cross-origin API calls, and WebSocket origins are not checked.
    #[arg(long, env = "CONFAB_CORS_ORIGINS", default_value = "", value_name = "ORIGINS",
        value_parser = Origins::parse, help_heading = "Server")]
    pub cors_origins: Origins,

    /// HS256 secret for tokens (at least 32 bytes). With neither this nor a public key, an
    /// HS256 key is generated under the data dir on first start, and `confab token` mints
    /// development tokens with it.
    #[arg(
        long,
        env = "CONFAB_JWT_SECRET",
        hide_env_values = true,
        value_name = "SECRET",
        help_heading = "Tokens"
    )]
    pub jwt_secret: Option<String>,
    /// PEM public key verifying RS256 or ES256 tokens issued elsewhere (set this or
    /// `jwt_secret`, not both).
    #[arg(
        long,
        env = "CONFAB_JWT_PUBLIC_KEY_FILE",
        value_name = "PEM_FILE",
        help_heading = "Tokens"
    )]
    pub jwt_public_key_file: Option<PathBuf>,
    /// Algorithm of the tokens `jwt_public_key_file` verifies.
    #[arg(
        long,
        env = "CONFAB_JWT_ALG",
        default_value = "RS256",
        help_heading = "Tokens"
    )]
    pub jwt_alg: PublicKeyAlg,
    /// The `iss` every token must carry (tokens from an identity provider); minted tokens carry
    /// it. Unset: `iss` is not checked.
    #[arg(
        long,
        env = "CONFAB_JWT_ISSUER",
        value_name = "ISSUER",
        help_heading = "Tokens"
    )]
    pub jwt_issuer: Option<String>,
    /// The `aud` every token must name; minted tokens carry it. Unset: a token naming any
    /// audience is refused (it was meant for another service).
    #[arg(
        long,
        env = "CONFAB_JWT_AUDIENCE",
        value_name = "AUDIENCE",
        help_heading = "Tokens"
    )]
    pub jwt_audience: Option<String>,
    /// URL of an identity provider's JSON Web Key Set: tokens are verified with the key their
    /// `kid` names (RSA, EC or Ed25519 keys; set this or `jwt_secret` or
    /// `jwt_public_key_file`). `https://`, or `http://` on a loopback host only.
    #[arg(
        long,
        env = "CONFAB_JWT_JWKS_URL",
        value_name = "URL",
        help_heading = "Tokens"
    )]
    pub jwt_jwks_url: Option<String>,
    /// How often the `jwt_jwks_url` key set is fetched again (also, at most every 30 s, when a
    /// token names a key the cached set lacks).
    #[arg(long, env = "CONFAB_JWT_JWKS_REFRESH", default_value = "10m", value_name = "DURATION",
        value_parser = humantime::parse_duration, help_heading = "Tokens")]
    pub jwt_jwks_refresh: Duration,

    /// Largest WebSocket text frame accepted, in bytes (at least 1024).
    #[arg(
        long,
        env = "CONFAB_MAX_FRAME_BYTES",
        default_value = "65536",
        help_heading = "Limits"
    )]
    pub max_frame_bytes: usize,
    /// Largest message body, in bytes (at most `max_frame_bytes`).
    #[arg(
        long,
        env = "CONFAB_MAX_BODY_BYTES",
        default_value = "16384",
        help_heading = "Limits"
    )]
    pub max_body_bytes: usize,
    /// Largest REST request body, in bytes.
    #[arg(
        long,
        env = "CONFAB_MAX_HTTP_BODY_BYTES",
        default_value = "1048576",
        help_heading = "Limits"
    )]
    pub max_http_body_bytes: usize,
    /// Most events replayed on `join` with `since`.
    #[arg(
        long,
        env = "CONFAB_REPLAY_CAP",
        default_value = "1000",
        help_heading = "Limits"
    )]
    pub replay_cap: u32,
    /// Frames queued per connection before it is cut off as a slow consumer (at least 16).
    #[arg(
        long,
        env = "CONFAB_OUTBOUND_QUEUE",
        default_value = "1024",
        help_heading = "Limits"
    )]
    pub outbound_queue: usize,
    /// Conversations one connection may join at once.
    #[arg(
        long,
        env = "CONFAB_MAX_JOINED",
        default_value = "1000",
        help_heading = "Limits"
    )]
    pub max_joined: usize,

    /// Interval of the server's WebSocket pings (below `idle_timeout`).
    #[arg(long, env = "CONFAB_HEARTBEAT", default_value = "25s", value_name = "DURATION",
        value_parser = humantime::parse_duration, help_heading = "Timing")]
    pub heartbeat: Duration,
    /// Client silence after which a connection is closed.
    #[arg(long, env = "CONFAB_IDLE_TIMEOUT", default_value = "60s", value_name = "DURATION",
        value_parser = humantime::parse_duration, help_heading = "Timing")]
    pub idle_timeout: Duration,
    /// Time a new connection has to send its `auth` frame.
    #[arg(long, env = "CONFAB_AUTH_TIMEOUT", default_value = "5s", value_name = "DURATION",
        value_parser = humantime::parse_duration, help_heading = "Timing")]
    pub auth_timeout: Duration,
    /// Longest a live delivery to a busy connection waits to share one socket write; 0ms
    /// writes each at once (at most 1s); `auto` lets the server choose.
    ///
    /// A connection written to less than this long ago gets its next live deliveries at the
    /// next tick (every this long), in one socket write (one wake-up, one `send()`); one quiet
    /// for longer gets them at once. In busy rooms this cuts server CPU per delivery, for up to
    /// this much added latency (size `outbound_queue` for what a connection is sent in that
    /// window). Replies, acks, presence and kicks are never delayed. With `auto`, the server
    /// holds deliveries back by `write_delay_target` only while that pays (busy connections
    /// would get two or more deliveries per wake-up, measured every second) and writes each at
    /// once otherwise; `confab_write_delay_seconds` shows what it chose.
    #[arg(
        long,
        env = "CONFAB_WRITE_DELAY",
        default_value = "0ms",
        value_name = "DURATION|auto",
        help_heading = "Timing"
    )]
    pub write_delay: WriteDelay,
    /// With `write_delay = "auto"`: the delay used while holding back pays, so the most latency
    /// it adds to a delivery (at most 1s).
    #[arg(long, env = "CONFAB_WRITE_DELAY_TARGET", default_value = "20ms", value_name = "DURATION",
        value_parser = humantime::parse_duration, help_heading = "Timing")]
    pub write_delay_target: Duration,
    /// Time for sessions to close on SIGTERM or SIGINT.
    #[arg(long, env = "CONFAB_SHUTDOWN_GRACE", default_value = "10s", value_name = "DURATION",
        value_parser = humantime::parse_duration, help_heading = "Timing")]
    pub shutdown_grace: Duration,

    /// Time a client has to send a request's line and headers, from their first byte (from the
    /// accept, for a new connection).
    #[arg(long, env = "CONFAB_HEADER_READ_TIMEOUT", default_value = "10s", value_name = "DURATION",
        value_parser = humantime::parse_duration, help_heading = "Connections")]
    pub header_read_timeout: Duration,
    /// Longest wait for each next piece of a request body; a body that stalls is answered
    /// `timeout` (408).
    #[arg(long, env = "CONFAB_BODY_READ_TIMEOUT", default_value = "10s", value_name = "DURATION",
        value_parser = humantime::parse_duration, help_heading = "Connections")]
    pub body_read_timeout: Duration,
    /// Time an HTTP connection with no request in progress is kept open.
    #[arg(long, env = "CONFAB_KEEP_ALIVE_TIMEOUT", default_value = "30s", value_name = "DURATION",
        value_parser = humantime::parse_duration, help_heading = "Connections")]
    pub keep_alive_timeout: Duration,
    /// Open TCP connections (HTTP and WebSocket) at most.
    ///
    /// Past it, and whenever the process runs out of file descriptors, the oldest connection
    /// still speaking plain HTTP is closed to make room. At start the server raises its soft
    /// open-files limit to the hard limit.
    #[arg(
        long,
        env = "CONFAB_MAX_CONNECTIONS",
        default_value = "100000",
        help_heading = "Connections"
    )]
    pub max_connections: usize,

    /// Storage: `sqlite` under the data dir, or a `mongodb://` URI (a build with `--features
    /// mongo`; a replica set, since writes use transactions).
    #[arg(
        long,
        env = "CONFAB_STORE",
        default_value = "sqlite",
        help_heading = "Backends"
    )]
    pub store: StoreBackend,
    /// MongoDB database name.
    #[arg(long, env = "CONFAB_STORE_DATABASE", default_value = "confab",
        value_parser = values::parse_database_name, help_heading = "Backends")]
    pub store_database: String,
    /// Fan-out between nodes: `local` for one node, or `redis://host:port` for a cluster. Several
    /// comma-separated URLs (`redis://a:6379,redis://b:6379`) shard the fan-out over independent
    /// Redis servers, each conversation on one of them; every node lists the same servers in the
    /// same order.
    #[arg(
        long,
        env = "CONFAB_HUB",
        default_value = "local",
        help_heading = "Backends"
    )]
    pub hub: HubBackend,
    /// Event stream (docs/events.md): `none`, or
    /// `kafka://host:port[,host:port…][?property=value&…]` (a build with `--features kafka`).
    #[arg(
        long,
        env = "CONFAB_EVENTS",
        default_value = "none",
        help_heading = "Backends"
    )]
    pub events: EventsBackend,
    /// Kafka topic of the event stream.
    #[arg(long, env = "CONFAB_EVENTS_TOPIC", default_value = crate::events::DEFAULT_TOPIC,
        value_parser = values::parse_topic, help_heading = "Backends")]
    pub events_topic: String,

    /// Media files: `local` under the data dir, or `s3://bucket?endpoint=…&region=…` (a build
    /// with `--features s3`; credentials from the standard `AWS_*` variables).
    #[arg(
        long,
        env = "CONFAB_MEDIA",
        default_value = "local",
        help_heading = "Media"
    )]
    pub media: MediaBackend,
    /// Largest media file, in bytes.
    #[arg(
        long,
        env = "CONFAB_MEDIA_MAX_FILE_BYTES",
        default_value = "104857600",
        help_heading = "Media"
    )]
    pub media_max_file_bytes: u64,
    /// Chunk size of resumable uploads, in bytes (5 MiB to 64 MiB: S3's smallest part, and
    /// what one request may carry).
    #[arg(
        long,
        env = "CONFAB_MEDIA_CHUNK_BYTES",
        default_value = "5242880",
        help_heading = "Media"
    )]
    pub media_chunk_bytes: u64,
    /// Inactivity after which a resumable upload expires and its parts are removed.
    #[arg(long, env = "CONFAB_MEDIA_UPLOAD_EXPIRY", default_value = "5m", value_name = "DURATION",
        value_parser = humantime::parse_duration, help_heading = "Media")]
    pub media_upload_expiry: Duration,
    /// Media types accepted, decided from the files' bytes: patterns like
    /// `image/*,video/*,application/pdf`; `*` is every type but programs (executables are
    /// accepted only where their exact type is listed).
    #[arg(long, env = "CONFAB_MEDIA_ALLOWED_TYPES", default_value = "*", value_name = "TYPES",
        value_parser = confab_storage::media::sniff::TypePolicy::parse, help_heading = "Media")]
    pub media_allowed_types: confab_storage::media::sniff::TypePolicy,
    /// Secret signing media links (`POST /v1/media/{id}/signed`); every node of a cluster needs
    /// the same. By default a key derived from `jwt_secret` (or the generated key); with a public
    /// key and no secret, a random key: links then work on one node until it restarts.
    #[arg(
        long,
        env = "CONFAB_MEDIA_URL_SECRET",
        hide_env_values = true,
        value_name = "SECRET",
        help_heading = "Media"
    )]
    pub media_url_secret: Option<String>,
    /// Longest lifetime a client may ask of a signed media link (the default is 1h).
    #[arg(long, env = "CONFAB_MEDIA_SIGNED_URL_MAX_TTL", default_value = "24h", value_name = "DURATION",
        value_parser = humantime::parse_duration, help_heading = "Media")]
    pub media_signed_url_max_ttl: Duration,
    /// Uploads (single, or resumable ones started) one user may begin per minute; 0 turns the
    /// limit off.
    #[arg(
        long,
        env = "CONFAB_MEDIA_UPLOADS_PER_MINUTE",
        default_value = "60",
        help_heading = "Media"
    )]
    pub media_uploads_per_minute: u32,
    /// Bytes of media one tenant may keep; 0 turns the quota off.
    #[arg(
        long,
        env = "CONFAB_MEDIA_QUOTA_BYTES",
        default_value = "0",
        help_heading = "Media"
    )]
    pub media_quota_bytes: u64,

    /// Directory of this node's search index (default: `search` under the data dir). Nodes that
    /// share a data dir need one each.
    #[arg(
        long,
        env = "CONFAB_SEARCH_DIR",
        value_name = "DIR",
        help_heading = "Search"
    )]
    pub search_dir: Option<PathBuf>,
    /// How often new messages become searchable (the search index's commit interval, while
    /// the index is searched: see `search_idle_after`).
    #[arg(long, env = "CONFAB_SEARCH_COMMIT_INTERVAL", default_value = "1s", value_name = "DURATION",
        value_parser = humantime::parse_duration, help_heading = "Search")]
    pub search_commit_interval: Duration,
    /// How long without a search before the index commits only this often instead of every
    /// `search_commit_interval` (each commit writes a segment, and merges rewrite it); the
    /// first search after that waits for a commit, so it still sees every message acked more
    /// than `search_commit_interval` before it. 0 turns this off.
    #[arg(long, env = "CONFAB_SEARCH_IDLE_AFTER", default_value = "30s", value_name = "DURATION",
        value_parser = humantime::parse_duration, help_heading = "Search")]
    pub search_idle_after: Duration,
    /// Searches one user may make per minute; 0 turns the limit off.
    #[arg(
        long,
        env = "CONFAB_SEARCH_PER_MINUTE",
        default_value = "60",
        help_heading = "Search"
    )]
    pub search_per_minute: u32,
    /// Search-box completions (`/v1/search/suggestions`) one user may ask for per minute, a
    /// budget apart from `search_per_minute` (a search box asks once per keystroke); 0 turns
    /// the limit off.
    #[arg(
        long,
        env = "CONFAB_SEARCH_SUGGESTIONS_PER_MINUTE",
        default_value = "600",
        help_heading = "Search"
    )]
    pub search_suggestions_per_minute: u32,
    /// Searches and completions the index runs at once; later ones wait their turn, first
    /// come, first served (a query runs at full speed instead of sharing the cores with all
    /// the others, and the cores left free keep serving chat). 0: one per core.
    #[arg(
        long,
        env = "CONFAB_SEARCH_QUERY_CONCURRENCY",
        default_value = "0",
        help_heading = "Search"
    )]
    pub search_query_concurrency: u16,
    /// Memory the search index writer may fill before it writes a segment, in bytes (at least
    /// 16 MiB). The live index has one indexing thread; a reindex takes one per core, 25 MiB of
    /// this each, so larger speeds it up.
    #[arg(
        long,
        env = "CONFAB_SEARCH_MEMORY_BUDGET",
        default_value = "52428800",
        help_heading = "Search"
    )]
    pub search_memory_budget: u64,
    /// Events per second a tenant's reindex (`POST /v1/admin/reindex`) reads from storage at
    /// most, so that a rebuild leaves the disk and the cores to live traffic; 0: as fast as it
    /// goes.
    #[arg(
        long,
        env = "CONFAB_SEARCH_REINDEX_EVENTS_PER_SECOND",
        default_value = "0",
        help_heading = "Search"
    )]
    pub search_reindex_events_per_second: u32,
    /// Kafka consumer group with which this node's search index follows the event stream (with
    /// `events = "kafka://…"`). Default: `confab-search-` and an id generated once and kept in
    /// the search dir, so each node reads every event and resumes where its index stopped.
    #[arg(
        long,
        env = "CONFAB_SEARCH_CONSUMER_GROUP",
        value_name = "GROUP",
        value_parser = values::parse_consumer_group,
        help_heading = "Search"
    )]
    pub search_consumer_group: Option<String>,
    /// Kafka topic that receives the stream records the search index cannot read, with a
    /// header saying why. Default: the events topic followed by `.dlq`.
    #[arg(long, env = "CONFAB_SEARCH_DEAD_LETTER_TOPIC", value_name = "TOPIC",
        value_parser = values::parse_topic, help_heading = "Search")]
    pub search_dead_letter_topic: Option<String>,

    /// Log filter, in `RUST_LOG` syntax.
    #[arg(
        long,
        env = "CONFAB_LOG",
        default_value = "info",
        help_heading = "Logging"
    )]
    pub log: String,
    /// Log format.
    #[arg(
        long,
        env = "CONFAB_LOG_FORMAT",
        default_value = "text",
        help_heading = "Logging"
    )]
    pub log_format: LogFormat,
}

/// Resumable upload chunks: S3's smallest part, and what one request may carry.
const MIN_MEDIA_CHUNK: u64 = 5 * 1024 * 1024;
const MAX_MEDIA_CHUNK: u64 = 64 * 1024 * 1024;

/// The longest write delay accepted: past it, chat stops feeling live.
const MAX_WRITE_DELAY: Duration = Duration::from_secs(1);

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Default for Config {
    /// The built-in defaults, ignoring the environment.
    fn default() -> Self {
        layers::Layers::default()
            .build()
            .expect("the built-in defaults are a valid configuration")
    }
}

impl Config {
    /// Resolves flags over `CONFAB_*` variables over the TOML file over the defaults.
    pub fn resolve(args: ServeArgs) -> Result<Config, ConfigError> {
        Config::load(args).map(|(config, _)| config)
    }

    /// Like [`Config::resolve`], also returning a warning per deprecated spelling used (the
    /// binary logs them once logging is set up).
    pub fn load(args: ServeArgs) -> Result<(Config, Vec<String>), ConfigError> {
        let layers = args.layers()?;
        let config = layers.build()?;
        Ok((config, layers.deprecations))
    }

    /// Where the signing key comes from.
    pub fn jwt(&self) -> JwtSource {
        if let Some(url) = &self.jwt_jwks_url {
            return JwtSource::Jwks { url: url.clone() };
        }
        match (&self.jwt_secret, &self.jwt_public_key_file) {
            (Some(secret), _) => JwtSource::Secret(secret.clone()),
            (None, Some(path)) => JwtSource::PublicKey {
                path: path.clone(),
                alg: self.jwt_alg,
            },
            (None, None) => JwtSource::Generated,
        }
    }

    /// One source of token keys, and a JWKS URL that can be trusted.
    fn validate_token_keys(&self) -> Result<(), ConfigError> {
        let invalid = |text: &str| Err(ConfigError::Invalid(text.to_owned()));
        if self.jwt_secret.is_some() && self.jwt_public_key_file.is_some() {
            return invalid("set either jwt_secret or jwt_public_key_file, not both");
        }
        if let Some(url) = &self.jwt_jwks_url {
            if self.jwt_secret.is_some() || self.jwt_public_key_file.is_some() {
                return invalid("set one of jwt_secret, jwt_public_key_file and jwt_jwks_url");
            }
            check_jwks_url(url).map_err(ConfigError::Invalid)?;
            if self.jwt_jwks_refresh < Duration::from_secs(30) {
                return invalid("jwt_jwks_refresh must be at least 30s");
            }
        }
        Ok(())
    }

    /// The bounds of the timing keys.
    fn validate_timing(&self) -> Result<(), ConfigError> {
        let invalid = |text: &str| Err(ConfigError::Invalid(text.to_owned()));
        if self.heartbeat.is_zero() || self.idle_timeout <= self.heartbeat {
            return invalid("heartbeat must be positive and below idle_timeout");
        }
        if self.auth_timeout.is_zero() {
            return invalid("auth_timeout must be positive");
        }
        if self
            .write_delay
            .fixed()
            .is_some_and(|delay| delay > MAX_WRITE_DELAY)
        {
            return invalid("write_delay must be at most 1s");
        }
        if self.write_delay_target.is_zero() || self.write_delay_target > MAX_WRITE_DELAY {
            return invalid("write_delay_target must be positive and at most 1s");
        }
        for (key, timeout) in [
            ("header_read_timeout", self.header_read_timeout),
            ("body_read_timeout", self.body_read_timeout),
            ("keep_alive_timeout", self.keep_alive_timeout),
        ] {
            if timeout.is_zero() {
                return Err(ConfigError::Invalid(format!("{key} must be positive")));
            }
        }
        Ok(())
    }

    /// Checks the bounds and the rules between keys that single values cannot break alone.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |text: &str| Err(ConfigError::Invalid(text.to_owned()));
        self.validate_token_keys()?;
        self.validate_timing()?;
        if self.max_reactions_per_message == 0 || self.max_reactions_per_user == 0 {
            return invalid(
                "max_reactions_per_message and max_reactions_per_user must be at least 1",
            );
        }
        if self.max_frame_bytes < 1024 {
            return invalid("max_frame_bytes must be at least 1024");
        }
        if self.max_body_bytes == 0 || self.max_body_bytes > self.max_frame_bytes {
            return invalid("max_body_bytes must be between 1 and max_frame_bytes");
        }
        if self.outbound_queue < 16 {
            return invalid("outbound_queue must be at least 16");
        }
        if self.max_joined == 0 {
            return invalid("max_joined must be positive");
        }
        if self.max_connections == 0 {
            return invalid("max_connections must be positive");
        }
        if let Some(secret) = self.jwt_secret.as_deref()
            && PUBLIC_SECRETS.contains(&secret)
            && !self.listen.ip().is_loopback()
        {
            return invalid(
                "jwt_secret is a secret published in Confab's repository: anyone could mint \
                 tokens; choose your own (e.g. `openssl rand -hex 32`) to listen beyond loopback",
            );
        }
        if self.media_max_file_bytes == 0 {
            return invalid("media_max_file_bytes must be positive");
        }
        if !(MIN_MEDIA_CHUNK..=MAX_MEDIA_CHUNK).contains(&self.media_chunk_bytes) {
            return invalid("media_chunk_bytes must be between 5 MiB and 64 MiB");
        }
        if self
            .media_url_secret
            .as_ref()
            .is_some_and(|secret| secret.len() < 32)
        {
            return invalid("media_url_secret must be at least 32 bytes");
        }
        if self.media_signed_url_max_ttl < Duration::from_secs(1) {
            return invalid("media_signed_url_max_ttl must be at least 1s");
        }
        if !(16 * 1024 * 1024..=2 * 1024 * 1024 * 1024).contains(&self.search_memory_budget) {
            return invalid("search_memory_budget must be between 16 MiB and 2 GiB");
        }
        if self.search_commit_interval.is_zero() {
            return invalid("search_commit_interval must be positive");
        }
        if !crate::events::is_valid_topic(&self.dead_letter_topic()) {
            return invalid("search_dead_letter_topic: events_topic is too long to add `.dlq`");
        }
        if self.media_upload_expiry.is_zero() {
            return invalid("media_upload_expiry must be positive");
        }
        Ok(())
    }

    /// Where the search index's consumer sends the records it cannot read.
    pub fn dead_letter_topic(&self) -> String {
        self.search_dead_letter_topic
            .clone()
            .unwrap_or_else(|| format!("{}.dlq", self.events_topic))
    }

    /// The accept loop's timeouts and connection cap.
    pub fn conn_limits(&self) -> crate::accept::ConnLimits {
        crate::accept::ConnLimits {
            header_read_timeout: self.header_read_timeout,
            body_read_timeout: self.body_read_timeout,
            keep_alive_timeout: self.keep_alive_timeout,
            max_connections: self.max_connections,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(change: impl FnOnce(&mut Config)) -> Result<(), ConfigError> {
        let mut config = Config::default();
        change(&mut config);
        config.validate()
    }

    #[test]
    fn the_defaults_are_valid_and_as_documented() {
        let config = Config::default();
        assert_eq!(config.listen, SocketAddr::from(([127, 0, 0, 1], 8080)));
        assert_eq!(config.heartbeat, Duration::from_secs(25));
        assert_eq!(config.write_delay, WriteDelay::Fixed(Duration::ZERO));
        assert_eq!(config.write_delay_target, Duration::from_millis(20));
        assert_eq!(config.store, StoreBackend::Sqlite);
        assert_eq!(config.events_topic, "confab.events");
        assert_eq!(config.dead_letter_topic(), "confab.events.dlq");
        assert_eq!(config.conn_limits(), crate::accept::ConnLimits::default());
        assert!(matches!(config.jwt(), JwtSource::Generated));
        config.validate().expect("defaults are valid");
    }

    #[test]
    fn published_secrets_only_on_loopback() {
        let published = |listen: &str| {
            with(|c| {
                c.jwt_secret = Some(PUBLIC_SECRETS[0].to_owned());
                c.listen = listen.parse().expect("listen");
            })
        };
        published("127.0.0.1:8080").expect("a local demo may use it");
        let refused = published("0.0.0.0:8080").expect_err("refused beyond loopback");
        assert!(refused.to_string().contains("published"), "{refused}");
        with(|c| {
            c.jwt_secret = Some("an-operator-chosen-secret-0123456789abcdef".to_owned());
            c.listen = "0.0.0.0:8080".parse().expect("listen");
        })
        .expect("an own secret anywhere");
    }

    #[test]
    fn bounds_are_checked() {
        type Change = fn(&mut Config);
        let refused: [(&str, Change); 15] = [
            ("max_frame_bytes", |c| c.max_frame_bytes = 1023),
            ("max_body_bytes", |c| c.max_body_bytes = 0),
            ("max_body_bytes", |c| {
                c.max_body_bytes = c.max_frame_bytes + 1
            }),
            ("heartbeat", |c| c.heartbeat = Duration::ZERO),
            ("heartbeat", |c| c.heartbeat = c.idle_timeout),
            ("auth_timeout", |c| c.auth_timeout = Duration::ZERO),
            ("outbound_queue", |c| c.outbound_queue = 15),
            ("max_joined", |c| c.max_joined = 0),
            ("write_delay", |c| {
                c.write_delay = WriteDelay::Fixed(Duration::from_millis(1001))
            }),
            ("write_delay_target", |c| {
                c.write_delay_target = Duration::ZERO
            }),
            ("write_delay_target", |c| {
                c.write_delay_target = Duration::from_millis(1001)
            }),
            ("header_read_timeout", |c| {
                c.header_read_timeout = Duration::ZERO
            }),
            ("body_read_timeout", |c| {
                c.body_read_timeout = Duration::ZERO
            }),
            ("keep_alive_timeout", |c| {
                c.keep_alive_timeout = Duration::ZERO
            }),
            ("max_connections", |c| c.max_connections = 0),
        ];
        for (key, change) in refused {
            match with(change) {
                Err(ConfigError::Invalid(text)) => assert!(text.contains(key), "{key}: {text}"),
                other => panic!("{key}: expected a refusal, got {other:?}"),
            }
        }
        with(|c| c.write_delay = WriteDelay::Fixed(Duration::from_secs(1)))
            .expect("the longest write delay");
        with(|c| c.write_delay = WriteDelay::Auto).expect("the server chooses");
        with(|c| {
            c.max_frame_bytes = 1024;
            c.max_body_bytes = 1024;
            c.outbound_queue = 16;
        })
        .expect("the smallest limits");
        let both = with(|c| {
            c.jwt_secret = Some("s".repeat(32));
            c.jwt_public_key_file = Some("/k.pem".into());
        });
        assert!(matches!(both, Err(ConfigError::Invalid(_))), "{both:?}");
    }

    #[test]
    fn a_jwks_url_is_https_or_loopback_and_the_only_key_source() {
        let jwks = |url: &str| {
            with(|c| {
                c.jwt_jwks_url = Some(url.to_owned());
            })
        };
        jwks("https://idp.example/.well-known/jwks.json").expect("https");
        jwks("http://127.0.0.1:9000/jwks").expect("loopback http");
        jwks("http://localhost/jwks").expect("localhost http");
        jwks("http://idp.example/jwks").expect_err("http elsewhere");
        jwks("file:///etc/keys").expect_err("not http");
        jwks("not a url").expect_err("unparsable");
        with(|c| {
            c.jwt_jwks_url = Some("https://idp.example/jwks".to_owned());
            c.jwt_secret = Some("s".repeat(32));
        })
        .expect_err("two key sources");
    }

    #[test]
    fn the_jwt_source_follows_the_keys() {
        let mut config = Config {
            jwt_public_key_file: Some("/k.pem".into()),
            jwt_alg: PublicKeyAlg::Es256,
            ..Config::default()
        };
        assert!(matches!(
            config.jwt(),
            JwtSource::PublicKey {
                alg: PublicKeyAlg::Es256,
                ..
            }
        ));
        config.jwt_public_key_file = None;
        config.jwt_secret = Some("s".repeat(32));
        assert!(matches!(config.jwt(), JwtSource::Secret(_)));
    }
}
