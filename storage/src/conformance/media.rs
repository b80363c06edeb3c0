//! The conformance suite every [`Media`] backend must pass (the local disk and S3), invoked
//! with [`media_conformance_suite!`](crate::media_conformance_suite) and an async factory
//! returning `(Media, Guard)`: a fresh, empty store and whatever must outlive it.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::{TryStreamExt, stream};

use crate::media::{
    ByteRange, HEAD_BYTES, Media, MediaError, MediaResult, NewUpload, Upload, sha256_hex,
};

/// The smallest chunk S3 accepts for every part but the last.
pub const CHUNK: u64 = 5 * 1024 * 1024;

/// Expands to one `#[tokio::test]` per media check, each on a fresh store from `$factory`.
#[macro_export]
macro_rules! media_conformance_suite {
    ($factory:path) => {
        $crate::media_conformance_suite!(@checks $factory;
            files_round_trip_byte_for_byte,
            a_file_over_the_cap_is_not_stored,
            a_broken_stream_stores_nothing,
            ranges_are_exact,
            delete_frees_the_file,
            tenants_are_apart,
            a_chunked_upload_resumes_and_completes,
            a_chunked_upload_with_the_wrong_checksum_stores_nothing,
            an_empty_chunked_upload_makes_an_empty_file,
            idle_uploads_are_swept,
        );
    };
    (@checks $factory:path; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let (media, guard) = $factory().await;
                $crate::conformance::media::$check(&media).await;
                drop(guard);
            }
        )*
    };
}

/// `len` bytes that differ from chunk to chunk and from `seed` to `seed`.
pub fn pattern(len: u64, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u8)
                .wrapping_mul(31)
                .wrapping_add((i >> 13) as u8 ^ seed)
        })
        .collect()
}

/// `data` as a client's stream, in pieces of `piece` bytes.
fn body(data: &[u8], piece: usize) -> impl futures_util::Stream<Item = MediaResult<Bytes>> + use<> {
    let pieces: Vec<MediaResult<Bytes>> = data
        .chunks(piece.max(1))
        .map(|piece| Ok(Bytes::copy_from_slice(piece)))
        .collect();
    stream::iter(pieces)
}

async fn read_all(media: &Media, tenant: &str, id: &str, range: Option<ByteRange>) -> Vec<u8> {
    let download = media.get(tenant, id, range).await.expect("get");
    let pieces: Vec<Bytes> = download.body.try_collect().await.expect("read");
    pieces.concat()
}

fn assert_not_found<T: std::fmt::Debug>(result: MediaResult<T>) {
    assert!(
        matches!(result, Err(MediaError::NotFound)),
        "expected NotFound, got {result:?}"
    );
}

pub async fn files_round_trip_byte_for_byte(media: &Media) {
    // Empty, one byte, and across the 5 MiB part boundary with odd-sized pieces.
    for (id, len) in [("empty", 0), ("one", 1), ("big", 2 * CHUNK + 12_345)] {
        let data = pattern(len, 1);
        let stored = media
            .put("t1", id, body(&data, 70_001), u64::MAX)
            .await
            .expect("put");
        assert_eq!(stored.size, len, "{id}");
        assert_eq!(stored.sha256, sha256_hex(&data), "{id}");
        assert_eq!(stored.head, data[..data.len().min(HEAD_BYTES)], "{id}");
        assert_eq!(media.size("t1", id).await.expect("size"), len, "{id}");
        let download = media.get("t1", id, None).await.expect("get");
        assert_eq!((download.size, download.range.clone()), (len, 0..len));
        assert!(
            read_all(media, "t1", id, None).await == data,
            "{id}: bytes differ"
        );
    }
}

pub async fn a_file_over_the_cap_is_not_stored(media: &Media) {
    let data = pattern(1000, 2);
    let refused = media.put("t1", "capped", body(&data, 100), 999).await;
    assert!(
        matches!(refused, Err(MediaError::TooLarge { max: 999 })),
        "{refused:?}"
    );
    assert_not_found(media.get("t1", "capped", None).await);
    let exact = media.put("t1", "capped", body(&data, 100), 1000).await;
    assert_eq!(exact.expect("at the cap").size, 1000);
}

pub async fn a_broken_stream_stores_nothing(media: &Media) {
    let pieces: Vec<MediaResult<Bytes>> = vec![
        Ok(Bytes::from_static(b"partial")),
        Err(MediaError::Invalid("the client went away".to_owned())),
    ];
    let broken = media
        .put("t1", "broken", stream::iter(pieces), u64::MAX)
        .await;
    assert!(matches!(broken, Err(MediaError::Invalid(_))), "{broken:?}");
    assert_not_found(media.get("t1", "broken", None).await);
}

pub async fn ranges_are_exact(media: &Media) {
    let data = pattern(10_000, 3);
    media
        .put("t1", "ranged", body(&data, 4096), u64::MAX)
        .await
        .expect("put");
    let cases = [
        (ByteRange::FromTo { start: 0, end: 0 }, 0..1),
        (
            ByteRange::FromTo {
                start: 100,
                end: 4999,
            },
            100..5000,
        ),
        (
            ByteRange::FromTo {
                start: 9000,
                end: 20_000,
            },
            9000..10_000,
        ),
        (ByteRange::From(9990), 9990..10_000),
        (ByteRange::Last(7), 9993..10_000),
    ];
    for (range, expected) in cases {
        let download = media.get("t1", "ranged", Some(range)).await.expect("get");
        assert_eq!(
            (download.size, download.range.clone()),
            (10_000, expected.clone())
        );
        let bytes = read_all(media, "t1", "ranged", Some(range)).await;
        let want = &data[expected.start as usize..expected.end as usize];
        assert!(bytes == want, "{range:?}: bytes differ");
    }
    for bad in [
        ByteRange::From(10_000),
        ByteRange::FromTo {
            start: 20_000,
            end: 20_001,
        },
        ByteRange::FromTo { start: 5, end: 4 },
        ByteRange::Last(0),
    ] {
        let refused = media.get("t1", "ranged", Some(bad)).await;
        assert!(
            matches!(
                refused,
                Err(MediaError::RangeNotSatisfiable { size: 10_000 })
            ),
            "{bad:?}: {refused:?}"
        );
    }
    assert_not_found(media.get("t1", "absent", Some(ByteRange::From(0))).await);
}

pub async fn delete_frees_the_file(media: &Media) {
    media
        .put("t1", "gone", body(b"bytes", 5), u64::MAX)
        .await
        .expect("put");
    assert_eq!(
        &media.read_whole("t1", "gone", 5).await.expect("whole")[..],
        b"bytes"
    );
    assert!(matches!(
        media.read_whole("t1", "gone", 4).await,
        Err(MediaError::TooLarge { max: 4 })
    ));
    assert_not_found(media.thumbnail("t1", "gone").await);
    media
        .put_thumbnail("t1", "gone", Bytes::from_static(b"thumb"))
        .await
        .expect("thumbnail");
    assert_eq!(
        &media.thumbnail("t1", "gone").await.expect("thumbnail")[..],
        b"thumb"
    );
    media.delete("t1", "gone").await.expect("delete");
    assert_not_found(media.get("t1", "gone", None).await);
    assert_not_found(media.thumbnail("t1", "gone").await);
    assert_not_found(media.size("t1", "gone").await);
    media.delete("t1", "gone").await.expect("deleting twice");
}

pub async fn tenants_are_apart(media: &Media) {
    for (tenant, text) in [("t1", "one"), ("t2", "two"), ("../t1", "hostile")] {
        media
            .put(tenant, "same-id", body(text.as_bytes(), 2), u64::MAX)
            .await
            .expect("put");
    }
    assert_eq!(read_all(media, "t1", "same-id", None).await, b"one");
    assert_eq!(read_all(media, "t2", "same-id", None).await, b"two");
    assert_eq!(read_all(media, "../t1", "same-id", None).await, b"hostile");
    media.delete("t2", "same-id").await.expect("delete");
    assert_eq!(read_all(media, "t1", "same-id", None).await, b"one");
    assert_not_found(media.get("t3", "same-id", None).await);
}

fn new_upload(size: u64, sha256: Option<String>) -> NewUpload {
    NewUpload {
        tenant: "t1".to_owned(),
        user: "ann".to_owned(),
        name: "movie.mp4".to_owned(),
        content_type: "video/mp4".to_owned(),
        size,
        sha256,
        conversation: Some("c1".to_owned()),
        chunk_size: CHUNK,
    }
}

fn chunk(data: &[u8], upload: &Upload, n: u64) -> Bytes {
    let start = (n * upload.chunk_size) as usize;
    Bytes::copy_from_slice(&data[start..start + upload.chunk_len(n) as usize])
}

pub async fn a_chunked_upload_resumes_and_completes(media: &Media) {
    let data = pattern(2 * CHUNK + 4321, 4);
    let sha = sha256_hex(&data).to_ascii_uppercase();
    let created = media
        .create_upload(new_upload(data.len() as u64, Some(sha)), "u1", "file-u1")
        .await
        .expect("create");
    // Another request (or node, or process) finds it by id.
    let upload = media.upload("u1").await.expect("find");
    assert_eq!(upload, created);
    assert_eq!(upload.chunk_count(), 3);
    media
        .put_chunk(&upload, 0, chunk(&data, &upload, 0), None)
        .await
        .expect("chunk 0");
    let last = chunk(&data, &upload, 2);
    media
        .put_chunk(&upload, 2, last.clone(), Some(&sha256_hex(&last)))
        .await
        .expect("chunk 2");
    // The client dropped before chunk 1: it asks how far it got.
    let progress = media.progress(&upload).await.expect("progress");
    assert_eq!(progress.missing_chunks, [1]);
    assert_eq!(progress.received_bytes, CHUNK + 4321);
    assert_eq!(progress.size, data.len() as u64);
    let early = media.complete(&upload).await;
    assert!(
        matches!(&early, Err(MediaError::Incomplete { missing }) if missing == &[1]),
        "{early:?}"
    );
    // Wrong bytes for their checksum, a wrong size, a chunk past the end: refused.
    let one = chunk(&data, &upload, 1);
    let wrong = media
        .put_chunk(&upload, 1, one.clone(), Some(&sha256_hex(b"other")))
        .await;
    assert!(
        matches!(wrong, Err(MediaError::ChecksumMismatch(_))),
        "{wrong:?}"
    );
    let short = media.put_chunk(&upload, 1, one.slice(1..), None).await;
    assert!(matches!(short, Err(MediaError::Invalid(_))), "{short:?}");
    let past = media.put_chunk(&upload, 3, Bytes::new(), None).await;
    assert!(
        matches!(past, Err(MediaError::NoSuchChunk { n: 3, count: 3 })),
        "{past:?}"
    );
    assert_eq!(
        media
            .progress(&upload)
            .await
            .expect("progress")
            .missing_chunks,
        [1]
    );
    media
        .put_chunk(&upload, 1, one, None)
        .await
        .expect("chunk 1");
    // A retried chunk (its answer was lost) is accepted again.
    media
        .put_chunk(&upload, 0, chunk(&data, &upload, 0), None)
        .await
        .expect("chunk 0 again");
    let stored = media.complete(&upload).await.expect("complete");
    assert_eq!(stored.size, data.len() as u64);
    assert_eq!(stored.sha256, sha256_hex(&data));
    assert!(
        read_all(media, "t1", "file-u1", None).await == data,
        "bytes differ"
    );
    assert_not_found(media.upload("u1").await);
}

pub async fn a_chunked_upload_with_the_wrong_checksum_stores_nothing(media: &Media) {
    let data = pattern(CHUNK + 10, 5);
    let upload = media
        .create_upload(
            new_upload(data.len() as u64, Some(sha256_hex(b"something else"))),
            "u2",
            "file-u2",
        )
        .await
        .expect("create");
    for n in 0..upload.chunk_count() {
        media
            .put_chunk(&upload, n, chunk(&data, &upload, n), None)
            .await
            .expect("chunk");
    }
    let refused = media.complete(&upload).await;
    assert!(
        matches!(refused, Err(MediaError::ChecksumMismatch(_))),
        "{refused:?}"
    );
    assert_not_found(media.get("t1", "file-u2", None).await);
    assert_not_found(media.upload("u2").await);
}

pub async fn an_empty_chunked_upload_makes_an_empty_file(media: &Media) {
    let upload = media
        .create_upload(new_upload(0, Some(sha256_hex(b""))), "u3", "file-u3")
        .await
        .expect("create");
    assert_eq!(upload.chunk_count(), 0);
    let progress = media.progress(&upload).await.expect("progress");
    assert!(progress.missing_chunks.is_empty());
    let stored = media.complete(&upload).await.expect("complete");
    assert_eq!(stored.size, 0);
    assert_eq!(read_all(media, "t1", "file-u3", None).await, b"");
}

pub async fn idle_uploads_are_swept(media: &Media) {
    let data = pattern(CHUNK + 1, 6);
    let upload = media
        .create_upload(new_upload(data.len() as u64, None), "u4", "file-u4")
        .await
        .expect("create");
    media
        .put_chunk(&upload, 0, chunk(&data, &upload, 0), None)
        .await
        .expect("chunk");
    let now = SystemTime::now();
    let kept = media
        .sweep(Duration::from_secs(300), now)
        .await
        .expect("sweep");
    assert_eq!(kept, 0);
    assert_eq!(media.upload("u4").await.expect("still there"), upload);
    let later = now + Duration::from_secs(301);
    let removed = media
        .sweep(Duration::from_secs(300), later)
        .await
        .expect("sweep");
    assert_eq!(removed, 1);
    assert_not_found(media.upload("u4").await);
    assert_not_found(media.get("t1", "file-u4", None).await);
    assert_eq!(media.sweep(Duration::ZERO, later).await.expect("sweep"), 0);
}
