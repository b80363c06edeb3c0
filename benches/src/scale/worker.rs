//! A scale worker: the `confab-bench scale-worker` process the coordinator starts, one per
//! ~18,000 connections (a process may hold at most 20,000 open files here). It reads its
//! [`WorkerPlan`] and then one [`Command`] per line from stdin and answers each with one
//! [`Reply`] line on stdout; everything else it says goes to stderr.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::session::{Client, number_after};
use super::wire::{
    Buckets, ChatOutcome, Command, ConnectOutcome, Reply, Sent, SettleOutcome, StormOutcome,
    WorkerPlan,
};
use crate::conn::Endpoint;
use crate::scenario::chat::node_of;
use crate::stats::ShardedHistogram;
use crate::tokens::Identities;

/// Histogram shards per worker.
const SHARDS: usize = 8;
/// Error frames kept verbatim.
const SAMPLES: usize = 5;
/// Messages queued per client before the pacer skips one.
const CLIENT_QUEUE: usize = 8;
/// How often waits look at the counters.
const POLL: Duration = Duration::from_millis(50);

/// Counts over the worker's whole life (phases report differences).
#[derive(Default)]
pub struct Counters {
    pub sent: AtomicU64,
    pub skipped: AtomicU64,
    pub acked: AtomicU64,
    pub errors: AtomicU64,
    pub delivered: AtomicU64,
    pub duplicates: AtomicU64,
    pub gaps: AtomicU64,
    pub unexpected: AtomicU64,
    pub not_recovered: AtomicU64,
    pub failed_attempts: AtomicU64,
    pub before_joined: AtomicU64,
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// Nanoseconds since the Unix epoch: the one clock all workers share (one host), so a
/// message's send time in its body is comparable wherever it is received.
fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// What every client of the worker shares.
pub struct Shared {
    pub plan: WorkerPlan,
    pub conversations: Vec<String>,
    pub endpoints: Vec<Endpoint>,
    pub ids: Identities,
    /// Connections being opened at once.
    pub gate: Semaphore,
    /// Bumped by each storm: every client drops its connection.
    pub storms: watch::Sender<u64>,
    pub stop: CancellationToken,
    /// Each client's last seq seen in its conversation.
    pub last_seq: Vec<AtomicU64>,
    /// Whether each client joined (the others failed to connect and are left out of the seq
    /// checks).
    joined: Vec<AtomicBool>,
    /// The highest acked seq per conversation (by index).
    acked_head: Vec<AtomicU64>,
    pub counters: Counters,
    latency: ShardedHistogram,
    ack_latency: ShardedHistogram,
    open_latency: ShardedHistogram,
    resume_latency: ShardedHistogram,
    /// Messages sent in `[from, until)` (Unix ns) count for latency.
    window: (AtomicU64, AtomicU64),
    jitter_ms: AtomicU64,
    opened: AtomicUsize,
    failed: AtomicUsize,
    resumed: AtomicUsize,
    /// When the last client opened or resumed, in ns since `epoch`.
    last_done_ns: AtomicU64,
    epoch: Instant,
    samples: Mutex<Vec<String>>,
    padding: String,
    nonce: String,
    messages: AtomicU64,
}

impl Shared {
    fn new(plan: WorkerPlan) -> anyhow::Result<Shared> {
        let sources: Vec<std::net::IpAddr> = plan.sources.iter().map(|&a| a.into()).collect();
        let endpoints = plan
            .nodes
            .iter()
            .map(|url| Endpoint::with_sources(url, sources.clone()))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let ids = Identities::from_secret(&plan.secret, &plan.tenant)?;
        let conversations = plan.conversations.clone();
        Ok(Shared {
            endpoints,
            ids,
            gate: Semaphore::new(plan.concurrency.max(1)),
            storms: watch::Sender::new(0),
            stop: CancellationToken::new(),
            last_seq: (0..plan.count).map(|_| AtomicU64::new(0)).collect(),
            joined: (0..plan.count).map(|_| AtomicBool::new(false)).collect(),
            acked_head: (0..conversations.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            conversations,
            counters: Counters::default(),
            latency: ShardedHistogram::new(SHARDS),
            ack_latency: ShardedHistogram::new(SHARDS),
            open_latency: ShardedHistogram::new(SHARDS),
            resume_latency: ShardedHistogram::new(SHARDS),
            window: (AtomicU64::new(u64::MAX), AtomicU64::new(u64::MAX)),
            jitter_ms: AtomicU64::new(0),
            opened: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            resumed: AtomicUsize::new(0),
            last_done_ns: AtomicU64::new(0),
            epoch: Instant::now(),
            samples: Mutex::new(Vec::new()),
            padding: "x".repeat(plan.body_bytes),
            nonce: format!("s{:x}", rand::random::<u32>()),
            messages: AtomicU64::new(0),
            plan,
        })
    }

    /// The node of global connection `global`: each conversation's members spread over the
    /// nodes.
    pub fn node_of(&self, global: usize) -> u8 {
        let nodes = u8::try_from(self.endpoints.len()).unwrap_or(u8::MAX);
        node_of(global, self.conversations.len(), nodes)
    }

    fn sample(&self, text: String) {
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if samples.len() < SAMPLES {
            samples.push(text);
        }
    }

    fn take_samples(&self) -> Vec<String> {
        std::mem::take(&mut *self.samples.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn done_now(&self) {
        let ns = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_done_ns.fetch_max(ns, Ordering::Relaxed);
    }

    pub fn opened(&self, local: usize, took: Duration) {
        self.joined[local].store(true, Ordering::Release);
        self.open_latency
            .record(self.opened.load(Ordering::Relaxed), took);
        self.done_now();
        self.opened.fetch_add(1, Ordering::Release);
    }

    pub fn connect_failed(&self, reason: String) {
        self.sample(reason);
        self.failed.fetch_add(1, Ordering::Release);
    }

    /// A client rejoined after a storm's drop `took` ago.
    pub fn resumed(&self, took: Duration) {
        self.resume_latency
            .record(self.resumed.load(Ordering::Relaxed), took);
        self.done_now();
        self.resumed.fetch_add(1, Ordering::Release);
    }

    pub fn reconnect_failed(&self, reason: String) {
        self.counters
            .failed_attempts
            .fetch_add(1, Ordering::Relaxed);
        self.sample(reason);
    }

    /// A random pause of up to the storm's jitter.
    pub fn jitter(&self) -> Duration {
        let jitter = self.jitter_ms.load(Ordering::Relaxed);
        Duration::from_millis(rand::random_range(0..=jitter))
    }

    /// A `send` frame from client `global` into conversation `conversation`: its `ref` and its
    /// body both carry the send time.
    pub fn send_frame(&self, global: usize, conversation: usize) -> String {
        let now = unix_ns();
        let n = self.messages.fetch_add(1, Ordering::Relaxed);
        format!(
            r#"{{"type":"send","ref":"{now}","conversation":"{}","client_msg_id":"{}-{global}-{n}","body":"t{now}.{}"}}"#,
            self.conversations[conversation], self.nonce, self.padding
        )
    }

    fn in_window(&self, sent_ns: u64) -> bool {
        sent_ns >= self.window.0.load(Ordering::Relaxed)
            && sent_ns < self.window.1.load(Ordering::Relaxed)
    }

    /// A `message` with `seq` reached client `local`, whose last seq was `previous`.
    pub fn on_message(&self, local: usize, seq: u64, previous: u64, text: &str) {
        let counters = &self.counters;
        counters.delivered.fetch_add(1, Ordering::Relaxed);
        if seq <= previous {
            counters.duplicates.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if seq > previous + 1 {
            counters
                .gaps
                .fetch_add(seq - previous - 1, Ordering::Relaxed);
        }
        if let Some(sent_ns) = number_after(text, r#""body":"t"#)
            && self.in_window(sent_ns)
        {
            let took = Duration::from_nanos(unix_ns().saturating_sub(sent_ns));
            self.latency.record(local, took);
        }
    }

    pub fn on_ack(&self, local: usize, conversation: usize, text: &str) {
        self.counters.acked.fetch_add(1, Ordering::Relaxed);
        if let Some(seq) = number_after(text, r#""seq":"#) {
            self.acked_head[conversation].fetch_max(seq, Ordering::Relaxed);
        }
        if let Some(sent_ns) = number_after(text, r#""ref":""#)
            && self.in_window(sent_ns)
        {
            let took = Duration::from_nanos(unix_ns().saturating_sub(sent_ns));
            self.ack_latency.record(local, took);
        }
    }

    pub fn on_error(&self, text: &str) {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        self.sample(text.to_owned());
    }

    /// The last seq of each client that joined, by local index.
    fn joined_seqs(&self) -> impl Iterator<Item = (usize, &AtomicU64)> {
        self.last_seq
            .iter()
            .enumerate()
            .filter(|(local, _)| self.joined[*local].load(Ordering::Acquire))
    }

    fn conversation_of(&self, local: usize) -> usize {
        (self.plan.first + local) % self.conversations.len()
    }
}

/// The worker's clients and the pacer's queues to them.
struct Worker {
    shared: Arc<Shared>,
    queues: Vec<mpsc::Sender<()>>,
    tasks: JoinSet<()>,
}

/// Runs the worker: the plan, then commands until `exit` or the end of stdin.
pub async fn run() -> anyhow::Result<()> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let plan_line = lines.next_line().await?.context("no plan on stdin")?;
    let plan: WorkerPlan = serde_json::from_str(&plan_line).context("malformed plan")?;
    let mut worker = Worker {
        shared: Arc::new(Shared::new(plan)?),
        queues: Vec::new(),
        tasks: JoinSet::new(),
    };
    let mut stdout = tokio::io::stdout();
    while let Some(line) = lines.next_line().await? {
        let command: Command = serde_json::from_str(&line).context("malformed command")?;
        if matches!(command, Command::Exit) {
            break;
        }
        let reply = worker
            .handle(command)
            .await
            .unwrap_or_else(|err| Reply::Failed {
                error: format!("{err:#}"),
            });
        let mut text = serde_json::to_string(&reply)?;
        text.push('\n');
        stdout.write_all(text.as_bytes()).await?;
        stdout.flush().await?;
    }
    worker.exit().await;
    Ok(())
}

impl Worker {
    async fn handle(&mut self, command: Command) -> anyhow::Result<Reply> {
        Ok(match command {
            Command::Connect => Reply::Connected(self.connect().await),
            Command::Chat {
                rate,
                warmup_secs,
                secs,
                drain_secs,
            } => Reply::Chat(self.chat(rate, warmup_secs, secs, drain_secs).await),
            Command::Storm {
                jitter_ms,
                rate,
                timeout_secs,
                drain_secs,
            } => Reply::Storm(self.storm(jitter_ms, rate, timeout_secs, drain_secs).await),
            Command::Heads => Reply::Heads {
                heads: self.heads(),
            },
            Command::Settle { heads, wait_secs } => {
                Reply::Settled(self.settle(&heads, wait_secs).await)
            }
            Command::Exit => anyhow::bail!("exit is handled by the command loop"),
        })
    }

    /// Starts every client and waits until each has joined or failed.
    async fn connect(&mut self) -> ConnectOutcome {
        let shared = self.shared.clone();
        let started = shared.epoch.elapsed();
        for local in 0..shared.plan.count {
            let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
            self.queues.push(tx);
            let client = Client {
                shared: shared.clone(),
                local,
                outgoing: rx,
            };
            self.tasks.spawn(client.live());
        }
        let total = shared.plan.count;
        while shared.opened.load(Ordering::Acquire) + shared.failed.load(Ordering::Acquire) < total
        {
            tokio::time::sleep(POLL).await;
        }
        let last = Duration::from_nanos(shared.last_done_ns.load(Ordering::Relaxed));
        eprintln!(
            "worker {}: {} joined, {} failed",
            shared.plan.worker,
            shared.opened.load(Ordering::Relaxed),
            shared.failed.load(Ordering::Relaxed)
        );
        ConnectOutcome {
            ok: shared.opened.load(Ordering::Relaxed),
            failed: shared.failed.load(Ordering::Relaxed),
            secs: last.saturating_sub(started).as_secs_f64(),
            open: Buckets::of(&shared.open_latency.merged()),
            error_samples: shared.take_samples(),
        }
    }

    /// Sends at `rate` from random clients until `stop` is cancelled.
    fn spawn_pacer(&self, rate: f64, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        let queues = self.queues.clone();
        let shared = self.shared.clone();
        tokio::spawn(async move {
            if queues.is_empty() || rate <= 0.0 {
                return;
            }
            let started = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut sent = 0u64;
            while !stop.is_cancelled() {
                tick.tick().await;
                let due = (rate * started.elapsed().as_secs_f64()) as u64;
                while sent < due {
                    let queue = &queues[rand::random_range(0..queues.len())];
                    let counter = match queue.try_send(()) {
                        Ok(()) => &shared.counters.sent,
                        Err(_) => &shared.counters.skipped,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    sent += 1;
                }
            }
        })
    }

    /// The counters now, for a phase's differences.
    fn sent_now(&self) -> [u64; 4] {
        let c = &self.shared.counters;
        [get(&c.sent), get(&c.acked), get(&c.errors), get(&c.skipped)]
    }

    /// Waits up to `drain` until every message sent since `before` is acked or refused, and
    /// returns the phase's counts.
    async fn drain(&self, before: [u64; 4], drain: Duration) -> Sent {
        let started = Instant::now();
        loop {
            let now = self.sent_now();
            if now[1] + now[2] >= now[0] || started.elapsed() >= drain {
                return Sent {
                    sent: now[0] - before[0],
                    acked: now[1] - before[1],
                    errors: now[2] - before[2],
                    skipped: now[3] - before[3],
                    error_samples: self.shared.take_samples(),
                };
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn chat(&self, rate: f64, warmup: f64, secs: f64, drain: f64) -> ChatOutcome {
        let shared = &self.shared;
        let before = self.sent_now();
        let delivered = get(&shared.counters.delivered);
        let from = unix_ns() + (warmup * 1e9) as u64;
        shared.window.0.store(from, Ordering::Relaxed);
        shared
            .window
            .1
            .store(from + (secs * 1e9) as u64, Ordering::Relaxed);
        let stop = CancellationToken::new();
        let pacer = self.spawn_pacer(rate, stop.clone());
        tokio::time::sleep(Duration::from_secs_f64(warmup + secs)).await;
        stop.cancel();
        let _ = pacer.await;
        let sent = self.drain(before, Duration::from_secs_f64(drain)).await;
        ChatOutcome {
            sent,
            delivered: get(&shared.counters.delivered) - delivered,
            latency: Buckets::of(&shared.latency.merged()),
            ack_latency: Buckets::of(&shared.ack_latency.merged()),
        }
    }

    async fn storm(&self, jitter_ms: u64, rate: f64, timeout: f64, drain: f64) -> StormOutcome {
        let shared = &self.shared;
        let before = self.sent_now();
        let (failed, not_recovered) = (
            get(&shared.counters.failed_attempts),
            get(&shared.counters.not_recovered),
        );
        let target = shared.opened.load(Ordering::Acquire);
        shared.jitter_ms.store(jitter_ms, Ordering::Relaxed);
        shared.resumed.store(0, Ordering::Release);
        let started = shared.epoch.elapsed();
        shared.storms.send_modify(|storm| *storm += 1);
        let stop = CancellationToken::new();
        let pacer = self.spawn_pacer(rate, stop.clone());
        let deadline = Instant::now() + Duration::from_secs_f64(timeout);
        while shared.resumed.load(Ordering::Acquire) < target && Instant::now() < deadline {
            tokio::time::sleep(POLL).await;
        }
        let last = Duration::from_nanos(shared.last_done_ns.load(Ordering::Relaxed));
        // A second of chat on the resumed connections, then the acks.
        tokio::time::sleep(Duration::from_secs(1)).await;
        stop.cancel();
        let _ = pacer.await;
        let resumed = shared.resumed.load(Ordering::Acquire);
        eprintln!(
            "worker {}: {resumed} of {target} resumed",
            shared.plan.worker
        );
        StormOutcome {
            resumed,
            not_resumed: target.saturating_sub(resumed),
            failed_attempts: get(&shared.counters.failed_attempts) - failed,
            secs_to_all_resumed: last.saturating_sub(started).as_secs_f64(),
            resume: Buckets::of(&shared.resume_latency.merged()),
            not_recovered: get(&shared.counters.not_recovered) - not_recovered,
            sent: self.drain(before, Duration::from_secs_f64(drain)).await,
            error_samples: Vec::new(),
        }
    }

    /// Per conversation: the highest seq acked or seen here.
    fn heads(&self) -> Vec<u64> {
        let shared = &self.shared;
        let mut heads: Vec<u64> = shared.acked_head.iter().map(get).collect();
        for (local, last) in shared.joined_seqs() {
            let head = &mut heads[shared.conversation_of(local)];
            *head = (*head).max(get(last));
        }
        heads
    }

    /// How far the open clients are short of `heads`, after waiting up to `wait_secs` for them
    /// to catch up.
    async fn settle(&self, heads: &[u64], wait_secs: f64) -> SettleOutcome {
        let shared = &self.shared;
        let shortfall = || -> (usize, u64) {
            let mut behind = (0usize, 0u64);
            for (local, last) in shared.joined_seqs() {
                let head = heads
                    .get(shared.conversation_of(local))
                    .copied()
                    .unwrap_or(0);
                let missing = head.saturating_sub(get(last));
                if missing > 0 {
                    behind = (behind.0 + 1, behind.1 + missing);
                }
            }
            behind
        };
        let deadline = Instant::now() + Duration::from_secs_f64(wait_secs);
        while shortfall().0 > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let (behind, missing) = shortfall();
        let c = &shared.counters;
        SettleOutcome {
            behind,
            lost: missing + get(&c.gaps),
            gaps: get(&c.gaps),
            before_joined: get(&c.before_joined),
            duplicates: get(&c.duplicates),
            unexpected_disconnects: get(&c.unexpected),
        }
    }

    async fn exit(mut self) {
        self.shared.stop.cancel();
        self.queues.clear();
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if closed.is_err() {
            self.tasks.abort_all();
        }
    }
}
