//! Latency histograms and the per-message ledger that turns deliveries into loss and duplicate
//! counts.
//!
//! Every message the generator sends gets a [`Slot`], indexed by the message's global number
//! (carried in its body). Receivers add one to the slot's delivery count; at the end each
//! acknowledged message was expected exactly `fan-out of its conversation` times, so any shortfall
//! is loss and any excess a duplicate, message by message.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest latency the histograms track, in microseconds (larger values are clamped).
const MAX_LATENCY_US: u64 = 120_000_000;

/// A latency histogram in microseconds, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

/// Records `elapsed` into `histogram`, clamping to its range.
pub fn record(histogram: &mut Histogram<u64>, elapsed: Duration) {
    let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    histogram.saturating_record(micros.clamp(1, MAX_LATENCY_US));
}

/// Percentiles of a latency histogram, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    pub fn of(histogram: &Histogram<u64>) -> Percentiles {
        if histogram.is_empty() {
            return Percentiles::default();
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        Percentiles {
            count: histogram.len(),
            p50_ms: ms(histogram.value_at_quantile(0.50)),
            p90_ms: ms(histogram.value_at_quantile(0.90)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            p999_ms: ms(histogram.value_at_quantile(0.999)),
            max_ms: ms(histogram.max()),
        }
    }
}

impl std::fmt::Display for Percentiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms (n={})",
            self.p50_ms, self.p90_ms, self.p99_ms, self.p999_ms, self.max_ms, self.count
        )
    }
}

/// Quantiles of [`cdf`]: every 5 % through the body, then ever closer to the maximum, so
/// that a curve drawn through them shows the tail as well as the median.
const CDF_QUANTILES: [f64; 31] = [
    0.0, 0.01, 0.02, 0.05, 0.10, 0.15, 0.20, 0.25, 0.30, 0.35, 0.40, 0.45, 0.50, 0.55, 0.60, 0.65,
    0.70, 0.75, 0.80, 0.85, 0.90, 0.95, 0.97, 0.98, 0.99, 0.995, 0.998, 0.999, 0.9995, 0.9999, 1.0,
];

/// One point of a latency distribution: the fraction `q` of samples took at most `ms`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CdfPoint {
    pub q: f64,
    pub ms: f64,
}

/// A latency histogram's cumulative distribution at fixed quantiles (what `confab-bench plot`
/// draws); empty for an empty histogram. Neither `q` nor `ms` decreases along it.
pub fn cdf(histogram: &Histogram<u64>) -> Vec<CdfPoint> {
    if histogram.is_empty() {
        return Vec::new();
    }
    CDF_QUANTILES
        .iter()
        .map(|&q| CdfPoint {
            q,
            ms: histogram.value_at_quantile(q) as f64 / 1000.0,
        })
        .collect()
}

/// A histogram split into shards so that thousands of connection tasks on a few threads rarely
/// wait for each other; merged when read.
pub struct ShardedHistogram {
    shards: Vec<Mutex<Histogram<u64>>>,
}

impl ShardedHistogram {
    pub fn new(shards: usize) -> Self {
        ShardedHistogram {
            shards: (0..shards.max(1))
                .map(|_| Mutex::new(new_histogram()))
                .collect(),
        }
    }

    /// Records into the shard chosen by `key` (a connection index).
    pub fn record(&self, key: usize, elapsed: Duration) {
        let shard = &self.shards[key % self.shards.len()];
        record(
            &mut shard.lock().unwrap_or_else(|e| e.into_inner()),
            elapsed,
        );
    }

    /// All shards merged.
    pub fn merged(&self) -> Histogram<u64> {
        let mut total = new_histogram();
        for shard in &self.shards {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            total.add(&*shard).expect("histograms share bounds");
        }
        total
    }
}

/// What became of one message.
pub mod slot_state {
    pub const UNUSED: u8 = 0;
    pub const SENT: u8 = 1;
    pub const ACKED: u8 = 2;
    pub const FAILED: u8 = 3;
    /// The sender's queue was full: never written (the generator could not keep up).
    pub const SKIPPED: u8 = 4;
}

/// The ledger entry of one message.
#[derive(Default)]
pub struct Slot {
    /// Index of the conversation it went to.
    pub conversation: AtomicU32,
    /// When it was written, in nanoseconds since the run's clock origin.
    pub sent_ns: AtomicU64,
    pub state: AtomicU8,
    /// Node of the connection that sent it (see [`crate::load::ConnPlan::node`]).
    pub node: AtomicU8,
    /// Times it was received, over all connections.
    pub deliveries: AtomicU32,
}

/// Totals of the ledger, computed at the end of a run.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct LedgerTotals {
    pub sent: u64,
    pub acked: u64,
    pub failed: u64,
    pub unacked: u64,
    pub skipped: u64,
    /// Deliveries the acknowledged messages should have produced.
    pub expected: u64,
    /// Deliveries of acknowledged messages.
    pub delivered: u64,
    /// Expected deliveries that never arrived.
    pub loss: u64,
    /// Deliveries beyond the expected count.
    pub duplicates: u64,
    /// Deliveries of messages whose ack never came (or failed).
    pub delivered_unacked: u64,
}

/// Per-message ledger plus the run's clock origin.
pub struct Ledger {
    origin: Instant,
    slots: Box<[Slot]>,
}

impl Ledger {
    pub fn new(capacity: usize) -> Self {
        Ledger {
            origin: Instant::now(),
            slots: (0..capacity).map(|_| Slot::default()).collect(),
        }
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Nanoseconds since the run's clock origin (what message bodies carry).
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    pub fn slot(&self, index: usize) -> Option<&Slot> {
        self.slots.get(index)
    }

    /// Adds up every slot; `fanout[c]` is how many receivers conversation `c` has.
    pub fn totals(&self, fanout: &[u32]) -> LedgerTotals {
        let mut totals = LedgerTotals::default();
        for slot in self.slots.iter() {
            let state = slot.state.load(Ordering::Acquire);
            let delivered = u64::from(slot.deliveries.load(Ordering::Acquire));
            match state {
                slot_state::UNUSED => continue,
                slot_state::SKIPPED => {
                    totals.skipped += 1;
                    continue;
                }
                _ => totals.sent += 1,
            }
            if state != slot_state::ACKED {
                if state == slot_state::FAILED {
                    totals.failed += 1;
                } else {
                    totals.unacked += 1;
                }
                totals.delivered_unacked += delivered;
                continue;
            }
            totals.acked += 1;
            let conversation = slot.conversation.load(Ordering::Acquire) as usize;
            let expected = u64::from(fanout.get(conversation).copied().unwrap_or(0));
            totals.expected += expected;
            totals.delivered += delivered;
            totals.loss += expected.saturating_sub(delivered);
            totals.duplicates += delivered.saturating_sub(expected);
        }
        totals
    }

    /// Whether every acknowledged message has reached all its receivers and no send is still
    /// waiting for its ack.
    pub fn settled(&self, fanout: &[u32]) -> bool {
        let totals = self.totals(fanout);
        totals.unacked == 0 && totals.loss == 0
    }
}

/// Counters of a run, updated by every connection task.
#[derive(Default)]
pub struct Counters {
    /// Deliveries of the generator's messages (any phase).
    pub delivered: AtomicU64,
    pub acked: AtomicU64,
    /// Deliveries whose seq was not above the previous one on that connection.
    pub out_of_order: AtomicU64,
    /// Message events that were not the generator's (another client's traffic).
    pub foreign: AtomicU64,
    /// `error` frames received.
    pub errors: AtomicU64,
    /// Connections the server closed, or that failed, while the run was going on.
    pub disconnects: AtomicU64,
}

impl Counters {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_counts_loss_and_duplicates_per_message() {
        let ledger = Ledger::new(4);
        let fanout = [3, 2];
        let set = |i: usize, conversation: u32, state: u8, deliveries: u32| {
            let slot = ledger.slot(i).expect("slot");
            slot.conversation.store(conversation, Ordering::Relaxed);
            slot.state.store(state, Ordering::Relaxed);
            slot.deliveries.store(deliveries, Ordering::Relaxed);
        };
        set(0, 0, slot_state::ACKED, 3);
        set(1, 0, slot_state::ACKED, 1);
        set(2, 1, slot_state::ACKED, 4);
        set(3, 1, slot_state::SENT, 1);
        let totals = ledger.totals(&fanout);
        assert_eq!(totals.sent, 4);
        assert_eq!(totals.acked, 3);
        assert_eq!(totals.expected, 8);
        assert_eq!(totals.delivered, 8);
        assert_eq!(totals.loss, 2);
        assert_eq!(totals.duplicates, 2);
        assert_eq!(totals.unacked, 1);
        assert_eq!(totals.delivered_unacked, 1);
        assert!(!ledger.settled(&fanout));
    }

    #[test]
    fn percentiles_are_in_milliseconds() {
        let mut h = new_histogram();
        for ms in 1..=100u64 {
            record(&mut h, Duration::from_millis(ms));
        }
        let p = Percentiles::of(&h);
        assert_eq!(p.count, 100);
        assert!((p.p50_ms - 50.0).abs() < 0.1, "{p:?}");
        assert!((p.max_ms - 100.0).abs() < 0.1, "{p:?}");
        assert!(cdf(&new_histogram()).is_empty());
        let sharded = ShardedHistogram::new(4);
        sharded.record(1, Duration::from_millis(2));
        sharded.record(6, Duration::from_millis(4));
        assert_eq!(sharded.merged().len(), 2);
    }

    #[test]
    fn cdf_rises_from_the_minimum_to_the_maximum() {
        let mut h = new_histogram();
        for micros in [50u64, 80, 120, 400, 900, 2_500, 7_000, 40_000] {
            for _ in 0..(100_000 / micros) {
                record(&mut h, Duration::from_micros(micros));
            }
        }
        let points = cdf(&h);
        assert_eq!(points.len(), CDF_QUANTILES.len());
        assert!(
            points
                .windows(2)
                .all(|w| w[0].q < w[1].q && w[0].ms <= w[1].ms),
            "{points:?}"
        );
        let (first, last) = (points[0], points[points.len() - 1]);
        assert!((first.ms - 0.05).abs() < 0.001, "{first:?}");
        assert!((last.ms - 40.0).abs() < 0.1, "{last:?}");
        let p99 = points.iter().find(|p| p.q == 0.99).map(|p| p.ms);
        assert_eq!(
            p99,
            Some(Percentiles::of(&h).p99_ms),
            "the CDF agrees with p99"
        );
    }
}
