//! The directory of people: one document per (tenant, user), upserted in a transaction like
//! every other write (see `txn`).

use mongodb::bson::doc;

use super::common::collect;
use super::schema::PersonDoc;
use super::txn::{Ctx, OpResult};
use crate::Person;
use crate::backend::Sighting;

pub(super) async fn record_people(cx: &mut Ctx, sightings: &[Sighting]) -> OpResult<()> {
    for sighting in sightings {
        cx.db
            .people
            .update_one(
                doc! { "tenant": &sighting.tenant, "id": &sighting.user },
                doc! {
                    "$set": { "name": &sighting.name },
                    "$max": { "last_seen": sighting.seen_at },
                },
            )
            .upsert(true)
            .session(&mut cx.session)
            .await?;
    }
    Ok(())
}

pub(super) async fn people(cx: &mut Ctx, tenant: &str) -> OpResult<Vec<Person>> {
    let cursor = cx
        .db
        .people
        .find(doc! { "tenant": tenant })
        .sort(doc! { "id": 1 })
        .session(&mut cx.session)
        .await?;
    let docs: Vec<PersonDoc> = collect(cursor, &mut cx.session).await?;
    Ok(docs
        .into_iter()
        .map(|doc| Person {
            id: doc.id,
            name: doc.name,
            last_seen: doc.last_seen,
        })
        .collect())
}
