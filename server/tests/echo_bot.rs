//! The example bot (`server/examples/echo_bot.rs`) against the real server: it finds its
//! conversations over REST, joins them over WebSocket, and answers `!ping` with a `pong` that
//! replies to it — once, even when asked twice with the same message.

mod common;

#[path = "../examples/echo_bot.rs"]
#[allow(dead_code)]
mod echo_bot;

use std::time::Duration;

use common::Server;
use confab_protocol::ServerFrame;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_echo_bot_answers_ping_with_pong() {
    let server = Server::in_process(&[]).await;
    let conversation = server.create_group("alice", &["echo-bot"]).await;
    let bot = tokio::spawn(echo_bot::run(echo_bot::BotConfig {
        base_url: server.base(),
        token: common::token("echo-bot"),
        conversations: Vec::new(),
    }));
    let mut alice = server.ws("alice").await;
    alice.join(&conversation).await;

    // The bot joins without `since`, so pings sent before it joined go unanswered: ask until
    // it answers (bounded).
    let mut pings = Vec::new();
    let mut pong = None;
    for attempt in 0..40 {
        let acked = alice
            .send_message(&conversation, &format!("ping-{attempt}"), "!ping")
            .await;
        pings.push(acked.id);
        let deadline = tokio::time::Instant::now() + Duration::from_millis(250);
        while let Some(frame) = alice.try_recv(deadline - tokio::time::Instant::now()).await {
            if let ServerFrame::Message(m) = frame
                && m.author == "echo-bot"
            {
                pong = Some(m);
                break;
            }
        }
        if pong.is_some() {
            break;
        }
    }
    let pong = pong.expect("the bot answered within 10 s");
    assert_eq!(pong.body, "pong");
    let replied = pong.reply_to.expect("the pong replies to the ping");
    assert!(
        pings.contains(&replied),
        "the pong replies to one of alice's pings"
    );
    assert_eq!(pong.client_msg_id, format!("pong-{replied}"));

    // Ordinary messages get no answer.
    alice
        .send_message(&conversation, "hello", "hello bot")
        .await;
    let history = server.history("alice", &conversation).await;
    assert!(
        history
            .iter()
            .all(|m| m.author != "echo-bot" || m.body == "pong")
    );

    // A conversation created after the bot started: its user events make it join, from the
    // point it was listed at, so one ping is enough.
    let later = server.create_group("alice", &["echo-bot"]).await;
    alice.join(&later).await;
    alice.send_message(&later, "later-ping", "!ping").await;
    let pong = alice
        .recv_until(|f| matches!(f, ServerFrame::Message(m) if m.author == "echo-bot" && m.conversation == later))
        .await;
    assert!(matches!(pong, ServerFrame::Message(m) if m.body == "pong"));
    bot.abort();
}
