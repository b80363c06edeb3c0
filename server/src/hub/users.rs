//! Each user's own event stream (`conversation_added`, `conversation_removed`, `role_changed`,
//! `read_moved`): which connections of this node belong to which user, and the nudge that tells
//! them to read their new user events from the store.
//!
//! The events themselves are durable and ordered by the store (per-user `user_seq`, committed
//! with their cause); the hub only carries a payload-free [`Outbound::User`] to each of the
//! user's connections, here and, through the fan-out, on the other nodes. Each session then
//! reads the events after the last `user_seq` it sent, so a nudge lost or doubled costs a
//! store read at most, never an event. Nothing of this is on a conversation message's path.

use std::sync::Arc;

use super::{Hub, Outbound, Subscriber};
use crate::metrics as m;
use crate::outbox::PushError;

/// The key of a user's connections: tenant and user id, apart.
pub(super) fn user_key(tenant: &str, user: &str) -> String {
    format!("{tenant}\u{1f}{user}")
}

impl Hub {
    /// Registers a connection for its user's events (before the session reads its starting
    /// `user_seq`, so that no event falls between the read and the registration).
    pub fn register_user(&self, tenant: &str, subscriber: Subscriber) {
        // Most users have one connection: a block of one subscriber, not `Vec`'s first four
        // (every idle connection keeps this).
        self.users
            .entry(user_key(tenant, &subscriber.user))
            .or_insert_with(|| Vec::with_capacity(1))
            .push(subscriber);
    }

    /// Tells every registered connection (every session registers) that the server is shutting
    /// down; returns how many. Called once the shutdown token is cancelled: a session that
    /// registers after this sees the token cancelled when its loop starts.
    pub fn shut_down_sessions(&self) -> usize {
        let mut told = 0;
        for subscribers in &self.users {
            for subscriber in subscribers.iter() {
                subscriber.outbox.shut_down();
                told += 1;
            }
        }
        told
    }

    /// Forgets a connection of `user` (idempotent).
    pub fn unregister_user(&self, tenant: &str, user: &str, conn: u64) {
        let key = user_key(tenant, user);
        if let Some(mut subscribers) = self.users.get_mut(&key) {
            subscribers.retain(|s| s.conn != conn);
        }
        self.users
            .remove_if(&key, |_, subscribers| subscribers.is_empty());
    }

    /// Committed user events for `users` of `tenant`: nudges their connections here and on the
    /// other nodes.
    pub fn users_changed<'a>(&self, tenant: &str, users: impl IntoIterator<Item = &'a str>) {
        for user in users {
            if let Some(fanout) = self.fanout.as_ref() {
                fanout.publish_user(tenant, user);
            }
            self.nudge_user(tenant, user);
        }
    }

    /// Nudges this node's connections of `user` (a full queue cuts that connection off as a
    /// slow consumer, as for conversation events; it resumes with `user_resume`).
    pub(super) fn nudge_user(&self, tenant: &str, user: &str) {
        let Some(subscribers) = self.users.get(&user_key(tenant, user)) else {
            return;
        };
        let mut count = 0;
        for sub in subscribers.iter() {
            match sub.outbox.push(Outbound::User) {
                Ok(()) => count += 1,
                Err(PushError::Full) => sub.outbox.kick(),
                Err(PushError::Closed) => {}
            }
        }
        m::user_nudges(count);
    }

    /// Items queued to this node's connections: in all, and to the most backed-up one. Every
    /// session registers here, so this sees every connection (at scrape, off the hot path).
    pub fn outbound_queues(&self) -> (usize, usize) {
        let (mut total, mut deepest) = (0, 0);
        for entry in self.users.iter() {
            for subscriber in entry.value() {
                let queued = subscriber.outbox.queued();
                total += queued;
                deepest = deepest.max(queued);
            }
        }
        (total, deepest)
    }

    /// After a fan-out outage: every local connection re-reads its user events.
    pub(super) fn nudge_all_users(&self) {
        let all: Vec<Arc<crate::outbox::Outbox>> = self
            .users
            .iter()
            .flat_map(|entry| {
                entry
                    .value()
                    .iter()
                    .map(|s| s.outbox.clone())
                    .collect::<Vec<_>>()
            })
            .collect();
        for outbox in all {
            if let Err(PushError::Full) = outbox.push(Outbound::User) {
                outbox.kick();
            }
        }
    }

    /// Connections registered for user events here.
    pub fn user_connections(&self) -> usize {
        self.users.iter().map(|entry| entry.value().len()).sum()
    }
}
