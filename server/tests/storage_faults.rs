//! Storage faults must not look healthy: a database that should exist but is empty or damaged
//! refuses to start (non-zero exit, a clear message), and `/ready` answers 503 while commits
//! fail (a full disk) and ready again once they work, with every message acked before intact.

mod common;

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{SECRET, Server};
use confab_testkit::ConfabServer;

/// Starts a server on `dir` expecting it to refuse; returns the error (its exit status and log).
fn refused_start(dir: &Path, search_dir: &Path) -> String {
    let search = search_dir.display().to_string();
    let started = ConfabServer::builder(env!("CARGO_BIN_EXE_confab"))
        .args(["--jwt-secret", SECRET, "--search-dir", &search])
        .data_dir(dir)
        .start();
    match started {
        Ok(_) => panic!("the server started on a lost or damaged database"),
        Err(err) => err.to_string(),
    }
}

/// Runs a server on `dir`, sends `count` messages, and stops it gracefully (so the database
/// file holds everything and the write-ahead log is empty).
async fn server_with_messages(dir: &Path, count: usize, body: &str) {
    let path = dir.display().to_string();
    let mut server = Server::start_with(&["--data-dir", &path]).await;
    let group = server.create_group("alice", &["bob"]).await;
    for i in 0..count {
        server
            .rest_send("alice", &group, &format!("m{i}"), &format!("{i} {body}"))
            .await;
    }
    server.sigterm();
    assert!(server.wait_exit(Duration::from_secs(20)).await.success());
}

#[tokio::test]
async fn a_created_database_that_is_now_empty_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let search = tempfile::tempdir().expect("search tempdir");
    server_with_messages(dir.path(), 3, "hello").await;
    // A truncating copy or a restore gone wrong: the file is there, its contents are not.
    let db = dir.path().join("confab.db");
    std::fs::File::create(&db).expect("truncate the database");
    let err = refused_start(dir.path(), search.path());
    assert!(err.contains("exit status: 1"), "{err}");
    assert!(err.contains("is empty (0 bytes)"), "{err}");
    assert_eq!(
        std::fs::metadata(&db).expect("db").len(),
        0,
        "left as found"
    );
}

#[tokio::test]
async fn a_database_with_corrupt_pages_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let search = tempfile::tempdir().expect("search tempdir");
    server_with_messages(dir.path(), 300, &"x".repeat(500)).await;
    let db = dir.path().join("confab.db");
    let bytes = std::fs::read(&db).expect("read the database");
    let page = usize::from(u16::from_be_bytes([bytes[16], bytes[17]]));
    let pages = bytes.len() / page;
    assert!(
        pages > 20,
        "a database of {pages} pages is too small to damage"
    );
    // Garbage over a run of pages in the middle (page 1, the header, stays whole).
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(&db)
        .expect("open the database");
    let garbage: Vec<u8> = (0..page * 8).map(|i| (i * 31 % 251) as u8).collect();
    file.seek(SeekFrom::Start((pages / 2 * page) as u64))
        .expect("seek");
    file.write_all(&garbage).expect("write garbage");
    file.sync_all().expect("sync");
    let err = refused_start(dir.path(), search.path());
    assert!(err.contains("exit status: 1"), "{err}");
    assert!(err.contains("is damaged"), "{err}");
}

/// Mounts a tmpfs of `size` on `dir`; `None` (with the reason printed) when mounting is
/// impossible here (not root, no mount namespace rights).
fn mount_tmpfs(dir: &Path, size: &str) -> Option<Mount> {
    let out = std::process::Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0700"),
            "tmpfs",
        ])
        .arg(dir)
        .output();
    match out {
        Ok(out) if out.status.success() => Some(Mount(dir.to_owned())),
        Ok(out) => {
            eprintln!(
                "skipping: cannot mount a tmpfs: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            None
        }
        Err(err) => {
            eprintln!("skipping: cannot run mount: {err}");
            None
        }
    }
}

/// Unmounts its tmpfs when dropped.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .args(["-l"])
            .arg(&self.0)
            .status();
    }
}

/// Fills the file system of `path` with one file until it is full.
fn fill(path: &Path) {
    let mut file = std::fs::File::create(path).expect("filler");
    let chunk = vec![0u8; 64 * 1024];
    while file.write_all(&chunk).is_ok() {}
    // The last bytes that fit, so that not even a page is left.
    while file.write_all(&chunk[..512]).is_ok() {}
    let _ = file.sync_all();
}

async fn ready(server: &Server) -> (u16, serde_json::Value) {
    let answer = server
        .client()
        .get(format!("{}/ready", server.base()))
        .send()
        .await
        .expect("/ready answers");
    let status = answer.status().as_u16();
    (status, answer.json().await.expect("/ready json"))
}

#[tokio::test]
async fn a_full_disk_makes_ready_fail_until_space_is_freed() {
    let parent = tempfile::tempdir().expect("tempdir");
    let search = tempfile::tempdir().expect("search tempdir");
    let data = parent.path().join("data");
    std::fs::create_dir(&data).expect("data dir");
    let Some(_mount) = mount_tmpfs(&data, "16m") else {
        return;
    };
    let path = data.display().to_string();
    let search_dir = search.path().display().to_string();
    let server = Server::start_with(&["--data-dir", &path, "--search-dir", &search_dir]).await;
    let group = server.create_group("alice", &["bob"]).await;
    let mut acked = Vec::new();
    for i in 0..20 {
        let body = format!("before the fault {i}");
        server
            .rest_send("alice", &group, &format!("a{i}"), &body)
            .await;
        acked.push(body);
    }
    assert_eq!(ready(&server).await.0, 200);

    let filler = data.join("filler");
    fill(&filler);
    // Commits fail once the write-ahead log must grow; until then they still fit.
    let url = format!("/v1/conversations/{group}/messages");
    let padding = "y".repeat(3000);
    let mut failed = false;
    for i in 0..3000 {
        let body = format!("during the fault {i} {padding}");
        let (status, answer) = server
            .post(
                &url,
                &common::token("alice"),
                serde_json::json!({"client_msg_id": format!("f{i}"), "body": body}),
            )
            .await;
        if status >= 500 {
            failed = true;
            break;
        }
        assert!(status == 201 || status == 200, "{status} {answer}");
        acked.push(body);
    }
    assert!(failed, "no commit failed on a full disk");
    let (status, body) = ready(&server).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "storage_unavailable", "{body}");
    assert_eq!(body["reason"], "disk_full", "{body}");
    // It stays unready while the disk is full (each probe tries a commit).
    let (status, body) = ready(&server).await;
    assert_eq!(status, 503, "{body}");

    std::fs::remove_file(&filler).expect("free the space");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = ready(&server).await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "still not ready: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server
        .rest_send("alice", &group, "after", "after the fault")
        .await;
    acked.push("after the fault".to_owned());

    let mut found = Vec::new();
    let token = common::token("alice");
    let mut after = 0;
    // Oldest first; page forward until the newest (bounded).
    for _ in 0..100 {
        let (status, page) = server
            .get(&format!("{url}?limit=200&after={after}"), &token)
            .await;
        assert_eq!(status, 200, "{page}");
        let messages = page["messages"].as_array().expect("messages");
        found.extend(
            messages
                .iter()
                .filter_map(|m| m["body"].as_str().map(str::to_owned)),
        );
        match messages.iter().filter_map(|m| m["seq"].as_u64()).max() {
            Some(newest) if page["has_more"] == true => after = newest,
            _ => break,
        }
    }
    for body in &acked {
        let copies = found.iter().filter(|f| *f == body).count();
        assert_eq!(
            copies, 1,
            "acked message {:.30}… found {copies} times",
            body
        );
    }
    eprintln!(
        "acked {} messages (20 before the fault), found all of them once",
        acked.len()
    );
}
