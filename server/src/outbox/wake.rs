//! The write delay: holding back the wake-up of busy sessions so that what they are sent in a
//! short window goes out in one socket write (one wake-up, one `send()`).
//!
//! With a delay D, a push to a connection woken within the last D does not wake the session:
//! the outbox is listed in the [`WakeBatch`] (once, however many pushes follow) and the batch
//! wakes every listed session on the next tick, every D. A push to a connection not woken for D
//! wakes it at once: only connections busier than one delivery per D wait (for at most D).
//!
//! `write_delay = "auto"` holds back only while it pays. Every push is counted, and so is every
//! wake-up it costs; while the batch is not holding back, it counts the wake-ups a delay of the
//! target would have left (a push within the target of a connection's last counted wake-up
//! would have shared it). Every second ([`ADAPT_EVERY`]) the batch compares: it holds back (for
//! the target) once connections would get at least [`START_HOLDING`] deliveries per wake-up,
//! and stops once they get fewer than [`KEEP_HOLDING`]. So a room where each connection gets a
//! message every few seconds (chat) is never delayed, and a busy broadcast is, by at most the
//! target.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Outbox, PushError};
use crate::config::WriteDelay;
use crate::hub::Outbound;
use crate::metrics as m;

/// How often `auto` looks at what holding back would pay.
pub const ADAPT_EVERY: Duration = Duration::from_secs(1);
/// `auto` starts holding back once connections would get this many deliveries per wake-up.
pub const START_HOLDING: f64 = 2.0;
/// `auto` keeps holding back while connections get at least this many per wake-up.
pub const KEEP_HOLDING: f64 = 1.5;
/// With fewer pushes than this in a period, `auto` does not hold back (too little to save, or
/// to judge by).
const MIN_PUSHES: u64 = 64;

/// Where the batch's clock starts, so that an outbox never woken (`last_wake` 0) counts as
/// quiet for longer than any delay.
const CLOCK_START_MS: u32 = 1 << 20;

/// Sessions whose wake is held back until the next tick of the write delay. The hub lists an
/// outbox on its first deferred push; [`WakeBatch::release`] wakes every listed session once.
#[derive(Debug)]
pub struct WakeBatch {
    /// The delay in force, in milliseconds; 0 (only under `auto`): every push wakes at once.
    delay_ms: AtomicU32,
    /// Under `auto`: the delay while holding back pays, in milliseconds.
    target_ms: Option<u32>,
    /// Zero of the batch's millisecond clock (tokio's, so that tests can pause it).
    epoch: Instant,
    listed: Mutex<Listed>,
    /// The list of the previous release, kept for its capacity.
    spare: Mutex<Vec<Arc<Outbox>>>,
    /// Pushes since the last [`WakeBatch::adapt`].
    pushes: AtomicU64,
    /// Wake-ups those pushes cost (or, while not holding back under `auto`, would have cost).
    wakes: AtomicU64,
}

#[derive(Debug, Default)]
struct Listed {
    outboxes: Vec<Arc<Outbox>>,
    /// Closed: nothing is listed any more, every push wakes its session at once.
    closed: bool,
}

/// The deferring pushes of one fan-out: the batch, the moment (read once), the delay in force,
/// and the counts, added to the batch's when dropped.
#[derive(Debug)]
pub struct Defer<'a> {
    batch: &'a WakeBatch,
    now: u32,
    /// The delay in force; 0: wake at once.
    delay: u32,
    /// A push this soon after the last wake-up shares it (or, with `delay` 0, would have).
    window: u32,
    /// Under `auto`: the tick after `now`, when a held push would have been released.
    next_tick: u32,
    pushes: u64,
    wakes: u64,
}

impl Drop for Defer<'_> {
    fn drop(&mut self) {
        if self.pushes > 0 {
            self.batch.pushes.fetch_add(self.pushes, Ordering::Relaxed);
            self.batch.wakes.fetch_add(self.wakes, Ordering::Relaxed);
        }
    }
}

/// Milliseconds, capped below [`CLOCK_START_MS`] (17 minutes, so that a never-woken outbox
/// still counts as quiet; Confab allows 1 s).
fn millis(delay: Duration) -> u32 {
    u32::try_from(delay.as_millis())
        .unwrap_or(u32::MAX)
        .min(CLOCK_START_MS - 1)
}

impl WakeBatch {
    /// A batch holding back busy connections for `delay`.
    pub fn new(delay: Duration) -> WakeBatch {
        WakeBatch::with(millis(delay), None)
    }

    /// A batch for `write_delay = "auto"`: not holding back until that pays, then for `target`.
    pub fn auto(target: Duration) -> WakeBatch {
        WakeBatch::with(0, Some(millis(target).max(1)))
    }

    fn with(delay_ms: u32, target_ms: Option<u32>) -> WakeBatch {
        WakeBatch {
            delay_ms: AtomicU32::new(delay_ms),
            target_ms,
            epoch: Instant::now(),
            listed: Mutex::default(),
            spare: Mutex::default(),
            pushes: AtomicU64::new(0),
            wakes: AtomicU64::new(0),
        }
    }

    /// Starts the write delay's tick task for `delay` (`write_delay_target` is `target`), which
    /// releases held sessions every tick, adapts `auto` every [`ADAPT_EVERY`], and on
    /// `shutdown` releases the last batch and stops. `None` for a zero delay: nothing is held.
    pub fn start(
        delay: WriteDelay,
        target: Duration,
        shutdown: CancellationToken,
    ) -> Option<Arc<WakeBatch>> {
        let (batch, period) = match delay {
            WriteDelay::Fixed(delay) if delay.is_zero() => return None,
            WriteDelay::Fixed(delay) => (WakeBatch::new(delay), delay),
            WriteDelay::Auto => (WakeBatch::auto(target), target),
        };
        let batch = Arc::new(batch);
        m::write_delay_chosen(batch.delay(), None);
        let ticking = batch.clone();
        tokio::spawn(async move {
            let start = Instant::now() + period;
            let mut tick = tokio::time::interval_at(start, period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut adapted = Instant::now();
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => m::write_delay_wakes(ticking.release()),
                }
                if ticking.target_ms.is_some() && adapted.elapsed() >= ADAPT_EVERY {
                    adapted = Instant::now();
                    let per_wake = ticking.adapt();
                    m::write_delay_chosen(ticking.delay(), per_wake);
                }
            }
            // No more ticks: pushes from now on wake their session at once.
            m::write_delay_wakes(ticking.close());
        });
        Some(batch)
    }

    /// The delay in force.
    pub fn delay(&self) -> Duration {
        Duration::from_millis(u64::from(self.delay_ms.load(Ordering::Relaxed)))
    }

    /// Under `auto`: decides from the pushes and wake-ups counted since the last call whether
    /// holding back pays, and sets the delay accordingly (the target, or zero). Returns the
    /// deliveries per wake-up measured; `None` when there were too few pushes to tell (then it
    /// does not hold back) or the delay is fixed.
    pub fn adapt(&self) -> Option<f64> {
        let target = self.target_ms?;
        let pushes = self.pushes.swap(0, Ordering::Relaxed);
        let wakes = self.wakes.swap(0, Ordering::Relaxed);
        if pushes < MIN_PUSHES {
            // Too little traffic for holding back to pay much, or to judge by: write at once.
            self.delay_ms.store(0, Ordering::Relaxed);
            return None;
        }
        let per_wake = pushes as f64 / wakes.max(1) as f64;
        let holding = self.delay_ms.load(Ordering::Relaxed) > 0;
        let hold = if holding {
            per_wake >= KEEP_HOLDING
        } else {
            per_wake >= START_HOLDING
        };
        self.delay_ms
            .store(if hold { target } else { 0 }, Ordering::Relaxed);
        Some(per_wake)
    }

    /// Milliseconds on the batch's clock (wrapping after 49 days; only differences of less
    /// than 24 days are compared, and a wrong one delays a wake by one tick at most).
    fn now(&self) -> u32 {
        (self.epoch.elapsed().as_millis() as u32).wrapping_add(CLOCK_START_MS)
    }

    /// Deferring pushes at this moment (one fan-out's).
    pub fn defer_now(&self) -> Defer<'_> {
        let delay = self.delay_ms.load(Ordering::Relaxed);
        let now = self.now();
        let window = self.target_ms.unwrap_or(delay).max(1);
        // The ticks fall every `window` from the batch's epoch (its clock's CLOCK_START_MS).
        let elapsed = now.wrapping_sub(CLOCK_START_MS);
        let next_tick = (elapsed - elapsed % window)
            .wrapping_add(window)
            .wrapping_add(CLOCK_START_MS);
        Defer {
            batch: self,
            now,
            delay,
            window,
            next_tick,
            pushes: 0,
            wakes: 0,
        }
    }

    fn listed(&self) -> MutexGuard<'_, Listed> {
        self.listed.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn list(&self, outbox: Arc<Outbox>) {
        let mut listed = self.listed();
        if !listed.closed {
            listed.outboxes.push(outbox);
            return;
        }
        drop(listed);
        self.wakes.fetch_add(1, Ordering::Relaxed);
        outbox.wake_deferred.store(false, Ordering::Release);
        outbox.waker.wake();
    }

    /// How many sessions wait for the next release.
    pub fn len(&self) -> usize {
        self.listed().outboxes.len()
    }

    /// Whether no session waits for the next release.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Wakes every listed session; returns how many. An outbox pushed to after this takes it
    /// off the list is listed again (its flag is cleared before its session is woken).
    pub fn release(&self) -> usize {
        let mut spare = self.spare.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::swap(&mut *spare, &mut self.listed().outboxes);
        let woken = spare.len();
        let now = self.now();
        for outbox in spare.drain(..) {
            outbox.last_wake.store(now, Ordering::Relaxed);
            outbox.wake_deferred.store(false, Ordering::Release);
            outbox.waker.wake();
        }
        self.wakes.fetch_add(woken as u64, Ordering::Relaxed);
        woken
    }

    /// Wakes every listed session, and from now on every push wakes its session at once (the
    /// tick has stopped).
    pub fn close(&self) -> usize {
        self.listed().closed = true;
        self.release()
    }
}

impl Outbox {
    /// Queues an item. A session woken within the delay in force before `defer.now` is woken
    /// by the batch's next [`WakeBatch::release`]; one quiet for longer is woken now.
    pub fn push_deferred(
        self: &Arc<Self>,
        item: Outbound,
        defer: &mut Defer<'_>,
    ) -> Result<(), PushError> {
        self.enqueue(item)?;
        defer.pushes += 1;
        if self.wake_deferred.load(Ordering::Acquire) {
            // Listed: the release wakes it (and counts that).
            return Ok(());
        }
        let since = defer
            .now
            .wrapping_sub(self.last_wake.load(Ordering::Relaxed));
        // `last_wake` ahead of now: a wake-up a delay would have made is still to come.
        let pending = since > i32::MAX as u32;
        if !pending && since >= defer.window {
            // Quiet for a window: woken now, and a window starts.
            self.last_wake.store(defer.now, Ordering::Relaxed);
            defer.wakes += 1;
            self.waker.wake();
        } else if defer.delay == 0 {
            // `auto`, not holding back: woken now, but counted as a delay would have had it
            // (that is what `adapt` weighs): held until the next tick, and sharing that tick's
            // wake-up with the pushes before it.
            if !pending {
                self.last_wake.store(defer.next_tick, Ordering::Relaxed);
                defer.wakes += 1;
            }
            self.waker.wake();
        } else if !self.wake_deferred.swap(true, Ordering::AcqRel) {
            defer.batch.list(self.clone());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::outbox::tests::{item, name};

    /// A batch whose delay no test outlasts.
    fn slow_batch() -> WakeBatch {
        WakeBatch::new(Duration::from_secs(60))
    }

    /// A deferring push of `name`, now.
    fn defer(outbox: &Arc<Outbox>, batch: &WakeBatch, name: &str) -> Result<(), PushError> {
        outbox.push_deferred(item(name), &mut batch.defer_now())
    }

    #[test]
    fn a_busy_outbox_is_listed_once_until_released() {
        let batch = slow_batch();
        let outbox = Arc::new(Outbox::new(8));
        // Never woken before: quiet, so woken at once and not listed.
        defer(&outbox, &batch, "a").expect("room");
        assert!(batch.is_empty());
        // Woken a moment ago: busy, listed once however many pushes follow.
        defer(&outbox, &batch, "b").expect("room");
        defer(&outbox, &batch, "c").expect("room");
        assert_eq!(batch.len(), 1, "listed once");
        assert_eq!(batch.release(), 1);
        assert!(batch.is_empty());
        assert_eq!(batch.release(), 0);
        // The release woke it: the next push is listed again.
        defer(&outbox, &batch, "d").expect("room");
        assert_eq!(batch.len(), 1);
        let names: Vec<String> = std::iter::from_fn(|| outbox.try_pop()).map(name).collect();
        assert_eq!(names, ["a", "b", "c", "d"]);
        // A full or closed outbox refuses as with `push`, and is not listed.
        assert_eq!(batch.release(), 1);
        let small = Arc::new(Outbox::new(1));
        defer(&small, &batch, "x").expect("room");
        assert_eq!(defer(&small, &batch, "y"), Err(PushError::Full));
        small.close();
        assert_eq!(defer(&small, &batch, "z"), Err(PushError::Closed));
        assert!(batch.is_empty());
    }

    #[tokio::test]
    async fn a_busy_session_is_woken_only_on_release_a_quiet_one_at_once() {
        let batch = slow_batch();
        let outbox = Arc::new(Outbox::new(8));
        let waiting = outbox.clone();
        let popped = tokio::spawn(async move { waiting.pop().await });
        tokio::task::yield_now().await;
        defer(&outbox, &batch, "quiet").expect("room");
        let popped = tokio::time::timeout(Duration::from_secs(5), popped)
            .await
            .expect("a quiet session is woken at once")
            .expect("task");
        assert_eq!(name(popped), "quiet");

        let waiting = outbox.clone();
        let popped = tokio::spawn(async move { waiting.pop().await });
        tokio::task::yield_now().await;
        defer(&outbox, &batch, "held").expect("room");
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(!popped.is_finished(), "woken before the release");
        batch.release();
        let popped = tokio::time::timeout(Duration::from_secs(5), popped)
            .await
            .expect("woken by the release")
            .expect("task");
        assert_eq!(name(popped), "held");
    }

    #[tokio::test]
    async fn a_closed_batch_wakes_at_once() {
        let batch = slow_batch();
        let outbox = Arc::new(Outbox::new(8));
        defer(&outbox, &batch, "a").expect("room");
        defer(&outbox, &batch, "b").expect("room");
        assert_eq!(batch.close(), 1);
        assert!(outbox.try_pop().is_some());
        assert!(outbox.try_pop().is_some());
        let waiting = outbox.clone();
        let popped = tokio::spawn(async move { waiting.pop().await });
        tokio::task::yield_now().await;
        // Busy (the close just woke it), but the batch is closed.
        defer(&outbox, &batch, "c").expect("room");
        assert!(batch.is_empty(), "nothing listed once closed");
        let popped = tokio::time::timeout(Duration::from_secs(5), popped)
            .await
            .expect("woken at once")
            .expect("task");
        assert_eq!(name(popped), "c");
    }

    /// `count` pushes to each of `outboxes`, `every` apart, releasing the batch every 20 ms
    /// as its tick would (paused time).
    async fn traffic(batch: &WakeBatch, outboxes: &[Arc<Outbox>], count: usize, every: Duration) {
        let tick = Duration::from_millis(20);
        let mut next_tick = batch.epoch + tick;
        while next_tick <= Instant::now() {
            next_tick += tick;
        }
        for _ in 0..count {
            for outbox in outboxes {
                defer(outbox, batch, "m").expect("room");
                while outbox.try_pop().is_some() {}
            }
            tokio::time::sleep(every).await;
            while next_tick <= Instant::now() {
                batch.release();
                next_tick += tick;
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn auto_holds_back_only_while_connections_get_several_per_wake() {
        let target = Duration::from_millis(20);
        let batch = WakeBatch::auto(target);
        let outboxes: Vec<Arc<Outbox>> = (0..8).map(|_| Arc::new(Outbox::new(64))).collect();
        assert_eq!(
            batch.delay(),
            Duration::ZERO,
            "not holding back to begin with"
        );

        // A delivery every 5 ms per connection: a 20 ms delay would share each wake-up four
        // ways. Not holding back yet, so every push wakes at once (nothing is listed).
        traffic(&batch, &outboxes, 40, Duration::from_millis(5)).await;
        assert!(batch.is_empty());
        let per_wake = batch.adapt().expect("enough pushes");
        assert!(per_wake >= START_HOLDING, "{per_wake}");
        assert_eq!(batch.delay(), target, "holds back now");

        // Holding back: busy connections are listed and share the release's wake-up.
        traffic(&batch, &outboxes, 40, Duration::from_millis(5)).await;
        let per_wake = batch.adapt().expect("enough pushes");
        assert!(per_wake >= KEEP_HOLDING, "{per_wake}");
        assert_eq!(batch.delay(), target);

        // One delivery every 50 ms: each would wake its connection alone, so stop.
        traffic(&batch, &outboxes, 10, Duration::from_millis(50)).await;
        let per_wake = batch.adapt().expect("enough pushes");
        assert!(per_wake < KEEP_HOLDING, "{per_wake}");
        assert_eq!(batch.delay(), Duration::ZERO);

        // Too few pushes to tell: not holding back, even after holding back.
        traffic(&batch, &outboxes, 40, Duration::from_millis(5)).await;
        assert!(batch.adapt().is_some());
        assert_eq!(batch.delay(), target);
        defer(&outboxes[0], &batch, "lone").expect("room");
        assert_eq!(batch.adapt(), None);
        assert_eq!(batch.delay(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn auto_does_not_start_for_deliveries_just_inside_the_target() {
        // Every 15 ms against a 20 ms target: held pushes would be released by the next tick
        // before the following one arrives, so a delay shares no wake-up and only adds latency.
        let batch = WakeBatch::auto(Duration::from_millis(20));
        let outboxes: Vec<Arc<Outbox>> = (0..8).map(|_| Arc::new(Outbox::new(64))).collect();
        traffic(&batch, &outboxes, 40, Duration::from_millis(15)).await;
        let per_wake = batch.adapt().expect("enough pushes");
        assert!(per_wake < KEEP_HOLDING, "{per_wake}");
        assert_eq!(batch.delay(), Duration::ZERO);
    }

    #[test]
    fn a_fixed_delay_does_not_adapt() {
        let batch = WakeBatch::new(Duration::from_millis(20));
        assert_eq!(batch.adapt(), None);
        assert_eq!(batch.delay(), Duration::from_millis(20));
    }
}
