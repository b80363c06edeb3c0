//! The storage rules, written once for every backend: who may do what to a conversation, its
//! members and its messages, and in which state, with the error (and its text) the client sees.
//!
//! Each rule is a plain function over the state a backend has just read inside its write
//! transaction: it returns the decision, or the [`StoreError`] that aborts the transaction. No
//! I/O happens here, so that both backends decide alike and the rules are tested on their own
//! (the conformance suite then checks that each backend reads the right state).
//!
//! - `conversations`: creation (members, direct keys), updates, read markers.
//! - `members`: adding, removing and promoting members, the last-owner guard.
//! - `messages`: sending, editing, deleting and reacting.
//! - `media`: who sees and deletes a media file, and the tenant's quota.

mod conversations;
mod media;
mod members;
mod messages;

use confab_protocol::rest::Role;

use crate::{Result, StoreError};

pub(crate) use conversations::{Creation, Update, mark_read, update_conversation};
pub(crate) use media::{
    MediaAccess, attachable, deletable, higher, media_found, readable, within_quota,
};
pub(crate) use members::{MemberCounts, add_member, change_members, remove_member, set_role};
pub(crate) use messages::{
    MessageState, add_reaction, client_msg_id, delete_message, edit_message, new_message_allowed,
    remove_reaction, reply_to, writable,
};

/// The tenant's conversation, or `NotFound` (another tenant's id is not found either).
pub(crate) fn conversation_found<T>(found: Option<T>) -> Result<T> {
    found.ok_or(StoreError::NotFound("conversation"))
}

/// The tenant's message, or `NotFound`.
pub(crate) fn message_found<T>(found: Option<T>) -> Result<T> {
    found.ok_or(StoreError::NotFound("message"))
}

/// The acting user's role in the conversation: only members act on it (`NotMember`).
pub(crate) fn membership(role: Option<Role>) -> Result<Role> {
    role.ok_or(StoreError::NotMember)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_name_what_is_missing() {
        assert!(matches!(
            conversation_found::<()>(None),
            Err(StoreError::NotFound("conversation"))
        ));
        assert!(matches!(
            message_found::<()>(None),
            Err(StoreError::NotFound("message"))
        ));
        assert!(matches!(membership(None), Err(StoreError::NotMember)));
        assert_eq!(membership(Some(Role::Admin)).ok(), Some(Role::Admin));
        assert_eq!(conversation_found(Some(7)).ok(), Some(7));
    }
}
