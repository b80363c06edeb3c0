//! `cluster`: the `chat` load over two nodes joined by Redis. Each conversation's members
//! alternate between the nodes, so every message reaches some receivers on its sender's node
//! (delivered locally) and some on the other (through Redis); the report splits delivery latency
//! by path and gives each node's RSS and CPU.
//!
//! With `--spawn` (issue 17 part 2) it starts its own servers through `confab-testkit` (the
//! harness the integration tests use) and runs the same load, at each of `--rates`, on three
//! topologies in turn: one node; two nodes on one Redis; two nodes on `--shards` Redis shards.
//! Besides deliveries/s and latency it reads every redis-server's CPU (`INFO cpu`) around each
//! step, for the Redis CPU per delivered event.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use confab_testkit::{ConfabServer, RedisServer};

use crate::cli::{ClusterArgs, Common};
use crate::report::{Report, TopologyStep};

use super::{Env, TrafficSpec, chat, fresh_tenant, run_traffic};

/// Nodes the load is spread over: `--url` and `--url2`.
const NODES: u8 = 2;

/// The secret the spawned servers and the generator share (loopback only, never reachable).
pub(crate) const SPAWN_SECRET: &str = "benchsecretbenchsecretbenchsecret00";

pub async fn run(env: &Env, args: ClusterArgs) -> anyhow::Result<Report> {
    let params = serde_json::to_value(&args)?;
    let spec = chat::spec(env, "cluster", &args.chat, params, NODES).await?;
    run_traffic(env, spec).await
}

/// One topology of `--spawn`.
struct Topology {
    name: String,
    nodes: u8,
    redis_servers: usize,
}

/// `cluster --spawn`: every topology at every rate, one after the other.
pub async fn run_topologies(common: Common, args: ClusterArgs) -> anyhow::Result<Report> {
    let binary = args
        .spawn
        .clone()
        .context("--spawn names the confab binary")?;
    let topologies = [
        Topology {
            name: "one node".to_owned(),
            nodes: 1,
            redis_servers: 0,
        },
        Topology {
            name: "two nodes, one Redis".to_owned(),
            nodes: 2,
            redis_servers: 1,
        },
        Topology {
            name: format!("two nodes, {} Redis shards", args.shards),
            nodes: 2,
            redis_servers: args.shards.max(1),
        },
    ];
    let mut steps = Vec::new();
    for topology in &topologies {
        eprintln!("== topology: {}", topology.name);
        steps.extend(run_topology(&binary, &common, &args, topology).await?);
    }
    Ok(Report {
        scenario: "cluster",
        params: serde_json::to_value(&args)?,
        connections: None,
        traffic: None,
        server: Default::default(),
        client: Default::default(),
        churn: None,
        history: None,
        cluster: None,
        media: None,
        flood: None,
        topologies: Some(steps),
    })
}

/// Starts the topology's redis-servers and nodes, sets the conversations up once, then runs the
/// load at each rate on fresh connections.
async fn run_topology(
    binary: &Path,
    common: &Common,
    args: &ClusterArgs,
    topology: &Topology,
) -> anyhow::Result<Vec<TopologyStep>> {
    let count = topology.redis_servers;
    let redis = tokio::task::spawn_blocking(move || RedisServer::start_many(count))
        .await?
        .context("start redis-server (Debian's redis-server package)")?;
    let data = tempfile::tempdir()?;
    let nodes = start_nodes(binary, data.path(), topology.nodes, &redis).await?;
    let urls: Vec<String> = nodes.iter().map(ConfabServer::url).collect();
    let mut node_common = common.clone();
    node_common.url = urls[0].clone();
    node_common.server_pid = nodes[0].pid();
    node_common.secret = Some(SPAWN_SECRET.to_owned());
    node_common.token_file = None;
    let peers: Vec<(String, Option<u32>)> = nodes[1..]
        .iter()
        .map(|node| (node.url(), node.pid()))
        .collect();
    let env = Env::with_peers(node_common, &fresh_tenant("cluster"), &peers).await?;
    let params = serde_json::to_value(args)?;
    let setup = chat::spec(&env, "cluster", &args.chat, params, topology.nodes).await?;
    let mut steps = Vec::with_capacity(args.rates.len());
    for &rate in &args.rates {
        eprintln!("-- {} at {rate} msg/s", topology.name);
        let spec = TrafficSpec {
            name: setup.name,
            params: setup.params.clone(),
            tokens: setup.tokens.clone(),
            conversations: setup.conversations.clone(),
            plans: setup.plans.clone(),
            rate,
            traffic: setup.traffic.clone(),
            random_sender: setup.random_sender,
            side: None,
        };
        let cpu_before = redis_cpu(&redis).await?;
        let report = run_traffic(&env, spec).await?;
        let cpu_after = redis_cpu(&redis).await?;
        let by_server: Vec<f64> = cpu_after
            .iter()
            .zip(&cpu_before)
            .map(|(after, before)| after - before)
            .collect();
        steps.push(step(topology, rate, &report, by_server));
        // Let the servers settle (sockets closing, SQLite checkpoints) between steps.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    drop(nodes);
    drop(redis);
    Ok(steps)
}

/// Starts `count` release nodes on one data dir (sharing its SQLite file), on the hub of
/// `redis` (none: a single node with the in-process hub).
pub(crate) async fn start_nodes(
    binary: &Path,
    data: &Path,
    count: u8,
    redis: &[RedisServer],
) -> anyhow::Result<Vec<ConfabServer>> {
    let hub: Vec<String> = redis.iter().map(RedisServer::url).collect();
    let mut nodes = Vec::with_capacity(usize::from(count));
    for index in 0..count {
        let mut flags: Vec<String> = [
            "--jwt-secret",
            SPAWN_SECRET,
            "--message-rate-per-minute",
            "0",
            "--join-rate-per-minute",
            "0",
            "--rest-rate-per-minute",
            "0",
            "--log",
            "warn",
        ]
        .map(str::to_owned)
        .to_vec();
        if !hub.is_empty() {
            let search = data.join(format!("search-{index}"));
            flags.extend([
                "--hub".to_owned(),
                hub.join(","),
                "--shared-data-dir".to_owned(),
                "true".to_owned(),
                "--search-dir".to_owned(),
                search.display().to_string(),
            ]);
        }
        let builder = ConfabServer::builder(binary).data_dir(data).args(flags);
        let node = tokio::task::spawn_blocking(move || builder.start())
            .await?
            .context("start confab")?;
        nodes.push(node);
    }
    Ok(nodes)
}

/// Each redis-server's CPU seconds so far (`INFO cpu`: `used_cpu_sys` + `used_cpu_user`).
pub(crate) async fn redis_cpu(servers: &[RedisServer]) -> anyhow::Result<Vec<f64>> {
    let mut seconds = Vec::with_capacity(servers.len());
    for server in servers {
        let client = redis::Client::open(server.url())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let info: String = redis::cmd("INFO").arg("cpu").query_async(&mut conn).await?;
        seconds.push(parse_cpu(&info).context("INFO cpu without used_cpu_sys/used_cpu_user")?);
    }
    Ok(seconds)
}

/// `used_cpu_sys` plus `used_cpu_user` of an `INFO cpu` answer.
fn parse_cpu(info: &str) -> Option<f64> {
    let field = |name: &str| -> Option<f64> {
        info.lines()
            .find_map(|line| line.trim().strip_prefix(name)?.strip_prefix(':'))?
            .parse()
            .ok()
    };
    Some(field("used_cpu_sys")? + field("used_cpu_user")?)
}

/// The figures of one step.
fn step(topology: &Topology, rate: f64, report: &Report, redis_cpu: Vec<f64>) -> TopologyStep {
    let traffic = report.traffic.as_ref();
    let window_deliveries = traffic.map_or(0.0, |t| t.deliveries_per_sec * t.window_secs);
    let nodes_cpu = match &report.cluster {
        Some(cluster) => cluster
            .nodes
            .iter()
            .map(|n| n.server.cpu_seconds)
            .sum::<Option<f64>>(),
        None => report.server.cpu_seconds,
    };
    let delivered = traffic.map_or(0, |t| t.ledger.delivered);
    let redis_total: f64 = redis_cpu.iter().sum();
    let has_redis = !redis_cpu.is_empty();
    TopologyStep {
        topology: topology.name.clone(),
        nodes: topology.nodes,
        redis_servers: topology.redis_servers,
        target_rate_per_sec: rate,
        deliveries_per_sec: traffic.map_or(0.0, |t| t.deliveries_per_sec),
        latency: traffic.map(|t| t.latency).unwrap_or_default(),
        cross_node_latency: report.cluster.as_ref().map(|c| c.cross_node.latency),
        loss: traffic.map_or(0, |t| t.ledger.loss),
        duplicates: traffic.map_or(0, |t| t.ledger.duplicates),
        nodes_cpu_us_per_delivery: nodes_cpu
            .filter(|_| window_deliveries > 0.0)
            .map(|cpu| cpu * 1e6 / window_deliveries),
        redis_cpu_seconds: has_redis.then_some(redis_total),
        redis_cpu_us_per_delivery: (has_redis && delivered > 0)
            .then(|| redis_total * 1e6 / delivered as f64),
        redis_cpu_by_server: redis_cpu,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redis_cpu_is_system_plus_user() {
        let info =
            "# CPU\r\nused_cpu_sys:1.25\r\nused_cpu_user:0.50\r\nused_cpu_sys_children:9\r\n";
        assert_eq!(super::parse_cpu(info), Some(1.75));
        assert_eq!(super::parse_cpu("# CPU\r\n"), None);
    }
}
