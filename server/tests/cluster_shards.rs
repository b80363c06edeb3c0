//! Two Confab nodes whose fan-out is sharded over three real `redis-server`s: conversations
//! spread over the shards and cross nodes on each, presence crosses nodes, and losing one shard
//! stops cross-node delivery only for its conversations, which catch up (live sessions and
//! `since` resumes alike, nothing lost or doubled) once it is back on the same port. Nodes start
//! while a shard is down, and take it up when it comes, with the same catch-up.
//!
//! The nodes share one SQLite file; what crosses between them live is only Redis pub/sub.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Server, WsClient};
use confab_protocol::ServerFrame;
use confab_testkit::RedisServer;
use serde_json::json;

const SHARDS: usize = 3;

struct Cluster {
    shards: Vec<RedisServer>,
    a: Server,
    b: Server,
    _data: tempfile::TempDir,
}

/// Two nodes on three Redis shards, sharing storage.
async fn cluster() -> Cluster {
    cluster_on(common::redis_servers(SHARDS).await).await
}

/// Two nodes on `shards` (running or not), sharing storage.
async fn cluster_on(shards: Vec<RedisServer>) -> Cluster {
    let data = tempfile::tempdir().expect("tempdir");
    let data_dir = data.path().display().to_string();
    let hub = common::hub_of(&shards);
    let flags = [
        "--data-dir",
        data_dir.as_str(),
        "--shared-data-dir",
        "true",
        "--hub",
        hub.as_str(),
    ];
    let a = Server::start_with(&flags).await;
    let b = Server::start_with(&flags).await;
    Cluster {
        shards,
        a,
        b,
        _data: data,
    }
}

impl Cluster {
    /// Conversations of alice and bob, at least `per_shard` on every shard; keyed by shard.
    async fn conversations(&self, per_shard: usize) -> BTreeMap<usize, Vec<String>> {
        let mut by_shard: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        for _ in 0..200 {
            if (0..SHARDS).all(|s| by_shard.get(&s).is_some_and(|c| c.len() >= per_shard)) {
                return by_shard;
            }
            let conversation = self.a.create_group("alice", &["bob"]).await;
            let shard = common::shard_of(&conversation, SHARDS);
            by_shard.entry(shard).or_default().push(conversation);
        }
        panic!("200 conversations and still a shard without {per_shard}: {by_shard:?}");
    }

    /// Waits until both nodes subscribe to the room of `conversation` on its shard.
    async fn subscribed(&self, conversation: &str) {
        self.subscribed_by(conversation, 2).await;
    }

    /// Waits until `nodes` nodes subscribe to the room of `conversation` on its shard.
    async fn subscribed_by(&self, conversation: &str, nodes: usize) {
        let shard = &self.shards[common::shard_of(conversation, SHARDS)];
        common::wait_for_subscribers(&shard.url(), conversation, nodes).await;
    }
}

/// The next `count` messages of `conversation` (other frames skipped): their seqs, in order.
async fn seqs_in(client: &mut WsClient, conversation: &str, count: usize) -> Vec<u64> {
    let mut seqs = Vec::with_capacity(count);
    while seqs.len() < count {
        let frame = client
            .recv_until(|f| matches!(f, ServerFrame::Message(m) if m.conversation == conversation))
            .await;
        if let ServerFrame::Message(message) = frame {
            seqs.push(message.seq);
        }
    }
    seqs
}

/// Waits (up to `timeout`) for a `presence` frame about `user` in `conversation`; returns
/// whether it said online.
async fn next_presence(
    client: &mut WsClient,
    conversation: &str,
    user: &str,
    timeout: Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match client.try_recv(left).await {
            Some(ServerFrame::Presence {
                conversation: ref c,
                user: ref who,
                online,
            }) if c == conversation && who == user => return online,
            Some(_) => continue,
            None => panic!("no presence of {user} in {conversation} within {timeout:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_on_every_shard_cross_nodes_with_presence() {
    let c = cluster().await;
    let by_shard = c.conversations(2).await;
    let all: Vec<&String> = by_shard.values().flatten().collect();
    let mut alice = c.a.ws_presence("alice").await;
    let mut bob = c.b.ws_presence("bob").await;
    for conversation in &all {
        alice.join(conversation).await;
        c.subscribed_by(conversation, 1).await;
        bob.join(conversation).await;
        // Bob's node opened the room after alice's: each sees the other online.
        assert!(next_presence(&mut alice, conversation, "bob", Duration::from_secs(5)).await);
        assert!(next_presence(&mut bob, conversation, "alice", Duration::from_secs(5)).await);
    }
    for conversation in &all {
        c.subscribed(conversation).await;
    }
    // Each room's channel is on its shard's Redis only, and every shard carries some.
    for (shard, redis) in c.shards.iter().enumerate() {
        let mut expected: Vec<String> = by_shard[&shard]
            .iter()
            .map(|conversation| format!("confab:{}:{conversation}", common::TENANT))
            .collect();
        expected.sort();
        assert_eq!(
            common::room_channels(&redis.url()).await,
            expected,
            "shard {shard}"
        );
    }

    // Each side sees the other's message, after its own.
    for (n, conversation) in all.iter().enumerate() {
        let from_a = alice
            .send_message(conversation, &format!("a-{n}"), "from a")
            .await;
        assert_eq!(seqs_in(&mut bob, conversation, 1).await, [from_a.seq]);
        let from_b = bob
            .send_message(conversation, &format!("b-{n}"), "from b")
            .await;
        assert_eq!(
            seqs_in(&mut alice, conversation, 2).await,
            [from_a.seq, from_b.seq]
        );
    }
    let published = |metrics: &str, shard: usize| {
        let name = format!("confab_fanout_published_total{{shard=\"{shard}\"}}");
        common::metric_value(metrics, &name).unwrap_or(0.0)
    };
    let metrics = c.a.metrics().await;
    for shard in 0..SHARDS {
        assert!(
            published(&metrics, shard) >= 2.0,
            "shard {shard}: {metrics}"
        );
    }

    // Offline crosses nodes too, on each shard (in whatever order the shards deliver it).
    bob.close().await;
    let mut offline = std::collections::BTreeSet::new();
    while offline.len() < all.len() {
        match alice.try_recv(Duration::from_secs(5)).await {
            Some(ServerFrame::Presence {
                conversation,
                user,
                online: false,
            }) if user == "bob" => {
                offline.insert(conversation);
            }
            Some(_) => continue,
            None => panic!("bob went offline in {offline:?} only, of {all:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_shard_stops_only_its_conversations_and_they_catch_up_when_it_returns() {
    let c = cluster().await;
    let by_shard = c.conversations(1).await;
    let lost_shard = 1;
    let lost = by_shard[&lost_shard][0].clone();
    let kept: Vec<String> = [0, 2].iter().map(|s| by_shard[s][0].clone()).collect();
    let patience = Duration::from_secs(15);
    let mut alice = c.a.ws("alice").await.patient(patience);
    let mut bob = c.b.ws("bob").await.patient(patience);
    for conversation in kept.iter().chain([&lost]) {
        alice.join(conversation).await;
        bob.join(conversation).await;
        c.subscribed(conversation).await;
    }
    let mut acked = vec![alice.send_message(&lost, "before", "before").await.seq];
    assert_eq!(seqs_in(&mut bob, &lost, 1).await, acked);
    // Alice's node knows bob (on node b) is online in a kept conversation.
    let mut alice_presence = c.a.ws_presence("alice").await;
    let join = confab_protocol::Command::Join {
        conversation: kept[0].clone(),
        since: None,
    };
    match alice_presence.request(join).await {
        ServerFrame::Joined { online, .. } => assert!(online.contains(&"bob".to_owned())),
        other => panic!("join: {other:?}"),
    }

    let shard = &c.shards[lost_shard];
    tokio::task::block_in_place(|| shard.stop()).expect("stop one shard");
    // Degraded, not unready: the other shards still cross nodes.
    for node in [&c.a, &c.b] {
        ready_is(node, 200, json!({"shards": 3, "down": [lost_shard]})).await;
    }
    let metrics = c.b.metrics().await;
    assert!(
        metrics.contains(&format!(
            "confab_fanout_connected{{shard=\"{lost_shard}\"}} 0"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("confab_fanout_connected{shard=\"0\"} 1"),
        "{metrics}"
    );

    // The lost shard's conversation still takes messages (stored and acked on node a), but
    // they no longer reach node b live.
    for n in 0..3 {
        let sent = alice
            .send_message(&lost, &format!("during-{n}"), "during")
            .await;
        acked.push(sent.seq);
    }
    // The kept shards' conversations keep crossing nodes meanwhile, both ways.
    for (n, conversation) in kept.iter().enumerate() {
        let from_a = alice
            .send_message(conversation, &format!("kept-a-{n}"), "kept")
            .await;
        assert_eq!(seqs_in(&mut bob, conversation, 1).await, [from_a.seq]);
        let from_b = bob
            .send_message(conversation, &format!("kept-b-{n}"), "kept")
            .await;
        assert_eq!(
            seqs_in(&mut alice, conversation, 2).await,
            [from_a.seq, from_b.seq]
        );
    }
    // Beats still reach the other node over the kept shards, so bob's node stays alive to
    // alice's: past the peer expiry (6 s), bob is still online in a kept conversation.
    no_frame_matching(&mut alice_presence, Duration::from_secs(8), |frame| {
        matches!(frame, ServerFrame::Presence { online: false, .. })
    })
    .await;
    no_frame_matching(
        &mut bob,
        Duration::from_millis(100),
        |frame| matches!(frame, ServerFrame::Message(m) if m.conversation == lost),
    )
    .await;

    tokio::task::block_in_place(|| shard.restart()).expect("restart the shard on its port");
    heals_once_in_order(&c, &mut alice, &mut bob, &lost, acked, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_start_while_a_shard_is_down_and_take_it_up_when_it_comes() {
    let shards = common::redis_servers(SHARDS).await;
    let down = 1;
    tokio::task::block_in_place(|| shards[down].stop()).expect("stop one shard");
    // Both nodes start (and are ready: the other shards cross nodes) with the shard down.
    let c = cluster_on(shards).await;
    for node in [&c.a, &c.b] {
        ready_is(node, 200, json!({"shards": 3, "down": [down]})).await;
        let metrics = node.metrics().await;
        let gauge =
            |shard: usize, up: u8| format!("confab_fanout_connected{{shard=\"{shard}\"}} {up}");
        assert!(metrics.contains(&gauge(down, 0)), "{metrics}");
        assert!(
            metrics.contains(&gauge(0, 1)) && metrics.contains(&gauge(2, 1)),
            "{metrics}"
        );
    }
    let by_shard = c.conversations(1).await;
    let lost = by_shard[&down][0].clone();
    let kept: Vec<String> = [0, 2].iter().map(|s| by_shard[s][0].clone()).collect();
    let patience = Duration::from_secs(15);
    let mut alice = c.a.ws("alice").await.patient(patience);
    let mut bob = c.b.ws("bob").await.patient(patience);
    for conversation in kept.iter().chain([&lost]) {
        alice.join(conversation).await;
        bob.join(conversation).await;
    }
    // The other shards' conversations cross nodes, both ways.
    for (n, conversation) in kept.iter().enumerate() {
        c.subscribed(conversation).await;
        let from_a = alice
            .send_message(conversation, &format!("a-{n}"), "a")
            .await;
        assert_eq!(seqs_in(&mut bob, conversation, 1).await, [from_a.seq]);
        let from_b = bob.send_message(conversation, &format!("b-{n}"), "b").await;
        assert_eq!(
            seqs_in(&mut alice, conversation, 2).await,
            [from_a.seq, from_b.seq]
        );
    }
    // The down shard's conversation takes messages (stored, acked, delivered on node a) that
    // do not reach node b yet.
    let mut acked = Vec::new();
    for n in 0..3 {
        acked.push(
            alice
                .send_message(&lost, &format!("early-{n}"), "early")
                .await
                .seq,
        );
    }
    no_frame_matching(
        &mut bob,
        Duration::from_millis(300),
        |frame| matches!(frame, ServerFrame::Message(m) if m.conversation == lost),
    )
    .await;

    let shard = &c.shards[down];
    tokio::task::block_in_place(|| shard.restart()).expect("start the shard");
    // Bob's live session gets the three early messages, then the conversation crosses nodes.
    heals_once_in_order(&c, &mut alice, &mut bob, &lost, acked, 0).await;
}

/// After `lost`'s shard is back: both nodes turn ready with every shard up; bob's live session
/// (on node b), which has seen the first `bob_has` of alice's `acked` messages, catches up from
/// storage with the others, once and in order; new messages cross both ways; alice saw
/// everything once, in order; a `since` resume on node b replays everything after the first
/// message, once.
async fn heals_once_in_order(
    c: &Cluster,
    alice: &mut WsClient,
    bob: &mut WsClient,
    lost: &str,
    mut acked: Vec<u64>,
    bob_has: usize,
) {
    for node in [&c.a, &c.b] {
        ready_is(node, 200, serde_json::Value::Null).await;
    }
    let missed = &acked[bob_has..];
    assert_eq!(seqs_in(bob, lost, missed.len()).await, missed);
    c.subscribed(lost).await;
    let after = alice.send_message(lost, "after-a", "after").await;
    acked.push(after.seq);
    assert_eq!(seqs_in(bob, lost, 1).await, [after.seq]);
    let after = bob.send_message(lost, "after-b", "after").await;
    acked.push(after.seq);
    // Alice saw every message of the conversation once, in order, her own included.
    assert_eq!(seqs_in(alice, lost, acked.len()).await, acked);
    let mut expected: Vec<u64> = (1..=acked.len() as u64).collect();
    assert_eq!(acked, expected, "acked seqs are gapless");

    // A client resuming with `since` on node b sees everything acked after it, once.
    let mut resumed = c.b.ws("bob").await;
    let (last_seq, recovered) = resumed.join_since(lost, 1).await;
    assert!(recovered);
    assert_eq!(Some(&last_seq), acked.last());
    expected.remove(0);
    assert_eq!(seqs_in(&mut resumed, lost, expected.len()).await, expected);
    no_frame_matching(&mut resumed, Duration::from_millis(300), |frame| {
        matches!(frame, ServerFrame::Message(_))
    })
    .await;
}

/// Waits (up to 15 s) until `node`'s `/ready` answers `status` with `fanout` (null: absent).
async fn ready_is(node: &Server, status: u16, fanout: serde_json::Value) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (got, body) = node.get("/ready", "").await;
        if got == status && body["fanout"] == fanout {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/ready still answers {got} {body}, expected {status} with fanout {fanout}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads `client` for `duration`: no frame may match `unwanted`.
async fn no_frame_matching(
    client: &mut WsClient,
    duration: Duration,
    unwanted: impl Fn(&ServerFrame) -> bool,
) {
    let deadline = tokio::time::Instant::now() + duration;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return;
        }
        match client.try_recv(left).await {
            Some(frame) => assert!(!unwanted(&frame), "unexpected {frame:?}"),
            None => return,
        }
    }
}
