//! The OpenAPI document, generated from the handlers' annotations and served at
//! `/v1/openapi.json`.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{conversations, media, messages, ops, search, search_people, web};

#[derive(OpenApi)]
#[openapi(
    info(title = "Confab", description = "Real-time chat server: REST API. The WebSocket protocol at /v1/ws is described in docs/protocol.md."),
    paths(
        ops::health, ops::ready, ops::metrics,
        conversations::create, conversations::list, conversations::fetch, conversations::update,
        conversations::members, conversations::add_member, conversations::update_member,
        conversations::remove_member, conversations::mark_read,
        messages::list, messages::send, messages::fetch, messages::edit, messages::remove,
        messages::react, messages::unreact,
        media::upload, media::create_upload, media::put_chunk, media::progress, media::complete,
        media::abort, media::download, media::meta, media::thumbnail, media::remove,
        media::sign, media::signed_download,
        search::messages, search_people::users,
        web::dev_token,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "conversations", description = "Conversations the caller belongs to"),
        (name = "members", description = "Membership and roles"),
        (name = "messages", description = "History, sending, edits, deletes, reactions"),
        (name = "media", description = "Files: uploads (single and resumable), downloads with ranges"),
        (name = "search", description = "Full-text search over the caller's conversations"),
        (name = "ops", description = "Health, readiness, metrics"),
        (name = "dev", description = "Development sign-in (generated key on loopback only)"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// `GET /v1/openapi.json`.
pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented() {
        let doc = ApiDoc::openapi();
        let json = serde_json::to_value(&doc).expect("serialize");
        let paths = json["paths"].as_object().expect("paths");
        for (path, methods) in [
            ("/v1/conversations", &["get", "post"][..]),
            ("/v1/conversations/{id}", &["get", "patch"]),
            ("/v1/conversations/{id}/members", &["get", "post"]),
            (
                "/v1/conversations/{id}/members/{user}",
                &["patch", "delete"],
            ),
            ("/v1/conversations/{id}/read", &["put"]),
            ("/v1/conversations/{id}/messages", &["get", "post"]),
            ("/v1/messages/{id}", &["get", "patch", "delete"]),
            ("/v1/messages/{id}/reactions", &["post"]),
            ("/v1/messages/{id}/reactions/{emoji}", &["delete"]),
            ("/health", &["get"]),
            ("/ready", &["get"]),
            ("/metrics", &["get"]),
            ("/v1/dev/token", &["post"]),
            ("/v1/search/users", &["get"]),
        ] {
            for method in methods {
                assert!(
                    paths.get(path).and_then(|p| p.get(*method)).is_some(),
                    "{method} {path} undocumented"
                );
            }
        }
        assert!(json["components"]["schemas"].get("Message").is_some());
        assert!(json["components"]["schemas"].get("ErrorBody").is_some());
        assert!(json["components"]["schemas"].get("PersonHits").is_some());
        assert!(
            json["components"]["schemas"]
                .get("DevTokenRequest")
                .is_some()
        );
    }
}
