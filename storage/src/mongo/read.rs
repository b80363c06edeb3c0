//! Queries. They run outside transactions; where two reads must agree (an event page and the
//! conversation's last seq) the second is bounded by the first.

use std::collections::HashMap;

use confab_protocol::EventKind;
use confab_protocol::rest::{
    Conversation, ConversationSummary, Member, Message, MessagePage, Reaction,
};
use mongodb::bson::doc;

use super::common::{
    collect, load_conversation, parse_role, require_member, seq_from_db, seq_to_db,
};
use super::schema::{ConversationDoc, MessageDoc};
use super::txn::{Ctx, OpResult};
use crate::backend::{Events, EventsQuery, Reader};
use crate::{PageQuery, StoreError, StoredEvent};

/// Every conversation's tenant, id and last seq.
pub(super) async fn conversation_positions(cx: &mut Ctx) -> OpResult<Vec<(String, String, u64)>> {
    let cursor = cx
        .db
        .conversations
        .find(doc! {})
        .sort(doc! { "tenant": 1, "_id": 1 })
        .session(&mut cx.session)
        .await?;
    let all: Vec<ConversationDoc> = collect(cursor, &mut cx.session).await?;
    Ok(all
        .into_iter()
        .map(|c| (c.tenant, c.id, seq_from_db(c.last_seq)))
        .collect())
}

/// Largest page of messages.
const MAX_PAGE: u32 = 200;

/// Fills in the reactions of `messages` with one query: per emoji, in order of first use, the
/// count and the users in the order they reacted.
async fn attach_reactions(cx: &mut Ctx, messages: &mut [Message]) -> OpResult<()> {
    if messages.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = messages.iter().map(|message| message.id.as_str()).collect();
    let cursor = cx
        .db
        .reactions
        .find(doc! { "message": { "$in": ids } })
        .sort(doc! { "created_at": 1, "emoji": 1, "user": 1 })
        .session(&mut cx.session)
        .await?;
    let mut by_message: HashMap<String, Vec<Reaction>> = HashMap::new();
    for row in collect(cursor, &mut cx.session).await? {
        let reactions = by_message.entry(row.message).or_default();
        match reactions
            .iter_mut()
            .find(|reaction| reaction.emoji == row.emoji)
        {
            Some(reaction) => {
                reaction.count += 1;
                reaction.users.push(row.user);
            }
            None => reactions.push(Reaction {
                emoji: row.emoji,
                count: 1,
                users: vec![row.user],
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

pub(super) async fn conversation(
    cx: &mut Ctx,
    reader: Reader<'_>,
    id: &str,
) -> OpResult<Conversation> {
    let (found, _) = require_member(cx, reader.tenant, id, reader.user).await?;
    Ok(found)
}

/// How many messages of `conversation` `user` has not read (others', not deleted, past
/// `read_seq`), and its last message that is not deleted.
async fn unread_and_last(
    cx: &mut Ctx,
    conversation: &str,
    user: &str,
    read_seq: i64,
) -> OpResult<(u64, Option<MessageDoc>)> {
    let unread = cx
        .db
        .messages
        .count_documents(doc! {
            "conversation": conversation,
            "seq": { "$gt": read_seq },
            "author": { "$ne": user },
            "deleted_at": null,
        })
        .session(&mut cx.session)
        .await?;
    let last = cx
        .db
        .messages
        .find_one(doc! { "conversation": conversation, "deleted_at": null })
        .sort(doc! { "seq": -1 })
        .session(&mut cx.session)
        .await?;
    Ok((unread, last))
}

pub(super) async fn list_conversations(
    cx: &mut Ctx,
    reader: Reader<'_>,
) -> OpResult<Vec<ConversationSummary>> {
    let Reader { tenant, user } = reader;
    let cursor = cx
        .db
        .members
        .find(doc! { "tenant": tenant, "user": user })
        .session(&mut cx.session)
        .await?;
    let memberships = collect(cursor, &mut cx.session).await?;
    if memberships.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<&str> = memberships
        .iter()
        .map(|member| member.conversation.as_str())
        .collect();
    let cursor = cx
        .db
        .conversations
        .find(doc! { "_id": { "$in": ids }, "tenant": tenant })
        .session(&mut cx.session)
        .await?;
    let mut conversations: HashMap<String, ConversationDoc> = collect(cursor, &mut cx.session)
        .await?
        .into_iter()
        .map(|conversation| (conversation.id.clone(), conversation))
        .collect();

    let mut listed: Vec<(i64, ConversationSummary)> = Vec::with_capacity(memberships.len());
    let mut last_messages = Vec::new();
    for member in memberships {
        let Some(found) = conversations.remove(&member.conversation) else {
            continue;
        };
        let (unread, last) = unread_and_last(cx, &found.id, user, member.read_seq).await?;
        if let Some(last) = last {
            last_messages.push(last.into_message());
        }
        let summary = ConversationSummary {
            conversation: found.to_conversation()?,
            role: parse_role(&member.role)?,
            read_seq: seq_from_db(member.read_seq),
            unread,
            last_message: None,
        };
        listed.push((found.last_activity, summary));
    }
    attach_reactions(cx, &mut last_messages).await?;
    let mut last_messages: HashMap<String, Message> = last_messages
        .into_iter()
        .map(|message| (message.conversation.clone(), message))
        .collect();
    // Newest activity first; ties by id, newest first (ids are time-ordered).
    listed.sort_by(|(a_activity, a), (b_activity, b)| {
        b_activity
            .cmp(a_activity)
            .then_with(|| b.conversation.id.cmp(&a.conversation.id))
    });
    Ok(listed
        .into_iter()
        .map(|(_, mut summary)| {
            summary.last_message = last_messages.remove(&summary.conversation.id);
            summary
        })
        .collect())
}

/// `reader.user`'s own membership.
pub(super) async fn member(
    cx: &mut Ctx,
    reader: Reader<'_>,
    conversation: &str,
) -> OpResult<Option<Member>> {
    load_conversation(cx, reader.tenant, conversation).await?;
    match super::common::member_of(cx, conversation, reader.user).await? {
        Some(member) => Ok(Some(member.to_member()?)),
        None => Ok(None),
    }
}

pub(super) async fn members(
    cx: &mut Ctx,
    reader: Reader<'_>,
    conversation: &str,
) -> OpResult<Vec<Member>> {
    require_member(cx, reader.tenant, conversation, reader.user).await?;
    let cursor = cx
        .db
        .members
        .find(doc! { "conversation": conversation })
        .sort(doc! { "joined_at": 1, "user": 1 })
        .session(&mut cx.session)
        .await?;
    let members = collect(cursor, &mut cx.session).await?;
    Ok(members
        .iter()
        .map(|member| member.to_member())
        .collect::<Result<_, StoreError>>()?)
}

pub(super) async fn message(cx: &mut Ctx, reader: Reader<'_>, id: &str) -> OpResult<Message> {
    let Reader { tenant, user } = reader;
    let found = super::common::load_message(cx, tenant, id).await?;
    require_member(cx, tenant, &found.conversation, user).await?;
    let mut messages = [found.into_message()];
    attach_reactions(cx, &mut messages).await?;
    let [message] = messages;
    Ok(message)
}

pub(super) async fn messages(
    cx: &mut Ctx,
    reader: Reader<'_>,
    conversation: &str,
    query: PageQuery,
) -> OpResult<MessagePage> {
    require_member(cx, reader.tenant, conversation, reader.user).await?;
    let limit = query.limit.clamp(1, MAX_PAGE);
    let before = query.before.map_or(i64::MAX, seq_to_db);
    let after = query.after.map_or(0, seq_to_db);
    let forward = query.after.is_some();
    let cursor = cx
        .db
        .messages
        .find(doc! { "conversation": conversation, "seq": { "$gt": after, "$lt": before } })
        .sort(doc! { "seq": if forward { 1 } else { -1 } })
        .limit(i64::from(limit) + 1)
        .session(&mut cx.session)
        .await?;
    let mut rows = collect(cursor, &mut cx.session).await?;
    let has_more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    if !forward {
        rows.reverse();
    }
    let mut messages: Vec<Message> = rows.into_iter().map(|row| row.into_message()).collect();
    attach_reactions(cx, &mut messages).await?;
    Ok(MessagePage { messages, has_more })
}

/// Events of a tenant's conversation after `query.after`, for a member (or without a
/// membership check when no user is given).
pub(super) async fn events(cx: &mut Ctx, query: &EventsQuery) -> OpResult<Events> {
    let (tenant, conversation) = (query.tenant.as_str(), query.conversation.as_str());
    let last_seq = match &query.user {
        Some(user) => {
            require_member(cx, tenant, conversation, user)
                .await?
                .0
                .last_seq
        }
        None => seq_from_db(load_conversation(cx, tenant, conversation).await?.last_seq),
    };
    events_up_to(cx, conversation, last_seq, query.after, query.limit).await
}

/// The events after `after` up to the conversation's `last_seq` as read: every event up to it was
/// committed with it, so the page and the last seq agree without a snapshot.
async fn events_up_to(
    cx: &mut Ctx,
    conversation: &str,
    last_seq: u64,
    after: u64,
    limit: u32,
) -> OpResult<(Vec<StoredEvent>, u64)> {
    if limit == 0 || after >= last_seq {
        return Ok((Vec::new(), last_seq));
    }
    let first = seq_to_db(after);
    let last = first
        .saturating_add(i64::from(limit))
        .min(seq_to_db(last_seq));
    // The messages first: a `message` event reads its text from its message, and an edit or a
    // delete committed between the two reads has then already kept (or scrubbed) the text in
    // the event read second, which wins over the message's.
    let cursor = cx
        .db
        .messages
        .find(doc! {
            "conversation": conversation,
            "seq": { "$gt": first, "$lte": last },
        })
        .session(&mut cx.session)
        .await?;
    let mut messages: HashMap<i64, MessageDoc> = collect(cursor, &mut cx.session)
        .await?
        .into_iter()
        .map(|message| (message.seq, message))
        .collect();
    let cursor = cx
        .db
        .events
        .find(doc! {
            "conversation": conversation,
            "seq": { "$gt": first, "$lte": last },
        })
        .sort(doc! { "seq": 1 })
        .limit(i64::from(limit))
        .session(&mut cx.session)
        .await?;
    let events = collect(cursor, &mut cx.session)
        .await?
        .into_iter()
        .map(|event| {
            let message = (event.kind == EventKind::Message.as_str())
                .then(|| messages.remove(&event.seq))
                .flatten()
                .map(MessageDoc::into_event_row);
            event.into_event(message)
        })
        .collect::<Result<_, StoreError>>()?;
    Ok((events, last_seq))
}
