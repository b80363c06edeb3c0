//! Tokens from an identity provider: the server verifies them with the keys published at a
//! JWKS URL (a local HTTP server here), chosen by `kid`, with each key's own algorithm; a key
//! rotation is picked up on the first token that names the new key; refetches are bounded; no
//! keys yet means 503, not 401.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use common::{Server, UNSET};
use confab_server::auth::Claims;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

const ISSUER: &str = "https://idp.example";
const AUDIENCE: &str = "confab";

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/jwks/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The public key `name` as a JWK.
fn jwk(name: &str) -> Value {
    serde_json::from_str(&fixture(&format!("{name}.jwk.json"))).expect("a JWK")
}

/// What the identity provider serves: a key set, or an error status.
#[derive(Clone, Default)]
struct Provider {
    document: Arc<Mutex<Option<Value>>>,
    fetches: Arc<AtomicUsize>,
}

impl Provider {
    fn publish(&self, names: &[&str]) {
        let keys: Vec<Value> = names.iter().map(|name| jwk(name)).collect();
        *self.document.lock().expect("lock") = Some(json!({ "keys": keys }));
    }

    fn fail(&self) {
        *self.document.lock().expect("lock") = None;
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    /// Serves `/jwks` on an ephemeral loopback port; returns its URL.
    async fn serve(&self) -> String {
        async fn jwks(State(provider): State<Provider>) -> axum::response::Response {
            provider.fetches.fetch_add(1, Ordering::SeqCst);
            let document = provider.document.lock().expect("lock").clone();
            match document {
                Some(document) => axum::Json(document).into_response(),
                None => StatusCode::SERVICE_UNAVAILABLE.into_response(),
            }
        }
        let app = axum::Router::new()
            .route("/jwks", axum::routing::get(jwks))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/jwks")
    }
}

/// A one-hour token for `user` signed with key `signer` (an ES256 PEM fixture), naming `kid`.
fn token(signer: &str, kid: Option<&str>, user: &str) -> String {
    let now = jsonwebtoken::get_current_timestamp();
    let claims = Claims {
        iss: Some(ISSUER.to_owned()),
        aud: Some(AUDIENCE.to_owned()),
        ..Claims::new(user, common::TENANT, now + 3600)
    };
    let mut header = Header::new(Algorithm::ES256);
    header.kid = kid.map(str::to_owned);
    let key =
        EncodingKey::from_ec_pem(fixture(&format!("{signer}.pem")).as_bytes()).expect("an EC key");
    jsonwebtoken::encode(&header, &claims, &key).expect("sign")
}

async fn server(url: &str) -> Server {
    Server::start_with(&[
        "--jwt-secret",
        UNSET,
        "--jwt-jwks-url",
        url,
        "--jwt-issuer",
        ISSUER,
        "--jwt-audience",
        AUDIENCE,
    ])
    .await
}

async fn status(server: &Server, token: &str) -> (u16, Value) {
    server.get("/v1/conversations", token).await
}

#[tokio::test]
async fn tokens_are_verified_with_the_published_key_their_kid_names() {
    let provider = Provider::default();
    provider.publish(&["key1"]);
    let server = server(&provider.serve().await).await;

    let good = token("key1", Some("key1"), "alice");
    assert_eq!(status(&server, &good).await.0, 200);
    server.ws_with_token(&good).await.close().await;
    // A single key in the set also verifies a token that names none.
    assert_eq!(status(&server, &token("key1", None, "alice")).await.0, 200);

    // Signed by a key that is not published, under a published kid.
    let (code, body) = status(&server, &token("other", Some("key1"), "mallory")).await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    // The key's algorithm only: HS256 "signed" with the public key's JSON, and `none`.
    let claims = Claims {
        iss: Some(ISSUER.to_owned()),
        aud: Some(AUDIENCE.to_owned()),
        ..Claims::new(
            "mallory",
            common::TENANT,
            jsonwebtoken::get_current_timestamp() + 60,
        )
    };
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some("key1".to_owned());
    let confused = jsonwebtoken::encode(
        &hs,
        &claims,
        &EncodingKey::from_secret(jwk("key1").to_string().as_bytes()).expect("key"),
    )
    .expect("sign");
    assert_eq!(status(&server, &confused).await.0, 401);
    // {"alg":"none","kid":"key1"} with valid claims and no signature.
    let unsigned = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIiwia2lkIjoia2V5MSJ9.eyJzdWIiOiJtYWxsb3J5IiwidGlkIjoiYWNtZSIsImV4cCI6OTk5OTk5OTk5OSwiaXNzIjoiaHR0cHM6Ly9pZHAuZXhhbXBsZSIsImF1ZCI6ImNvbmZhYiJ9.";
    assert_eq!(status(&server, unsigned).await.0, 401);
    // The issuer and audience are still checked.
    let now = jsonwebtoken::get_current_timestamp();
    let foreign = Claims {
        iss: Some("https://elsewhere".to_owned()),
        aud: Some(AUDIENCE.to_owned()),
        ..Claims::new("alice", common::TENANT, now + 60)
    };
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("key1".to_owned());
    let key = EncodingKey::from_ec_pem(fixture("key1.pem").as_bytes()).expect("key");
    let foreign = jsonwebtoken::encode(&header, &foreign, &key).expect("sign");
    assert_eq!(status(&server, &foreign).await.0, 401);
}

#[tokio::test]
async fn a_rotated_key_is_fetched_on_first_use_and_refetches_are_bounded() {
    let provider = Provider::default();
    provider.publish(&["key1"]);
    let server = server(&provider.serve().await).await;
    assert_eq!(
        status(&server, &token("key1", Some("key1"), "alice"))
            .await
            .0,
        200
    );
    let before = provider.fetches();

    // The provider rotates: key2 in, key1 out. The first token naming key2 has the set
    // fetched again, and verifies.
    provider.publish(&["key2"]);
    assert_eq!(
        status(&server, &token("key2", Some("key2"), "alice"))
            .await
            .0,
        200
    );
    assert_eq!(provider.fetches(), before + 1);
    // The set was replaced: key1 is gone.
    assert_eq!(
        status(&server, &token("key1", Some("key1"), "alice"))
            .await
            .0,
        401
    );

    // A flood of tokens naming unknown keys costs at most one fetch per 30 s.
    for n in 0..20 {
        let kid = format!("made-up-{n}");
        assert_eq!(
            status(&server, &token("other", Some(&kid), "mallory"))
                .await
                .0,
            401
        );
    }
    assert!(
        provider.fetches() <= before + 2,
        "{} fetches for 20 unknown kids",
        provider.fetches() - before
    );
}

#[tokio::test]
async fn without_keys_the_server_is_not_ready_and_answers_503() {
    let provider = Provider::default();
    provider.fail();
    let url = provider.serve().await;
    // In process: the harness's process start waits for `/ready`, which this server is not.
    let server = Server::in_process(&[
        "--jwt-secret",
        UNSET,
        "--jwt-jwks-url",
        &url,
        "--jwt-issuer",
        ISSUER,
        "--jwt-audience",
        AUDIENCE,
    ])
    .await;
    let good = token("key1", Some("key1"), "alice");
    let (code, body) = server.get("/ready", &good).await;
    assert_eq!(
        (code, body["status"].as_str()),
        (503, Some("token_keys_unavailable"))
    );
    let (code, body) = status(&server, &good).await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (503, Some("unavailable"))
    );

    // The provider comes back: the next token (a second later) loads the set.
    provider.publish(&["key1"]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(status(&server, &good).await.0, 200);
    assert_eq!(server.get("/ready", &good).await.0, 200);
}
