//! Durable events as Confab's parts pass them around: [`EventBody`], what happened, and the
//! one function that renders it as the [`ServerFrame`] clients receive ([`EventBody::render`]).
//!
//! Storage keeps the body (in a versioned form of its own), never the frame; the server
//! renders each event once when it is committed (the same text goes to every subscriber, the
//! other nodes and the event stream) and again when it is replayed. So a change of the frame
//! is a change here, not a migration of stored data.

use crate::frames::MessageEvent;
use crate::rest::{Attachment, Role};
use crate::{EventKind, Millis, ServerFrame};

/// A new message, as its `message` event tells it.
#[derive(Debug, Clone, PartialEq)]
pub struct Posted {
    pub id: String,
    pub author: String,
    pub body: String,
    pub client_msg_id: String,
    pub reply_to: Option<String>,
    pub attachments: Vec<Attachment>,
}

/// What a durable event says, by kind. Its conversation, seq and commit time are kept beside
/// it.
#[derive(Debug, Clone, PartialEq)]
pub enum EventBody {
    /// A new message, with the text it was posted with (empty, without attachments, once the
    /// message is deleted).
    Message(Posted),
    /// The author replaced a message's body (emptied once the message is deleted).
    MessageEdited {
        message: String,
        author: String,
        body: String,
    },
    MessageDeleted {
        message: String,
        by: String,
    },
    ReactionAdded {
        message: String,
        user: String,
        emoji: String,
    },
    ReactionRemoved {
        message: String,
        user: String,
        emoji: String,
    },
    MemberAdded {
        user: String,
        role: Role,
        by: String,
    },
    MemberRemoved {
        user: String,
        by: String,
    },
    MemberRoleChanged {
        user: String,
        role: Role,
        by: String,
    },
    /// The title (`None`: no title) or archived state changed.
    ConversationUpdated {
        title: Option<String>,
        archived: bool,
        by: String,
    },
}

impl EventBody {
    /// A reaction `added` (or removed) by `user`.
    pub fn reaction(added: bool, message: String, user: String, emoji: String) -> EventBody {
        if added {
            EventBody::ReactionAdded {
                message,
                user,
                emoji,
            }
        } else {
            EventBody::ReactionRemoved {
                message,
                user,
                emoji,
            }
        }
    }

    /// The event's kind.
    pub fn kind(&self) -> EventKind {
        match self {
            EventBody::Message(_) => EventKind::Message,
            EventBody::MessageEdited { .. } => EventKind::MessageEdited,
            EventBody::MessageDeleted { .. } => EventKind::MessageDeleted,
            EventBody::ReactionAdded { .. } => EventKind::ReactionAdded,
            EventBody::ReactionRemoved { .. } => EventKind::ReactionRemoved,
            EventBody::MemberAdded { .. } => EventKind::MemberAdded,
            EventBody::MemberRemoved { .. } => EventKind::MemberRemoved,
            EventBody::MemberRoleChanged { .. } => EventKind::MemberRoleChanged,
            EventBody::ConversationUpdated { .. } => EventKind::ConversationUpdated,
        }
    }

    /// The member concerned by a member event (a subscriber removed from the conversation must
    /// stop receiving it).
    pub fn subject(&self) -> Option<&str> {
        match self {
            EventBody::MemberAdded { user, .. }
            | EventBody::MemberRemoved { user, .. }
            | EventBody::MemberRoleChanged { user, .. } => Some(user),
            _ => None,
        }
    }

    /// The message concerned by a message or reaction event.
    pub fn message(&self) -> Option<&str> {
        match self {
            EventBody::Message(posted) => Some(&posted.id),
            EventBody::MessageEdited { message, .. }
            | EventBody::MessageDeleted { message, .. }
            | EventBody::ReactionAdded { message, .. }
            | EventBody::ReactionRemoved { message, .. } => Some(message),
            _ => None,
        }
    }

    /// The event's frame.
    // One flat arm per kind: the whole mapping in one place is what makes this the one renderer.
    #[allow(clippy::too_many_lines)]
    pub fn into_frame(self, conversation: String, seq: u64, ts: Millis) -> ServerFrame {
        match self {
            EventBody::Message(posted) => ServerFrame::Message(MessageEvent {
                conversation,
                id: posted.id,
                seq,
                author: posted.author,
                body: posted.body,
                ts,
                client_msg_id: posted.client_msg_id,
                reply_to: posted.reply_to,
                attachments: posted.attachments,
            }),
            EventBody::MessageEdited {
                message,
                author,
                body,
            } => ServerFrame::MessageEdited {
                conversation,
                seq,
                message,
                author,
                body,
                ts,
            },
            EventBody::MessageDeleted { message, by } => ServerFrame::MessageDeleted {
                conversation,
                seq,
                message,
                by,
                ts,
            },
            EventBody::ReactionAdded {
                message,
                user,
                emoji,
            } => ServerFrame::ReactionAdded {
                conversation,
                seq,
                message,
                user,
                emoji,
                ts,
            },
            EventBody::ReactionRemoved {
                message,
                user,
                emoji,
            } => ServerFrame::ReactionRemoved {
                conversation,
                seq,
                message,
                user,
                emoji,
                ts,
            },
            EventBody::MemberAdded { user, role, by } => ServerFrame::MemberAdded {
                conversation,
                seq,
                user,
                role,
                by,
                ts,
            },
            EventBody::MemberRemoved { user, by } => ServerFrame::MemberRemoved {
                conversation,
                seq,
                user,
                by,
                ts,
            },
            EventBody::MemberRoleChanged { user, role, by } => ServerFrame::MemberRoleChanged {
                conversation,
                seq,
                user,
                role,
                by,
                ts,
            },
            EventBody::ConversationUpdated {
                title,
                archived,
                by,
            } => ServerFrame::ConversationUpdated {
                conversation,
                seq,
                title,
                archived,
                by,
                ts,
            },
        }
    }

    /// The event's frame as JSON text, the form sent to clients and published.
    pub fn render(&self, conversation: &str, seq: u64, ts: Millis) -> serde_json::Result<String> {
        serde_json::to_string(&self.clone().into_frame(conversation.to_owned(), seq, ts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn posted() -> EventBody {
        EventBody::Message(Posted {
            id: "m1".into(),
            author: "ann".into(),
            body: "hi \"there\" 👋".into(),
            client_msg_id: "x1".into(),
            reply_to: Some("m0".into()),
            attachments: vec![Attachment {
                id: "a1".into(),
                name: Some("cat.png".into()),
                mime: Some("image/png".into()),
                size: Some(12),
            }],
        })
    }

    /// The frames as the stores serialized them before events had a storage form: rendering
    /// must give the same bytes.
    #[test]
    fn every_kind_renders_as_its_frame_always_did() {
        let cases = [
            (
                posted(),
                r#"{"type":"message","conversation":"c","id":"m1","seq":7,"author":"ann","body":"hi \"there\" 👋","ts":99,"client_msg_id":"x1","reply_to":"m0","attachments":[{"id":"a1","name":"cat.png","mime":"image/png","size":12}]}"#,
            ),
            (
                EventBody::MessageEdited {
                    message: "m1".into(),
                    author: "ann".into(),
                    body: "new".into(),
                },
                r#"{"type":"message_edited","conversation":"c","seq":7,"message":"m1","author":"ann","body":"new","ts":99}"#,
            ),
            (
                EventBody::MessageDeleted {
                    message: "m1".into(),
                    by: "bob".into(),
                },
                r#"{"type":"message_deleted","conversation":"c","seq":7,"message":"m1","by":"bob","ts":99}"#,
            ),
            (
                EventBody::ReactionAdded {
                    message: "m1".into(),
                    user: "bob".into(),
                    emoji: "👍".into(),
                },
                r#"{"type":"reaction_added","conversation":"c","seq":7,"message":"m1","user":"bob","emoji":"👍","ts":99}"#,
            ),
            (
                EventBody::ReactionRemoved {
                    message: "m1".into(),
                    user: "bob".into(),
                    emoji: "👍".into(),
                },
                r#"{"type":"reaction_removed","conversation":"c","seq":7,"message":"m1","user":"bob","emoji":"👍","ts":99}"#,
            ),
            (
                EventBody::MemberAdded {
                    user: "cy".into(),
                    role: Role::Admin,
                    by: "ann".into(),
                },
                r#"{"type":"member_added","conversation":"c","seq":7,"user":"cy","role":"admin","by":"ann","ts":99}"#,
            ),
            (
                EventBody::MemberRemoved {
                    user: "cy".into(),
                    by: "ann".into(),
                },
                r#"{"type":"member_removed","conversation":"c","seq":7,"user":"cy","by":"ann","ts":99}"#,
            ),
            (
                EventBody::MemberRoleChanged {
                    user: "cy".into(),
                    role: Role::Owner,
                    by: "ann".into(),
                },
                r#"{"type":"member_role_changed","conversation":"c","seq":7,"user":"cy","role":"owner","by":"ann","ts":99}"#,
            ),
            (
                EventBody::ConversationUpdated {
                    title: None,
                    archived: true,
                    by: "ann".into(),
                },
                r#"{"type":"conversation_updated","conversation":"c","seq":7,"archived":true,"by":"ann","ts":99}"#,
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(body.render("c", 7, 99).expect("render"), expected);
            let frame: ServerFrame = serde_json::from_str(expected).expect("parse");
            assert_eq!(frame.durable_position(), Some(("c", 7)));
            assert_eq!(
                body.kind().as_str(),
                expected[9..].split('"').next().unwrap_or("")
            );
        }
    }

    #[test]
    fn member_events_name_their_subject_and_message_events_their_message() {
        let added = EventBody::MemberAdded {
            user: "cy".into(),
            role: Role::Member,
            by: "ann".into(),
        };
        assert_eq!(added.subject(), Some("cy"));
        assert_eq!(added.message(), None);
        assert_eq!(posted().message(), Some("m1"));
        assert_eq!(posted().subject(), None);
    }
}
