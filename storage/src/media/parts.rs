//! The parts of a chunked upload, the one thing the backends do differently: an S3 multipart
//! upload where the store has them (its parts become the file without another copy), and on the
//! local disk one file that each chunk is written into at its offset, hashed and renamed into
//! place on completion (see `local.rs`).

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::local::LocalDisk;
use super::{MediaError, MediaResult, Stored, Tally};

/// How a backend keeps the parts of an upload.
pub(super) enum Parts {
    /// One file on the local disk, `data` under the upload's directory.
    Local(LocalDisk),
    /// The store's own multipart uploads (S3), and the store to read the result back.
    #[cfg_attr(
        not(feature = "s3"),
        expect(dead_code, reason = "only the s3 feature's backend has them")
    )]
    Native {
        multipart: Arc<dyn MultipartStore>,
        store: Arc<dyn ObjectStore>,
    },
}

/// Where an upload's parts go: its directory in the store, and the file it becomes.
pub(super) struct Target<'a> {
    pub dir: &'a Path,
    pub file: &'a Path,
}

impl Parts {
    pub(super) fn local(disk: LocalDisk) -> Parts {
        Parts::Local(disk)
    }

    #[cfg(feature = "s3")]
    pub(super) fn native(s3: Arc<object_store::aws::AmazonS3>) -> Parts {
        Parts::Native {
            multipart: s3.clone(),
            store: s3,
        }
    }

    fn data_path(dir: &Path) -> Path {
        dir.clone().join("data")
    }

    /// Begins the parts of an upload of `size` bytes; the handle it returns goes into every
    /// later call.
    pub(super) async fn begin(&self, target: &Target<'_>, size: u64) -> MediaResult<String> {
        match self {
            Parts::Local(disk) => {
                disk.create(&Parts::data_path(target.dir), size).await?;
                Ok(String::new())
            }
            Parts::Native { multipart, .. } => multipart
                .create_multipart(target.file)
                .await
                .map_err(MediaError::backend("starting a multipart upload")),
        }
    }

    /// Stores part `n`, which starts at byte `offset` of the file (replacing an earlier try);
    /// returns the id completion needs.
    pub(super) async fn put(
        &self,
        target: &Target<'_>,
        handle: &str,
        (n, offset): (u64, u64),
        bytes: Bytes,
    ) -> MediaResult<String> {
        match self {
            Parts::Local(disk) => {
                disk.write_at(&Parts::data_path(target.dir), offset, bytes)
                    .await?;
                Ok(String::new())
            }
            Parts::Native { multipart, .. } => {
                let index = usize::try_from(n)
                    .map_err(|_| MediaError::Invalid("chunk number out of range".to_owned()))?;
                let part = multipart
                    .put_part(
                        target.file,
                        &handle.to_owned(),
                        index,
                        PutPayload::from(bytes),
                    )
                    .await
                    .map_err(MediaError::backend("storing a chunk"))?;
                Ok(part.content_id)
            }
        }
    }

    /// Makes the file of the parts (`ids` in order, as [`Parts::put`] returned them), and reads
    /// its size and hash back once it is made.
    pub(super) async fn complete(
        &self,
        target: &Target<'_>,
        handle: &str,
        ids: Vec<String>,
    ) -> MediaResult<Stored> {
        match self {
            Parts::Local(disk) => {
                disk.finish(&Parts::data_path(target.dir), target.file)
                    .await
            }
            Parts::Native { multipart, store } => {
                let parts = ids
                    .into_iter()
                    .map(|content_id| PartId { content_id })
                    .collect();
                multipart
                    .complete_multipart(target.file, &handle.to_owned(), parts)
                    .await
                    .map_err(MediaError::backend("completing a multipart upload"))?;
                let mut tally = Tally::default();
                let mut stream = store
                    .get(target.file)
                    .await
                    .map_err(MediaError::backend("reading a file back"))?
                    .into_stream();
                while let Some(bytes) = stream.next().await {
                    tally.add(&bytes.map_err(MediaError::backend("reading a file back"))?);
                }
                Ok(tally.finish())
            }
        }
    }

    /// Drops the parts of an upload that will not complete (the upload's directory is removed
    /// by the caller).
    pub(super) async fn abort(&self, target: &Target<'_>, handle: &str) -> MediaResult<()> {
        match self {
            Parts::Local(_) => Ok(()),
            Parts::Native { multipart, .. } => {
                match multipart
                    .abort_multipart(target.file, &handle.to_owned())
                    .await
                {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(err) => Err(MediaError::backend("aborting a multipart upload")(err)),
                }
            }
        }
    }
}

/// The S3 store of `s3://bucket?endpoint=…&region=…`, credentials from the `AWS_*` variables.
#[cfg(feature = "s3")]
pub(super) fn s3_from_url(
    url: &str,
    keys: Option<(&str, &str)>,
) -> MediaResult<Arc<object_store::aws::AmazonS3>> {
    let invalid = |why: String| MediaError::Invalid(format!("media URL {url:?}: {why}"));
    let parsed = url::Url::parse(url).map_err(|err| invalid(err.to_string()))?;
    if parsed.scheme() != "s3" {
        return Err(invalid("the scheme must be s3://".to_owned()));
    }
    let bucket = parsed
        .host_str()
        .filter(|bucket| !bucket.is_empty())
        .ok_or_else(|| invalid("no bucket".to_owned()))?;
    let mut builder = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
    if let Some((key_id, secret)) = keys {
        builder = builder
            .with_access_key_id(key_id)
            .with_secret_access_key(secret);
    }
    for (key, value) in parsed.query_pairs() {
        builder = match key.as_ref() {
            "endpoint" => builder
                .with_allow_http(value.starts_with("http://"))
                .with_endpoint(value.as_ref()),
            "region" => builder.with_region(value.as_ref()),
            other => return Err(invalid(format!("unknown parameter {other:?}"))),
        };
    }
    let s3 = builder.build().map_err(|err| invalid(err.to_string()))?;
    Ok(Arc::new(s3))
}
