//! Rules of media files: who may see one, who may delete one, and the tenant's quota.
//!
//! A file is visible to its uploader and to the current members of every conversation it
//! belongs to (the one named at upload, or where it was attached); to anyone else, another
//! tenant included, it does not exist (`NotFound`), so that its id reveals nothing.

use confab_protocol::rest::Role;

use crate::{Result, StoreError};

/// What the rules need to know about a file and the user acting on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MediaAccess<'a> {
    pub uploader: &'a str,
    /// The user's highest role among the file's conversations, `None` if in none of them.
    pub role: Option<Role>,
}

/// The file as the tenant has it, or `NotFound`.
pub(crate) fn media_found<T>(found: Option<T>) -> Result<T> {
    found.ok_or(StoreError::NotFound("media"))
}

/// `user` sees the file if they uploaded it or are a member of one of its conversations.
pub(crate) fn readable(access: &MediaAccess<'_>, user: &str) -> Result<()> {
    if access.uploader == user || access.role.is_some() {
        return Ok(());
    }
    Err(StoreError::NotFound("media"))
}

/// The uploader deletes a file, and so does an owner or admin of one of its conversations.
pub(crate) fn deletable(access: &MediaAccess<'_>, by: &str) -> Result<()> {
    readable(access, by)?;
    if access.uploader == by || matches!(access.role, Some(Role::Owner | Role::Admin)) {
        return Ok(());
    }
    Err(StoreError::Forbidden(
        "only the uploader or an admin of its conversation deletes a file".to_owned(),
    ))
}

/// `by` attaches a file they see to a message in `conversation`: their own file anywhere, or a
/// file already in that conversation (forwarding someone else's file elsewhere is refused).
pub(crate) fn attachable(access: &MediaAccess<'_>, by: &str, in_conversation: bool) -> Result<()> {
    readable(access, by)?;
    if access.uploader == by || in_conversation {
        return Ok(());
    }
    Err(StoreError::Forbidden(
        "only its uploader attaches a file to another conversation".to_owned(),
    ))
}

/// A file of `size` bytes fits when the tenant's files take `used` bytes of `quota` (no quota:
/// always).
pub(crate) fn within_quota(used: u64, size: u64, quota: Option<u64>) -> Result<()> {
    match quota {
        Some(quota) if used.saturating_add(size) > quota => {
            Err(StoreError::QuotaExceeded { used, quota })
        }
        _ => Ok(()),
    }
}

/// The highest of two roles (owner above admin above member).
pub(crate) fn higher(a: Option<Role>, b: Option<Role>) -> Option<Role> {
    let rank = |role: Option<Role>| match role {
        None => 0,
        Some(Role::Member) => 1,
        Some(Role::Admin) => 2,
        Some(Role::Owner) => 3,
    };
    if rank(b) > rank(a) { b } else { a }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(role: Option<Role>) -> MediaAccess<'static> {
        MediaAccess {
            uploader: "ann",
            role,
        }
    }

    #[test]
    fn the_uploader_and_members_see_a_file_others_do_not() {
        assert!(readable(&access(None), "ann").is_ok());
        assert!(readable(&access(Some(Role::Member)), "bob").is_ok());
        assert!(matches!(
            readable(&access(None), "eve"),
            Err(StoreError::NotFound("media"))
        ));
    }

    #[test]
    fn the_uploader_and_admins_delete_members_may_not() {
        assert!(deletable(&access(None), "ann").is_ok());
        assert!(deletable(&access(Some(Role::Admin)), "bob").is_ok());
        assert!(deletable(&access(Some(Role::Owner)), "bob").is_ok());
        assert!(matches!(
            deletable(&access(Some(Role::Member)), "bob"),
            Err(StoreError::Forbidden(_))
        ));
        assert!(matches!(
            deletable(&access(None), "eve"),
            Err(StoreError::NotFound("media"))
        ));
    }

    #[test]
    fn files_are_attached_by_their_uploader_or_within_their_conversation() {
        assert!(attachable(&access(None), "ann", false).is_ok());
        assert!(attachable(&access(Some(Role::Member)), "bob", true).is_ok());
        assert!(matches!(
            attachable(&access(Some(Role::Member)), "bob", false),
            Err(StoreError::Forbidden(_))
        ));
        assert!(matches!(
            attachable(&access(None), "eve", true),
            Err(StoreError::NotFound("media"))
        ));
    }

    #[test]
    fn the_quota_counts_what_is_stored() {
        assert!(within_quota(10, 5, None).is_ok());
        assert!(within_quota(10, 5, Some(15)).is_ok());
        assert!(matches!(
            within_quota(10, 6, Some(15)),
            Err(StoreError::QuotaExceeded {
                used: 10,
                quota: 15
            })
        ));
        assert_eq!(
            higher(Some(Role::Member), Some(Role::Owner)),
            Some(Role::Owner)
        );
        assert_eq!(higher(Some(Role::Admin), None), Some(Role::Admin));
    }
}
