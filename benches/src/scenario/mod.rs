//! The scenarios. Each builds its conversations through REST, opens its connections, runs its
//! load for a bounded time and returns a [`Report`].
//!
//! - [`idle`]: connections only. [`fanout`], [`chat`]: a paced message load through
//!   [`run_traffic`]. [`storm`]: the chat load plus churn. [`history`]: seeding and paging.
//!   [`cluster`]: the chat load over two nodes ([`Env::peers`]), split by path. [`media`]:
//!   files up and down over HTTP, no WebSockets.

pub mod chat;
pub mod cluster;
pub mod fanout;
pub mod flood;
pub mod history;
pub mod idle;
pub mod media;
pub mod storm;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::probe::ProcessStats;
use anyhow::{Context, bail};
use futures_util::{StreamExt, TryStreamExt, stream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::cli::{Common, Scenario, TrafficArgs};
use crate::conn::Endpoint;
use crate::load::{self, ConnPlan, FleetSpec, Run, Schedule};
use crate::probe::{self, Probe};
use crate::report::{
    ChurnReport, ClientReport, ClusterReport, NodeReport, PathReport, Report, ServerReport,
    TrafficReport,
};
use crate::rest::Rest;
use crate::stats::{Counters, Percentiles};
use crate::tokens::Identities;

/// What every scenario works with.
pub struct Env {
    pub rest: Rest,
    pub ids: Identities,
    pub endpoint: Arc<Endpoint>,
    pub probe: Probe,
    pub common: Common,
    /// Further nodes of a cluster (node 1, …); node 0 is `common.url`, `endpoint` and `probe`.
    pub peers: Vec<Peer>,
}

/// A further node of a cluster, sharing the first node's storage and hub.
pub struct Peer {
    pub url: String,
    pub endpoint: Arc<Endpoint>,
    pub probe: Probe,
}

impl Peer {
    async fn new(url: &str, server_pid: Option<u32>, source_ips: u8) -> anyhow::Result<Peer> {
        let rest = Rest::new(url)?;
        let endpoint = Arc::new(Endpoint::new(url, source_ips)?);
        rest.wait_healthy(Duration::from_secs(10)).await?;
        Ok(Peer {
            url: url.to_owned(),
            endpoint,
            probe: Probe::new(server_pid, &rest),
        })
    }
}

impl Env {
    pub async fn new(common: Common, scenario: &Scenario) -> anyhow::Result<Env> {
        let peers = match scenario {
            Scenario::Cluster(args) => vec![(args.url2.clone(), args.server_pid2)],
            _ => Vec::new(),
        };
        let tenant = match scenario {
            Scenario::History(_) => "bench-history".to_owned(),
            other => fresh_tenant(other.name()),
        };
        Env::with_peers(common, &tenant, &peers).await
    }

    /// An environment of node 0 (`common.url`) and further nodes `peers` (URL and pid), with
    /// minted tokens in `common.tenant` or else `tenant`.
    pub async fn with_peers(
        common: Common,
        tenant: &str,
        peers: &[(String, Option<u32>)],
    ) -> anyhow::Result<Env> {
        let rest = Rest::new(&common.url)?;
        let endpoint = Arc::new(Endpoint::new(&common.url, common.source_ips)?);
        let ids = match (&common.secret, &common.token_file) {
            (Some(secret), _) => {
                let tenant = common.tenant.as_deref().unwrap_or(tenant);
                Identities::from_secret(secret, tenant)?
            }
            (None, Some(path)) => Identities::from_file(path)?,
            (None, None) => bail!("give --secret (or CONFAB_JWT_SECRET) or --token-file"),
        };
        rest.wait_healthy(Duration::from_secs(10)).await?;
        let probe = Probe::new(common.server_pid, &rest);
        let mut nodes = Vec::with_capacity(peers.len());
        for (url, pid) in peers {
            nodes.push(Peer::new(url, *pid, common.source_ips).await?);
        }
        Ok(Env {
            rest,
            ids,
            endpoint,
            probe,
            common,
            peers: nodes,
        })
    }

    /// Every node's probe, node 0 first.
    fn probes(&self) -> impl Iterator<Item = &Probe> {
        std::iter::once(&self.probe).chain(self.peers.iter().map(|p| &p.probe))
    }

    /// A sample of every node, node 0 first.
    async fn sample_nodes(&self) -> Vec<Option<ProcessStats>> {
        let mut samples = Vec::with_capacity(1 + self.peers.len());
        for probe in self.probes() {
            samples.push(probe.sample().await);
        }
        samples
    }

    /// Tokens of users `0..n`.
    pub fn tokens(&self, n: usize) -> anyhow::Result<Arc<Vec<String>>> {
        Ok(Arc::new(self.ids.tokens(n)?))
    }

    /// Creates one group per entry of `groups` (user indices; the first is the owner) and
    /// returns their ids in order.
    pub async fn create_groups(
        &self,
        title: &str,
        groups: &[Vec<usize>],
        tokens: &[String],
    ) -> anyhow::Result<Arc<Vec<Arc<str>>>> {
        let started = Instant::now();
        let concurrency = self.common.setup_concurrency;
        let ids: Vec<Arc<str>> = stream::iter(groups.iter().enumerate())
            .map(|(i, users)| async move {
                let (owner, others) = users.split_first().context("empty group")?;
                let members: Vec<String> = others.iter().map(|&u| self.ids.user(u)).collect();
                let id = self
                    .rest
                    .create_group(
                        &tokens[*owner],
                        &format!("{title}-{i}"),
                        &members,
                        concurrency,
                    )
                    .await?;
                anyhow::Ok(Arc::<str>::from(id))
            })
            .buffered(concurrency.max(1))
            .try_collect()
            .await?;
        eprintln!(
            "setup: {} conversation(s) with {} memberships in {:.1} s (tenant {})",
            ids.len(),
            groups.iter().map(Vec::len).sum::<usize>(),
            started.elapsed().as_secs_f64(),
            self.ids.tenant()
        );
        Ok(Arc::new(ids))
    }

    fn fleet_spec(&self, tokens: Arc<Vec<String>>, conversations: Arc<Vec<Arc<str>>>) -> FleetSpec {
        FleetSpec {
            endpoints: std::iter::once(&self.endpoint)
                .chain(self.peers.iter().map(|p| &p.endpoint))
                .cloned()
                .collect(),
            tokens,
            conversations,
            concurrency: self.common.connect_concurrency,
        }
    }
}

/// `bench-<scenario>-<unix seconds>`: a tenant of its own for each run.
pub(crate) fn fresh_tenant(scenario: &str) -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("bench-{scenario}-{secs}")
}

/// Server and generator figures at one instant.
#[derive(Debug, Clone)]
struct Snapshot {
    at: Instant,
    client: Option<ProcessStats>,
    delivered: u64,
    acked: u64,
    /// Every node sampled, node 0 first (only node 0 from [`Snapshot::take`]).
    servers: Vec<Option<ProcessStats>>,
    /// Deliveries by receiving node (runs over several nodes).
    delivered_by_node: Vec<u64>,
    /// Same-node and cross-node deliveries (runs over several nodes).
    paths: (u64, u64),
    /// Node 0's `/metrics` (from [`Snapshot::take_nodes`]), for the server's stages.
    metrics: Option<String>,
}

impl Snapshot {
    /// A snapshot of node 0 only.
    async fn take(probe: &Probe, run: Option<&Run>) -> Snapshot {
        Snapshot::of(vec![probe.sample().await], run)
    }

    /// A snapshot of every node of `env`.
    async fn take_nodes(env: &Env, run: &Run) -> Snapshot {
        let mut snapshot = Snapshot::of(env.sample_nodes().await, Some(run));
        snapshot.metrics = env.rest.metrics().await.ok();
        snapshot
    }

    /// The server's stages from this snapshot to `later` (`stages.rs`).
    fn stages_until(&self, later: &Snapshot) -> Vec<crate::stages::Stage> {
        match (&self.metrics, &later.metrics) {
            (Some(before), Some(after)) => crate::stages::between(before, after),
            _ => Vec::new(),
        }
    }

    fn of(servers: Vec<Option<ProcessStats>>, run: Option<&Run>) -> Snapshot {
        let split = run.and_then(|r| r.nodes.as_ref());
        Snapshot {
            at: Instant::now(),
            client: probe::own(),
            delivered: run.map_or(0, |r| Counters::get(&r.counters.delivered)),
            acked: run.map_or(0, |r| Counters::get(&r.counters.acked)),
            servers,
            delivered_by_node: split.map_or_else(Vec::new, |s| s.delivered_by_node()),
            paths: split.map_or((0, 0), |s| {
                (Counters::get(&s.same_node), Counters::get(&s.cross_node))
            }),
            metrics: None,
        }
    }

    /// Node 0's figures (the only node outside `cluster`).
    fn server(&self) -> Option<ProcessStats> {
        self.servers.first().copied().flatten()
    }
}

fn cpu_between(a: Option<ProcessStats>, b: Option<ProcessStats>) -> Option<f64> {
    Some(b?.cpu_seconds - a?.cpu_seconds)
}

/// Server and client sections from the snapshots around the measurement window.
fn process_reports(
    probe: &Probe,
    before: Option<ProcessStats>,
    idle: Option<ProcessStats>,
    end: Option<ProcessStats>,
    connections: usize,
    window: (&Snapshot, &Snapshot),
) -> (ServerReport, ClientReport) {
    let (start, stop) = window;
    let secs = (stop.at - start.at).as_secs_f64();
    let deliveries = stop.delivered - start.delivered;
    let server = server_report(
        probe,
        [before, idle, end],
        connections,
        (start.server(), stop.server()),
        secs,
        deliveries,
    );
    let client_cpu = cpu_between(start.client, stop.client);
    let client = ClientReport {
        cpu_seconds: client_cpu,
        cpu_cores: client_cpu.map(|c| c / secs),
        rss_bytes: stop.client.map(|s| s.resident_bytes),
    };
    (server, client)
}

/// One server's section: RSS `[before, idle, end]` and its CPU over the `window` of `secs`, in
/// which it made `deliveries`.
fn server_report(
    probe: &Probe,
    [before, idle, end]: [Option<ProcessStats>; 3],
    connections: usize,
    window: (Option<ProcessStats>, Option<ProcessStats>),
    secs: f64,
    deliveries: u64,
) -> ServerReport {
    let cpu = cpu_between(window.0, window.1);
    ServerReport {
        source: probe.source(),
        rss_before_bytes: before.map(|s| s.resident_bytes),
        rss_idle_bytes: idle.map(|s| s.resident_bytes),
        rss_end_bytes: end.map(|s| s.resident_bytes),
        bytes_per_connection: match (before, idle) {
            (Some(b), Some(i)) if connections > 0 => {
                Some((i.resident_bytes as f64 - b.resident_bytes as f64) / connections as f64)
            }
            _ => None,
        },
        cpu_seconds: cpu,
        cpu_cores: cpu.map(|c| c / secs),
        cpu_us_per_delivery: cpu
            .filter(|_| deliveries > 0)
            .map(|c| c * 1e6 / deliveries as f64),
        sockstat_before: None,
        sockstat_idle: None,
    }
}

/// The per-node and per-path figures of a run over several nodes.
fn cluster_report(
    env: &Env,
    run: &Run,
    plans: &[ConnPlan],
    rss: [&[Option<ProcessStats>]; 3],
    window: (&Snapshot, &Snapshot),
) -> Option<ClusterReport> {
    let split = run.nodes.as_ref()?;
    let (start, stop) = window;
    let secs = (stop.at - start.at).as_secs_f64();
    let urls =
        std::iter::once(env.common.url.as_str()).chain(env.peers.iter().map(|p| p.url.as_str()));
    let nodes = env
        .probes()
        .zip(urls)
        .enumerate()
        .map(|(node, (probe, url))| {
            let at = |samples: &[Option<ProcessStats>]| samples.get(node).copied().flatten();
            let delivered = |s: &Snapshot| s.delivered_by_node.get(node).copied().unwrap_or(0);
            let deliveries = delivered(stop) - delivered(start);
            let connections = plans.iter().filter(|p| usize::from(p.node) == node).count();
            NodeReport {
                url: url.to_owned(),
                connections,
                deliveries_per_sec: deliveries as f64 / secs,
                server: server_report(
                    probe,
                    [at(rss[0]), at(rss[1]), at(rss[2])],
                    connections,
                    (at(&start.servers), at(&stop.servers)),
                    secs,
                    deliveries,
                ),
            }
        })
        .collect();
    let path =
        |count: &std::sync::atomic::AtomicU64, window: u64, latency: &Percentiles| PathReport {
            deliveries: Counters::get(count),
            deliveries_per_sec: window as f64 / secs,
            latency: *latency,
        };
    Some(ClusterReport {
        nodes,
        same_node: path(
            &split.same_node,
            stop.paths.0 - start.paths.0,
            &Percentiles::of(&split.same_node_latency.merged()),
        ),
        cross_node: path(
            &split.cross_node,
            stop.paths.1 - start.paths.1,
            &Percentiles::of(&split.cross_node_latency.merged()),
        ),
    })
}

/// Something that runs beside the paced load (storm's churn) and reports when stopped.
pub type SideLoad =
    Box<dyn FnOnce(CancellationToken) -> tokio::task::JoinHandle<ChurnReport> + Send>;

/// A paced message load over a fleet of connections.
pub struct TrafficSpec {
    pub name: &'static str,
    pub params: serde_json::Value,
    pub tokens: Arc<Vec<String>>,
    pub conversations: Arc<Vec<Arc<str>>>,
    pub plans: Vec<ConnPlan>,
    pub rate: f64,
    pub traffic: TrafficArgs,
    /// `true`: each message from a random sender; `false`: senders in turn.
    pub random_sender: bool,
    pub side: Option<SideLoad>,
}

impl TrafficSpec {
    /// `rate` over the warm-up and the measured window.
    fn schedule(&self) -> Schedule {
        Schedule {
            rate: self.rate,
            warmup: Duration::from_secs_f64(self.traffic.warmup_secs),
            duration: Duration::from_secs_f64(self.traffic.duration_secs),
        }
    }
}

/// Receivers per conversation (what each acked message is expected to reach), and how many
/// nodes the plans connect to.
fn receivers_and_nodes(env: &Env, spec: &TrafficSpec) -> anyhow::Result<(Vec<u32>, usize)> {
    let mut fanout = vec![0u32; spec.conversations.len()];
    for plan in spec.plans.iter().filter(|p| p.join) {
        fanout[plan.conversation] += 1;
    }
    let nodes = spec
        .plans
        .iter()
        .map(|p| usize::from(p.node) + 1)
        .max()
        .unwrap_or(1);
    if nodes > 1 + env.peers.len() {
        bail!(
            "{} plans connections to {nodes} nodes, but only {} are known",
            spec.name,
            1 + env.peers.len()
        );
    }
    Ok((fanout, nodes))
}

/// Sends on `schedule` from `senders`: each message from a random sender, or the senders in
/// turn.
fn spawn_pacer(
    run: Arc<Run>,
    schedule: Schedule,
    senders: Vec<(mpsc::Sender<load::Outgoing>, u32)>,
    random: bool,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut turn = 0usize;
        load::pace(&run, schedule, senders, move |n| {
            if random {
                rand::random_range(0..n)
            } else {
                turn = turn.wrapping_add(1);
                turn % n
            }
        })
        .await;
    })
}

/// Opens the fleet, measures it idle, runs the schedule (warm-up, then the measured window),
/// drains, measures again and closes.
pub async fn run_traffic(env: &Env, spec: TrafficSpec) -> anyhow::Result<Report> {
    let schedule = spec.schedule();
    let (fanout, nodes) = receivers_and_nodes(env, &spec)?;
    let before = env.sample_nodes().await;
    let run = Run::with_nodes(schedule.capacity(), spec.traffic.body_bytes, nodes);
    let fleet_spec = env.fleet_spec(spec.tokens.clone(), spec.conversations.clone());
    let fleet = load::open_fleet(&fleet_spec, &spec.plans, &run).await;
    eprintln!(
        "connected: {} ok, {} failed in {:.2} s",
        fleet.report.ok, fleet.report.failed, fleet.report.joined_secs
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = env.sample_nodes().await;

    let progress = CancellationToken::new();
    load::spawn_progress(run.clone(), spec.name, progress.clone());
    run.open_window(schedule.warmup, schedule.duration);
    let side_stop = CancellationToken::new();
    let side = spec.side.map(|start| start(side_stop.clone()));
    let pacer = spawn_pacer(run.clone(), schedule, fleet.senders, spec.random_sender);
    tokio::time::sleep(schedule.warmup).await;
    let start = Snapshot::take_nodes(env, &run).await;
    tokio::time::sleep(schedule.duration.saturating_sub(start.at.elapsed())).await;
    let stop = Snapshot::take_nodes(env, &run).await;
    pacer.await?;
    side_stop.cancel();
    let churn = match side {
        Some(handle) => Some(handle.await?),
        None => None,
    };
    let drained = load::drain(
        &run,
        &fanout,
        Duration::from_secs_f64(spec.traffic.drain_secs),
    )
    .await;
    progress.cancel();
    let end = env.sample_nodes().await;
    load::close_fleet(&run, fleet.tasks).await;

    let mut traffic = TrafficReport::gather(
        &run,
        &fanout,
        spec.rate,
        (stop.at - start.at).as_secs_f64(),
        (stop.delivered - start.delivered, stop.acked - start.acked),
        drained.as_secs_f64(),
    );
    traffic.stages = start.stages_until(&stop);
    let (mut server, client) = process_reports(
        &env.probe,
        before[0],
        idle[0],
        end[0],
        fleet.report.ok,
        (&start, &stop),
    );
    let cluster = cluster_report(
        env,
        &run,
        &spec.plans,
        [&before, &idle, &end],
        (&start, &stop),
    );
    if let Some(first) = cluster.as_ref().and_then(|c| c.nodes.first()) {
        // Node 0's own share, not the whole cluster's deliveries.
        server = first.server.clone();
    }
    Ok(Report {
        scenario: spec.name,
        params: spec.params,
        connections: Some(fleet.report),
        traffic: Some(traffic),
        server,
        client,
        churn,
        history: None,
        cluster,
        media: None,
        flood: None,
        topologies: None,
    })
}

const FLOOR_HAS_NO_SERVER: &str =
    "`floor` needs no server: run it with `confab_benches::floor::run`";
const SEARCH_HAS_NO_SERVER: &str =
    "`search` needs no server: run it with `confab_benches::search::run`";
const PLOT_HAS_NO_SERVER: &str = "`plot` needs no server: run it with `confab_benches::plot::run`";
const SCALE_HAS_ITS_OWN_REPORT: &str =
    "`scale` starts its own servers: run it with `confab_benches::scale::run`";

/// Runs the scenario the command line names (`floor`, with no server and no [`Report`], is
/// [`crate::floor::run`]).
pub async fn run(common: Common, scenario: Scenario) -> anyhow::Result<Report> {
    match scenario {
        Scenario::Floor(_) => bail!(FLOOR_HAS_NO_SERVER),
        Scenario::Search(_) => bail!(SEARCH_HAS_NO_SERVER),
        Scenario::Plot(_) => bail!(PLOT_HAS_NO_SERVER),
        Scenario::Scale(_) | Scenario::ScaleWorker => bail!(SCALE_HAS_ITS_OWN_REPORT),
        _ => {}
    }
    if let Scenario::Cluster(args) = &scenario
        && args.spawn.is_some()
    {
        return cluster::run_topologies(common, args.clone()).await;
    }
    let env = Env::new(common, &scenario).await?;
    match scenario {
        Scenario::Idle(args) => idle::run(&env, args).await,
        Scenario::Fanout(args) => fanout::run(&env, args).await,
        Scenario::Chat(args) => chat::run(&env, args).await,
        Scenario::Storm(args) => storm::run(&env, args).await,
        Scenario::Flood(args) => flood::run(&env, args).await,
        Scenario::History(args) => history::run(&env, args).await,
        Scenario::Cluster(args) => cluster::run(&env, args).await,
        Scenario::Media(args) => media::run(&env, args).await,
        Scenario::Floor(_) => bail!(FLOOR_HAS_NO_SERVER),
        Scenario::Search(_) => bail!(SEARCH_HAS_NO_SERVER),
        Scenario::Plot(_) => bail!(PLOT_HAS_NO_SERVER),
        Scenario::Scale(_) | Scenario::ScaleWorker => bail!(SCALE_HAS_ITS_OWN_REPORT),
    }
}
