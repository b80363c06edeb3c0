use super::connect::reconnect_policy;
use super::shard::Changes;
use super::*;
use confab_protocol::EventKind;

#[test]
fn reconnect_delays_grow_with_jitter_up_to_the_cap_and_never_run_out() {
    let delays: Vec<Duration> = reconnect_policy().build().take(20).collect();
    assert_eq!(delays.len(), 20, "the policy never gives up");
    assert!(delays[0] >= Duration::from_millis(100), "{delays:?}");
    assert!(delays[0] <= Duration::from_millis(200), "{delays:?}");
    for delay in &delays {
        assert!(*delay <= MAX_BACKOFF, "{delays:?}");
    }
    assert!(delays[19] >= MAX_BACKOFF / 2, "{delays:?}");
    let again: Vec<Duration> = reconnect_policy().build().take(20).collect();
    assert_ne!(delays, again, "two nodes do not reconnect in lockstep");
}

fn fanout() -> RedisFanout {
    let shards = (0..3)
        .map(|index| Shard::new(index, mpsc::channel(1).0))
        .collect();
    RedisFanout::new("me".into(), shards)
}

fn followed() -> Followed {
    let mut rooms = Followed::new();
    rooms.insert("confab:t:c".into(), ("t".into(), "c".into()));
    rooms
}

#[test]
fn channels_name_tenant_and_conversation() {
    let name = channel("acme", "c1");
    assert_eq!(name, "confab:acme:c1");
    assert_eq!(room_of(&name), Some(("acme".into(), "c1".into())));
    assert_eq!(room_of("other:x"), None);
}

#[test]
fn the_header_has_readable_field_names() {
    let header = Header {
        kind: Some(EventKind::MemberAdded),
        seq: 7,
        user: Some(Cow::Borrowed("bob")),
        ..Header::new("n1", MessageType::Event)
    };
    let line = serde_json::to_string(&header).expect("header");
    assert_eq!(
        line,
        r#"{"v":1,"type":"event","node":"n1","kind":"member_added","seq":7,"user":"bob"}"#
    );
    assert_eq!(serde_json::from_str::<Header<'_>>(&line).ok(), Some(header));
}

#[test]
fn messages_of_other_nodes_become_inbound_items() {
    let fanout = fanout();
    let rooms = followed();
    let event = br#"{"v":1,"type":"event","node":"n1","kind":"message","seq":3}
{"seq":3}"#;
    match fanout.receive(&fanout.shards[0], &rooms, "confab:t:c", event) {
        Some(Inbound::Event { tenant, event }) => {
            assert_eq!((&*tenant, &*event.conversation, event.seq), ("t", "c", 3));
            assert_eq!(event.text.as_str(), r#"{"seq":3}"#);
        }
        other => panic!("expected an event, got {other:?}"),
    }
    let sync = b"{\"v\":1,\"type\":\"sync\",\"node\":\"n1\"}\n[\"bob\"]";
    assert!(matches!(
        fanout.receive(&fanout.shards[0], &rooms, "confab:t:c", sync),
        Some(Inbound::Users { answer: true, ref users, .. }) if users == &["bob"]
    ));
    // Its own publications, other versions and unfollowed rooms are ignored.
    let own = b"{\"v\":1,\"type\":\"beat\",\"node\":\"me\"}\n";
    assert!(
        fanout
            .receive(&fanout.shards[0], &rooms, "confab:nodes", own)
            .is_none()
    );
    let future = b"{\"v\":2,\"type\":\"event\",\"node\":\"n1\"}\n";
    assert!(
        fanout
            .receive(&fanout.shards[0], &rooms, "confab:t:c", future)
            .is_none()
    );
    assert!(
        fanout
            .receive(&fanout.shards[0], &rooms, "confab:t:other", event)
            .is_none()
    );
    assert!(fanout.liveness().knows("n1"));
}

#[test]
fn malformed_payloads_are_dropped() {
    let fanout = fanout();
    let rooms = followed();
    for payload in [
        &b"no newline"[..],
        b"{bad json}\n{}",
        b"{\"v\":1,\"type\":\"event\",\"node\":\"x\"}\n\xff\xfe",
        b"{\"v\":1,\"type\":\"sync\",\"node\":\"x\"}\nnot json",
        b"{\"v\":1,\"type\":\"event\",\"node\":\"x\"}\nno kind",
    ] {
        assert!(
            fanout
                .receive(&fanout.shards[0], &rooms, "confab:t:c", payload)
                .is_none()
        );
    }
}

#[test]
fn rooms_and_users_are_spread_over_the_shards() {
    let fanout = fanout();
    for conversation in ["c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8", "c9"] {
        fanout.open_room("t", conversation);
    }
    fanout.open_room("t", "c1");
    let wanted: Vec<Vec<String>> = fanout
        .shards
        .iter()
        .map(|shard| {
            let mut channels = shard.wanted_channels();
            channels.sort();
            channels
        })
        .collect();
    for (index, channels) in wanted.iter().enumerate() {
        for channel in channels {
            let (tenant, conversation) = room_of(channel).expect("a room");
            assert_eq!(shard_of(&tenant, &conversation, 3), index, "{channel}");
        }
    }
    assert_eq!(wanted.iter().map(Vec::len).sum::<usize>(), 9);
    assert!(wanted.iter().all(|c| !c.is_empty()), "{wanted:?}");
    // Closing one of two opens keeps the room followed; the second close drops it.
    let home = &fanout.shards[shard_of("t", "c1", 3)];
    fanout.close_room("t", "c1");
    assert!(home.wanted_channels().contains(&channel("t", "c1")));
    fanout.close_room("t", "c1");
    assert!(!home.wanted_channels().contains(&channel("t", "c1")));
}

#[test]
fn beats_from_a_node_with_other_shards_are_counted_not_fatal() {
    let fanout = fanout();
    let rooms = followed();
    let beat = |shard: u32, shards: u32| {
        format!(
            "{{\"v\":1,\"type\":\"beat\",\"node\":\"n{shards}\",\"shard\":{shard},\"shards\":{shards}}}\n"
        )
    };
    // Ours (3 shards, received on shard 1), another count, another order, and a node from
    // before sharding: each keeps its peer alive and hands the hub nothing.
    for payload in [
        beat(1, 3),
        beat(1, 2),
        beat(0, 3),
        "{\"v\":1,\"type\":\"beat\",\"node\":\"old\"}\n".to_owned(),
    ] {
        assert!(
            fanout
                .receive(
                    &fanout.shards[1],
                    &rooms,
                    "confab:nodes",
                    payload.as_bytes()
                )
                .is_none()
        );
    }
    let liveness = fanout.liveness();
    assert!(["n3", "n2", "old"].iter().all(|n| liveness.knows(n)));
}

#[test]
fn a_resync_message_asks_the_rooms_sessions_to_catch_up() {
    let fanout = fanout();
    let resync = b"{\"v\":1,\"type\":\"resync\",\"node\":\"n1\"}\n";
    match fanout.receive(&fanout.shards[0], &followed(), "confab:t:c", resync) {
        Some(Inbound::Missed(rooms)) => {
            assert_eq!(rooms, vec![(Arc::from("t"), Arc::from("c"))]);
        }
        other => panic!("expected missed rooms, got {other:?}"),
    }
    let line = message(&Header::new("n1", MessageType::Resync), "");
    assert_eq!(line, resync.to_vec());
}

#[test]
fn a_loss_is_noted_per_room_and_user_by_what_it_costs() {
    let mut lost = shard::Lost::default();
    let event = message(
        &Header {
            kind: Some(EventKind::Message),
            seq: 4,
            ..Header::new("me", MessageType::Event)
        },
        "{}",
    );
    lost.note("confab:t:c", &event);
    lost.note("confab:t:c", &event);
    let presence = message(
        &Header {
            user: Some(Cow::Borrowed("bob")),
            online: true,
            ..Header::new("me", MessageType::Presence)
        },
        "",
    );
    lost.note("confab:t:d", &presence);
    lost.note(
        "confab:t:e",
        &message(&Header::new("me", MessageType::Sync), "[]"),
    );
    let nudge = message(
        &Header {
            user: Some(Cow::Borrowed("carol")),
            ..Header::new("me", MessageType::User)
        },
        "t",
    );
    lost.note(NODES_CHANNEL, &nudge);
    // Typing, beats and garbage cost nothing later.
    lost.note(
        "confab:t:f",
        &message(&Header::new("me", MessageType::Ephemeral), "{}"),
    );
    lost.note(
        NODES_CHANNEL,
        &message(&Header::new("me", MessageType::Beat), ""),
    );
    lost.note("confab:t:g", b"no header");
    assert_eq!(
        lost.events.iter().collect::<Vec<_>>(),
        [&"confab:t:c".to_owned()]
    );
    let mut presence: Vec<_> = lost.presence.iter().map(|(_, c)| c.to_string()).collect();
    presence.sort();
    assert_eq!(presence, ["d", "e"]);
    assert_eq!(
        lost.users.iter().collect::<Vec<_>>(),
        [&("t".to_owned(), "carol".to_owned())]
    );
}

#[test]
fn a_full_publish_queue_is_counted_and_remembered_for_repair() {
    let fanout = fanout();
    let event = |seq| {
        Delivered::remote(
            "c".into(),
            seq,
            EventKind::Message,
            None,
            Utf8Bytes::from("{}"),
        )
    };
    let shard = &fanout.shards[shard_of("t", "c", 3)];
    assert!(shard.take_lost().is_none(), "nothing lost yet");
    // The queue holds one: the first waits, the second is dropped.
    fanout.publish_event("t", &event(1));
    fanout.publish_event("t", &event(2));
    let lost = shard.take_lost().expect("the dropped event is remembered");
    assert_eq!(
        lost.events.iter().collect::<Vec<_>>(),
        [&"confab:t:c".to_owned()]
    );
    assert!(shard.take_lost().is_none(), "taken once");
    // A repair that fails is kept for the next try, merged with what was lost since.
    fanout.publish_event("t", &event(3));
    shard.restore_lost(lost);
    let again = shard.take_lost().expect("restored");
    assert_eq!(again.events.len(), 1);
}

#[test]
fn an_answer_goes_to_the_asker_alone_on_the_rooms_shard() {
    let mut receivers = Vec::new();
    let shards = (0..3)
        .map(|index| {
            let (tx, rx) = mpsc::channel(8);
            receivers.push(rx);
            Shard::new(index, tx)
        })
        .collect();
    let fanout = RedisFanout::new("me".into(), shards);
    let users = ["alice".to_owned()];
    fanout.publish_users("t", "c", &users, UsersTo::Node("n1"));
    fanout.publish_users("t", "c", &users, UsersTo::All);
    let shard = shard_of("t", "c", 3);
    let (to, payload) = receivers[shard]
        .try_recv()
        .expect("the answer, on the room's shard");
    assert_eq!(to, "confab!node:n1");
    let (header, text) = split(&payload).expect("well formed");
    assert_eq!(header.message, MessageType::Snapshot);
    assert_eq!(header.room.as_deref(), Some("confab:t:c"));
    assert_eq!(text, r#"["alice"]"#);
    let (to, payload) = receivers[shard].try_recv().expect("the sync");
    assert_eq!(to, "confab:t:c");
    let (header, _) = split(&payload).expect("well formed");
    assert_eq!((header.message, header.room), (MessageType::Sync, None));
}

#[test]
fn an_answer_on_the_own_channel_is_read_for_the_room_it_names() {
    let fanout = fanout();
    let rooms = followed();
    let answer = br#"{"v":1,"type":"snapshot","node":"n1","room":"confab:t:c"}
["bob"]"#;
    match fanout.receive(&fanout.shards[0], &rooms, "confab!node:me", answer) {
        Some(Inbound::Users {
            tenant,
            conversation,
            users,
            answer: false,
            ..
        }) => assert_eq!(
            (&*tenant, &*conversation, &users[..]),
            ("t", "c", &["bob".to_owned()][..])
        ),
        other => panic!("expected users, got {other:?}"),
    }
    // A room not followed (any more), a snapshot without its room, another type: nothing.
    let elsewhere = br#"{"v":1,"type":"snapshot","node":"n1","room":"confab:t:gone"}
[]"#;
    let roomless = b"{\"v\":1,\"type\":\"snapshot\",\"node\":\"n1\"}\n[]";
    let event = b"{\"v\":1,\"type\":\"event\",\"node\":\"n1\",\"kind\":\"message\",\"seq\":1,\"room\":\"confab:t:c\"}\n{}";
    for payload in [&elsewhere[..], roomless, event] {
        assert!(
            fanout
                .receive(&fanout.shards[0], &rooms, "confab!node:me", payload)
                .is_none()
        );
    }
    // A lost answer is remembered as its room's presence.
    let mut lost = shard::Lost::default();
    lost.note("confab!node:n1", answer);
    assert_eq!(
        lost.presence.len(),
        1,
        "a lost answer is repaired by syncing its room"
    );
}

#[test]
fn answers_to_one_node_go_in_one_message_per_shard_and_are_read_per_room() {
    let mut receivers = Vec::new();
    let shards = (0..3)
        .map(|index| {
            let (tx, rx) = mpsc::channel(8);
            receivers.push(rx);
            Shard::new(index, tx)
        })
        .collect();
    let fanout = RedisFanout::new("me".into(), shards);
    // c2 and c3 share shard 1, c4 is on shard 0 (PINNED in shard.rs).
    let answers: Vec<RoomUsers<'_>> = ["c2", "c3", "c4"]
        .iter()
        .map(|conversation| RoomUsers {
            tenant: "acme",
            conversation,
            users: vec![format!("{conversation}-user")],
        })
        .collect();
    fanout.publish_answers("n1", &answers);
    let (to, payload) = receivers[1].try_recv().expect("shard 1's answers");
    assert_eq!(to, "confab!node:n1");
    assert!(
        receivers[1].try_recv().is_err(),
        "one message for both rooms"
    );
    let (header, text) = split(&payload).expect("well formed");
    assert_eq!(header.message, MessageType::Snapshots);
    assert_eq!(
        text,
        r#"[["confab:acme:c2",["c2-user"]],["confab:acme:c3",["c3-user"]]]"#
    );
    assert!(receivers[0].try_recv().is_ok(), "shard 0's answer");
    assert!(receivers[2].try_recv().is_err(), "nothing on shard 2");

    // The asker reads the rooms it still follows, on its own channel only.
    let asker = RedisFanout {
        node: "n1".into(),
        inbox: inbox("n1"),
        ..fanout
    };
    let mut rooms = Followed::new();
    rooms.insert("confab:acme:c2".into(), ("acme".into(), "c2".into()));
    match asker.receive(&asker.shards[1], &rooms, "confab!node:n1", &payload) {
        Some(Inbound::Answers { node, rooms }) => {
            assert_eq!(node, "me");
            let got: Vec<(&str, &str, &[String])> =
                rooms.iter().map(|(t, c, u)| (&**t, &**c, &u[..])).collect();
            assert_eq!(got, [("acme", "c2", &["c2-user".to_owned()][..])]);
        }
        other => panic!("expected answers, got {other:?}"),
    }
    assert!(
        asker
            .receive(&asker.shards[1], &rooms, "confab:acme:c2", &payload)
            .is_none(),
        "answers come on the asker's own channel only"
    );
    // A lost message of answers is repaired by syncing each of its rooms.
    let mut lost = shard::Lost::default();
    lost.note("confab!node:n1", &payload);
    assert_eq!(lost.presence.len(), 2);
}

#[test]
fn the_subscriber_is_told_what_changed_not_the_whole_set() {
    let shard = Shard::new(0, mpsc::channel(1).0);
    let open = |c: &str| shard.wanted.lock().expect("wanted").open(c.to_owned());
    let close = |c: &str| shard.wanted.lock().expect("wanted").close(c);
    open("confab:t:a");
    open("confab:t:b");
    let first = shard.take_changes(true);
    let mut all = first
        .all
        .clone()
        .expect("a fresh connection compares the whole set");
    all.sort();
    assert_eq!(all, ["confab:t:a", "confab:t:b"]);
    assert_eq!(shard.take_changes(false), Changes::default(), "taken");

    // The old room's close counted after the new room's open: the count never reaches 0, and
    // the open alone says that the new room must sync.
    open("confab:t:a");
    close("confab:t:a");
    // Opened and closed before the subscriber looked: not to subscribe to (its close is
    // reported; `follow` leaves alone what it does not follow).
    open("confab:t:c");
    close("confab:t:c");
    close("confab:t:b");
    assert_eq!(
        shard.take_changes(false),
        Changes {
            all: None,
            opened: vec!["confab:t:a".into()],
            closed: vec!["confab:t:c".into(), "confab:t:b".into()],
        }
    );
}

/// A node's own beat, heard back, moves how far it has read (see `liveness`); the beat it
/// sends carries its send time.
#[test]
fn own_beats_heard_back_move_the_subscriptions_clock() {
    let fanout = fanout();
    let rooms = followed();
    assert!(fanout.liveness().read_to().is_none());
    let stamp = fanout.liveness().beat_stamp(Instant::now());
    let own = format!("{{\"v\":1,\"type\":\"beat\",\"node\":\"me\",\"seq\":{stamp}}}\n");
    assert!(
        fanout
            .receive(&fanout.shards[0], &rooms, "confab:nodes", own.as_bytes())
            .is_none()
    );
    assert!(fanout.liveness().read_to().is_some());
    let beat = Header {
        seq: stamp,
        ..Header::new("me", MessageType::Beat)
    };
    let line = String::from_utf8(message(&beat, "")).expect("utf-8");
    assert!(line.contains(&format!("\"seq\":{stamp}")), "{line}");
}

/// A stand-in for a Redis swamped by a reconnect storm: it answers every command until a
/// connection publishes to a room's channel, and never answers that connection again (a
/// pipeline whose answer does not come). It reports every publish it reads, as (channel,
/// payload).
async fn swamped_redis() -> (String, mpsc::UnboundedReceiver<(Vec<u8>, Vec<u8>)>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("redis://{}", listener.local_addr().expect("address"));
    let (published, heard) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(answer_until_a_room_publish(socket, published.clone()));
        }
    });
    (url, heard)
}

async fn answer_until_a_room_publish(
    socket: tokio::net::TcpStream,
    published: mpsc::UnboundedSender<(Vec<u8>, Vec<u8>)>,
) {
    use tokio::io::AsyncWriteExt;
    let (read, mut write) = socket.into_split();
    let mut read = tokio::io::BufReader::new(read);
    let mut stuck = false;
    while let Some(command) = read_command(&mut read).await {
        let publish = command
            .first()
            .is_some_and(|name| name.eq_ignore_ascii_case(b"PUBLISH"));
        if publish && command.len() == 3 {
            stuck |= command[1] != NODES_CHANNEL.as_bytes();
            let _ = published.send((command[1].clone(), command[2].clone()));
        }
        if stuck {
            continue;
        }
        let reply: &[u8] = if publish { b":1\r\n" } else { b"+OK\r\n" };
        if write.write_all(reply).await.is_err() {
            return;
        }
    }
}

/// One RESP command (an array of bulk strings); `None` at the end of the stream.
async fn read_command(
    read: &mut tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> Option<Vec<Vec<u8>>> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    let mut line = String::new();
    read.read_line(&mut line).await.ok()?;
    let count: usize = line.trim_end().strip_prefix('*')?.parse().ok()?;
    let mut parts = Vec::with_capacity(count);
    for _ in 0..count {
        line.clear();
        read.read_line(&mut line).await.ok()?;
        let len: usize = line.trim_end().strip_prefix('$')?.parse().ok()?;
        let mut part = vec![0; len + 2];
        read.read_exact(&mut part).await.ok()?;
        part.truncate(len);
        parts.push(part);
    }
    Some(parts)
}

/// Beats heard by [`swamped_redis`] until `enough` of them or `within`, and whether a room's
/// publish was heard meanwhile.
async fn beats_heard(
    heard: &mut mpsc::UnboundedReceiver<(Vec<u8>, Vec<u8>)>,
    enough: usize,
    within: Duration,
) -> (Vec<String>, bool) {
    let (mut beats, mut room) = (Vec::new(), false);
    let deadline = Instant::now() + within;
    while beats.len() < enough && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        while let Ok((channel, payload)) = heard.try_recv() {
            if channel == NODES_CHANNEL.as_bytes() {
                beats.push(String::from_utf8_lossy(&payload).into_owned());
            } else {
                room = true;
            }
        }
    }
    (beats, room)
}

/// The node's beats go out from their thread, on a connection of their own, while its
/// publisher's pipeline waits for an answer that does not come: the other nodes keep hearing
/// it. (Sent first in the publisher's next pipeline, as before, one beat went out per publish
/// timeout, 5 s.)
#[tokio::test]
async fn beats_go_out_while_the_publish_pipeline_is_stuck() {
    let (url, mut heard) = swamped_redis().await;
    let client = redis::Client::open(url.as_str()).expect("client");
    let (publish_tx, publish_rx) = mpsc::channel(16);
    let shards = vec![Shard::new(0, publish_tx.clone())];
    let fanout = Arc::new(RedisFanout::new("me".into(), shards));
    let (inbound, _inbound_rx) = mpsc::channel(16);
    let publisher = client.get_connection_manager().await.expect("publisher");
    tokio::spawn(connect::publish_loop(
        fanout.clone(),
        0,
        client.clone(),
        Some(publisher),
        publish_rx,
        inbound,
    ));
    publish_tx
        .send(("confab:t:c".into(), b"event".to_vec()))
        .await
        .expect("queued");
    // The publisher sends the room's message and waits for an answer.
    let (channel, _) = tokio::time::timeout(Duration::from_secs(5), heard.recv())
        .await
        .expect("the room's publish in time")
        .expect("the stand-in runs");
    assert_eq!(channel, b"confab:t:c");
    beats::spawn(fanout.clone(), 0, client, Duration::from_millis(100)).expect("thread");
    let (beats, _) = beats_heard(&mut heard, 5, Duration::from_secs(3)).await;
    fanout.stop.cancel();
    assert!(beats.len() >= 5, "{} beats in 3 s: {beats:?}", beats.len());
    let mut distinct = beats.clone();
    distinct.dedup();
    assert_eq!(distinct, beats, "each beat has a send time of its own");
}

/// A node whose runtime has shown no life for the stall limit stops beating (the others then
/// expire it as a dead node), and beats again once it does.
#[tokio::test]
async fn a_silent_runtime_stops_the_beats() {
    let (url, mut heard) = swamped_redis().await;
    let client = redis::Client::open(url.as_str()).expect("client");
    let shards = vec![Shard::new(0, mpsc::channel(1).0)];
    let fanout = Arc::new(RedisFanout::new("me".into(), shards));
    fanout.runtime_pulse.store(0, Ordering::Relaxed);
    beats::spawn(fanout.clone(), 0, client, Duration::from_millis(50)).expect("thread");
    let (beats, _) = beats_heard(&mut heard, 1, Duration::from_millis(600)).await;
    assert!(beats.is_empty(), "{beats:?}");
    let stamp = fanout.liveness().beat_stamp(Instant::now());
    fanout.runtime_pulse(stamp);
    let (beats, _) = beats_heard(&mut heard, 2, Duration::from_secs(3)).await;
    fanout.stop.cancel();
    assert!(beats.len() >= 2, "{beats:?}");
}
