//! Rules of membership: who adds, removes and promotes whom, and the last-owner guard (a group
//! with members always keeps an owner).

use confab_protocol::rest::{ConversationKind, Role};

use crate::{Result, StoreError};

/// How many members, and owners among them, a conversation has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MemberCounts {
    pub members: u64,
    pub owners: u64,
}

/// Members change only in groups: those of a direct conversation are fixed (`Forbidden`).
pub(crate) fn change_members(kind: ConversationKind) -> Result<()> {
    if kind == ConversationKind::Direct {
        return Err(StoreError::Forbidden(
            "the members of a direct conversation are fixed".to_owned(),
        ));
    }
    Ok(())
}

/// Whether `by_role` may add `user` as `role`, `user` being `existing` now: owners and admins
/// add members, only an owner adds an owner or admin, and nobody is added twice (`Conflict`).
pub(crate) fn add_member(by_role: Role, role: Role, existing: Option<Role>) -> Result<()> {
    if !by_role.can_manage() {
        return Err(StoreError::Forbidden(
            "only owners and admins add members".to_owned(),
        ));
    }
    if role.can_manage() && by_role != Role::Owner {
        return Err(StoreError::Forbidden(
            "only an owner adds an owner or admin".to_owned(),
        ));
    }
    if existing.is_some() {
        return Err(StoreError::Conflict("already a member".to_owned()));
    }
    Ok(())
}

/// Whether `by` (of `by_role`) may remove `user` (of role `target`, `None` if not a member):
/// anyone may leave; owners remove anyone, admins plain members. The last owner cannot leave
/// while others remain (`Conflict`).
pub(crate) fn remove_member(
    by: &str,
    user: &str,
    by_role: Role,
    target: Option<Role>,
    counts: MemberCounts,
) -> Result<()> {
    let target = target.ok_or(StoreError::NotFound("member"))?;
    let allowed =
        by == user || by_role == Role::Owner || (by_role == Role::Admin && target == Role::Member);
    if !allowed {
        return Err(StoreError::Forbidden(format!(
            "role {} cannot remove role {}",
            by_role.as_str(),
            target.as_str()
        )));
    }
    if target == Role::Owner && counts.owners == 1 && counts.members > 1 {
        return Err(StoreError::Conflict(
            "the last owner cannot leave while others remain; make someone else owner first"
                .to_owned(),
        ));
    }
    Ok(())
}

/// Whether `by_role` may give a member (now of role `current`, `None` if not a member) `role`,
/// and whether that changes anything: owners only, and the last owner cannot step down
/// (`Conflict`).
pub(crate) fn set_role(
    by_role: Role,
    current: Option<Role>,
    role: Role,
    owners: u64,
) -> Result<bool> {
    if by_role != Role::Owner {
        return Err(StoreError::Forbidden("only owners change roles".to_owned()));
    }
    let current = current.ok_or(StoreError::NotFound("member"))?;
    if current == role {
        return Ok(false);
    }
    if current == Role::Owner && owners == 1 {
        return Err(StoreError::Conflict(
            "the last owner cannot step down; make someone else owner first".to_owned(),
        ));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLES: [Role; 3] = [Role::Owner, Role::Admin, Role::Member];

    fn counts(members: u64, owners: u64) -> MemberCounts {
        MemberCounts { members, owners }
    }

    #[test]
    fn direct_members_are_fixed() {
        assert!(change_members(ConversationKind::Group).is_ok());
        assert!(matches!(
            change_members(ConversationKind::Direct),
            Err(StoreError::Forbidden(_))
        ));
    }

    #[test]
    fn who_adds_whom() {
        for role in ROLES {
            assert!(add_member(Role::Owner, role, None).is_ok());
            let by_member = add_member(Role::Member, role, None);
            assert!(matches!(by_member, Err(StoreError::Forbidden(_))));
        }
        assert!(add_member(Role::Admin, Role::Member, None).is_ok());
        for role in [Role::Owner, Role::Admin] {
            let refused = add_member(Role::Admin, role, None);
            assert!(matches!(refused, Err(StoreError::Forbidden(text)) if text.contains("owner")));
        }
        let twice = add_member(Role::Owner, Role::Member, Some(Role::Member));
        assert!(matches!(twice, Err(StoreError::Conflict(_))));
    }

    #[test]
    fn who_removes_whom() {
        let many = counts(5, 2);
        for role in ROLES {
            assert!(remove_member("ann", "ann", role, Some(role), many).is_ok());
            assert!(remove_member("ann", "bob", Role::Owner, Some(role), many).is_ok());
            let by_member = remove_member("ann", "bob", Role::Member, Some(role), many);
            assert!(matches!(by_member, Err(StoreError::Forbidden(_))));
        }
        assert!(remove_member("ann", "bob", Role::Admin, Some(Role::Member), many).is_ok());
        let admin = remove_member("ann", "bob", Role::Admin, Some(Role::Admin), many);
        assert!(
            matches!(admin, Err(StoreError::Forbidden(text)) if text == "role admin cannot remove role admin")
        );
        let unknown = remove_member("ann", "bob", Role::Owner, None, many);
        assert!(matches!(unknown, Err(StoreError::NotFound("member"))));
    }

    #[test]
    fn the_last_owner_leaves_only_when_alone() {
        let last = remove_member("ann", "ann", Role::Owner, Some(Role::Owner), counts(3, 1));
        assert!(matches!(last, Err(StoreError::Conflict(_))));
        assert!(remove_member("ann", "ann", Role::Owner, Some(Role::Owner), counts(1, 1)).is_ok());
        assert!(remove_member("ann", "ann", Role::Owner, Some(Role::Owner), counts(3, 2)).is_ok());
    }

    #[test]
    fn only_owners_change_roles_and_one_owner_stays() {
        for by in [Role::Admin, Role::Member] {
            let refused = set_role(by, Some(Role::Member), Role::Admin, 1);
            assert!(matches!(refused, Err(StoreError::Forbidden(_))));
        }
        let unknown = set_role(Role::Owner, None, Role::Admin, 1);
        assert!(matches!(unknown, Err(StoreError::NotFound("member"))));
        assert!(!set_role(Role::Owner, Some(Role::Admin), Role::Admin, 1).expect("allowed"));
        assert!(set_role(Role::Owner, Some(Role::Member), Role::Owner, 1).expect("allowed"));
        let last = set_role(Role::Owner, Some(Role::Owner), Role::Member, 1);
        assert!(matches!(last, Err(StoreError::Conflict(_))));
        assert!(set_role(Role::Owner, Some(Role::Owner), Role::Member, 2).expect("allowed"));
    }
}
