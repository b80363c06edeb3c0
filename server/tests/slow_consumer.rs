//! Slow consumers: a client that stops reading is cut off (4008) without slowing the room.

mod common;

use std::time::{Duration, Instant};

use common::{Server, metric_value};
use confab_protocol::{ErrorCode, ServerFrame};

const SLOW_METRIC: &str = "confab_slow_consumers_dropped_total";

/// Sends messages (12 KiB each, one ack at a time) until the server reports a slow consumer;
/// returns how many were sent. The kernel lets the server's send buffer to a client that does
/// not read grow to `tcp_wmem` max (4 MiB by default), so a few hundred such messages are needed
/// before the server's queue for that client fills.
async fn flood_until_kicked(
    server: &Server,
    sender: &mut common::WsClient,
    conversation: &str,
) -> u64 {
    let body = "x".repeat(12 * 1024);
    let mut sent = 0u64;
    loop {
        for _ in 0..25 {
            sent += 1;
            let ack = sender
                .send_message(conversation, &format!("flood-{sent}"), &body)
                .await;
            assert_eq!(ack.seq, sent);
        }
        sender.clear_buffer();
        let kicked = metric_value(&server.metrics().await, SLOW_METRIC).unwrap_or(0.0);
        if kicked >= 1.0 {
            eprintln!("slow consumer detected after {sent} messages");
            return sent;
        }
        assert!(
            sent < 3000,
            "no slow consumer detected after {sent} messages of 2 KiB"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed_with_4008_and_others_get_everything() {
    let server = Server::start_with(&["--outbound-queue", "16"]).await;
    let conversation = server.create_group("alice", &["bob", "carol"]).await;
    let mut alice = server.ws("alice").await;
    let mut bob = server.ws("bob").await;
    let mut carol = server.ws_small_buffer("carol").await;
    bob.join(&conversation).await;
    carol.join(&conversation).await;

    // bob reads everything, concurrently.
    // The number of messages sent, once the flood is over.
    let (done_tx, done_rx) = tokio::sync::watch::channel(0u64);
    let reader = tokio::spawn(async move {
        let mut seqs = Vec::new();
        loop {
            let target = *done_rx.borrow();
            if target > 0 && seqs.len() as u64 >= target {
                return seqs;
            }
            match bob.try_recv(Duration::from_millis(200)).await {
                Some(ServerFrame::Message(m)) => seqs.push(m.seq),
                Some(other) => panic!("bob got {other:?}"),
                None => {}
            }
        }
    });

    let sent = flood_until_kicked(&server, &mut alice, &conversation).await;
    done_tx.send(sent).expect("reader alive");
    let seqs = tokio::time::timeout(Duration::from_secs(20), reader)
        .await
        .expect("bob received every message in time")
        .expect("reader task");
    assert_eq!(
        seqs,
        (1..=sent).collect::<Vec<u64>>(),
        "the reading member got every message in order"
    );

    // carol now reads: some messages, maybe an error frame, then close 4008.
    let closed = carol.expect_close(Duration::from_secs(10)).await;
    assert_eq!(
        closed.code,
        Some(4008),
        "close code after {} frames",
        closed.frames.len()
    );
    for frame in &closed.frames {
        match frame {
            ServerFrame::Message(_) => {}
            ServerFrame::Error { code, .. } => assert_eq!(*code, ErrorCode::SlowConsumer),
            other => panic!("unexpected frame for the slow consumer: {other:?}"),
        }
    }
    let metrics = server.metrics().await;
    assert!(metric_value(&metrics, SLOW_METRIC).unwrap_or(0.0) >= 1.0);
    // The room was not slowed down: alice can still send, bob would still receive.
    let ack = alice
        .send_message(&conversation, "after", "still flowing")
        .await;
    assert_eq!(ack.seq, sent + 1);
}

/// The protocol promises that a client too slow to drain its queue is disconnected; a client
/// that stops reading altogether must be disconnected too, without its cooperation (otherwise
/// its session, socket and buffers live forever, and heartbeats cannot close it either).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_is_disconnected_without_reading() {
    let server = Server::start_with(&["--outbound-queue", "16"]).await;
    let conversation = server.create_group("alice", &["carol"]).await;
    let mut alice = server.ws("alice").await;
    let mut carol = server.ws_small_buffer("carol").await;
    carol.join(&conversation).await;
    let active_before =
        metric_value(&server.metrics().await, "confab_connections_active").unwrap_or(0.0);
    assert_eq!(active_before, 2.0);

    flood_until_kicked(&server, &mut alice, &conversation).await;

    // carol never reads; her connection must still go away.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let active =
            metric_value(&server.metrics().await, "confab_connections_active").unwrap_or(0.0);
        if active <= 1.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stalled slow consumer is still connected 10 s after it was marked slow ({active} active)"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(carol);
}
