//! `join` checks membership before it subscribes: a caller who is not a member, or of another
//! tenant, never opens a room (no `presence` frame for the members, no Redis channel), and an
//! event committed before the join but handed to the hub after its subscription is delivered
//! exactly once.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Server, TENANT, WsClient};
use confab_protocol::rest::ConversationKind;
use confab_protocol::{Command, ErrorCode, ServerFrame};
use confab_server::AppState;
use confab_server::config::Config;
use confab_server::hub::Hub;
use confab_storage::sqlite::{SqliteOptions, SqliteStore};
use confab_storage::{DynStore, EventSink, NewConversation, NewMessage, StoredEvent};
use confab_testkit::RedisServer;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// The channels Redis has subscribers for, sorted, but for the node's own channel
/// (`confab!node:{id}`, for answers to its presence syncs), which it always follows.
async fn pubsub_channels(url: &str) -> Vec<String> {
    let client = redis::Client::open(url).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection");
    let mut channels: Vec<String> = redis::cmd("PUBSUB")
        .arg("CHANNELS")
        .query_async(&mut conn)
        .await
        .expect("PUBSUB CHANNELS");
    channels.retain(|channel| !channel.starts_with("confab!node:"));
    channels.sort();
    channels
}

/// Waits (up to 5 s) until Redis has subscribers for exactly `expected`.
async fn wait_for_channels(url: &str, expected: &[String]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let channels = pubsub_channels(url).await;
        if channels == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "channels {channels:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn join(conversation: &str, since: Option<u64>) -> Command {
    Command::Join {
        conversation: conversation.to_owned(),
        since,
    }
}

#[tokio::test]
async fn a_non_member_or_another_tenant_never_opens_a_room() {
    let redis = tokio::task::spawn_blocking(RedisServer::start)
        .await
        .expect("join")
        .expect("redis-server starts (run scripts/install-test-services)");
    let url = redis.url();
    let server = Server::start_with(&["--hub", url.as_str()]).await;
    let watched = server.create_group("alice", &["bob"]).await;
    // No member joins this one: only an intruder could open its room.
    let unwatched = server.create_group("alice", &["bob"]).await;
    let channel = |conversation: &str| format!("confab:{TENANT}:{conversation}");
    let mut alice = server.ws_presence("alice").await;
    alice.join(&watched).await;
    let mut expected = vec!["confab:nodes".to_owned(), channel(&watched)];
    expected.sort();
    wait_for_channels(&url, &expected).await;

    // Same tenant, not a member.
    let mut mallory = server.ws_presence("mallory").await;
    // Another tenant naming this tenant's ids, as a user called like a member.
    let mut other_bob = server
        .ws_with_token(&common::token_in("bob", "other"))
        .await;
    for conversation in [&watched, &unwatched] {
        for since in [None, Some(0)] {
            let command = join(conversation, since);
            mallory
                .expect_error(command.clone(), ErrorCode::NotMember)
                .await;
            other_bob.expect_error(command, ErrorCode::NotFound).await;
        }
    }
    alice.expect_silence(Duration::from_millis(300)).await;
    assert_eq!(pubsub_channels(&url).await, expected);
    let metrics = server.metrics().await;
    assert_eq!(
        common::metric_value(&metrics, "confab_rooms_joined"),
        Some(1.0)
    );

    // The control: a member's joins are announced and subscribe.
    let mut bob = server.ws("bob").await;
    bob.join(&unwatched).await;
    bob.join(&watched).await;
    assert_eq!(
        alice.recv().await,
        ServerFrame::Presence {
            conversation: watched.clone(),
            user: "bob".into(),
            online: true,
        }
    );
    expected.push(channel(&unwatched));
    expected.sort();
    wait_for_channels(&url, &expected).await;
}

/// The store's event sink with a gate: while closed, committed events are held back from the
/// hub, as if the storage writer's hand-over were slow; opening it hands them over.
struct Gate {
    hub: Arc<Hub>,
    held: Mutex<Option<Vec<StoredEvent>>>,
}

impl Gate {
    fn close(&self) {
        *self.held.lock().expect("gate") = Some(Vec::new());
    }

    fn open(&self) {
        let held = self.held.lock().expect("gate").take();
        self.hub.publish(held.unwrap_or_default());
    }
}

impl EventSink for Gate {
    fn publish(&self, events: Vec<StoredEvent>) {
        let mut held = self.held.lock().expect("gate");
        match held.as_mut() {
            Some(held) => held.extend(events),
            None => {
                drop(held);
                self.hub.publish(events);
            }
        }
    }
}

/// A server run in this process on an ephemeral port, with a gated event sink.
struct InProcess {
    running: confab_server::Running,
    store: DynStore,
    gate: Arc<Gate>,
    _dir: tempfile::TempDir,
}

impl InProcess {
    async fn start() -> InProcess {
        let dir = tempfile::tempdir().expect("tempdir");
        let hub = Arc::new(Hub::new());
        let gate = Arc::new(Gate {
            hub: hub.clone(),
            held: Mutex::new(None),
        });
        let db = dir.path().join("confab.db");
        let store: DynStore = Arc::new(
            SqliteStore::open(&db, gate.clone(), SqliteOptions::default()).expect("store"),
        );
        let config = Config {
            data_dir: dir.path().to_owned(),
            message_rate_per_minute: 0,
            ..Config::default()
        };
        let search = confab_server::search::SearchService::for_config(&config).expect("search");
        let media = confab_server::media::MediaService::new(
            confab_server::media::open(&config).expect("media"),
            &config,
            &common::keys(),
            None,
        );
        let state = AppState::new(
            config,
            store.clone(),
            media,
            search,
            hub,
            common::keys(),
            None,
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let running = confab_server::spawn(listener, state).expect("serve");
        InProcess {
            running,
            store,
            gate,
            _dir: dir,
        }
    }

    async fn ws(&self, user: &str) -> WsClient {
        let url = format!(
            "ws://{}/v1/ws?token={}",
            self.running.addr(),
            common::token(user)
        );
        let request = url.into_client_request().expect("ws request");
        let mut client = WsClient::open(request, None).await.expect("upgrade");
        let welcome = client.recv().await;
        assert!(
            matches!(welcome, ServerFrame::Welcome { .. }),
            "{welcome:?}"
        );
        client
    }

    async fn send(&self, conversation: &str, body: &str) -> u64 {
        let message = NewMessage {
            tenant: TENANT.into(),
            conversation: conversation.into(),
            author: "bob".into(),
            client_msg_id: body.into(),
            body: body.into(),
            reply_to: None,
            attachments: Vec::new(),
            repeat_only: false,
        };
        self.store.append_message(message).await.expect("send").seq
    }

    async fn stop(self) {
        self.running.stop().await.expect("served");
    }
}

#[tokio::test]
async fn an_event_handed_over_after_the_subscription_is_delivered_once() {
    let server = InProcess::start().await;
    for since in [Some(0), None] {
        let (conversation, _) = server
            .store
            .create_conversation(NewConversation {
                tenant: TENANT.into(),
                creator: "alice".into(),
                kind: ConversationKind::Group,
                title: None,
                members: vec!["bob".into()],
            })
            .await
            .expect("conversation");
        let conversation = conversation.id;
        assert_eq!(server.send(&conversation, "one").await, 1);
        // Committed before the join's reads, handed to the hub only after its subscription.
        server.gate.close();
        assert_eq!(server.send(&conversation, "two").await, 2);
        let mut alice = server.ws("alice").await;
        let (last_seq, recovered) = match alice.request(join(&conversation, since)).await {
            ServerFrame::Joined {
                last_seq,
                recovered,
                ..
            } => (last_seq, recovered),
            other => panic!("join since {since:?}: {other:?}"),
        };
        assert_eq!((last_seq, recovered), (2, true));
        server.gate.open();
        assert_eq!(server.send(&conversation, "three").await, 3);

        // `since`: the backlog has 1 and 2, live brings 3; without: history is up to 2.
        let expected: &[u64] = if since.is_some() { &[1, 2, 3] } else { &[3] };
        let mut seqs = Vec::new();
        while seqs.len() < expected.len() {
            seqs.push(alice.recv_message().await.seq);
        }
        assert_eq!(seqs, expected, "since {since:?}");
        alice.expect_silence(Duration::from_millis(200)).await;
        alice.close().await;
    }
    server.stop().await;
}
