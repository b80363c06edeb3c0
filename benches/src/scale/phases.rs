//! The three phases of a step, each a command to every worker with the host sampled around it,
//! and the seq check after the traffic phases.

use std::time::{Duration, Instant};

use super::report::{ChatFigures, ConnectFigures, StormFigures};
use super::wire::{Command, Reply, SettleOutcome, merged};
use super::{Cluster, Layout, ask, redis_seconds, rest, sample};
use crate::cli::ScaleArgs;
use crate::scale::procs::Workers;

/// The figures of a step's phases, and its unexpected disconnects.
pub type Phases = (ConnectFigures, ChatFigures, StormFigures, u64);

pub async fn run(
    workers: &mut Workers,
    cluster: &Cluster,
    args: &ScaleArgs,
    layout: &Layout,
) -> anyhow::Result<Phases> {
    let connect = connect(workers, cluster).await?;
    eprintln!(
        "connected: {} ok, {} failed in {:.2} s ({:.0}/s); nodes {:.0} MiB",
        connect.ok,
        connect.failed,
        connect.secs,
        connect.rate_per_sec,
        connect.nodes_rss_idle_bytes as f64 / 1_048_576.0
    );
    let chat = chat(workers, cluster, args, layout).await?;
    eprintln!(
        "chat: {} sent, {} acked, {} delivered, p99 {:.2} ms, lost {} dup {}",
        chat.sent, chat.acked, chat.delivered, chat.latency.p99_ms, chat.lost, chat.duplicates
    );
    rest(Duration::from_secs(1)).await;
    let (storm, settled) = storm(workers, cluster, args, layout).await?;
    eprintln!(
        "storm: {} resumed ({} not) in {:.2} s, {} failed attempts, lost {} dup {} (gaps {}, behind {}, frames before joined {})",
        storm.resumed,
        storm.not_resumed,
        storm.secs_to_all_resumed,
        storm.failed_attempts,
        storm.lost,
        storm.duplicates,
        settled.gaps,
        storm.behind,
        settled.before_joined
    );
    eprintln!("nodes' counters after the storm: {:?}", storm.node_counters);
    Ok((connect, chat, storm, settled.unexpected_disconnects))
}

async fn connect(workers: &mut Workers, cluster: &Cluster) -> anyhow::Result<ConnectFigures> {
    let before = sample(cluster, workers);
    let started = Instant::now();
    let outcomes = ask(workers, &Command::Connect, |r| match r {
        Reply::Connected(c) => Some(c),
        _ => None,
    })
    .await?;
    let wall = started.elapsed().as_secs_f64();
    let after = sample(cluster, workers);
    rest(Duration::from_secs(1)).await;
    let idle = sample(cluster, workers);
    let ok: usize = outcomes.iter().map(|o| o.ok).sum();
    let secs = outcomes
        .iter()
        .map(|o| o.secs)
        .fold(0.0, f64::max)
        .min(wall);
    let grown = idle.nodes.rss_bytes as f64 - before.nodes.rss_bytes as f64;
    let cpu = after.nodes.cpu_seconds - before.nodes.cpu_seconds;
    Ok(ConnectFigures {
        ok,
        failed: outcomes.iter().map(|o| o.failed).sum(),
        secs,
        rate_per_sec: if secs > 0.0 { ok as f64 / secs } else { 0.0 },
        open: merged(outcomes.iter().map(|o| &o.open)),
        nodes_cpu_us_per_connect: cpu * 1e6 / ok.max(1) as f64,
        nodes_rss_before_bytes: before.nodes.rss_bytes,
        nodes_rss_idle_bytes: idle.nodes.rss_bytes,
        node_rss_max_bytes: idle.nodes.rss_by_process.iter().copied().max().unwrap_or(0),
        bytes_per_connection: grown / ok.max(1) as f64,
        workers_rss_bytes: idle.workers.rss_bytes,
        tcp_sockstat: idle.tcp,
        error_samples: outcomes
            .into_iter()
            .flat_map(|o| o.error_samples)
            .take(5)
            .collect(),
    })
}

async fn chat(
    workers: &mut Workers,
    cluster: &Cluster,
    args: &ScaleArgs,
    layout: &Layout,
) -> anyhow::Result<ChatFigures> {
    let before = sample(cluster, workers);
    let redis_before = redis_seconds(cluster).await;
    let command = Command::Chat {
        rate: args.rate / layout.workers as f64,
        warmup_secs: args.warmup_secs,
        secs: args.chat_secs,
        drain_secs: args.drain_secs,
    };
    let outcomes = ask(workers, &command, |r| match r {
        Reply::Chat(c) => Some(c),
        _ => None,
    })
    .await?;
    let after = sample(cluster, workers);
    let redis_cores = (redis_seconds(cluster).await - redis_before) / after.secs_since(&before);
    let [nodes_cores, workers_cores] = after.cores_since(&before);
    let settled = check(workers, args.drain_secs).await?;
    let delivered: u64 = outcomes.iter().map(|o| o.delivered).sum();
    let sum = |f: fn(&super::wire::Sent) -> u64| outcomes.iter().map(|o| f(&o.sent)).sum::<u64>();
    Ok(ChatFigures {
        target_rate_per_sec: args.rate,
        sent: sum(|s| s.sent),
        acked: sum(|s| s.acked),
        errors: sum(|s| s.errors),
        skipped: sum(|s| s.skipped),
        delivered,
        deliveries_per_sec: delivered as f64 / (args.warmup_secs + args.chat_secs).max(1e-9),
        latency: merged(outcomes.iter().map(|o| &o.latency)),
        ack_latency: merged(outcomes.iter().map(|o| &o.ack_latency)),
        nodes_cpu_cores: nodes_cores,
        workers_cpu_cores: workers_cores,
        redis_cpu_cores: redis_cores,
        nodes_rss_bytes: after.nodes.rss_bytes,
        lost: settled.lost,
        gaps: settled.gaps,
        duplicates: settled.duplicates,
        behind: settled.behind,
        error_samples: outcomes
            .into_iter()
            .flat_map(|o| o.sent.error_samples)
            .take(5)
            .collect(),
    })
}

async fn storm(
    workers: &mut Workers,
    cluster: &Cluster,
    args: &ScaleArgs,
    layout: &Layout,
) -> anyhow::Result<(StormFigures, SettleOutcome)> {
    let before = sample(cluster, workers);
    let command = Command::Storm {
        jitter_ms: args.reconnect_jitter_ms,
        rate: args.rate / layout.workers as f64,
        timeout_secs: args.storm_timeout_secs,
        drain_secs: args.drain_secs,
    };
    let outcomes = ask(workers, &command, |r| match r {
        Reply::Storm(s) => Some(s),
        _ => None,
    })
    .await?;
    let after = sample(cluster, workers);
    let settled = check(workers, args.drain_secs).await?;
    let node_counters = node_counters(cluster).await;
    let sum = |f: fn(&super::wire::StormOutcome) -> u64| outcomes.iter().map(f).sum::<u64>();
    let figures = StormFigures {
        jitter_ms: args.reconnect_jitter_ms,
        resumed: outcomes.iter().map(|o| o.resumed).sum(),
        not_resumed: outcomes.iter().map(|o| o.not_resumed).sum(),
        failed_attempts: sum(|o| o.failed_attempts),
        secs_to_all_resumed: outcomes
            .iter()
            .map(|o| o.secs_to_all_resumed)
            .fold(0.0, f64::max),
        resume: merged(outcomes.iter().map(|o| &o.resume)),
        not_recovered: sum(|o| o.not_recovered),
        sent: sum(|o| o.sent.sent),
        acked: sum(|o| o.sent.acked),
        errors: sum(|o| o.sent.errors),
        nodes_rss_bytes: after.nodes.rss_bytes,
        nodes_cpu_cores: after.cores_since(&before)[0],
        lost: settled.lost,
        gaps: settled.gaps,
        duplicates: settled.duplicates,
        behind: settled.behind,
        error_samples: outcomes
            .into_iter()
            .flat_map(|o| o.sent.error_samples)
            .take(5)
            .collect(),
        node_counters,
    };
    Ok((figures, settled))
}

/// The seq check: every worker's heads merged (the highest seq per conversation anyone acked
/// or saw), then every worker counts how far its clients are short of them, after waiting up to
/// `wait_secs` for stragglers.
async fn check(workers: &mut Workers, wait_secs: f64) -> anyhow::Result<SettleOutcome> {
    let lists = ask(workers, &Command::Heads, |r| match r {
        Reply::Heads { heads } => Some(heads),
        _ => None,
    })
    .await?;
    let mut heads: Vec<u64> = Vec::new();
    for list in lists {
        heads.resize(heads.len().max(list.len()), 0);
        for (head, seen) in heads.iter_mut().zip(list) {
            *head = (*head).max(seen);
        }
    }
    let command = Command::Settle { heads, wait_secs };
    let settled = ask(workers, &command, |r| match r {
        Reply::Settled(s) => Some(s),
        _ => None,
    })
    .await?;
    Ok(settled
        .into_iter()
        .fold(SettleOutcome::default(), |total, s| SettleOutcome {
            behind: total.behind + s.behind,
            lost: total.lost + s.lost,
            gaps: total.gaps + s.gaps,
            before_joined: total.before_joined + s.before_joined,
            duplicates: total.duplicates + s.duplicates,
            unexpected_disconnects: total.unexpected_disconnects + s.unexpected_disconnects,
        }))
}

/// The counters that explain a delivery missed or a phase's cost: Redis messages published and
/// received, and dropped (by reason) and repaired, waits for the hub, sessions dropped as slow
/// consumers; over the whole step, summed over the nodes that answered.
async fn node_counters(cluster: &Cluster) -> std::collections::BTreeMap<String, f64> {
    const NAMES: [&str; 6] = [
        confab_server::metrics::FANOUT_PUBLISHED_TOTAL,
        confab_server::metrics::FANOUT_RECEIVED_TOTAL,
        confab_server::metrics::FANOUT_REPAIRS_TOTAL,
        confab_server::metrics::FANOUT_DROPPED_TOTAL,
        confab_server::metrics::FANOUT_INBOUND_WAITS_TOTAL,
        confab_server::metrics::SLOW_CONSUMERS_TOTAL,
    ];
    let mut sums = std::collections::BTreeMap::new();
    for url in cluster.urls() {
        let Ok(rest) = crate::rest::Rest::new(&url) else {
            continue;
        };
        let Ok(text) = rest.metrics().await else {
            continue;
        };
        for line in text.lines() {
            let Some((name, value)) = line.rsplit_once(' ') else {
                continue;
            };
            if !NAMES.iter().any(|n| name.starts_with(n)) {
                continue;
            }
            if let Ok(value) = value.parse::<f64>() {
                *sums.entry(name.to_owned()).or_insert(0.0) += value;
            }
        }
    }
    sums
}
