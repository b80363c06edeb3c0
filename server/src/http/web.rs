//! The browser client and its development sign-in.
//!
//! `web-demo/public/` and the client library it imports (`clients/js/src/`, served as
//! `/confab.js`) are embedded in the binary at compile time (`rust-embed`, in debug builds too)
//! and served at `/`: one route per file, so every other path still gets the JSON
//! `not_found`. Files carry an `ETag` and `Cache-Control: no-cache`: their names are not
//! versioned, so browsers revalidate and get a cheap 304 until the binary changes.
//!
//! `POST /v1/dev/token` turns a user name into a token signed with the generated development
//! key, so that the page works right after `confab serve`. It answers only when the server runs
//! with that generated key on a loopback address, and only to requests addressed to a loopback
//! host (a DNS-rebinding page cannot use it); with a configured key, or listening on another
//! address, it is indistinguishable from an unknown route.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use confab_protocol::ErrorBody;
use rust_embed::Embed;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiJson;
use crate::error::AppError;
use crate::state::AppState;
use crate::validate;

/// The files of the browser client.
#[derive(Embed)]
#[folder = "../web-demo/public/"]
struct Assets;

/// The client library (`clients/js/`'s source), which the pages import as `./confab.js`.
#[derive(Embed)]
#[folder = "../clients/js/src/"]
struct ClientLibrary;

/// Tenant of development tokens when the request names none.
pub const DEV_TENANT: &str = "dev";
/// Lifetime of development tokens.
const DEV_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);
/// Longest display name accepted by the development sign-in, in characters.
const MAX_NAME_LEN: usize = 128;

/// The page is self-contained: scripts, styles and sockets come from this origin only.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
    frame-ancestors 'none'; form-action 'self'";

/// The development sign-in, a documented REST route.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::default().routes(routes!(dev_token))
}

/// `GET /` and one `GET /<file>` per embedded file: the browser client, not part of the API,
/// so not in the OpenAPI document.
pub fn files() -> axum::Router<AppState> {
    let router = axum::Router::new().route(
        "/",
        get(|headers: HeaderMap| serve_asset("index.html", headers)),
    );
    let router = embedded_routes::<ClientLibrary>(router, "/", CONTENT_SECURITY_POLICY);
    embedded_routes::<Assets>(router, "/", CONTENT_SECURITY_POLICY)
}

/// `router` with one `GET <prefix><file>` per file of `E` (HTML pages under the policy `csp`).
pub(super) fn embedded_routes<E: Embed + 'static>(
    mut router: axum::Router<AppState>,
    prefix: &str,
    csp: &'static str,
) -> axum::Router<AppState> {
    for path in E::iter() {
        let route = format!("{prefix}{path}");
        router = router.route(
            &route,
            get(move |headers: HeaderMap| async move {
                serve_embedded(&path, E::get(&path), &headers, csp)
            }),
        );
    }
    router
}

async fn serve_asset(path: &str, headers: HeaderMap) -> Response {
    serve_embedded(path, Assets::get(path), &headers, CONTENT_SECURITY_POLICY)
}

/// An embedded file, `path` naming its type: with an `ETag` (a 304 when `If-None-Match`
/// names it), `Cache-Control: no-cache`, and on HTML pages the policy `csp` and no referrer.
pub(super) fn serve_embedded(
    path: &str,
    file: Option<rust_embed::EmbeddedFile>,
    headers: &HeaderMap,
    csp: &'static str,
) -> Response {
    let Some(file) = file else {
        return AppError::not_found("no such file").into_response();
    };
    let etag = etag(&file.metadata.sha256_hash());
    let mut response = if if_none_match(headers, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        // Embedded files are `'static`: served without a copy.
        let body = match file.data {
            Cow::Borrowed(bytes) => Bytes::from_static(bytes),
            Cow::Owned(bytes) => Bytes::from(bytes),
        };
        let mut response = body.into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(content_type(path)),
        );
        response
    };
    let out = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&etag) {
        out.insert(header::ETAG, value);
    }
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    out.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if path.ends_with(".html") {
        out.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(csp),
        );
        out.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    }
    response
}

/// A strong validator from the file's SHA-256 (96 bits of it are plenty here).
fn etag(hash: &[u8; 32]) -> String {
    let mut tag = String::with_capacity(26);
    tag.push('"');
    for byte in &hash[..12] {
        let _ = write!(tag, "{byte:02x}");
    }
    tag.push('"');
    tag
}

/// Whether the request's `If-None-Match` names `etag` (or `*`).
fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == etag || tag == "*")
}

fn content_type(path: &str) -> &'static str {
    let extension = path.rsplit_once('.').map_or("", |(_, ext)| ext);
    match extension {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "txt" | "md" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// `POST /v1/dev/token`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DevTokenRequest {
    /// User id (the token's `sub`).
    pub user: String,
    /// Display name (the token's `name`).
    #[serde(default)]
    pub name: Option<String>,
    /// Tenant id (the token's `tid`) [default: `dev`].
    #[serde(default)]
    pub tenant: Option<String>,
}

/// A development token.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DevToken {
    /// A JWT valid for 24 hours.
    pub token: String,
}

/// Whether the development sign-in exists: only with the generated development key and a
/// loopback listen address, never when a real key is configured.
fn dev_sign_in_enabled(state: &AppState) -> bool {
    state.keys.generated && state.config.listen.ip().is_loopback()
}

/// Headers a reverse proxy adds: a request carrying one came through a proxy, whose own
/// connection (from loopback) says nothing of the client's.
const FORWARDING_HEADERS: [&str; 6] = [
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
    "via",
];

/// Why a request may not use the development sign-in: it must come from a loopback peer,
/// addressed to a loopback host, not through a proxy, and not from a page of another origin.
fn dev_sign_in_refusal(
    peer: Option<std::net::SocketAddr>,
    headers: &HeaderMap,
) -> Option<&'static str> {
    if peer.is_some_and(|peer| !peer.ip().is_loopback()) {
        return Some("the development sign-in answers only connections from this machine");
    }
    if !addressed_to_loopback(headers) {
        return Some("the development sign-in answers only requests addressed to a loopback host");
    }
    if FORWARDING_HEADERS
        .iter()
        .any(|name| headers.contains_key(*name))
    {
        return Some("the development sign-in does not answer requests through a proxy");
    }
    let origin = headers
        .get(header::ORIGIN)
        .map(|o| o.to_str().unwrap_or(""));
    if origin.is_some_and(|origin| !loopback_origin(origin)) {
        return Some("the development sign-in answers only pages served from a loopback origin");
    }
    None
}

/// Whether `origin` (an `Origin` header) is `http(s)://` a loopback host.
fn loopback_origin(origin: &str) -> bool {
    let Ok(url) = url::Url::parse(origin) else {
        return false;
    };
    matches!(url.scheme(), "http" | "https")
        && match url.host() {
            Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        }
}

/// Whether the request was addressed to a loopback host (`localhost`, `127.x.y.z`, `[::1]`),
/// which a page on another origin cannot obtain by DNS rebinding.
fn addressed_to_loopback(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let host = match host.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _port)| name),
    };
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

fn optional_field(field: &str, value: Option<&str>, max: usize) -> Result<(), AppError> {
    let Some(value) = value else {
        return Ok(());
    };
    if value.trim().is_empty() {
        return Err(AppError::invalid(format!("`{field}` must not be blank")));
    }
    if value.chars().count() > max {
        return Err(AppError::too_large(format!(
            "`{field}` is longer than {max} characters"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(AppError::invalid(format!(
            "`{field}` must not contain control characters"
        )));
    }
    Ok(())
}

/// Development sign-in: a token for any user, signed with the generated development key.
/// Exists only when the server runs with that key on a loopback address (404 otherwise).
#[utoipa::path(post, path = "/v1/dev/token", tag = "dev",
    request_body = DevTokenRequest,
    responses(
        (status = 200, description = "a token valid for 24 hours", body = DevToken),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "a key is configured or the server is not on loopback", body = ErrorBody),
        (status = 413, body = ErrorBody)))]
pub async fn dev_token(
    State(state): State<AppState>,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    request: Result<ApiJson<DevTokenRequest>, AppError>,
) -> Result<Json<DevToken>, AppError> {
    // Checked before the body, so that a disabled endpoint looks exactly like no route at all.
    if !dev_sign_in_enabled(&state) {
        return Err(AppError::not_found("no such route"));
    }
    if let Some(refusal) = dev_sign_in_refusal(peer.map(|p| p.0.0), &headers) {
        return Err(AppError::forbidden(refusal));
    }
    let ApiJson(request) = request?;
    validate::user_id("user", &request.user)?;
    if request.user.chars().any(char::is_whitespace) {
        return Err(AppError::invalid("`user` must not contain whitespace"));
    }
    optional_field("name", request.name.as_deref(), MAX_NAME_LEN)?;
    if let Some(tenant) = &request.tenant {
        validate::user_id("tenant", tenant)?;
    }
    let tenant = request.tenant.as_deref().unwrap_or(DEV_TENANT);
    let token = state
        .keys
        .mint(
            &request.user,
            tenant,
            request.name.as_deref(),
            DEV_TOKEN_TTL,
        )
        .map_err(AppError::internal)?;
    tracing::debug!(user = %request.user, tenant, "minted a development token");
    Ok(Json(DevToken { token }))
}

#[cfg(test)]
pub(super) mod tests {
    use std::net::SocketAddr;
    use std::sync::Arc;

    use confab_protocol::ErrorCode;
    use confab_storage::sqlite::{SqliteOptions, SqliteStore};

    use super::*;
    use crate::auth::JwtKeys;
    use crate::config::{Config, JwtSource};
    use crate::hub::Hub;

    /// A state listening on `listen`, with the generated key or a configured secret.
    pub(in crate::http) fn app_state(
        dir: &std::path::Path,
        listen: &str,
        generated: bool,
    ) -> AppState {
        let listen: SocketAddr = listen.parse().expect("listen address");
        let jwt = if generated {
            JwtSource::Generated
        } else {
            JwtSource::Secret("a-configured-secret-of-at-least-32-bytes".into())
        };
        let config = Config {
            listen,
            data_dir: dir.to_owned(),
            jwt_secret: match &jwt {
                JwtSource::Secret(secret) => Some(secret.clone()),
                _ => None,
            },
            ..Config::default()
        };
        let keys = JwtKeys::load(&jwt, dir).expect("keys");
        assert_eq!(keys.generated, generated);
        let hub = Arc::new(Hub::new());
        let store = SqliteStore::open(
            &dir.join("confab.db"),
            hub.clone(),
            SqliteOptions::default(),
        )
        .expect("store");
        let search = crate::search::SearchService::for_config(&config).expect("search");
        let media = crate::media::MediaService::new(
            crate::media::open(&config).expect("media"),
            &config,
            &keys,
            None,
        );
        AppState::new(config, Arc::new(store), media, search, hub, keys, None)
    }

    fn host(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_str(value).expect("host"));
        headers
    }

    fn request(user: &str) -> Result<ApiJson<DevTokenRequest>, AppError> {
        Ok(ApiJson(DevTokenRequest {
            user: user.into(),
            name: Some("Alice".into()),
            tenant: None,
        }))
    }

    async fn call(
        state: &AppState,
        headers: HeaderMap,
        body: Result<ApiJson<DevTokenRequest>, AppError>,
    ) -> Result<String, AppError> {
        let peer: SocketAddr = "127.0.0.1:40000".parse().expect("peer");
        dev_token(
            State(state.clone()),
            Some(axum::Extension(axum::extract::ConnectInfo(peer))),
            headers,
            body,
        )
        .await
        .map(|Json(t)| t.token)
    }

    /// Behind a reverse proxy every request comes from loopback and says `Host: localhost`:
    /// the proxy's headers, a page of another origin, or a peer off this machine are refused.
    #[test]
    fn proxies_other_origins_and_remote_peers_are_refused() {
        let local: SocketAddr = "127.0.0.1:5000".parse().expect("peer");
        let remote: SocketAddr = "203.0.113.7:5000".parse().expect("peer");
        assert_eq!(
            dev_sign_in_refusal(Some(local), &host("localhost:8080")),
            None
        );
        assert!(dev_sign_in_refusal(Some(remote), &host("localhost:8080")).is_some());
        for (name, value) in [
            ("x-forwarded-for", "203.0.113.7"),
            ("forwarded", "for=203.0.113.7"),
            ("x-real-ip", "203.0.113.7"),
            ("x-forwarded-host", "chat.example.com"),
            ("via", "1.1 nginx"),
            ("origin", "https://evil.example"),
            ("origin", "null"),
        ] {
            let mut headers = host("localhost:8080");
            headers.insert(
                header::HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
            assert!(
                dev_sign_in_refusal(Some(local), &headers).is_some(),
                "{name}: {value}"
            );
        }
        for origin in [
            "http://localhost:8080",
            "http://127.0.0.1:3000",
            "http://[::1]",
        ] {
            let mut headers = host("localhost:8080");
            headers.insert(header::ORIGIN, HeaderValue::from_static(origin));
            assert_eq!(dev_sign_in_refusal(Some(local), &headers), None, "{origin}");
        }
    }

    #[tokio::test]
    async fn mints_with_the_generated_key_on_loopback() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = app_state(dir.path(), "127.0.0.1:8080", true);
        let token = call(&state, host("127.0.0.1:8080"), request("alice"))
            .await
            .expect("token");
        let user = state.keys.verify(&token).expect("verifies");
        assert_eq!(&*user.user, "alice");
        assert_eq!(&*user.tenant, DEV_TENANT);
        assert_eq!(user.name.as_deref(), Some("Alice"));

        let dir = tempfile::tempdir().expect("tempdir");
        let ipv6 = app_state(dir.path(), "[::1]:9000", true);
        assert!(
            call(&ipv6, host("localhost:9000"), request("bob"))
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn the_client_library_is_served_beside_the_page() {
        use http_body_util::BodyExt;
        use tower_service::Service;

        let dir = tempfile::tempdir().expect("tempdir");
        let mut app = files().with_state(app_state(dir.path(), "127.0.0.1:8080", true));
        for path in ["/confab.js", "/app.js"] {
            let request = axum::http::Request::get(path)
                .body(axum::body::Body::empty())
                .expect("request");
            let response = app.call(request).await.expect("infallible");
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            assert_eq!(
                response.headers()[header::CONTENT_TYPE],
                "text/javascript; charset=utf-8"
            );
            if path == "/confab.js" {
                let body = response.into_body().collect().await.expect("body");
                let text = String::from_utf8(body.to_bytes().to_vec()).expect("utf-8");
                assert!(
                    text.contains("export class ConfabClient"),
                    "clients/js/src/confab.js"
                );
            }
        }
    }

    #[tokio::test]
    async fn absent_with_a_configured_key_or_off_loopback() {
        let dir = tempfile::tempdir().expect("tempdir");
        let configured = app_state(dir.path(), "127.0.0.1:8080", false);
        let err = call(&configured, host("127.0.0.1:8080"), request("alice"))
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::NotFound);

        let dir = tempfile::tempdir().expect("tempdir");
        let public = app_state(dir.path(), "0.0.0.0:8080", true);
        let err = call(&public, host("127.0.0.1:8080"), request("alice"))
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::NotFound);

        // Disabled means disabled before the body is looked at: a bad body is still a 404.
        let bad_body = Err(AppError::invalid("malformed"));
        let err = call(&public, host("127.0.0.1:8080"), bad_body)
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::NotFound);
    }

    #[tokio::test]
    async fn refuses_other_hosts_and_bad_fields() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = app_state(dir.path(), "127.0.0.1:8080", true);
        let err = call(&state, host("evil.example:8080"), request("alice"))
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::Forbidden);
        assert_eq!(
            call(&state, HeaderMap::new(), request("alice"))
                .await
                .unwrap_err()
                .code,
            ErrorCode::Forbidden
        );

        for (user, code) in [
            ("", ErrorCode::Invalid),
            ("a b", ErrorCode::Invalid),
            ("a\nb", ErrorCode::Invalid),
            (&"x".repeat(129), ErrorCode::TooLarge),
        ] {
            let err = call(&state, host("localhost"), request(user))
                .await
                .unwrap_err();
            assert_eq!(err.code, code, "user {user:?}");
        }
        let blank_name = Ok(ApiJson(DevTokenRequest {
            user: "alice".into(),
            name: Some("  ".into()),
            tenant: None,
        }));
        assert_eq!(
            call(&state, host("localhost"), blank_name)
                .await
                .unwrap_err()
                .code,
            ErrorCode::Invalid
        );
        let bad_tenant = Ok(ApiJson(DevTokenRequest {
            user: "alice".into(),
            name: None,
            tenant: Some(String::new()),
        }));
        assert_eq!(
            call(&state, host("localhost"), bad_tenant)
                .await
                .unwrap_err()
                .code,
            ErrorCode::Invalid
        );
    }

    #[test]
    fn loopback_hosts() {
        for ok in [
            "localhost",
            "LOCALHOST:8080",
            "127.0.0.1",
            "127.0.0.1:80",
            "[::1]:8080",
        ] {
            assert!(addressed_to_loopback(&host(ok)), "{ok}");
        }
        for bad in [
            "example.com",
            "10.0.0.1:8080",
            "localhost.evil.com",
            "[2001:db8::1]:80",
        ] {
            assert!(!addressed_to_loopback(&host(bad)), "{bad}");
        }
    }

    #[tokio::test]
    async fn assets_have_types_and_revalidate() {
        let response = serve_asset("index.html", HeaderMap::new()).await;
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers();
        assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
        assert!(headers.contains_key(header::CONTENT_SECURITY_POLICY));
        let etag = headers[header::ETAG].to_str().expect("etag").to_owned();

        let mut conditional = HeaderMap::new();
        conditional.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&etag).expect("etag"),
        );
        let response = serve_asset("index.html", conditional).await;
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED);

        for (file, mime) in [
            ("app.js", "text/javascript; charset=utf-8"),
            ("style.css", "text/css; charset=utf-8"),
        ] {
            let response = serve_asset(file, HeaderMap::new()).await;
            assert_eq!(response.status(), StatusCode::OK, "{file}");
            assert_eq!(response.headers()[header::CONTENT_TYPE], mime);
        }
        assert_eq!(
            serve_asset("nope.js", HeaderMap::new()).await.status(),
            StatusCode::NOT_FOUND
        );
    }
}
