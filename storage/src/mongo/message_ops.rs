//! Write operations on messages and reactions. Each runs inside a transaction (see `txn`):
//! returning an error aborts everything it did, seq included. The rules are in
//! [`crate::rules`].

use confab_protocol::{EventBody, EventKind};
use mongodb::bson::doc;

use super::common::{
    collect, next_change, next_seq, record_event, require_member, require_message_member,
    seq_from_db, seq_to_db,
};
use super::schema::{MessageDoc, ReactionDoc};
use super::txn::{Ctx, OpResult};
use crate::backend::MessageChange;
use crate::event_form::{self, FORM_VERSION};
use crate::record::{self, new_id, now_ms};
use crate::rules;
use crate::{Appended, NewMessage};

/// Appends a message. A repeated `client_msg_id` finds the original here; two first attempts
/// racing from different processes conflict on the conversation's seq (or, failing that, on the
/// unique `(conversation, author, client_msg_id)` index) and the retry finds the winner's.
pub(super) async fn append_message(cx: &mut Ctx, new: &NewMessage) -> OpResult<Appended> {
    let (conversation, _) = require_member(cx, &new.tenant, &new.conversation, &new.author).await?;
    rules::client_msg_id(&new.client_msg_id)?;
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
    rules::new_message_allowed(new.repeat_only)?;
    rules::writable(conversation.archived)?;
    if let Some(reply_to) = &new.reply_to {
        let replied = cx
            .db
            .messages
            .find_one(doc! { "_id": reply_to, "tenant": &new.tenant })
            .session(&mut cx.session)
            .await?;
        let replied_in = replied.map(|message| message.conversation);
        rules::reply_to(replied_in.as_deref(), &new.conversation)?;
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
    // The event keeps no text: the document just written has it (see `event_form`).
    let event = record::message(new.clone(), id.clone(), seq, ts);
    record_event(cx, &new.tenant, event).await?;
    Ok(Appended {
        id,
        seq,
        ts,
        duplicate: false,
    })
}

pub(super) async fn edit_message(
    cx: &mut Ctx,
    request: &MessageChange,
    body: &str,
) -> OpResult<u64> {
    let MessageChange { tenant, by, id } = request;
    let (message, conversation, _) = require_message_member(cx, tenant, by, id).await?;
    rules::edit_message(&message.state(&conversation), by)?;
    let change = next_change(cx, &message.conversation, by, now_ms()).await?;
    keep_posted_text(cx, &message).await?;
    cx.db
        .messages
        .update_one(
            doc! { "_id": id },
            doc! { "$set": { "body": body, "edited_at": change.ts } },
        )
        .session(&mut cx.session)
        .await?;
    record_event(cx, tenant, change.message_edited(id, body.to_owned())).await?;
    Ok(change.seq)
}

pub(super) async fn delete_message(cx: &mut Ctx, request: &MessageChange) -> OpResult<Option<u64>> {
    let MessageChange { tenant, by, id } = request;
    let (message, conversation, role) = require_message_member(cx, tenant, by, id).await?;
    if !rules::delete_message(&message.state(&conversation), by, role)? {
        return Ok(None);
    }
    let change = next_change(cx, &message.conversation, by, now_ms()).await?;
    // The content goes with the message: the document and the stored events are scrubbed, so
    // neither history nor a resume ever shows it again.
    cx.db
        .messages
        .update_one(
            doc! { "_id": id },
            doc! { "$set": { "deleted_at": change.ts, "body": "", "attachments": [] } },
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
    record_event(cx, tenant, change.message_deleted(id)).await?;
    Ok(Some(change.seq))
}

pub(super) async fn add_reaction(
    cx: &mut Ctx,
    request: &MessageChange,
    emoji: &str,
) -> OpResult<Option<u64>> {
    let MessageChange { tenant, by, id } = request;
    let (message, conversation, _) = require_message_member(cx, tenant, by, id).await?;
    rules::add_reaction(&message.state(&conversation), emoji)?;
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
    let reaction = ReactionDoc {
        message: id.to_owned(),
        conversation: message.conversation.clone(),
        user: by.to_owned(),
        emoji: emoji.to_owned(),
        created_at: now_ms(),
    };
    cx.db
        .reactions
        .insert_one(&reaction)
        .session(&mut cx.session)
        .await?;
    let change = next_change(cx, &message.conversation, by, reaction.created_at).await?;
    record_event(cx, tenant, change.reaction(id, emoji, true)).await?;
    Ok(Some(change.seq))
}

pub(super) async fn remove_reaction(
    cx: &mut Ctx,
    request: &MessageChange,
    emoji: &str,
) -> OpResult<Option<u64>> {
    let MessageChange { tenant, by, id } = request;
    let (message, conversation, _) = require_message_member(cx, tenant, by, id).await?;
    rules::remove_reaction(&message.state(&conversation))?;
    let removed = cx
        .db
        .reactions
        .delete_one(doc! { "message": id, "emoji": emoji, "user": by })
        .session(&mut cx.session)
        .await?;
    if removed.deleted_count == 0 {
        return Ok(None);
    }
    let change = next_change(cx, &message.conversation, by, now_ms()).await?;
    record_event(cx, tenant, change.reaction(id, emoji, false)).await?;
    Ok(Some(change.seq))
}

/// Before a message's first edit, copies the text it was posted with into its `message` event:
/// until then the event reads it from the message, which is about to change.
async fn keep_posted_text(cx: &mut Ctx, message: &MessageDoc) -> OpResult<()> {
    cx.db
        .events
        .update_one(
            doc! {
                "conversation": &message.conversation,
                "seq": message.seq,
                "data": { "$exists": false },
            },
            doc! { "$set": { "data": event_form::posted_text(&message.body)? } },
        )
        .session(&mut cx.session)
        .await?;
    Ok(())
}

/// Scrubs a deleted message's events: its `message` event says nothing any more, and its
/// `message_edited` events keep an empty body.
async fn redact_events(cx: &mut Ctx, message: &MessageDoc) -> OpResult<()> {
    cx.db
        .events
        .update_one(
            doc! { "conversation": &message.conversation, "seq": message.seq },
            doc! { "$set": { "data": event_form::REDACTED } },
        )
        .session(&mut cx.session)
        .await?;
    let cursor = cx
        .db
        .events
        .find(doc! {
            "conversation": &message.conversation,
            "seq": { "$gt": message.seq },
            "message": &message.id,
            "kind": EventKind::MessageEdited.as_str(),
        })
        .session(&mut cx.session)
        .await?;
    let edits = collect(cursor, &mut cx.session).await?;
    for edit in edits {
        let mut body =
            event_form::decode(EventKind::MessageEdited, edit.v, edit.data.as_deref(), None)?;
        if let EventBody::MessageEdited { body, .. } = &mut body {
            body.clear();
        }
        let data = event_form::encode(&body)?;
        cx.db
            .events
            .update_one(
                doc! { "conversation": &edit.conversation, "seq": edit.seq },
                doc! { "$set": { "v": FORM_VERSION, "data": data } },
            )
            .session(&mut cx.session)
            .await?;
    }
    Ok(())
}
