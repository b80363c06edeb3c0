//! The Confab server: WebSocket sessions, the room hub, the REST API, auth, limits and metrics.
//!
//! Layout, one module per concern:
//! - [`config`]: the clap + TOML configuration; [`auth`]: JWT verification and minting.
//! - [`hub`]: rooms and fan-out (the storage event sink); [`session`]: one task per WebSocket;
//!   [`fanout`]: fan-out between nodes (Redis pub/sub); [`events`]: the event stream to Kafka
//!   (cargo feature `kafka`).
//! - [`chat`]: operations shared by WebSocket and REST; [`validate`]: field checks.
//! - [`http`]: the REST routers, the OpenAPI document and ops endpoints.
//! - [`error`]: the one error type and its JSON shape; [`metrics`]: Prometheus names.
//! - [`state`]: the shared [`AppState`]; [`run`] serves a listener until shutdown.

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

use axum::serve::ListenerExt;
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
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down");
        token.cancel();
    };
    // Chat frames are small and latency-bound: no Nagle delay.
    let listener = listener.tap_io(|stream| {
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(error = %err, "cannot set TCP_NODELAY");
        }
    });
    // `into_make_service` turns the routes into services once; serving the `Router` itself
    // rebuilds every route for each accepted connection (axum clones and re-states it), which
    // was most of the accept loop's CPU while 10,000 clients connected.
    let served = axum::serve(listener, app.into_make_service())
        .with_graceful_shutdown(signal)
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
        tracing::error!(error = %err, "store did not close cleanly");
    }
    // Last: events committed during the grace period still reached the other nodes.
    state.hub.close();
    served
}
