//! One room: its key (a tenant's conversation), its local connections, and who is online in it
//! here and on other nodes.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use axum::extract::ws::Utf8Bytes;
use confab_protocol::ServerFrame;

use super::{Ephemeral, Outbound, Subscriber};
use crate::metrics as m;
use crate::outbox::Defer;

/// A room's identity: a conversation of a tenant. Rooms of two tenants never meet, even under
/// one conversation id, so no request of another tenant can create or touch a room.
#[derive(Debug, Clone)]
pub(super) struct RoomKey {
    pub(super) tenant: Arc<str>,
    pub(super) conversation: Arc<str>,
}

/// A room's identity as borrowed parts, so that a lookup builds no [`RoomKey`] (no allocation):
/// the map's key borrows as `dyn RoomId`, and so does a `(&str, &str)`.
pub(super) trait RoomId {
    fn parts(&self) -> (&str, &str);
}

impl RoomId for RoomKey {
    fn parts(&self) -> (&str, &str) {
        (&self.tenant, &self.conversation)
    }
}

impl RoomId for (&str, &str) {
    fn parts(&self) -> (&str, &str) {
        *self
    }
}

impl<'a> Borrow<dyn RoomId + 'a> for RoomKey {
    fn borrow(&self) -> &(dyn RoomId + 'a) {
        self
    }
}

// Key and borrowed form hash and compare alike, as `Borrow` requires.
impl Hash for dyn RoomId + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.parts().hash(state);
    }
}

impl PartialEq for dyn RoomId + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn RoomId + '_ {}

impl Hash for RoomKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.parts().hash(state);
    }
}

impl PartialEq for RoomKey {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for RoomKey {}

#[derive(Debug, Default)]
pub(super) struct Room {
    pub(super) members: RwLock<Members>,
}

/// A room's connections and who is online in it.
#[derive(Debug, Default)]
pub(super) struct Members {
    pub(super) subscribers: Vec<Subscriber>,
    /// Local connections per user (no zero entries).
    pub(super) local: HashMap<Arc<str>, usize>,
    /// Users other nodes report online here, with those nodes (no empty sets).
    pub(super) remote: HashMap<Arc<str>, HashSet<Arc<str>>>,
    /// The local presence last published per user, for coalescing (see `Hub::local_presence`).
    pub(super) presence_gates: HashMap<Arc<str>, PresenceGate>,
    /// Clustered: when the last subscriber left (the room lingers, see `ROOM_LINGER`).
    pub(super) emptied: Option<Instant>,
}

/// The local presence of a user last published in a room.
#[derive(Debug, Clone, Copy)]
pub(super) struct PresenceGate {
    pub(super) online: bool,
    /// When the window began (its first flip was published).
    pub(super) at: Instant,
    /// Flips published in this window.
    pub(super) flips: u8,
    /// A flip is held until the window ends (a timer will look).
    pub(super) held: bool,
}

impl Members {
    /// Records that `user`'s local presence `online` was published at `now`; forgets gates
    /// that no longer matter when they pile up (users who left long ago).
    pub(super) fn gate_presence(&mut self, user: &Arc<str>, online: bool, now: Instant) {
        if self.presence_gates.len() >= 64 && self.presence_gates.len() > 2 * self.local.len() {
            self.presence_gates.retain(|_, gate| {
                gate.held || now.duration_since(gate.at) < super::PRESENCE_WINDOW
            });
        }
        self.presence_gates.insert(
            user.clone(),
            PresenceGate {
                online,
                at: now,
                flips: 1,
                held: false,
            },
        );
    }

    fn is_online(&self, user: &str) -> bool {
        self.local.contains_key(user) || self.remote.contains_key(user)
    }

    /// Queues an ephemeral frame for every subscriber but those `skip` picks; a full queue
    /// drops it for that connection (ephemeral frames are never replayed). With `defer`, busy
    /// connections are woken at the write delay's next tick.
    pub(super) fn push_ephemeral(
        &self,
        frame: &Arc<Ephemeral>,
        mut defer: Option<Defer<'_>>,
        skip: impl Fn(&Subscriber) -> bool,
    ) {
        let mut delivered = 0u64;
        for sub in &self.subscribers {
            if !skip(sub)
                && sub
                    .push(Outbound::Ephemeral(frame.clone()), defer.as_mut())
                    .is_ok()
            {
                delivered += 1;
            }
        }
        m::fanout_deliveries(delivered);
    }

    /// Counts one more local connection of `user`; true when it is their first here.
    pub(super) fn add_local(&mut self, user: &Arc<str>) -> bool {
        let count = self.local.entry(user.clone()).or_insert(0);
        *count += 1;
        *count == 1
    }

    /// Counts one local connection of `user` less; true when it was their last here.
    pub(super) fn remove_local(&mut self, user: &str) -> bool {
        let Some(count) = self.local.get_mut(user) else {
            return false;
        };
        *count -= 1;
        if *count > 0 {
            return false;
        }
        self.local.remove(user);
        true
    }

    /// Sends a `presence` frame to the local connections that asked for them (but `skip_conn`,
    /// or with no `skip_conn` the user's own). A full queue drops it, like any ephemeral frame.
    pub(super) fn announce(
        &self,
        conversation: &Arc<str>,
        user: &str,
        online: bool,
        skip_conn: Option<u64>,
    ) {
        let frame = ServerFrame::Presence {
            conversation: conversation.to_string(),
            user: user.to_owned(),
            online,
        };
        let Ok(text) = serde_json::to_string(&frame) else {
            return;
        };
        let frame = Arc::new(Ephemeral {
            conversation: conversation.clone(),
            text: Utf8Bytes::from(text),
        });
        // Not deferred: presence changes are rare next to messages.
        self.push_ephemeral(&frame, None, |sub| {
            let own = match skip_conn {
                Some(conn) => sub.conn == conn,
                None => *sub.user == *user,
            };
            own || !sub.outbox.wants_presence()
        });
    }

    /// Records that `node` reports `user` online (or not); announces a change of the union.
    pub(super) fn set_remote(
        &mut self,
        conversation: &Arc<str>,
        node: &str,
        user: &str,
        online: bool,
    ) {
        let before = self.is_online(user);
        if online {
            self.remote
                .entry(Arc::from(user))
                .or_default()
                .insert(Arc::from(node));
        } else if let Some(nodes) = self.remote.get_mut(user) {
            nodes.remove(node);
            if nodes.is_empty() {
                self.remote.remove(user);
            }
        }
        if self.is_online(user) != before {
            self.announce(conversation, user, !before, None);
        }
    }

    /// Replaces everything `node` reports for this room with `users`.
    pub(super) fn replace_remote(&mut self, conversation: &Arc<str>, node: &str, users: &[String]) {
        let reported: HashSet<&str> = users.iter().map(String::as_str).collect();
        let gone: Vec<Arc<str>> = self
            .remote
            .iter()
            .filter(|(user, nodes)| nodes.contains(node) && !reported.contains(&***user))
            .map(|(user, _)| user.clone())
            .collect();
        for user in gone {
            self.set_remote(conversation, node, &user, false);
        }
        for user in users {
            self.set_remote(conversation, node, user, true);
        }
    }
}
