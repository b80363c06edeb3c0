//! Message search over real HTTP: freshness (within 2 s, and at once with `wait_for`), edits and
//! deletes, membership checked at query time, tenants, the query language through the API,
//! escaped highlights and the rate limit.

mod common;

use std::time::{Duration, Instant};

use common::{Server, assert_rest_error, metric_value, token, token_in};
use confab_protocol::ErrorCode;
use serde_json::{Value, json};

/// `GET /v1/search/messages` as `bearer`, with query `params`.
async fn search_as(server: &Server, bearer: &str, params: &[(&str, &str)]) -> (u16, Value) {
    let response = server
        .client()
        .get(
            url::Url::parse_with_params(&format!("{}/v1/search/messages", server.base()), params)
                .expect("url"),
        )
        .bearer_auth(bearer)
        .send()
        .await
        .expect("search");
    let status = response.status().as_u16();
    let retry = response.headers().get("retry-after").cloned();
    let mut body: Value = response.json().await.expect("json");
    if let Some(retry) = retry {
        body["retry_after_header"] = json!(retry.to_str().unwrap_or_default());
    }
    (status, body)
}

/// The ids of `user`'s hits for `q` (and more parameters). With `wait_for`, asks again while
/// the answer says the index is still behind (the server waits at most 2 s per request, and a
/// loaded test host can take longer to commit an index batch).
async fn found(server: &Server, user: &str, params: &[(&str, &str)]) -> Vec<String> {
    let waited = params
        .iter()
        .find(|(name, _)| *name == "wait_for")
        .and_then(|(_, spec)| spec.rsplit_once(':'))
        .map(|(conversation, seq)| (conversation, seq.parse::<u64>().expect("seq")));
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        let (status, body) = search_as(server, &token(user), params).await;
        assert_eq!(status, 200, "{body}");
        let behind = waited.is_some_and(|(conversation, seq)| {
            body["indexed_seq"][conversation].as_u64().unwrap_or(0) < seq
        });
        if !behind {
            break body;
        }
        assert!(Instant::now() < deadline, "index still behind: {body}");
    };
    body["hits"]
        .as_array()
        .expect("hits")
        .iter()
        .map(|hit| hit["id"].as_str().expect("id").to_owned())
        .collect()
}

/// Polls until `user` finds `id` with `q` (or gives up after `within`).
async fn findable_within(server: &Server, user: &str, q: &str, id: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if found(server, user, &[("q", q)])
            .await
            .iter()
            .any(|hit| hit == id)
        {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Commits of the index by its indexer, from `/metrics`.
async fn index_commits(server: &Server) -> f64 {
    let metrics = server.metrics().await;
    metric_value(&metrics, "confab_search_commit_duration_seconds_count").unwrap_or(0.0)
}

/// An index nobody searches commits only every `search_idle_after`; the first search wakes it
/// and waits for the commit, so it still finds what was acked more than
/// `search_commit_interval` before it; searched, the index commits every interval again.
#[tokio::test]
async fn an_index_nobody_searches_commits_when_a_search_comes() {
    let server = Server::start_with(&[
        "--search-commit-interval",
        "200ms",
        "--search-idle-after",
        "60s",
    ])
    .await;
    let conversation = server.create_group("alice", &["bob"]).await;
    let sent = server
        .rest_send(
            "alice",
            &conversation,
            "s1",
            "the rocket launch is on Friday",
        )
        .await;
    let first = sent["id"].as_str().expect("id").to_owned();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        index_commits(&server).await,
        0.0,
        "idle: five intervals, no commit"
    );

    let started = Instant::now();
    assert_eq!(
        found(&server, "bob", &[("q", "launch")]).await,
        std::slice::from_ref(&first)
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(index_commits(&server).await, 1.0, "the search's commit");

    let sent = server
        .rest_send("alice", &conversation, "s2", "the launch moved to Monday")
        .await;
    let second = sent["id"].as_str().expect("id").to_owned();
    let deadline = Instant::now() + Duration::from_secs(5);
    while index_commits(&server).await < 2.0 {
        assert!(
            Instant::now() < deadline,
            "searched: the next commit comes on its own"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut hits = found(&server, "bob", &[("q", "launch")]).await;
    hits.sort();
    let mut both = vec![first, second];
    both.sort();
    assert_eq!(hits, both);
}

#[tokio::test]
async fn a_message_is_findable_within_two_seconds_and_at_once_with_wait_for() {
    let server = Server::in_process(&[]).await;
    let conversation = server.create_group("alice", &["bob"]).await;
    let sent = server
        .rest_send(
            "alice",
            &conversation,
            "s1",
            "Hello world, the rocket launch is on Friday",
        )
        .await;
    let id = sent["id"].as_str().expect("id").to_owned();
    let started = Instant::now();
    assert!(findable_within(&server, "bob", "launch", &id, Duration::from_secs(2)).await);
    assert!(started.elapsed() < Duration::from_secs(2));

    let sent = server
        .rest_send("bob", &conversation, "s2", "Countdown begins at noon")
        .await;
    let wait = format!("{conversation}:{}", sent["seq"]);
    let (status, body) = search_as(
        &server,
        &token("bob"),
        &[("q", "countdwn"), ("wait_for", &wait)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["hits"][0]["id"], sent["id"], "found at once: {body}");
    assert_eq!(body["hits"][0]["author"], json!("bob"));
    assert_eq!(
        body["hits"][0]["snippet"],
        json!("<mark>Countdown</mark> begins at noon")
    );
    assert!(
        body["indexed_seq"][&conversation].as_u64() >= sent["seq"].as_u64(),
        "{body}"
    );
}

#[tokio::test]
async fn edits_deletes_members_and_tenants_are_respected_at_query_time() {
    let server = Server::in_process(&[]).await;
    let conversation = server.create_group("alice", &["bob"]).await;
    let first = server
        .rest_send(
            "alice",
            &conversation,
            "e1",
            "the secret recipe is pancakes",
        )
        .await;
    let id = first["id"].as_str().expect("id").to_owned();
    let wait = |seq: &Value| format!("{conversation}:{seq}");
    let (status, _) = server
        .patch(
            &format!("/v1/messages/{id}"),
            &token("alice"),
            json!({"body": "the secret recipe is waffles"}),
        )
        .await;
    assert_eq!(status, 200);
    let edited = server
        .rest_send("alice", &conversation, "e2", "marker")
        .await;
    let hits = found(
        &server,
        "bob",
        &[("q", "pancakes"), ("wait_for", &wait(&edited["seq"]))],
    )
    .await;
    assert!(hits.is_empty(), "edited away: {hits:?}");
    assert_eq!(
        found(&server, "bob", &[("q", "waffles")]).await,
        [id.as_str()]
    );

    // Not a member, another tenant: nothing.
    assert!(found(&server, "eve", &[("q", "waffles")]).await.is_empty());
    let (status, other) = search_as(
        &server,
        &token_in("bob", "other-tenant"),
        &[("q", "waffles")],
    )
    .await;
    assert_eq!(
        (status, other["hits"].as_array().map(Vec::len)),
        (200, Some(0))
    );
    // Bob removed: his very next search finds nothing.
    let (status, _) = server
        .delete(
            &format!("/v1/conversations/{conversation}/members/bob"),
            &token("alice"),
        )
        .await;
    assert_eq!(status, 200);
    assert!(found(&server, "bob", &[("q", "waffles")]).await.is_empty());
    // Deleted: gone for everyone.
    let (status, _) = server
        .delete(&format!("/v1/messages/{id}"), &token("alice"))
        .await;
    assert_eq!(status, 200);
    let after = server
        .rest_send("alice", &conversation, "e3", "marker")
        .await;
    let hits = found(
        &server,
        "alice",
        &[("q", "waffles"), ("wait_for", &wait(&after["seq"]))],
    )
    .await;
    assert!(hits.is_empty(), "deleted: {hits:?}");
}

#[tokio::test]
async fn the_query_language_filters_and_escaped_highlights_work_over_http() {
    let server = Server::in_process(&[]).await;
    let c1 = server.create_group("alice", &["bob"]).await;
    let c2 = server.create_group("bob", &["alice"]).await;
    let a = server
        .rest_send(
            "alice",
            &c1,
            "q1",
            "<script>alert(1)</script> quarterly report",
        )
        .await;
    let b = server
        .rest_send("bob", &c1, "q2", "the quarterly numbers are in")
        .await;
    let c = server
        .rest_send("bob", &c2, "q3", "lunch report tomorrow")
        .await;
    let wait = format!("{c2}:{}", c["seq"]);
    let id = |v: &Value| v["id"].as_str().expect("id").to_owned();
    let (_, body) = search_as(
        &server,
        &token("alice"),
        &[("q", "quarterly"), ("wait_for", &wait), ("sort", "recent")],
    )
    .await;
    let snippets: Vec<&str> = body["hits"]
        .as_array()
        .expect("hits")
        .iter()
        .map(|h| h["snippet"].as_str().expect("snippet"))
        .collect();
    assert_eq!(
        snippets,
        [
            "the <mark>quarterly</mark> numbers are in",
            "&lt;script&gt;alert(1)&lt;/script&gt; <mark>quarterly</mark> report"
        ]
    );
    assert_eq!(
        found(&server, "alice", &[("q", "report"), ("author", "bob")]).await,
        [id(&c)]
    );
    assert_eq!(
        found(&server, "alice", &[("q", "report from:alice")]).await,
        [id(&a)]
    );
    assert_eq!(
        found(&server, "alice", &[("q", "quarterly -numbers")]).await,
        [id(&a)]
    );
    assert_eq!(
        found(&server, "alice", &[("q", "\"quarterly numbers\"")]).await,
        [id(&b)]
    );
    assert_eq!(
        found(&server, "alice", &[("q", "report"), ("conversation", &c2)]).await,
        [id(&c)]
    );
    assert_eq!(
        found(
            &server,
            "alice",
            &[("q", "report"), ("from", "1970-01-01"), ("sort", "recent")]
        )
        .await,
        [id(&c), id(&a)]
    );
    assert!(
        found(&server, "alice", &[("q", "report"), ("to", "2000-01-01")])
            .await
            .is_empty()
    );
    let page = found(
        &server,
        "alice",
        &[("q", "quarterly report"), ("limit", "1")],
    )
    .await;
    assert_eq!(page.len(), 1);
    // Nothing asked: nothing found (not an error; see the handler).
    let (status, empty) = search_as(&server, &token("alice"), &[("q", " ")]).await;
    assert_eq!(status, 200, "{empty}");
    assert_eq!(empty["hits"], serde_json::json!([]), "{empty}");
    for bad in [
        vec![("q", "x"), ("cursor", "10000")],
        vec![("q", "x"), ("cursor", "-1")],
        vec![("q", "x"), ("limit", "0")],
        vec![("q", "before:soon")],
        vec![("q", "x"), ("sort", "random")],
    ] {
        let answer = search_as(&server, &token("alice"), &bad).await;
        assert_rest_error(&answer, 400, ErrorCode::Invalid);
    }
}

#[tokio::test]
async fn searches_are_rate_limited_with_retry_after() {
    let server = Server::in_process(&["--search-per-minute", "2"]).await;
    for _ in 0..2 {
        assert!(
            found(&server, "alice", &[("q", "anything")])
                .await
                .is_empty()
        );
    }
    let (status, body) = search_as(&server, &token("alice"), &[("q", "anything")]).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], json!("rate_limited"));
    let retry: u64 = body["retry_after_header"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("Retry-After");
    assert!((1..=60).contains(&retry), "{retry}");
    assert!(
        found(&server, "bob", &[("q", "anything")]).await.is_empty(),
        "bob has his own budget"
    );
}

#[tokio::test]
async fn a_fresh_index_over_an_existing_database_is_backfilled_on_start() {
    let index = tempfile::tempdir().expect("tempdir");
    let search_dir = index.path().join("index").display().to_string();
    let mut server = Server::start_with(&["--search-dir", search_dir.as_str()]).await;
    let conversation = server.create_group("alice", &["bob"]).await;
    let kept = server
        .rest_send("alice", &conversation, "b1", "remember the lighthouse")
        .await;
    let gone = server
        .rest_send("alice", &conversation, "b2", "forget the lighthouse keeper")
        .await;
    let gone_id = gone["id"].as_str().expect("id").to_owned();
    let (status, _) = server
        .delete(&format!("/v1/messages/{gone_id}"), &token("alice"))
        .await;
    assert_eq!(status, 200);
    server.kill9();
    std::fs::remove_dir_all(&search_dir).expect("remove the index");
    server.restart().await;
    let kept_id = kept["id"].as_str().expect("id").to_owned();
    assert!(
        findable_within(
            &server,
            "bob",
            "lighthouse",
            &kept_id,
            Duration::from_secs(10)
        )
        .await,
        "the history is searchable again"
    );
    assert_eq!(
        found(&server, "bob", &[("q", "lighthouse")]).await,
        [kept_id.as_str()],
        "the deleted one stays deleted"
    );
}

/// `/ready` reports the index: its state and documents; the smallest memory budget indexes.
#[tokio::test]
async fn ready_reports_the_index() {
    let server = Server::start_with(&["--search-memory-budget", "16777216"]).await;
    let conversation = server.create_group("ann", &[]).await;
    let sent = server
        .rest_send("ann", &conversation, "r-1", "budget check")
        .await;
    let id = sent["id"].as_str().expect("id").to_owned();
    assert!(findable_within(&server, "ann", "budget", &id, Duration::from_secs(3)).await);
    let (status, ready) = server
        .request(reqwest::Method::GET, "/ready", None, None)
        .await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["search"]["state"], "ready", "{ready}");
    assert_eq!(ready["search"]["documents"], 1, "{ready}");
    assert_eq!(ready["search"]["conversations_behind"], 0, "{ready}");
}

/// The queries of `bearer`'s recent searches, newest first.
async fn recent(server: &Server, bearer: &str) -> Vec<String> {
    let (status, body) = server.get("/v1/search/recent", bearer).await;
    assert_eq!(status, 200, "{body}");
    body["queries"]
        .as_array()
        .expect("queries")
        .iter()
        .map(|recent| recent["q"].as_str().expect("q").to_owned())
        .collect()
}

/// Polls (up to 5 s) until `bearer`'s recent searches are `expected` (they are recorded after
/// the answer).
async fn recent_becomes(server: &Server, bearer: &str, expected: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = recent(server, bearer).await;
        if got == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "recent searches: {got:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn recent_searches_are_recorded_deduplicated_bounded_private_and_durable() {
    let mut server = Server::start_with(&["--search-per-minute", "0"]).await;
    let alice = token("alice");
    // Message and grouped searches record their trimmed `q`; suggestions and blanks do not.
    search_as(&server, &alice, &[("q", "  rocket  ")]).await;
    recent_becomes(&server, &alice, &["rocket"]).await;
    let (status, _) = server.get("/v1/search?q=launch", &alice).await;
    assert_eq!(status, 200);
    recent_becomes(&server, &alice, &["launch", "rocket"]).await;
    server
        .get("/v1/search/suggestions?prefix=budget", &alice)
        .await;
    search_as(&server, &alice, &[("q", "   ")]).await;
    // A repeat moves to the front, once.
    search_as(&server, &alice, &[("q", "rocket")]).await;
    recent_becomes(&server, &alice, &["rocket", "launch"]).await;
    // Other users and tenants see their own only.
    assert!(recent(&server, &token("bob")).await.is_empty());
    assert!(
        recent(&server, &token_in("alice", "globex"))
            .await
            .is_empty()
    );
    // At most 20 kept, the newest.
    for n in 0..22 {
        let q = format!("query{n}");
        search_as(&server, &alice, &[("q", &q)]).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        while recent(&server, &alice).await.first() != Some(&q) {
            assert!(Instant::now() < deadline, "{q} was not recorded");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    let kept = recent(&server, &alice).await;
    assert_eq!(kept.len(), 20, "{kept:?}");
    assert_eq!(kept[0], "query21");
    // They survive a restart.
    server.sigterm();
    server.wait_exit(Duration::from_secs(10)).await;
    server.restart().await;
    assert_eq!(recent(&server, &alice).await, kept);
    // Cleared: 204, then empty.
    let (status, _) = server.delete("/v1/search/recent", &alice).await;
    assert_eq!(status, 204);
    assert!(recent(&server, &alice).await.is_empty());
}
