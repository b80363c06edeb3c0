//! Checks on users' own event streams: membership changes, role changes and read-marker moves
//! record one event each for the member concerned, with gapless per-user seqs; replay after a
//! seq returns exactly the later ones; a seq past the last asks for a resync; tenants are
//! apart; the stream outlives a reopen like any other acknowledged write.

use std::sync::Arc;

use confab_protocol::rest::Role;

use super::{OTHER_TENANT, RecordingSink, TENANT, group, send};
use crate::{DynStore, USER_EVENTS_RETAINED, UserEvent, UserEventKind};

fn summary(events: &[UserEvent]) -> Vec<(u64, UserEventKind, Option<Role>, Option<u64>)> {
    events
        .iter()
        .map(|event| (event.user_seq, event.kind, event.role, event.read_seq))
        .collect()
}

/// Bob is added at creation, made admin, reads, is removed and added back: each is one event
/// of his stream, in order; Alice's own stream holds her creation only (and no read: the
/// marker did not move for her).
pub async fn user_events_follow_membership(store: DynStore, _sink: Arc<RecordingSink>) {
    use UserEventKind::{ConversationAdded, ConversationRemoved, ReadMoved, RoleChanged};
    let room = group(&store, "alice", &["bob"]).await;
    let id = room.id.as_str();
    store
        .set_role(TENANT, "alice", id, "bob", Role::Admin)
        .await
        .expect("promote");
    let sent = send(&store, id, "alice", "hello").await;
    assert!(
        store
            .mark_read(TENANT, "bob", id, sent.seq)
            .await
            .expect("read")
    );
    assert!(
        !store
            .mark_read(TENANT, "bob", id, sent.seq)
            .await
            .expect("read again")
    );
    store
        .remove_member(TENANT, "alice", id, "bob")
        .await
        .expect("remove");
    store
        .add_member(TENANT, "alice", id, "bob", Role::Member)
        .await
        .expect("add back");

    let page = store.user_events(TENANT, "bob", 0, 100).await.expect("bob");
    assert!(!page.resync);
    assert_eq!(page.last_seq, 5);
    assert_eq!(
        summary(&page.events),
        vec![
            (1, ConversationAdded, Some(Role::Member), None),
            (2, RoleChanged, Some(Role::Admin), None),
            (3, ReadMoved, None, Some(sent.seq)),
            (4, ConversationRemoved, None, None),
            (5, ConversationAdded, Some(Role::Member), None),
        ]
    );
    assert!(page.events.iter().all(|event| event.conversation == id));

    let later = store
        .user_events(TENANT, "bob", 3, 1)
        .await
        .expect("after 3");
    assert_eq!(
        summary(&later.events),
        vec![(4, ConversationRemoved, None, None)]
    );
    let none = store
        .user_events(TENANT, "bob", 5, 100)
        .await
        .expect("caught up");
    assert!(none.events.is_empty() && !none.resync);
    assert!(
        store
            .user_events(TENANT, "bob", 6, 100)
            .await
            .expect("ahead")
            .resync
    );

    let alice = store
        .user_events(TENANT, "alice", 0, 100)
        .await
        .expect("alice");
    assert_eq!(
        summary(&alice.events),
        vec![(1, ConversationAdded, Some(Role::Owner), None)]
    );

    let other = store
        .user_events(OTHER_TENANT, "bob", 0, 100)
        .await
        .expect("other tenant");
    assert_eq!(other.last_seq, 0);
    assert!(other.events.is_empty() && !other.resync);
}

/// Past the retention, the oldest events are gone: a reader behind them is told to resync,
/// one at the oldest retained seq is not.
pub async fn user_events_are_retained_up_to_a_bound(store: DynStore, _sink: Arc<RecordingSink>) {
    let room = group(&store, "alice", &["bob"]).await;
    // Each message moves bob's read marker once: one event each, after his `added`.
    for n in 0..USER_EVENTS_RETAINED {
        let sent = send(&store, &room.id, "alice", &format!("m{n}")).await;
        store
            .mark_read(TENANT, "bob", &room.id, sent.seq)
            .await
            .expect("read");
    }
    let last = USER_EVENTS_RETAINED + 1;
    let tail = store
        .user_events(TENANT, "bob", last - 1, 10)
        .await
        .expect("tail");
    assert_eq!(tail.last_seq, last);
    assert_eq!(tail.events.len(), 1);
    assert!(
        store
            .user_events(TENANT, "bob", 0, 10)
            .await
            .expect("too old")
            .resync
    );
    let oldest = last - USER_EVENTS_RETAINED + 1;
    let from_oldest = store
        .user_events(TENANT, "bob", oldest - 1, 10)
        .await
        .expect("oldest");
    assert!(!from_oldest.resync);
    assert_eq!(
        from_oldest.events.first().map(|event| event.user_seq),
        Some(oldest)
    );
}
