//! Write operations on messages and reactions. Each runs inside a transaction (see `txn`):
//! returning an error aborts everything it did, seq included.

use confab_protocol::frames::MessageEvent;
use confab_protocol::{EventKind, ServerFrame};
use mongodb::bson::doc;

use super::common::{
    collect, json_error, next_seq, record_event, require_member, require_message_member,
    seq_from_db, seq_to_db,
};
use super::schema::{ConversationDoc, MessageDoc, ReactionDoc};
use super::txn::{Ctx, OpResult};
use super::{new_id, now_ms};
use crate::{Appended, NewMessage, StoreError};

fn refuse_if_archived(conversation: &ConversationDoc) -> OpResult<()> {
    if conversation.archived {
        return Err(StoreError::Forbidden("the conversation is archived".to_owned()).into());
    }
    Ok(())
}

fn refuse_if_deleted(message: &MessageDoc) -> OpResult<()> {
    if message.deleted_at.is_some() {
        return Err(StoreError::Conflict("the message is deleted".to_owned()).into());
    }
    Ok(())
}

/// Appends a message. A repeated `client_msg_id` finds the original here; two first attempts
/// racing from different processes conflict on the conversation's seq (or, failing that, on the
/// unique `(conversation, author, client_msg_id)` index) and the retry finds the winner's.
pub(super) async fn append_message(cx: &mut Ctx, new: &NewMessage) -> OpResult<Appended> {
    let (conversation, _) = require_member(cx, &new.tenant, &new.conversation, &new.author).await?;
    if new.client_msg_id.is_empty() {
        return Err(StoreError::Invalid("client_msg_id is empty".to_owned()).into());
    }
    // A repeat is answered with the original, whatever happened since (even archiving).
    let original = cx
        .db
        .messages
        .find_one(doc! {
            "conversation": &new.conversation,
            "author": &new.author,
            "client_msg_id": &new.client_msg_id,
        })
        .session(&mut cx.session)
        .await?;
    if let Some(original) = original {
        return Ok(Appended {
            id: original.id,
            seq: seq_from_db(original.seq),
            ts: original.created_at,
            duplicate: true,
        });
    }
    refuse_if_archived(&conversation)?;
    if let Some(reply_to) = &new.reply_to {
        let replied = cx
            .db
            .messages
            .find_one(doc! { "_id": reply_to, "tenant": &new.tenant })
            .session(&mut cx.session)
            .await?;
        if replied.map(|message| message.conversation).as_deref() != Some(&new.conversation) {
            return Err(StoreError::Invalid(
                "reply_to is not a message of this conversation".to_owned(),
            )
            .into());
        }
    }

    let id = new_id();
    let ts = now_ms();
    let seq = next_seq(cx, &new.conversation, ts).await?;
    let message = MessageDoc {
        id: id.clone(),
        tenant: new.tenant.clone(),
        conversation: new.conversation.clone(),
        seq: seq_to_db(seq),
        author: new.author.clone(),
        client_msg_id: new.client_msg_id.clone(),
        body: new.body.clone(),
        reply_to: new.reply_to.clone(),
        attachments: new.attachments.clone(),
        created_at: ts,
        edited_at: None,
        deleted_at: None,
    };
    cx.db
        .messages
        .insert_one(&message)
        .session(&mut cx.session)
        .await?;
    let frame = ServerFrame::Message(MessageEvent {
        conversation: message.conversation,
        id: id.clone(),
        seq,
        author: message.author,
        body: message.body,
        ts,
        client_msg_id: message.client_msg_id,
        reply_to: message.reply_to,
        attachments: message.attachments,
    });
    record_event(cx, &new.tenant, EventKind::Message, None, ts, &frame).await?;
    Ok(Appended {
        id,
        seq,
        ts,
        duplicate: false,
    })
}

pub(super) async fn edit_message(
    cx: &mut Ctx,
    tenant: &str,
    by: &str,
    id: &str,
    body: &str,
) -> OpResult<u64> {
    let (message, conversation, _) = require_message_member(cx, tenant, by, id).await?;
    if message.author != by {
        return Err(StoreError::Forbidden("only the author edits a message".to_owned()).into());
    }
    refuse_if_deleted(&message)?;
    refuse_if_archived(&conversation)?;
    let ts = now_ms();
    let seq = next_seq(cx, &message.conversation, ts).await?;
    cx.db
        .messages
        .update_one(
            doc! { "_id": id },
            doc! { "$set": { "body": body, "edited_at": ts } },
        )
        .session(&mut cx.session)
        .await?;
    let frame = ServerFrame::MessageEdited {
        conversation: message.conversation,
        seq,
        message: message.id,
        author: message.author,
        body: body.to_owned(),
        ts,
    };
    record_event(cx, tenant, EventKind::MessageEdited, None, ts, &frame).await?;
    Ok(seq)
}

pub(super) async fn delete_message(
    cx: &mut Ctx,
    tenant: &str,
    by: &str,
    id: &str,
) -> OpResult<Option<u64>> {
    let (message, _, role) = require_message_member(cx, tenant, by, id).await?;
    if message.author != by && !role.can_manage() {
        return Err(StoreError::Forbidden(
            "only the author, an owner or an admin deletes a message".to_owned(),
        )
        .into());
    }
    if message.deleted_at.is_some() {
        return Ok(None);
    }
    let ts = now_ms();
    let seq = next_seq(cx, &message.conversation, ts).await?;
    // The content goes with the message: the document and the stored frames are scrubbed, so
    // neither history nor a resume ever shows it again.
    cx.db
        .messages
        .update_one(
            doc! { "_id": id },
            doc! { "$set": { "deleted_at": ts, "body": "", "attachments": [] } },
        )
        .session(&mut cx.session)
        .await?;
    redact_events(cx, &message).await?;
    // A deleted message has no reactions; message_deleted tells clients to drop them too.
    cx.db
        .reactions
        .delete_many(doc! { "message": id })
        .session(&mut cx.session)
        .await?;
    let frame = ServerFrame::MessageDeleted {
        conversation: message.conversation,
        seq,
        message: message.id,
        by: by.to_owned(),
        ts,
    };
    record_event(cx, tenant, EventKind::MessageDeleted, None, ts, &frame).await?;
    Ok(Some(seq))
}

pub(super) async fn add_reaction(
    cx: &mut Ctx,
    tenant: &str,
    by: &str,
    id: &str,
    emoji: &str,
) -> OpResult<Option<u64>> {
    let (message, conversation, _) = require_message_member(cx, tenant, by, id).await?;
    refuse_if_deleted(&message)?;
    refuse_if_archived(&conversation)?;
    if emoji.is_empty() {
        return Err(StoreError::Invalid("emoji is empty".to_owned()).into());
    }
    let key = doc! { "message": id, "emoji": emoji, "user": by };
    let present = cx
        .db
        .reactions
        .find_one(key)
        .session(&mut cx.session)
        .await?;
    if present.is_some() {
        return Ok(None);
    }
    let ts = now_ms();
    let reaction = ReactionDoc {
        message: id.to_owned(),
        conversation: message.conversation.clone(),
        user: by.to_owned(),
        emoji: emoji.to_owned(),
        created_at: ts,
    };
    cx.db
        .reactions
        .insert_one(&reaction)
        .session(&mut cx.session)
        .await?;
    let seq = next_seq(cx, &message.conversation, ts).await?;
    let frame = ServerFrame::ReactionAdded {
        conversation: message.conversation,
        seq,
        message: message.id,
        user: by.to_owned(),
        emoji: emoji.to_owned(),
        ts,
    };
    record_event(cx, tenant, EventKind::ReactionAdded, None, ts, &frame).await?;
    Ok(Some(seq))
}

pub(super) async fn remove_reaction(
    cx: &mut Ctx,
    tenant: &str,
    by: &str,
    id: &str,
    emoji: &str,
) -> OpResult<Option<u64>> {
    let (message, conversation, _) = require_message_member(cx, tenant, by, id).await?;
    refuse_if_archived(&conversation)?;
    let removed = cx
        .db
        .reactions
        .delete_one(doc! { "message": id, "emoji": emoji, "user": by })
        .session(&mut cx.session)
        .await?;
    if removed.deleted_count == 0 {
        return Ok(None);
    }
    let ts = now_ms();
    let seq = next_seq(cx, &message.conversation, ts).await?;
    let frame = ServerFrame::ReactionRemoved {
        conversation: message.conversation,
        seq,
        message: message.id,
        user: by.to_owned(),
        emoji: emoji.to_owned(),
        ts,
    };
    record_event(cx, tenant, EventKind::ReactionRemoved, None, ts, &frame).await?;
    Ok(Some(seq))
}

/// Rewrites the stored `message` frame of a deleted message, and its `message_edited` frames,
/// with an empty body and no attachments.
async fn redact_events(cx: &mut Ctx, message: &MessageDoc) -> OpResult<()> {
    let cursor = cx
        .db
        .events
        .find(doc! {
            "conversation": &message.conversation,
            "seq": { "$gte": message.seq },
            "message": &message.id,
            "kind": { "$in": [EventKind::Message.as_str(), EventKind::MessageEdited.as_str()] },
        })
        .session(&mut cx.session)
        .await?;
    let events = collect(cursor, &mut cx.session).await?;
    for event in events {
        let mut frame: ServerFrame = serde_json::from_str(&event.frame).map_err(json_error)?;
        match &mut frame {
            ServerFrame::Message(scrubbed) if scrubbed.id == message.id => {
                scrubbed.body.clear();
                scrubbed.attachments.clear();
            }
            ServerFrame::MessageEdited {
                message: edited,
                body,
                ..
            } if *edited == message.id => body.clear(),
            _ => continue,
        }
        let text = serde_json::to_string(&frame).map_err(json_error)?;
        cx.db
            .events
            .update_one(
                doc! { "conversation": &event.conversation, "seq": event.seq },
                doc! { "$set": { "frame": text } },
            )
            .session(&mut cx.session)
            .await?;
    }
    Ok(())
}
