//! What every write records, built once for both backends: the durable event a change creates
//! (its kind, the member it concerns, its frame), the scrubbing of a deleted message's frames,
//! fresh ids and timestamps. The backends store what this builds.

use std::time::{SystemTime, UNIX_EPOCH};

use confab_protocol::frames::MessageEvent;
use confab_protocol::rest::Role;
use confab_protocol::{EventKind, Millis, ServerFrame};

use crate::rules::Update;
use crate::{NewMessage, Result, StoreError, StoredEvent};

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| Millis::try_from(elapsed.as_millis()).unwrap_or(Millis::MAX))
        .unwrap_or(0)
}

/// A fresh, time-ordered id.
pub(crate) fn new_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// A durable event about to be stored at its seq.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NewEvent {
    pub kind: EventKind,
    /// For member events, the member concerned.
    pub subject: Option<String>,
    pub ts: Millis,
    pub frame: ServerFrame,
}

impl NewEvent {
    /// Its conversation and seq.
    pub(crate) fn position(&self) -> Result<(&str, u64)> {
        self.frame.durable_position().ok_or_else(|| {
            StoreError::internal_bare(format!("{} is not a durable event", self.kind.as_str()))
        })
    }

    /// Its frame, serialized once (stored, and sent as is to everyone).
    pub(crate) fn frame_json(&self) -> Result<String> {
        serde_json::to_string(&self.frame).map_err(json_error)
    }

    /// The event as handed to the sink, its frame serialized as `json`.
    pub(crate) fn into_stored(self, tenant: &str, json: String) -> Result<StoredEvent> {
        let (conversation, seq) = self.position()?;
        Ok(StoredEvent {
            tenant: tenant.to_owned(),
            conversation: conversation.to_owned(),
            seq,
            kind: self.kind,
            subject: self.subject,
            ts: self.ts,
            frame: json,
        })
    }
}

/// A JSON (de)serialization failure of our own data.
pub(crate) fn json_error(err: serde_json::Error) -> StoreError {
    StoreError::internal("json", err)
}

/// The `message` event of a new message.
pub(crate) fn message(new: NewMessage, id: String, seq: u64, ts: Millis) -> NewEvent {
    let frame = ServerFrame::Message(MessageEvent {
        conversation: new.conversation,
        id,
        seq,
        author: new.author,
        body: new.body,
        ts,
        client_msg_id: new.client_msg_id,
        reply_to: new.reply_to,
        attachments: new.attachments,
    });
    NewEvent {
        kind: EventKind::Message,
        subject: None,
        ts,
        frame,
    }
}

/// A change to a conversation: where it lands, who makes it, when. Its methods build the event
/// it records.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Change<'a> {
    pub conversation: &'a str,
    pub seq: u64,
    pub by: &'a str,
    pub ts: Millis,
}

impl Change<'_> {
    fn event(&self, kind: EventKind, subject: Option<&str>, frame: ServerFrame) -> NewEvent {
        NewEvent {
            kind,
            subject: subject.map(str::to_owned),
            ts: self.ts,
            frame,
        }
    }

    pub(crate) fn conversation_updated(&self, update: Update) -> NewEvent {
        let frame = ServerFrame::ConversationUpdated {
            conversation: self.conversation.to_owned(),
            seq: self.seq,
            title: update.title,
            archived: update.archived,
            by: self.by.to_owned(),
            ts: self.ts,
        };
        self.event(EventKind::ConversationUpdated, None, frame)
    }

    pub(crate) fn member_added(&self, user: &str, role: Role) -> NewEvent {
        let frame = ServerFrame::MemberAdded {
            conversation: self.conversation.to_owned(),
            seq: self.seq,
            user: user.to_owned(),
            role,
            by: self.by.to_owned(),
            ts: self.ts,
        };
        self.event(EventKind::MemberAdded, Some(user), frame)
    }

    pub(crate) fn member_removed(&self, user: &str) -> NewEvent {
        let frame = ServerFrame::MemberRemoved {
            conversation: self.conversation.to_owned(),
            seq: self.seq,
            user: user.to_owned(),
            by: self.by.to_owned(),
            ts: self.ts,
        };
        self.event(EventKind::MemberRemoved, Some(user), frame)
    }

    pub(crate) fn member_role_changed(&self, user: &str, role: Role) -> NewEvent {
        let frame = ServerFrame::MemberRoleChanged {
            conversation: self.conversation.to_owned(),
            seq: self.seq,
            user: user.to_owned(),
            role,
            by: self.by.to_owned(),
            ts: self.ts,
        };
        self.event(EventKind::MemberRoleChanged, Some(user), frame)
    }

    /// An edit, by the message's author (the only one who edits).
    pub(crate) fn message_edited(&self, message: &str, body: String) -> NewEvent {
        let frame = ServerFrame::MessageEdited {
            conversation: self.conversation.to_owned(),
            seq: self.seq,
            message: message.to_owned(),
            author: self.by.to_owned(),
            body,
            ts: self.ts,
        };
        self.event(EventKind::MessageEdited, None, frame)
    }

    pub(crate) fn message_deleted(&self, message: &str) -> NewEvent {
        let frame = ServerFrame::MessageDeleted {
            conversation: self.conversation.to_owned(),
            seq: self.seq,
            message: message.to_owned(),
            by: self.by.to_owned(),
            ts: self.ts,
        };
        self.event(EventKind::MessageDeleted, None, frame)
    }

    /// A reaction added (`added`) or removed, by `by`.
    pub(crate) fn reaction(&self, message: &str, emoji: &str, added: bool) -> NewEvent {
        let (conversation, seq, ts) = (self.conversation.to_owned(), self.seq, self.ts);
        let (message, user, emoji) = (message.to_owned(), self.by.to_owned(), emoji.to_owned());
        if added {
            let frame = ServerFrame::ReactionAdded {
                conversation,
                seq,
                message,
                user,
                emoji,
                ts,
            };
            return self.event(EventKind::ReactionAdded, None, frame);
        }
        let frame = ServerFrame::ReactionRemoved {
            conversation,
            seq,
            message,
            user,
            emoji,
            ts,
        };
        self.event(EventKind::ReactionRemoved, None, frame)
    }
}

/// Scrubs what deleted message `id` said from one of its stored frames (its `message` frame or
/// an edit): an empty body, no attachments. Returns whether the frame changed.
pub(crate) fn redact(frame: &mut ServerFrame, id: &str) -> bool {
    match frame {
        ServerFrame::Message(message) if message.id == id => {
            message.body.clear();
            message.attachments.clear();
            true
        }
        ServerFrame::MessageEdited { message, body, .. } if message == id => {
            body.clear();
            true
        }
        _ => false,
    }
}

/// Scrubs deleted message `id` from a stored frame's JSON: the new JSON, or `None` when the
/// frame is not one of its content frames.
pub(crate) fn redact_json(json: &str, id: &str) -> Result<Option<String>> {
    let mut frame: ServerFrame = serde_json::from_str(json).map_err(json_error)?;
    if !redact(&mut frame, id) {
        return Ok(None);
    }
    serde_json::to_string(&frame).map(Some).map_err(json_error)
}

#[cfg(test)]
mod tests {
    use confab_protocol::rest::Attachment;

    use super::*;

    fn new_message() -> NewMessage {
        NewMessage {
            tenant: "t".to_owned(),
            conversation: "c".to_owned(),
            author: "ann".to_owned(),
            client_msg_id: "k".to_owned(),
            body: "secret".to_owned(),
            reply_to: None,
            attachments: vec![Attachment {
                id: "a".to_owned(),
                name: Some("a.png".to_owned()),
                mime: None,
                size: Some(1),
            }],
        }
    }

    #[test]
    fn events_know_their_place_and_subject() {
        let change = Change {
            conversation: "c",
            seq: 4,
            by: "ann",
            ts: 9,
        };
        let added = change.member_added("bob", Role::Admin);
        assert_eq!(added.kind, EventKind::MemberAdded);
        assert_eq!(added.subject.as_deref(), Some("bob"));
        assert_eq!(added.position().expect("durable"), ("c", 4));
        let stored = added.into_stored("t", "{}".to_owned()).expect("stored");
        assert_eq!((stored.tenant.as_str(), stored.seq, stored.ts), ("t", 4, 9));
        let reaction = change.reaction("m1", "👍", false);
        assert_eq!(reaction.kind, EventKind::ReactionRemoved);
    }

    #[test]
    fn redaction_scrubs_only_the_deleted_message() {
        let event = message(new_message(), "m1".to_owned(), 1, 2);
        let json = event.frame_json().expect("json");
        let scrubbed = redact_json(&json, "m1").expect("parses").expect("changed");
        assert!(!scrubbed.contains("secret") && !scrubbed.contains("a.png"));
        assert_eq!(redact_json(&json, "m2").expect("parses"), None);
        let change = Change {
            conversation: "c",
            seq: 2,
            by: "ann",
            ts: 3,
        };
        let mut edit = change.message_edited("m1", "secret too".to_owned()).frame;
        assert!(redact(&mut edit, "m1"));
        assert!(
            !serde_json::to_string(&edit)
                .expect("json")
                .contains("secret")
        );
    }
}
