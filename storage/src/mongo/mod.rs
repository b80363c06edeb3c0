//! The MongoDB backend (cargo feature `mongo`), for clusters of Confab nodes sharing one store.
//!
//! - `schema`: the collections, their documents and the indexes created at start-up.
//! - `txn`: the write path: the gate `close` shuts, per-conversation locks, and transactions
//!   retried on transient errors, publishing to the sink after each commit.
//! - `ops` and `message_ops`: the write operations; `read`: the queries; `common`: the lookups
//!   both share (tenancy, membership, seqs, events).
//!
//! Seqs: each event-creating write bumps its conversation's `last_seq` with `$inc` in the same
//! multi-document transaction that inserts the event (and the message), so a failed write takes
//! no seq and concurrent writers, in any process, conflict and retry instead of leaving gaps.
//! Transactions need a replica set (a one-node one will do).
//!
//! Tested against secantusdb (see `storage/tests/mongo_conformance.rs`), which behaves as a
//! one-node replica set.

mod common;
mod message_ops;
mod ops;
mod read;
mod schema;
mod txn;

use std::sync::Arc;

use async_trait::async_trait;
use confab_protocol::rest::{
    Conversation, ConversationSummary, Member, Message, MessagePage, Role,
};
use mongodb::bson::doc;
use mongodb::options::ClientOptions;
use mongodb::{Client, Database};

use crate::{
    Appended, EventSink, NewConversation, NewMessage, PageQuery, Result, Store, StoreError,
    StoredEvent,
};
use schema::Collections;
use txn::{ConversationLocks, Ctx, Gate, OpFuture, internal};

/// A [`Store`] in a MongoDB database. See the [module docs](self) for its layout.
///
/// Call [`Store::close`] on shutdown: it waits for the writes in flight. Dropping the store
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
    /// `directConnection=true`), creates the indexes of `database` if missing, and returns the
    /// store. Committed events go to `sink`.
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
    async fn write_message<C, T, F>(&self, tenant: &str, id: &str, context: &C, op: F) -> Result<T>
    where
        C: Sync + ?Sized,
        F: for<'s> Fn(&'s mut Ctx, &'s C) -> OpFuture<'s, T>,
    {
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

#[async_trait]
impl Store for MongoStore {
    async fn create_conversation(&self, new: NewConversation) -> Result<(Conversation, bool)> {
        let creation = crate::rules::Creation::validate(new)?;
        let (conversation, created) = self
            .write(None, &creation, |cx, creation| {
                Box::pin(ops::create_conversation(cx, creation))
            })
            .await?;
        Ok((conversation.to_conversation()?, created))
    }

    async fn conversation(&self, tenant: &str, user: &str, id: &str) -> Result<Conversation> {
        self.read(&(tenant, user, id), |cx, &(tenant, user, id)| {
            Box::pin(read::conversation(cx, tenant, user, id))
        })
        .await
    }

    async fn list_conversations(
        &self,
        tenant: &str,
        user: &str,
    ) -> Result<Vec<ConversationSummary>> {
        self.read(&(tenant, user), |cx, &(tenant, user)| {
            Box::pin(read::list_conversations(cx, tenant, user))
        })
        .await
    }

    async fn update_conversation(
        &self,
        tenant: &str,
        by: &str,
        id: &str,
        title: Option<String>,
        archived: Option<bool>,
    ) -> Result<Option<u64>> {
        let context = (tenant, by, id, title.as_deref(), archived);
        self.write(
            Some(id),
            &context,
            |cx, &(tenant, by, id, title, archived)| {
                Box::pin(ops::update_conversation(
                    cx, tenant, by, id, title, archived,
                ))
            },
        )
        .await
    }

    async fn member(&self, tenant: &str, conversation: &str, user: &str) -> Result<Option<Member>> {
        self.read(
            &(tenant, conversation, user),
            |cx, &(tenant, conversation, user)| {
                Box::pin(read::member(cx, tenant, conversation, user))
            },
        )
        .await
    }

    async fn members(&self, tenant: &str, by: &str, conversation: &str) -> Result<Vec<Member>> {
        self.read(
            &(tenant, by, conversation),
            |cx, &(tenant, by, conversation)| Box::pin(read::members(cx, tenant, by, conversation)),
        )
        .await
    }

    async fn add_member(
        &self,
        tenant: &str,
        by: &str,
        conversation: &str,
        user: &str,
        role: Role,
    ) -> Result<u64> {
        let context = (tenant, by, conversation, user, role);
        self.write(
            Some(conversation),
            &context,
            |cx, &(tenant, by, conversation, user, role)| {
                Box::pin(ops::add_member(cx, tenant, by, conversation, user, role))
            },
        )
        .await
    }

    async fn remove_member(
        &self,
        tenant: &str,
        by: &str,
        conversation: &str,
        user: &str,
    ) -> Result<u64> {
        let context = (tenant, by, conversation, user);
        self.write(
            Some(conversation),
            &context,
            |cx, &(tenant, by, conversation, user)| {
                Box::pin(ops::remove_member(cx, tenant, by, conversation, user))
            },
        )
        .await
    }

    async fn set_role(
        &self,
        tenant: &str,
        by: &str,
        conversation: &str,
        user: &str,
        role: Role,
    ) -> Result<Option<u64>> {
        let context = (tenant, by, conversation, user, role);
        self.write(
            Some(conversation),
            &context,
            |cx, &(tenant, by, conversation, user, role)| {
                Box::pin(ops::set_role(cx, tenant, by, conversation, user, role))
            },
        )
        .await
    }

    async fn append_message(&self, new: NewMessage) -> Result<Appended> {
        self.write(Some(&new.conversation), &new, |cx, new| {
            Box::pin(message_ops::append_message(cx, new))
        })
        .await
    }

    async fn message(&self, tenant: &str, user: &str, id: &str) -> Result<Message> {
        self.read(&(tenant, user, id), |cx, &(tenant, user, id)| {
            Box::pin(read::message(cx, tenant, user, id))
        })
        .await
    }

    async fn edit_message(&self, tenant: &str, by: &str, id: &str, body: String) -> Result<u64> {
        let context = (tenant, by, id, body.as_str());
        self.write_message(tenant, id, &context, |cx, &(tenant, by, id, body)| {
            Box::pin(message_ops::edit_message(cx, tenant, by, id, body))
        })
        .await
    }

    async fn delete_message(&self, tenant: &str, by: &str, id: &str) -> Result<Option<u64>> {
        self.write_message(tenant, id, &(tenant, by, id), |cx, &(tenant, by, id)| {
            Box::pin(message_ops::delete_message(cx, tenant, by, id))
        })
        .await
    }

    async fn add_reaction(
        &self,
        tenant: &str,
        by: &str,
        id: &str,
        emoji: &str,
    ) -> Result<Option<u64>> {
        let context = (tenant, by, id, emoji);
        self.write_message(tenant, id, &context, |cx, &(tenant, by, id, emoji)| {
            Box::pin(message_ops::add_reaction(cx, tenant, by, id, emoji))
        })
        .await
    }

    async fn remove_reaction(
        &self,
        tenant: &str,
        by: &str,
        id: &str,
        emoji: &str,
    ) -> Result<Option<u64>> {
        let context = (tenant, by, id, emoji);
        self.write_message(tenant, id, &context, |cx, &(tenant, by, id, emoji)| {
            Box::pin(message_ops::remove_reaction(cx, tenant, by, id, emoji))
        })
        .await
    }

    async fn messages(
        &self,
        tenant: &str,
        user: &str,
        conversation: &str,
        query: PageQuery,
    ) -> Result<MessagePage> {
        let context = (tenant, user, conversation, query);
        self.read(&context, |cx, &(tenant, user, conversation, query)| {
            Box::pin(read::messages(cx, tenant, user, conversation, query))
        })
        .await
    }

    async fn events_after(
        &self,
        tenant: &str,
        user: &str,
        conversation: &str,
        after: u64,
        limit: u32,
    ) -> Result<(Vec<StoredEvent>, u64)> {
        let context = (tenant, user, conversation, after, limit);
        self.read(
            &context,
            |cx, &(tenant, user, conversation, after, limit)| {
                Box::pin(read::events_after(
                    cx,
                    tenant,
                    user,
                    conversation,
                    after,
                    limit,
                ))
            },
        )
        .await
    }

    async fn conversation_events(
        &self,
        tenant: &str,
        conversation: &str,
        after: u64,
        limit: u32,
    ) -> Result<(Vec<StoredEvent>, u64)> {
        let context = (tenant, conversation, after, limit);
        self.read(&context, |cx, &(tenant, conversation, after, limit)| {
            Box::pin(read::conversation_events(
                cx,
                tenant,
                conversation,
                after,
                limit,
            ))
        })
        .await
    }

    async fn mark_read(
        &self,
        tenant: &str,
        user: &str,
        conversation: &str,
        seq: u64,
    ) -> Result<bool> {
        let context = (tenant, user, conversation, seq);
        self.write(None, &context, |cx, &(tenant, user, conversation, seq)| {
            Box::pin(ops::mark_read(cx, tenant, user, conversation, seq))
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
