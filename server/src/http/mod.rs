//! The REST API under `/v1` plus the ops endpoints. Each module has a `router()`; they are
//! merged here. Extractor rejections are turned into the one JSON error shape.
//!
//! # How to add a route
//!
//! A REST route's method and path are written once, in its handler's `#[utoipa::path(...)]`
//! attribute, next to what the OpenAPI document says of it (every status it can answer, with
//! the error body; [`openapi`] adds the 400, 401 and 413 every operation may give).
//!
//! 1. Register the handler in its module's `router()` with `.routes(routes!(handler))`: that
//!    mounts it at the attribute's method and path and adds its operation to the document.
//!    Handlers of one path share one `routes!(a, b)`; one `routes!` naming handlers of
//!    different paths would mount each of them on all those paths. A layer for one route goes
//!    on its `routes!(...)` (`media.rs` lifts the body limit of the uploads that way).
//! 2. A new module: merge its `router()` in [`api`].
//! 3. Give the route its rows in `server/tests/authz_matrix.rs` (the test fails without them),
//!    and run `scripts/api-contract`.
//!
//! A route deliberately left out of the document (a WebSocket upgrade, static files) goes on
//! the plain axum router in [`router`], with the reason.

mod admin;
mod conversations;
mod docs;
mod media;
mod messages;
pub mod openapi;
mod ops;
mod search;
mod search_conversations;
mod search_people;
mod search_recent;
mod search_suggestions;
mod web;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::routing::get;
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;

use crate::error::AppError;
use crate::state::AppState;

/// Every documented REST route, each mounted by `routes!` from its handler's
/// `#[utoipa::path]`, together with the OpenAPI document they make up (before
/// [`openapi::finish`]).
pub(crate) fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(ops::router())
        .merge(conversations::router())
        .merge(messages::router())
        .merge(media::router())
        .merge(search::router())
        .merge(search_people::router())
        .merge(search_conversations::router())
        .merge(search_suggestions::router())
        .merge(search_recent::router())
        .merge(admin::router())
        .merge(web::router())
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config.max_http_body_bytes;
    let (documented, openapi) = api().split_for_parts();
    let document = openapi::with_limits(openapi::finish(openapi), &state.config);
    documented
        // Deliberately not in the OpenAPI document: the document itself and the JSON Schema
        // of the frames (descriptions of the API, not operations of it), the WebSocket upgrade
        // (OpenAPI cannot describe what follows it: docs/protocol.md and the frames' schema
        // do), the API docs UI and the browser client's files (pages, not API).
        .route("/v1/openapi.json", openapi::serve(&document))
        .route("/v1/protocol.schema.json", get(openapi::protocol_schema))
        .route("/v1/ws", get(crate::session::ws_handler))
        .merge(docs::router())
        .merge(web::files())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(cors(&state.config.cors_origins))
        .layer(
            tower_http::set_header::SetResponseHeaderLayer::if_not_present(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        )
        .layer(crate::metrics::TrackHttpLayer)
        .with_state(state)
}

/// Cross-origin calls from the configured origins: preflights answered, the headers a client
/// sends and reads allowed. No origin configured: no CORS headers at all.
fn cors(origins: &crate::config::Origins) -> tower_http::cors::CorsLayer {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let allowed: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|origin| HeaderValue::from_str(origin).ok())
        .collect();
    if allowed.is_empty() {
        return CorsLayer::new();
    }
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(allowed))
        .allow_methods([
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::RANGE,
            header::IF_NONE_MATCH,
            HeaderName::from_static("x-chunk-sha256"),
        ])
        .expose_headers([
            header::RETRY_AFTER,
            header::LOCATION,
            header::ETAG,
            header::CONTENT_RANGE,
            header::CONTENT_DISPOSITION,
            header::ACCEPT_RANGES,
        ])
        .max_age(std::time::Duration::from_secs(600))
}

/// A response with the `Location` of the resource it created.
pub type Located<T> = (StatusCode, [(HeaderName, String); 1], Json<T>);

/// `body` with `status` and `Location: location`.
pub fn located<T>(status: StatusCode, location: String, body: T) -> Located<T> {
    (status, [(header::LOCATION, location)], Json(body))
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
        let Json(mut value) = Json::<serde_json::Value>::from_request(req, state)
            .await
            .map_err(json_rejection)?;
        // serde reads a struct from an array of its fields too; every body here is an object.
        if !value.is_object() {
            return Err(AppError::invalid("the body must be a JSON object"));
        }
        integral_floats_as_integers(&mut value);
        serde_json::from_value(value)
            .map(ApiJson)
            .map_err(|err| AppError::invalid(err.to_string()))
    }
}

/// JSON Schema's `integer` admits `3.0` (a number whose fraction is zero), serde's integers do
/// not: such numbers become the integers they equal before a body is read into its type.
pub fn integral_floats_as_integers(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Number(number) => {
            let Some(float) = number.as_f64().filter(|_| number.is_f64()) else {
                return;
            };
            // 2^64 and -2^63 are exact in f64: the casts below cannot saturate.
            if float.fract() != 0.0
                || !(-9_223_372_036_854_775_808.0..18_446_744_073_709_551_616.0).contains(&float)
            {
                return;
            }
            *number = if float < 0.0 {
                serde_json::Number::from(float as i64)
            } else {
                serde_json::Number::from(float as u64)
            };
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(integral_floats_as_integers),
        serde_json::Value::Object(map) => map.values_mut().for_each(integral_floats_as_integers),
        _ => {}
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

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower_service::Service as _;

    use super::*;

    /// The routes and the document cannot drift apart: `routes!` mounts each handler at the
    /// method and path of its `#[utoipa::path]` and adds that very operation to the document,
    /// and nothing lists them again. What is left to check is that nothing adds to one side
    /// only: an operation in the document that no route serves, a plain `.route` adding a
    /// method to a documented path, or one `routes!` naming handlers of different paths (which
    /// mounts each on all of them). So every documented operation, called without a token,
    /// reaches its handler (whatever it answers, neither 405 nor the fallback's `no such
    /// route`), and every other method of a documented path is 405.
    #[tokio::test]
    async fn the_routes_are_the_documented_operations() {
        let dir = tempfile::tempdir().expect("temp dir");
        // The generated key on loopback: the development sign-in is on (off, it answers
        // exactly as an unknown route does).
        let state = web::tests::app_state(dir.path(), "127.0.0.1:0", true);
        let document = openapi::served(&state.config);
        let mut app = router(state);
        let paths = document["paths"].as_object().expect("paths");
        // Not vacuous: the 29 paths of December 2026, or more.
        assert!(paths.len() >= 29, "only {} paths", paths.len());
        for (path, item) in paths {
            let uri: Vec<&str> = path
                .split('/')
                .map(|segment| {
                    if segment.starts_with('{') {
                        "1"
                    } else {
                        segment
                    }
                })
                .collect();
            let uri = uri.join("/");
            for method in [
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ] {
                let documented = item.get(method.as_str().to_lowercase()).is_some();
                let request = Request::builder()
                    .method(method.clone())
                    .uri(&uri)
                    .header(header::HOST, "localhost")
                    .body(Body::empty())
                    .expect("request");
                let Ok(response) = app.call(request).await;
                let status = response.status();
                let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                    .await
                    .expect("body");
                let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let unrouted = status == StatusCode::METHOD_NOT_ALLOWED
                    || body["error"]["message"] == "no such route";
                assert_eq!(
                    unrouted, !documented,
                    "{method} {uri} ({path}): {status} {body}"
                );
            }
        }
    }
}
