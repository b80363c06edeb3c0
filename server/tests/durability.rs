//! Acked means durable: `kill -9` loses nothing acked, and SIGTERM shuts down gracefully.

mod common;

use std::time::Duration;

use common::{Server, send_command};
use confab_protocol::{ClientFrame, ServerFrame};

#[tokio::test]
async fn acked_messages_survive_kill_9() {
    const COUNT: u64 = 50;
    let mut server = Server::start().await;
    let conversation = server.create_group("alice", &["bob"]).await;
    let mut alice = server.ws("alice").await;
    // Pipelined sends, acked as they are stored.
    for i in 1..=COUNT {
        let frame = ClientFrame::with_ref(
            format!("s{i}"),
            send_command(&conversation, &format!("m-{i}"), &format!("durable {i}")),
        );
        alice.send(frame).await;
    }
    let mut acked = Vec::new();
    for i in 1..=COUNT {
        match alice.reply_to(&format!("s{i}")).await {
            ServerFrame::Ack {
                id,
                seq,
                client_msg_id,
                ..
            } => acked.push((seq, id, client_msg_id)),
            other => panic!("expected ack s{i}, got {other:?}"),
        }
    }
    let seqs: Vec<u64> = acked.iter().map(|a| a.0).collect();
    assert_eq!(seqs, (1..=COUNT).collect::<Vec<u64>>());

    server.kill9();
    drop(alice);
    server.restart().await;

    let history = server.history("bob", &conversation).await;
    let stored: Vec<(u64, String, String)> = history
        .iter()
        .map(|m| (m.seq, m.id.clone(), m.client_msg_id.clone()))
        .collect();
    assert_eq!(
        stored, acked,
        "every acked message survived with its seq and id"
    );
    for message in &history {
        assert_eq!(message.body, format!("durable {}", message.seq));
    }

    // Seqs continue where they stopped, and a retried send is still recognised.
    let mut alice = server.ws("alice").await;
    let next = alice
        .send_message(&conversation, "m-51", "after the crash")
        .await;
    assert_eq!((next.seq, next.duplicate), (COUNT + 1, false));
    let retried = alice
        .send_message(&conversation, "m-50", "durable 50")
        .await;
    assert!(retried.duplicate);
    assert_eq!(retried.seq, COUNT);
}

#[tokio::test]
async fn sigterm_closes_sessions_with_going_away_and_exits_cleanly() {
    let mut server = Server::start().await;
    let conversation = server.create_group("alice", &["bob"]).await;
    let mut alice = server.ws("alice").await;
    let mut bob = server.ws("bob").await;
    alice.join(&conversation).await;
    bob.join(&conversation).await;
    for i in 1..=5 {
        alice
            .send_message(&conversation, &format!("m-{i}"), "before shutdown")
            .await;
    }
    for _ in 1..=5 {
        bob.recv_message().await;
    }

    server.sigterm();
    for client in [&mut alice, &mut bob] {
        let closed = client.expect_close(Duration::from_secs(10)).await;
        assert_eq!(
            closed.code,
            Some(1001),
            "frames before close: {:?}",
            closed.frames
        );
    }
    let status = server.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "confab exited with {status}");

    server.restart().await;
    let history = server.history("alice", &conversation).await;
    assert_eq!(history.len(), 5);
    assert_eq!(history.last().map(|m| m.seq), Some(5));
}

#[tokio::test]
async fn sigterm_with_an_idle_client_exits_promptly() {
    let mut server = Server::start_with(&["--shutdown-grace-secs", "10"]).await;
    let mut idle = server.ws("alice").await;
    let started = std::time::Instant::now();
    server.sigterm();
    let closed = idle.expect_close(Duration::from_secs(5)).await;
    assert_eq!(closed.code, Some(1001));
    let status = server.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "confab exited with {status}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        started.elapsed()
    );
}
