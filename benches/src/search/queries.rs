//! The query mix and the searcher threads that run it against one engine at one concurrency.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::engine::Engine;
use crate::stats::{self, Percentiles};

/// A kind of query. `Typo` (a word with one letter changed) is confab's alone: FTS5 has no
/// fuzzy match, so it is kept out of the compared mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// One of the 50 most frequent words.
    Common,
    /// A word from the least frequent quarter of the vocabulary.
    Rare,
    /// Two words of ranks 50–500, both required.
    TwoWords,
    /// Two of the 30 most frequent words, adjacent, as a quoted phrase.
    Phrase,
    Typo,
}

/// What both engines answer alike.
pub const COMPARED: [Kind; 4] = [Kind::Common, Kind::Rare, Kind::TwoWords, Kind::Phrase];

/// The query text of `kind` (the same syntax means the same thing to both engines).
pub fn text(kind: Kind, words: &[String], rng: &mut StdRng) -> String {
    let n = words.len();
    let pick = |rng: &mut StdRng, from: usize, to: usize| {
        let to = to.min(n).max(1);
        words[rng.random_range(from.min(to - 1)..to)].clone()
    };
    match kind {
        Kind::Common => pick(rng, 0, 50),
        Kind::Rare => pick(rng, n * 3 / 4, n),
        Kind::TwoWords => format!("{} {}", pick(rng, 50, 500), pick(rng, 50, 500)),
        Kind::Phrase => format!("\"{} {}\"", pick(rng, 0, 30), pick(rng, 0, 30)),
        Kind::Typo => typo(&pick_long(words, rng), rng),
    }
}

/// A word of ranks 100–1000 long enough for confab to forgive one typo (5+ letters).
fn pick_long(words: &[String], rng: &mut StdRng) -> String {
    let band: Vec<&String> = words
        .iter()
        .skip(100)
        .take(900)
        .filter(|w| w.len() >= 5)
        .collect();
    if band.is_empty() {
        return words.first().cloned().unwrap_or_default();
    }
    band[rng.random_range(0..band.len())].clone()
}

/// `word` with one inner letter replaced.
fn typo(word: &str, rng: &mut StdRng) -> String {
    let mut chars: Vec<char> = word.chars().collect();
    if chars.len() < 3 {
        return word.to_owned();
    }
    let at = rng.random_range(1..chars.len() - 1);
    let replacement = if chars[at] == 'x' { 'q' } else { 'x' };
    chars[at] = replacement;
    chars.into_iter().collect()
}

/// One run: which queries, how many, how long at most.
#[derive(Debug, Clone, Copy)]
pub struct Plan<'a> {
    pub words: &'a [String],
    pub memberships: &'a [Vec<usize>],
    pub kinds: &'a [Kind],
    pub queries: u64,
    pub max: Duration,
    pub seed: u64,
}

/// Latency and throughput of one engine at one concurrency.
#[derive(Debug, Clone, Serialize)]
pub struct LevelReport {
    pub engine: &'static str,
    pub concurrency: usize,
    pub kinds: Vec<Kind>,
    pub queries: u64,
    pub failed: u64,
    pub wall_secs: f64,
    pub queries_per_sec: f64,
    pub latency: Percentiles,
    /// Hits per query on average (a page holds at most 20).
    pub mean_hits: f64,
}

/// Runs `plan` on `concurrency` searcher threads until `plan.queries` are done or `plan.max`
/// has passed. Thread `t` draws its searchers and queries from `seed + t`, so both engines see
/// the same sequence.
pub fn run<E: Engine>(
    engine: &E,
    concurrency: usize,
    plan: Plan<'_>,
) -> anyhow::Result<LevelReport> {
    let claimed = AtomicU64::new(0);
    let started = Instant::now();
    let deadline = started + plan.max;
    let results: Vec<anyhow::Result<(Histogram<u64>, u64, u64)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..concurrency.max(1))
            .map(|t| {
                let claimed = &claimed;
                scope.spawn(move || searcher(engine, plan, t as u64, claimed, deadline))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a searcher panicked")))
            })
            .collect()
    });
    let wall_secs = started.elapsed().as_secs_f64();
    let mut histogram = stats::new_histogram();
    let (mut hits, mut failed) = (0, 0);
    for result in results {
        let (h, n, f) = result?;
        histogram
            .add(&h)
            .map_err(|err| anyhow::anyhow!("merge histograms: {err:?}"))?;
        hits += n;
        failed += f;
    }
    let queries = histogram.len();
    Ok(LevelReport {
        engine: engine.name(),
        concurrency,
        kinds: plan.kinds.to_vec(),
        queries,
        failed,
        wall_secs,
        queries_per_sec: queries as f64 / wall_secs.max(1e-9),
        latency: Percentiles::of(&histogram),
        mean_hits: hits as f64 / (queries.max(1)) as f64,
    })
}

/// One searcher thread: its histogram, hits and failed queries.
fn searcher<E: Engine>(
    engine: &E,
    plan: Plan<'_>,
    thread: u64,
    claimed: &AtomicU64,
    deadline: Instant,
) -> anyhow::Result<(Histogram<u64>, u64, u64)> {
    let mut worker = engine.worker()?;
    let mut rng = StdRng::seed_from_u64(plan.seed.wrapping_add(thread));
    let mut histogram = stats::new_histogram();
    let (mut hits, mut failed) = (0u64, 0u64);
    while claimed.fetch_add(1, Ordering::Relaxed) < plan.queries && Instant::now() < deadline {
        let person = rng.random_range(0..plan.memberships.len().max(1));
        let conversations = plan.memberships.get(person).map_or(&[][..], Vec::as_slice);
        let kind = plan.kinds[rng.random_range(0..plan.kinds.len())];
        let text = text(kind, plan.words, &mut rng);
        let started = Instant::now();
        match engine.query(&mut worker, conversations, &text) {
            Ok(n) => {
                stats::record(&mut histogram, started.elapsed());
                hits += n as u64;
            }
            Err(err) => {
                if failed == 0 {
                    eprintln!("{}: query {text:?} failed: {err:#}", engine.name());
                }
                failed += 1;
            }
        }
    }
    Ok((histogram, hits, failed))
}
