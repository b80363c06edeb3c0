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
use crate::people::UserKey;

/// The key of a user's record in [`crate::people::People`]. The strings are copied (a short
/// allocation each, on connect, disconnect and user events); the record, made when the user
/// was first seen, keeps the token's shared ones.
fn user_key(tenant: &str, user: &str) -> UserKey {
    (Arc::from(tenant), Arc::from(user))
}

impl Hub {
    /// Registers a connection for its user's events (before the session reads its starting
    /// `user_seq`, so that no event falls between the read and the registration). Kept in the
    /// user's one record ([`crate::people`]).
    pub fn register_user(&self, tenant: &str, subscriber: Subscriber) {
        let key = (Arc::from(tenant), subscriber.user);
        self.people
            .register(key, subscriber.conn, subscriber.outbox);
    }

    /// Tells every registered connection (every session registers) that the server is shutting
    /// down; returns how many. Called once the shutdown token is cancelled: a session that
    /// registers after this sees the token cancelled when its loop starts.
    pub fn shut_down_sessions(&self) -> usize {
        let mut told = 0;
        self.people.each_session(|outbox| {
            outbox.shut_down();
            told += 1;
        });
        told
    }

    /// Forgets a connection of `user` (idempotent).
    pub fn unregister_user(&self, tenant: &str, user: &str, conn: u64) {
        self.people.unregister(&user_key(tenant, user), conn);
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
        let mut count = 0;
        self.people.sessions_of(&user_key(tenant, user), |outbox| {
            match outbox.push(Outbound::User) {
                Ok(()) => count += 1,
                Err(PushError::Full) => outbox.kick(),
                Err(PushError::Closed) => {}
            }
        });
        m::user_nudges(count);
    }

    /// Items queued to this node's connections: in all, and to the most backed-up one. Every
    /// session registers here, so this sees every connection (at scrape, off the hot path).
    pub fn outbound_queues(&self) -> (usize, usize) {
        let (mut total, mut deepest) = (0, 0);
        self.people.each_session(|outbox| {
            let queued = outbox.queued();
            total += queued;
            deepest = deepest.max(queued);
        });
        (total, deepest)
    }

    /// After a fan-out outage: every local connection re-reads its user events.
    pub(super) fn nudge_all_users(&self) {
        let mut all = Vec::new();
        self.people.each_session(|outbox| all.push(outbox.clone()));
        for outbox in all {
            if let Err(PushError::Full) = outbox.push(Outbound::User) {
                outbox.kick();
            }
        }
    }

    /// Connections registered for user events here.
    pub fn user_connections(&self) -> usize {
        let mut count = 0;
        self.people.each_session(|_| count += 1);
        count
    }
}
