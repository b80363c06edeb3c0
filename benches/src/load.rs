//! Live connections and the traffic they carry.
//!
//! - [`open_fleet`] opens every planned connection (bounded concurrency), waits for `welcome`
//!   and `joined`, and leaves one task per connection running [`drive`].
//! - [`pace`] sends at a fixed total rate (open loop: the schedule does not wait for acks),
//!   handing each message to its sender's task through a small bounded queue.
//! - A message's body is `m<index>.<sent_ns>.<padding>`: receivers find its ledger slot and its
//!   send time there, so latency is measured end to end on one clock (the generator's).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::conn::{self, Endpoint, OPEN_TIMEOUT, Ws, prefix};
use crate::stats::{
    Counters, Ledger, Percentiles, ShardedHistogram, new_histogram, record, slot_state,
};

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

/// One connection to open.
#[derive(Debug, Clone, Copy)]
pub struct ConnPlan {
    /// Index of the user whose token it uses.
    pub user: usize,
    /// Index of its conversation (joined, and sent to).
    pub conversation: usize,
    /// Joins the conversation (receives its events).
    pub join: bool,
    /// Sends messages when the pacer picks it.
    pub sends: bool,
    /// Index of the server it connects to (0 unless the scenario spans several nodes).
    pub node: u8,
}

/// How opening the connections went.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ConnectReport {
    pub target: usize,
    pub ok: usize,
    pub failed: usize,
    /// From the first connect to the last `welcome` (authenticated and established).
    pub authenticated_secs: f64,
    /// From the first connect to the last `joined`.
    pub joined_secs: f64,
    /// Authenticated connections per second over `authenticated_secs`.
    pub connect_rate_per_sec: f64,
    /// TCP connect + upgrade + `welcome`, per connection.
    pub handshake: Percentiles,
    /// `join` to `joined`, per connection.
    pub join: Percentiles,
    pub concurrency: usize,
    pub error_samples: Vec<String>,
    /// Server CPU time over the connecting phase per connection opened (`idle` only: other
    /// scenarios open their connections beside a running load).
    pub server_cpu_us_per_connect: Option<f64>,
    /// The generator's own CPU time over the connecting phase, per connection opened.
    pub client_cpu_us_per_connect: Option<f64>,
}

/// The open connections of a run.
pub struct Fleet {
    pub tasks: JoinSet<()>,
    /// Queues of the sending connections, with each one's conversation index.
    pub senders: Vec<(mpsc::Sender<Outgoing>, u32)>,
    pub report: ConnectReport,
}

/// How the opening connections went so far. Each connection task records its own outcome under
/// the lock (held for a moment, never across an await) and only the last one wakes
/// [`open_fleet`]: a channel message per connection woke the scenario's task 10,000 times, a
/// futex call and an inter-processor interrupt each, CPU the generator took from the server.
struct Tally {
    report: ConnectReport,
    handshakes: Histogram<u64>,
    joins: Histogram<u64>,
    last_welcome: Instant,
    last_join: Instant,
}

impl Tally {
    fn opened(&mut self, begun: Instant, welcomed: Instant, joined: Instant) {
        self.report.ok += 1;
        record(&mut self.handshakes, welcomed - begun);
        record(&mut self.joins, joined - welcomed);
        self.last_welcome = self.last_welcome.max(welcomed);
        self.last_join = self.last_join.max(joined);
    }

    fn failed(&mut self, reason: String) {
        self.report.failed += 1;
        if self.report.error_samples.len() < ERROR_SAMPLES {
            self.report.error_samples.push(reason);
        }
    }
}

/// The shared [`Tally`] and the count of connections that are done (opened or failed).
struct Opening {
    tally: Mutex<Tally>,
    done: AtomicUsize,
    total: usize,
    all_done: Notify,
}

impl Opening {
    /// Nothing recorded yet of `total` connections, opened from `started`.
    fn new(total: usize, concurrency: usize, started: Instant) -> Opening {
        Opening {
            tally: Mutex::new(Tally {
                report: ConnectReport {
                    target: total,
                    concurrency,
                    ..ConnectReport::default()
                },
                handshakes: new_histogram(),
                joins: new_histogram(),
                last_welcome: started,
                last_join: started,
            }),
            done: AtomicUsize::new(0),
            total,
            all_done: Notify::new(),
        }
    }

    fn record(&self, outcome: impl FnOnce(&mut Tally)) {
        outcome(&mut self.tally.lock().unwrap_or_else(|e| e.into_inner()));
        if self.done.fetch_add(1, Ordering::AcqRel) + 1 == self.total {
            // Stored as a permit when nobody waits yet: the wake-up cannot be missed.
            self.all_done.notify_one();
        }
    }
}

/// One connection's part of the [`Opening`]: recorded exactly once, as a failure if its task
/// ends (or panics) before it said how the opening went, so that [`open_fleet`] never waits for
/// an outcome that cannot come.
struct Outcome {
    opening: Option<Arc<Opening>>,
}

impl Outcome {
    fn record(mut self, outcome: impl FnOnce(&mut Tally)) {
        if let Some(opening) = self.opening.take() {
            opening.record(outcome);
        }
    }
}

impl Drop for Outcome {
    fn drop(&mut self) {
        if let Some(opening) = self.opening.take() {
            opening.record(|tally| tally.failed("the connection's task ended early".to_owned()));
        }
    }
}

/// What [`open_fleet`] needs besides the plans.
pub struct FleetSpec {
    /// The servers, by node index ([`ConnPlan::node`]).
    pub endpoints: Vec<Arc<Endpoint>>,
    /// Tokens by user index.
    pub tokens: Arc<Vec<String>>,
    /// Conversation ids by index.
    pub conversations: Arc<Vec<Arc<str>>>,
    pub concurrency: usize,
}

/// Opens every planned connection, at most `concurrency` at a time, and returns once each is
/// established and joined (or has failed). The connections then live on in `tasks` until
/// `run.stop` is cancelled.
pub async fn open_fleet(spec: &FleetSpec, plans: &[ConnPlan], run: &Arc<Run>) -> Fleet {
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(spec.concurrency.max(1)));
    let opening = Arc::new(Opening::new(plans.len(), spec.concurrency, started));
    let mut tasks = JoinSet::new();
    let mut senders = Vec::new();
    for (index, plan) in plans.iter().copied().enumerate() {
        let outgoing = plan.sends.then(|| {
            let (tx, rx) = mpsc::channel(SEND_QUEUE);
            senders.push((tx, plan.conversation as u32));
            rx
        });
        let gate = gate.clone();
        let outcome = Outcome {
            opening: Some(opening.clone()),
        };
        let endpoint = spec.endpoints[usize::from(plan.node) % spec.endpoints.len()].clone();
        let token = spec.tokens[plan.user].clone();
        let conversation = spec.conversations[plan.conversation].clone();
        let run = run.clone();
        tasks.spawn(async move {
            let Ok(permit) = gate.acquire_owned().await else {
                return;
            };
            let begun = Instant::now();
            let opened = tokio::time::timeout(OPEN_TIMEOUT, async {
                let mut ws = endpoint.connect(index, &token).await?;
                conn::expect(&mut ws, prefix::WELCOME).await?;
                let welcomed = Instant::now();
                if plan.join {
                    conn::join(&mut ws, &conversation).await?;
                }
                anyhow::Ok((ws, welcomed))
            })
            .await;
            drop(permit);
            let ws = match opened {
                Ok(Ok((ws, welcomed))) => {
                    let joined = Instant::now();
                    outcome.record(|tally| tally.opened(begun, welcomed, joined));
                    ws
                }
                Ok(Err(err)) => {
                    outcome.record(|tally| tally.failed(format!("{err:#}")));
                    return;
                }
                Err(_) => {
                    outcome.record(|tally| tally.failed("open timed out".to_owned()));
                    return;
                }
            };
            drive(ws, index, plan.node, conversation, outgoing, run).await;
        });
    }
    if !plans.is_empty() {
        let all_done = opening.all_done.notified();
        tokio::pin!(all_done);
        let mut progress = tokio::time::interval_at(
            tokio::time::Instant::now() + Duration::from_secs(1),
            Duration::from_secs(1),
        );
        loop {
            tokio::select! {
                _ = &mut all_done => break,
                _ = progress.tick() => {
                    let (ok, failed) = {
                        let tally = opening.tally.lock().unwrap_or_else(|e| e.into_inner());
                        (tally.report.ok, tally.report.failed)
                    };
                    eprintln!(
                        "[{:>6.1}s] connecting: {ok} ok, {failed} failed of {}",
                        started.elapsed().as_secs_f64(),
                        plans.len()
                    );
                }
            }
        }
    }
    let tally = opening.tally.lock().unwrap_or_else(|e| e.into_inner());
    let mut report = tally.report.clone();
    report.authenticated_secs = (tally.last_welcome - started).as_secs_f64();
    report.joined_secs = (tally.last_join - started).as_secs_f64();
    report.connect_rate_per_sec = if report.authenticated_secs > 0.0 {
        report.ok as f64 / report.authenticated_secs
    } else {
        0.0
    };
    report.handshake = Percentiles::of(&tally.handshakes);
    report.join = Percentiles::of(&tally.joins);
    drop(tally);
    Fleet {
        tasks,
        senders,
        report,
    }
}

async fn next_outgoing(outgoing: &mut Option<mpsc::Receiver<Outgoing>>) -> Option<Outgoing> {
    match outgoing {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// One connection's life after it joined: sends what the pacer hands it, accounts for every
/// frame it receives, and closes when the run stops.
async fn drive(
    mut ws: Ws,
    index: usize,
    node: u8,
    conversation: Arc<str>,
    mut outgoing: Option<mpsc::Receiver<Outgoing>>,
    run: Arc<Run>,
) {
    let mut last_seq = 0u64;
    // Created once: a fresh `cancelled()` per iteration would register and unregister a waiter
    // (two lock round trips) for every frame received.
    let stopped = run.stop.cancelled();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            biased;
            _ = &mut stopped => {
                conn::close(ws).await;
                return;
            }
            next = next_outgoing(&mut outgoing) => match next {
                Some(out) => {
                    let frame = run.send_frame(out.index, &conversation, node);
                    if ws.send(Message::Text(frame.into())).await.is_err() {
                        run.disconnected("reset".to_owned());
                        return;
                    }
                }
                None => outgoing = None,
            },
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => run.on_text(index, node, &text, &mut last_seq),
                Some(Ok(Message::Close(frame))) => {
                    let code = frame.map_or_else(|| "none".to_owned(), |f| u16::from(f.code).to_string());
                    run.disconnected(code);
                    return;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    run.disconnected("reset".to_owned());
                    return;
                }
            },
        }
    }
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

/// Stops every connection task and waits (bounded) for them to close.
pub async fn close_fleet(run: &Run, mut tasks: JoinSet<()>) {
    run.stop.cancel();
    let closed = tokio::time::timeout(Duration::from_secs(15), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if closed.is_err() {
        tasks.abort_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_opening_ends_even_when_a_task_gives_up_without_an_outcome() {
        let started = Instant::now();
        let opening = Arc::new(Opening::new(2, 1, started));
        let outcome = |opening: &Arc<Opening>| Outcome {
            opening: Some(opening.clone()),
        };
        outcome(&opening).record(|tally| tally.opened(started, Instant::now(), Instant::now()));
        drop(outcome(&opening));
        tokio::time::timeout(Duration::from_secs(5), opening.all_done.notified())
            .await
            .expect("the last outcome wakes the fleet");
        let tally = opening.tally.lock().expect("tally");
        assert_eq!((tally.report.ok, tally.report.failed), (1, 1));
        assert_eq!(tally.report.error_samples.len(), 1);
    }

    #[test]
    fn frames_are_parsed_without_a_json_parser() {
        let event = r#"{"type":"message","conversation":"c","id":"i","seq":42,"author":"u1","body":"m17.123456.xxxx","ts":1,"client_msg_id":"b1-17"}"#;
        assert_eq!(body_marker(event), Some((17, 123_456)));
        assert_eq!(number_after(event, r#""seq":"#), Some(42));
        let ack = r#"{"type":"ack","ref":"17","conversation":"c","client_msg_id":"b1-17","id":"i","seq":42,"ts":1}"#;
        assert_eq!(reference(ack), Some(17));
        assert_eq!(body_marker(r#"{"type":"message","body":"hello"}"#), None);
    }

    #[test]
    fn deliveries_are_accounted_per_slot() {
        let run = Run::new(4, 40);
        run.open_window(Duration::ZERO, Duration::from_secs(60));
        let frame = run.send_frame(2, "c", 0);
        assert!(frame.contains(r#""ref":"2""#), "{frame}");
        let body_start = frame.find(r#""body":""#).expect("body") + 8;
        let body = &frame[body_start..frame.len() - 2];
        assert_eq!(body.len(), 40, "{body}");
        let event = format!(r#"{{"type":"message","seq":5,"body":"{body}"}}"#);
        let mut last_seq = 0;
        run.on_text(0, 0, &event, &mut last_seq);
        run.on_text(1, 0, &event, &mut last_seq);
        assert_eq!(last_seq, 5);
        assert_eq!(Counters::get(&run.counters.out_of_order), 1);
        let slot = run.ledger.slot(2).expect("slot");
        assert_eq!(slot.deliveries.load(Ordering::Relaxed), 2);
        run.on_text(0, 0, r#"{"type":"ack","ref":"2","seq":5}"#, &mut last_seq);
        assert_eq!(slot.state.load(Ordering::Relaxed), slot_state::ACKED);
        assert_eq!(run.latency.merged().len(), 2);
        assert_eq!(run.ack_latency.merged().len(), 1);
        assert!(run.nodes.is_none());
    }

    #[test]
    fn deliveries_are_split_by_node() {
        let run = Run::with_nodes(4, 40, 2);
        run.open_window(Duration::ZERO, Duration::from_secs(60));
        let frame = run.send_frame(1, "c", 1);
        let body_start = frame.find(r#""body":""#).expect("body") + 8;
        let body = &frame[body_start..frame.len() - 2];
        let event = format!(r#"{{"type":"message","seq":1,"body":"{body}"}}"#);
        // Receivers on node 0, 1, 0: two cross-node deliveries, one same-node.
        for (conn, node) in [(0, 0), (1, 1), (2, 0)] {
            run.on_text(conn, node, &event, &mut 0);
        }
        let split = run.nodes.as_ref().expect("split");
        assert_eq!(split.delivered_by_node(), vec![2, 1]);
        assert_eq!(Counters::get(&split.cross_node), 2);
        assert_eq!(Counters::get(&split.same_node), 1);
        assert_eq!(split.cross_node_latency.merged().len(), 2);
        assert_eq!(split.same_node_latency.merged().len(), 1);
        assert_eq!(run.latency.merged().len(), 3);
    }
}
