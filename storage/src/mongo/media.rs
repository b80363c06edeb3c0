//! Media files' metadata. Writes run in a transaction like every other (see `txn`); the rules
//! are in [`crate::rules`]. The quota is checked against the sum read in the transaction, so
//! two uploads committed at the same moment may pass it together by one file (SQLite, with
//! its single writer, is exact).

use confab_protocol::rest::Role;
use mongodb::bson::doc;

use super::common::{collect, require_member, role_of};
use super::schema::MediaDoc;
use super::txn::{Ctx, OpResult};
use crate::backend::Reader;
use crate::record::now_ms;
use crate::rules::{self, MediaAccess};
use crate::{MediaFile, NewMediaFile, StoreError};

fn size_to_db(size: u64) -> Result<i64, StoreError> {
    i64::try_from(size).map_err(|_| StoreError::Invalid("the file is too large".to_owned()))
}

impl MediaDoc {
    fn to_file(&self) -> MediaFile {
        let mut conversations = self.conversations.clone();
        conversations.sort();
        MediaFile {
            id: self.id.clone(),
            uploader: self.uploader.clone(),
            name: self.name.clone(),
            content_type: self.content_type.clone(),
            size: self.size.max(0) as u64,
            sha256: self.sha256.clone(),
            created_at: self.created_at,
            conversations,
            downloads: self.downloads.max(0) as u64,
        }
    }
}

/// File `id` with `user`'s access to it (`NotFound` unless they see it).
async fn visible(
    cx: &mut Ctx,
    reader: Reader<'_>,
    id: &str,
) -> OpResult<(MediaFile, Option<Role>)> {
    let found = cx
        .db
        .media
        .find_one(doc! { "tenant": reader.tenant, "id": id })
        .session(&mut cx.session)
        .await?;
    let file = rules::media_found(found)?.to_file();
    let mut role = None;
    for conversation in &file.conversations {
        role = rules::higher(role, role_of(cx, conversation, reader.user).await?);
    }
    rules::readable(
        &MediaAccess {
            uploader: &file.uploader,
            role,
        },
        reader.user,
    )?;
    Ok((file, role))
}

pub(super) async fn media(cx: &mut Ctx, reader: Reader<'_>, id: &str) -> OpResult<MediaFile> {
    Ok(visible(cx, reader, id).await?.0)
}

pub(super) async fn media_file(cx: &mut Ctx, tenant: &str, id: &str) -> OpResult<MediaFile> {
    let found = cx
        .db
        .media
        .find_one(doc! { "tenant": tenant, "id": id })
        .session(&mut cx.session)
        .await?;
    Ok(rules::media_found(found)?.to_file())
}

pub(super) async fn media_usage(cx: &mut Ctx, tenant: &str) -> OpResult<u64> {
    let cursor = cx
        .db
        .media
        .aggregate([
            doc! { "$match": { "tenant": tenant } },
            doc! { "$group": { "_id": null, "used": { "$sum": "$size" } } },
        ])
        .session(&mut cx.session)
        .await?;
    let sums = collect(cursor, &mut cx.session).await?;
    let used = sums
        .first()
        .and_then(|sum| {
            sum.get_i64("used")
                .ok()
                .or_else(|| sum.get_i32("used").ok().map(i64::from))
        })
        .unwrap_or(0);
    Ok(used.max(0) as u64)
}

pub(super) async fn create_media(cx: &mut Ctx, new: &NewMediaFile) -> OpResult<MediaFile> {
    if let Some(conversation) = &new.conversation {
        require_member(cx, &new.tenant, conversation, &new.uploader).await?;
    }
    if new.quota.is_some() {
        rules::within_quota(media_usage(cx, &new.tenant).await?, new.size, new.quota)?;
    }
    let exists = cx
        .db
        .media
        .find_one(doc! { "tenant": &new.tenant, "id": &new.id })
        .session(&mut cx.session)
        .await?;
    if exists.is_some() {
        return Err(StoreError::Conflict(format!("media {} exists", new.id)).into());
    }
    let document = MediaDoc {
        tenant: new.tenant.clone(),
        id: new.id.clone(),
        uploader: new.uploader.clone(),
        name: new.name.clone(),
        content_type: new.content_type.clone(),
        size: size_to_db(new.size)?,
        sha256: new.sha256.clone(),
        created_at: now_ms(),
        conversations: new.conversation.iter().cloned().collect(),
        downloads: 0,
    };
    cx.db
        .media
        .insert_one(&document)
        .session(&mut cx.session)
        .await?;
    Ok(document.to_file())
}

pub(super) async fn delete_media(
    cx: &mut Ctx,
    reader: Reader<'_>,
    id: &str,
) -> OpResult<MediaFile> {
    let (file, role) = visible(cx, reader, id).await?;
    rules::deletable(
        &MediaAccess {
            uploader: &file.uploader,
            role,
        },
        reader.user,
    )?;
    cx.db
        .media
        .delete_one(doc! { "tenant": reader.tenant, "id": id })
        .session(&mut cx.session)
        .await?;
    Ok(file)
}

pub(super) async fn attach_media(
    cx: &mut Ctx,
    reader: Reader<'_>,
    conversation: &str,
    ids: &[String],
) -> OpResult<Vec<MediaFile>> {
    require_member(cx, reader.tenant, conversation, reader.user).await?;
    let mut files = Vec::with_capacity(ids.len());
    for id in ids {
        let (mut file, role) = visible(cx, reader, id).await?;
        let in_conversation = file.conversations.iter().any(|c| c == conversation);
        let access = MediaAccess {
            uploader: &file.uploader,
            role,
        };
        rules::attachable(&access, reader.user, in_conversation)?;
        if !in_conversation {
            cx.db
                .media
                .update_one(
                    doc! { "tenant": reader.tenant, "id": id },
                    doc! { "$addToSet": { "conversations": conversation } },
                )
                .session(&mut cx.session)
                .await?;
            file.conversations.push(conversation.to_owned());
            file.conversations.sort();
        }
        files.push(file);
    }
    Ok(files)
}

pub(super) async fn count_download(cx: &mut Ctx, tenant: &str, id: &str) -> OpResult<()> {
    cx.db
        .media
        .update_one(
            doc! { "tenant": tenant, "id": id },
            doc! { "$inc": { "downloads": 1_i64 } },
        )
        .session(&mut cx.session)
        .await?;
    Ok(())
}
