//! The caller's recent searches: `GET /v1/search/recent` and `DELETE /v1/search/recent`. A
//! message search or a grouped search with a non-blank `q` records it, in the store (so the
//! list survives restarts and is the same on every node), after the answer is computed and
//! without delaying it.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use confab_protocol::ErrorBody;
use confab_protocol::rest::{RecentSearch, RecentSearches};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::AuthUser;
use crate::error::{AppError, ErrorChain};
use crate::state::AppState;

/// The longest query recorded, in characters (a longer one is cut).
const MAX_RECORDED_CHARS: usize = 200;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::default().routes(routes!(recent, clear))
}

/// Records `q` (trimmed, cut to [`MAX_RECORDED_CHARS`]) as `user`'s newest search, in a task
/// of its own: a failure is logged, never the searcher's.
pub(super) fn record(state: &AppState, user: &AuthUser, q: &str) {
    let query: String = q.trim().chars().take(MAX_RECORDED_CHARS).collect();
    if query.is_empty() {
        return;
    }
    let (store, user) = (state.store.clone(), user.clone());
    tokio::spawn(async move {
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| {
                i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
            });
        if let Err(err) = store
            .record_query(&user.tenant, &user.user, &query, at)
            .await
        {
            tracing::warn!(error = %ErrorChain(&err), "cannot record a recent search");
        }
    });
}

/// The caller's recent searches, newest first.
#[utoipa::path(get, path = "/v1/search/recent", tag = "search", security(("bearer" = [])),
    responses((status = 200, body = RecentSearches), (status = 401, body = ErrorBody),
        (status = 503, description = "the store is unavailable", body = ErrorBody)))]
pub async fn recent(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<RecentSearches>, AppError> {
    let queries = state
        .store
        .recent_queries(&user.tenant, &user.user)
        .await?
        .into_iter()
        .map(|recent| RecentSearch {
            q: recent.query,
            at: recent.at,
        })
        .collect();
    Ok(Json(RecentSearches { queries }))
}

/// Forgets the caller's recent searches.
#[utoipa::path(delete, path = "/v1/search/recent", tag = "search", security(("bearer" = [])),
    responses((status = 204, description = "forgotten"), (status = 401, body = ErrorBody),
        (status = 503, description = "the store is unavailable", body = ErrorBody)))]
pub async fn clear(State(state): State<AppState>, user: AuthUser) -> Result<StatusCode, AppError> {
    state
        .store
        .clear_recent_queries(&user.tenant, &user.user)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
