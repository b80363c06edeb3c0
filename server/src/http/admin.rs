//! A tenant admin's routes (tokens with `"admin": true`, see `auth::TenantAdmin`):
//! `POST /v1/admin/reindex` rebuilds the search index's documents of the caller's tenant from
//! storage in the background (`search/reindex.rs`); `GET /v1/admin/reindex` and
//! `GET /v1/admin/reindex/{id}` report on it. Everything is of the caller's tenant only.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use confab_protocol::ErrorBody;
use confab_protocol::rest::{ReindexJob, ReindexJobs};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiPath, Located, located};
use crate::auth::TenantAdmin;
use crate::error::AppError;
use crate::search::reindex;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .routes(routes!(start, list))
        .routes(routes!(fetch))
}

/// Starts rebuilding the search index's documents of the caller's tenant from storage; searches
/// keep answering from the current documents until the rebuilt ones are swapped in.
#[utoipa::path(post, path = "/v1/admin/reindex", tag = "admin", security(("bearer" = [])),
    responses(
        (status = 202, description = "started; `Location` names the job", body = ReindexJob,
            headers(("Location" = String, description = "the job: `/v1/admin/reindex/{id}`"))),
        (status = 401, body = ErrorBody),
        (status = 403, description = "the token is not a tenant admin's (`forbidden`)", body = ErrorBody),
        (status = 409, description = "a reindex of this tenant is running (`conflict`)", body = ErrorBody)))]
pub async fn start(
    State(state): State<AppState>,
    TenantAdmin(admin): TenantAdmin,
) -> Result<Located<ReindexJob>, AppError> {
    let context = reindex::Context {
        search: state.services.search.clone(),
        store: state.store.clone(),
        events_per_second: state.config.search_reindex_events_per_second,
        shutdown: state.shutdown.clone(),
    };
    let job = reindex::start(context, &admin.tenant)?;
    tracing::info!(tenant = %admin.tenant, admin = %admin.user, job = %job.id, "reindex requested");
    let location = format!("/v1/admin/reindex/{}", job.id);
    Ok(located(StatusCode::ACCEPTED, location, job))
}

/// The caller's tenant's reindexes on this node, newest first (the last 10).
#[utoipa::path(get, path = "/v1/admin/reindex", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = ReindexJobs), (status = 401, body = ErrorBody),
        (status = 403, description = "the token is not a tenant admin's (`forbidden`)", body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    TenantAdmin(admin): TenantAdmin,
) -> Json<ReindexJobs> {
    Json(ReindexJobs {
        jobs: state.search().reindexes.list(&admin.tenant),
    })
}

/// One reindex of the caller's tenant: its state and progress.
#[utoipa::path(get, path = "/v1/admin/reindex/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "the job's id")),
    responses((status = 200, body = ReindexJob), (status = 401, body = ErrorBody),
        (status = 403, description = "the token is not a tenant admin's (`forbidden`)", body = ErrorBody),
        (status = 404, description = "no such job of this tenant on this node (`not_found`)", body = ErrorBody)))]
pub async fn fetch(
    State(state): State<AppState>,
    TenantAdmin(admin): TenantAdmin,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ReindexJob>, AppError> {
    state
        .search()
        .reindexes
        .get(&admin.tenant, &id)
        .map(Json)
        .ok_or_else(|| AppError::not_found("no such reindex job"))
}
