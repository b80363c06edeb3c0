//! Users' own event streams (see [`crate::user_events`]): recorded inside the write's
//! transaction, read for resume.

use confab_protocol::rest::Role;
use mongodb::bson::doc;
use mongodb::options::ReturnDocument;

use super::common::{collect, seq_from_db, seq_to_db};
use super::schema::UserEventDoc;
use super::txn::{Ctx, OpResult};
use crate::StoreError;
use crate::backend::Reader;
use crate::record::now_ms;
use crate::user_events::{
    NewUserEvent, UserEvent, UserEventKind, UserEventPage, needs_resync, prune_up_to,
};

/// Records `event` with the user's next seq and forgets those no longer retained.
pub(super) async fn record_user_event(cx: &mut Ctx, event: &NewUserEvent<'_>) -> OpResult<()> {
    let stream = cx
        .db
        .user_streams
        .find_one_and_update(
            doc! { "_id": { "tenant": event.tenant, "user": event.user } },
            doc! { "$inc": { "last_seq": 1_i64 } },
        )
        .upsert(true)
        .return_document(ReturnDocument::After)
        .session(&mut cx.session)
        .await?;
    let seq = stream
        .and_then(|stream| stream.get_i64("last_seq").ok())
        .ok_or_else(|| StoreError::internal_bare("user stream counter missing"))?;
    let doc = UserEventDoc {
        tenant: event.tenant.to_owned(),
        user: event.user.to_owned(),
        seq,
        kind: event.kind.as_str().to_owned(),
        conversation: event.conversation.to_owned(),
        role: event.role.map(|role| role.as_str().to_owned()),
        read_seq: event.read_seq.map(seq_to_db),
        ts: now_ms(),
    };
    cx.db
        .user_events
        .insert_one(&doc)
        .session(&mut cx.session)
        .await?;
    let prune = seq_to_db(prune_up_to(seq_from_db(seq)));
    if prune > 0 {
        cx.db
            .user_events
            .delete_many(doc! {
                "tenant": event.tenant, "user": event.user, "seq": { "$lte": prune },
            })
            .session(&mut cx.session)
            .await?;
    }
    Ok(())
}

/// The first and last retained seq of `reader`'s events.
async fn bounds(cx: &mut Ctx, reader: Reader<'_>) -> OpResult<Option<(u64, u64)>> {
    let filter = doc! { "tenant": reader.tenant, "user": reader.user };
    let mut ends = Vec::with_capacity(2);
    for order in [1, -1] {
        let end = cx
            .db
            .user_events
            .find_one(filter.clone())
            .sort(doc! { "seq": order })
            .session(&mut cx.session)
            .await?;
        ends.extend(end.map(|end| seq_from_db(end.seq)));
    }
    Ok(match ends[..] {
        [first, last] => Some((first, last)),
        _ => None,
    })
}

pub(super) async fn user_events(
    cx: &mut Ctx,
    reader: Reader<'_>,
    after: u64,
    limit: u32,
) -> OpResult<UserEventPage> {
    let bounds = bounds(cx, reader).await?;
    let last_seq = bounds.map_or(0, |(_, last)| last);
    if needs_resync(after, bounds.map(|(first, _)| first), last_seq) {
        return Ok(UserEventPage {
            events: Vec::new(),
            last_seq,
            resync: true,
        });
    }
    let cursor = cx
        .db
        .user_events
        .find(doc! {
            "tenant": reader.tenant, "user": reader.user, "seq": { "$gt": seq_to_db(after) },
        })
        .sort(doc! { "seq": 1 })
        .limit(i64::from(limit))
        .session(&mut cx.session)
        .await?;
    let docs: Vec<UserEventDoc> = collect(cursor, &mut cx.session).await?;
    let mut events = Vec::with_capacity(docs.len());
    for doc in docs {
        let kind = UserEventKind::parse(&doc.kind).ok_or_else(|| {
            StoreError::internal_bare(format!("unknown user event kind {}", doc.kind))
        })?;
        events.push(UserEvent {
            user_seq: seq_from_db(doc.seq),
            kind,
            conversation: doc.conversation,
            role: doc.role.as_deref().and_then(Role::parse),
            read_seq: doc.read_seq.map(seq_from_db),
            ts: doc.ts,
        });
    }
    Ok(UserEventPage {
        events,
        last_seq,
        resync: false,
    })
}
