//! Write operations on conversations and members. Each runs inside a transaction (see `txn`):
//! returning an error aborts everything it did, seq included. The rules are in
//! [`crate::rules`]; these read the state they need and write what they decide.

use confab_protocol::rest::Role;
use mongodb::bson::doc;

use super::common::{member_counts, next_change, record_event, require_member, role_of, seq_to_db};
use super::schema::{ConversationDoc, MemberDoc};
use super::txn::{Ctx, OpResult};
use super::user_events::record_user_event;
use crate::backend::{ConversationChange, MemberChange, Reader};
use crate::record::{new_id, now_ms};
use crate::rules::{self, Creation};
use crate::user_events::{NewUserEvent, UserEventKind};

/// Creates the conversation, or returns the existing direct one. A concurrent creation of the
/// same direct conversation fails on the unique `(tenant, direct_key)` index; the retry then
/// finds the winner's.
pub(super) async fn create_conversation(
    cx: &mut Ctx,
    new: &Creation,
) -> OpResult<(ConversationDoc, bool)> {
    if let Some(key) = &new.direct_key {
        let existing = cx
            .db
            .conversations
            .find_one(doc! { "tenant": &new.tenant, "direct_key": key })
            .session(&mut cx.session)
            .await?;
        if let Some(existing) = existing {
            return Ok((existing, false));
        }
    }
    let now = now_ms();
    let conversation = ConversationDoc {
        id: new_id(),
        tenant: new.tenant.clone(),
        kind: new.kind.as_str().to_owned(),
        title: new.title.clone(),
        created_by: new.creator.clone(),
        created_at: now,
        archived: false,
        last_seq: 0,
        last_activity: now,
        direct_key: new.direct_key.clone(),
    };
    cx.db
        .conversations
        .insert_one(&conversation)
        .session(&mut cx.session)
        .await?;
    let members = new.members().map(|(user, role)| MemberDoc {
        tenant: new.tenant.clone(),
        conversation: conversation.id.clone(),
        user: user.to_owned(),
        role: role.as_str().to_owned(),
        joined_at: now,
        read_seq: 0,
    });
    cx.db
        .members
        .insert_many(members)
        .session(&mut cx.session)
        .await?;
    for (user, role) in new.members() {
        let added = NewUserEvent::added(&new.tenant, user, &conversation.id, role);
        record_user_event(cx, &added).await?;
    }
    Ok((conversation, true))
}

pub(super) async fn update_conversation(
    cx: &mut Ctx,
    request: &ConversationChange,
) -> OpResult<Option<u64>> {
    let ConversationChange { tenant, by, id, .. } = request;
    let (current, role) = require_member(cx, tenant, id, by).await?;
    let title = request.title.as_deref();
    let Some(update) = rules::update_conversation(&current, role, title, request.archived)? else {
        return Ok(None);
    };
    let change = next_change(cx, id, by, now_ms()).await?;
    cx.db
        .conversations
        .update_one(
            doc! { "_id": id },
            doc! { "$set": { "title": &update.title, "archived": update.archived } },
        )
        .session(&mut cx.session)
        .await?;
    record_event(cx, tenant, change.conversation_updated(update)).await?;
    Ok(Some(change.seq))
}

/// `by`'s role in the group `conversation`, for a change of its members.
async fn member_of_group(
    cx: &mut Ctx,
    tenant: &str,
    conversation: &str,
    by: &str,
) -> OpResult<Role> {
    let (found, role) = require_member(cx, tenant, conversation, by).await?;
    rules::change_members(found.kind)?;
    Ok(role)
}

pub(super) async fn add_member(cx: &mut Ctx, request: &MemberChange, role: Role) -> OpResult<u64> {
    let (tenant, by, conversation, user) = request.parts();
    let by_role = member_of_group(cx, tenant, conversation, by).await?;
    let existing = role_of(cx, conversation, user).await?;
    rules::add_member(by_role, role, existing)?;
    let change = next_change(cx, conversation, by, now_ms()).await?;
    // A newcomer starts with the history before its arrival read.
    let member = MemberDoc {
        tenant: tenant.to_owned(),
        conversation: conversation.to_owned(),
        user: user.to_owned(),
        role: role.as_str().to_owned(),
        joined_at: change.ts,
        read_seq: seq_to_db(change.seq),
    };
    cx.db
        .members
        .insert_one(&member)
        .session(&mut cx.session)
        .await?;
    record_event(cx, tenant, change.member_added(user, role)).await?;
    let added = NewUserEvent::of_change(request, UserEventKind::ConversationAdded, Some(role));
    record_user_event(cx, &added).await?;
    Ok(change.seq)
}

pub(super) async fn remove_member(cx: &mut Ctx, request: &MemberChange) -> OpResult<u64> {
    let (tenant, by, conversation, user) = request.parts();
    let by_role = member_of_group(cx, tenant, conversation, by).await?;
    let target = role_of(cx, conversation, user).await?;
    let counts = member_counts(cx, conversation).await?;
    rules::remove_member(by, user, by_role, target, counts)?;
    let change = next_change(cx, conversation, by, now_ms()).await?;
    cx.db
        .members
        .delete_one(doc! { "conversation": conversation, "user": user })
        .session(&mut cx.session)
        .await?;
    record_event(cx, tenant, change.member_removed(user)).await?;
    let removed = NewUserEvent::of_change(request, UserEventKind::ConversationRemoved, None);
    record_user_event(cx, &removed).await?;
    Ok(change.seq)
}

pub(super) async fn set_role(
    cx: &mut Ctx,
    request: &MemberChange,
    role: Role,
) -> OpResult<Option<u64>> {
    let (tenant, by, conversation, user) = request.parts();
    let by_role = member_of_group(cx, tenant, conversation, by).await?;
    let current = role_of(cx, conversation, user).await?;
    let owners = member_counts(cx, conversation).await?.owners;
    if !rules::set_role(by_role, current, role, owners)? {
        return Ok(None);
    }
    let change = next_change(cx, conversation, by, now_ms()).await?;
    cx.db
        .members
        .update_one(
            doc! { "conversation": conversation, "user": user },
            doc! { "$set": { "role": role.as_str() } },
        )
        .session(&mut cx.session)
        .await?;
    record_event(cx, tenant, change.member_role_changed(user, role)).await?;
    let changed = NewUserEvent::of_change(request, UserEventKind::RoleChanged, Some(role));
    record_user_event(cx, &changed).await?;
    Ok(Some(change.seq))
}

/// Moves the read marker forward (no conversation event; a move records the user's own).
pub(super) async fn mark_read(
    cx: &mut Ctx,
    reader: Reader<'_>,
    conversation: &str,
    seq: u64,
) -> OpResult<bool> {
    let Reader { tenant, user } = reader;
    let (found, _) = require_member(cx, tenant, conversation, user).await?;
    rules::mark_read(seq, found.last_seq)?;
    let db_seq = seq_to_db(seq);
    let moved = cx
        .db
        .members
        .update_one(
            doc! { "conversation": conversation, "user": user, "read_seq": { "$lt": db_seq } },
            doc! { "$set": { "read_seq": db_seq } },
        )
        .session(&mut cx.session)
        .await?;
    if moved.modified_count == 0 {
        return Ok(false);
    }
    let read = NewUserEvent::read(tenant, user, conversation, seq);
    record_user_event(cx, &read).await?;
    Ok(true)
}
