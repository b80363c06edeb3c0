//! What every write records, built once for both backends: the durable event a change creates
//! (what happened, as an [`EventBody`], at its conversation, seq and time), fresh ids and
//! timestamps. The backends store what this builds, in the storage form of
//! [`crate::event_form`].

use std::time::{SystemTime, UNIX_EPOCH};

use confab_protocol::rest::Role;
use confab_protocol::{EventBody, Millis, Posted};

use crate::rules::Update;
use crate::{NewMessage, StoreError, StoredEvent};

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
    pub conversation: String,
    pub seq: u64,
    pub ts: Millis,
    pub body: EventBody,
}

impl NewEvent {
    /// The event as handed to the sink.
    pub(crate) fn into_stored(self, tenant: &str) -> StoredEvent {
        StoredEvent {
            tenant: tenant.to_owned(),
            conversation: self.conversation,
            seq: self.seq,
            ts: self.ts,
            body: self.body,
        }
    }
}

/// A JSON (de)serialization failure of our own data.
pub(crate) fn json_error(err: serde_json::Error) -> StoreError {
    StoreError::internal("json", err)
}

/// The `message` event of a new message.
pub(crate) fn message(new: NewMessage, id: String, seq: u64, ts: Millis) -> NewEvent {
    let body = EventBody::Message(Posted {
        id,
        author: new.author,
        body: new.body,
        client_msg_id: new.client_msg_id,
        reply_to: new.reply_to,
        attachments: new.attachments,
    });
    NewEvent {
        conversation: new.conversation,
        seq,
        ts,
        body,
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
    fn event(&self, body: EventBody) -> NewEvent {
        NewEvent {
            conversation: self.conversation.to_owned(),
            seq: self.seq,
            ts: self.ts,
            body,
        }
    }

    fn by(&self) -> String {
        self.by.to_owned()
    }

    pub(crate) fn conversation_updated(&self, update: Update) -> NewEvent {
        self.event(EventBody::ConversationUpdated {
            title: update.title,
            archived: update.archived,
            by: self.by(),
        })
    }

    pub(crate) fn member_added(&self, user: &str, role: Role) -> NewEvent {
        self.event(EventBody::MemberAdded {
            user: user.to_owned(),
            role,
            by: self.by(),
        })
    }

    pub(crate) fn member_removed(&self, user: &str) -> NewEvent {
        self.event(EventBody::MemberRemoved {
            user: user.to_owned(),
            by: self.by(),
        })
    }

    pub(crate) fn member_role_changed(&self, user: &str, role: Role) -> NewEvent {
        self.event(EventBody::MemberRoleChanged {
            user: user.to_owned(),
            role,
            by: self.by(),
        })
    }

    /// An edit, by the message's author (the only one who edits).
    pub(crate) fn message_edited(&self, message: &str, body: String) -> NewEvent {
        self.event(EventBody::MessageEdited {
            message: message.to_owned(),
            author: self.by(),
            body,
        })
    }

    pub(crate) fn message_deleted(&self, message: &str) -> NewEvent {
        self.event(EventBody::MessageDeleted {
            message: message.to_owned(),
            by: self.by(),
        })
    }

    /// A reaction added (`added`) or removed, by `by`.
    pub(crate) fn reaction(&self, message: &str, emoji: &str, added: bool) -> NewEvent {
        self.event(EventBody::reaction(
            added,
            message.to_owned(),
            self.by(),
            emoji.to_owned(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use confab_protocol::EventKind;

    use super::*;

    #[test]
    fn events_know_their_place_and_subject() {
        let change = Change {
            conversation: "c",
            seq: 4,
            by: "ann",
            ts: 9,
        };
        let added = change.member_added("bob", Role::Admin);
        assert_eq!(added.body.kind(), EventKind::MemberAdded);
        assert_eq!(added.body.subject(), Some("bob"));
        let stored = added.into_stored("t");
        assert_eq!((stored.tenant.as_str(), stored.seq, stored.ts), ("t", 4, 9));
        assert_eq!(stored.conversation, "c");
        let reaction = change.reaction("m1", "👍", false);
        assert_eq!(reaction.body.kind(), EventKind::ReactionRemoved);
        let edit = change.message_edited("m1", "new".to_owned());
        assert_eq!(edit.body.message(), Some("m1"));
    }

    #[test]
    fn a_new_message_event_carries_what_was_posted() {
        let new = NewMessage {
            tenant: "t".to_owned(),
            conversation: "c".to_owned(),
            author: "ann".to_owned(),
            client_msg_id: "k".to_owned(),
            body: "hello".to_owned(),
            reply_to: None,
            attachments: Vec::new(),
            repeat_only: false,
        };
        let event = message(new, "m1".to_owned(), 1, 2);
        assert_eq!(
            (event.conversation.as_str(), event.seq, event.ts),
            ("c", 1, 2)
        );
        let EventBody::Message(posted) = event.body else {
            panic!("not a message event");
        };
        assert_eq!((posted.id.as_str(), posted.body.as_str()), ("m1", "hello"));
    }
}
