//! The scenario's report: corpus, indexing, query levels side by side, sanity checks that the
//! engines find the same things, and issue 13's goals, met or missed.

use std::time::Duration;

use rand::Rng;
use serde::Serialize;

use super::corpus::{Corpus, Message};
use super::engine::Engine;
use super::queries::{Kind, LevelReport};
use crate::cli::SearchArgs;

/// Issue 13's goals for confab.
const GOAL_INDEXING_PER_SEC: f64 = 30_000.0;
const GOAL_P99_MS: f64 = 25.0;
const GOAL_CONCURRENCY: usize = 10;

#[derive(Debug, Clone, Serialize)]
pub struct CorpusReport {
    pub messages: u64,
    pub conversations: usize,
    pub people: usize,
    pub vocabulary: usize,
    pub mean_words: f64,
    pub max_words: usize,
    pub mean_memberships: f64,
    pub generate_secs: f64,
}

impl CorpusReport {
    pub fn of(corpus: &Corpus, batches: &[Vec<Message>], took: Duration) -> CorpusReport {
        let (mut messages, mut words, mut max_words) = (0u64, 0u64, 0usize);
        for m in batches.iter().flatten() {
            let n = m.body.split(' ').count();
            messages += 1;
            words += n as u64;
            max_words = max_words.max(n);
        }
        let memberships: usize = corpus.memberships.iter().map(Vec::len).sum();
        CorpusReport {
            messages,
            conversations: corpus.shape.conversations,
            people: corpus.shape.people,
            vocabulary: corpus.words.len(),
            mean_words: words as f64 / messages.max(1) as f64,
            max_words,
            mean_memberships: memberships as f64 / corpus.memberships.len().max(1) as f64,
            generate_secs: took.as_secs_f64(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct IndexingReport {
    pub engine: &'static str,
    pub messages: u64,
    /// Every batch plus the final commit.
    pub wall_secs: f64,
    pub final_commit_secs: f64,
    pub messages_per_sec: f64,
    /// CPU time of the whole process over the same span (every thread: confab indexes on
    /// several, FTS5 on one), and messages per CPU second: the comparison a busy host does not
    /// skew, where wall time favours whichever engine has more idle cores.
    pub cpu_secs: Option<f64>,
    pub messages_per_cpu_sec: Option<f64>,
    /// After the final commit, until background merges were done and loaded (confab; FTS5
    /// merges inside its commits). Queries run after this.
    pub merges_settled_secs: f64,
    pub disk_bytes: u64,
}

/// Exact hits of one word, counted by both engines.
#[derive(Debug, Clone, Serialize)]
pub struct SanityCheck {
    pub what: String,
    pub word: String,
    pub conversations: usize,
    pub confab: usize,
    pub fts5: usize,
    pub agree: bool,
}

/// Most hits a sanity check counts.
const SANITY_CAP: usize = 20_000;

/// Counts a common, a middling and a rare word in both engines: within one person's
/// conversations, and the rare one within all.
pub fn sanity<A: Engine, B: Engine>(
    confab: &A,
    fts5: &B,
    corpus: &Corpus,
    seed: u64,
) -> anyhow::Result<Vec<SanityCheck>> {
    let mut rng = super::seeded(seed);
    let words = &corpus.words;
    let n = words.len();
    let person = rng.random_range(0..corpus.memberships.len().max(1));
    let mine = corpus.memberships.get(person).cloned().unwrap_or_default();
    let all: Vec<usize> = (0..corpus.shape.conversations).collect();
    let checks = [
        (
            "common word, one person's conversations",
            10.min(n - 1),
            &mine,
        ),
        (
            "middling word, one person's conversations",
            200.min(n - 1),
            &mine,
        ),
        (
            "rare word, every conversation",
            (n * 7 / 8).min(n - 1),
            &all,
        ),
    ];
    checks
        .into_iter()
        .map(
            |(what, rank, conversations)| -> anyhow::Result<SanityCheck> {
                let word = &words[rank];
                let a = confab
                    .count(conversations, word, SANITY_CAP)?
                    .min(SANITY_CAP);
                let b = fts5.count(conversations, word, SANITY_CAP)?;
                let agree = a > 0 && b > 0 && a.abs_diff(b) <= 2.max(a.max(b) / 10);
                Ok(SanityCheck {
                    what: what.to_owned(),
                    word: word.clone(),
                    conversations: conversations.len(),
                    confab: a,
                    fts5: b,
                    agree,
                })
            },
        )
        .collect()
}

#[derive(Debug, Clone, Serialize)]
pub struct Goal {
    pub goal: String,
    pub measured: String,
    pub met: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct SearchReport {
    pub scenario: &'static str,
    pub params: SearchArgs,
    pub corpus: CorpusReport,
    pub indexing: Vec<IndexingReport>,
    /// The compared mix, each concurrency, confab then FTS5.
    pub queries: Vec<LevelReport>,
    /// With `--by-kind`: confab, one searcher, each kind of the mix alone.
    pub kinds: Vec<LevelReport>,
    /// Confab alone: a word with one letter changed (FTS5 has no fuzzy match).
    pub typo: LevelReport,
    pub sanity: Vec<SanityCheck>,
    pub goals: Vec<Goal>,
    pub warnings: Vec<String>,
    pub wall_secs: f64,
}

impl SearchReport {
    pub fn new(
        params: SearchArgs,
        corpus: CorpusReport,
        indexing: Vec<IndexingReport>,
        queries: Vec<LevelReport>,
        typo: LevelReport,
        sanity: Vec<SanityCheck>,
        took: Duration,
    ) -> SearchReport {
        let mut report = SearchReport {
            scenario: "search",
            params,
            corpus,
            indexing,
            queries,
            kinds: Vec::new(),
            typo,
            sanity,
            goals: Vec::new(),
            warnings: Vec::new(),
            wall_secs: took.as_secs_f64(),
        };
        report.goals = report.goals();
        report.warnings = report.warnings();
        report
    }

    fn indexing_of(&self, engine: &str) -> Option<&IndexingReport> {
        self.indexing.iter().find(|r| r.engine == engine)
    }

    /// The level of `engine` at `concurrency` (the goal's, else the highest measured).
    fn level_of(&self, engine: &str, concurrency: usize) -> Option<&LevelReport> {
        let of_engine = || self.queries.iter().filter(|l| l.engine == engine);
        of_engine()
            .find(|l| l.concurrency == concurrency)
            .or_else(|| of_engine().max_by_key(|l| l.concurrency))
    }

    fn goals(&self) -> Vec<Goal> {
        let mut goals = Vec::new();
        if let (Some(c), Some(f)) = (self.indexing_of("confab"), self.indexing_of("sqlite-fts5")) {
            goals.push(Goal {
                goal: format!("confab indexes ≥ {GOAL_INDEXING_PER_SEC:.0} messages/s"),
                measured: format!("{:.0}/s", c.messages_per_sec),
                met: c.messages_per_sec >= GOAL_INDEXING_PER_SEC,
            });
            goals.push(Goal {
                goal: "confab indexes faster than FTS5".to_owned(),
                measured: format!("{:.0}/s vs {:.0}/s", c.messages_per_sec, f.messages_per_sec),
                met: c.messages_per_sec > f.messages_per_sec,
            });
        }
        if let (Some(c), Some(f)) = (
            self.level_of("confab", GOAL_CONCURRENCY),
            self.level_of("sqlite-fts5", GOAL_CONCURRENCY),
        ) {
            goals.push(Goal {
                goal: format!(
                    "confab p99 < {GOAL_P99_MS} ms at {} searchers",
                    c.concurrency
                ),
                measured: format!("{:.2} ms", c.latency.p99_ms),
                met: c.latency.p99_ms < GOAL_P99_MS,
            });
            goals.push(Goal {
                goal: format!("confab p99 below FTS5's at {} searchers", c.concurrency),
                measured: format!("{:.2} ms vs {:.2} ms", c.latency.p99_ms, f.latency.p99_ms),
                met: c.latency.p99_ms < f.latency.p99_ms,
            });
        }
        goals
    }

    fn warnings(&self) -> Vec<String> {
        let mut warnings: Vec<String> = self
            .sanity
            .iter()
            .filter(|c| !c.agree)
            .map(|c| {
                format!(
                    "the engines disagree on {:?} ({}): confab {} hits, FTS5 {}",
                    c.word, c.what, c.confab, c.fts5
                )
            })
            .collect();
        for level in self.queries.iter().filter(|l| l.engine == "confab") {
            let Some(other) = self
                .queries
                .iter()
                .find(|o| o.engine != "confab" && o.concurrency == level.concurrency)
            else {
                continue;
            };
            let (a, b) = (level.mean_hits, other.mean_hits);
            if a.max(b) > 0.0 && a.min(b) / a.max(b) < 0.5 {
                warnings.push(format!(
                    "mean hits per query differ at {} searchers: confab {a:.1}, FTS5 {b:.1}",
                    level.concurrency
                ));
            }
        }
        for level in self
            .queries
            .iter()
            .chain([&self.typo])
            .filter(|l| l.failed > 0)
        {
            warnings.push(format!(
                "{} queries of {} failed",
                level.failed, level.engine
            ));
        }
        warnings
    }

    pub fn print(&self) {
        println!("== confab-bench search ==");
        let c = &self.corpus;
        println!(
            "{} messages ({:.1} words on average, at most {}), {} conversations, {} people \
             ({:.1} conversations each), {} words of vocabulary",
            c.messages,
            c.mean_words,
            c.max_words,
            c.conversations,
            c.people,
            c.mean_memberships,
            c.vocabulary
        );
        for r in &self.indexing {
            println!(
                "indexing {:<12} {:>9.0} messages/s, {:>9.0} per CPU second ({:.1} s, final commit {:.2} s, merges done {:.1} s later, {:.0} MiB on disk)",
                r.engine,
                r.messages_per_sec,
                r.messages_per_cpu_sec.unwrap_or(f64::NAN),
                r.wall_secs,
                r.final_commit_secs,
                r.merges_settled_secs,
                r.disk_bytes as f64 / 1_048_576.0
            );
        }
        println!("queries (compared mix): engine, searchers, queries/s, p50/p99/max ms, hits");
        for l in self.queries.iter().chain(&self.kinds).chain([&self.typo]) {
            println!(
                "  {:<12} x{:<3} {:>8.0}/s  {:>7.2} {:>7.2} {:>8.2}  {:>5.1}{}",
                l.engine,
                l.concurrency,
                l.queries_per_sec,
                l.latency.p50_ms,
                l.latency.p99_ms,
                l.latency.max_ms,
                l.mean_hits,
                match l.kinds.as_slice() {
                    [Kind::Typo] => "  (typo query, confab only)".to_owned(),
                    [kind] => format!("  ({kind:?} alone)"),
                    _ => String::new(),
                }
            );
        }
        for s in &self.sanity {
            println!(
                "sanity: {:?} ({}): confab {}, FTS5 {}{}",
                s.word,
                s.what,
                s.confab,
                s.fts5,
                if s.agree { "" } else { "  DISAGREE" }
            );
        }
        for g in &self.goals {
            let verdict = if g.met { "met" } else { "MISSED" };
            println!("goal: {}: {} ({verdict})", g.goal, g.measured);
        }
        for w in &self.warnings {
            println!("WARNING: {w}");
        }
        match serde_json::to_string(self) {
            Ok(line) => println!("{line}"),
            Err(err) => eprintln!("cannot encode the report: {err}"),
        }
    }
}
