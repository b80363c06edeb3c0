//! The `confab-bench` command line: common flags (server, identities, probes) and one
//! subcommand per scenario, whose defaults fit a 2-core machine running both the server and the
//! generator.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "confab-bench",
    about = "Load generator for a running Confab server (loopback only)",
    after_help = "Start the server with `--message-rate-per-minute 0 --join-rate-per-minute 0 \
                  --rest-rate-per-minute 0 --jwt-secret <secret>` in a shell \
                  with `ulimit -n 65536`, then pass the same secret here (or CONFAB_JWT_SECRET). \
                  Progress goes to stderr; the summary and one JSON line to stdout."
)]
pub struct Cli {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// Flags every scenario takes.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// The server's base URL (must be a loopback address).
    #[arg(long, global = true, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The server's HS256 secret (`--jwt-secret`); tokens for users u0, u1, … are minted with it.
    #[arg(
        long,
        global = true,
        env = "CONFAB_JWT_SECRET",
        hide_env_values = true,
        conflicts_with = "token_file"
    )]
    pub secret: Option<String>,
    /// A file of tokens, one per line, all of one tenant; user i is line i mod n.
    #[arg(long, global = true)]
    pub token_file: Option<PathBuf>,
    /// Tenant of minted tokens [default: a fresh `bench-<scenario>-<time>`; `bench-history` for
    /// `history`, so its seeded conversation is reused].
    #[arg(long, global = true)]
    pub tenant: Option<String>,
    /// The server's pid: RSS and CPU time are read from /proc/<pid> (else from /metrics).
    #[arg(long, global = true)]
    pub server_pid: Option<u32>,
    /// Loopback source addresses to spread connections over (127.0.0.1..=127.0.0.N), for more
    /// connections than one address has ephemeral ports.
    #[arg(long, global = true, default_value_t = 1)]
    pub source_ips: u8,
    /// Connections being opened at once. Confab listens with a backlog of 4096 (the kernel caps
    /// it at `net.core.somaxconn`): more in flight than the accept queue holds are dropped and
    /// come back only after the 1 s SYN retransmit.
    #[arg(long, global = true, default_value_t = 100)]
    pub connect_concurrency: usize,
    /// Concurrent REST calls while setting up conversations and members.
    #[arg(long, global = true, default_value_t = 32)]
    pub setup_concurrency: usize,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Scenario {
    /// Many idle connections, each joined to one conversation: memory per connection, connect
    /// rate.
    Idle(IdleArgs),
    /// One large conversation, one sender at a fixed rate: deliveries/s, latency, CPU per
    /// delivery.
    Fanout(FanoutArgs),
    /// Many small conversations, messages from random members at a fixed total rate.
    Chat(ChatArgs),
    /// The chat load plus connect/join/disconnect churn.
    Storm(StormArgs),
    /// The chat load alone, then beside one user flooding the server (messages, typing,
    /// reactions without pause, into a conversation of readers): does one user's flood degrade
    /// the others' latency? Run the server with its default limits.
    Flood(FloodArgs),
    /// Seeds a large conversation (durable ack throughput), then pages through it over REST.
    History(HistoryArgs),
    /// The chat load over two nodes joined by Redis (`--url` and `--url2`), each conversation's
    /// members alternating between them: same-node and cross-node latency. With `--spawn`, starts
    /// its own servers and compares one node, two nodes on one Redis and two nodes on Redis
    /// shards (issue 17 part 2).
    Cluster(ClusterArgs),
    /// Media files over HTTP: one large file up (single multipart and resumable chunked) and
    /// down, against a raw loopback copy of the same bytes; the server's RSS during a 100 MiB
    /// upload; many uploads at once. The server's `--media-max-file-bytes` must allow
    /// `--file-mib` (its default is 100 MiB).
    Media(MediaArgs),
    /// No server: the kernel's CPU price of one small write to a loopback TCP socket, the floor
    /// of the server's CPU per delivery when deliveries do not share writes.
    Floor(FloorArgs),
    /// No server (issue 13): confab's search index against SQLite FTS5 on the same generated
    /// messages: indexing throughput, then query latency and throughput at several
    /// concurrencies, each query within a random person's conversations.
    Search(SearchArgs),
    /// No server (issue 16): draws saved reports as SVG curves: latency CDFs, deliveries/s and
    /// p99 against the offered rate, CPU per delivery against the rate with the `floor`, idle
    /// memory per connection against connections. `benches/sweep.sh` makes the reports.
    Plot(PlotArgs),
    /// Issue 17 part 1, C200K on one host: starts Redis and as many nodes as the connections
    /// need (one shared SQLite data dir), and generator processes of its own (this binary, each
    /// holding `--per-worker` connections from its own 127.x.0.y addresses), then at each of
    /// `--steps`: connect, chat at `--rate`, and a reconnect storm with `since` resume, checked
    /// for loss and duplicates by seq. Needs no `--url`/`--secret`.
    Scale(ScaleArgs),
    /// A generator process of `scale` (started by it; plan and commands on stdin).
    #[command(name = "scale-worker", hide = true)]
    ScaleWorker,
}

impl Scenario {
    pub fn name(&self) -> &'static str {
        match self {
            Scenario::Idle(_) => "idle",
            Scenario::Fanout(_) => "fanout",
            Scenario::Chat(_) => "chat",
            Scenario::Storm(_) => "storm",
            Scenario::Flood(_) => "flood",
            Scenario::History(_) => "history",
            Scenario::Cluster(_) => "cluster",
            Scenario::Media(_) => "media",
            Scenario::Floor(_) => "floor",
            Scenario::Search(_) => "search",
            Scenario::Plot(_) => "plot",
            Scenario::Scale(_) => "scale",
            Scenario::ScaleWorker => "scale-worker",
        }
    }
}

#[derive(Debug, Clone, Args, serde::Serialize)]
pub struct FloorArgs {
    /// Sockets written to in turn (the members of one conversation).
    #[arg(long, default_value_t = 2_000)]
    pub connections: usize,
    /// Rounds of one write to every socket.
    #[arg(long, default_value_t = 100)]
    pub rounds: u32,
    /// Milliseconds between rounds (40 ms: `fanout --rate 25`).
    #[arg(long, default_value_t = 40)]
    pub gap_ms: u64,
    /// Bytes per write (a message frame of the fan-out scenario is about 200).
    #[arg(long, default_value_t = 200)]
    pub bytes: usize,
    /// Directory on the disk whose sync floor to measure: put it where the server's data
    /// directory lives [default: the system's temporary directory].
    #[arg(long)]
    pub sync_dir: Option<std::path::PathBuf>,
    /// Commits of the sync floor: each writes `sync_bytes` and waits for `fdatasync` (0: skip
    /// it).
    #[arg(long, default_value_t = 2_000)]
    pub syncs: u32,
    /// Bytes each commit writes: 20 KiB is five 4 KiB log frames, what one chat message's
    /// commit appends to SQLite's log.
    #[arg(long, default_value_t = 20 * 1024)]
    pub sync_bytes: usize,
    /// Microseconds between commits (1,000: the chat scenario's 1,000 messages per second).
    #[arg(long, default_value_t = 1_000)]
    pub sync_gap_us: u64,
}

#[derive(Debug, Clone, Args)]
pub struct PlotArgs {
    /// Saved reports, each `[LABEL=]PATH`: a file holding a report's JSON line (or a whole run's
    /// stdout, whose last JSON line is taken), or a directory of such `*.json` files. LABEL names
    /// the server in the legends [default: the name of the directory the file is in]; `floor`
    /// reports draw the floor line.
    #[arg(required = true)]
    pub reports: Vec<String>,
    /// Directory the SVG files are written to (created if missing; files of the same name are
    /// replaced).
    #[arg(long, default_value = "benches/plots")]
    pub out_dir: PathBuf,
}

#[derive(Debug, Clone, Args, serde::Serialize)]
pub struct IdleArgs {
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    #[arg(long, default_value_t = 1_000)]
    pub conversations: usize,
    /// Seconds to hold the connections idle before measuring.
    #[arg(long, default_value_t = 5.0)]
    pub hold_secs: f64,
}

/// Rate, timing and size of messages.
#[derive(Debug, Clone, Args, serde::Serialize)]
pub struct TrafficArgs {
    /// Seconds of sending before measuring.
    #[arg(long, default_value_t = 3.0)]
    pub warmup_secs: f64,
    /// Seconds of measured sending.
    #[arg(long, default_value_t = 10.0)]
    pub duration_secs: f64,
    /// Approximate message body size.
    #[arg(long, default_value_t = 64)]
    pub body_bytes: usize,
    /// Most seconds to wait for the last deliveries after sending stops.
    #[arg(long, default_value_t = 10.0)]
    pub drain_secs: f64,
}

#[derive(Debug, Clone, Args, serde::Serialize)]
pub struct FanoutArgs {
    /// Members of the conversation, each with one joined connection.
    #[arg(long, default_value_t = 2_000)]
    pub members: usize,
    /// Messages per second (deliveries/s = rate × members).
    #[arg(long, default_value_t = 125.0)]
    pub rate: f64,
    /// Connections of the sending member (not joined; the server keeps up to 32 sends of one
    /// connection in flight, so one is enough at the default rate).
    #[arg(long, default_value_t = 1)]
    pub senders: usize,
    #[command(flatten)]
    #[serde(flatten)]
    pub traffic: TrafficArgs,
}

#[derive(Debug, Clone, Args, serde::Serialize)]
pub struct ChatArgs {
    #[arg(long, default_value_t = 5_000)]
    pub connections: usize,
    #[arg(long, default_value_t = 1_000)]
    pub conversations: usize,
    /// Messages per second in total, each from a random connection.
    #[arg(long, default_value_t = 1_000.0)]
    pub rate: f64,
    #[command(flatten)]
    #[serde(flatten)]
    pub traffic: TrafficArgs,
}

#[derive(Debug, Clone, Args, serde::Serialize)]
pub struct StormArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub chat: ChatArgs,
    /// Connect + join + disconnect cycles per second beside the chat load.
    #[arg(long, default_value_t = 2_000.0)]
    pub churn_rate: f64,
    /// Churn cycles in flight at once (past it, cycles are skipped and counted).
    #[arg(long, default_value_t = 512)]
    pub churn_concurrency: usize,
}

#[derive(Debug, Clone, Args, serde::Serialize)]
pub struct FloodArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub chat: ChatArgs,
    /// Joined connections (other users) reading the flooder's conversation.
    #[arg(long, default_value_t = 50)]
    pub flood_observers: usize,
}

#[derive(Debug, Clone, Args, serde::Serialize)]
pub struct HistoryArgs {
    /// Messages in the conversation (seeded once; later runs reuse it).
    #[arg(long, default_value_t = 1_000_000)]
    pub messages: u64,
    /// Seed from scratch even if a conversation of this size exists.
    #[arg(long)]
    pub fresh: bool,
    /// WebSocket connections seeding at once (each keeps `--seed-window` sends in flight), all
    /// as one member: the server's default `max_connections_per_user` (50) refuses more.
    #[arg(long, default_value_t = 50)]
    pub seed_connections: usize,
    #[arg(long, default_value_t = 16)]
    pub seed_window: usize,
    #[arg(long, default_value_t = 100)]
    pub body_bytes: usize,
    /// Messages per page.
    #[arg(long, default_value_t = 50)]
    pub page_size: u32,
    /// Most seconds walking newest to oldest.
    #[arg(long, default_value_t = 10.0)]
    pub walk_secs: f64,
    /// Seconds of random-position paging.
    #[arg(long, default_value_t = 10.0)]
    pub duration_secs: f64,
    /// Random-position pages requested at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
}

#[derive(Debug, Clone, Args, serde::Serialize)]
pub struct ClusterArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub chat: ChatArgs,
    /// The second node's base URL (must be a loopback address); `--url` is the first. Both
    /// must share the storage and the Redis hub.
    #[arg(long, default_value = "http://127.0.0.1:8081")]
    pub url2: String,
    /// The second node's pid (RSS and CPU from /proc/<pid>; else from its /metrics).
    #[arg(long)]
    pub server_pid2: Option<u32>,
    /// Start the servers instead, with this `confab` binary (a release build), and measure in
    /// one run, each at every `--rates`: one node; two nodes on one Redis; two nodes on
    /// `--shards` Redis shards (each topology on fresh redis-servers and a fresh data dir; the
    /// two nodes share its SQLite file). `--url`, `--url2`, the pids and the secret are then
    /// ignored.
    #[arg(long)]
    pub spawn: Option<PathBuf>,
    /// With `--spawn`: message rates (msg/s) each topology runs at, in turn.
    #[arg(long, value_delimiter = ',', default_value = "1000,2000,4000")]
    pub rates: Vec<f64>,
    /// With `--spawn`: Redis servers of the sharded topology.
    #[arg(long, default_value_t = 3)]
    pub shards: usize,
}

#[derive(Debug, Clone, Args, serde::Serialize)]
pub struct MediaArgs {
    /// MiB of the large file: uploaded once in one multipart request and once through the
    /// resumable API, then downloaded (the server's `--media-max-file-bytes`, or
    /// CONFAB_MEDIA_MAX_FILE_BYTES, must allow it).
    #[arg(long, default_value_t = 1024)]
    pub file_mib: u64,
    /// Chunks of the resumable upload in flight at once.
    #[arg(long, default_value_t = 4)]
    pub upload_concurrency: usize,
    /// MiB of the single upload during which the server's RSS is sampled every 50 ms (run
    /// first, on a server that has not yet held a file's bytes).
    #[arg(long, default_value_t = 100)]
    pub rss_mib: u64,
    /// Single uploads started at once, each by its own user.
    #[arg(long, default_value_t = 50)]
    pub concurrent: usize,
    /// MiB of each of the concurrent uploads.
    #[arg(long, default_value_t = 4)]
    pub concurrent_mib: u64,
    /// Hash the generated file and the download with SHA-256 and check both against the
    /// server's (the generator then spends about a second of CPU per GiB beside the server; the
    /// hashing is outside the timed phases but the download's, which it slows).
    #[arg(long)]
    pub verify_sha256: bool,
}

#[derive(Debug, Clone, Args, serde::Serialize)]
pub struct SearchArgs {
    /// Messages generated and indexed by both engines.
    #[arg(long, default_value_t = 1_000_000)]
    pub messages: u64,
    #[arg(long, default_value_t = 1_000)]
    pub conversations: usize,
    /// People (authors and searchers), each a member of 10–50 conversations.
    #[arg(long, default_value_t = 10_000)]
    pub people: usize,
    /// Distinct words (Zipf-distributed, names among them).
    #[arg(long, default_value_t = 4_000)]
    pub vocabulary: usize,
    /// Messages per `apply` call (confab) and per transaction (FTS5).
    #[arg(long, default_value_t = 1_000)]
    pub batch: usize,
    /// Confab commits after this many messages (and once at the end); its pending messages
    /// wait in memory until a commit.
    #[arg(long, default_value_t = 100_000)]
    pub commit_every: u64,
    /// Searcher threads, one run per count.
    #[arg(long, value_delimiter = ',', default_value = "1,10,50")]
    pub concurrency: Vec<usize>,
    /// Queries per engine and concurrency (each run stops at `--max-secs` too).
    #[arg(long, default_value_t = 5_000)]
    pub queries: u64,
    /// Most seconds per engine and concurrency.
    #[arg(long, default_value_t = 15.0)]
    pub max_secs: f64,
    /// Also runs each kind of the compared mix alone (confab, one searcher): where a mix's
    /// time goes.
    #[arg(long)]
    pub by_kind: bool,
    #[arg(long, default_value_t = 13)]
    pub seed: u64,
    /// Where the temp dir of both indexes goes [default: the system's temp dir].
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Args, serde::Serialize)]
pub struct ScaleArgs {
    /// The `confab` binary the nodes run (a release build).
    #[arg(long)]
    pub spawn: PathBuf,
    /// Connection counts, one step each, each on fresh nodes.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "10000,50000,100000,200000"
    )]
    pub steps: Vec<usize>,
    /// Most connections per node (a process may hold 20,000 open files here).
    #[arg(long, default_value_t = 18_000)]
    pub per_node: usize,
    /// Fewest nodes, so that conversations always span nodes.
    #[arg(long, default_value_t = 2)]
    pub min_nodes: usize,
    /// Most connections per generator process.
    #[arg(long, default_value_t = 18_000)]
    pub per_worker: usize,
    /// Members per conversation (conversations = connections / members), spread over nodes.
    #[arg(long, default_value_t = 10)]
    pub members: usize,
    /// Redis servers the fan-out is sharded over.
    #[arg(long, default_value_t = 1)]
    pub shards: usize,
    /// Messages per second in total during the chat phase (and the storm).
    #[arg(long, default_value_t = 2_000.0)]
    pub rate: f64,
    /// Seconds of chat before latency counts.
    #[arg(long, default_value_t = 2.0)]
    pub warmup_secs: f64,
    /// Seconds of measured chat.
    #[arg(long, default_value_t = 10.0)]
    pub chat_secs: f64,
    /// Most seconds to wait for acks and for deliveries after each traffic phase.
    #[arg(long, default_value_t = 15.0)]
    pub drain_secs: f64,
    /// Bytes of each message body.
    #[arg(long, default_value_t = 64)]
    pub body_bytes: usize,
    /// After the storm drops every connection, each client waits a random pause of up to this
    /// before reconnecting (as real clients back off with jitter); 0: all at once.
    #[arg(long, default_value_t = 1_000)]
    pub reconnect_jitter_ms: u64,
    /// Most seconds for every client to resume after the storm.
    #[arg(long, default_value_t = 120.0)]
    pub storm_timeout_secs: f64,
    /// Copies every node's log here at the end of each step (`step-<connections>-node-<i>.log`),
    /// to see why a node refused or dropped something; the nodes log at `warn`.
    #[arg(long)]
    pub keep_logs: Option<PathBuf>,
}
