//! Search in a cluster: two nodes (separate processes) sharing one SQLite file (storage), a real
//! Redis (fan-out) and a real Kafka-protocol broker (the event stream, tansu). Each node's index
//! reads the whole event topic, so a message sent, edited or deleted through one node is found
//! (or no longer found) through the other within 3 s, and each node commits the offsets of what
//! its index holds; a record that is not an event goes to the dead-letter topic, from each node,
//! and indexing goes on; a restarted node resumes from its committed offsets, in the same group.

#![cfg(feature = "kafka")]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{Server, metric_value, token};
use confab_testkit::{KafkaServer, RedisServer};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::{Value, json};

const TOPIC: &str = "confab.events";
const DEAD_LETTER_TOPIC: &str = "confab.events.dlq";
/// How soon what one node commits must be found on the other.
const CROSS_NODE: Duration = Duration::from_secs(3);
const GARBAGE: &[u8] = b"\xff\x00 not an envelope";

struct Cluster {
    kafka: KafkaServer,
    _redis: RedisServer,
    a: Server,
    b: Server,
    data: tempfile::TempDir,
}

/// Two nodes on one SQLite file, one Redis and one Kafka, each with its own search dir (the
/// harness gives one to each node sharing a data dir).
async fn cluster() -> Cluster {
    let kafka = tokio::task::spawn_blocking(KafkaServer::start)
        .await
        .expect("join")
        .expect("tansu starts (run scripts/install-test-services)");
    let redis = tokio::task::spawn_blocking(RedisServer::start)
        .await
        .expect("join")
        .expect("redis-server starts (run scripts/install-test-services)");
    let data = tempfile::tempdir().expect("tempdir");
    let data_dir = data.path().display().to_string();
    let (hub, events) = (redis.url(), kafka.url());
    let flags = [
        "--data-dir",
        data_dir.as_str(),
        "--shared-data-dir",
        "true",
        "--hub",
        hub.as_str(),
        "--events",
        events.as_str(),
        "--search-commit-interval",
        "200ms",
    ];
    let a = Server::start_with(&flags).await;
    let b = Server::start_with(&flags).await;
    for node in [&a, &b] {
        reading_the_stream(node, 1).await;
    }
    Cluster {
        kafka,
        _redis: redis,
        a,
        b,
        data,
    }
}

/// Waits (up to 20 s) until `node`'s index has been assigned the topic's partitions (the
/// topic exists once a node's producer has asked for it) by its `starts`-th process. Goes on
/// regardless after that: the searches then say what is missing.
async fn reading_the_stream(node: &Server, starts: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while node
        .log()
        .matches("search index reading the event stream")
        .count()
        < starts
    {
        if Instant::now() > deadline {
            eprintln!("the search index did not say it reads the stream");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The offsets committed by each node's search consumer group (kept in the node's search dir,
/// which the harness puts under the shared data dir), summed over the topic's partitions.
fn committed_offsets(bootstrap: &str, data_dir: &std::path::Path) -> Vec<(String, i64)> {
    let mut committed = Vec::new();
    for entry in std::fs::read_dir(data_dir).expect("data dir").flatten() {
        let Ok(group) = std::fs::read_to_string(entry.path().join("stream-consumer-group")) else {
            continue;
        };
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let metadata = consumer
            .fetch_metadata(Some(TOPIC), Duration::from_secs(5))
            .expect("metadata");
        let mut partitions = TopicPartitionList::new();
        for topic in metadata.topics().iter().filter(|t| t.name() == TOPIC) {
            for partition in topic.partitions() {
                partitions.add_partition(TOPIC, partition.id());
            }
        }
        let offsets = consumer
            .committed_offsets(partitions, Duration::from_secs(5))
            .expect("committed offsets");
        let total = offsets
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(offset) => Some(offset),
                _ => None,
            })
            .sum();
        committed.push((group, total));
    }
    committed
}

/// The ids `user` finds on `node` with `q`.
async fn hits(node: &Server, user: &str, q: &str) -> Vec<String> {
    let url =
        url::Url::parse_with_params(&format!("{}/v1/search/messages", node.base()), &[("q", q)])
            .expect("url");
    let response = node
        .client()
        .get(url)
        .bearer_auth(token(user))
        .send()
        .await
        .expect("search");
    assert_eq!(response.status().as_u16(), 200, "search {q}");
    let body: Value = response.json().await.expect("json");
    body["hits"]
        .as_array()
        .expect("hits")
        .iter()
        .map(|hit| hit["id"].as_str().expect("id").to_owned())
        .collect()
}

/// Polls `node` until `user`'s hits for `q` satisfy `wanted`, for at most [`CROSS_NODE`];
/// returns how long it took.
async fn within_cross_node(
    node: &Server,
    user: &str,
    q: &str,
    wanted: impl Fn(&[String]) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        let found = hits(node, user, q).await;
        if wanted(&found) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < CROSS_NODE,
            "{q:?} on the other node after {CROSS_NODE:?}: {found:?}\n{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn contains(id: &str) -> impl Fn(&[String]) -> bool + '_ {
    move |found| found.iter().any(|hit| hit == id)
}

fn lacks(id: &str) -> impl Fn(&[String]) -> bool + '_ {
    move |found| !found.iter().any(|hit| hit == id)
}

/// Produces a record of garbage bytes to the event topic, as a broken producer would.
fn produce_garbage(bootstrap: &str) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("producer");
    producer
        .send(
            BaseRecord::<str, [u8]>::to(TOPIC)
                .key("garbage")
                .payload(GARBAGE),
        )
        .map_err(|(error, _)| error)
        .expect("enqueue");
    producer.flush(Duration::from_secs(10)).expect("delivered");
}

/// The consumer groups (`confab-dlq-group` header) that dead-lettered the garbage record with
/// reason `envelope`, reading the dead-letter topic until `groups` of them did (or 15 s pass).
fn dead_letters(bootstrap: &str, groups: usize) -> BTreeSet<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("confab-test-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()
        .expect("consumer");
    let deadline = Instant::now() + Duration::from_secs(15);
    // Every partition: the record keeps its key, so its partition is the key's.
    let partitions = loop {
        if let Ok(metadata) =
            consumer.fetch_metadata(Some(DEAD_LETTER_TOPIC), Duration::from_secs(2))
            && let Some(topic) = metadata
                .topics()
                .iter()
                .find(|t| t.name() == DEAD_LETTER_TOPIC)
            && topic.error().is_none()
            && !topic.partitions().is_empty()
        {
            break topic
                .partitions()
                .iter()
                .map(|p| p.id())
                .collect::<Vec<_>>();
        }
        assert!(
            Instant::now() < deadline,
            "{DEAD_LETTER_TOPIC} never appeared"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut assignment = TopicPartitionList::new();
    for partition in partitions {
        assignment
            .add_partition_offset(DEAD_LETTER_TOPIC, partition, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&assignment).expect("assign");
    let mut seen = BTreeSet::new();
    while seen.len() < groups && Instant::now() < deadline {
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let header = |name: &str| {
            message.headers().and_then(|headers| {
                headers
                    .iter()
                    .find(|h| h.key == name)
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            })
        };
        assert_eq!(message.payload(), Some(GARBAGE), "the original bytes");
        assert_eq!(
            message.key(),
            Some(b"garbage".as_slice()),
            "the original key"
        );
        assert_eq!(header("confab-dlq-reason").as_deref(), Some("envelope"));
        assert!(header("confab-dlq-error").is_some_and(|e| !e.is_empty()));
        assert!(
            header("confab-dlq-source").is_some_and(|s| s.starts_with("confab.events/")),
            "{:?}",
            header("confab-dlq-source")
        );
        seen.insert(header("confab-dlq-group").expect("the group that dead-lettered it"));
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_one_node_commits_is_searchable_on_the_other() {
    let c = cluster().await;
    let conversation = c.a.create_group("alice", &["bob"]).await;

    // Sent through node a, found through node b.
    let sent =
        c.a.rest_send(
            "alice",
            &conversation,
            "s-1",
            "the rocket launch is on friday",
        )
        .await;
    let id = sent["id"].as_str().expect("id").to_owned();
    let found = within_cross_node(&c.b, "bob", "launch", contains(&id)).await;

    // Edited through node a: b finds the new text, not the old.
    let (status, edited) =
        c.a.patch(
            &format!("/v1/messages/{id}"),
            &token("alice"),
            json!({"body": "the countdown is postponed"}),
        )
        .await;
    assert_eq!(status, 200, "edit: {edited}");
    let edit = within_cross_node(&c.b, "bob", "countdown", contains(&id)).await;
    assert!(hits(&c.b, "bob", "launch").await.is_empty(), "the old text");

    // Deleted through node a: b no longer finds it.
    let (status, deleted) =
        c.a.delete(&format!("/v1/messages/{id}"), &token("alice"))
            .await;
    assert!(status == 200 || status == 204, "delete: {deleted}");
    let delete = within_cross_node(&c.b, "bob", "countdown", lacks(&id)).await;

    // And the other way round: sent through b, found through a.
    let back =
        c.b.rest_send("bob", &conversation, "s-2", "telescope arrives monday")
            .await;
    let back_id = back["id"].as_str().expect("id").to_owned();
    within_cross_node(&c.a, "alice", "telescope", contains(&back_id)).await;

    // Each node commits the offsets of what its index holds: 4 events on the topic, read by
    // both (committed within a commit interval of being indexed).
    let bootstrap = c.kafka.bootstrap_servers();
    let data_dir = c.data.path().to_owned();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (bootstrap, data_dir) = (bootstrap.clone(), data_dir.clone());
        let committed =
            tokio::task::spawn_blocking(move || committed_offsets(&bootstrap, &data_dir))
                .await
                .expect("join");
        assert_eq!(
            committed.len(),
            2,
            "a consumer group per node: {committed:?}"
        );
        if committed.iter().all(|(_, total)| *total == 4) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "committed offsets: {committed:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("on the other node: sent {found:?}, edited {edit:?}, deleted {delete:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_topic_is_dead_lettered_and_indexing_goes_on() {
    let c = cluster().await;
    let conversation = c.a.create_group("alice", &["bob"]).await;
    let bootstrap = c.kafka.bootstrap_servers();
    let producing = bootstrap.clone();
    tokio::task::spawn_blocking(move || produce_garbage(&producing))
        .await
        .expect("join");

    let sent =
        c.a.rest_send("alice", &conversation, "s-1", "satellite after the garbage")
            .await;
    let id = sent["id"].as_str().expect("id").to_owned();
    within_cross_node(&c.b, "bob", "satellite", contains(&id)).await;

    // Each node reads every record, so each dead-letters the garbage once, under its group.
    let groups = tokio::task::spawn_blocking(move || dead_letters(&bootstrap, 2))
        .await
        .expect("join");
    assert_eq!(groups.len(), 2, "dead-lettered by both nodes: {groups:?}");
    assert!(
        groups.iter().all(|g| g.starts_with("confab-search-")),
        "{groups:?}"
    );

    // Counted, and the lag is measured.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = c.b.metrics().await;
        let dead = metric_value(&text, "confab_search_dead_lettered_total");
        let lag = metric_value(&text, "confab_search_consumer_lag_events");
        let lag_seconds = metric_value(&text, "confab_search_consumer_lag_seconds");
        if dead == Some(1.0) && lag.is_some() && lag_seconds.is_some() {
            assert!(
                text.contains(r#"confab_search_dead_lettered_total{reason="envelope"} 1"#),
                "{text}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "dead-lettered {dead:?}, lag {lag:?} / {lag_seconds:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Restarted, b resumes from its committed offsets: past the garbage (not dead-lettered
    // again), in the same group, and it goes on indexing.
    let mut b = c.b;
    b.sigterm();
    let status = b.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "exit status {status}");
    b.restart().await;
    reading_the_stream(&b, 2).await;
    let sent =
        c.a.rest_send("alice", &conversation, "s-2", "comet after the restart")
            .await;
    let id = sent["id"].as_str().expect("id").to_owned();
    within_cross_node(&b, "bob", "comet", contains(&id)).await;
    let text = b.metrics().await;
    assert_eq!(
        metric_value(&text, "confab_search_dead_lettered_total"),
        None,
        "the garbage was not read again"
    );
    let log = b.log();
    let groups: BTreeSet<&str> = log
        .lines()
        .filter(|line| line.contains("search index reading the event stream"))
        .filter_map(|line| line.split("group=").nth(1))
        .collect();
    assert_eq!(groups.len(), 1, "one group over restarts: {groups:?}");
}
