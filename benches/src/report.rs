//! The end of a run: a human-readable summary, then exactly one JSON line (the last line on
//! stdout), both built from one [`Report`].

use std::collections::BTreeMap;

use serde::Serialize;

use crate::load::{ConnectReport, Run};
use crate::stats::{Counters, LedgerTotals, Percentiles};

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
    pub out_of_order: u64,
    pub foreign: u64,
    pub errors: u64,
    pub error_samples: Vec<String>,
    /// Connections that ended during the run (e.g. 4008: cut off as a slow consumer).
    pub disconnects: u64,
    pub close_codes: BTreeMap<String, u64>,
    /// Time spent waiting for the last deliveries after the schedule ended.
    pub drain_secs: f64,
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
        TrafficReport {
            window_secs,
            target_rate_per_sec: target_rate,
            ledger: run.ledger.totals(fanout),
            acks_per_sec: window_acks as f64 / window_secs,
            ack_latency: Percentiles::of(&run.ack_latency.merged()),
            deliveries_per_sec: window_deliveries as f64 / window_secs,
            latency: Percentiles::of(&run.latency.merged()),
            out_of_order: Counters::get(&run.counters.out_of_order),
            foreign: Counters::get(&run.counters.foreign),
            errors: Counters::get(&run.counters.errors),
            error_samples: run.error_samples(),
            disconnects: Counters::get(&run.counters.disconnects),
            close_codes: run.close_codes(),
            drain_secs,
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
        "history: {} messages ({} reused, {} seeded in {:.1} s = {:.0} acks/s over {} connections)",
        h.messages, h.reused, h.seeded, h.seed_secs, h.seed_acks_per_sec, h.seed_connections
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
        if let Some(c) = &self.churn {
            print_churn(c);
        }
        if let Some(h) = &self.history {
            print_history(h);
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
        println!(
            "generator: cpu {} s ({} cores), rss {}",
            opt(self.client.cpu_seconds, ""),
            opt(self.client.cpu_cores, ""),
            mib(self.client.rss_bytes)
        );
        match serde_json::to_string(self) {
            Ok(json) => println!("{json}"),
            Err(err) => eprintln!("cannot serialize the report: {err}"),
        }
    }
}
