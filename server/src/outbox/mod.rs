//! A connection's outbound queue: what the hub hands a session to write, plus the signals that
//! go with it (cut off as a slow consumer, wants `presence` frames).
//!
//! Why not `tokio::sync::mpsc`: its bounded channel allocates its first block of 32 slots and
//! a cache-padded channel state when it is created, 1.3 KiB for every connection however idle,
//! and keeps its blocks after a burst. Here an idle connection's queue is one small allocation;
//! the `VecDeque` grows only while frames are queued and is given back once a burst has drained.
//! The hub pushes from the storage writer's thread and the session pops from its task: one
//! short `Mutex` section each, and one `AtomicWaker` for the session's task (every future that
//! waits on the outbox is polled by that one task).
//!
//! With a write delay, pushes may wait for the write delay's next tick ([`wake`]).

mod wake;

pub use wake::{Defer, WakeBatch};

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::task::Poll;

use futures_util::task::AtomicWaker;

use crate::hub::Outbound;
use crate::metrics as m;

/// Queue capacity kept after draining; a queue that grew past it is given back when empty.
const KEEP_CAPACITY: usize = 16;

/// Why a push was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The queue holds its capacity: the connection is not keeping up.
    Full,
    /// The session has ended.
    Closed,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Outbound>,
    closed: bool,
}

/// Why the hub ended a session ([`Outbox::ended`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Shutdown,
    /// A slow consumer.
    Kicked,
}

/// Shared between a session (the only consumer) and the hub (producers).
#[derive(Debug)]
pub struct Outbox {
    state: Mutex<State>,
    capacity: usize,
    waker: AtomicWaker,
    kicked: AtomicBool,
    /// The server is shutting down ([`Outbox::shut_down`]).
    shutdown: AtomicBool,
    presence: AtomicBool,
    /// Listed in a [`WakeBatch`] and not yet woken by it.
    wake_deferred: AtomicBool,
    /// When a deferring push or a release last woke the session, on the [`WakeBatch`] clock.
    last_wake: AtomicU32,
    /// The last user event the session sent (`user_seq`). Kept here rather than in the session,
    /// whose size each idle connection pays in its task (see the session's size test); only the
    /// session reads and writes it.
    user_seq: AtomicU64,
    /// The session's heartbeat ([`crate::heartbeat`]): its due time, and whether it has come.
    pub(crate) heartbeat: crate::heartbeat::Slot,
}

impl Outbox {
    /// An empty outbox that refuses pushes past `capacity` queued items.
    pub fn new(capacity: usize) -> Outbox {
        Outbox {
            state: Mutex::new(State::default()),
            capacity: capacity.max(1),
            waker: AtomicWaker::new(),
            kicked: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            presence: AtomicBool::new(false),
            wake_deferred: AtomicBool::new(false),
            last_wake: AtomicU32::new(0),
            user_seq: AtomicU64::new(0),
            heartbeat: crate::heartbeat::Slot::default(),
        }
    }

    /// Registers the session's task to be woken by the next push or signal.
    pub(crate) fn register(&self, waker: &std::task::Waker) {
        self.waker.register(waker);
    }

    /// Wakes the session's task (its heartbeat is due).
    pub(crate) fn wake(&self) {
        self.waker.wake();
    }

    /// The last `user_seq` the session sent.
    pub fn user_seq(&self) -> u64 {
        self.user_seq.load(Ordering::Relaxed)
    }

    /// Records the last `user_seq` the session sent (or resumes from).
    pub fn set_user_seq(&self, seq: u64) {
        self.user_seq.store(seq, Ordering::Relaxed);
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves a valid queue behind: keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues an item and wakes the session.
    pub fn push(&self, item: Outbound) -> Result<(), PushError> {
        self.enqueue(item)?;
        self.waker.wake();
        Ok(())
    }

    fn enqueue(&self, item: Outbound) -> Result<(), PushError> {
        let mut state = self.state();
        if state.closed {
            return Err(PushError::Closed);
        }
        if state.queue.len() >= self.capacity {
            return Err(PushError::Full);
        }
        state.queue.push_back(item);
        Ok(())
    }

    /// How many items are queued.
    pub fn queued(&self) -> usize {
        self.state().queue.len()
    }

    /// Whether an item is queued.
    pub fn has_items(&self) -> bool {
        !self.state().queue.is_empty()
    }

    /// Waits until an item is queued, and leaves it there: the session takes it once its
    /// socket is ready for it, so that its write holds no item across that wait.
    pub fn filled(&self) -> impl Future<Output = ()> + '_ {
        poll_fn(|cx| {
            // Register before looking, so that a push after the look wakes this task.
            self.waker.register(cx.waker());
            if self.has_items() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }

    /// The next queued item, if any, without waiting.
    pub fn try_pop(&self) -> Option<Outbound> {
        let mut state = self.state();
        let item = state.queue.pop_front();
        if state.queue.is_empty() && state.queue.capacity() > KEEP_CAPACITY {
            state.queue = VecDeque::new();
        }
        item
    }

    /// Waits for the next queued item.
    ///
    /// Here and in [`ended`](Self::ended), the `poll_fn` itself rather than an `async fn`
    /// around it: the session loop holds both futures (twice over, in its `select!`), and each
    /// `async fn` layer adds to the future that every idle connection keeps.
    pub fn pop(&self) -> impl Future<Output = Outbound> + '_ {
        poll_fn(|cx| {
            // Register before looking, so that a push after the look wakes this task.
            self.waker.register(cx.waker());
            match self.try_pop() {
                Some(item) => Poll::Ready(item),
                None => Poll::Pending,
            }
        })
    }

    /// Marks the connection as a slow consumer and wakes its session (counted once).
    pub fn kick(&self) {
        if !self.kicked.swap(true, Ordering::AcqRel) {
            m::slow_consumer();
            self.waker.wake();
        }
    }

    /// Whether the connection has been kicked.
    pub fn is_kicked(&self) -> bool {
        self.kicked.load(Ordering::Acquire)
    }

    /// Resolves once the connection has been kicked.
    pub async fn kicked(&self) {
        poll_fn(|cx| {
            self.waker.register(cx.waker());
            if self.is_kicked() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }

    /// Tells the session that the server is shutting down, and wakes it.
    pub fn shut_down(&self) {
        if !self.shutdown.swap(true, Ordering::AcqRel) {
            self.waker.wake();
        }
    }

    /// Resolves once the hub ends the session: the server shuts down (first) or the
    /// connection was kicked. The session waits on this with every wake-up, so it is two
    /// atomic loads and the waker's registration: waiting on the server's shutdown token
    /// instead took two of the token's shared locks per wake-up, from every session on every
    /// core (5.7 % of the fan-out's CPU in the profile in `benches/RESULTS.md`).
    pub fn ended(&self) -> impl Future<Output = Ended> + Unpin + '_ {
        poll_fn(|cx| {
            self.waker.register(cx.waker());
            if self.shutdown.load(Ordering::Acquire) {
                Poll::Ready(Ended::Shutdown)
            } else if self.is_kicked() {
                Poll::Ready(Ended::Kicked)
            } else {
                Poll::Pending
            }
        })
    }

    /// The session ended: what is queued is dropped and later pushes are refused.
    pub fn close(&self) {
        let mut state = self.state();
        state.closed = true;
        state.queue = VecDeque::new();
    }

    /// Subscribes the connection to `presence` frames.
    pub fn enable_presence(&self) {
        self.presence.store(true, Ordering::Relaxed);
    }

    /// Whether the connection takes `presence` frames.
    pub fn wants_presence(&self) -> bool {
        self.presence.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    pub(super) fn item(name: &str) -> Outbound {
        Outbound::Resync(Arc::from(name))
    }

    pub(super) fn name(item: Outbound) -> String {
        match item {
            Outbound::Resync(name) => name.to_string(),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn items_come_out_in_order_up_to_the_capacity() {
        let outbox = Outbox::new(2);
        assert_eq!(outbox.push(item("a")), Ok(()));
        assert_eq!(outbox.push(item("b")), Ok(()));
        assert_eq!(outbox.push(item("c")), Err(PushError::Full));
        assert_eq!(outbox.state().queue.len(), 2);
        assert_eq!(outbox.try_pop().map(name).as_deref(), Some("a"));
        assert_eq!(outbox.push(item("d")), Ok(()));
        assert_eq!(outbox.try_pop().map(name).as_deref(), Some("b"));
        assert_eq!(outbox.try_pop().map(name).as_deref(), Some("d"));
        assert!(outbox.try_pop().is_none());
        assert!(outbox.state().queue.is_empty());
    }

    #[test]
    fn a_drained_burst_gives_its_memory_back() {
        let outbox = Outbox::new(1024);
        assert_eq!(
            outbox.state().queue.capacity(),
            0,
            "nothing allocated up front"
        );
        for n in 0..500 {
            outbox.push(item(&n.to_string())).expect("room");
        }
        assert!(outbox.state().queue.capacity() >= 500);
        while outbox.try_pop().is_some() {}
        assert_eq!(outbox.state().queue.capacity(), 0);
        // A small queue keeps its buffer: steady traffic does not reallocate.
        outbox.push(item("x")).expect("room");
        let kept = outbox.state().queue.capacity();
        assert!(outbox.try_pop().is_some());
        assert_eq!(outbox.state().queue.capacity(), kept);
    }

    #[test]
    fn a_closed_outbox_refuses_and_drops() {
        let outbox = Outbox::new(4);
        outbox.push(item("a")).expect("room");
        outbox.close();
        assert!(outbox.try_pop().is_none());
        assert_eq!(outbox.push(item("b")), Err(PushError::Closed));
    }

    #[tokio::test]
    async fn pop_waits_for_a_push_from_another_thread() {
        let outbox = Arc::new(Outbox::new(4));
        let producer = outbox.clone();
        let pushing = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            producer.push(item("late")).expect("room");
        });
        let popped = tokio::time::timeout(Duration::from_secs(5), outbox.pop())
            .await
            .expect("woken by the push");
        assert_eq!(name(popped), "late");
        pushing.join().expect("producer");
    }

    #[tokio::test]
    async fn kick_wakes_a_waiting_session_once() {
        let outbox = Arc::new(Outbox::new(4));
        let kicker = outbox.clone();
        assert!(!outbox.is_kicked());
        let kicking = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            kicker.kick();
            kicker.kick();
        });
        tokio::time::timeout(Duration::from_secs(5), outbox.kicked())
            .await
            .expect("woken by the kick");
        assert!(outbox.is_kicked());
        kicking.join().expect("kicker");
    }

    #[tokio::test]
    async fn shutdown_wakes_a_waiting_session_and_comes_before_a_kick() {
        let outbox = Arc::new(Outbox::new(4));
        let teller = outbox.clone();
        let telling = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            teller.shut_down();
            teller.kick();
        });
        let why = tokio::time::timeout(Duration::from_secs(5), outbox.ended())
            .await
            .expect("woken by the shutdown");
        telling.join().expect("teller");
        assert!(matches!(why, Ended::Shutdown | Ended::Kicked));
        // Both signalled: the shutdown is the reason given.
        assert_eq!(outbox.ended().await, Ended::Shutdown);
        let kicked = Outbox::new(4);
        kicked.kick();
        assert_eq!(kicked.ended().await, Ended::Kicked);
    }
}
