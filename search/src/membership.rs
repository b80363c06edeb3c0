//! The caller's conversations as a filter that costs what the query around it needs.
//!
//! Every search is limited to the caller's conversations (tens of them). As a union of their
//! term queries, that filter opens tens of posting lists in every segment and merges them for
//! each candidate the words propose: for a rare word, most of a query's time. Yet a filter
//! only needs to answer "is this document in one of them?" for the words' candidates, which the
//! conversation's fast column answers in one read.
//!
//! So [`Membership`] answers both ways: asked to *check* a document (`seek_danger`, how an
//! intersection asks every docset but its leader), it reads the document's conversation from
//! the column and looks it up in a bit set of the caller's conversations; asked to *walk* its
//! documents (when it is the cheapest clause and leads the intersection: a common word, no
//! words at all), it builds the union of the conversations' postings then, once, and walks
//! that. Both give the same documents: the column and the postings hold the same value.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use tantivy::columnar::{Column, ColumnIndex};
use tantivy::index::SegmentId;
use tantivy::query::{EnableScoring, Explanation, Query, Scorer, Weight};
use tantivy::schema::Field;
use tantivy::{DocId, DocSet, Score, Searcher, SegmentReader, Term};
use tantivy::{SeekDangerResult, TERMINATED};

/// The most values whose ordinals one segment keeps (then it starts again).
const MAX_ORDINALS: usize = 100_000;

/// Each segment's ordinal and document count of the values looked for so far. A segment
/// never changes, and a dictionary lookup (decoding a block of the sorted dictionary up to the
/// key) for each of tens of conversations in each segment would cost more than the filter
/// saves.
#[derive(Debug, Default)]
pub(crate) struct Ordinals {
    segments: HashMap<SegmentId, HashMap<String, Option<(u64, u32)>>>,
}

impl Ordinals {
    /// Forgets the segments `searcher` no longer has (merged away).
    pub(crate) fn keep_only(ordinals: &Mutex<Ordinals>, searcher: &Searcher) {
        let live: HashSet<SegmentId> = searcher
            .segment_readers()
            .iter()
            .map(SegmentReader::segment_id)
            .collect();
        let mut ordinals = ordinals.lock().unwrap_or_else(PoisonError::into_inner);
        if ordinals.segments.keys().any(|id| !live.contains(id)) {
            ordinals.segments.retain(|id, _| live.contains(id));
        }
    }
}

/// A document's first seeks before a lead is assumed: an intersection seeks each docset a few
/// times to align them; past that, the docset that is still sought leads.
const CHECKS_BEFORE_WALKING: u32 = 4;

/// Documents read from the column, from a seek target, before walking the postings instead.
const SCAN: u32 = 64;

/// Documents whose `field` (a fast, indexed string field) is one of `values`.
#[derive(Clone, Debug)]
pub(crate) struct Membership {
    field: Field,
    /// The field's name (its fast column).
    name: String,
    values: Arc<[String]>,
    /// The same documents as a union of term queries (constant score 0).
    union: Arc<dyn Query>,
    ordinals: Arc<Mutex<Ordinals>>,
}

impl Membership {
    pub(crate) fn new(
        field: Field,
        name: &str,
        values: Arc<[String]>,
        union: Box<dyn Query>,
        ordinals: Arc<Mutex<Ordinals>>,
    ) -> Membership {
        Membership {
            field,
            name: name.to_owned(),
            values,
            union: Arc::from(union),
            ordinals,
        }
    }
}

impl Query for Membership {
    fn weight(&self, enable_scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(MembershipWeight {
            field: self.field,
            name: self.name.clone(),
            values: Arc::clone(&self.values),
            union: Arc::from(self.union.weight(enable_scoring)?),
            ordinals: Arc::clone(&self.ordinals),
        }))
    }
}

struct MembershipWeight {
    field: Field,
    name: String,
    values: Arc<[String]>,
    union: Arc<dyn Weight>,
    ordinals: Arc<Mutex<Ordinals>>,
}

impl Weight for MembershipWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let Some(column) = reader.fast_fields().str(&self.name)? else {
            // An index written before the column existed.
            return self.union.scorer(reader, boost);
        };
        let ords = column.ords().clone();
        if !matches!(ords.index, ColumnIndex::Full) {
            return self.union.scorer(reader, boost);
        }
        let dictionary = column.dictionary();
        let mut members = vec![0u64; dictionary.num_terms().div_ceil(64)];
        let mut cost: u64 = 0;
        let mut ordinals = self.ordinals.lock().unwrap_or_else(PoisonError::into_inner);
        let known = ordinals.segments.entry(reader.segment_id()).or_default();
        if known.len() > MAX_ORDINALS {
            known.clear();
        }
        for value in self.values.iter() {
            let found = match known.get(value) {
                Some(found) => *found,
                None => {
                    let term = Term::from_field_text(self.field, value);
                    let found = match dictionary.term_ord(value.as_bytes())? {
                        Some(ord) => Some((
                            ord,
                            reader
                                .inverted_index(self.field)?
                                .get_term_info(&term)?
                                .map_or(0, |info| info.doc_freq),
                        )),
                        None => None,
                    };
                    known.insert(value.clone(), found);
                    found
                }
            };
            let Some((ord, documents)) = found else {
                continue;
            };
            let Ok(ord) = usize::try_from(ord) else {
                continue;
            };
            if let Some(word) = members.get_mut(ord / 64) {
                *word |= 1 << (ord % 64);
            }
            cost += u64::from(documents);
        }
        drop(ordinals);
        if cost == 0 {
            return Ok(Box::new(tantivy::query::EmptyScorer));
        }
        let mut scorer = MembershipScorer {
            ords,
            members,
            max_doc: reader.max_doc(),
            doc: 0,
            cost,
            seeks: 0,
            walk: None,
            weight: Arc::clone(&self.union),
            reader: reader.clone(),
        };
        scorer.doc = scorer.first_from(0)?;
        Ok(Box::new(scorer))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        let mut scorer = self.scorer(reader, 1.0)?;
        if scorer.seek(doc) == doc {
            Ok(Explanation::new("a member conversation", 0.0))
        } else {
            Err(tantivy::TantivyError::InvalidArgument(format!(
                "document {doc} is not in the conversations"
            )))
        }
    }
}

struct MembershipScorer {
    /// Each document's value, as an ordinal of the segment's dictionary.
    ords: Column<u64>,
    /// The ordinals of the values looked for.
    members: Vec<u64>,
    max_doc: DocId,
    doc: DocId,
    /// The documents of the values (their postings' lengths).
    cost: u64,
    /// Seeks so far: the first few read the column; later ones walk the postings.
    seeks: u32,
    /// The union of the values' postings, once walking.
    walk: Option<Box<dyn Scorer>>,
    weight: Arc<dyn Weight>,
    reader: SegmentReader,
}

impl MembershipScorer {
    fn is_member(&self, doc: DocId) -> bool {
        let Ok(ord) = usize::try_from(self.ords.values.get_val(doc)) else {
            return false;
        };
        self.members
            .get(ord / 64)
            .is_some_and(|word| word & (1 << (ord % 64)) != 0)
    }

    /// The first member at or after `target`: a few documents read from the column, then the
    /// postings.
    fn first_from(&mut self, target: DocId) -> tantivy::Result<DocId> {
        if self.walk.is_none() {
            let end = target.saturating_add(SCAN).min(self.max_doc);
            if let Some(doc) = (target..end).find(|&doc| self.is_member(doc)) {
                return Ok(doc);
            }
            if end >= self.max_doc {
                return Ok(TERMINATED);
            }
            self.walk = Some(self.weight.scorer(&self.reader, 0.0)?);
        }
        Ok(self.walk.as_mut().map_or(TERMINATED, |walk| {
            if walk.doc() < target {
                walk.seek(target)
            } else {
                walk.doc()
            }
        }))
    }

    fn walk_from(&mut self, target: DocId) -> DocId {
        self.seeks = self.seeks.saturating_add(1);
        if self.seeks > CHECKS_BEFORE_WALKING && self.walk.is_none() {
            match self.weight.scorer(&self.reader, 0.0) {
                Ok(walk) => self.walk = Some(walk),
                // Cannot happen once the first scorer opened (same segment, same terms); the
                // column answers right anyway.
                Err(err) => tracing::warn!(%err, "the conversation filter's postings failed"),
            }
        }
        match self.first_from(target) {
            Ok(doc) => doc,
            Err(err) => {
                tracing::warn!(%err, "the conversation filter's postings failed");
                (target..self.max_doc)
                    .find(|&doc| self.is_member(doc))
                    .unwrap_or(TERMINATED)
            }
        }
    }
}

impl DocSet for MembershipScorer {
    fn advance(&mut self) -> DocId {
        if self.doc == TERMINATED {
            return TERMINATED;
        }
        self.doc = self.walk_from(self.doc + 1);
        self.doc
    }

    fn seek(&mut self, target: DocId) -> DocId {
        if self.doc >= target {
            return self.doc;
        }
        self.doc = if target >= self.max_doc {
            TERMINATED
        } else {
            self.walk_from(target)
        };
        self.doc
    }

    fn seek_danger(&mut self, target: DocId) -> SeekDangerResult {
        if target <= self.doc {
            return if target == self.doc {
                SeekDangerResult::Found
            } else {
                SeekDangerResult::SeekLowerBound(self.doc)
            };
        }
        if target >= self.max_doc {
            self.doc = TERMINATED;
            return SeekDangerResult::SeekLowerBound(TERMINATED);
        }
        if self.is_member(target) {
            self.doc = target;
            SeekDangerResult::Found
        } else {
            SeekDangerResult::SeekLowerBound(target + 1)
        }
    }

    fn doc(&self) -> DocId {
        self.doc
    }

    fn size_hint(&self) -> u32 {
        u32::try_from(self.cost).unwrap_or(u32::MAX)
    }

    fn cost(&self) -> u64 {
        self.cost
    }
}

impl Scorer for MembershipScorer {
    fn score(&mut self) -> Score {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use tantivy::collector::DocSetCollector;
    use tantivy::query::{AllQuery, BooleanQuery, ConstScoreQuery, Occur, TermQuery};
    use tantivy::schema::{FAST, IndexRecordOption, STRING, Schema, TEXT};
    use tantivy::{DocAddress, Index, IndexWriter, doc};

    /// The filter finds exactly the documents of the union of term queries, whichever clause
    /// leads: alone, beside a common word (it leads), beside a rare one (it checks), over
    /// several segments with deletes.
    #[test]
    #[allow(clippy::too_many_lines)]
    fn the_same_documents_as_the_union_of_term_queries() {
        let mut builder = Schema::builder();
        let conversation = builder.add_text_field("conversation", STRING | FAST);
        let body = builder.add_text_field("body", TEXT);
        let index = Index::create_in_ram(builder.build());
        let mut writer: IndexWriter = index.writer(20_000_000).unwrap();
        let mut seed = 7u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for segment in 0..4 {
            for i in 0..3_000 {
                let c = next() % 60;
                let words = match next() % 100 {
                    0 => "rare common",
                    1..=40 => "common",
                    _ => "other",
                };
                writer
                    .add_document(doc!(conversation => format!("c{c}"), body => format!("{words} d{segment}x{i}")))
                    .unwrap();
            }
            if segment == 2 {
                writer.delete_term(Term::from_field_text(conversation, "c3"));
            }
            writer.commit().unwrap();
        }
        let searcher = index.reader().unwrap().searcher();
        assert!(searcher.segment_readers().len() > 1);
        let term = |field, text: &str| -> Box<dyn Query> {
            Box::new(TermQuery::new(
                Term::from_field_text(field, text),
                IndexRecordOption::Basic,
            ))
        };
        for picked in [
            vec![1],
            vec![0, 3, 5],
            (0..30).collect(),
            (0..60).step_by(7).collect::<Vec<_>>(),
            vec![99],
        ] {
            let values: Vec<String> = picked.iter().map(|c| format!("c{c}")).collect();
            let union = || -> Box<dyn Query> {
                Box::new(ConstScoreQuery::new(
                    Box::new(BooleanQuery::new(
                        values
                            .iter()
                            .map(|v| (Occur::Should, term(conversation, v)))
                            .collect(),
                    )),
                    0.0,
                ))
            };
            let membership = || -> Box<dyn Query> {
                Box::new(Membership::new(
                    conversation,
                    "conversation",
                    values.clone().into(),
                    union(),
                    Arc::default(),
                ))
            };
            for words in [None, Some("common"), Some("rare"), Some("other")] {
                let with = |filter: Box<dyn Query>| -> BTreeSet<DocAddress> {
                    let text = words
                        .map_or_else(|| Box::new(AllQuery) as Box<dyn Query>, |w| term(body, w));
                    let query = BooleanQuery::new(vec![(Occur::Must, filter), (Occur::Must, text)]);
                    searcher
                        .search(&query, &DocSetCollector)
                        .unwrap()
                        .into_iter()
                        .collect()
                };
                let expected = with(union());
                assert_eq!(with(membership()), expected, "{values:?} {words:?}");
                if picked != vec![99] {
                    assert!(
                        !expected.is_empty() || words == Some("rare"),
                        "{values:?} {words:?}"
                    );
                }
            }
        }
    }
}
