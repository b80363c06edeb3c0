//! `scale` (issue 17 part 1): C200K on one host. A process may hold at most 20,000 open files
//! here, so both sides are spread: the coordinator (this process) starts the redis-server(s) and
//! as many Confab nodes as the connections need (`--per-node`, at least two, in cluster mode on
//! one shared SQLite data dir), sets up conversations of `--members` users whose members sit on
//! different nodes, and starts `confab-bench scale-worker` processes (`--per-worker` connections
//! each, each binding its sockets to its own addresses of 127.0.0.0/8). It drives them phase by
//! phase over their stdin/stdout ([`wire`]) and merges their figures:
//!
//! 1. connect: every connection opened and joined, at most `--connect-concurrency` in flight per
//!    worker: connect rate, failures, RSS per connection;
//! 2. chat: `--rate` messages per second from random members: delivery and ack latency, then
//!    loss and duplicates checked by seq per conversation;
//! 3. storm: every connection dropped at once; each client reconnects after a random pause of up
//!    to `--reconnect-jitter-ms` and rejoins with `since`, while the chat load goes on from the
//!    clients already back: time until all resumed, then loss and duplicates again.
//!
//! Each `--steps` count runs on fresh nodes. [`worker`] and [`session`] are the worker's side.

mod procs;
pub mod report;
mod session;
pub mod wire;
pub mod worker;

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use confab_testkit::{ConfabServer, RedisServer};

use crate::cli::{Common, ScaleArgs};
use crate::scenario::chat::groups;
use crate::scenario::cluster::{SPAWN_SECRET, redis_cpu, start_nodes};
use crate::scenario::{Env, fresh_tenant};
use procs::{Sample, Workers, load_average};
use report::{FailedStep, ScaleReport, ScaleStep};
use wire::{Command, Reply, WorkerPlan};

pub use procs::WORKER_SUBCOMMAND;

/// What the report names as the nodes' shared store.
const STORE: &str = "shared SQLite stand-in: every node on one data dir (--shared-data-dir), \
                     fan-out through Redis";
/// Loopback addresses per worker (each has ~28,000 ephemeral ports).
const SOURCES_PER_WORKER: u8 = 8;

/// How one step is laid out.
#[derive(Debug, Clone, Copy)]
struct Layout {
    connections: usize,
    nodes: usize,
    workers: usize,
    conversations: usize,
}

impl Layout {
    fn of(args: &ScaleArgs, connections: usize) -> anyhow::Result<Layout> {
        let nodes = connections
            .div_ceil(args.per_node.max(1))
            .max(args.min_nodes);
        if nodes > 200 {
            bail!("{connections} connections need {nodes} nodes: at most 200");
        }
        let workers = connections.div_ceil(args.per_worker.max(1)).max(1);
        if workers > 200 {
            bail!("{connections} connections need {workers} workers: at most 200");
        }
        Ok(Layout {
            connections,
            nodes,
            workers,
            conversations: (connections / args.members.max(1)).max(1),
        })
    }
}

/// Runs every step in turn; a step that fails ends the run, reported with what came before.
pub async fn run(common: Common, args: ScaleArgs) -> anyhow::Result<ScaleReport> {
    let load_average_start = load_average();
    let mut steps = Vec::new();
    let mut failed_step = None;
    for &connections in &args.steps {
        eprintln!(
            "== scale: {connections} connections (load average {})",
            load_average()
        );
        match run_step(&common, &args, connections).await {
            Ok(step) => steps.push(step),
            Err(err) => {
                eprintln!("scale step of {connections} connections failed: {err:#}");
                failed_step = Some(FailedStep {
                    connections,
                    error: format!("{err:#}"),
                });
                break;
            }
        }
    }
    Ok(ScaleReport {
        scenario: "scale",
        params: serde_json::to_value(&args)?,
        store: STORE,
        load_average_start,
        load_average_end: load_average(),
        steps,
        failed_step,
    })
}

/// The running servers of one step (killed when dropped).
struct Cluster {
    nodes: Vec<ConfabServer>,
    redis: Vec<RedisServer>,
    _data: tempfile::TempDir,
}

impl Cluster {
    async fn start(binary: &Path, nodes: usize, shards: usize) -> anyhow::Result<Cluster> {
        let redis = tokio::task::spawn_blocking(move || RedisServer::start_many(shards.max(1)))
            .await?
            .context("start redis-server (Debian's redis-server package)")?;
        let data = tempfile::tempdir()?;
        let count = u8::try_from(nodes).context("too many nodes")?;
        let nodes = start_nodes(binary, data.path(), count, &redis).await?;
        Ok(Cluster {
            nodes,
            redis,
            _data: data,
        })
    }

    fn pids(&self) -> Vec<u32> {
        self.nodes.iter().filter_map(ConfabServer::pid).collect()
    }

    fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(ConfabServer::url).collect()
    }

    /// Writes each node's log so far to `dir/step-<connections>-node-<i>.log`.
    fn keep_logs(&self, dir: &Path, connections: usize) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        for (index, node) in self.nodes.iter().enumerate() {
            let path = dir.join(format!("step-{connections}-node-{index}.log"));
            std::fs::write(&path, node.log())
                .with_context(|| format!("write {}", path.display()))?;
        }
        Ok(())
    }
}

/// Creates the step's conversations (user `i` in conversation `i % conversations`) through
/// node 0 and returns their ids and the tenant.
async fn set_up(
    common: &Common,
    cluster: &Cluster,
    layout: &Layout,
) -> anyhow::Result<(Vec<String>, String)> {
    let tenant = fresh_tenant("scale");
    let mut node_common = common.clone();
    node_common.url = cluster.urls()[0].clone();
    node_common.server_pid = cluster.nodes[0].pid();
    node_common.secret = Some(SPAWN_SECRET.to_owned());
    node_common.token_file = None;
    node_common.tenant = None;
    let env = Env::with_peers(node_common, &tenant, &[]).await?;
    let groups = groups(layout.connections, layout.conversations);
    let owners = env.tokens(groups.len())?;
    let ids = env.create_groups("scale", &groups, &owners).await?;
    Ok((ids.iter().map(|id| id.to_string()).collect(), tenant))
}

/// Worker `w`'s plan: its share of the connections and its source addresses
/// (`127.<1 + w>.0.1..=8`).
fn plans(
    common: &Common,
    layout: &Layout,
    conversations: &[String],
    tenant: &str,
    (nodes, body_bytes): (&[String], usize),
) -> Vec<WorkerPlan> {
    let per_worker = layout.connections.div_ceil(layout.workers);
    (0..layout.workers)
        .map(|w| {
            let first = w * per_worker;
            let second_octet = u8::try_from(1 + w).unwrap_or(u8::MAX);
            WorkerPlan {
                worker: w,
                secret: SPAWN_SECRET.to_owned(),
                tenant: tenant.to_owned(),
                first,
                count: per_worker.min(layout.connections.saturating_sub(first)),
                conversations: conversations.to_vec(),
                nodes: nodes.to_vec(),
                sources: (1..=SOURCES_PER_WORKER)
                    .map(|last| Ipv4Addr::new(127, second_octet, 0, last))
                    .collect(),
                concurrency: common.connect_concurrency,
                body_bytes,
            }
        })
        .collect()
}

/// One step: fresh servers, setup, workers, the three phases.
async fn run_step(
    common: &Common,
    args: &ScaleArgs,
    connections: usize,
) -> anyhow::Result<ScaleStep> {
    let layout = Layout::of(args, connections)?;
    eprintln!(
        "layout: {} nodes, {} workers, {} conversations of {}",
        layout.nodes, layout.workers, layout.conversations, args.members
    );
    let cluster = Cluster::start(&args.spawn, layout.nodes, args.shards).await?;
    let setup_started = Instant::now();
    let (conversations, tenant) = set_up(common, &cluster, &layout).await?;
    let setup_secs = setup_started.elapsed().as_secs_f64();
    let plans = plans(
        common,
        &layout,
        &conversations,
        &tenant,
        (&cluster.urls(), args.body_bytes),
    );
    let mut workers = Workers::start(plans).await?;
    let phases = phases::run(&mut workers, &cluster, args, &layout).await;
    workers.exit().await;
    if let Some(dir) = &args.keep_logs
        && let Err(err) = cluster.keep_logs(dir, connections)
    {
        eprintln!("cannot keep the nodes' logs: {err:#}");
    }
    let (connect, chat, storm, unexpected_disconnects) = phases?;
    Ok(ScaleStep {
        connections,
        nodes: layout.nodes,
        workers: layout.workers,
        conversations: layout.conversations,
        redis_servers: args.shards.max(1),
        setup_secs,
        connect,
        chat,
        storm,
        unexpected_disconnects,
        load_average: load_average(),
    })
}

mod phases;

/// Sends a command to every worker and unwraps the replies of the expected kind.
async fn ask<T>(
    workers: &mut Workers,
    command: &Command,
    pick: impl Fn(Reply) -> Option<T>,
) -> anyhow::Result<Vec<T>> {
    workers
        .all(command)
        .await?
        .into_iter()
        .map(|reply| pick(reply).context("a worker answered with the wrong reply"))
        .collect()
}

/// Samples the nodes and the workers.
fn sample(cluster: &Cluster, workers: &Workers) -> Sample {
    Sample::take(&cluster.pids(), &workers.pids())
}

/// All redis-servers' CPU seconds so far.
async fn redis_seconds(cluster: &Cluster) -> f64 {
    redis_cpu(&cluster.redis)
        .await
        .map_or(0.0, |s| s.iter().sum())
}

/// Waits `duration`, for the servers to settle between phases.
async fn rest(duration: Duration) {
    tokio::time::sleep(duration).await;
}
