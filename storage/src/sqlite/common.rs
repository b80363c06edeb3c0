//! What the write and read paths share: error mapping, column conversions, and the lookups that
//! enforce tenancy (another tenant's id is `NotFound`) and membership (`NotMember`).

use confab_protocol::rest::{Conversation, ConversationKind, Role};
use confab_protocol::{EventKind, Millis};
use rusqlite::types::{Type, ValueRef};
use rusqlite::{Connection, OptionalExtension, Row, ffi};

use crate::event_form::{self, MessageRow};
use crate::record::{Change, NewEvent, json_error};
use crate::rules::{self, MemberCounts, MessageState};
use crate::{Result, StoreError, StoredEvent};

/// Whether SQLite gave up on a lock another connection (or process) held past the busy timeout.
pub(crate) fn is_busy(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        if is_busy(&err) {
            tracing::debug!(error = %err, "sqlite busy past the busy timeout");
            return StoreError::Busy;
        }
        if let rusqlite::Error::SqliteFailure(code, _) = &err
            && matches!(
                code.extended_code,
                ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            )
        {
            return StoreError::Conflict("already exists".to_owned());
        }
        StoreError::internal("sqlite", err)
    }
}

/// A seq as SQLite stores it (seqs never reach `i64::MAX`; a larger cursor means "everything").
pub(super) fn seq_to_sql(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

fn conversion_error(index: usize, what: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(index, Type::Text, what.into())
}

/// Reads a seq column.
pub(super) fn seq_at(row: &Row<'_>, index: usize) -> rusqlite::Result<u64> {
    let value: i64 = row.get(index)?;
    u64::try_from(value).map_err(|_| conversion_error(index, format!("negative seq {value}")))
}

/// Reads a role column.
pub(super) fn role_at(row: &Row<'_>, index: usize) -> rusqlite::Result<Role> {
    let text: String = row.get(index)?;
    Role::parse(&text).ok_or_else(|| conversion_error(index, format!("unknown role {text:?}")))
}

fn kind_at(row: &Row<'_>, index: usize) -> rusqlite::Result<ConversationKind> {
    let text: String = row.get(index)?;
    ConversationKind::parse(&text)
        .ok_or_else(|| conversion_error(index, format!("unknown conversation kind {text:?}")))
}

/// Reads an event kind column.
pub(super) fn event_kind_at(row: &Row<'_>, index: usize) -> rusqlite::Result<EventKind> {
    let text: String = row.get(index)?;
    EventKind::parse(&text)
        .ok_or_else(|| conversion_error(index, format!("unknown event {text:?}")))
}

/// The message row joined to a `message` event: `m.id, m.author, m.body, m.client_msg_id,
/// m.reply_to, m.attachments` from column `first` on (`None` when the join found none).
pub(super) fn event_message_at(row: &Row<'_>, first: usize) -> Result<Option<MessageRow>> {
    let Some(id) = row.get::<_, Option<String>>(first)? else {
        return Ok(None);
    };
    Ok(Some(MessageRow {
        id,
        author: row.get(first + 1)?,
        body: row.get(first + 2)?,
        client_msg_id: row.get(first + 3)?,
        reply_to: row.get(first + 4)?,
        attachments: match row.get::<_, Option<String>>(first + 5)? {
            Some(json) => serde_json::from_str(&json).map_err(json_error)?,
            None => Vec::new(),
        },
    }))
}

/// The last seq of conversation `c`: its last event's (the end of its `events` key range, one
/// look-up), or the floor an older schema left (`migrations/0008_derived_seq.sql`).
macro_rules! last_seq_of_c {
    () => {
        "max(c.seq_floor, coalesce((SELECT le.seq FROM events le WHERE le.conversation_id = c.id
                                    ORDER BY le.seq DESC LIMIT 1), 0))"
    };
}
pub(super) use last_seq_of_c;

/// The latest activity of conversation `c`: when its last event happened, or the floor (its
/// creation, or what an older schema recorded).
pub(super) const ACTIVITY_OF_C: &str =
    "max(c.activity_floor, coalesce((SELECT le.ts FROM events le WHERE le.conversation_id = c.id
                                     ORDER BY le.seq DESC LIMIT 1), 0))";

/// The columns [`conversation_from_row`] reads, in order, prefixed by the table alias `c` (a
/// macro, so that statements can be built with `concat!` and need no `format!` per call).
macro_rules! conversation_columns {
    () => {
        concat!(
            "c.id, c.kind, c.title, c.created_by, c.created_at, c.archived, ",
            last_seq_of_c!()
        )
    };
}

/// [`conversation_columns!`] as a constant.
pub(super) const CONVERSATION_COLUMNS: &str = conversation_columns!();

/// Reads the [`CONVERSATION_COLUMNS`] starting at column 0.
pub(super) fn conversation_from_row(row: &Row<'_>) -> rusqlite::Result<Conversation> {
    Ok(Conversation {
        id: row.get(0)?,
        kind: kind_at(row, 1)?,
        title: row.get(2)?,
        created_by: row.get(3)?,
        created_at: row.get(4)?,
        archived: row.get::<_, i64>(5)? != 0,
        last_seq: seq_at(row, 6)?,
    })
}

/// The tenant's conversation `id`, or `NotFound`.
pub(super) fn load_conversation(conn: &Connection, tenant: &str, id: &str) -> Result<Conversation> {
    let found = conn
        .prepare_cached(concat!(
            "SELECT ",
            conversation_columns!(),
            " FROM conversations c WHERE c.id = ?1 AND c.tenant = ?2"
        ))?
        .query_row((id, tenant), conversation_from_row)
        .optional()?;
    rules::conversation_found(found)
}

/// `user`'s role in `conversation`, if a member.
pub(super) fn role_of(conn: &Connection, conversation: &str, user: &str) -> Result<Option<Role>> {
    let role = conn
        .prepare_cached("SELECT role FROM members WHERE conversation_id = ?1 AND user_id = ?2")?
        .query_row((conversation, user), |row| role_at(row, 0))
        .optional()?;
    Ok(role)
}

/// The tenant's conversation and `user`'s role in it: `NotFound` when the conversation does not
/// exist for this tenant, `NotMember` when `user` is not in it.
pub(super) fn require_member(
    conn: &Connection,
    tenant: &str,
    conversation: &str,
    user: &str,
) -> Result<(Conversation, Role)> {
    // One statement: every join, resume, history page and write asks this.
    let found = conn
        .prepare_cached(concat!(
            "SELECT ",
            conversation_columns!(),
            ", (SELECT mb.role FROM members mb WHERE mb.conversation_id = c.id AND mb.user_id = ?3)
             FROM conversations c WHERE c.id = ?1 AND c.tenant = ?2"
        ))?
        .query_row((conversation, tenant, user), |row| {
            let role = match row.get_ref(7)? {
                ValueRef::Null => None,
                _ => Some(role_at(row, 7)?),
            };
            Ok((conversation_from_row(row)?, role))
        })
        .optional()?;
    let (found, role) = rules::conversation_found(found)?;
    Ok((found, rules::membership(role)?))
}

/// What the write path needs to know about a message.
pub(super) struct MessageMeta {
    pub conversation: String,
    pub author: String,
    pub deleted: bool,
    /// The seq of the message's own `message` event.
    pub seq: u64,
}

impl MessageMeta {
    /// What the rules need to know of it, in `conversation`.
    pub(super) fn state(&self, conversation: &Conversation) -> MessageState<'_> {
        MessageState {
            author: &self.author,
            deleted: self.deleted,
            archived: conversation.archived,
        }
    }
}

/// The tenant's message `id` (`NotFound` otherwise), its conversation, and `user`'s role there
/// (`NotMember` otherwise).
pub(super) fn require_message_member(
    conn: &Connection,
    tenant: &str,
    user: &str,
    id: &str,
) -> Result<(MessageMeta, Conversation, Role)> {
    let found = conn
        .prepare_cached(
            "SELECT conversation_id, author, deleted_at IS NOT NULL, seq
             FROM messages WHERE id = ?1 AND tenant = ?2",
        )?
        .query_row((id, tenant), |row| {
            Ok(MessageMeta {
                conversation: row.get(0)?,
                author: row.get(1)?,
                deleted: row.get(2)?,
                seq: seq_at(row, 3)?,
            })
        })
        .optional()?;
    let meta = rules::message_found(found)?;
    let (conversation, role) = require_member(conn, tenant, &meta.conversation, user)?;
    Ok((meta, conversation, role))
}

/// The conversation's next seq (`NotFound` if there is no such conversation). It writes
/// nothing: the event stored at that seq is what takes it (see
/// `migrations/0008_derived_seq.sql`), so the caller must store one before the next call.
pub(super) fn next_seq(conn: &Connection, conversation: &str) -> Result<u64> {
    let last = conn
        .prepare_cached(concat!(
            "SELECT ",
            last_seq_of_c!(),
            " FROM conversations c WHERE c.id = ?1"
        ))?
        .query_row([conversation], |row| seq_at(row, 0))
        .optional()?;
    let last = last.ok_or(StoreError::NotFound("conversation"))?;
    Ok(last + 1)
}

/// Starts a change of `conversation` by `by` at `ts`: takes the conversation's next seq.
pub(super) fn next_change<'a>(
    conn: &Connection,
    conversation: &'a str,
    by: &'a str,
    ts: Millis,
) -> Result<Change<'a>> {
    let seq = next_seq(conn, conversation)?;
    Ok(Change {
        conversation,
        seq,
        by,
        ts,
    })
}

/// How many members, and owners among them, `conversation` has.
pub(super) fn member_counts(conn: &Connection, conversation: &str) -> Result<MemberCounts> {
    let (members, owners) = conn
        .prepare_cached(
            "SELECT count(*), count(*) FILTER (WHERE role = 'owner') FROM members
             WHERE conversation_id = ?1",
        )?
        .query_row([conversation], |row| Ok((seq_at(row, 0)?, seq_at(row, 1)?)))?;
    Ok(MemberCounts { members, owners })
}

/// Stores a durable event in the current storage form and queues it for the sink. A `message`
/// event gives its row's `pos` (`migrations/0009_message_pos.sql`), other events `None`.
pub(super) fn record_event(
    conn: &Connection,
    events: &mut Vec<StoredEvent>,
    tenant: &str,
    event: NewEvent,
    message_pos: Option<i64>,
) -> Result<()> {
    let data = event_form::encode(&event.body)?;
    conn.prepare_cached(
        "INSERT INTO events (conversation_id, seq, kind, subject, ts, v, data, pos)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute((
        &event.conversation,
        seq_to_sql(event.seq),
        event.body.kind().as_str(),
        event.body.subject(),
        event.ts,
        event_form::FORM_VERSION,
        &data,
        message_pos,
    ))?;
    events.push(event.into_stored(tenant));
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn an_sqlite_failure_keeps_sqlites_error_as_its_cause() {
        let conn = Connection::open_in_memory().expect("open");
        let failure = conn
            .execute("INSERT INTO nowhere VALUES (1)", [])
            .expect_err("no such table");
        let err = StoreError::from(failure);
        assert!(matches!(&err, StoreError::Internal { context, .. } if context == "sqlite"));
        let cause = err.source().expect("a cause");
        let sqlite = cause
            .downcast_ref::<rusqlite::Error>()
            .expect("sqlite's error");
        assert!(sqlite.to_string().contains("nowhere"), "{sqlite}");
    }

    #[test]
    fn a_database_held_by_another_writer_is_busy_and_retryable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("busy.db");
        let holder = Connection::open(&path).expect("open");
        holder
            .execute_batch("CREATE TABLE t (v INTEGER); BEGIN IMMEDIATE; INSERT INTO t VALUES (1);")
            .expect("hold the write lock");
        let other = Connection::open(&path).expect("open");
        let failure = other
            .execute("INSERT INTO t VALUES (2)", [])
            .expect_err("the write lock is held");
        let err = StoreError::from(failure);
        assert!(matches!(err, StoreError::Busy), "{err:?}");
        assert_eq!(err.code(), confab_protocol::ErrorCode::Unavailable);
        holder.execute_batch("COMMIT").expect("release");
        other
            .execute("INSERT INTO t VALUES (2)", [])
            .expect("free again");
    }

    #[test]
    fn a_unique_violation_is_a_conflict() {
        let conn = Connection::open_in_memory().expect("open");
        conn.execute_batch("CREATE TABLE t (v INTEGER PRIMARY KEY); INSERT INTO t VALUES (1);")
            .expect("create");
        let failure = conn
            .execute("INSERT INTO t VALUES (1)", [])
            .expect_err("duplicate");
        assert!(matches!(StoreError::from(failure), StoreError::Conflict(_)));
    }
}
