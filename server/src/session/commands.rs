//! The session's command handlers: one per client frame type.

use std::time::{Duration, Instant};

use confab_protocol::{ClientFrame, Command, ErrorCode, ServerFrame};
use confab_storage::{StoreError, StoredEvent};
use futures_util::SinkExt;
use serde::Deserialize;
use tungstenite::Message;

use super::acks::PendingAck;
use super::{Exit, Joined, Session, Socket};
use crate::chat::{self, Outgoing, encode, encode_event};
use crate::error::AppError;
use crate::metrics::{self as m, WireStats};
use crate::validate;
use confab_protocol::limits::MAX_REF_LEN;

/// Typing notices from one connection for one conversation are forwarded at most this often.
const TYPING_INTERVAL: Duration = Duration::from_secs(2);

/// Just the `ref` of a frame that failed to parse, so the error can still carry it.
#[derive(Deserialize)]
struct RefOnly {
    #[serde(rename = "ref")]
    reference: Option<String>,
}

impl Session {
    /// Handles one text frame; after a `rate_limited` answer, stops reading the client for the
    /// wait it was told (see `Session::throttled`).
    pub(super) async fn handle_frame<S: Socket>(
        &mut self,
        socket: &mut S,
        text: &str,
    ) -> Result<(), Exit> {
        let throttle = self
            .handle_text(socket, text)
            .await
            .map_err(|()| Exit::SocketError)?;
        if let Some(wait) = throttle {
            self.throttled(socket, wait).await?;
        }
        Ok(())
    }

    /// Handles one text frame: `Ok(Some(wait))` when the answer was `rate_limited`, `Err` only
    /// when the socket failed.
    async fn handle_text<S: Socket>(
        &mut self,
        socket: &mut S,
        text: &str,
    ) -> Result<Option<Duration>, ()> {
        if text.len() > self.state.config.max_frame_bytes {
            let err = AppError::too_large(format!(
                "frame larger than {} bytes",
                self.state.config.max_frame_bytes
            ));
            return self.send_error(socket, None, err).await.map(|()| None);
        }
        let frame = match serde_json::from_str::<ClientFrame>(text) {
            Ok(frame) => frame,
            Err(parse_error) => {
                let reference = serde_json::from_str::<RefOnly>(text)
                    .ok()
                    .and_then(|r| r.reference)
                    .filter(|r| r.len() <= MAX_REF_LEN);
                let err = AppError::invalid(format!("malformed frame: {parse_error}"));
                return self.send_error(socket, reference, err).await.map(|()| None);
            }
        };
        let ClientFrame { reference, command } = frame;
        if reference.as_ref().is_some_and(|r| r.len() > MAX_REF_LEN) {
            let err = AppError::too_large(format!("`ref` is longer than {MAX_REF_LEN} bytes"));
            return self.send_error(socket, None, err).await.map(|()| None);
        }
        let command = match Outgoing::from_send(command) {
            Ok(outgoing) => {
                // Boxed: this future is allocated for every frame, and a larger short-lived
                // allocation at connect time (the `join`) left holes in the heap that idle
                // connections then paid for (700 B each in the idle bench).
                return Ok(Box::pin(self.queue_send(reference, outgoing)).await);
            }
            Err(other) => other,
        };
        // Any other command waits for the sends before it: its effects and its reply follow
        // theirs. (Boxed with the command moved in, so that this future does not keep the
        // command across the wait.)
        if !self.acks.is_empty() {
            return Box::pin(self.answer_after_sends(socket, reference, command)).await;
        }
        self.answer(socket, reference, command).await
    }

    async fn answer_after_sends<S: Socket>(
        &mut self,
        socket: &mut S,
        reference: Option<String>,
        command: Command,
    ) -> Result<Option<Duration>, ()> {
        self.drain_acks(socket).await?;
        self.answer(socket, reference, command).await
    }

    /// Runs a command other than `send` and writes its reply (`Some(wait)`: `rate_limited`).
    async fn answer<S: Socket>(
        &mut self,
        socket: &mut S,
        reference: Option<String>,
        command: Command,
    ) -> Result<Option<Duration>, ()> {
        match self.dispatch(socket, reference.clone(), command).await {
            Ok(Some(reply)) => self.send(socket, &reply).await.map(|()| None),
            Ok(None) => Ok(None),
            Err(Failure::App(err)) => {
                let throttle = throttle_for(&err);
                self.send_error(socket, reference, err)
                    .await
                    .map(|()| throttle)
            }
            Err(Failure::Socket) => Err(()),
        }
    }

    /// Queues a send in the store and keeps reading: its ack is written when it commits, in
    /// order with the connection's other sends (see `acks`). `Some(wait)`: refused as
    /// `rate_limited`.
    async fn queue_send(
        &mut self,
        reference: Option<String>,
        outgoing: Outgoing,
    ) -> Option<Duration> {
        let started = Instant::now();
        let conversation = outgoing.conversation.clone();
        let client_msg_id = outgoing.client_msg_id.clone();
        let mut throttle = None;
        let ack = match chat::queue_send(&self.state, &self.user, outgoing).await {
            Ok(append) => {
                PendingAck::queued(reference, conversation, client_msg_id, started, append)
            }
            Err(err) => {
                throttle = throttle_for(&err);
                PendingAck::refused(reference, err)
            }
        };
        self.acks.push(ack);
        throttle
    }

    /// Writes the answers of every send in flight, waiting for them as needed.
    pub(super) async fn drain_acks<S: Socket>(&mut self, socket: &mut S) -> Result<(), ()> {
        while !self.acks.is_empty() {
            self.acks.ready().await;
            self.write_acks(socket).await?;
        }
        Ok(())
    }

    /// Writes every answer already there, oldest first, then flushes once.
    pub(super) async fn write_acks<S: Socket>(&mut self, socket: &mut S) -> Result<(), ()> {
        let mut wrote = false;
        while let Some(text) = self.next_ack()? {
            socket.feed(Message::Text(text)).await.map_err(|_| ())?;
            wrote = true;
        }
        if wrote {
            socket.flush().await.map_err(|_| ())?;
        }
        Ok(())
    }

    /// The oldest send's answer as a frame to write, if it has one now (counted as sent).
    pub(super) fn next_ack(&mut self) -> Result<Option<tungstenite::Utf8Bytes>, ()> {
        let Some(settled) = self.acks.take_ready() else {
            return Ok(None);
        };
        let frame = match settled {
            Ok(ack) => ack,
            Err((reference, err)) => {
                m::ws_error(err.code.as_str());
                err.into_frame(reference)
            }
        };
        let text = encode(&frame).map_err(|_| ())?;
        self.state.wire().sent(1, text.len() as u64);
        Ok(Some(text))
    }

    async fn dispatch<S: Socket>(
        &mut self,
        socket: &mut S,
        reference: Option<String>,
        command: Command,
    ) -> Result<Option<ServerFrame>, Failure> {
        let state = self.state.clone();
        let user = self.user.clone();
        let ok = |seq: Option<u64>| {
            Some(ServerFrame::Ok {
                reference: reference.clone(),
                seq,
            })
        };
        match command {
            Command::Auth { .. } => Err(AppError::invalid("already authenticated").into()),
            Command::Refresh { token } => {
                let fresh = state.keys.authenticate(&token).await?;
                if fresh.user != user.user || fresh.tenant != user.tenant {
                    return Err(AppError::forbidden(
                        "a refresh token must be for the same user and tenant",
                    )
                    .into());
                }
                self.user = fresh;
                Ok(ok(None))
            }
            Command::Ping => Ok(Some(ServerFrame::Pong { reference })),
            Command::UserResume { since } => {
                self.outbox.set_user_seq(since);
                self.feed_user_events(socket, Some(reference)).await?;
                socket.flush().await.map_err(|_| Failure::Socket)?;
                Ok(None)
            }
            Command::Join {
                conversation,
                since,
            } => {
                self.join(socket, reference, conversation, since).await?;
                Ok(None)
            }
            Command::Leave { conversation } => {
                validate::id("conversation", &conversation)?;
                if self.joined.contains_key(conversation.as_str()) {
                    state.user_limits().joins.check(&user)?;
                }
                if self.joined.remove(conversation.as_str()).is_some() {
                    state
                        .hub
                        .unsubscribe(&user.tenant, &conversation, &self.outbox);
                }
                Ok(Some(ServerFrame::Left {
                    reference,
                    conversation,
                }))
            }
            // Queued by `handle_text` before it gets here.
            Command::Send { .. } => Err(AppError::internal("send reached dispatch").into()),
            Command::Edit { message, body } => {
                Ok(ok(Some(chat::edit(&state, &user, &message, body).await?)))
            }
            Command::Delete { message } => Ok(ok(chat::delete(&state, &user, &message).await?)),
            Command::React { message, emoji } => {
                Ok(ok(chat::react(&state, &user, &message, &emoji).await?))
            }
            Command::Unreact { message, emoji } => {
                Ok(ok(chat::unreact(&state, &user, &message, &emoji).await?))
            }
            Command::Read { conversation, seq } => {
                chat::mark_read(&state, &user, &conversation, seq).await?;
                Ok(ok(None))
            }
            Command::Typing { conversation } => {
                self.typing(&conversation)?;
                // Typing is frequent: answered only when the client asked with a `ref`.
                Ok(reference.map(|r| ServerFrame::Ok {
                    reference: Some(r),
                    seq: None,
                }))
            }
        }
    }

    /// Checks membership, then subscribes, then reads the backlog, then answers `joined` and
    /// replays it.
    ///
    /// The check comes first, so that a caller who is not a member (or of another tenant: rooms
    /// are keyed by tenant and conversation) never opens a room, announces presence or makes
    /// the fan-out subscribe. Nothing is missed or doubled: the store hands each event to the
    /// hub only after its commit, so an event that did not reach this connection's queue (its
    /// hand-over came before the subscription) was committed before the backlog read, which
    /// therefore has it; one handed over after the subscription is queued, and if the backlog
    /// has it too, the seq mark set here drops the queued copy. A check that passed on a
    /// membership lost just after is caught by the backlog read (which checks again).
    async fn join<S: Socket>(
        &mut self,
        socket: &mut S,
        reference: Option<String>,
        conversation: String,
        since: Option<u64>,
    ) -> Result<(), Failure> {
        validate::id("conversation", &conversation)?;
        let already = self.joined.contains_key(conversation.as_str());
        if !already {
            self.state.user_limits().joins.check(&self.user)?;
            self.may_join(&conversation).await?;
        }
        let tenant = self.user.tenant.clone();
        let key = self.state.hub.room_key(&tenant, &conversation);
        self.state.hub.subscribe(&tenant, &key, self.subscriber());
        let (events, last_seq) = match self.backlog(&conversation, since).await {
            Ok(backlog) => backlog,
            Err(err) => {
                if !already {
                    self.state
                        .hub
                        .unsubscribe(&tenant, &conversation, &self.outbox);
                }
                return Err(AppError::from(err).into());
            }
        };
        let recovered = events.len() <= self.state.config.replay_cap as usize;
        if since.is_some() && !events.is_empty() {
            crate::metrics::replay(recovered, events.len());
        }
        // A backend whose reads are not one snapshot may return events past `last_seq`; the
        // dedupe mark must cover whatever is replayed.
        let replayed_to = events.last().filter(|_| recovered).map_or(0, |e| e.seq);
        let joined = ServerFrame::Joined {
            reference,
            conversation,
            last_seq,
            recovered,
            online: self.state.hub.online(&tenant, &key),
        };
        let replay = if recovered { events } else { Vec::new() };
        write_joined(socket, self.state.wire(), &joined, replay).await?;
        let last_typing = self.joined.get(&key).and_then(|j| j.last_typing);
        self.joined.insert(
            key,
            Joined {
                last_seq: last_seq.max(replayed_to),
                last_typing,
            },
        );
        Ok(())
    }

    /// The checks before a first join: the per-connection cap, then the membership point read
    /// (`not_member`, or `not_found` for an id this tenant does not have). Once joined, the
    /// subscription exists already and neither applies.
    async fn may_join(&self, conversation: &str) -> Result<(), AppError> {
        let max = self.state.config.max_joined;
        if self.joined.len() >= max {
            return Err(AppError::too_large(format!(
                "at most {max} joined conversations per connection"
            )));
        }
        self.state
            .store
            .conversation(&self.user.tenant, &self.user.user, conversation)
            .await?;
        Ok(())
    }

    /// The events after `since` (one more than the replay cap, to tell whether it was
    /// exceeded) and the conversation's last seq; without `since`, no events.
    async fn backlog(
        &self,
        conversation: &str,
        since: Option<u64>,
    ) -> Result<(Vec<StoredEvent>, u64), StoreError> {
        let (tenant, user) = (&self.user.tenant, &self.user.user);
        let store = &self.state.store;
        match since {
            Some(since) => {
                let limit = self.state.config.replay_cap + 1;
                store
                    .events_after(tenant, user, conversation, since, limit)
                    .await
            }
            None => store
                .conversation(tenant, user, conversation)
                .await
                .map(|c| (Vec::new(), c.last_seq)),
        }
    }

    fn typing(&mut self, conversation: &str) -> Result<(), AppError> {
        validate::id("conversation", conversation)?;
        let joined = self
            .joined
            .get_mut(conversation)
            .ok_or_else(|| AppError::forbidden("join the conversation before sending typing"))?;
        let now = Instant::now();
        if joined
            .last_typing
            .is_some_and(|t| now.duration_since(t) < TYPING_INTERVAL)
        {
            return Ok(());
        }
        joined.last_typing = Some(now);
        let frame = ServerFrame::Typing {
            conversation: conversation.to_owned(),
            user: self.user.user.to_string(),
        };
        self.state.hub.publish_ephemeral(
            &self.user.tenant,
            conversation,
            encode(&frame)?,
            Some(&self.user.user),
        );
        m::ephemeral("typing");
        Ok(())
    }
}

/// A command failed for the client (answered with `error`) or the socket died.
pub(super) enum Failure {
    App(AppError),
    Socket,
}

impl From<AppError> for Failure {
    fn from(err: AppError) -> Self {
        Failure::App(err)
    }
}

/// Writes `joined`, then the replayed events, with one flush.
async fn write_joined<S: Socket>(
    socket: &mut S,
    wire: &WireStats,
    joined: &ServerFrame,
    replay: Vec<StoredEvent>,
) -> Result<(), Failure> {
    let text = encode(joined)?;
    wire.sent(1, text.len() as u64);
    socket
        .feed(Message::Text(text))
        .await
        .map_err(|_| Failure::Socket)?;
    for event in replay {
        let text = encode_event(&event)?;
        wire.sent(1, text.len() as u64);
        socket
            .feed(Message::Text(text))
            .await
            .map_err(|_| Failure::Socket)?;
    }
    socket.flush().await.map_err(|_| Failure::Socket)
}

/// How long a client told `err` goes unread: its wait when `err` is `rate_limited`.
fn throttle_for(err: &AppError) -> Option<Duration> {
    (err.code == ErrorCode::RateLimited)
        .then(|| err.retry_after.unwrap_or(Duration::from_millis(100)))
}
