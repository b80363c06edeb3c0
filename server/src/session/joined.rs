//! The conversations a session has joined, with what it tracks of each: a boxed slice sorted by
//! conversation id rather than a hash map.
//!
//! Every idle connection keeps this, and most have joined one conversation or a few. A
//! `HashMap` allocates four buckets at least (a 192-byte block for one entry); this holds
//! exactly its entries (one: a 48-byte block), and a boxed slice is 16 bytes in the session
//! where a `Vec` is 24 (joins and leaves, which are rare, build the slice anew). Each delivery looks its conversation up here: a
//! binary search over a few entries costs no more than hashing the id, and at `max_joined`
//! entries it is a handful of comparisons.

use std::sync::Arc;
use std::time::Instant;

/// A joined conversation, as the session tracks it.
#[derive(Debug)]
pub(super) struct Joined {
    /// Highest durable seq written to the client (older queued events are dropped).
    pub(super) last_seq: u64,
    pub(super) last_typing: Option<Instant>,
}

/// The joined conversations by id (see the module docs).
#[derive(Debug, Default)]
pub(super) struct JoinedSet {
    /// Sorted by conversation id; no two entries share one.
    entries: Box<[(Arc<str>, Joined)]>,
}

impl JoinedSet {
    fn find(&self, conversation: &str) -> Result<usize, usize> {
        self.entries
            .binary_search_by(|(key, _)| (**key).cmp(conversation))
    }

    pub(super) fn contains_key(&self, conversation: &str) -> bool {
        self.find(conversation).is_ok()
    }

    pub(super) fn get(&self, conversation: &str) -> Option<&Joined> {
        let at = self.find(conversation).ok()?;
        self.entries.get(at).map(|(_, joined)| joined)
    }

    pub(super) fn get_mut(&mut self, conversation: &str) -> Option<&mut Joined> {
        let at = self.find(conversation).ok()?;
        self.entries.get_mut(at).map(|(_, joined)| joined)
    }

    /// Adds a conversation, or replaces what is tracked of it (keeping the first key, as a
    /// map does).
    pub(super) fn insert(&mut self, conversation: Arc<str>, joined: Joined) {
        match self.find(&conversation) {
            Ok(at) => {
                if let Some((_, entry)) = self.entries.get_mut(at) {
                    *entry = joined;
                }
            }
            Err(at) => {
                // Joins are rare: grow by one, never by doubling.
                let mut entries = std::mem::take(&mut self.entries).into_vec();
                entries.reserve_exact(1);
                entries.insert(at, (conversation, joined));
                self.entries = entries.into_boxed_slice();
            }
        }
    }

    pub(super) fn remove(&mut self, conversation: &str) -> Option<Joined> {
        let at = self.find(conversation).ok()?;
        let mut entries = std::mem::take(&mut self.entries).into_vec();
        let (_, joined) = entries.remove(at);
        self.entries = entries.into_boxed_slice();
        Some(joined)
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Takes every entry out.
    pub(super) fn drain(&mut self) -> impl Iterator<Item = (Arc<str>, Joined)> + use<> {
        std::mem::take(&mut self.entries).into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(last_seq: u64) -> Joined {
        Joined {
            last_seq,
            last_typing: None,
        }
    }

    #[test]
    fn finds_inserts_replaces_and_removes_by_id() {
        let mut set = JoinedSet::default();
        for (id, seq) in [("c2", 2), ("c1", 1), ("c3", 3)] {
            set.insert(Arc::from(id), joined(seq));
        }
        assert_eq!(set.len(), 3);
        assert!(set.contains_key("c1") && !set.contains_key("c4"));
        assert_eq!(set.get("c2").map(|j| j.last_seq), Some(2));
        set.insert(Arc::from("c2"), joined(20));
        assert_eq!(set.len(), 3);
        if let Some(j) = set.get_mut("c3") {
            j.last_seq = 30;
        }
        assert_eq!(set.remove("c1").map(|j| j.last_seq), Some(1));
        assert!(set.remove("c1").is_none());
        let left: Vec<(String, u64)> = set
            .drain()
            .map(|(k, j)| (k.to_string(), j.last_seq))
            .collect();
        assert_eq!(left, [("c2".to_owned(), 20), ("c3".to_owned(), 30)]);
        assert_eq!(set.len(), 0);
    }

    /// One joined conversation holds one entry's block (40 B), where a `HashMap` held four
    /// buckets, and the set is 16 B in the session: every idle connection keeps this (issue 17).
    #[test]
    fn one_join_holds_one_entry() {
        let mut set = JoinedSet::default();
        set.insert(Arc::from("c1"), joined(1));
        set.insert(Arc::from("c2"), joined(2));
        assert!(set.remove("c2").is_some());
        assert_eq!(set.entries.len(), 1);
        assert_eq!(std::mem::size_of::<(Arc<str>, Joined)>(), 40);
        assert_eq!(std::mem::size_of::<JoinedSet>(), 16);
    }
}
