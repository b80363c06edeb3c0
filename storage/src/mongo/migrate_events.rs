//! Converts the events stored as frames by older builds (a `frame` field) to the storage form
//! (`v` and `data`, see `crate::event_form`), at start-up.
//!
//! Each event is converted by one update that matches only while it still holds its frame, so
//! the conversion is idempotent: a crash halfway, or two nodes starting at once, leave every
//! event converted exactly once. Once every event is converted, a marker in the `meta`
//! collection saves later starts the scan. Old builds must not write to the database after a
//! new one started (their frames would not be converted, and new builds cannot read them).

use futures_util::TryStreamExt;
use mongodb::bson::doc;
use serde::Deserialize;

use super::common::parse_event_kind;
use super::schema::{Collections, MessageDoc};
use super::txn::internal;
use crate::Result;
use crate::event_form::{self, FORM_VERSION};

/// An event as older builds stored it.
#[derive(Debug, Deserialize)]
struct FrameDoc {
    #[serde(rename = "_id")]
    id: mongodb::bson::Bson,
    conversation: String,
    seq: i64,
    kind: String,
    frame: String,
}

/// The `meta` document saying that every event is in the storage form.
const MARKER: &str = "events_in_storage_form";

/// Converts every event still holding a frame, unless done before; returns how many it
/// converted.
pub(super) async fn events_to_form(db: &Collections) -> Result<u64> {
    let done = db
        .meta
        .find_one(doc! { "_id": MARKER })
        .await
        .map_err(internal)?;
    if done.is_some() {
        return Ok(0);
    }
    let legacy = db.events.clone_with_type::<FrameDoc>();
    let mut cursor = legacy
        .find(doc! { "frame": { "$exists": true } })
        .await
        .map_err(internal)?;
    let mut converted = 0;
    while let Some(old) = cursor.try_next().await.map_err(internal)? {
        let kind = parse_event_kind(&old.kind)?;
        let message = match kind {
            confab_protocol::EventKind::Message => db
                .messages
                .find_one(doc! { "conversation": &old.conversation, "seq": old.seq })
                .await
                .map_err(internal)?
                .map(MessageDoc::into_event_row),
            _ => None,
        };
        let data = event_form::data_from_frame(kind, &old.frame, message.as_ref())?;
        let mut set = doc! { "v": FORM_VERSION };
        if let Some(data) = data {
            set.insert("data", data);
        }
        let updated = db
            .events
            .update_one(
                doc! { "_id": old.id, "frame": { "$exists": true } },
                doc! { "$set": set, "$unset": { "frame": "" } },
            )
            .await
            .map_err(internal)?;
        converted += updated.modified_count;
    }
    db.meta
        .update_one(
            doc! { "_id": MARKER },
            doc! { "$set": { "form": FORM_VERSION } },
        )
        .upsert(true)
        .await
        .map_err(internal)?;
    if converted > 0 {
        tracing::info!(
            events = converted,
            "converted stored events to the storage form"
        );
    }
    Ok(converted)
}
