//! Checks on the directory of people: sightings add and update a person, last-seen never moves
//! back, tenants are apart.

use std::sync::Arc;

use super::{OTHER_TENANT, RecordingSink, TENANT};
use crate::{DynStore, Person, Sighting};

fn person(id: &str, name: &str, last_seen: i64) -> Person {
    Person {
        id: id.to_owned(),
        name: name.to_owned(),
        last_seen,
    }
}

/// A sighting adds a person; a later one renames them and moves last-seen forward; an older
/// one renames but leaves last-seen; another tenant's directory is its own; no event is
/// published.
pub async fn people_directory(store: DynStore, sink: Arc<RecordingSink>) {
    assert_eq!(store.people(TENANT).await.expect("empty"), Vec::new());
    store
        .record_person(TENANT, "bob", "Bob", 1_000)
        .await
        .expect("bob");
    store
        .record_person(TENANT, "alice", "Alice", 2_000)
        .await
        .expect("alice");
    store
        .record_person(OTHER_TENANT, "alice", "Alice of Globex", 5_000)
        .await
        .expect("other alice");
    assert_eq!(
        store.people(TENANT).await.expect("people"),
        vec![person("alice", "Alice", 2_000), person("bob", "Bob", 1_000)]
    );

    store
        .record_person(TENANT, "alice", "Alice Liddell", 3_000)
        .await
        .expect("rename");
    store
        .record_person(TENANT, "bob", "Robert", 500)
        .await
        .expect("late sighting");
    assert_eq!(
        store.people(TENANT).await.expect("people"),
        vec![
            person("alice", "Alice Liddell", 3_000),
            person("bob", "Robert", 1_000)
        ]
    );
    assert_eq!(
        store.people(OTHER_TENANT).await.expect("other tenant"),
        vec![person("alice", "Alice of Globex", 5_000)]
    );
    assert_eq!(store.people("nobody").await.expect("unknown"), Vec::new());
    assert!(sink.events().is_empty(), "the directory publishes no event");
}

fn sighting(tenant: &str, user: &str, name: &str, seen_at: i64) -> Sighting {
    Sighting {
        tenant: tenant.to_owned(),
        user: user.to_owned(),
        name: name.to_owned(),
        seen_at,
    }
}

/// Sightings written together land as if written one by one, in order: a user sighted twice in
/// one batch ends with the later name and the latest time; tenants stay apart; an empty batch
/// is fine; a large batch (a node's sightings after every client reconnected at once) is
/// written whole.
pub async fn people_in_batches(store: DynStore, sink: Arc<RecordingSink>) {
    store.record_people(Vec::new()).await.expect("empty batch");
    store
        .record_person(TENANT, "carol", "Carol", 4_000)
        .await
        .expect("carol");
    store
        .record_people(vec![
            sighting(TENANT, "alice", "Alice", 2_000),
            sighting(OTHER_TENANT, "alice", "Alice of Globex", 5_000),
            sighting(TENANT, "alice", "Alice Liddell", 1_500),
            sighting(TENANT, "carol", "Caroline", 3_000),
            sighting(TENANT, "bob", "Bob", 1_000),
        ])
        .await
        .expect("batch");
    assert_eq!(
        store.people(TENANT).await.expect("people"),
        vec![
            person("alice", "Alice Liddell", 2_000),
            person("bob", "Bob", 1_000),
            person("carol", "Caroline", 4_000),
        ]
    );
    assert_eq!(
        store.people(OTHER_TENANT).await.expect("other tenant"),
        vec![person("alice", "Alice of Globex", 5_000)]
    );

    let many: Vec<Sighting> = (0..600)
        .map(|i| sighting(OTHER_TENANT, &format!("u{i:03}"), &format!("User {i}"), i))
        .collect();
    store.record_people(many).await.expect("large batch");
    let people = store.people(OTHER_TENANT).await.expect("people");
    assert_eq!(people.len(), 601, "every sighting of the batch was written");
    assert_eq!(people[1], person("u000", "User 0", 0));
    assert_eq!(people[600], person("u599", "User 599", 599));
    assert!(sink.events().is_empty(), "the directory publishes no event");
}
