//! A Confab bot: connects over WebSocket, joins its conversations and answers `!ping` with
//! `pong`. It reconnects with backoff and resumes every conversation with `since`, and its
//! replies use a `client_msg_id` derived from the message it answers, so a reply retried after
//! a reconnect is never posted twice.
//!
//! ```text
//! TOKEN=$(cargo run -p confab-server -- token --user echo-bot --tenant acme)
//! cargo run -p confab-server --example echo_bot -- http://127.0.0.1:8080 "$TOKEN"
//! ```
//! With no conversation ids after the token, it joins every conversation it belongs to.

use std::collections::HashMap;
use std::time::Duration;

use confab_protocol::frames::MessageEvent;
use confab_protocol::rest::ConversationList;
use confab_protocol::{ClientFrame, Command, ServerFrame};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// What the bot needs to run.
pub struct BotConfig {
    /// Base URL of the server, e.g. `http://127.0.0.1:8080`.
    pub base_url: String,
    pub token: String,
    /// Conversations to serve; empty: all the bot's conversations at start.
    pub conversations: Vec<String>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[allow(dead_code)]
#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let (Some(base_url), Some(token)) = (args.next(), args.next()) else {
        eprintln!("usage: echo_bot BASE_URL TOKEN [CONVERSATION_ID...]");
        std::process::exit(2);
    };
    run(BotConfig {
        base_url,
        token,
        conversations: args.collect(),
    })
    .await
}

/// Runs the bot until the server refuses its token.
pub async fn run(config: BotConfig) -> Result<(), BoxError> {
    let conversations = if config.conversations.is_empty() {
        my_conversations(&config).await?
    } else {
        config.conversations.clone()
    };
    // Last seq seen per conversation: the `since` of the next join.
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut backoff = Backoff::new();
    loop {
        match session(&config, &conversations, &mut seen, &mut backoff).await {
            Ok(()) => return Ok(()),
            Err(SessionEnd::Fatal(err)) => return Err(err),
            Err(SessionEnd::Retry(err)) => {
                let delay = backoff.next_delay();
                eprintln!("echo_bot: connection lost ({err}); reconnecting in {delay:?}");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Reconnect delays: doubling from [`Backoff::FIRST`] up to [`Backoff::MAX`], and back to the
/// first once a connection has worked, so that a bot that ran for a day and lost one connection
/// does not wait the maximum before its first retry.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    pub const FIRST: Duration = Duration::from_millis(200);
    pub const MAX: Duration = Duration::from_secs(10);

    pub fn new() -> Self {
        Backoff { next: Self::FIRST }
    }

    /// The delay before the next attempt; each call doubles the one after it.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        delay
    }

    /// A connection succeeded (the server welcomed the bot): start over from the first delay.
    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

enum SessionEnd {
    Retry(BoxError),
    Fatal(BoxError),
}

async fn my_conversations(config: &BotConfig) -> Result<Vec<String>, BoxError> {
    let client = reqwest::Client::new();
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query = vec![("limit", "500".to_owned())];
        query.extend(cursor.take().map(|cursor| ("cursor", cursor)));
        let url =
            url::Url::parse_with_params(&format!("{}/v1/conversations", config.base_url), &query)?;
        let page: ConversationList = client
            .get(url)
            .bearer_auth(&config.token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        ids.extend(page.conversations.into_iter().map(|c| c.conversation.id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(ids),
        }
    }
}

async fn session(
    config: &BotConfig,
    conversations: &[String],
    seen: &mut HashMap<String, u64>,
    backoff: &mut Backoff,
) -> Result<(), SessionEnd> {
    let retry = |e: BoxError| SessionEnd::Retry(e);
    let ws_url = format!("{}/v1/ws", config.base_url.replacen("http", "ws", 1));
    let mut request = ws_url
        .into_client_request()
        .map_err(|e| SessionEnd::Fatal(e.into()))?;
    let bearer = format!("Bearer {}", config.token).parse().map_err(
        |e: tokio_tungstenite::tungstenite::http::header::InvalidHeaderValue| {
            SessionEnd::Fatal(e.into())
        },
    )?;
    request.headers_mut().insert("authorization", bearer);
    let (mut ws, _) = match tokio_tungstenite::connect_async(request).await {
        Ok(connected) => connected,
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) if response.status() == 401 => {
            return Err(SessionEnd::Fatal("token refused".into()));
        }
        Err(err) => return Err(retry(err.into())),
    };
    for conversation in conversations {
        let since = seen.get(conversation).copied();
        let join = ClientFrame::new(Command::Join {
            conversation: conversation.clone(),
            since,
        });
        ws.send(Message::text(encode(&join)?))
            .await
            .map_err(|e| retry(e.into()))?;
    }
    let mut me = String::new();
    while let Some(frame) = ws.next().await {
        let text = match frame.map_err(|e| retry(e.into()))? {
            Message::Text(text) => text,
            Message::Close(_) => return Err(retry("server closed the connection".into())),
            _ => continue,
        };
        let Ok(frame) = serde_json::from_str::<ServerFrame>(&text) else {
            continue;
        };
        if let Some((conversation, seq)) = frame.durable_position() {
            seen.insert(conversation.to_owned(), seq);
        }
        match frame {
            ServerFrame::Welcome { user, .. } => {
                backoff.reset();
                me = user;
            }
            ServerFrame::Joined {
                conversation,
                last_seq,
                ..
            } => {
                seen.entry(conversation).or_insert(last_seq);
            }
            // Added to a conversation after the start: serve it too, from the point listed.
            ServerFrame::ConversationAdded {
                conversation,
                summary,
                ..
            } if !seen.contains_key(&conversation) => {
                let since = summary.map(|summary| summary.conversation.last_seq);
                let join = ClientFrame::new(Command::Join {
                    conversation,
                    since,
                });
                ws.send(Message::text(encode(&join)?))
                    .await
                    .map_err(|e| retry(e.into()))?;
            }
            ServerFrame::Message(message) if message.author != me => {
                if let Some(reply) = answer(&message) {
                    ws.send(Message::text(encode(&reply)?))
                        .await
                        .map_err(|e| retry(e.into()))?;
                }
            }
            ServerFrame::Error { code, message, .. } => {
                eprintln!("echo_bot: error {code}: {message}")
            }
            _ => {}
        }
    }
    Err(retry("connection ended".into()))
}

/// The reply to a message, if it asks for one.
fn answer(message: &MessageEvent) -> Option<ClientFrame> {
    (message.body.trim() == "!ping").then(|| {
        ClientFrame::new(Command::Send {
            conversation: message.conversation.clone(),
            client_msg_id: format!("pong-{}", message.id),
            body: "pong".to_owned(),
            reply_to: Some(message.id.clone()),
            attachments: Vec::new(),
        })
    })
}

fn encode(frame: &ClientFrame) -> Result<String, SessionEnd> {
    serde_json::to_string(frame).map_err(|e| SessionEnd::Fatal(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_starts_over_after_a_connection() {
        let mut backoff = Backoff::new();
        let delays: Vec<Duration> = (0..8).map(|_| backoff.next_delay()).collect();
        assert_eq!(delays[0], Backoff::FIRST);
        assert_eq!(delays[1], Backoff::FIRST * 2);
        assert_eq!(delays[2], Backoff::FIRST * 4);
        assert!(delays.windows(2).all(|pair| pair[0] <= pair[1]));
        assert_eq!(delays[7], Backoff::MAX);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Backoff::FIRST);
        assert_eq!(backoff.next_delay(), Backoff::FIRST * 2);
    }
}
