//! Chunked, resumable uploads. Each upload is a directory `uploads/<id>/` in the object store:
//! `manifest.json` (what the client announced, written once), one record per received chunk
//! under `chunks/` (its size, SHA-256 and part id; each chunk writes only its own, so chunks may
//! arrive in any order, in parallel, and again), and on the local disk the file being made,
//! `data`, each chunk written at its offset. Keeping it all in the store lets an upload survive a restart, lets any node of a
//! cluster continue it, and dates its last activity for [`Media::sweep`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use super::parts::Target;
use super::{Media, MediaError, MediaResult, Stored, sha256_hex};

/// The version of [`Upload`]'s stored form.
const MANIFEST_VERSION: u32 = 1;

/// What a client announces when it starts a chunked upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUpload {
    pub tenant: String,
    pub user: String,
    pub name: String,
    pub content_type: String,
    pub size: u64,
    /// The whole file's SHA-256 (hex), checked on completion when given.
    pub sha256: Option<String>,
    pub conversation: Option<String>,
    pub chunk_size: u64,
}

/// A chunked upload in progress, as its manifest stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upload {
    pub v: u32,
    pub id: String,
    /// The id of the file it becomes.
    pub media_id: String,
    pub tenant: String,
    pub user: String,
    pub name: String,
    pub content_type: String,
    pub size: u64,
    pub sha256: Option<String>,
    pub conversation: Option<String>,
    pub chunk_size: u64,
    /// Unix milliseconds.
    pub created_at: i64,
    /// The backend's handle of the parts (an S3 multipart upload id).
    handle: String,
}

impl Upload {
    /// How many chunks the file has (an empty file has none).
    pub fn chunk_count(&self) -> u64 {
        self.size.div_ceil(self.chunk_size)
    }

    /// The size chunk `n` must have.
    pub fn chunk_len(&self, n: u64) -> u64 {
        let start = n * self.chunk_size;
        self.chunk_size.min(self.size.saturating_sub(start))
    }
}

/// How far an upload got: what a client needs to resume it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub received_bytes: u64,
    pub size: u64,
    pub chunk_size: u64,
    pub missing_chunks: Vec<u64>,
}

/// A received chunk.
#[derive(Debug, Serialize, Deserialize)]
struct ChunkRecord {
    size: u64,
    sha256: String,
    part: String,
}

fn dir_of(id: &str) -> Path {
    Path::from_iter(["uploads", id])
}

fn json_error(context: &'static str) -> impl FnOnce(serde_json::Error) -> MediaError {
    move |source| MediaError::Backend {
        context,
        source: Box::new(source),
    }
}

impl Media {
    /// Starts upload `id` of file `media_id`.
    pub async fn create_upload(
        &self,
        new: NewUpload,
        id: &str,
        media_id: &str,
    ) -> MediaResult<Upload> {
        if new.chunk_size == 0 {
            return Err(MediaError::Invalid(
                "the chunk size must be positive".to_owned(),
            ));
        }
        let file = Media::file_path(&new.tenant, media_id);
        let dir = dir_of(id);
        let handle = self
            .parts
            .begin(
                &Target {
                    dir: &dir,
                    file: &file,
                },
                new.size,
            )
            .await?;
        let created_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| {
                i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
            });
        let upload = Upload {
            v: MANIFEST_VERSION,
            id: id.to_owned(),
            media_id: media_id.to_owned(),
            tenant: new.tenant,
            user: new.user,
            name: new.name,
            content_type: new.content_type,
            size: new.size,
            sha256: new.sha256.map(|hash| hash.to_ascii_lowercase()),
            conversation: new.conversation,
            chunk_size: new.chunk_size,
            created_at,
            handle,
        };
        let manifest = serde_json::to_vec(&upload).map_err(json_error("writing a manifest"))?;
        self.store
            .put(
                &dir.clone().join("manifest.json"),
                PutPayload::from(manifest),
            )
            .await
            .map_err(MediaError::backend("writing a manifest"))?;
        Ok(upload)
    }

    /// Upload `id`, as its manifest says.
    pub async fn upload(&self, id: &str) -> MediaResult<Upload> {
        let bytes = self
            .store
            .get(&dir_of(id).join("manifest.json"))
            .await
            .map_err(MediaError::backend("reading a manifest"))?
            .bytes()
            .await
            .map_err(MediaError::backend("reading a manifest"))?;
        let upload: Upload =
            serde_json::from_slice(&bytes).map_err(json_error("reading a manifest"))?;
        if upload.v != MANIFEST_VERSION {
            return Err(MediaError::Invalid(format!(
                "upload {id} was started by a build with manifest version {}",
                upload.v
            )));
        }
        Ok(upload)
    }

    /// Stores chunk `n` of `upload`. `sha256` (hex), when given, must match its bytes. Sending a
    /// chunk again replaces it (or is a no-op when it is the same bytes).
    pub async fn put_chunk(
        &self,
        upload: &Upload,
        n: u64,
        bytes: Bytes,
        sha256: Option<&str>,
    ) -> MediaResult<()> {
        if n >= upload.chunk_count() {
            return Err(MediaError::NoSuchChunk {
                n,
                count: upload.chunk_count(),
            });
        }
        let expected = upload.chunk_len(n);
        if bytes.len() as u64 != expected {
            return Err(MediaError::Invalid(format!(
                "chunk {n} must be {expected} bytes, not {}",
                bytes.len()
            )));
        }
        // Off the async runtime: hashing 5 MiB takes a worker away from every other
        // connection for ~3 ms.
        let hashed = bytes.clone();
        let hash = tokio::task::spawn_blocking(move || sha256_hex(&hashed))
            .await
            .map_err(|join| MediaError::Backend {
                context: "hashing a chunk",
                source: Box::new(join),
            })?;
        if let Some(claimed) = sha256
            && !claimed.eq_ignore_ascii_case(&hash)
        {
            return Err(MediaError::ChecksumMismatch(format!(
                "chunk {n} has SHA-256 {hash}, not {claimed}"
            )));
        }
        let dir = dir_of(&upload.id);
        let record_path = dir.clone().join("chunks").join(n.to_string());
        if let Ok(record) = self.chunk_record(&record_path).await
            && record.sha256 == hash
        {
            return Ok(());
        }
        let file = Media::file_path(&upload.tenant, &upload.media_id);
        let target = Target {
            dir: &dir,
            file: &file,
        };
        let offset = n * upload.chunk_size;
        let part = self
            .parts
            .put(&target, &upload.handle, (n, offset), bytes)
            .await?;
        let record = ChunkRecord {
            size: expected,
            sha256: hash,
            part,
        };
        let record = serde_json::to_vec(&record).map_err(json_error("writing a chunk record"))?;
        self.store
            .put(&record_path, PutPayload::from(record))
            .await
            .map_err(MediaError::backend("writing a chunk record"))?;
        Ok(())
    }

    async fn chunk_record(&self, path: &Path) -> MediaResult<ChunkRecord> {
        let bytes = self
            .store
            .get(path)
            .await
            .map_err(MediaError::backend("reading a chunk record"))?
            .bytes()
            .await
            .map_err(MediaError::backend("reading a chunk record"))?;
        serde_json::from_slice(&bytes).map_err(json_error("reading a chunk record"))
    }

    /// The chunks of `upload` received so far.
    async fn received(&self, upload: &Upload) -> MediaResult<BTreeSet<u64>> {
        let prefix = dir_of(&upload.id).join("chunks");
        let listed: Vec<_> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(MediaError::backend("listing chunks"))?;
        Ok(listed
            .iter()
            .filter_map(|meta| meta.location.filename()?.parse().ok())
            .filter(|n| *n < upload.chunk_count())
            .collect())
    }

    /// How far `upload` got.
    pub async fn progress(&self, upload: &Upload) -> MediaResult<Progress> {
        let received = self.received(upload).await?;
        Ok(Progress {
            received_bytes: received.iter().map(|n| upload.chunk_len(*n)).sum(),
            size: upload.size,
            chunk_size: upload.chunk_size,
            missing_chunks: (0..upload.chunk_count())
                .filter(|n| !received.contains(n))
                .collect(),
        })
    }

    /// Makes the file of `upload` once every chunk is in, checks its size and SHA-256 (when
    /// announced), and removes the upload. A file that does not match is removed with it.
    pub async fn complete(&self, upload: &Upload) -> MediaResult<Stored> {
        let received = self.received(upload).await?;
        let missing: Vec<u64> = (0..upload.chunk_count())
            .filter(|n| !received.contains(n))
            .collect();
        if !missing.is_empty() {
            return Err(MediaError::Incomplete { missing });
        }
        let dir = dir_of(&upload.id);
        let mut ids = Vec::with_capacity(received.len());
        for n in 0..upload.chunk_count() {
            let record = self
                .chunk_record(&dir.clone().join("chunks").join(n.to_string()))
                .await?;
            ids.push(record.part);
        }
        let file = Media::file_path(&upload.tenant, &upload.media_id);
        let target = Target {
            dir: &dir,
            file: &file,
        };
        let stored = if upload.size == 0 {
            // No part to assemble (S3 refuses a multipart upload without parts).
            self.parts.abort(&target, &upload.handle).await?;
            self.put(
                &upload.tenant,
                &upload.media_id,
                futures_util::stream::empty::<Result<Bytes, MediaError>>(),
                0,
            )
            .await?
        } else {
            self.parts.complete(&target, &upload.handle, ids).await?
        };
        let mismatch = if stored.size != upload.size {
            Some(format!(
                "{} bytes arrived, not {}",
                stored.size, upload.size
            ))
        } else {
            upload
                .sha256
                .as_ref()
                .filter(|claimed| **claimed != stored.sha256)
                .map(|claimed| format!("the file has SHA-256 {}, not {claimed}", stored.sha256))
        };
        self.remove_dir(&dir).await?;
        if let Some(mismatch) = mismatch {
            self.delete(&upload.tenant, &upload.media_id).await?;
            return Err(MediaError::ChecksumMismatch(mismatch));
        }
        Ok(stored)
    }

    /// Gives `upload` up: its parts and records are removed.
    pub async fn abort_upload(&self, upload: &Upload) -> MediaResult<()> {
        let dir = dir_of(&upload.id);
        let file = Media::file_path(&upload.tenant, &upload.media_id);
        self.parts
            .abort(
                &Target {
                    dir: &dir,
                    file: &file,
                },
                &upload.handle,
            )
            .await?;
        self.remove_dir(&dir).await
    }

    async fn remove_dir(&self, dir: &Path) -> MediaResult<()> {
        let listed: Vec<_> = self
            .store
            .list(Some(dir))
            .try_collect()
            .await
            .map_err(MediaError::backend("listing an upload"))?;
        for meta in listed {
            match self.store.delete(&meta.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(err) => return Err(MediaError::backend("removing an upload")(err)),
            }
        }
        Ok(())
    }

    /// Removes every upload whose last write is more than `idle` before `now`; returns how
    /// many. Run periodically, and at start: an upload left by a stopped process goes too.
    pub async fn sweep(&self, idle: Duration, now: SystemTime) -> MediaResult<usize> {
        let prefix = Path::from("uploads");
        let listed: Vec<_> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(MediaError::backend("listing uploads"))?;
        let mut last_write: BTreeMap<String, i64> = BTreeMap::new();
        for meta in &listed {
            let Some(id) = meta.location.parts().nth(1) else {
                continue;
            };
            let at = meta.last_modified.timestamp_millis();
            let entry = last_write.entry(id.as_ref().to_owned()).or_insert(at);
            *entry = (*entry).max(at);
        }
        let now_ms = now.duration_since(UNIX_EPOCH).map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        });
        let idle_ms = i64::try_from(idle.as_millis()).unwrap_or(i64::MAX);
        let mut removed = 0;
        for (id, at) in last_write {
            if now_ms.saturating_sub(at) <= idle_ms {
                continue;
            }
            match self.upload(&id).await {
                Ok(upload) => self.abort_upload(&upload).await?,
                // No readable manifest: nothing to abort but the directory itself.
                Err(_) => self.remove_dir(&dir_of(&id)).await?,
            }
            removed += 1;
        }
        Ok(removed)
    }
}
