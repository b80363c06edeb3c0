//! The directory of people: who of a tenant has connected or called the API, under which name.
//!
//! Every authenticated request would be a store write if recorded blindly; [`Sightings`]
//! remembers, per (tenant, user), the name and time of the last write and writes again only
//! when the name changed or [`REFRESH`] has passed. The write runs in a spawned task, so a
//! request never waits for it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use confab_storage::DynStore;
use dashmap::DashMap;

use crate::auth::AuthUser;

/// How often a user's last-seen time is written at most (unless their name changes).
pub const REFRESH: Duration = Duration::from_secs(60);

/// A user: (tenant, user id).
type UserKey = (Arc<str>, Arc<str>);

/// The last write per (tenant, user): the name written and when.
#[derive(Debug, Default)]
pub struct Sightings {
    written: DashMap<UserKey, (Arc<str>, Instant)>,
}

impl Sightings {
    /// Whether `user`, seen under `name` at `now`, is due a write; if so, notes it as written.
    fn due(&self, user: &AuthUser, name: &Arc<str>, now: Instant) -> bool {
        let key = (user.tenant.clone(), user.user.clone());
        // The guard is dropped before the insert below (same shard: it would deadlock). Two
        // requests racing here both write, which is harmless.
        let fresh = self.written.get(&key).is_some_and(|last| {
            let (last_name, last_at) = last.value();
            last_name == name && now.saturating_duration_since(*last_at) < REFRESH
        });
        if fresh {
            return false;
        }
        self.written.insert(key, (name.clone(), now));
        true
    }

    /// Records `user` as seen now, in the background, if due (see the module docs).
    pub fn seen(&self, store: &DynStore, user: &AuthUser) {
        let name = user.name.clone().unwrap_or_else(|| user.user.clone());
        if !self.due(user, &name, Instant::now()) {
            return;
        }
        let (store, tenant, id) = (store.clone(), user.tenant.clone(), user.user.clone());
        let seen_at = crate::media::now_ms();
        tokio::spawn(async move {
            if let Err(err) = store.record_person(&tenant, &id, &name, seen_at).await {
                tracing::warn!(%tenant, user = %id, error = %err, "cannot record a sighting");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> AuthUser {
        AuthUser {
            expires_at: u64::MAX,
            user: Arc::from("alice"),
            tenant: Arc::from("acme"),
            name: Some(Arc::from(name)),
        }
    }

    #[test]
    fn writes_on_first_sight_on_rename_and_once_per_interval() {
        let sightings = Sightings::default();
        let (alice, start) = (user("Alice"), Instant::now());
        let name: Arc<str> = Arc::from("Alice");
        assert!(sightings.due(&alice, &name, start));
        assert!(!sightings.due(&alice, &name, start + Duration::from_secs(1)));
        let renamed: Arc<str> = Arc::from("Alice L.");
        assert!(sightings.due(&alice, &renamed, start + Duration::from_secs(2)));
        assert!(!sightings.due(&alice, &renamed, start + Duration::from_secs(61)));
        assert!(sightings.due(&alice, &renamed, start + Duration::from_secs(63)));
    }
}
