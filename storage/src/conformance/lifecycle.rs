//! Checks on the event log and on the store's lifecycle (close, reopen).

use std::collections::BTreeSet;
use std::sync::Arc;

use confab_protocol::rest::{Attachment, ConversationKind, Role};
use confab_protocol::{EventKind, ServerFrame};
use tokio::task::JoinSet;

use super::{RecordingSink, TENANT, frame_of, group, new_message, send};
use crate::{Appended, DynStore, NewConversation, StoreError, StoredEvent};

/// Every durable event kind is stored, replayed in seq order with the frame that was published,
/// and `events_after` pages through them with the conversation's last seq.
pub async fn events_replay_every_kind(store: DynStore, sink: Arc<RecordingSink>) {
    let conversation = group(&store, "olga", &["mia"]).await;
    let id = conversation.id.as_str();
    let attachment = Attachment {
        id: "f1".to_owned(),
        name: None,
        mime: None,
        size: Some(7),
    };
    let mut first = new_message(id, "mia", "v1");
    first.attachments = vec![attachment.clone()];
    let sent = store.append_message(first.clone()).await.expect("send");
    let m = sent.id.as_str();
    store
        .edit_message(TENANT, "mia", m, "v2".into())
        .await
        .expect("edit");
    store
        .add_reaction(TENANT, "olga", m, "👍")
        .await
        .expect("react");
    store
        .remove_reaction(TENANT, "olga", m, "👍")
        .await
        .expect("unreact");
    store
        .add_member(TENANT, "olga", id, "nina", Role::Member)
        .await
        .expect("add");
    store
        .set_role(TENANT, "olga", id, "nina", Role::Admin)
        .await
        .expect("promote");
    store
        .remove_member(TENANT, "olga", id, "nina")
        .await
        .expect("remove");
    store
        .update_conversation(TENANT, "olga", id, Some("T".into()), None)
        .await
        .expect("rename");
    store
        .delete_message(TENANT, "olga", m)
        .await
        .expect("delete");

    let (events, last_seq) = store
        .events_after(TENANT, "mia", id, 0, 100)
        .await
        .expect("events");
    assert_eq!(last_seq, 9);
    let seqs: Vec<u64> = events.iter().map(|event| event.seq).collect();
    assert_eq!(seqs, (1..=9).collect::<Vec<_>>());
    let kinds: BTreeSet<&str> = events.iter().map(|event| event.kind().as_str()).collect();
    let all: BTreeSet<&str> = EventKind::ALL.iter().map(|kind| kind.as_str()).collect();
    assert_eq!(kinds, all, "every durable kind was replayed");
    // Replay returns what was published, except the deleted message's content (seqs 1 and 2),
    // which the delete scrubbed.
    assert_eq!(
        sink.events_of(id)[2..],
        events[2..],
        "replay returns exactly what was published"
    );

    assert!(events.iter().all(|event| event.tenant == TENANT));
    // The unchecked read (cluster gap fill) sees the same log, with no membership required.
    let (unchecked, unchecked_last) = store
        .conversation_events(TENANT, id, 0, 100)
        .await
        .expect("conversation events");
    assert_eq!((unchecked, unchecked_last), (events.clone(), 9));
    let published = sink.events_of(id);
    for (event, live) in events.iter().zip(&published) {
        // The live frames carry the content the delete later scrubbed from the replay.
        let frame = frame_of(live);
        let json: serde_json::Value =
            serde_json::from_str(&event.render().expect("render")).expect("json");
        assert_eq!(json["type"], event.kind().as_str());
        assert_eq!(json["ts"], event.ts);
        let expected_subject = match event.kind() {
            EventKind::MemberAdded | EventKind::MemberRemoved | EventKind::MemberRoleChanged => {
                Some("nina")
            }
            _ => None,
        };
        assert_eq!(
            event.subject(),
            expected_subject,
            "subject of {:?}",
            event.kind()
        );
        check_frame(&frame, m, &first.client_msg_id, &attachment);
    }

    let (page, last_seq) = store
        .events_after(TENANT, "olga", id, 4, 2)
        .await
        .expect("page");
    assert_eq!(
        page.iter().map(|event| event.seq).collect::<Vec<_>>(),
        [5, 6]
    );
    assert_eq!(last_seq, 9);
    let (page, last_seq) = store
        .events_after(TENANT, "olga", id, 9, 10)
        .await
        .expect("caught up");
    assert!(page.is_empty());
    assert_eq!(last_seq, 9);
}

/// The fields of each frame written by `events_replay_every_kind`.
fn check_frame(frame: &ServerFrame, m: &str, client_msg_id: &str, attachment: &Attachment) {
    match frame {
        ServerFrame::Message(event) => {
            assert_eq!(
                (
                    event.id.as_str(),
                    event.author.as_str(),
                    event.body.as_str()
                ),
                (m, "mia", "v1")
            );
            assert_eq!(event.client_msg_id, client_msg_id);
            assert_eq!(&event.attachments, std::slice::from_ref(attachment));
        }
        ServerFrame::MessageEdited {
            message,
            author,
            body,
            ..
        } => {
            assert_eq!(
                (message.as_str(), author.as_str(), body.as_str()),
                (m, "mia", "v2")
            );
        }
        ServerFrame::ReactionAdded {
            message,
            user,
            emoji,
            ..
        }
        | ServerFrame::ReactionRemoved {
            message,
            user,
            emoji,
            ..
        } => {
            assert_eq!(
                (message.as_str(), user.as_str(), emoji.as_str()),
                (m, "olga", "👍")
            );
        }
        ServerFrame::MemberAdded { user, role, by, .. } => {
            assert_eq!(
                (user.as_str(), *role, by.as_str()),
                ("nina", Role::Member, "olga")
            );
        }
        ServerFrame::MemberRoleChanged { user, role, by, .. } => {
            assert_eq!(
                (user.as_str(), *role, by.as_str()),
                ("nina", Role::Admin, "olga")
            );
        }
        ServerFrame::MemberRemoved { user, by, .. } => {
            assert_eq!((user.as_str(), by.as_str()), ("nina", "olga"));
        }
        ServerFrame::ConversationUpdated {
            title,
            archived,
            by,
            ..
        } => {
            assert_eq!(
                (title.as_deref(), *archived, by.as_str()),
                (Some("T"), false, "olga")
            );
        }
        ServerFrame::MessageDeleted { message, by, .. } => {
            assert_eq!((message.as_str(), by.as_str()), (m, "olga"));
        }
        other => panic!("not a durable event frame: {other:?}"),
    }
}

/// After `close`, writes (and `ping`) are `Unavailable`; closing again is harmless.
pub async fn close_refuses_writes(store: DynStore, _sink: Arc<RecordingSink>) {
    store.ping().await.expect("ping while open");
    let conversation = group(&store, "alice", &["bob"]).await;
    let id = conversation.id.as_str();
    let sent = send(&store, id, "alice", "before close").await;

    store.close().await.expect("close");
    expect_err!(
        store
            .append_message(new_message(id, "alice", "after"))
            .await,
        StoreError::Unavailable
    );
    expect_err!(
        store.add_reaction(TENANT, "bob", &sent.id, "👍").await,
        StoreError::Unavailable
    );
    expect_err!(
        store.mark_read(TENANT, "bob", id, 1).await,
        StoreError::Unavailable
    );
    expect_err!(
        store
            .add_member(TENANT, "alice", id, "carol", Role::Member)
            .await,
        StoreError::Unavailable
    );
    let new = NewConversation {
        tenant: TENANT.to_owned(),
        creator: "alice".to_owned(),
        kind: ConversationKind::Group,
        title: None,
        members: Vec::new(),
    };
    expect_err!(
        store.create_conversation(new).await,
        StoreError::Unavailable
    );
    expect_err!(store.ping().await, StoreError::Unavailable);
    store.close().await.expect("second close");
}

/// What [`write_then_close`] left behind, for [`check_after_reopen`].
#[derive(Debug)]
pub struct Written {
    pub conversation: String,
    pub direct: String,
    /// Every append acknowledged, including those racing `close`.
    pub acked: Vec<Appended>,
    /// The events before the appends that raced `close`.
    pub events: Vec<StoredEvent>,
}

/// Writes, then closes while appends are still queued: each of them must either be acknowledged
/// (and durable) or refused with `Unavailable`.
pub async fn write_then_close(store: DynStore, _sink: Arc<RecordingSink>) -> Written {
    let conversation = group(&store, "alice", &["bob"]).await;
    let id = conversation.id.clone();
    let (direct, _) = store
        .create_conversation(NewConversation {
            tenant: TENANT.to_owned(),
            creator: "alice".to_owned(),
            kind: ConversationKind::Direct,
            title: None,
            members: vec!["bob".to_owned()],
        })
        .await
        .expect("direct");
    let mut acked = Vec::new();
    for body in ["one", "two", "three"] {
        acked.push(send(&store, &id, "bob", body).await);
    }
    store
        .edit_message(TENANT, "bob", &acked[0].id, "one, edited".into())
        .await
        .expect("edit");
    store
        .add_reaction(TENANT, "alice", &acked[1].id, "👍")
        .await
        .expect("react");
    store
        .mark_read(TENANT, "alice", &id, 2)
        .await
        .expect("mark read");
    let (events, _) = store
        .events_after(TENANT, "alice", &id, 0, 1000)
        .await
        .expect("events");

    let mut racing = JoinSet::new();
    for n in 0..30 {
        let store = store.clone();
        let message = new_message(&id, "alice", &format!("racing {n}"));
        racing.spawn(async move { store.append_message(message).await });
    }
    tokio::task::yield_now().await;
    store.close().await.expect("close");
    for outcome in racing.join_all().await {
        match outcome {
            Ok(appended) => acked.push(appended),
            Err(StoreError::Unavailable) => {}
            Err(other) => panic!("a write racing close failed with {other:?}"),
        }
    }
    expect_err!(
        store
            .append_message(new_message(&id, "alice", "late"))
            .await,
        StoreError::Unavailable
    );
    Written {
        conversation: id,
        direct: direct.id,
        acked,
        events,
    }
}

/// The reopened store has every acknowledged write, in the same seqs, and goes on from there.
pub async fn check_after_reopen(store: DynStore, sink: Arc<RecordingSink>, written: Written) {
    let id = written.conversation.as_str();
    let (events, last_seq) = store
        .events_after(TENANT, "bob", id, 0, 1000)
        .await
        .expect("events");
    // Acked appends + the edit and the reaction; every seq is an acknowledged write.
    assert_eq!(
        last_seq,
        written.acked.len() as u64 + 2,
        "no acknowledged write lost, none extra"
    );
    assert_eq!(
        events.get(..written.events.len()),
        Some(&written.events[..])
    );
    let seqs: Vec<u64> = events.iter().map(|event| event.seq).collect();
    assert_eq!(seqs, (1..=last_seq).collect::<Vec<_>>());
    for ack in &written.acked {
        let message = store
            .message(TENANT, "bob", &ack.id)
            .await
            .expect("acked message persisted");
        assert_eq!((message.seq, message.ts), (ack.seq, ack.ts));
    }
    let first = store
        .message(TENANT, "alice", &written.acked[0].id)
        .await
        .expect("first");
    assert_eq!(first.body, "one, edited");
    let second = store
        .message(TENANT, "alice", &written.acked[1].id)
        .await
        .expect("second");
    assert_eq!(second.reactions.len(), 1);
    let alice = store
        .member(TENANT, id, "alice")
        .await
        .expect("member")
        .expect("alice");
    assert_eq!(alice.read_seq, 2);

    let (direct, created) = store
        .create_conversation(NewConversation {
            tenant: TENANT.to_owned(),
            creator: "bob".to_owned(),
            kind: ConversationKind::Direct,
            title: None,
            members: vec!["alice".to_owned()],
        })
        .await
        .expect("direct again");
    assert!(!created);
    assert_eq!(direct.id, written.direct);

    let next = send(&store, id, "alice", "after reopen").await;
    assert_eq!(next.seq, last_seq + 1);
    let published: Vec<u64> = sink.events_of(id).iter().map(|event| event.seq).collect();
    assert_eq!(
        published,
        [next.seq],
        "a reopened store publishes only new events"
    );
}

/// Until a delete scrubs them, replayed events are exactly the events published when they were
/// committed: a message's event keeps the text it was posted with through later edits, while
/// reads of the message show the latest.
pub async fn replay_matches_what_was_published(store: DynStore, sink: Arc<RecordingSink>) {
    let conversation = group(&store, "olga", &["mia"]).await;
    let id = conversation.id.as_str();
    let mut first = new_message(id, "mia", "posted \"text\" ✍");
    first.attachments = vec![Attachment {
        id: "f1".to_owned(),
        name: Some("a.png".to_owned()),
        mime: Some("image/png".to_owned()),
        size: Some(3),
    }];
    let posted = store.append_message(first).await.expect("send");
    let mut reply = new_message(id, "olga", "a reply");
    reply.reply_to = Some(posted.id.clone());
    store.append_message(reply).await.expect("reply");
    for body in ["second", "third"] {
        store
            .edit_message(TENANT, "mia", &posted.id, body.into())
            .await
            .expect("edit");
    }
    store
        .add_reaction(TENANT, "olga", &posted.id, "👍")
        .await
        .expect("react");
    store
        .update_conversation(TENANT, "olga", id, Some("T".into()), Some(true))
        .await
        .expect("archive");

    let (replayed, last_seq) = store
        .events_after(TENANT, "mia", id, 0, 100)
        .await
        .expect("replay");
    assert_eq!(last_seq, 6);
    assert_eq!(
        replayed,
        sink.events_of(id),
        "replay equals what was published"
    );
    let frame = frame_of(&replayed[0]);
    assert!(
        matches!(&frame, ServerFrame::Message(event) if event.body == "posted \"text\" ✍"),
        "the message event keeps its posted text: {frame:?}"
    );
    let message = store
        .message(TENANT, "olga", &posted.id)
        .await
        .expect("read");
    assert_eq!(message.body, "third");
    let (from_third, _) = store
        .events_after(TENANT, "mia", id, 2, 2)
        .await
        .expect("a page");
    assert_eq!(from_third, replayed[2..4]);
}
