//! `history`: a conversation of `--messages` messages (1,000,000 by default), seeded once over
//! WebSockets (many connections of the owner, each with a window of sends in flight: this is the
//! durable-ack throughput figure) and reused by later runs against the same server; then paging
//! latency over REST, walking newest to oldest and at random positions.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use futures_util::{SinkExt, StreamExt};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use crate::cli::HistoryArgs;
use crate::conn::{self, Endpoint, prefix};
use crate::report::{HistoryReport, Report};
use crate::rest::Rest;
use crate::stats::{Percentiles, ShardedHistogram, new_histogram, record};

use super::{Env, Snapshot, cpu_between, process_reports};

pub async fn run(env: &Env, args: HistoryArgs) -> anyhow::Result<Report> {
    let token = env.ids.token(0)?;
    let title = format!("bench-history-{}", args.messages);
    let before = env.probe.sample().await;
    let existing = if args.fresh {
        None
    } else {
        env.rest
            .conversations(&token)
            .await?
            .conversations
            .into_iter()
            .filter(|c| c.conversation.title.as_deref() == Some(title.as_str()))
            .max_by_key(|c| c.conversation.last_seq)
    };
    let (conversation, reused) = match existing {
        Some(found) => (found.conversation.id, found.conversation.last_seq),
        None => (env.rest.create_group(&token, &title, &[], 1).await?, 0),
    };
    let to_seed = args.messages.saturating_sub(reused);
    eprintln!(
        "history: conversation {conversation} (tenant {}) has {reused} messages; seeding {to_seed}",
        env.ids.tenant()
    );
    let seed_start = Snapshot::take(&env.probe, None).await;
    let seeded = seed(&env.endpoint, &token, &conversation, to_seed, &args).await?;
    let seed_stop = Snapshot::take(&env.probe, None).await;
    let seed_secs = (seed_stop.at - seed_start.at).as_secs_f64();
    eprintln!(
        "history: seeded {} messages in {seed_secs:.2} s",
        seeded.acked
    );

    let walk = walk(&env.rest, &token, &conversation, &args).await;
    let last_seq = reused + seeded.acked;
    let start = Snapshot::take(&env.probe, None).await;
    let random = random_pages(&env.rest, &token, &conversation, last_seq, &args).await;
    let stop = Snapshot::take(&env.probe, None).await;
    let end = env.probe.sample().await;
    let random_secs = (stop.at - start.at).as_secs_f64();

    let history = HistoryReport {
        messages: last_seq,
        reused,
        seeded: seeded.acked,
        seed_secs,
        seed_acks_per_sec: if seeded.acked > 0 {
            seeded.acked as f64 / seed_secs
        } else {
            0.0
        },
        seed_ack_latency: seeded.latency,
        seed_connections: args.seed_connections,
        seed_connections_failed: seeded.failed,
        seed_server_cpu_us_per_ack: cpu_between(seed_start.server(), seed_stop.server())
            .filter(|_| seeded.acked > 0)
            .map(|cpu| cpu * 1e6 / seeded.acked as f64),
        page_size: args.page_size,
        walk_pages: walk.pages,
        walk_messages: walk.messages,
        walk_latency: walk.latency,
        random_pages: random.pages,
        random_pages_per_sec: random.pages as f64 / random_secs,
        random_latency: random.latency,
        errors: seeded.errors + walk.errors + random.errors,
    };
    let (server, client) = process_reports(&env.probe, before, None, end, 0, (&start, &stop));
    Ok(Report {
        scenario: "history",
        params: serde_json::to_value(&args)?,
        connections: None,
        traffic: None,
        server,
        client,
        churn: None,
        history: Some(history),
        cluster: None,
        media: None,
        flood: None,
        topologies: None,
    })
}

struct Seeded {
    acked: u64,
    errors: u64,
    /// Connections that failed (and sent nothing more).
    failed: u64,
    latency: Percentiles,
}

/// What the seeding connections share.
struct Seeder {
    conversation: String,
    count: u64,
    window: usize,
    nonce: String,
    padding: String,
    /// The next message to send.
    next: AtomicU64,
    acked: AtomicU64,
    errors: AtomicU64,
    latency: ShardedHistogram,
}

impl Seeder {
    /// One seeding connection: sends until all `count` messages are taken, keeping `window`
    /// in flight, and accounts for their acks.
    async fn connection(
        &self,
        endpoint: &Endpoint,
        token: &str,
        index: usize,
    ) -> anyhow::Result<()> {
        let mut ws = endpoint.connect(index, token).await?;
        conn::expect(&mut ws, prefix::WELCOME).await?;
        let mut in_flight: VecDeque<Instant> = VecDeque::with_capacity(self.window);
        loop {
            let mut fed = false;
            while in_flight.len() < self.window {
                let n = self.next.fetch_add(1, Ordering::Relaxed);
                if n >= self.count {
                    break;
                }
                let (conversation, nonce, padding) =
                    (&self.conversation, &self.nonce, &self.padding);
                let frame = format!(
                    r#"{{"type":"send","conversation":"{conversation}","client_msg_id":"{nonce}-{n}","body":"history message {n} {padding}"}}"#
                );
                ws.feed(Message::Text(frame.into())).await?;
                in_flight.push_back(Instant::now());
                fed = true;
            }
            if fed {
                ws.flush().await?;
            }
            if in_flight.is_empty() {
                break;
            }
            match ws.next().await {
                Some(Ok(Message::Text(text))) => self.answered(index, &text, &mut in_flight),
                Some(Ok(Message::Close(frame))) => bail!("seeding connection closed: {frame:?}"),
                Some(Ok(_)) => {}
                Some(Err(err)) => return Err(err.into()),
                None => bail!("seeding connection ended"),
            }
        }
        conn::close(ws).await;
        anyhow::Ok(())
    }

    /// Accounts for a frame received by seeding connection `index`: an ack or an error
    /// answers its oldest send in flight.
    fn answered(&self, index: usize, text: &str, in_flight: &mut VecDeque<Instant>) {
        let is_ack = text.starts_with(prefix::ACK);
        if !is_ack && !text.starts_with(prefix::ERROR) {
            return;
        }
        let Some(sent) = in_flight.pop_front() else {
            return;
        };
        if is_ack {
            self.latency.record(index, sent.elapsed());
            self.acked.fetch_add(1, Ordering::Relaxed);
        } else if self.errors.fetch_add(1, Ordering::Relaxed) < 5 {
            eprintln!("seed error: {text}");
        }
    }
}

/// Sends `count` messages over `--seed-connections` connections of the owner, each keeping
/// `--seed-window` sends in flight (the server answers one connection's commands in order).
async fn seed(
    endpoint: &Arc<Endpoint>,
    token: &str,
    conversation: &str,
    count: u64,
    args: &HistoryArgs,
) -> anyhow::Result<Seeded> {
    if count == 0 {
        return Ok(Seeded {
            acked: 0,
            errors: 0,
            failed: 0,
            latency: Percentiles::default(),
        });
    }
    let seeder = Arc::new(Seeder {
        conversation: conversation.to_owned(),
        count,
        window: args.seed_window.max(1),
        nonce: format!("h{:x}", rand::random::<u32>()),
        padding: "x".repeat(args.body_bytes.saturating_sub(30)),
        next: AtomicU64::new(0),
        acked: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        latency: ShardedHistogram::new(16),
    });
    let mut tasks = JoinSet::new();
    for index in 0..args.seed_connections.max(1) {
        let (seeder, endpoint, token) = (seeder.clone(), endpoint.clone(), token.to_owned());
        tasks.spawn(async move { seeder.connection(&endpoint, &token, index).await });
    }
    let (acked, errors, latency) = (&seeder.acked, &seeder.errors, &seeder.latency);
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut last = 0;
    let mut failures = 0u64;
    loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                None => break,
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(err))) => {
                    failures += 1;
                    eprintln!("seeding connection failed: {err:#}");
                }
                Some(Err(err)) => {
                    failures += 1;
                    eprintln!("seeding task failed: {err}");
                }
            },
            _ = tick.tick() => {
                let now = acked.load(Ordering::Relaxed);
                eprintln!(
                    "[{:>6.1}s] seeding: {now} of {count} acked (+{}/s)",
                    started.elapsed().as_secs_f64(),
                    now - last
                );
                last = now;
            }
        }
    }
    Ok(Seeded {
        acked: acked.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed) + failures,
        failed: failures,
        latency: Percentiles::of(&latency.merged()),
    })
}

struct Paged {
    pages: u64,
    messages: u64,
    errors: u64,
    latency: Percentiles,
}

/// Pages from the newest message back to the oldest (or until `--walk-secs`).
async fn walk(rest: &Rest, token: &str, conversation: &str, args: &HistoryArgs) -> Paged {
    let deadline = Instant::now() + Duration::from_secs_f64(args.walk_secs);
    let mut histogram = new_histogram();
    let (mut pages, mut messages, mut errors) = (0, 0, 0);
    let mut before = None;
    let mut last_progress = Instant::now();
    while Instant::now() < deadline {
        if last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            eprintln!("walk: {pages} pages, {messages} messages, next before {before:?}");
        }
        let begun = Instant::now();
        match rest
            .page(token, conversation, before, None, args.page_size)
            .await
        {
            Ok(page) => {
                record(&mut histogram, begun.elapsed());
                pages += 1;
                messages += page.messages.len() as u64;
                match page.messages.first() {
                    Some(oldest) if page.has_more => before = Some(oldest.seq),
                    _ => break,
                }
            }
            Err(err) => {
                errors += 1;
                eprintln!("page failed: {err:#}");
                break;
            }
        }
    }
    Paged {
        pages,
        messages,
        errors,
        latency: Percentiles::of(&histogram),
    }
}

/// Pages ending at random positions, `--concurrency` at a time, for `--duration-secs`.
async fn random_pages(
    rest: &Rest,
    token: &str,
    conversation: &str,
    last_seq: u64,
    args: &HistoryArgs,
) -> Paged {
    let deadline = Instant::now() + Duration::from_secs_f64(args.duration_secs);
    let mut tasks = JoinSet::new();
    for _ in 0..args.concurrency.max(1) {
        let (rest, token, conversation) = (rest.clone(), token.to_owned(), conversation.to_owned());
        let page_size = args.page_size;
        tasks.spawn(async move {
            let mut histogram = new_histogram();
            let (mut pages, mut messages, mut errors) = (0u64, 0u64, 0u64);
            while Instant::now() < deadline && last_seq > 0 {
                let before = rand::random_range(1..=last_seq) + 1;
                let begun = Instant::now();
                match rest
                    .page(&token, &conversation, Some(before), None, page_size)
                    .await
                {
                    Ok(page) => {
                        record(&mut histogram, begun.elapsed());
                        pages += 1;
                        messages += page.messages.len() as u64;
                    }
                    Err(err) => {
                        errors += 1;
                        if errors <= 3 {
                            eprintln!("page failed: {err:#}");
                        }
                    }
                }
            }
            (histogram, pages, messages, errors)
        });
    }
    eprintln!(
        "random pages: {} workers for {:.0} s",
        args.concurrency.max(1),
        args.duration_secs
    );
    let mut total = new_histogram();
    let (mut pages, mut messages, mut errors) = (0, 0, 0);
    while let Some(joined) = tasks.join_next().await {
        let Ok((histogram, p, m, e)) = joined else {
            errors += 1;
            continue;
        };
        total.add(&histogram).expect("histograms share bounds");
        (pages, messages, errors) = (pages + p, messages + m, errors + e);
    }
    Paged {
        pages,
        messages,
        errors,
        latency: Percentiles::of(&total),
    }
}
