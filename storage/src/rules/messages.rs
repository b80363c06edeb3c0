//! Rules of messages and reactions: who writes what, and the states that forbid it (an archived
//! conversation takes no writes; a deleted message no edits or reactions).

use confab_protocol::rest::Role;

use crate::{Result, StoreError};

/// What the rules need to know about an existing message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MessageState<'a> {
    pub author: &'a str,
    pub deleted: bool,
    /// Whether its conversation is archived.
    pub archived: bool,
}

/// A message carries the client's idempotency key (`Invalid` when empty).
pub(crate) fn client_msg_id(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(StoreError::Invalid("client_msg_id is empty".to_owned()));
    }
    Ok(())
}

/// A repeat-only append (`NewMessage::repeat_only`) whose `client_msg_id` was never stored
/// stores nothing (`Conflict`).
pub(crate) fn new_message_allowed(repeat_only: bool) -> Result<()> {
    if repeat_only {
        return Err(StoreError::Conflict(
            "not a repeat of a stored message".to_owned(),
        ));
    }
    Ok(())
}

/// An archived conversation takes no new messages, edits or reactions (`Forbidden`).
pub(crate) fn writable(archived: bool) -> Result<()> {
    if archived {
        return Err(StoreError::Forbidden(
            "the conversation is archived".to_owned(),
        ));
    }
    Ok(())
}

/// A reply answers a message of the same conversation: `replied_in` is the conversation of the
/// message replied to, `None` if the tenant has no such message (`Conflict` either way, as
/// for a deleted one: the request is well formed, the conversation holds no such message; not
/// `NotFound`, which would say the conversation of the URL is missing).
pub(crate) fn reply_to(replied_in: Option<&str>, conversation: &str) -> Result<()> {
    if replied_in != Some(conversation) {
        return Err(StoreError::Conflict(
            "`reply_to` is not a message of this conversation".to_owned(),
        ));
    }
    Ok(())
}

fn not_deleted(message: &MessageState<'_>) -> Result<()> {
    if message.deleted {
        return Err(StoreError::Conflict("the message is deleted".to_owned()));
    }
    Ok(())
}

/// Only the author edits a message, while it is not deleted and its conversation not archived.
pub(crate) fn edit_message(message: &MessageState<'_>, by: &str) -> Result<()> {
    if message.author != by {
        return Err(StoreError::Forbidden(
            "only the author edits a message".to_owned(),
        ));
    }
    not_deleted(message)?;
    writable(message.archived)
}

/// Whether `by` (of `role`) deleting the message changes anything: its author, an owner or an
/// admin deletes it (even in an archived conversation); deleting it again does nothing.
pub(crate) fn delete_message(message: &MessageState<'_>, by: &str, role: Role) -> Result<bool> {
    if message.author != by && !role.can_manage() {
        return Err(StoreError::Forbidden(
            "only the author, an owner or an admin deletes a message".to_owned(),
        ));
    }
    Ok(!message.deleted)
}

/// Any member reacts to a message that is not deleted, with a non-empty emoji, while the
/// conversation is not archived.
pub(crate) fn add_reaction(message: &MessageState<'_>, emoji: &str) -> Result<()> {
    not_deleted(message)?;
    writable(message.archived)?;
    if emoji.is_empty() {
        return Err(StoreError::Invalid("emoji is empty".to_owned()));
    }
    Ok(())
}

/// Any member takes back a reaction while the conversation is not archived.
pub(crate) fn remove_reaction(message: &MessageState<'_>) -> Result<()> {
    writable(message.archived)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIVE: MessageState<'static> = MessageState {
        author: "ann",
        deleted: false,
        archived: false,
    };
    const DELETED: MessageState<'static> = MessageState {
        deleted: true,
        ..LIVE
    };
    const ARCHIVED: MessageState<'static> = MessageState {
        archived: true,
        ..LIVE
    };

    #[test]
    fn sending_needs_a_key_a_live_conversation_and_a_local_reply() {
        assert!(matches!(client_msg_id(""), Err(StoreError::Invalid(_))));
        assert!(client_msg_id("k1").is_ok());
        assert!(matches!(writable(true), Err(StoreError::Forbidden(_))));
        assert!(writable(false).is_ok());
        assert!(reply_to(Some("c1"), "c1").is_ok());
        for elsewhere in [Some("c2"), None] {
            assert!(matches!(
                reply_to(elsewhere, "c1"),
                Err(StoreError::Conflict(_))
            ));
        }
    }

    #[test]
    fn only_the_author_edits_a_live_message() {
        assert!(edit_message(&LIVE, "ann").is_ok());
        assert!(matches!(
            edit_message(&LIVE, "bob"),
            Err(StoreError::Forbidden(_))
        ));
        assert!(matches!(
            edit_message(&DELETED, "ann"),
            Err(StoreError::Conflict(_))
        ));
        assert!(matches!(
            edit_message(&ARCHIVED, "ann"),
            Err(StoreError::Forbidden(text)) if text.contains("archived")
        ));
    }

    #[test]
    fn the_author_or_a_manager_deletes_once() {
        assert!(delete_message(&LIVE, "ann", Role::Member).expect("author"));
        assert!(delete_message(&LIVE, "bob", Role::Admin).expect("admin"));
        assert!(delete_message(&ARCHIVED, "bob", Role::Owner).expect("owner"));
        assert!(matches!(
            delete_message(&LIVE, "bob", Role::Member),
            Err(StoreError::Forbidden(_))
        ));
        assert!(!delete_message(&DELETED, "ann", Role::Member).expect("again"));
    }

    #[test]
    fn reactions_need_a_live_message_and_conversation() {
        assert!(add_reaction(&LIVE, "👍").is_ok());
        assert!(matches!(
            add_reaction(&LIVE, ""),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            add_reaction(&DELETED, "👍"),
            Err(StoreError::Conflict(_))
        ));
        assert!(matches!(
            add_reaction(&ARCHIVED, "👍"),
            Err(StoreError::Forbidden(_))
        ));
        assert!(remove_reaction(&DELETED).is_ok());
        assert!(matches!(
            remove_reaction(&ARCHIVED),
            Err(StoreError::Forbidden(_))
        ));
    }
}
