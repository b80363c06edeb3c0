//! HTTP conventions clients and browsers rely on: `WWW-Authenticate` on 401, `Location` on 201,
//! `nosniff` on every API answer, the JSON error shape for a plain GET of the WebSocket route,
//! CORS for the configured origins only (and the same list for WebSocket origins), and logs
//! without colour codes when they do not go to a terminal.

mod common;

use common::{Server, token};
use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const APP: &str = "http://app.test:3000";

async fn preflight(server: &Server, origin: &str) -> reqwest::Response {
    server
        .client()
        .request(
            Method::OPTIONS,
            format!("{}/v1/conversations", server.base()),
        )
        .header("origin", origin)
        .header("access-control-request-method", "PATCH")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .expect("preflight")
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn answers_carry_auth_location_and_nosniff_headers() {
    let server = Server::start().await;
    let http = server.client();
    let unauthorized = http
        .get(format!("{}/v1/conversations", server.base()))
        .send()
        .await
        .expect("get");
    assert_eq!(unauthorized.status(), 401);
    assert_eq!(
        header(&unauthorized, "www-authenticate"),
        Some("Bearer realm=\"confab\"")
    );
    assert_eq!(
        header(&unauthorized, "x-content-type-options"),
        Some("nosniff")
    );

    let created = http
        .post(format!("{}/v1/conversations", server.base()))
        .bearer_auth(token("ann"))
        .json(&json!({"kind": "group", "title": "Plans", "members": ["bob"]}))
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), 201);
    assert_eq!(header(&created, "x-content-type-options"), Some("nosniff"));
    let location = header(&created, "location").expect("Location").to_owned();
    let body: Value = created.json().await.expect("json");
    let id = body["id"].as_str().expect("id");
    assert_eq!(location, format!("/v1/conversations/{id}"));
    let (status, fetched) = server.get(&location, &token("bob")).await;
    assert_eq!((status, fetched["id"].as_str()), (200, Some(id)));

    let sent = http
        .post(format!("{}/v1/conversations/{id}/messages", server.base()))
        .bearer_auth(token("ann"))
        .json(&json!({"client_msg_id": "c-1", "body": "hello"}))
        .send()
        .await
        .expect("send");
    assert_eq!(sent.status(), 201);
    let location = header(&sent, "location").expect("Location").to_owned();
    let (status, message) = server.get(&location, &token("bob")).await;
    assert_eq!((status, message["body"].as_str()), (200, Some("hello")));
}

#[tokio::test]
async fn a_plain_get_of_the_websocket_route_gets_the_error_shape() {
    let server = Server::start().await;
    let (status, body) = server
        .request(Method::GET, "/v1/ws", Some(&token("ann")), None)
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("WebSocket upgrade")),
        "{body}"
    );
    assert!(
        !server.log().contains('\u{1b}'),
        "logs written to a pipe carry no ANSI colour codes"
    );
}

#[tokio::test]
async fn without_configured_origins_no_cross_origin_call_is_allowed() {
    let server = Server::start().await;
    let answer = preflight(&server, APP).await;
    assert_eq!(header(&answer, "access-control-allow-origin"), None);
    let mut request = server.ws_url().into_client_request().expect("request");
    request
        .headers_mut()
        .insert("origin", APP.parse().expect("origin"));
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", token("ann")).parse().expect("auth"),
    );
    let mut client = common::WsClient::open(request, None)
        .await
        .expect("no list: origins are not checked");
    client.expect_welcome().await;
}

#[tokio::test]
async fn configured_origins_get_cors_and_others_are_refused() {
    let server =
        Server::start_with(&["--cors-origins", "http://App.test:3000,https://x.test"]).await;
    let allowed = preflight(&server, APP).await;
    assert!(allowed.status().is_success(), "{}", allowed.status());
    assert_eq!(header(&allowed, "access-control-allow-origin"), Some(APP));
    let methods = header(&allowed, "access-control-allow-methods").unwrap_or_default();
    assert!(methods.contains("PATCH"), "{methods}");
    let headers = header(&allowed, "access-control-allow-headers").unwrap_or_default();
    assert!(
        headers.to_lowercase().contains("authorization"),
        "{headers}"
    );

    let refused = preflight(&server, "http://evil.test").await;
    assert_eq!(header(&refused, "access-control-allow-origin"), None);

    let read = server
        .client()
        .get(format!("{}/v1/conversations", server.base()))
        .bearer_auth(token("ann"))
        .header("origin", APP)
        .send()
        .await
        .expect("get");
    assert_eq!(header(&read, "access-control-allow-origin"), Some(APP));
    let exposed = header(&read, "access-control-expose-headers").unwrap_or_default();
    assert!(exposed.to_lowercase().contains("retry-after"), "{exposed}");

    let upgrade = |origin: Option<&str>| {
        let mut request = server.ws_url().into_client_request().expect("request");
        if let Some(origin) = origin {
            request
                .headers_mut()
                .insert("origin", origin.parse().expect("origin"));
        }
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {}", token("ann")).parse().expect("auth"),
        );
        request
    };
    let (status, body) = server.ws_refused(upgrade(Some("http://evil.test"))).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    for origin in [Some(APP), None] {
        let mut client = common::WsClient::open(upgrade(origin), None)
            .await
            .expect("a listed origin, or none (not a browser), may connect");
        client.expect_welcome().await;
    }
}
