//! Interactive API docs at `/docs`: Swagger UI (npm `swagger-ui-dist`, vendored in
//! `server/assets/docs/` with its licence and version, refreshed by
//! `scripts/vendor-swagger-ui`) embedded in the binary and pointed at `/v1/openapi.json`.
//! Nothing is fetched from elsewhere, by the build or by the page.

use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use rust_embed::Embed;

use crate::state::AppState;

/// The files of the docs page.
#[derive(Embed)]
#[folder = "assets/docs/"]
struct DocsUi;

/// Scripts from this origin only (the UI's start is `init.js`, not an inline script); Swagger
/// UI sets inline `style` attributes and draws icons from `data:` URLs; "Try it out" calls this
/// origin.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; \
    connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `GET /docs`, `GET /docs/`, and one `GET /docs/<file>` per embedded file.
pub fn router() -> axum::Router<AppState> {
    let router = axum::Router::new()
        .route("/docs", get(index))
        .route("/docs/", get(index));
    super::web::embedded_routes::<DocsUi>(router, "/docs/", CONTENT_SECURITY_POLICY)
}

async fn index(headers: HeaderMap) -> Response {
    super::web::serve_embedded(
        "index.html",
        DocsUi::get("index.html"),
        &headers,
        CONTENT_SECURITY_POLICY,
    )
}
