//! The value types of [`super::Config`] and the parsers clap runs on every layer's text.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::ValueEnum;

/// JWT algorithms accepted for externally issued tokens verified with a public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PublicKeyAlg {
    #[value(name = "RS256")]
    Rs256,
    #[value(name = "ES256")]
    Es256,
}

/// How live deliveries to busy connections are held back to share socket writes
/// (`write_delay`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteDelay {
    /// Busy connections wait up to this long; zero: never.
    Fixed(Duration),
    /// The server holds back only while that pays (a busy connection would get at least two
    /// deliveries per wake-up), for at most `write_delay_target`; otherwise it writes each
    /// delivery at once.
    Auto,
}

impl WriteDelay {
    /// The fixed delay, or `None` for `auto`.
    pub fn fixed(self) -> Option<Duration> {
        match self {
            WriteDelay::Fixed(delay) => Some(delay),
            WriteDelay::Auto => None,
        }
    }
}

impl FromStr for WriteDelay {
    type Err = String;

    fn from_str(value: &str) -> Result<WriteDelay, String> {
        if value == "auto" {
            return Ok(WriteDelay::Auto);
        }
        humantime::parse_duration(value)
            .map(WriteDelay::Fixed)
            .map_err(|err| format!("expected `auto` or a duration such as `20ms`: {err}"))
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where the signing key comes from.
#[derive(Debug, Clone)]
pub enum JwtSource {
    /// A configured HS256 secret.
    Secret(String),
    /// A configured public key (tokens are minted elsewhere).
    PublicKey { path: PathBuf, alg: PublicKeyAlg },
    /// The keys an identity provider publishes at a JWKS URL.
    Jwks { url: String },
    /// The HS256 key generated under the data dir on first start.
    Generated,
}

/// Where conversations and messages are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreBackend {
    /// SQLite under the data dir (the embedded default).
    Sqlite,
    /// MongoDB at this URI (in the database `store_database`).
    Mongo(String),
}

impl FromStr for StoreBackend {
    type Err = String;

    fn from_str(value: &str) -> Result<StoreBackend, String> {
        match value {
            "sqlite" => Ok(StoreBackend::Sqlite),
            uri if uri.starts_with("mongodb://") || uri.starts_with("mongodb+srv://") => {
                Ok(StoreBackend::Mongo(uri.to_owned()))
            }
            _ => Err("expected `sqlite` or a mongodb:// URI".to_owned()),
        }
    }
}

/// Where media files' bytes are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaBackend {
    /// The local disk, under `<data_dir>/media` (the embedded default).
    Local,
    /// An S3 bucket: `s3://bucket?endpoint=…&region=…` (checked when the server opens it).
    S3(String),
}

impl FromStr for MediaBackend {
    type Err = String;

    fn from_str(value: &str) -> Result<MediaBackend, String> {
        match value {
            "local" => Ok(MediaBackend::Local),
            url if url.starts_with("s3://") && url.len() > "s3://".len() => {
                Ok(MediaBackend::S3(url.to_owned()))
            }
            _ => Err("expected `local` or an s3://bucket URL".to_owned()),
        }
    }
}

/// How rooms fan out between nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubBackend {
    /// One node: the in-process hub only.
    Local,
    /// Redis pub/sub on these servers (one or more shards, see [`RedisShards`]).
    Redis(RedisShards),
}

impl FromStr for HubBackend {
    type Err = String;

    fn from_str(value: &str) -> Result<HubBackend, String> {
        if value == "local" {
            return Ok(HubBackend::Local);
        }
        RedisShards::parse(value).map(HubBackend::Redis)
    }
}

/// The Redis servers of a cluster's fan-out, in order: `redis://a:6379,redis://b:6379,…`. Each
/// conversation's channel lives on one of them (`crate::fanout::redis::shard_of`), so every
/// node must list the same servers in the same order. One URL is the unsharded fan-out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisShards(Vec<String>);

impl RedisShards {
    /// Parses a comma-separated list of `redis://` or `rediss://` URLs, each with a host; an
    /// empty entry, a bad URL or the same server twice is refused, naming it.
    pub fn parse(list: &str) -> Result<RedisShards, String> {
        let mut urls: Vec<String> = Vec::new();
        let mut servers: Vec<(String, u16, String)> = Vec::new();
        for (position, text) in list.split(',').map(str::trim).enumerate() {
            let nth = position + 1;
            if text.is_empty() {
                return Err(format!(
                    "expected `local` or redis:// URLs separated by commas; entry {nth} is empty"
                ));
            }
            let bad = |why: &str| format!("entry {nth}, {text:?}, is not a redis:// URL: {why}");
            let url = url::Url::parse(text).map_err(|err| bad(&err.to_string()))?;
            if !matches!(url.scheme(), "redis" | "rediss") {
                return Err(bad("the scheme must be redis or rediss"));
            }
            let Some(host) = url.host_str().filter(|host| !host.is_empty()) else {
                return Err(bad("no host"));
            };
            // The same server spelled twice (`redis://a` and `redis://A:6379/0`) would carry
            // two shards' channels and count twice: refuse it.
            let database = match url.path().trim_matches('/') {
                "" => "0".to_owned(),
                db => db.to_owned(),
            };
            let server = (
                host.to_ascii_lowercase(),
                url.port().unwrap_or(DEFAULT_REDIS_PORT),
                database,
            );
            if let Some(first) = servers.iter().position(|known| *known == server) {
                return Err(format!(
                    "entry {nth}, {text:?}, names the same Redis server as entry {}: \
                     each shard must be its own server",
                    first + 1
                ));
            }
            servers.push(server);
            urls.push(text.to_owned());
        }
        Ok(RedisShards(urls))
    }

    /// The URLs, in the configured order (shard 0 first).
    pub fn urls(&self) -> &[String] {
        &self.0
    }

    /// How many shards.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Never true for a parsed list; here for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Display for RedisShards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join(","))
    }
}

/// The port of a `redis://` URL that names none.
const DEFAULT_REDIS_PORT: u16 = 6379;

/// Where committed durable events are published (see `docs/events.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventsBackend {
    /// Nowhere.
    None,
    /// Kafka, at this `kafka://` URL (checked by [`crate::events::KafkaUrl::parse`]).
    Kafka(String),
}

impl FromStr for EventsBackend {
    type Err = String;

    fn from_str(value: &str) -> Result<EventsBackend, String> {
        if value == "none" {
            return Ok(EventsBackend::None);
        }
        crate::events::KafkaUrl::parse(value)
            .map(|_| EventsBackend::Kafka(value.to_owned()))
            .map_err(|err| err.to_string())
    }
}

/// A MongoDB database name: not empty, none of the characters MongoDB refuses in one.
pub(super) fn parse_database_name(value: &str) -> Result<String, String> {
    if value.is_empty() || value.contains(['/', '\\', '.', ' ', '"', '$']) {
        return Err("expected a MongoDB database name (no `/\\. \"$`)".to_owned());
    }
    Ok(value.to_owned())
}

/// A Kafka topic name.
pub(super) fn parse_topic(value: &str) -> Result<String, String> {
    if !crate::events::is_valid_topic(value) {
        return Err("expected 1 to 249 characters of a-z, A-Z, 0-9, '.', '_' and '-'".to_owned());
    }
    Ok(value.to_owned())
}

/// Browser origins allowed to call the API across origins (CORS) and to open WebSockets:
/// exact origins such as `https://app.example.com`, comma-separated; empty allows none.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Origins(Vec<String>);

impl Origins {
    /// Parses `https://a.example,http://localhost:3000`: each an `http` or `https` origin
    /// (scheme, host and port only), lower-cased as browsers send them.
    pub fn parse(list: &str) -> Result<Origins, String> {
        let origins = list
            .split(',')
            .map(str::trim)
            .filter(|origin| !origin.is_empty())
            .map(|text| {
                let bad = |why: &str| format!("{text:?} is not an origin: {why}");
                if text == "*" {
                    return Err(bad("list the origins; a wildcard is not accepted"));
                }
                let url = url::Url::parse(text).map_err(|err| bad(&err.to_string()))?;
                if !matches!(url.scheme(), "http" | "https") {
                    return Err(bad("the scheme must be http or https"));
                }
                if url.path() != "/" || url.query().is_some() || !url.username().is_empty() {
                    return Err(bad("an origin has no path, query or user"));
                }
                match url.origin() {
                    url::Origin::Tuple(..) => Ok(url.origin().ascii_serialization()),
                    url::Origin::Opaque(_) => Err(bad("no host")),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Origins(origins))
    }

    /// Whether `origin` (an `Origin` header's value) is listed.
    pub fn allows(&self, origin: &str) -> bool {
        self.0
            .iter()
            .any(|listed| listed.eq_ignore_ascii_case(origin))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

impl std::fmt::Display for Origins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join(","))
    }
}

/// A Kafka consumer group id: not empty, printable, no spaces.
pub(super) fn parse_consumer_group(value: &str) -> Result<String, String> {
    if value.is_empty() || value.len() > 255 || !value.chars().all(|c| c.is_ascii_graphic()) {
        return Err("expected 1 to 255 printable ASCII characters, no spaces".to_owned());
    }
    Ok(value.to_owned())
}

#[cfg(test)]
mod redis_shards_tests {
    use super::{HubBackend, RedisShards};

    #[test]
    fn one_url_or_a_list_of_distinct_servers() {
        let one: HubBackend = "redis://127.0.0.1:6379".parse().expect("one url");
        assert_eq!(
            one,
            HubBackend::Redis(RedisShards(vec!["redis://127.0.0.1:6379".into()]))
        );
        let HubBackend::Redis(three) = "redis://a:1, redis://b:2 ,rediss://c:3/2"
            .parse()
            .expect("three urls")
        else {
            panic!("a redis hub")
        };
        assert_eq!(
            three.urls(),
            ["redis://a:1", "redis://b:2", "rediss://c:3/2"]
        );
        assert_eq!(three.to_string(), "redis://a:1,redis://b:2,rediss://c:3/2");
        // The same host on another port or database is another server.
        assert!(RedisShards::parse("redis://a:1,redis://a:2,redis://a:1/1").is_ok());
    }

    #[test]
    fn bad_entries_and_duplicates_are_refused_naming_them() {
        for (list, says) in [
            ("redis://a:1,", "entry 2 is empty"),
            ("redis://a:1,,redis://b:2", "entry 2 is empty"),
            ("redis://a:1,http://b:2", "entry 2, \"http://b:2\""),
            ("redis://a:1,redis://b:x", "entry 2, \"redis://b:x\""),
            ("redis://a:1,not a url", "entry 2"),
            (
                "redis://a:1,redis://b:2,redis://A:1",
                "same Redis server as entry 1",
            ),
            ("redis://a,redis://a:6379/0", "same Redis server as entry 1"),
            ("mqtt://x", "entry 1"),
        ] {
            match list.parse::<HubBackend>() {
                Err(message) => assert!(message.contains(says), "{list}: {message}"),
                Ok(hub) => panic!("{list}: accepted as {hub:?}"),
            }
        }
    }
}

#[cfg(test)]
mod origin_tests {
    use super::Origins;

    #[test]
    fn origins_are_exact_and_normalised() {
        let origins =
            Origins::parse(" https://App.Example.com , http://localhost:3000,").expect("parse");
        assert_eq!(
            origins.to_string(),
            "https://app.example.com,http://localhost:3000"
        );
        assert!(origins.allows("https://app.example.com"));
        assert!(origins.allows("http://localhost:3000"));
        assert!(!origins.allows("http://localhost:3001"));
        assert!(!origins.allows("https://app.example.com.evil.test"));
        assert!(Origins::parse("").expect("empty").is_empty());
        for bad in ["*", "ftp://x.test", "https://x.test/path", "x.test", "null"] {
            assert!(Origins::parse(bad).is_err(), "{bad}");
        }
    }
}
