//! `confab-bench search` (issue 13): confab's search index against SQLite FTS5 on the same
//! generated corpus, with no server. Both engines index the same messages (in batches of the
//! same size, into a temp dir), then answer the same query mix, each query within a random
//! person's conversations, at several concurrencies.
//!
//! - [`corpus`]: the seeded messages, vocabulary and memberships.
//! - [`engine`]: the two engines behind one trait.
//! - [`queries`]: the query mix and the searcher threads.
//! - [`report`]: the report, the sanity checks and the goals.

pub mod corpus;
pub mod engine;
pub mod queries;
pub mod report;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::cli::SearchArgs;
use corpus::{Corpus, Message, Shape};
use engine::{Confab, Engine, Fts5};
use queries::{COMPARED, Kind, LevelReport, Plan};
use report::{CorpusReport, IndexingReport, SearchReport};

/// Runs the scenario on the calling thread (not inside an async runtime).
pub fn run(args: &SearchArgs) -> anyhow::Result<SearchReport> {
    if args.messages == 0 || args.conversations == 0 || args.people == 0 || args.batch == 0 {
        bail!("--messages, --conversations, --people and --batch must be positive");
    }
    if args.vocabulary < 100 {
        bail!("--vocabulary must be at least 100 words");
    }
    if args.concurrency.is_empty() || args.concurrency.contains(&0) {
        bail!("--concurrency needs one or more positive thread counts");
    }
    let dir = match &args.dir {
        Some(parent) => tempfile::tempdir_in(parent),
        None => tempfile::tempdir(),
    }
    .context("create the temp dir")?;
    let started = Instant::now();
    let mut corpus = Corpus::new(Shape {
        messages: args.messages,
        conversations: args.conversations,
        people: args.people,
        vocabulary: args.vocabulary,
        seed: args.seed,
    });
    let messages = generate(&mut corpus, args.batch);
    let corpus_report = CorpusReport::of(&corpus, &messages, started.elapsed());
    eprintln!(
        "search: {} messages generated in {:.1} s",
        corpus_report.messages, corpus_report.generate_secs
    );
    let mut confab = Confab::open(&dir.path().join("confab"), args.commit_every)?;
    let confab_indexing = index(&mut confab, &messages, dir.path().join("confab"))?;
    let mut fts5 = Fts5::create(&dir.path().join("fts5.db"))?;
    let fts5_indexing = index(&mut fts5, &messages, dir.path().join("fts5.db"))?;
    drop(messages);
    let sanity = report::sanity(&confab, &fts5, &corpus, args.seed)?;
    let mut levels = Vec::new();
    for &concurrency in &args.concurrency {
        for (engine, level) in [
            (
                "confab",
                measure(&confab, concurrency, args, &corpus, &COMPARED)?,
            ),
            (
                "sqlite-fts5",
                measure(&fts5, concurrency, args, &corpus, &COMPARED)?,
            ),
        ] {
            eprintln!("search: {engine} x{concurrency}: {}", level.latency);
            levels.push(level);
        }
    }
    let mut kinds = Vec::new();
    if args.by_kind {
        for kind in COMPARED {
            let level = measure(&confab, 1, args, &corpus, &[kind])?;
            eprintln!("search: confab x1 {kind:?} alone: {}", level.latency);
            kinds.push(level);
        }
    }
    let typo = measure(&confab, 1, args, &corpus, &[Kind::Typo])?;
    Ok(SearchReport {
        kinds,
        ..SearchReport::new(
            args.clone(),
            corpus_report,
            vec![confab_indexing, fts5_indexing],
            levels,
            typo,
            sanity,
            started.elapsed(),
        )
    })
}

/// The whole corpus in memory, so that generating it is outside every timed phase.
fn generate(corpus: &mut Corpus, batch: usize) -> Vec<Vec<Message>> {
    let mut batches = Vec::new();
    loop {
        let next = corpus.batch(batch);
        if next.is_empty() {
            return batches;
        }
        batches.push(next);
    }
}

/// Indexes every batch and commits: messages/s over the whole, final commit included.
fn index<E: Engine>(
    engine: &mut E,
    batches: &[Vec<Message>],
    path: impl AsRef<Path>,
) -> anyhow::Result<IndexingReport> {
    let messages: usize = batches.iter().map(Vec::len).sum();
    let cpu_before = crate::probe::own();
    let started = Instant::now();
    for batch in batches {
        engine.index(batch)?;
    }
    let before_commit = started.elapsed();
    engine.finish()?;
    let wall = started.elapsed();
    let cpu_secs = cpu_before
        .zip(crate::probe::own())
        .map(|(before, after)| after.cpu_seconds - before.cpu_seconds);
    engine.settle()?;
    // Less the two seconds of quiet that tell merges are over.
    let settled = (started.elapsed() - wall).saturating_sub(std::time::Duration::from_secs(2));
    let report = IndexingReport {
        engine: engine.name(),
        messages: messages as u64,
        wall_secs: wall.as_secs_f64(),
        final_commit_secs: (wall - before_commit).as_secs_f64(),
        messages_per_sec: messages as f64 / wall.as_secs_f64().max(1e-9),
        cpu_secs,
        messages_per_cpu_sec: cpu_secs.map(|cpu| messages as f64 / cpu.max(1e-9)),
        merges_settled_secs: settled.as_secs_f64(),
        disk_bytes: disk_bytes(path.as_ref()),
    };
    eprintln!(
        "search: {} indexed {} messages in {:.1} s ({:.0}/s; {:.0}/s of CPU)",
        report.engine,
        report.messages,
        report.wall_secs,
        report.messages_per_sec,
        report.messages_per_cpu_sec.unwrap_or(f64::NAN)
    );
    Ok(report)
}

fn measure<E: Engine>(
    engine: &E,
    concurrency: usize,
    args: &SearchArgs,
    corpus: &Corpus,
    kinds: &[Kind],
) -> anyhow::Result<LevelReport> {
    queries::run(
        engine,
        concurrency,
        Plan {
            words: &corpus.words,
            memberships: &corpus.memberships,
            kinds,
            queries: args.queries,
            max: Duration::from_secs_f64(args.max_secs),
            seed: args.seed.wrapping_mul(31).wrapping_add(concurrency as u64),
        },
    )
}

/// Bytes of a file, or of the files under a directory (WAL and shared memory included for a
/// database file).
fn disk_bytes(path: &Path) -> u64 {
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    if path.is_file() {
        let sibling = |suffix: &str| {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            size(Path::new(&name))
        };
        return size(path) + sibling("-wal") + sibling("-shm");
    }
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| size(&e.path()))
                .sum()
        })
        .unwrap_or(0)
}

/// A generator seeded for the sanity checks' choices.
fn seeded(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed ^ 0x5eed)
}
