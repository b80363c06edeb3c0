//! `idle`: many connections (10,000 in 1,000 conversations by default), each authenticated and
//! joined to one conversation, no traffic. Measures the connect rate and the server's resident
//! memory per idle connection, with the kernel's socket figures (`/proc/net/sockstat`) beside
//! it.

use std::time::Duration;

use crate::probe::{ProcessStats, Sockstat};

use crate::cli::IdleArgs;
use crate::load::{self, ConnPlan, Run};
use crate::probe;
use crate::report::Report;

use super::chat::groups;
use super::{Env, Snapshot, process_reports};

pub async fn run(env: &Env, args: IdleArgs) -> anyhow::Result<Report> {
    let groups = groups(args.connections, args.conversations);
    let tokens = env.tokens(args.connections)?;
    let conversations = env.create_groups("idle", &groups, &tokens).await?;
    let plans: Vec<ConnPlan> = (0..args.connections)
        .map(|i| ConnPlan {
            user: i,
            conversation: i % groups.len(),
            join: true,
            sends: false,
            node: 0,
        })
        .collect();
    // Let the setup's allocations settle before the baseline.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = env.probe.sample().await;
    let sockstat_before = Sockstat::read();
    let own_before = probe::own();
    let run = Run::new(0, 0);
    let mut fleet = load::open_fleet(&env.fleet_spec(tokens, conversations), &plans, &run).await;
    let per_connect = |from: Option<ProcessStats>, to: Option<ProcessStats>| {
        let (from, to) = (from?, to?);
        let opened = fleet.report.ok.max(1) as f64;
        Some((to.cpu_seconds - from.cpu_seconds) * 1e6 / opened)
    };
    fleet.report.server_cpu_us_per_connect = per_connect(before, env.probe.sample().await);
    fleet.report.client_cpu_us_per_connect = per_connect(own_before, probe::own());
    eprintln!(
        "connected: {} ok, {} failed; authenticated in {:.3} s, joined in {:.3} s; holding {} s",
        fleet.report.ok,
        fleet.report.failed,
        fleet.report.authenticated_secs,
        fleet.report.joined_secs,
        args.hold_secs
    );
    let start = Snapshot::take(&env.probe, Some(&run)).await;
    hold(env, &run, fleet.report.ok, &start, args.hold_secs).await;
    let stop = Snapshot::take(&env.probe, Some(&run)).await;
    let sockstat_idle = Sockstat::read();
    let idle = stop.server();
    let disconnects = crate::stats::Counters::get(&run.counters.disconnects);
    if disconnects > 0 {
        eprintln!(
            "warning: {disconnects} connection(s) ended while idle: {:?}",
            run.close_codes()
        );
    }
    load::close_fleet(&run, fleet.tasks).await;
    let (mut server, client) = process_reports(
        &env.probe,
        before,
        idle,
        idle,
        fleet.report.ok,
        (&start, &stop),
    );
    server.sockstat_before = sockstat_before;
    server.sockstat_idle = sockstat_idle;
    Ok(Report {
        scenario: "idle",
        params: serde_json::to_value(&args)?,
        connections: Some(fleet.report),
        traffic: None,
        server,
        client,
        churn: None,
        history: None,
        cluster: None,
        media: None,
        flood: None,
        topologies: None,
    })
}

/// Holds the `opened` connections idle for `secs` from `start`, printing the server's RSS each
/// second.
async fn hold(env: &Env, run: &Run, opened: usize, start: &Snapshot, secs: f64) {
    let hold = Duration::from_secs_f64(secs);
    while start.at.elapsed() + Duration::from_secs(1) < hold {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss = env.probe.sample().await.map(|s| s.resident_bytes >> 20);
        eprintln!(
            "[{:>6.1}s] idle: {} open, server rss {} MiB",
            start.at.elapsed().as_secs_f64(),
            opened as u64 - crate::stats::Counters::get(&run.counters.disconnects),
            rss.map_or_else(|| "n/a".to_owned(), |r| r.to_string())
        );
    }
    tokio::time::sleep(hold.saturating_sub(start.at.elapsed())).await;
}
