//! Checks on the directory of people: sightings add and update a person, last-seen never moves
//! back, tenants are apart.

use std::sync::Arc;

use super::{OTHER_TENANT, RecordingSink, TENANT};
use crate::{DynStore, Person};

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
