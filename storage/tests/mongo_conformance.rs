//! The conformance suite on [`MongoStore`], against a real secantusdb started by
//! `confab-testkit` (one server for this test binary, a fresh database per test), plus checks of
//! what only a shared database has: several stores (cluster nodes) writing at once.

#![cfg(feature = "mongo")]

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};

use confab_protocol::rest::ConversationKind;
use confab_storage::conformance::{RecordingSink, keyed_message as message};
use confab_storage::mongo::MongoStore;
use confab_storage::{DynStore, NewConversation, StoreError};
use confab_testkit::MongoServer;
use tokio::task::JoinSet;

/// The server shared by every test of this binary. Never dropped: its supervisor stops it and
/// removes its data when the test process exits.
fn server() -> &'static MongoServer {
    static SERVER: OnceLock<MongoServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        MongoServer::start().expect("start secantusdb (run scripts/install-test-services)")
    })
}

/// The server's URL, starting it on first use (off the async runtime: it blocks while waiting).
async fn server_url() -> String {
    tokio::task::spawn_blocking(|| server().url())
        .await
        .expect("starting secantusdb")
}

/// A database of its own for one test.
#[derive(Debug)]
struct Database {
    url: String,
    name: String,
}

async fn connect(database: &Database) -> (DynStore, Arc<RecordingSink>) {
    let sink = RecordingSink::new();
    let store = MongoStore::connect(&database.url, &database.name, sink.clone())
        .await
        .expect("connect to secantusdb");
    (Arc::new(store), sink)
}

async fn factory() -> (DynStore, Arc<RecordingSink>, Database) {
    let database = Database {
        url: server_url().await,
        name: format!("confab_{}", uuid::Uuid::new_v4().simple()),
    };
    let (store, sink) = connect(&database).await;
    (store, sink, database)
}

async fn reopen(database: &Database) -> (DynStore, Arc<RecordingSink>) {
    connect(database).await
}

confab_storage::store_conformance_suite!(factory, reopen = reopen);

const TENANT: &str = "acme";

/// Two stores on one database, as two cluster nodes: their appends to one conversation conflict
/// in the database and are retried, so seqs stay gapless and unique, each store publishes its
/// own in seq order, and a `client_msg_id` sent to both is stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_database_keep_seqs_gapless() {
    const EACH: usize = 15;
    let (first, first_sink, database) = factory().await;
    let (second, second_sink) = connect(&database).await;
    let (conversation, _) = first
        .create_conversation(NewConversation {
            tenant: TENANT.to_owned(),
            creator: "alice".to_owned(),
            kind: ConversationKind::Group,
            title: None,
            members: vec!["bob".to_owned()],
        })
        .await
        .expect("create");
    let id = conversation.id;

    let mut tasks = JoinSet::new();
    for (node, store) in [("a", first.clone()), ("b", second.clone())] {
        for writer in 0..2 {
            let (store, id) = (store.clone(), id.clone());
            tasks.spawn(async move {
                let mut acks = Vec::new();
                for n in 0..EACH {
                    let sent = store
                        .append_message(message(&id, "bob", &format!("{node}{writer}-{n}")))
                        .await
                        .expect("append");
                    acks.push(sent);
                }
                // The same retry reaching both nodes is stored once.
                let twice = message(&id, "alice", &format!("both-{writer}"));
                acks.push(store.append_message(twice).await.expect("append twice"));
                acks
            });
        }
    }
    let acks: Vec<_> = tasks.join_all().await.into_iter().flatten().collect();
    let fresh: Vec<u64> = acks
        .iter()
        .filter(|ack| !ack.duplicate)
        .map(|ack| ack.seq)
        .collect();
    let total = (4 * EACH + 2) as u64;
    assert_eq!(
        fresh.iter().copied().collect::<BTreeSet<u64>>(),
        (1..=total).collect::<BTreeSet<u64>>(),
        "gapless and unique across stores"
    );
    assert_eq!(fresh.len() as u64, total);
    assert_eq!(acks.iter().filter(|ack| ack.duplicate).count(), 2);

    for sink in [&first_sink, &second_sink] {
        let seqs: Vec<u64> = sink.events_of(&id).iter().map(|event| event.seq).collect();
        assert!(
            seqs.windows(2).all(|pair| pair[0] < pair[1]),
            "each store publishes in seq order: {seqs:?}"
        );
    }
    let published = first_sink.events_of(&id).len() + second_sink.events_of(&id).len();
    assert_eq!(published as u64, total, "every event published once");
    let (events, last_seq) = second
        .events_after(TENANT, "alice", &id, 0, 1000)
        .await
        .expect("events");
    assert_eq!((events.len() as u64, last_seq), (total, total));
}

/// Two stores creating the same direct conversation at once agree on one (the partial unique
/// index on `(tenant, direct_key)` decides the race).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_direct_creations_agree() {
    let (first, _, database) = factory().await;
    let (second, _) = connect(&database).await;
    for round in 0..5 {
        let (alice, bob) = (format!("alice{round}"), format!("bob{round}"));
        let direct = |store: DynStore, creator: String, other: String| async move {
            store
                .create_conversation(NewConversation {
                    tenant: TENANT.to_owned(),
                    creator,
                    kind: ConversationKind::Direct,
                    title: None,
                    members: vec![other],
                })
                .await
                .expect("create direct")
        };
        let (a, b) = tokio::join!(
            tokio::spawn(direct(first.clone(), alice.clone(), bob.clone())),
            tokio::spawn(direct(second.clone(), bob, alice)),
        );
        let ((a, a_created), (b, b_created)) = (a.expect("join"), b.expect("join"));
        assert_eq!(a.id, b.id, "round {round}: one conversation");
        assert!(a_created != b_created, "round {round}: created once");
    }
}

/// The indexes the store relies on exist, unique where they must be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexes_are_created_and_creating_them_again_is_harmless() {
    let (_store, _, database) = factory().await;
    let _again = connect(&database).await;
    let client = mongodb::Client::with_uri_str(&database.url)
        .await
        .expect("client");
    let db = client.database(&database.name);
    let expected = [
        ("conversations", "tenant_direct_key", true),
        ("members", "conversation_user", true),
        ("members", "tenant_user", false),
        ("messages", "conversation_seq", true),
        ("messages", "conversation_author_client_msg_id", true),
        ("reactions", "message_emoji_user", true),
        ("events", "conversation_seq", true),
    ];
    for (collection, name, unique) in expected {
        let indexes = db
            .collection::<mongodb::bson::Document>(collection)
            .list_indexes()
            .await
            .expect("list indexes");
        let indexes: Vec<mongodb::IndexModel> = futures_util::TryStreamExt::try_collect(indexes)
            .await
            .expect("indexes");
        let index = indexes
            .iter()
            .find(|index| {
                index
                    .options
                    .as_ref()
                    .and_then(|options| options.name.as_deref())
                    == Some(name)
            })
            .unwrap_or_else(|| panic!("{collection}.{name} exists"));
        let is_unique = index
            .options
            .as_ref()
            .and_then(|options| options.unique)
            .unwrap_or(false);
        assert_eq!(is_unique, unique, "{collection}.{name} unique");
    }
}

/// An unreachable server is a clean `Internal` error, not a hang or a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_to_nothing_fails_cleanly() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port();
    let url =
        format!("mongodb://127.0.0.1:{port}/?directConnection=true&serverSelectionTimeoutMS=300");
    let connected = MongoStore::connect(&url, "confab", RecordingSink::new()).await;
    let Err(err) = connected else {
        panic!("connected to nothing");
    };
    assert!(matches!(err, StoreError::Internal { .. }), "{err:?}");
    // The driver's error is kept as the cause, for the log.
    let cause = std::error::Error::source(&err).expect("a cause");
    assert!(
        cause.downcast_ref::<mongodb::error::Error>().is_some(),
        "{cause:?}"
    );
}

/// The events of a database written before the storage form of events, as documents.
async fn write_old_database(db: &mongodb::Database) {
    use confab_storage::conformance::legacy::{
        CONVERSATION, LAST_SEQ, OLD_EVENTS, OLD_MESSAGES, TENANT,
    };
    use mongodb::bson::{Bson, Document, doc};

    db.collection::<Document>("conversations")
        .insert_one(doc! {
            "_id": CONVERSATION, "tenant": TENANT, "kind": "group", "title": "plans",
            "created_by": "ann", "created_at": 0_i64, "archived": false, "last_seq": LAST_SEQ,
            "last_activity": 1010_i64,
        })
        .await
        .expect("conversation");
    for (user, role) in [("ann", "owner"), ("bob", "member")] {
        db.collection::<Document>("members")
            .insert_one(doc! {
                "tenant": TENANT, "conversation": CONVERSATION, "user": user, "role": role,
                "joined_at": 0_i64, "read_seq": 0_i64,
            })
            .await
            .expect("member");
    }
    for old in OLD_MESSAGES {
        let attachments: serde_json::Value =
            serde_json::from_str(old.attachments.unwrap_or("[]")).expect("attachments");
        db.collection::<Document>("messages")
            .insert_one(doc! {
                "_id": old.id, "tenant": TENANT, "conversation": CONVERSATION, "seq": old.seq,
                "author": old.author, "client_msg_id": old.client_msg_id, "body": old.body,
                "reply_to": old.reply_to,
                "attachments": mongodb::bson::to_bson(&attachments).expect("bson"),
                "created_at": old.created_at, "edited_at": old.edited_at,
                "deleted_at": old.deleted_at,
            })
            .await
            .expect("message");
    }
    for old in OLD_EVENTS {
        let frame: serde_json::Value = serde_json::from_str(old.frame).expect("frame");
        let message = frame
            .get(if old.kind == "message" {
                "id"
            } else {
                "message"
            })
            .and_then(serde_json::Value::as_str)
            .map_or(Bson::Null, |id| Bson::String(id.to_owned()));
        db.collection::<Document>("events")
            .insert_one(doc! {
                "conversation": CONVERSATION, "seq": old.seq, "tenant": TENANT,
                "kind": old.kind, "subject": old.subject, "message": message, "ts": old.ts,
                "frame": old.frame,
            })
            .await
            .expect("event");
    }
}

/// Events stored as frames by older builds are converted when a store connects, once, and
/// replay byte for byte; a message's text is then stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_stored_by_older_builds_are_converted_and_replay_byte_for_byte() {
    use confab_storage::conformance::legacy::assert_replays_old_events;
    use mongodb::bson::{Document, doc};

    let database = Database {
        url: server_url().await,
        name: format!("confab_{}", uuid::Uuid::new_v4().simple()),
    };
    let client = mongodb::Client::with_uri_str(&database.url)
        .await
        .expect("client");
    let db = client.database(&database.name);
    write_old_database(&db).await;

    let (store, _) = connect(&database).await;
    assert_replays_old_events(store.as_ref()).await;

    let stored = db.collection::<Document>("events");
    let snapshot = || async {
        let cursor = stored
            .find(doc! {})
            .sort(doc! { "seq": 1 })
            .projection(doc! { "_id": 0 })
            .await
            .expect("find");
        futures_util::TryStreamExt::try_collect::<Vec<Document>>(cursor)
            .await
            .expect("events")
    };
    let converted = snapshot().await;
    assert!(converted.iter().all(|event| !event.contains_key("frame")));
    let message_data: Vec<Option<&str>> = converted
        .iter()
        .filter(|event| event.get_str("kind") == Ok("message"))
        .map(|event| event.get_str("data").ok())
        .collect();
    assert_eq!(
        message_data,
        [Some(r#"{"body":"first \"draft\" ✍"}"#), None],
        "only the edited message's event keeps text: the text it was posted with"
    );

    // Connecting again converts nothing, even without the marker that spares the scan.
    drop(connect(&database).await);
    db.collection::<Document>("meta")
        .delete_many(doc! {})
        .await
        .expect("drop the marker");
    drop(connect(&database).await);
    assert_eq!(snapshot().await, converted);
}
