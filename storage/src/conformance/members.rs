//! Checks on membership changes and roles.

use std::sync::Arc;

use confab_protocol::ServerFrame;
use confab_protocol::rest::{ConversationKind, Role};

use super::{RecordingSink, TENANT, group, last_published};
use crate::{DynStore, NewConversation, StoreError};

async fn roles(store: &DynStore, by: &str, conversation: &str) -> Vec<(String, Role)> {
    let mut roles: Vec<(String, Role)> = store
        .members(TENANT, by, conversation)
        .await
        .expect("members")
        .into_iter()
        .map(|member| (member.user, member.role))
        .collect();
    roles.sort_by(|a, b| a.0.cmp(&b.0));
    roles
}

fn owned(roles: &[(&str, Role)]) -> Vec<(String, Role)> {
    roles
        .iter()
        .map(|(user, role)| ((*user).to_owned(), *role))
        .collect()
}

/// Who may add and remove whom: owners anyone, admins plain members, everyone themselves; the
/// last owner stays while others remain.
pub async fn member_rules(store: DynStore, sink: Arc<RecordingSink>) {
    let conversation = group(&store, "olga", &["adam", "mia", "max"]).await;
    let id = conversation.id.as_str();
    store
        .set_role(TENANT, "olga", id, "adam", Role::Admin)
        .await
        .expect("promote adam");

    expect_err!(
        store
            .add_member(TENANT, "mia", id, "nina", Role::Member)
            .await,
        StoreError::Forbidden(_)
    );
    expect_err!(
        store
            .add_member(TENANT, "adam", id, "nina", Role::Admin)
            .await,
        StoreError::Forbidden(_)
    );
    expect_err!(
        store
            .add_member(TENANT, "adam", id, "nina", Role::Owner)
            .await,
        StoreError::Forbidden(_)
    );
    let seq = store
        .add_member(TENANT, "adam", id, "nina", Role::Member)
        .await
        .expect("admin adds");
    let (event, frame) = last_published(&sink, id, seq);
    assert_eq!(event.subject(), Some("nina"));
    let ServerFrame::MemberAdded { user, role, by, .. } = frame else {
        panic!("expected member_added, got {frame:?}");
    };
    assert_eq!(
        (user.as_str(), role, by.as_str()),
        ("nina", Role::Member, "adam")
    );
    let nina = store
        .member(TENANT, id, "nina")
        .await
        .expect("member")
        .expect("nina is in");
    assert_eq!(nina.role, Role::Member);
    store
        .add_member(TENANT, "olga", id, "ivan", Role::Admin)
        .await
        .expect("owner adds an admin");
    expect_err!(
        store
            .add_member(TENANT, "olga", id, "nina", Role::Member)
            .await,
        StoreError::Conflict(_)
    );

    expect_err!(
        store.remove_member(TENANT, "mia", id, "max").await,
        StoreError::Forbidden(_)
    );
    expect_err!(
        store.remove_member(TENANT, "adam", id, "ivan").await,
        StoreError::Forbidden(_)
    );
    expect_err!(
        store.remove_member(TENANT, "adam", id, "olga").await,
        StoreError::Forbidden(_)
    );
    let seq = store
        .remove_member(TENANT, "adam", id, "nina")
        .await
        .expect("admin removes member");
    let (event, frame) = last_published(&sink, id, seq);
    assert_eq!(event.subject(), Some("nina"));
    let ServerFrame::MemberRemoved { user, by, .. } = frame else {
        panic!("expected member_removed, got {frame:?}");
    };
    assert_eq!((user.as_str(), by.as_str()), ("nina", "adam"));
    store
        .remove_member(TENANT, "max", id, "max")
        .await
        .expect("self-leave");
    expect_err!(
        store.remove_member(TENANT, "olga", id, "ghost").await,
        StoreError::NotFound(_)
    );
    expect_err!(
        store.remove_member(TENANT, "olga", id, "olga").await,
        StoreError::Conflict(_)
    );
    store
        .remove_member(TENANT, "olga", id, "ivan")
        .await
        .expect("owner removes an admin");

    assert_eq!(
        roles(&store, "mia", id).await,
        owned(&[
            ("adam", Role::Admin),
            ("mia", Role::Member),
            ("olga", Role::Owner)
        ])
    );
    let (events, last_seq) = store
        .events_after(TENANT, "olga", id, 0, 100)
        .await
        .expect("events");
    let seqs: Vec<u64> = events.iter().map(|event| event.seq).collect();
    assert_eq!(
        seqs,
        (1..=last_seq).collect::<Vec<_>>(),
        "failed changes took no seq"
    );
    assert_eq!(last_seq, 6);

    // The last owner may leave once alone.
    let solo = group(&store, "solo", &[]).await;
    store
        .remove_member(TENANT, "solo", &solo.id, "solo")
        .await
        .expect("last one out");
}

/// Only owners change roles; the same role is `None`; the last owner cannot step down.
pub async fn role_rules(store: DynStore, sink: Arc<RecordingSink>) {
    let conversation = group(&store, "olga", &["adam", "mia"]).await;
    let id = conversation.id.as_str();

    expect_err!(
        store.set_role(TENANT, "adam", id, "mia", Role::Admin).await,
        StoreError::Forbidden(_)
    );
    let seq = store
        .set_role(TENANT, "olga", id, "adam", Role::Admin)
        .await
        .expect("promote")
        .expect("changed");
    let (event, frame) = last_published(&sink, id, seq);
    assert_eq!(event.subject(), Some("adam"));
    let ServerFrame::MemberRoleChanged { user, role, by, .. } = frame else {
        panic!("expected member_role_changed, got {frame:?}");
    };
    assert_eq!(
        (user.as_str(), role, by.as_str()),
        ("adam", Role::Admin, "olga")
    );
    assert_eq!(
        store
            .set_role(TENANT, "olga", id, "adam", Role::Admin)
            .await
            .expect("same"),
        None
    );
    expect_err!(
        store.set_role(TENANT, "adam", id, "mia", Role::Admin).await,
        StoreError::Forbidden(_)
    );
    expect_err!(
        store
            .set_role(TENANT, "olga", id, "olga", Role::Admin)
            .await,
        StoreError::Conflict(_)
    );
    expect_err!(
        store
            .set_role(TENANT, "olga", id, "ghost", Role::Admin)
            .await,
        StoreError::NotFound(_)
    );

    store
        .set_role(TENANT, "olga", id, "adam", Role::Owner)
        .await
        .expect("second owner");
    store
        .set_role(TENANT, "olga", id, "olga", Role::Member)
        .await
        .expect("step down");
    expect_err!(
        store.set_role(TENANT, "olga", id, "mia", Role::Admin).await,
        StoreError::Forbidden(_)
    );
    assert_eq!(
        roles(&store, "mia", id).await,
        owned(&[
            ("adam", Role::Owner),
            ("mia", Role::Member),
            ("olga", Role::Member)
        ])
    );
    assert_eq!(sink.events_of(id).len(), 3);
}

/// The two members of a direct conversation are fixed: adding, removing and roles are
/// `Forbidden`, and so is a title.
pub async fn direct_members_are_fixed(store: DynStore, sink: Arc<RecordingSink>) {
    let (direct, _) = store
        .create_conversation(NewConversation {
            tenant: TENANT.to_owned(),
            creator: "alice".to_owned(),
            kind: ConversationKind::Direct,
            title: None,
            members: vec!["bob".to_owned()],
        })
        .await
        .expect("create direct");
    let id = direct.id.as_str();
    expect_err!(
        store
            .add_member(TENANT, "alice", id, "carol", Role::Member)
            .await,
        StoreError::Forbidden(_)
    );
    expect_err!(
        store.remove_member(TENANT, "alice", id, "bob").await,
        StoreError::Forbidden(_)
    );
    expect_err!(
        store.remove_member(TENANT, "bob", id, "bob").await,
        StoreError::Forbidden(_)
    );
    expect_err!(
        store
            .set_role(TENANT, "alice", id, "bob", Role::Admin)
            .await,
        StoreError::Forbidden(_)
    );
    expect_err!(
        store
            .update_conversation(TENANT, "alice", id, Some("title".into()), None)
            .await,
        StoreError::Forbidden(_)
    );
    // Strangers still learn nothing beyond "not a member".
    expect_err!(
        store
            .add_member(TENANT, "eve", id, "eve", Role::Member)
            .await,
        StoreError::NotMember
    );
    assert_eq!(
        roles(&store, "bob", id).await,
        owned(&[("alice", Role::Owner), ("bob", Role::Member)])
    );
    assert!(sink.events_of(id).is_empty());
}
