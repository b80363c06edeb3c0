//! Every session's heartbeat on one timer.
//!
//! A session is pinged every `heartbeat` from when its loop starts, and each ping is when it
//! checks its token's expiry and its idle timeout (see `Session::heartbeat`). A
//! `tokio::time::Interval` per session did that at 112 B of boxed timer each, plus the interval
//! in the session's future, for every idle connection. Here one task sleeps until the earliest
//! session's due time and marks it due in the session's [`Outbox`] (waking its task, as a
//! delivery does); the session re-arms itself when it takes the heartbeat. An idle connection
//! keeps one queue entry (16 B) and one word in its outbox.
//!
//! The due times follow `Interval` with `MissedTickBehavior::Delay` exactly: the next is one
//! period after the one taken, or one period after the moment it was taken when that was more
//! than 5 ms late (tokio's tolerance), so the timings the paused-clock tests check are the
//! same. All sessions share one period, so new due times come in (almost) in order: the queue
//! is a sorted `VecDeque`, inserted into from the back.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Poll;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::outbox::Outbox;

/// Set in a [`Slot`] once its due time has come.
const FIRED: u64 = 1 << 63;
/// How late a heartbeat may be taken and still keep the next one on its grid (tokio's
/// `Interval` allows the same).
const LATE: Duration = Duration::from_millis(5);

/// A session's heartbeat state, in its outbox: 0 while none is scheduled, else the due time
/// (nanoseconds after the [`Heartbeats`] epoch), with [`FIRED`] set once it has come.
#[derive(Debug, Default)]
pub struct Slot(AtomicU64);

#[derive(Debug)]
struct Due {
    at: u64,
    outbox: Arc<Outbox>,
}

/// The heartbeats of every session of a server.
#[derive(Debug)]
pub struct Heartbeats {
    period: Duration,
    /// Zero of the due times (tokio's clock, so that tests can pause it).
    epoch: Instant,
    /// Scheduled sessions by due time, earliest first.
    queue: Mutex<VecDeque<Due>>,
    /// Wakes the timer task when the earliest due time moved earlier.
    front_changed: Notify,
    /// Whether the timer task runs: started by the first session, on its runtime.
    started: AtomicBool,
    shutdown: CancellationToken,
}

impl Heartbeats {
    /// Heartbeats every `period` (at least a millisecond), until `shutdown`.
    pub fn new(period: Duration, shutdown: CancellationToken) -> Heartbeats {
        Heartbeats {
            period: period.max(Duration::from_millis(1)),
            epoch: Instant::now(),
            queue: Mutex::default(),
            front_changed: Notify::new(),
            started: AtomicBool::new(false),
            shutdown,
        }
    }

    fn queue(&self) -> MutexGuard<'_, VecDeque<Due>> {
        // Every operation leaves the queue sorted: keep going after a panic elsewhere.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn nanos(&self, at: Instant) -> u64 {
        // At least 1: 0 means "not scheduled". u64 nanoseconds last 292 years.
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos())
            .unwrap_or(FIRED - 1)
            .clamp(1, FIRED - 1)
    }

    fn instant(&self, at: u64) -> Instant {
        self.epoch + Duration::from_nanos(at)
    }

    /// Schedules the first heartbeat of the session of `outbox`, one period from now.
    pub fn start(self: &Arc<Self>, outbox: &Arc<Outbox>) {
        if !self.started.swap(true, Ordering::AcqRel) {
            tokio::spawn(self.clone().run());
        }
        self.schedule(outbox, Instant::now() + self.period);
    }

    fn schedule(&self, outbox: &Arc<Outbox>, at: Instant) {
        let at = self.nanos(at);
        outbox.heartbeat.0.store(at, Ordering::Release);
        let mut queue = self.queue();
        let index = queue.partition_point(|due| due.at <= at);
        queue.insert(
            index,
            Due {
                at,
                outbox: outbox.clone(),
            },
        );
        drop(queue);
        if index == 0 {
            self.front_changed.notify_one();
        }
    }

    /// Resolves when the session of `outbox` is due a heartbeat, and schedules its next one.
    /// Waits on the outbox's waker, like everything else the session waits on.
    pub fn tick<'a>(&'a self, outbox: &'a Arc<Outbox>) -> impl Future<Output = ()> + 'a {
        poll_fn(move |cx| {
            outbox.register(cx.waker());
            let slot = &outbox.heartbeat.0;
            if slot.load(Ordering::Acquire) & FIRED == 0 {
                return Poll::Pending;
            }
            let due = self.instant(slot.swap(0, Ordering::AcqRel) & !FIRED);
            let now = Instant::now();
            let next = if now > due + LATE {
                now + self.period
            } else {
                due + self.period
            };
            self.schedule(outbox, next);
            Poll::Ready(())
        })
    }

    /// Cancels the heartbeats of the session of `outbox` (idempotent), so that the queue does
    /// not keep an ended session's outbox until its due time.
    pub fn stop(&self, outbox: &Arc<Outbox>) {
        let at = outbox.heartbeat.0.swap(0, Ordering::AcqRel);
        if at == 0 || at & FIRED != 0 {
            return;
        }
        let mut queue = self.queue();
        let from = queue.partition_point(|due| due.at < at);
        let found = (from..queue.len())
            .take_while(|&i| queue[i].at == at)
            .find(|&i| Arc::ptr_eq(&queue[i].outbox, outbox));
        if let Some(index) = found {
            queue.remove(index);
        }
    }

    /// Sessions scheduled.
    pub fn scheduled(&self) -> usize {
        self.queue().len()
    }

    /// Marks every session due by `now` and wakes it; returns the next due time.
    fn fire_due(&self, now: Instant, fired: &mut Vec<Due>) -> Option<Instant> {
        let now = self.nanos(now);
        let next = {
            let mut queue = self.queue();
            while queue.front().is_some_and(|due| due.at <= now) {
                fired.extend(queue.pop_front());
            }
            queue.front().map(|due| due.at)
        };
        // Outside the lock: sessions taking their heartbeat re-arm under it.
        for due in fired.drain(..) {
            let slot = &due.outbox.heartbeat.0;
            // Only if still scheduled for this time: `stop` may have cancelled it meanwhile.
            if slot
                .compare_exchange(due.at, due.at | FIRED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                due.outbox.wake();
            }
        }
        next.map(|at| self.instant(at))
    }

    /// The timer task: sleeps until the earliest due time, marks what is due, until shutdown.
    async fn run(self: Arc<Self>) {
        let sleep = tokio::time::sleep_until(self.epoch);
        tokio::pin!(sleep);
        let mut fired = Vec::new();
        loop {
            let next = self.fire_due(Instant::now(), &mut fired);
            if fired.capacity() > 1024 {
                fired = Vec::new();
            }
            let changed = self.front_changed.notified();
            match next {
                Some(at) => {
                    sleep.as_mut().reset(at);
                    tokio::select! {
                        () = self.shutdown.cancelled() => return,
                        () = changed => {}
                        () = &mut sleep => {}
                    }
                }
                None => {
                    tokio::select! {
                        () = self.shutdown.cancelled() => return,
                        () = changed => {}
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heartbeats(period: Duration) -> Arc<Heartbeats> {
        Arc::new(Heartbeats::new(period, CancellationToken::new()))
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_is_due_every_period_from_its_start() {
        let heartbeats = heartbeats(Duration::from_secs(10));
        let outbox = Arc::new(Outbox::new(4));
        let started = Instant::now();
        heartbeats.start(&outbox);
        for n in 1..=3 {
            heartbeats.tick(&outbox).await;
            assert_eq!(started.elapsed(), Duration::from_secs(10 * n));
        }
        assert_eq!(heartbeats.scheduled(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_heartbeat_delays_the_next_one() {
        let heartbeats = heartbeats(Duration::from_secs(10));
        let outbox = Arc::new(Outbox::new(4));
        let started = Instant::now();
        heartbeats.start(&outbox);
        // Taken 3 s late (a blocked write): the next comes a whole period after that.
        tokio::time::sleep(Duration::from_secs(13)).await;
        heartbeats.tick(&outbox).await;
        assert_eq!(started.elapsed(), Duration::from_secs(13));
        heartbeats.tick(&outbox).await;
        assert_eq!(started.elapsed(), Duration::from_secs(23));
    }

    #[tokio::test(start_paused = true)]
    async fn sessions_started_apart_keep_their_own_times_and_a_stopped_one_leaves() {
        let heartbeats = heartbeats(Duration::from_secs(10));
        let (first, second) = (Arc::new(Outbox::new(4)), Arc::new(Outbox::new(4)));
        let started = Instant::now();
        heartbeats.start(&first);
        tokio::time::sleep(Duration::from_secs(4)).await;
        heartbeats.start(&second);
        heartbeats.tick(&first).await;
        assert_eq!(started.elapsed(), Duration::from_secs(10));
        heartbeats.tick(&second).await;
        assert_eq!(started.elapsed(), Duration::from_secs(14));
        heartbeats.stop(&first);
        heartbeats.stop(&first);
        assert_eq!(heartbeats.scheduled(), 1);
        heartbeats.tick(&second).await;
        assert_eq!(started.elapsed(), Duration::from_secs(24));
        heartbeats.stop(&second);
        assert_eq!(heartbeats.scheduled(), 0);
    }
}
