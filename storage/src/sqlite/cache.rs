//! What the writer remembers between appends: which tenant a conversation belongs to, whether it
//! is archived, and who its members are. An append checks all three; reading them from the
//! database was two lookups per message (a tenth of the writer's time under load).
//!
//! The cache is owned by the writer thread and only ever holds committed state or state of the
//! transaction in progress that is sure to be kept:
//! - only appends (jobs queued with `Writer::write_checked`) fill it, and they change none of it;
//! - it is cleared before any other job runs (those may add or remove members, or archive), and
//!   when a batch fails (its state was rolled back);
//! - it is cleared when another connection (another process on the same file) has committed since
//!   the writer's last look (`PRAGMA data_version`).

use std::collections::HashMap;

use confab_protocol::rest::Role;
use rusqlite::{Connection, OptionalExtension};

use super::common::{load_conversation, role_at};
use crate::{Result, StoreError};

/// Conversations remembered at most; past it the cache starts over (appends to a working set
/// larger than this just read the database as before).
const MAX_CONVERSATIONS: usize = 4096;
/// Members remembered at most per conversation.
const MAX_MEMBERS: usize = 4096;

struct Entry {
    tenant: String,
    archived: bool,
    members: HashMap<String, Role>,
}

/// See the [module docs](self).
#[derive(Default)]
pub(super) struct WriteCache {
    conversations: HashMap<String, Entry>,
    /// `PRAGMA data_version` when the cache was last known to be current.
    data_version: Option<i64>,
}

/// What an append needs to know, from [`WriteCache::member`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Membership {
    pub role: Role,
    pub archived: bool,
}

impl WriteCache {
    /// Forgets everything.
    pub(super) fn clear(&mut self) {
        self.conversations.clear();
        self.data_version = None;
    }

    /// Forgets everything if another connection has committed since the last call. Run at the
    /// start of every batch, inside its transaction.
    pub(super) fn revalidate(&mut self, conn: &Connection) -> Result<()> {
        let version: i64 = conn
            .prepare_cached("PRAGMA data_version")?
            .query_row([], |row| row.get(0))?;
        if self.data_version != Some(version) {
            self.conversations.clear();
            self.data_version = Some(version);
        }
        Ok(())
    }

    /// `user`'s membership of the tenant's `conversation`: `NotFound` when the conversation does
    /// not exist for this tenant, `NotMember` when `user` is not in it (neither is remembered).
    pub(super) fn member(
        &mut self,
        conn: &Connection,
        tenant: &str,
        conversation: &str,
        user: &str,
    ) -> Result<Membership> {
        if !self.conversations.contains_key(conversation) {
            let found = load_conversation(conn, tenant, conversation)?;
            if self.conversations.len() >= MAX_CONVERSATIONS {
                self.conversations.clear();
            }
            self.conversations.insert(
                found.id,
                Entry {
                    tenant: tenant.to_owned(),
                    archived: found.archived,
                    members: HashMap::new(),
                },
            );
        }
        let Some(entry) = self.conversations.get_mut(conversation) else {
            return Err(StoreError::Internal(
                "write cache lost an entry it just made".to_owned(),
            ));
        };
        if entry.tenant != tenant {
            return Err(StoreError::NotFound("conversation"));
        }
        let role = match entry.members.get(user) {
            Some(role) => *role,
            None => {
                let role = conn
                    .prepare_cached(
                        "SELECT role FROM members WHERE conversation_id = ?1 AND user_id = ?2",
                    )?
                    .query_row((conversation, user), |row| role_at(row, 0))
                    .optional()?
                    .ok_or(StoreError::NotMember)?;
                if entry.members.len() >= MAX_MEMBERS {
                    entry.members.clear();
                }
                entry.members.insert(user.to_owned(), role);
                role
            }
        };
        Ok(Membership {
            role,
            archived: entry.archived,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::schema;

    fn database() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut conn = schema::open_writer(&dir.path().join("db.sqlite")).expect("open");
        schema::migrate(&mut conn).expect("migrate");
        conn.execute_batch(
            "INSERT INTO conversations (id, tenant, kind, created_by, created_at, last_activity)
                 VALUES ('c1', 't1', 'group', 'ann', 0, 0);
             INSERT INTO members (tenant, conversation_id, user_id, role, joined_at)
                 VALUES ('t1', 'c1', 'ann', 'owner', 0);",
        )
        .expect("seed");
        (dir, conn)
    }

    #[test]
    fn tenancy_and_membership_are_enforced_from_the_cache_too() {
        let (_dir, conn) = database();
        let mut cache = WriteCache::default();
        let ann = cache.member(&conn, "t1", "c1", "ann").expect("ann");
        assert_eq!(
            ann,
            Membership {
                role: Role::Owner,
                archived: false
            }
        );
        // The same conversation asked for by another tenant, now that it is cached.
        assert!(matches!(
            cache.member(&conn, "t2", "c1", "ann"),
            Err(StoreError::NotFound("conversation"))
        ));
        assert!(matches!(
            cache.member(&conn, "t1", "c1", "bob"),
            Err(StoreError::NotMember)
        ));
        assert!(matches!(
            cache.member(&conn, "t1", "nope", "ann"),
            Err(StoreError::NotFound("conversation"))
        ));
    }

    #[test]
    fn a_commit_by_another_connection_clears_it() {
        let (dir, conn) = database();
        let mut cache = WriteCache::default();
        cache.revalidate(&conn).expect("revalidate");
        cache.member(&conn, "t1", "c1", "ann").expect("ann");

        // Our own commits leave data_version alone: the cache stays.
        conn.execute("UPDATE conversations SET title = 'x'", [])
            .expect("own write");
        cache.revalidate(&conn).expect("revalidate");
        assert_eq!(cache.conversations.len(), 1);

        // Another process archives the conversation and removes ann.
        let other = Connection::open(dir.path().join("db.sqlite")).expect("second connection");
        other
            .execute_batch(
                "UPDATE conversations SET archived = 1; DELETE FROM members WHERE user_id = 'ann';",
            )
            .expect("other write");
        cache.revalidate(&conn).expect("revalidate");
        assert!(matches!(
            cache.member(&conn, "t1", "c1", "ann"),
            Err(StoreError::NotMember)
        ));
    }
}
