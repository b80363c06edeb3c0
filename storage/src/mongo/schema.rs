//! The collections, their documents, and the indexes created at start-up.
//!
//! Every document carries its tenant (directly or through its conversation) and every query
//! filters on it. Seqs are per conversation: `conversations.last_seq` is bumped with `$inc` inside
//! the transaction that writes the event, so they are gapless and unique (the unique
//! `(conversation, seq)` indexes on `events` and `messages` back that up).

use confab_protocol::rest::Attachment;
use mongodb::bson::{Document, doc};
use mongodb::options::IndexOptions;
use mongodb::{Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};

/// A conversation. `direct_key` (both user ids, sorted, joined with U+001F) exists only on
/// direct conversations, so that the partial unique index covers them alone.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct ConversationDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub tenant: String,
    pub kind: String,
    pub title: Option<String>,
    pub created_by: String,
    pub created_at: i64,
    pub archived: bool,
    pub last_seq: i64,
    pub last_activity: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_key: Option<String>,
}

/// A member of a conversation (`_id` generated; unique on `(conversation, user)`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct MemberDoc {
    pub tenant: String,
    pub conversation: String,
    pub user: String,
    pub role: String,
    pub joined_at: i64,
    pub read_seq: i64,
}

/// A message. A deleted one keeps its place with an empty body and no attachments.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct MessageDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub tenant: String,
    pub conversation: String,
    pub seq: i64,
    pub author: String,
    pub client_msg_id: String,
    pub body: String,
    pub reply_to: Option<String>,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    pub created_at: i64,
    pub edited_at: Option<i64>,
    pub deleted_at: Option<i64>,
}

/// One user's reaction with one emoji (unique on `(message, emoji, user)`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct ReactionDoc {
    pub message: String,
    pub conversation: String,
    pub user: String,
    pub emoji: String,
    pub created_at: i64,
}

/// A durable event in its storage form (`crate::event_form`). Documents written by builds
/// before the form hold `frame` instead of `v` and `data`, until `migrate` converts them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct EventDoc {
    pub conversation: String,
    pub seq: i64,
    pub tenant: String,
    pub kind: String,
    /// The member concerned by a member event.
    pub subject: Option<String>,
    /// The message concerned by a message or reaction event (to find a deleted message's
    /// events).
    pub message: Option<String>,
    pub ts: i64,
    /// The version of the storage form of `data`.
    pub v: u32,
    /// The kind's payload as compact JSON; absent for a `message` event that says what its
    /// message says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

/// A media file's metadata (unique on `(tenant, id)`); `conversations` are those it belongs to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct MediaDoc {
    pub tenant: String,
    pub id: String,
    pub uploader: String,
    pub name: String,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
    pub created_at: i64,
    #[serde(default)]
    pub conversations: Vec<String>,
    #[serde(default)]
    pub downloads: i64,
}

/// A person of a tenant's directory (unique on `(tenant, id)`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct PersonDoc {
    pub tenant: String,
    pub id: String,
    pub name: String,
    pub last_seen: i64,
}

/// One of a user's recent search queries (unique on `(tenant, user, query)`); the highest
/// `seq` is the newest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct RecentQueryDoc {
    pub tenant: String,
    pub user: String,
    pub query: String,
    pub seq: i64,
    pub at: i64,
}

/// One of a user's own events (unique on `(tenant, user, seq)`); see `crate::user_events`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct UserEventDoc {
    pub tenant: String,
    pub user: String,
    pub seq: i64,
    pub kind: String,
    pub conversation: String,
    pub role: Option<String>,
    pub read_seq: Option<i64>,
    pub ts: i64,
}

/// An index named `name` on `keys`.
fn index(name: &str, keys: Document, unique: bool) -> IndexModel {
    IndexModel::builder()
        .keys(keys)
        .options(
            IndexOptions::builder()
                .name(name.to_owned())
                .unique(unique)
                .build(),
        )
        .build()
}

/// The store's collections.
#[derive(Debug, Clone)]
pub(super) struct Collections {
    pub conversations: Collection<ConversationDoc>,
    pub members: Collection<MemberDoc>,
    pub messages: Collection<MessageDoc>,
    pub reactions: Collection<ReactionDoc>,
    pub events: Collection<EventDoc>,
    pub media: Collection<MediaDoc>,
    pub people: Collection<PersonDoc>,
    pub user_events: Collection<UserEventDoc>,
    pub recent_queries: Collection<RecentQueryDoc>,
    /// Each user's last user-event seq, `{_id: {tenant, user}, last_seq}`: bumped with `$inc`
    /// in the transaction that records the event, so per-user seqs are gapless.
    pub user_streams: Collection<Document>,
    /// Markers of completed data migrations (`migrate_events`).
    pub meta: Collection<Document>,
}

impl Collections {
    pub(super) fn new(db: &Database) -> Collections {
        Collections {
            conversations: db.collection("conversations"),
            members: db.collection("members"),
            messages: db.collection("messages"),
            reactions: db.collection("reactions"),
            events: db.collection("events"),
            media: db.collection("media"),
            people: db.collection("people"),
            user_events: db.collection("user_events"),
            recent_queries: db.collection("recent_queries"),
            user_streams: db.collection("user_streams"),
            meta: db.collection("meta"),
        }
    }

    /// Creates the indexes (and so the collections) if missing. Idempotent: the same names and
    /// options every time.
    pub(super) async fn create_indexes(&self) -> mongodb::error::Result<()> {
        let direct_key = IndexModel::builder()
            .keys(doc! { "tenant": 1, "direct_key": 1 })
            .options(
                IndexOptions::builder()
                    .name("tenant_direct_key".to_owned())
                    .unique(true)
                    .partial_filter_expression(doc! { "direct_key": { "$type": "string" } })
                    .build(),
            )
            .build();
        self.conversations.create_index(direct_key).await?;
        self.members
            .create_indexes([
                index(
                    "conversation_user",
                    doc! { "conversation": 1, "user": 1 },
                    true,
                ),
                index("tenant_user", doc! { "tenant": 1, "user": 1 }, false),
            ])
            .await?;
        self.messages
            .create_indexes([
                index(
                    "conversation_seq",
                    doc! { "conversation": 1, "seq": 1 },
                    true,
                ),
                index(
                    "conversation_author_client_msg_id",
                    doc! { "conversation": 1, "author": 1, "client_msg_id": 1 },
                    true,
                ),
            ])
            .await?;
        self.reactions
            .create_index(index(
                "message_emoji_user",
                doc! { "message": 1, "emoji": 1, "user": 1 },
                true,
            ))
            .await?;
        self.events
            .create_index(index(
                "conversation_seq",
                doc! { "conversation": 1, "seq": 1 },
                true,
            ))
            .await?;
        self.media
            .create_index(index("tenant_id", doc! { "tenant": 1, "id": 1 }, true))
            .await?;
        self.people
            .create_index(index("tenant_id", doc! { "tenant": 1, "id": 1 }, true))
            .await?;
        self.user_events
            .create_index(index(
                "tenant_user_seq",
                doc! { "tenant": 1, "user": 1, "seq": 1 },
                true,
            ))
            .await?;
        self.create_recent_query_indexes().await?;
        // Created here, not by the first transaction that bumps a counter in it.
        self.user_streams
            .create_index(index("last_seq", doc! { "last_seq": 1 }, false))
            .await?;
        Ok(())
    }
}

impl Collections {
    /// A user's recent queries: one per query, read newest first.
    async fn create_recent_query_indexes(&self) -> mongodb::error::Result<()> {
        self.recent_queries
            .create_indexes([
                index(
                    "tenant_user_query",
                    doc! { "tenant": 1, "user": 1, "query": 1 },
                    true,
                ),
                index(
                    "tenant_user_seq",
                    doc! { "tenant": 1, "user": 1, "seq": 1 },
                    false,
                ),
            ])
            .await?;
        Ok(())
    }
}
