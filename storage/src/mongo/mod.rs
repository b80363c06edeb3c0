//! The MongoDB backend (cargo feature `mongo`), for clusters of Confab nodes sharing one store.
//!
//! - `schema`: the collections, their documents and the indexes created at start-up;
//!   `migrate_events`: the conversion, at start-up, of events stored as frames by older builds.
//! - `txn`: the write path: the gate `close` shuts, per-conversation locks, and transactions
//!   retried on transient errors, publishing to the sink after each commit.
//! - `ops` and `message_ops`: the write operations (they read state, ask `crate::rules`, and
//!   write); `media`: media files' metadata; `people`: the directory of people; `recent_queries`: users' recent search queries; `read`: the queries; `common`: the lookups both
//!   share (tenancy, membership, seqs, events).
//!
//! Seqs: each event-creating write bumps its conversation's `last_seq` with `$inc` in the same
//! multi-document transaction that inserts the event (and the message), so a failed write takes
//! no seq and concurrent writers, in any process, conflict and retry instead of leaving gaps.
//! Transactions need a replica set (a one-node one will do).
//!
//! Tested against secantusdb (see `storage/tests/mongo_conformance.rs`), which behaves as a
//! one-node replica set.

mod common;
mod media;
mod message_ops;
mod migrate_events;
mod ops;
mod people;
mod read;
mod recent_queries;
mod schema;
mod txn;
mod user_events;

use std::sync::Arc;

use confab_protocol::rest::{
    Conversation, ConversationSummary, Member, Message, MessagePage, Role,
};
use mongodb::bson::doc;
use mongodb::options::ClientOptions;
use mongodb::{Client, Database};

use crate::backend::{
    Backend, ConversationChange, Events, EventsQuery, MemberChange, MessageChange, Reader,
    Searched, Sighting,
};
use crate::rules::Creation;
use crate::user_events::UserEventPage;
use crate::{
    Appended, EventSink, MediaFile, NewMediaFile, NewMessage, PageQuery, Person, RecentQuery,
    Result, StoreError,
};
use schema::Collections;
use txn::{ConversationLocks, Ctx, Gate, OpFuture, internal};

/// A [`Store`](crate::Store) in a MongoDB database. See the [module docs](self) for its layout.
///
/// Call [`Store::close`](crate::Store::close) on shutdown: it waits for the writes in flight. Dropping the store
/// without it is safe too; every acknowledged write is already committed.
pub struct MongoStore {
    client: Client,
    database: Database,
    db: Collections,
    sink: Arc<dyn EventSink>,
    gate: Gate,
    locks: ConversationLocks,
}

impl MongoStore {
    /// Connects to `uri` (a `mongodb://` connection string; a one-node replica set needs
    /// `directConnection=true`), creates the indexes of `database` if missing, converts events
    /// stored as frames by older builds to the storage form, and returns the store. Committed
    /// events go to `sink`.
    pub async fn connect(
        uri: &str,
        database: &str,
        sink: Arc<dyn EventSink>,
    ) -> Result<MongoStore> {
        let mut options = ClientOptions::parse(uri).await.map_err(internal)?;
        options.app_name.get_or_insert_with(|| "confab".to_owned());
        let client = Client::with_options(options).map_err(internal)?;
        let database = client.database(database);
        let db = Collections::new(&database);
        db.create_indexes().await.map_err(internal)?;
        migrate_events::events_to_form(&db).await?;
        tracing::info!(database = database.name(), "mongodb store open");
        Ok(MongoStore {
            client,
            database,
            db,
            sink,
            gate: Gate::new(),
            locks: ConversationLocks::default(),
        })
    }

    async fn ctx(&self) -> Result<Ctx> {
        Ctx::new(&self.client, &self.db).await
    }

    /// Runs a query.
    async fn read<C, T, F>(&self, context: &C, query: F) -> Result<T>
    where
        C: Sync + ?Sized,
        F: for<'s> Fn(&'s mut Ctx, &'s C) -> OpFuture<'s, T>,
    {
        let mut cx = self.ctx().await?;
        Ok(query(&mut cx, context).await?)
    }

    /// Runs a write in a transaction, holding `conversation`'s lock (if any) until its events
    /// are published. `Unavailable` once closed.
    async fn write<C, T, F>(&self, conversation: Option<&str>, context: &C, op: F) -> Result<T>
    where
        C: Sync + ?Sized,
        F: for<'s> Fn(&'s mut Ctx, &'s C) -> OpFuture<'s, T>,
    {
        let _admitted = self.gate.enter().await?;
        let _locked = match conversation {
            Some(conversation) => Some(self.locks.lock(conversation).await),
            None => None,
        };
        let mut cx = self.ctx().await?;
        txn::transact(&mut cx, self.sink.as_ref(), context, op).await
    }

    /// Runs a write on the tenant's message `id` (`NotFound` otherwise) holding its
    /// conversation's lock. A message never moves, so its conversation is safe to read before
    /// taking the lock.
    async fn write_message<C, T, F>(&self, change: &MessageChange, context: &C, op: F) -> Result<T>
    where
        C: Sync + ?Sized,
        F: for<'s> Fn(&'s mut Ctx, &'s C) -> OpFuture<'s, T>,
    {
        let (tenant, id) = (change.tenant.as_str(), change.id.as_str());
        let conversation = self
            .read(&(tenant, id), |cx, &(tenant, id)| {
                Box::pin(
                    async move { Ok(common::load_message(cx, tenant, id).await?.conversation) },
                )
            })
            .await?;
        self.write(Some(&conversation), context, op).await
    }
}

/// Each operation runs on a context it borrows: reads as they are, writes in a transaction
/// holding the lock of the conversation they change.
impl Backend for MongoStore {
    async fn create_conversation(&self, new: Creation) -> Result<(Conversation, bool)> {
        let (conversation, created) = self
            .write(None, &new, |cx, new| {
                Box::pin(ops::create_conversation(cx, new))
            })
            .await?;
        Ok((conversation.to_conversation()?, created))
    }

    async fn conversation(&self, reader: Reader<'_>, id: &str) -> Result<Conversation> {
        self.read(&(reader, id), |cx, &(reader, id)| {
            Box::pin(read::conversation(cx, reader, id))
        })
        .await
    }

    async fn list_conversations(&self, reader: Reader<'_>) -> Result<Vec<ConversationSummary>> {
        self.read(&reader, |cx, &reader| {
            Box::pin(read::list_conversations(cx, reader))
        })
        .await
    }

    async fn update_conversation(&self, change: ConversationChange) -> Result<Option<u64>> {
        self.write(Some(&change.id), &change, |cx, change| {
            Box::pin(ops::update_conversation(cx, change))
        })
        .await
    }

    async fn member(&self, reader: Reader<'_>, conversation: &str) -> Result<Option<Member>> {
        self.read(&(reader, conversation), |cx, &(reader, conversation)| {
            Box::pin(read::member(cx, reader, conversation))
        })
        .await
    }

    async fn members(&self, reader: Reader<'_>, conversation: &str) -> Result<Vec<Member>> {
        self.read(&(reader, conversation), |cx, &(reader, conversation)| {
            Box::pin(read::members(cx, reader, conversation))
        })
        .await
    }

    async fn add_member(&self, change: MemberChange, role: Role) -> Result<u64> {
        self.write(Some(&change.conversation), &change, move |cx, change| {
            Box::pin(ops::add_member(cx, change, role))
        })
        .await
    }

    async fn remove_member(&self, change: MemberChange) -> Result<u64> {
        self.write(Some(&change.conversation), &change, |cx, change| {
            Box::pin(ops::remove_member(cx, change))
        })
        .await
    }

    async fn set_role(&self, change: MemberChange, role: Role) -> Result<Option<u64>> {
        self.write(Some(&change.conversation), &change, move |cx, change| {
            Box::pin(ops::set_role(cx, change, role))
        })
        .await
    }

    async fn append_message(&self, new: NewMessage) -> Result<Appended> {
        self.write(Some(&new.conversation), &new, |cx, new| {
            Box::pin(message_ops::append_message(cx, new))
        })
        .await
    }

    async fn message(&self, reader: Reader<'_>, id: &str) -> Result<Message> {
        self.read(&(reader, id), |cx, &(reader, id)| {
            Box::pin(read::message(cx, reader, id))
        })
        .await
    }

    async fn edit_message(&self, change: MessageChange, body: String) -> Result<u64> {
        self.write_message(&change, &(&change, body.as_str()), |cx, &(change, body)| {
            Box::pin(message_ops::edit_message(cx, change, body))
        })
        .await
    }

    async fn delete_message(&self, change: MessageChange) -> Result<Option<u64>> {
        self.write_message(&change, &change, |cx, change| {
            Box::pin(message_ops::delete_message(cx, change))
        })
        .await
    }

    async fn add_reaction(&self, change: MessageChange, emoji: String) -> Result<Option<u64>> {
        self.write_message(
            &change,
            &(&change, emoji.as_str()),
            |cx, &(change, emoji)| Box::pin(message_ops::add_reaction(cx, change, emoji)),
        )
        .await
    }

    async fn remove_reaction(&self, change: MessageChange, emoji: String) -> Result<Option<u64>> {
        self.write_message(
            &change,
            &(&change, emoji.as_str()),
            |cx, &(change, emoji)| Box::pin(message_ops::remove_reaction(cx, change, emoji)),
        )
        .await
    }

    async fn messages(&self, reader: Reader<'_>, id: &str, page: PageQuery) -> Result<MessagePage> {
        self.read(&(reader, id, page), |cx, &(reader, id, page)| {
            Box::pin(read::messages(cx, reader, id, page))
        })
        .await
    }

    async fn events(&self, query: EventsQuery) -> Result<Events> {
        self.read(&query, |cx, query| Box::pin(read::events(cx, query)))
            .await
    }

    async fn mark_read(&self, reader: Reader<'_>, id: &str, seq: u64) -> Result<bool> {
        self.write(None, &(reader, id, seq), |cx, &(reader, id, seq)| {
            Box::pin(ops::mark_read(cx, reader, id, seq))
        })
        .await
    }

    async fn user_events(
        &self,
        reader: Reader<'_>,
        after: u64,
        limit: u32,
    ) -> Result<UserEventPage> {
        self.read(&(reader, after, limit), |cx, &(reader, after, limit)| {
            Box::pin(user_events::user_events(cx, reader, after, limit))
        })
        .await
    }

    async fn create_media(&self, new: NewMediaFile) -> Result<MediaFile> {
        self.write(None, &new, |cx, new| Box::pin(media::create_media(cx, new)))
            .await
    }

    async fn media(&self, reader: Reader<'_>, id: &str) -> Result<MediaFile> {
        self.read(&(reader, id), |cx, &(reader, id)| {
            Box::pin(media::media(cx, reader, id))
        })
        .await
    }

    async fn media_file(&self, tenant: &str, id: &str) -> Result<MediaFile> {
        self.read(&(tenant, id), |cx, &(tenant, id)| {
            Box::pin(media::media_file(cx, tenant, id))
        })
        .await
    }

    async fn delete_media(&self, reader: Reader<'_>, id: &str) -> Result<MediaFile> {
        self.write(None, &(reader, id), |cx, &(reader, id)| {
            Box::pin(media::delete_media(cx, reader, id))
        })
        .await
    }

    async fn attach_media(
        &self,
        reader: Reader<'_>,
        conversation: &str,
        ids: &[String],
    ) -> Result<Vec<MediaFile>> {
        self.write(
            None,
            &(reader, conversation, ids),
            |cx, &(reader, conversation, ids)| {
                Box::pin(media::attach_media(cx, reader, conversation, ids))
            },
        )
        .await
    }

    async fn count_download(&self, tenant: &str, id: &str) -> Result<()> {
        self.write(None, &(tenant, id), |cx, &(tenant, id)| {
            Box::pin(media::count_download(cx, tenant, id))
        })
        .await
    }

    async fn media_usage(&self, tenant: &str) -> Result<u64> {
        self.read(tenant, |cx, tenant| {
            Box::pin(media::media_usage(cx, tenant))
        })
        .await
    }

    async fn conversation_positions(&self) -> Result<Vec<(String, String, u64)>> {
        self.read(&(), |cx, ()| Box::pin(read::conversation_positions(cx)))
            .await
    }

    async fn record_people(&self, sightings: Vec<Sighting>) -> Result<()> {
        self.write(None, sightings.as_slice(), |cx, sightings| {
            Box::pin(people::record_people(cx, sightings))
        })
        .await
    }

    async fn people(&self, tenant: &str) -> Result<Vec<Person>> {
        self.read(tenant, |cx, tenant| Box::pin(people::people(cx, tenant)))
            .await
    }

    async fn record_query(&self, searched: Searched) -> Result<()> {
        self.write(None, &searched, |cx, searched| {
            Box::pin(recent_queries::record_query(cx, searched))
        })
        .await
    }

    async fn recent_queries(&self, reader: Reader<'_>) -> Result<Vec<RecentQuery>> {
        self.read(&reader, |cx, reader| {
            Box::pin(recent_queries::recent_queries(cx, *reader))
        })
        .await
    }

    async fn clear_recent_queries(&self, reader: Reader<'_>) -> Result<()> {
        self.write(None, &reader, |cx, reader| {
            Box::pin(recent_queries::clear_recent_queries(cx, *reader))
        })
        .await
    }

    async fn ping(&self) -> Result<()> {
        if !self.gate.is_open() {
            return Err(StoreError::Unavailable);
        }
        self.database
            .run_command(doc! { "ping": 1 })
            .await
            .map_err(internal)?;
        Ok(())
    }

    /// Waits for the writes in flight, then refuses new ones (`Unavailable`). Reads keep working.
    async fn close(&self) -> Result<()> {
        self.gate.close().await;
        Ok(())
    }
}
