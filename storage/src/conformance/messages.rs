//! Checks on messages: idempotent sends, gapless seqs, replies, edits, deletes, reactions, pages.

use std::collections::BTreeSet;
use std::sync::Arc;

use confab_protocol::ServerFrame;
use confab_protocol::rest::{Attachment, Message, Reaction, Role};
use tokio::task::JoinSet;

use super::{
    OTHER_TENANT, RecordingSink, TENANT, frame_of, group, last_published, new_message, send,
};
use crate::{DynStore, NewMessage, PageQuery, StoreError};

/// A repeated `client_msg_id` from the same author returns the original and publishes nothing;
/// concurrent repeats agree on one message.
pub async fn send_is_idempotent(store: DynStore, sink: Arc<RecordingSink>) {
    let conversation = group(&store, "alice", &["bob"]).await;
    let id = conversation.id.as_str();
    let mut first = new_message(id, "alice", "hello");
    first.client_msg_id = "m1".to_owned();
    let original = store.append_message(first.clone()).await.expect("send");
    assert!(!original.duplicate);
    assert_eq!(original.seq, 1);

    let mut retry = first.clone();
    retry.body = "changed my mind".to_owned();
    let again = store.append_message(retry).await.expect("retry");
    assert_eq!(
        (again.id.as_str(), again.seq, again.ts, again.duplicate),
        (original.id.as_str(), original.seq, original.ts, true)
    );
    assert_eq!(sink.events_of(id).len(), 1, "a duplicate publishes nothing");

    // Repeat-only (a sender over its budget): the original for a stored id, nothing new else.
    let repeat = NewMessage {
        repeat_only: true,
        ..first.clone()
    };
    let again = store.append_message(repeat).await.expect("a repeat");
    assert_eq!(
        (again.id.as_str(), again.duplicate),
        (original.id.as_str(), true)
    );
    let unseen = NewMessage {
        repeat_only: true,
        client_msg_id: "never-sent".to_owned(),
        ..first.clone()
    };
    assert!(matches!(
        store.append_message(unseen).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        sink.events_of(id).len(),
        1,
        "repeat-only stores nothing new"
    );
    assert_eq!(
        store
            .message(TENANT, "bob", &original.id)
            .await
            .expect("read")
            .body,
        "hello"
    );

    let mut bobs = first.clone();
    bobs.author = "bob".to_owned();
    let other_author = store
        .append_message(bobs)
        .await
        .expect("other author, same id");
    assert!(!other_author.duplicate);
    assert_eq!(other_author.seq, 2);

    let mut tasks = JoinSet::new();
    for _ in 0..8 {
        let store = store.clone();
        let mut racing = new_message(id, "alice", "race");
        racing.client_msg_id = "m2".to_owned();
        tasks.spawn(async move { store.append_message(racing).await.expect("racing send") });
    }
    let acks = tasks.join_all().await;
    let ids: BTreeSet<&str> = acks.iter().map(|ack| ack.id.as_str()).collect();
    assert_eq!(ids.len(), 1, "every repeat names the same message");
    assert_eq!(acks.iter().filter(|ack| !ack.duplicate).count(), 1);
    let (events, last_seq) = store
        .events_after(TENANT, "bob", id, 0, 100)
        .await
        .expect("events");
    assert_eq!((events.len(), last_seq), (3, 3));
    assert_eq!(sink.events_of(id), events);
}

/// Concurrent appenders get seqs 1..=N, gapless and unique, published in seq order.
pub async fn concurrent_appends_are_gapless(store: DynStore, sink: Arc<RecordingSink>) {
    const WRITERS: usize = 20;
    const EACH: usize = 10;
    let users: Vec<String> = (0..WRITERS).map(|n| format!("user{n:02}")).collect();
    let others: Vec<&str> = users.iter().skip(1).map(String::as_str).collect();
    let conversation = group(&store, &users[0], &others).await;

    let mut tasks = JoinSet::new();
    for user in users {
        let store = store.clone();
        let id = conversation.id.clone();
        tasks.spawn(async move {
            let mut acks = Vec::with_capacity(EACH);
            for n in 0..EACH {
                acks.push(send(&store, &id, &user, &format!("{user} #{n}")).await);
            }
            acks
        });
    }
    let acks: Vec<_> = tasks.join_all().await.into_iter().flatten().collect();
    let total = (WRITERS * EACH) as u64;
    let mut seqs: Vec<u64> = acks.iter().map(|ack| ack.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=total).collect::<Vec<_>>());

    let published = sink.events_of(&conversation.id);
    let published_seqs: Vec<u64> = published.iter().map(|event| event.seq).collect();
    assert_eq!(
        published_seqs,
        (1..=total).collect::<Vec<_>>(),
        "published in seq order"
    );
    for ack in &acks {
        let event = &published[(ack.seq - 1) as usize];
        let ServerFrame::Message(message) = frame_of(event) else {
            panic!("expected a message event");
        };
        assert_eq!(message.id, ack.id);
    }
    let read = store
        .conversation(TENANT, "user00", &conversation.id)
        .await
        .expect("read");
    assert_eq!(read.last_seq, total);
}

/// `reply_to` must name a message of the same conversation; a refused append takes no seq.
pub async fn reply_to_must_be_in_conversation(store: DynStore, sink: Arc<RecordingSink>) {
    let a = group(&store, "alice", &["bob"]).await;
    let b = group(&store, "alice", &["bob"]).await;
    let a1 = send(&store, &a.id, "alice", "question").await;
    let b1 = send(&store, &b.id, "alice", "elsewhere").await;

    let mut reply = new_message(&a.id, "bob", "answer");
    reply.reply_to = Some(a1.id.clone());
    let answered = store.append_message(reply).await.expect("reply");
    assert_eq!(answered.seq, 2);
    let read = store
        .message(TENANT, "alice", &answered.id)
        .await
        .expect("read");
    assert_eq!(read.reply_to.as_deref(), Some(a1.id.as_str()));
    let (_, frame) = last_published(&sink, &a.id, answered.seq);
    let ServerFrame::Message(event) = frame else {
        panic!("expected a message event")
    };
    assert_eq!(event.reply_to.as_deref(), Some(a1.id.as_str()));

    for target in [b1.id.as_str(), "missing"] {
        let mut reply = new_message(&a.id, "bob", "misdirected");
        reply.reply_to = Some(target.to_owned());
        expect_err!(store.append_message(reply).await, StoreError::Conflict(_));
    }
    assert_eq!(
        send(&store, &a.id, "bob", "next").await.seq,
        3,
        "refused replies took no seq"
    );
}

/// Only the author edits, and not once deleted.
pub async fn edit_rules(store: DynStore, sink: Arc<RecordingSink>) {
    let conversation = group(&store, "alice", &["bob"]).await;
    let id = conversation.id.as_str();
    let sent = send(&store, id, "alice", "v1").await;

    expect_err!(
        store
            .edit_message(TENANT, "bob", &sent.id, "hijack".into())
            .await,
        StoreError::Forbidden(_)
    );
    let seq = store
        .edit_message(TENANT, "alice", &sent.id, "v2".into())
        .await
        .expect("edit");
    assert_eq!(seq, 2);
    let (_, frame) = last_published(&sink, id, seq);
    let ServerFrame::MessageEdited {
        message,
        author,
        body,
        ..
    } = frame
    else {
        panic!("expected message_edited, got {frame:?}");
    };
    assert_eq!(
        (message.as_str(), author.as_str(), body.as_str()),
        (sent.id.as_str(), "alice", "v2")
    );
    let read = store.message(TENANT, "bob", &sent.id).await.expect("read");
    assert_eq!(read.body, "v2");
    assert!(read.edited_at.is_some());
    assert_eq!(
        (read.seq, read.ts),
        (sent.seq, sent.ts),
        "an edit keeps the message's place"
    );

    store
        .delete_message(TENANT, "alice", &sent.id)
        .await
        .expect("delete");
    expect_err!(
        store
            .edit_message(TENANT, "alice", &sent.id, "v3".into())
            .await,
        StoreError::Conflict(_)
    );
    expect_err!(
        store
            .edit_message(TENANT, "alice", "missing", "v3".into())
            .await,
        StoreError::NotFound(_)
    );
}

/// The author or an owner or admin deletes; a deleted message keeps its place with an empty body,
/// no attachments and no reactions; deleting again is `None`.
pub async fn delete_rules(store: DynStore, sink: Arc<RecordingSink>) {
    let conversation = group(&store, "olga", &["adam", "mia", "max"]).await;
    let id = conversation.id.as_str();
    store
        .set_role(TENANT, "olga", id, "adam", Role::Admin)
        .await
        .expect("promote adam");
    let mut with_file = new_message(id, "mia", "see attached");
    with_file.attachments = vec![Attachment {
        id: "file1".to_owned(),
        name: Some("a.png".to_owned()),
        mime: Some("image/png".to_owned()),
        size: Some(42),
    }];
    let m1 = store.append_message(with_file).await.expect("send m1");
    let m2 = send(&store, id, "mia", "m2").await;
    let m3 = send(&store, id, "mia", "m3").await;
    store
        .add_reaction(TENANT, "max", &m1.id, "👍")
        .await
        .expect("react");
    assert_eq!(
        store
            .message(TENANT, "max", &m1.id)
            .await
            .expect("read")
            .attachments
            .len(),
        1
    );

    expect_err!(
        store.delete_message(TENANT, "max", &m1.id).await,
        StoreError::Forbidden(_)
    );
    let seq = store
        .delete_message(TENANT, "mia", &m1.id)
        .await
        .expect("delete")
        .expect("deleted");
    let (_, frame) = last_published(&sink, id, seq);
    let ServerFrame::MessageDeleted { message, by, .. } = frame else {
        panic!("expected message_deleted, got {frame:?}");
    };
    assert_eq!((message.as_str(), by.as_str()), (m1.id.as_str(), "mia"));
    assert_eq!(
        store
            .delete_message(TENANT, "mia", &m1.id)
            .await
            .expect("again"),
        None
    );
    assert_eq!(
        store
            .delete_message(TENANT, "olga", &m1.id)
            .await
            .expect("again"),
        None
    );
    store
        .delete_message(TENANT, "adam", &m2.id)
        .await
        .expect("admin deletes")
        .expect("deleted");
    store
        .delete_message(TENANT, "olga", &m3.id)
        .await
        .expect("owner deletes")
        .expect("deleted");
    expect_err!(
        store.delete_message(TENANT, "olga", "missing").await,
        StoreError::NotFound(_)
    );

    let read = store.message(TENANT, "max", &m1.id).await.expect("read");
    assert!(read.deleted);
    assert_eq!(read.body, "");
    assert!(read.attachments.is_empty() && read.reactions.is_empty());
    expect_err!(
        store.add_reaction(TENANT, "max", &m1.id, "🎉").await,
        StoreError::Conflict(_)
    );

    let page = store
        .messages(
            TENANT,
            "max",
            id,
            PageQuery {
                limit: 10,
                ..PageQuery::default()
            },
        )
        .await
        .expect("page");
    let shown: Vec<(u64, bool, &str)> = page
        .messages
        .iter()
        .map(|m| (m.seq, m.deleted, m.body.as_str()))
        .collect();
    assert_eq!(
        shown,
        [(m1.seq, true, ""), (m2.seq, true, ""), (m3.seq, true, "")]
    );
}

fn sorted_reactions(message: &Message) -> Vec<(String, u64, Vec<String>)> {
    let mut reactions: Vec<(String, u64, Vec<String>)> = message
        .reactions
        .iter()
        .map(
            |Reaction {
                 emoji,
                 count,
                 users,
             }| {
                let mut users = users.clone();
                users.sort();
                (emoji.clone(), *count, users)
            },
        )
        .collect();
    reactions.sort();
    reactions
}

fn reaction(emoji: &str, users: &[&str]) -> (String, u64, Vec<String>) {
    (
        emoji.to_owned(),
        users.len() as u64,
        users.iter().map(|user| (*user).to_owned()).collect(),
    )
}

/// Reactions are added and removed once (`None` when unchanged) and read back aggregated.
pub async fn reactions_are_idempotent_and_aggregated(store: DynStore, sink: Arc<RecordingSink>) {
    let conversation = group(&store, "alice", &["bob", "carol"]).await;
    let id = conversation.id.as_str();
    let sent = send(&store, id, "alice", "react to me").await;
    let m = sent.id.as_str();

    let seq = store
        .add_reaction(TENANT, "alice", m, "👍")
        .await
        .expect("react")
        .expect("added");
    let (_, frame) = last_published(&sink, id, seq);
    let ServerFrame::ReactionAdded {
        message,
        user,
        emoji,
        ..
    } = frame
    else {
        panic!("expected reaction_added, got {frame:?}");
    };
    assert_eq!(
        (message.as_str(), user.as_str(), emoji.as_str()),
        (m, "alice", "👍")
    );
    assert_eq!(
        store
            .add_reaction(TENANT, "alice", m, "👍")
            .await
            .expect("again"),
        None
    );
    store
        .add_reaction(TENANT, "bob", m, "👍")
        .await
        .expect("bob")
        .expect("added");
    store
        .add_reaction(TENANT, "carol", m, "🎉")
        .await
        .expect("carol")
        .expect("added");

    let expected = vec![
        reaction("🎉", &["carol"]),
        reaction("👍", &["alice", "bob"]),
    ];
    let read = store.message(TENANT, "bob", m).await.expect("read");
    assert_eq!(sorted_reactions(&read), expected);
    let page = store
        .messages(
            TENANT,
            "carol",
            id,
            PageQuery {
                limit: 10,
                ..PageQuery::default()
            },
        )
        .await
        .expect("page");
    assert_eq!(sorted_reactions(&page.messages[0]), expected);

    let seq = store
        .remove_reaction(TENANT, "bob", m, "👍")
        .await
        .expect("unreact")
        .expect("removed");
    let (_, frame) = last_published(&sink, id, seq);
    let ServerFrame::ReactionRemoved {
        message,
        user,
        emoji,
        ..
    } = frame
    else {
        panic!("expected reaction_removed, got {frame:?}");
    };
    assert_eq!(
        (message.as_str(), user.as_str(), emoji.as_str()),
        (m, "bob", "👍")
    );
    assert_eq!(
        store
            .remove_reaction(TENANT, "bob", m, "👍")
            .await
            .expect("again"),
        None
    );
    assert_eq!(
        store
            .remove_reaction(TENANT, "alice", m, "❤️")
            .await
            .expect("absent"),
        None
    );
    let read = store.message(TENANT, "alice", m).await.expect("read");
    assert_eq!(
        sorted_reactions(&read),
        vec![reaction("🎉", &["carol"]), reaction("👍", &["alice"])]
    );

    let (events, last_seq) = store
        .events_after(TENANT, "alice", id, 0, 100)
        .await
        .expect("events");
    assert_eq!((events.len(), last_seq), (5, 5), "only changes are events");
}

async fn page_seqs(store: &DynStore, conversation: &str, query: PageQuery) -> (Vec<u64>, bool) {
    let page = store
        .messages(TENANT, "alice", conversation, query)
        .await
        .expect("page");
    (
        page.messages.iter().map(|message| message.seq).collect(),
        page.has_more,
    )
}

/// Pages go backwards from `before` (or the newest) and forwards from `after`, always oldest
/// first, with `has_more` in the direction asked and `limit` clamped to 1..=200.
pub async fn paging_before_and_after(store: DynStore, _sink: Arc<RecordingSink>) {
    const TOTAL: u64 = 250;
    let conversation = group(&store, "alice", &[]).await;
    let id = conversation.id.as_str();
    let mut tasks = JoinSet::new();
    for task in 0..10 {
        let store = store.clone();
        let id = id.to_owned();
        tasks.spawn(async move {
            for n in 0..TOTAL / 10 {
                send(&store, &id, "alice", &format!("{task}/{n}")).await;
            }
        });
    }
    tasks.join_all().await;

    let range = |from: u64, to: u64| (from..=to).collect::<Vec<u64>>();
    let q = |before: Option<u64>, after: Option<u64>, limit: u32| PageQuery {
        before,
        after,
        limit,
    };
    assert_eq!(
        page_seqs(&store, id, q(None, None, 50)).await,
        (range(201, 250), true)
    );
    assert_eq!(
        page_seqs(&store, id, q(Some(201), None, 50)).await,
        (range(151, 200), true)
    );
    assert_eq!(
        page_seqs(&store, id, q(Some(51), None, 50)).await,
        (range(1, 50), false)
    );
    assert_eq!(
        page_seqs(&store, id, q(Some(31), None, 50)).await,
        (range(1, 30), false)
    );
    assert_eq!(
        page_seqs(&store, id, q(Some(1), None, 50)).await,
        (vec![], false)
    );
    assert_eq!(
        page_seqs(&store, id, q(None, Some(0), 100)).await,
        (range(1, 100), true)
    );
    assert_eq!(
        page_seqs(&store, id, q(None, Some(200), 50)).await,
        (range(201, 250), false)
    );
    assert_eq!(
        page_seqs(&store, id, q(None, Some(240), 50)).await,
        (range(241, 250), false)
    );
    assert_eq!(
        page_seqs(&store, id, q(None, Some(TOTAL), 50)).await,
        (vec![], false)
    );
    assert_eq!(
        page_seqs(&store, id, q(None, None, 0)).await,
        (vec![TOTAL], true),
        "limit 0 → 1"
    );
    assert_eq!(
        page_seqs(&store, id, q(None, None, 1000)).await,
        (range(51, 250), true),
        "max 200"
    );

    // Walking back from the newest visits every message once.
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let (seqs, has_more) = page_seqs(&store, id, q(before, None, 60)).await;
        assert!(
            seqs.windows(2).all(|pair| pair[0] < pair[1]),
            "pages are oldest first"
        );
        before = seqs.first().copied();
        seen.splice(0..0, seqs);
        if !has_more {
            break;
        }
    }
    assert_eq!(seen, range(1, TOTAL));
}

/// The events after a seq, as a resume reads them: the oldest first, at most `limit`, with the
/// conversation's last seq, for every limit and position around where a backend changes how it
/// reads (the SQLite store reads a few on the calling thread and more in its pool); a non-member
/// gets `NotMember` whatever the limit.
pub async fn events_after_every_limit(store: DynStore, _sink: Arc<RecordingSink>) {
    const TOTAL: u64 = 40;
    let conversation = group(&store, "alice", &[]).await;
    let id = conversation.id.as_str();
    let first = store
        .events_after(TENANT, "alice", id, 0, 1000)
        .await
        .expect("events")
        .1;
    for n in 0..TOTAL {
        send(&store, id, "alice", &format!("m{n}")).await;
    }
    let last = first + TOTAL;
    for after in [0, first, last - 17, last - 16, last - 15, last - 1, last] {
        for limit in [0, 1, 15, 16, 17, 30, 1000] {
            let (events, last_seq) = store
                .events_after(TENANT, "alice", id, after, limit)
                .await
                .expect("events");
            let want: Vec<u64> = (after + 1..=last).take(limit as usize).collect();
            let got: Vec<u64> = events.iter().map(|event| event.seq).collect();
            assert_eq!(got, want, "after {after}, limit {limit}");
            assert_eq!(last_seq, last, "after {after}, limit {limit}");
        }
    }
    for limit in [1, 16, 1000] {
        expect_err!(
            store.events_after(TENANT, "mallory", id, 0, limit).await,
            StoreError::NotMember
        );
        expect_err!(
            store
                .events_after(OTHER_TENANT, "alice", id, 0, limit)
                .await,
            StoreError::NotFound("conversation")
        );
    }
}

/// A deleted message's content is gone from the replayable log too: its `message` and
/// `message_edited` frames come back with empty bodies and no attachments, other messages
/// untouched.
pub async fn delete_scrubs_replayed_content(store: DynStore, _sink: Arc<RecordingSink>) {
    let conversation = group(&store, "olga", &["mia"]).await;
    let id = conversation.id.as_str();
    let mut secret = new_message(id, "mia", "the secret");
    secret.attachments = vec![Attachment {
        id: "f1".to_owned(),
        name: None,
        mime: None,
        size: None,
    }];
    let secret = store.append_message(secret).await.expect("send secret");
    let kept = send(&store, id, "mia", "kept").await;
    store
        .edit_message(TENANT, "mia", &secret.id, "the secret, edited".to_owned())
        .await
        .expect("edit");
    store
        .delete_message(TENANT, "mia", &secret.id)
        .await
        .expect("delete")
        .expect("deleted");
    let (events, _) = store
        .events_after(TENANT, "olga", id, 0, 100)
        .await
        .expect("replay");
    let mut scrubbed = 0;
    for event in &events {
        let text = event.render().expect("render");
        assert!(!text.contains("secret"), "content survived in {text}");
        match frame_of(event) {
            ServerFrame::Message(m) if m.id == secret.id => {
                assert!(m.body.is_empty() && m.attachments.is_empty());
                scrubbed += 1;
            }
            ServerFrame::Message(m) if m.id == kept.id => assert_eq!(m.body, "kept"),
            ServerFrame::MessageEdited { body, .. } => {
                assert!(body.is_empty());
                scrubbed += 1;
            }
            _ => {}
        }
    }
    assert_eq!(
        scrubbed, 2,
        "the message and its edit were replayed, scrubbed"
    );
    let page = store
        .messages(
            TENANT,
            "olga",
            id,
            PageQuery {
                before: None,
                after: None,
                limit: 10,
            },
        )
        .await
        .expect("history");
    assert!(page.messages.iter().all(|m| !m.body.contains("secret")));
}
