//! Chat operations shared by the WebSocket session and the REST handlers: validation, rate
//! limiting, the store call, and the ephemeral fan-out that is not a stored event.

use std::time::Instant;

use confab_protocol::rest::Attachment;
use confab_protocol::{Command, ServerFrame};
use confab_storage::{Appended, NewMessage, PendingAppend, StoredEvent};
use tungstenite::Utf8Bytes;

use crate::auth::AuthUser;
use crate::error::AppError;
use crate::metrics as m;
use crate::state::AppState;
use crate::validate;

/// A message to send, from either transport.
pub struct Outgoing {
    pub conversation: String,
    pub client_msg_id: String,
    pub body: String,
    pub reply_to: Option<String>,
    pub attachments: Vec<Attachment>,
}

impl Outgoing {
    /// The message of a `send` command; any other command is handed back.
    pub fn from_send(command: Command) -> Result<Outgoing, Command> {
        match command {
            Command::Send {
                conversation,
                client_msg_id,
                body,
                reply_to,
                attachments,
            } => Ok(Outgoing {
                conversation,
                client_msg_id,
                body,
                reply_to,
                attachments,
            }),
            other => Err(other),
        }
    }
}

/// Validates, rate-limits and durably appends a message; returns once it is on disk.
pub async fn send(state: &AppState, user: &AuthUser, msg: Outgoing) -> Result<Appended, AppError> {
    let started = Instant::now();
    let appended = queue_send(state, user, msg).await?.await?;
    m::ack_latency(started.elapsed());
    Ok(appended)
}

/// The files of a message: each checked by the store (the sender's own file, or one already
/// in this conversation) and described by its stored name, type and size, whatever the client
/// wrote. The conversation's members see them from then on.
async fn attach(
    state: &AppState,
    user: &AuthUser,
    conversation: &str,
    attachments: &[Attachment],
) -> Result<Vec<Attachment>, AppError> {
    if attachments.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<String> = attachments.iter().map(|a| a.id.clone()).collect();
    // A missing file is `conflict`, as a missing `reply_to` is: `not_found` would say the
    // conversation itself is missing.
    let files = state
        .store
        .attach_media(&user.tenant, &user.user, conversation, &ids)
        .await
        .map_err(|err| match err {
            confab_storage::StoreError::NotFound("media") => AppError::new(
                confab_protocol::ErrorCode::Conflict,
                "an attachment names no file of the sender's or of this conversation",
            ),
            other => other.into(),
        })?;
    Ok(files
        .into_iter()
        .map(|file| Attachment {
            id: file.id,
            name: Some(file.name),
            mime: Some(file.content_type),
            size: Some(file.size),
        })
        .collect())
}

/// Validates, rate-limits and queues a message ([`Store::queue_message`]): sends queued one
/// after another take seqs in that order. The returned future gives the outcome once the message
/// is on disk.
///
/// [`Store::queue_message`]: confab_storage::Store::queue_message
pub async fn queue_send(
    state: &AppState,
    user: &AuthUser,
    msg: Outgoing,
) -> Result<PendingAppend, AppError> {
    validate::id("conversation", &msg.conversation)?;
    validate::client_msg_id(&msg.client_msg_id)?;
    validate::body(
        &msg.body,
        state.config.max_body_bytes,
        !msg.attachments.is_empty(),
    )?;
    validate::attachments(&msg.attachments)?;
    if let Some(reply_to) = &msg.reply_to {
        validate::id("reply_to", reply_to)?;
    }
    if let Err(limited) = state.check_message_rate(user) {
        // Over budget, a retry of a message already stored still gets its (duplicate) ack:
        // the client cannot tell that its first ack was lost otherwise.
        let repeat = NewMessage {
            tenant: user.tenant.to_string(),
            conversation: msg.conversation,
            author: user.user.to_string(),
            client_msg_id: msg.client_msg_id,
            body: msg.body,
            reply_to: msg.reply_to,
            attachments: Vec::new(),
            repeat_only: true,
        };
        return match state.store.append_message(repeat).await {
            Ok(original) => Ok(Box::pin(std::future::ready(Ok(original)))),
            Err(_) => Err(limited),
        };
    }
    let attachments = attach(state, user, &msg.conversation, &msg.attachments).await?;
    Ok(state
        .store
        .queue_message(NewMessage {
            tenant: user.tenant.to_string(),
            conversation: msg.conversation,
            author: user.user.to_string(),
            client_msg_id: msg.client_msg_id,
            body: msg.body,
            reply_to: msg.reply_to,
            attachments,
            repeat_only: false,
        })
        .await)
}

pub async fn edit(
    state: &AppState,
    user: &AuthUser,
    message: &str,
    body: String,
) -> Result<u64, AppError> {
    validate::id("message", message)?;
    validate::body(&body, state.config.max_body_bytes, false)?;
    state.user_limits().edits.check(user)?;
    Ok(state
        .store
        .edit_message(&user.tenant, &user.user, message, body)
        .await?)
}

pub async fn delete(
    state: &AppState,
    user: &AuthUser,
    message: &str,
) -> Result<Option<u64>, AppError> {
    validate::id("message", message)?;
    state.user_limits().deletes.check(user)?;
    Ok(state
        .store
        .delete_message(&user.tenant, &user.user, message)
        .await?)
}

pub async fn react(
    state: &AppState,
    user: &AuthUser,
    message: &str,
    emoji: &str,
) -> Result<Option<u64>, AppError> {
    validate::id("message", message)?;
    validate::emoji(emoji)?;
    let limits = state.user_limits();
    limits.reactions.check(user)?;
    // The caps, against the message as it is now (two reactions racing may both pass: the cap
    // bounds abuse, it is not an exact count).
    let current = state
        .store
        .message(&user.tenant, &user.user, message)
        .await?;
    limits.check_reaction(&user.user, emoji, &current.reactions)?;
    Ok(state
        .store
        .add_reaction(&user.tenant, &user.user, message, emoji)
        .await?)
}

pub async fn unreact(
    state: &AppState,
    user: &AuthUser,
    message: &str,
    emoji: &str,
) -> Result<Option<u64>, AppError> {
    validate::id("message", message)?;
    validate::emoji(emoji)?;
    state.user_limits().reactions.check(user)?;
    Ok(state
        .store
        .remove_reaction(&user.tenant, &user.user, message, emoji)
        .await?)
}

/// Moves the read marker; when it moved, every joined connection of the conversation (the
/// user's other devices included) gets a `read` frame.
pub async fn mark_read(
    state: &AppState,
    user: &AuthUser,
    conversation: &str,
    seq: u64,
) -> Result<bool, AppError> {
    validate::id("conversation", conversation)?;
    let moved = state
        .store
        .mark_read(&user.tenant, &user.user, conversation, seq)
        .await?;
    if moved {
        let frame = ServerFrame::Read {
            conversation: conversation.to_owned(),
            user: user.user.to_string(),
            seq,
        };
        state
            .hub
            .publish_ephemeral(&user.tenant, conversation, encode(&frame)?, None);
        m::ephemeral("read");
        state.hub.users_changed(&user.tenant, [&*user.user]);
    }
    Ok(moved)
}

/// Serializes a frame for the wire.
pub fn encode(frame: &ServerFrame) -> Result<Utf8Bytes, AppError> {
    serde_json::to_string(frame)
        .map(Utf8Bytes::from)
        .map_err(AppError::internal)
}

/// Renders a stored event's frame for the wire (a replayed event; live ones come rendered from
/// the hub).
pub fn encode_event(event: &StoredEvent) -> Result<Utf8Bytes, AppError> {
    event
        .render()
        .map(Utf8Bytes::from)
        .map_err(AppError::internal)
}
