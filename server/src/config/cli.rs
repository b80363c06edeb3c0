//! The `confab` command line: `serve`, `token`, `config` and `protocol-schema`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use super::layers::{Layers, Source};
use super::{ConfigError, ServeArgs};

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
    Token(Box<TokenArgs>),
    /// Print the configuration's documentation, rendered from its one declaration.
    Config(ConfigCommand),
    /// Print the JSON Schema of every WebSocket frame (what `/v1/protocol.schema.json` serves).
    ProtocolSchema,
    /// Print the OpenAPI document of the REST API (what `/v1/openapi.json` serves).
    Openapi,
}

/// Flags of `confab config`: what to print.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct ConfigCommand {
    /// An example TOML file with every key and its default (`confab.example.toml`).
    #[arg(long)]
    pub print_example: bool,
    /// The configuration table of README.md (Markdown).
    #[arg(long)]
    pub print_table: bool,
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
    /// An admin of the tenant (claim `"admin": true`): may call `/v1/admin/…` for it, such as
    /// `POST /v1/admin/reindex`.
    #[arg(long)]
    pub admin: bool,
    /// Lifetime, e.g. `30m`, `1h`, `7d`.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    /// Data dir of the server whose key signs the token [default: as `serve` resolves it].
    #[arg(long, env = "CONFAB_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// HS256 secret, when the server is configured with one.
    #[arg(long, env = "CONFAB_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// TOML config file (its `data_dir` and `jwt_secret` are used).
    #[arg(long, env = "CONFAB_CONFIG")]
    pub config: Option<PathBuf>,
    /// `iss` of the token, when the server requires one (its `jwt_issuer`).
    #[arg(long, env = "CONFAB_JWT_ISSUER")]
    pub issuer: Option<String>,
    /// `aud` of the token, when the server requires one (its `jwt_audience`).
    #[arg(long, env = "CONFAB_JWT_AUDIENCE")]
    pub audience: Option<String>,
}

impl TokenArgs {
    /// The data dir and the configured secret, if any, as `serve` would see them.
    pub fn key_location(&self) -> Result<(PathBuf, Option<String>), ConfigError> {
        let mut layers = Layers::default();
        if let Some(path) = &self.config {
            layers.add_file(path)?;
        }
        // Given by flag or by variable, both stand above the file, as for `serve`.
        if let Some(dir) = &self.data_dir {
            layers.offer("data_dir", Source::Flag, dir.into(), "--data-dir".into());
        }
        if let Some(secret) = &self.jwt_secret {
            layers.offer(
                "jwt_secret",
                Source::Flag,
                secret.into(),
                "--jwt-secret".into(),
            );
        }
        let config = layers.build()?;
        Ok((config.data_dir, config.jwt_secret))
    }
}
