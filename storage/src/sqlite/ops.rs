//! Write transactions on conversations and members. Each runs on the writer thread inside its
//! own savepoint: returning an error rolls back everything it did, seq included. The rules are
//! in [`crate::rules`]; these read the state they need and write what they decide.

use confab_protocol::rest::{Conversation, Role};
use rusqlite::{Connection, OptionalExtension};

use super::common::{
    load_conversation, member_counts, next_change, record_event, require_member, role_of,
    seq_to_sql,
};
use super::user_events::record_user_event;
use crate::backend::{ConversationChange, MemberChange};
use crate::record::{new_id, now_ms};
use crate::rules::{self, Creation};
use crate::user_events::{NewUserEvent, UserEventKind};
use crate::{Result, StoredEvent};

pub(super) fn create_conversation(
    conn: &Connection,
    new: Creation,
) -> Result<(Conversation, bool)> {
    if let Some(key) = &new.direct_key {
        let existing: Option<String> = conn
            .prepare_cached("SELECT id FROM conversations WHERE tenant = ?1 AND direct_key = ?2")?
            .query_row((&new.tenant, key), |row| row.get(0))
            .optional()?;
        if let Some(id) = existing {
            return Ok((load_conversation(conn, &new.tenant, &id)?, false));
        }
    }

    let id = new_id();
    let now = now_ms();
    conn.prepare_cached(
        "INSERT INTO conversations
             (id, tenant, kind, title, created_by, created_at, archived, seq_floor, activity_floor, direct_key)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, 0, ?6, ?7)",
    )?
    .execute((&id, &new.tenant, new.kind.as_str(), &new.title, &new.creator, now, &new.direct_key))?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO members (tenant, conversation_id, user_id, role, joined_at, read_seq)
         VALUES (?1, ?2, ?3, ?4, ?5, 0)",
    )?;
    for (user, role) in new.members() {
        insert.execute((&new.tenant, &id, user, role.as_str(), now))?;
        let added = NewUserEvent::added(&new.tenant, user, &id, role);
        record_user_event(conn, &added)?;
    }
    let conversation = Conversation {
        id,
        kind: new.kind,
        title: new.title,
        created_by: new.creator,
        created_at: now,
        archived: false,
        last_seq: 0,
    };
    Ok((conversation, true))
}

pub(super) fn update_conversation(
    conn: &Connection,
    events: &mut Vec<StoredEvent>,
    request: &ConversationChange,
) -> Result<Option<u64>> {
    let ConversationChange { tenant, by, id, .. } = request;
    let (current, role) = require_member(conn, tenant, id, by)?;
    let title = request.title.as_deref();
    let Some(update) = rules::update_conversation(&current, role, title, request.archived)? else {
        return Ok(None);
    };
    let change = next_change(conn, id, by, now_ms())?;
    conn.prepare_cached("UPDATE conversations SET title = ?1, archived = ?2 WHERE id = ?3")?
        .execute((&update.title, update.archived, id))?;
    record_event(
        conn,
        events,
        tenant,
        change.conversation_updated(update),
        None,
    )?;
    Ok(Some(change.seq))
}

/// `by`'s role in the group `conversation`, for a change of its members.
fn member_of_group(conn: &Connection, tenant: &str, conversation: &str, by: &str) -> Result<Role> {
    let (found, role) = require_member(conn, tenant, conversation, by)?;
    rules::change_members(found.kind)?;
    Ok(role)
}

pub(super) fn add_member(
    conn: &Connection,
    events: &mut Vec<StoredEvent>,
    request: &MemberChange,
    role: Role,
) -> Result<u64> {
    let (tenant, by, conversation, user) = request.parts();
    let by_role = member_of_group(conn, tenant, conversation, by)?;
    rules::add_member(by_role, role, role_of(conn, conversation, user)?)?;
    let change = next_change(conn, conversation, by, now_ms())?;
    // A newcomer starts with the history before its arrival read.
    conn.prepare_cached(
        "INSERT INTO members (tenant, conversation_id, user_id, role, joined_at, read_seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute((
        tenant,
        conversation,
        user,
        role.as_str(),
        change.ts,
        seq_to_sql(change.seq),
    ))?;
    record_event(conn, events, tenant, change.member_added(user, role), None)?;
    let added = NewUserEvent::of_change(request, UserEventKind::ConversationAdded, Some(role));
    record_user_event(conn, &added)?;
    Ok(change.seq)
}

pub(super) fn remove_member(
    conn: &Connection,
    events: &mut Vec<StoredEvent>,
    request: &MemberChange,
) -> Result<u64> {
    let (tenant, by, conversation, user) = request.parts();
    let by_role = member_of_group(conn, tenant, conversation, by)?;
    let target = role_of(conn, conversation, user)?;
    let counts = member_counts(conn, conversation)?;
    rules::remove_member(by, user, by_role, target, counts)?;
    let change = next_change(conn, conversation, by, now_ms())?;
    conn.prepare_cached("DELETE FROM members WHERE conversation_id = ?1 AND user_id = ?2")?
        .execute((conversation, user))?;
    record_event(conn, events, tenant, change.member_removed(user), None)?;
    let removed = NewUserEvent::of_change(request, UserEventKind::ConversationRemoved, None);
    record_user_event(conn, &removed)?;
    Ok(change.seq)
}

pub(super) fn set_role(
    conn: &Connection,
    events: &mut Vec<StoredEvent>,
    request: &MemberChange,
    role: Role,
) -> Result<Option<u64>> {
    let (tenant, by, conversation, user) = request.parts();
    let by_role = member_of_group(conn, tenant, conversation, by)?;
    let current = role_of(conn, conversation, user)?;
    let owners = member_counts(conn, conversation)?.owners;
    if !rules::set_role(by_role, current, role, owners)? {
        return Ok(None);
    }
    let change = next_change(conn, conversation, by, now_ms())?;
    conn.prepare_cached(
        "UPDATE members SET role = ?1 WHERE conversation_id = ?2 AND user_id = ?3",
    )?
    .execute((role.as_str(), conversation, user))?;
    record_event(
        conn,
        events,
        tenant,
        change.member_role_changed(user, role),
        None,
    )?;
    let changed = NewUserEvent::of_change(request, UserEventKind::RoleChanged, Some(role));
    record_user_event(conn, &changed)?;
    Ok(Some(change.seq))
}

pub(super) fn mark_read(
    conn: &Connection,
    tenant: &str,
    user: &str,
    conversation: &str,
    seq: u64,
) -> Result<bool> {
    let (found, _) = require_member(conn, tenant, conversation, user)?;
    rules::mark_read(seq, found.last_seq)?;
    let moved = conn
        .prepare_cached(
            "UPDATE members SET read_seq = ?1
             WHERE conversation_id = ?2 AND user_id = ?3 AND read_seq < ?1",
        )?
        .execute((seq_to_sql(seq), conversation, user))?;
    if moved == 0 {
        return Ok(false);
    }
    let read = NewUserEvent::read(tenant, user, conversation, seq);
    record_user_event(conn, &read)?;
    Ok(true)
}
