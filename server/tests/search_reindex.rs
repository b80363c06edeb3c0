//! `POST /v1/admin/reindex` over HTTP: a tenant admin rebuilds the tenant's search documents
//! from storage while searches keep answering; the answers after the swap are those from
//! before; what arrives during the rebuild is searchable after it; only a tenant admin may
//! start or see one, and only of their own tenant.

mod common;

use std::time::{Duration, Instant};

use common::{
    SECRET, Server, admin_token, admin_token_in, assert_rest_error, metric_value, token, token_in,
};
use confab_protocol::ErrorCode;
use serde_json::{Value, json};

/// Starts a reindex as `admin`: 202, the job, and its `Location`.
async fn start(server: &Server, admin: &str) -> (u16, Value, Option<String>) {
    let response = server
        .client()
        .post(format!("{}/v1/admin/reindex", server.base()))
        .bearer_auth(admin)
        .send()
        .await
        .expect("POST /v1/admin/reindex");
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body, location)
}

/// The job `id` once it is no longer running (within 60 s).
async fn finished(server: &Server, admin: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, job) = server.get(&format!("/v1/admin/reindex/{id}"), admin).await;
        assert_eq!(status, 200, "{job}");
        if job["state"] != "running" {
            return job;
        }
        assert!(Instant::now() < deadline, "still running: {job}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn state_of(server: &Server, admin: &str, id: &str) -> String {
    let (_, job) = server.get(&format!("/v1/admin/reindex/{id}"), admin).await;
    job["state"].as_str().unwrap_or_default().to_owned()
}

/// Sends `bodies` to `conversation` as `user`; the answers, in order.
async fn send_all(
    server: &Server,
    user: &str,
    conversation: &str,
    bodies: &[String],
) -> Vec<Value> {
    let mut sent = Vec::new();
    for body in bodies {
        let nonce = uuid::Uuid::new_v4().to_string();
        sent.push(server.rest_send(user, conversation, &nonce, body).await);
    }
    sent
}

/// The answers of `queries` as `bearer`, each 200.
async fn answers(server: &Server, bearer: &str, queries: &[String]) -> Vec<Value> {
    let mut all = Vec::new();
    for query in queries {
        let (status, body) = server.get(query, bearer).await;
        assert_eq!(status, 200, "{query}: {body}");
        all.push(body);
    }
    all
}

/// Message searches of the conversation whose data the reindex must not change, relevance and
/// newest first, a phrase, an exclusion, the grouped search and completions.
fn queries(wait_for: &str) -> Vec<String> {
    vec![
        format!("/v1/search/messages?q=report&limit=100&wait_for={wait_for}"),
        "/v1/search/messages?q=report&sort=recent&limit=100".to_owned(),
        "/v1/search/messages?q=alpha%20launch&limit=100".to_owned(),
        "/v1/search/messages?q=%22gamma%20report%22&limit=100".to_owned(),
        "/v1/search/messages?q=budget%20-delta&limit=100".to_owned(),
        "/v1/search?q=garden".to_owned(),
        "/v1/search/suggestions?prefix=rep".to_owned(),
    ]
}

/// A hit's id in `answer`, if `id` is one.
fn finds(answer: &Value, id: &str) -> bool {
    answer["hits"]
        .as_array()
        .is_some_and(|hits| hits.iter().any(|hit| hit["id"] == id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reindex_keeps_answering_answers_the_same_and_loses_nothing_sent_meanwhile() {
    // Paced, so that the rebuild lasts long enough to search and write during it.
    let server = Server::in_process(&["--search-reindex-events-per-second", "60"]).await;
    let (alice, admin) = (token("alice"), admin_token("root"));
    let steady = server.create_group("alice", &["bob"]).await;
    let changing = server.create_group("alice", &["bob"]).await;
    let bodies: Vec<String> = (0..120)
        .map(|i| {
            let first = ["alpha", "beta", "gamma", "delta"][i % 4];
            let last = ["launch", "budget", "garden"][i % 3];
            format!("{first} report number {i} {last}")
        })
        .collect();
    let sent = send_all(&server, "bob", &steady, &bodies).await;
    let last_seq = sent.last().expect("sent")["seq"].as_u64().expect("seq");
    let kappa = send_all(
        &server,
        "bob",
        &changing,
        &[
            "kappa to be edited".to_owned(),
            "kappa to be deleted".to_owned(),
        ],
    )
    .await;
    let (edited, deleted) = (
        kappa[0]["id"].as_str().expect("id").to_owned(),
        kappa[1]["id"].as_str().expect("id").to_owned(),
    );
    let queries = queries(&format!("{steady}:{last_seq}"));
    let before = answers(&server, &alice, &queries).await;
    assert_eq!(
        before[0]["hits"].as_array().map(Vec::len),
        Some(100),
        "{}",
        before[0]
    );
    let kappa_before = answers(
        &server,
        &alice,
        &["/v1/search/messages?q=kappa&wait_for=".to_owned() + &format!("{changing}:2")],
    )
    .await;
    assert!(finds(&kappa_before[0], &edited) && finds(&kappa_before[0], &deleted));

    let (status, job, location) = start(&server, &admin).await;
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().expect("job id").to_owned();
    assert_eq!(
        location.as_deref(),
        Some(format!("/v1/admin/reindex/{id}").as_str())
    );
    assert_eq!(job["state"], "running", "{job}");

    // One at a time per tenant.
    let (status, second, _) = start(&server, &admin).await;
    assert_rest_error(&(status, second), 409, ErrorCode::Conflict);

    // Searches answer during the rebuild, exactly as before.
    let mut during = 0;
    while during < 3 {
        assert_eq!(
            state_of(&server, &admin, &id).await,
            "running",
            "the rebuild outran the test"
        );
        assert_eq!(answers(&server, &alice, &queries).await, before);
        during += 1;
    }
    // Written during the rebuild: a new message, an edit, a delete.
    let zeta = send_all(
        &server,
        "bob",
        &changing,
        &["zeta sent during the rebuild".to_owned()],
    )
    .await;
    let zeta_id = zeta[0]["id"].as_str().expect("id").to_owned();
    let (status, body) = server
        .patch(
            &format!("/v1/messages/{edited}"),
            &token("bob"),
            json!({"body": "omega after the edit"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server
        .delete(&format!("/v1/messages/{deleted}"), &token("bob"))
        .await;
    assert_eq!(status, 200, "{body}");
    let progress = server
        .get(&format!("/v1/admin/reindex/{id}"), &admin)
        .await
        .1;
    assert_eq!(
        progress["state"], "running",
        "written while it ran: {progress}"
    );
    assert!(progress["events_total"].as_u64() >= Some(120), "{progress}");

    let job = finished(&server, &admin, &id).await;
    assert_eq!(job["state"], "done", "{job}");
    assert!(
        job["finished_at"].as_i64() >= job["started_at"].as_i64(),
        "{job}"
    );
    // Every message of the tenant, the three writes made during the rebuild included.
    assert_eq!(job["documents"], 123, "{job}");
    assert!(job["events"].as_u64() >= Some(125), "{job}");
    // The live index had applied everything storage holds: the rebuild found nothing to fix.
    assert_eq!(job["changed"], 0, "{job}");

    assert_eq!(
        answers(&server, &alice, &queries).await,
        before,
        "the same answers after the swap"
    );
    let found = |q: &str| format!("/v1/search/messages?q={q}");
    let after = answers(
        &server,
        &alice,
        &[found("zeta"), found("omega"), found("kappa")],
    )
    .await;
    assert!(
        finds(&after[0], &zeta_id),
        "sent during the rebuild: {}",
        after[0]
    );
    assert!(
        finds(&after[1], &edited),
        "edited during the rebuild: {}",
        after[1]
    );
    assert!(
        !finds(&after[2], &edited) && !finds(&after[2], &deleted),
        "edited away and deleted: {}",
        after[2]
    );

    let (status, jobs) = server.get("/v1/admin/reindex", &admin).await;
    assert_eq!(status, 200, "{jobs}");
    assert_eq!(jobs["jobs"][0]["id"], id.as_str(), "newest first: {jobs}");
    // A new one may start once it is done.
    let (status, again, _) = start(&server, &admin).await;
    assert_eq!(status, 202, "{again}");
    let again = finished(&server, &admin, again["id"].as_str().expect("id")).await;
    assert_eq!(
        (again["state"].as_str(), again["changed"].as_u64()),
        (Some("done"), Some(0)),
        "{again}"
    );
}

#[tokio::test]
async fn only_a_tenant_admin_reindexes_and_only_their_own_tenant() {
    let server = Server::start().await;
    let acme_conv = server.create_group("alice", &["bob"]).await;
    let bodies: Vec<String> = (0..5).map(|i| format!("acme rocket plan {i}")).collect();
    let sent = send_all(&server, "alice", &acme_conv, &bodies).await;
    let last = sent.last().expect("sent")["seq"].as_u64().expect("seq");
    let globex = token_in("gina", "globex");
    let (status, conv) = server
        .post(
            "/v1/conversations",
            &globex,
            json!({"kind": "group", "title": "g", "members": ["gus"]}),
        )
        .await;
    assert_eq!(status, 201, "{conv}");
    let globex_conv = conv["id"].as_str().expect("id").to_owned();
    for body in ["globex rocket one", "globex rocket two"] {
        let nonce = uuid::Uuid::new_v4().to_string();
        let (status, sent) = server
            .post(
                &format!("/v1/conversations/{globex_conv}/messages"),
                &globex,
                json!({"client_msg_id": nonce, "body": body}),
            )
            .await;
        assert_eq!(status, 201, "{sent}");
    }

    // Not an admin, or no token.
    for path in ["/v1/admin/reindex", "/v1/admin/reindex/anything"] {
        let refused = server.get(path, &token("alice")).await;
        assert_rest_error(&refused, 403, ErrorCode::Forbidden);
        let anonymous = server.request(reqwest::Method::GET, path, None, None).await;
        assert_rest_error(&anonymous, 401, ErrorCode::Unauthorized);
    }
    let (status, body, _) = start(&server, &token("alice")).await;
    assert_rest_error(&(status, body), 403, ErrorCode::Forbidden);
    let anonymous = server
        .request(reqwest::Method::POST, "/v1/admin/reindex", None, None)
        .await;
    assert_rest_error(&anonymous, 401, ErrorCode::Unauthorized);

    let query = format!("/v1/search/messages?q=rocket&limit=100&wait_for={acme_conv}:{last}");
    let before = answers(&server, &token("alice"), std::slice::from_ref(&query)).await;
    assert_eq!(
        before[0]["hits"].as_array().map(Vec::len),
        Some(5),
        "{}",
        before[0]
    );

    // Globex's admin rebuilds globex's documents only.
    let globex_admin = admin_token_in("root", "globex");
    let (status, job, _) = start(&server, &globex_admin).await;
    assert_eq!(status, 202, "{job}");
    let globex_job = job["id"].as_str().expect("id").to_owned();
    let done = finished(&server, &globex_admin, &globex_job).await;
    assert_eq!(
        (done["state"].as_str(), done["documents"].as_u64()),
        (Some("done"), Some(2)),
        "{done}"
    );
    assert_eq!(
        answers(&server, &token("alice"), std::slice::from_ref(&query)).await,
        before,
        "acme untouched"
    );

    // Acme's admin, with a token of `confab token --admin`: acme's documents; neither admin
    // sees the other's jobs.
    let minted = std::process::Command::new(env!("CARGO_BIN_EXE_confab"))
        .args([
            "token",
            "--user",
            "root",
            "--tenant",
            "acme",
            "--admin",
            "--jwt-secret",
            SECRET,
        ])
        .output()
        .expect("confab token");
    assert!(minted.status.success(), "{minted:?}");
    let acme_admin = String::from_utf8(minted.stdout)
        .expect("a token")
        .trim()
        .to_owned();
    let (status, job, _) = start(&server, &acme_admin).await;
    assert_eq!(status, 202, "{job}");
    let acme_job = job["id"].as_str().expect("id").to_owned();
    let hidden = server
        .get(&format!("/v1/admin/reindex/{acme_job}"), &globex_admin)
        .await;
    assert_rest_error(&hidden, 404, ErrorCode::NotFound);
    let hidden = server
        .get(&format!("/v1/admin/reindex/{globex_job}"), &acme_admin)
        .await;
    assert_rest_error(&hidden, 404, ErrorCode::NotFound);
    let (_, globex_jobs) = server.get("/v1/admin/reindex", &globex_admin).await;
    assert_eq!(
        globex_jobs["jobs"].as_array().map(Vec::len),
        Some(1),
        "{globex_jobs}"
    );
    assert_eq!(globex_jobs["jobs"][0]["id"], globex_job.as_str());
    let done = finished(&server, &acme_admin, &acme_job).await;
    assert_eq!(
        (done["state"].as_str(), done["documents"].as_u64()),
        (Some("done"), Some(5)),
        "{done}"
    );
    assert_eq!(
        answers(&server, &token("alice"), std::slice::from_ref(&query)).await,
        before
    );
    let globex_hits = answers(
        &server,
        &globex,
        &["/v1/search/messages?q=rocket".to_owned()],
    )
    .await;
    assert_eq!(
        globex_hits[0]["hits"].as_array().map(Vec::len),
        Some(2),
        "{}",
        globex_hits[0]
    );

    let metrics = server.metrics().await;
    assert_eq!(
        metric_value(&metrics, "confab_search_reindex_total"),
        Some(2.0),
        "{metrics}"
    );
    assert!(
        metrics.contains("# HELP confab_search_reindex_duration_seconds"),
        "{metrics}"
    );
    assert_eq!(
        metric_value(&metrics, "confab_search_reindex_changed_total"),
        Some(0.0)
    );
}
