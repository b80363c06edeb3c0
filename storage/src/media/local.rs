//! Files on the local disk written without object_store's multipart machinery, which held a
//! whole part (5 MiB) of every upload in memory and, for chunked uploads, copied every byte a
//! second time on completion.
//!
//! - A streamed file goes into a staging file under `uploads/` ([`LocalDisk::put`]): the body's
//!   pieces are gathered into batches of [`WRITE_BATCH`] bytes, each hashed and written on the
//!   blocking pool while the next one is received, then the file is renamed into place. An
//!   upload holds at most two batches; a refused or failed one leaves nothing behind.
//! - A chunked upload's chunks are written at their offsets into one file
//!   ([`LocalDisk::write_at`]), which completion hashes in one pass and renames
//!   ([`LocalDisk::finish`]): no byte is written twice.
//!
//! A staging file left by a stopped process is an idle upload directory, which
//! [`Media::sweep`](super::Media::sweep) removes.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use object_store::ObjectStoreExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use tokio::task::JoinHandle;

use super::{MediaError, MediaResult, Stored, Tally};

/// Bytes gathered before one write to the disk.
const WRITE_BATCH: usize = 256 * 1024;

/// Bytes read at a time when a finished chunked upload is hashed.
const HASH_READ: usize = 1024 * 1024;

fn io_failed(context: &'static str) -> impl Fn(io::Error) -> MediaError {
    move |source| MediaError::Backend {
        context,
        source: Box::new(source),
    }
}

/// Runs `work` on the blocking pool.
async fn blocking<T: Send + 'static>(
    context: &'static str,
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> MediaResult<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|join| io_failed(context)(io::Error::other(join)))?
        .map_err(io_failed(context))
}

/// A file being written one batch at a time, at most one write in flight. The batch is hashed
/// on the blocking thread that writes it, not on the task that receives the body: SHA-256 is
/// the costliest step of an upload (1.8 GB/s on one core here), and done beside the socket
/// reads it held a streamed upload to one core's pace.
struct Pipe {
    idle: Option<(File, Tally)>,
    in_flight: Option<JoinHandle<io::Result<(File, Tally)>>>,
}

impl Pipe {
    async fn settle(&mut self) -> MediaResult<(File, Tally)> {
        match (self.idle.take(), self.in_flight.take()) {
            (Some(idle), _) => Ok(idle),
            (None, Some(write)) => write
                .await
                .map_err(|join| io_failed("writing a file")(io::Error::other(join)))?
                .map_err(io_failed("writing a file")),
            (None, None) => Err(io_failed("writing a file")(io::Error::other(
                "the file was lost after a failed write",
            ))),
        }
    }

    async fn write(&mut self, batch: Vec<Bytes>) -> MediaResult<()> {
        let (mut file, mut tally) = self.settle().await?;
        self.in_flight = Some(tokio::task::spawn_blocking(move || {
            for bytes in batch {
                tally.add(&bytes);
                file.write_all(&bytes)?;
            }
            Ok((file, tally))
        }));
        Ok(())
    }
}

/// The local disk under the media directory.
#[derive(Debug, Clone)]
pub(super) struct LocalDisk {
    fs: Arc<LocalFileSystem>,
}

impl LocalDisk {
    pub(super) fn new(fs: Arc<LocalFileSystem>) -> LocalDisk {
        LocalDisk { fs }
    }

    fn path(&self, location: &Path) -> MediaResult<PathBuf> {
        self.fs
            .path_to_filesystem(location)
            .map_err(MediaError::backend("naming a file"))
    }

    /// Streams `body` into `dest` through a staging file at `staging`, refusing it past
    /// `max_size` bytes or when the stream fails (nothing is left behind then).
    pub(super) async fn put<S, E>(
        &self,
        staging: &Path,
        dest: &Path,
        body: S,
        max_size: u64,
    ) -> MediaResult<Stored>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: Into<MediaError>,
    {
        let path = self.path(staging)?;
        let created = path.clone();
        let file = blocking("creating a file", move || {
            if let Some(parent) = created.parent() {
                std::fs::create_dir_all(parent)?;
            }
            File::create(&created)
        })
        .await?;
        let mut pipe = Pipe {
            idle: Some((file, Tally::default())),
            in_flight: None,
        };
        let written = async {
            let mut body = std::pin::pin!(body);
            let mut batch = Vec::new();
            let mut batched = 0;
            let mut received: u64 = 0;
            while let Some(bytes) = body.next().await {
                let bytes = bytes.map_err(Into::into)?;
                received += bytes.len() as u64;
                if received > max_size {
                    return Err(MediaError::TooLarge { max: max_size });
                }
                batched += bytes.len();
                batch.push(bytes);
                if batched >= WRITE_BATCH {
                    pipe.write(std::mem::take(&mut batch)).await?;
                    batched = 0;
                }
            }
            pipe.write(batch).await?;
            pipe.settle().await
        }
        .await;
        match written {
            Ok((_file, tally)) => {
                self.fs
                    .rename(staging, dest)
                    .await
                    .map_err(MediaError::backend("finishing a file"))?;
                remove_empty_parent(path).await;
                Ok(tally.finish())
            }
            Err(err) => {
                // A write still in flight finishes before the file goes.
                let _ = pipe.settle().await;
                let doomed = path.clone();
                if let Err(remove) = blocking("removing a refused file", move || {
                    std::fs::remove_file(&doomed)
                })
                .await
                {
                    tracing::warn!(error = %remove, "could not remove a refused upload");
                }
                remove_empty_parent(path).await;
                Err(err)
            }
        }
    }

    /// Makes the file at `data` that a chunked upload of `size` bytes is written into.
    pub(super) async fn create(&self, data: &Path, size: u64) -> MediaResult<()> {
        let path = self.path(data)?;
        blocking("starting an upload", move || {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            File::create(&path)?.set_len(size)
        })
        .await
    }

    /// Writes `bytes` at `offset` of the file at `data`.
    pub(super) async fn write_at(&self, data: &Path, offset: u64, bytes: Bytes) -> MediaResult<()> {
        let path = self.path(data)?;
        blocking("storing a chunk", move || {
            let file = std::fs::OpenOptions::new().write(true).open(&path)?;
            file.write_all_at(&bytes, offset)
        })
        .await
    }

    /// Hashes the file at `data` in one pass and renames it to `dest`.
    pub(super) async fn finish(&self, data: &Path, dest: &Path) -> MediaResult<Stored> {
        let path = self.path(data)?;
        let stored = blocking("reading an upload", move || {
            let mut file = File::open(&path)?;
            let mut tally = Tally::default();
            let mut piece = vec![0; HASH_READ];
            loop {
                let read = file.read(&mut piece)?;
                if read == 0 {
                    return Ok(tally.finish());
                }
                tally.add(&piece[..read]);
            }
        })
        .await?;
        self.fs
            .rename(data, dest)
            .await
            .map_err(MediaError::backend("finishing a file"))?;
        Ok(stored)
    }
}

/// Removes the staging directory a file was renamed out of, if nothing else is in it.
async fn remove_empty_parent(path: PathBuf) {
    let _ = tokio::task::spawn_blocking(move || {
        if let Some(parent) = path.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    })
    .await;
}
