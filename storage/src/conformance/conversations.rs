//! Checks on conversations: creation, updates, read markers, lists.

use std::sync::Arc;
use std::time::Duration;

use confab_protocol::ServerFrame;
use confab_protocol::rest::{ConversationKind, Role};

use super::{OTHER_TENANT, RecordingSink, TENANT, group, last_published, new_message, send};
use crate::{DynStore, NewConversation, StoreError};

fn direct(tenant: &str, creator: &str, members: &[&str]) -> NewConversation {
    NewConversation {
        tenant: tenant.to_owned(),
        creator: creator.to_owned(),
        kind: ConversationKind::Direct,
        title: None,
        members: members.iter().map(|member| (*member).to_owned()).collect(),
    }
}

/// A group has its creator as owner and the others as members (duplicates ignored), takes no seq
/// and publishes nothing.
pub async fn create_group_conversation(store: DynStore, sink: Arc<RecordingSink>) {
    let new = NewConversation {
        tenant: TENANT.to_owned(),
        creator: "alice".to_owned(),
        kind: ConversationKind::Group,
        title: Some("Team".to_owned()),
        members: vec!["bob".into(), "bob".into(), "alice".into(), "carol".into()],
    };
    let (conversation, created) = store.create_conversation(new).await.expect("create");
    assert!(created);
    assert_eq!(conversation.kind, ConversationKind::Group);
    assert_eq!(conversation.title.as_deref(), Some("Team"));
    assert_eq!(conversation.created_by, "alice");
    assert!(!conversation.archived);
    assert_eq!(conversation.last_seq, 0);

    let id = conversation.id.clone();
    assert_eq!(
        store
            .conversation(TENANT, "bob", &id)
            .await
            .expect("read back"),
        conversation
    );
    let mut members = store.members(TENANT, "carol", &id).await.expect("members");
    members.sort_by(|a, b| a.user.cmp(&b.user));
    let roles: Vec<(&str, Role)> = members.iter().map(|m| (m.user.as_str(), m.role)).collect();
    assert_eq!(
        roles,
        [
            ("alice", Role::Owner),
            ("bob", Role::Member),
            ("carol", Role::Member)
        ]
    );
    assert!(members.iter().all(|member| member.read_seq == 0));

    let bob = store
        .member(TENANT, &id, "bob")
        .await
        .expect("member")
        .expect("bob is in");
    assert_eq!(bob.role, Role::Member);
    assert_eq!(
        store.member(TENANT, &id, "dave").await.expect("member"),
        None
    );
    expect_err!(
        store.member(TENANT, "missing", "bob").await,
        StoreError::NotFound(_)
    );
    expect_err!(
        store.conversation(TENANT, "alice", "missing").await,
        StoreError::NotFound(_)
    );

    let (events, last_seq) = store
        .events_after(TENANT, "alice", &id, 0, 100)
        .await
        .expect("events");
    assert!(events.is_empty());
    assert_eq!(last_seq, 0);
    assert!(
        sink.events().is_empty(),
        "creating a conversation is not an event"
    );
}

/// The direct conversation of a pair is created once per tenant, whoever asks; it names exactly
/// one other user.
pub async fn create_direct_conversation_once(store: DynStore, _sink: Arc<RecordingSink>) {
    let (first, created) = store
        .create_conversation(direct(TENANT, "alice", &["bob"]))
        .await
        .expect("create");
    assert!(created);
    assert_eq!(first.kind, ConversationKind::Direct);
    assert_eq!(first.title, None);

    let (again, created) = store
        .create_conversation(direct(TENANT, "bob", &["alice"]))
        .await
        .expect("reverse");
    assert!(!created);
    assert_eq!(again, first);
    let (again, created) = store
        .create_conversation(direct(TENANT, "alice", &["bob", "alice", "bob"]))
        .await
        .expect("duplicates");
    assert!(!created);
    assert_eq!(again.id, first.id);

    expect_err!(
        store
            .create_conversation(direct(TENANT, "alice", &[]))
            .await,
        StoreError::Invalid(_)
    );
    expect_err!(
        store
            .create_conversation(direct(TENANT, "alice", &["alice"]))
            .await,
        StoreError::Invalid(_)
    );
    expect_err!(
        store
            .create_conversation(direct(TENANT, "alice", &["bob", "carol"]))
            .await,
        StoreError::Invalid(_)
    );

    let (other_pair, created) = store
        .create_conversation(direct(TENANT, "alice", &["carol"]))
        .await
        .expect("other pair");
    assert!(created);
    assert_ne!(other_pair.id, first.id);
    let (other_tenant, created) = store
        .create_conversation(direct(OTHER_TENANT, "alice", &["bob"]))
        .await
        .expect("other tenant");
    assert!(created);
    assert_ne!(other_tenant.id, first.id);

    let mut members = store
        .members(TENANT, "bob", &first.id)
        .await
        .expect("members");
    members.sort_by(|a, b| a.user.cmp(&b.user));
    let roles: Vec<(&str, Role)> = members.iter().map(|m| (m.user.as_str(), m.role)).collect();
    assert_eq!(roles, [("alice", Role::Owner), ("bob", Role::Member)]);
}

/// Owners and admins update title and archived state; nothing to change is `None`; an archived
/// conversation refuses new messages, edits and reactions until unarchived.
pub async fn update_and_archive(store: DynStore, sink: Arc<RecordingSink>) {
    let conversation = group(&store, "olga", &["adam", "mia"]).await;
    let id = conversation.id.as_str();
    store
        .set_role(TENANT, "olga", id, "adam", Role::Admin)
        .await
        .expect("promote adam");
    let before = store
        .append_message(new_message(id, "mia", "before"))
        .await
        .expect("send");

    expect_err!(
        store
            .update_conversation(TENANT, "mia", id, Some("x".into()), None)
            .await,
        StoreError::Forbidden(_)
    );
    let seq = store
        .update_conversation(TENANT, "adam", id, Some("Renamed".into()), None)
        .await
        .expect("rename")
        .expect("renamed");
    let (_, frame) = last_published(&sink, id, seq);
    let ServerFrame::ConversationUpdated {
        title,
        archived,
        by,
        ..
    } = frame
    else {
        panic!("expected conversation_updated, got {frame:?}");
    };
    assert_eq!(
        (title.as_deref(), archived, by.as_str()),
        (Some("Renamed"), false, "adam")
    );
    let read = store.conversation(TENANT, "mia", id).await.expect("read");
    assert_eq!(
        (read.title.as_deref(), read.last_seq),
        (Some("Renamed"), seq)
    );

    let unchanged = [
        (Some("Renamed".to_owned()), None),
        (None, None),
        (None, Some(false)),
        (Some("Renamed".to_owned()), Some(false)),
    ];
    for (title, archived) in unchanged {
        let outcome = store
            .update_conversation(TENANT, "olga", id, title, archived)
            .await;
        assert_eq!(outcome.expect("no-op update"), None);
    }
    // An empty title clears it.
    store
        .update_conversation(TENANT, "olga", id, Some(String::new()), None)
        .await
        .expect("clear");
    assert_eq!(
        store
            .conversation(TENANT, "olga", id)
            .await
            .expect("read")
            .title,
        None
    );

    let seq = store
        .update_conversation(TENANT, "olga", id, None, Some(true))
        .await
        .expect("archive")
        .expect("archived");
    let (_, frame) = last_published(&sink, id, seq);
    assert!(matches!(
        frame,
        ServerFrame::ConversationUpdated { archived: true, .. }
    ));
    assert!(
        store
            .conversation(TENANT, "mia", id)
            .await
            .expect("read")
            .archived
    );
    expect_err!(
        store.append_message(new_message(id, "mia", "late")).await,
        StoreError::Forbidden(_)
    );
    expect_err!(
        store
            .edit_message(TENANT, "mia", &before.id, "x".into())
            .await,
        StoreError::Forbidden(_)
    );
    expect_err!(
        store.add_reaction(TENANT, "mia", &before.id, "👍").await,
        StoreError::Forbidden(_)
    );
    // A retry of a message sent before archiving still gets its original ack.
    let mut retry = new_message(id, "mia", "before");
    retry.client_msg_id = message_client_id(&store, id, &before.id).await;
    let again = store.append_message(retry).await.expect("retry");
    assert_eq!(
        (again.id.as_str(), again.seq, again.duplicate),
        (before.id.as_str(), before.seq, true)
    );

    store
        .update_conversation(TENANT, "olga", id, None, Some(false))
        .await
        .expect("unarchive");
    send(&store, id, "mia", "back").await;
}

async fn message_client_id(store: &DynStore, conversation: &str, id: &str) -> String {
    let message = store.message(TENANT, "olga", id).await.expect("message");
    assert_eq!(message.conversation, conversation);
    message.client_msg_id
}

/// Read markers only move forward, never past the last seq, and are not events.
pub async fn mark_read_moves_forward(store: DynStore, sink: Arc<RecordingSink>) {
    let conversation = group(&store, "alice", &["bob"]).await;
    let id = conversation.id.as_str();
    for body in ["one", "two", "three"] {
        send(&store, id, "bob", body).await;
    }
    let read_seq = |store: DynStore| async move {
        store
            .member(TENANT, id, "alice")
            .await
            .expect("member")
            .expect("alice")
            .read_seq
    };

    assert!(
        !store
            .mark_read(TENANT, "alice", id, 0)
            .await
            .expect("mark 0")
    );
    assert!(
        store
            .mark_read(TENANT, "alice", id, 2)
            .await
            .expect("mark 2")
    );
    assert_eq!(read_seq(store.clone()).await, 2);
    assert!(
        !store
            .mark_read(TENANT, "alice", id, 1)
            .await
            .expect("mark 1")
    );
    assert!(
        !store
            .mark_read(TENANT, "alice", id, 2)
            .await
            .expect("mark 2 again")
    );
    assert_eq!(read_seq(store.clone()).await, 2);
    expect_err!(
        store.mark_read(TENANT, "alice", id, 4).await,
        StoreError::Conflict(_)
    );
    assert!(
        store
            .mark_read(TENANT, "alice", id, 3)
            .await
            .expect("mark 3")
    );
    assert_eq!(read_seq(store.clone()).await, 3);

    assert_eq!(sink.events_of(id).len(), 3, "read markers are not events");
    assert_eq!(
        store
            .conversation(TENANT, "alice", id)
            .await
            .expect("read")
            .last_seq,
        3
    );
}

/// Conversations are listed newest activity first, with the caller's role, read marker, unread
/// count (others' live messages after the marker) and last live message.
pub async fn list_conversations_unread_and_order(store: DynStore, _sink: Arc<RecordingSink>) {
    // Distinct milliseconds keep the activity order unambiguous.
    let tick = || tokio::time::sleep(Duration::from_millis(3));
    let quiet = group(&store, "alice", &["carol"]).await;
    tick().await;
    let a = group(&store, "alice", &["bob"]).await;
    let b = group(&store, "alice", &["bob"]).await;
    tick().await;
    let a1 = send(&store, &a.id, "bob", "a1").await;
    let a2 = send(&store, &a.id, "bob", "a2").await;
    send(&store, &a.id, "bob", "a3").await;
    let a4 = send(&store, &a.id, "alice", "a4").await;
    tick().await;
    let b1 = send(&store, &b.id, "bob", "b1").await;
    let b2 = send(&store, &b.id, "bob", "b2").await;
    store
        .delete_message(TENANT, "bob", &b2.id)
        .await
        .expect("delete b2");

    let list = store
        .list_conversations(TENANT, "alice")
        .await
        .expect("list");
    let order: Vec<&str> = list.iter().map(|s| s.conversation.id.as_str()).collect();
    assert_eq!(order, [b.id.as_str(), a.id.as_str(), quiet.id.as_str()]);
    let [sb, sa, sq] = &list[..] else {
        panic!("three conversations")
    };
    assert_eq!((sa.role, sa.read_seq, sa.unread), (Role::Owner, 0, 3));
    assert_eq!(sa.conversation.last_seq, a4.seq);
    let last = sa.last_message.as_ref().expect("a has messages");
    assert_eq!(
        (last.id.as_str(), last.body.as_str()),
        (a4.id.as_str(), "a4")
    );
    assert_eq!(sb.unread, 1, "deleted messages are not unread");
    let last = sb.last_message.as_ref().expect("b has messages");
    assert_eq!(last.id, b1.id, "the last message is the last live one");
    assert_eq!((sq.unread, sq.last_message.as_ref()), (0, None));

    store
        .mark_read(TENANT, "alice", &a.id, a2.seq)
        .await
        .expect("mark read");
    let list = store
        .list_conversations(TENANT, "alice")
        .await
        .expect("list");
    let sa = list
        .iter()
        .find(|s| s.conversation.id == a.id)
        .expect("a listed");
    assert_eq!((sa.read_seq, sa.unread), (a2.seq, 1));

    let list = store
        .list_conversations(TENANT, "bob")
        .await
        .expect("bob's list");
    let order: Vec<&str> = list.iter().map(|s| s.conversation.id.as_str()).collect();
    assert_eq!(
        order,
        [b.id.as_str(), a.id.as_str()],
        "only bob's conversations"
    );
    assert_eq!(
        (list[1].role, list[1].unread),
        (Role::Member, 1),
        "own messages are not unread"
    );

    tick().await;
    send(&store, &a.id, "bob", "a5").await;
    let list = store
        .list_conversations(TENANT, "alice")
        .await
        .expect("list");
    assert_eq!(
        list[0].conversation.id, a.id,
        "new activity moves a conversation first"
    );
    assert_eq!(list[0].unread, 2);
    assert_eq!(a1.seq, 1);
}
