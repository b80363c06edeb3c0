use super::*;

fn tenant() -> Arc<str> {
    "t".into()
}

fn event(conversation: &str, seq: u64) -> Rendered {
    Rendered {
        tenant: "t".into(),
        conversation: conversation.into(),
        seq,
        kind: EventKind::Message,
        subject: None,
        ts: 0,
        frame: format!("{{\"seq\":{seq}}}"),
    }
}

fn subscriber(hub: &Hub, user: &str, capacity: usize) -> (Subscriber, Arc<Outbox>) {
    let outbox = Arc::new(Outbox::new(capacity));
    let sub = Subscriber {
        conn: hub.next_conn_id(),
        user: user.into(),
        outbox: outbox.clone(),
    };
    (sub, outbox)
}

/// A fan-out that records what the hub asks of it.
#[derive(Default)]
struct Recorder {
    calls: std::sync::Mutex<Vec<String>>,
}

impl Recorder {
    fn record(&self, call: String) {
        self.calls.lock().expect("calls").push(call);
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.calls.lock().expect("calls"))
    }
}

impl Fanout for Recorder {
    fn open_room(&self, tenant: &str, conversation: &str) {
        self.record(format!("open {tenant}/{conversation}"));
    }
    fn close_room(&self, tenant: &str, conversation: &str) {
        self.record(format!("close {tenant}/{conversation}"));
    }
    fn publish_event(&self, tenant: &str, event: &Delivered) {
        self.record(format!(
            "event {tenant}/{} {}",
            event.conversation, event.seq
        ));
    }
    fn publish_ephemeral(&self, _: &str, _: &Ephemeral, _: Option<&str>) {}
    fn publish_user(&self, tenant: &str, user: &str) {
        self.record(format!("user {tenant}/{user}"));
    }
    fn publish_presence(&self, tenant: &str, conversation: &str, user: &str, online: bool) {
        self.record(format!("presence {tenant}/{conversation} {user} {online}"));
    }
    fn publish_users(&self, tenant: &str, conversation: &str, users: &[String], to: UsersTo<'_>) {
        self.record(format!("users {tenant}/{conversation} {users:?} {to:?}"));
    }
    fn publish_answers(&self, node: &str, answers: &[RoomUsers<'_>]) {
        let rooms: Vec<String> = answers
            .iter()
            .map(|a| format!("{}/{} {:?}", a.tenant, a.conversation, a.users))
            .collect();
        self.record(format!("answers {node} {rooms:?}"));
    }
    fn links(&self) -> Vec<bool> {
        vec![true]
    }
    fn close(&self) {}
}

#[tokio::test]
async fn a_clustered_hub_owns_its_fanout_and_applies_what_it_hands_back() {
    let recorder = Arc::new(Recorder::default());
    let (inbound, rx) = mpsc::channel(8);
    let hub = Hub::start(Some(Link {
        fanout: recorder.clone(),
        inbound: rx,
    }));
    assert!(hub.fanout().is_some_and(|f| f.is_connected()));
    let (a, rx_a) = subscriber(&hub, "a", 8);
    hub.subscribe(&tenant(), &"c".into(), a);
    hub.publish_rendered(vec![event("c", 1)]);
    // No presence delta yet: the sync sent once the room is followed carries `a`.
    assert_eq!(recorder.take(), ["open t/c", "event t/c 1"]);
    assert_eq!(seq_of(rx_a.try_pop()), Some(1));

    // From the other nodes, in order: an event, a sync request, the room followed.
    let room = || (Arc::<str>::from("t"), Arc::<str>::from("c"));
    let items = [
        Inbound::Event {
            tenant: room().0,
            event: Delivered {
                conversation: room().1,
                seq: 2,
                kind: EventKind::Message,
                subject: None,
                text: Utf8Bytes::from("{}"),
                committed: None,
            },
        },
        Inbound::Users {
            tenant: room().0,
            conversation: room().1,
            node: "n1".into(),
            users: vec!["bob".into()],
            answer: true,
        },
        Inbound::Followed(vec![room()]),
    ];
    for item in items {
        inbound.send(item).await.expect("hub listens");
    }
    let got = tokio::time::timeout(Duration::from_secs(5), rx_a.pop())
        .await
        .expect("event from another node");
    assert_eq!(seq_of(Some(got)), Some(2));
    tokio::time::timeout(Duration::from_secs(5), async {
        while recorder.calls.lock().expect("calls").len() < 2 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the hub answers");
    let mut calls = recorder.take();
    calls.sort();
    assert_eq!(
        calls,
        [r#"answers n1 ["t/c [\"a\"]"]"#, r#"users t/c ["a"] All"#]
    );
    assert_eq!(hub.online("t", "c"), ["a", "bob"]);

    // When the fan-out stops (its sender dropped), the hub's task lets the hub go.
    drop(inbound);
    hub.unsubscribe("t", "c", &rx_a);
    assert_eq!(recorder.take()[..], ["presence t/c a false"]);
    hub.close_lingering(Instant::now() + ROOM_LINGER);
    assert_eq!(recorder.take()[..], ["close t/c"]);
    let weak = Arc::downgrade(&hub);
    drop(hub);
    tokio::time::timeout(Duration::from_secs(5), async {
        while weak.strong_count() > 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("no cycle keeps the hub alive");
}

#[tokio::test]
async fn events_reach_every_subscriber_of_the_room_only() {
    let hub = Hub::new();
    let room: Arc<str> = "c1".into();
    let (a, rx_a) = subscriber(&hub, "a", 8);
    let (b, rx_b) = subscriber(&hub, "b", 8);
    let (other, rx_other) = subscriber(&hub, "c", 8);
    hub.subscribe(&tenant(), &room, a);
    hub.subscribe(&tenant(), &room, b);
    hub.subscribe(&tenant(), &"c2".into(), other);
    hub.publish_rendered(vec![event("c1", 1), event("c1", 2)]);
    for rx in [&rx_a, &rx_b] {
        for seq in 1..=2 {
            match rx.try_pop() {
                Some(Outbound::Event(d)) => assert_eq!(d.seq, seq),
                other => panic!("expected event {seq}, got {other:?}"),
            }
        }
    }
    assert!(rx_other.try_pop().is_none());
}

#[tokio::test]
async fn a_full_queue_kicks_only_that_subscriber() {
    let hub = Hub::new();
    let room: Arc<str> = "c".into();
    let (slow, slow_outbox) = subscriber(&hub, "slow", 1);
    let (fast, rx_fast) = subscriber(&hub, "fast", 16);
    hub.subscribe(&tenant(), &room, slow);
    hub.subscribe(&tenant(), &room, fast);
    hub.publish_rendered((1..=5).map(|s| event("c", s)).collect());
    tokio::time::timeout(std::time::Duration::from_secs(1), slow_outbox.kicked())
        .await
        .expect("slow consumer kicked");
    assert!(!rx_fast.is_kicked());
    let mut seqs = vec![];
    while let Some(Outbound::Event(d)) = rx_fast.try_pop() {
        seqs.push(d.seq);
    }
    assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
}

#[tokio::test]
async fn rooms_of_two_tenants_never_meet_under_one_conversation_id() {
    let hub = Hub::new();
    let room: Arc<str> = "c".into();
    let (a, rx_a) = subscriber(&hub, "a", 8);
    let (b, rx_b) = subscriber(&hub, "b", 8);
    a.outbox.enable_presence();
    hub.subscribe(&tenant(), &room, a);
    hub.subscribe(&"other".into(), &room, b);
    assert_eq!(hub.room_count(), 2);
    // No presence crosses, nor do events or ephemeral frames.
    assert!(rx_a.try_pop().is_none());
    hub.publish_rendered(vec![event("c", 1)]);
    hub.publish_ephemeral("other", "c", Utf8Bytes::from("typing"), None);
    assert_eq!(seq_of(rx_a.try_pop()), Some(1));
    assert!(rx_a.try_pop().is_none());
    assert!(matches!(rx_b.try_pop(), Some(Outbound::Ephemeral(_))));
    assert!(rx_b.try_pop().is_none());
    assert_eq!(hub.online("t", "c"), ["a"]);
    assert_eq!(hub.online("other", "c"), ["b"]);
    // Leaving one tenant's room does not touch the other's.
    hub.unsubscribe("t", "c", &rx_b);
    assert_eq!(hub.room_count(), 2);
    hub.unsubscribe("other", "c", &rx_b);
    assert_eq!(hub.room_count(), 1);
    assert_eq!(hub.online("other", "c"), Vec::<String>::new());
}

fn presence_of(rx: &Outbox) -> Option<String> {
    match rx.try_pop() {
        Some(Outbound::Ephemeral(frame)) => Some(frame.text.to_string()),
        Some(other) => panic!("expected a presence frame, got {other:?}"),
        None => None,
    }
}

#[tokio::test]
async fn presence_is_the_union_of_local_connections_and_remote_nodes() {
    let hub = Hub::new();
    let room: Arc<str> = "c".into();
    let (watcher, rx) = subscriber(&hub, "w", 16);
    watcher.outbox.enable_presence();
    let (bob, rx_bob) = subscriber(&hub, "bob", 16);
    hub.subscribe(&tenant(), &room, watcher);
    hub.subscribe(&tenant(), &room, bob);
    let online = presence_of(&rx).expect("bob online");
    assert!(online.contains(r#""user":"bob","online":true"#), "{online}");

    // Bob is also on node n1: leaving here keeps him online.
    hub.remote_presence("t", "c", "n1", "bob", true);
    hub.unsubscribe("t", "c", &rx_bob);
    assert_eq!(presence_of(&rx), None);
    assert_eq!(hub.online("t", "c"), vec!["bob", "w"]);

    // Carol arrives by snapshot from n2; n2 then goes silent.
    hub.remote_snapshot("t", "c", "n2", &["carol".to_owned()]);
    assert!(
        presence_of(&rx)
            .expect("carol")
            .contains(r#""carol","online":true"#)
    );
    hub.remote_node_gone("n2");
    assert!(
        presence_of(&rx)
            .expect("carol")
            .contains(r#""carol","online":false"#)
    );
    // A snapshot from n1 without bob takes him offline.
    hub.remote_snapshot("t", "c", "n1", &[]);
    assert!(
        presence_of(&rx)
            .expect("bob")
            .contains(r#""bob","online":false"#)
    );
    assert_eq!(hub.online("t", "c"), vec!["w"]);
    assert_eq!(
        hub.with_local_online("t", "c", |u| u),
        Some(vec!["w".to_owned()])
    );
    assert_eq!(hub.with_local_online("t", "elsewhere", |u| u), None);
}

#[tokio::test]
async fn ephemeral_frames_skip_the_sender_and_rooms_empty_out() {
    let hub = Hub::new();
    let room: Arc<str> = "c".into();
    let (a, rx_a) = subscriber(&hub, "a", 4);
    let (b, rx_b) = subscriber(&hub, "b", 4);
    hub.subscribe(&tenant(), &room, a);
    hub.subscribe(&tenant(), &room, b);
    hub.publish_ephemeral("t", "c", Utf8Bytes::from("typing"), Some("a"));
    assert!(rx_a.try_pop().is_none());
    assert!(matches!(rx_b.try_pop(), Some(Outbound::Ephemeral(_))));
    hub.unsubscribe("t", "c", &rx_a);
    assert_eq!(hub.room_count(), 1);
    hub.unsubscribe("t", "c", &rx_b);
    assert_eq!(hub.room_count(), 0);
}

fn seq_of(item: Option<Outbound>) -> Option<u64> {
    match item {
        Some(Outbound::Event(event)) => Some(event.seq),
        _ => None,
    }
}

/// Waits on `outbox` in a task of its own: when it was woken, and with what.
async fn wait_on(
    outbox: &Arc<Outbox>,
) -> tokio::task::JoinHandle<(tokio::time::Instant, Outbound)> {
    let waiting = outbox.clone();
    let waiter = tokio::spawn(async move {
        let item = waiting.pop().await;
        (tokio::time::Instant::now(), item)
    });
    tokio::task::yield_now().await;
    waiter
}

/// The waiter's wake, failing (not hanging, on the paused clock) if it never comes.
async fn woken(
    waiter: tokio::task::JoinHandle<(tokio::time::Instant, Outbound)>,
) -> (tokio::time::Instant, Option<u64>) {
    let (at, item) = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the session is woken")
        .expect("waiter");
    (at, seq_of(Some(item)))
}

#[tokio::test(start_paused = true)]
async fn a_write_delay_holds_busy_sessions_until_the_tick() {
    let hub = Hub::new();
    let shutdown = CancellationToken::new();
    let delay = Duration::from_millis(100);
    hub.start_write_delay(WriteDelay::Fixed(delay), TARGET, shutdown.clone());
    let room: Arc<str> = "c".into();
    let (a, rx_a) = subscriber(&hub, "a", 16);
    let (b, rx_b) = subscriber(&hub, "b", 16);
    hub.subscribe(&tenant(), &room, a);
    hub.subscribe(&tenant(), &room, b);
    let start = tokio::time::Instant::now();
    let at = |ms: u64| start + Duration::from_millis(ms);

    // Quiet connections: the first delivery wakes them at once.
    let waiter = wait_on(&rx_a).await;
    hub.publish_rendered(vec![event("c", 1)]);
    assert_eq!(woken(waiter).await, (at(0), Some(1)));
    assert_eq!(seq_of(rx_b.try_pop()), Some(1));

    // Busy now: the next deliveries wait for the tick, each session listed once.
    let waiter = wait_on(&rx_a).await;
    hub.publish_rendered(vec![event("c", 2), event("c", 3)]);
    assert_eq!(hub.wakes().map(WakeBatch::len), Some(2));
    assert_eq!(woken(waiter).await, (at(100), Some(2)));
    assert_eq!(seq_of(rx_a.try_pop()), Some(3));
    assert_eq!(
        (0..2).map(|_| seq_of(rx_b.try_pop())).collect::<Vec<_>>(),
        [Some(2), Some(3)]
    );
    assert_eq!(hub.wakes().map(WakeBatch::len), Some(0));

    // Woken by that tick, so still busy: the next tick, not this one again.
    let waiter = wait_on(&rx_a).await;
    hub.publish_rendered(vec![event("c", 4)]);
    assert_eq!(woken(waiter).await, (at(200), Some(4)));

    // Quiet for a whole delay again: at once.
    tokio::time::sleep_until(at(350)).await;
    let waiter = wait_on(&rx_a).await;
    hub.publish_rendered(vec![event("c", 5)]);
    assert_eq!(woken(waiter).await, (at(350), Some(5)));

    // After shutdown the tick is gone: even a busy session is woken at once.
    shutdown.cancel();
    tokio::task::yield_now().await;
    let waiter = wait_on(&rx_a).await;
    hub.publish_rendered(vec![event("c", 6)]);
    assert_eq!(woken(waiter).await, (at(350), Some(6)));
}

/// `write_delay_target` in these tests.
const TARGET: Duration = Duration::from_millis(20);

#[tokio::test(start_paused = true)]
async fn auto_write_delay_holds_back_a_busy_room_and_lets_a_quiet_one_be() {
    let hub = Hub::new();
    let shutdown = CancellationToken::new();
    hub.start_write_delay(WriteDelay::Auto, TARGET, shutdown.clone());
    let delay = || hub.wakes().map(WakeBatch::delay);
    assert_eq!(delay(), Some(Duration::ZERO));
    let room: Arc<str> = "c".into();
    // Eight connections: enough pushes every second for the batch to judge.
    let subscribers: Vec<_> = (0..8)
        .map(|n| {
            let (sub, rx) = subscriber(&hub, &format!("u{n}"), 1024);
            hub.subscribe(&tenant(), &room, sub);
            rx
        })
        .collect();
    let mut seq = 0;
    let mut send = |count: usize| {
        let events: Vec<_> = (0..count)
            .map(|_| {
                seq += 1;
                event("c", seq)
            })
            .collect();
        hub.publish_rendered(events);
    };
    // A message every 4 ms: a 20 ms delay shares each wake-up five ways. After a second the
    // batch holds back.
    for _ in 0..300 {
        send(1);
        tokio::time::sleep(Duration::from_millis(4)).await;
    }
    assert_eq!(delay(), Some(TARGET));
    let mut received: Vec<Vec<u64>> = vec![Vec::new(); subscribers.len()];
    let drain = |received: &mut Vec<Vec<u64>>| {
        for (rx, seqs) in subscribers.iter().zip(received.iter_mut()) {
            seqs.extend(std::iter::from_fn(|| rx.try_pop()).filter_map(|item| seq_of(Some(item))));
        }
    };
    drain(&mut received);
    // Held back: the next delivery (to a connection woken a moment ago) waits for a tick,
    // at most the target.
    send(1);
    drain(&mut received);
    let waiter = wait_on(&subscribers[0]).await;
    let sent = tokio::time::Instant::now();
    send(1);
    let (at, got) = woken(waiter).await;
    assert!(at - sent <= TARGET, "held {:?}", at - sent);
    received[0].extend(got);
    // One message every 100 ms: nothing to share, so it stops holding back.
    for _ in 0..25 {
        send(1);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(delay(), Some(Duration::ZERO));
    // Every delivery arrived, once and in order.
    drain(&mut received);
    let all: Vec<u64> = (1..=seq).collect();
    for seqs in &received {
        assert_eq!(seqs, &all);
    }
    shutdown.cancel();
}

#[tokio::test]
async fn without_a_write_delay_nothing_is_held_back() {
    let hub = Hub::new();
    hub.start_write_delay(
        WriteDelay::Fixed(Duration::ZERO),
        TARGET,
        CancellationToken::new(),
    );
    assert!(hub.wakes().is_none());
    let room: Arc<str> = "c".into();
    let (a, rx_a) = subscriber(&hub, "a", 4);
    hub.subscribe(&tenant(), &room, a);
    let waiter = wait_on(&rx_a).await;
    hub.publish_rendered(vec![event("c", 1)]);
    assert_eq!(woken(waiter).await.1, Some(1));
}

#[tokio::test]
async fn shutdown_reaches_every_registered_session_and_no_other() {
    let hub = Hub::new();
    let (a1, out_a1) = subscriber(&hub, "a", 4);
    let (a2, out_a2) = subscriber(&hub, "a", 4);
    let (b, out_b) = subscriber(&hub, "b", 4);
    let (gone, out_gone) = subscriber(&hub, "c", 4);
    let gone_conn = gone.conn;
    for sub in [a1, a2, b, gone] {
        hub.register_user("t", sub);
    }
    hub.unregister_user("t", "c", gone_conn);
    assert_eq!(hub.shut_down_sessions(), 3);
    for outbox in [&out_a1, &out_a2, &out_b] {
        assert_eq!(outbox.ended().await, crate::outbox::Ended::Shutdown);
    }
    let unregistered = tokio::time::timeout(std::time::Duration::from_millis(50), out_gone.ended());
    assert!(unregistered.await.is_err(), "a session gone is not told");
}

/// After an outage of one fan-out shard, only the rooms that shard carries catch up.
#[tokio::test]
async fn a_resync_reaches_only_the_rooms_it_names() {
    let hub = Hub::start(None);
    let (a, rx_a) = subscriber(&hub, "a", 8);
    let (b, rx_b) = subscriber(&hub, "b", 8);
    hub.subscribe(&tenant(), &"c".into(), a);
    hub.subscribe(&tenant(), &"d".into(), b);
    let drain = |outbox: &Outbox| std::iter::from_fn(|| outbox.try_pop()).collect::<Vec<_>>();
    drain(&rx_a);
    drain(&rx_b);
    hub.apply(Inbound::Resync(vec![
        (tenant(), "c".into()),
        (tenant(), "not-open-here".into()),
    ]));
    let resyncs = |items: Vec<Outbound>| -> Vec<String> {
        items
            .into_iter()
            .filter_map(|item| match item {
                Outbound::Resync(conversation) => Some(conversation.to_string()),
                _ => None,
            })
            .collect()
    };
    assert_eq!(resyncs(drain(&rx_a)), ["c"]);
    assert!(resyncs(drain(&rx_b)).is_empty());
    // Another node's lost events of one room, and a room just followed (whose joins read
    // storage before the subscription took effect): only that room's sessions catch up.
    hub.apply(Inbound::Missed(vec![(tenant(), "d".into())]));
    assert!(resyncs(drain(&rx_a)).is_empty());
    assert_eq!(resyncs(drain(&rx_b)), ["d"]);
    hub.apply(Inbound::Followed(vec![(tenant(), "c".into())]));
    assert_eq!(resyncs(drain(&rx_a)), ["c"]);
    assert!(resyncs(drain(&rx_b)).is_empty());
}

/// Clustered, a room outlives its last local subscriber by [`ROOM_LINGER`]: a member back
/// within it finds the room still followed and the other nodes' users still known (no new
/// subscription, no sync); one left alone that long is closed.
#[tokio::test]
async fn a_clustered_room_lingers_after_its_last_member_leaves() {
    let recorder = Arc::new(Recorder::default());
    let (inbound, rx) = mpsc::channel(8);
    let hub = Hub::start(Some(Link {
        fanout: recorder.clone(),
        inbound: rx,
    }));
    let (a, rx_a) = subscriber(&hub, "a", 8);
    hub.subscribe(&tenant(), &"c".into(), a.clone());
    hub.apply(Inbound::Followed(vec![(tenant(), "c".into())]));
    inbound
        .send(Inbound::Users {
            tenant: tenant(),
            conversation: "c".into(),
            node: "n1".into(),
            users: vec!["bob".into()],
            answer: false,
        })
        .await
        .expect("hub listens");
    tokio::time::timeout(Duration::from_secs(5), async {
        while hub.online("t", "c").len() < 2 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("bob's node reported him");
    recorder.take();

    let left = Instant::now();
    hub.unsubscribe("t", "c", &rx_a);
    assert_eq!(recorder.take(), ["presence t/c a false"]);
    hub.close_lingering(left + ROOM_LINGER / 2);
    assert_eq!(hub.room_count(), 1, "still lingering");
    hub.subscribe(&tenant(), &"c".into(), a.clone());
    // (Its presence flip may be coalesced: three within a second.)
    let calls = recorder.take();
    assert!(
        calls.iter().all(|c| c.starts_with("presence t/c a")),
        "no new open, no sync: {calls:?}"
    );
    assert_eq!(hub.online("t", "c"), ["a", "bob"]);
    // Its old lingering entry does not close the room it is back in.
    hub.close_lingering(left + ROOM_LINGER * 2);
    assert_eq!(hub.room_count(), 1);
    assert!(recorder.take().is_empty());

    // Left again: closed once it has lingered its full time since this leave.
    hub.unsubscribe("t", "c", &rx_a);
    let left = Instant::now();
    recorder.take();
    hub.close_lingering(left + ROOM_LINGER / 2);
    assert_eq!(hub.room_count(), 1);
    hub.close_lingering(left + ROOM_LINGER);
    assert!(recorder.take().contains(&"close t/c".to_owned()));
    assert_eq!(hub.room_count(), 0);
}

/// A single node has no subscription to keep: its rooms close as they empty.
#[test]
fn a_single_nodes_room_closes_at_once() {
    let hub = Hub::new();
    let (a, rx) = subscriber(&hub, "a", 8);
    hub.subscribe(&tenant(), &"c".into(), a);
    hub.unsubscribe("t", "c", &rx);
    assert_eq!(hub.room_count(), 0);
}

/// A room's users go to the other nodes in the sync sent once the fan-out follows it; a
/// presence delta before that would be a second message to every node of the room for the
/// same news. After the sync, every change goes as a delta.
#[test]
fn presence_goes_out_as_deltas_only_once_the_room_was_synced() {
    let recorder = Arc::new(Recorder::default());
    let hub = Hub {
        fanout: Some(recorder.clone()),
        ..Hub::default()
    };
    let (a, rx_a) = subscriber(&hub, "a", 8);
    let (b, rx_b) = subscriber(&hub, "b", 8);
    hub.subscribe(&tenant(), &"c".into(), a);
    hub.subscribe(&tenant(), &"c".into(), b);
    hub.unsubscribe("t", "c", &rx_b);
    assert_eq!(recorder.take(), ["open t/c"], "no delta before the sync");
    hub.apply(Inbound::Followed(vec![(tenant(), "c".into())]));
    assert_eq!(
        recorder.take(),
        [r#"users t/c ["a"] All"#],
        "the sync says who is here now"
    );
    let (c, _rx_c) = subscriber(&hub, "c", 8);
    hub.subscribe(&tenant(), &"c".into(), c);
    hub.unsubscribe("t", "c", &rx_a);
    assert_eq!(
        recorder.take(),
        ["presence t/c c true", "presence t/c a false"]
    );
}

/// The syncs of one inbound batch are answered together: one call per asking node with all its
/// rooms open here (each once), none for rooms not open here.
#[test]
fn syncs_of_one_batch_are_answered_once_per_asking_node() {
    let recorder = Arc::new(Recorder::default());
    let hub = Hub {
        fanout: Some(recorder.clone()),
        ..Hub::default()
    };
    for (user, conversation) in [("a", "c"), ("b", "d")] {
        let (sub, _) = subscriber(&hub, user, 8);
        hub.subscribe(&tenant(), &conversation.into(), sub);
    }
    recorder.take();
    let sync = |node: &str, conversation: &str| Inbound::Users {
        tenant: tenant(),
        conversation: conversation.into(),
        node: node.into(),
        users: vec![format!("{node}-user")],
        answer: true,
    };
    let mut asked = Asked::default();
    for item in [
        sync("n1", "c"),
        sync("n2", "c"),
        sync("n1", "d"),
        sync("n1", "c"),
        sync("n1", "not-open-here"),
    ] {
        hub.apply_one(item, &mut asked);
    }
    assert!(recorder.take().is_empty(), "answered at the batch's end");
    hub.answer(asked);
    assert_eq!(
        recorder.take(),
        [
            r#"answers n1 ["t/c [\"a\"]", "t/d [\"b\"]"]"#,
            r#"answers n2 ["t/c [\"a\"]"]"#,
        ]
    );
    assert_eq!(hub.online("t", "c"), ["a", "n1-user", "n2-user"]);
}
