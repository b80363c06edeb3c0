//! Users' recent search queries (see [`crate::recent_queries`]): one document per (tenant,
//! user, query), written in a transaction like every other write (see `txn`).

use mongodb::bson::doc;

use super::common::collect;
use super::schema::RecentQueryDoc;
use super::txn::{Ctx, OpResult};
use crate::backend::{Reader, Searched};
use crate::{RECENT_QUERIES_RETAINED, RecentQuery};

/// Makes `searched.query` the user's newest query and forgets those past the bound.
pub(super) async fn record_query(cx: &mut Ctx, searched: &Searched) -> OpResult<()> {
    let user = doc! { "tenant": &searched.tenant, "user": &searched.user };
    let newest = cx
        .db
        .recent_queries
        .find_one(user.clone())
        .sort(doc! { "seq": -1 })
        .session(&mut cx.session)
        .await?;
    let seq = newest.map_or(0, |doc| doc.seq).saturating_add(1);
    cx.db
        .recent_queries
        .update_one(
            doc! { "tenant": &searched.tenant, "user": &searched.user, "query": &searched.query },
            doc! { "$set": { "seq": seq, "at": searched.at } },
        )
        .upsert(true)
        .session(&mut cx.session)
        .await?;
    let oldest_kept = cx
        .db
        .recent_queries
        .find_one(user.clone())
        .sort(doc! { "seq": -1 })
        .skip(u64::from(RECENT_QUERIES_RETAINED - 1))
        .session(&mut cx.session)
        .await?;
    if let Some(oldest_kept) = oldest_kept {
        let mut older = user;
        older.insert("seq", doc! { "$lt": oldest_kept.seq });
        cx.db
            .recent_queries
            .delete_many(older)
            .session(&mut cx.session)
            .await?;
    }
    Ok(())
}

pub(super) async fn recent_queries(cx: &mut Ctx, reader: Reader<'_>) -> OpResult<Vec<RecentQuery>> {
    let cursor = cx
        .db
        .recent_queries
        .find(doc! { "tenant": reader.tenant, "user": reader.user })
        .sort(doc! { "seq": -1 })
        .limit(i64::from(RECENT_QUERIES_RETAINED))
        .session(&mut cx.session)
        .await?;
    let docs: Vec<RecentQueryDoc> = collect(cursor, &mut cx.session).await?;
    Ok(docs
        .into_iter()
        .map(|doc| RecentQuery {
            query: doc.query,
            at: doc.at,
        })
        .collect())
}

pub(super) async fn clear_recent_queries(cx: &mut Ctx, reader: Reader<'_>) -> OpResult<()> {
    cx.db
        .recent_queries
        .delete_many(doc! { "tenant": reader.tenant, "user": reader.user })
        .session(&mut cx.session)
        .await?;
    Ok(())
}
