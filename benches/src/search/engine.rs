//! The two engines behind one trait: confab's [`SearchIndex`] and SQLite FTS5, each in a temp
//! dir, indexing the same messages and answering the same queries within a searcher's
//! conversations.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context;
use confab_search::{IndexEvent, Search, SearchIndex, Sort, Writers};
use rusqlite::{Connection, params_from_iter};

use super::corpus::Message;

/// Hits per query (a page of results).
pub const PAGE: usize = 20;

const TENANT: &str = "bench";

/// An engine under test. `Worker` is what one searcher thread holds (FTS5: its connection).
pub trait Engine: Sync {
    type Worker;
    fn name(&self) -> &'static str;
    /// Indexes one batch (visible after [`Engine::finish`] at the latest).
    fn index(&mut self, batch: &[Message]) -> anyhow::Result<()>;
    /// Commits what was indexed.
    fn finish(&mut self) -> anyhow::Result<()>;
    /// Waits for work the engine does after its commit (merges) and makes its result
    /// searchable, so that queries measure the index as it stays.
    fn settle(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
    fn worker(&self) -> anyhow::Result<Self::Worker>;
    /// The first page of hits of `text` within `conversations`: how many.
    fn query(
        &self,
        worker: &mut Self::Worker,
        conversations: &[usize],
        text: &str,
    ) -> anyhow::Result<usize>;
    /// Every hit of one exact word (`word` must be a single token) within `conversations`,
    /// counting at most `cap`.
    fn count(&self, conversations: &[usize], word: &str, cap: usize) -> anyhow::Result<usize>;
}

pub fn conversation_name(c: usize) -> String {
    format!("c{c}")
}

/// Confab's index on disk, fed through `apply` and committed every `commit_every` messages.
pub struct Confab {
    index: SearchIndex,
    dir: std::path::PathBuf,
    commit_every: u64,
    uncommitted: u64,
}

impl Confab {
    pub fn open(dir: &Path, commit_every: u64) -> anyhow::Result<Confab> {
        Ok(Confab {
            // Bulk loading, as a reindex does (the live path commits every second with one thread).
            index: SearchIndex::open_with_budget(dir, 50 * 1024 * 1024, Writers::Bulk)
                .context("open the confab index")?,
            dir: dir.to_owned(),
            commit_every: commit_every.max(1),
            uncommitted: 0,
        })
    }

    fn search(
        &self,
        conversations: &[usize],
        text: &str,
        offset: usize,
        limit: usize,
    ) -> anyhow::Result<(usize, bool)> {
        let names: Vec<String> = conversations
            .iter()
            .map(|&c| conversation_name(c))
            .collect();
        let parsed = confab_search::query::parse(text)?;
        let cursor = (offset > 0).then(|| offset.to_string());
        let hits = self.index.search(&Search {
            tenant: TENANT,
            conversations: &names,
            query: &parsed,
            sort: Sort::Relevance,
            limit,
            cursor: cursor.as_deref(),
        })?;
        Ok((hits.hits.len(), hits.next_cursor.is_some()))
    }
}

impl Engine for Confab {
    type Worker = ();

    fn name(&self) -> &'static str {
        "confab"
    }

    fn index(&mut self, batch: &[Message]) -> anyhow::Result<()> {
        let events: Vec<IndexEvent> = batch
            .iter()
            .map(|m| IndexEvent::Posted {
                tenant: TENANT.to_owned(),
                conversation: conversation_name(m.conversation),
                id: m.id.clone(),
                seq: m.seq,
                author: format!("u{}", m.author),
                body: m.body.clone(),
                ts: m.ts,
                attachments: false,
            })
            .collect();
        self.index.apply(events)?;
        self.uncommitted += batch.len() as u64;
        if self.uncommitted >= self.commit_every {
            self.finish()?;
        }
        Ok(())
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        self.index.commit()?;
        self.uncommitted = 0;
        Ok(())
    }

    /// tantivy merges segments on background threads after a commit, and a searcher sees the
    /// merged ones after the next commit: wait until the committed segment list has not
    /// changed for two seconds (at most a minute), then commit.
    fn settle(&mut self) -> anyhow::Result<()> {
        let segments = || -> String {
            std::fs::read_to_string(self.dir.join("meta.json"))
                .ok()
                .and_then(|meta| serde_json::from_str::<serde_json::Value>(&meta).ok())
                .map(|meta| meta["segments"].to_string())
                .unwrap_or_default()
        };
        let started = std::time::Instant::now();
        let (mut last, mut since) = (segments(), std::time::Instant::now());
        while since.elapsed() < std::time::Duration::from_secs(2)
            && started.elapsed() < std::time::Duration::from_secs(60)
        {
            std::thread::sleep(std::time::Duration::from_millis(100));
            let now = segments();
            if now != last {
                (last, since) = (now, std::time::Instant::now());
            }
        }
        self.index.commit()?;
        Ok(())
    }

    fn worker(&self) -> anyhow::Result<()> {
        Ok(())
    }

    fn query(&self, _: &mut (), conversations: &[usize], text: &str) -> anyhow::Result<usize> {
        Ok(self.search(conversations, text, 0, PAGE)?.0)
    }

    fn count(&self, conversations: &[usize], word: &str, cap: usize) -> anyhow::Result<usize> {
        // A quoted word is an exact term (a plain word also matches near misses).
        let text = format!("\"{word}\"");
        let mut total = 0;
        loop {
            let (n, more) = self.search(conversations, &text, total, confab_search::MAX_LIMIT)?;
            total += n;
            if !more || total >= cap {
                return Ok(total);
            }
        }
    }
}

/// SQLite FTS5: a regular table of messages and an external-content FTS5 table over its body
/// (`porter unicode61`), in one file, WAL, `synchronous=NORMAL` (as a server would run it).
pub struct Fts5 {
    path: Arc<Path>,
    /// The writer's connection (searchers open their own; a connection is not `Sync`).
    conn: Mutex<Connection>,
    /// Queries at once: the same first-come, first-served gate of one query per core that
    /// confab's index puts in front of its queries, so that both engines are compared as a
    /// server would run them.
    gate: confab_search::Gate,
}

const FTS5_SCHEMA: &str = "
    PRAGMA journal_mode = WAL;
    PRAGMA synchronous = NORMAL;
    CREATE TABLE messages (
        rowid INTEGER PRIMARY KEY, id TEXT NOT NULL, conversation INTEGER NOT NULL,
        seq INTEGER NOT NULL, author INTEGER NOT NULL, ts INTEGER NOT NULL, body TEXT NOT NULL);
    CREATE VIRTUAL TABLE messages_fts USING fts5(
        body, content = 'messages', content_rowid = 'rowid', tokenize = 'porter unicode61');
";

impl Fts5 {
    pub fn create(path: &Path) -> anyhow::Result<Fts5> {
        let conn = Connection::open(path).context("open the FTS5 database")?;
        conn.execute_batch(FTS5_SCHEMA)
            .context("create the FTS5 tables (is FTS5 compiled in?)")?;
        Ok(Fts5 {
            path: Arc::from(path),
            conn: Mutex::new(conn),
            gate: confab_search::Gate::per_core(),
        })
    }

    /// `… WHERE messages_fts MATCH ?1 AND m.conversation IN (?2, …)`, the part after `SELECT`.
    fn from_where(conversations: usize) -> String {
        let list = vec!["?"; conversations].join(", ");
        format!(
            "FROM messages_fts JOIN messages m ON m.rowid = messages_fts.rowid \
             WHERE messages_fts MATCH ?1 AND m.conversation IN ({list})"
        )
    }
}

/// The statement cache holds one statement per filter length (10–50 conversations).
const STATEMENT_CACHE: usize = 128;

impl Engine for Fts5 {
    type Worker = Connection;

    fn name(&self) -> &'static str {
        "sqlite-fts5"
    }

    fn index(&mut self, batch: &[Message]) -> anyhow::Result<()> {
        let conn = self.conn.get_mut().unwrap_or_else(PoisonError::into_inner);
        let tx = conn.transaction()?;
        {
            let mut row = tx.prepare_cached(
                "INSERT INTO messages (id, conversation, seq, author, ts, body) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            let mut fts =
                tx.prepare_cached("INSERT INTO messages_fts (rowid, body) VALUES (?1, ?2)")?;
            for m in batch {
                row.execute(rusqlite::params![
                    m.id,
                    m.conversation as i64,
                    m.seq as i64,
                    m.author as i64,
                    m.ts,
                    m.body
                ])?;
                fts.execute(rusqlite::params![tx.last_insert_rowid(), m.body])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        // What a search index's commit does: every row durable, the WAL folded in.
        self.conn
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
        Ok(())
    }

    fn worker(&self) -> anyhow::Result<Connection> {
        let conn = Connection::open_with_flags(
            &*self.path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(conn)
    }

    fn query(
        &self,
        conn: &mut Connection,
        conversations: &[usize],
        text: &str,
    ) -> anyhow::Result<usize> {
        let sql = format!(
            "SELECT m.id {} ORDER BY bm25(messages_fts) LIMIT {PAGE}",
            Fts5::from_where(conversations.len())
        );
        let _turn = self.gate.enter();
        let mut statement = conn.prepare_cached(&sql)?;
        let params = std::iter::once(rusqlite::types::Value::Text(text.to_owned())).chain(
            conversations
                .iter()
                .map(|&c| rusqlite::types::Value::Integer(c as i64)),
        );
        let mut rows = statement.query(params_from_iter(params))?;
        let mut hits = 0;
        while rows.next()?.is_some() {
            hits += 1;
        }
        Ok(hits)
    }

    fn count(&self, conversations: &[usize], word: &str, cap: usize) -> anyhow::Result<usize> {
        let sql = format!("SELECT count(*) {}", Fts5::from_where(conversations.len()));
        let params = std::iter::once(rusqlite::types::Value::Text(format!("\"{word}\""))).chain(
            conversations
                .iter()
                .map(|&c| rusqlite::types::Value::Integer(c as i64)),
        );
        let n: i64 = self
            .conn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .query_row(&sql, params_from_iter(params), |row| row.get(0))?;
        Ok(usize::try_from(n).unwrap_or(0).min(cap))
    }
}
