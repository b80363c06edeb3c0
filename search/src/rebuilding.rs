//! Rebuilding one tenant's documents without downtime. The server indexes the tenant's
//! messages anew from storage into an index of their own beside this one, then swaps them in
//! under this index's writer lock, in one commit: a searcher sees the old documents or the new
//! ones, never a mix, and never none.
//!
//! The swap writes only what differs. A message whose rebuilt entry equals the one indexed
//! (committed, or applied since the last commit) keeps its document, so the answers over
//! unchanged data stay exactly what they were: tantivy counts deleted documents in its
//! relevance statistics until their segments merge, so rewriting every document would shift
//! scores and the order of ties. A message that differs is written anew, and one that storage
//! does not have is removed.

use std::collections::HashMap;
use std::sync::{MutexGuard, PoisonError};

use tantivy::collector::DocSetCollector;
use tantivy::query::TermQuery;
use tantivy::schema::IndexRecordOption;
use tantivy::{DocAddress, TantivyDocument, Term};

use crate::{Entry, Result, SearchError, SearchIndex, Writing};

/// The writer of an index, held for a swap: nothing is applied to the index or committed
/// meanwhile (the feed waits), while searches go on.
pub struct Swap<'a> {
    index: &'a SearchIndex,
    writing: MutexGuard<'a, Writing>,
}

impl std::fmt::Debug for Swap<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Swap").finish_non_exhaustive()
    }
}

/// What a swap found and changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swapped {
    /// The tenant's messages in the rebuilt index (deleted ones' tombstones included).
    pub documents: u64,
    /// Documents written anew or removed: those that differed from the rebuilt ones.
    pub changed: u64,
}

impl SearchIndex {
    /// Takes the writer for a swap (after an apply or a commit in progress).
    pub fn begin_swap(&self) -> Swap<'_> {
        Swap {
            index: self,
            writing: self.writing.lock().unwrap_or_else(PoisonError::into_inner),
        }
    }

    /// The committed entries of `tenant`'s messages, by id.
    fn tenant_entries(&self, tenant: &str) -> Result<HashMap<String, Entry>> {
        let searcher = self.reader.searcher();
        let query = TermQuery::new(
            Term::from_field_text(self.fields.tenant, tenant),
            IndexRecordOption::Basic,
        );
        let mut addresses: Vec<DocAddress> = searcher
            .search(&query, &DocSetCollector)?
            .into_iter()
            .collect();
        // In store order: each compressed block of the doc store is read once.
        addresses.sort_unstable();
        let mut entries = HashMap::with_capacity(addresses.len());
        for address in addresses {
            let entry = self.entry(&searcher.doc::<TantivyDocument>(address)?);
            entries.insert(entry.id.clone(), entry);
        }
        Ok(entries)
    }
}

impl Swap<'_> {
    /// Makes `tenant`'s documents those of `rebuilt` (an index of that tenant's messages
    /// alone, committed), takes its conversations' positions, and commits.
    ///
    /// The caller must have applied to `rebuilt`, while holding this swap, every event this
    /// index was given for the tenant: the swap makes the rebuilt state the tenant's state.
    pub fn replace_tenant(mut self, tenant: &str, rebuilt: &SearchIndex) -> Result<Swapped> {
        let index = self.index;
        let writing = &mut *self.writing;
        let mut current = index.tenant_entries(tenant)?;
        // Applied since the last commit: newer than what is committed.
        for (id, entry) in &writing.pending {
            if entry.tenant == tenant {
                current.insert(id.clone(), entry.clone());
            }
        }
        let mut swapped = Swapped::default();
        let searcher = rebuilt.reader.searcher();
        for segment in searcher.segment_readers() {
            let store = segment
                .get_store_reader(1)
                .map_err(|err| SearchError::Index(err.into()))?;
            for doc in store.iter::<TantivyDocument>(segment.alive_bitset()) {
                let entry = rebuilt.entry(&doc?);
                if entry.tenant != tenant {
                    continue;
                }
                swapped.documents += 1;
                match current.remove(&entry.id) {
                    Some(old) if old == entry => {}
                    old => {
                        index.write(&mut writing.writer, &entry, old.is_some())?;
                        swapped.changed += 1;
                    }
                }
            }
        }
        // Indexed here, but not in storage.
        for id in current.keys() {
            writing
                .writer
                .delete_term(Term::from_field_text(index.fields.id, id));
            swapped.changed += 1;
        }
        let positions = rebuilt
            .committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for (conversation, seq) in positions {
            let top = writing.indexed.entry(conversation).or_insert(0);
            *top = (*top).max(seq);
        }
        index.commit_locked(writing)?;
        Ok(swapped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::IndexEvent;

    fn posted(tenant: &str, conversation: &str, id: &str, seq: u64, body: &str) -> IndexEvent {
        IndexEvent::Posted {
            tenant: tenant.to_owned(),
            conversation: conversation.to_owned(),
            id: id.to_owned(),
            seq,
            author: "ann".to_owned(),
            body: body.to_owned(),
            ts: 1_000 * seq as i64,
            attachments: false,
        }
    }

    fn ids(index: &SearchIndex, tenant: &str) -> Vec<(String, String)> {
        let mut entries: Vec<(String, String)> = index
            .tenant_entries(tenant)
            .expect("entries")
            .into_values()
            .map(|entry| (entry.id, entry.body))
            .collect();
        entries.sort();
        entries
    }

    /// The swap rewrites what differs, removes what storage lacks, keeps the rest and
    /// another tenant's documents, and counts both.
    #[test]
    fn a_swap_makes_the_tenant_what_was_rebuilt_and_touches_no_other_tenant() {
        let live = SearchIndex::in_memory().expect("index");
        live.apply(vec![
            posted("acme", "c1", "m1", 1, "kept as it is"),
            posted("acme", "c1", "m2", 2, "stale text"),
            posted("acme", "c1", "ghost", 3, "not in storage"),
            posted("globex", "g1", "g-m1", 1, "another tenant"),
        ])
        .expect("apply");
        live.commit().expect("commit");
        // Applied, not committed: the swap sees it too.
        live.apply(vec![posted("acme", "c1", "m4", 5, "pending")])
            .expect("apply");

        let rebuilt = SearchIndex::in_memory().expect("index");
        rebuilt
            .apply(vec![
                posted("acme", "c1", "m1", 1, "kept as it is"),
                posted("acme", "c1", "m2", 2, "fresh text"),
                posted("acme", "c1", "m3", 4, "missing until now"),
                posted("acme", "c1", "m4", 5, "pending"),
            ])
            .expect("apply");
        rebuilt.commit().expect("commit");

        let swapped = live
            .begin_swap()
            .replace_tenant("acme", &rebuilt)
            .expect("swap");
        assert_eq!(
            swapped,
            Swapped {
                documents: 4,
                // m2 rewritten, m3 added, the ghost removed.
                changed: 3,
            }
        );
        assert_eq!(
            ids(&live, "acme"),
            [
                ("m1".to_owned(), "kept as it is".to_owned()),
                ("m2".to_owned(), "fresh text".to_owned()),
                ("m3".to_owned(), "missing until now".to_owned()),
                ("m4".to_owned(), "pending".to_owned()),
            ]
        );
        assert_eq!(
            ids(&live, "globex"),
            [("g-m1".to_owned(), "another tenant".to_owned())]
        );
        assert_eq!(live.indexed_seq("c1"), 5);
        assert_eq!(live.indexed_seq("g1"), 1);

        // Swapping the same again changes nothing.
        let again = live
            .begin_swap()
            .replace_tenant("acme", &rebuilt)
            .expect("swap");
        assert_eq!(again.changed, 0);
    }
}
