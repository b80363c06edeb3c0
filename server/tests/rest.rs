//! The REST surface: conversations, members and roles, direct conversations, reactions, read
//! markers, and the ops endpoints; plus the live events REST writes cause.

mod common;

use std::time::Duration;

use common::{Server, assert_rest_error, metric_value, send_command, token};
use confab_protocol::rest::{ConversationList, MemberList, Message, Role};
use confab_protocol::{Command, ErrorCode, ServerFrame};
use serde_json::{Value, json};

fn seq_of(answer: &(u16, Value)) -> Option<u64> {
    answer.1["seq"].as_u64()
}

#[tokio::test]
async fn conversation_list_shows_unread_counts_and_last_message() {
    let server = Server::start().await;
    let first = server.create_group("alice", &["bob"]).await;
    for i in 1..=3 {
        server
            .rest_send("alice", &first, &format!("m-{i}"), &format!("message {i}"))
            .await;
    }
    server.rest_send("bob", &first, "b-1", "bob's own").await;

    let (status, list) = server.get("/v1/conversations", &token("bob")).await;
    assert_eq!(status, 200, "{list}");
    let list: ConversationList = serde_json::from_value(list).expect("ConversationList");
    assert_eq!(list.conversations.len(), 1);
    let summary = &list.conversations[0];
    assert_eq!(summary.conversation.id, first);
    assert_eq!(summary.conversation.last_seq, 4);
    assert_eq!(summary.role, Role::Member);
    assert_eq!(summary.read_seq, 0);
    assert_eq!(summary.unread, 3, "bob's own message does not count");
    assert_eq!(
        summary.last_message.as_ref().map(|m| m.body.as_str()),
        Some("bob's own")
    );

    // Reading moves the marker; unread follows.
    let answer = server
        .put(
            &format!("/v1/conversations/{first}/read"),
            &token("bob"),
            json!({"seq": 2}),
        )
        .await;
    assert_eq!(answer.0, 204, "{}", answer.1);
    // A marker never moves back.
    let answer = server
        .put(
            &format!("/v1/conversations/{first}/read"),
            &token("bob"),
            json!({"seq": 1}),
        )
        .await;
    assert_eq!(answer.0, 204, "{}", answer.1);
    let answer = server
        .put(
            &format!("/v1/conversations/{first}/read"),
            &token("bob"),
            json!({"seq": 50}),
        )
        .await;
    // Past the last seq: `conflict` (the same marker is fine once the conversation gets there).
    assert_rest_error(&answer, 409, ErrorCode::Conflict);
    let (_, list) = server.get("/v1/conversations", &token("bob")).await;
    let list: ConversationList = serde_json::from_value(list).expect("ConversationList");
    assert_eq!(
        (list.conversations[0].read_seq, list.conversations[0].unread),
        (2, 1)
    );
    let (_, members) = server
        .get(
            &format!("/v1/conversations/{first}/members"),
            &token("alice"),
        )
        .await;
    let members: MemberList = serde_json::from_value(members).expect("MemberList");
    let bob = members
        .members
        .iter()
        .find(|m| m.user == "bob")
        .expect("bob is a member");
    assert_eq!(bob.read_seq, 2);

    // Newest activity first; a deleted last message is not shown as the last message.
    let second = server.create_group("alice", &["bob"]).await;
    let result = server.rest_send("alice", &second, "n-1", "newer").await;
    let (_, list) = server.get("/v1/conversations", &token("bob")).await;
    let list: ConversationList = serde_json::from_value(list).expect("ConversationList");
    let order: Vec<&str> = list
        .conversations
        .iter()
        .map(|c| c.conversation.id.as_str())
        .collect();
    assert_eq!(order, vec![second.as_str(), first.as_str()]);
    let id = result["id"].as_str().expect("id");
    let answer = server
        .delete(&format!("/v1/messages/{id}"), &token("alice"))
        .await;
    assert_eq!(answer.0, 200, "{}", answer.1);
    let (_, list) = server.get("/v1/conversations", &token("bob")).await;
    let list: ConversationList = serde_json::from_value(list).expect("ConversationList");
    let newest = list
        .conversations
        .iter()
        .find(|c| c.conversation.id == second)
        .expect("second");
    assert!(newest.last_message.is_none(), "{newest:?}");
    assert_eq!(newest.unread, 0);
}

#[tokio::test]
async fn rename_and_archive() {
    let server = Server::start().await;
    let conversation = server.create_group("alice", &["bob"]).await;
    let mut bob = server.ws("bob").await;
    bob.join(&conversation).await;
    let path = format!("/v1/conversations/{conversation}");

    let (status, fetched) = server.get(&path, &token("bob")).await;
    assert_eq!(status, 200);
    assert_eq!(fetched["title"], "test group");
    assert_eq!(fetched["archived"], false);

    let answer = server
        .patch(&path, &token("bob"), json!({"title": "mine now"}))
        .await;
    assert_rest_error(&answer, 403, ErrorCode::Forbidden);
    let answer = server
        .patch(&path, &token("alice"), json!({"title": "x".repeat(300)}))
        .await;
    assert_rest_error(&answer, 413, ErrorCode::TooLarge);
    let (status, renamed) = server
        .patch(&path, &token("alice"), json!({"title": "renamed"}))
        .await;
    assert_eq!(status, 200, "{renamed}");
    assert_eq!(renamed["title"], "renamed");
    match bob.recv().await {
        ServerFrame::ConversationUpdated {
            seq,
            title,
            archived,
            by,
            ..
        } => {
            assert_eq!(
                (seq, title.as_deref(), archived, by.as_str()),
                (1, Some("renamed"), false, "alice")
            );
        }
        other => panic!("expected conversation_updated, got {other:?}"),
    }

    let (status, archived) = server
        .patch(&path, &token("alice"), json!({"archived": true}))
        .await;
    assert_eq!(status, 200, "{archived}");
    assert_eq!(archived["archived"], true);
    assert_eq!(archived["last_seq"], 2);
    assert!(matches!(
        bob.recv().await,
        ServerFrame::ConversationUpdated {
            archived: true,
            seq: 2,
            ..
        }
    ));
    bob.expect_error(
        send_command(&conversation, "late-1", "anyone?"),
        ErrorCode::Forbidden,
    )
    .await;
    let answer = server
        .post(
            &format!("{path}/messages"),
            &token("alice"),
            json!({"client_msg_id": "late-2", "body": "hello?"}),
        )
        .await;
    assert_rest_error(&answer, 403, ErrorCode::Forbidden);
    assert!(server.history("alice", &conversation).await.is_empty());
}

#[tokio::test]
async fn member_management_enforces_roles() {
    let server = Server::start().await;
    let conversation = server.create_group("alice", &["bob"]).await;
    let members = format!("/v1/conversations/{conversation}/members");
    let member = |user: &str| format!("{members}/{user}");
    let mut bob = server.ws("bob").await;
    bob.join(&conversation).await;

    // A plain member cannot add.
    let answer = server
        .post(&members, &token("bob"), json!({"user": "carol"}))
        .await;
    assert_rest_error(&answer, 403, ErrorCode::Forbidden);
    // The owner adds an admin; the event reaches joined clients.
    let answer = server
        .post(
            &members,
            &token("alice"),
            json!({"user": "dave", "role": "admin"}),
        )
        .await;
    assert_eq!(answer.0, 201, "{}", answer.1);
    assert_eq!(seq_of(&answer), Some(1));
    match bob.recv().await {
        ServerFrame::MemberAdded {
            seq,
            user,
            role,
            by,
            ..
        } => {
            assert_eq!(
                (seq, user.as_str(), role, by.as_str()),
                (1, "dave", Role::Admin, "alice")
            );
        }
        other => panic!("expected member_added, got {other:?}"),
    }
    // Admins add members but not admins.
    let answer = server
        .post(&members, &token("dave"), json!({"user": "erin"}))
        .await;
    assert_eq!(answer.0, 201, "{}", answer.1);
    let answer = server
        .post(
            &members,
            &token("dave"),
            json!({"user": "frank", "role": "admin"}),
        )
        .await;
    assert_rest_error(&answer, 403, ErrorCode::Forbidden);
    // Already a member.
    let answer = server
        .post(&members, &token("alice"), json!({"user": "erin"}))
        .await;
    assert_rest_error(&answer, 409, ErrorCode::Conflict);
    let answer = server
        .post(
            &members,
            &token("alice"),
            json!({"user": "gina", "role": "admin"}),
        )
        .await;
    assert_eq!(answer.0, 201, "{}", answer.1);
    // An admin cannot remove an admin or the owner, nor change roles.
    assert_rest_error(
        &server.delete(&member("gina"), &token("dave")).await,
        403,
        ErrorCode::Forbidden,
    );
    assert_rest_error(
        &server.delete(&member("alice"), &token("dave")).await,
        403,
        ErrorCode::Forbidden,
    );
    let answer = server
        .patch(&member("erin"), &token("dave"), json!({"role": "admin"}))
        .await;
    assert_rest_error(&answer, 403, ErrorCode::Forbidden);
    // Unknown member.
    assert_rest_error(
        &server.delete(&member("nobody"), &token("alice")).await,
        404,
        ErrorCode::NotFound,
    );
    // The last owner can neither leave nor step down.
    assert_rest_error(
        &server.delete(&member("alice"), &token("alice")).await,
        409,
        ErrorCode::Conflict,
    );
    let answer = server
        .patch(&member("alice"), &token("alice"), json!({"role": "member"}))
        .await;
    assert_rest_error(&answer, 409, ErrorCode::Conflict);
    // Role changes by the owner; the same role again changes nothing.
    let answer = server
        .patch(&member("erin"), &token("alice"), json!({"role": "admin"}))
        .await;
    assert_eq!(answer.0, 200, "{}", answer.1);
    assert!(seq_of(&answer).is_some());
    let answer = server
        .patch(&member("erin"), &token("alice"), json!({"role": "admin"}))
        .await;
    assert_eq!(answer.0, 200, "{}", answer.1);
    assert_eq!(seq_of(&answer), None);
    let answer = server
        .patch(&member("erin"), &token("alice"), json!({"role": "emperor"}))
        .await;
    assert_rest_error(&answer, 400, ErrorCode::Invalid);

    // An admin removes a plain member: bob gets member_removed about himself, then nothing.
    bob.clear_buffer();
    let answer = server.delete(&member("bob"), &token("dave")).await;
    assert_eq!(answer.0, 200, "{}", answer.1);
    let removed_seq = seq_of(&answer).expect("seq");
    let frame = bob
        .recv_until(|f| matches!(f, ServerFrame::MemberRemoved { .. }))
        .await;
    match frame {
        ServerFrame::MemberRemoved { seq, user, by, .. } => {
            assert_eq!(
                (seq, user.as_str(), by.as_str()),
                (removed_seq, "bob", "dave")
            );
        }
        other => unreachable!("{other:?}"),
    }
    // His own user stream says so too.
    bob.recv_until(|f| matches!(f, ServerFrame::ConversationRemoved { .. }))
        .await;
    bob.clear_buffer();
    server
        .rest_send("alice", &conversation, "after-1", "bob is gone")
        .await;
    bob.expect_silence(Duration::from_millis(400)).await;
    bob.expect_error(
        send_command(&conversation, "b-late", "hello?"),
        ErrorCode::NotMember,
    )
    .await;
    let answer = server
        .get(
            &format!("/v1/conversations/{conversation}/messages"),
            &token("bob"),
        )
        .await;
    assert_rest_error(&answer, 403, ErrorCode::NotMember);

    // Handing over ownership lets the old owner leave.
    let answer = server
        .patch(&member("dave"), &token("alice"), json!({"role": "owner"}))
        .await;
    assert_eq!(answer.0, 200, "{}", answer.1);
    let answer = server.delete(&member("alice"), &token("alice")).await;
    assert_eq!(answer.0, 200, "{}", answer.1);

    let (_, list) = server.get(&members, &token("dave")).await;
    let list: MemberList = serde_json::from_value(list).expect("MemberList");
    let mut roles: Vec<(String, Role)> =
        list.members.into_iter().map(|m| (m.user, m.role)).collect();
    roles.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        roles,
        vec![
            ("dave".into(), Role::Owner),
            ("erin".into(), Role::Admin),
            ("gina".into(), Role::Admin)
        ]
    );
}

#[tokio::test]
async fn direct_conversations_are_created_once() {
    let server = Server::start().await;
    let body = json!({"kind": "direct", "members": ["bob"]});
    let (status, first) = server
        .post("/v1/conversations", &token("alice"), body.clone())
        .await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["kind"], "direct");
    let (status, again) = server
        .post("/v1/conversations", &token("alice"), body)
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"], first["id"]);
    let (status, reverse) = server
        .post(
            "/v1/conversations",
            &token("bob"),
            json!({"kind": "direct", "members": ["alice"]}),
        )
        .await;
    assert_eq!(status, 200, "{reverse}");
    assert_eq!(reverse["id"], first["id"]);

    for bad in [
        json!({"kind": "direct", "members": ["bob", "carol"]}),
        json!({"kind": "direct", "members": []}),
        json!({"kind": "direct", "members": ["alice"]}),
    ] {
        let answer = server
            .post("/v1/conversations", &token("alice"), bad.clone())
            .await;
        assert_rest_error(&answer, 400, ErrorCode::Invalid);
    }
    let id = first["id"].as_str().expect("id");
    let answer = server
        .post(
            &format!("/v1/conversations/{id}/members"),
            &token("alice"),
            json!({"user": "carol"}),
        )
        .await;
    assert_rest_error(&answer, 403, ErrorCode::Forbidden);
    let answer = server
        .delete(
            &format!("/v1/conversations/{id}/members/bob"),
            &token("alice"),
        )
        .await;
    assert_rest_error(&answer, 403, ErrorCode::Forbidden);

    // Another tenant's alice and bob get their own direct conversation.
    let other = common::token_in("alice", "globex");
    let (status, theirs) = server
        .post(
            "/v1/conversations",
            &other,
            json!({"kind": "direct", "members": ["bob"]}),
        )
        .await;
    assert_eq!(status, 201, "{theirs}");
    assert_ne!(theirs["id"], first["id"]);
}

#[tokio::test]
async fn rest_message_changes_reach_joined_clients_and_reactions_aggregate() {
    let server = Server::start().await;
    let conversation = server.create_group("alice", &["bob", "carol"]).await;
    let mut carol = server.ws("carol").await;
    carol.join(&conversation).await;
    let sent = server
        .rest_send("alice", &conversation, "m-1", "react to me")
        .await;
    let id = sent["id"].as_str().expect("id").to_owned();
    assert_eq!(carol.recv_message().await.id, id);

    let reactions = format!("/v1/messages/{id}/reactions");
    let a = server
        .post(&reactions, &token("alice"), json!({"emoji": "👍"}))
        .await;
    let b = server
        .post(&reactions, &token("bob"), json!({"emoji": "👍"}))
        .await;
    let c = server
        .post(&reactions, &token("bob"), json!({"emoji": "🎉"}))
        .await;
    assert_eq!([a.0, b.0, c.0], [200, 200, 200]);
    assert_eq!(
        [seq_of(&a), seq_of(&b), seq_of(&c)],
        [Some(2), Some(3), Some(4)]
    );
    let repeat = server
        .post(&reactions, &token("bob"), json!({"emoji": "🎉"}))
        .await;
    assert_eq!(
        (repeat.0, seq_of(&repeat)),
        (200, None),
        "a repeated reaction changes nothing"
    );
    for (seq, user, emoji) in [(2, "alice", "👍"), (3, "bob", "👍"), (4, "bob", "🎉")] {
        match carol.recv().await {
            ServerFrame::ReactionAdded {
                seq: s,
                user: u,
                emoji: e,
                message,
                ..
            } => {
                assert_eq!(
                    (s, u.as_str(), e.as_str(), message.as_str()),
                    (seq, user, emoji, id.as_str())
                );
            }
            other => panic!("expected reaction_added, got {other:?}"),
        }
    }
    carol.expect_silence(Duration::from_millis(200)).await;

    let (status, message) = server
        .get(&format!("/v1/messages/{id}"), &token("carol"))
        .await;
    assert_eq!(status, 200, "{message}");
    let message: Message = serde_json::from_value(message).expect("Message");
    // Reactions made within one millisecond may come in either order: compare sorted.
    let mut aggregated: Vec<(&str, u64, Vec<&str>)> = message
        .reactions
        .iter()
        .map(|r| {
            let mut users: Vec<&str> = r.users.iter().map(String::as_str).collect();
            users.sort_unstable();
            (r.emoji.as_str(), r.count, users)
        })
        .collect();
    aggregated.sort();
    assert_eq!(
        aggregated,
        vec![("🎉", 1, vec!["bob"]), ("👍", 2, vec!["alice", "bob"])]
    );

    // Remove one (the emoji URL-encoded), twice.
    let unreact = format!("{reactions}/%F0%9F%8E%89");
    let answer = server.delete(&unreact, &token("bob")).await;
    assert_eq!((answer.0, seq_of(&answer)), (200, Some(5)), "{}", answer.1);
    let answer = server.delete(&unreact, &token("bob")).await;
    assert_eq!((answer.0, seq_of(&answer)), (200, None), "{}", answer.1);
    assert!(matches!(
        carol.recv().await,
        ServerFrame::ReactionRemoved { seq: 5, .. }
    ));
    let history = server.history("bob", &conversation).await;
    assert_eq!(history[0].reactions.len(), 1);
    assert_eq!(history[0].reactions[0].count, 2);

    // Edit and delete over REST.
    let answer = server
        .patch(
            &format!("/v1/messages/{id}"),
            &token("bob"),
            json!({"body": "hijack"}),
        )
        .await;
    assert_rest_error(&answer, 403, ErrorCode::Forbidden);
    let answer = server
        .patch(
            &format!("/v1/messages/{id}"),
            &token("alice"),
            json!({"body": "edited"}),
        )
        .await;
    assert_eq!((answer.0, seq_of(&answer)), (200, Some(6)), "{}", answer.1);
    assert!(matches!(
        carol.recv().await,
        ServerFrame::MessageEdited { seq: 6, .. }
    ));
    let (_, fetched) = server
        .get(&format!("/v1/messages/{id}"), &token("bob"))
        .await;
    assert_eq!(fetched["body"], "edited");
    assert!(fetched["edited_at"].is_i64(), "{fetched}");
    let answer = server
        .delete(&format!("/v1/messages/{id}"), &token("alice"))
        .await;
    assert_eq!((answer.0, seq_of(&answer)), (200, Some(7)), "{}", answer.1);
    assert!(matches!(
        carol.recv().await,
        ServerFrame::MessageDeleted { seq: 7, .. }
    ));
    let history = server.history("bob", &conversation).await;
    assert_eq!(history.len(), 1, "a deleted message keeps its place");
    assert!(history[0].deleted);
    assert_eq!(history[0].body, "");
    assert!(history[0].reactions.is_empty());
}

#[tokio::test]
async fn read_markers_and_typing_are_relayed() {
    let server = Server::start().await;
    let conversation = server.create_group("alice", &["bob"]).await;
    let mut alice = server.ws("alice").await;
    let mut bob = server.ws("bob").await;
    alice.join(&conversation).await;
    bob.join(&conversation).await;
    alice.send_message(&conversation, "m-1", "one").await;
    alice.send_message(&conversation, "m-2", "two").await;
    for client in [&mut alice, &mut bob] {
        assert_eq!(client.recv_message().await.seq, 1);
        assert_eq!(client.recv_message().await.seq, 2);
    }

    // Over WebSocket: ok, and alice sees bob's read marker.
    assert_eq!(
        bob.expect_ok(Command::Read {
            conversation: conversation.clone(),
            seq: 1
        })
        .await,
        None
    );
    match alice.recv().await {
        ServerFrame::Read {
            conversation: c,
            user,
            seq,
        } => {
            assert_eq!(
                (c.as_str(), user.as_str(), seq),
                (conversation.as_str(), "bob", 1)
            );
        }
        other => panic!("expected read, got {other:?}"),
    }
    // Over REST too.
    let answer = server
        .put(
            &format!("/v1/conversations/{conversation}/read"),
            &token("bob"),
            json!({"seq": 2}),
        )
        .await;
    assert_eq!(answer.0, 204);
    assert!(matches!(
        alice.recv().await,
        ServerFrame::Read { seq: 2, .. }
    ));
    // bob's own devices see his marker move too.
    assert!(matches!(
        bob.recv_until(|f| matches!(f, ServerFrame::Read { .. }))
            .await,
        ServerFrame::Read { seq: 1, .. }
    ));
    assert!(matches!(
        bob.recv_until(|f| matches!(f, ServerFrame::Read { .. }))
            .await,
        ServerFrame::Read { seq: 2, .. }
    ));
    // And as his own user event.
    bob.recv_until(|f| matches!(f, ServerFrame::ReadMoved { read_seq: 2, .. }))
        .await;
    bob.drop_user_events();
    // A marker that does not move is not relayed.
    bob.expect_ok(Command::Read {
        conversation: conversation.clone(),
        seq: 1,
    })
    .await;
    alice.expect_silence(Duration::from_millis(300)).await;
    bob.expect_silence(Duration::from_millis(100)).await;

    // Typing reaches the others, not the typist, at most once per 2 s.
    alice
        .send_command(Command::Typing {
            conversation: conversation.clone(),
        })
        .await;
    alice
        .send_command(Command::Typing {
            conversation: conversation.clone(),
        })
        .await;
    match bob.recv().await {
        ServerFrame::Typing {
            conversation: c,
            user,
        } => {
            assert_eq!(
                (c.as_str(), user.as_str()),
                (conversation.as_str(), "alice")
            );
        }
        other => panic!("expected typing, got {other:?}"),
    }
    bob.expect_silence(Duration::from_millis(400)).await;
    alice.expect_silence(Duration::from_millis(100)).await;
    // With a ref, typing is answered.
    assert_eq!(
        alice
            .expect_ok(Command::Typing {
                conversation: conversation.clone()
            })
            .await,
        None
    );
}

#[tokio::test]
async fn ops_endpoints_and_openapi() {
    let server = Server::start().await;
    let anonymous = |path: &'static str| server.request(reqwest::Method::GET, path, None, None);
    let (status, health) = anonymous("/health").await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    let (status, ready) = anonymous("/ready").await;
    assert_eq!((status, ready["status"].as_str()), (200, Some("ready")));

    // Some traffic so that the metrics exist.
    let conversation = server.create_group("alice", &[]).await;
    let mut alice = server.ws("alice").await;
    alice.send_message(&conversation, "m-1", "measure me").await;
    let metrics = server.metrics().await;
    for name in [
        "confab_connections_active",
        "confab_ack_latency_seconds_bucket",
        "confab_ack_latency_seconds_count",
        "confab_http_requests_total",
        "confab_events_total",
    ] {
        assert!(
            metric_value(&metrics, name).is_some(),
            "{name} missing from /metrics:\n{metrics}"
        );
    }
    assert!(metric_value(&metrics, "confab_connections_active").unwrap_or(0.0) >= 1.0);
    assert!(
        metrics.contains("route=\"/v1/conversations\""),
        "requests are labelled by route"
    );

    let (status, doc) = anonymous("/v1/openapi.json").await;
    assert_eq!(status, 200);
    let paths = doc["paths"].as_object().expect("openapi paths");
    for path in [
        "/v1/conversations",
        "/v1/conversations/{id}/messages",
        "/v1/messages/{id}",
    ] {
        assert!(paths.contains_key(path), "{path} missing from openapi");
    }
    assert!(doc["openapi"].is_string());
}

#[tokio::test]
async fn history_pages_by_seq_in_both_directions() {
    let server = Server::start().await;
    let conversation = server.create_group("alice", &["bob"]).await;
    for i in 1..=120 {
        server
            .rest_send(
                "alice",
                &conversation,
                &format!("m-{i}"),
                &format!("message {i}"),
            )
            .await;
    }
    let bob = token("bob");
    let page = |query: String| {
        let path = format!("/v1/conversations/{conversation}/messages{query}");
        let server = &server;
        let bob = bob.clone();
        async move {
            let (status, page) = server.get(&path, &bob).await;
            assert_eq!(status, 200, "{path}: {page}");
            let seqs: Vec<u64> = page["messages"]
                .as_array()
                .expect("messages")
                .iter()
                .map(|m| m["seq"].as_u64().expect("seq"))
                .collect();
            (
                seqs.first().copied(),
                seqs.last().copied(),
                seqs.len(),
                page["has_more"].as_bool().expect("has_more"),
            )
        }
    };
    // Default: the newest 50, oldest first.
    assert_eq!(page(String::new()).await, (Some(71), Some(120), 50, true));
    assert_eq!(
        page("?before=71".into()).await,
        (Some(21), Some(70), 50, true)
    );
    assert_eq!(
        page("?before=21".into()).await,
        (Some(1), Some(20), 20, false)
    );
    assert_eq!(
        page("?after=0&limit=200".into()).await,
        (Some(1), Some(120), 120, false)
    );
    assert_eq!(
        page("?after=0&limit=10".into()).await,
        (Some(1), Some(10), 10, true)
    );
    assert_eq!(
        page("?after=100".into()).await,
        (Some(101), Some(120), 20, false)
    );
    assert_eq!(page("?after=120".into()).await, (None, None, 0, false));
    assert_eq!(page("?before=1".into()).await, (None, None, 0, false));
    assert_eq!(
        page("?limit=1".into()).await,
        (Some(120), Some(120), 1, true)
    );
}

#[tokio::test]
async fn admins_delete_others_messages_members_do_not() {
    let server = Server::start().await;
    let conversation = server.create_group("alice", &["bob", "carol"]).await;
    let answer = server
        .patch(
            &format!("/v1/conversations/{conversation}/members/carol"),
            &token("alice"),
            json!({"role": "admin"}),
        )
        .await;
    assert_eq!(answer.0, 200, "{}", answer.1);
    let first = server.rest_send("bob", &conversation, "b-1", "first").await;
    let second = server
        .rest_send("alice", &conversation, "a-1", "second")
        .await;
    let first = first["id"].as_str().expect("id");
    let second = second["id"].as_str().expect("id");
    // A plain member cannot delete another's message; an admin can.
    let answer = server
        .delete(&format!("/v1/messages/{second}"), &token("bob"))
        .await;
    assert_rest_error(&answer, 403, ErrorCode::Forbidden);
    let answer = server
        .delete(&format!("/v1/messages/{first}"), &token("carol"))
        .await;
    assert_eq!(answer.0, 200, "{}", answer.1);
    assert!(seq_of(&answer).is_some());
    // But nobody edits another's message, not even the owner.
    let answer = server
        .patch(
            &format!("/v1/messages/{second}"),
            &token("carol"),
            json!({"body": "x"}),
        )
        .await;
    assert_rest_error(&answer, 403, ErrorCode::Forbidden);
    // Reacting to a deleted message conflicts.
    let answer = server
        .post(
            &format!("/v1/messages/{first}/reactions"),
            &token("alice"),
            json!({"emoji": "👍"}),
        )
        .await;
    assert_rest_error(&answer, 409, ErrorCode::Conflict);
    let history = server.history("alice", &conversation).await;
    let state: Vec<(bool, &str)> = history
        .iter()
        .map(|m| (m.deleted, m.body.as_str()))
        .collect();
    assert_eq!(state, vec![(true, ""), (false, "second")]);
}

/// Every family `/metrics` shows has `# HELP` and `# TYPE` (as `promtool check metrics` asks),
/// and the counters exist from start, at 0, before anything happened.
#[tokio::test]
async fn metrics_are_described_and_counters_start_at_zero() {
    let server = Server::start().await;
    let metrics = server.metrics().await;
    let mut helped = std::collections::HashSet::new();
    let mut typed = std::collections::HashSet::new();
    for line in metrics.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("#"), Some("HELP"), Some(name)) => {
                assert!(words.next().is_some(), "empty help: {line}");
                helped.insert(name.to_owned());
            }
            (Some("#"), Some("TYPE"), Some(name)) => {
                typed.insert(name.to_owned());
            }
            _ => {}
        }
    }
    let undescribed: Vec<&String> = typed.difference(&helped).collect();
    assert!(undescribed.is_empty(), "no help text: {undescribed:?}");
    for name in [
        "confab_connections_total",
        "confab_fanout_deliveries_total",
        "confab_slow_consumers_dropped_total",
        "confab_media_uploaded_bytes_total",
        "confab_search_indexed_total",
        "confab_connections_refused_total",
    ] {
        assert_eq!(
            metric_value(&metrics, name),
            Some(0.0),
            "{name}:\n{metrics}"
        );
    }
    for series in [
        "confab_events_total{kind=\"message\"} 0",
        "confab_http_timeouts_total{phase=\"header\"} 0",
        "confab_media_uploads_total{way=\"chunked\",outcome=\"stored\"} 0",
    ] {
        assert!(
            metrics.lines().any(|line| line == series),
            "{series} missing:\n{metrics}"
        );
    }
}

/// What operators of a WebSocket server watch: the build, connections waiting for their auth
/// frame, sessions ended by close code, and replays of missed events; WebSocket upgrades stay
/// out of the HTTP request-duration histogram.
#[tokio::test]
async fn ops_metrics_count_auth_waits_closes_and_replays() {
    let server = Server::start().await;
    let metrics = server.metrics().await;
    let build = format!(
        "confab_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    assert!(metrics.lines().any(|line| line == build), "{metrics}");
    assert_eq!(
        metric_value(&metrics, "confab_ws_unauthenticated"),
        Some(0.0)
    );

    let waiting = server.ws_anonymous().await;
    let mut seen = None;
    for _ in 0..50 {
        seen = metric_value(&server.metrics().await, "confab_ws_unauthenticated");
        if seen == Some(1.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen, Some(1.0), "one connection waits for its auth frame");
    waiting.close().await;

    let conversation = server.create_group("alice", &["bob"]).await;
    let mut alice = server.ws("alice").await;
    for n in 0..3 {
        alice
            .send_message(&conversation, &format!("m-{n}"), "missed")
            .await;
    }
    let mut bob = server.ws("bob").await;
    let (_, recovered) = bob.join_since(&conversation, 0).await;
    assert!(recovered);
    bob.close().await;
    let mut metrics = String::new();
    for _ in 0..50 {
        metrics = server.metrics().await;
        if metric_value(&metrics, "confab_ws_closes_total{code=\"client\"}")
            .is_some_and(|v| v >= 1.0)
            && metric_value(&metrics, "confab_ws_unauthenticated") == Some(0.0)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        metric_value(&metrics, "confab_ws_unauthenticated"),
        Some(0.0)
    );
    assert!(
        metric_value(&metrics, "confab_ws_closes_total{code=\"client\"}").is_some_and(|v| v >= 1.0),
        "{metrics}"
    );
    assert_eq!(
        metric_value(&metrics, "confab_replays_total{outcome=\"recovered\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric_value(&metrics, "confab_replayed_events_total"),
        Some(3.0)
    );
    // The group, its three messages: at least four commits, each of one job or more.
    let commits = metric_value(
        &metrics,
        "confab_store_commit_duration_seconds_count{backend=\"sqlite\"}",
    );
    assert!(commits.is_some_and(|n| n >= 4.0), "{metrics}");
    let jobs = metric_value(&metrics, "confab_store_batch_jobs_sum");
    assert!(jobs.is_some_and(|n| n >= 4.0), "{metrics}");
    assert!(
        !metrics.lines().any(
            |line| line.starts_with("confab_http_request_duration_seconds")
                && line.contains("/v1/ws")
        ),
        "upgrades are not timed as requests"
    );
}

/// `GET /v1/conversations` pages with `limit` and `cursor` and filters by kind and archived
/// state; a bad limit or an unknown parameter is refused.
#[tokio::test]
async fn the_conversation_list_pages_and_filters() {
    let server = Server::start().await;
    let mut groups = Vec::new();
    for _ in 0..5 {
        groups.push(server.create_group("ann", &["bob"]).await);
    }
    let (status, direct) = server
        .post(
            "/v1/conversations",
            &token("ann"),
            json!({"kind": "direct", "members": ["carl"]}),
        )
        .await;
    assert_eq!(status, 201, "{direct}");
    let (status, _) = server
        .patch(
            &format!("/v1/conversations/{}", groups[0]),
            &token("ann"),
            json!({"archived": true}),
        )
        .await;
    assert_eq!(status, 200);

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/v1/conversations?limit=2&cursor={cursor}"),
            None => "/v1/conversations?limit=2".to_owned(),
        };
        let (status, page) = server.get(&path, &token("ann")).await;
        assert_eq!(status, 200, "{page}");
        let ids: Vec<String> = page["conversations"]
            .as_array()
            .expect("conversations")
            .iter()
            .map(|c| c["id"].as_str().expect("id").to_owned())
            .collect();
        assert!(ids.len() <= 2);
        seen.extend(ids);
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 6, "every conversation once: {seen:?}");
    let unique: std::collections::HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), 6);

    let count = |body: Value| body["conversations"].as_array().map_or(0, Vec::len);
    let (_, directs) = server
        .get("/v1/conversations?kind=direct", &token("ann"))
        .await;
    assert_eq!(count(directs), 1);
    let (_, archived) = server
        .get("/v1/conversations?kind=group&archived=true", &token("ann"))
        .await;
    assert_eq!(archived["conversations"][0]["id"], groups[0].as_str());
    let (_, active) = server
        .get("/v1/conversations?archived=false", &token("ann"))
        .await;
    assert_eq!(count(active), 5);
    for bad in ["limit=0", "limit=501", "type=group", "kind=channel"] {
        let answer = server
            .get(&format!("/v1/conversations?{bad}"), &token("ann"))
            .await;
        assert_rest_error(&answer, 400, ErrorCode::Invalid);
    }
}
