//! The REST API under `/v1` plus the ops endpoints. Each module has a `router()`; they are
//! merged here. Extractor rejections are turned into the one JSON error shape.

mod conversations;
mod media;
mod messages;
pub mod openapi;
mod ops;
mod search;
mod search_people;
mod web;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::get;
use axum::{Json, Router};
use serde::de::DeserializeOwned;

use crate::error::AppError;
use crate::state::AppState;

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config.max_http_body_bytes;
    Router::new()
        .merge(ops::router())
        .merge(conversations::router())
        .merge(messages::router())
        .merge(media::router())
        .merge(search::router())
        .merge(search_people::router())
        .merge(web::router())
        .route("/v1/openapi.json", get(openapi::serve))
        .route("/v1/ws", get(crate::session::ws_handler))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(crate::metrics::TrackHttpLayer)
        .with_state(state)
}

async fn not_found() -> AppError {
    AppError::not_found("no such route")
}

async fn method_not_allowed() -> AppError {
    AppError::new(
        confab_protocol::ErrorCode::MethodNotAllowed,
        "method not allowed on this route",
    )
}

/// `Json<T>` whose rejections use Confab's error shape (`too_large` past the body limit).
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> AppError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        AppError::too_large("request body too large")
    } else if crate::accept::is_body_timeout(&rejection) {
        crate::metrics::http_timeout("body");
        AppError::new(
            confab_protocol::ErrorCode::Timeout,
            "the request body did not arrive in time",
        )
    } else {
        AppError::invalid(rejection.body_text())
    }
}

/// `Query<T>` with Confab's error shape.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|r: QueryRejection| AppError::invalid(r.body_text()))
    }
}

/// `Path<T>` with Confab's error shape.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|r: PathRejection| AppError::invalid(r.body_text()))
    }
}
