//! The storage form of durable events.
//!
//! A committed event is kept as what happened ([`EventBody`]), never as the frame clients
//! receive: the server renders the frame from it ([`EventBody::render`]) when the event is
//! committed and again when it is replayed, so changing a frame is a change to the renderer,
//! not a data migration.
//!
//! Both backends store an event as its conversation, seq, kind, subject and ts (columns or
//! fields of their own), `v`, the version of the form it was written in, and `data`, the kind's
//! payload as compact JSON ([`encode`]). A `message` event keeps no text: the message's own
//! row or document (same conversation, same seq) has it, so a message's text is stored once.
//! Its `data` is empty unless the message changed since it was posted: an edit keeps the text
//! it was posted with there ([`posted_text`]), a delete keeps an empty text and no attachments
//! ([`REDACTED`]), so what the event says never follows later changes of the message.
//!
//! Readers decode every version ever written ([`decode`]); writers write [`FORM_VERSION`]. A
//! new version of the form is a new decoder, not a migration of the stored events.

use std::borrow::Cow;

use confab_protocol::rest::{Attachment, Role};
use confab_protocol::{EventBody, EventKind, Posted, ServerFrame};
use serde::{Deserialize, Serialize};

use crate::{Result, StoreError};

/// The version of the form this build writes.
pub const FORM_VERSION: u32 = 1;

/// The `data` of a deleted message's `message` event: nothing of what it said.
pub(crate) const REDACTED: &str = r#"{"body":"","attachments":[]}"#;

/// The payloads of version 1, one per shape of event. Strings are borrowed when encoding and
/// owned when decoding.
mod v1 {
    use super::*;

    /// A `message` event: what differs from its message's row (nothing, until it changes).
    #[derive(Debug, Default, Serialize, Deserialize)]
    pub(super) struct Message<'a> {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub body: Option<Cow<'a, str>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub attachments: Option<Vec<Attachment>>,
    }

    #[derive(Debug, Serialize, Deserialize)]
    pub(super) struct Edited<'a> {
        pub message: Cow<'a, str>,
        pub author: Cow<'a, str>,
        pub body: Cow<'a, str>,
    }

    #[derive(Debug, Serialize, Deserialize)]
    pub(super) struct Deleted<'a> {
        pub message: Cow<'a, str>,
        pub by: Cow<'a, str>,
    }

    #[derive(Debug, Serialize, Deserialize)]
    pub(super) struct Reaction<'a> {
        pub message: Cow<'a, str>,
        pub user: Cow<'a, str>,
        pub emoji: Cow<'a, str>,
    }

    /// Member events; `role` for `member_added` and `member_role_changed`.
    #[derive(Debug, Serialize, Deserialize)]
    pub(super) struct Member<'a> {
        pub user: Cow<'a, str>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub role: Option<Role>,
        pub by: Cow<'a, str>,
    }

    #[derive(Debug, Serialize, Deserialize)]
    pub(super) struct Updated<'a> {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub title: Option<Cow<'a, str>>,
        pub archived: bool,
        pub by: Cow<'a, str>,
    }
}

fn json_error(err: serde_json::Error) -> StoreError {
    StoreError::internal("event form", err)
}

fn corrupt(what: String) -> StoreError {
    StoreError::internal_bare(format!("corrupt stored event: {what}"))
}

/// The `data` to store for `body` in the current form: `None` for a `message` event, whose
/// message row holds everything it says.
pub(crate) fn encode(body: &EventBody) -> Result<Option<String>> {
    let b = Cow::Borrowed;
    let text = match body {
        EventBody::Message(_) => return Ok(None),
        EventBody::MessageEdited {
            message,
            author,
            body,
        } => serde_json::to_string(&v1::Edited {
            message: b(message),
            author: b(author),
            body: b(body),
        }),
        EventBody::MessageDeleted { message, by } => serde_json::to_string(&v1::Deleted {
            message: b(message),
            by: b(by),
        }),
        EventBody::ReactionAdded {
            message,
            user,
            emoji,
        }
        | EventBody::ReactionRemoved {
            message,
            user,
            emoji,
        } => serde_json::to_string(&v1::Reaction {
            message: b(message),
            user: b(user),
            emoji: b(emoji),
        }),
        EventBody::MemberAdded { user, role, by }
        | EventBody::MemberRoleChanged { user, role, by } => serde_json::to_string(&v1::Member {
            user: b(user),
            role: Some(*role),
            by: b(by),
        }),
        EventBody::MemberRemoved { user, by } => serde_json::to_string(&v1::Member {
            user: b(user),
            role: None,
            by: b(by),
        }),
        EventBody::ConversationUpdated {
            title,
            archived,
            by,
        } => serde_json::to_string(&v1::Updated {
            title: title.as_deref().map(b),
            archived: *archived,
            by: b(by),
        }),
    };
    text.map(Some).map_err(json_error)
}

/// The `data` of a `message` event whose message is about to be edited: the text it was posted
/// with, which the row no longer holds once edited.
pub(crate) fn posted_text(body: &str) -> Result<String> {
    serde_json::to_string(&v1::Message {
        body: Some(Cow::Borrowed(body)),
        attachments: None,
    })
    .map_err(json_error)
}

/// A message as its row stands, joined to its `message` event when the event is read: the
/// fields of [`Posted`], with the text and attachments the message has now.
pub(crate) type MessageRow = Posted;

/// An event read back: `v` and `data` as stored, and for a `message` event its message's row.
pub(crate) fn decode(
    kind: EventKind,
    v: u32,
    data: Option<&str>,
    message: Option<MessageRow>,
) -> Result<EventBody> {
    if v != 1 {
        return Err(corrupt(format!(
            "form version {v} is not known to this build (it writes {FORM_VERSION})"
        )));
    }
    if kind == EventKind::Message {
        let Some(row) = message else {
            return Err(corrupt("a message event without its message".to_owned()));
        };
        let changed: v1::Message<'static> = match data {
            Some(text) => serde_json::from_str(text).map_err(json_error)?,
            None => v1::Message::default(),
        };
        return Ok(EventBody::Message(Posted {
            body: changed.body.map_or(row.body, Cow::into_owned),
            attachments: changed.attachments.unwrap_or(row.attachments),
            ..row
        }));
    }
    let Some(text) = data else {
        return Err(corrupt(format!("a {} event without data", kind.as_str())));
    };
    decode_v1(kind, text)
}

fn decode_v1(kind: EventKind, text: &str) -> Result<EventBody> {
    fn parse<'de, T: Deserialize<'de>>(text: &'de str) -> Result<T> {
        serde_json::from_str(text).map_err(json_error)
    }
    let own = Cow::into_owned;
    let member = |text| -> Result<(String, Option<Role>, String)> {
        let member: v1::Member<'_> = parse(text)?;
        Ok((own(member.user), member.role, own(member.by)))
    };
    let role_of = |role: Option<Role>| {
        role.ok_or_else(|| corrupt(format!("a {} event without a role", kind.as_str())))
    };
    Ok(match kind {
        EventKind::Message => return Err(corrupt("a message event decoded alone".to_owned())),
        EventKind::MessageEdited => {
            let edited: v1::Edited<'_> = parse(text)?;
            EventBody::MessageEdited {
                message: own(edited.message),
                author: own(edited.author),
                body: own(edited.body),
            }
        }
        EventKind::MessageDeleted => {
            let deleted: v1::Deleted<'_> = parse(text)?;
            EventBody::MessageDeleted {
                message: own(deleted.message),
                by: own(deleted.by),
            }
        }
        EventKind::ReactionAdded | EventKind::ReactionRemoved => {
            let reaction: v1::Reaction<'_> = parse(text)?;
            EventBody::reaction(
                kind == EventKind::ReactionAdded,
                own(reaction.message),
                own(reaction.user),
                own(reaction.emoji),
            )
        }
        EventKind::MemberAdded => {
            let (user, role, by) = member(text)?;
            EventBody::MemberAdded {
                user,
                role: role_of(role)?,
                by,
            }
        }
        EventKind::MemberRoleChanged => {
            let (user, role, by) = member(text)?;
            EventBody::MemberRoleChanged {
                user,
                role: role_of(role)?,
                by,
            }
        }
        EventKind::MemberRemoved => {
            let (user, _, by) = member(text)?;
            EventBody::MemberRemoved { user, by }
        }
        EventKind::ConversationUpdated => {
            let updated: v1::Updated<'_> = parse(text)?;
            EventBody::ConversationUpdated {
                title: updated.title.map(own),
                archived: updated.archived,
                by: own(updated.by),
            }
        }
    })
}

/// The `data` of an event stored by an older build as its serialized frame (schema migration
/// only). A `message` frame is checked against its message's row, and keeps only what differs
/// from it (the text it was posted with, if edited since).
pub(crate) fn data_from_frame(
    kind: EventKind,
    frame: &str,
    message: Option<&MessageRow>,
) -> Result<Option<String>> {
    let frame: ServerFrame = serde_json::from_str(frame).map_err(json_error)?;
    let Some(body) = body_of_frame(frame) else {
        return Err(corrupt(format!(
            "a stored {} frame is not a durable event",
            kind.as_str()
        )));
    };
    if body.kind() != kind {
        return Err(corrupt(format!(
            "a {} event holds a {} frame",
            kind.as_str(),
            body.kind().as_str()
        )));
    }
    let EventBody::Message(posted) = body else {
        return encode(&body);
    };
    let Some(row) = message.filter(|row| {
        row.id == posted.id
            && row.author == posted.author
            && row.client_msg_id == posted.client_msg_id
            && row.reply_to == posted.reply_to
    }) else {
        return Err(corrupt(format!(
            "the message event of {} does not match its message",
            posted.id
        )));
    };
    let changed = v1::Message {
        body: (row.body != posted.body).then_some(Cow::Owned(posted.body)),
        attachments: (row.attachments != posted.attachments).then_some(posted.attachments),
    };
    if changed.body.is_none() && changed.attachments.is_none() {
        return Ok(None);
    }
    serde_json::to_string(&changed)
        .map(Some)
        .map_err(json_error)
}

/// What a durable event's frame says (`None` for other frames).
fn body_of_frame(frame: ServerFrame) -> Option<EventBody> {
    Some(match frame {
        ServerFrame::Message(posted) => EventBody::Message(Posted {
            id: posted.id,
            author: posted.author,
            body: posted.body,
            client_msg_id: posted.client_msg_id,
            reply_to: posted.reply_to,
            attachments: posted.attachments,
        }),
        ServerFrame::MessageEdited {
            message,
            author,
            body,
            ..
        } => EventBody::MessageEdited {
            message,
            author,
            body,
        },
        ServerFrame::MessageDeleted { message, by, .. } => {
            EventBody::MessageDeleted { message, by }
        }
        ServerFrame::ReactionAdded {
            message,
            user,
            emoji,
            ..
        } => EventBody::ReactionAdded {
            message,
            user,
            emoji,
        },
        ServerFrame::ReactionRemoved {
            message,
            user,
            emoji,
            ..
        } => EventBody::ReactionRemoved {
            message,
            user,
            emoji,
        },
        ServerFrame::MemberAdded { user, role, by, .. } => {
            EventBody::MemberAdded { user, role, by }
        }
        ServerFrame::MemberRemoved { user, by, .. } => EventBody::MemberRemoved { user, by },
        ServerFrame::MemberRoleChanged { user, role, by, .. } => {
            EventBody::MemberRoleChanged { user, role, by }
        }
        ServerFrame::ConversationUpdated {
            title,
            archived,
            by,
            ..
        } => EventBody::ConversationUpdated {
            title,
            archived,
            by,
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> MessageRow {
        MessageRow {
            id: "m1".into(),
            author: "ann".into(),
            body: "now".into(),
            client_msg_id: "x1".into(),
            reply_to: None,
            attachments: vec![],
        }
    }

    fn every_other_kind() -> Vec<EventBody> {
        vec![
            EventBody::MessageEdited {
                message: "m1".into(),
                author: "ann".into(),
                body: "new \"text\"".into(),
            },
            EventBody::MessageDeleted {
                message: "m1".into(),
                by: "bob".into(),
            },
            EventBody::ReactionAdded {
                message: "m1".into(),
                user: "bob".into(),
                emoji: "👍".into(),
            },
            EventBody::ReactionRemoved {
                message: "m1".into(),
                user: "bob".into(),
                emoji: "👍".into(),
            },
            EventBody::MemberAdded {
                user: "cy".into(),
                role: Role::Admin,
                by: "ann".into(),
            },
            EventBody::MemberRemoved {
                user: "cy".into(),
                by: "cy".into(),
            },
            EventBody::MemberRoleChanged {
                user: "cy".into(),
                role: Role::Member,
                by: "ann".into(),
            },
            EventBody::ConversationUpdated {
                title: Some("t".into()),
                archived: false,
                by: "ann".into(),
            },
            EventBody::ConversationUpdated {
                title: None,
                archived: true,
                by: "ann".into(),
            },
        ]
    }

    #[test]
    fn every_kind_decodes_to_what_was_encoded() {
        for body in every_other_kind() {
            let data = encode(&body).expect("encode").expect("data");
            assert_eq!(
                decode(body.kind(), FORM_VERSION, Some(&data), None).expect("decode"),
                body
            );
        }
    }

    #[test]
    fn the_form_is_compact() {
        let data = encode(&EventBody::ReactionAdded {
            message: "m1".into(),
            user: "bob".into(),
            emoji: "x".into(),
        })
        .expect("encode");
        assert_eq!(
            data.as_deref(),
            Some(r#"{"message":"m1","user":"bob","emoji":"x"}"#)
        );
        let data = encode(&EventBody::MemberRemoved {
            user: "cy".into(),
            by: "ann".into(),
        })
        .expect("encode");
        assert_eq!(data.as_deref(), Some(r#"{"user":"cy","by":"ann"}"#));
    }

    #[test]
    fn a_message_event_reads_its_text_from_the_row_unless_it_changed() {
        let posted = |body: &str, attachments: Vec<Attachment>| {
            EventBody::Message(Posted {
                id: "m1".into(),
                author: "ann".into(),
                body: body.into(),
                client_msg_id: "x1".into(),
                reply_to: None,
                attachments,
            })
        };
        let body = posted("now", vec![]);
        assert_eq!(encode(&body).expect("encode"), None, "no text of its own");
        let read = |data: Option<&str>| {
            decode(EventKind::Message, FORM_VERSION, data, Some(row())).expect("decode")
        };
        assert_eq!(read(None), body);
        let before_edit = posted_text("then").expect("encode");
        assert_eq!(read(Some(&before_edit)), posted("then", vec![]));
        let mut with_files = row();
        with_files.attachments = vec![Attachment {
            id: "a".into(),
            name: None,
            mime: None,
            size: None,
        }];
        assert_eq!(
            decode(EventKind::Message, 1, Some(REDACTED), Some(with_files)).expect("decode"),
            posted("", vec![])
        );
        assert!(decode(EventKind::Message, 1, None, None).is_err(), "no row");
    }

    #[test]
    fn unknown_versions_and_missing_data_are_refused() {
        assert!(decode(EventKind::MessageDeleted, 2, Some("{}"), None).is_err());
        assert!(decode(EventKind::MessageDeleted, 1, None, None).is_err());
        assert!(
            decode(
                EventKind::MemberAdded,
                1,
                Some(r#"{"user":"a","by":"b"}"#),
                None
            )
            .is_err()
        );
    }

    #[test]
    fn old_frames_convert_to_the_form() {
        let edited = r#"{"type":"message_edited","conversation":"c","seq":2,"message":"m1","author":"ann","body":"now","ts":5}"#;
        let data = data_from_frame(EventKind::MessageEdited, edited, None).expect("convert");
        assert_eq!(
            data.as_deref(),
            Some(r#"{"message":"m1","author":"ann","body":"now"}"#)
        );
        let message = r#"{"type":"message","conversation":"c","id":"m1","seq":1,"author":"ann","body":"then","ts":4,"client_msg_id":"x1"}"#;
        let data = data_from_frame(EventKind::Message, message, Some(&row())).expect("convert");
        assert_eq!(data.as_deref(), Some(r#"{"body":"then"}"#), "edited since");
        let unchanged = message.replace("then", "now");
        assert_eq!(
            data_from_frame(EventKind::Message, &unchanged, Some(&row())).expect("convert"),
            None
        );
        assert!(data_from_frame(EventKind::Message, message, None).is_err());
        assert!(data_from_frame(EventKind::MessageDeleted, edited, None).is_err());
        assert!(data_from_frame(EventKind::Message, r#"{"type":"pong"}"#, None).is_err());
    }
}
