//! Completions over real HTTP: words of the caller's live messages (never of a deleted
//! message, of a conversation the caller is not in, or of another tenant), conversation titles
//! and people's names; bad input is refused.

mod common;

use std::time::{Duration, Instant};

use common::{Server, assert_rest_error, token, token_in};
use confab_protocol::ErrorCode;
use serde_json::Value;

/// `GET /v1/search/suggestions` with `params`, as `bearer`.
async fn suggest(server: &Server, bearer: &str, params: &[(&str, &str)]) -> (u16, Value) {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    server
        .get(&format!("/v1/search/suggestions?{query}"), bearer)
        .await
}

/// The (kind, text) suggestions of `prefix` for `bearer`.
async fn texts(server: &Server, bearer: &str, prefix: &str) -> Vec<(String, String)> {
    let (status, body) = suggest(server, bearer, &[("prefix", prefix)]).await;
    assert_eq!(status, 200, "{body}");
    body["suggestions"]
        .as_array()
        .expect("suggestions")
        .iter()
        .map(|s| {
            (
                s["kind"].as_str().expect("kind").to_owned(),
                s["text"].as_str().expect("text").to_owned(),
            )
        })
        .collect()
}

fn term(text: &str) -> (String, String) {
    ("term".to_owned(), text.to_owned())
}

/// Polls until `conversation` is searchable up to `seq` (a search with `wait_for`).
async fn indexed(server: &Server, user: &str, conversation: &str, seq: &Value) {
    let (status, body) = server
        .get(
            &format!("/v1/search/messages?q=x&wait_for={conversation}:{seq}"),
            &token(user),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn only_live_words_of_the_callers_conversations_and_tenant_are_suggested() {
    let server = Server::in_process(&[]).await;
    let shared = server.create_group("alice", &["bob"]).await;
    let private = server.create_group("alice", &["carol"]).await;
    server
        .rest_send("alice", &shared, "s1", "Marmalade marmots march")
        .await;
    let gone = server
        .rest_send("alice", &shared, "s2", "the marzipan recipe")
        .await;
    let planned = server
        .rest_send("alice", &private, "p1", "marshmallow plans")
        .await;
    let id = gone["id"].as_str().expect("id");
    let (status, _) = server
        .delete(&format!("/v1/messages/{id}"), &token("alice"))
        .await;
    assert_eq!(status, 200);
    let last = server.rest_send("alice", &shared, "s3", "marker").await;
    indexed(&server, "alice", &shared, &last["seq"]).await;
    indexed(&server, "alice", &private, &planned["seq"]).await;

    // Real words (not stems), each once; the deleted "marzipan" is not among them.
    let mut bob = texts(&server, &token("bob"), "MAR").await;
    bob.sort();
    assert_eq!(
        bob,
        [
            term("march"),
            term("marker"),
            term("marmalade"),
            term("marmots")
        ]
    );
    // Alice is in both conversations; the deleted word stays hidden from her too.
    let alice = texts(&server, &token("alice"), "mars").await;
    assert_eq!(alice, [term("marshmallow")]);
    assert!(texts(&server, &token("alice"), "marz").await.is_empty());
    // Bob is not in the private conversation; another tenant sees nothing.
    assert!(texts(&server, &token("bob"), "marsh").await.is_empty());
    assert!(
        texts(&server, &token_in("alice", "other-tenant"), "mar")
            .await
            .is_empty()
    );
    // Titles of the caller's conversations (the harness names them "test group").
    let titles = texts(&server, &token("carol"), "test").await;
    assert_eq!(
        titles,
        [("conversation".to_owned(), "test group".to_owned())]
    );
}

#[tokio::test]
async fn people_are_suggested_and_bad_input_is_refused() {
    let server = Server::in_process(&[]).await;
    let named = common::keys()
        .mint(
            "u-zed",
            "acme",
            Some("Zebulon Pike"),
            Duration::from_secs(3600),
        )
        .expect("mint");
    let (status, _) = server.get("/v1/conversations", &named).await;
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(2);
    let person = ("person".to_owned(), "Zebulon Pike".to_owned());
    loop {
        let found = texts(&server, &token_in("someone", "acme"), "pik").await;
        if found.contains(&person) {
            break;
        }
        assert!(Instant::now() < deadline, "{found:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !texts(&server, &token_in("someone", "elsewhere"), "pik")
            .await
            .contains(&person)
    );
    let bad = suggest(&server, &token("bob"), &[("prefix", "  ")]).await;
    assert_rest_error(&bad, 400, ErrorCode::Invalid);
    let bad = suggest(&server, &token("bob"), &[("prefix", "a"), ("limit", "0")]).await;
    assert_rest_error(&bad, 400, ErrorCode::Invalid);
    let unknown = suggest(&server, &token("bob"), &[("prefix", "a"), ("q", "a")]).await;
    assert_eq!(unknown.0, 400, "{}", unknown.1);
}

/// Completions have a budget of their own (a search box asks per keystroke): using it up
/// refuses no search, and using up the searches refuses no completion.
#[tokio::test]
async fn suggestions_and_searches_have_separate_budgets() {
    let server = Server::in_process(&[
        "--search-per-minute",
        "2",
        "--search-suggestions-per-minute",
        "3",
    ])
    .await;
    let alice = token("alice");
    for _ in 0..3 {
        let (status, body) = suggest(&server, &alice, &[("prefix", "ro")]).await;
        assert_eq!(status, 200, "{body}");
    }
    let refused = suggest(&server, &alice, &[("prefix", "ro")]).await;
    assert_rest_error(&refused, 429, ErrorCode::RateLimited);
    for _ in 0..2 {
        let (status, body) = server.get("/v1/search/messages?q=rocket", &alice).await;
        assert_eq!(status, 200, "searches are not refused: {body}");
    }
    let refused = server.get("/v1/search/messages?q=rocket", &alice).await;
    assert_rest_error(&refused, 429, ErrorCode::RateLimited);

    // And the other way round, for another user: searches used up first.
    let bob = token("bob");
    for _ in 0..2 {
        let (status, body) = server.get("/v1/search?q=rocket", &bob).await;
        assert_eq!(status, 200, "{body}");
    }
    let refused = server.get("/v1/search?q=rocket", &bob).await;
    assert_rest_error(&refused, 429, ErrorCode::RateLimited);
    let (status, body) = suggest(&server, &bob, &[("prefix", "ro")]).await;
    assert_eq!(status, 200, "completions are not refused: {body}");
}
