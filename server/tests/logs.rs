//! What the server logs: never a token, at any level.

mod common;

use common::{Server, token};

/// At `--log trace` no token reaches the log: not from a `?token=` upgrade, not from an `auth`
/// frame (tungstenite traces whole frames and requests; it is held at debug).
#[tokio::test]
async fn tokens_never_reach_the_log_even_at_trace() {
    let server = Server::start_with(&["--log", "trace"]).await;
    let query_token = token("ann");
    let by_query = server.ws_query_token(&query_token).await;
    by_query.close().await;
    let frame_token = token("bob");
    let mut by_frame = server.ws_anonymous().await;
    by_frame
        .send_text(serde_json::json!({"type": "auth", "token": frame_token}).to_string())
        .await;
    by_frame.expect_welcome().await;
    by_frame.close().await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let log = server.log();
    assert!(log.contains("TRACE"), "the log is at trace");
    for (how, token) in [("query", &query_token), ("auth frame", &frame_token)] {
        let signature = token.rsplit('.').next().expect("jwt");
        assert!(!log.contains(signature), "the {how} token is in the log");
    }
}

/// The WebSocket library follows the filter below trace like any crate: at `--log warn` a
/// client that closes leaves nothing in the log (it once logged two debug lines per close,
/// whatever the filter said). At `--log debug` its debug lines are there, and no trace line.
#[tokio::test]
async fn the_websocket_library_follows_the_log_filter() {
    for (filter, debug_expected) in [("warn", false), ("info", false), ("debug", true)] {
        let server = Server::start_with(&["--log", filter]).await;
        let client = server.ws_query_token(&token("ann")).await;
        client.close().await;
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let log = server.log();
        let library_lines: Vec<&str> = log
            .lines()
            .filter(|line| line.contains("tungstenite"))
            .collect();
        assert!(
            library_lines.iter().all(|line| !line.contains("TRACE")),
            "{filter}: {library_lines:?}"
        );
        if debug_expected {
            assert!(
                library_lines.iter().any(|line| line.contains("DEBUG")),
                "{filter}: the library's debug lines are missing:\n{log}"
            );
        } else {
            assert!(
                library_lines.is_empty(),
                "{filter}: the library logged {library_lines:?}"
            );
        }
    }
}
