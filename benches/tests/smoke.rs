//! Every `confab-bench` scenario, run briefly at a tiny size against the real server binary:
//! each must print a JSON report whose figures add up, with no loss and no duplicates. This proves
//! the generator works; it measures nothing (the real runs are in RESULTS.md).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use confab_testkit::ConfabServer;
use serde_json::Value;

const SECRET: &str = "smoke-test-secret-smoke-test-secret";

/// The `confab` binary next to this test's own target directory, built if it is missing
/// (`cargo test --workspace` builds it already).
fn server_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/smoke-<hash> → target/<profile>/confab
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile dir");
    let binary = profile_dir.join(format!("confab{}", std::env::consts::EXE_SUFFIX));
    if !binary.exists() {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "confab-server", "--bin", "confab"])
            .current_dir(workspace)
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build of the server failed");
    }
    assert!(binary.exists(), "no server binary at {}", binary.display());
    binary
}

/// A server on an ephemeral port with its own data directory, or on `data` (which the caller
/// keeps), with `extra` flags; ready when this returns, killed when dropped.
fn start_server(data: Option<&Path>, extra: &[&str]) -> ConfabServer {
    let mut builder = ConfabServer::builder(server_binary())
        .args(["--message-rate-per-minute", "0", "--jwt-secret", SECRET])
        .args(["--join-rate-per-minute", "0", "--rest-rate-per-minute", "0"])
        .args(["--log", "warn"])
        .args(extra);
    if let Some(data) = data {
        // Nodes sharing a data dir each keep a search index of their own.
        static NODE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let node = NODE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let search = data.join(format!("search-{node}"));
        builder = builder.data_dir(data).arg("--search-dir").arg(search);
    }
    builder.start().expect("start the server")
}

/// Runs one scenario and returns its JSON report.
fn bench(server: &ConfabServer, args: &[&str], by_pid: bool) -> Value {
    let mut command = Command::new(env!("CARGO_BIN_EXE_confab-bench"));
    command
        .args(["--url", &server.url(), "--secret", SECRET])
        .args(args);
    if by_pid {
        let pid = server.pid().expect("the server runs");
        command.args(["--server-pid", &pid.to_string()]);
    }
    let output = command.output().expect("run confab-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "confab-bench {args:?} failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let json = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(json)
        .unwrap_or_else(|e| panic!("last line is not JSON ({e}):\n{stdout}\nstderr:\n{stderr}"))
}

fn number(report: &Value, path: &str) -> f64 {
    report
        .pointer(path)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("no number at {path} in {report}"))
}

fn assert_connected(report: &Value, expected: f64) {
    assert_eq!(number(report, "/connections/ok"), expected, "{report}");
    assert_eq!(number(report, "/connections/failed"), 0.0, "{report}");
    assert!(number(report, "/server/rss_before_bytes") > 0.0, "{report}");
}

fn assert_clean_traffic(report: &Value) {
    let sent = number(report, "/traffic/sent");
    assert!(sent > 0.0, "{report}");
    assert_eq!(number(report, "/traffic/acked"), sent, "{report}");
    assert!(number(report, "/traffic/expected") > 0.0, "{report}");
    assert_eq!(
        number(report, "/traffic/delivered"),
        number(report, "/traffic/expected"),
        "{report}"
    );
    for zero in [
        "loss",
        "duplicates",
        "out_of_order",
        "errors",
        "disconnects",
    ] {
        assert_eq!(
            number(report, &format!("/traffic/{zero}")),
            0.0,
            "{zero}: {report}"
        );
    }
    assert!(number(report, "/traffic/latency/count") > 0.0, "{report}");
    assert!(number(report, "/server/cpu_seconds") >= 0.0, "{report}");
}

#[test]
fn every_scenario_runs_at_tiny_size() {
    let started = Instant::now();
    let server = start_server(None, &[]);
    let timing = [
        "--warmup-secs",
        "0.5",
        "--duration-secs",
        "1.5",
        "--drain-secs",
        "5",
    ];

    let idle = bench(
        &server,
        &[
            "idle",
            "--connections",
            "20",
            "--conversations",
            "4",
            "--hold-secs",
            "0.5",
        ],
        true,
    );
    assert_connected(&idle, 20.0);
    assert!(number(&idle, "/server/rss_idle_bytes") > 0.0, "{idle}");

    let mut args = vec!["fanout", "--members", "20", "--rate", "20"];
    args.extend(timing);
    let fanout = bench(&server, &args, false);
    assert_connected(&fanout, 21.0);
    assert_clean_traffic(&fanout);

    let mut args = vec![
        "chat",
        "--connections",
        "20",
        "--conversations",
        "4",
        "--rate",
        "40",
    ];
    args.extend(timing);
    let chat = bench(&server, &args, true);
    assert_connected(&chat, 20.0);
    assert_clean_traffic(&chat);

    let mut args = vec![
        "storm",
        "--connections",
        "20",
        "--conversations",
        "4",
        "--rate",
        "40",
        "--churn-rate",
        "20",
    ];
    args.extend(timing);
    let storm = bench(&server, &args, false);
    assert_connected(&storm, 20.0);
    assert_clean_traffic(&storm);
    assert!(number(&storm, "/churn/ok") > 0.0, "{storm}");
    assert_eq!(number(&storm, "/churn/failed"), 0.0, "{storm}");

    let history = bench(
        &server,
        &[
            "history",
            "--tenant",
            "smoke-history",
            "--messages",
            "300",
            "--seed-connections",
            "4",
            "--walk-secs",
            "1",
            "--duration-secs",
            "0.5",
        ],
        true,
    );
    assert_eq!(number(&history, "/history/messages"), 300.0, "{history}");
    assert_eq!(
        number(&history, "/history/walk_messages"),
        300.0,
        "{history}"
    );
    assert!(number(&history, "/history/random_pages") > 0.0, "{history}");
    assert_eq!(number(&history, "/history/errors"), 0.0, "{history}");

    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the smoke run took {:?}",
        started.elapsed()
    );
}

#[test]
fn cluster_runs_at_tiny_size() {
    let started = Instant::now();
    let redis = confab_testkit::RedisServer::start().expect("start redis-server");
    let hub = redis.url();
    let data = tempfile::tempdir().expect("tempdir");
    // One node first: it creates the schema that the second then opens.
    let shared = ["--hub", &hub, "--shared-data-dir", "true"];
    let first = start_server(Some(data.path()), &shared);
    let second = start_server(Some(data.path()), &shared);
    let second_url = second.url();

    let args = [
        "cluster",
        "--connections",
        "20",
        "--conversations",
        "4",
        "--rate",
        "40",
        "--warmup-secs",
        "0.5",
        "--duration-secs",
        "1.5",
        "--drain-secs",
        "5",
        "--url2",
        &second_url,
    ];
    let cluster = bench(&first, &args, true);
    assert_connected(&cluster, 20.0);
    assert_clean_traffic(&cluster);
    for path in ["same_node", "cross_node"] {
        assert!(
            number(&cluster, &format!("/cluster/{path}/deliveries")) > 0.0,
            "{path}: {cluster}"
        );
        assert!(
            number(&cluster, &format!("/cluster/{path}/latency/count")) > 0.0,
            "{path}: {cluster}"
        );
    }
    assert_eq!(
        number(&cluster, "/cluster/same_node/deliveries")
            + number(&cluster, "/cluster/cross_node/deliveries"),
        number(&cluster, "/traffic/delivered") + number(&cluster, "/traffic/delivered_unacked"),
        "{cluster}"
    );
    // Node 0 by pid, node 1 through its /metrics.
    assert_eq!(
        number(&cluster, "/cluster/nodes/0/connections"),
        10.0,
        "{cluster}"
    );
    assert_eq!(
        number(&cluster, "/cluster/nodes/1/connections"),
        10.0,
        "{cluster}"
    );
    for node in 0..2 {
        assert!(
            number(
                &cluster,
                &format!("/cluster/nodes/{node}/server/rss_end_bytes")
            ) > 0.0,
            "{cluster}"
        );
        assert!(
            number(
                &cluster,
                &format!("/cluster/nodes/{node}/deliveries_per_sec")
            ) > 0.0,
            "{cluster}"
        );
    }

    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the cluster smoke run took {:?}",
        started.elapsed()
    );
}

/// `cluster --spawn` starts its own servers: one node, two on one Redis, two on three shards,
/// each at two rates, all clean, with each topology's Redis CPU read from its servers.
#[test]
fn cluster_spawn_compares_the_topologies_at_tiny_size() {
    let started = Instant::now();
    let binary = server_binary();
    let output = Command::new(env!("CARGO_BIN_EXE_confab-bench"))
        .args(["cluster", "--spawn"])
        .arg(&binary)
        .args(["--rates", "40,80", "--shards", "3"])
        .args(["--connections", "20", "--conversations", "6"])
        .args([
            "--warmup-secs",
            "0.5",
            "--duration-secs",
            "1",
            "--drain-secs",
            "5",
        ])
        .output()
        .expect("run confab-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "confab-bench cluster --spawn failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("last line is not JSON ({e}):\n{stdout}"));
    let steps = report["topologies"].as_array().expect("topologies");
    let servers: Vec<(u64, u64)> = steps
        .iter()
        .map(|s| {
            (
                s["nodes"].as_u64().unwrap_or(0),
                s["redis_servers"].as_u64().unwrap_or(9),
            )
        })
        .collect();
    assert_eq!(
        servers,
        [(1, 0), (1, 0), (2, 1), (2, 1), (2, 3), (2, 3)],
        "{report}"
    );
    for step in steps {
        assert_eq!(step["loss"], 0, "{step}");
        assert_eq!(step["duplicates"], 0, "{step}");
        assert!(number(step, "/deliveries_per_sec") > 0.0, "{step}");
        let redis = step["redis_servers"].as_u64().unwrap_or(0);
        let by_server = step["redis_cpu_by_server"].as_array().expect("by server");
        assert_eq!(by_server.len() as u64, redis, "{step}");
        if redis == 0 {
            assert!(step["redis_cpu_seconds"].is_null(), "{step}");
        } else {
            assert!(number(step, "/redis_cpu_seconds") >= 0.0, "{step}");
            assert!(number(step, "/cross_node_latency/count") > 0.0, "{step}");
        }
    }
    assert!(stdout.contains("two nodes, 3 Redis shards"), "{stdout}");
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "the spawned cluster run took {:?}",
        started.elapsed()
    );
}

#[test]
fn media_runs_at_tiny_size() {
    let started = Instant::now();
    let server = start_server(None, &[]);
    let media = bench(
        &server,
        &[
            "media",
            "--file-mib",
            "8",
            "--rss-mib",
            "2",
            "--concurrent",
            "3",
            "--concurrent-mib",
            "1",
            "--verify-sha256",
        ],
        true,
    );
    let mib = 1024.0 * 1024.0;
    assert_eq!(number(&media, "/media/file_bytes"), 8.0 * mib, "{media}");
    for phase in ["raw_copy", "single", "chunked", "download"] {
        assert_eq!(
            number(&media, &format!("/media/{phase}/bytes")),
            8.0 * mib,
            "{phase}: {media}"
        );
        assert!(
            number(&media, &format!("/media/{phase}/mb_per_sec")) > 0.0,
            "{phase}: {media}"
        );
    }
    for phase in ["single", "chunked", "download"] {
        let ratio = number(&media, &format!("/media/{phase}/ratio_to_raw"));
        let expected = number(&media, &format!("/media/{phase}/mb_per_sec"))
            / number(&media, "/media/raw_copy/mb_per_sec");
        assert!((ratio - expected).abs() < 1e-9, "{phase}: {media}");
    }
    // The server's default chunk is 5 MiB: 8 MiB is two chunks.
    assert_eq!(number(&media, "/media/chunked/chunks"), 2.0, "{media}");
    assert_eq!(
        media.pointer("/media/sha256_verified"),
        Some(&Value::Bool(true))
    );
    assert_eq!(
        number(&media, "/media/rss_upload/bytes"),
        2.0 * mib,
        "{media}"
    );
    assert!(
        number(&media, "/media/rss_upload/server/rss_max_bytes")
            >= number(&media, "/media/rss_upload/server/rss_before_bytes"),
        "{media}"
    );
    assert!(
        number(&media, "/media/rss_upload/server/rss_samples") >= 1.0,
        "{media}"
    );
    assert_eq!(number(&media, "/media/concurrent/uploads"), 3.0, "{media}");
    assert_eq!(number(&media, "/media/concurrent/ok"), 3.0, "{media}");
    assert_eq!(number(&media, "/media/concurrent/failures"), 0.0, "{media}");
    assert_eq!(
        number(&media, "/media/concurrent/bytes_stored"),
        3.0 * mib,
        "{media}"
    );
    assert_eq!(
        number(&media, "/media/concurrent/latency/count"),
        3.0,
        "{media}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the media smoke run took {:?}",
        started.elapsed()
    );
}

#[test]
fn the_floor_measures_writes_without_a_server() {
    let output = Command::new(env!("CARGO_BIN_EXE_confab-bench"))
        .args([
            "floor",
            "--connections",
            "8",
            "--rounds",
            "20",
            "--gap-ms",
            "1",
        ])
        .output()
        .expect("run confab-bench floor");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "confab-bench floor failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json = stdout.lines().last().unwrap_or_default();
    let report: Value = serde_json::from_str(json)
        .unwrap_or_else(|e| panic!("last line is not JSON ({e}):\n{stdout}"));
    assert_eq!(number(&report, "/writes"), 160.0, "{report}");
    assert!(number(&report, "/writer_cpu_seconds") >= 0.0, "{report}");
    assert!(number(&report, "/cpu_us_per_write") >= 0.0, "{report}");
}

#[test]
fn the_floor_refuses_an_empty_run() {
    let output = Command::new(env!("CARGO_BIN_EXE_confab-bench"))
        .args(["floor", "--connections", "0"])
        .output()
        .expect("run confab-bench floor");
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("at least 1"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_search_scenario_compares_both_engines() {
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_confab-bench"))
        .args([
            "search",
            "--messages",
            "5000",
            "--conversations",
            "100",
            "--people",
            "500",
            "--vocabulary",
            "1000",
            "--batch",
            "500",
            "--commit-every",
            "2000",
            "--concurrency",
            "1,4",
            "--queries",
            "200",
            "--max-secs",
            "10",
        ])
        .output()
        .expect("run confab-bench search");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "confab-bench search failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json = stdout.lines().last().unwrap_or_default();
    let report: Value = serde_json::from_str(json)
        .unwrap_or_else(|e| panic!("last line is not JSON ({e}):\n{stdout}"));
    assert_eq!(number(&report, "/corpus/messages"), 5000.0, "{report}");
    let mean_words = number(&report, "/corpus/mean_words");
    assert!((5.0..=60.0).contains(&mean_words), "{report}");
    let memberships = number(&report, "/corpus/mean_memberships");
    assert!((10.0..=50.0).contains(&memberships), "{report}");
    for i in 0..2 {
        assert_eq!(number(&report, &format!("/indexing/{i}/messages")), 5000.0);
        assert!(number(&report, &format!("/indexing/{i}/messages_per_sec")) > 0.0);
        assert!(number(&report, &format!("/indexing/{i}/disk_bytes")) > 0.0);
    }
    let levels = report["queries"].as_array().expect("query levels");
    assert_eq!(
        levels.len(),
        4,
        "two engines at two concurrencies: {report}"
    );
    for level in levels {
        assert_eq!(number(level, "/queries"), 200.0, "{level}");
        assert_eq!(number(level, "/failed"), 0.0, "{level}");
        assert!(number(level, "/latency/p99_ms") > 0.0, "{level}");
        assert!(number(level, "/queries_per_sec") > 0.0, "{level}");
        assert!(number(level, "/mean_hits") > 0.0, "{level}");
    }
    assert!(
        number(&report, "/typo/mean_hits") > 0.0,
        "a typo finds the word: {report}"
    );
    let sanity = report["sanity"].as_array().expect("sanity checks");
    assert_eq!(sanity.len(), 3, "{report}");
    for check in sanity {
        assert!(number(check, "/confab") > 0.0, "{check}");
        assert_eq!(check["agree"], Value::Bool(true), "{check}");
    }
    assert_eq!(
        report["goals"].as_array().map(Vec::len),
        Some(4),
        "{report}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the search smoke run took {:?}",
        started.elapsed()
    );
}
