//! The scale run's report: one [`ScaleStep`] per connection count, printed as a table and as one
//! JSON line (the last line of stdout, what `confab-bench plot` reads back).

use serde::Serialize;

use crate::stats::Percentiles;

#[derive(Debug, Clone, Serialize)]
pub struct ScaleReport {
    pub scenario: &'static str,
    pub params: serde_json::Value,
    /// The shared store of the nodes.
    pub store: &'static str,
    pub load_average_start: String,
    pub load_average_end: String,
    pub steps: Vec<ScaleStep>,
    /// The step that could not be run, and why (the run stops there).
    pub failed_step: Option<FailedStep>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FailedStep {
    pub connections: usize,
    pub error: String,
}

/// One connection count, on fresh nodes, Redis and data dir.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleStep {
    pub connections: usize,
    pub nodes: usize,
    pub workers: usize,
    pub conversations: usize,
    pub redis_servers: usize,
    /// Creating the conversations and their members over REST.
    pub setup_secs: f64,
    pub connect: ConnectFigures,
    pub chat: ChatFigures,
    pub storm: StormFigures,
    /// Connections the server closed or that failed outside the storm, over the step.
    pub unexpected_disconnects: u64,
    pub load_average: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ConnectFigures {
    pub ok: usize,
    pub failed: usize,
    /// From the command to the last connection joined, over all workers.
    pub secs: f64,
    pub rate_per_sec: f64,
    /// TCP connect + upgrade + `welcome` + `join` + `joined`, per connection.
    pub open: Percentiles,
    /// The nodes' CPU over the connect phase, per connection.
    pub nodes_cpu_us_per_connect: f64,
    /// The nodes' RSS, before and with every connection open (after a second's rest).
    pub nodes_rss_before_bytes: u64,
    pub nodes_rss_idle_bytes: u64,
    /// The largest node's RSS with every connection open.
    pub node_rss_max_bytes: u64,
    /// Nodes' RSS growth per connection.
    pub bytes_per_connection: f64,
    /// The generator processes' RSS with every connection open.
    pub workers_rss_bytes: u64,
    /// `/proc/net/sockstat`'s `TCP:` line with every connection open.
    pub tcp_sockstat: String,
    pub error_samples: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ChatFigures {
    pub target_rate_per_sec: f64,
    pub sent: u64,
    pub acked: u64,
    pub errors: u64,
    pub skipped: u64,
    pub delivered: u64,
    pub deliveries_per_sec: f64,
    /// Send to receipt, messages sent after the warm-up, all receivers.
    pub latency: Percentiles,
    /// Send to durable ack.
    pub ack_latency: Percentiles,
    /// CPU cores over the phase: all nodes, all generator processes, all redis-servers.
    pub nodes_cpu_cores: f64,
    pub workers_cpu_cores: f64,
    pub redis_cpu_cores: f64,
    pub nodes_rss_bytes: u64,
    /// Checked by seq per conversation after the phase: events missing, events twice, and
    /// connections short of their conversation's head.
    pub lost: u64,
    /// The part of `lost` skipped within a stream (a seq past the next one).
    pub gaps: u64,
    pub duplicates: u64,
    pub behind: usize,
    pub error_samples: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct StormFigures {
    pub jitter_ms: u64,
    pub resumed: usize,
    pub not_resumed: usize,
    /// Reconnect attempts that failed and were retried.
    pub failed_attempts: u64,
    /// From dropping every connection to the last one rejoined with `since`.
    pub secs_to_all_resumed: f64,
    /// Per connection, disconnect to rejoined (the client's jitter included).
    pub resume: Percentiles,
    pub not_recovered: u64,
    /// Messages sent during the storm (from connections already back) and their acks.
    pub sent: u64,
    pub acked: u64,
    pub errors: u64,
    /// The nodes' RSS after the storm, and their CPU cores over it.
    pub nodes_rss_bytes: u64,
    pub nodes_cpu_cores: f64,
    /// Checked by seq per conversation over the whole step (chat and storm).
    pub lost: u64,
    /// The part of `lost` skipped within a stream (a seq past the next one).
    pub gaps: u64,
    pub duplicates: u64,
    pub behind: usize,
    pub error_samples: Vec<String>,
    /// The nodes' fan-out counters after the storm, over the step, summed over nodes (name with
    /// labels → value): the Redis traffic, and what a client behind should be traced to.
    pub node_counters: std::collections::BTreeMap<String, f64>,
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1_048_576.0
}

impl ScaleReport {
    /// The table on stdout, then the JSON line.
    pub fn print(&self) {
        println!(
            "scale: {} (load average {} → {})",
            self.store, self.load_average_start, self.load_average_end
        );
        println!(
            "| connections | nodes | connect/s | failed | RSS B/conn | nodes RSS MiB | nodes CPU (chat) | chat p50 / p99 ms | ack p99 ms | lost / dup | storm: all resumed s | storm lost / dup | failed attempts |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        for s in &self.steps {
            println!(
                "| {} | {} | {:.0} | {} | {:.0} | {:.0} | {:.2} | {:.2} / {:.2} | {:.2} | {} / {} | {:.2} | {} / {} | {} |",
                s.connections,
                s.nodes,
                s.connect.rate_per_sec,
                s.connect.failed,
                s.connect.bytes_per_connection,
                mib(s.connect.nodes_rss_idle_bytes),
                s.chat.nodes_cpu_cores,
                s.chat.latency.p50_ms,
                s.chat.latency.p99_ms,
                s.chat.ack_latency.p99_ms,
                s.chat.lost,
                s.chat.duplicates,
                s.storm.secs_to_all_resumed,
                s.storm.lost,
                s.storm.duplicates,
                s.storm.failed_attempts,
            );
        }
        if let Some(failed) = &self.failed_step {
            println!(
                "step of {} connections failed: {}",
                failed.connections, failed.error
            );
        }
        match serde_json::to_string(self) {
            Ok(json) => println!("{json}"),
            Err(err) => eprintln!("cannot encode the report: {err}"),
        }
    }
}
