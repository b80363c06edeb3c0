//! People search over real HTTP: the directory is filled by connecting or calling the API,
//! found by name prefix, id or a typo, only within the caller's tenant; bad input is refused.

mod common;

use std::time::{Duration, Instant};

use common::{Server, assert_rest_error, keys, token};
use confab_protocol::ErrorCode;
use serde_json::Value;

/// A one-hour token for `user` of `tenant` with display name `name`.
fn named(user: &str, tenant: &str, name: &str) -> String {
    keys()
        .mint(user, tenant, Some(name), Duration::from_secs(3600))
        .expect("mint token")
}

/// `GET /v1/search/users` with `params`, as `bearer`.
async fn users(server: &Server, bearer: &str, params: &[(&str, &str)]) -> (u16, Value) {
    let url = url::Url::parse_with_params(&format!("{}/v1/search/users", server.base()), params)
        .expect("url");
    let response = server
        .client()
        .get(url)
        .bearer_auth(bearer)
        .send()
        .await
        .expect("search users");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json"))
}

/// The ids found for `q` by `bearer`, polling until `expected` (the directory is written in
/// the background) or 2 s have passed.
async fn ids_until(server: &Server, bearer: &str, q: &str, expected: &[&str]) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let (status, body) = users(server, bearer, &[("q", q)]).await;
        assert_eq!(status, 200, "{body}");
        let ids: Vec<String> = body["users"]
            .as_array()
            .expect("users")
            .iter()
            .map(|hit| hit["id"].as_str().expect("id").to_owned())
            .collect();
        if ids == expected || Instant::now() > deadline {
            return ids;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_are_found_by_name_after_they_connect_or_call_the_api_in_their_tenant() {
    let server = Server::start().await;
    let alice = named("u-alice", "acme", "Alice Liddell");
    let _socket = server
        .ws_with_token(&named("u-alicia", "acme", "Alicia Keys"))
        .await;
    let (status, _) = server.get("/v1/conversations", &alice).await;
    assert_eq!(status, 200);
    let (status, _) = server
        .get("/v1/conversations", &named("u-alina", "globex", "Alina"))
        .await;
    assert_eq!(status, 200);

    assert_eq!(
        ids_until(&server, &alice, "ali", &["u-alice", "u-alicia"])
            .await
            .len(),
        2,
        "a prefix finds both of acme's, not globex's Alina"
    );
    assert_eq!(
        ids_until(&server, &alice, "liddel", &["u-alice"]).await,
        ["u-alice"]
    );
    assert_eq!(
        ids_until(&server, &alice, "Alise", &["u-alice"]).await,
        ["u-alice"]
    );
    assert_eq!(
        ids_until(&server, &alice, "u-alicia", &["u-alicia"]).await,
        ["u-alicia"]
    );
    let globex = named("u-gus", "globex", "Gus");
    assert_eq!(
        ids_until(&server, &globex, "ali", &["u-alina"]).await,
        ["u-alina"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_search_refuses_bad_input() {
    let server = Server::start().await;
    let bearer = token("alice");
    for params in [
        vec![("q", "")],
        vec![("q", "   ")],
        vec![("q", "ali"), ("limit", "0")],
        vec![("q", "ali"), ("limit", "101")],
        vec![("q", "ali"), ("color", "red")],
    ] {
        let answer = users(&server, &bearer, &params).await;
        assert_rest_error(&answer, 400, ErrorCode::Invalid);
    }
    let (status, _) = users(&server, "not-a-token", &[("q", "ali")]).await;
    assert_eq!(status, 401);
}
