//! The end of a run: a human-readable summary, then exactly one JSON line (the last line on
//! stdout), both built from one [`Report`].

use std::collections::BTreeMap;

use serde::Serialize;

use crate::load::{ConnectReport, Run};
use crate::probe::Sockstat;
use crate::stats::{self, CdfPoint, Counters, LedgerTotals, Percentiles};

/// Everything a run measured. Sections that a scenario does not exercise are `null`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: &'static str,
    /// The scenario's parameters, as run.
    pub params: serde_json::Value,
    pub connections: Option<ConnectReport>,
    pub traffic: Option<TrafficReport>,
    pub server: ServerReport,
    pub client: ClientReport,
    pub churn: Option<ChurnReport>,
    pub history: Option<HistoryReport>,
    /// Runs over several nodes: per node and per path (`server` is then node 0's share).
    pub cluster: Option<ClusterReport>,
    pub media: Option<MediaReport>,
    /// `flood`: the chat load alone against beside a flooding user (the flooder is `churn`).
    pub flood: Option<FloodReport>,
    /// `cluster --spawn`: each topology at each rate (the other sections are then `null`).
    pub topologies: Option<Vec<TopologyStep>>,
}

/// One topology of `cluster --spawn` (one node, two on one Redis, two on several shards) at one
/// message rate.
#[derive(Debug, Clone, Serialize)]
pub struct TopologyStep {
    pub topology: String,
    pub nodes: u8,
    /// Redis servers (0: one node, no fan-out).
    pub redis_servers: usize,
    pub target_rate_per_sec: f64,
    pub deliveries_per_sec: f64,
    pub latency: Percentiles,
    /// Cross-node deliveries' latency (two nodes only).
    pub cross_node_latency: Option<Percentiles>,
    pub loss: u64,
    pub duplicates: u64,
    /// Every node's CPU per delivery over the window (sum of nodes).
    pub nodes_cpu_us_per_delivery: Option<f64>,
    /// All redis-servers' CPU (`INFO cpu`: used_cpu_sys + used_cpu_user) over the whole step
    /// (connect, warm-up, window and drain), and per delivered event of the step.
    pub redis_cpu_seconds: Option<f64>,
    pub redis_cpu_us_per_delivery: Option<f64>,
    /// Each redis-server's share of that CPU, in seconds (how even the shards are).
    pub redis_cpu_by_server: Vec<f64>,
}

impl TopologyStep {
    /// Whether the step kept delivery p99 under `limit_ms` without loss.
    pub fn within(&self, limit_ms: f64) -> bool {
        self.loss == 0 && self.latency.count > 0 && self.latency.p99_ms < limit_ms
    }
}

/// Prints the steps of `cluster --spawn` as a table, then each topology's best rate within the
/// p99 limit.
fn print_topologies(steps: &[TopologyStep]) {
    println!(
        "| topology | msg/s | deliveries/s | p50 / p99 ms | cross-node p99 ms | loss | nodes CPU µs/delivery | Redis CPU s (by server) | Redis CPU µs/delivery |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for s in steps {
        let by_server: Vec<String> = s
            .redis_cpu_by_server
            .iter()
            .map(|c| format!("{c:.2}"))
            .collect();
        let redis = if by_server.is_empty() {
            "-".to_owned()
        } else {
            format!(
                "{} ({})",
                opt(s.redis_cpu_seconds, ""),
                by_server.join(" + ")
            )
        };
        println!(
            "| {} | {:.0} | {:.0} | {:.2} / {:.1} | {} | {} | {} | {} | {} |",
            s.topology,
            s.target_rate_per_sec,
            s.deliveries_per_sec,
            s.latency.p50_ms,
            s.latency.p99_ms,
            s.cross_node_latency
                .map_or("-".to_owned(), |l| format!("{:.1}", l.p99_ms)),
            s.loss,
            opt(s.nodes_cpu_us_per_delivery, ""),
            redis,
            s.redis_cpu_us_per_delivery
                .map_or("-".to_owned(), |c| format!("{c:.2}")),
        );
    }
    let mut names: Vec<&str> = steps.iter().map(|s| s.topology.as_str()).collect();
    names.dedup();
    for name in names {
        let best = steps
            .iter()
            .filter(|s| s.topology == name && s.within(TOPOLOGY_P99_LIMIT_MS))
            .max_by(|a, b| a.deliveries_per_sec.total_cmp(&b.deliveries_per_sec));
        match best {
            Some(s) => println!(
                "{name}: {:.0} deliveries/s at p99 {:.1} ms < {TOPOLOGY_P99_LIMIT_MS} ms (at {:.0} msg/s)",
                s.deliveries_per_sec, s.latency.p99_ms, s.target_rate_per_sec
            ),
            None => println!("{name}: no rate kept p99 under {TOPOLOGY_P99_LIMIT_MS} ms"),
        }
    }
}

/// The delivery p99 under which a `cluster --spawn` step counts as sustained.
pub const TOPOLOGY_P99_LIMIT_MS: f64 = 100.0;

/// The chat load's latency alone (phase 1) and beside one flooding user (phase 2, `traffic`).
#[derive(Debug, Clone, Serialize)]
pub struct FloodReport {
    /// Delivery latency of the chat load alone.
    pub baseline_delivery: Percentiles,
    /// Ack latency of the chat load alone.
    pub baseline_ack: Percentiles,
    /// Phase 2's delivery p99 over phase 1's (the goal: at most 2).
    pub delivery_p99_ratio: f64,
    pub ack_p99_ratio: f64,
    /// The server's CPU in phase 1 (phase 2's is `server`).
    pub baseline_server_cpu_cores: Option<f64>,
    /// Connections reading the flooder's conversation.
    pub observers: usize,
    /// Requests the flooder sent per second (typing not counted).
    pub flooder_sent_per_sec: f64,
    /// Requests the server accepted per second (acks and oks).
    pub flooder_accepted_per_sec: f64,
    /// Requests refused (`rate_limited`) or failed.
    pub flooder_refused: u64,
}

/// Media files up and down, against a raw loopback copy of the same bytes. MB are 10^6 bytes.
#[derive(Debug, Clone, Serialize)]
pub struct MediaReport {
    /// Bytes of the large file (`--file-mib`).
    pub file_bytes: u64,
    /// The same bytes written over one loopback TCP connection in 64 KiB writes and discarded:
    /// what this host can move at all, HTTP, hashing and disk aside.
    pub raw_copy: RawCopyReport,
    /// One `POST /v1/media` (multipart, streamed).
    pub single: TransferReport,
    /// `POST /v1/media/uploads`, every chunk, `complete`.
    pub chunked: ChunkedReport,
    /// `GET /v1/media/{id}` of the single upload's file.
    pub download: TransferReport,
    /// The SHA-256 the server computed (the same for both uploads of the file).
    pub sha256: String,
    /// Whether the generated bytes and the download were hashed and checked against it.
    pub sha256_verified: bool,
    /// The `--rss-mib` single upload, first of the run: `server.rss_growth_bytes` is the
    /// server's peak RSS during it minus its RSS before.
    pub rss_upload: TransferReport,
    pub concurrent: ConcurrentReport,
}

/// A raw copy of bytes over loopback TCP.
#[derive(Debug, Clone, Serialize)]
pub struct RawCopyReport {
    pub bytes: u64,
    pub write_bytes: usize,
    pub secs: f64,
    pub mb_per_sec: f64,
}

/// One transfer of a file.
#[derive(Debug, Clone, Serialize)]
pub struct TransferReport {
    /// File bytes moved (the server's count for uploads, the bytes read for downloads).
    pub bytes: u64,
    /// From the first request to the last answer.
    pub secs: f64,
    pub mb_per_sec: f64,
    /// `mb_per_sec` over the raw copy's.
    pub ratio_to_raw: f64,
    pub server: PhaseServerReport,
    /// The generator's CPU time over the transfer.
    pub client_cpu_seconds: Option<f64>,
}

/// The server over one phase.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PhaseServerReport {
    pub cpu_seconds: Option<f64>,
    pub rss_before_bytes: Option<u64>,
    /// The highest RSS sampled (every 50 ms, and at the end).
    pub rss_max_bytes: Option<u64>,
    /// `rss_max_bytes − rss_before_bytes`.
    pub rss_growth_bytes: Option<i64>,
    pub rss_samples: u32,
}

/// A resumable upload.
#[derive(Debug, Clone, Serialize)]
pub struct ChunkedReport {
    #[serde(flatten)]
    pub transfer: TransferReport,
    pub chunk_size: u64,
    pub chunks: u64,
    /// Chunks in flight at once.
    pub concurrency: usize,
    /// Of `secs`: the `complete` call alone (the server assembles and hashes the file).
    pub complete_secs: f64,
}

/// Many single uploads started at once.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ConcurrentReport {
    pub uploads: usize,
    pub bytes_each: u64,
    /// Uploads answered 201 with the size sent.
    pub ok: u64,
    pub failures: u64,
    /// Bytes of the `ok` uploads, as the server counted them.
    pub bytes_stored: u64,
    /// From the first start to the last answer.
    pub secs: f64,
    pub uploads_per_sec: f64,
    pub mb_per_sec: f64,
    /// Each upload's own time, start to answer.
    pub latency: Percentiles,
    pub server: PhaseServerReport,
    pub error_samples: Vec<String>,
}

/// A run over several nodes joined by a hub.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterReport {
    pub nodes: Vec<NodeReport>,
    /// Deliveries whose sender was connected to the receiver's node.
    pub same_node: PathReport,
    /// Deliveries that crossed between nodes (through the hub).
    pub cross_node: PathReport,
}

/// One node of a cluster run.
#[derive(Debug, Clone, Serialize)]
pub struct NodeReport {
    pub url: String,
    /// Connections planned on it.
    pub connections: usize,
    /// Deliveries to its connections per second over the window.
    pub deliveries_per_sec: f64,
    /// Its process; CPU per delivery counts the deliveries to its own connections.
    pub server: ServerReport,
}

/// The deliveries of one path (same node or cross node).
#[derive(Debug, Clone, Serialize)]
pub struct PathReport {
    /// All deliveries of the run on this path (any phase).
    pub deliveries: u64,
    /// Over the window.
    pub deliveries_per_sec: f64,
    /// Send to receipt, for messages sent inside the window.
    pub latency: Percentiles,
}

/// Messages and their deliveries.
#[derive(Debug, Clone, Serialize)]
pub struct TrafficReport {
    /// The measurement window (after warm-up), in seconds.
    pub window_secs: f64,
    pub target_rate_per_sec: f64,
    #[serde(flatten)]
    pub ledger: LedgerTotals,
    /// Acks per second over the window.
    pub acks_per_sec: f64,
    /// Send to ack, for messages sent inside the window.
    pub ack_latency: Percentiles,
    /// Deliveries per second over the window.
    pub deliveries_per_sec: f64,
    /// Send to receipt, for messages sent inside the window.
    pub latency: Percentiles,
    /// The same distribution at fixed quantiles, for `confab-bench plot` (not in the summary).
    pub latency_cdf: Vec<CdfPoint>,
    pub out_of_order: u64,
    pub foreign: u64,
    pub errors: u64,
    pub error_samples: Vec<String>,
    /// Connections that ended during the run (e.g. 4008: cut off as a slow consumer).
    pub disconnects: u64,
    pub close_codes: BTreeMap<String, u64>,
    /// Time spent waiting for the last deliveries after the schedule ended.
    pub drain_secs: f64,
    /// The server's own stages over the window (`stages.rs`; none for a server without
    /// Confab's metrics).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<crate::stages::Stage>,
}

impl TrafficReport {
    /// Gathers a run's figures; `window_deliveries` and `window_acks` are counter differences
    /// over the window.
    pub fn gather(
        run: &Run,
        fanout: &[u32],
        target_rate: f64,
        window_secs: f64,
        window: (u64, u64),
        drain_secs: f64,
    ) -> TrafficReport {
        let (window_deliveries, window_acks) = window;
        let latency = run.latency.merged();
        TrafficReport {
            window_secs,
            target_rate_per_sec: target_rate,
            ledger: run.ledger.totals(fanout),
            acks_per_sec: window_acks as f64 / window_secs,
            ack_latency: Percentiles::of(&run.ack_latency.merged()),
            deliveries_per_sec: window_deliveries as f64 / window_secs,
            latency: Percentiles::of(&latency),
            latency_cdf: stats::cdf(&latency),
            out_of_order: Counters::get(&run.counters.out_of_order),
            foreign: Counters::get(&run.counters.foreign),
            errors: Counters::get(&run.counters.errors),
            error_samples: run.error_samples(),
            disconnects: Counters::get(&run.counters.disconnects),
            close_codes: run.close_codes(),
            drain_secs,
            stages: Vec::new(),
        }
    }
}

/// The server process, as `--server-pid` or `/metrics` shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServerReport {
    /// `proc` (`--server-pid`) or `metrics`.
    pub source: &'static str,
    pub rss_before_bytes: Option<u64>,
    pub rss_idle_bytes: Option<u64>,
    pub rss_end_bytes: Option<u64>,
    /// (idle − before) / connections established.
    pub bytes_per_connection: Option<f64>,
    /// CPU time over the measurement window.
    pub cpu_seconds: Option<f64>,
    /// `cpu_seconds` / window: 1.0 is one core busy.
    pub cpu_cores: Option<f64>,
    pub cpu_us_per_delivery: Option<f64>,
    /// The kernel's sockets before connecting and while idle (the `idle` scenario; see
    /// [`Sockstat`]: machine-wide, so both ends of loopback connections count).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sockstat_before: Option<Sockstat>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sockstat_idle: Option<Sockstat>,
}

/// The generator's own cost over the measurement window (it shares the machine).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClientReport {
    pub cpu_seconds: Option<f64>,
    pub cpu_cores: Option<f64>,
    pub rss_bytes: Option<u64>,
}

/// Connect/disconnect churn running beside the chat load.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChurnReport {
    pub target_rate_per_sec: f64,
    pub attempted: u64,
    pub ok: u64,
    pub failed: u64,
    /// Attempts not started because `concurrency` were already in flight.
    pub skipped: u64,
    pub rate_per_sec: f64,
    /// Connect + upgrade + `welcome` + `join` + `joined`.
    pub latency: Percentiles,
    pub error_samples: Vec<String>,
}

/// Seeding and paging a large conversation.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HistoryReport {
    pub messages: u64,
    /// Messages already there from an earlier run (seeding skipped for those).
    pub reused: u64,
    pub seeded: u64,
    pub seed_secs: f64,
    /// Durable acks per second while seeding over WebSockets.
    pub seed_acks_per_sec: f64,
    pub seed_ack_latency: Percentiles,
    pub seed_connections: usize,
    /// Seeding connections that failed (refused, e.g. past the server's per-user cap, or cut
    /// off); the others did the seeding.
    pub seed_connections_failed: u64,
    /// Server CPU time per durable ack while seeding.
    pub seed_server_cpu_us_per_ack: Option<f64>,
    pub page_size: u32,
    /// Newest to oldest with `before`, one page at a time.
    pub walk_pages: u64,
    pub walk_messages: u64,
    pub walk_latency: Percentiles,
    /// Pages at random positions, `concurrency` at a time.
    pub random_pages: u64,
    pub random_pages_per_sec: f64,
    pub random_latency: Percentiles,
    pub errors: u64,
}

fn mib(bytes: Option<u64>) -> String {
    bytes.map_or_else(
        || "n/a".to_owned(),
        |b| format!("{:.1} MiB", b as f64 / 1048576.0),
    )
}

fn opt(value: Option<f64>, unit: &str) -> String {
    value.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2}{unit}"))
}

fn server_line(s: &ServerReport) -> String {
    format!(
        "server ({}): rss before {}, idle {}, end {}; {} per connection; cpu {} s ({} cores), {} µs per delivery",
        s.source,
        mib(s.rss_before_bytes),
        mib(s.rss_idle_bytes),
        mib(s.rss_end_bytes),
        s.bytes_per_connection
            .map_or_else(|| "n/a".to_owned(), |b| format!("{:.0} B", b)),
        opt(s.cpu_seconds, ""),
        opt(s.cpu_cores, ""),
        opt(s.cpu_us_per_delivery, "")
    )
}

/// The kernel's side of the connections: sockets and TCP buffer memory, before and idle.
fn print_sockstat(before: Sockstat, idle: Sockstat, connections: usize) {
    let mem = |s: Sockstat| s.tcp_mem_pages * Sockstat::PAGE;
    let per_connection = (mem(idle) as f64 - mem(before) as f64) / connections.max(1) as f64;
    println!(
        "kernel (/proc/net/sockstat, both ends): sockets {} -> {}, tcp inuse {} -> {}, tcp mem {} -> {} pages ({} -> {}; {:.0} B per connection)",
        before.sockets_used,
        idle.sockets_used,
        before.tcp_inuse,
        idle.tcp_inuse,
        before.tcp_mem_pages,
        idle.tcp_mem_pages,
        mib(Some(mem(before))),
        mib(Some(mem(idle))),
        per_connection
    );
}

/// Prints the `connections` section of the summary.
fn print_connections(c: &ConnectReport) {
    println!(
        "connections: {} ok, {} failed of {}; authenticated in {:.3} s ({:.0}/s), all joined in {:.3} s (concurrency {})",
        c.ok,
        c.failed,
        c.target,
        c.authenticated_secs,
        c.connect_rate_per_sec,
        c.joined_secs,
        c.concurrency
    );
    if let (Some(server), Some(client)) = (c.server_cpu_us_per_connect, c.client_cpu_us_per_connect)
    {
        println!("  cpu per connection opened: server {server:.0} µs, generator {client:.0} µs");
    }
    println!("  handshake: {}", c.handshake);
    println!("  join:      {}", c.join);
    for e in &c.error_samples {
        println!("  error: {e}");
    }
}

/// Prints the `traffic` section of the summary.
fn print_traffic(t: &TrafficReport) {
    let l = &t.ledger;
    println!(
        "messages: sent {} (target {:.0}/s), acked {} ({:.0}/s), failed {}, unacked {}, skipped by the generator {}",
        l.sent, t.target_rate_per_sec, l.acked, t.acks_per_sec, l.failed, l.unacked, l.skipped
    );
    println!("  ack latency: {}", t.ack_latency);
    println!(
        "deliveries: expected {}, delivered {}, loss {}, duplicates {}, out of order {}, {:.0}/s over {:.1} s",
        l.expected,
        l.delivered,
        l.loss,
        l.duplicates,
        t.out_of_order,
        t.deliveries_per_sec,
        t.window_secs
    );
    println!("  latency: {}", t.latency);
    for s in &t.stages {
        println!(
            "  server stage {:<16} p50 {:.2} ms, p99 {:.2} ms (n={}, {})",
            s.stage, s.p50_ms, s.p99_ms, s.count, s.metric
        );
    }
    println!(
        "  errors {}, disconnects {} {:?}, drain {:.2} s",
        t.errors, t.disconnects, t.close_codes, t.drain_secs
    );
    for e in &t.error_samples {
        println!("  error: {e}");
    }
}

/// Prints the `churn` section of the summary.
fn print_churn(c: &ChurnReport) {
    println!(
        "churn: {} ok, {} failed, {} skipped of {} attempted ({:.0}/s, target {:.0}/s)",
        c.ok, c.failed, c.skipped, c.attempted, c.rate_per_sec, c.target_rate_per_sec
    );
    println!("  connect+join: {}", c.latency);
    for e in &c.error_samples {
        println!("  error: {e}");
    }
}

/// Prints the `history` section of the summary.
fn print_history(h: &HistoryReport) {
    println!(
        "history: {} messages ({} reused, {} seeded in {:.1} s = {:.0} acks/s over {} connections, {} of them failed)",
        h.messages,
        h.reused,
        h.seeded,
        h.seed_secs,
        h.seed_acks_per_sec,
        h.seed_connections,
        h.seed_connections_failed
    );
    println!(
        "  seed ack latency: {}; server cpu per ack {} µs",
        h.seed_ack_latency,
        opt(h.seed_server_cpu_us_per_ack, "")
    );
    println!(
        "  walk: {} pages of {} ({} messages): {}",
        h.walk_pages, h.page_size, h.walk_messages, h.walk_latency
    );
    println!(
        "  random pages: {} ({:.0}/s): {}",
        h.random_pages, h.random_pages_per_sec, h.random_latency
    );
    println!("  errors: {}", h.errors);
}

/// A change of RSS, signed.
fn growth(bytes: Option<i64>) -> String {
    bytes.map_or_else(
        || "n/a".to_owned(),
        |b| format!("{:+.1} MiB", b as f64 / 1048576.0),
    )
}

fn transfer_line(t: &TransferReport) -> String {
    format!(
        "{:.1} MiB in {:.2} s = {:.0} MB/s ({:.2} of raw); server cpu {} s, rss {}; generator cpu {} s",
        t.bytes as f64 / 1048576.0,
        t.secs,
        t.mb_per_sec,
        t.ratio_to_raw,
        opt(t.server.cpu_seconds, ""),
        growth(t.server.rss_growth_bytes),
        opt(t.client_cpu_seconds, "")
    )
}

/// Prints the `media` section of the summary.
fn print_media(m: &MediaReport) {
    let r = &m.raw_copy;
    println!(
        "raw loopback copy: {:.1} MiB in {:.2} s = {:.0} MB/s ({} B writes)",
        r.bytes as f64 / 1048576.0,
        r.secs,
        r.mb_per_sec,
        r.write_bytes
    );
    println!("single upload:  {}", transfer_line(&m.single));
    let c = &m.chunked;
    println!("chunked upload: {}", transfer_line(&c.transfer));
    println!(
        "  {} chunks of {:.1} MiB, {} in flight; complete took {:.2} s",
        c.chunks,
        c.chunk_size as f64 / 1048576.0,
        c.concurrency,
        c.complete_secs
    );
    println!("download:       {}", transfer_line(&m.download));
    println!(
        "  sha256 {} ({})",
        m.sha256,
        if m.sha256_verified {
            "checked against the generated bytes and the download"
        } else {
            "the same for both uploads; not hashed here"
        }
    );
    let u = &m.rss_upload;
    println!(
        "rss during a {:.0} MiB upload: before {}, max {} ({} samples): growth {}",
        u.bytes as f64 / 1048576.0,
        mib(u.server.rss_before_bytes),
        mib(u.server.rss_max_bytes),
        u.server.rss_samples,
        growth(u.server.rss_growth_bytes)
    );
    let k = &m.concurrent;
    println!(
        "concurrent: {} × {:.1} MiB: {} ok, {} failed in {:.2} s = {:.1} uploads/s, {:.0} MB/s; server rss {}",
        k.uploads,
        k.bytes_each as f64 / 1048576.0,
        k.ok,
        k.failures,
        k.secs,
        k.uploads_per_sec,
        k.mb_per_sec,
        growth(k.server.rss_growth_bytes)
    );
    println!("  per upload: {}", k.latency);
    for e in &k.error_samples {
        println!("  error: {e}");
    }
}

impl Report {
    /// Prints the summary, then the JSON line.
    pub fn print(&self) {
        println!("== confab-bench {} ==", self.scenario);
        println!("params: {}", self.params);
        if let Some(c) = &self.connections {
            print_connections(c);
        }
        if let Some(t) = &self.traffic {
            print_traffic(t);
        }
        if let Some(c) = &self.churn
            && self.flood.is_none()
        {
            print_churn(c);
        }
        if let Some(f) = &self.flood {
            println!("alone: delivery {}", f.baseline_delivery);
            println!("alone: ack {}", f.baseline_ack);
            println!(
                "flooded/alone p99: delivery {:.2}x, ack {:.2}x (server cpu alone {} cores)",
                f.delivery_p99_ratio,
                f.ack_p99_ratio,
                opt(f.baseline_server_cpu_cores, "")
            );
            println!(
                "flooder: {:.0} requests/s sent, {:.0}/s accepted, {} refused; {} observers",
                f.flooder_sent_per_sec, f.flooder_accepted_per_sec, f.flooder_refused, f.observers
            );
        }
        if let Some(h) = &self.history {
            print_history(h);
        }
        if let Some(m) = &self.media {
            print_media(m);
        }
        if let Some(steps) = &self.topologies {
            // Each step has its own servers: the per-process lines below would be empty.
            print_topologies(steps);
            print_json(self);
            return;
        }
        if let Some(c) = &self.cluster {
            for (name, path) in [("same-node", &c.same_node), ("cross-node", &c.cross_node)] {
                println!(
                    "{name} deliveries: {} ({:.0}/s)",
                    path.deliveries, path.deliveries_per_sec
                );
                println!("  latency: {}", path.latency);
            }
            for (i, node) in c.nodes.iter().enumerate() {
                println!(
                    "node {i} ({}): {} connections, {:.0} deliveries/s; {}",
                    node.url,
                    node.connections,
                    node.deliveries_per_sec,
                    server_line(&node.server)
                );
            }
        } else {
            println!("{}", server_line(&self.server));
        }
        if let (Some(before), Some(idle)) = (self.server.sockstat_before, self.server.sockstat_idle)
        {
            print_sockstat(before, idle, self.connections.as_ref().map_or(0, |c| c.ok));
        }
        println!(
            "generator: cpu {} s ({} cores), rss {}",
            opt(self.client.cpu_seconds, ""),
            opt(self.client.cpu_cores, ""),
            mib(self.client.rss_bytes)
        );
        print_json(self);
    }
}

/// The report as the one JSON line that ends the output.
fn print_json(report: &Report) {
    match serde_json::to_string(report) {
        Ok(json) => println!("{json}"),
        Err(err) => eprintln!("cannot serialize the report: {err}"),
    }
}
