//! How many queries run at once: a first-come, first-served gate.
//!
//! A query is CPU work from start to end. Run more of them at once than there are cores and
//! each is stretched by the others (ten at once on two cores: every query, the slowest
//! included, takes five times as long); run them in order of arrival, a few at a time, and a
//! query waits for the ones ahead of it, then runs at full speed. Same throughput, a shorter
//! tail, and the cores the gate leaves free keep serving chat while people search.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};

/// At most `permits` holders at once, admitted in the order they asked.
#[derive(Debug)]
pub struct Gate {
    permits: AtomicU64,
    state: Mutex<Tickets>,
    turn: Condvar,
}

#[derive(Debug, Default)]
struct Tickets {
    /// The next ticket handed out.
    next: u64,
    /// Holders that have left. Ticket `t` may enter once `t < left + permits`.
    left: u64,
}

/// One admission; leaving (drop) lets the next ticket in.
#[derive(Debug)]
pub struct Admitted<'a> {
    gate: &'a Gate,
}

impl Gate {
    /// A gate of `permits` (at least one).
    pub fn new(permits: usize) -> Gate {
        Gate {
            permits: AtomicU64::new(u64::try_from(permits.max(1)).unwrap_or(u64::MAX)),
            state: Mutex::default(),
            turn: Condvar::new(),
        }
    }

    /// A gate of one permit per core.
    pub fn per_core() -> Gate {
        Gate::new(std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get))
    }

    pub fn permits(&self) -> usize {
        usize::try_from(self.permits.load(Ordering::Relaxed)).unwrap_or(usize::MAX)
    }

    /// Admits `permits` (at least one) at once from now on; 0 means one per core.
    pub fn set_permits(&self, permits: usize) {
        let permits = if permits == 0 {
            Gate::per_core().permits()
        } else {
            permits
        };
        let permits = u64::try_from(permits).unwrap_or(u64::MAX);
        // Under the lock, so that no waiter checks between the change and the wake-up.
        let tickets = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        self.permits.store(permits, Ordering::Relaxed);
        drop(tickets);
        self.turn.notify_all();
    }

    /// Waits for this caller's turn.
    pub fn enter(&self) -> Admitted<'_> {
        let mut tickets = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let ticket = tickets.next;
        tickets.next += 1;
        while ticket
            >= tickets
                .left
                .saturating_add(self.permits.load(Ordering::Relaxed))
        {
            tickets = self
                .turn
                .wait(tickets)
                .unwrap_or_else(PoisonError::into_inner);
        }
        Admitted { gate: self }
    }
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        let mut tickets = self
            .gate
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        tickets.left += 1;
        drop(tickets);
        // Waiters check their own ticket; only the next one gets in.
        self.gate.turn.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn never_more_inside_than_permits_and_first_come_first_served() {
        let gate = Arc::new(Gate::new(2));
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let order = Arc::new(Mutex::new(Vec::new()));
        // Hold both permits so the others queue in a known order.
        let first = gate.enter();
        let second = gate.enter();
        let mut threads = Vec::new();
        for i in 0..6 {
            let (held, inside, most, order) = (
                Arc::clone(&gate),
                Arc::clone(&inside),
                Arc::clone(&most),
                Arc::clone(&order),
            );
            threads.push(std::thread::spawn(move || {
                let _admitted = held.enter();
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                order.lock().unwrap().push(i);
                std::thread::sleep(std::time::Duration::from_millis(2));
                inside.fetch_sub(1, Ordering::SeqCst);
            }));
            // Wait until thread i holds its ticket before starting the next.
            while gate.state.lock().unwrap().next < 3 + i as u64 {
                std::thread::yield_now();
            }
        }
        drop(first);
        drop(second);
        for thread in threads {
            thread.join().unwrap();
        }
        assert!(most.load(Ordering::SeqCst) <= 2);
        let order = order.lock().unwrap().clone();
        // Two run at once, so neighbours may swap in the log, but nobody overtakes by more.
        for (position, i) in order.iter().enumerate() {
            assert!(position.abs_diff(*i) <= 1, "{order:?}");
        }
    }

    #[test]
    fn a_panicking_holder_lets_the_next_in() {
        let gate = Arc::new(Gate::new(1));
        let held = Arc::clone(&gate);
        let _ = std::thread::spawn(move || {
            let _admitted = held.enter();
            panic!("a query failed");
        })
        .join();
        let _admitted = gate.enter();
    }
}
