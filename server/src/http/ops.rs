//! Liveness, readiness and metrics.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use confab_protocol::rest::{FanoutHealth, Health};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

/// Longest a readiness probe waits for the store.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .routes(routes!(health))
        .routes(routes!(ready))
        .routes(routes!(metrics))
}

/// Liveness: the process serves HTTP.
#[utoipa::path(get, path = "/health", tag = "ops", responses((status = 200, body = Health)))]
pub async fn health() -> Json<Health> {
    Json(Health::status("ok"))
}

/// Readiness: storage answers and can commit, the fan-out is connected (to at least one of its
/// Redis shards; `fanout` names the shards down while only some are), the identity provider's
/// keys are loaded (with `jwt_jwks_url`), and the server is not shutting down. While
/// commits fail (a full disk, a read-only database) the answer is 503 `storage_unavailable` with
/// the `reason`; each probe then tries a small commit, so readiness returns once commits work.
#[utoipa::path(get, path = "/ready", tag = "ops",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn ready(State(state): State<AppState>) -> Response {
    if state.shutdown.is_cancelled() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health::status("shutting_down")),
        )
            .into_response();
    }
    let fanout = state.hub.fanout().and_then(|f| fanout_health(&f.links()));
    if let Some(health) = fanout.as_ref().filter(|h| h.down.len() as u32 == h.shards) {
        let body = Json(Health {
            fanout: Some(health.clone()),
            ..Health::status("fanout_unavailable")
        });
        return (StatusCode::SERVICE_UNAVAILABLE, body).into_response();
    }
    if state.keys.jwks().is_some_and(|jwks| !jwks.is_loaded()) {
        let body = Json(Health::status("token_keys_unavailable"));
        return (StatusCode::SERVICE_UNAVAILABLE, body).into_response();
    }
    // A store that hangs (an unreachable cluster) must not hang the probe.
    let ping = tokio::time::timeout(READY_TIMEOUT, state.store.ping()).await;
    match ping.unwrap_or(Err(confab_storage::StoreError::Unavailable)) {
        Ok(()) => Json(Health {
            search: Some(state.search().health()),
            fanout,
            ..Health::status("ready")
        })
        .into_response(),
        Err(err) => {
            tracing::warn!(error = %crate::error::ErrorChain(&err), "readiness check failed");
            let reason = match err {
                confab_storage::StoreError::CannotCommit(reason) => Some(reason.to_owned()),
                _ => None,
            };
            let body = Health {
                reason,
                ..Health::status("storage_unavailable")
            };
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

/// The shards down, if any, of a fan-out whose links are `links` (one per shard, in order).
fn fanout_health(links: &[bool]) -> Option<FanoutHealth> {
    let down: Vec<u32> = (0u32..)
        .zip(links)
        .filter(|(_, up)| !**up)
        .map(|(shard, _)| shard)
        .collect();
    if down.is_empty() {
        return None;
    }
    Some(FanoutHealth {
        shards: u32::try_from(links.len()).unwrap_or(u32::MAX),
        down,
    })
}

/// Prometheus text exposition: Confab's metrics and the standard process metrics.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    crate::metrics::collect_process_metrics();
    let (queued, deepest) = state.hub.outbound_queues();
    crate::metrics::outbound_queues(queued, deepest);
    let body = state
        .metrics
        .as_ref()
        .map(|h| {
            let mut body = h.render();
            state.wire().render(&mut body);
            body
        })
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}
