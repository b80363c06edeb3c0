//! Abuse limits (issue 15): per-user budgets for reactions, edits, deletes, joins and leaves
//! and REST requests; caps on reactions per message and per person; a cap on each user's open
//! connections. Each refusal is `rate_limited` (with `retry_after_ms` / `Retry-After`) or
//! `too_large`, and leaves the connection and the data as they were.

mod common;

use std::time::Duration;

use common::Server;
use confab_protocol::{Command, ErrorCode, ServerFrame};
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A message of alice in a group of alice, bob and carol; returns (conversation, message).
async fn a_message(server: &Server) -> (String, String) {
    let conversation = server.create_group("alice", &["bob", "carol"]).await;
    let sent = server
        .rest_send("alice", &conversation, "m1", "react to me")
        .await;
    let id = sent["id"].as_str().expect("id").to_owned();
    (conversation, id)
}

fn react(message: &str, emoji: &str) -> Command {
    Command::React {
        message: message.to_owned(),
        emoji: emoji.to_owned(),
    }
}

fn retry_after_ms(frame: &ServerFrame) -> u64 {
    match frame {
        ServerFrame::Error {
            code: ErrorCode::RateLimited,
            retry_after_ms: Some(ms),
            ..
        } => *ms,
        other => panic!("expected rate_limited with retry_after_ms, got {other:?}"),
    }
}

#[tokio::test]
async fn reactions_edits_and_deletes_have_per_user_budgets() {
    let server = Server::in_process(&[
        "--reaction-rate-per-minute",
        "4",
        "--edit-rate-per-minute",
        "2",
        "--delete-rate-per-minute",
        "1",
    ])
    .await;
    let (_, message) = a_message(&server).await;
    let mut alice = server.ws("alice").await;
    for emoji in ["👍", "🎉", "❤️", "😀"] {
        alice.expect_ok(react(&message, emoji)).await;
    }
    let refused = alice.request(react(&message, "🙃")).await;
    assert!(
        (1..=15_000).contains(&retry_after_ms(&refused)),
        "{refused:?}"
    );
    // The budget is per user: bob still reacts.
    let mut bob = server.ws("bob").await;
    bob.expect_ok(react(&message, "🙃")).await;

    let edit = |body: &str| Command::Edit {
        message: message.clone(),
        body: body.to_owned(),
    };
    alice.expect_ok(edit("one")).await;
    alice.expect_ok(edit("two")).await;
    retry_after_ms(&alice.request(edit("three")).await);
    // REST shares the budget: 429 with Retry-After.
    let response = server
        .client()
        .patch(format!("{}/v1/messages/{message}", server.base()))
        .bearer_auth(common::token("alice"))
        .json(&json!({"body": "four"}))
        .send()
        .await
        .expect("patch");
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));

    let second = server
        .rest_send("alice", &a_message(&server).await.0, "m2", "x")
        .await;
    alice
        .expect_ok(Command::Delete {
            message: second["id"].as_str().expect("id").to_owned(),
        })
        .await;
    let (_, third) = a_message(&server).await;
    retry_after_ms(&alice.request(Command::Delete { message: third }).await);
    // Nothing refused was applied: the message keeps the last allowed edit.
    let (status, current) = server
        .get(&format!("/v1/messages/{message}"), &common::token("alice"))
        .await;
    assert_eq!((status, current["body"].as_str()), (200, Some("two")));
}

#[tokio::test]
async fn a_message_carries_a_bounded_number_of_reactions() {
    let server = Server::in_process(&[
        "--max-reactions-per-user",
        "2",
        "--max-reactions-per-message",
        "3",
    ])
    .await;
    let (_, message) = a_message(&server).await;
    let mut alice = server.ws("alice").await;
    alice.expect_ok(react(&message, "👍")).await;
    alice.expect_ok(react(&message, "🎉")).await;
    alice
        .expect_error(react(&message, "❤️"), ErrorCode::TooLarge)
        .await;
    // Adding one already there is no new reaction: still fine.
    assert_eq!(alice.expect_ok(react(&message, "👍")).await, None);
    let mut bob = server.ws("bob").await;
    bob.expect_ok(react(&message, "👍")).await;
    let mut carol = server.ws("carol").await;
    let refused = carol
        .expect_error(react(&message, "👍"), ErrorCode::TooLarge)
        .await;
    assert!(refused.contains("most reactions"), "{refused}");
    // Taking one away makes room again.
    bob.expect_ok(Command::Unreact {
        message: message.clone(),
        emoji: "👍".into(),
    })
    .await;
    carol.expect_ok(react(&message, "👍")).await;
}

#[tokio::test]
async fn join_and_leave_churn_is_bounded_and_so_are_the_presence_frames() {
    const BUDGET: usize = 10;
    let server = Server::in_process(&["--join-rate-per-minute", "10"]).await;
    let conversation = server.create_group("alice", &["bob"]).await;
    let mut observer = server.ws_presence("bob").await;
    observer.join(&conversation).await;
    observer.clear_buffer();

    let mut churner = server.ws("alice").await;
    let (mut allowed, mut refused) = (0, 0);
    for round in 0..20 {
        let command = if round % 2 == 0 {
            Command::Join {
                conversation: conversation.clone(),
                since: None,
            }
        } else {
            Command::Leave {
                conversation: conversation.clone(),
            }
        };
        match churner.request(command).await {
            ServerFrame::Joined { .. } | ServerFrame::Left { .. } => allowed += 1,
            frame => {
                retry_after_ms(&frame);
                refused += 1;
            }
        }
    }
    // Leaving a conversation one has not joined (after a refused join) costs nothing.
    assert!(
        (BUDGET..=BUDGET + 5).contains(&allowed),
        "allowed {allowed}"
    );
    assert!(refused >= 5, "refused {refused}");
    // Joining a conversation already joined is free and answers as before.
    let mut presence = 0;
    while let Some(frame) = observer.try_recv(Duration::from_millis(300)).await {
        if matches!(frame, ServerFrame::Presence { .. }) {
            presence += 1;
        }
    }
    assert!(presence <= BUDGET, "{presence} presence frames");
}

#[tokio::test]
async fn a_user_has_a_bounded_number_of_connections() {
    let server = Server::in_process(&["--max-connections-per-user", "2"]).await;
    let first = server.ws("alice").await;
    let _second = server.ws("alice").await;
    // A token on the upgrade: HTTP 429 before the upgrade.
    let response = server
        .client()
        .get(format!("{}/v1/ws", server.base()))
        .bearer_auth(common::token("alice"))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .expect("upgrade request");
    assert_eq!(response.status(), 429);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "rate_limited");
    // An `auth` frame: the error, then close 1008.
    let mut third = server.ws_anonymous().await;
    third
        .send_command(Command::Auth {
            token: common::token("alice"),
        })
        .await;
    let closed = third.expect_close(Duration::from_secs(5)).await;
    assert_eq!(closed.code, Some(1008), "{:?}", closed.frames);
    // Others are not affected, and a closed connection frees its place.
    let _bob = server.ws("bob").await;
    first.close().await;
    let mut again = None;
    for _ in 0..50 {
        let url = format!("{}?token={}", server.ws_url(), common::token("alice"));
        if let Ok(client) =
            common::WsClient::open(url.into_client_request().expect("url"), None).await
        {
            again = Some(client);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    again
        .expect("a place again after a close")
        .expect_welcome()
        .await;
}

#[tokio::test]
async fn rest_requests_have_a_per_user_budget() {
    let server = Server::in_process(&["--rest-rate-per-minute", "5"]).await;
    let token = common::token("alice");
    for _ in 0..5 {
        assert_eq!(server.get("/v1/conversations", &token).await.0, 200);
    }
    let response = server
        .client()
        .get(format!("{}/v1/conversations", server.base()))
        .bearer_auth(&token)
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), 429);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=12).contains(&retry), "Retry-After {retry}");
    assert_eq!(
        server
            .get("/v1/conversations", &common::token("bob"))
            .await
            .0,
        200
    );
}
