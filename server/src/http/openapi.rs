//! The OpenAPI document, generated from the handlers' annotations and served at
//! `/v1/openapi.json`, and the JSON Schema of the WebSocket frames at
//! `/v1/protocol.schema.json`.
//!
//! The document's paths come from the routes themselves ([`super::api`]: each handler is
//! registered with `routes!`, which adds its `#[utoipa::path]` operation too); this module adds
//! what is not an operation's own (info, tags, the security scheme) and what every operation
//! shares (operation ids, response descriptions, the common error answers, input limits).

use axum::Json;
use axum::body::Bytes;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use utoipa::Modify;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

mod rules;

use rules::{body_constraints, path_parameters, query_parameters};

/// The document around the operations: info, tags and the security scheme. Its paths are the
/// routes' ([`super::api`] starts from this), so no list of handlers is kept here.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Confab", description = "Real-time chat server: REST API. The WebSocket protocol at /v1/ws is described in docs/protocol.md."),
    modifiers(&BearerAuth),
    tags(
        (name = "conversations", description = "Conversations the caller belongs to"),
        (name = "members", description = "Membership and roles"),
        (name = "messages", description = "History, sending, edits, deletes, reactions"),
        (name = "media", description = "Files: uploads (single and resumable), downloads with ranges"),
        (name = "search", description = "Full-text search over the caller's conversations"),
        (name = "admin", description = "A tenant admin's operations (tokens with `\"admin\": true`)"),
        (name = "ops", description = "Health, readiness, metrics"),
        (name = "dev", description = "Development sign-in (generated key on loopback only)"),
    )
)]
pub(super) struct ApiDoc;

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

/// What every operation of the document gets without each handler restating it: a
/// description for each response (OpenAPI requires one; the annotations give most responses
/// only a status and a body), and a unique `operationId` (handlers of different modules share
/// names such as `list` and `fetch`).
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                ("get", item.get.as_mut()),
                ("put", item.put.as_mut()),
                ("post", item.post.as_mut()),
                ("delete", item.delete.as_mut()),
                ("head", item.head.as_mut()),
                ("patch", item.patch.as_mut()),
            ];
            for (method, operation) in operations {
                let Some(operation) = operation else {
                    continue;
                };
                operation.operation_id = Some(operation_id(method, path));
                for (status, response) in operation.responses.responses.iter_mut() {
                    if let utoipa::openapi::RefOr::T(response) = response
                        && response.description.is_empty()
                    {
                        response.description = status_description(status).to_owned();
                    }
                }
            }
        }
    }
}

/// `get_v1_conversations_id_members`: the method and the path's words.
fn operation_id(method: &str, path: &str) -> String {
    let words: Vec<&str> = path
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|word| !word.is_empty())
        .collect();
    format!("{method}_{}", words.join("_"))
}

/// What a status means in this API (the error ones carry the error body).
fn status_description(status: &str) -> &'static str {
    match status {
        "200" => "OK",
        "201" => "Created (`Location` names it)",
        "202" => "Accepted: started in the background (`Location` names it)",
        "204" => "Done, nothing to return",
        "206" => "The requested byte range",
        "304" => "Not modified",
        "400" => "Invalid input (`invalid`)",
        "401" => "Missing, malformed or expired token (`unauthorized`)",
        "403" => "Not allowed for this caller (`forbidden`, `not_member`)",
        "404" => "No such resource in the caller's tenant (`not_found`)",
        "409" => "Conflicts with the current state (`conflict`)",
        "413" => "Too large (`too_large`)",
        "415" => "Unsupported media type",
        "416" => "Range not satisfiable",
        "422" => "Checksum mismatch (`checksum_mismatch`)",
        "429" => "Rate limited (`rate_limited`; `Retry-After` says when to retry)",
        "503" => "Unavailable (storage, fan-out, or shutting down)",
        "507" => "Storage quota exceeded",
        _ => "See the error body",
    }
}

/// The document of every documented route ([`super::api`]), as [`finish`] completes it.
pub fn document() -> serde_json::Value {
    let (_routes, openapi) = super::api().split_for_parts();
    finish(openapi)
}

/// `openapi` (what the routes' annotations and [`ApiDoc`] give) as served, before the limits
/// of a configuration: with the [`Conventions`], timestamps (`Millis`, an alias of `i64` that
/// utoipa turns into a schema named `i64`) written inline as integers, and what every
/// operation shares ([`common_answers`], [`path_parameters`]).
pub(super) fn finish(mut openapi: utoipa::openapi::OpenApi) -> serde_json::Value {
    // Applied here rather than as a modifier of `ApiDoc`: the modifiers run when `ApiDoc` is
    // built, before the routes add their operations.
    Conventions.modify(&mut openapi);
    let mut doc = serde_json::to_value(openapi).unwrap_or_default();
    inline_integers(&mut doc);
    if let Some(paths) = doc
        .get_mut("paths")
        .and_then(serde_json::Value::as_object_mut)
    {
        for (path, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for operation in item.values_mut() {
                common_answers(path, operation);
                path_parameters(operation);
                query_parameters(path, operation);
            }
        }
    }
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(serde_json::Value::as_object_mut)
    {
        schemas.remove("i64");
    }
    body_constraints(&mut doc);
    doc
}

/// The document as this server serves it: [`document`] with the limits its configuration sets
/// (the largest file, the longest signed link).
pub fn served(config: &crate::config::Config) -> serde_json::Value {
    with_limits(document(), config)
}

/// `doc` (from [`finish`]) with the limits `config` sets.
pub(super) fn with_limits(
    mut doc: serde_json::Value,
    config: &crate::config::Config,
) -> serde_json::Value {
    let mut set = |pointer: &str, keyword: &str, value: u64| {
        if let Some(schema) = doc
            .pointer_mut(pointer)
            .and_then(serde_json::Value::as_object_mut)
        {
            schema.insert(keyword.to_owned(), value.into());
        }
    };
    set(
        "/components/schemas/CreateUpload/properties/size",
        "maximum",
        config.media_max_file_bytes,
    );
    set(
        "/components/schemas/SignRequest/properties/ttl",
        "maximum",
        config.media_signed_url_max_ttl.as_secs(),
    );
    doc
}

/// The error answers any operation may give, documented on each: 400 (malformed input), 401
/// (a secured operation without a valid token), 413 (input past a limit).
fn common_answers(path: &str, operation: &mut serde_json::Value) {
    let secured = operation.get("security").is_some();
    // Any input can be over a limit: a body past the size limit, a field or parameter past
    // its length (`too_large`, as docs/protocol.md's error table says).
    let has_input = operation.get("requestBody").is_some()
        || operation
            .get("parameters")
            .and_then(serde_json::Value::as_array)
            .is_some_and(|parameters| !parameters.is_empty());
    let Some(responses) = operation
        .get_mut("responses")
        .and_then(serde_json::Value::as_object_mut)
    else {
        return;
    };
    let error = serde_json::json!({
        "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}
    });
    let mut add = |status: &str| {
        responses.entry(status.to_owned()).or_insert_with(
            || serde_json::json!({"description": status_description(status), "content": error}),
        );
    };
    if path.starts_with("/v1/") {
        add("400");
    }
    if secured {
        add("401");
    }
    if has_input {
        add("413");
    }
}

fn inline_integers(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            if map.get("$ref").and_then(serde_json::Value::as_str)
                == Some("#/components/schemas/i64")
            {
                map.remove("$ref");
                map.insert("type".to_owned(), "integer".into());
                map.insert("format".to_owned(), "int64".into());
            }
            map.values_mut().for_each(inline_integers);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(inline_integers),
        _ => {}
    }
}

/// `GET /v1/openapi.json`: `doc`, serialized once.
pub(super) fn serve(doc: &serde_json::Value) -> MethodRouter<crate::state::AppState> {
    // `Value`'s `Display` is its compact JSON (what `Json` would write), and cannot fail.
    let body = Bytes::from(doc.to_string());
    get(move || {
        let body = body.clone();
        async move { ([(header::CONTENT_TYPE, "application/json")], body) }
    })
}

/// `GET /v1/protocol.schema.json`: the JSON Schema of every WebSocket frame, derived from the
/// protocol crate's types. No auth (it is the same for everyone); it changes only with the
/// server's version, so caches may keep it for an hour.
pub async fn protocol_schema() -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/schema+json"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        Json(confab_protocol::schema::frames_schema()),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_unique_described_and_timestamps_are_integers() {
        let json = document();
        let text = json.to_string();
        assert!(!text.contains("schemas/i64"), "no schema named i64");
        let mut ids = std::collections::HashSet::new();
        for (path, item) in json["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("item") {
                let id = operation["operationId"].as_str().expect("operationId");
                assert!(ids.insert(id.to_owned()), "{method} {path}: duplicate {id}");
                for (status, response) in operation["responses"].as_object().expect("responses") {
                    assert!(
                        response["description"]
                            .as_str()
                            .is_some_and(|d| !d.is_empty()),
                        "{method} {path} {status}: no description"
                    );
                }
                for parameter in operation["parameters"].as_array().into_iter().flatten() {
                    if parameter["in"] == "path" {
                        let name = parameter["name"].as_str().expect("name");
                        assert!(path.contains(&format!("{{{name}}}")), "{path}: {name}");
                    }
                }
            }
        }
    }

    #[test]
    fn field_checks_and_configured_limits_are_schema_keywords() {
        let config = crate::config::Config::default();
        let json = served(&config);
        let schemas = &json["components"]["schemas"];
        let title = &schemas["CreateConversation"]["properties"]["title"];
        assert_eq!(title["maxLength"], 256, "{title}");
        assert_eq!(
            title["type"],
            serde_json::json!(["string", "null"]),
            "{title}"
        );
        assert!(
            names_hidden_characters(title["pattern"].as_str().expect("pattern")),
            "{title}"
        );
        assert_eq!(
            schemas["AddMember"]["properties"]["user"]["maxLength"], 128,
            "user ids"
        );
        assert_eq!(
            schemas["CreateUpload"]["properties"]["size"]["maximum"],
            config.media_max_file_bytes
        );
        assert_eq!(
            schemas["SignRequest"]["properties"]["ttl"]["maximum"],
            config.media_signed_url_max_ttl.as_secs()
        );
        assert_eq!(schemas["Attachment"]["additionalProperties"], false);
        // Every operation with input may answer 413, every secured one 401.
        for (path, item) in json["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("item") {
                let responses = &operation["responses"];
                if operation.get("security").is_some() {
                    assert!(responses.get("401").is_some(), "{method} {path}: no 401");
                }
                if operation.get("requestBody").is_some() {
                    assert!(responses.get("413").is_some(), "{method} {path}: no 413");
                }
            }
        }
    }

    /// The title pattern names the characters [`crate::validate`] refuses (no regex engine
    /// here: the pattern's character class must name the controls and the bidi overrides).
    fn names_hidden_characters(pattern: &str) -> bool {
        pattern.starts_with("^[^\\x00-\\x1f\\x7f-\\x9f") && pattern.contains("\\u202a-\\u202e")
    }

    /// The input rules name routes and parameters by hand: each must still find its own.
    #[test]
    fn every_parameter_rule_applies() {
        let json = document();
        for (path, name, schema) in rules::query_rules() {
            let parameters = json["paths"][path]
                .as_object()
                .into_iter()
                .flat_map(|item| item.values())
                .flat_map(|operation| operation["parameters"].as_array().into_iter().flatten());
            let found: Vec<_> = parameters
                .filter(|parameter| parameter["name"] == name && parameter["in"] != "path")
                .collect();
            assert!(!found.is_empty(), "{path}: no parameter {name}");
            assert!(found.iter().all(|p| p["schema"] == schema), "{path} {name}");
        }
    }

    /// Whether every route is documented is no list's business: the routes and the document's
    /// paths come from the same `routes!` calls (`super::api`), and
    /// `http::tests::the_routes_are_the_documented_operations` checks that nothing adds to
    /// one side only. Here: the bodies the docs point to have schemas.
    #[test]
    fn the_bodies_the_docs_name_have_schemas() {
        let json = document();
        // docs/protocol.md points here for the REST bodies' schemas.
        for body in [
            "Conversation",
            "ConversationSummary",
            "Member",
            "Message",
            "SendResult",
        ] {
            assert!(
                json["components"]["schemas"].get(body).is_some(),
                "{body} has no schema"
            );
        }
        assert!(json["components"]["schemas"].get("ErrorBody").is_some());
        assert!(json["components"]["schemas"].get("PersonHits").is_some());
        assert!(
            json["components"]["schemas"]
                .get("DevTokenRequest")
                .is_some()
        );
    }
}
