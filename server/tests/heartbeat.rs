//! Heartbeats: the server pings, a client that answers stays, a silent one is closed with 4002.

mod common;

use std::time::{Duration, Instant};

use common::Server;
use confab_protocol::{Command, ErrorCode, ServerFrame};
use tokio_tungstenite::tungstenite::Message;

async fn heartbeat_server() -> Server {
    Server::start_with(&["--heartbeat-secs", "1", "--idle-timeout-secs", "2"]).await
}

#[tokio::test]
async fn the_server_pings_and_a_responsive_client_stays_connected() {
    let server = heartbeat_server().await;
    let mut client = server.ws("alice").await;
    match client.welcome.as_ref().expect("welcome") {
        ServerFrame::Welcome { heartbeat_ms, .. } => assert_eq!(*heartbeat_ms, 1000),
        other => panic!("{other:?}"),
    }
    // Reading answers pings automatically (tungstenite queues the pong and flushes it).
    let started = Instant::now();
    let mut pings = 0;
    while started.elapsed() < Duration::from_millis(4500) {
        match client.next_message(Duration::from_millis(200)).await {
            None => {}
            Some(Ok(Message::Ping(_))) => pings += 1,
            Some(other) => panic!("unexpected {other:?} from an idle connection"),
        }
    }
    assert!(
        pings >= 3,
        "expected a ping about every second, got {pings} in 4.5 s"
    );
    // Past the idle timeout, still alive: the pongs count as traffic.
    assert!(matches!(
        client.request(confab_protocol::Command::Ping).await,
        ServerFrame::Pong { .. }
    ));
}

#[tokio::test]
async fn a_client_that_never_answers_is_closed_with_4002() {
    let server = heartbeat_server().await;
    let mut client = server.ws("alice").await;
    // Read nothing (so no pong is sent) for longer than the idle timeout.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let closed = client.expect_close(Duration::from_secs(3)).await;
    assert_eq!(closed.code, Some(4002), "frames: {:?}", closed.frames);
}

/// A client that stops reading while events are still small enough to fit its outbound queue:
/// the server's writes to it block once the socket buffers are full. The idle timeout must
/// still close it (nothing arrives from it), as must shutdown; a blocked write must not pin the
/// session forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_under_the_queue_limit_is_closed_by_the_idle_timeout() {
    let server = heartbeat_server().await;
    let conversation = server.create_group("alice", &["carol"]).await;
    let mut carol = server.ws_small_buffer("carol").await;
    carol.join(&conversation).await;
    // About 5.4 MB: more than the socket buffers hold (the kernel grows the server's send
    // buffer up to `tcp_wmem` max, 4 MiB by default), far fewer frames than the queue (1024)
    // holds, so the hub never kicks carol as a slow consumer.
    let body = "s".repeat(15_000);
    for i in 1..=360 {
        server
            .rest_send("alice", &conversation, &format!("m-{i}"), &body)
            .await;
    }
    let metrics = server.metrics().await;
    assert_eq!(
        common::metric_value(&metrics, "confab_slow_consumers_dropped_total").unwrap_or(0.0),
        0.0
    );

    // carol sends nothing: within the idle timeout (2 s) plus a heartbeat or two, she is gone.
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let active = common::metric_value(&server.metrics().await, "confab_connections_active")
            .unwrap_or(0.0);
        if active == 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a stalled client is still connected 8 s later, with a 2 s idle timeout ({active} active)"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(carol);
}

/// A WebSocket does not outlive its token: at expiry the server sends `unauthorized` and closes
/// with 4003, unless the client sent `refresh` with a newer token for the same user and tenant.
#[tokio::test]
async fn an_expired_token_closes_the_connection_with_4003_unless_refreshed() {
    let server = Server::start_with(&["--heartbeat-secs", "1", "--idle-timeout-secs", "30"]).await;
    let short = common::keys()
        .mint("alice", common::TENANT, None, Duration::from_secs(2))
        .expect("mint");
    let mut expiring = server.ws_with_token(&short).await;
    let mut refreshed = server.ws_with_token(&short).await;

    // Another user's token, another tenant's, or no valid token: refused, connection kept.
    refreshed
        .expect_error(
            Command::Refresh {
                token: common::token("bob"),
            },
            ErrorCode::Forbidden,
        )
        .await;
    refreshed
        .expect_error(
            Command::Refresh {
                token: common::token_in("alice", "other-tenant"),
            },
            ErrorCode::Forbidden,
        )
        .await;
    refreshed
        .expect_error(
            Command::Refresh {
                token: "not-a-token".into(),
            },
            ErrorCode::Unauthorized,
        )
        .await;
    refreshed
        .expect_ok(Command::Refresh {
            token: common::token("alice"),
        })
        .await;

    let closed = expiring.expect_close(Duration::from_secs(6)).await;
    assert_eq!(closed.code, Some(4003), "frames: {:?}", closed.frames);
    assert!(
        closed.frames.iter().any(|frame| matches!(
            frame,
            ServerFrame::Error {
                code: ErrorCode::Unauthorized,
                ..
            }
        )),
        "an unauthorized error before the close: {:?}",
        closed.frames
    );
    // The refreshed connection outlives the first token.
    assert!(matches!(
        refreshed.request(Command::Ping).await,
        ServerFrame::Pong { .. }
    ));
}
