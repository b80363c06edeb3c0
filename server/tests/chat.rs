//! Live chat over WebSocket: delivery, acks, history, access control, idempotent sends and
//! concurrent senders.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Server, frame_ref, send_command, token, token_in};
use confab_protocol::{ClientFrame, Command, ErrorCode, ServerFrame};
use serde_json::json;

#[tokio::test]
async fn two_users_chat_and_history_matches() {
    let server = Server::start().await;
    let (status, created) = server
        .post(
            "/v1/conversations",
            &token("alice"),
            json!({"kind": "group", "title": "pair", "members": ["bob"]}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let conversation = created["id"].as_str().expect("id").to_owned();
    assert_eq!(created["kind"], "group");
    assert_eq!(created["created_by"], "alice");
    assert_eq!(created["last_seq"], 0);

    let mut alice = server.ws("alice").await;
    let mut bob = server.ws("bob").await;
    match alice.welcome.as_ref().expect("welcome") {
        ServerFrame::Welcome {
            user,
            tenant,
            limits,
            heartbeat_ms,
            ..
        } => {
            assert_eq!(user, "alice");
            assert_eq!(tenant, common::TENANT);
            assert_eq!(limits.messages_per_minute, 0);
            assert!(*heartbeat_ms > 0);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(alice.join(&conversation).await, 0);
    assert_eq!(bob.join(&conversation).await, 0);

    alice
        .send(ClientFrame::with_ref(
            "a1",
            send_command(&conversation, "m-1", "hello bob"),
        ))
        .await;
    let ack = alice.reply_to("a1").await;
    let first_id = match ack {
        ServerFrame::Ack {
            reference,
            conversation: c,
            client_msg_id,
            id,
            seq,
            duplicate,
            ts,
        } => {
            assert_eq!(reference.as_deref(), Some("a1"));
            assert_eq!(c, conversation);
            assert_eq!(client_msg_id, "m-1");
            assert_eq!(seq, 1);
            assert!(!duplicate);
            assert!(ts > 0);
            id
        }
        other => panic!("expected ack, got {other:?}"),
    };
    for client in [&mut alice, &mut bob] {
        let message = client.recv_message().await;
        assert_eq!(message.id, first_id);
        assert_eq!(message.seq, 1);
        assert_eq!(message.author, "alice");
        assert_eq!(message.body, "hello bob");
        assert_eq!(message.client_msg_id, "m-1");
        assert_eq!(message.conversation, conversation);
    }

    let reply = bob.send_message(&conversation, "b-1", "hi alice").await;
    assert_eq!(reply.seq, 2);
    assert!(!reply.duplicate);
    for client in [&mut alice, &mut bob] {
        let message = client.recv_message().await;
        assert_eq!(
            (message.seq, message.author.as_str(), message.body.as_str()),
            (2, "bob", "hi alice")
        );
        assert_eq!(message.id, reply.id);
    }

    for user in ["alice", "bob"] {
        let history = server.history(user, &conversation).await;
        let seen: Vec<(u64, &str, &str, &str)> = history
            .iter()
            .map(|m| (m.seq, m.id.as_str(), m.author.as_str(), m.body.as_str()))
            .collect();
        assert_eq!(
            seen,
            vec![
                (1, first_id.as_str(), "alice", "hello bob"),
                (2, reply.id.as_str(), "bob", "hi alice")
            ]
        );
    }

    // Application-level ping, with and without ref.
    alice.send(ClientFrame::with_ref("p1", Command::Ping)).await;
    assert_eq!(
        alice.recv().await,
        ServerFrame::Pong {
            reference: Some("p1".into())
        }
    );
    bob.send_command(Command::Ping).await;
    assert_eq!(bob.recv().await, ServerFrame::Pong { reference: None });
    alice.expect_silence(Duration::from_millis(200)).await;
    bob.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn query_token_and_auth_frame_connect_too_and_leave_stops_delivery() {
    let server = Server::start().await;
    let conversation = server.create_group("alice", &["bob", "carol"]).await;

    let named = common::keys()
        .mint(
            "bob",
            common::TENANT,
            Some("Bob B."),
            Duration::from_secs(60),
        )
        .expect("mint");
    let mut bob = server.ws_query_token(&named).await;
    match bob.welcome.as_ref().expect("welcome") {
        ServerFrame::Welcome { user, name, .. } => {
            assert_eq!((user.as_str(), name.as_deref()), ("bob", Some("Bob B.")));
        }
        other => panic!("{other:?}"),
    }
    let mut carol = server.ws_anonymous().await;
    carol
        .send(ClientFrame::with_ref(
            "auth-1",
            Command::Auth {
                token: token("carol"),
            },
        ))
        .await;
    match carol.recv().await {
        ServerFrame::Welcome { user, .. } => assert_eq!(user, "carol"),
        other => panic!("expected welcome after auth, got {other:?}"),
    }
    bob.join(&conversation).await;
    carol.join(&conversation).await;

    // A second auth frame is refused, and the session lives on.
    carol
        .expect_error(
            Command::Auth {
                token: token("carol"),
            },
            ErrorCode::Invalid,
        )
        .await;

    server.rest_send("alice", &conversation, "m-1", "one").await;
    assert_eq!(bob.recv_message().await.seq, 1);
    assert_eq!(carol.recv_message().await.seq, 1);

    match carol
        .request(Command::Leave {
            conversation: conversation.clone(),
        })
        .await
    {
        ServerFrame::Left {
            conversation: left, ..
        } => assert_eq!(left, conversation),
        other => panic!("expected left, got {other:?}"),
    }
    // Leaving twice is fine.
    assert!(matches!(
        carol
            .request(Command::Leave {
                conversation: conversation.clone()
            })
            .await,
        ServerFrame::Left { .. }
    ));
    server.rest_send("alice", &conversation, "m-2", "two").await;
    assert_eq!(bob.recv_message().await.seq, 2);
    carol.expect_silence(Duration::from_millis(400)).await;
}

#[tokio::test]
async fn non_members_and_other_tenants_are_refused() {
    let server = Server::start().await;
    let conversation = server.create_group("alice", &["bob"]).await;
    let mut alice = server.ws("alice").await;
    alice.join(&conversation).await;

    // carol: same tenant, not a member.
    let mut carol = server.ws("carol").await;
    let join = Command::Join {
        conversation: conversation.clone(),
        since: None,
    };
    carol.expect_error(join.clone(), ErrorCode::NotMember).await;
    let join_since = Command::Join {
        conversation: conversation.clone(),
        since: Some(0),
    };
    carol.expect_error(join_since, ErrorCode::NotMember).await;
    carol
        .expect_error(
            send_command(&conversation, "c-1", "let me in"),
            ErrorCode::NotMember,
        )
        .await;
    carol
        .expect_error(
            Command::Read {
                conversation: conversation.clone(),
                seq: 0,
            },
            ErrorCode::NotMember,
        )
        .await;
    let carol_token = token("carol");
    for answer in [
        server
            .get(
                &format!("/v1/conversations/{conversation}/messages"),
                &carol_token,
            )
            .await,
        server
            .get(&format!("/v1/conversations/{conversation}"), &carol_token)
            .await,
        server
            .get(
                &format!("/v1/conversations/{conversation}/members"),
                &carol_token,
            )
            .await,
        server
            .post(
                &format!("/v1/conversations/{conversation}/messages"),
                &carol_token,
                json!({"client_msg_id": "c-2", "body": "hi"}),
            )
            .await,
    ] {
        common::assert_rest_error(&answer, 403, ErrorCode::NotMember);
    }

    // "alice" of another tenant: the conversation does not exist for her.
    let other_alice = token_in("alice", "globex");
    for answer in [
        server
            .get(&format!("/v1/conversations/{conversation}"), &other_alice)
            .await,
        server
            .get(
                &format!("/v1/conversations/{conversation}/messages"),
                &other_alice,
            )
            .await,
        server
            .post(
                &format!("/v1/conversations/{conversation}/messages"),
                &other_alice,
                json!({"client_msg_id": "x-1", "body": "hi"}),
            )
            .await,
    ] {
        common::assert_rest_error(&answer, 404, ErrorCode::NotFound);
    }
    let (status, list) = server.get("/v1/conversations", &other_alice).await;
    assert_eq!(status, 200);
    assert_eq!(
        list["conversations"],
        json!([]),
        "another tenant sees no conversation"
    );
    let mut intruder = server.ws_with_token(&other_alice).await;
    intruder.expect_error(join, ErrorCode::NotFound).await;
    intruder
        .expect_error(
            send_command(&conversation, "x-2", "hi"),
            ErrorCode::NotFound,
        )
        .await;

    // Nothing leaked to the refused connections, and nothing was stored.
    let ack = alice
        .send_message(&conversation, "a-1", "members only")
        .await;
    assert_eq!(ack.seq, 1);
    carol.expect_silence(Duration::from_millis(300)).await;
    intruder.expect_silence(Duration::from_millis(100)).await;
    let history = server.history("alice", &conversation).await;
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].author, "alice");
}

#[tokio::test]
async fn duplicate_client_msg_ids_are_acked_once() {
    let server = Server::start().await;
    let conversation = server.create_group("alice", &["bob"]).await;
    let mut alice = server.ws("alice").await;
    let mut bob = server.ws("bob").await;
    alice.join(&conversation).await;
    bob.join(&conversation).await;

    // WebSocket, twice.
    let first = alice
        .send_message(&conversation, "dup-1", "only once")
        .await;
    let again = alice
        .send_message(&conversation, "dup-1", "only once")
        .await;
    assert!(!first.duplicate);
    assert!(again.duplicate, "the repeat is flagged duplicate");
    assert_eq!(
        (again.id.as_str(), again.seq),
        (first.id.as_str(), first.seq)
    );

    // REST, twice, then the same id over WebSocket.
    let (status, created) = server
        .post(
            &format!("/v1/conversations/{conversation}/messages"),
            &token("alice"),
            json!({"client_msg_id": "dup-2", "body": "via rest"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["duplicate"], false);
    assert_eq!(created["seq"], 2);
    let (status, repeated) = server
        .post(
            &format!("/v1/conversations/{conversation}/messages"),
            &token("alice"),
            json!({"client_msg_id": "dup-2", "body": "via rest"}),
        )
        .await;
    assert_eq!(status, 200, "{repeated}");
    assert_eq!(repeated["duplicate"], true);
    assert_eq!(repeated["id"], created["id"]);
    assert_eq!(repeated["seq"], created["seq"]);
    let over_ws = alice.send_message(&conversation, "dup-2", "via rest").await;
    assert!(over_ws.duplicate);
    assert_eq!(over_ws.seq, 2);
    assert_eq!(Some(over_ws.id.as_str()), created["id"].as_str());

    // Idempotency is per author: bob may use the same client_msg_id.
    let bobs = bob.send_message(&conversation, "dup-1", "mine").await;
    assert!(!bobs.duplicate);
    assert_eq!(bobs.seq, 3);

    // The other member saw each message exactly once.
    let seqs: Vec<u64> = [
        bob.recv_message().await,
        bob.recv_message().await,
        bob.recv_message().await,
    ]
    .iter()
    .map(|m| m.seq)
    .collect();
    assert_eq!(seqs, vec![1, 2, 3]);
    bob.expect_silence(Duration::from_millis(400)).await;

    let history = server.history("bob", &conversation).await;
    let bodies: Vec<(u64, &str)> = history.iter().map(|m| (m.seq, m.body.as_str())).collect();
    assert_eq!(bodies, vec![(1, "only once"), (2, "via rest"), (3, "mine")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_get_gapless_seqs() {
    const SENDERS: usize = 20;
    const EACH: usize = 10;
    let server = Server::start().await;
    let users: Vec<String> = (0..SENDERS).map(|i| format!("user{i:02}")).collect();
    let mut members: Vec<&str> = users.iter().skip(1).map(String::as_str).collect();
    members.push("watcher");
    let conversation = server.create_group(&users[0], &members).await;

    let mut watcher = server.ws("watcher").await;
    watcher.join(&conversation).await;

    let mut clients = Vec::new();
    for user in &users {
        let mut client = server.ws(user).await;
        client.join(&conversation).await;
        clients.push((user.clone(), client));
    }
    let mut tasks = Vec::new();
    for (user, mut client) in clients {
        let conversation = conversation.clone();
        tasks.push(tokio::spawn(async move {
            // Pipelined: every send goes out before the first ack is awaited.
            for i in 0..EACH {
                let frame = ClientFrame::with_ref(
                    format!("s{i}"),
                    send_command(
                        &conversation,
                        &format!("{user}-{i}"),
                        &format!("{user} says {i}"),
                    ),
                );
                client.send(frame).await;
            }
            let mut seqs = Vec::new();
            for i in 0..EACH {
                match client.reply_to(&format!("s{i}")).await {
                    ServerFrame::Ack {
                        seq,
                        duplicate: false,
                        ..
                    } => seqs.push(seq),
                    other => panic!("{user}: expected ack for s{i}, got {other:?}"),
                }
            }
            assert!(
                seqs.windows(2).all(|w| w[0] < w[1]),
                "{user}: acks of one connection in send order: {seqs:?}"
            );
            seqs
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("sender task"));
    }
    all.sort_unstable();
    let expected: Vec<u64> = (1..=(SENDERS * EACH) as u64).collect();
    assert_eq!(all, expected, "acked seqs are exactly 1..=200");

    let mut received = Vec::new();
    for _ in 0..SENDERS * EACH {
        received.push(watcher.recv_message().await.seq);
    }
    assert_eq!(
        received, expected,
        "the listener sees every message once, in seq order"
    );
    watcher.expect_silence(Duration::from_millis(300)).await;

    let distinct: BTreeSet<u64> = server
        .history("watcher", &conversation)
        .await
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(distinct.len(), SENDERS * EACH);
    // The frames nobody waited for carried no stray errors.
    assert!(watcher.buffered().iter().all(|f| frame_ref(f).is_none()));
}

/// A client may be connected on several devices: each joined connection of a member gets the
/// events.
#[tokio::test]
async fn every_device_of_a_member_receives_events() {
    let server = Server::start().await;
    let conversation = server.create_group("alice", &["bob"]).await;
    let mut phone = server.ws("bob").await;
    let mut laptop = server.ws("bob").await;
    phone.join(&conversation).await;
    laptop.join(&conversation).await;
    let mut alice = server.ws("alice").await;
    let ack = alice
        .send_message(&conversation, "m-1", "to all devices")
        .await;
    for device in [&mut phone, &mut laptop] {
        let message = device.recv_message().await;
        assert_eq!(message.id, ack.id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_retries_of_one_client_msg_id_store_one_message() {
    let server = std::sync::Arc::new(Server::start().await);
    let conversation = server.create_group("alice", &["bob"]).await;
    let mut bob = server.ws("bob").await;
    bob.join(&conversation).await;
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let server = server.clone();
        let conversation = conversation.clone();
        tasks.push(tokio::spawn(async move {
            server
                .post(
                    &format!("/v1/conversations/{conversation}/messages"),
                    &token("alice"),
                    json!({"client_msg_id": "retry-1", "body": "sent ten times"}),
                )
                .await
        }));
    }
    let mut created = 0;
    let mut ids = BTreeSet::new();
    for task in tasks {
        let (status, result) = task.await.expect("task");
        match status {
            201 => created += 1,
            200 => assert_eq!(result["duplicate"], true, "{result}"),
            other => panic!("unexpected status {other}: {result}"),
        }
        ids.insert(result["id"].as_str().expect("id").to_owned());
    }
    assert_eq!(
        created, 1,
        "exactly one of the racing sends created the message"
    );
    assert_eq!(ids.len(), 1, "every answer names the same message");
    assert_eq!(bob.recv_message().await.seq, 1);
    bob.expect_silence(Duration::from_millis(300)).await;
    assert_eq!(server.history("bob", &conversation).await.len(), 1);
}

#[tokio::test]
async fn replies_attachments_and_unicode_round_trip() {
    let server = Server::start().await;
    let conversation = server.create_group("alice", &["bob"]).await;
    let mut alice = server.ws("alice").await;
    let mut bob = server.ws("bob").await;
    bob.join(&conversation).await;
    let body = "héllo 👋🏽 — 日本語\nsecond line\ttab";
    let original = alice.send_message(&conversation, "u-1", body).await;
    // The client names the file by id; the server fills in what it stored.
    let jpeg = [b"\xFF\xD8\xFF\xE0\x00\x10JFIF\x00".as_slice(), &[0u8; 100]].concat();
    let file = server.upload("alice", "photo.jpg", &jpeg).await;
    let id = file["id"].as_str().expect("id").to_owned();
    let attachment = confab_protocol::rest::Attachment {
        id: id.clone(),
        name: Some("photo.jpg".into()),
        mime: Some("image/jpeg".into()),
        size: Some(jpeg.len() as u64),
    };
    let reference = confab_protocol::rest::Attachment {
        id,
        name: None,
        mime: None,
        size: None,
    };
    let reply = Command::Send {
        conversation: conversation.clone(),
        client_msg_id: "u-2".into(),
        body: String::new(),
        reply_to: Some(original.id.clone()),
        attachments: vec![reference.clone()],
    };
    match alice.request(reply).await {
        ServerFrame::Ack { seq, .. } => assert_eq!(seq, 2),
        other => panic!("an attachment-only reply is accepted, got {other:?}"),
    }
    let first = bob.recv_message().await;
    assert_eq!(first.body, body);
    let second = bob.recv_message().await;
    assert_eq!(second.reply_to.as_deref(), Some(original.id.as_str()));
    assert_eq!(second.attachments, vec![attachment.clone()]);
    let history = server.history("bob", &conversation).await;
    assert_eq!(history[0].body, body);
    assert_eq!(history[1].reply_to.as_deref(), Some(original.id.as_str()));
    assert_eq!(history[1].attachments, vec![attachment.clone()]);
    // Bob, a member, now reads the file; a made-up id is not found.
    let (status, _) = server
        .get(
            &format!("/v1/media/{}/meta", attachment.id),
            &common::token("bob"),
        )
        .await;
    assert_eq!(status, 200);
    let made_up = Command::Send {
        conversation: conversation.clone(),
        client_msg_id: "u-4".into(),
        body: "x.exe".into(),
        reply_to: None,
        attachments: vec![confab_protocol::rest::Attachment {
            id: "made-up-file".into(),
            name: Some("x.exe".into()),
            mime: None,
            size: Some(1 << 40),
        }],
    };
    // `conflict`, as for a `reply_to` that names no message: the conversation itself exists.
    alice.expect_error(made_up, ErrorCode::Conflict).await;

    let too_many = Command::Send {
        conversation: conversation.clone(),
        client_msg_id: "u-3".into(),
        body: "many".into(),
        reply_to: None,
        attachments: vec![attachment; 17],
    };
    alice.expect_error(too_many, ErrorCode::TooLarge).await;
}

#[tokio::test]
async fn a_removed_member_who_is_added_back_can_rejoin() {
    let server = Server::start().await;
    let conversation = server.create_group("alice", &["bob"]).await;
    let mut bob = server.ws("bob").await;
    bob.join(&conversation).await;
    let answer = server
        .delete(
            &format!("/v1/conversations/{conversation}/members/bob"),
            &token("alice"),
        )
        .await;
    assert_eq!(answer.0, 200, "{}", answer.1);
    assert!(matches!(
        bob.recv().await,
        ServerFrame::MemberRemoved { .. }
    ));
    bob.expect_error(
        Command::Join {
            conversation: conversation.clone(),
            since: None,
        },
        ErrorCode::NotMember,
    )
    .await;

    let answer = server
        .post(
            &format!("/v1/conversations/{conversation}/members"),
            &token("alice"),
            json!({"user": "bob"}),
        )
        .await;
    assert_eq!(answer.0, 201, "{}", answer.1);
    assert_eq!(bob.join(&conversation).await, 2);
    server
        .rest_send("alice", &conversation, "m-1", "welcome back")
        .await;
    assert_eq!(bob.recv_message().await.seq, 3);
    // Leaving by oneself works too, and ends delivery.
    let answer = server
        .delete(
            &format!("/v1/conversations/{conversation}/members/bob"),
            &token("bob"),
        )
        .await;
    assert_eq!(answer.0, 200, "{}", answer.1);
    assert!(matches!(
        bob.recv_until(|f| matches!(f, ServerFrame::MemberRemoved { .. }))
            .await,
        ServerFrame::MemberRemoved { seq: 4, .. }
    ));
    // Bob's own stream says so too (and said when he was added back).
    bob.recv_until(|f| matches!(f, ServerFrame::ConversationRemoved { user_seq: 4, .. }))
        .await;
    bob.drop_user_events();
    server
        .rest_send("alice", &conversation, "m-2", "gone again")
        .await;
    bob.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_sends_are_acked_in_order_and_other_commands_wait_for_them() {
    let server = Server::start().await;
    let conversation = server.create_group("alice", &["bob"]).await;
    let mut alice = server.ws("alice").await;
    let mut bob = server.ws("bob").await;
    alice.join(&conversation).await;
    bob.join(&conversation).await;

    // More sends than a connection may have in flight (32), one of them invalid, all written
    // before reading anything; then a ping, which must wait for them.
    const SENDS: usize = 48;
    const INVALID: usize = 20;
    for n in 0..SENDS {
        let body = if n == INVALID {
            String::new()
        } else {
            format!("pipelined {n}")
        };
        let command = send_command(&conversation, &format!("p-{n}"), &body);
        alice
            .send(ClientFrame::with_ref(format!("s{n}"), command))
            .await;
    }
    alice
        .send(ClientFrame::with_ref("ping", Command::Ping))
        .await;

    // Replies (acks, the error, the pong) come in the order of the commands.
    let mut replies = Vec::new();
    loop {
        let frame = alice.recv().await;
        match &frame {
            ServerFrame::Message(_) => continue,
            ServerFrame::Pong { .. } => {
                replies.push(frame);
                break;
            }
            _ => replies.push(frame),
        }
    }
    let refs: Vec<&str> = replies.iter().filter_map(frame_ref).collect();
    let expected: Vec<String> = (0..SENDS)
        .map(|n| format!("s{n}"))
        .chain(["ping".to_owned()])
        .collect();
    assert_eq!(refs, expected);
    let mut seqs = Vec::new();
    for (n, reply) in replies[..SENDS].iter().enumerate() {
        match reply {
            ServerFrame::Ack {
                seq, client_msg_id, ..
            } => {
                assert_ne!(n, INVALID, "the empty body is refused");
                assert_eq!(client_msg_id, &format!("p-{n}"));
                seqs.push(*seq);
            }
            ServerFrame::Error { code, .. } => {
                assert_eq!(n, INVALID, "only the empty body is refused");
                assert_eq!(*code, ErrorCode::Invalid);
            }
            other => panic!("unexpected reply {other:?}"),
        }
    }
    let in_order: Vec<u64> = (1..SENDS as u64).collect();
    assert_eq!(seqs, in_order, "seqs follow the order of the sends");

    // Everyone sees the messages in that order too.
    let mut bodies = Vec::new();
    for _ in 1..SENDS {
        let message = bob.recv_message().await;
        bodies.push((message.seq, message.body));
    }
    let expected: Vec<(u64, String)> = (0..SENDS)
        .filter(|n| *n != INVALID)
        .zip(1u64..)
        .map(|(n, seq)| (seq, format!("pipelined {n}")))
        .collect();
    assert_eq!(bodies, expected);
}

/// With `--write-delay-ms`, the first delivery to a quiet connection goes out at once and the
/// ones right after it wait for the next tick, going out together: nothing is lost or
/// reordered, and each session is woken once per tick rather than once per delivery.
#[tokio::test]
async fn a_write_delay_batches_deliveries_and_loses_nothing() {
    let server = Server::start_with(&["--write-delay-ms", "1000"]).await;
    let conversation = server.create_group("alice", &["bob"]).await;
    let mut alice = server.ws("alice").await;
    let mut bob = server.ws("bob").await;
    assert_eq!(alice.join(&conversation).await, 0);
    assert_eq!(bob.join(&conversation).await, 0);

    // Pipelined, so that all five commit well within the (longest) delay, even on a slow disk.
    for n in 1..=5 {
        alice
            .send(ClientFrame::with_ref(
                format!("w{n}"),
                send_command(&conversation, &format!("wd-{n}"), &format!("batched {n}")),
            ))
            .await;
    }
    for n in 1..=5u64 {
        match alice.reply_to(&format!("w{n}")).await {
            ServerFrame::Ack { seq, .. } => assert_eq!(seq, n),
            other => panic!("expected ack, got {other:?}"),
        }
    }
    for client in [&mut alice, &mut bob] {
        let seqs: Vec<u64> = {
            let mut seqs = Vec::new();
            for _ in 0..5 {
                seqs.push(client.recv_message().await.seq);
            }
            seqs
        };
        assert_eq!(seqs, [1, 2, 3, 4, 5]);
    }
    // Ephemeral frames take the same path.
    alice
        .expect_ok(Command::Typing {
            conversation: conversation.clone(),
        })
        .await;
    match bob
        .recv_until(|f| matches!(f, ServerFrame::Typing { .. }))
        .await
    {
        ServerFrame::Typing { user, .. } => assert_eq!(user, "alice"),
        other => unreachable!("{other:?}"),
    }

    let metrics = server.metrics().await;
    let deliveries =
        common::metric_value(&metrics, "confab_fanout_deliveries_total").unwrap_or(0.0);
    let wakes = common::metric_value(&metrics, "confab_write_delay_wakes_total").unwrap_or(0.0);
    assert!(deliveries >= 11.0, "{deliveries} deliveries");
    // Two sessions, each woken at once for the first message, by a tick for the other four (by
    // two, should they straddle one), and bob by one more for the typing frame (unless it
    // came a whole delay after his last wake).
    assert!(
        (2.0..=5.0).contains(&wakes),
        "{wakes} tick wakes for {deliveries} deliveries"
    );
}

/// With `--write-delay auto`, a busy conversation is held back (by the target) once that
/// shares wake-ups, and a quiet one is not: the server's choice shows in
/// `confab_write_delay_seconds`, and nothing is lost or reordered either way.
#[tokio::test]
async fn an_automatic_write_delay_holds_back_only_busy_traffic() {
    let server =
        Server::start_with(&["--write-delay", "auto", "--write-delay-target", "50ms"]).await;
    let conversation = server.create_group("alice", &["bob", "carol"]).await;
    let mut alice = server.ws("alice").await;
    let mut bob = server.ws("bob").await;
    let mut carol = server.ws("carol").await;
    for client in [&mut alice, &mut bob, &mut carol] {
        assert_eq!(client.join(&conversation).await, 0);
    }
    let held = || async {
        let metrics = server.metrics().await;
        common::metric_value(&metrics, "confab_write_delay_seconds")
    };
    assert_eq!(held().await, Some(0.0), "nothing held back at rest");

    // Bursts of pipelined messages: every reader gets many per 50 ms, so holding back pays.
    // Bounded: until the server holds back, or 20 s.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut sent = 0u64;
    while held().await != Some(0.05) {
        assert!(std::time::Instant::now() < deadline, "never held back");
        for _ in 0..16 {
            sent += 1;
            alice
                .send(ClientFrame::with_ref(
                    format!("a{sent}"),
                    send_command(
                        &conversation,
                        &format!("auto-{sent}"),
                        &format!("busy {sent}"),
                    ),
                ))
                .await;
        }
        for n in sent - 15..=sent {
            match alice.reply_to(&format!("a{n}")).await {
                ServerFrame::Ack { seq, .. } => assert_eq!(seq, n),
                other => panic!("expected ack, got {other:?}"),
            }
        }
    }
    let per_wake = common::metric_value(
        &server.metrics().await,
        "confab_write_delay_deliveries_per_wakeup",
    )
    .expect("the measure it chose on");
    assert!(
        per_wake >= 2.0,
        "held back at {per_wake} deliveries per wake-up"
    );
    for client in [&mut bob, &mut carol] {
        for n in 1..=sent {
            assert_eq!(client.recv_message().await.seq, n);
        }
    }

    // Quiet again: after a second or two the server stops holding back.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while held().await != Some(0.0) {
        assert!(
            std::time::Instant::now() < deadline,
            "still holding back when quiet"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    alice
        .send(ClientFrame::with_ref(
            "last",
            send_command(&conversation, "auto-last", "quiet"),
        ))
        .await;
    assert!(matches!(
        alice.reply_to("last").await,
        ServerFrame::Ack { .. }
    ));
    assert_eq!(bob.recv_message().await.seq, sent + 1);
}
