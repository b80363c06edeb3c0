//! One room: its key (a tenant's conversation), its local connections, and who is online in it
//! here and on other nodes.

use std::borrow::Borrow;
use std::collections::{BTreeSet, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use confab_protocol::ServerFrame;
use tungstenite::Utf8Bytes;

use super::{Ephemeral, Outbound};
use crate::metrics as m;
use crate::outbox::{Defer, Outbox, PushError};

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

/// A connection in a room: its user and its queue, 24 bytes. No connection id: a connection
/// has one outbox, which the room holds, so the outbox's address names the connection here.
#[derive(Debug)]
pub(super) struct Member {
    pub(super) user: Arc<str>,
    pub(super) outbox: Arc<Outbox>,
}

impl Member {
    /// Whether this is the connection of `outbox`.
    fn is(&self, outbox: &Arc<Outbox>) -> bool {
        Arc::ptr_eq(&self.outbox, outbox)
    }

    /// Queues an item, waking the session now, or (with `defer`, for a busy connection) at the
    /// write delay's next tick.
    pub(super) fn push(
        &self,
        item: Outbound,
        defer: Option<&mut Defer<'_>>,
    ) -> Result<(), PushError> {
        match defer {
            Some(defer) => self.outbox.push_deferred(item, defer),
            None => self.outbox.push(item),
        }
    }
}

/// A room's connections and who is online in it.
///
/// Every idle joined connection pays for its room's share of this, so it holds no map: the
/// local users are the users of `subscribers` (a join or a leave already walks them to find
/// the connection), and presence gates are kept only while they gate.
#[derive(Debug, Default)]
pub(super) struct Members {
    /// The local connections, in the order they joined (the fan-out's order). Grown by an
    /// eighth rather than doubled, and given back as the room empties ([`grow`], [`shrink`]).
    pub(super) subscribers: Vec<Member>,
    /// Users other nodes report online here, with those nodes.
    pub(super) remote: Remote,
    /// The local presence last published per user, while it still gates (see
    /// `Hub::local_presence`): within its window, or held.
    presence_gates: Vec<(Arc<str>, PresenceGate)>,
    /// Clustered: when the last subscriber left (the room lingers, see `ROOM_LINGER`).
    pub(super) emptied: Option<Instant>,
    /// Clustered: this node's users here went to the other nodes in a `sync` (sent once the
    /// fan-out follows the room), so a later change goes as a presence delta. Before that a
    /// delta would be redundant: the sync carries the users as they are when it is sent.
    pub(super) announced: bool,
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

impl PresenceGate {
    /// Whether the gate still matters at `now`: its window is open, or a flip is held.
    fn gates(&self, now: Instant) -> bool {
        self.held || now.duration_since(self.at) < super::PRESENCE_WINDOW
    }
}

/// Makes room for one more entry: an eighth more (at least one), not `Vec`'s doubling, which
/// leaves a room of 9 connections paying for 16. Joins pay a copy of the room's entries at
/// most every eighth of its size; deliveries never.
fn grow<T>(entries: &mut Vec<T>) {
    if entries.len() == entries.capacity() {
        entries.reserve_exact(entries.len() / 8 + 1);
    }
}

/// After a removal: gives back the slack once it is more than the entries themselves (all of
/// it when none is left).
fn shrink<T>(entries: &mut Vec<T>) {
    if entries.capacity() > 2 * entries.len() {
        entries.shrink_to(entries.len() + entries.len() / 8);
    }
}

impl Members {
    /// Adds a connection (replacing an earlier entry of the same one). `None` when it was
    /// already here, else whether it is its user's first connection here.
    pub(super) fn join(&mut self, member: Member) -> Option<bool> {
        if let Some(existing) = self.subscribers.iter_mut().find(|m| m.is(&member.outbox)) {
            *existing = member;
            return None;
        }
        let first = !self.has_local(&member.user);
        grow(&mut self.subscribers);
        self.subscribers.push(member);
        Some(first)
    }

    /// Removes the connection of `outbox`: its user, and whether it was the user's last
    /// connection here; `None` when it was not here.
    pub(super) fn leave(&mut self, outbox: &Arc<Outbox>) -> Option<(Arc<str>, bool)> {
        let index = self.subscribers.iter().position(|m| m.is(outbox))?;
        let gone = self.subscribers.remove(index);
        shrink(&mut self.subscribers);
        let last = !self.has_local(&gone.user);
        Some((gone.user, last))
    }

    /// Whether `user` has a connection here.
    pub(super) fn has_local(&self, user: &str) -> bool {
        self.subscribers.iter().any(|m| *m.user == *user)
    }

    /// The users with a connection here, each once, sorted.
    pub(super) fn local_users(&self) -> BTreeSet<&str> {
        self.subscribers.iter().map(|m| &*m.user).collect()
    }

    /// The presence gate of `user`, if one is kept.
    pub(super) fn gate_mut(&mut self, user: &str) -> Option<&mut PresenceGate> {
        self.presence_gates
            .iter_mut()
            .find(|(u, _)| **u == *user)
            .map(|(_, gate)| gate)
    }

    /// Records that `user`'s local presence `online` was published at `now`; forgets the gates
    /// that no longer gate (a gate past its window with nothing held is the same as none), so
    /// an idle room keeps at most its last window's.
    pub(super) fn gate_presence(&mut self, user: &Arc<str>, online: bool, now: Instant) {
        self.presence_gates.retain(|(_, gate)| gate.gates(now));
        let gate = PresenceGate {
            online,
            at: now,
            flips: 1,
            held: false,
        };
        if let Some(kept) = self.gate_mut(user) {
            *kept = gate;
        } else {
            shrink(&mut self.presence_gates);
            grow(&mut self.presence_gates);
            self.presence_gates.push((user.clone(), gate));
        }
    }

    fn is_online(&self, user: &str) -> bool {
        self.has_local(user) || self.remote.contains(user)
    }

    /// Queues an ephemeral frame for every subscriber but those `skip` picks; a full queue
    /// drops it for that connection (ephemeral frames are never replayed). With `defer`, busy
    /// connections are woken at the write delay's next tick.
    pub(super) fn push_ephemeral(
        &self,
        frame: &Arc<Ephemeral>,
        mut defer: Option<Defer<'_>>,
        skip: impl Fn(&Member) -> bool,
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

    /// Sends a `presence` frame to the local connections that asked for them (but the
    /// connection of `skip`, or with no `skip` the user's own). A full queue drops it, like any
    /// ephemeral frame.
    pub(super) fn announce(
        &self,
        conversation: &Arc<str>,
        user: &str,
        online: bool,
        skip: Option<&Arc<Outbox>>,
    ) {
        // Most connections take no presence frames: then there is nothing to render.
        if !self
            .subscribers
            .iter()
            .any(|sub| sub.outbox.wants_presence())
        {
            return;
        }
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
            let own = match skip {
                Some(outbox) => sub.is(outbox),
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

#[cfg(test)]
mod members_tests {
    use std::time::Duration;

    use super::*;

    fn member(user: &str) -> (Member, Arc<Outbox>) {
        let outbox = Arc::new(Outbox::new(4));
        let member = Member {
            user: Arc::from(user),
            outbox: outbox.clone(),
        };
        (member, outbox)
    }

    #[test]
    fn a_member_is_small() {
        assert_eq!(std::mem::size_of::<Member>(), 24);
    }

    #[test]
    fn a_user_is_here_while_any_of_their_connections_is() {
        let mut members = Members::default();
        let (a1, out_a1) = member("alice");
        let (a2, out_a2) = member("alice");
        let (b, out_b) = member("bob");
        assert_eq!(members.join(a1), Some(true), "alice's first");
        assert_eq!(members.join(b), Some(true));
        assert_eq!(members.join(a2), Some(false), "alice's second");
        let again = Member {
            user: Arc::from("alice"),
            outbox: out_a1.clone(),
        };
        assert_eq!(members.join(again), None, "the same connection again");
        let order: Vec<bool> = members.subscribers.iter().map(|m| m.is(&out_a1)).collect();
        assert_eq!(order, [true, false, false], "join order kept");
        assert_eq!(
            members.local_users().into_iter().collect::<Vec<_>>(),
            ["alice", "bob"]
        );
        let left = members
            .leave(&out_a1)
            .map(|(u, last)| (u.to_string(), last));
        assert_eq!(
            left,
            Some(("alice".to_owned(), false)),
            "alice is still here"
        );
        assert!(members.has_local("alice"));
        assert!(members.leave(&out_a1).is_none(), "left already");
        let left = members
            .leave(&out_a2)
            .map(|(u, last)| (u.to_string(), last));
        assert_eq!(left, Some(("alice".to_owned(), true)), "alice's last");
        assert!(!members.has_local("alice"));
        assert!(members.leave(&out_b).is_some());
        assert_eq!(
            members.subscribers.capacity(),
            0,
            "an empty room keeps no buffer"
        );
    }

    #[test]
    fn a_room_grows_by_an_eighth_not_double() {
        let mut members = Members::default();
        let outboxes: Vec<_> = (0..100)
            .map(|n| {
                let (m, outbox) = member(&format!("u{n}"));
                members.join(m);
                outbox
            })
            .collect();
        let capacity = members.subscribers.capacity();
        assert!(
            (100..=113).contains(&capacity),
            "capacity {capacity} for 100"
        );
        for outbox in &outboxes[..80] {
            members.leave(outbox);
        }
        let capacity = members.subscribers.capacity();
        assert!((20..=40).contains(&capacity), "capacity {capacity} for 20");
    }

    #[test]
    fn gates_are_kept_while_they_gate() {
        let mut members = Members::default();
        let start = Instant::now();
        let (alice, bob, carol): (Arc<str>, Arc<str>, Arc<str>) =
            ("alice".into(), "bob".into(), "carol".into());
        members.gate_presence(&alice, true, start);
        members.gate_presence(&bob, true, start);
        if let Some(gate) = members.gate_mut(&bob) {
            gate.held = true;
        }
        members.gate_presence(&carol, true, start + Duration::from_millis(500));
        assert_eq!(members.presence_gates.len(), 3, "all within the window");
        members.gate_presence(&carol, false, start + Duration::from_secs(2));
        let kept: Vec<&str> = members.presence_gates.iter().map(|(u, _)| &**u).collect();
        assert_eq!(
            kept,
            ["bob", "carol"],
            "alice's gate ended; bob's holds a flip"
        );
        let carol_gate = members
            .gate_mut(&carol)
            .map(|gate| (gate.online, gate.flips));
        assert_eq!(
            carol_gate,
            Some((false, 1)),
            "carol's replaced, a new window"
        );
    }
}
