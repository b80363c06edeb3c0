//! The `confab` binary: parses the command line, sets up logging and metrics, opens storage,
//! binds and serves (`confab serve`), mints a development token (`confab token`), or prints
//! the configuration's documentation (`confab config`), the frames' JSON Schema
//! (`confab protocol-schema`) or the REST API's OpenAPI document (`confab openapi`).

// Functions stay short enough to read at once (threshold in clippy.toml); tests may not.
#![warn(clippy::too_many_lines)]

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use confab_server::auth::JwtKeys;
use confab_server::config::{
    Cli, CliCommand, Config, ConfigCommand, JwtSource, LogFormat, StoreBackend, TokenArgs,
};
use confab_server::hub::Hub;
use confab_server::media::MediaService;
use confab_server::search::SearchService;
use confab_server::{AppState, events, fanout, metrics};
use confab_storage::sqlite::{SqliteOptions, SqliteStore};
use confab_storage::{DynStore, EventSink};
use tracing_subscriber::EnvFilter;

/// Database file under the data dir.
const DB_FILE: &str = "confab.db";

/// jemalloc rather than glibc's malloc: a session allocates and frees short-lived buffers for
/// every frame (its parse, its ack, the write buffer), and glibc's free-list upkeep was 9 % of
/// the server's CPU seeding history (benches/RESULTS.md, "jemalloc").
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        CliCommand::Serve(args) => {
            let (config, deprecations) = Config::load(*args)?;
            init_tracing(&config)?;
            raise_open_files_limit();
            for deprecation in deprecations {
                tracing::warn!(setting = %deprecation, "deprecated spelling of a setting");
            }
            let runtime =
                tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            // Spawned, not run by `block_on` itself: the accept loop then runs on a worker, so a
            // new connection's task lands in that worker's own queue instead of the shared one
            // plus a wake-up (a futex call and an inter-processor interrupt) of a parked worker.
            runtime.block_on(async {
                tokio::spawn(serve(config))
                    .await
                    .context("the server task failed")?
            })
        }
        CliCommand::Token(args) => token(*args),
        CliCommand::Config(args) => {
            print_config_docs(&args);
            Ok(())
        }
        CliCommand::ProtocolSchema => {
            let schema = confab_protocol::schema::frames_schema();
            println!("{}", serde_json::to_string_pretty(&schema)?);
            Ok(())
        }
        CliCommand::Openapi => {
            let document = confab_server::http::openapi::document();
            println!("{}", serde_json::to_string_pretty(&document)?);
            Ok(())
        }
    }
}

/// Raises the soft open-files limit to the hard one: every connection is a descriptor, and the
/// usual soft default (1,024) is exhausted by a thousand idle clients.
fn raise_open_files_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::info!(limit, "open files limit"),
        Err(err) => tracing::warn!(error = %err, "cannot raise the open files limit"),
    }
}

fn init_tracing(config: &Config) -> anyhow::Result<()> {
    use tracing_subscriber::filter::{FilterExt, LevelFilter, filter_fn};
    use tracing_subscriber::{Layer, layer::SubscriberExt, util::SubscriberInitExt};

    let filter = EnvFilter::try_new(&config.log)
        .with_context(|| format!("invalid log filter {:?}", config.log))?;
    // tungstenite traces whole frames and handshake requests: auth frames and `?token=` would
    // reach the log. Its trace events are dropped whatever the filter asks; below trace it
    // follows the filter like every other crate (a directive `tungstenite=debug` would instead
    // *raise* it to debug under `--log warn`: two lines for every client that closes).
    let no_frame_traces =
        filter_fn(|meta| *meta.level() != tracing::Level::TRACE || !traces_frames(meta.target()))
            .with_max_level_hint(LevelFilter::TRACE);
    // Colours only for a person at a terminal, not in files or log collectors.
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let layer = match config.log_format {
        LogFormat::Text => layer.boxed(),
        LogFormat::Json => layer.json().boxed(),
    };
    tracing_subscriber::registry()
        .with(layer.with_filter(filter.and(no_frame_traces)))
        .try_init()?;
    Ok(())
}

/// Whether events of `target` come from the WebSocket library, whose trace level logs frames.
fn traces_frames(target: &str) -> bool {
    ["tungstenite", "tokio_tungstenite"].iter().any(|name| {
        target
            .strip_prefix(name)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    })
}

async fn serve(config: Config) -> anyhow::Result<()> {
    confab_server::datadir::private_files();
    let _data_dir_lock = confab_server::datadir::prepare(&config)?;
    let keys = JwtKeys::load(&config.jwt(), &config.data_dir)?
        .with_claims(config.jwt_issuer.as_deref(), config.jwt_audience.as_deref());
    if let Some(jwks) = keys.jwks() {
        jwks.spawn(config.jwt_jwks_refresh);
    }
    if keys.generated {
        tracing::info!(
            key_file = %config.data_dir.join(confab_server::auth::GENERATED_KEY_FILE).display(),
            "using the generated development key; mint tokens with `confab token --user alice --tenant acme --data-dir {}`",
            config.data_dir.display()
        );
        if config.listen.ip().is_loopback() {
            tracing::warn!(
                "development sign-in (POST /v1/dev/token) is on: anyone who reaches this port \
                 from this machine can mint a token for any user; behind a reverse proxy, \
                 configure jwt_secret or a public key"
            );
        }
    }
    let metrics_handle = metrics::install().context("cannot install the metrics recorder")?;
    let fanout = fanout::start(&config.hub)
        .await
        .context("cannot start the fan-out between nodes")?;
    let hub = Hub::start(fanout);
    // With an event stream, the store's sink is a tee: the hub first, then the stream.
    let events = events::start(&config, hub.clone()).context("cannot start the event stream")?;
    let events_flush = config.shutdown_grace;
    let search = SearchService::for_config(&config)?;
    let store = open_store(&config, search.sink(events.sink())).await?;
    events.start_relay(store.clone());
    let listener =
        listen(config.listen).with_context(|| format!("cannot listen on {}", config.listen))?;
    let local = listener.local_addr()?;
    let media = MediaService::new(
        confab_server::media::open(&config)?,
        &config,
        &keys,
        events.stream(),
    );
    let state = AppState::new(
        config,
        store,
        media,
        search,
        hub,
        keys,
        Some(metrics_handle),
    );
    tracing::info!(addr = %local, "listening");
    // One machine-readable line on stdout with the bound address, so that whoever started
    // `--listen 127.0.0.1:0` (test harnesses, scripts) learns the port the kernel picked.
    println!("{}", serde_json::json!({ "listening": local.to_string() }));
    confab_server::run(listener, state, shutdown_signal()).await?;
    // After the store has closed: every committed event has been handed to the stream.
    events.close(events_flush).await;
    tracing::info!("stopped");
    Ok(())
}

/// Connections waiting to be accepted: the default 128 overflows when thousands of clients
/// connect at once (they then retry only after a second).
const LISTEN_BACKLOG: u32 = 4096;

fn listen(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Opens the configured store; committed events go to `sink`.
async fn open_store(config: &Config, sink: Arc<dyn EventSink>) -> anyhow::Result<DynStore> {
    match &config.store {
        StoreBackend::Sqlite => {
            let db_path = config.data_dir.join(DB_FILE);
            let store = SqliteStore::open(&db_path, sink, SqliteOptions::default())
                .with_context(|| format!("cannot open database {}", db_path.display()))?;
            Ok(Arc::new(store))
        }
        #[cfg(feature = "mongo")]
        StoreBackend::Mongo(uri) => {
            let database = &config.store_database;
            let store = confab_storage::mongo::MongoStore::connect(uri, database, sink)
                .await
                .with_context(|| format!("cannot open the MongoDB store (database {database})"))?;
            Ok(Arc::new(store))
        }
        #[cfg(not(feature = "mongo"))]
        StoreBackend::Mongo(_) => {
            drop(sink);
            anyhow::bail!("this build has no MongoDB support: rebuild with `--features mongo`")
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}

fn token(args: TokenArgs) -> anyhow::Result<()> {
    let (data_dir, secret) = args.key_location()?;
    let source = match secret {
        Some(secret) => JwtSource::Secret(secret),
        None => JwtSource::Generated,
    };
    let keys = JwtKeys::load(&source, &data_dir)?
        .with_claims(args.issuer.as_deref(), args.audience.as_deref());
    let token = if args.admin {
        keys.mint_admin(&args.user, &args.tenant, args.name.as_deref(), args.ttl)?
    } else {
        keys.mint(&args.user, &args.tenant, args.name.as_deref(), args.ttl)?
    };
    println!("{token}");
    Ok(())
}

/// `confab config`: documentation rendered from the one declaration of the configuration.
fn print_config_docs(args: &ConfigCommand) {
    if args.print_example {
        print!("{}", confab_server::config::example_toml());
    }
    if args.print_table {
        print!("{}", confab_server::config::readme_table());
    }
}
