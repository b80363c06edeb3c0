//! WebSocket frames. Every frame is one JSON object in a text frame with a `"type"` field.
//!
//! Client → server frames are [`ClientFrame`]s: a [`Command`] plus an optional `ref` that the
//! server echoes in the reply (`joined`, `left`, `ack`, `ok`, `pong`) or in the `error`.
//! Server → client frames are [`ServerFrame`]s. Durable events (those
//! [`ServerFrame::durable_position`] names) are stored before anyone sees them and are replayed
//! on `join` with `since`; ephemeral frames (`typing`, `read`, `presence`) are not.

use serde::{Deserialize, Serialize};

use crate::Millis;
use crate::rest::{Attachment, ConversationSummary, Role};

/// A frame sent by a client.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientFrame {
    /// Opaque correlation id, echoed in the reply or error.
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(flatten)]
    pub command: Command,
}

impl ClientFrame {
    /// A frame without `ref`.
    pub fn new(command: Command) -> Self {
        ClientFrame {
            reference: None,
            command,
        }
    }

    /// A frame with `ref`.
    pub fn with_ref(reference: impl Into<String>, command: Command) -> Self {
        ClientFrame {
            reference: Some(reference.into()),
            command,
        }
    }
}

/// What a client asks the server to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Command {
    /// Authenticate (only as the first frame, when no token came with the upgrade request).
    Auth { token: String },
    /// Replace the connection's token before it expires (same user and tenant), so that the
    /// connection is not closed with 4003 when the first one expires.
    Refresh { token: String },
    /// Subscribe to a conversation's events; with `since`, replay every durable event after it.
    Join {
        conversation: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<u64>,
    },
    /// Stop receiving a conversation's events.
    Leave { conversation: String },
    /// Post a message. Answered by `ack` once the message is durably stored.
    Send {
        conversation: String,
        client_msg_id: String,
        body: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        attachments: Vec<Attachment>,
    },
    /// Replace the body of one's own message.
    Edit { message: String, body: String },
    /// Soft-delete a message (its author, or an admin or owner of the conversation).
    Delete { message: String },
    /// Add a reaction.
    React { message: String, emoji: String },
    /// Remove one's reaction.
    Unreact { message: String, emoji: String },
    /// Tell the others that this user is typing (ephemeral, throttled).
    Typing { conversation: String },
    /// Move this user's read marker forward to `seq`.
    Read { conversation: String, seq: u64 },
    /// Application-level ping; answered by `pong`.
    Ping,
    /// Replay this user's own events after `since` (a `user_seq`), then answer `user_sync`.
    /// Sent after a reconnect with the last `user_seq` the client saw.
    UserResume { since: u64 },
}

/// The kinds of durable events, each of which takes the next per-conversation seq.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Message,
    MessageEdited,
    MessageDeleted,
    ReactionAdded,
    ReactionRemoved,
    MemberAdded,
    MemberRemoved,
    MemberRoleChanged,
    ConversationUpdated,
}

impl EventKind {
    /// Every kind, in declaration order.
    pub const ALL: [EventKind; 9] = [
        EventKind::Message,
        EventKind::MessageEdited,
        EventKind::MessageDeleted,
        EventKind::ReactionAdded,
        EventKind::ReactionRemoved,
        EventKind::MemberAdded,
        EventKind::MemberRemoved,
        EventKind::MemberRoleChanged,
        EventKind::ConversationUpdated,
    ];

    /// The kind as it appears on the wire (the frame's `type`).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Message => "message",
            EventKind::MessageEdited => "message_edited",
            EventKind::MessageDeleted => "message_deleted",
            EventKind::ReactionAdded => "reaction_added",
            EventKind::ReactionRemoved => "reaction_removed",
            EventKind::MemberAdded => "member_added",
            EventKind::MemberRemoved => "member_removed",
            EventKind::MemberRoleChanged => "member_role_changed",
            EventKind::ConversationUpdated => "conversation_updated",
        }
    }

    /// Parses a wire name.
    pub fn parse(name: &str) -> Option<EventKind> {
        EventKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
    }
}

/// Limits a client must respect, advertised in `welcome`.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest text frame the server accepts, in bytes.
    pub max_frame_bytes: usize,
    /// Largest message body, in bytes.
    pub max_body_bytes: usize,
    /// Messages a user may send per minute (0: unlimited).
    pub messages_per_minute: u32,
    /// Most events replayed on `join` with `since`; past it `joined.recovered` is false.
    pub replay_cap: u32,
}

/// A frame sent by the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// First frame after a successful authentication.
    Welcome {
        user: String,
        tenant: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        session: String,
        heartbeat_ms: u64,
        limits: Limits,
        /// The user's last `user_seq`: user events after it arrive on this connection. A client
        /// that saw a later or earlier one sends `user_resume` (older servers omit it).
        #[serde(default)]
        user_seq: u64,
    },
    /// Reply to `join`. With `since`, the replayed events follow it; `recovered` is false when
    /// more than the replay cap were missed and none were replayed (page through REST instead).
    /// `online` holds the sorted ids of the users online in the conversation (the joining
    /// user included); it defaults to empty so that frames from older servers still parse.
    Joined {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        conversation: String,
        last_seq: u64,
        recovered: bool,
        #[serde(default)]
        online: Vec<String>,
    },
    /// Reply to `leave`.
    Left {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        conversation: String,
    },
    /// Reply to `send`, only after the message is durably stored. `duplicate` is true when the
    /// `client_msg_id` had been sent before and this is the original message's ack; it is always
    /// written, as in REST's `SendResult` (older servers omitted it when false, hence `default`).
    Ack {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        conversation: String,
        client_msg_id: String,
        id: String,
        seq: u64,
        ts: Millis,
        #[serde(default)]
        duplicate: bool,
    },
    /// Reply to `edit`, `delete`, `react`, `unreact`, `typing` and `read`; `seq` is the durable
    /// event it created, absent when nothing changed.
    Ok {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
    },
    /// Reply to `ping`.
    Pong {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
    },
    /// A command failed, or the connection is about to be closed.
    Error {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        code: crate::ErrorCode,
        message: String,
        /// With `rate_limited`: milliseconds until the user's budget allows the next attempt.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
    /// Durable: a new message.
    Message(MessageEvent),
    /// Durable: a message's body was replaced.
    MessageEdited {
        conversation: String,
        seq: u64,
        message: String,
        author: String,
        body: String,
        ts: Millis,
    },
    /// Durable: a message was soft-deleted.
    MessageDeleted {
        conversation: String,
        seq: u64,
        message: String,
        by: String,
        ts: Millis,
    },
    /// Durable: a reaction was added.
    ReactionAdded {
        conversation: String,
        seq: u64,
        message: String,
        user: String,
        emoji: String,
        ts: Millis,
    },
    /// Durable: a reaction was removed.
    ReactionRemoved {
        conversation: String,
        seq: u64,
        message: String,
        user: String,
        emoji: String,
        ts: Millis,
    },
    /// Durable: a member was added.
    MemberAdded {
        conversation: String,
        seq: u64,
        user: String,
        role: Role,
        by: String,
        ts: Millis,
    },
    /// Durable: a member left or was removed.
    MemberRemoved {
        conversation: String,
        seq: u64,
        user: String,
        by: String,
        ts: Millis,
    },
    /// Durable: a member's role changed.
    MemberRoleChanged {
        conversation: String,
        seq: u64,
        user: String,
        role: Role,
        by: String,
        ts: Millis,
    },
    /// Durable: the title or archived state changed.
    ConversationUpdated {
        conversation: String,
        seq: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<String>,
        archived: bool,
        by: String,
        ts: Millis,
    },
    /// Ephemeral: `user` is typing.
    Typing { conversation: String, user: String },
    /// Ephemeral: `user` has read up to `seq`. The `seq` is their read marker (a durable event's
    /// seq), not a position of this frame: it is never replayed.
    Read {
        conversation: String,
        user: String,
        seq: u64,
    },
    /// User event: the user became a member of a conversation (created with them, or added).
    /// `summary` is the conversation as `GET /v1/conversations` lists it, absent when the user
    /// is no longer a member by the time the event is sent.
    ConversationAdded {
        user_seq: u64,
        conversation: String,
        role: Role,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        summary: Option<Box<ConversationSummary>>,
        ts: Millis,
    },
    /// User event: the user left or was removed from a conversation.
    ConversationRemoved {
        user_seq: u64,
        conversation: String,
        ts: Millis,
    },
    /// User event: the user's role in a conversation changed.
    RoleChanged {
        user_seq: u64,
        conversation: String,
        role: Role,
        ts: Millis,
    },
    /// User event: the user's read marker moved (from any of their connections or REST).
    ReadMoved {
        user_seq: u64,
        conversation: String,
        read_seq: u64,
        ts: Millis,
    },
    /// Reply to `user_resume` (after the replayed user events), or sent unprompted when this
    /// connection fell behind the retained user events. With `resync`, events after the
    /// client's point are gone: re-read `GET /v1/conversations`; user events continue after
    /// `user_seq`.
    UserSync {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        user_seq: u64,
        resync: bool,
    },
    /// Ephemeral: `user` came online (`online: true`: a first connection of theirs, on any
    /// node, joined the conversation) or went offline (their last one left). Sent only to
    /// connections opened with `?presence=true`.
    Presence {
        conversation: String,
        user: String,
        online: bool,
    },
}

impl ServerFrame {
    /// The conversation and seq of a durable event frame.
    pub fn durable_position(&self) -> Option<(&str, u64)> {
        match self {
            ServerFrame::Message(m) => Some((&m.conversation, m.seq)),
            ServerFrame::MessageEdited {
                conversation, seq, ..
            }
            | ServerFrame::MessageDeleted {
                conversation, seq, ..
            }
            | ServerFrame::ReactionAdded {
                conversation, seq, ..
            }
            | ServerFrame::ReactionRemoved {
                conversation, seq, ..
            }
            | ServerFrame::MemberAdded {
                conversation, seq, ..
            }
            | ServerFrame::MemberRemoved {
                conversation, seq, ..
            }
            | ServerFrame::MemberRoleChanged {
                conversation, seq, ..
            }
            | ServerFrame::ConversationUpdated {
                conversation, seq, ..
            } => Some((conversation, *seq)),
            _ => None,
        }
    }

    /// The `user_seq` of a user event frame.
    pub fn user_seq(&self) -> Option<u64> {
        match self {
            ServerFrame::ConversationAdded { user_seq, .. }
            | ServerFrame::ConversationRemoved { user_seq, .. }
            | ServerFrame::RoleChanged { user_seq, .. }
            | ServerFrame::ReadMoved { user_seq, .. } => Some(*user_seq),
            _ => None,
        }
    }

    /// An `error` frame.
    pub fn error(
        reference: Option<String>,
        code: crate::ErrorCode,
        message: impl Into<String>,
    ) -> Self {
        ServerFrame::Error {
            reference,
            code,
            message: message.into(),
            retry_after_ms: None,
        }
    }
}

/// The `message` event: a new message in a conversation.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageEvent {
    pub conversation: String,
    pub id: String,
    pub seq: u64,
    pub author: String,
    pub body: String,
    pub ts: Millis,
    pub client_msg_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_frames_parse_with_and_without_ref() {
        let frame: ClientFrame = serde_json::from_str(
            r#"{"type":"send","ref":"r1","conversation":"c","client_msg_id":"m1","body":"hi"}"#,
        )
        .expect("parse send");
        assert_eq!(frame.reference.as_deref(), Some("r1"));
        assert!(matches!(frame.command, Command::Send { ref body, .. } if body == "hi"));

        let frame: ClientFrame = serde_json::from_str(r#"{"type":"ping"}"#).expect("parse ping");
        assert_eq!(frame, ClientFrame::new(Command::Ping));

        let frame: ClientFrame =
            serde_json::from_str(r#"{"type":"join","conversation":"c","since":7}"#).expect("join");
        assert_eq!(
            frame.command,
            Command::Join {
                conversation: "c".into(),
                since: Some(7)
            }
        );
    }

    #[test]
    fn presence_frames_round_trip_and_joined_tolerates_online() {
        let frame = ServerFrame::Presence {
            conversation: "c".into(),
            user: "bob".into(),
            online: true,
        };
        let text = serde_json::to_string(&frame).expect("serialize");
        assert_eq!(
            text,
            r#"{"type":"presence","conversation":"c","user":"bob","online":true}"#
        );
        assert_eq!(
            serde_json::from_str::<ServerFrame>(&text).expect("parse"),
            frame
        );
        let joined: ServerFrame = serde_json::from_str(
            r#"{"type":"joined","conversation":"c","last_seq":3,"recovered":true,"online":["a"]}"#,
        )
        .expect("joined with online parses");
        assert!(
            matches!(joined, ServerFrame::Joined { last_seq: 3, ref online, .. } if online == &["a"])
        );
        // A `joined` without `online` (an older server) still parses, as an empty list.
        let old: ServerFrame = serde_json::from_str(
            r#"{"type":"joined","conversation":"c","last_seq":3,"recovered":true}"#,
        )
        .expect("joined without online parses");
        assert!(matches!(old, ServerFrame::Joined { ref online, .. } if online.is_empty()));
    }

    #[test]
    fn unknown_or_incomplete_frames_are_rejected() {
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"nope"}"#).is_err());
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"send","body":"x"}"#).is_err());
        assert!(serde_json::from_str::<ClientFrame>(r#"{"conversation":"c"}"#).is_err());
        assert!(serde_json::from_str::<ClientFrame>(r#"[1,2]"#).is_err());
    }

    #[test]
    fn server_frames_round_trip() {
        let frames = vec![
            ServerFrame::Ack {
                reference: Some("r".into()),
                conversation: "c".into(),
                client_msg_id: "m".into(),
                id: "id".into(),
                seq: 3,
                ts: 5,
                duplicate: false,
            },
            ServerFrame::Message(MessageEvent {
                conversation: "c".into(),
                id: "id".into(),
                seq: 3,
                author: "alice".into(),
                body: "hi".into(),
                ts: 5,
                client_msg_id: "m".into(),
                reply_to: None,
                attachments: vec![],
            }),
            ServerFrame::Pong { reference: None },
            ServerFrame::error(None, crate::ErrorCode::NotMember, "no"),
        ];
        for frame in frames {
            let json = serde_json::to_string(&frame).expect("serialize");
            let back: ServerFrame = serde_json::from_str(&json).expect("parse");
            assert_eq!(back, frame);
        }
        // `duplicate` is always written, `false` too, as REST's `SendResult` writes it.
        let ack = serde_json::to_value(ServerFrame::Ack {
            reference: None,
            conversation: "c".into(),
            client_msg_id: "m".into(),
            id: "id".into(),
            seq: 1,
            ts: 2,
            duplicate: false,
        })
        .expect("serialize");
        assert_eq!(ack["duplicate"], serde_json::json!(false), "{ack}");
        let json = serde_json::to_string(&ServerFrame::Pong { reference: None }).expect("pong");
        assert_eq!(json, r#"{"type":"pong"}"#);
    }

    #[test]
    fn ws_acks_and_rest_send_results_spell_duplicate_alike() {
        for duplicate in [false, true] {
            let ack = serde_json::to_value(ServerFrame::Ack {
                reference: None,
                conversation: "c".into(),
                client_msg_id: "m".into(),
                id: "id".into(),
                seq: 3,
                ts: 5,
                duplicate,
            })
            .expect("ack");
            let rest = serde_json::to_value(crate::rest::SendResult {
                conversation: "c".into(),
                client_msg_id: "m".into(),
                id: "id".into(),
                seq: 3,
                ts: 5,
                duplicate,
            })
            .expect("send result");
            assert_eq!(ack["duplicate"], serde_json::json!(duplicate));
            assert_eq!(ack["duplicate"], rest["duplicate"]);
        }
        // An ack from an older server, without the field, still parses.
        let old: ServerFrame = serde_json::from_str(
            r#"{"type":"ack","conversation":"c","client_msg_id":"m","id":"i","seq":1,"ts":2}"#,
        )
        .expect("ack without duplicate");
        assert!(matches!(
            old,
            ServerFrame::Ack {
                duplicate: false,
                ..
            }
        ));
    }

    #[test]
    fn durable_frames_report_their_position() {
        let frame = ServerFrame::MessageDeleted {
            conversation: "c".into(),
            seq: 9,
            message: "m".into(),
            by: "u".into(),
            ts: 1,
        };
        assert_eq!(frame.durable_position(), Some(("c", 9)));
        assert_eq!(
            ServerFrame::Pong { reference: None }.durable_position(),
            None
        );
    }

    #[test]
    fn event_kind_names_parse_back() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.as_str()), Some(kind));
            let json = serde_json::to_string(&kind).expect("serialize");
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
        }
    }
}
