//! Write transactions on messages and reactions. Each runs on the writer thread inside its own
//! savepoint (returning an error rolls back everything it did, seq included), except
//! [`append_message`]: the hot path makes every check before its first write and runs without
//! one (see `writer`).

use confab_protocol::frames::MessageEvent;
use confab_protocol::{EventKind, ServerFrame};
use rusqlite::{Connection, OptionalExtension};

use super::cache::WriteCache;
use super::common::{
    json_error, new_id, next_seq, now_ms, record_event, require_message_member, seq_to_sql,
};
use crate::{Appended, NewMessage, Result, StoreError, StoredEvent};

fn refuse_if_archived(archived: bool) -> Result<()> {
    if archived {
        return Err(StoreError::Forbidden(
            "the conversation is archived".to_owned(),
        ));
    }
    Ok(())
}

pub(super) fn append_message(
    conn: &Connection,
    cache: &mut WriteCache,
    events: &mut Vec<StoredEvent>,
    new: NewMessage,
) -> Result<Appended> {
    let membership = cache.member(conn, &new.tenant, &new.conversation, &new.author)?;
    if new.client_msg_id.is_empty() {
        return Err(StoreError::Invalid("client_msg_id is empty".to_owned()));
    }
    // A repeat is answered with the original, whatever happened since (even archiving).
    if let Some(original) =
        cache.find_sent(conn, &new.conversation, &new.author, &new.client_msg_id)?
    {
        return Ok(original);
    }
    refuse_if_archived(membership.archived)?;
    if let Some(reply_to) = &new.reply_to {
        let replied: Option<String> = conn
            .prepare_cached("SELECT conversation_id FROM messages WHERE id = ?1 AND tenant = ?2")?
            .query_row((reply_to, &new.tenant), |row| row.get(0))
            .optional()?;
        if replied.as_deref() != Some(new.conversation.as_str()) {
            return Err(StoreError::Invalid(
                "reply_to is not a message of this conversation".to_owned(),
            ));
        }
    }
    let attachments = if new.attachments.is_empty() {
        None
    } else {
        Some(serde_json::to_string(&new.attachments).map_err(json_error)?)
    };

    // Every check is above: from here on, an error means the batch is rolled back.
    let id = new_id();
    let ts = now_ms();
    let seq = next_seq(conn, &new.conversation, ts)?;
    conn.prepare_cached(
        "INSERT INTO messages
             (id, tenant, conversation_id, seq, author, client_msg_id, body, reply_to, attachments, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute((
        &id,
        &new.tenant,
        &new.conversation,
        super::common::seq_to_sql(seq),
        &new.author,
        &new.client_msg_id,
        &new.body,
        &new.reply_to,
        &attachments,
        ts,
    ))?;
    cache.remember_sent(
        conn,
        &new.conversation,
        &new.author,
        &new.client_msg_id,
        conn.last_insert_rowid(),
    )?;
    let tenant = new.tenant;
    let frame = ServerFrame::Message(MessageEvent {
        conversation: new.conversation,
        id: id.clone(),
        seq,
        author: new.author,
        body: new.body,
        ts,
        client_msg_id: new.client_msg_id,
        reply_to: new.reply_to,
        attachments: new.attachments,
    });
    record_event(conn, events, &tenant, EventKind::Message, None, ts, &frame)?;
    Ok(Appended {
        id,
        seq,
        ts,
        duplicate: false,
    })
}

pub(super) fn edit_message(
    conn: &Connection,
    events: &mut Vec<StoredEvent>,
    tenant: &str,
    by: &str,
    id: &str,
    body: String,
) -> Result<u64> {
    let (message, conversation, _) = require_message_member(conn, tenant, by, id)?;
    if message.author != by {
        return Err(StoreError::Forbidden(
            "only the author edits a message".to_owned(),
        ));
    }
    if message.deleted {
        return Err(StoreError::Conflict("the message is deleted".to_owned()));
    }
    refuse_if_archived(conversation.archived)?;
    let ts = now_ms();
    let seq = next_seq(conn, &message.conversation, ts)?;
    conn.prepare_cached("UPDATE messages SET body = ?1, edited_at = ?2 WHERE id = ?3")?
        .execute((&body, ts, id))?;
    let frame = ServerFrame::MessageEdited {
        conversation: message.conversation,
        seq,
        message: message.id,
        author: message.author,
        body,
        ts,
    };
    record_event(
        conn,
        events,
        tenant,
        EventKind::MessageEdited,
        None,
        ts,
        &frame,
    )?;
    Ok(seq)
}

pub(super) fn delete_message(
    conn: &Connection,
    events: &mut Vec<StoredEvent>,
    tenant: &str,
    by: &str,
    id: &str,
) -> Result<Option<u64>> {
    let (message, _, role) = require_message_member(conn, tenant, by, id)?;
    if message.author != by && !role.can_manage() {
        return Err(StoreError::Forbidden(
            "only the author, an owner or an admin deletes a message".to_owned(),
        ));
    }
    if message.deleted {
        return Ok(None);
    }
    let ts = now_ms();
    let seq = next_seq(conn, &message.conversation, ts)?;
    // The content goes with the message: the row and the stored frames are scrubbed, so
    // neither history nor a resume ever shows it again.
    conn.prepare_cached(
        "UPDATE messages SET deleted_at = ?1, body = '', attachments = NULL WHERE id = ?2",
    )?
    .execute((ts, id))?;
    redact_events(conn, &message.conversation, message.seq, &message.id)?;
    // A deleted message has no reactions; message_deleted tells clients to drop them too.
    conn.prepare_cached("DELETE FROM reactions WHERE message_id = ?1")?
        .execute([id])?;
    let frame = ServerFrame::MessageDeleted {
        conversation: message.conversation,
        seq,
        message: message.id,
        by: by.to_owned(),
        ts,
    };
    record_event(
        conn,
        events,
        tenant,
        EventKind::MessageDeleted,
        None,
        ts,
        &frame,
    )?;
    Ok(Some(seq))
}

pub(super) fn add_reaction(
    conn: &Connection,
    events: &mut Vec<StoredEvent>,
    tenant: &str,
    by: &str,
    id: &str,
    emoji: &str,
) -> Result<Option<u64>> {
    let (message, conversation, _) = require_message_member(conn, tenant, by, id)?;
    if message.deleted {
        return Err(StoreError::Conflict("the message is deleted".to_owned()));
    }
    refuse_if_archived(conversation.archived)?;
    if emoji.is_empty() {
        return Err(StoreError::Invalid("emoji is empty".to_owned()));
    }
    let ts = now_ms();
    let inserted = conn
        .prepare_cached(
            "INSERT INTO reactions (message_id, user_id, emoji, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT DO NOTHING",
        )?
        .execute((id, by, emoji, ts))?;
    if inserted == 0 {
        return Ok(None);
    }
    let seq = next_seq(conn, &message.conversation, ts)?;
    let frame = ServerFrame::ReactionAdded {
        conversation: message.conversation,
        seq,
        message: message.id,
        user: by.to_owned(),
        emoji: emoji.to_owned(),
        ts,
    };
    record_event(
        conn,
        events,
        tenant,
        EventKind::ReactionAdded,
        None,
        ts,
        &frame,
    )?;
    Ok(Some(seq))
}

pub(super) fn remove_reaction(
    conn: &Connection,
    events: &mut Vec<StoredEvent>,
    tenant: &str,
    by: &str,
    id: &str,
    emoji: &str,
) -> Result<Option<u64>> {
    let (message, conversation, _) = require_message_member(conn, tenant, by, id)?;
    refuse_if_archived(conversation.archived)?;
    let removed = conn
        .prepare_cached(
            "DELETE FROM reactions WHERE message_id = ?1 AND emoji = ?2 AND user_id = ?3",
        )?
        .execute((id, emoji, by))?;
    if removed == 0 {
        return Ok(None);
    }
    let ts = now_ms();
    let seq = next_seq(conn, &message.conversation, ts)?;
    let frame = ServerFrame::ReactionRemoved {
        conversation: message.conversation,
        seq,
        message: message.id,
        user: by.to_owned(),
        emoji: emoji.to_owned(),
        ts,
    };
    record_event(
        conn,
        events,
        tenant,
        EventKind::ReactionRemoved,
        None,
        ts,
        &frame,
    )?;
    Ok(Some(seq))
}

/// Rewrites the stored `message` frame of a deleted message, and its `message_edited` frames,
/// with an empty body and no attachments.
fn redact_events(conn: &Connection, conversation: &str, seq: u64, id: &str) -> Result<()> {
    let rows: Vec<(i64, String)> = conn
        .prepare_cached(
            "SELECT seq, frame FROM events
             WHERE conversation_id = ?1 AND seq >= ?2 AND kind IN ('message', 'message_edited')
               AND (seq = ?2 OR json_extract(frame, '$.message') = ?3)",
        )?
        .query_map((conversation, seq_to_sql(seq), id), |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    for (event_seq, text) in rows {
        let mut frame: ServerFrame = serde_json::from_str(&text).map_err(json_error)?;
        match &mut frame {
            ServerFrame::Message(message) if message.id == id => {
                message.body.clear();
                message.attachments.clear();
            }
            ServerFrame::MessageEdited { message, body, .. } if message == id => body.clear(),
            _ => continue,
        }
        let text = serde_json::to_string(&frame).map_err(json_error)?;
        conn.prepare_cached(
            "UPDATE events SET frame = ?1 WHERE conversation_id = ?2 AND seq = ?3",
        )?
        .execute((&text, conversation, event_seq))?;
    }
    Ok(())
}
