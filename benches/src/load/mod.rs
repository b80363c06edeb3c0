//! Live connections and the traffic they carry.
//!
//! - [`open_fleet`] opens every planned connection (bounded concurrency), waits for `welcome`
//!   and `joined`, and leaves one task per connection running [`drive`].
//! - [`pace`] sends at a fixed total rate (open loop: the schedule does not wait for acks),
//!   handing each message to its sender's task through a small bounded queue.
//! - A message's body is `m<index>.<sent_ns>.<padding>`: receivers find its ledger slot and its
//!   send time there, so latency is measured end to end on one clock (the generator's).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::conn::prefix;
use crate::stats::{Counters, Ledger, ShardedHistogram, slot_state};

mod fleet;

pub use fleet::{ConnPlan, ConnectReport, Fleet, FleetSpec, close_fleet, open_fleet};

/// Queued sends per sending connection before the pacer counts a message as skipped.
const SEND_QUEUE: usize = 256;
/// Histogram shards (a few per core is plenty).
const SHARDS: usize = 16;
/// Error frames kept verbatim for the report.
const ERROR_SAMPLES: usize = 5;

/// One message to send, by its ledger index.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing {
    pub index: u32,
}

/// What every connection task of a run shares.
pub struct Run {
    pub ledger: Ledger,
    pub counters: Counters,
    /// Delivery latency of messages sent inside the measurement window.
    pub latency: ShardedHistogram,
    /// Send-to-ack latency of messages sent inside the measurement window.
    pub ack_latency: ShardedHistogram,
    /// With several nodes: deliveries by the node of the receiving connection, and delivery
    /// latency split by whether the sender was on the receiver's node. Empty on one node.
    pub nodes: Option<NodeSplit>,
    /// Messages handed to senders so far.
    pub sent: AtomicU64,
    window_from_ns: AtomicU64,
    window_until_ns: AtomicU64,
    /// Cancelled to close every connection.
    pub stop: CancellationToken,
    padding: String,
    /// Prefix of `client_msg_id`s, unique per run.
    nonce: String,
    closes: Mutex<BTreeMap<String, u64>>,
    error_samples: Mutex<Vec<String>>,
}

impl Run {
    /// A run that can send up to `capacity` messages with bodies of `body_bytes`.
    pub fn new(capacity: usize, body_bytes: usize) -> Arc<Run> {
        Run::with_nodes(capacity, body_bytes, 1)
    }

    /// A run over connections spread across `nodes` servers ([`ConnPlan::node`]); with more than
    /// one, deliveries are also accounted per node and per path (same node or cross node).
    pub fn with_nodes(capacity: usize, body_bytes: usize, nodes: usize) -> Arc<Run> {
        let nonce = format!("b{:x}", rand::random::<u32>());
        Arc::new(Run {
            ledger: Ledger::new(capacity),
            counters: Counters::default(),
            latency: ShardedHistogram::new(SHARDS),
            ack_latency: ShardedHistogram::new(SHARDS),
            nodes: (nodes > 1).then(|| NodeSplit::new(nodes)),
            sent: AtomicU64::new(0),
            window_from_ns: AtomicU64::new(u64::MAX),
            window_until_ns: AtomicU64::new(u64::MAX),
            stop: CancellationToken::new(),
            // Bodies are `body_bytes` long (at least the marker): the marker, then this.
            padding: "x".repeat(body_bytes),
            nonce,
            closes: Mutex::new(BTreeMap::new()),
            error_samples: Mutex::new(Vec::new()),
        })
    }

    /// Messages sent from `warmup` to `warmup + duration` from now count for latency.
    pub fn open_window(&self, warmup: Duration, duration: Duration) {
        let from = self.ledger.now_ns() + nanos(warmup);
        self.window_from_ns.store(from, Ordering::Relaxed);
        self.window_until_ns
            .store(from + nanos(duration), Ordering::Relaxed);
    }

    fn in_window(&self, sent_ns: u64) -> bool {
        sent_ns >= self.window_from_ns.load(Ordering::Relaxed)
            && sent_ns < self.window_until_ns.load(Ordering::Relaxed)
    }

    /// How many connections ended, by close code (`reset` when no close frame came).
    pub fn close_codes(&self) -> BTreeMap<String, u64> {
        self.closes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn error_samples(&self) -> Vec<String> {
        self.error_samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn disconnected(&self, code: String) {
        if self.stop.is_cancelled() {
            return;
        }
        self.counters.disconnects.fetch_add(1, Ordering::Relaxed);
        *self
            .closes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(code)
            .or_default() += 1;
    }

    /// The `send` frame of message `index`, sent by a connection on node `node`.
    fn send_frame(&self, index: u32, conversation: &str, node: u8) -> String {
        let now = self.ledger.now_ns();
        if let Some(slot) = self.ledger.slot(index as usize) {
            slot.node.store(node, Ordering::Relaxed);
            slot.sent_ns.store(now, Ordering::Release);
        }
        let mut frame = format!(
            r#"{{"type":"send","ref":"{index}","conversation":"{conversation}","client_msg_id":"{}-{index}","body":"m{index}.{now}."#,
            self.nonce
        );
        let marker = format!("m{index}.{now}.").len();
        frame.push_str(&self.padding[..self.padding.len().saturating_sub(marker)]);
        frame.push_str(r#""}"#);
        frame
    }

    /// Accounts for one received text frame of connection `conn` (on node `node`).
    fn on_text(&self, conn: usize, node: u8, text: &str, last_seq: &mut u64) {
        if text.starts_with(prefix::MESSAGE) {
            self.on_message(conn, node, text, last_seq);
        } else if text.starts_with(prefix::ACK) {
            let Some(slot) = reference(text).and_then(|i| self.ledger.slot(i)) else {
                return;
            };
            slot.state.store(slot_state::ACKED, Ordering::Release);
            self.counters.acked.fetch_add(1, Ordering::Relaxed);
            let sent_ns = slot.sent_ns.load(Ordering::Acquire);
            if self.in_window(sent_ns) {
                let elapsed = self.ledger.now_ns().saturating_sub(sent_ns);
                self.ack_latency.record(conn, Duration::from_nanos(elapsed));
            }
        } else if text.starts_with(prefix::ERROR) {
            self.counters.errors.fetch_add(1, Ordering::Relaxed);
            if let Some(slot) = reference(text).and_then(|i| self.ledger.slot(i)) {
                slot.state.store(slot_state::FAILED, Ordering::Release);
            }
            let mut samples = self.error_samples.lock().unwrap_or_else(|e| e.into_inner());
            if samples.len() < ERROR_SAMPLES {
                samples.push(text.to_owned());
            }
        }
    }

    fn on_message(&self, conn: usize, node: u8, text: &str, last_seq: &mut u64) {
        let Some((index, sent_ns)) = body_marker(text) else {
            self.counters.foreign.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let Some(slot) = self.ledger.slot(index) else {
            self.counters.foreign.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let now = self.ledger.now_ns();
        if let Some(seq) = number_after(text, r#""seq":"#) {
            if seq <= *last_seq {
                self.counters.out_of_order.fetch_add(1, Ordering::Relaxed);
            }
            *last_seq = seq;
        }
        slot.deliveries.fetch_add(1, Ordering::AcqRel);
        self.counters.delivered.fetch_add(1, Ordering::Relaxed);
        let in_window = self.in_window(sent_ns);
        let latency = Duration::from_nanos(now.saturating_sub(sent_ns));
        if in_window {
            self.latency.record(conn, latency);
        }
        if let Some(split) = &self.nodes {
            // The sender stored its node before the frame left, so it is visible here.
            let cross = slot.node.load(Ordering::Relaxed) != node;
            split.record(conn, node, cross, in_window.then_some(latency));
        }
    }
}

/// Deliveries of a run over several nodes, by receiving node and by path.
pub struct NodeSplit {
    /// Deliveries received by connections of each node (any phase).
    pub delivered: Vec<AtomicU64>,
    /// Deliveries whose sender and receiver were on the same node (any phase).
    pub same_node: AtomicU64,
    /// Deliveries that crossed from one node to another (any phase).
    pub cross_node: AtomicU64,
    /// Delivery latency of same-node deliveries of messages sent inside the window.
    pub same_node_latency: ShardedHistogram,
    /// Delivery latency of cross-node deliveries of messages sent inside the window.
    pub cross_node_latency: ShardedHistogram,
}

impl NodeSplit {
    fn new(nodes: usize) -> NodeSplit {
        NodeSplit {
            delivered: (0..nodes).map(|_| AtomicU64::new(0)).collect(),
            same_node: AtomicU64::new(0),
            cross_node: AtomicU64::new(0),
            same_node_latency: ShardedHistogram::new(SHARDS),
            cross_node_latency: ShardedHistogram::new(SHARDS),
        }
    }

    fn record(&self, conn: usize, node: u8, cross: bool, latency: Option<Duration>) {
        if let Some(delivered) = self.delivered.get(usize::from(node)) {
            delivered.fetch_add(1, Ordering::Relaxed);
        }
        let (count, histogram) = if cross {
            (&self.cross_node, &self.cross_node_latency)
        } else {
            (&self.same_node, &self.same_node_latency)
        };
        count.fetch_add(1, Ordering::Relaxed);
        if let Some(latency) = latency {
            histogram.record(conn, latency);
        }
    }

    /// Deliveries received so far by each node's connections.
    pub fn delivered_by_node(&self) -> Vec<u64> {
        self.delivered.iter().map(Counters::get).collect()
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// The decimal number right after `key` in `text`.
fn number_after(text: &str, key: &str) -> Option<u64> {
    let start = text.find(key)? + key.len();
    let digits = text[start..].bytes().take_while(u8::is_ascii_digit).count();
    text[start..start + digits].parse().ok()
}

/// The `ref` of a reply, which the generator sets to the message's ledger index.
fn reference(text: &str) -> Option<usize> {
    number_after(text, r#""ref":""#).and_then(|n| usize::try_from(n).ok())
}

/// The ledger index and send time in a `message` event's body (`m<index>.<sent_ns>.…`).
fn body_marker(text: &str) -> Option<(usize, u64)> {
    let key = r#""body":"m"#;
    let start = text.find(key)? + key.len();
    let mut parts = text[start..].splitn(3, '.');
    let index = parts.next()?.parse().ok()?;
    let sent_ns = parts.next()?.parse().ok()?;
    Some((index, sent_ns))
}

/// How to send: `rate` messages per second in total, for `warmup + duration`.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub rate: f64,
    pub warmup: Duration,
    pub duration: Duration,
}

impl Schedule {
    pub fn total(&self) -> Duration {
        self.warmup + self.duration
    }

    /// Ledger slots needed for the whole schedule.
    pub fn capacity(&self) -> usize {
        (self.rate * self.total().as_secs_f64()).ceil() as usize + 16
    }
}

/// Sends on `schedule` from `senders`, choosing each message's sender with `pick` (given the
/// number of senders). Each message's conversation is its sender's. Returns when the schedule
/// is over; the senders' queues are then closed.
pub async fn pace(
    run: &Run,
    schedule: Schedule,
    senders: Vec<(mpsc::Sender<Outgoing>, u32)>,
    mut pick: impl FnMut(usize) -> usize,
) {
    if senders.is_empty() {
        return;
    }
    let started = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut next = 0usize;
    loop {
        tick.tick().await;
        let elapsed = started.elapsed();
        if elapsed >= schedule.total() {
            break;
        }
        let due = ((schedule.rate * elapsed.as_secs_f64()) as usize).min(run.ledger.capacity());
        while next < due {
            let (queue, conversation) = &senders[pick(senders.len())];
            let Some(slot) = run.ledger.slot(next) else {
                break;
            };
            slot.conversation.store(*conversation, Ordering::Relaxed);
            slot.state.store(slot_state::SENT, Ordering::Release);
            let index = u32::try_from(next).expect("ledger fits u32");
            if queue.try_send(Outgoing { index }).is_err() {
                slot.state.store(slot_state::SKIPPED, Ordering::Release);
            } else {
                run.sent.fetch_add(1, Ordering::Relaxed);
            }
            next += 1;
        }
    }
}

/// Waits until every acked message reached all its receivers and every send was answered, or
/// `limit` passed. Returns how long it waited.
pub async fn drain(run: &Run, fanout: &[u32], limit: Duration) -> Duration {
    let started = Instant::now();
    while started.elapsed() < limit && !run.ledger.settled(fanout) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}

/// Prints a progress line to stderr every second until `stop` is cancelled.
pub fn spawn_progress(run: Arc<Run>, label: &'static str, stop: CancellationToken) {
    tokio::spawn(async move {
        let started = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        let (mut last_delivered, mut last_acked) = (0, 0);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let delivered = Counters::get(&run.counters.delivered);
            let acked = Counters::get(&run.counters.acked);
            eprintln!(
                "[{:>6.1}s] {label}: sent {} acked {} (+{}/s) delivered {} (+{}/s) errors {} disconnects {}",
                started.elapsed().as_secs_f64(),
                run.sent.load(Ordering::Relaxed),
                acked,
                acked - last_acked,
                delivered,
                delivered - last_delivered,
                Counters::get(&run.counters.errors),
                Counters::get(&run.counters.disconnects),
            );
            (last_delivered, last_acked) = (delivered, acked);
        }
    });
}

#[cfg(test)]
mod tests;
