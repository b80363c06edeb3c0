//! Per-user limits, in one place: a keyed token bucket per kind of action (messages,
//! reactions, edits, deletes, joins and leaves, REST requests, media uploads, searches), caps
//! on reactions, and a cap on each user's open WebSocket connections.
//!
//! Every limit is per user of a tenant and per minute, with the whole minute's budget as its
//! burst; a refusal is `rate_limited` with the time until the next allowed action
//! (`retry_after_ms` on the WebSocket, `Retry-After` in REST). A limit of 0 is off.

use std::num::NonZeroU32;
use std::sync::Arc;

use confab_protocol::ErrorCode;
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::auth::AuthUser;
use crate::config::Config;
use crate::error::AppError;
use crate::people::{People, UserKey, key};

type KeyedLimiter = RateLimiter<UserKey, DefaultKeyedStateStore<UserKey>, DefaultClock>;

/// One kind of action's budget per user.
pub struct Limit {
    limiter: Option<KeyedLimiter>,
    per_minute: u32,
    /// What is counted, plural (`messages`), for the error message.
    what: &'static str,
}

impl std::fmt::Debug for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Limit({} {} per minute)", self.per_minute, self.what)
    }
}

impl Limit {
    /// `per_minute` actions a minute per user; 0: no limit.
    pub fn per_minute(per_minute: u32, what: &'static str) -> Limit {
        Limit {
            limiter: NonZeroU32::new(per_minute).map(|n| RateLimiter::keyed(Quota::per_minute(n))),
            per_minute,
            what,
        }
    }

    /// Takes one action from the user's budget, or refuses with `rate_limited` and when to
    /// retry.
    pub fn check(&self, user: &AuthUser) -> Result<(), AppError> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter.check_key(&key(user)).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            AppError::new(
                ErrorCode::RateLimited,
                format!("more than {} {} per minute", self.per_minute, self.what),
            )
            .with_retry_after(wait)
        })
    }

    /// Forgets the budgets of users idle for a while, so the map does not grow without bound.
    pub fn forget_idle(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// The limits of actions on conversations, shared by the WebSocket and REST.
#[derive(Debug)]
pub struct UserLimits {
    pub messages: Limit,
    pub reactions: Limit,
    pub edits: Limit,
    pub deletes: Limit,
    /// Joins and leaves (each one presence change for everyone else in the room).
    pub joins: Limit,
    /// Every authenticated REST request.
    pub rest: Limit,
    /// Reactions a message may carry in all, and from one user.
    pub max_reactions_per_message: usize,
    pub max_reactions_per_user: usize,
    pub connections: Connections,
}

impl UserLimits {
    /// The limits of `config`; the connection counts are kept in `people`.
    pub fn new(config: &Config, people: Arc<People>) -> UserLimits {
        UserLimits {
            messages: Limit::per_minute(config.message_rate_per_minute, "messages"),
            reactions: Limit::per_minute(config.reaction_rate_per_minute, "reactions"),
            edits: Limit::per_minute(config.edit_rate_per_minute, "edits"),
            deletes: Limit::per_minute(config.delete_rate_per_minute, "deletes"),
            joins: Limit::per_minute(config.join_rate_per_minute, "joins and leaves"),
            rest: Limit::per_minute(config.rest_rate_per_minute, "API requests"),
            max_reactions_per_message: config.max_reactions_per_message,
            max_reactions_per_user: config.max_reactions_per_user,
            connections: Connections::new(config.max_connections_per_user, people),
        }
    }

    /// Forgets idle users' budgets (called every minute).
    pub fn forget_idle(&self) {
        for limit in [
            &self.messages,
            &self.reactions,
            &self.edits,
            &self.deletes,
            &self.joins,
            &self.rest,
        ] {
            limit.forget_idle();
        }
    }

    /// Refuses a reaction that would take `message` past its caps (`too_large`): `reactions`
    /// are the message's reactions now. Adding a reaction that is already there is not refused.
    pub fn check_reaction(
        &self,
        user: &str,
        emoji: &str,
        reactions: &[confab_protocol::rest::Reaction],
    ) -> Result<(), AppError> {
        let present = reactions
            .iter()
            .any(|r| r.emoji == emoji && r.users.iter().any(|u| u == user));
        if present {
            return Ok(());
        }
        let total: usize = reactions.iter().map(|r| r.users.len()).sum();
        if total >= self.max_reactions_per_message {
            return Err(AppError::too_large(format!(
                "this message has the most reactions it may carry ({})",
                self.max_reactions_per_message
            )));
        }
        let own = reactions
            .iter()
            .filter(|r| r.users.iter().any(|u| u == user))
            .count();
        if own >= self.max_reactions_per_user {
            return Err(AppError::too_large(format!(
                "at most {} reactions per person on one message",
                self.max_reactions_per_user
            )));
        }
        Ok(())
    }
}

/// Each user's open WebSocket connections, capped; counted in the user's record in [`People`].
#[derive(Debug)]
pub struct Connections {
    max: usize,
    people: Arc<People>,
}

/// One open connection, counted until dropped, or until [`ConnectionSlot::keep`] hands it to
/// a session, which gives it back with [`Connections::close`] (the session keeps no slot: its
/// size is watched, and it knows its user).
#[derive(Debug)]
pub struct ConnectionSlot {
    key: Option<UserKey>,
    people: Arc<People>,
}

impl ConnectionSlot {
    /// Keeps the connection counted after this slot is gone.
    pub fn keep(mut self) {
        self.key = None;
    }
}

impl Connections {
    fn new(max: usize, people: Arc<People>) -> Connections {
        Connections { max, people }
    }

    /// A slot for one more connection of `user`, or `rate_limited` at the cap (0: no cap).
    pub fn open(&self, user: &AuthUser) -> Result<ConnectionSlot, AppError> {
        let key = key(user);
        if !self.people.open_connection(&key, self.max) {
            return Err(AppError::new(
                ErrorCode::RateLimited,
                format!(
                    "more than {} open connections for this user; close one first",
                    self.max
                ),
            ));
        }
        Ok(ConnectionSlot {
            key: Some(key),
            people: self.people.clone(),
        })
    }

    /// Gives back a kept slot of `user`.
    pub fn close(&self, user: &AuthUser) {
        self.people.close_connection(&key(user));
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        if let Some(key) = &self.key {
            self.people.close_connection(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_protocol::rest::Reaction;

    fn user(name: &str) -> AuthUser {
        AuthUser {
            user: name.into(),
            tenant: "t".into(),
            name: None,
            expires_at: u64::MAX,
        }
    }

    #[test]
    fn a_limit_refuses_past_its_budget_with_a_retry_hint_and_zero_is_off() {
        let limit = Limit::per_minute(2, "edits");
        assert!(limit.check(&user("a")).is_ok());
        assert!(limit.check(&user("a")).is_ok());
        let refused = limit.check(&user("a")).expect_err("third in a minute");
        assert_eq!(refused.code, ErrorCode::RateLimited);
        assert!(refused.message.contains("2 edits per minute"));
        assert!(limit.check(&user("b")).is_ok(), "per user");
        let off = Limit::per_minute(0, "edits");
        assert!((0..1000).all(|_| off.check(&user("a")).is_ok()));
    }

    #[test]
    fn connections_are_capped_per_user_and_freed_on_drop() {
        let connections = Connections::new(2, Arc::default());
        let first = connections.open(&user("a")).expect("1");
        let _second = connections.open(&user("a")).expect("2");
        assert!(connections.open(&user("a")).is_err());
        assert!(connections.open(&user("b")).is_ok());
        drop(first);
        let third = connections.open(&user("a")).expect("freed by the drop");
        third.keep();
        assert!(connections.open(&user("a")).is_err(), "kept");
        connections.close(&user("a"));
        assert!(connections.open(&user("a")).is_ok(), "given back");
    }

    #[test]
    fn reactions_are_capped_per_message_and_per_user() {
        let limits = UserLimits {
            max_reactions_per_message: 3,
            max_reactions_per_user: 2,
            ..UserLimits::new(&Config::default(), Arc::default())
        };
        let reaction = |emoji: &str, users: &[&str]| Reaction {
            emoji: emoji.into(),
            count: users.len() as u64,
            users: users.iter().map(|u| (*u).to_owned()).collect(),
        };
        let two_of_a = [reaction("👍", &["a"]), reaction("🎉", &["a"])];
        assert!(limits.check_reaction("a", "❤️", &two_of_a).is_err());
        assert!(
            limits.check_reaction("a", "👍", &two_of_a).is_ok(),
            "already there"
        );
        assert!(limits.check_reaction("b", "❤️", &two_of_a).is_ok());
        let full = [reaction("👍", &["a", "b"]), reaction("🎉", &["c"])];
        assert!(limits.check_reaction("d", "👍", &full).is_err());
    }
}
