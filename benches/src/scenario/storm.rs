//! `storm`: the chat load, plus connect → `welcome` → `join` → `joined` → close cycles at a
//! fixed rate by the same users (extra devices), which must not disturb the chat traffic.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::cli::StormArgs;
use crate::conn::{self, Endpoint, OPEN_TIMEOUT, prefix};
use crate::report::{ChurnReport, Report};
use crate::stats::{Percentiles, new_histogram, record};

use super::{Env, chat, run_traffic};

pub async fn run(env: &Env, args: StormArgs) -> anyhow::Result<Report> {
    let params = serde_json::to_value(&args)?;
    let mut spec = chat::spec(env, "storm", &args.chat, params, 1).await?;
    let churn = Churn {
        endpoint: env.endpoint.clone(),
        tokens: spec.tokens.clone(),
        conversations: spec.conversations.clone(),
        members: spec
            .plans
            .iter()
            .map(|p| (p.user, p.conversation))
            .collect(),
        rate: args.churn_rate,
        concurrency: args.churn_concurrency.max(1),
    };
    spec.side = Some(Box::new(move |stop| tokio::spawn(churn.run(stop))));
    run_traffic(env, spec).await
}

struct Churn {
    endpoint: Arc<Endpoint>,
    tokens: Arc<Vec<String>>,
    conversations: Arc<Vec<Arc<str>>>,
    /// (user, conversation) pairs to pick from.
    members: Vec<(usize, usize)>,
    rate: f64,
    concurrency: usize,
}

struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    latency: Mutex<hdrhistogram::Histogram<u64>>,
    errors: Mutex<Vec<String>>,
}

impl Churn {
    /// Runs cycles at `rate` until `stop`, then waits (bounded) for those in flight.
    async fn run(self, stop: CancellationToken) -> ChurnReport {
        let tally = Arc::new(Tally {
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            latency: Mutex::new(new_histogram()),
            errors: Mutex::new(Vec::new()),
        });
        let gate = Arc::new(Semaphore::new(self.concurrency));
        let mut tasks = JoinSet::new();
        let (mut attempted, mut skipped) = (0u64, 0u64);
        let started = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        while !self.members.is_empty() {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            let due = (self.rate * started.elapsed().as_secs_f64()) as u64;
            while attempted < due {
                attempted += 1;
                let Ok(permit) = gate.clone().try_acquire_owned() else {
                    skipped += 1;
                    continue;
                };
                let (user, conversation) = self.members[rand::random_range(0..self.members.len())];
                let endpoint = self.endpoint.clone();
                let token = self.tokens[user].clone();
                let conversation = self.conversations[conversation].clone();
                let tally = tally.clone();
                let index = attempted as usize;
                tasks.spawn(async move {
                    tally.cycle(&endpoint, index, &token, &conversation).await;
                    drop(permit);
                });
            }
            while tasks.try_join_next().is_some() {}
        }
        let elapsed = started.elapsed().as_secs_f64();
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        tasks.abort_all();
        let ok = tally.ok.load(Ordering::Relaxed);
        ChurnReport {
            target_rate_per_sec: self.rate,
            attempted,
            ok,
            failed: tally.failed.load(Ordering::Relaxed),
            skipped,
            rate_per_sec: if elapsed > 0.0 {
                ok as f64 / elapsed
            } else {
                0.0
            },
            latency: Percentiles::of(&tally.latency.lock().unwrap_or_else(|e| e.into_inner())),
            error_samples: tally
                .errors
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }
}

impl Tally {
    /// One connect, join and close, timed.
    async fn cycle(&self, endpoint: &Endpoint, index: usize, token: &str, conversation: &str) {
        let begun = Instant::now();
        let opened = tokio::time::timeout(OPEN_TIMEOUT, async {
            let mut ws = endpoint.connect(index, token).await?;
            conn::expect(&mut ws, prefix::WELCOME).await?;
            conn::join(&mut ws, conversation).await?;
            anyhow::Ok(ws)
        })
        .await;
        match opened {
            Ok(Ok(ws)) => {
                record(
                    &mut self.latency.lock().unwrap_or_else(|e| e.into_inner()),
                    begun.elapsed(),
                );
                self.ok.fetch_add(1, Ordering::Relaxed);
                conn::close(ws).await;
            }
            Ok(Err(err)) => self.fail(format!("{err:#}")),
            Err(_) => self.fail("connect timed out".to_owned()),
        }
    }

    fn fail(&self, reason: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        if errors.len() < 5 {
            errors.push(reason);
        }
    }
}
