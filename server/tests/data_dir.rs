//! One server per data dir, and private files: a second server on a data dir in use refuses to
//! start (unless every node deliberately shares it, with a cluster hub), and what the server
//! writes is readable by its user only, whatever the umask it was started with.

use std::os::unix::fs::PermissionsExt;

use confab_testkit::{ConfabServer, RedisServer};

const SECRET: &str = "data-dir-test-secret-data-dir-test-secret";

fn node(dir: &std::path::Path, extra: &[&str]) -> confab_testkit::Result<ConfabServer> {
    ConfabServer::builder(env!("CARGO_BIN_EXE_confab"))
        .args(["--jwt-secret", SECRET])
        .args(extra.iter().copied())
        .data_dir(dir)
        .start()
}

#[test]
fn a_second_server_on_a_data_dir_in_use_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = node(dir.path(), &[]).expect("the first server starts");
    let second = node(dir.path(), &["--search-dir", "/tmp/unused-search"])
        .expect_err("the second server refuses");
    assert!(
        second
            .to_string()
            .contains("in use by another confab server"),
        "{second}"
    );
    let shared =
        node(dir.path(), &["--shared-data-dir", "true"]).expect_err("sharing needs a cluster hub");
    assert!(shared.to_string().contains("cluster hub"), "{shared}");
    drop(first);
    let again = node(dir.path(), &[]).expect("free once the first has gone");
    drop(again);
}

#[test]
fn nodes_that_share_a_data_dir_say_so_and_keep_others_out() {
    let redis = RedisServer::start().expect("redis-server (run scripts/install-test-services)");
    let dir = tempfile::tempdir().expect("tempdir");
    let url = redis.url();
    let shared = |search: &str| {
        let search = dir.path().join(search).display().to_string();
        node(
            dir.path(),
            &[
                "--shared-data-dir",
                "true",
                "--hub",
                &url,
                "--search-dir",
                &search,
            ],
        )
    };
    let a = shared("search-a").expect("node a");
    let b = shared("search-b").expect("node b");
    let outsider = node(dir.path(), &["--search-dir", "/tmp/unused-search"])
        .expect_err("a server that does not share is refused");
    assert!(outsider.to_string().contains("in use"), "{outsider}");
    drop((a, b));
}

#[test]
fn data_files_are_private() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = node(&data, &[]).expect("start");
    let mode = |path: &std::path::Path| {
        std::fs::metadata(path)
            .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(&data), 0o700, "the data dir");
    for file in ["confab.db", "confab.lock"] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    drop(server);
}
