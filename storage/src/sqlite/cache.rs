//! What the writer remembers between appends.
//!
//! **Members.** Which tenant a conversation belongs to, whether it is archived, and who its
//! members are. An append checks all three; reading them from the database was two lookups per
//! message (a tenth of the writer's time under load). Only appends (jobs queued with
//! `Writer::enqueue_checked`) fill it, and they change none of it; it is forgotten before any other
//! job runs (those may add or remove members, or archive).
//!
//! **Last seqs.** The last seq of each conversation remembered, read with it (a seq is its
//! event's, see `migrations/0008_derived_seq.sql`); an append takes the next one from here and
//! moves it once its message row is stored. Only appends take seqs while it is remembered (other
//! jobs run after [`WriteCache::forget_members`]), and an append that fails after storing
//! anything fails its batch, which clears the cache.
//!
//! **Client ids not merged yet.** A repeated `client_msg_id` is answered with the original
//! message, forever. The ids of messages up to `dedupe_state.merged_pos` are in the sorted
//! `client_ids` table; those of later messages only in `messages` and here, as a hash of
//! (conversation, author, client id) → `messages.pos`, loaded from the database on first use.
//! Before a commit that leaves [`MERGE_AT`] or more of them, they are merged into `client_ids` in
//! one sorted insert (see `migrations/0002_client_ids.sql` for why).
//!
//! Everything is owned by the writer thread and forgotten when a batch fails (it may hold state
//! that was rolled back) or when another connection (another process on the same file) has
//! committed since the writer's last look (`PRAGMA data_version`).

use std::collections::HashMap;
use std::collections::hash_map::{Entry as Slot, RandomState};
use std::hash::BuildHasher;

use confab_protocol::rest::Role;
use rusqlite::{Connection, OptionalExtension};

use super::common::{load_conversation, role_of, seq_at};
use crate::{Appended, Result, StoreError};

/// Client ids left unmerged before a commit merges them: each merge writes every `client_ids`
/// leaf it touches once, however many of the merged ids land there.
pub(super) const MERGE_AT: usize = 8192;

/// Conversations remembered at most; past it the cache starts over (appends to a working set
/// larger than this just read the database as before).
const MAX_CONVERSATIONS: usize = 4096;
/// Members remembered at most per conversation.
const MAX_MEMBERS: usize = 4096;

struct Entry {
    tenant: String,
    archived: bool,
    /// The conversation's last seq, as of this writer's last append to it.
    last_seq: u64,
    members: HashMap<String, Role>,
}

/// See the [module docs](self).
pub(super) struct WriteCache {
    conversations: HashMap<String, Entry>,
    /// Hash of (conversation, author, client id) → `messages.pos`, for the messages past
    /// `dedupe_state.merged_pos`; `None` until loaded.
    unmerged: Option<HashMap<u64, i64>>,
    hasher: RandomState,
    merge_at: usize,
    /// `PRAGMA data_version` when the cache was last known to be current.
    data_version: Option<i64>,
}

impl Default for WriteCache {
    fn default() -> Self {
        WriteCache::merging_at(MERGE_AT)
    }
}

/// What an append needs to know, from [`WriteCache::member`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Membership {
    pub role: Role,
    pub archived: bool,
}

impl WriteCache {
    /// A cache that merges client ids once `merge_at` are unmerged.
    pub(super) fn merging_at(merge_at: usize) -> WriteCache {
        WriteCache {
            conversations: HashMap::new(),
            unmerged: None,
            hasher: RandomState::new(),
            merge_at: merge_at.max(1),
            data_version: None,
        }
    }

    /// Forgets everything.
    pub(super) fn clear(&mut self) {
        self.conversations.clear();
        self.unmerged = None;
        self.data_version = None;
    }

    /// Forgets conversations and members (before a job that may change them).
    pub(super) fn forget_members(&mut self) {
        self.conversations.clear();
    }

    /// Forgets everything if another connection has committed since the last call. Run at the
    /// start of every batch, inside its transaction.
    pub(super) fn revalidate(&mut self, conn: &Connection) -> Result<()> {
        let version: i64 = conn
            .prepare_cached("PRAGMA data_version")?
            .query_row([], |row| row.get(0))?;
        if self.data_version != Some(version) {
            self.clear();
            self.data_version = Some(version);
        }
        Ok(())
    }

    fn client_key(&self, conversation: &str, author: &str, client_msg_id: &str) -> u64 {
        // Lengths first, so that no two different triples hash the same bytes.
        self.hasher.hash_one((
            conversation.len(),
            author.len(),
            conversation,
            author,
            client_msg_id,
        ))
    }

    fn unmerged(&mut self, conn: &Connection) -> Result<&mut HashMap<u64, i64>> {
        if self.unmerged.is_none() {
            let mut loaded = HashMap::new();
            let mut statement = conn.prepare_cached(
                "SELECT pos, conversation_id, author, client_msg_id FROM messages
                 WHERE pos > (SELECT merged_pos FROM dedupe_state)",
            )?;
            let mut rows = statement.query([])?;
            let mut collided = false;
            while let Some(row) = rows.next()? {
                let (conversation, author, client_msg_id): (String, String, String) =
                    (row.get(1)?, row.get(2)?, row.get(3)?);
                let key = self.client_key(&conversation, &author, &client_msg_id);
                collided |= loaded.insert(key, row.get::<_, i64>(0)?).is_some();
            }
            drop(rows);
            drop(statement);
            if collided {
                // Two unmerged ids share a hash: merge them all rather than keep a list.
                merge(conn)?;
                loaded.clear();
            }
            tracing::debug!(unmerged = loaded.len(), "loaded unmerged client ids");
            self.unmerged = Some(loaded);
        }
        self.unmerged.as_mut().ok_or_else(|| {
            StoreError::internal_bare("the unmerged client ids vanished while loading")
        })
    }

    /// The message `author` already sent to `conversation` with `client_msg_id`, if any.
    pub(super) fn find_sent(
        &mut self,
        conn: &Connection,
        conversation: &str,
        author: &str,
        client_msg_id: &str,
    ) -> Result<Option<Appended>> {
        let key = self.client_key(conversation, author, client_msg_id);
        let unmerged = self.unmerged(conn)?.get(&key).copied();
        if let Some(pos) = unmerged {
            let original = conn
                .prepare_cached(
                    "SELECT id, seq, created_at FROM messages
                     WHERE pos = ?1 AND conversation_id = ?2 AND author = ?3 AND client_msg_id = ?4",
                )?
                .query_row((pos, conversation, author, client_msg_id), original_at)
                .optional()?;
            if original.is_some() {
                return Ok(original);
            }
            // Only a hash collision: the merged ids may still hold it.
        }
        // Two lookups rather than a join: SQLite re-prepared the joined form on every run (its
        // REPREPARE counter rose by one per call), which cost far more than the lookups.
        let merged = conn
            .prepare_cached(
                "SELECT message_pos FROM client_ids
                 WHERE conversation_id = ?1 AND author = ?2 AND client_msg_id = ?3",
            )?
            .query_row((conversation, author, client_msg_id), |row| {
                row.get::<_, i64>(0)
            })
            .optional()?;
        let Some(pos) = merged else {
            return Ok(None);
        };
        let original = conn
            .prepare_cached("SELECT id, seq, created_at FROM messages WHERE pos = ?1")?
            .query_row([pos], original_at)?;
        Ok(Some(original))
    }

    /// Remembers the client id of a message just stored at `pos`.
    pub(super) fn remember_sent(
        &mut self,
        conn: &Connection,
        conversation: &str,
        author: &str,
        client_msg_id: &str,
        pos: i64,
    ) -> Result<()> {
        let key = self.client_key(conversation, author, client_msg_id);
        let unmerged = self.unmerged(conn)?;
        match unmerged.entry(key) {
            Slot::Vacant(slot) => {
                slot.insert(pos);
            }
            Slot::Occupied(_) => {
                // A hash collision: merging everything (this message included) frees the slot.
                merge(conn)?;
                unmerged.clear();
            }
        }
        Ok(())
    }

    /// Merges the unmerged client ids into `client_ids` if there are enough of them. Run inside
    /// the batch's transaction, just before it commits.
    pub(super) fn before_commit(&mut self, conn: &Connection) -> Result<()> {
        let Some(unmerged) = &mut self.unmerged else {
            return Ok(());
        };
        if unmerged.len() < self.merge_at {
            return Ok(());
        }
        let merged = unmerged.len();
        merge(conn)?;
        unmerged.clear();
        tracing::debug!(merged, "merged client ids");
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
                    last_seq: found.last_seq,
                    members: HashMap::new(),
                },
            );
        }
        let Some(entry) = self.conversations.get_mut(conversation) else {
            return Err(StoreError::internal_bare(
                "write cache lost an entry it just made",
            ));
        };
        if entry.tenant != tenant {
            return Err(StoreError::NotFound("conversation"));
        }
        let role = match entry.members.get(user) {
            Some(role) => *role,
            None => {
                let role = role_of(conn, conversation, user)?.ok_or(StoreError::NotMember)?;
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

impl WriteCache {
    /// The next seq of `conversation`, which [`WriteCache::member`] has just checked; nothing
    /// is taken until [`WriteCache::took_seq`].
    pub(super) fn next_seq(&self, conversation: &str) -> Result<u64> {
        let entry = self.conversations.get(conversation).ok_or_else(|| {
            StoreError::internal_bare("a seq was asked of a conversation the cache does not hold")
        })?;
        Ok(entry.last_seq + 1)
    }

    /// Records that `seq` of `conversation` is taken (its message row is stored).
    pub(super) fn took_seq(&mut self, conversation: &str, seq: u64) {
        if let Some(entry) = self.conversations.get_mut(conversation) {
            entry.last_seq = seq;
        }
    }
}

fn original_at(row: &rusqlite::Row<'_>) -> rusqlite::Result<Appended> {
    Ok(Appended {
        id: row.get(0)?,
        seq: seq_at(row, 1)?,
        ts: row.get(2)?,
        duplicate: true,
    })
}

/// Moves every client id past the watermark into `client_ids`, sorted, and advances it.
fn merge(conn: &Connection) -> Result<()> {
    // A key already there would be a duplicate the checks let through; keeping the first one
    // beats failing every later batch over it.
    conn.prepare_cached(
        "INSERT INTO client_ids (conversation_id, author, client_msg_id, message_pos)
         SELECT conversation_id, author, client_msg_id, pos FROM messages
         WHERE pos > (SELECT merged_pos FROM dedupe_state)
         ORDER BY conversation_id, author, client_msg_id
         ON CONFLICT DO NOTHING",
    )?
    .execute([])?;
    conn.prepare_cached(
        "UPDATE dedupe_state SET merged_pos = (SELECT coalesce(max(pos), merged_pos) FROM messages)",
    )?
    .execute([])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::schema;

    fn database() -> (tempfile::TempDir, Connection) {
        schema::seeded_for_tests()
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
