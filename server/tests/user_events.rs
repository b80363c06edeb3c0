//! The per-user event channel: every connection of a user gets `conversation_added`,
//! `conversation_removed`, `role_changed` and `read_moved` without joining anything; a
//! reconnecting client resumes with `user_resume` and gets exactly what it missed; a point the
//! server cannot replay from answers `user_sync` with `resync`; other tenants see nothing.

mod common;

use std::time::Duration;

use common::{Server, WsClient, token, token_in};
use confab_protocol::rest::Role;
use confab_protocol::{Command, ServerFrame};
use serde_json::json;

fn is_user_event(frame: &ServerFrame) -> bool {
    frame.user_seq().is_some()
}

async fn next_user_event(ws: &mut WsClient) -> ServerFrame {
    ws.recv_until(is_user_event).await
}

fn welcome_user_seq(ws: &WsClient) -> u64 {
    match ws.welcome.as_ref() {
        Some(ServerFrame::Welcome { user_seq, .. }) => *user_seq,
        other => panic!("no welcome: {other:?}"),
    }
}

/// Asserts a `conversation_added` of `conversation` with `user_seq` and its summary.
fn assert_added(frame: &ServerFrame, conversation: &str, user_seq: u64) {
    match frame {
        ServerFrame::ConversationAdded {
            user_seq: seq,
            conversation: id,
            role,
            summary,
            ..
        } => {
            assert_eq!(
                (id.as_str(), *seq, *role),
                (conversation, user_seq, Role::Member)
            );
            let summary = summary.as_ref().expect("summary");
            assert_eq!(summary.conversation.id, conversation);
            assert_eq!(summary.role, Role::Member);
        }
        other => panic!("expected conversation_added, got {other:?}"),
    }
}

#[tokio::test]
async fn conversation_added_reaches_every_connection_of_the_user_only() {
    let server = Server::start().await;
    let mut phone = server.ws("bob").await;
    let mut laptop = server.ws("bob").await;
    let mut alice = server.ws("alice").await;
    let mut other_bob = server.ws_with_token(&token_in("bob", "other-tenant")).await;
    assert_eq!(welcome_user_seq(&phone), 0);

    let id = server.create_group("carol", &["bob"]).await;
    assert_added(&next_user_event(&mut phone).await, &id, 1);
    assert_added(&next_user_event(&mut laptop).await, &id, 1);
    // Alice is not in it; the Bob of another tenant is someone else.
    alice.expect_silence(Duration::from_millis(300)).await;
    other_bob.expect_silence(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn role_read_and_removal_reach_the_users_devices() {
    let server = Server::start().await;
    let id = server.create_group("alice", &["bob"]).await;
    let mut phone = server.ws("bob").await;
    let mut laptop = server.ws("bob").await;
    assert_eq!(welcome_user_seq(&phone), 1);

    let (status, _) = server
        .patch(
            &format!("/v1/conversations/{id}/members/bob"),
            &token("alice"),
            json!({"role": "admin"}),
        )
        .await;
    assert_eq!(status, 200);
    for ws in [&mut phone, &mut laptop] {
        match next_user_event(ws).await {
            ServerFrame::RoleChanged {
                user_seq: 2,
                conversation,
                role: Role::Admin,
                ..
            } => assert_eq!(conversation, id),
            other => panic!("expected role_changed, got {other:?}"),
        }
    }

    let sent = server.rest_send("alice", &id, "m1", "hello").await;
    let seq = sent["seq"].as_u64().expect("seq");
    // Read on the phone: the laptop learns it (and the phone too, in order).
    let reply = phone
        .request(Command::Read {
            conversation: id.clone(),
            seq,
        })
        .await;
    assert!(matches!(reply, ServerFrame::Ok { .. }), "{reply:?}");
    for ws in [&mut laptop, &mut phone] {
        match next_user_event(ws).await {
            ServerFrame::ReadMoved {
                user_seq: 3,
                read_seq,
                ..
            } => assert_eq!(read_seq, seq),
            other => panic!("expected read_moved, got {other:?}"),
        }
    }

    let (status, _) = server
        .delete(
            &format!("/v1/conversations/{id}/members/bob"),
            &token("alice"),
        )
        .await;
    assert_eq!(status, 200);
    for ws in [&mut phone, &mut laptop] {
        match next_user_event(ws).await {
            ServerFrame::ConversationRemoved {
                user_seq: 4,
                conversation,
                ..
            } => assert_eq!(conversation, id),
            other => panic!("expected conversation_removed, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn resume_replays_exactly_the_missed_user_events() {
    let server = Server::start().await;
    let mut bob = server.ws("bob").await;
    let first = server.create_group("alice", &["bob"]).await;
    assert_added(&next_user_event(&mut bob).await, &first, 1);
    drop(bob);

    // Missed while away.
    let second = server.create_group("alice", &["bob"]).await;
    let third = server.create_group("carol", &["bob"]).await;

    let mut bob = server.ws("bob").await;
    assert_eq!(welcome_user_seq(&bob), 3);
    let reference = bob.new_ref();
    bob.send(confab_protocol::ClientFrame::with_ref(
        reference.clone(),
        Command::UserResume { since: 1 },
    ))
    .await;
    assert_added(&bob.recv().await, &second, 2);
    assert_added(&bob.recv().await, &third, 3);
    match bob.recv().await {
        ServerFrame::UserSync {
            reference: got,
            user_seq: 3,
            resync: false,
        } => assert_eq!(got.as_deref(), Some(reference.as_str())),
        other => panic!("expected user_sync, got {other:?}"),
    }
    // Live again, without a duplicate of what was replayed.
    let fourth = server.create_group("alice", &["bob"]).await;
    assert_added(&bob.recv().await, &fourth, 4);
    bob.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn a_point_that_cannot_be_replayed_asks_for_a_resync() {
    let server = Server::start().await;
    server.create_group("alice", &["bob"]).await;
    let mut bob = server.ws("bob").await;
    // Past the last user_seq (another server's, or a reset store): re-read the list.
    match bob.request(Command::UserResume { since: 50 }).await {
        ServerFrame::UserSync {
            user_seq: 1,
            resync: true,
            ..
        } => {}
        other => panic!("expected user_sync with resync, got {other:?}"),
    }
    // The stream goes on from the server's point.
    server.create_group("carol", &["bob"]).await;
    match next_user_event(&mut bob).await {
        ServerFrame::ConversationAdded { user_seq: 2, .. } => {}
        other => panic!("expected the next user event, got {other:?}"),
    }
}
