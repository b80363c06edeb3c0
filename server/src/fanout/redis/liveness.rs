//! Which peers are alive: heard from within [`PEER_EXPIRY`], on the subscriptions' own clock.
//!
//! A node that falls behind reading its subscriptions (a reconnect storm on a saturated host)
//! hears its peers' beats late: they sit in its socket behind its backlog. Measured on the wall
//! clock, peers looked silent and their users went offline, and came back online when the
//! backlog was read: the presence of every user of those nodes flapped, at the moment the node
//! had the least time for it (48–84 times per node in a storm of 200,000 on 12 nodes, 4–36 in
//! all over 12 nodes at 40,000: benches/RESULTS.md, issue 17).
//!
//! So each beat carries the time it was sent on the sender's clock (its `seq`: milliseconds
//! since the sender's [`Liveness`] was made, plus one), and a node that hears its *own* beat
//! back knows how far its subscriptions have read: to that send time, the subscriptions' clock.
//! A peer is silent when it has not been heard from for [`PEER_EXPIRY`] on the wall clock *and*
//! the node has heard back a beat of its own sent more than [`PEER_EXPIRY`] after it last heard
//! the peer: everything the peer published before that beat was read before it (each shard
//! delivers in order, and a node beats on every shard). A node whose reads stall while its
//! subscriptions are up (it waits for its hub) expires nobody meanwhile. The wall clock decides
//! alone, as before, when no subscription is up (Redis unreachable), before the node has heard
//! its own first beat, and when none of its own beats has come back for [`STALL_LIMIT`] while
//! none was published either (its publishing is stuck: a dead peer must not stay online for
//! ever). Own beats that Redis took but that have not come back say the node reads late: at
//! 200,000 connections on 12 nodes its subscriptions were read 4–93 s late, own beats came
//! back more than 30 s apart, and the wall clock, deciding then, took every peer for dead at
//! once. So the subscriptions' clock keeps deciding while own beats are published, up to
//! [`READ_LAG_LIMIT`] since the last came back.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use super::PEER_EXPIRY;

/// Past this without an own beat heard back, or published, the subscriptions' clock no longer
/// counts.
pub(super) const STALL_LIMIT: Duration = Duration::from_secs(30);
/// Past this without an own beat heard back, the subscriptions' clock no longer counts even
/// while own beats are published: a node this far behind its reads takes its peers for dead
/// by the wall clock.
pub(super) const READ_LAG_LIMIT: Duration = Duration::from_secs(300);

/// The peers heard from, and how far this node's subscriptions have read.
#[derive(Debug)]
pub(super) struct Liveness {
    /// Zero of the beats' send times.
    epoch: Instant,
    /// Each peer: when it was last heard from (here, on the wall clock).
    peers: HashMap<String, Instant>,
    /// The send time of the latest own beat heard back.
    read_to: Option<Instant>,
    /// When an own beat was last heard back.
    read_at: Option<Instant>,
    /// When Redis last took an own beat.
    published_at: Option<Instant>,
}

impl Liveness {
    pub(super) fn new(now: Instant) -> Liveness {
        Liveness {
            epoch: now,
            peers: HashMap::new(),
            read_to: None,
            read_at: None,
            published_at: None,
        }
    }

    /// Redis took an own beat at `now`.
    pub(super) fn beat_published(&mut self, now: Instant) {
        self.published_at = Some(self.published_at.map_or(now, |at| at.max(now)));
    }

    /// The `seq` of a beat sent at `now` (never zero: a zero `seq` is not sent).
    pub(super) fn beat_stamp(&self, now: Instant) -> u64 {
        let millis = now.saturating_duration_since(self.epoch).as_millis();
        u64::try_from(millis).unwrap_or(u64::MAX - 1) + 1
    }

    /// This node's own beat of `stamp` ([`Liveness::beat_stamp`]) came back at `now`.
    pub(super) fn heard_own_beat(&mut self, stamp: u64, now: Instant) {
        let Some(millis) = stamp.checked_sub(1) else {
            return;
        };
        let Some(sent) = self.epoch.checked_add(Duration::from_millis(millis)) else {
            return;
        };
        if sent > now {
            return;
        }
        self.read_to = Some(self.read_to.map_or(sent, |read_to| read_to.max(sent)));
        self.read_at = Some(now);
    }

    /// Notes that `node` was heard from at `now`; true when it is new.
    pub(super) fn heard(&mut self, node: &str, now: Instant) -> bool {
        match self.peers.get_mut(node) {
            Some(at) => {
                *at = now;
                false
            }
            None => {
                self.peers.insert(node.to_owned(), now);
                true
            }
        }
    }

    /// For the log of a peer found silent: how long ago it was heard from, and how long ago
    /// the latest own beat heard back was sent and was heard, at `now`.
    pub(super) fn describe(&self, node: &str, now: Instant) -> [Option<Duration>; 3] {
        let ago = |at: Instant| now.saturating_duration_since(at);
        [
            self.peers.get(node).copied().map(ago),
            self.read_to.map(ago),
            self.read_at.map(ago),
        ]
    }

    /// How far the subscriptions have read (the send time of the latest own beat heard).
    #[cfg(test)]
    pub(super) fn read_to(&self) -> Option<Instant> {
        self.read_to
    }

    /// Whether `node` is counted alive.
    #[cfg(test)]
    pub(super) fn knows(&self, node: &str) -> bool {
        self.peers.contains_key(node)
    }

    /// The peers not heard from for [`PEER_EXPIRY`] at `now` (those [`Liveness::expire`] may
    /// forget).
    pub(super) fn expire_candidates(&self, now: Instant) -> impl Iterator<Item = &str> {
        self.peers
            .iter()
            .filter(move |(_, heard)| now.saturating_duration_since(**heard) > PEER_EXPIRY)
            .map(|(node, _)| node.as_str())
    }

    /// Forgets the peers silent at `now` (see the module docs) and returns them; `subscribed`:
    /// whether a subscription of this node (on any shard) is up.
    pub(super) fn expire(&mut self, now: Instant, subscribed: bool) -> Vec<String> {
        let within = |at: Option<Instant>, limit| {
            at.is_some_and(|at| now.saturating_duration_since(at) <= limit)
        };
        let reading = within(self.read_at, STALL_LIMIT)
            || (within(self.published_at, STALL_LIMIT) && within(self.read_at, READ_LAG_LIMIT));
        let read_to = self.read_to.filter(|_| subscribed && reading);
        let silent = |heard: Instant| {
            now.saturating_duration_since(heard) > PEER_EXPIRY
                && read_to
                    .is_none_or(|read_to| read_to.saturating_duration_since(heard) > PEER_EXPIRY)
        };
        let expired: Vec<String> = self
            .peers
            .iter()
            .filter(|(_, heard)| silent(**heard))
            .map(|(node, _)| node.clone())
            .collect();
        for node in &expired {
            self.peers.remove(node);
        }
        expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    /// A node that keeps up: its own beats come back at once, and a peer that stops is
    /// expired once `PEER_EXPIRY` has passed, as on the wall clock.
    #[test]
    fn a_peer_that_stops_is_expired_after_the_expiry() {
        let start = Instant::now();
        let mut live = Liveness::new(start);
        assert!(live.heard("n1", start));
        assert!(!live.heard("n1", start), "known");
        let mut at = start;
        while at < start + 12 * SECOND {
            at += 2 * SECOND;
            let stamp = live.beat_stamp(at);
            live.heard_own_beat(stamp, at);
            let expired = live.expire(at, true);
            if at <= start + PEER_EXPIRY {
                assert!(expired.is_empty(), "at {:?}", at - start);
                assert!(live.knows("n1"));
            } else {
                assert_eq!(expired, ["n1"], "at {:?}", at - start);
                break;
            }
        }
        assert!(!live.knows("n1"));
    }

    /// A node that reads its subscriptions 10 s late hears a live peer's beats late too, but
    /// in step with its own: the peer stays alive. Once the peer stops, it is expired when
    /// the node reads past the expiry on the subscriptions' clock.
    #[test]
    fn a_node_behind_its_backlog_keeps_live_peers_and_expires_dead_ones() {
        let start = Instant::now();
        let lag = 10 * SECOND;
        let mut live = Liveness::new(start);
        // Beats every 2 s by both; each read here `lag` after it was sent. The peer stops
        // after its beat sent at 30 s.
        let mut expired_at = None;
        for beat in 0..40u32 {
            let sent = start + 2 * beat * SECOND;
            let read = sent + lag;
            if sent <= start + 30 * SECOND {
                live.heard("n1", read);
            }
            let stamp = live.beat_stamp(sent);
            live.heard_own_beat(stamp, read);
            let expired = live.expire(read, true);
            if !expired.is_empty() {
                assert_eq!(expired, ["n1"]);
                expired_at = Some(read - start);
                break;
            }
        }
        let expired_at = expired_at.expect("expired");
        // Its last beat was read at 40 s; on the wall clock it would have gone at 46 s and, on
        // every earlier 6 s gap in the reads, before. Here: once an own beat sent more than 6 s
        // after 40 s came back, 10 s late.
        assert!(
            expired_at > 40 * SECOND + PEER_EXPIRY + lag,
            "{expired_at:?}"
        );
        assert!(
            expired_at <= 40 * SECOND + PEER_EXPIRY + lag + 2 * SECOND,
            "{expired_at:?}"
        );
    }

    /// The reads stall for longer than the expiry while the subscription is up (the node
    /// waits for its hub): nobody is expired meanwhile, and the peers heard in the burst that
    /// follows stay alive.
    #[test]
    fn a_stall_in_the_reads_expires_nobody() {
        let start = Instant::now();
        let mut live = Liveness::new(start);
        live.heard("n1", start);
        let stamp = live.beat_stamp(start);
        live.heard_own_beat(stamp, start);
        // 13 s without reading anything; the beat loop looks every 2 s.
        for tick in 1..=6u32 {
            assert!(live.expire(start + 2 * tick * SECOND, true).is_empty());
        }
        // Then the backlog: the peer's beats and ours of 2 to 12 s.
        let burst = start + 13 * SECOND;
        for beat in 1..=6u32 {
            live.heard("n1", burst);
            let stamp = live.beat_stamp(start + 2 * beat * SECOND);
            live.heard_own_beat(stamp, burst);
        }
        assert!(live.expire(burst, true).is_empty());
        assert!(live.knows("n1"));
    }

    /// The wall clock decides alone, as before: with no subscription up (Redis unreachable),
    /// before the first own beat came back, and when own beats stopped coming back for longer
    /// than the stall limit.
    #[test]
    fn otherwise_the_wall_clock_decides() {
        let start = Instant::now();
        let late = start + PEER_EXPIRY + SECOND;
        let heard_self = |live: &mut Liveness| {
            let stamp = live.beat_stamp(start);
            live.heard_own_beat(stamp, start);
        };
        let mut down = Liveness::new(start);
        down.heard("n1", start);
        heard_self(&mut down);
        assert!(down.expire(start + PEER_EXPIRY, false).is_empty());
        assert_eq!(down.expire(late, false), ["n1"]);

        let mut fresh = Liveness::new(start);
        fresh.heard("n2", start);
        assert_eq!(fresh.expire(late, true), ["n2"]);

        let mut stuck = Liveness::new(start);
        stuck.heard("n3", start);
        heard_self(&mut stuck);
        assert!(stuck.expire(late, true).is_empty(), "reads stalled");
        assert!(stuck.expire(start + STALL_LIMIT, true).is_empty());
        assert_eq!(stuck.expire(start + STALL_LIMIT + SECOND, true), ["n3"]);
    }

    /// A node whose own beats Redis takes but that come back more than the stall limit apart
    /// (it reads its subscriptions far behind) keeps judging on the subscriptions' clock: a
    /// live peer, heard in step with its own beats, stays alive. Once nothing is published or
    /// heard back any more, the wall clock decides again.
    #[test]
    fn a_node_that_publishes_but_reads_far_behind_keeps_live_peers() {
        let start = Instant::now();
        let mut live = Liveness::new(start);
        live.heard("n1", start);
        let stamp = live.beat_stamp(start);
        live.heard_own_beat(stamp, start);
        // 60 s: own beats published every 2 s, nothing read.
        for tick in 1..=30u32 {
            let at = start + 2 * tick * SECOND;
            live.beat_published(at);
            assert!(live.expire(at, true).is_empty(), "at {tick}");
        }
        // The backlog of 0 to 4 s is read: the peer, then an own beat.
        let read = start + 61 * SECOND;
        live.heard("n1", read);
        let stamp = live.beat_stamp(start + 4 * SECOND);
        live.heard_own_beat(stamp, read);
        assert!(live.expire(read, true).is_empty());
        assert!(live.knows("n1"));
        // Nothing published or heard back for the stall limit after the lag limit: the wall
        // clock decides.
        let stuck = read + READ_LAG_LIMIT + SECOND;
        assert_eq!(live.expire(stuck, true), ["n1"]);
    }

    /// Stamps are never zero and map back to their send time; a stamp from the future (another
    /// process of the same name, or a forged beat) moves nothing.
    #[test]
    fn stamps_round_trip_and_odd_ones_are_ignored() {
        let start = Instant::now();
        let mut live = Liveness::new(start);
        assert_eq!(live.beat_stamp(start), 1);
        assert_eq!(live.beat_stamp(start + SECOND), 1_001);
        live.heard_own_beat(0, start);
        live.heard_own_beat(live.beat_stamp(start + 60 * SECOND), start + SECOND);
        assert_eq!(live.read_to, None);
        live.heard_own_beat(1_001, start + 2 * SECOND);
        assert_eq!(live.read_to, Some(start + SECOND));
        live.heard_own_beat(1, start + 3 * SECOND);
        assert_eq!(live.read_to, Some(start + SECOND), "never moves back");
    }
}
