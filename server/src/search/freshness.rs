//! When the search index commits. A commit makes what was indexed searchable, and its cost does
//! not depend on how much it carries: each writes a segment (files, term dictionaries,
//! columns) that merges later rewrite. So the index commits every `search_commit_interval`
//! while it is being searched, and, once nobody has searched it for `search_idle_after`, only
//! every `search_idle_after`; the first search after that asks for a commit and waits for it
//! (as Elasticsearch's "search idle" shards do). A search therefore always sees every event
//! applied to the index more than `search_commit_interval` before it, searched recently or
//! not (`benches/RESULTS.md`, "Search indexing on the live path", has what this saves).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often a waiting search looks whether the commit it asked for is done.
const POLL: Duration = Duration::from_millis(5);

/// What a search has to do before it reads the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// Nothing: what it may expect to see is committed, or will be on time.
    Nothing,
    /// Wake the indexer, which waits for the idle period: it must commit within the interval
    /// now.
    Wake,
    /// Wake the indexer and wait for a commit past this count: events have waited longer than
    /// the interval (the index was idle).
    WaitFor(u64),
}

/// The commit policy of one index, shared by its indexer and its searches.
#[derive(Debug)]
pub struct Freshness {
    /// How often to commit while the index is searched.
    interval: Duration,
    /// Without a search for this long the index is idle (zero: never).
    idle_after: Duration,
    /// What the atomics count from.
    epoch: Instant,
    /// When the last search came (milliseconds since `epoch`, plus one; 0: never).
    last_search: AtomicU64,
    /// Since when applied events wait for a commit (as `last_search`; 0: none).
    dirty_since: AtomicU64,
    /// Commits so far.
    commits: AtomicU64,
}

impl Freshness {
    pub fn new(interval: Duration, idle_after: Duration) -> Freshness {
        Freshness {
            interval,
            idle_after,
            epoch: Instant::now(),
            last_search: AtomicU64::new(0),
            dirty_since: AtomicU64::new(0),
            commits: AtomicU64::new(0),
        }
    }

    fn stamp(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX - 1)
            + 1
    }

    fn instant(&self, stamp: u64) -> Option<Instant> {
        stamp
            .checked_sub(1)
            .map(|ms| self.epoch + Duration::from_millis(ms))
    }

    /// Whether a search came within `idle_after` of `now` (always, when idling is off).
    fn searched(&self, now: Instant) -> bool {
        if self.idle_after.is_zero() {
            return true;
        }
        self.instant(self.last_search.load(Ordering::Acquire))
            .is_some_and(|at| now.saturating_duration_since(at) < self.idle_after)
    }

    /// How long events may wait for a commit at `now`: the interval while the index is
    /// searched, else the idle period.
    pub fn period(&self, now: Instant) -> Duration {
        if self.searched(now) {
            self.interval
        } else {
            self.idle_after.max(self.interval)
        }
    }

    /// The indexer applied events (uncommitted ones may already have been waiting).
    pub fn applied(&self, at: Instant) {
        let _ = self.dirty_since.compare_exchange(
            0,
            self.stamp(at),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// The index committed everything applied before `started` (when the commit began).
    pub fn committed(&self, started: Instant) {
        let begun = self.stamp(started);
        // Events applied while the commit ran may not be in it: they keep the index dirty.
        let _ = self
            .dirty_since
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |since| {
                (since != 0 && since <= begun).then_some(0)
            });
        self.commits.fetch_add(1, Ordering::AcqRel);
    }

    /// A search is about to read the index at `now`: what it must do first.
    pub fn searching(&self, now: Instant) -> Ask {
        let was_searched = self.searched(now);
        self.last_search.store(self.stamp(now), Ordering::Release);
        let commits = self.commits.load(Ordering::Acquire);
        let Some(since) = self.instant(self.dirty_since.load(Ordering::Acquire)) else {
            return Ask::Nothing;
        };
        if now.saturating_duration_since(since) >= self.interval {
            Ask::WaitFor(commits)
        } else if was_searched {
            Ask::Nothing
        } else {
            Ask::Wake
        }
    }

    /// Waits until a commit past `commits` is done, or `limit` has passed.
    pub async fn until_committed(&self, commits: u64, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.commits.load(Ordering::Acquire) == commits
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(POLL).await;
        }
    }

    /// The longest a search waits for the commit it asked for.
    pub fn wait_limit(&self) -> Duration {
        self.interval + Duration::from_secs(2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn an_index_nobody_searches_commits_every_idle_period() {
        let freshness = Freshness::new(SECOND, 30 * SECOND);
        let now = Instant::now();
        assert_eq!(freshness.period(now), 30 * SECOND);
        assert_eq!(
            freshness.searching(now),
            Ask::Nothing,
            "nothing waits: no wait"
        );
        assert_eq!(freshness.period(now), SECOND);
        assert_eq!(freshness.period(now + 29 * SECOND), SECOND);
        assert_eq!(freshness.period(now + 30 * SECOND), 30 * SECOND);
    }

    #[test]
    fn without_an_idle_period_the_index_always_commits_every_interval() {
        let freshness = Freshness::new(SECOND, Duration::ZERO);
        assert_eq!(freshness.period(Instant::now() + 3600 * SECOND), SECOND);
    }

    #[test]
    fn a_search_waits_only_for_events_older_than_the_interval() {
        let freshness = Freshness::new(SECOND, 30 * SECOND);
        let start = Instant::now();
        freshness.applied(start);
        freshness.applied(start + 5 * SECOND);
        // Within the interval of the first uncommitted event the promise holds without a
        // commit, once the indexer knows that it is searched.
        assert_eq!(freshness.searching(start + SECOND / 2), Ask::Wake);
        assert_eq!(
            freshness.searching(start + SECOND / 2),
            Ask::Nothing,
            "awake"
        );
        assert_eq!(freshness.searching(start + 10 * SECOND), Ask::WaitFor(0));
        freshness.committed(start + 10 * SECOND);
        assert_eq!(
            freshness.searching(start + 20 * SECOND),
            Ask::Nothing,
            "clean"
        );
    }

    #[test]
    fn events_applied_during_a_commit_keep_the_index_dirty() {
        let freshness = Freshness::new(SECOND, 30 * SECOND);
        let start = Instant::now();
        let commit_began = start + SECOND;
        freshness.applied(start + 2 * SECOND);
        freshness.committed(commit_began);
        assert_eq!(freshness.searching(start + 5 * SECOND), Ask::WaitFor(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_search_waits_for_the_commit_or_the_limit() {
        let freshness = std::sync::Arc::new(Freshness::new(SECOND, 30 * SECOND));
        let waiting = {
            let freshness = freshness.clone();
            tokio::spawn(async move {
                let started = tokio::time::Instant::now();
                freshness.until_committed(0, 3 * SECOND).await;
                started.elapsed()
            })
        };
        tokio::time::sleep(SECOND).await;
        freshness.committed(Instant::now());
        let waited = waiting.await.expect("join");
        assert!(waited >= SECOND && waited < 2 * SECOND, "{waited:?}");
        let started = tokio::time::Instant::now();
        freshness.until_committed(1, 3 * SECOND).await;
        assert!(started.elapsed() >= 3 * SECOND, "gives up at the limit");
    }
}
