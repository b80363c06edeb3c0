//! Write transactions on messages and reactions. Each runs on the writer thread inside its own
//! savepoint (returning an error rolls back everything it did, seq included), except
//! [`append_message`]: the hot path makes every check before its first write and runs without
//! one (see `writer`). The rules are in [`crate::rules`].

use confab_protocol::{EventBody, EventKind};
use rusqlite::{Connection, OptionalExtension};

use super::cache::WriteCache;
use super::common::{MessageMeta, next_change, record_event, require_message_member, seq_to_sql};
use crate::backend::MessageChange;
use crate::record::{self, json_error, new_id, now_ms};
use crate::rules;
use crate::{Appended, NewMessage, Result, StoredEvent, event_form};

pub(super) fn append_message(
    conn: &Connection,
    cache: &mut WriteCache,
    events: &mut Vec<StoredEvent>,
    new: NewMessage,
) -> Result<Appended> {
    let membership = cache.member(conn, &new.tenant, &new.conversation, &new.author)?;
    rules::client_msg_id(&new.client_msg_id)?;
    // A repeat is answered with the original, whatever happened since (even archiving).
    if let Some(original) =
        cache.find_sent(conn, &new.conversation, &new.author, &new.client_msg_id)?
    {
        return Ok(original);
    }
    rules::new_message_allowed(new.repeat_only)?;
    rules::writable(membership.archived)?;
    if let Some(reply_to) = &new.reply_to {
        let replied: Option<String> = conn
            .prepare_cached("SELECT conversation_id FROM messages WHERE id = ?1 AND tenant = ?2")?
            .query_row((reply_to, &new.tenant), |row| row.get(0))
            .optional()?;
        rules::reply_to(replied.as_deref(), &new.conversation)?;
    }
    let attachments = if new.attachments.is_empty() {
        None
    } else {
        Some(serde_json::to_string(&new.attachments).map_err(json_error)?)
    };

    // Every check is above: from here on, an error means the batch is rolled back.
    let id = new_id();
    let ts = now_ms();
    // From the cache, which `member` filled above; taken once the row is stored.
    let seq = cache.next_seq(&new.conversation)?;
    conn.prepare_cached(
        "INSERT INTO messages
             (id, tenant, conversation_id, seq, author, client_msg_id, body, reply_to, attachments, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute((
        &id,
        &new.tenant,
        &new.conversation,
        seq_to_sql(seq),
        &new.author,
        &new.client_msg_id,
        &new.body,
        &new.reply_to,
        &attachments,
        ts,
    ))?;
    let pos = conn.last_insert_rowid();
    // Any failure from here on has written, so it fails the batch and clears the cache.
    cache.took_seq(&new.conversation, seq);
    cache.remember_sent(
        conn,
        &new.conversation,
        &new.author,
        &new.client_msg_id,
        pos,
    )?;
    // The event keeps no text: the row just written has it (see `event_form`).
    let tenant = new.tenant.clone();
    record_event(
        conn,
        events,
        &tenant,
        record::message(new, id.clone(), seq, ts),
        Some(pos),
    )?;
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
    request: &MessageChange,
    body: String,
) -> Result<u64> {
    let MessageChange { tenant, by, id } = request;
    let (message, conversation, _) = require_message_member(conn, tenant, by, id)?;
    rules::edit_message(&message.state(&conversation), by)?;
    let change = next_change(conn, &message.conversation, by, now_ms())?;
    keep_posted_text(conn, &message, id)?;
    conn.prepare_cached("UPDATE messages SET body = ?1, edited_at = ?2 WHERE id = ?3")?
        .execute((&body, change.ts, id))?;
    record_event(conn, events, tenant, change.message_edited(id, body), None)?;
    Ok(change.seq)
}

pub(super) fn delete_message(
    conn: &Connection,
    events: &mut Vec<StoredEvent>,
    request: &MessageChange,
) -> Result<Option<u64>> {
    let MessageChange { tenant, by, id } = request;
    let (message, conversation, role) = require_message_member(conn, tenant, by, id)?;
    if !rules::delete_message(&message.state(&conversation), by, role)? {
        return Ok(None);
    }
    let change = next_change(conn, &message.conversation, by, now_ms())?;
    // The content goes with the message: the row and the stored events are scrubbed, so
    // neither history nor a resume ever shows it again.
    conn.prepare_cached(
        "UPDATE messages SET deleted_at = ?1, body = '', attachments = NULL WHERE id = ?2",
    )?
    .execute((change.ts, id))?;
    redact_events(conn, &message.conversation, message.seq, id)?;
    // A deleted message has no reactions; message_deleted tells clients to drop them too.
    conn.prepare_cached("DELETE FROM reactions WHERE message_id = ?1")?
        .execute([id])?;
    record_event(conn, events, tenant, change.message_deleted(id), None)?;
    Ok(Some(change.seq))
}

pub(super) fn add_reaction(
    conn: &Connection,
    events: &mut Vec<StoredEvent>,
    request: &MessageChange,
    emoji: &str,
) -> Result<Option<u64>> {
    let MessageChange { tenant, by, id } = request;
    let (message, conversation, _) = require_message_member(conn, tenant, by, id)?;
    rules::add_reaction(&message.state(&conversation), emoji)?;
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
    let change = next_change(conn, &message.conversation, by, ts)?;
    record_event(conn, events, tenant, change.reaction(id, emoji, true), None)?;
    Ok(Some(change.seq))
}

pub(super) fn remove_reaction(
    conn: &Connection,
    events: &mut Vec<StoredEvent>,
    request: &MessageChange,
    emoji: &str,
) -> Result<Option<u64>> {
    let MessageChange { tenant, by, id } = request;
    let (message, conversation, _) = require_message_member(conn, tenant, by, id)?;
    rules::remove_reaction(&message.state(&conversation))?;
    let removed = conn
        .prepare_cached(
            "DELETE FROM reactions WHERE message_id = ?1 AND emoji = ?2 AND user_id = ?3",
        )?
        .execute((id, emoji, by))?;
    if removed == 0 {
        return Ok(None);
    }
    let change = next_change(conn, &message.conversation, by, now_ms())?;
    record_event(
        conn,
        events,
        tenant,
        change.reaction(id, emoji, false),
        None,
    )?;
    Ok(Some(change.seq))
}

/// Before a message's first edit, copies the text it was posted with into its `message` event:
/// until then the event reads it from the row, which is about to change.
fn keep_posted_text(conn: &Connection, message: &MessageMeta, id: &str) -> Result<()> {
    let (data, posted): (Option<String>, String) = conn
        .prepare_cached(
            "SELECT e.data, m.body FROM events e JOIN messages m ON m.id = ?3
             WHERE e.conversation_id = ?1 AND e.seq = ?2",
        )?
        .query_row(
            (&message.conversation, seq_to_sql(message.seq), id),
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
    if data.is_some() {
        return Ok(());
    }
    conn.prepare_cached("UPDATE events SET data = ?1 WHERE conversation_id = ?2 AND seq = ?3")?
        .execute((
            event_form::posted_text(&posted)?,
            &message.conversation,
            seq_to_sql(message.seq),
        ))?;
    Ok(())
}

/// Scrubs a deleted message's events: its `message` event says nothing any more, and its
/// `message_edited` events keep an empty body.
fn redact_events(conn: &Connection, conversation: &str, seq: u64, id: &str) -> Result<()> {
    conn.prepare_cached("UPDATE events SET data = ?1 WHERE conversation_id = ?2 AND seq = ?3")?
        .execute((event_form::REDACTED, conversation, seq_to_sql(seq)))?;
    let edits: Vec<(i64, u32, Option<String>)> = conn
        .prepare_cached(
            "SELECT seq, v, data FROM events
             WHERE conversation_id = ?1 AND seq > ?2 AND kind = 'message_edited'
               AND json_extract(data, '$.message') = ?3",
        )?
        .query_map((conversation, seq_to_sql(seq), id), |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    for (edit_seq, v, data) in edits {
        let mut edit = event_form::decode(EventKind::MessageEdited, v, data.as_deref(), None)?;
        if let EventBody::MessageEdited { body, .. } = &mut edit {
            body.clear();
        }
        conn.prepare_cached(
            "UPDATE events SET v = ?1, data = ?2 WHERE conversation_id = ?3 AND seq = ?4",
        )?
        .execute((
            event_form::FORM_VERSION,
            event_form::encode(&edit)?,
            conversation,
            edit_seq,
        ))?;
    }
    Ok(())
}
