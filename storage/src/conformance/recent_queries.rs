//! Checks on users' recent search queries: newest first, a repeated query moves to the front
//! once, the bound, clearing, and users and tenants apart.

use std::sync::Arc;

use super::{OTHER_TENANT, RecordingSink, TENANT};
use crate::{DynStore, RECENT_QUERIES_RETAINED};

async fn queries(store: &DynStore, tenant: &str, user: &str) -> Vec<String> {
    store
        .recent_queries(tenant, user)
        .await
        .expect("recent queries")
        .into_iter()
        .map(|recent| recent.query)
        .collect()
}

/// Queries come back newest first, each once (a repeat moves to the front with its new time);
/// only the last [`RECENT_QUERIES_RETAINED`] are kept; clearing forgets one user's only; another
/// user or tenant never sees them; no event is published.
pub async fn recent_queries_are_per_user_and_bounded(store: DynStore, sink: Arc<RecordingSink>) {
    assert!(queries(&store, TENANT, "alice").await.is_empty());
    for (at, query) in [(1_000, "rocket"), (2_000, "launch"), (3_000, "budget")] {
        store
            .record_query(TENANT, "alice", query, at)
            .await
            .expect("record");
    }
    // The same millisecond again: the order is still the order of recording.
    store
        .record_query(TENANT, "alice", "rocket", 3_000)
        .await
        .expect("repeat");
    store
        .record_query(TENANT, "bob", "bob's own", 1_000)
        .await
        .expect("bob");
    store
        .record_query(OTHER_TENANT, "alice", "globex alice", 1_000)
        .await
        .expect("other tenant");
    assert_eq!(
        queries(&store, TENANT, "alice").await,
        ["rocket", "budget", "launch"]
    );
    let newest = store.recent_queries(TENANT, "alice").await.expect("recent");
    assert_eq!(newest[0].at, 3_000, "a repeat takes its new time");
    assert_eq!(queries(&store, TENANT, "bob").await, ["bob's own"]);
    assert_eq!(
        queries(&store, OTHER_TENANT, "alice").await,
        ["globex alice"]
    );

    let bound = i64::from(RECENT_QUERIES_RETAINED);
    for n in 0..bound + 5 {
        store
            .record_query(TENANT, "alice", &format!("query {n}"), 10_000 + n)
            .await
            .expect("record many");
    }
    let kept = queries(&store, TENANT, "alice").await;
    let expected: Vec<String> = (5..bound + 5).rev().map(|n| format!("query {n}")).collect();
    assert_eq!(kept, expected, "the newest {bound} are kept");

    store
        .clear_recent_queries(TENANT, "alice")
        .await
        .expect("clear");
    assert!(queries(&store, TENANT, "alice").await.is_empty());
    assert_eq!(queries(&store, TENANT, "bob").await, ["bob's own"]);
    assert_eq!(
        queries(&store, OTHER_TENANT, "alice").await,
        ["globex alice"]
    );
    store
        .record_query(TENANT, "alice", "after clearing", 20_000)
        .await
        .expect("record after clearing");
    assert_eq!(queries(&store, TENANT, "alice").await, ["after clearing"]);
    assert!(sink.events().is_empty(), "recent queries publish no event");
}
