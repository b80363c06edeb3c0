//! Layering: the TOML file under `CONFAB_*` variables under flags, over [`Config`]'s defaults.
//!
//! Clap reads the flags and the environment ([`ServeArgs`] keeps its matches, so it knows which
//! values were given and how). [`Layers`] collects, per key, the value of the highest layer as
//! text; [`Layers::build`] then hands those texts to clap once more, as flags of a command
//! without environment variables, so every layer is parsed by the same value parsers and the
//! defaults are clap's own.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::error::{ContextKind, ContextValue};
use clap::parser::ValueSource;
use clap::{Arg, ArgMatches, Args, Command, FromArgMatches, value_parser};

use super::{Config, ConfigError};

/// Where a value came from; a later variant wins over an earlier one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Source {
    File,
    Env,
    Flag,
}

/// A spelling from before durations took units (`--heartbeat-secs 25`), still accepted as the
/// new key with the old unit so that existing deployments keep working, and reported.
struct Deprecated {
    key: &'static str,
    flag: &'static str,
    env: &'static str,
    new_key: &'static str,
    unit: &'static str,
}

const DEPRECATED: &[Deprecated] = &[
    Deprecated {
        key: "heartbeat_secs",
        flag: "heartbeat-secs",
        env: "CONFAB_HEARTBEAT_SECS",
        new_key: "heartbeat",
        unit: "s",
    },
    Deprecated {
        key: "idle_timeout_secs",
        flag: "idle-timeout-secs",
        env: "CONFAB_IDLE_TIMEOUT_SECS",
        new_key: "idle_timeout",
        unit: "s",
    },
    Deprecated {
        key: "auth_timeout_secs",
        flag: "auth-timeout-secs",
        env: "CONFAB_AUTH_TIMEOUT_SECS",
        new_key: "auth_timeout",
        unit: "s",
    },
    Deprecated {
        key: "write_delay_ms",
        flag: "write-delay-ms",
        env: "CONFAB_WRITE_DELAY_MS",
        new_key: "write_delay",
        unit: "ms",
    },
    Deprecated {
        key: "shutdown_grace_secs",
        flag: "shutdown-grace-secs",
        env: "CONFAB_SHUTDOWN_GRACE_SECS",
        new_key: "shutdown_grace",
        unit: "s",
    },
];

/// The id of `--config`, which names the file rather than being a key in it.
const CONFIG_FILE: &str = "config";

/// The keys of [`Config`] as a clap command that reads no environment: it parses the merged
/// layers, and gives the defaults and the documentation.
pub(super) fn config_command() -> Command {
    Config::augment_args(Command::new("confab serve")).mut_args(|arg| arg.env(None::<&str>))
}

fn is_key(command: &Command, key: &str) -> bool {
    command.get_arguments().any(|arg| arg.get_id() == key)
}

/// The flag of a key (a unit test holds every key to this spelling).
pub(super) fn flag_of(key: &str) -> String {
    format!("--{}", key.replace('_', "-"))
}

/// The flags and `CONFAB_*` variables of `confab serve`, as clap matched them.
#[derive(Debug, Clone)]
pub struct ServeArgs {
    matches: ArgMatches,
}

impl FromArgMatches for ServeArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        Ok(ServeArgs {
            matches: matches.clone(),
        })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        self.matches = matches.clone();
        Ok(())
    }
}

impl Args for ServeArgs {
    fn augment_args(command: Command) -> Command {
        let command = command.arg(
            Arg::new(CONFIG_FILE)
                .long("config")
                .env("CONFAB_CONFIG")
                .value_name("FILE")
                .value_parser(value_parser!(PathBuf))
                .help("TOML config file (keys as in confab.example.toml)"),
        );
        DEPRECATED
            .iter()
            .fold(Config::augment_args(command), |command, old| {
                command.arg(
                    Arg::new(old.key)
                        .long(old.flag)
                        .env(old.env)
                        .value_parser(value_parser!(u64))
                        .hide(true),
                )
            })
    }

    fn augment_args_for_update(command: Command) -> Command {
        ServeArgs::augment_args(command)
    }
}

impl ServeArgs {
    /// Parses the flags of `confab serve` (without the subcommand name), reading `CONFAB_*`.
    pub fn try_parse_from<I, T>(args: I) -> Result<ServeArgs, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let command = ServeArgs::augment_args(Command::new("confab serve"));
        let args = std::iter::once(OsString::from("serve")).chain(args.into_iter().map(Into::into));
        ServeArgs::from_arg_matches(&command.try_get_matches_from(args)?)
    }

    /// A value given by flag or environment variable, and which of the two.
    fn given(&self, id: &str) -> Option<(Source, OsString)> {
        let source = match self.matches.value_source(id)? {
            ValueSource::CommandLine => Source::Flag,
            ValueSource::EnvVariable => Source::Env,
            _ => return None,
        };
        let value = self.matches.get_raw(id)?.next()?.to_owned();
        Some((source, value))
    }

    /// The file, then the variables and flags over it.
    pub(super) fn layers(&self) -> Result<Layers, ConfigError> {
        let mut layers = Layers::default();
        if let Some(path) = self.matches.get_one::<PathBuf>(CONFIG_FILE) {
            layers.add_file(path)?;
        }
        for arg in config_command().get_arguments() {
            let key = arg.get_id().as_str();
            if let Some((source, value)) = self.given(key) {
                let spelling = match source {
                    Source::Flag => flag_of(key),
                    _ => format!("CONFAB_{}", key.to_uppercase()),
                };
                layers.offer(key, source, value, spelling);
            }
        }
        for old in DEPRECATED {
            let Some((source, value)) = self.given(old.key) else {
                continue;
            };
            let mut new_value = value.clone();
            new_value.push(old.unit);
            let new_text = new_value.to_string_lossy();
            let (spelling, instead) = match source {
                Source::Flag => (
                    format!("--{}", old.flag),
                    format!("{} {new_text}", flag_of(old.new_key)),
                ),
                _ => (
                    old.env.to_owned(),
                    format!("CONFAB_{}={new_text}", old.new_key.to_uppercase()),
                ),
            };
            layers
                .deprecations
                .push(format!("{spelling} is deprecated: use {instead}"));
            layers.offer_deprecated(old.new_key, source, new_value, spelling);
        }
        Ok(layers)
    }
}

/// A value offered for a key, with where it came from.
#[derive(Debug)]
struct Offered {
    source: Source,
    value: OsString,
    /// How the user wrote the key, for error messages: `--listen`, `CONFAB_LISTEN`, or the
    /// TOML key and its file.
    spelling: String,
    deprecated: bool,
}

/// The winning value of each key given anywhere, and the deprecated spellings seen.
#[derive(Debug, Default)]
pub(super) struct Layers {
    values: BTreeMap<String, Offered>,
    pub(super) deprecations: Vec<String>,
}

impl Layers {
    /// Takes `value` unless a higher layer gave the key already.
    pub(super) fn offer(&mut self, key: &str, source: Source, value: OsString, spelling: String) {
        self.insert(
            key,
            Offered {
                source,
                value,
                spelling,
                deprecated: false,
            },
        );
    }

    fn offer_deprecated(&mut self, key: &str, source: Source, value: OsString, spelling: String) {
        self.insert(
            key,
            Offered {
                source,
                value,
                spelling,
                deprecated: true,
            },
        );
    }

    /// Within one layer, the current spelling wins over a deprecated one.
    fn insert(&mut self, key: &str, offered: Offered) {
        let rank = |o: &Offered| (o.source, !o.deprecated);
        if let Some(current) = self.values.get(key)
            && rank(current) >= rank(&offered)
        {
            return;
        }
        self.values.insert(key.to_owned(), offered);
    }

    /// Offers every key of the TOML file at `path`.
    pub(super) fn add_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let parse_error = |reason: String| ConfigError::Parse {
            path: path.to_owned(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let table: toml::Table = text
            .parse()
            .map_err(|err: toml::de::Error| parse_error(err.to_string().trim_end().to_owned()))?;
        let command = config_command();
        for (key, value) in table {
            let spelling = format!("`{key}` in {}", path.display());
            if is_key(&command, &key) {
                let text = scalar_text(&value).ok_or_else(|| {
                    parse_error(format!("`{key}` must be a string, a number or a boolean"))
                })?;
                self.offer(&key, Source::File, text.into(), spelling);
                continue;
            }
            let Some(old) = DEPRECATED.iter().find(|old| old.key == key) else {
                return Err(parse_error(format!("unknown key `{key}`")));
            };
            let number = scalar_text(&value)
                .and_then(|text| text.parse::<u64>().ok())
                .ok_or_else(|| parse_error(format!("`{key}` must be a whole number")))?;
            let new_value = format!("{number}{}", old.unit);
            self.deprecations.push(format!(
                "{spelling} is deprecated: use {} = \"{new_value}\"",
                old.new_key
            ));
            self.offer_deprecated(old.new_key, Source::File, new_value.into(), spelling);
        }
        Ok(())
    }

    /// Parses the winning values over the defaults and checks the result.
    pub(super) fn build(&self) -> Result<Config, ConfigError> {
        let mut argv = vec![OsString::from("confab serve")];
        for (key, offered) in &self.values {
            let mut arg = OsString::from(format!("{}=", flag_of(key)));
            arg.push(&offered.value);
            argv.push(arg);
        }
        let config = config_command()
            .try_get_matches_from(argv)
            .and_then(|matches| Config::from_arg_matches(&matches))
            .map_err(|err| self.explain(&err))?;
        config.validate()?;
        Ok(config)
    }

    /// Says which value clap refused, as the user spelled its key.
    fn explain(&self, err: &clap::Error) -> ConfigError {
        let offered = match err.get(ContextKind::InvalidArg) {
            Some(ContextValue::String(arg)) => arg
                .split_whitespace()
                .next()
                .and_then(|flag| flag.strip_prefix("--"))
                .and_then(|flag| self.values.get(&flag.replace('-', "_"))),
            _ => None,
        };
        let reason = match (
            std::error::Error::source(err),
            err.get(ContextKind::ValidValue),
        ) {
            (Some(source), _) => source.to_string(),
            (None, Some(ContextValue::Strings(valid))) => {
                format!("expected one of {}", valid.join(", "))
            }
            _ => err.kind().to_string(),
        };
        match offered {
            Some(offered) => ConfigError::Invalid(format!(
                "{}: {:?}: {reason}",
                offered.spelling, offered.value
            )),
            None => ConfigError::Invalid(reason),
        }
    }
}

/// A TOML scalar as the text a flag would carry.
fn scalar_text(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(text) => Some(text.clone()),
        toml::Value::Integer(number) => Some(number.to_string()),
        toml::Value::Float(number) => Some(number.to_string()),
        toml::Value::Boolean(flag) => Some(flag.to_string()),
        toml::Value::Datetime(_) | toml::Value::Array(_) | toml::Value::Table(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use super::*;
    use crate::config::{EventsBackend, HubBackend, StoreBackend, WriteDelay};

    /// A TOML file in a temporary directory (kept alive by the returned guard).
    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("confab.toml");
        std::fs::write(&path, text).expect("write config");
        (dir, path)
    }

    fn resolve(args: &[&str]) -> Result<Config, ConfigError> {
        Config::resolve(ServeArgs::try_parse_from(args).expect("flags parse"))
    }

    fn resolve_with_file(text: &str, args: &[&str]) -> Result<(Config, Vec<String>), ConfigError> {
        let (_dir, path) = file(text);
        let path = path.to_str().expect("UTF-8 temp path").to_owned();
        let mut argv = vec!["--config", path.as_str()];
        argv.extend_from_slice(args);
        Config::load(ServeArgs::try_parse_from(argv).expect("flags parse"))
    }

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let text =
            "listen = \"127.0.0.1:9000\"\nreplay_cap = 50\nmax_joined = 7\nheartbeat = \"2s\"\n";
        let (config, _) = resolve_with_file(text, &["--replay-cap", "10"]).expect("resolve");
        assert_eq!(config.listen, SocketAddr::from(([127, 0, 0, 1], 9000)));
        assert_eq!(config.replay_cap, 10);
        assert_eq!(config.max_joined, 7);
        assert_eq!(config.heartbeat, Duration::from_secs(2));
        assert_eq!(config.message_rate_per_minute, 60);
    }

    /// The environment layer, through a variable every process has: tests cannot set one
    /// (`set_var` is unsafe, and this workspace forbids unsafe code).
    #[test]
    fn variables_override_the_file_and_flags_override_variables() {
        let path_var = std::env::var_os("PATH").expect("PATH is set");
        let (_dir, path) = file("data_dir = \"/from/the/file\"\n");
        let command = ServeArgs::augment_args(Command::new("serve"))
            .mut_arg("data_dir", |arg| arg.env("PATH"));
        let parse = |flags: &[&str]| {
            let argv = ["serve", "--config", path.to_str().expect("UTF-8")]
                .into_iter()
                .chain(flags.iter().copied());
            let matches = command.clone().try_get_matches_from(argv).expect("parse");
            Config::resolve(ServeArgs::from_arg_matches(&matches).expect("args")).expect("resolve")
        };
        assert_eq!(parse(&[]).data_dir, PathBuf::from(path_var));
        assert_eq!(
            parse(&["--data-dir", "/from/a/flag"]).data_dir,
            PathBuf::from("/from/a/flag")
        );
    }

    #[test]
    fn deprecated_spellings_still_work_in_their_old_units() {
        let config =
            resolve(&["--heartbeat-secs", "1", "--idle-timeout-secs", "2"]).expect("old flags");
        assert_eq!(config.heartbeat, Duration::from_secs(1));
        assert_eq!(config.idle_timeout, Duration::from_secs(2));
        let config = resolve(&[
            "--write-delay-ms=100",
            "--auth-timeout-secs=3",
            "--shutdown-grace-secs=4",
        ])
        .expect("old flags");
        assert_eq!(
            config.write_delay,
            WriteDelay::Fixed(Duration::from_millis(100))
        );
        assert_eq!(config.auth_timeout, Duration::from_secs(3));
        assert_eq!(config.shutdown_grace, Duration::from_secs(4));

        let (config, deprecations) =
            resolve_with_file("write_delay_ms = 250\nheartbeat_secs = 5\n", &[]).expect("old keys");
        assert_eq!(
            config.write_delay,
            WriteDelay::Fixed(Duration::from_millis(250))
        );
        assert_eq!(config.heartbeat, Duration::from_secs(5));
        assert_eq!(deprecations.len(), 2, "{deprecations:?}");
        assert!(
            deprecations
                .iter()
                .any(|d| d.contains("heartbeat = \"5s\"")),
            "{deprecations:?}"
        );

        // A deprecated flag still stands above the file; in one layer the new spelling wins.
        let (config, deprecations) =
            resolve_with_file("heartbeat = \"7s\"\n", &["--heartbeat-secs", "3"]).expect("mixed");
        assert_eq!(config.heartbeat, Duration::from_secs(3));
        assert_eq!(
            deprecations,
            ["--heartbeat-secs is deprecated: use --heartbeat 3s"]
        );
        let (config, _) = resolve_with_file("heartbeat = \"7s\"\nheartbeat_secs = 3\n", &[])
            .expect("both spellings in the file");
        assert_eq!(config.heartbeat, Duration::from_secs(7));
    }

    #[test]
    fn durations_need_a_unit() {
        let err = ServeArgs::try_parse_from(["--heartbeat", "25"]).expect_err("no unit");
        assert!(err.to_string().contains("--heartbeat"), "{err}");
        let config = resolve(&["--heartbeat", "1500ms", "--idle-timeout", "1m"]).expect("units");
        assert_eq!(config.heartbeat, Duration::from_millis(1500));
        assert_eq!(config.idle_timeout, Duration::from_secs(60));
    }

    #[test]
    fn the_write_delay_is_a_duration_or_auto() {
        let config = resolve(&["--write-delay", "auto", "--write-delay-target", "50ms"])
            .expect("auto from a flag");
        assert_eq!(config.write_delay, WriteDelay::Auto);
        assert_eq!(config.write_delay_target, Duration::from_millis(50));
        let (config, _) =
            resolve_with_file("write_delay = \"auto\"\n", &[]).expect("auto in a file");
        assert_eq!(config.write_delay, WriteDelay::Auto);
        let config = resolve(&["--write-delay", "30ms"]).expect("a duration");
        assert_eq!(
            config.write_delay,
            WriteDelay::Fixed(Duration::from_millis(30))
        );
        let err = ServeArgs::try_parse_from(["--write-delay", "sometimes"]).expect_err("neither");
        assert!(err.to_string().contains("auto"), "{err}");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_with_their_spelling() {
        let err = resolve_with_file("listne = \"127.0.0.1:9000\"\n", &[]).err();
        assert!(
            matches!(&err, Some(ConfigError::Parse { reason, .. }) if reason.contains("listne")),
            "{err:?}"
        );
        for (text, names) in [
            ("heartbeat = \"25\"\n", "`heartbeat` in"),
            ("heartbeat = 25\n", "`heartbeat` in"),
            ("log_format = \"xml\"\n", "`log_format` in"),
            ("store = \"postgres://x\"\n", "`store` in"),
            ("max_joined = -1\n", "`max_joined` in"),
            ("write_delay = \"often\"\n", "`write_delay` in"),
        ] {
            match resolve_with_file(text, &[]) {
                Err(ConfigError::Invalid(message)) => {
                    assert!(message.contains(names), "{text}: {message}")
                }
                other => panic!("{text}: expected a refusal, got {other:?}"),
            }
        }
        let err = resolve_with_file("heartbeat_secs = \"soon\"\n", &[]).err();
        assert!(matches!(err, Some(ConfigError::Parse { .. })), "{err:?}");
        let err = resolve_with_file("listen = [1]\n", &[]).err();
        assert!(matches!(err, Some(ConfigError::Parse { .. })), "{err:?}");
        let err = resolve(&["--heartbeat", "90s", "--idle-timeout", "60s"]).err();
        assert!(matches!(err, Some(ConfigError::Invalid(_))), "{err:?}");
    }

    #[test]
    fn backends_parse_from_any_layer() {
        let mongo = "mongodb://127.0.0.1:27017/?replicaSet=rs0";
        let config = resolve(&["--store", mongo]).expect("mongo store");
        assert_eq!(config.store, StoreBackend::Mongo(mongo.into()));
        assert_eq!(config.store_database, "confab");
        let refused = |args: &[&str]| ServeArgs::try_parse_from(args).is_err();
        assert!(refused(&["--store", "postgres://x"]));
        assert!(refused(&["--store-database", "a.b"]));
        assert!(refused(&["--hub", "mqtt://x"]));
        let config = resolve(&["--hub", "redis://127.0.0.1:6379"]).expect("redis hub");
        assert_eq!(config.hub, "redis://127.0.0.1:6379".parse().expect("url"));
        let HubBackend::Redis(one) = &config.hub else {
            panic!("a redis hub")
        };
        assert_eq!(one.urls(), ["redis://127.0.0.1:6379"]);
        // A list of shards, from the file and from a flag; a bad or repeated entry is refused
        // with the key and the entry named.
        let shards = "redis://127.0.0.1:7001,redis://127.0.0.1:7002,redis://127.0.0.1:7003";
        let (config, _) =
            resolve_with_file(&format!("hub = \"{shards}\"\n"), &[]).expect("three shards");
        let HubBackend::Redis(three) = &config.hub else {
            panic!("a redis hub")
        };
        assert_eq!(three.len(), 3);
        assert_eq!(three.to_string(), shards);
        let config = resolve(&["--hub", shards]).expect("three shards from a flag");
        assert!(matches!(&config.hub, HubBackend::Redis(list) if list.to_string() == shards));
        for (text, says) in [
            (
                "hub = \"redis://127.0.0.1:7001,redis://127.0.0.1:7001\"\n",
                "same Redis server as entry 1",
            ),
            ("hub = \"redis://127.0.0.1:7001,redis:/x\"\n", "entry 2"),
        ] {
            match resolve_with_file(text, &[]) {
                Err(ConfigError::Invalid(message)) => {
                    assert!(message.contains("`hub` in"), "{text}: {message}");
                    assert!(message.contains(says), "{text}: {message}");
                }
                other => panic!("{text}: expected a refusal, got {other:?}"),
            }
        }
        let err = ServeArgs::try_parse_from(["--hub", "redis://a:1,redis://a:1"])
            .expect_err("duplicate shard");
        assert!(err.to_string().contains("same Redis server"), "{err}");
        for events in ["kafka:/x", "kafka://", "kafka://host", "nats://x:1"] {
            assert!(refused(&["--events", events]), "{events}");
        }
        assert!(refused(&["--events-topic", "no spaces"]));
        assert!(refused(&["--search-dead-letter-topic", "no/slash"]));
        assert!(refused(&["--search-consumer-group", "two words"]));
        let long_topic = "t".repeat(247);
        let err = resolve(&["--events-topic", long_topic.as_str()]).err();
        assert!(
            matches!(err, Some(ConfigError::Invalid(_))),
            "no room for `.dlq`: {err:?}"
        );
        let (config, _) =
            resolve_with_file("events = \"kafka://127.0.0.1:9092\"\n", &[]).expect("kafka events");
        assert_eq!(
            config.events,
            EventsBackend::Kafka("kafka://127.0.0.1:9092".into())
        );
        assert_eq!(config.events_topic, "confab.events");
    }

    #[test]
    fn token_reads_the_data_dir_and_secret_as_serve_does() {
        let secret = "s".repeat(32);
        let (_dir, path) = file(&format!(
            "data_dir = \"/from/the/file\"\njwt_secret = \"{secret}\"\n"
        ));
        let token = |data_dir: Option<&str>| crate::config::TokenArgs {
            user: "alice".into(),
            tenant: "acme".into(),
            name: None,
            admin: false,
            ttl: Duration::from_secs(60),
            data_dir: data_dir.map(PathBuf::from),
            jwt_secret: None,
            config: Some(path.clone()),
            issuer: None,
            audience: None,
        };
        let (dir, found) = token(None).key_location().expect("from the file");
        assert_eq!(dir, PathBuf::from("/from/the/file"));
        assert_eq!(found, Some(secret));
        let (dir, _) = token(Some("/flag")).key_location().expect("flag wins");
        assert_eq!(dir, PathBuf::from("/flag"));
    }
}
