//! The shards of the fan-out: which Redis server carries a conversation's channel, and what a
//! node keeps per server (its publish queue, the channels it wants there, whether its
//! subscriber is up, its metric series).
//!
//! A conversation's shard is [`shard_of`] its tenant and id: FNV-1a (64 bits) of both, mixed
//! by MurmurHash3's finalizer, then jump consistent hashing (Lamping and Veach, 2014) onto the shards. Both are fixed
//! arithmetic, the same on every node, build and platform (std's hasher is randomly keyed per
//! process, so two nodes would disagree), and jump hashing moves only about 1/n of the
//! conversations when an n-th shard is added. Every node must list the same servers in the
//! same order: beats carry the sender's shard count and the shard they were published on, and
//! a mismatch is logged and counted (`confab_fanout_dropped_total{reason="shard_mismatch"}`).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use metrics::{Counter, Gauge, counter, gauge};
use tokio::sync::{Notify, mpsc};

use super::wire::{MessageType, read_snapshots, room_of, split};

use crate::metrics::{
    FANOUT_CONNECTED as CONNECTED, FANOUT_DROPPED_TOTAL as DROPPED_TOTAL,
    FANOUT_PUBLISHED_TOTAL as PUBLISHED_TOTAL, FANOUT_RECEIVED_TOTAL as RECEIVED_TOTAL,
    FANOUT_RECONNECTS_TOTAL as RECONNECTS_TOTAL, FANOUT_REPAIRS_TOTAL as REPAIRS_TOTAL,
};

/// Messages waiting to be published on one shard before new ones are dropped.
pub(super) const PUBLISH_QUEUE: usize = 16 * 1024;

/// The shard, of `shards`, whose Redis carries the channel of `conversation` of `tenant` (and,
/// for user nudges, of `user` of `tenant`).
pub fn shard_of(tenant: &str, key: &str, shards: usize) -> usize {
    let mut hash = Fnv1a::new();
    hash.write(tenant.as_bytes());
    // 0xff never occurs in UTF-8: ("ab", "c") and ("a", "bc") hash apart.
    hash.write(&[0xff]);
    hash.write(key.as_bytes());
    jump_consistent_hash(fmix64(hash.0), shards)
}

/// MurmurHash3's 64-bit finalizer: FNV-1a leaves the high bits, which jump hashing reads
/// first, little changed by the last bytes, and ids that differ only there (time-ordered ids
/// of one moment) would crowd one shard.
fn fmix64(mut key: u64) -> u64 {
    key ^= key >> 33;
    key = key.wrapping_mul(0xff51_afd7_ed55_8ccd);
    key ^= key >> 33;
    key = key.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    key ^ (key >> 33)
}

/// FNV-1a, 64 bits.
struct Fnv1a(u64);

impl Fnv1a {
    fn new() -> Fnv1a {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// Jump consistent hash: a bucket in `0..buckets` for `key` (0 when `buckets` is 0 or 1).
fn jump_consistent_hash(mut key: u64, buckets: usize) -> usize {
    let buckets = i64::try_from(buckets).unwrap_or(i64::MAX);
    let (mut bucket, mut next) = (-1i64, 0i64);
    while next < buckets {
        bucket = next;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        let scale = (1u64 << 31) as f64 / ((key >> 33) + 1) as f64;
        next = ((bucket + 1) as f64 * scale) as i64;
    }
    usize::try_from(bucket).unwrap_or(0)
}

/// One Redis server of the fan-out, as this node uses it.
pub(super) struct Shard {
    pub index: usize,
    pub publish_tx: mpsc::Sender<(String, Vec<u8>)>,
    /// Desired subscriptions on this shard, and the rooms opened since the subscriber last
    /// looked.
    pub wanted: Mutex<Wanted>,
    pub changed: Notify,
    connected: AtomicBool,
    /// A beat from a node with another list of shards was logged already.
    mismatch_logged: AtomicBool,
    /// What dropped messages left the other nodes missing, to repair once publishing works.
    lost: Mutex<Lost>,
    /// Whether `lost` has anything (checked after every published batch without the lock).
    any_lost: AtomicBool,
    pub metrics: ShardMetrics,
}

/// Changes of the wanted set kept for the subscriber before it looks at the whole set instead
/// (after a long outage of the shard, say): the logs stay bounded.
const CHANGES_KEPT: usize = 64 * 1024;

/// The rooms a node wants on one shard, and what changed since the subscriber last looked.
///
/// The subscriber follows changes, not the set: a node in a storm opens rooms one at a time,
/// and comparing every wanted channel with every followed one at each open cost O(rooms) per
/// open (with 2,000 rooms a node, 16 % of its CPU while clients connected).
#[derive(Debug, Default)]
pub(super) struct Wanted {
    /// Channel → number of opens not yet closed.
    pub counts: HashMap<String, usize>,
    /// Channels opened since the subscriber last looked. A room closed and opened again
    /// before the subscriber saw either (or opened before the old one's close was counted) is
    /// still followed, so only this says that the new room must sync its presence with the
    /// other nodes.
    opened: Vec<String>,
    /// Channels whose last open was closed since the subscriber last looked.
    closed: Vec<String>,
    /// The logs overflowed ([`CHANGES_KEPT`]): the subscriber compares the whole set once.
    overflowed: bool,
}

/// What the subscriber of a shard must look at ([`Shard::take_changes`]).
#[derive(Debug, Default, PartialEq)]
pub(super) struct Changes {
    /// Every wanted channel, when the whole set is to be compared with what is followed (a
    /// fresh connection, or logs that overflowed).
    pub all: Option<Vec<String>>,
    /// Channels opened since the last look and still wanted (a channel may appear twice).
    pub opened: Vec<String>,
    /// Channels closed since the last look and not wanted any more.
    pub closed: Vec<String>,
}

impl Wanted {
    /// One more open of `channel`.
    pub fn open(&mut self, channel: String) {
        *self.counts.entry(channel.clone()).or_default() += 1;
        self.log(channel, true);
    }

    /// One open of `channel` fewer.
    pub fn close(&mut self, channel: &str) {
        if let Some(count) = self.counts.get_mut(channel) {
            *count -= 1;
            if *count == 0 {
                self.counts.remove(channel);
                self.log(channel.to_owned(), false);
            }
        }
    }

    fn log(&mut self, channel: String, opened: bool) {
        if self.overflowed {
            return;
        }
        if self.opened.len() + self.closed.len() >= CHANGES_KEPT {
            self.overflowed = true;
            self.opened = Vec::new();
            self.closed = Vec::new();
            return;
        }
        if opened {
            self.opened.push(channel);
        } else {
            self.closed.push(channel);
        }
    }

    /// Takes what changed; with `all`, or after the logs overflowed, the whole set too.
    fn take(&mut self, all: bool) -> Changes {
        let overflowed = std::mem::take(&mut self.overflowed);
        let mut opened = std::mem::take(&mut self.opened);
        let mut closed = std::mem::take(&mut self.closed);
        opened.retain(|c| self.counts.contains_key(c));
        closed.retain(|c| !self.counts.contains_key(c));
        Changes {
            all: (all || overflowed).then(|| self.counts.keys().cloned().collect()),
            opened,
            closed,
        }
    }
}

/// What the messages a shard dropped (full queue, Redis error) left the other nodes missing,
/// merged per room and user: a repair covers any number of losses.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Lost {
    /// Channels of rooms with a durable event lost: the receivers catch up from storage.
    pub events: HashSet<String>,
    /// Rooms (tenant, conversation) with presence lost: this node syncs them again.
    pub presence: HashSet<(Arc<str>, Arc<str>)>,
    /// User nudges lost (tenant, user): sent again.
    pub users: HashSet<(String, String)>,
}

impl Lost {
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.presence.is_empty() && self.users.is_empty()
    }

    /// Notes what losing the message `payload` on `channel` costs (nothing, for ephemeral
    /// frames and beats, which no one needs later).
    pub fn note(&mut self, channel: &str, payload: &[u8]) {
        let Some((header, text)) = split(payload) else {
            return;
        };
        match header.message {
            MessageType::Event | MessageType::Resync => {
                self.events.insert(channel.to_owned());
            }
            MessageType::Presence | MessageType::Sync | MessageType::Snapshot => {
                // An answer went to the asker's own channel and names its room.
                if let Some(room) = room_of(header.room.as_deref().unwrap_or(channel)) {
                    self.presence.insert(room);
                }
            }
            MessageType::Snapshots => {
                let rooms = read_snapshots(text).unwrap_or_default();
                self.presence
                    .extend(rooms.iter().filter_map(|(room, _)| room_of(room)));
            }
            MessageType::User => {
                if let Some(user) = header.user {
                    self.users.insert((text.to_owned(), user.into_owned()));
                }
            }
            MessageType::Ephemeral | MessageType::Beat => {}
        }
    }

    /// Adds `other`'s losses (a repair that failed in turn).
    pub fn merge(&mut self, other: Lost) {
        self.events.extend(other.events);
        self.presence.extend(other.presence);
        self.users.extend(other.users);
    }
}

/// The metric series of one shard (label `shard`, its position in `hub`), made once.
pub(super) struct ShardMetrics {
    label: String,
    connected: Gauge,
    pub published: Counter,
    pub received: Counter,
    pub reconnects: Counter,
    /// Repairs published after drops ([`Shard::take_lost`]).
    pub repairs: Counter,
}

impl Shard {
    pub fn new(index: usize, publish_tx: mpsc::Sender<(String, Vec<u8>)>) -> Shard {
        let label = index.to_string();
        let metrics = ShardMetrics {
            connected: gauge!(CONNECTED, "shard" => label.clone()),
            published: counter!(PUBLISHED_TOTAL, "shard" => label.clone()),
            received: counter!(RECEIVED_TOTAL, "shard" => label.clone()),
            reconnects: counter!(RECONNECTS_TOTAL, "shard" => label.clone()),
            repairs: counter!(REPAIRS_TOTAL, "shard" => label.clone()),
            label,
        };
        // Every series exists from the start, at 0.
        metrics.connected.set(0.0);
        for counter in [
            &metrics.published,
            &metrics.received,
            &metrics.reconnects,
            &metrics.repairs,
        ] {
            counter.absolute(0);
        }
        Shard {
            index,
            publish_tx,
            wanted: Mutex::new(Wanted::default()),
            changed: Notify::new(),
            connected: AtomicBool::new(false),
            mismatch_logged: AtomicBool::new(false),
            lost: Mutex::new(Lost::default()),
            any_lost: AtomicBool::new(false),
            metrics,
        }
    }

    /// Counts `count` messages dropped for `reason`, and notes what their loss costs the other
    /// nodes, to repair with [`Shard::take_lost`] once publishing works again.
    pub fn lost<'m>(
        &self,
        reason: &'static str,
        messages: impl IntoIterator<Item = (&'m str, &'m [u8])>,
    ) {
        let mut lost = self.lost.lock().unwrap_or_else(|e| e.into_inner());
        let mut count = 0;
        for (channel, payload) in messages {
            lost.note(channel, payload);
            count += 1;
        }
        if !lost.is_empty() {
            self.any_lost.store(true, Ordering::Release);
        }
        drop(lost);
        counter!(DROPPED_TOTAL, "reason" => reason, "shard" => self.metrics.label.clone())
            .increment(count);
    }

    /// Takes what is to be repaired, if anything.
    /// Whether dropped messages wait for a repair.
    pub fn has_lost(&self) -> bool {
        self.any_lost.load(Ordering::Acquire)
    }

    pub fn take_lost(&self) -> Option<Lost> {
        if !self.any_lost.load(Ordering::Acquire) {
            return None;
        }
        let mut lost = self.lost.lock().unwrap_or_else(|e| e.into_inner());
        self.any_lost.store(false, Ordering::Release);
        let taken = std::mem::take(&mut *lost);
        (!taken.is_empty()).then_some(taken)
    }

    /// Puts back a repair that could not be published.
    pub fn restore_lost(&self, again: Lost) {
        let mut lost = self.lost.lock().unwrap_or_else(|e| e.into_inner());
        lost.merge(again);
        if !lost.is_empty() {
            self.any_lost.store(true, Ordering::Release);
        }
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    pub fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Release);
        self.metrics
            .connected
            .set(if connected { 1.0 } else { 0.0 });
    }

    /// Counts a message dropped on this shard.
    pub fn dropped(&self, reason: &'static str) {
        counter!(DROPPED_TOTAL, "reason" => reason, "shard" => self.metrics.label.clone())
            .increment(1);
    }

    /// The channels wanted on this shard now.
    #[cfg(test)]
    pub fn wanted_channels(&self) -> Vec<String> {
        let wanted = self.wanted.lock().unwrap_or_else(|e| e.into_inner());
        wanted.counts.keys().cloned().collect()
    }

    /// What changed in the wanted set since the last call (taken); with `all`, the whole set
    /// too (see [`Changes`]).
    pub fn take_changes(&self, all: bool) -> Changes {
        self.wanted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(all)
    }

    /// A beat said it was published on shard `theirs` of `count`: counts (and logs once) a
    /// node whose list of shards differs from ours, whose conversations would then meet ours
    /// on no server.
    pub fn check_beat(&self, node: &str, theirs: Option<u32>, count: Option<u32>, ours: usize) {
        let (Some(theirs), Some(count)) = (theirs, count) else {
            return;
        };
        let matches = usize::try_from(theirs).is_ok_and(|t| t == self.index)
            && usize::try_from(count).is_ok_and(|c| c == ours);
        if matches {
            return;
        }
        self.dropped("shard_mismatch");
        if !self.mismatch_logged.swap(true, Ordering::Relaxed) {
            tracing::error!(
                peer = node,
                shard = self.index,
                shards = ours,
                peer_shard = theirs,
                peer_shards = count,
                "a node lists other redis shards, or in another order: every node's `hub` must \
                 list the same servers in the same order"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_fixed_arithmetic() {
        // Pinned: nodes of different builds must agree, so these never change.
        assert_eq!(Fnv1a::new().0, 0xcbf2_9ce4_8422_2325);
        let mut empty = Fnv1a::new();
        empty.write(b"a");
        assert_eq!(empty.0, 0xaf63_dc4c_8601_ec8c);
        assert_eq!(jump_consistent_hash(0, 1), 0);
        assert_eq!(jump_consistent_hash(u64::MAX, 0), 0);
        let pinned: Vec<usize> = ["c1", "c2", "c3", "c4", "c5", "c6"]
            .iter()
            .map(|c| shard_of("acme", c, 3))
            .collect();
        assert_eq!(pinned, PINNED);
        assert_ne!(shard_of("ab", "c", 1000), shard_of("a", "bc", 1000));
    }

    /// `shard_of("acme", "c1".."c6", 3)`.
    const PINNED: [usize; 6] = [2, 1, 1, 0, 2, 1];

    #[test]
    fn conversations_spread_evenly_and_few_move_when_a_shard_is_added() {
        let keys: Vec<String> = (0..30_000).map(|i| format!("conv-{i}")).collect();
        let mut counts = [0usize; 3];
        for key in &keys {
            counts[shard_of("t", key, 3)] += 1;
        }
        for count in counts {
            assert!((9_000..11_000).contains(&count), "{counts:?}");
        }
        let moved = keys
            .iter()
            .filter(|key| shard_of("t", key, 3) != shard_of("t", key, 4))
            .count();
        // Ideally a quarter move, all of them to the new shard.
        assert!((6_500..8_500).contains(&moved), "{moved}");
        assert!(
            keys.iter()
                .filter(|key| shard_of("t", key, 3) != shard_of("t", key, 4))
                .all(|key| shard_of("t", key, 4) == 3)
        );
        assert!(keys.iter().all(|key| shard_of("t", key, 1) == 0));
    }

    #[test]
    fn ids_that_differ_only_at_the_end_spread_too() {
        // Time-ordered ids made in one moment share their first characters.
        let mut counts = [0usize; 3];
        for i in 0..3_000u32 {
            counts[shard_of("acme", &format!("01a248b743d2746fb3228531{i:08x}"), 3)] += 1;
        }
        for count in counts {
            assert!((850..1_150).contains(&count), "{counts:?}");
        }
    }
}
