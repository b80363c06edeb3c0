//! Resuming with `join {since}`: exactly the missed durable events, in order, once.

mod common;

use std::time::Duration;

use common::{Server, frame_type};
use confab_protocol::{Command, ServerFrame};

#[tokio::test]
async fn join_since_replays_exactly_the_missed_events() {
    let server = Server::in_process(&[]).await;
    let conversation = server.create_group("alice", &["bob"]).await;
    let mut alice = server.ws("alice").await;
    alice.join(&conversation).await;

    let mut bob = server.ws("bob").await;
    bob.join(&conversation).await;
    alice
        .send_message(&conversation, "m-0", "before the gap")
        .await;
    let last_seen = bob.recv_message().await.seq;
    assert_eq!(last_seen, 1);
    bob.close().await;

    // What bob misses: three messages, an edit, a delete, a reaction and its removal, plus
    // ephemeral traffic that must not be replayed.
    let m1 = alice.send_message(&conversation, "m-1", "one").await;
    let m2 = alice.send_message(&conversation, "m-2", "two").await;
    let m3 = alice.send_message(&conversation, "m-3", "three").await;
    let edit = Command::Edit {
        message: m1.id.clone(),
        body: "one, edited".into(),
    };
    assert_eq!(alice.expect_ok(edit).await, Some(5));
    assert_eq!(
        alice
            .expect_ok(Command::Delete {
                message: m2.id.clone()
            })
            .await,
        Some(6)
    );
    let react = Command::React {
        message: m3.id.clone(),
        emoji: "👍".into(),
    };
    assert_eq!(alice.expect_ok(react).await, Some(7));
    let unreact = Command::Unreact {
        message: m3.id.clone(),
        emoji: "👍".into(),
    };
    assert_eq!(alice.expect_ok(unreact).await, Some(8));
    alice
        .send_command(Command::Typing {
            conversation: conversation.clone(),
        })
        .await;
    alice
        .expect_ok(Command::Read {
            conversation: conversation.clone(),
            seq: 8,
        })
        .await;

    let mut bob = server.ws("bob").await;
    let (last_seq, recovered) = bob.join_since(&conversation, last_seen).await;
    assert_eq!((last_seq, recovered), (8, true));
    let mut replayed = Vec::new();
    for _ in 0..7 {
        replayed.push(bob.recv().await);
    }
    let kinds: Vec<String> = replayed.iter().map(frame_type).collect();
    assert_eq!(
        kinds,
        [
            "message",
            "message",
            "message",
            "message_edited",
            "message_deleted",
            "reaction_added",
            "reaction_removed"
        ]
    );
    let seqs: Vec<u64> = replayed
        .iter()
        .map(|f| f.durable_position().expect("durable").1)
        .collect();
    assert_eq!(seqs, (2..=8).collect::<Vec<u64>>());
    match &replayed[0] {
        ServerFrame::Message(m) => {
            assert_eq!((m.id.as_str(), m.body.as_str()), (m1.id.as_str(), "one"))
        }
        other => panic!("{other:?}"),
    }
    match &replayed[3] {
        ServerFrame::MessageEdited {
            message,
            body,
            author,
            ..
        } => {
            assert_eq!(
                (message.as_str(), body.as_str(), author.as_str()),
                (m1.id.as_str(), "one, edited", "alice")
            );
        }
        other => panic!("{other:?}"),
    }
    match &replayed[4] {
        ServerFrame::MessageDeleted { message, by, .. } => {
            assert_eq!((message, by.as_str()), (&m2.id, "alice"))
        }
        other => panic!("{other:?}"),
    }
    match &replayed[6] {
        ServerFrame::ReactionRemoved {
            message,
            user,
            emoji,
            ..
        } => {
            assert_eq!(
                (message, user.as_str(), emoji.as_str()),
                (&m3.id, "alice", "👍")
            );
        }
        other => panic!("{other:?}"),
    }
    bob.expect_silence(Duration::from_millis(400)).await;

    // Live again, with nothing doubled.
    let m4 = alice.send_message(&conversation, "m-4", "live").await;
    assert_eq!(m4.seq, 9);
    let live = bob.recv_message().await;
    assert_eq!(live.seq, 9);
    bob.expect_silence(Duration::from_millis(300)).await;

    // Joining at the head replays nothing.
    let mut up_to_date = server.ws("bob").await;
    assert_eq!(up_to_date.join_since(&conversation, 9).await, (9, true));
    up_to_date.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_gap_past_the_replay_cap_is_not_recovered() {
    let server = Server::in_process(&["--replay-cap", "5"]).await;
    let conversation = server.create_group("alice", &["bob"]).await;
    for i in 1..=10 {
        server
            .rest_send(
                "alice",
                &conversation,
                &format!("m-{i}"),
                &format!("message {i}"),
            )
            .await;
    }

    // 10 missed > cap 5: nothing replayed, page through REST instead.
    let mut bob = server.ws("bob").await;
    match bob.welcome.as_ref().expect("welcome") {
        ServerFrame::Welcome { limits, .. } => assert_eq!(limits.replay_cap, 5),
        other => panic!("{other:?}"),
    }
    assert_eq!(bob.join_since(&conversation, 0).await, (10, false));
    bob.expect_silence(Duration::from_millis(400)).await;
    // Live events continue after last_seq.
    server
        .rest_send("alice", &conversation, "m-11", "live")
        .await;
    assert_eq!(bob.recv_message().await.seq, 11);
    bob.expect_silence(Duration::from_millis(200)).await;

    // Exactly the cap: recovered.
    let mut exact = server.ws("bob").await;
    assert_eq!(exact.join_since(&conversation, 6).await, (11, true));
    let seqs: Vec<u64> = [
        exact.recv_message().await,
        exact.recv_message().await,
        exact.recv_message().await,
        exact.recv_message().await,
        exact.recv_message().await,
    ]
    .iter()
    .map(|m| m.seq)
    .collect();
    assert_eq!(seqs, vec![7, 8, 9, 10, 11]);
    exact.expect_silence(Duration::from_millis(300)).await;

    // One past the cap: not recovered.
    let mut over = server.ws("bob").await;
    assert_eq!(over.join_since(&conversation, 5).await, (11, false));
    over.expect_silence(Duration::from_millis(300)).await;
}

/// Joining with `since` while messages keep coming: replay and live events together are
/// gapless and never doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_since_during_a_burst_is_gapless() {
    const TOTAL: u64 = 150;
    let server = Server::in_process(&[]).await;
    let conversation = server.create_group("alice", &["bob"]).await;
    let mut alice = server.ws("alice").await;
    let sender = {
        let conversation = conversation.clone();
        tokio::spawn(async move {
            for i in 1..=TOTAL {
                let ack = alice
                    .send_message(&conversation, &format!("m-{i}"), "burst")
                    .await;
                assert_eq!(ack.seq, i);
            }
        })
    };
    // Let part of the burst land, then join from the start.
    tokio::time::sleep(Duration::from_millis(30)).await;
    let mut bob = server.ws("bob").await;
    let (last_seq, recovered) = bob.join_since(&conversation, 0).await;
    assert!(recovered);
    assert!(last_seq <= TOTAL);
    let mut seqs = Vec::new();
    while seqs.len() < TOTAL as usize {
        seqs.push(bob.recv_message().await.seq);
    }
    sender.await.expect("sender");
    assert_eq!(seqs, (1..=TOTAL).collect::<Vec<u64>>());
    bob.expect_silence(Duration::from_millis(300)).await;
}

/// "What a deleted message said is never shown again": not in history, and not in the events a
/// resuming client is replayed either (the stored `message` and `message_edited` frames).
#[tokio::test]
async fn replay_does_not_reveal_deleted_messages() {
    let server = Server::in_process(&[]).await;
    let conversation = server.create_group("alice", &["bob"]).await;
    let mut alice = server.ws("alice").await;
    let secret = alice
        .send_message(&conversation, "s-1", "my password is hunter2")
        .await;
    let edit = Command::Edit {
        message: secret.id.clone(),
        body: "oops, hunter2 again".into(),
    };
    alice.expect_ok(edit).await;
    let kept = alice
        .send_message(&conversation, "k-1", "this one stays")
        .await;
    alice
        .expect_ok(Command::Delete {
            message: secret.id.clone(),
        })
        .await;

    let history = server.history("bob", &conversation).await;
    assert!(
        history.iter().all(|m| !m.body.contains("hunter2")),
        "{history:?}"
    );

    let mut bob = server.ws("bob").await;
    assert_eq!(bob.join_since(&conversation, 0).await, (4, true));
    let mut replayed = Vec::new();
    for _ in 0..4 {
        replayed.push(bob.recv().await);
    }
    let seqs: Vec<u64> = replayed
        .iter()
        .map(|f| f.durable_position().expect("durable").1)
        .collect();
    assert_eq!(seqs, vec![1, 2, 3, 4]);
    for frame in &replayed {
        let json = serde_json::to_string(frame).expect("serialize");
        assert!(
            !json.contains("hunter2"),
            "a replayed frame reveals a deleted message: {json}"
        );
    }
    match &replayed[2] {
        ServerFrame::Message(m) => assert_eq!(
            (m.id.as_str(), m.body.as_str()),
            (kept.id.as_str(), "this one stays")
        ),
        other => panic!("{other:?}"),
    }
}
