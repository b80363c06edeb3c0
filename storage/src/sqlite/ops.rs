//! Write transactions on conversations and members. Each runs on the writer thread inside its
//! own savepoint: returning an error rolls back everything it did, seq included.

use confab_protocol::limits::MAX_INITIAL_MEMBERS;
use confab_protocol::rest::{Conversation, ConversationKind, Role};
use confab_protocol::{EventKind, ServerFrame};
use rusqlite::{Connection, OptionalExtension};

use super::common::{
    load_conversation, next_seq, now_ms, record_event, require_member, role_of, seq_to_sql,
};
use crate::{NewConversation, Result, StoreError, StoredEvent};

/// Separates the two user ids of a direct conversation's key (a control character no sane user
/// id contains).
const DIRECT_KEY_SEPARATOR: char = '\u{1f}';

pub(super) fn create_conversation(
    conn: &Connection,
    new: NewConversation,
) -> Result<(Conversation, bool)> {
    let mut others: Vec<String> = Vec::with_capacity(new.members.len());
    for user in new.members {
        if user != new.creator && !others.contains(&user) {
            others.push(user);
        }
    }
    if others.len() > MAX_INITIAL_MEMBERS {
        return Err(StoreError::Invalid(format!(
            "at most {MAX_INITIAL_MEMBERS} members"
        )));
    }
    let direct_key = match new.kind {
        ConversationKind::Group => None,
        ConversationKind::Direct => Some(direct_key(&new.creator, &others, new.title.as_deref())?),
    };
    if let Some(key) = &direct_key {
        let existing: Option<String> = conn
            .prepare_cached("SELECT id FROM conversations WHERE tenant = ?1 AND direct_key = ?2")?
            .query_row((&new.tenant, key), |row| row.get(0))
            .optional()?;
        if let Some(id) = existing {
            return Ok((load_conversation(conn, &new.tenant, &id)?, false));
        }
    }

    let id = super::common::new_id();
    let now = now_ms();
    let title = new.title.filter(|title| !title.is_empty());
    conn.prepare_cached(
        "INSERT INTO conversations
             (id, tenant, kind, title, created_by, created_at, archived, last_seq, last_activity, direct_key)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, 0, ?6, ?7)",
    )?
    .execute((&id, &new.tenant, new.kind.as_str(), &title, &new.creator, now, &direct_key))?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO members (tenant, conversation_id, user_id, role, joined_at, read_seq)
         VALUES (?1, ?2, ?3, ?4, ?5, 0)",
    )?;
    insert.execute((&new.tenant, &id, &new.creator, Role::Owner.as_str(), now))?;
    for user in &others {
        insert.execute((&new.tenant, &id, user, Role::Member.as_str(), now))?;
    }
    let conversation = Conversation {
        id,
        kind: new.kind,
        title,
        created_by: new.creator,
        created_at: now,
        archived: false,
        last_seq: 0,
    };
    Ok((conversation, true))
}

/// The unique key of the direct conversation between `creator` and the one other user.
fn direct_key(creator: &str, others: &[String], title: Option<&str>) -> Result<String> {
    let [other] = others else {
        return Err(StoreError::Invalid(
            "a direct conversation names exactly one other member".to_owned(),
        ));
    };
    if title.is_some_and(|title| !title.is_empty()) {
        return Err(StoreError::Invalid(
            "a direct conversation has no title".to_owned(),
        ));
    }
    let (first, second) = if creator <= other.as_str() {
        (creator, other.as_str())
    } else {
        (other.as_str(), creator)
    };
    Ok(format!("{first}{DIRECT_KEY_SEPARATOR}{second}"))
}

pub(super) fn update_conversation(
    conn: &Connection,
    events: &mut Vec<StoredEvent>,
    tenant: &str,
    by: &str,
    id: &str,
    title: Option<String>,
    archived: Option<bool>,
) -> Result<Option<u64>> {
    let (current, role) = require_member(conn, tenant, id, by)?;
    if !role.can_manage() {
        return Err(StoreError::Forbidden(
            "only owners and admins update a conversation".to_owned(),
        ));
    }
    if title.is_some() && current.kind == ConversationKind::Direct {
        return Err(StoreError::Forbidden(
            "a direct conversation has no title".to_owned(),
        ));
    }
    // An empty title clears it.
    let new_title = match title {
        Some(title) if title.is_empty() => None,
        Some(title) => Some(title),
        None => current.title.clone(),
    };
    let new_archived = archived.unwrap_or(current.archived);
    if new_title == current.title && new_archived == current.archived {
        return Ok(None);
    }
    let ts = now_ms();
    let seq = next_seq(conn, id, ts)?;
    conn.prepare_cached("UPDATE conversations SET title = ?1, archived = ?2 WHERE id = ?3")?
        .execute((&new_title, new_archived, id))?;
    let frame = ServerFrame::ConversationUpdated {
        conversation: id.to_owned(),
        seq,
        title: new_title,
        archived: new_archived,
        by: by.to_owned(),
        ts,
    };
    record_event(
        conn,
        events,
        tenant,
        EventKind::ConversationUpdated,
        None,
        ts,
        &frame,
    )?;
    Ok(Some(seq))
}

/// The conversation and `by`'s role, for a change of membership (groups only).
fn require_group_member(
    conn: &Connection,
    tenant: &str,
    conversation: &str,
    by: &str,
) -> Result<Role> {
    let (found, role) = require_member(conn, tenant, conversation, by)?;
    if found.kind == ConversationKind::Direct {
        return Err(StoreError::Forbidden(
            "the members of a direct conversation are fixed".to_owned(),
        ));
    }
    Ok(role)
}

fn count_owners(conn: &Connection, conversation: &str) -> Result<i64> {
    let owners = conn
        .prepare_cached(
            "SELECT count(*) FROM members WHERE conversation_id = ?1 AND role = 'owner'",
        )?
        .query_row([conversation], |row| row.get(0))?;
    Ok(owners)
}

pub(super) fn add_member(
    conn: &Connection,
    events: &mut Vec<StoredEvent>,
    tenant: &str,
    by: &str,
    conversation: &str,
    user: &str,
    role: Role,
) -> Result<u64> {
    let by_role = require_group_member(conn, tenant, conversation, by)?;
    if !by_role.can_manage() {
        return Err(StoreError::Forbidden(
            "only owners and admins add members".to_owned(),
        ));
    }
    if role.can_manage() && by_role != Role::Owner {
        return Err(StoreError::Forbidden(
            "only an owner adds an owner or admin".to_owned(),
        ));
    }
    if role_of(conn, conversation, user)?.is_some() {
        return Err(StoreError::Conflict("already a member".to_owned()));
    }
    let ts = now_ms();
    let seq = next_seq(conn, conversation, ts)?;
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
        ts,
        seq_to_sql(seq),
    ))?;
    let frame = ServerFrame::MemberAdded {
        conversation: conversation.to_owned(),
        seq,
        user: user.to_owned(),
        role,
        by: by.to_owned(),
        ts,
    };
    record_event(
        conn,
        events,
        tenant,
        EventKind::MemberAdded,
        Some(user),
        ts,
        &frame,
    )?;
    Ok(seq)
}

pub(super) fn remove_member(
    conn: &Connection,
    events: &mut Vec<StoredEvent>,
    tenant: &str,
    by: &str,
    conversation: &str,
    user: &str,
) -> Result<u64> {
    let by_role = require_group_member(conn, tenant, conversation, by)?;
    let target = role_of(conn, conversation, user)?.ok_or(StoreError::NotFound("member"))?;
    let allowed =
        by == user || by_role == Role::Owner || (by_role == Role::Admin && target == Role::Member);
    if !allowed {
        return Err(StoreError::Forbidden(format!(
            "role {} cannot remove role {}",
            by_role.as_str(),
            target.as_str()
        )));
    }
    if target == Role::Owner && count_owners(conn, conversation)? == 1 {
        let members: i64 = conn
            .prepare_cached("SELECT count(*) FROM members WHERE conversation_id = ?1")?
            .query_row([conversation], |row| row.get(0))?;
        if members > 1 {
            return Err(StoreError::Conflict(
                "the last owner cannot leave while others remain; make someone else owner first"
                    .to_owned(),
            ));
        }
    }
    let ts = now_ms();
    let seq = next_seq(conn, conversation, ts)?;
    conn.prepare_cached("DELETE FROM members WHERE conversation_id = ?1 AND user_id = ?2")?
        .execute((conversation, user))?;
    let frame = ServerFrame::MemberRemoved {
        conversation: conversation.to_owned(),
        seq,
        user: user.to_owned(),
        by: by.to_owned(),
        ts,
    };
    record_event(
        conn,
        events,
        tenant,
        EventKind::MemberRemoved,
        Some(user),
        ts,
        &frame,
    )?;
    Ok(seq)
}

pub(super) fn set_role(
    conn: &Connection,
    events: &mut Vec<StoredEvent>,
    tenant: &str,
    by: &str,
    conversation: &str,
    user: &str,
    role: Role,
) -> Result<Option<u64>> {
    let by_role = require_group_member(conn, tenant, conversation, by)?;
    if by_role != Role::Owner {
        return Err(StoreError::Forbidden("only owners change roles".to_owned()));
    }
    let current = role_of(conn, conversation, user)?.ok_or(StoreError::NotFound("member"))?;
    if current == role {
        return Ok(None);
    }
    if current == Role::Owner && count_owners(conn, conversation)? == 1 {
        return Err(StoreError::Conflict(
            "the last owner cannot step down; make someone else owner first".to_owned(),
        ));
    }
    let ts = now_ms();
    let seq = next_seq(conn, conversation, ts)?;
    conn.prepare_cached(
        "UPDATE members SET role = ?1 WHERE conversation_id = ?2 AND user_id = ?3",
    )?
    .execute((role.as_str(), conversation, user))?;
    let frame = ServerFrame::MemberRoleChanged {
        conversation: conversation.to_owned(),
        seq,
        user: user.to_owned(),
        role,
        by: by.to_owned(),
        ts,
    };
    record_event(
        conn,
        events,
        tenant,
        EventKind::MemberRoleChanged,
        Some(user),
        ts,
        &frame,
    )?;
    Ok(Some(seq))
}

pub(super) fn mark_read(
    conn: &Connection,
    tenant: &str,
    user: &str,
    conversation: &str,
    seq: u64,
) -> Result<bool> {
    let (found, _) = require_member(conn, tenant, conversation, user)?;
    if seq > found.last_seq {
        return Err(StoreError::Invalid(format!(
            "seq {seq} is past the conversation's last seq {}",
            found.last_seq
        )));
    }
    let moved = conn
        .prepare_cached(
            "UPDATE members SET read_seq = ?1
             WHERE conversation_id = ?2 AND user_id = ?3 AND read_seq < ?1",
        )?
        .execute((seq_to_sql(seq), conversation, user))?;
    Ok(moved > 0)
}
