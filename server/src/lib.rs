//! The Confab server: WebSocket sessions, the room hub, the REST API, auth, limits and metrics.
//!
//! Layout, one module per concern:
//! - [`accept`]: the accept loop with the HTTP timeouts and the connection cap.
//! - [`config`]: the clap + TOML configuration; [`auth`]: JWT verification and minting.
//! - [`hub`]: rooms and fan-out (the storage event sink); [`session`]: one task per WebSocket;
//!   [`fanout`]: fan-out between nodes (Redis pub/sub); [`events`]: the event stream to Kafka
//!   (cargo feature `kafka`).
//! - [`chat`]: operations shared by WebSocket and REST; [`validate`]: field checks.
//! - [`http`]: the REST routers, the OpenAPI document and ops endpoints.
//! - [`error`]: the one error type and its JSON shape; [`metrics`]: Prometheus names.
//! - [`state`]: the shared [`AppState`]; [`run`] serves a listener until shutdown; [`spawn`]
//!   runs it in a task of its own (tests that need no separate process).

// Functions stay short enough to read at once (threshold in clippy.toml); tests may not.
#![warn(clippy::too_many_lines)]

pub mod accept;
pub mod auth;
pub mod chat;
pub mod config;
pub mod datadir;
pub mod error;
pub mod events;
pub mod fanout;
pub mod heartbeat;
pub mod http;
pub mod hub;
pub mod jwks;
pub mod limits;
pub mod media;
pub mod metrics;
pub mod outbox;
pub mod people;
pub mod search;
pub mod session;
pub mod state;
pub mod validate;

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use state::AppState;

/// Serves `listener` until `shutdown` resolves, then closes every session with "going away",
/// waits for them (up to the configured grace), and flushes and closes the store.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    state.spawn_limiter_cleanup();
    // Sessions wait for the shutdown on their outbox (see `Outbox::ended`), told here.
    let (hub, token) = (state.hub.clone(), state.shutdown.clone());
    tokio::spawn(async move {
        token.cancelled().await;
        let told = hub.shut_down_sessions();
        tracing::debug!(sessions = told, "sessions told of the shutdown");
    });
    search::spawn_backfill(
        state.services.clone(),
        state.store.clone(),
        state.shutdown.clone(),
    );
    media::spawn_sweeper(
        state.services.clone(),
        state.config.media_upload_expiry,
        state.shutdown.clone(),
    );
    state.hub.start_write_delay(
        state.config.write_delay,
        state.config.write_delay_target,
        state.shutdown.clone(),
    );
    let app = http::router(state.clone());
    let token = state.shutdown.clone();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down");
        token.cancel();
    });
    accept::serve(
        listener,
        app,
        state.config.conn_limits(),
        state.shutdown.clone(),
    )
    .await;
    state.shutdown.cancel();
    state.sessions.close();
    if tokio::time::timeout(state.config.shutdown_grace, state.sessions.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = state.sessions.len(),
            "sessions still open after the shutdown grace period"
        );
    }
    if let Err(err) = state.store.close().await {
        tracing::error!(error = %error::ErrorChain(&err), "store did not close cleanly");
    }
    // Last: events committed during the grace period still reached the other nodes.
    state.hub.close();
    // The index's reader of the event stream commits what it read.
    let search = state.services.search.clone();
    if tokio::task::spawn_blocking(move || search.close())
        .await
        .is_err()
    {
        tracing::error!("the search index did not close cleanly");
    }
    Ok(())
}

/// A server running in this process (see [`spawn`]). Dropping it starts its shutdown.
#[derive(Debug)]
pub struct Running {
    addr: SocketAddr,
    stop: CancellationToken,
    served: JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// The address it serves.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Shuts the server down as SIGTERM shuts down the binary, and waits until it has.
    pub async fn stop(mut self) -> std::io::Result<()> {
        self.stop.cancel();
        (&mut self.served).await.map_err(std::io::Error::other)?
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Serves `state` on `listener` in a task of its own until [`Running::stop`]: the binary's
/// [`run`], in process, for tests that need no process of their own (no kill -9, restart, or
/// metrics recorder).
pub fn spawn(listener: TcpListener, state: AppState) -> std::io::Result<Running> {
    let addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    let served = tokio::spawn(run(
        listener,
        state,
        async move { stopped.cancelled().await },
    ));
    Ok(Running { addr, stop, served })
}
