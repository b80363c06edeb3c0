//! Two Confab nodes (separate processes) joined by a real Redis: cross-node chat, reactions,
//! typing, ordering without gaps or duplicates, a Redis restart mid-run, a node started while
//! Redis is down, and a node killed.
//!
//! The nodes share one SQLite database file (SQLite serializes the two writers, so seqs stay
//! gapless) or, with the `mongo` feature, a real MongoDB-protocol server; what crosses between
//! them live is only Redis pub/sub.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Server, WsClient};
use confab_protocol::{Command, ErrorCode, ServerFrame};
use confab_testkit::RedisServer;
use tokio::task::JoinSet;

struct Cluster {
    redis: RedisServer,
    a: Server,
    b: Server,
    _data: tempfile::TempDir,
    #[cfg(feature = "mongo")]
    _mongo: Option<confab_testkit::MongoServer>,
}

async fn cluster() -> Cluster {
    cluster_with(&[]).await
}

/// Two nodes on one Redis, sharing storage; `store` flags replace the shared SQLite file.
async fn cluster_with(store: &[&str]) -> Cluster {
    let redis = common::redis_servers(1).await.remove(0);
    let data = tempfile::tempdir().expect("tempdir");
    let data_dir = data.path().display().to_string();
    let url = redis.url();
    let mut flags = vec![
        "--data-dir",
        data_dir.as_str(),
        "--shared-data-dir",
        "true",
        "--hub",
        url.as_str(),
    ];
    flags.extend_from_slice(store);
    let a = Server::start_with(&flags).await;
    let b = Server::start_with(&flags).await;
    Cluster {
        redis,
        a,
        b,
        _data: data,
        #[cfg(feature = "mongo")]
        _mongo: None,
    }
}

/// Two nodes on one Redis and one MongoDB-protocol server.
#[cfg(feature = "mongo")]
async fn mongo_cluster() -> Cluster {
    let mongo = tokio::task::spawn_blocking(confab_testkit::MongoServer::start)
        .await
        .expect("join")
        .expect("secantusdb starts (run scripts/install-test-services)");
    let uri = mongo.url();
    let mut cluster = cluster_with(&["--store", uri.as_str(), "--store-database", "cluster"]).await;
    cluster._mongo = Some(mongo);
    cluster
}

impl Cluster {
    /// Waits until `nodes` of the nodes subscribe to the room of `conversation` on Redis.
    async fn subscribed(&self, conversation: &str, nodes: usize) {
        common::wait_for_subscribers(&self.redis.url(), conversation, nodes).await;
    }
}

async fn message_seqs(client: &mut WsClient, count: usize) -> Vec<u64> {
    let mut seqs = Vec::with_capacity(count);
    while seqs.len() < count {
        match client
            .recv_until(|f| matches!(f, ServerFrame::Message(_)))
            .await
        {
            ServerFrame::Message(m) => seqs.push(m.seq),
            _ => unreachable!(),
        }
    }
    seqs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_on_different_nodes_chat_react_and_type() {
    let c = cluster().await;
    let conversation = c.a.create_group("alice", &["bob"]).await;
    let mut alice = c.a.ws("alice").await;
    let mut bob = c.b.ws("bob").await;
    alice.join(&conversation).await;
    bob.join(&conversation).await;
    c.subscribed(&conversation, 2).await;

    let sent = alice
        .send_message(&conversation, "a-1", "hello from node a")
        .await;
    let got = bob.recv_message().await;
    assert_eq!(
        (got.id.as_str(), got.seq, got.body.as_str()),
        (sent.id.as_str(), sent.seq, "hello from node a")
    );

    let reacted = bob
        .expect_ok(Command::React {
            message: sent.id.clone(),
            emoji: "👍".into(),
        })
        .await
        .expect("a new reaction has a seq");
    let frame = alice
        .recv_until(|f| matches!(f, ServerFrame::ReactionAdded { .. }))
        .await;
    assert!(
        matches!(frame, ServerFrame::ReactionAdded { seq, ref user, .. } if seq == reacted && user == "bob")
    );

    // Permissions hold across nodes: bob cannot edit alice's message.
    bob.expect_error(
        Command::Edit {
            message: got.id.clone(),
            body: "not mine".into(),
        },
        ErrorCode::Forbidden,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_and_edits_cross_nodes() {
    let c = cluster().await;
    let conversation = c.a.create_group("alice", &["bob"]).await;
    let mut alice = c.a.ws("alice").await;
    let mut bob = c.b.ws("bob").await;
    alice.join(&conversation).await;
    bob.join(&conversation).await;
    c.subscribed(&conversation, 2).await;
    bob.send_command(Command::Typing {
        conversation: conversation.clone(),
    })
    .await;
    let typing = alice
        .recv_until(|f| matches!(f, ServerFrame::Typing { .. }))
        .await;
    assert!(matches!(typing, ServerFrame::Typing { ref user, .. } if user == "bob"));

    let sent = bob.send_message(&conversation, "b-1", "draft").await;
    bob.expect_ok(Command::Edit {
        message: sent.id.clone(),
        body: "final".into(),
    })
    .await;
    let edited = alice
        .recv_until(|f| matches!(f, ServerFrame::MessageEdited { .. }))
        .await;
    assert!(matches!(edited, ServerFrame::MessageEdited { ref body, .. } if body == "final"));
}

/// `senders` users, alternating between the nodes, each send `per_sender` messages (waiting for
/// each ack) into one conversation while a watcher on each node reads: the acked seqs are
/// exactly 1..=total, and each node delivers every seq once, in order.
/// `patience` is how long any one frame (an ack, the next delivery) may take.
async fn concurrent_senders_keep_order(
    c: &Cluster,
    senders: usize,
    per_sender: usize,
    limit: Duration,
    patience: Duration,
) {
    let total = senders * per_sender;
    let names: Vec<String> = (0..senders).map(|i| format!("s{i}")).collect();
    let mut members: Vec<&str> = names.iter().map(String::as_str).collect();
    members.extend(["watch-a", "watch-b"]);
    let conversation = c.a.create_group("owner", &members).await;
    let mut watch_a = c.a.ws("watch-a").await.patient(patience);
    let mut watch_b = c.b.ws("watch-b").await.patient(patience);
    watch_a.join(&conversation).await;
    watch_b.join(&conversation).await;
    c.subscribed(&conversation, 2).await;

    let mut tasks = JoinSet::new();
    for (i, sender) in names.iter().enumerate() {
        let node = if i % 2 == 0 { &c.a } else { &c.b };
        let mut client = node.ws(sender).await.patient(patience);
        let conversation = conversation.clone();
        let sender = sender.clone();
        tasks.spawn(async move {
            let mut seqs = Vec::with_capacity(per_sender);
            for n in 0..per_sender {
                let acked = client
                    .send_message(&conversation, &format!("{sender}-{n}"), "x")
                    .await;
                seqs.push(acked.seq);
            }
            seqs
        });
    }
    // Both watchers read at once: a watcher left unread would be cut off as a slow consumer.
    let watchers = async {
        tokio::join!(
            message_seqs(&mut watch_a, total),
            message_seqs(&mut watch_b, total)
        )
    };
    let acks = async {
        let mut all = BTreeSet::new();
        while let Some(seqs) = tasks.join_next().await {
            for seq in seqs.expect("sender task") {
                assert!(all.insert(seq), "seq {seq} acked twice");
            }
        }
        all
    };
    let ((seen_a, seen_b), acked) =
        tokio::time::timeout(limit, async { tokio::join!(watchers, acks) })
            .await
            .expect("all messages delivered in time");
    let expected: Vec<u64> = (1..=total as u64).collect();
    assert_eq!(
        acked.into_iter().collect::<Vec<_>>(),
        expected,
        "acked seqs are gapless"
    );
    assert_eq!(seen_a, expected, "node a delivers every seq once, in order");
    assert_eq!(seen_b, expected, "node b delivers every seq once, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_cross_node_messages_arrive_in_order_without_duplicates() {
    let c = cluster().await;
    concurrent_senders_keep_order(
        &c,
        10,
        1000,
        Duration::from_secs(240),
        Duration::from_secs(15),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_mid_run_is_recovered() {
    let c = cluster().await;
    let conversation = c.a.create_group("alice", &["bob"]).await;
    let mut alice = c.a.ws("alice").await;
    let mut bob = c.b.ws("bob").await;
    alice.join(&conversation).await;
    bob.join(&conversation).await;
    c.subscribed(&conversation, 2).await;
    alice.send_message(&conversation, "before", "before").await;
    assert_eq!(bob.recv_message().await.seq, 1);

    let redis = &c.redis;
    tokio::task::block_in_place(|| redis.stop()).expect("stop redis");
    // Local rooms keep working while Redis is down.
    let during = alice
        .send_message(&conversation, "during-1", "during")
        .await;
    assert_eq!(during.seq, 2);
    alice
        .send_message(&conversation, "during-2", "during")
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = c.b.get("/ready", "").await;
        if status == 503 {
            assert_eq!(body["status"], "fanout_unavailable", "{body}");
            assert_eq!(
                body["fanout"],
                serde_json::json!({"shards": 1, "down": [0]}),
                "{body}"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/ready never reported the outage"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        c.b.metrics()
            .await
            .contains("confab_fanout_connected{shard=\"0\"} 0")
    );

    tokio::task::block_in_place(|| redis.restart()).expect("restart redis");
    // Node b resubscribes and its sessions catch up from storage, without reconnecting.
    let seqs = message_seqs(&mut bob, 2).await;
    assert_eq!(seqs, vec![2, 3]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while c.b.get("/ready", "").await.0 != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "/ready never recovered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.subscribed(&conversation, 2).await;
    alice.send_message(&conversation, "after", "after").await;
    assert_eq!(bob.recv_message().await.seq, 4);
}

/// Runs one command on the Redis at `url` (here, to change what it allows).
async fn redis_command(url: &str, args: &[&str]) {
    let client = redis::Client::open(url).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection");
    let mut command = redis::cmd(args[0]);
    for arg in &args[1..] {
        command.arg(*arg);
    }
    let () = command.query_async(&mut conn).await.expect("redis command");
}

/// The sum of a node's series of `metric` whose labels include `label`.
async fn counter_value(server: &Server, metric: &str, label: &str) -> f64 {
    server
        .metrics()
        .await
        .lines()
        .filter(|line| line.starts_with(metric) && line.contains(label))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// A publish that Redis fails (here refused for a moment; a failover or a full queue alike)
/// loses nothing: the event is committed and acked, and once publishing works again the other
/// node is told to catch the room up from storage, so the conversation's last event arrives
/// without a later one to reveal the hole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_whose_publish_failed_still_reaches_the_other_node() {
    let c = cluster().await;
    let conversation = c.a.create_group("alice", &["bob"]).await;
    let mut alice = c.a.ws("alice").await;
    let mut bob = c.b.ws("bob").await;
    alice.join(&conversation).await;
    bob.join(&conversation).await;
    c.subscribed(&conversation, 2).await;
    alice.send_message(&conversation, "first", "first").await;
    assert_eq!(bob.recv_message().await.seq, 1);

    let url = c.redis.url();
    redis_command(&url, &["ACL", "SETUSER", "default", "-publish"]).await;
    let lost = alice.send_message(&conversation, "lost", "lost").await;
    assert_eq!(lost.seq, 2, "committed and acked while Redis refuses it");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while counter_value(
        &c.a,
        "confab_fanout_dropped_total",
        "reason=\"redis_error\"",
    )
    .await
        < 1.0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the publish never failed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        bob.try_recv(Duration::from_millis(300))
            .await
            .is_none_or(|f| !matches!(f, ServerFrame::Message(_))),
        "the refused publish did not cross"
    );
    redis_command(&url, &["ACL", "SETUSER", "default", "+publish"]).await;

    let got = bob.recv_message().await;
    assert_eq!((got.seq, got.id.as_str()), (2, lost.id.as_str()));
    // Counted once the repair's publish returns, which may be after bob has caught up.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while counter_value(&c.a, "confab_fanout_repairs_total", "shard=").await < 1.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the repair was never counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    alice.send_message(&conversation, "after", "after").await;
    assert_eq!(bob.recv_message().await.seq, 3, "once, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_starts_while_redis_is_down_and_turns_ready_when_it_comes() {
    let redis = common::redis_servers(1).await.remove(0);
    tokio::task::block_in_place(|| redis.stop()).expect("stop redis");
    let url = redis.url();
    // The start returns once `/ready` answers 200, which needs Redis. Redis comes 8 s after
    // the node starts: later than the Redis client's own connection retries (~6 s), so a node
    // that gave up on an unreachable Redis at start would have exited by then.
    let comes = async {
        tokio::time::sleep(Duration::from_secs(8)).await;
        tokio::task::block_in_place(|| redis.restart()).expect("start redis");
    };
    let flags = ["--hub", url.as_str()];
    let (node, ()) = tokio::join!(Server::start_with(&flags), comes);
    let log = node.log();
    assert!(log.contains("unreachable at start"), "{log}");
    let (status, body) = node.get("/ready", "").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        node.metrics()
            .await
            .contains("confab_fanout_connected{shard=\"0\"} 1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_loses_nothing_for_clients_that_move() {
    let mut c = cluster().await;
    let conversation = c.a.create_group("alice", &["bob"]).await;
    let mut alice = c.a.ws("alice").await;
    let mut bob = c.b.ws("bob").await;
    alice.join(&conversation).await;
    bob.join(&conversation).await;
    c.subscribed(&conversation, 2).await;
    for n in 0..5 {
        alice
            .send_message(&conversation, &format!("m{n}"), "x")
            .await;
    }
    let seen = message_seqs(&mut alice, 5).await;
    let last_seen = *seen.last().expect("five messages");
    c.a.kill9();
    alice.expect_close(Duration::from_secs(5)).await;

    for n in 5..10 {
        bob.send_message(&conversation, &format!("m{n}"), "x").await;
    }
    // Alice reconnects to the surviving node and resumes.
    let mut alice = c.b.ws("alice").await;
    let (last_seq, recovered) = alice.join_since(&conversation, last_seen).await;
    assert!(recovered);
    assert_eq!(last_seq, 10);
    assert_eq!(message_seqs(&mut alice, 5).await, vec![6, 7, 8, 9, 10]);
}

/// The 10,000 cross-node messages again on a MongoDB-backed cluster (storage shared through a
/// real MongoDB-protocol server, as in production): gapless acked seqs, and every node delivers
/// each message once, in order. secantusdb is slow (~2.5 min here), hence the long limit.
#[cfg(feature = "mongo")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_backed_nodes_keep_order_across_nodes() {
    let c = mongo_cluster().await;
    concurrent_senders_keep_order(
        &c,
        10,
        1000,
        Duration::from_secs(480),
        Duration::from_secs(60),
    )
    .await;
}

// ---- presence across nodes ----

/// Waits (up to `timeout`) for a `presence` frame about `user`; returns whether it said online.
async fn next_presence(client: &mut WsClient, user: &str, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match client.try_recv(left).await {
            Some(ServerFrame::Presence {
                user: ref who,
                online,
                ..
            }) if who == user => return online,
            Some(_) => continue,
            None => panic!("no presence frame about {user} within {timeout:?}"),
        }
    }
}

/// A node that opens a room asks who is there, and each node answers to it alone (on its own
/// channel): a third node learns the users of both others, and the others see its user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_node_learns_who_is_online_on_the_other_two() {
    let c = cluster().await;
    let data_dir = c._data.path().display().to_string();
    let url = c.redis.url();
    let third = Server::start_with(&[
        "--data-dir",
        data_dir.as_str(),
        "--shared-data-dir",
        "true",
        "--hub",
        url.as_str(),
    ])
    .await;
    let conversation = c.a.create_group("alice", &["bob", "carol"]).await;
    let mut alice = c.a.ws_presence("alice").await;
    let mut bob = c.b.ws_presence("bob").await;
    alice.join(&conversation).await;
    bob.join(&conversation).await;
    c.subscribed(&conversation, 2).await;
    assert!(next_presence(&mut alice, "bob", Duration::from_secs(10)).await);

    let mut carol = third.ws_presence("carol").await;
    carol.join(&conversation).await;
    c.subscribed(&conversation, 3).await;
    let mut seen = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen.len() < 2 {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match carol.try_recv(left).await {
            Some(ServerFrame::Presence {
                user, online: true, ..
            }) => {
                seen.insert(user);
            }
            Some(_) => {}
            None => panic!("carol saw only {seen:?} online"),
        }
    }
    assert_eq!(seen, BTreeSet::from(["alice".to_owned(), "bob".to_owned()]));
    assert!(next_presence(&mut alice, "carol", Duration::from_secs(10)).await);
    assert!(next_presence(&mut bob, "carol", Duration::from_secs(10)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_on_different_nodes_see_each_other_online_and_offline() {
    let c = cluster().await;
    let conversation = c.a.create_group("alice", &["bob"]).await;
    let mut alice = c.a.ws_presence("alice").await;
    let mut bob = c.b.ws_presence("bob").await;
    alice.join(&conversation).await;
    c.subscribed(&conversation, 1).await;
    bob.join(&conversation).await;
    assert!(next_presence(&mut alice, "bob", Duration::from_secs(5)).await);
    // Bob's node opened the room after alice's: it learns of her from the snapshot it asks for.
    assert!(next_presence(&mut bob, "alice", Duration::from_secs(5)).await);
    bob.close().await;
    assert!(!next_presence(&mut alice, "bob", Duration::from_secs(5)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_on_both_nodes_stays_online_while_one_device_remains() {
    let c = cluster().await;
    let conversation = c.a.create_group("alice", &["bob"]).await;
    let mut alice = c.a.ws_presence("alice").await;
    let mut bob_a = c.a.ws_presence("bob").await;
    let mut bob_b = c.b.ws_presence("bob").await;
    alice.join(&conversation).await;
    bob_a.join(&conversation).await;
    assert!(next_presence(&mut alice, "bob", Duration::from_secs(5)).await);
    c.subscribed(&conversation, 1).await;
    bob_b.join(&conversation).await;
    c.subscribed(&conversation, 2).await;
    alice.expect_silence(Duration::from_millis(500)).await;
    assert!(matches!(
        bob_a
            .request(Command::Leave {
                conversation: conversation.clone()
            })
            .await,
        ServerFrame::Left { .. }
    ));
    alice.expect_silence(Duration::from_millis(700)).await;
    bob_b.close().await;
    assert!(!next_presence(&mut alice, "bob", Duration::from_secs(5)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_users_go_offline_within_the_expiry() {
    let mut c = cluster().await;
    let conversation = c.a.create_group("alice", &["bob"]).await;
    let mut alice = c.a.ws_presence("alice").await;
    let mut bob = c.b.ws_presence("bob").await;
    alice.join(&conversation).await;
    c.subscribed(&conversation, 1).await;
    bob.join(&conversation).await;
    assert!(next_presence(&mut alice, "bob", Duration::from_secs(5)).await);
    c.b.kill9();
    let started = std::time::Instant::now();
    // Expiry is three missed 2 s beats, checked on the next beat: at most ~8 s.
    assert!(!next_presence(&mut alice, "bob", Duration::from_secs(12)).await);
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "offline too early"
    );
    drop(bob);
}

/// A user's own events cross nodes: a conversation created on node A reaches the user's
/// connections on both nodes, each once.
#[tokio::test]
async fn user_events_reach_the_users_connections_on_every_node() {
    let c = cluster().await;
    let mut on_a = c.a.ws("bob").await;
    let mut on_b = c.b.ws("bob").await;
    let conversation = c.a.create_group("carol", &["bob"]).await;
    for ws in [&mut on_a, &mut on_b] {
        match ws.recv_until(|f| f.user_seq().is_some()).await {
            ServerFrame::ConversationAdded {
                user_seq: 1,
                conversation: id,
                ..
            } => assert_eq!(id, conversation),
            other => panic!("expected conversation_added, got {other:?}"),
        }
        ws.expect_silence(Duration::from_millis(300)).await;
    }
}
