//! Users' own event streams (see [`crate::user_events`]): recorded inside the write's savepoint,
//! read for resume.

use confab_protocol::rest::Role;
use rusqlite::{Connection, OptionalExtension};

use super::common::seq_to_sql;
use crate::record::now_ms;
use crate::user_events::{
    NewUserEvent, UserEvent, UserEventKind, UserEventPage, needs_resync, prune_up_to,
};
use crate::{Result, StoreError};

/// Records `event` with the user's next seq and forgets those no longer retained.
pub(super) fn record_user_event(conn: &Connection, event: &NewUserEvent<'_>) -> Result<()> {
    let last: i64 = conn
        .prepare_cached(
            "SELECT COALESCE(MAX(seq), 0) FROM user_events WHERE tenant = ?1 AND user_id = ?2",
        )?
        .query_row((event.tenant, event.user), |row| row.get(0))?;
    let seq = last.saturating_add(1);
    conn.prepare_cached(
        "INSERT INTO user_events (tenant, user_id, seq, kind, conversation_id, role, read_seq, ts)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute((
        event.tenant,
        event.user,
        seq,
        event.kind.as_str(),
        event.conversation,
        event.role.map(Role::as_str),
        event.read_seq.map(seq_to_sql),
        now_ms(),
    ))?;
    let prune = seq_to_sql(prune_up_to(u64::try_from(seq).unwrap_or(0)));
    if prune > 0 {
        conn.prepare_cached(
            "DELETE FROM user_events WHERE tenant = ?1 AND user_id = ?2 AND seq <= ?3",
        )?
        .execute((event.tenant, event.user, prune))?;
    }
    Ok(())
}

/// The user's events after `after`, at most `limit`.
pub(super) fn user_events(
    conn: &Connection,
    tenant: &str,
    user: &str,
    after: u64,
    limit: u32,
) -> Result<UserEventPage> {
    let bounds: Option<(i64, i64)> = conn
        .prepare_cached(
            "SELECT MIN(seq), MAX(seq) FROM user_events WHERE tenant = ?1 AND user_id = ?2
             HAVING COUNT(*) > 0",
        )?
        .query_row((tenant, user), |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    let to_u64 = |value: i64| u64::try_from(value).unwrap_or(0);
    let first = bounds.map(|(first, _)| to_u64(first));
    let last_seq = bounds.map_or(0, |(_, last)| to_u64(last));
    if needs_resync(after, first, last_seq) {
        return Ok(UserEventPage {
            events: Vec::new(),
            last_seq,
            resync: true,
        });
    }
    let mut query = conn.prepare_cached(
        "SELECT seq, kind, conversation_id, role, read_seq, ts FROM user_events
         WHERE tenant = ?1 AND user_id = ?2 AND seq > ?3 ORDER BY seq LIMIT ?4",
    )?;
    let rows = query.query_map((tenant, user, seq_to_sql(after), limit), |row| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, Option<String>>(3)?,
            row.get::<_, Option<i64>>(4)?,
            row.get::<_, i64>(5)?,
        ))
    })?;
    let mut events = Vec::new();
    for row in rows {
        let (seq, kind, conversation, role, read_seq, ts) = row?;
        let kind = UserEventKind::parse(&kind)
            .ok_or_else(|| StoreError::internal_bare(format!("unknown user event kind {kind}")))?;
        events.push(UserEvent {
            user_seq: to_u64(seq),
            kind,
            conversation,
            role: role.as_deref().and_then(Role::parse),
            read_seq: read_seq.map(to_u64),
            ts,
        });
    }
    Ok(UserEventPage {
        events,
        last_seq,
        resync: false,
    })
}
