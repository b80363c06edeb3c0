//! The media conformance suite on the local disk and, with the `s3` feature, on a real S3 server
//! (SeaweedFS, started by `confab-testkit`).

mod local {
    use confab_storage::media::Media;
    use tempfile::TempDir;

    async fn factory() -> (Media, TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let media = Media::local(&dir.path().join("media")).expect("local media");
        (media, dir)
    }

    confab_storage::media_conformance_suite!(factory);

    /// Hostile tenant and file ids are encoded into one path segment each: nothing is written
    /// outside the media directory.
    #[tokio::test]
    async fn hostile_ids_stay_inside_the_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("media");
        let media = Media::local(&root).expect("local media");
        let body = futures_util::stream::iter([Ok::<_, confab_storage::media::MediaError>(
            bytes::Bytes::from_static(b"x"),
        )]);
        media
            .put("../..", "../../escape", body, 10)
            .await
            .expect("put");
        let outside: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|entry| entry.expect("entry").file_name())
            .collect();
        assert_eq!(
            outside,
            ["media"],
            "only the media directory is in the parent"
        );
        assert_eq!(media.size("../..", "../../escape").await.expect("size"), 1);
    }

    /// Every file under `root`, relative to it.
    fn files_under(root: &std::path::Path) -> Vec<String> {
        let mut found = Vec::new();
        let mut dirs = vec![root.to_path_buf()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("list") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    let relative = path.strip_prefix(root).expect("under root");
                    found.push(relative.display().to_string());
                }
            }
        }
        found.sort();
        found
    }

    /// Streamed files are written to a staging file and renamed; chunked uploads into one file
    /// at each chunk's offset. Refused, broken and finished uploads leave no staging behind,
    /// and a chunk sent out of order or twice lands in its place.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn uploads_leave_only_their_files_behind() {
        use confab_storage::conformance::media::{CHUNK, pattern};
        use confab_storage::media::{MediaError, NewUpload, sha256_hex};

        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("media");
        let media = Media::local(&root).expect("local media");
        let data = pattern(3 * CHUNK / 2, 9);
        let pieces = |data: &[u8]| {
            let pieces: Vec<Result<bytes::Bytes, MediaError>> = data
                .chunks(64 * 1024 + 7)
                .map(|piece| Ok(bytes::Bytes::copy_from_slice(piece)))
                .collect();
            futures_util::stream::iter(pieces)
        };
        let stored = media.put("t1", "kept", pieces(&data), u64::MAX).await;
        assert_eq!(stored.expect("put").sha256, sha256_hex(&data));
        let refused = media.put("t1", "refused", pieces(&data), 1000).await;
        assert!(matches!(refused, Err(MediaError::TooLarge { .. })));

        let new = NewUpload {
            tenant: "t1".to_owned(),
            user: "ann".to_owned(),
            name: "a.bin".to_owned(),
            content_type: "application/octet-stream".to_owned(),
            size: data.len() as u64,
            sha256: Some(sha256_hex(&data)),
            conversation: None,
            chunk_size: CHUNK,
        };
        let upload = media
            .create_upload(new, "u1", "chunked")
            .await
            .expect("create");
        let second = bytes::Bytes::copy_from_slice(&data[CHUNK as usize..]);
        let first = bytes::Bytes::copy_from_slice(&data[..CHUNK as usize]);
        for (n, bytes) in [(1, second.clone()), (0, first), (1, second)] {
            media
                .put_chunk(&upload, n, bytes, None)
                .await
                .expect("chunk");
        }
        let completed = media.complete(&upload).await.expect("complete");
        assert_eq!(completed.sha256, sha256_hex(&data));
        assert_eq!(
            files_under(&root),
            ["files/t1/chunked", "files/t1/kept"],
            "nothing but the two files"
        );
    }
}

#[cfg(feature = "s3")]
mod s3 {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use confab_storage::media::Media;
    use confab_testkit::S3Server;

    /// One SeaweedFS for the whole file, with a bucket per check (each starts empty).
    const BUCKETS: usize = 16;

    fn server() -> &'static S3Server {
        static SERVER: OnceLock<S3Server> = OnceLock::new();
        SERVER.get_or_init(|| {
            let names: Vec<String> = (0..BUCKETS).map(|i| format!("media-{i}")).collect();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            S3Server::start_with_buckets(&names).expect("start SeaweedFS")
        })
    }

    async fn factory() -> (Media, ()) {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let bucket = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(bucket < BUCKETS, "more checks than buckets");
        let server = tokio::task::spawn_blocking(server).await.expect("start");
        let url = format!(
            "s3://media-{bucket}?endpoint={}&region={}",
            server.url(),
            S3Server::REGION
        );
        let media =
            Media::s3(&url, Some((S3Server::ACCESS_KEY, S3Server::SECRET_KEY))).expect("s3 media");
        (media, ())
    }

    confab_storage::media_conformance_suite!(factory);
}
