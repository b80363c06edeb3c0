//! REST request and response bodies (`/v1`). Field names match the WebSocket frames.

use serde::{Deserialize, Serialize};

use crate::Millis;

/// A conversation member's role.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Owner,
    Admin,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    pub fn parse(name: &str) -> Option<Role> {
        match name {
            "owner" => Some(Role::Owner),
            "admin" => Some(Role::Admin),
            "member" => Some(Role::Member),
            _ => None,
        }
    }

    /// Owners and admins manage members and the conversation.
    pub fn can_manage(self) -> bool {
        matches!(self, Role::Owner | Role::Admin)
    }
}

/// Group conversations have any number of members and roles; direct ones exactly two.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ConversationKind {
    Group,
    Direct,
}

impl ConversationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ConversationKind::Group => "group",
            ConversationKind::Direct => "direct",
        }
    }

    pub fn parse(name: &str) -> Option<ConversationKind> {
        match name {
            "group" => Some(ConversationKind::Group),
            "direct" => Some(ConversationKind::Direct),
            _ => None,
        }
    }
}

/// `POST /v1/conversations`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateConversation {
    pub kind: ConversationKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Other members (the creator is added as `owner`; a direct conversation names exactly one).
    #[serde(default)]
    pub members: Vec<String>,
}

/// `PATCH /v1/conversations/{id}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateConversation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archived: Option<bool>,
}

/// A conversation.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Conversation {
    pub id: String,
    pub kind: ConversationKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub created_by: String,
    pub created_at: Millis,
    pub archived: bool,
    /// Seq of the newest durable event.
    pub last_seq: u64,
}

/// An entry of `GET /v1/conversations`: the conversation as the caller sees it.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConversationSummary {
    #[serde(flatten)]
    pub conversation: Conversation,
    pub role: Role,
    /// The caller's read marker.
    pub read_seq: u64,
    /// Messages after the read marker not written by the caller and not deleted.
    pub unread: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_message: Option<Message>,
}

/// `GET /v1/conversations`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConversationList {
    pub conversations: Vec<ConversationSummary>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// A member of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Member {
    pub user: String,
    pub role: Role,
    pub joined_at: Millis,
    pub read_seq: u64,
}

/// `GET /v1/conversations/{id}/members`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemberList {
    pub members: Vec<Member>,
}

/// `POST /v1/conversations/{id}/members`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
}

/// `PATCH /v1/conversations/{id}/members/{user}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateMember {
    pub role: Role,
}

/// A file attached to a message (uploaded through the media API, `POST /v1/media`).
///
/// A client sends only the file's id, as a string (`"attachments": ["<id>"]`) or as
/// `{"id": "<id>"}` (older clients also sent `name`, `mime` and `size`: they still parse, and
/// are ignored); the server checks the file and fills in its stored name, type and size.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(from = "AttachmentRef")]
pub struct Attachment {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// An attachment as a client may write it: a bare id, or an object.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Deserialize)]
#[serde(untagged)]
enum AttachmentRef {
    Id(String),
    Object(AttachmentObject),
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AttachmentObject {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    mime: Option<String>,
    #[serde(default)]
    size: Option<u64>,
}

impl From<AttachmentRef> for Attachment {
    fn from(reference: AttachmentRef) -> Attachment {
        match reference {
            AttachmentRef::Id(id) => Attachment {
                id,
                name: None,
                mime: None,
                size: None,
            },
            AttachmentRef::Object(AttachmentObject {
                id,
                name,
                mime,
                size,
            }) => Attachment {
                id,
                name,
                mime,
                size,
            },
        }
    }
}

/// Reactions with one emoji on a message.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Reaction {
    pub emoji: String,
    pub count: u64,
    pub users: Vec<String>,
}

/// A message as it is now (edits applied; a deleted message keeps its place with an empty body).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Message {
    pub id: String,
    pub conversation: String,
    pub seq: u64,
    pub author: String,
    pub body: String,
    pub ts: Millis,
    pub client_msg_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<Millis>,
    #[serde(default)]
    pub deleted: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reactions: Vec<Reaction>,
}

/// `GET /v1/conversations/{id}/messages`: newest last.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MessagePage {
    pub messages: Vec<Message>,
    /// More messages exist beyond this page in the direction asked.
    pub has_more: bool,
}

/// `POST /v1/conversations/{id}/messages`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SendMessage {
    pub client_msg_id: String,
    pub body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
}

/// Reply to a message send: the same fields as the WebSocket `ack`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SendResult {
    pub conversation: String,
    pub client_msg_id: String,
    pub id: String,
    pub seq: u64,
    pub ts: Millis,
    pub duplicate: bool,
}

/// A media file (`POST /v1/media`, `GET /v1/media/{id}/meta`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MediaInfo {
    pub id: String,
    /// The file name, made safe (no path, control or bidi characters; at most 255 bytes).
    pub name: String,
    /// Sniffed from the file's bytes, not taken from the client.
    pub content_type: String,
    pub size: u64,
    /// SHA-256 of the bytes, lower-case hex.
    pub sha256: String,
    pub created_at: Millis,
    pub uploader: String,
    /// The conversations whose members see the file (empty: its uploader only).
    pub conversations: Vec<String>,
    /// Completed downloads.
    pub downloads: u64,
}

/// `POST /v1/media/uploads`: a chunked, resumable upload.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateUpload {
    pub name: String,
    /// The file's size in bytes.
    pub size: u64,
    /// The client's idea of the type (the stored type is sniffed from the bytes).
    #[serde(default)]
    pub content_type: Option<String>,
    /// SHA-256 of the whole file (hex), checked on completion.
    #[serde(default)]
    pub sha256: Option<String>,
    /// The conversation whose members will see the file.
    #[serde(default)]
    pub conversation: Option<String>,
}

/// A started upload: send chunks `0..chunk_count` of `chunk_size` bytes (the last may be
/// shorter) to `PUT /v1/media/uploads/{upload_id}/chunks/{n}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UploadCreated {
    pub upload_id: String,
    pub chunk_size: u64,
    pub chunk_count: u64,
    /// Seconds of inactivity after which the upload expires.
    pub expires_after_secs: u64,
}

/// How far an upload got (`GET /v1/media/uploads/{upload_id}`): send the missing chunks, then
/// complete it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UploadProgress {
    pub upload_id: String,
    pub received_bytes: u64,
    pub size: u64,
    pub chunk_size: u64,
    pub missing_chunks: Vec<u64>,
}

/// A message found by `GET /v1/search/messages`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MessageHit {
    pub conversation: String,
    pub id: String,
    pub seq: u64,
    pub author: String,
    pub ts: Millis,
    /// The text around the match, HTML-escaped, with `<mark>` around the matched words.
    pub snippet: String,
}

/// A page of `GET /v1/search/messages`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MessageHits {
    pub hits: Vec<MessageHit>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    /// How far each conversation of the hits (and of `wait_for`) is searchable: its last seq
    /// in the index.
    pub indexed_seq: std::collections::BTreeMap<String, u64>,
}

/// A person of the caller's tenant found by `GET /v1/search/users`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PersonHit {
    /// The user id.
    pub id: String,
    /// Their display name, as last seen.
    pub name: String,
    /// When they last connected or called the API.
    pub last_seen: crate::Millis,
}

/// `GET /v1/search/users`: best matches first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PersonHits {
    pub users: Vec<PersonHit>,
}

/// A conversation of the caller that matched a conversation search.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConversationHit {
    pub id: String,
    pub kind: ConversationKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The caller's role in it.
    pub role: Role,
    /// How many members it has.
    pub members: u64,
    pub archived: bool,
    /// Seq of its newest durable event.
    pub last_seq: u64,
    /// What matched: `title`, or `member` (then `member` names who).
    pub matched: String,
    /// The member whose name or id matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
}

/// `GET /v1/search/conversations`: best matches first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConversationHits {
    pub conversations: Vec<ConversationHit>,
}

/// `GET /v1/search`: messages, conversations and people at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SearchResults {
    /// The first page of `GET /v1/search/messages` (its `next_cursor` continues there).
    pub messages: MessageHits,
    pub conversations: Vec<ConversationHit>,
    pub users: Vec<PersonHit>,
}

/// What a suggestion completes a prefix to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SuggestionKind {
    /// A word of the caller's messages.
    Term,
    /// The title of one of the caller's conversations.
    Conversation,
    /// The name of a person of the caller's tenant.
    Person,
}

/// One completion of `GET /v1/search/suggestions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Suggestion {
    /// The completed text: a word as written (lower-cased), a title or a name.
    pub text: String,
    pub kind: SuggestionKind,
    /// For `conversation`: its id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation: Option<String>,
    /// For `person`: their user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// For `term`: how many of the caller's messages have the word.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<u64>,
}

/// `GET /v1/search/suggestions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Suggestions {
    pub suggestions: Vec<Suggestion>,
}

/// One of the caller's recent searches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecentSearch {
    /// The query, trimmed.
    pub q: String,
    /// When it was last run (Unix ms).
    pub at: i64,
}

/// `GET /v1/search/recent`: newest first, each query once, at most 20.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecentSearches {
    pub queries: Vec<RecentSearch>,
}

/// `PATCH /v1/messages/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EditMessage {
    pub body: String,
}

/// `POST /v1/messages/{id}/reactions`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AddReaction {
    pub emoji: String,
}

/// Result of an edit, delete, reaction, member or conversation change: the durable event's seq,
/// absent when nothing changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChangeResult {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

/// `PUT /v1/conversations/{id}/read`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MarkRead {
    pub seq: u64,
}

/// `GET /health` and `GET /ready`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    pub status: String,
    /// `/ready` only: the state of this node's search index (it does not decide readiness:
    /// chat works while the index catches up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<SearchHealth>,
    /// `/ready` answering 503 `storage_unavailable` because commits fail: why, in a word
    /// (`disk_full`, `read_only`, `io_error`, `corrupt`, `commit_failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `/ready` only, in a cluster while some of its fan-out's Redis shards are down: which.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fanout: Option<FanoutHealth>,
}

impl Health {
    /// A health answer of `status` alone.
    pub fn status(status: &str) -> Health {
        Health {
            status: status.to_owned(),
            search: None,
            reason: None,
            fanout: None,
        }
    }
}

/// The fan-out's Redis shards while some are down. All down: `/ready` answers 503
/// `fanout_unavailable`. Only some: the node stays ready (the conversations on the other
/// shards still cross nodes; those on the lost ones are served locally and catch up from
/// storage once their shard is back).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FanoutHealth {
    /// Shards configured (`hub`'s URLs).
    pub shards: u32,
    /// The shards down, by position in `hub` (from 0).
    pub down: Vec<u32>,
}

/// How far this node's search index is.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SearchHealth {
    /// `backfilling` until the index has caught up with storage after a start, then `ready`.
    pub state: String,
    /// Messages in the index (live and deleted ones' tombstones).
    pub documents: u64,
    /// Conversations whose events the indexer dropped and will replay from storage.
    pub conversations_behind: u64,
}

/// A rebuild of the search index's documents of the caller's tenant from storage
/// (`POST /v1/admin/reindex`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReindexJob {
    pub id: String,
    /// `running`, then `done` or `failed`.
    pub state: String,
    /// Events read from storage and indexed so far.
    pub events: u64,
    /// Events the tenant's conversations held when the job started (those that arrive while
    /// it runs are read too).
    pub events_total: u64,
    /// Messages in the rebuilt documents so far (deleted ones included).
    pub documents: u64,
    /// Documents the swap wrote anew or removed because they differed from storage (set when
    /// done).
    pub changed: u64,
    pub started_at: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Millis>,
    /// Why it failed (`failed` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The caller's tenant's reindex jobs on this node, newest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReindexJobs {
    pub jobs: Vec<ReindexJob>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachments_parse_as_ids_or_objects_as_older_clients_wrote_them() {
        let parsed: Vec<Attachment> =
            serde_json::from_str(r#"["m1", {"id": "m2"}, {"id": "m3", "name": "a.png", "mime": "image/png", "size": 3}]"#)
                .expect("parse");
        assert_eq!(parsed[0].id, "m1");
        assert_eq!(parsed[1].id, "m2");
        assert_eq!((parsed[2].id.as_str(), parsed[2].size), ("m3", Some(3)));
        assert!(serde_json::from_str::<Attachment>(r#"{"id": "m", "evil": 1}"#).is_err());
        assert!(serde_json::from_str::<Attachment>("7").is_err());
        let written = serde_json::to_string(&parsed[1]).expect("serialize");
        assert_eq!(written, r#"{"id":"m2"}"#);
    }
}
