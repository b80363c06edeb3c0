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
