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
//! - [`state`]: the shared [`AppState`]; [`run`] serves a listener until shutdown.

pub mod accept;
pub mod auth;
pub mod chat;
pub mod config;
pub mod error;
pub mod events;
pub mod fanout;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod outbox;
pub mod session;
pub mod state;
pub mod validate;

use std::future::Future;

use tokio::net::TcpListener;

pub use state::AppState;

/// Serves `listener` until `shutdown` resolves, then closes every session with "going away",
/// waits for them (up to the configured grace), and flushes and closes the store.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    state.spawn_limiter_cleanup();
    state
        .hub
        .start_write_delay(state.config.write_delay, state.shutdown.clone());
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
    Ok(())
}
