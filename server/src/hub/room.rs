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
    /// Users other nodes report online here, with those nodes.
    pub(super) remote: Remote,
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
        self.local.contains_key(user) || self.remote.contains(user)
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
        node: &Arc<str>,
        user: &str,
        online: bool,
    ) {
        let before = self.is_online(user);
        if online {
            self.remote.insert(user, node);
        } else {
            self.remote.remove(user, node);
        }
        if self.is_online(user) != before {
            self.announce(conversation, user, !before, None);
        }
    }

    /// Replaces everything `node` reports for this room with `users`.
    pub(super) fn replace_remote(
        &mut self,
        conversation: &Arc<str>,
        node: &Arc<str>,
        users: &[String],
    ) {
        let reported: HashSet<&str> = users.iter().map(String::as_str).collect();
        let gone: Vec<Arc<str>> = self
            .remote
            .users_of(node)
            .filter(|user| !reported.contains(&***user))
            .cloned()
            .collect();
        for user in gone {
            self.set_remote(conversation, node, &user, false);
        }
        for user in users {
            self.set_remote(conversation, node, user, true);
        }
    }
}

/// Users other nodes report online in a room: (user, node) pairs, sorted, each once. A sorted
/// `Vec` rather than a map of sets, because a room spread over many nodes keeps an entry per
/// remote user on every node: here 32 bytes per pair, the user's name once per room and the
/// node's id once per node (interned by the hub), where a map of sets cost ~290 bytes per user.
/// Lookups are binary searches; a change moves at most the room's entries.
#[derive(Debug, Default)]
pub(super) struct Remote(Vec<(Arc<str>, Arc<str>)>);

impl Remote {
    fn find(&self, user: &str, node: &str) -> Result<usize, usize> {
        self.0
            .binary_search_by(|(u, n)| (&**u, &**n).cmp(&(user, node)))
    }

    /// Whether some node reports `user` online.
    pub(super) fn contains(&self, user: &str) -> bool {
        let at = self.0.partition_point(|(u, _)| &**u < user);
        self.0.get(at).is_some_and(|(u, _)| &**u == user)
    }

    /// The users reported online, each once, in order.
    pub(super) fn users(&self) -> impl Iterator<Item = &Arc<str>> {
        let mut last: Option<&Arc<str>> = None;
        self.0.iter().filter_map(move |(user, _)| {
            let new = last.is_none_or(|l| l != user);
            last = Some(user);
            new.then_some(user)
        })
    }

    /// The users `node` reports online.
    fn users_of<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a Arc<str>> {
        self.0
            .iter()
            .filter(move |(_, n)| &**n == node)
            .map(|(user, _)| user)
    }

    /// Notes that `node` reports `user` online (sharing the user's name with its other nodes'
    /// entries).
    fn insert(&mut self, user: &str, node: &Arc<str>) {
        let Err(at) = self.find(user, node) else {
            return;
        };
        let same_user = |i: usize| self.0.get(i).filter(|(u, _)| &**u == user);
        let name = same_user(at)
            .or_else(|| at.checked_sub(1).and_then(same_user))
            .map_or_else(|| Arc::from(user), |(u, _)| u.clone());
        self.0.insert(at, (name, node.clone()));
    }

    /// Notes that `node` no longer reports `user` online.
    fn remove(&mut self, user: &str, node: &str) {
        if let Ok(at) = self.find(user, node) {
            self.0.remove(at);
            if self.0.is_empty() {
                self.0 = Vec::new();
            }
        }
    }
}

#[cfg(test)]
mod remote_tests {
    use super::*;

    #[test]
    fn remote_users_are_kept_per_node_sorted_and_named_once() {
        let (n1, n2): (Arc<str>, Arc<str>) = ("n1".into(), "n2".into());
        let mut remote = Remote::default();
        remote.insert("bob", &n2);
        remote.insert("alice", &n1);
        remote.insert("bob", &n1);
        remote.insert("bob", &n1);
        assert_eq!(remote.0.len(), 3, "each pair once");
        assert!(
            Arc::ptr_eq(&remote.0[1].0, &remote.0[2].0),
            "bob's name is shared"
        );
        assert!(Arc::ptr_eq(&remote.0[0].1, &n1), "the node id is the hub's");
        let users: Vec<&str> = remote.users().map(|u| &**u).collect();
        assert_eq!(users, ["alice", "bob"]);
        let of_n1: Vec<&str> = remote.users_of("n1").map(|u| &**u).collect();
        assert_eq!(of_n1, ["alice", "bob"]);
        remote.remove("bob", "n1");
        assert!(remote.contains("bob"), "still on n2");
        remote.remove("bob", "n2");
        remote.remove("carol", "n2");
        assert!(!remote.contains("bob"));
        assert!(remote.contains("alice"));
        assert!(!remote.contains("al"));
        remote.remove("alice", "n1");
        assert_eq!(remote.0.capacity(), 0, "an empty room keeps no buffer");
    }

    #[test]
    fn a_remote_pair_is_small() {
        assert_eq!(std::mem::size_of::<(Arc<str>, Arc<str>)>(), 32);
    }
}
