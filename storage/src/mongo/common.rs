//! What the write and read paths share: conversions of stored documents, and the lookups that
//! enforce tenancy (another tenant's id is `NotFound`) and membership (`NotMember`).

use confab_protocol::rest::{Conversation, ConversationKind, Member, Message, Role};
use confab_protocol::{EventKind, Millis};
use futures_util::TryStreamExt;
use mongodb::bson::doc;
use mongodb::options::ReturnDocument;
use mongodb::{ClientSession, SessionCursor};
use serde::de::DeserializeOwned;

use super::schema::{ConversationDoc, EventDoc, MemberDoc, MessageDoc};
use super::txn::{Ctx, OpResult};
use crate::event_form::{self, FORM_VERSION, MessageRow};
use crate::record::{Change, NewEvent};
use crate::rules::{self, MemberCounts, MessageState};
use crate::{StoreError, StoredEvent};

/// A seq as stored (seqs never reach `i64::MAX`; a larger cursor means "everything").
pub(super) fn seq_to_db(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

/// A stored seq (never negative).
pub(super) fn seq_from_db(seq: i64) -> u64 {
    u64::try_from(seq).unwrap_or(0)
}

fn corrupt(what: String) -> StoreError {
    StoreError::internal_bare(format!("mongodb: corrupt document: {what}"))
}

pub(super) fn parse_role(text: &str) -> Result<Role, StoreError> {
    Role::parse(text).ok_or_else(|| corrupt(format!("unknown role {text:?}")))
}

pub(super) fn parse_event_kind(text: &str) -> Result<EventKind, StoreError> {
    EventKind::parse(text).ok_or_else(|| corrupt(format!("unknown event {text:?}")))
}

impl ConversationDoc {
    pub(super) fn to_conversation(&self) -> Result<Conversation, StoreError> {
        Ok(Conversation {
            id: self.id.clone(),
            kind: ConversationKind::parse(&self.kind)
                .ok_or_else(|| corrupt(format!("unknown conversation kind {:?}", self.kind)))?,
            title: self.title.clone(),
            created_by: self.created_by.clone(),
            created_at: self.created_at,
            archived: self.archived,
            last_seq: seq_from_db(self.last_seq),
        })
    }
}

impl MemberDoc {
    pub(super) fn to_member(&self) -> Result<Member, StoreError> {
        Ok(Member {
            user: self.user.clone(),
            role: parse_role(&self.role)?,
            joined_at: self.joined_at,
            read_seq: seq_from_db(self.read_seq),
        })
    }
}

impl MessageDoc {
    /// The message as read: a deleted one shows nothing of what it said. Reactions are filled
    /// in separately.
    pub(super) fn into_message(self) -> Message {
        let deleted = self.deleted_at.is_some();
        Message {
            id: self.id,
            conversation: self.conversation,
            seq: seq_from_db(self.seq),
            author: self.author,
            body: if deleted { String::new() } else { self.body },
            ts: self.created_at,
            client_msg_id: self.client_msg_id,
            reply_to: self.reply_to,
            attachments: if deleted {
                Vec::new()
            } else {
                self.attachments
            },
            edited_at: self.edited_at,
            deleted,
            reactions: Vec::new(),
        }
    }
}

impl MessageDoc {
    /// What the rules need to know of it, in `conversation`.
    pub(super) fn state(&self, conversation: &Conversation) -> MessageState<'_> {
        MessageState {
            author: &self.author,
            deleted: self.deleted_at.is_some(),
            archived: conversation.archived,
        }
    }

    /// The message as its `message` event reads it.
    pub(super) fn into_event_row(self) -> MessageRow {
        MessageRow {
            id: self.id,
            author: self.author,
            body: self.body,
            client_msg_id: self.client_msg_id,
            reply_to: self.reply_to,
            attachments: self.attachments,
        }
    }
}

impl EventDoc {
    /// The event, with its message's row for a `message` event.
    pub(super) fn into_event(self, message: Option<MessageRow>) -> Result<StoredEvent, StoreError> {
        let kind = parse_event_kind(&self.kind)?;
        Ok(StoredEvent {
            body: event_form::decode(kind, self.v, self.data.as_deref(), message)?,
            tenant: self.tenant,
            conversation: self.conversation,
            seq: seq_from_db(self.seq),
            ts: self.ts,
        })
    }
}

/// Drains a session cursor.
pub(super) async fn collect<T>(
    mut cursor: SessionCursor<T>,
    session: &mut ClientSession,
) -> mongodb::error::Result<Vec<T>>
where
    T: DeserializeOwned + Send + Sync + Unpin,
{
    cursor.stream(session).try_collect().await
}

/// The tenant's conversation `id`, or `NotFound`.
pub(super) async fn load_conversation(
    cx: &mut Ctx,
    tenant: &str,
    id: &str,
) -> OpResult<ConversationDoc> {
    let found = cx
        .db
        .conversations
        .find_one(doc! { "_id": id, "tenant": tenant })
        .session(&mut cx.session)
        .await?;
    Ok(rules::conversation_found(found)?)
}

/// `user`'s membership of `conversation`, if a member.
pub(super) async fn member_of(
    cx: &mut Ctx,
    conversation: &str,
    user: &str,
) -> OpResult<Option<MemberDoc>> {
    Ok(cx
        .db
        .members
        .find_one(doc! { "conversation": conversation, "user": user })
        .session(&mut cx.session)
        .await?)
}

/// `user`'s role in `conversation`, if a member.
pub(super) async fn role_of(
    cx: &mut Ctx,
    conversation: &str,
    user: &str,
) -> OpResult<Option<Role>> {
    match member_of(cx, conversation, user).await? {
        Some(member) => Ok(Some(parse_role(&member.role)?)),
        None => Ok(None),
    }
}

/// The tenant's conversation and `user`'s role in it: `NotFound` when the conversation does not
/// exist for this tenant, `NotMember` when `user` is not in it.
pub(super) async fn require_member(
    cx: &mut Ctx,
    tenant: &str,
    conversation: &str,
    user: &str,
) -> OpResult<(Conversation, Role)> {
    let found = load_conversation(cx, tenant, conversation).await?;
    let role = rules::membership(role_of(cx, conversation, user).await?)?;
    Ok((found.to_conversation()?, role))
}

/// The tenant's message `id`, or `NotFound`.
pub(super) async fn load_message(cx: &mut Ctx, tenant: &str, id: &str) -> OpResult<MessageDoc> {
    let found = cx
        .db
        .messages
        .find_one(doc! { "_id": id, "tenant": tenant })
        .session(&mut cx.session)
        .await?;
    Ok(rules::message_found(found)?)
}

/// The tenant's message `id` (`NotFound` otherwise), its conversation, and `user`'s role there
/// (`NotMember` otherwise).
pub(super) async fn require_message_member(
    cx: &mut Ctx,
    tenant: &str,
    user: &str,
    id: &str,
) -> OpResult<(MessageDoc, Conversation, Role)> {
    let message = load_message(cx, tenant, id).await?;
    let (conversation, role) = require_member(cx, tenant, &message.conversation, user).await?;
    Ok((message, conversation, role))
}

/// Takes the conversation's next seq and records `ts` as its latest activity. The update makes
/// concurrent transactions on the same conversation conflict, so seqs stay gapless.
pub(super) async fn next_seq(cx: &mut Ctx, conversation: &str, ts: Millis) -> OpResult<u64> {
    let updated = cx
        .db
        .conversations
        .find_one_and_update(
            doc! { "_id": conversation },
            doc! { "$inc": { "last_seq": 1_i64 }, "$max": { "last_activity": ts } },
        )
        .return_document(ReturnDocument::After)
        .session(&mut cx.session)
        .await?
        .ok_or(StoreError::NotFound("conversation"))?;
    Ok(seq_from_db(updated.last_seq))
}

/// Starts a change of `conversation` by `by` at `ts`: takes the conversation's next seq.
pub(super) async fn next_change<'a>(
    cx: &mut Ctx,
    conversation: &'a str,
    by: &'a str,
    ts: Millis,
) -> OpResult<Change<'a>> {
    let seq = next_seq(cx, conversation, ts).await?;
    Ok(Change {
        conversation,
        seq,
        by,
        ts,
    })
}

/// How many members, and owners among them, `conversation` has.
pub(super) async fn member_counts(cx: &mut Ctx, conversation: &str) -> OpResult<MemberCounts> {
    let members = cx
        .db
        .members
        .count_documents(doc! { "conversation": conversation })
        .session(&mut cx.session)
        .await?;
    let owners = cx
        .db
        .members
        .count_documents(doc! { "conversation": conversation, "role": Role::Owner.as_str() })
        .session(&mut cx.session)
        .await?;
    Ok(MemberCounts { members, owners })
}

/// Stores a durable event in the current storage form and queues it for the sink.
pub(super) async fn record_event(cx: &mut Ctx, tenant: &str, event: NewEvent) -> OpResult<()> {
    let body = &event.body;
    let stored = EventDoc {
        conversation: event.conversation.clone(),
        seq: seq_to_db(event.seq),
        tenant: tenant.to_owned(),
        kind: body.kind().as_str().to_owned(),
        subject: body.subject().map(str::to_owned),
        message: body.message().map(str::to_owned),
        ts: event.ts,
        v: FORM_VERSION,
        data: event_form::encode(body)?,
    };
    cx.db
        .events
        .insert_one(&stored)
        .session(&mut cx.session)
        .await?;
    cx.events.push(event.into_stored(tenant));
    Ok(())
}
