//! A user's own event stream: what happened to *them* (added to or removed from a
//! conversation, their role changed, their read marker moved from some device), as opposed to
//! what happened in a conversation. Each user of a tenant has a gapless `user_seq` of their
//! own; a backend records the event in the same transaction as the change that causes it, so a
//! committed change never lacks its user event. Only the last [`USER_EVENTS_RETAINED`] of each
//! user are kept: a client further behind re-reads its conversation list instead.

use confab_protocol::Millis;
use confab_protocol::rest::Role;

use crate::backend::MemberChange;

/// How many user events are kept per user; older ones are deleted as new ones are recorded.
pub const USER_EVENTS_RETAINED: u64 = 1000;

/// What happened to the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserEventKind {
    /// They became a member (a new conversation, or added to a group), with `role`.
    ConversationAdded,
    /// They left or were removed.
    ConversationRemoved,
    /// Their role changed to `role`.
    RoleChanged,
    /// Their read marker moved to `read_seq`.
    ReadMoved,
}

impl UserEventKind {
    /// The name stored (and sent as the frame's `type`).
    pub fn as_str(self) -> &'static str {
        match self {
            UserEventKind::ConversationAdded => "conversation_added",
            UserEventKind::ConversationRemoved => "conversation_removed",
            UserEventKind::RoleChanged => "role_changed",
            UserEventKind::ReadMoved => "read_moved",
        }
    }

    pub fn parse(name: &str) -> Option<UserEventKind> {
        [
            UserEventKind::ConversationAdded,
            UserEventKind::ConversationRemoved,
            UserEventKind::RoleChanged,
            UserEventKind::ReadMoved,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == name)
    }
}

/// One committed user event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserEvent {
    pub user_seq: u64,
    pub kind: UserEventKind,
    pub conversation: String,
    /// The role, for `ConversationAdded` and `RoleChanged`.
    pub role: Option<Role>,
    /// The read marker, for `ReadMoved`.
    pub read_seq: Option<u64>,
    pub ts: Millis,
}

/// A user event about to be recorded (the backend assigns its seq and time).
#[derive(Debug, Clone)]
pub(crate) struct NewUserEvent<'a> {
    pub tenant: &'a str,
    pub user: &'a str,
    pub kind: UserEventKind,
    pub conversation: &'a str,
    pub role: Option<Role>,
    pub read_seq: Option<u64>,
}

impl<'a> NewUserEvent<'a> {
    /// `user` became a member of `conversation` with `role`.
    pub(crate) fn added(tenant: &'a str, user: &'a str, conversation: &'a str, role: Role) -> Self {
        NewUserEvent {
            tenant,
            user,
            kind: UserEventKind::ConversationAdded,
            conversation,
            role: Some(role),
            read_seq: None,
        }
    }

    /// `user`'s read marker in `conversation` moved to `seq`.
    pub(crate) fn read(tenant: &'a str, user: &'a str, conversation: &'a str, seq: u64) -> Self {
        NewUserEvent {
            tenant,
            user,
            kind: UserEventKind::ReadMoved,
            conversation,
            role: None,
            read_seq: Some(seq),
        }
    }

    /// A change of `change.user`'s membership: `kind`, with the new `role` if any.
    pub(crate) fn of_change(
        change: &'a MemberChange,
        kind: UserEventKind,
        role: Option<Role>,
    ) -> Self {
        NewUserEvent {
            tenant: &change.tenant,
            user: &change.user,
            kind,
            conversation: &change.conversation,
            role,
            read_seq: None,
        }
    }
}

/// A page of a user's events after some seq.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserEventPage {
    pub events: Vec<UserEvent>,
    /// The user's last seq (0: none yet).
    pub last_seq: u64,
    /// True when events after the asked seq are no longer retained (or the asked seq is past
    /// the last one): the caller must re-read the user's state instead of replaying.
    pub resync: bool,
}

/// Whether a reader at `after` missed events that are gone: the oldest retained is
/// `first_retained` (`None`: none stored), the last `last_seq`.
pub(crate) fn needs_resync(after: u64, first_retained: Option<u64>, last_seq: u64) -> bool {
    if after > last_seq {
        return true;
    }
    match first_retained {
        Some(first) => after.saturating_add(1) < first,
        None => after < last_seq,
    }
}

/// The seqs at or below which a user's events are deleted once `seq` is recorded.
pub(crate) fn prune_up_to(seq: u64) -> u64 {
    seq.saturating_sub(USER_EVENTS_RETAINED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resync_only_when_something_missed_is_gone() {
        assert!(!needs_resync(0, None, 0));
        assert!(!needs_resync(0, Some(1), 5));
        assert!(!needs_resync(4, Some(5), 9));
        assert!(needs_resync(3, Some(5), 9));
        assert!(needs_resync(10, Some(5), 9));
        assert!(!needs_resync(9, Some(5), 9));
    }

    #[test]
    fn kinds_round_trip() {
        for name in [
            "conversation_added",
            "conversation_removed",
            "role_changed",
            "read_moved",
        ] {
            assert_eq!(
                UserEventKind::parse(name).map(UserEventKind::as_str),
                Some(name)
            );
        }
        assert_eq!(UserEventKind::parse("other"), None);
    }
}
