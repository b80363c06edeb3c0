//! Checks on access: tenancy and membership gates.

use std::sync::Arc;

use confab_protocol::rest::{ConversationKind, Role};

use super::{OTHER_TENANT, RecordingSink, TENANT, group, new_message, send};
use crate::{DynStore, NewConversation, PageQuery, StoreError};

/// Every read and write with another tenant's ids is `NotFound`, even for same-named users.
pub async fn tenant_isolation(store: DynStore, _sink: Arc<RecordingSink>) {
    let conversation = group(&store, "alice", &["bob"]).await;
    let id = conversation.id.as_str();
    let message = send(&store, id, "alice", "secret").await;
    let m = message.id.as_str();
    store
        .add_reaction(TENANT, "bob", m, "👍")
        .await
        .expect("react");

    let t = OTHER_TENANT;
    expect_err!(
        store.conversation(t, "alice", id).await,
        StoreError::NotFound(_)
    );
    expect_err!(store.members(t, "alice", id).await, StoreError::NotFound(_));
    expect_err!(store.member(t, id, "alice").await, StoreError::NotFound(_));
    expect_err!(
        store
            .update_conversation(t, "alice", id, Some("x".into()), Some(true))
            .await,
        StoreError::NotFound(_)
    );
    expect_err!(
        store.add_member(t, "alice", id, "eve", Role::Member).await,
        StoreError::NotFound(_)
    );
    expect_err!(
        store.remove_member(t, "alice", id, "bob").await,
        StoreError::NotFound(_)
    );
    expect_err!(
        store.set_role(t, "alice", id, "bob", Role::Admin).await,
        StoreError::NotFound(_)
    );
    expect_err!(
        store.conversation_events(t, id, 0, 10).await,
        StoreError::NotFound(_)
    );
    let mut foreign = new_message(id, "alice", "intruder");
    foreign.tenant = t.to_owned();
    expect_err!(store.append_message(foreign).await, StoreError::NotFound(_));
    expect_err!(store.message(t, "alice", m).await, StoreError::NotFound(_));
    expect_err!(
        store.edit_message(t, "alice", m, "x".into()).await,
        StoreError::NotFound(_)
    );
    expect_err!(
        store.delete_message(t, "alice", m).await,
        StoreError::NotFound(_)
    );
    expect_err!(
        store.add_reaction(t, "alice", m, "🎉").await,
        StoreError::NotFound(_)
    );
    expect_err!(
        store.remove_reaction(t, "bob", m, "👍").await,
        StoreError::NotFound(_)
    );
    let page = PageQuery {
        limit: 50,
        ..PageQuery::default()
    };
    expect_err!(
        store.messages(t, "alice", id, page).await,
        StoreError::NotFound(_)
    );
    expect_err!(
        store.events_after(t, "alice", id, 0, 10).await,
        StoreError::NotFound(_)
    );
    expect_err!(
        store.mark_read(t, "alice", id, 1).await,
        StoreError::NotFound(_)
    );
    assert!(
        store
            .list_conversations(t, "alice")
            .await
            .expect("list")
            .is_empty()
    );

    // A reply in the other tenant cannot point at this tenant's message either.
    let (theirs, _) = store
        .create_conversation(NewConversation {
            tenant: t.to_owned(),
            creator: "alice".to_owned(),
            kind: ConversationKind::Group,
            title: None,
            members: vec!["bob".to_owned()],
        })
        .await
        .expect("other tenant's group");
    let mut reply = new_message(&theirs.id, "alice", "reply");
    reply.tenant = t.to_owned();
    reply.reply_to = Some(m.to_owned());
    expect_err!(store.append_message(reply).await, StoreError::Conflict(_));

    // Nothing leaked into this tenant's conversation.
    let (events, last_seq) = store
        .events_after(TENANT, "alice", id, 0, 10)
        .await
        .expect("events");
    assert_eq!((events.len(), last_seq), (2, 2));
    let read = store.message(TENANT, "bob", m).await.expect("message");
    assert_eq!(read.body, "secret");
    assert!(!read.deleted);
}

/// Non-members get `NotMember` on every conversation-scoped call; unknown ids stay `NotFound`.
pub async fn non_member_is_rejected(store: DynStore, _sink: Arc<RecordingSink>) {
    let conversation = group(&store, "alice", &["bob"]).await;
    let id = conversation.id.as_str();
    let message = send(&store, id, "alice", "hello").await;
    let m = message.id.as_str();
    let x = "mallory";

    expect_err!(
        store.conversation(TENANT, x, id).await,
        StoreError::NotMember
    );
    expect_err!(store.members(TENANT, x, id).await, StoreError::NotMember);
    assert_eq!(store.member(TENANT, id, x).await.expect("member"), None);
    expect_err!(
        store
            .update_conversation(TENANT, x, id, Some("x".into()), None)
            .await,
        StoreError::NotMember
    );
    expect_err!(
        store.add_member(TENANT, x, id, x, Role::Member).await,
        StoreError::NotMember
    );
    expect_err!(
        store.remove_member(TENANT, x, id, "bob").await,
        StoreError::NotMember
    );
    expect_err!(
        store.set_role(TENANT, x, id, "bob", Role::Admin).await,
        StoreError::NotMember
    );
    expect_err!(
        store.append_message(new_message(id, x, "hi")).await,
        StoreError::NotMember
    );
    expect_err!(store.message(TENANT, x, m).await, StoreError::NotMember);
    expect_err!(
        store.edit_message(TENANT, x, m, "x".into()).await,
        StoreError::NotMember
    );
    expect_err!(
        store.delete_message(TENANT, x, m).await,
        StoreError::NotMember
    );
    expect_err!(
        store.add_reaction(TENANT, x, m, "👍").await,
        StoreError::NotMember
    );
    expect_err!(
        store.remove_reaction(TENANT, x, m, "👍").await,
        StoreError::NotMember
    );
    let page = PageQuery {
        limit: 10,
        ..PageQuery::default()
    };
    expect_err!(
        store.messages(TENANT, x, id, page).await,
        StoreError::NotMember
    );
    expect_err!(
        store.events_after(TENANT, x, id, 0, 10).await,
        StoreError::NotMember
    );
    expect_err!(
        store.mark_read(TENANT, x, id, 1).await,
        StoreError::NotMember
    );

    expect_err!(
        store.conversation(TENANT, "alice", "missing").await,
        StoreError::NotFound(_)
    );
    expect_err!(
        store
            .append_message(new_message("missing", "alice", "hi"))
            .await,
        StoreError::NotFound(_)
    );
    expect_err!(
        store.message(TENANT, "alice", "missing").await,
        StoreError::NotFound(_)
    );
    expect_err!(
        store.events_after(TENANT, "alice", "missing", 0, 1).await,
        StoreError::NotFound(_)
    );

    // A member who is removed loses access at once.
    store
        .remove_member(TENANT, "alice", id, "bob")
        .await
        .expect("remove bob");
    expect_err!(
        store.messages(TENANT, "bob", id, page).await,
        StoreError::NotMember
    );
    expect_err!(
        store.append_message(new_message(id, "bob", "hi")).await,
        StoreError::NotMember
    );
    assert!(
        store
            .list_conversations(TENANT, "bob")
            .await
            .expect("list")
            .is_empty()
    );
}
