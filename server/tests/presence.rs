//! Presence on one node: `presence` frames on 0↔1 transitions of a user's connections in a
//! conversation, only to connections opened with `?presence=true`, and the `online` snapshot
//! that `joined` carries.

mod common;

use std::time::Duration;

use common::{Server, WsClient};
use confab_protocol::{Command, ServerFrame};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Joins and returns the `online` snapshot of the `joined` reply.
async fn join_online(client: &mut WsClient, conversation: &str) -> Vec<String> {
    let command = Command::Join {
        conversation: conversation.to_owned(),
        since: None,
    };
    match client.request(command).await {
        ServerFrame::Joined { online, .. } => online,
        other => panic!("join {conversation}: {other:?}"),
    }
}

fn presence(conversation: &str, user: &str, online: bool) -> ServerFrame {
    ServerFrame::Presence {
        conversation: conversation.to_owned(),
        user: user.to_owned(),
        online,
    }
}

#[tokio::test]
async fn presence_follows_the_first_and_last_connection_of_each_user() {
    let server = Server::in_process(&[]).await;
    let conversation = server.create_group("alice", &["bob"]).await;
    let mut alice = server.ws_presence("alice").await;
    let mut bob = server.ws_presence("bob").await;
    let mut bob_phone = server.ws_presence("bob").await;
    // A connection that did not ask for presence gets none.
    let mut plain = server.ws("alice").await;

    assert_eq!(join_online(&mut alice, &conversation).await, vec!["alice"]);
    plain.join(&conversation).await;
    assert_eq!(
        join_online(&mut bob, &conversation).await,
        vec!["alice", "bob"]
    );
    assert_eq!(alice.recv().await, presence(&conversation, "bob", true));

    // A second device: no second `online`, to anyone.
    assert_eq!(
        join_online(&mut bob_phone, &conversation).await,
        vec!["alice", "bob"]
    );
    alice.expect_silence(Duration::from_millis(300)).await;
    bob.expect_silence(Duration::from_millis(100)).await;

    // One device leaves: bob is still online.
    assert!(matches!(
        bob_phone
            .request(Command::Leave {
                conversation: conversation.clone()
            })
            .await,
        ServerFrame::Left { .. }
    ));
    alice.expect_silence(Duration::from_millis(300)).await;

    // The last one disconnects: offline.
    bob.close().await;
    assert_eq!(alice.recv().await, presence(&conversation, "bob", false));
    // Back on the other device: online again, and bob's device sees alice in the snapshot.
    assert_eq!(
        join_online(&mut bob_phone, &conversation).await,
        vec!["alice", "bob"]
    );
    assert_eq!(alice.recv().await, presence(&conversation, "bob", true));
    // Alice leaving is seen by bob's remaining device.
    assert!(matches!(
        alice
            .request(Command::Leave {
                conversation: conversation.clone()
            })
            .await,
        ServerFrame::Left { .. }
    ));
    bob_phone.expect_silence(Duration::from_millis(300)).await;
    // Bob came and went three times while `plain` was joined: it got no presence frame.
    plain.expect_silence(Duration::from_millis(100)).await;
    plain.close().await;
    assert_eq!(
        bob_phone.recv().await,
        presence(&conversation, "alice", false)
    );
}

#[tokio::test]
async fn a_malformed_presence_flag_is_refused_with_invalid() {
    let server = Server::in_process(&[]).await;
    let url = format!(
        "{}?presence=maybe&token={}",
        server.ws_url(),
        common::token("alice")
    );
    let (status, body) = server
        .ws_refused(url.into_client_request().expect("request"))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid", "{body}");
}

/// A user joining and leaving in a loop (issue 15: 50,000 join/leave pairs used to send
/// 100,000 presence frames to each observer): observers get at most three frames per presence
/// window (`PRESENCE_WINDOW`, 1 s), and the last one they get is the user's final state.
#[tokio::test]
async fn a_user_flapping_in_a_loop_is_coalesced_for_observers() {
    const PAIRS: usize = 200;
    let server = Server::start().await;
    let conversation = server.create_group("alice", &["mallory"]).await;
    let mut alice = server.ws_presence("alice").await;
    join_online(&mut alice, &conversation).await;
    let mut mallory = server.ws("mallory").await;
    let started = std::time::Instant::now();
    for _ in 0..PAIRS {
        mallory.join(&conversation).await;
        let left = mallory
            .request(Command::Leave {
                conversation: conversation.clone(),
            })
            .await;
        assert!(matches!(left, ServerFrame::Left { .. }), "{left:?}");
    }
    // Ends online.
    mallory.join(&conversation).await;
    let looped = started.elapsed();
    // Everything alice gets until a held flip must have gone out (one window after the loop).
    let mut frames = Vec::new();
    while let Some(frame) = alice.try_recv(Duration::from_millis(1500)).await {
        frames.push(frame);
    }
    let windows = looped.as_secs() as usize + 2;
    assert!(
        !frames.is_empty() && frames.len() <= 3 * windows,
        "{} presence frames for {} flips in {looped:?}",
        frames.len(),
        2 * PAIRS + 1
    );
    assert_eq!(
        frames.last(),
        Some(&presence(&conversation, "mallory", true)),
        "the final state last"
    );
    let metrics = server.metrics().await;
    let coalesced = common::metric_value(&metrics, "confab_presence_coalesced_total");
    assert!(coalesced.is_some_and(|v| v > 0.0), "{coalesced:?}");
    eprintln!(
        "{} flips in {looped:?}: {} presence frames to the observer",
        2 * PAIRS + 1,
        frames.len()
    );
}
