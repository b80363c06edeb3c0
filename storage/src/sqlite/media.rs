//! Media files' metadata: reads on a reader connection, writes on the writer thread. The rules
//! are in [`crate::rules`]; these read the state they need and write what they decide.

use confab_protocol::rest::Role;
use rusqlite::{Connection, OptionalExtension};

use super::common::{require_member, role_of};
use crate::record::now_ms;
use crate::rules::{self, MediaAccess};
use crate::{MediaFile, NewMediaFile, Result, StoreError};

fn size_to_sql(size: u64) -> Result<i64> {
    i64::try_from(size).map_err(|_| StoreError::Invalid("the file is too large".to_owned()))
}

/// File `id` of `tenant`, if it exists.
fn load(conn: &Connection, tenant: &str, id: &str) -> Result<Option<MediaFile>> {
    let found = conn
        .prepare_cached(
            "SELECT uploader, name, content_type, size, sha256, created_at, downloads
             FROM media WHERE tenant = ?1 AND id = ?2",
        )?
        .query_row((tenant, id), |row| {
            Ok(MediaFile {
                id: id.to_owned(),
                uploader: row.get(0)?,
                name: row.get(1)?,
                content_type: row.get(2)?,
                size: row.get::<_, i64>(3)?.max(0) as u64,
                sha256: row.get(4)?,
                created_at: row.get(5)?,
                conversations: Vec::new(),
                downloads: row.get::<_, i64>(6)?.max(0) as u64,
            })
        })
        .optional()?;
    let Some(mut file) = found else {
        return Ok(None);
    };
    file.conversations = conn
        .prepare_cached(
            "SELECT conversation_id FROM media_links
             WHERE tenant = ?1 AND media_id = ?2 ORDER BY conversation_id",
        )?
        .query_map((tenant, id), |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Some(file))
}

/// `user`'s highest role among the conversations of `file`.
fn role_in(conn: &Connection, file: &MediaFile, user: &str) -> Result<Option<Role>> {
    let mut best = None;
    for conversation in &file.conversations {
        best = rules::higher(best, role_of(conn, conversation, user)?);
    }
    Ok(best)
}

/// File `id` with `user`'s access to it.
fn visible(
    conn: &Connection,
    tenant: &str,
    user: &str,
    id: &str,
) -> Result<(MediaFile, Option<Role>)> {
    let file = rules::media_found(load(conn, tenant, id)?)?;
    let role = role_in(conn, &file, user)?;
    rules::readable(
        &MediaAccess {
            uploader: &file.uploader,
            role,
        },
        user,
    )?;
    Ok((file, role))
}

pub(super) fn media(conn: &Connection, tenant: &str, user: &str, id: &str) -> Result<MediaFile> {
    Ok(visible(conn, tenant, user, id)?.0)
}

pub(super) fn media_file(conn: &Connection, tenant: &str, id: &str) -> Result<MediaFile> {
    rules::media_found(load(conn, tenant, id)?)
}

pub(super) fn media_usage(conn: &Connection, tenant: &str) -> Result<u64> {
    let used: i64 = conn
        .prepare_cached("SELECT COALESCE(SUM(size), 0) FROM media WHERE tenant = ?1")?
        .query_row([tenant], |row| row.get(0))?;
    Ok(used.max(0) as u64)
}

pub(super) fn create_media(conn: &Connection, new: &NewMediaFile) -> Result<MediaFile> {
    if let Some(conversation) = &new.conversation {
        require_member(conn, &new.tenant, conversation, &new.uploader)?;
    }
    if new.quota.is_some() {
        rules::within_quota(media_usage(conn, &new.tenant)?, new.size, new.quota)?;
    }
    let created_at = now_ms();
    let inserted = conn
        .prepare_cached(
            "INSERT INTO media (tenant, id, uploader, name, content_type, size, sha256, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING",
        )?
        .execute((
            &new.tenant,
            &new.id,
            &new.uploader,
            &new.name,
            &new.content_type,
            size_to_sql(new.size)?,
            &new.sha256,
            created_at,
        ))?;
    if inserted == 0 {
        return Err(StoreError::Conflict(format!("media {} exists", new.id)));
    }
    if let Some(conversation) = &new.conversation {
        conn.prepare_cached(
            "INSERT INTO media_links (tenant, media_id, conversation_id) VALUES (?1, ?2, ?3)",
        )?
        .execute((&new.tenant, &new.id, conversation))?;
    }
    Ok(MediaFile {
        id: new.id.clone(),
        uploader: new.uploader.clone(),
        name: new.name.clone(),
        content_type: new.content_type.clone(),
        size: new.size,
        sha256: new.sha256.clone(),
        created_at,
        conversations: new.conversation.iter().cloned().collect(),
        downloads: 0,
    })
}

pub(super) fn delete_media(
    conn: &Connection,
    tenant: &str,
    by: &str,
    id: &str,
) -> Result<MediaFile> {
    let (file, role) = visible(conn, tenant, by, id)?;
    rules::deletable(
        &MediaAccess {
            uploader: &file.uploader,
            role,
        },
        by,
    )?;
    conn.prepare_cached("DELETE FROM media_links WHERE tenant = ?1 AND media_id = ?2")?
        .execute((tenant, id))?;
    conn.prepare_cached("DELETE FROM media WHERE tenant = ?1 AND id = ?2")?
        .execute((tenant, id))?;
    Ok(file)
}

pub(super) fn attach_media(
    conn: &Connection,
    tenant: &str,
    by: &str,
    conversation: &str,
    ids: &[String],
) -> Result<Vec<MediaFile>> {
    require_member(conn, tenant, conversation, by)?;
    let mut files = Vec::with_capacity(ids.len());
    for id in ids {
        let (mut file, role) = visible(conn, tenant, by, id)?;
        let in_conversation = file.conversations.iter().any(|c| c == conversation);
        let access = MediaAccess {
            uploader: &file.uploader,
            role,
        };
        rules::attachable(&access, by, in_conversation)?;
        if !in_conversation {
            conn.prepare_cached(
                "INSERT INTO media_links (tenant, media_id, conversation_id) VALUES (?1, ?2, ?3)
                 ON CONFLICT DO NOTHING",
            )?
            .execute((tenant, id, conversation))?;
            file.conversations.push(conversation.to_owned());
            file.conversations.sort();
        }
        files.push(file);
    }
    Ok(files)
}

pub(super) fn count_download(conn: &Connection, tenant: &str, id: &str) -> Result<()> {
    conn.prepare_cached(
        "UPDATE media SET downloads = downloads + 1 WHERE tenant = ?1 AND id = ?2",
    )?
    .execute((tenant, id))?;
    Ok(())
}
