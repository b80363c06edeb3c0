//! Rules of conversations: what a creation may ask for, who updates one, and read markers.

use confab_protocol::limits::MAX_INITIAL_MEMBERS;
use confab_protocol::rest::{Conversation, ConversationKind, Role};

use crate::{NewConversation, Result, StoreError};

/// Separates the two user ids of a direct conversation's key (a control character no sane user
/// id contains).
const DIRECT_KEY_SEPARATOR: char = '\u{1f}';

/// A valid [`NewConversation`]: the other members deduplicated (and without the creator), an
/// empty title cleared, and for a direct conversation the key that makes it unique.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Creation {
    pub tenant: String,
    pub creator: String,
    pub kind: ConversationKind,
    pub title: Option<String>,
    pub others: Vec<String>,
    /// The unique key of a direct conversation (the same for both orders of its two users).
    pub direct_key: Option<String>,
}

impl Creation {
    /// Checks `new` (`Invalid`: too many members; a direct conversation without exactly one
    /// other member, or with a title).
    pub(crate) fn validate(new: NewConversation) -> Result<Creation> {
        let mut others: Vec<String> = Vec::with_capacity(new.members.len());
        for user in new.members {
            if user != new.creator && !others.contains(&user) {
                others.push(user);
            }
        }
        if others.len() > MAX_INITIAL_MEMBERS {
            return Err(StoreError::Invalid(format!(
                "at most {MAX_INITIAL_MEMBERS} members"
            )));
        }
        let direct_key = match new.kind {
            ConversationKind::Group => None,
            ConversationKind::Direct => {
                Some(direct_key(&new.creator, &others, new.title.as_deref())?)
            }
        };
        Ok(Creation {
            tenant: new.tenant,
            creator: new.creator,
            kind: new.kind,
            title: new.title.filter(|title| !title.is_empty()),
            others,
            direct_key,
        })
    }

    /// Every member with the role it starts with: the creator owns it.
    pub(crate) fn members(&self) -> impl Iterator<Item = (&str, Role)> {
        std::iter::once((self.creator.as_str(), Role::Owner))
            .chain(self.others.iter().map(|user| (user.as_str(), Role::Member)))
    }
}

/// The unique key of the direct conversation between `creator` and the one other user.
fn direct_key(creator: &str, others: &[String], title: Option<&str>) -> Result<String> {
    let [other] = others else {
        return Err(StoreError::Invalid(
            "a direct conversation names exactly one other member".to_owned(),
        ));
    };
    if title.is_some_and(|title| !title.is_empty()) {
        return Err(StoreError::Invalid(
            "a direct conversation has no title".to_owned(),
        ));
    }
    let (first, second) = if creator <= other.as_str() {
        (creator, other.as_str())
    } else {
        (other.as_str(), creator)
    };
    Ok(format!("{first}{DIRECT_KEY_SEPARATOR}{second}"))
}

/// A conversation's title and archived state after an update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Update {
    pub title: Option<String>,
    pub archived: bool,
}

/// What `role` changing `current`'s title and/or archived state comes to: `None` when nothing
/// changes. Owners and admins only; a direct conversation has no title (`Forbidden`). An empty
/// title clears it.
pub(crate) fn update_conversation(
    current: &Conversation,
    role: Role,
    title: Option<&str>,
    archived: Option<bool>,
) -> Result<Option<Update>> {
    if !role.can_manage() {
        return Err(StoreError::Forbidden(
            "only owners and admins update a conversation".to_owned(),
        ));
    }
    if title.is_some() && current.kind == ConversationKind::Direct {
        return Err(StoreError::Forbidden(
            "a direct conversation has no title".to_owned(),
        ));
    }
    let update = Update {
        title: match title {
            Some("") => None,
            Some(title) => Some(title.to_owned()),
            None => current.title.clone(),
        },
        archived: archived.unwrap_or(current.archived),
    };
    if update.title == current.title && update.archived == current.archived {
        return Ok(None);
    }
    Ok(Some(update))
}

/// A read marker may move up to the conversation's last seq, not past it (`Conflict`: the
/// same request succeeds once the conversation has reached that seq).
pub(crate) fn mark_read(seq: u64, last_seq: u64) -> Result<()> {
    if seq > last_seq {
        return Err(StoreError::Conflict(format!(
            "seq {seq} is past the conversation's last seq {last_seq}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(
        kind: ConversationKind,
        creator: &str,
        members: &[&str],
        title: &str,
    ) -> NewConversation {
        NewConversation {
            tenant: "t".to_owned(),
            creator: creator.to_owned(),
            kind,
            title: Some(title.to_owned()),
            members: members.iter().map(|member| (*member).to_owned()).collect(),
        }
    }

    fn conversation(kind: ConversationKind, title: Option<&str>, archived: bool) -> Conversation {
        Conversation {
            id: "c".to_owned(),
            kind,
            title: title.map(str::to_owned),
            created_by: "ann".to_owned(),
            created_at: 0,
            archived,
            last_seq: 3,
        }
    }

    #[test]
    fn a_group_keeps_its_other_members_once() {
        let creation = Creation::validate(new(
            ConversationKind::Group,
            "ann",
            &["bob", "ann", "cy", "bob"],
            "",
        ))
        .expect("valid");
        assert_eq!(creation.others, ["bob", "cy"]);
        assert_eq!(creation.title, None, "an empty title is no title");
        assert_eq!(creation.direct_key, None);
        let members: Vec<_> = creation.members().collect();
        assert_eq!(
            members,
            [
                ("ann", Role::Owner),
                ("bob", Role::Member),
                ("cy", Role::Member)
            ]
        );
    }

    #[test]
    fn too_many_members_is_invalid() {
        let many: Vec<String> = (0..=MAX_INITIAL_MEMBERS).map(|n| format!("u{n}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let refused = Creation::validate(new(ConversationKind::Group, "ann", &many, "big"));
        assert!(matches!(refused, Err(StoreError::Invalid(text)) if text.contains("at most")));
    }

    #[test]
    fn a_direct_key_is_the_same_both_ways() {
        let one = Creation::validate(new(ConversationKind::Direct, "ann", &["bob"], ""));
        let other = Creation::validate(new(ConversationKind::Direct, "bob", &["ann", "bob"], ""));
        let (one, other) = (one.expect("valid"), other.expect("valid"));
        assert!(one.direct_key.is_some());
        assert_eq!(one.direct_key, other.direct_key);
    }

    #[test]
    fn a_direct_conversation_names_one_other_and_no_title() {
        for members in [&[][..], &["bob", "cy"][..], &["ann"][..]] {
            let refused = Creation::validate(new(ConversationKind::Direct, "ann", members, ""));
            assert!(
                matches!(&refused, Err(StoreError::Invalid(text)) if text.contains("exactly one")),
                "{members:?}: {refused:?}"
            );
        }
        let titled = Creation::validate(new(ConversationKind::Direct, "ann", &["bob"], "hi"));
        assert!(matches!(titled, Err(StoreError::Invalid(text)) if text.contains("no title")));
    }

    #[test]
    fn updates_are_for_managers_and_may_change_nothing() {
        let group = conversation(ConversationKind::Group, Some("old"), false);
        let refused = update_conversation(&group, Role::Member, Some("new"), None);
        assert!(matches!(refused, Err(StoreError::Forbidden(_))));
        let same = update_conversation(&group, Role::Admin, Some("old"), Some(false));
        assert_eq!(same.expect("allowed"), None);
        let cleared = update_conversation(&group, Role::Owner, Some(""), Some(true));
        assert_eq!(
            cleared.expect("allowed"),
            Some(Update {
                title: None,
                archived: true
            })
        );
        let kept = update_conversation(&group, Role::Owner, None, Some(true));
        assert_eq!(
            kept.expect("allowed").and_then(|update| update.title),
            Some("old".to_owned())
        );
    }

    #[test]
    fn a_direct_conversation_is_archived_but_never_titled() {
        let direct = conversation(ConversationKind::Direct, None, false);
        let titled = update_conversation(&direct, Role::Owner, Some("x"), None);
        assert!(matches!(titled, Err(StoreError::Forbidden(text)) if text.contains("no title")));
        let archived = update_conversation(&direct, Role::Owner, None, Some(true));
        assert!(archived.expect("allowed").is_some());
    }

    #[test]
    fn read_markers_stop_at_the_last_seq() {
        assert!(mark_read(3, 3).is_ok());
        assert!(mark_read(0, 3).is_ok());
        assert!(matches!(mark_read(4, 3), Err(StoreError::Conflict(_))));
    }
}
