//! The embedded SQLite backend.
//!
//! - `writer`: one thread owns the write connection and commits queued jobs in batches, each
//!   job in its own savepoint (group commit: one fsync per batch, `synchronous=FULL`).
//! - `cache`: what the writer remembers of conversations (members, last seq) between appends.
//! - `checkpoint`: a thread that copies the WAL back into the database file, so that the writer
//!   does not.
//! - `pool`: read-only WAL connections used from tokio's blocking pool.
//! - `ops` and `message_ops`: the write transactions (they read state, ask `crate::rules`, and
//!   write); `media`: media files' metadata, read and written; `people`: the directory of
//!   people; `recent_queries`: users' recent search queries; `read`: the queries; `common`: the lookups both share (tenancy, membership, seqs,
//!   events).
//! - `schema`: connection setup and the `user_version` migrations in `storage/migrations/`;
//!   `migrate_events`: the Rust half of version 3, which converts events stored as frames by
//!   older builds to the storage form (`crate::event_form`).
//!
//! - `integrity`: what `open` refuses (a database that should exist but is missing, empty or
//!   damaged: the created marker and a bounded `quick_check`), and the outcome of the last
//!   commit, which `ping` reports.
//!
//! The database must be a file (WAL needs one, and the readers open it separately).

mod cache;
mod checkpoint;
mod common;
mod integrity;
mod media;
mod message_ops;
mod migrate_events;
mod ops;
mod people;
mod pool;
mod read;
mod recent_queries;
mod schema;
mod user_events;
mod writer;

use std::path::Path;
use std::sync::Arc;

use confab_protocol::rest::{
    Conversation, ConversationSummary, Member, Message, MessagePage, Role,
};

use crate::backend::{
    Backend, ConversationChange, Events, EventsQuery, MemberChange, MessageChange, Reader,
    Searched, Sighting,
};
use crate::rules::Creation;
use crate::user_events::UserEventPage;
use crate::{
    Appended, EventSink, MediaFile, NewMediaFile, NewMessage, PageQuery, PendingAppend, Person,
    RecentQuery, Result, StoreError, StoredEvent,
};
use pool::ReadPool;
use writer::Writer;

/// How many events a read of a conversation's events takes on the calling thread (a resume's
/// backlog is usually smaller); a longer one runs in the read pool.
const EVENTS_NOW: u32 = 16;

pub use integrity::{QUICK_CHECK_BUDGET, created_marker};
pub use schema::SCHEMA_VERSION;

/// Tuning of a [`SqliteStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqliteOptions {
    /// Read-only connections, so reads that may run at once (at least 1).
    pub readers: usize,
    /// More read-only connections, for point reads run on the caller's thread instead of the
    /// blocking pool (see the `pool` module); 0 sends every read to the pool. Such a read never
    /// waits for a lock, but a page that is in neither SQLite's cache nor the OS's is still read
    /// from disk on that thread: with a database much larger than memory on a slow disk, 0 may
    /// suit better.
    pub inline_readers: usize,
    /// Most write jobs committed in one transaction (at least 1).
    pub max_batch: usize,
    /// Write jobs that may wait for the writer; past it writers wait (backpressure).
    pub queue: usize,
    /// Client ids of new messages kept in memory before they are merged, sorted, into the
    /// `client_ids` table (at least 1; see the `cache` module).
    pub merge_client_ids_at: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            readers: 4,
            // One per core: more could only wait for a core.
            inline_readers: std::thread::available_parallelism().map_or(2, |n| n.get().min(8)),
            max_batch: 512,
            queue: 16384,
            merge_client_ids_at: cache::MERGE_AT,
        }
    }
}

/// A [`Store`](crate::Store) in one SQLite file. See the [module docs](self) for its layout.
///
/// Call [`Store::close`](crate::Store::close) on shutdown to wait until every queued write is committed. Dropping the
/// store without it is safe too: nothing blocks, and the writer thread still commits (and
/// publishes) what was queued before it exits on its own.
pub struct SqliteStore {
    writer: Writer,
    readers: Arc<ReadPool>,
    /// The database file (its file system's free space decides a full disk's recovery).
    path: std::path::PathBuf,
}

impl SqliteStore {
    /// Opens (creating and migrating if needed) the database at `path` and starts its writer.
    /// Committed events go to `sink`. Blocking: call it at startup or from a blocking task.
    ///
    /// Refuses a database that was created (see [`created_marker`]) but is now missing or
    /// empty, and one that `PRAGMA quick_check` finds damaged (within [`QUICK_CHECK_BUDGET`]).
    pub fn open(
        path: &Path,
        sink: Arc<dyn EventSink>,
        options: SqliteOptions,
    ) -> Result<SqliteStore> {
        integrity::refuse_lost(path)?;
        let mut conn = schema::open_writer(path)?;
        integrity::quick_check(&conn, path, QUICK_CHECK_BUDGET)?;
        schema::migrate(&mut conn)?;
        integrity::mark_created(path)?;
        let readers = ReadPool::open(path, options.readers, options.inline_readers)?;
        let checkpointer = checkpoint::Checkpointer::spawn(path, &conn)?;
        let writer = Writer::spawn(
            conn,
            sink,
            Some(checkpointer),
            cache::WriteCache::merging_at(options.merge_client_ids_at),
            options.max_batch,
            options.queue,
        )?;
        tracing::info!(path = %path.display(), readers = options.readers.max(1), "sqlite store open");
        Ok(SqliteStore {
            writer,
            readers,
            path: path.to_owned(),
        })
    }

    async fn write<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Connection, &mut Vec<StoredEvent>) -> Result<T> + Send + 'static,
    {
        self.writer.write(work).await
    }

    async fn read<T, F>(&self, query: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Connection) -> Result<T> + Send + 'static,
    {
        self.readers.read(query).await
    }
}

/// Reads and writes take owned arguments: they run on other threads.
impl Backend for SqliteStore {
    async fn create_conversation(&self, new: Creation) -> Result<(Conversation, bool)> {
        self.write(move |conn, _| ops::create_conversation(conn, new))
            .await
    }

    async fn conversation(&self, reader: Reader<'_>, id: &str) -> Result<Conversation> {
        // One statement, two lookups by key: every `join` asks, so it runs here when it can.
        if let Some(done) = self
            .readers
            .read_statement_now(|conn| read::conversation(conn, reader.tenant, reader.user, id))
        {
            return done;
        }
        let ((tenant, user), id) = (reader.owned(), id.to_owned());
        self.read(move |conn| read::conversation(conn, &tenant, &user, &id))
            .await
    }

    async fn list_conversations(&self, reader: Reader<'_>) -> Result<Vec<ConversationSummary>> {
        let (tenant, user) = reader.owned();
        self.read(move |conn| read::list_conversations(conn, &tenant, &user))
            .await
    }

    async fn update_conversation(&self, change: ConversationChange) -> Result<Option<u64>> {
        self.write(move |conn, events| ops::update_conversation(conn, events, &change))
            .await
    }

    async fn member(&self, reader: Reader<'_>, conversation: &str) -> Result<Option<Member>> {
        let ((tenant, user), conversation) = (reader.owned(), conversation.to_owned());
        self.read(move |conn| read::member(conn, &tenant, &conversation, &user))
            .await
    }

    async fn members(&self, reader: Reader<'_>, conversation: &str) -> Result<Vec<Member>> {
        let ((tenant, by), conversation) = (reader.owned(), conversation.to_owned());
        self.read(move |conn| read::members(conn, &tenant, &by, &conversation))
            .await
    }

    async fn add_member(&self, change: MemberChange, role: Role) -> Result<u64> {
        self.write(move |conn, events| ops::add_member(conn, events, &change, role))
            .await
    }

    async fn remove_member(&self, change: MemberChange) -> Result<u64> {
        self.write(move |conn, events| ops::remove_member(conn, events, &change))
            .await
    }

    async fn set_role(&self, change: MemberChange, role: Role) -> Result<Option<u64>> {
        self.write(move |conn, events| ops::set_role(conn, events, &change, role))
            .await
    }

    async fn append_message(&self, new: NewMessage) -> Result<Appended> {
        self.queue_message(new).await.await
    }

    async fn queue_message(&self, new: NewMessage) -> PendingAppend {
        // Every check comes before the first write: no savepoint needed.
        let queued = self
            .writer
            .enqueue_checked(move |conn, cache, events| {
                message_ops::append_message(conn, cache, events, new)
            })
            .await;
        match queued {
            Ok(outcome) => Box::pin(outcome),
            Err(err) => Box::pin(std::future::ready(Err(err))),
        }
    }

    async fn message(&self, reader: Reader<'_>, id: &str) -> Result<Message> {
        let ((tenant, user), id) = (reader.owned(), id.to_owned());
        self.read(move |conn| read::message(conn, &tenant, &user, &id))
            .await
    }

    async fn edit_message(&self, change: MessageChange, body: String) -> Result<u64> {
        self.write(move |conn, events| message_ops::edit_message(conn, events, &change, body))
            .await
    }

    async fn delete_message(&self, change: MessageChange) -> Result<Option<u64>> {
        self.write(move |conn, events| message_ops::delete_message(conn, events, &change))
            .await
    }

    async fn add_reaction(&self, change: MessageChange, emoji: String) -> Result<Option<u64>> {
        self.write(move |conn, events| message_ops::add_reaction(conn, events, &change, &emoji))
            .await
    }

    async fn remove_reaction(&self, change: MessageChange, emoji: String) -> Result<Option<u64>> {
        self.write(move |conn, events| message_ops::remove_reaction(conn, events, &change, &emoji))
            .await
    }

    async fn messages(&self, reader: Reader<'_>, id: &str, page: PageQuery) -> Result<MessagePage> {
        let ((tenant, user), id) = (reader.owned(), id.to_owned());
        self.read(move |conn| read::messages(conn, &tenant, &user, &id, page))
            .await
    }

    async fn events(&self, mut query: EventsQuery) -> Result<Events> {
        // Every resume asks, and most are a few events behind: up to `EVENTS_NOW` are read here,
        // and the pool reads them all only when there are more (or no connection here is free).
        let limit = query.limit;
        query.limit = limit.min(EVENTS_NOW);
        if let Some(done) = self.readers.read_now(|conn| read::events(conn, &query)) {
            match done {
                Ok((events, _)) if limit > EVENTS_NOW && events.len() == EVENTS_NOW as usize => {}
                done => return done,
            }
        }
        query.limit = limit;
        self.read(move |conn| read::events(conn, &query)).await
    }

    async fn mark_read(&self, reader: Reader<'_>, conversation: &str, seq: u64) -> Result<bool> {
        let ((tenant, user), conversation) = (reader.owned(), conversation.to_owned());
        self.write(move |conn, _| ops::mark_read(conn, &tenant, &user, &conversation, seq))
            .await
    }

    async fn user_events(
        &self,
        reader: Reader<'_>,
        after: u64,
        limit: u32,
    ) -> Result<UserEventPage> {
        let (tenant, user) = reader.owned();
        self.read(move |conn| user_events::user_events(conn, &tenant, &user, after, limit))
            .await
    }

    async fn create_media(&self, new: NewMediaFile) -> Result<MediaFile> {
        self.write(move |conn, _| media::create_media(conn, &new))
            .await
    }

    async fn media(&self, reader: Reader<'_>, id: &str) -> Result<MediaFile> {
        let ((tenant, user), id) = (reader.owned(), id.to_owned());
        self.read(move |conn| media::media(conn, &tenant, &user, &id))
            .await
    }

    async fn media_file(&self, tenant: &str, id: &str) -> Result<MediaFile> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        self.read(move |conn| media::media_file(conn, &tenant, &id))
            .await
    }

    async fn delete_media(&self, reader: Reader<'_>, id: &str) -> Result<MediaFile> {
        let ((tenant, by), id) = (reader.owned(), id.to_owned());
        self.write(move |conn, _| media::delete_media(conn, &tenant, &by, &id))
            .await
    }

    async fn attach_media(
        &self,
        reader: Reader<'_>,
        conversation: &str,
        ids: &[String],
    ) -> Result<Vec<MediaFile>> {
        let ((tenant, by), conversation) = (reader.owned(), conversation.to_owned());
        let ids = ids.to_vec();
        self.write(move |conn, _| media::attach_media(conn, &tenant, &by, &conversation, &ids))
            .await
    }

    async fn count_download(&self, tenant: &str, id: &str) -> Result<()> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        self.write(move |conn, _| media::count_download(conn, &tenant, &id))
            .await
    }

    async fn media_usage(&self, tenant: &str) -> Result<u64> {
        let tenant = tenant.to_owned();
        self.read(move |conn| media::media_usage(conn, &tenant))
            .await
    }

    async fn conversation_positions(&self) -> Result<Vec<(String, String, u64)>> {
        self.read(read::conversation_positions).await
    }

    async fn record_people(&self, sightings: Vec<Sighting>) -> Result<()> {
        self.write(move |conn, _| people::record_people(conn, &sightings))
            .await
    }

    async fn people(&self, tenant: &str) -> Result<Vec<Person>> {
        let tenant = tenant.to_owned();
        self.read(move |conn| people::people(conn, &tenant)).await
    }

    async fn record_query(&self, searched: Searched) -> Result<()> {
        self.write(move |conn, _| recent_queries::record_query(conn, &searched))
            .await
    }

    async fn recent_queries(&self, reader: Reader<'_>) -> Result<Vec<RecentQuery>> {
        let (tenant, user) = reader.owned();
        self.read(move |conn| recent_queries::recent_queries(conn, &tenant, &user))
            .await
    }

    async fn clear_recent_queries(&self, reader: Reader<'_>) -> Result<()> {
        let (tenant, user) = reader.owned();
        self.write(move |conn, _| recent_queries::clear_recent_queries(conn, &tenant, &user))
            .await
    }

    /// While the last commit failed (a full disk, a read-only file), commits a probe (a rewrite
    /// of `user_version`) to learn whether commits work again (after a full disk, only once
    /// its file system has room again); otherwise only reads.
    async fn ping(&self) -> Result<()> {
        if !self.writer.is_open() {
            return Err(StoreError::Unavailable);
        }
        if let Some(fault) = self.writer.commit_fault() {
            if fault == "disk_full" && integrity::short_of_space(&self.path) {
                return Err(StoreError::CannotCommit(fault));
            }
            let probe = self
                .write(|conn, _| {
                    let version = schema::version(conn)?;
                    conn.pragma_update(None, "user_version", version)?;
                    Ok(())
                })
                .await;
            if probe.is_err() {
                let fault = self.writer.commit_fault().unwrap_or("commit_failed");
                return Err(StoreError::CannotCommit(fault));
            }
        }
        self.read(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?))
            .await
    }

    /// Commits everything queued, stops the writer and waits for it. Reads keep working; writes
    /// and `ping` return `Unavailable` from then on.
    async fn close(&self) -> Result<()> {
        self.writer.close().await
    }
}
