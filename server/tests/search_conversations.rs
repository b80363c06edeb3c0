//! Conversation search (`GET /v1/search/conversations`) and grouped search (`GET /v1/search`):
//! only the caller's conversations, right after a removal too, never another tenant's; by
//! title, by a member's name or id, with a typo; bad input refused.

mod common;

use std::time::Duration;

use common::Server;
use serde_json::{Value, json};

/// A one-hour token for `user` of `tenant` with display name `name`.
fn named(user: &str, tenant: &str, name: &str) -> String {
    common::keys()
        .mint(user, tenant, Some(name), Duration::from_secs(3600))
        .expect("mint")
}

async fn search(server: &Server, path: &str, bearer: &str, q: &str) -> (u16, Value) {
    let response = server
        .client()
        .get(format!(
            "{}{path}?q={}",
            server.base(),
            url::form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>()
        ))
        .bearer_auth(bearer)
        .send()
        .await
        .expect("search");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json"))
}

fn ids(found: &Value) -> Vec<String> {
    found["conversations"]
        .as_array()
        .expect("conversations")
        .iter()
        .map(|hit| hit["id"].as_str().expect("id").to_owned())
        .collect()
}

async fn group(server: &Server, owner: &str, title: &str, members: &[&str]) -> String {
    let body = json!({"kind": "group", "title": title, "members": members});
    let (status, created) = server
        .post("/v1/conversations", &common::token(owner), body)
        .await;
    assert_eq!(status, 201, "{created}");
    created["id"].as_str().expect("id").to_owned()
}

#[tokio::test]
async fn conversations_are_found_by_title_and_member_names_only_by_their_members() {
    let server = Server::in_process(&[]).await;
    let alice = named("alice", common::TENANT, "Alice Liddell");
    // Bob's name reaches the directory when he calls the API.
    let bob = named("bob", common::TENANT, "Robert Paulson");
    assert_eq!(server.get("/v1/conversations", &bob).await.0, 200);

    let quarterly = group(&server, "alice", "Quarterly planning", &["bob"]).await;
    let lunch = group(&server, "alice", "Lunch club", &["carol"]).await;
    let direct = {
        let body = json!({"kind": "direct", "members": ["bob"]});
        let (_, created) = server.post("/v1/conversations", &alice, body).await;
        created["id"].as_str().expect("id").to_owned()
    };
    let not_mine = group(&server, "carol", "Quarterly secrets", &["dave"]).await;

    // By a title word, a prefix, a typo.
    for q in ["quarterly", "quart", "quartely"] {
        let (status, found) = search(&server, "/v1/search/conversations", &alice, q).await;
        assert_eq!(status, 200, "{found}");
        assert_eq!(ids(&found), std::slice::from_ref(&quarterly), "q={q}");
        assert_eq!(found["conversations"][0]["matched"], "title");
    }
    // By a member's display name or id: the group and the direct conversation with Bob.
    let (_, found) = search(&server, "/v1/search/conversations", &alice, "robert").await;
    let mut by_name = ids(&found);
    by_name.sort();
    let mut expected = vec![quarterly.clone(), direct.clone()];
    expected.sort();
    assert_eq!(by_name, expected);
    assert!(
        found["conversations"]
            .as_array()
            .expect("hits")
            .iter()
            .all(|hit| hit["matched"] == "member" && hit["member"] == "bob")
    );
    let (_, found) = search(&server, "/v1/search/conversations", &alice, "carol").await;
    assert_eq!(ids(&found), std::slice::from_ref(&lunch));
    // Carol's own conversation is never Alice's hit, nor anything of another tenant.
    assert!(
        !ids(
            &search(&server, "/v1/search/conversations", &alice, "secrets")
                .await
                .1
        )
        .contains(&not_mine)
    );
    let other = named("alice", "globex", "Alice Elsewhere");
    let (_, found) = search(&server, "/v1/search/conversations", &other, "quarterly").await;
    assert!(ids(&found).is_empty(), "{found}");

    // Removed: Bob stops finding the group at once.
    let bob_token = common::token("bob");
    let (_, found) = search(&server, "/v1/search/conversations", &bob_token, "quarterly").await;
    assert_eq!(ids(&found), std::slice::from_ref(&quarterly));
    let (status, _) = server
        .delete(
            &format!("/v1/conversations/{quarterly}/members/bob"),
            &common::token("alice"),
        )
        .await;
    assert!((200..300).contains(&status), "remove bob: {status}");
    let (_, found) = search(&server, "/v1/search/conversations", &bob_token, "quarterly").await;
    assert!(ids(&found).is_empty(), "{found}");

    // Bad input.
    for q in ["", "   "] {
        let (status, body) = search(&server, "/v1/search/conversations", &alice, q).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("invalid"))
        );
    }
}

#[tokio::test]
async fn the_grouped_search_answers_messages_conversations_and_people_at_once() {
    let server = Server::in_process(&["--search-commit-interval", "100ms"]).await;
    let alice = named("alice", common::TENANT, "Alice Liddell");
    let conversation = group(&server, "alice", "Planning", &["bob"]).await;
    let sent = server
        .rest_send("alice", &conversation, "m1", "the planning meeting moved")
        .await;
    let message = sent["id"].as_str().expect("id").to_owned();
    assert_eq!(server.get("/v1/conversations", &alice).await.0, 200);

    let mut found = Value::Null;
    for _ in 0..50 {
        found = search(&server, "/v1/search", &alice, "planning").await.1;
        if found["messages"]["hits"]
            .as_array()
            .is_some_and(|h| !h.is_empty())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        found["messages"]["hits"][0]["id"],
        message.as_str(),
        "{found}"
    );
    assert_eq!(
        found["conversations"][0]["id"],
        conversation.as_str(),
        "{found}"
    );
    let (_, people) = search(&server, "/v1/search", &alice, "alice").await;
    assert_eq!(people["users"][0]["id"], "alice", "{people}");
    // Another tenant sees nothing of it.
    let other = named("eve", "globex", "Eve");
    let (status, theirs) = search(&server, "/v1/search", &other, "planning").await;
    assert_eq!(status, 200);
    assert!(
        theirs["messages"]["hits"]
            .as_array()
            .expect("hits")
            .is_empty()
    );
    assert!(theirs["conversations"].as_array().expect("hits").is_empty());
}
