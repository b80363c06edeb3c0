//! Queries. Each runs on a pooled read-only connection inside one read transaction.

use std::collections::HashMap;

use confab_protocol::rest::{
    Attachment, Conversation, ConversationSummary, Member, Message, MessagePage, Reaction,
};
use rusqlite::{Connection, OptionalExtension, Row};

use super::common::{
    ACTIVITY_OF_C, CONVERSATION_COLUMNS, conversation_from_row, event_kind_at, event_message_at,
    last_seq_of_c, load_conversation, require_member, role_at, seq_at, seq_to_sql,
};
use crate::backend::{Events, EventsQuery};
use crate::event_form;
use crate::record::json_error;
use crate::rules;
use crate::{PageQuery, Result, StoreError, StoredEvent};

/// Largest page of messages.
const MAX_PAGE: u32 = 200;

/// The columns [`message_from_row`] reads, in order, prefixed by the table alias `m`.
const MESSAGE_COLUMNS: &str = "m.id, m.conversation_id, m.seq, m.author, m.client_msg_id, m.body, \
     m.reply_to, m.attachments, m.created_at, m.edited_at, m.deleted_at IS NOT NULL";

/// A message row; attachments still as stored JSON.
struct MessageRow {
    message: Message,
    attachments: Option<String>,
}

fn message_from_row(row: &Row<'_>) -> rusqlite::Result<MessageRow> {
    let deleted: bool = row.get(10)?;
    let message = Message {
        id: row.get(0)?,
        conversation: row.get(1)?,
        seq: seq_at(row, 2)?,
        author: row.get(3)?,
        // What a deleted message said is never shown again.
        body: if deleted { String::new() } else { row.get(5)? },
        ts: row.get(8)?,
        client_msg_id: row.get(4)?,
        reply_to: row.get(6)?,
        attachments: Vec::new(),
        edited_at: row.get(9)?,
        deleted,
        reactions: Vec::new(),
    };
    let attachments = if deleted { None } else { row.get(7)? };
    Ok(MessageRow {
        message,
        attachments,
    })
}

impl MessageRow {
    fn into_message(self) -> Result<Message> {
        let mut message = self.message;
        if let Some(json) = self.attachments {
            message.attachments =
                serde_json::from_str::<Vec<Attachment>>(&json).map_err(json_error)?;
        }
        Ok(message)
    }
}

/// Fills in the reactions of `messages` with one query: per emoji, in order of first use, the
/// count and the users in the order they reacted.
fn attach_reactions(conn: &Connection, messages: &mut [Message]) -> Result<()> {
    if messages.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = messages.iter().map(|message| message.id.as_str()).collect();
    let ids = serde_json::to_string(&ids).map_err(json_error)?;
    let mut statement = conn.prepare_cached(
        "SELECT message_id, emoji, user_id FROM reactions
         WHERE message_id IN (SELECT value FROM json_each(?1))
         ORDER BY created_at, emoji, user_id",
    )?;
    let mut rows = statement.query([ids])?;
    let mut by_message: HashMap<String, Vec<Reaction>> = HashMap::new();
    while let Some(row) = rows.next()? {
        let message: String = row.get(0)?;
        let emoji: String = row.get(1)?;
        let user: String = row.get(2)?;
        let reactions = by_message.entry(message).or_default();
        match reactions
            .iter_mut()
            .find(|reaction| reaction.emoji == emoji)
        {
            Some(reaction) => {
                reaction.count += 1;
                reaction.users.push(user);
            }
            None => reactions.push(Reaction {
                emoji,
                count: 1,
                users: vec![user],
            }),
        }
    }
    for message in messages {
        if let Some(reactions) = by_message.remove(&message.id) {
            message.reactions = reactions;
        }
    }
    Ok(())
}

pub(super) fn conversation(
    conn: &Connection,
    tenant: &str,
    user: &str,
    id: &str,
) -> Result<Conversation> {
    let (conversation, _) = require_member(conn, tenant, id, user)?;
    Ok(conversation)
}

pub(super) fn conversation_positions(conn: &Connection) -> Result<Vec<(String, String, u64)>> {
    let mut statement = conn.prepare_cached(concat!(
        "SELECT c.tenant, c.id, ",
        last_seq_of_c!(),
        " FROM conversations c ORDER BY c.tenant, c.id"
    ))?;
    let positions = statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, seq_at(row, 2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(positions)
}

pub(super) fn list_conversations(
    conn: &Connection,
    tenant: &str,
    user: &str,
) -> Result<Vec<ConversationSummary>> {
    let sql = format!(
        "SELECT {CONVERSATION_COLUMNS}, mb.role, mb.read_seq,
             (SELECT count(*) FROM events xe JOIN messages x ON x.pos = xe.pos
              WHERE xe.conversation_id = c.id AND xe.seq > mb.read_seq
                AND x.author != mb.user_id AND x.deleted_at IS NULL)
         FROM members mb JOIN conversations c ON c.id = mb.conversation_id
         WHERE mb.tenant = ?1 AND mb.user_id = ?2 AND c.tenant = ?1
         ORDER BY {ACTIVITY_OF_C} DESC, c.id DESC"
    );
    let mut statement = conn.prepare_cached(&sql)?;
    let mut summaries = statement
        .query_map((tenant, user), |row| {
            Ok(ConversationSummary {
                conversation: conversation_from_row(row)?,
                role: role_at(row, 7)?,
                read_seq: seq_at(row, 8)?,
                unread: seq_at(row, 9)?,
                last_message: None,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;

    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM events e JOIN messages m ON m.pos = e.pos
         WHERE e.conversation_id = ?1 AND m.deleted_at IS NULL
         ORDER BY e.seq DESC LIMIT 1"
    );
    let mut last = conn.prepare_cached(&sql)?;
    let mut last_messages = Vec::new();
    for summary in &summaries {
        if let Some(row) = last
            .query_row([&summary.conversation.id], message_from_row)
            .optional()?
        {
            last_messages.push(row.into_message()?);
        }
    }
    attach_reactions(conn, &mut last_messages)?;
    let mut last_messages: HashMap<String, Message> = last_messages
        .into_iter()
        .map(|message| (message.conversation.clone(), message))
        .collect();
    for summary in &mut summaries {
        summary.last_message = last_messages.remove(&summary.conversation.id);
    }
    Ok(summaries)
}

const MEMBER_COLUMNS: &str = "user_id, role, joined_at, read_seq";

fn member_from_row(row: &Row<'_>) -> rusqlite::Result<Member> {
    Ok(Member {
        user: row.get(0)?,
        role: role_at(row, 1)?,
        joined_at: row.get(2)?,
        read_seq: seq_at(row, 3)?,
    })
}

pub(super) fn member(
    conn: &Connection,
    tenant: &str,
    conversation: &str,
    user: &str,
) -> Result<Option<Member>> {
    load_conversation(conn, tenant, conversation)?;
    let sql =
        format!("SELECT {MEMBER_COLUMNS} FROM members WHERE conversation_id = ?1 AND user_id = ?2");
    let member = conn
        .prepare_cached(&sql)?
        .query_row((conversation, user), member_from_row)
        .optional()?;
    Ok(member)
}

pub(super) fn members(
    conn: &Connection,
    tenant: &str,
    by: &str,
    conversation: &str,
) -> Result<Vec<Member>> {
    require_member(conn, tenant, conversation, by)?;
    let sql = format!(
        "SELECT {MEMBER_COLUMNS} FROM members WHERE conversation_id = ?1 ORDER BY joined_at, user_id"
    );
    let members = conn
        .prepare_cached(&sql)?
        .query_map([conversation], member_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(members)
}

pub(super) fn message(conn: &Connection, tenant: &str, user: &str, id: &str) -> Result<Message> {
    let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.id = ?1 AND m.tenant = ?2");
    let row = conn
        .prepare_cached(&sql)?
        .query_row((id, tenant), message_from_row)
        .optional()?
        .ok_or(StoreError::NotFound("message"))?;
    require_member(conn, tenant, &row.message.conversation, user)?;
    let mut messages = [row.into_message()?];
    attach_reactions(conn, &mut messages)?;
    let [message] = messages;
    Ok(message)
}

pub(super) fn messages(
    conn: &Connection,
    tenant: &str,
    user: &str,
    conversation: &str,
    query: PageQuery,
) -> Result<MessagePage> {
    require_member(conn, tenant, conversation, user)?;
    let limit = query.limit.clamp(1, MAX_PAGE);
    let fetch = i64::from(limit) + 1;
    let before = query.before.map_or(i64::MAX, seq_to_sql);
    let forward = query.after.is_some();
    let order = if forward { "ASC" } else { "DESC" };
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM events e JOIN messages m ON m.pos = e.pos
         WHERE e.conversation_id = ?1 AND e.seq > ?2 AND e.seq < ?3
         ORDER BY e.seq {order} LIMIT ?4"
    );
    let after = query.after.map_or(0, seq_to_sql);
    let mut rows = conn
        .prepare_cached(&sql)?
        .query_map((conversation, after, before, fetch), message_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let has_more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    if !forward {
        rows.reverse();
    }
    let mut messages = rows
        .into_iter()
        .map(MessageRow::into_message)
        .collect::<Result<Vec<_>>>()?;
    attach_reactions(conn, &mut messages)?;
    Ok(MessagePage { messages, has_more })
}

/// Events of a tenant's conversation after `query.after`, for a member (or without a
/// membership check when no user is given), with its last seq read in the same snapshot.
pub(super) fn events(conn: &Connection, query: &EventsQuery) -> Result<Events> {
    let EventsQuery {
        tenant,
        conversation,
        ..
    } = query;
    let last_seq = match &query.user {
        Some(user) => require_member(conn, tenant, conversation, user)?.0.last_seq,
        None => {
            let last_seq = conn
                .prepare_cached(concat!(
                    "SELECT ",
                    last_seq_of_c!(),
                    " FROM conversations c WHERE c.id = ?1 AND c.tenant = ?2"
                ))?
                .query_row((conversation, tenant), |row| seq_at(row, 0))
                .optional()?;
            rules::conversation_found(last_seq)?
        }
    };
    let events = events_from(conn, tenant, conversation, query.after, query.limit)?;
    Ok((events, last_seq))
}

fn events_from(
    conn: &Connection,
    tenant: &str,
    conversation: &str,
    after: u64,
    limit: u32,
) -> Result<Vec<StoredEvent>> {
    // A `message` event is read with its message's row (by `pos`), which holds its text.
    let mut statement = conn.prepare_cached(
        "SELECT e.seq, e.kind, e.ts, e.v, e.data,
                m.id, m.author, m.body, m.client_msg_id, m.reply_to, m.attachments
         FROM events e
         LEFT JOIN messages m ON m.pos = e.pos
         WHERE e.conversation_id = ?1 AND e.seq > ?2 ORDER BY e.seq LIMIT ?3",
    )?;
    let mut rows = statement.query((conversation, seq_to_sql(after), i64::from(limit)))?;
    let mut events = Vec::new();
    while let Some(row) = rows.next()? {
        let kind = event_kind_at(row, 1)?;
        let message = event_message_at(row, 5)?;
        let data: Option<String> = row.get(4)?;
        events.push(StoredEvent {
            tenant: tenant.to_owned(),
            conversation: conversation.to_owned(),
            seq: seq_at(row, 0)?,
            ts: row.get(2)?,
            body: event_form::decode(kind, row.get(3)?, data.as_deref(), message)?,
        });
    }
    Ok(events)
}
