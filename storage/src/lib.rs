//! Confab's storage layer.
//!
//! - [`Store`]: the one trait the server uses. It is a *domain* store: besides persisting, it
//!   enforces the rules that must hold atomically with a write (membership, authorship, roles,
//!   gapless per-conversation seqs, `client_msg_id` idempotency), so that every backend behaves
//!   the same and the conformance suite can prove it.
//! - [`EventSink`]: where a backend hands every committed durable event, in seq order per
//!   conversation, before it answers the caller. The server's hub is the sink.
//! - [`StoreError`]: the client's errors, with text safe to show, and internal failures that
//!   keep their cause (`source`) for the log.
//! - `backend`: `Store`, implemented once: each call becomes a request (plain data) for the
//!   crate-private `Backend` trait, which each backend implements.
//! - `rules`: the authorization and lifecycle rules (who may do what, in which state, and the
//!   error the client sees), written once as pure functions over the state a backend has read
//!   inside its transaction. Each backend reads, asks the rules, then writes what they decide.
//! - `record`: the durable event each write records, built once for every backend.
//! - [`event_form`]: the versioned storage form of durable events. Stores keep what happened
//!   ([`EventBody`]), never the wire frame: the server renders frames from it.
//! - `recent_queries`: each user's recent search queries ([`RecentQuery`]).
//! - [`user_events`]: each user's own event stream (added to / removed from a conversation,
//!   role changed, read marker moved), recorded in the same transaction as its cause.
//! - [`sqlite`]: the embedded default backend (WAL, one writer thread with group commit).
//! - `mongo` (cargo feature `mongo`): the MongoDB backend, for clusters of nodes.
//! - [`media`]: the bytes of media files, on the local disk or in S3 (cargo feature `s3`).
//! - `conformance` (cargo feature `conformance`, on for this crate's tests): the suite every
//!   backend passes; never in a production build.

// Functions stay short enough to read at once (threshold in clippy.toml); tests may not.
#![warn(clippy::too_many_lines)]

mod backend;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod error;
pub mod event_form;
pub mod media;
pub mod metrics;
#[cfg(feature = "mongo")]
pub mod mongo;
mod recent_queries;
mod record;
mod rules;
pub mod sqlite;
pub mod user_events;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use confab_protocol::rest::{
    Attachment, Conversation, ConversationKind, ConversationSummary, Member, Message, MessagePage,
    Role,
};
pub use confab_protocol::{EventBody, Posted};
use confab_protocol::{EventKind, Millis};

pub use backend::Sighting;
pub use error::{Result, StoreError};
pub use recent_queries::{RECENT_QUERIES_RETAINED, RecentQuery};
pub use user_events::{USER_EVENTS_RETAINED, UserEvent, UserEventKind, UserEventPage};

/// The outcome of a queued append ([`Store::queue_message`]).
pub type PendingAppend = Pin<Box<dyn Future<Output = Result<Appended>> + Send + Sync>>;

/// A committed durable event, as handed to the [`EventSink`] and replayed on resume. The server
/// renders its frame (once per event, whoever receives it).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// The conversation's tenant (cluster channels and event topics are namespaced by it).
    pub tenant: String,
    pub conversation: String,
    pub seq: u64,
    /// Commit time.
    pub ts: Millis,
    /// What happened.
    pub body: EventBody,
}

impl StoredEvent {
    /// The event's kind.
    pub fn kind(&self) -> EventKind {
        self.body.kind()
    }

    /// For member events, the member concerned (a subscriber removed from the conversation
    /// must stop receiving it).
    pub fn subject(&self) -> Option<&str> {
        self.body.subject()
    }

    /// The event's frame as JSON text ([`EventBody::render`]).
    pub fn render(&self) -> serde_json::Result<String> {
        self.body.render(&self.conversation, self.seq, self.ts)
    }
}

/// Receives every committed durable event, in commit order (so in seq order per conversation).
///
/// Called on the backend's writer path after the commit and before the writer answers: it must
/// not block (push into bounded queues and return).
pub trait EventSink: Send + Sync + 'static {
    fn publish(&self, events: Vec<StoredEvent>);
}

/// A sink that drops everything (tools and tests that do not fan out).
pub struct NullSink;

impl EventSink for NullSink {
    fn publish(&self, _events: Vec<StoredEvent>) {}
}

/// A new conversation.
#[derive(Debug, Clone)]
pub struct NewConversation {
    pub tenant: String,
    pub creator: String,
    pub kind: ConversationKind,
    pub title: Option<String>,
    /// Other members, without the creator (duplicates are ignored). A direct conversation names
    /// exactly one other user.
    pub members: Vec<String>,
}

/// A new message.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub tenant: String,
    pub conversation: String,
    pub author: String,
    pub client_msg_id: String,
    pub body: String,
    pub reply_to: Option<String>,
    pub attachments: Vec<Attachment>,
    /// Only a repeat: answer a `client_msg_id` already stored with its original (`duplicate`),
    /// and store nothing new (`Conflict`). For a sender over its budget, whose retry of a
    /// message already stored still gets its ack.
    pub repeat_only: bool,
}

/// A media file's metadata as the store keeps it (its bytes are in [`media::Media`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaFile {
    pub id: String,
    pub uploader: String,
    pub name: String,
    pub content_type: String,
    pub size: u64,
    pub sha256: String,
    pub created_at: Millis,
    /// The conversations it belongs to (named at upload, or where it was attached), sorted.
    pub conversations: Vec<String>,
    pub downloads: u64,
}

/// A media file whose bytes are stored, to record.
#[derive(Debug, Clone)]
pub struct NewMediaFile {
    pub tenant: String,
    pub id: String,
    pub uploader: String,
    pub name: String,
    pub content_type: String,
    pub size: u64,
    pub sha256: String,
    /// The conversation it is uploaded to (its members see it).
    pub conversation: Option<String>,
    /// The tenant's quota in bytes, if it has one.
    pub quota: Option<u64>,
}

/// A person of a tenant's directory: who has connected or called the API, under which name,
/// and when last (see [`Store::record_person`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// The user id (the token's subject).
    pub id: String,
    /// The display name last seen in their token.
    pub name: String,
    /// When they were last seen (never moves back).
    pub last_seen: Millis,
}

/// Outcome of [`Store::append_message`]: the message's identity (the original one when the
/// `client_msg_id` was seen before from this author in this conversation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub id: String,
    pub seq: u64,
    pub ts: Millis,
    pub duplicate: bool,
}

/// Which page of messages to read. `after` pages forward (oldest first from the cursor, still
/// bounded by `before` if both are given); otherwise the page ends just before `before` (or at the
/// newest message). Pages are always returned oldest first.
#[derive(Debug, Clone, Copy, Default)]
pub struct PageQuery {
    pub before: Option<u64>,
    pub after: Option<u64>,
    pub limit: u32,
}

/// The persistent state of Confab. All methods are tenant-scoped: an id from another tenant is
/// `NotFound`, never visible.
///
/// Write methods that change state create exactly one durable event, take the conversation's
/// next seq, hand the event to the [`EventSink`] after the commit, and return its seq. A write
/// that changes nothing (a reaction already present) creates no event and returns `None`.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates a conversation; the creator becomes `owner`, the others `member`. A direct
    /// conversation between the same two users is created once: asking again returns the
    /// existing one with `false`. Creation itself takes no seq.
    async fn create_conversation(&self, new: NewConversation) -> Result<(Conversation, bool)>;

    /// A conversation of the tenant, for a member of it (`NotMember` otherwise).
    async fn conversation(&self, tenant: &str, user: &str, id: &str) -> Result<Conversation>;

    /// The conversations `user` belongs to, newest activity first, with unread counts and the
    /// last non-deleted message.
    async fn list_conversations(
        &self,
        tenant: &str,
        user: &str,
    ) -> Result<Vec<ConversationSummary>>;

    /// Changes title and/or archived state (owners and admins; not the title of a direct one:
    /// `Forbidden`). An empty title clears it. Event: `conversation_updated`. Nothing to change:
    /// `None`.
    async fn update_conversation(
        &self,
        tenant: &str,
        by: &str,
        id: &str,
        title: Option<String>,
        archived: Option<bool>,
    ) -> Result<Option<u64>>;

    /// `user`'s membership, or `None`; `NotFound` when the conversation does not exist.
    async fn member(&self, tenant: &str, conversation: &str, user: &str) -> Result<Option<Member>>;

    /// Members of a conversation, for a member of it.
    async fn members(&self, tenant: &str, by: &str, conversation: &str) -> Result<Vec<Member>>;

    /// Adds a member of a group (owners and admins; only an owner may add an owner or admin).
    /// Event: `member_added`; the newcomer's read marker starts at that event. Already a member:
    /// `Conflict`. Direct conversations: `Forbidden`.
    async fn add_member(
        &self,
        tenant: &str,
        by: &str,
        conversation: &str,
        user: &str,
        role: Role,
    ) -> Result<u64>;

    /// Removes a member: anyone may remove themselves; owners remove anyone; admins remove plain
    /// members. The last owner cannot leave while others remain (`Conflict`). Direct
    /// conversations: `Forbidden`. Event: `member_removed`.
    async fn remove_member(
        &self,
        tenant: &str,
        by: &str,
        conversation: &str,
        user: &str,
    ) -> Result<u64>;

    /// Changes a member's role (owners only; the last owner cannot step down: `Conflict`;
    /// unknown member: `NotFound`; direct conversations: `Forbidden`).
    /// Event: `member_role_changed`; same role: `None`.
    async fn set_role(
        &self,
        tenant: &str,
        by: &str,
        conversation: &str,
        user: &str,
        role: Role,
    ) -> Result<Option<u64>>;

    /// Appends a message from a member (archived conversation: `Forbidden`; `reply_to` must be
    /// a message of the same conversation, else `Invalid`). Idempotent on (conversation, author,
    /// client_msg_id): a repeat returns the original with `duplicate = true` and no new event
    /// (checked before the archived state, so a retry still gets its ack). An empty
    /// `client_msg_id` is `Invalid`. Event: `message`. Returns only once the message is durable.
    async fn append_message(&self, new: NewMessage) -> Result<Appended>;

    /// Queues [`append_message`](Store::append_message) and returns once the append has its
    /// place in line; the returned future gives its outcome once durable. Appends queued one
    /// after another (each call awaited before the next) take seqs in that order, so a caller
    /// may queue several before awaiting the first: one WebSocket keeps many sends in flight.
    /// The default appends inline (and its future is ready at once).
    async fn queue_message(&self, new: NewMessage) -> PendingAppend {
        let outcome = self.append_message(new).await;
        Box::pin(std::future::ready(outcome))
    }

    /// A message as it is now, for a member of its conversation.
    async fn message(&self, tenant: &str, user: &str, id: &str) -> Result<Message>;

    /// Replaces the body of the author's own message (deleted: `Conflict`; not the author or
    /// archived conversation: `Forbidden`). Event: `message_edited`.
    async fn edit_message(&self, tenant: &str, by: &str, id: &str, body: String) -> Result<u64>;

    /// Soft-deletes a message (its author, or an owner or admin). Already deleted: `None`.
    /// It keeps its place and seq, but reads show it with an empty body, no attachments and no
    /// reactions (its reactions are dropped). Event: `message_deleted`.
    async fn delete_message(&self, tenant: &str, by: &str, id: &str) -> Result<Option<u64>>;

    /// Adds `by`'s reaction (deleted message: `Conflict`; archived conversation: `Forbidden`).
    /// Already present: `None`. Event: `reaction_added`.
    async fn add_reaction(
        &self,
        tenant: &str,
        by: &str,
        id: &str,
        emoji: &str,
    ) -> Result<Option<u64>>;

    /// Removes `by`'s reaction (archived conversation: `Forbidden`). Absent: `None`.
    /// Event: `reaction_removed`.
    async fn remove_reaction(
        &self,
        tenant: &str,
        by: &str,
        id: &str,
        emoji: &str,
    ) -> Result<Option<u64>>;

    /// A page of messages, for a member. `limit` is clamped to 1..=200 by the caller (and again
    /// by the backend). Each message carries its reactions.
    async fn messages(
        &self,
        tenant: &str,
        user: &str,
        conversation: &str,
        query: PageQuery,
    ) -> Result<MessagePage>;

    /// Durable events with seq > `after`, oldest first, at most `limit`, for a member; also
    /// returns the conversation's last seq (read in the same snapshot).
    async fn events_after(
        &self,
        tenant: &str,
        user: &str,
        conversation: &str,
        after: u64,
        limit: u32,
    ) -> Result<(Vec<StoredEvent>, u64)>;

    /// Like [`Store::events_after`] but without a membership check: for the server's own use
    /// (a cluster node filling a gap in a conversation's event stream), never for clients.
    async fn conversation_events(
        &self,
        tenant: &str,
        conversation: &str,
        after: u64,
        limit: u32,
    ) -> Result<(Vec<StoredEvent>, u64)>;

    /// Every conversation of every tenant with its last seq, `(tenant, id, last_seq)`: for the
    /// server's own use (rebuilding an index from storage), never for clients.
    async fn conversation_positions(&self) -> Result<Vec<(String, String, u64)>>;

    /// Moves `user`'s read marker forward to `seq` (past the last seq: `Invalid`). Returns
    /// whether it moved. Not a conversation event; a move records the user's `read_moved`.
    async fn mark_read(
        &self,
        tenant: &str,
        user: &str,
        conversation: &str,
        seq: u64,
    ) -> Result<bool>;

    /// `user`'s own events after `after` (at most `limit`), for live delivery and resume. When
    /// events after `after` are no longer retained, or `after` is past the user's last seq, the
    /// page is empty with `resync` set.
    async fn user_events(
        &self,
        tenant: &str,
        user: &str,
        after: u64,
        limit: u32,
    ) -> Result<UserEventPage>;

    /// Cheap reachability check for `/ready` (`Unavailable` once closed).
    /// Records a stored file. With a conversation, the uploader must be a member of it
    /// (`NotMember`) and the file belongs to it. `QuotaExceeded` when the tenant's files would
    /// take more than `quota`; `Conflict` if the id is taken. Takes no seq.
    async fn create_media(&self, new: NewMediaFile) -> Result<MediaFile>;

    /// File `id` if `user` sees it (its uploader, or a member of one of its conversations);
    /// otherwise `NotFound`, as for a file that does not exist.
    async fn media(&self, tenant: &str, user: &str, id: &str) -> Result<MediaFile>;

    /// File `id` of `tenant` with no access check (`NotFound` if absent): for a caller that
    /// proved access otherwise, as a signed link does.
    async fn media_file(&self, tenant: &str, id: &str) -> Result<MediaFile>;

    /// Forgets file `id` (its uploader, or an owner or admin of one of its conversations;
    /// `Forbidden` for other members) and returns it, so that the caller frees its bytes.
    async fn delete_media(&self, tenant: &str, by: &str, id: &str) -> Result<MediaFile>;

    /// Attaches files `ids` to a message `by` is about to send in `conversation` (a member:
    /// `NotMember` otherwise): each must be one `by` sees (`NotFound` otherwise) and their own
    /// or already in that conversation (`Forbidden` otherwise). The conversation's members see
    /// them from then on. Returns them in the order of `ids`.
    async fn attach_media(
        &self,
        tenant: &str,
        by: &str,
        conversation: &str,
        ids: &[String],
    ) -> Result<Vec<MediaFile>>;

    /// Counts a download of file `id` (no access check: the caller has made it).
    async fn count_download(&self, tenant: &str, id: &str) -> Result<()>;

    /// The bytes the tenant's files take.
    async fn media_usage(&self, tenant: &str) -> Result<u64>;

    /// Records that `user` of `tenant` was seen at `seen_at` under `name`: adds them to the
    /// tenant's directory, or updates their name and moves their last-seen time forward (an
    /// older `seen_at` leaves it). The caller decides how often to call (not on every request).
    /// One sighting of [`Store::record_people`].
    async fn record_person(
        &self,
        tenant: &str,
        user: &str,
        name: &str,
        seen_at: Millis,
    ) -> Result<()> {
        let sighting = Sighting {
            tenant: tenant.to_owned(),
            user: user.to_owned(),
            name: name.to_owned(),
            seen_at,
        };
        self.record_people(vec![sighting]).await
    }

    /// Records every sighting as [`Store::record_person`] would, in order (a user sighted twice
    /// ends with the later name), in one write: all or none. A node collects its sightings and
    /// writes them this way, one write at a time, so that thousands of clients reconnecting at
    /// once make a few writes rather than one each.
    async fn record_people(&self, sightings: Vec<Sighting>) -> Result<()>;

    /// The tenant's directory of people, by id: for the server's own use (building its people
    /// index), never handed to clients whole.
    async fn people(&self, tenant: &str) -> Result<Vec<Person>>;

    /// Records that `user` of `tenant` searched `query` at `at`: it becomes their newest recent
    /// query (once: a query seen before moves to the front), and past
    /// [`RECENT_QUERIES_RETAINED`] the oldest is forgotten. Publishes no event.
    async fn record_query(&self, tenant: &str, user: &str, query: &str, at: Millis) -> Result<()>;

    /// `user`'s recent queries, newest first (at most [`RECENT_QUERIES_RETAINED`]).
    async fn recent_queries(&self, tenant: &str, user: &str) -> Result<Vec<RecentQuery>>;

    /// Forgets `user`'s recent queries.
    async fn clear_recent_queries(&self, tenant: &str, user: &str) -> Result<()>;

    async fn ping(&self) -> Result<()>;

    /// Commits everything queued, then stops accepting writes (they return `Unavailable`).
    /// Closing twice is harmless.
    async fn close(&self) -> Result<()>;
}

/// A shared store.
pub type DynStore = Arc<dyn Store>;
