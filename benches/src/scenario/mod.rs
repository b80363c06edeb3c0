//! The scenarios. Each builds its conversations through REST, opens its connections, runs its
//! load for a bounded time and returns a [`Report`].
//!
//! - [`idle`]: connections only. [`fanout`], [`chat`]: a paced message load through
//!   [`run_traffic`]. [`storm`]: the chat load plus churn. [`history`]: seeding and paging.

pub mod chat;
pub mod fanout;
pub mod history;
pub mod idle;
pub mod storm;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use confab_server::metrics::ProcessStats;
use futures_util::{StreamExt, TryStreamExt, stream};
use tokio_util::sync::CancellationToken;

use crate::cli::{Common, Scenario, TrafficArgs};
use crate::conn::Endpoint;
use crate::load::{self, ConnPlan, FleetSpec, Run, Schedule};
use crate::probe::{self, Probe};
use crate::report::{ChurnReport, ClientReport, Report, ServerReport, TrafficReport};
use crate::rest::Rest;
use crate::stats::Counters;
use crate::tokens::Identities;

/// What every scenario works with.
pub struct Env {
    pub rest: Rest,
    pub ids: Identities,
    pub endpoint: Arc<Endpoint>,
    pub probe: Probe,
    pub common: Common,
}

impl Env {
    pub async fn new(common: Common, scenario: &Scenario) -> anyhow::Result<Env> {
        let rest = Rest::new(&common.url)?;
        let endpoint = Arc::new(Endpoint::new(&common.url, common.source_ips)?);
        let ids = match (&common.secret, &common.token_file) {
            (Some(secret), _) => {
                let tenant = common.tenant.clone().unwrap_or_else(|| match scenario {
                    Scenario::History(_) => "bench-history".to_owned(),
                    other => {
                        let secs = SystemTime::now()
                            .duration_since(UNIX_EPOCH)
                            .map(|d| d.as_secs())
                            .unwrap_or(0);
                        format!("bench-{}-{secs}", other.name())
                    }
                });
                Identities::from_secret(secret, &tenant)?
            }
            (None, Some(path)) => Identities::from_file(path)?,
            (None, None) => bail!("give --secret (or CONFAB_JWT_SECRET) or --token-file"),
        };
        rest.wait_healthy(Duration::from_secs(10)).await?;
        let probe = Probe::new(common.server_pid, &rest);
        Ok(Env {
            rest,
            ids,
            endpoint,
            probe,
            common,
        })
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
            endpoint: self.endpoint.clone(),
            tokens,
            conversations,
            concurrency: self.common.connect_concurrency,
        }
    }
}

/// Server and generator figures at one instant.
#[derive(Debug, Clone, Copy)]
struct Snapshot {
    at: Instant,
    server: Option<ProcessStats>,
    client: Option<ProcessStats>,
    delivered: u64,
    acked: u64,
}

impl Snapshot {
    async fn take(probe: &Probe, run: Option<&Run>) -> Snapshot {
        let server = probe.sample().await;
        Snapshot {
            at: Instant::now(),
            server,
            client: probe::own(),
            delivered: run.map_or(0, |r| Counters::get(&r.counters.delivered)),
            acked: run.map_or(0, |r| Counters::get(&r.counters.acked)),
        }
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
    let cpu = cpu_between(start.server, stop.server);
    let server = ServerReport {
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
    };
    let client_cpu = cpu_between(start.client, stop.client);
    let client = ClientReport {
        cpu_seconds: client_cpu,
        cpu_cores: client_cpu.map(|c| c / secs),
        rss_bytes: stop.client.map(|s| s.resident_bytes),
    };
    (server, client)
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

/// Opens the fleet, measures it idle, runs the schedule (warm-up, then the measured window),
/// drains, measures again and closes.
pub async fn run_traffic(env: &Env, spec: TrafficSpec) -> anyhow::Result<Report> {
    let schedule = Schedule {
        rate: spec.rate,
        warmup: Duration::from_secs_f64(spec.traffic.warmup_secs),
        duration: Duration::from_secs_f64(spec.traffic.duration_secs),
    };
    // Receivers per conversation: what each acked message is expected to reach.
    let mut fanout = vec![0u32; spec.conversations.len()];
    for plan in spec.plans.iter().filter(|p| p.join) {
        fanout[plan.conversation] += 1;
    }
    let before = env.probe.sample().await;
    let run = Run::new(schedule.capacity(), spec.traffic.body_bytes);
    let fleet_spec = env.fleet_spec(spec.tokens.clone(), spec.conversations.clone());
    let fleet = load::open_fleet(&fleet_spec, &spec.plans, &run).await;
    eprintln!(
        "connected: {} ok, {} failed in {:.2} s",
        fleet.report.ok, fleet.report.failed, fleet.report.joined_secs
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = env.probe.sample().await;

    let progress = CancellationToken::new();
    load::spawn_progress(run.clone(), spec.name, progress.clone());
    run.open_window(schedule.warmup, schedule.duration);
    let side_stop = CancellationToken::new();
    let side = spec.side.map(|start| start(side_stop.clone()));
    let pacer = {
        let run = run.clone();
        let senders = fleet.senders;
        let random = spec.random_sender;
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
    };
    tokio::time::sleep(schedule.warmup).await;
    let start = Snapshot::take(&env.probe, Some(&run)).await;
    tokio::time::sleep(schedule.duration.saturating_sub(start.at.elapsed())).await;
    let stop = Snapshot::take(&env.probe, Some(&run)).await;
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
    let end = env.probe.sample().await;
    load::close_fleet(&run, fleet.tasks).await;

    let window_secs = (stop.at - start.at).as_secs_f64();
    let traffic = TrafficReport::gather(
        &run,
        &fanout,
        spec.rate,
        window_secs,
        (stop.delivered - start.delivered, stop.acked - start.acked),
        drained.as_secs_f64(),
    );
    let (server, client) = process_reports(
        &env.probe,
        before,
        idle,
        end,
        fleet.report.ok,
        (&start, &stop),
    );
    Ok(Report {
        scenario: spec.name,
        params: spec.params,
        connections: Some(fleet.report),
        traffic: Some(traffic),
        server,
        client,
        churn,
        history: None,
    })
}

/// Runs the scenario the command line names.
pub async fn run(common: Common, scenario: Scenario) -> anyhow::Result<Report> {
    let env = Env::new(common, &scenario).await?;
    match scenario {
        Scenario::Idle(args) => idle::run(&env, args).await,
        Scenario::Fanout(args) => fanout::run(&env, args).await,
        Scenario::Chat(args) => chat::run(&env, args).await,
        Scenario::Storm(args) => storm::run(&env, args).await,
        Scenario::History(args) => history::run(&env, args).await,
    }
}
