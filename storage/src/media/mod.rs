//! Media files: the bytes of uploaded files, on the local disk (the embedded default) or in
//! S3-compatible object storage (clusters), through the `object_store` crate's one API.
//!
//! - [`Media`]: what the server uses. Whole files are streamed in ([`Media::put`], hashed and
//!   size-capped on the way, never whole in memory) and out ([`Media::get`], a byte range passed
//!   through to the store). Chunked, resumable uploads ([`Media::create_upload`],
//!   [`Media::put_chunk`], [`Media::progress`], [`Media::complete`]) keep their state in the
//!   object store itself, so they survive a restart and any node of a cluster can continue one;
//!   [`Media::sweep`] removes uploads that went idle.
//! - `parts.rs`: the one thing the backends do differently, the parts of a chunked upload: S3
//!   multipart uploads where the store has them, one file written at each chunk's offset on the
//!   local disk (`local.rs`, which also writes streamed files straight to the disk).
//! - `upload.rs`: the chunked uploads' manifests and chunk records.
//! - [`sniff`]: a file's content type from its first bytes (never from the client's word), and
//!   the [`TypePolicy`](sniff::TypePolicy) that says which types may be stored (executables
//!   are refused unless named).
//! - [`names`]: uploaded files' names made harmless (no paths, controls or bidi tricks), and
//!   the `Content-Disposition` header that hands them back.
//! - [`thumbnail`]: thumbnails of PNG, JPEG, GIF and WebP images, with decoding limits set
//!   before decoding (a decompression bomb is refused from its header). Synchronous: call it off
//!   the async runtime.
//!
//! Who may read or delete a file, and its metadata (name, type, uploader, conversation), are the
//! [`Store`](crate::Store)'s business; this module knows files by tenant and id only.

mod local;
pub mod names;
mod parts;
pub mod sniff;
pub mod thumbnail;
mod upload;

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    GetOptions, GetRange, GetResultPayload, ObjectStore, ObjectStoreExt, WriteMultipart,
};
use sha2::{Digest, Sha256};

pub use upload::{NewUpload, Progress, Upload};

use parts::Parts;

/// What went wrong with a media operation. The client's errors say what to fix; `Backend` is
/// the store's own failure, with its cause.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("no such file or upload")]
    NotFound,
    #[error("the file is larger than {max} bytes")]
    TooLarge { max: u64 },
    #[error("{0}")]
    Invalid(String),
    /// A chunk number past the upload's last chunk (`not_found`: the path names nothing).
    #[error("chunk {n} is out of range: the upload has {count} chunks")]
    NoSuchChunk { n: u64, count: u64 },
    #[error("the bytes do not match the checksum: {0}")]
    ChecksumMismatch(String),
    #[error("the range is not satisfiable for a file of {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    #[error("the upload is not complete: missing chunks {missing:?}")]
    Incomplete { missing: Vec<u64> },
    #[error("the media store failed while {context}")]
    Backend {
        context: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Results of media operations.
pub type MediaResult<T> = std::result::Result<T, MediaError>;

impl MediaError {
    /// The wire error code of this failure.
    pub fn code(&self) -> confab_protocol::ErrorCode {
        use confab_protocol::ErrorCode;
        match self {
            MediaError::NotFound | MediaError::NoSuchChunk { .. } => ErrorCode::NotFound,
            MediaError::TooLarge { .. } => ErrorCode::TooLarge,
            MediaError::Invalid(_) => ErrorCode::Invalid,
            MediaError::ChecksumMismatch(_) => ErrorCode::ChecksumMismatch,
            MediaError::RangeNotSatisfiable { .. } => ErrorCode::RangeNotSatisfiable,
            MediaError::Incomplete { .. } => ErrorCode::Conflict,
            MediaError::Backend { .. } => ErrorCode::Internal,
        }
    }

    /// Wraps a store failure met while doing `context` (a missing object is
    /// [`MediaError::NotFound`]).
    fn backend(context: &'static str) -> impl Fn(object_store::Error) -> MediaError {
        move |source| match source {
            object_store::Error::NotFound { .. } => MediaError::NotFound,
            source => MediaError::Backend {
                context,
                source: Box::new(source),
            },
        }
    }
}

/// A file as stored: its size and SHA-256 (lower-case hex), and its first bytes, from which its
/// type is sniffed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub size: u64,
    pub sha256: String,
    /// The first [`HEAD_BYTES`] bytes (fewer for a smaller file).
    pub head: Vec<u8>,
}

/// How many of a file's first bytes [`Stored::head`] keeps: enough for any type signature.
pub const HEAD_BYTES: usize = 8192;

/// A file being read: the bytes of `range` (all of it without a range) out of `size`.
pub struct Download {
    pub size: u64,
    pub range: Range<u64>,
    pub body: BoxStream<'static, MediaResult<Bytes>>,
}

impl fmt::Debug for Download {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Download")
            .field("size", &self.size)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

/// A byte range as HTTP asks for it (`bytes=a-b`, `bytes=a-`, `bytes=-n`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// From `start` to `end` inclusive (`end` past the file means its end).
    FromTo {
        start: u64,
        end: u64,
    },
    From(u64),
    /// The last `n` bytes.
    Last(u64),
}

impl ByteRange {
    /// The bytes this range selects of a file of `size` bytes, or `None` when it selects none.
    pub fn resolve(self, size: u64) -> Option<Range<u64>> {
        let range = match self {
            ByteRange::FromTo { start, end } if start <= end => start..end.saturating_add(1),
            ByteRange::FromTo { .. } => return None,
            ByteRange::From(start) => start..size,
            ByteRange::Last(n) => size.saturating_sub(n)..size,
        };
        (range.start < size && !range.is_empty()).then(|| range.start..range.end.min(size))
    }
}

/// Hashes and counts bytes as they pass, and keeps the first [`HEAD_BYTES`].
#[derive(Default)]
struct Tally {
    hasher: Sha256,
    size: u64,
    head: Vec<u8>,
}

impl Tally {
    fn add(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.size += bytes.len() as u64;
        if self.head.len() < HEAD_BYTES {
            let take = (HEAD_BYTES - self.head.len()).min(bytes.len());
            self.head.extend_from_slice(&bytes[..take]);
        }
    }

    fn finish(self) -> Stored {
        Stored {
            size: self.size,
            sha256: hex::encode(self.hasher.finalize()),
            head: self.head,
        }
    }
}

/// The SHA-256 of `bytes`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The bytes of a read. A local file is read in large pieces: object_store reads 8 KiB at a
/// time, a hand-off to the blocking pool each, which held downloads to a tenth of the disk's
/// pace.
fn body_of(result: object_store::GetResult) -> BoxStream<'static, MediaResult<Bytes>> {
    let range = result.range.clone();
    match result.payload {
        GetResultPayload::File(file, _) => file_stream(file, range),
        GetResultPayload::Stream(stream) => stream
            .map_err(MediaError::backend("reading a file"))
            .boxed(),
    }
}

/// How much of a local file one read takes.
const FILE_READ: u64 = 256 * 1024;

/// The bytes `range` of a local file, read on the blocking pool a [`FILE_READ`] at a time.
fn file_stream(file: std::fs::File, range: Range<u64>) -> BoxStream<'static, MediaResult<Bytes>> {
    let failed = |source: std::io::Error| MediaError::Backend {
        context: "reading a file",
        source: Box::new(source),
    };
    futures_util::stream::try_unfold((Some(file), range), move |(file, range)| async move {
        let Some(mut file) = file.filter(|_| !range.is_empty()) else {
            return Ok(None);
        };
        let len = (range.end - range.start).min(FILE_READ);
        let at = range.start;
        let read = tokio::task::spawn_blocking(move || {
            use std::io::{Read, Seek, SeekFrom};
            file.seek(SeekFrom::Start(at))?;
            let mut piece = vec![0; usize::try_from(len).unwrap_or(0)];
            file.read_exact(&mut piece)?;
            Ok::<_, std::io::Error>((file, Bytes::from(piece)))
        })
        .await
        .map_err(|join| failed(std::io::Error::other(join)))?;
        let (file, piece) = read.map_err(failed)?;
        Ok(Some((piece, (Some(file), at + len..range.end))))
    })
    .boxed()
}

/// Multipart writes of a streamed file to S3: parts of 5 MiB (its minimum), at most this many in
/// flight, so an upload holds ~10 MiB of the process's memory at most.
const WRITE_CONCURRENCY: usize = 2;

/// Media files of every tenant in one object store.
#[derive(Clone)]
pub struct Media {
    store: Arc<dyn ObjectStore>,
    parts: Arc<Parts>,
    /// `local` or `s3`, for logs and metrics.
    kind: &'static str,
}

impl fmt::Debug for Media {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Media({}: {})", self.kind, self.store)
    }
}

impl Media {
    /// Files under `dir` on the local disk (created if missing).
    pub fn local(dir: &std::path::Path) -> MediaResult<Media> {
        std::fs::create_dir_all(dir).map_err(|source| MediaError::Backend {
            context: "creating the media directory",
            source: Box::new(source),
        })?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)
            .map_err(MediaError::backend("opening the media directory"))?
            .with_automatic_cleanup(true);
        let fs = Arc::new(fs);
        let store: Arc<dyn ObjectStore> = fs.clone();
        Ok(Media {
            parts: Arc::new(Parts::local(local::LocalDisk::new(fs))),
            store,
            kind: "local",
        })
    }

    /// Files in an S3 bucket: `s3://bucket?endpoint=http://host:port&region=…` (both optional),
    /// with `keys` (access key id, secret), by default those of the standard `AWS_*` variables.
    #[cfg(feature = "s3")]
    pub fn s3(url: &str, keys: Option<(&str, &str)>) -> MediaResult<Media> {
        let s3 = parts::s3_from_url(url, keys)?;
        let store: Arc<dyn ObjectStore> = s3.clone();
        Ok(Media {
            parts: Arc::new(Parts::native(s3)),
            store,
            kind: "s3",
        })
    }

    /// `local` or `s3`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    fn file_path(tenant: &str, id: &str) -> Path {
        Path::from_iter(["files", tenant, id])
    }

    /// Streams `body` into file `id` of `tenant`, refusing it (and storing nothing) past
    /// `max_size` bytes or when the stream fails. Replaces a file of the same id.
    pub async fn put<S, E>(
        &self,
        tenant: &str,
        id: &str,
        body: S,
        max_size: u64,
    ) -> MediaResult<Stored>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: Into<MediaError>,
    {
        let path = Media::file_path(tenant, id);
        if let Parts::Local(disk) = &*self.parts {
            let staging = Path::from_iter(["uploads", &uuid::Uuid::new_v4().to_string(), "data"]);
            return disk.put(&staging, &path, body, max_size).await;
        }
        let upload = self
            .store
            .put_multipart(&path)
            .await
            .map_err(MediaError::backend("starting a file"))?;
        let mut writer = WriteMultipart::new(upload);
        let mut tally = Tally::default();
        let written = async {
            let mut body = std::pin::pin!(body);
            while let Some(bytes) = body.next().await {
                let bytes = bytes.map_err(Into::into)?;
                tally.add(&bytes);
                if tally.size > max_size {
                    return Err(MediaError::TooLarge { max: max_size });
                }
                writer
                    .wait_for_capacity(WRITE_CONCURRENCY)
                    .await
                    .map_err(MediaError::backend("writing a file"))?;
                writer.put(bytes);
            }
            Ok(())
        }
        .await;
        match written {
            Ok(()) => {
                writer
                    .finish()
                    .await
                    .map_err(MediaError::backend("finishing a file"))?;
                Ok(tally.finish())
            }
            Err(err) => {
                if let Err(abort) = writer.abort().await {
                    tracing::warn!(error = %abort, "could not abort a refused upload");
                }
                Err(err)
            }
        }
    }

    /// Reads file `id` of `tenant`, all of it or `range` of it.
    pub async fn get(
        &self,
        tenant: &str,
        id: &str,
        range: Option<ByteRange>,
    ) -> MediaResult<Download> {
        let path = Media::file_path(tenant, id);
        let (size, range) = match range {
            None => (None, None),
            Some(range) => {
                let size = self.size(tenant, id).await?;
                let resolved = range
                    .resolve(size)
                    .ok_or(MediaError::RangeNotSatisfiable { size })?;
                (Some(size), Some(GetRange::Bounded(resolved)))
            }
        };
        let result = self
            .store
            .get_opts(
                &path,
                GetOptions {
                    range,
                    ..GetOptions::default()
                },
            )
            .await
            .map_err(MediaError::backend("reading a file"))?;
        let size = size.unwrap_or(result.meta.size);
        let range = result.range.clone();
        let body = body_of(result);
        Ok(Download { size, range, body })
    }

    /// The size of file `id` of `tenant`.
    pub async fn size(&self, tenant: &str, id: &str) -> MediaResult<u64> {
        let meta = self
            .store
            .head(&Media::file_path(tenant, id))
            .await
            .map_err(MediaError::backend("reading a file's size"))?;
        Ok(meta.size)
    }

    /// Removes file `id` of `tenant` and its thumbnail; removing what is not there succeeds.
    pub async fn delete(&self, tenant: &str, id: &str) -> MediaResult<()> {
        for path in [
            Media::file_path(tenant, id),
            Media::thumbnail_path(tenant, id),
        ] {
            match self.store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(err) => return Err(MediaError::backend("deleting a file")(err)),
            }
        }
        Ok(())
    }

    /// The whole of file `id` of `tenant`, if it is at most `max` bytes (`TooLarge` otherwise):
    /// for work that needs it all at once, as decoding an image does.
    pub async fn read_whole(&self, tenant: &str, id: &str, max: u64) -> MediaResult<Bytes> {
        let size = self.size(tenant, id).await?;
        if size > max {
            return Err(MediaError::TooLarge { max });
        }
        self.store
            .get(&Media::file_path(tenant, id))
            .await
            .map_err(MediaError::backend("reading a file"))?
            .bytes()
            .await
            .map_err(MediaError::backend("reading a file"))
    }

    fn thumbnail_path(tenant: &str, id: &str) -> Path {
        Path::from_iter(["thumbnails", tenant, id])
    }

    /// Stores the thumbnail of file `id` of `tenant` (replacing an earlier one).
    pub async fn put_thumbnail(&self, tenant: &str, id: &str, bytes: Bytes) -> MediaResult<()> {
        self.store
            .put(&Media::thumbnail_path(tenant, id), bytes.into())
            .await
            .map_err(MediaError::backend("storing a thumbnail"))?;
        Ok(())
    }

    /// The thumbnail of file `id` of `tenant` (`NotFound` until one is stored).
    pub async fn thumbnail(&self, tenant: &str, id: &str) -> MediaResult<Bytes> {
        self.store
            .get(&Media::thumbnail_path(tenant, id))
            .await
            .map_err(MediaError::backend("reading a thumbnail"))?
            .bytes()
            .await
            .map_err(MediaError::backend("reading a thumbnail"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_resolve_as_http_says() {
        let size = 10;
        let cases = [
            (ByteRange::FromTo { start: 0, end: 0 }, Some(0..1)),
            (ByteRange::FromTo { start: 2, end: 5 }, Some(2..6)),
            (ByteRange::FromTo { start: 8, end: 99 }, Some(8..10)),
            (ByteRange::FromTo { start: 10, end: 12 }, None),
            (ByteRange::FromTo { start: 5, end: 4 }, None),
            (ByteRange::From(9), Some(9..10)),
            (ByteRange::From(10), None),
            (ByteRange::Last(3), Some(7..10)),
            (ByteRange::Last(30), Some(0..10)),
            (ByteRange::Last(0), None),
        ];
        for (range, expected) in cases {
            assert_eq!(range.resolve(size), expected, "{range:?}");
        }
        assert_eq!(
            ByteRange::From(0).resolve(0),
            None,
            "an empty file has no bytes"
        );
    }

    #[test]
    fn the_tally_hashes_counts_and_keeps_the_head() {
        let mut tally = Tally::default();
        let data = vec![7u8; HEAD_BYTES + 10];
        tally.add(&data[..5]);
        tally.add(&data[5..]);
        let stored = tally.finish();
        assert_eq!(stored.size, data.len() as u64);
        assert_eq!(stored.head.len(), HEAD_BYTES);
        assert_eq!(stored.sha256, sha256_hex(&data));
    }
}
