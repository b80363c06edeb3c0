//! The Kafka event stream against a real broker (tansu, started by `confab-testkit`): the real
//! `confab` binary runs with `--events kafka://…`, and an rdkafka consumer reads the topic.
//!
//! - Every acked event (messages from concurrent senders in several conversations, an edit, a
//!   delete, reactions, member changes, a conversation update) is on the topic once, in seq
//!   order per conversation, with the envelope of `docs/events.md` around the very frame that
//!   WebSocket clients get.
//! - With the broker stopped, chat goes on (acks keep coming) and the dropped and failed
//!   counters move; shutdown still finishes in bounded time.
//!
//! The consumer assigns itself every partition rather than joining a group: tansu's group join
//! is slow, and a test has no use for it.

#![cfg(feature = "kafka")]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{Server, TENANT, WsClient, token};
use confab_protocol::{Command, EventKind, ServerFrame};
use confab_server::events::{ENVELOPE_VERSION, Envelope};
use confab_testkit::KafkaServer;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::{Value, json};
use tokio::task::JoinSet;

const TOPIC: &str = "confab.events";
/// How long the consumer waits for the expected events.
const CONSUME_TIMEOUT: Duration = Duration::from_secs(20);

async fn start_kafka() -> KafkaServer {
    tokio::task::spawn_blocking(KafkaServer::start)
        .await
        .expect("join")
        .expect("tansu starts (run scripts/install-test-services)")
}

/// One record as read from the topic.
#[derive(Debug)]
struct Consumed {
    partition: i32,
    key: String,
    timestamp: Option<i64>,
    headers: BTreeMap<String, String>,
    payload: String,
}

fn consumer(bootstrap: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("confab-test-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "300")
        .set("fetch.wait.max.ms", "10")
        .create()
        .expect("create the consumer")
}

/// Reads the topic from the beginning until every conversation of `expected` has reached its
/// last seq (then a little longer, to catch duplicates), or the timeout passes.
fn consume(bootstrap: &str, expected: &BTreeMap<String, u64>) -> Vec<Consumed> {
    let consumer = consumer(bootstrap);
    let deadline = Instant::now() + CONSUME_TIMEOUT;
    let partitions = loop {
        if let Ok(metadata) = consumer.fetch_metadata(Some(TOPIC), Duration::from_secs(2))
            && let Some(topic) = metadata.topics().iter().find(|t| t.name() == TOPIC)
            && topic.error().is_none()
            && !topic.partitions().is_empty()
        {
            break topic
                .partitions()
                .iter()
                .map(|p| p.id())
                .collect::<Vec<_>>();
        }
        assert!(Instant::now() < deadline, "topic {TOPIC} never appeared");
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut assignment = TopicPartitionList::new();
    for partition in partitions {
        assignment
            .add_partition_offset(TOPIC, partition, Offset::Beginning)
            .expect("add partition");
    }
    consumer.assign(&assignment).expect("assign");

    let mut records = Vec::new();
    let mut reached: BTreeMap<String, u64> = BTreeMap::new();
    let mut done_at: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if now > deadline || done_at.is_some_and(|at| now > at + Duration::from_millis(500)) {
            return records;
        }
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = message.expect("consume");
        let key = String::from_utf8(message.key().expect("a key").to_vec()).expect("utf-8 key");
        let payload =
            String::from_utf8(message.payload().expect("a payload").to_vec()).expect("utf-8");
        let headers = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|h| {
                        let value = h.value.map(|v| String::from_utf8_lossy(v).into_owned());
                        (h.key.to_owned(), value.unwrap_or_default())
                    })
                    .collect()
            })
            .unwrap_or_default();
        // A media event's envelope has no seq: it counts as seq 0 of its file's key.
        let seq = serde_json::from_str::<Envelope<'_>>(&payload).map_or(0, |envelope| envelope.seq);
        let top = reached.entry(key.clone()).or_default();
        *top = (*top).max(seq);
        records.push(Consumed {
            partition: message.partition(),
            key,
            timestamp: message.timestamp().to_millis(),
            headers,
            payload,
        });
        if done_at.is_none()
            && expected
                .iter()
                .all(|(conversation, last)| reached.get(conversation) >= Some(last))
        {
            done_at = Some(Instant::now());
        }
    }
}

/// The sum of every series of a Prometheus metric.
fn metric_total(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The next `count` durable events of `conversation` that `client` receives.
async fn durable_frames(
    client: &mut WsClient,
    conversation: &str,
    count: usize,
) -> Vec<ServerFrame> {
    let mut frames = Vec::with_capacity(count);
    while frames.len() < count {
        let frame = client
            .recv_until(|f| f.durable_position().is_some_and(|(c, _)| c == conversation))
            .await;
        frames.push(frame);
    }
    frames
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acked_event_is_published_once_in_order_per_conversation() {
    const SENDERS: usize = 4;
    const CONVERSATIONS: usize = 3;
    const PER_CONVERSATION: usize = 20;
    let started = Instant::now();
    let kafka = start_kafka().await;
    let events_url = kafka.url();
    let mut server = Server::start_with(&["--events", events_url.as_str()]).await;

    let senders: Vec<String> = (0..SENDERS).map(|i| format!("sender-{i}")).collect();
    let mut members: Vec<&str> = senders.iter().map(String::as_str).collect();
    members.push("bob");
    let mut conversations = Vec::new();
    for _ in 0..CONVERSATIONS {
        conversations.push(server.create_group("alice", &members).await);
    }
    // Bob watches live: he gets each event's frame exactly as committed (a replay would show
    // the deleted message emptied).
    let mut bob = server.ws("bob").await;
    for conversation in &conversations {
        bob.join(conversation).await;
    }

    // Concurrent senders, each writing to every conversation in turn.
    let mut tasks = JoinSet::new();
    for sender in &senders {
        let mut client = server.ws(sender).await;
        let sender = sender.clone();
        let conversations = conversations.clone();
        tasks.spawn(async move {
            let mut acked = Vec::new();
            for n in 0..PER_CONVERSATION {
                for conversation in &conversations {
                    let ack = client
                        .send_message(conversation, &format!("{sender}-{n}"), "hello")
                        .await;
                    acked.push((conversation.clone(), ack.seq, ack.id));
                }
            }
            acked
        });
    }
    let mut acked: BTreeSet<(String, u64)> = BTreeSet::new();
    let mut first_message = None;
    while let Some(result) = tasks.join_next().await {
        for (conversation, seq, id) in result.expect("sender task") {
            if conversation == conversations[0] && first_message.is_none() {
                first_message = Some(id);
            }
            assert!(acked.insert((conversation, seq)), "seq acked twice");
        }
    }
    assert_eq!(acked.len(), SENDERS * CONVERSATIONS * PER_CONVERSATION);

    // Every other kind of durable event, in the first conversation.
    let target = conversations[0].clone();
    let message = first_message.expect("a message");
    let mut alice = server.ws("alice").await;
    let mut sender = server.ws(&senders[0]).await;
    let edit_target = sender.send_message(&target, "to-edit", "draft").await;
    acked.insert((target.clone(), edit_target.seq));
    let edited = sender
        .expect_ok(Command::Edit {
            message: edit_target.id.clone(),
            body: "final".into(),
        })
        .await;
    // The owner deletes someone else's message.
    let deleted = alice.expect_ok(Command::Delete { message }).await;
    for seq in [edited, deleted] {
        acked.insert((target.clone(), seq.expect("a seq")));
    }
    for command in [
        Command::React {
            message: edit_target.id.clone(),
            emoji: "🎉".into(),
        },
        Command::Unreact {
            message: edit_target.id.clone(),
            emoji: "🎉".into(),
        },
    ] {
        let seq = alice.expect_ok(command).await.expect("a seq");
        acked.insert((target.clone(), seq));
    }
    let owner = token("alice");
    let members_path = format!("/v1/conversations/{target}/members");
    let (status, added) = server
        .post(&members_path, &owner, json!({"user": "erin"}))
        .await;
    assert_eq!(status, 201, "add member: {added}");
    let (status, role) = server
        .patch(
            &format!("{members_path}/erin"),
            &owner,
            json!({"role": "admin"}),
        )
        .await;
    assert_eq!(status, 200, "set role: {role}");
    let (status, removed) = server.delete(&format!("{members_path}/erin"), &owner).await;
    assert_eq!(status, 200, "remove member: {removed}");
    for answer in [&added, &role, &removed] {
        acked.insert((target.clone(), answer["seq"].as_u64().expect("a seq")));
    }
    let (status, updated) = server
        .patch(
            &format!("/v1/conversations/{target}"),
            &owner,
            json!({"title": "renamed"}),
        )
        .await;
    assert_eq!(status, 200, "update conversation: {updated}");

    // The expected stream: every seq up to each conversation's last (storage's seqs are
    // gapless), with the frames bob received live.
    let mut frames: BTreeMap<(String, u64), ServerFrame> = BTreeMap::new();
    let mut last_seqs: BTreeMap<String, u64> = BTreeMap::new();
    for conversation in &conversations {
        let last_seq = alice.join(conversation).await;
        last_seqs.insert(conversation.clone(), last_seq);
        for frame in durable_frames(&mut bob, conversation, last_seq as usize).await {
            let (_, seq) = frame.durable_position().expect("durable");
            assert!(
                frames.insert((conversation.clone(), seq), frame).is_none(),
                "bob got {seq} twice"
            );
        }
    }
    for position in &acked {
        assert!(
            frames.contains_key(position),
            "acked {position:?} is stored"
        );
    }

    // Delivery reports feed the metrics.
    let total: u64 = last_seqs.values().sum();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = server.metrics().await;
        let published = metric_total(&text, "confab_events_published_total");
        if published >= total as f64 {
            assert_eq!(published, total as f64, "each event is counted once");
            assert_eq!(metric_total(&text, "confab_events_failed_total"), 0.0);
            assert_eq!(metric_total(&text, "confab_events_dropped_total"), 0.0);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "published_total {published} < {total}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Events committed just before a shutdown are flushed by it.
    let last_words = &conversations[1];
    for n in 0..5 {
        sender
            .send_command(common::send_command(last_words, &format!("bye-{n}"), "bye"))
            .await;
    }
    let last = last_seqs.get_mut(last_words).expect("known");
    for frame in durable_frames(&mut bob, last_words, 5).await {
        let (_, seq) = frame.durable_position().expect("durable");
        *last = (*last).max(seq);
        frames.insert((last_words.clone(), seq), frame);
    }
    server.sigterm();
    let status = server.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "exit status {status}");
    assert!(!server.log().contains("not flushed"), "{}", server.log());
    let traffic_done = started.elapsed();

    let bootstrap = kafka.bootstrap_servers();
    let expected = last_seqs.clone();
    let records = tokio::task::spawn_blocking(move || consume(&bootstrap, &expected))
        .await
        .expect("consumer");

    let mut seen: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut partition_of: BTreeMap<String, i32> = BTreeMap::new();
    let mut kinds = BTreeSet::new();
    for record in &records {
        let envelope: Envelope<'_> = serde_json::from_str(&record.payload).expect("envelope");
        assert_eq!(envelope.v, ENVELOPE_VERSION);
        assert_eq!(envelope.tenant, TENANT);
        assert_eq!(envelope.conversation, record.key, "keyed by conversation");
        let partition = partition_of
            .entry(record.key.clone())
            .or_insert(record.partition);
        assert_eq!(
            *partition, record.partition,
            "one partition per conversation"
        );
        let position = (record.key.clone(), envelope.seq);
        let stored = frames
            .get(&position)
            .unwrap_or_else(|| panic!("{position:?} was published but is not stored"));
        let event: ServerFrame = serde_json::from_str(envelope.event.get()).expect("a frame");
        assert_eq!(&event, stored, "the envelope carries the stored frame");
        let event_json: Value = serde_json::from_str(envelope.event.get()).expect("json");
        assert_eq!(event_json["type"], envelope.kind.as_str());
        assert_eq!(event_json["ts"], json!(envelope.ts), "ts is the frame's");
        assert_eq!(record.timestamp, Some(envelope.ts), "kafka timestamp");
        assert_eq!(
            record.headers.get("type").map(String::as_str),
            Some(envelope.kind.as_str())
        );
        assert_eq!(
            record.headers.get("tenant").map(String::as_str),
            Some(TENANT)
        );
        kinds.insert(envelope.kind.as_str());
        seen.entry(record.key.clone())
            .or_default()
            .push(envelope.seq);
    }
    for (conversation, last) in &last_seqs {
        let expected: Vec<u64> = (1..=*last).collect();
        assert_eq!(
            seen.get(conversation),
            Some(&expected),
            "conversation {conversation}: every event once, in seq order"
        );
    }
    let all_kinds: BTreeSet<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(kinds, all_kinds, "every kind of durable event is published");

    eprintln!(
        "{} events in {} conversations: traffic and shutdown {traffic_done:?}, all consumed after {:?}",
        records.len(),
        last_seqs.len(),
        started.elapsed()
    );
}

/// Waits until `name` (summed over its series) satisfies `ok`, or panics after `timeout`.
async fn wait_metric(server: &Server, name: &str, timeout: Duration, ok: impl Fn(f64) -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        let value = metric_total(&server.metrics().await, name);
        if ok(value) {
            return;
        }
        assert!(Instant::now() < deadline, "{name} stayed at {value}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The seqs of `conversation` on the topic, sorted and without repeats, once the topic holds
/// `count` different ones (or after 30 s), and how many records repeated one.
async fn topic_seqs(
    kafka: &KafkaServer,
    conversation: &str,
    last: u64,
    count: usize,
) -> (Vec<u64>, usize) {
    let expected = BTreeMap::from([(conversation.to_owned(), last)]);
    let bootstrap = kafka.bootstrap_servers();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let records = tokio::task::block_in_place(|| consume(&bootstrap, &expected));
        let mut seqs = records
            .iter()
            .filter(|r| r.key == conversation)
            .map(|r| {
                serde_json::from_str::<Envelope<'_>>(&r.payload)
                    .expect("an envelope")
                    .seq
            })
            .collect::<Vec<u64>>();
        seqs.sort_unstable();
        let records = seqs.len();
        seqs.dedup();
        if seqs.len() >= count || Instant::now() > deadline {
            let repeated = records - seqs.len();
            return (seqs, repeated);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Kafka stops under load: chat goes on (acks do not wait for the brokers), every event the
/// producer cannot take or deliver goes into the backlog (`confab_events_backlog`) and is on
/// the topic (at least once) soon after the broker is back; a second outage ends in a shutdown,
/// which saves the backlog, and the next start publishes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_goes_on_while_kafka_is_down_and_the_backlog_is_published_after() {
    const BUFFER: usize = 20;
    const DURING_OUTAGE: u64 = 120;
    let started = Instant::now();
    let kafka = start_kafka().await;
    // A small buffer and a short delivery timeout, so that both ways into the backlog are taken.
    let events_url = format!(
        "{}?queue.buffering.max.messages={BUFFER}&message.timeout.ms=3000",
        kafka.url()
    );
    let mut server = Server::start_with(&[
        "--events",
        events_url.as_str(),
        "--shutdown-grace-secs",
        "1",
    ])
    .await;
    let conversation = server.create_group("alice", &["bob"]).await;
    let mut alice = server.ws("alice").await;
    let mut bob = server.ws("bob").await;
    bob.join(&conversation).await;

    alice
        .send_message(&conversation, "before", "kafka is up")
        .await;
    wait_metric(
        &server,
        "confab_events_published_total",
        Duration::from_secs(10),
        |v| v >= 1.0,
    )
    .await;

    // The broker hangs (frozen: connections open, nothing answers; its topics survive).
    tokio::task::block_in_place(|| kafka.pause()).expect("pause tansu");

    let mut slowest = Duration::ZERO;
    for n in 0..DURING_OUTAGE {
        let sent = Instant::now();
        let ack = alice
            .send_message(&conversation, &format!("down-{n}"), "kafka is down")
            .await;
        slowest = slowest.max(sent.elapsed());
        assert_eq!(ack.seq, n + 2, "acked in order, without gaps");
    }
    // A producer that waited for Kafka would take the delivery timeout (3 s) at least.
    assert!(
        slowest < Duration::from_secs(2),
        "an ack took {slowest:?} while kafka was down"
    );
    // Live delivery goes on too.
    for _ in 0..=DURING_OUTAGE {
        bob.recv_message().await;
    }
    // Past the buffer at once, the buffered ones after the delivery timeout.
    wait_metric(
        &server,
        "confab_events_backlog",
        Duration::from_secs(20),
        |v| v >= (DURING_OUTAGE as usize - BUFFER) as f64,
    )
    .await;
    wait_metric(
        &server,
        "confab_events_failed_total",
        Duration::from_secs(20),
        |v| v > 0.0,
    )
    .await;
    assert!(
        server
            .log()
            .contains("kafka buffer full: events go to the backlog")
    );

    // The broker comes back and the backlog drains while the server runs.
    tokio::task::block_in_place(|| kafka.resume()).expect("resume tansu");
    wait_metric(
        &server,
        "confab_events_backlog",
        Duration::from_secs(60),
        |v| v == 0.0,
    )
    .await;
    wait_metric(
        &server,
        "confab_events_in_flight",
        Duration::from_secs(30),
        |v| v == 0.0,
    )
    .await;
    let last = DURING_OUTAGE + 1;
    let (seqs, repeated) = topic_seqs(&kafka, &conversation, last, last as usize).await;
    assert_eq!(
        seqs,
        (1..=last).collect::<Vec<u64>>(),
        "every event before and during the outage"
    );
    // At least once: what was in flight when the broker froze timed out ("possibly
    // persisted") and went through the backlog, and the broker wrote it when it woke up.
    assert!(repeated <= BUFFER, "{repeated} repeated records");
    let recovered = started.elapsed();

    // Second outage (the broker stops), ended by a shutdown: it flushes for the grace period,
    // then saves the backlog.
    tokio::task::block_in_place(|| kafka.stop()).expect("stop tansu");
    for n in 0..DURING_OUTAGE {
        alice
            .send_message(&conversation, &format!("again-{n}"), "kafka is down again")
            .await;
    }
    wait_metric(
        &server,
        "confab_events_backlog",
        Duration::from_secs(20),
        |v| v >= (DURING_OUTAGE as usize - BUFFER) as f64,
    )
    .await;
    let stopping = Instant::now();
    server.sigterm();
    let status = server.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "exit status {status}");
    assert!(
        server.log().contains("event stream backlog saved"),
        "{}",
        server.log()
    );
    let shutdown = stopping.elapsed();
    assert!(shutdown < Duration::from_secs(10), "shutdown hung");

    // The broker comes back (empty: tansu keeps topics in memory), then the server: it loads
    // the backlog and republishes it from the store, while chat goes on.
    tokio::task::block_in_place(|| kafka.restart()).expect("restart tansu");
    server.restart().await;
    let mut alice = server.ws("alice").await;
    let last = alice
        .send_message(&conversation, "after", "kafka is back")
        .await
        .seq;
    assert_eq!(last, 2 * DURING_OUTAGE + 2);
    wait_metric(
        &server,
        "confab_events_backlog",
        Duration::from_secs(30),
        |v| v == 0.0,
    )
    .await;
    let first = DURING_OUTAGE + 2;
    let (seqs, repeated_after_restart) =
        topic_seqs(&kafka, &conversation, last, (last - first + 1) as usize).await;
    assert_eq!(
        seqs,
        (first..=last).collect::<Vec<u64>>(),
        "every event of the second outage and after it"
    );
    // The broker lost everything when it stopped: nothing was written twice.
    assert_eq!(repeated_after_restart, 0);
    eprintln!(
        "outage: slowest ack {slowest:?}, first outage recovered after {recovered:?} \
         ({repeated} records repeated), shutdown {:?}, total {:?}",
        shutdown,
        started.elapsed()
    );
}

/// The whole cluster shape: two nodes (separate processes) sharing Redis (fan-out), MongoDB
/// (storage) and Kafka (events). Users on both nodes chat in two conversations; each node
/// delivers every message once, in order, and the topic holds every acked event exactly once.
/// Not in seq order: each node publishes what it committed, so when both commit to one
/// conversation a few milliseconds apart their records can interleave out of order on the
/// partition (seen: `[1, 2, 4, 3, 5, …]`; docs/events.md, "Guarantees"). The single-node tests
/// check the order.
#[cfg(feature = "mongo")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_redis_mongodb_and_kafka() {
    use confab_testkit::{MongoServer, RedisServer};

    const PER_SENDER: usize = 25;
    let kafka = start_kafka().await;
    let redis = tokio::task::spawn_blocking(RedisServer::start)
        .await
        .expect("join")
        .expect("redis-server starts");
    let mongo = tokio::task::spawn_blocking(MongoServer::start)
        .await
        .expect("join")
        .expect("secantusdb starts");
    let (events, hub, store) = (
        format!("kafka://{}", kafka.bootstrap_servers()),
        redis.url(),
        mongo.url(),
    );
    let flags = [
        "--events",
        events.as_str(),
        "--hub",
        hub.as_str(),
        "--store",
        store.as_str(),
        "--store-database",
        "fullstack",
    ];
    let a = Server::start_with(&flags).await;
    let b = Server::start_with(&flags).await;

    let mut conversations = Vec::new();
    for title in ["one", "two"] {
        let id = a.create_group("alice", &["bob"]).await;
        let (status, _) = a
            .patch(
                &format!("/v1/conversations/{id}"),
                &token("alice"),
                json!({"title": title}),
            )
            .await;
        assert_eq!(status, 200);
        conversations.push(id);
    }
    let mut watch_a = a.ws("alice").await;
    let mut watch_b = b.ws("bob").await;
    for id in &conversations {
        watch_a.join(id).await;
        watch_b.join(id).await;
    }
    for id in &conversations {
        common::wait_for_subscribers(&hub, id, 2).await;
    }

    // alice sends through node a, bob through node b, into both conversations at once.
    let mut tasks = JoinSet::new();
    for (node, user) in [(&a, "alice"), (&b, "bob")] {
        for id in &conversations {
            let mut client = node.ws(user).await;
            let id = id.clone();
            tasks.spawn(async move {
                for n in 0..PER_SENDER {
                    client.send_message(&id, &format!("{user}-{n}"), "x").await;
                }
            });
        }
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("sender");
    }
    // Each conversation: 1 rename + 2 × PER_SENDER messages.
    let last = 1 + 2 * PER_SENDER as u64;
    // The watchers joined after the renames (seq 1): they get seqs 2..=last live.
    for watcher in [&mut watch_a, &mut watch_b] {
        for id in &conversations {
            let frames = durable_frames(watcher, id, last as usize - 1).await;
            let seqs: Vec<u64> = frames
                .iter()
                .filter_map(|f| f.durable_position())
                .map(|(_, s)| s)
                .collect();
            assert_eq!(
                seqs,
                (2..=last).collect::<Vec<_>>(),
                "each node delivers every seq once, in order"
            );
        }
    }

    let expected: BTreeMap<String, u64> = conversations.iter().map(|c| (c.clone(), last)).collect();
    let bootstrap = kafka.bootstrap_servers();
    let records = tokio::task::spawn_blocking(move || consume(&bootstrap, &expected))
        .await
        .expect("join");
    for id in &conversations {
        let seqs: Vec<u64> = records
            .iter()
            .filter(|r| &r.key == id)
            .map(|r| {
                serde_json::from_str::<Envelope<'_>>(&r.payload)
                    .expect("envelope")
                    .seq
            })
            .collect();
        let late = seqs.windows(2).filter(|w| w[1] < w[0]).count();
        let mut sorted = seqs.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            (1..=last).collect::<Vec<_>>(),
            "the topic holds every event once: {seqs:?}"
        );
        eprintln!("conversation {id}: {late} records after a higher seq");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_uploads_and_deletes_are_published() {
    let kafka = start_kafka().await;
    let bootstrap = kafka.bootstrap_servers();
    let events = format!("kafka://{bootstrap}");
    let server = Server::start_with(&["--events", events.as_str()]).await;
    let file = server
        .upload("alice", "notes.txt", b"media on the stream")
        .await;
    let id = file["id"].as_str().expect("id").to_owned();
    let (status, _) = server
        .delete(&format!("/v1/media/{id}"), &token("alice"))
        .await;
    assert_eq!(status, 204);

    let expected = BTreeMap::from([(id.clone(), 0)]);
    let records = tokio::task::spawn_blocking(move || consume(&bootstrap, &expected))
        .await
        .expect("join");
    let media: Vec<&Consumed> = records.iter().filter(|r| r.key == id).collect();
    let kinds: Vec<&str> = media.iter().map(|r| r.headers["type"].as_str()).collect();
    assert_eq!(kinds, ["media_uploaded", "media_deleted"], "{records:?}");
    let uploaded: Value = serde_json::from_str(&media[0].payload).expect("json");
    assert_eq!(uploaded["v"], json!(ENVELOPE_VERSION));
    assert_eq!(uploaded["tenant"], json!(TENANT));
    assert_eq!(
        uploaded["media"], file,
        "the file's metadata as the upload answered it"
    );
    let deleted: Value = serde_json::from_str(&media[1].payload).expect("json");
    assert_eq!(deleted["media"], json!({"id": id, "by": "alice"}));
    assert_eq!(media[1].headers["tenant"], TENANT);
}
