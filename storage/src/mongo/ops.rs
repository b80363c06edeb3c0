//! Write operations on conversations and members. Each runs inside a transaction (see `txn`):
//! returning an error aborts everything it did, seq included.

use confab_protocol::limits::MAX_INITIAL_MEMBERS;
use confab_protocol::rest::{ConversationKind, Role};
use confab_protocol::{EventKind, ServerFrame};
use mongodb::bson::doc;

use super::common::{next_seq, record_event, require_member, role_of, seq_from_db, seq_to_db};
use super::schema::{ConversationDoc, MemberDoc};
use super::txn::{Ctx, OpResult};
use super::{new_id, now_ms};
use crate::{NewConversation, StoreError};

/// Separates the two user ids of a direct conversation's key (a control character no sane user
/// id contains).
const DIRECT_KEY_SEPARATOR: char = '\u{1f}';

/// A validated [`NewConversation`]: members deduplicated, the direct key computed.
#[derive(Debug)]
pub(super) struct Creation {
    pub tenant: String,
    pub creator: String,
    pub kind: ConversationKind,
    pub title: Option<String>,
    pub others: Vec<String>,
    pub direct_key: Option<String>,
}

impl Creation {
    pub(super) fn validate(new: NewConversation) -> Result<Creation, StoreError> {
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
            ConversationKind::Direct => {
                Some(direct_key(&new.creator, &others, new.title.as_deref())?)
            }
        };
        Ok(Creation {
            tenant: new.tenant,
            creator: new.creator,
            kind: new.kind,
            title: new.title.filter(|title| !title.is_empty()),
            others,
            direct_key,
        })
    }
}

/// The unique key of the direct conversation between `creator` and the one other user.
fn direct_key(creator: &str, others: &[String], title: Option<&str>) -> Result<String, StoreError> {
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
    let member = |user: &str, role: Role| MemberDoc {
        tenant: new.tenant.clone(),
        conversation: conversation.id.clone(),
        user: user.to_owned(),
        role: role.as_str().to_owned(),
        joined_at: now,
        read_seq: 0,
    };
    let members = std::iter::once(member(&new.creator, Role::Owner))
        .chain(new.others.iter().map(|user| member(user, Role::Member)));
    cx.db
        .members
        .insert_many(members)
        .session(&mut cx.session)
        .await?;
    Ok((conversation, true))
}

pub(super) async fn update_conversation(
    cx: &mut Ctx,
    tenant: &str,
    by: &str,
    id: &str,
    title: Option<&str>,
    archived: Option<bool>,
) -> OpResult<Option<u64>> {
    let (current, role) = require_member(cx, tenant, id, by).await?;
    if !role.can_manage() {
        return Err(StoreError::Forbidden(
            "only owners and admins update a conversation".to_owned(),
        )
        .into());
    }
    if title.is_some() && current.kind == ConversationKind::Direct.as_str() {
        return Err(StoreError::Forbidden("a direct conversation has no title".to_owned()).into());
    }
    // An empty title clears it.
    let new_title = match title {
        Some("") => None,
        Some(title) => Some(title.to_owned()),
        None => current.title.clone(),
    };
    let new_archived = archived.unwrap_or(current.archived);
    if new_title == current.title && new_archived == current.archived {
        return Ok(None);
    }
    let ts = now_ms();
    let seq = next_seq(cx, id, ts).await?;
    cx.db
        .conversations
        .update_one(
            doc! { "_id": id },
            doc! { "$set": { "title": &new_title, "archived": new_archived } },
        )
        .session(&mut cx.session)
        .await?;
    let frame = ServerFrame::ConversationUpdated {
        conversation: id.to_owned(),
        seq,
        title: new_title,
        archived: new_archived,
        by: by.to_owned(),
        ts,
    };
    record_event(cx, tenant, EventKind::ConversationUpdated, None, ts, &frame).await?;
    Ok(Some(seq))
}

/// `by`'s role, for a change of membership (groups only).
async fn require_group_member(
    cx: &mut Ctx,
    tenant: &str,
    conversation: &str,
    by: &str,
) -> OpResult<Role> {
    let (found, role) = require_member(cx, tenant, conversation, by).await?;
    if found.kind == ConversationKind::Direct.as_str() {
        return Err(StoreError::Forbidden(
            "the members of a direct conversation are fixed".to_owned(),
        )
        .into());
    }
    Ok(role)
}

async fn count_owners(cx: &mut Ctx, conversation: &str) -> OpResult<u64> {
    Ok(cx
        .db
        .members
        .count_documents(doc! { "conversation": conversation, "role": Role::Owner.as_str() })
        .session(&mut cx.session)
        .await?)
}

pub(super) async fn add_member(
    cx: &mut Ctx,
    tenant: &str,
    by: &str,
    conversation: &str,
    user: &str,
    role: Role,
) -> OpResult<u64> {
    let by_role = require_group_member(cx, tenant, conversation, by).await?;
    if !by_role.can_manage() {
        return Err(StoreError::Forbidden("only owners and admins add members".to_owned()).into());
    }
    if role.can_manage() && by_role != Role::Owner {
        return Err(
            StoreError::Forbidden("only an owner adds an owner or admin".to_owned()).into(),
        );
    }
    if role_of(cx, conversation, user).await?.is_some() {
        return Err(StoreError::Conflict("already a member".to_owned()).into());
    }
    let ts = now_ms();
    let seq = next_seq(cx, conversation, ts).await?;
    // A newcomer starts with the history before its arrival read.
    let member = MemberDoc {
        tenant: tenant.to_owned(),
        conversation: conversation.to_owned(),
        user: user.to_owned(),
        role: role.as_str().to_owned(),
        joined_at: ts,
        read_seq: seq_to_db(seq),
    };
    cx.db
        .members
        .insert_one(&member)
        .session(&mut cx.session)
        .await?;
    let frame = ServerFrame::MemberAdded {
        conversation: conversation.to_owned(),
        seq,
        user: user.to_owned(),
        role,
        by: by.to_owned(),
        ts,
    };
    record_event(cx, tenant, EventKind::MemberAdded, Some(user), ts, &frame).await?;
    Ok(seq)
}

pub(super) async fn remove_member(
    cx: &mut Ctx,
    tenant: &str,
    by: &str,
    conversation: &str,
    user: &str,
) -> OpResult<u64> {
    let by_role = require_group_member(cx, tenant, conversation, by).await?;
    let target = role_of(cx, conversation, user)
        .await?
        .ok_or(StoreError::NotFound("member"))?;
    let allowed =
        by == user || by_role == Role::Owner || (by_role == Role::Admin && target == Role::Member);
    if !allowed {
        return Err(StoreError::Forbidden(format!(
            "role {} cannot remove role {}",
            by_role.as_str(),
            target.as_str()
        ))
        .into());
    }
    if target == Role::Owner && count_owners(cx, conversation).await? == 1 {
        let members = cx
            .db
            .members
            .count_documents(doc! { "conversation": conversation })
            .session(&mut cx.session)
            .await?;
        if members > 1 {
            return Err(StoreError::Conflict(
                "the last owner cannot leave while others remain; make someone else owner first"
                    .to_owned(),
            )
            .into());
        }
    }
    let ts = now_ms();
    let seq = next_seq(cx, conversation, ts).await?;
    cx.db
        .members
        .delete_one(doc! { "conversation": conversation, "user": user })
        .session(&mut cx.session)
        .await?;
    let frame = ServerFrame::MemberRemoved {
        conversation: conversation.to_owned(),
        seq,
        user: user.to_owned(),
        by: by.to_owned(),
        ts,
    };
    record_event(cx, tenant, EventKind::MemberRemoved, Some(user), ts, &frame).await?;
    Ok(seq)
}

pub(super) async fn set_role(
    cx: &mut Ctx,
    tenant: &str,
    by: &str,
    conversation: &str,
    user: &str,
    role: Role,
) -> OpResult<Option<u64>> {
    let by_role = require_group_member(cx, tenant, conversation, by).await?;
    if by_role != Role::Owner {
        return Err(StoreError::Forbidden("only owners change roles".to_owned()).into());
    }
    let current = role_of(cx, conversation, user)
        .await?
        .ok_or(StoreError::NotFound("member"))?;
    if current == role {
        return Ok(None);
    }
    if current == Role::Owner && count_owners(cx, conversation).await? == 1 {
        return Err(StoreError::Conflict(
            "the last owner cannot step down; make someone else owner first".to_owned(),
        )
        .into());
    }
    let ts = now_ms();
    let seq = next_seq(cx, conversation, ts).await?;
    cx.db
        .members
        .update_one(
            doc! { "conversation": conversation, "user": user },
            doc! { "$set": { "role": role.as_str() } },
        )
        .session(&mut cx.session)
        .await?;
    let frame = ServerFrame::MemberRoleChanged {
        conversation: conversation.to_owned(),
        seq,
        user: user.to_owned(),
        role,
        by: by.to_owned(),
        ts,
    };
    record_event(
        cx,
        tenant,
        EventKind::MemberRoleChanged,
        Some(user),
        ts,
        &frame,
    )
    .await?;
    Ok(Some(seq))
}

/// Moves the read marker forward (a single-document update: no transaction, no event).
pub(super) async fn mark_read(
    cx: &mut Ctx,
    tenant: &str,
    user: &str,
    conversation: &str,
    seq: u64,
) -> OpResult<bool> {
    let (found, _) = require_member(cx, tenant, conversation, user).await?;
    let last_seq = seq_from_db(found.last_seq);
    if seq > last_seq {
        return Err(StoreError::Invalid(format!(
            "seq {seq} is past the conversation's last seq {last_seq}"
        ))
        .into());
    }
    let seq = seq_to_db(seq);
    let moved = cx
        .db
        .members
        .update_one(
            doc! { "conversation": conversation, "user": user, "read_seq": { "$lt": seq } },
            doc! { "$set": { "read_seq": seq } },
        )
        .session(&mut cx.session)
        .await?;
    Ok(moved.modified_count > 0)
}
