//! Full-text search over messages, on tantivy.
//!
//! - [`SearchIndex`]: the index of one node (on disk under the data dir, or in memory for
//!   tests). [`SearchIndex::apply`] takes a conversation's events in any order, any number of
//!   times: each message keeps the seq of the state last applied, and an older or repeated event
//!   changes nothing (an edit older than a delete never resurrects the text), so replaying a
//!   stream, shuffled or twice, gives the same index. [`SearchIndex::search`] answers a query
//!   within the conversations the caller may read (checked by the caller at query time).
//! - `query.rs`: the query language; `querying.rs`: a search as a tantivy query and its page of
//!   hits; `highlight.rs`: snippets with `<mark>`; `tokenizer.rs`: words, CJK as bigrams;
//!   `suggesting.rs`: completions of a prefix from the words a caller may read;
//!   `rebuilding.rs`: one tenant's documents rebuilt beside the index and swapped in.
//!
//! Every call blocks (tantivy's work is CPU and disk): the server runs them off the async
//! runtime.

// Functions stay short enough to read at once (threshold in clippy.toml); tests may not.
#![warn(clippy::too_many_lines)]

mod gate;
mod highlight;
mod membership;
pub mod query;
mod querying;
mod rebuilding;
mod suggesting;
pub mod tokenizer;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use tantivy::collector::TopDocs;
use tantivy::query::TermQuery;
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing,
    TextOptions, Value,
};
use tantivy::tokenizer::{AsciiFoldingFilter, LowerCaser, RemoveLongFilter, TextAnalyzer};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term, doc};

pub use gate::{Admitted, Gate};
pub use query::Parsed;
pub use rebuilding::{Swap, Swapped};
pub use suggesting::Completion;

/// The analyzer of message text: words (CJK as bigrams), lower-cased, accents folded, English
/// stems.
const ANALYZER: &str = "confab_text";

/// The same words unstemmed: typos are measured against what people write ("quartely" is one
/// letter from "quarterly", but three from its stem "quarter"), and suggestions are real words.
const WORDS_ANALYZER: &str = "confab_words";

/// The version of what the index holds and how its text is analyzed. An index of another
/// version (an upgrade changed the analyzer or the schema) is removed when opened, and the
/// server backfills the new one from storage.
pub const SCHEMA_VERSION: u32 = 5;

/// The doc store's compressed block size. A page of hits reads 20 stored messages from
/// anywhere in the index, each decompressing its whole block: at tantivy's default 16 KiB that
/// was a tenth of a search's time; 4 KiB blocks (a few dozen messages) cost a few percent of
/// disk.
const STORE_BLOCK: usize = 4096;

/// The memory the index writer may use before it flushes a segment.
const WRITER_MEMORY: usize = 50 * 1024 * 1024;

/// The largest page of hits.
pub const MAX_LIMIT: usize = 100;

/// The deepest hit a page may start at (a cursor is that offset, 0 to 9999): the collector
/// keeps offset + limit hits in memory, so a made-up cursor must not ask for millions. Paging
/// ends there.
pub const MAX_CURSOR: usize = 9_999;

/// Why a search operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The query is malformed (the text says how).
    #[error("{0}")]
    Invalid(String),
    #[error("search index failure: {0}")]
    Index(#[from] tantivy::TantivyError),
    #[error("search index failure: {0}")]
    Directory(#[from] tantivy::directory::error::OpenDirectoryError),
}

/// Results of this crate.
pub type Result<T, E = SearchError> = std::result::Result<T, E>;

/// The analyzer of message text, also used to highlight.
pub fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(tokenizer::WordTokenizer::default())
        .filter(RemoveLongFilter::limit(64))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .filter(tokenizer::CachedStemmer)
        .build()
}

/// [`analyzer`] without stems: the words as written, lower-cased and folded. It yields one
/// token per token of [`analyzer`], at the same offsets (the stemmer drops none).
pub fn words_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(tokenizer::WordTokenizer::default())
        .filter(RemoveLongFilter::limit(64))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .build()
}

/// A message's place in newest-first order, unique in practice: its time (Unix ms, 43 bits
/// last until the year 2248) above 20 bits of a hash of its id, so that two messages of one
/// millisecond still have an order a cursor can continue from (two of one millisecond and one
/// hash, about one pair in a million, would share a key: a page boundary between them skips
/// one).
fn order_key(ts: i64, id: &str) -> u64 {
    // FNV-1a: stable across builds, unlike std's hasher.
    let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    (u64::try_from(ts).unwrap_or(0) << 20) | (hash & 0xF_FFFF)
}

/// A durable event, as the index needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexEvent {
    Posted {
        tenant: String,
        conversation: String,
        id: String,
        seq: u64,
        author: String,
        body: String,
        ts: i64,
        attachments: bool,
    },
    Edited {
        tenant: String,
        conversation: String,
        message: String,
        seq: u64,
        body: String,
    },
    Deleted {
        tenant: String,
        conversation: String,
        message: String,
        seq: u64,
    },
    /// Any other event of a conversation: it changes no message, but the conversation is
    /// indexed up to it.
    Other {
        tenant: String,
        conversation: String,
        seq: u64,
    },
}

impl IndexEvent {
    fn message(&self) -> Option<&str> {
        match self {
            IndexEvent::Posted { id, .. } => Some(id),
            IndexEvent::Edited { message, .. } | IndexEvent::Deleted { message, .. } => {
                Some(message)
            }
            IndexEvent::Other { .. } => None,
        }
    }

    fn position(&self) -> (&str, u64) {
        match self {
            IndexEvent::Posted {
                conversation, seq, ..
            }
            | IndexEvent::Edited {
                conversation, seq, ..
            }
            | IndexEvent::Deleted {
                conversation, seq, ..
            }
            | IndexEvent::Other {
                conversation, seq, ..
            } => (conversation, *seq),
        }
    }

    /// The tenant and the conversation of the event.
    pub fn conversation(&self) -> (&str, &str) {
        match self {
            IndexEvent::Posted {
                tenant,
                conversation,
                ..
            }
            | IndexEvent::Edited {
                tenant,
                conversation,
                ..
            }
            | IndexEvent::Deleted {
                tenant,
                conversation,
                ..
            }
            | IndexEvent::Other {
                tenant,
                conversation,
                ..
            } => (tenant, conversation),
        }
    }
}

/// A message as the index keeps it. `state` is the seq of the last event applied to its text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Entry {
    tenant: String,
    conversation: String,
    id: String,
    /// The message's own seq (0 until its `message` event is seen).
    seq: u64,
    state: u64,
    author: String,
    body: String,
    ts: i64,
    attachments: bool,
    deleted: bool,
}

impl Entry {
    /// The entry after `event` (which concerns this message), taking its text rather than
    /// copying it.
    fn apply(mut self, event: IndexEvent) -> Entry {
        match event {
            IndexEvent::Posted {
                tenant,
                conversation,
                id,
                seq,
                author,
                body,
                ts,
                attachments,
            } => {
                (self.tenant, self.conversation, self.id) = (tenant, conversation, id);
                (self.seq, self.author, self.ts, self.attachments) = (seq, author, ts, attachments);
                if seq > self.state {
                    (self.state, self.body) = (seq, body);
                }
            }
            IndexEvent::Edited {
                tenant,
                conversation,
                message,
                seq,
                body,
            } => {
                (self.tenant, self.conversation, self.id) = (tenant, conversation, message);
                if seq > self.state && !self.deleted {
                    (self.state, self.body) = (seq, body);
                }
            }
            IndexEvent::Deleted {
                tenant,
                conversation,
                message,
                seq,
            } => {
                (self.tenant, self.conversation, self.id) = (tenant, conversation, message);
                if seq > self.state {
                    (self.state, self.deleted, self.body) = (seq, true, String::new());
                }
            }
            IndexEvent::Other { .. } => {}
        }
        self
    }
}

#[derive(Debug, Clone, Copy)]
struct Fields {
    id: Field,
    tenant: Field,
    conversation: Field,
    /// Tenant and conversation in one value ([`scope`]), indexed and a fast column: the
    /// filter of every query (membership.rs) and of `in:`. (`conversation` is only stored,
    /// and `seq`, `ts` and `order` are not indexed: ranges read the fast columns; each field
    /// indexed is work per message for the indexer.)
    scope: Field,
    author: Field,
    body: Field,
    /// The body's words unstemmed (indexed only, without frequencies: a near word scores 1
    /// however often it occurs): typo matches and suggestions.
    words: Field,
    seq: Field,
    state: Field,
    ts: Field,
    /// Newest-first order without ties: see [`order_key`].
    order: Field,
    attachments: Field,
    deleted: Field,
}

/// The name of the scope field.
const SCOPE: &str = "scope";

/// A conversation of a tenant as one value: the two apart by a control character, which ids
/// never hold (the server refuses them), so no two pairs give the same value.
fn scope(tenant: &str, conversation: &str) -> String {
    format!("{tenant}\u{1f}{conversation}")
}

/// The settings of a new index: the doc store in blocks of [`STORE_BLOCK`] bytes.
fn settings() -> tantivy::IndexSettings {
    tantivy::IndexSettings {
        docstore_blocksize: STORE_BLOCK,
        ..tantivy::IndexSettings::default()
    }
}

fn schema() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let text = TextOptions::default()
        .set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(ANALYZER)
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        )
        .set_stored();
    let fields = Fields {
        id: builder.add_text_field("id", STRING | STORED),
        tenant: builder.add_text_field("tenant", STRING | STORED),
        conversation: builder.add_text_field("conversation", STORED),
        scope: builder.add_text_field(SCOPE, STRING | FAST),
        author: builder.add_text_field("author", STRING | STORED),
        body: builder.add_text_field("body", text),
        words: builder.add_text_field(
            "words",
            TextOptions::default().set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer(WORDS_ANALYZER)
                    .set_index_option(IndexRecordOption::Basic),
            ),
        ),
        seq: builder.add_u64_field("seq", STORED),
        state: builder.add_u64_field("state", STORED),
        ts: builder.add_i64_field("ts", STORED | FAST),
        order: builder.add_u64_field("order", FAST),
        attachments: builder.add_u64_field("attachments", INDEXED | STORED),
        deleted: builder.add_u64_field("deleted", INDEXED | STORED),
    };
    (builder.build(), fields)
}

/// How many threads index documents. Each thread writes a segment of its own at every commit
/// (its files, term dictionaries and columns, merged again later), and that work is the same
/// for a hundred documents as for a thousand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writers {
    /// One thread: for an index that follows live traffic and commits every second or so,
    /// where a second thread only doubles the segments (measured: `benches/RESULTS.md`, "Search
    /// indexing on the live path").
    Live,
    /// One thread per core, as far as the budget gives each 25 MiB: for building an index from
    /// storage in bulk (a reindex).
    Bulk,
}

impl Writers {
    fn threads(self, budget: usize) -> usize {
        match self {
            Writers::Live => 1,
            Writers::Bulk => std::thread::available_parallelism()
                .map_or(1, std::num::NonZeroUsize::get)
                .min(budget / (25 * 1024 * 1024))
                .max(1),
        }
    }
}

/// What the writer side holds: the writer, the entries changed since the last commit (already
/// given to the writer, but the searcher does not see them yet), and how far each conversation
/// is indexed.
struct Writing {
    writer: IndexWriter,
    pending: HashMap<String, Entry, foldhash::fast::RandomState>,
    indexed: BTreeMap<String, u64>,
}

/// How far each conversation is searchable: its highest seq as of the last commit.
type Committed = BTreeMap<String, u64>;

/// The commit payload: how far each conversation was indexed.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Payload {
    v: u32,
    indexed: BTreeMap<String, u64>,
}

/// The search index of one node.
pub struct SearchIndex {
    reader: IndexReader,
    fields: Fields,
    writing: Mutex<Writing>,
    committed: Mutex<Committed>,
    /// Near words of query words, per segment.
    near: Mutex<querying::NearWords>,
    /// The conversation filter's ordinals, per segment.
    ordinals: std::sync::Arc<Mutex<membership::Ordinals>>,
    /// Queries ([`SearchIndex::search`], [`SearchIndex::complete`]) running at once: one per
    /// core unless set, the rest wait their turn in order of arrival.
    gate: Gate,
}

impl std::fmt::Debug for SearchIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchIndex").finish_non_exhaustive()
    }
}

/// A page of hits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hits {
    pub hits: Vec<Hit>,
    /// Pass as `cursor` for the next page; none on the last.
    pub next_cursor: Option<String>,
    /// How far each conversation of the hits is indexed (its last seq seen).
    pub indexed_seq: BTreeMap<String, u64>,
}

/// One message found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hit {
    pub conversation: String,
    pub id: String,
    pub seq: u64,
    pub author: String,
    pub ts: i64,
    /// The text around the match, HTML-escaped, matches in `<mark>`.
    pub snippet: String,
}

/// How hits are ordered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Sort {
    #[default]
    Relevance,
    Recent,
}

/// A search by one caller.
#[derive(Debug, Clone)]
pub struct Search<'a> {
    pub tenant: &'a str,
    /// The conversations the caller may read now: hits come only from these.
    pub conversations: &'a [String],
    pub query: &'a Parsed,
    pub sort: Sort,
    pub limit: usize,
    /// From a previous page's `next_cursor`.
    pub cursor: Option<&'a str>,
}

impl SearchIndex {
    /// The index in `dir` (created if missing, and recreated empty if it is of another
    /// [`SCHEMA_VERSION`]), written by one indexing thread: see [`Writers::Live`].
    pub fn open(dir: &Path) -> Result<SearchIndex> {
        SearchIndex::open_with_budget(dir, WRITER_MEMORY, Writers::Live)
    }

    /// [`SearchIndex::open`], with the index writer's memory budget in bytes (past it a segment
    /// is flushed) and its indexing threads.
    pub fn open_with_budget(dir: &Path, budget: usize, writers: Writers) -> Result<SearchIndex> {
        let io = |err: std::io::Error| SearchError::Index(err.into());
        std::fs::create_dir_all(dir).map_err(io)?;
        let directory = tantivy::directory::MmapDirectory::open(dir)?;
        if Index::exists(&directory).map_err(tantivy::TantivyError::from)? {
            let version = Index::open(directory.clone())?
                .load_metas()?
                .payload
                .and_then(|payload| serde_json::from_str::<Payload>(&payload).ok())
                .map(|payload| payload.v);
            if version.is_some_and(|v| v != SCHEMA_VERSION) {
                tracing::warn!(
                    dir = %dir.display(),
                    found = ?version,
                    SCHEMA_VERSION,
                    "the search index is of another version: rebuilding it from storage"
                );
                drop(directory);
                std::fs::remove_dir_all(dir).map_err(io)?;
                std::fs::create_dir_all(dir).map_err(io)?;
                let directory = tantivy::directory::MmapDirectory::open(dir)?;
                let index = Index::create(directory, schema().0, settings())?;
                return SearchIndex::with(index, budget, writers);
            }
        }
        let index = Index::builder()
            .schema(schema().0)
            .settings(settings())
            .open_or_create(directory)?;
        SearchIndex::with(index, budget, writers)
    }

    /// An index in memory (tests).
    pub fn in_memory() -> Result<SearchIndex> {
        let index = Index::builder()
            .schema(schema().0)
            .settings(settings())
            .create_in_ram()?;
        SearchIndex::with(index, WRITER_MEMORY, Writers::Live)
    }

    /// Lets `queries` searches and completions run at once (0: one per core); later ones
    /// wait their turn, first come, first served (why: `gate.rs`).
    pub fn set_query_concurrency(&self, queries: usize) {
        self.gate.set_permits(queries);
    }

    /// Messages in the index as last committed (deleted ones' tombstones included).
    pub fn documents(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    fn with(index: Index, budget: usize, writers: Writers) -> Result<SearchIndex> {
        index.tokenizers().register(ANALYZER, analyzer());
        index
            .tokenizers()
            .register(WORDS_ANALYZER, words_analyzer());
        let (_, fields) = schema();
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let payload: Payload = index
            .load_metas()?
            .payload
            .and_then(|payload| serde_json::from_str(&payload).ok())
            .unwrap_or_default();
        let writer = index.writer_with_num_threads(writers.threads(budget), budget)?;
        let committed = Mutex::new(payload.indexed.clone());
        Ok(SearchIndex {
            committed,
            reader,
            fields,
            near: Mutex::default(),
            ordinals: std::sync::Arc::default(),
            gate: Gate::per_core(),
            writing: Mutex::new(Writing {
                writer,
                pending: HashMap::default(),
                indexed: payload.indexed,
            }),
        })
    }

    /// The stored entry of message `id`, as last committed.
    fn committed(&self, searcher: &tantivy::Searcher, id: &str) -> Result<Option<Entry>> {
        let query = TermQuery::new(
            Term::from_field_text(self.fields.id, id),
            IndexRecordOption::Basic,
        );
        let Some((_, address)) = searcher
            .search(&query, &TopDocs::with_limit(1).order_by_score())?
            .into_iter()
            .next()
        else {
            return Ok(None);
        };
        Ok(Some(self.entry(&searcher.doc(address)?)))
    }

    fn entry(&self, doc: &TantivyDocument) -> Entry {
        let f = &self.fields;
        let text = |field| {
            doc.get_first(field)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        let number = |field| {
            doc.get_first(field)
                .and_then(|v| v.as_u64())
                .unwrap_or_default()
        };
        Entry {
            tenant: text(f.tenant),
            conversation: text(f.conversation),
            id: text(f.id),
            seq: number(f.seq),
            state: number(f.state),
            author: text(f.author),
            body: text(f.body),
            ts: doc
                .get_first(f.ts)
                .and_then(|v| v.as_i64())
                .unwrap_or_default(),
            attachments: number(f.attachments) == 1,
            deleted: number(f.deleted) == 1,
        }
    }

    /// Applies events (of any conversations, in any order, seen before or not); they are
    /// searchable after the next [`SearchIndex::commit`]. Returns how many changed a message.
    ///
    /// A message's current state is in `pending` if an event changed it since the last commit,
    /// else in the committed index; but a `message` event of a seq above its conversation's
    /// committed seq concerns a message of which nothing was committed (every event of a message
    /// has a seq at or above its own), so the common case, a new message, costs no look-up.
    pub fn apply(&self, events: Vec<IndexEvent>) -> Result<usize> {
        let mut writing = self.writing.lock().unwrap_or_else(PoisonError::into_inner);
        // How far a conversation is committed, read under the writer's lock: no commit moves
        // it (nor clears `pending`) meanwhile. Looked up per event, not copied: the map holds
        // every conversation, and its copy per batch was most of the indexer's time.
        // (Locked once for the batch, in the order `commit_locked` takes both locks.)
        let committed = self
            .committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let committed_past =
            |conversation: &str, seq: u64| committed.get(conversation).is_none_or(|top| *top < seq);
        let mut searcher = None;
        let mut changed = 0;
        for event in events {
            let (conversation, seq) = event.position();
            match writing.indexed.get_mut(conversation) {
                Some(top) => *top = (*top).max(seq),
                None => {
                    writing.indexed.insert(conversation.to_owned(), seq);
                }
            }
            let Some(id) = event.message() else {
                continue;
            };
            let (current, known) = match writing.pending.get(id) {
                Some(entry) => (entry.clone(), true),
                None if matches!(event, IndexEvent::Posted { .. })
                    && committed_past(conversation, seq) =>
                {
                    (Entry::default(), false)
                }
                None => {
                    let searcher = searcher.get_or_insert_with(|| self.reader.searcher());
                    match self.committed(searcher, id)? {
                        Some(entry) => (entry, true),
                        None => (Entry::default(), false),
                    }
                }
            };
            let next = current.clone().apply(event);
            if next == current {
                continue;
            }
            changed += 1;
            self.write(&mut writing.writer, &next, known)?;
            writing.pending.insert(next.id.clone(), next);
        }
        Ok(changed)
    }

    /// Gives `entry` to the writer, replacing the message's document if it may have one.
    fn write(&self, writer: &mut IndexWriter, entry: &Entry, replaces: bool) -> Result<()> {
        let f = self.fields;
        if replaces {
            writer.delete_term(Term::from_field_text(f.id, &entry.id));
        }
        writer.add_document(doc!(
            f.id => entry.id.as_str(), f.tenant => entry.tenant.as_str(),
            f.conversation => entry.conversation.as_str(), f.author => entry.author.as_str(),
            f.scope => scope(&entry.tenant, &entry.conversation),
            f.body => entry.body.as_str(), f.words => entry.body.as_str(), f.seq => entry.seq,
            f.state => entry.state, f.ts => entry.ts, f.order => order_key(entry.ts, &entry.id),
            f.attachments => u64::from(entry.attachments),
            f.deleted => u64::from(entry.deleted),
        ))?;
        Ok(())
    }

    /// Makes what was applied searchable (and durable, with how far each conversation is
    /// indexed).
    pub fn commit(&self) -> Result<()> {
        let mut writing = self.writing.lock().unwrap_or_else(PoisonError::into_inner);
        self.commit_locked(&mut writing)
    }

    /// [`SearchIndex::commit`], under the writer's lock held by the caller.
    fn commit_locked(&self, writing: &mut Writing) -> Result<()> {
        let payload = serde_json::to_string(&Payload {
            v: SCHEMA_VERSION,
            indexed: writing.indexed.clone(),
        })
        .map_err(|err| SearchError::Invalid(err.to_string()))?;
        let mut prepared = writing.writer.prepare_commit()?;
        prepared.set_payload(&payload);
        prepared.commit()?;
        writing.pending.clear();
        let indexed = writing.indexed.clone();
        // The reader is reloaded before the committed seqs move on, and both under the writer's
        // lock: `apply` trusts that no document exists past a conversation's committed seq.
        self.reader.reload()?;
        *self
            .committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = indexed;
        Ok(())
    }

    /// How far `conversation` is searchable: the highest seq of its events committed (0 for
    /// none).
    pub fn indexed_seq(&self, conversation: &str) -> u64 {
        let committed = self
            .committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        committed.get(conversation).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests;
