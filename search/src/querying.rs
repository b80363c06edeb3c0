//! Queries: a search's filters and text as a tantivy query, and its page of hits with
//! snippets.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, PoisonError};

use tantivy::collector::TopDocs;
use tantivy::index::SegmentId;
use tantivy::query::{
    BooleanQuery, ConstScoreQuery, FuzzyTermQuery, Occur, PhraseQuery, Query, RangeQuery, TermQuery,
};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{DocAddress, Order, Searcher, Term};

use crate::membership::{Membership, Ordinals};
use crate::{Hit, Hits, MAX_LIMIT, Parsed, Result, Search, SearchError, SearchIndex, Sort};
use crate::{analyzer, highlight, words_analyzer};

/// The most near words one word of a query expands to.
const MAX_NEAR_TERMS: usize = 64;

/// The most query words whose near words are kept per segment (then that segment's start
/// again).
const MAX_NEAR_CACHED: usize = 10_000;

/// The near words of query words (word as written, distance) found in each segment's term
/// dictionary. A segment never changes once written, so its entries stay right across commits
/// (only the segments a commit or a merge adds are walked again); segments merged away are
/// dropped.
#[derive(Debug, Default)]
pub(crate) struct NearWords {
    segments: HashMap<SegmentId, SegmentNearWords>,
}

/// One segment's near words of query words (word as written, distance).
type SegmentNearWords = HashMap<(String, u8), Arc<[Vec<u8>]>>;

impl SearchIndex {
    fn term(&self, field: Field, text: &str) -> Box<dyn Query> {
        Box::new(TermQuery::new(
            Term::from_field_text(field, text),
            IndexRecordOption::Basic,
        ))
    }

    /// The clauses every query of a caller has: live messages of `conversations` in `tenant`.
    pub(crate) fn visible(
        &self,
        tenant: &str,
        conversations: &[String],
    ) -> Vec<(Occur, Box<dyn Query>)> {
        let f = self.fields;
        let scopes: Vec<String> = conversations
            .iter()
            .map(|conversation| crate::scope(tenant, conversation))
            .collect();
        vec![
            // The tenant's conversations: checked in the scope column for the words'
            // candidates, or walked as term queries when the filter leads (membership.rs); not
            // a `TermSetQuery`, which reads every document of them into a bit set per query.
            (
                Occur::Must,
                Box::new(Membership::new(
                    f.scope,
                    crate::SCOPE,
                    scopes.clone().into(),
                    Box::new(ConstScoreQuery::new(
                        Box::new(BooleanQuery::new(
                            scopes
                                .iter()
                                .map(|scope| (Occur::Should, self.term(f.scope, scope)))
                                .collect(),
                        )),
                        0.0,
                    )),
                    Arc::clone(&self.ordinals),
                )),
            ),
            (
                Occur::MustNot,
                Box::new(TermQuery::new(
                    Term::from_field_u64(f.deleted, 1),
                    IndexRecordOption::Basic,
                )),
            ),
        ]
    }

    /// The tantivy query of a search: its filters, then its text, its words matching as
    /// `words` says.
    fn build(
        &self,
        searcher: &Searcher,
        search: &Search<'_>,
        words: Words,
    ) -> Result<Box<dyn Query>> {
        let f = self.fields;
        let parsed = search.query;
        let mut must = self.visible(search.tenant, search.conversations);
        if let Some(conversation) = &parsed.conversation {
            must.push((
                Occur::Must,
                self.term(f.scope, &crate::scope(search.tenant, conversation)),
            ));
        }
        if let Some(author) = &parsed.from {
            must.push((Occur::Must, self.term(f.author, author)));
        }
        if parsed.has_attachment {
            must.push((
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_u64(f.attachments, 1),
                    IndexRecordOption::Basic,
                )),
            ));
        }
        if parsed.before.is_some() || parsed.after.is_some() {
            let lower = parsed.after.map_or(std::ops::Bound::Unbounded, |at| {
                std::ops::Bound::Included(Term::from_field_i64(f.ts, at))
            });
            let upper = parsed.before.map_or(std::ops::Bound::Unbounded, |at| {
                std::ops::Bound::Excluded(Term::from_field_i64(f.ts, at))
            });
            must.push((Occur::Must, Box::new(RangeQuery::new(lower, upper))));
        }
        must.extend(self.text_clauses(searcher, parsed, words)?);
        if !parsed.has_text() {
            must.push((Occur::Must, Box::new(tantivy::query::AllQuery)));
        }
        Ok(Box::new(BooleanQuery::new(must)))
    }

    /// The words of the index's `words` field within `distance` edits of `word` (the first
    /// [`MAX_NEAR_TERMS`] in term order), read from each segment's term dictionary.
    ///
    /// tantivy's `FuzzyTermQuery` would give the same matches, but its scorer first reads every
    /// document of every such word in the whole index into a bit set: for a common word, a tenth
    /// of the index on each query, the largest cost of a search (profile in
    /// `benches/RESULTS.md`). Term queries of the near words read their documents lazily,
    /// skipping to those the conversation filter lets through.
    ///
    /// Each segment's words are kept ([`NearWords`]): a search box asks for the same words
    /// again and again, and the walk of a segment's dictionary is its largest cost.
    fn near_terms(&self, searcher: &Searcher, word: &str, distance: u8) -> Result<Vec<Term>> {
        let key = (word.to_owned(), distance);
        let segments = searcher.segment_readers();
        let mut per_segment: Vec<Option<Arc<[Vec<u8>]>>> = {
            let near = self.near.lock().unwrap_or_else(PoisonError::into_inner);
            segments
                .iter()
                .map(|segment| {
                    near.segments
                        .get(&segment.segment_id())
                        .and_then(|words| words.get(&key).cloned())
                })
                .collect()
        };
        let field = self.fields.words;
        let mut walked = Vec::new();
        for (segment, found) in segments.iter().zip(&mut per_segment) {
            if found.is_some() {
                continue;
            }
            let fuzzy = FuzzyTermQuery::new(Term::from_field_text(field, word), distance, true);
            let index = segment.inverted_index(field)?;
            let mut stream = index
                .terms()
                .search(fuzzy.automaton()?)
                .into_stream()
                .map_err(tantivy::TantivyError::from)?;
            let mut words = Vec::new();
            while words.len() < MAX_NEAR_TERMS && stream.advance() {
                words.push(stream.key().to_vec());
            }
            let words: Arc<[Vec<u8>]> = words.into();
            walked.push((segment.segment_id(), Arc::clone(&words)));
            *found = Some(words);
        }
        if !walked.is_empty() {
            let mut near = self.near.lock().unwrap_or_else(PoisonError::into_inner);
            let live: HashSet<SegmentId> = segments.iter().map(|s| s.segment_id()).collect();
            near.segments.retain(|id, _| live.contains(id));
            for (id, words) in walked {
                let cached = near.segments.entry(id).or_default();
                if cached.len() >= MAX_NEAR_CACHED {
                    cached.clear();
                }
                cached.insert(key.clone(), words);
            }
        }
        let found: BTreeSet<&[u8]> = per_segment
            .iter()
            .flatten()
            .flat_map(|words| words.iter().map(Vec::as_slice))
            .collect();
        Ok(found
            .into_iter()
            .filter_map(|bytes| std::str::from_utf8(bytes).ok())
            .take(MAX_NEAR_TERMS)
            .map(|text| Term::from_field_text(field, text))
            .collect())
    }

    /// A word's clause: its stem, or also its near misses (`mode`); with `NearOnly`, its stem
    /// goes to `all_exact` too.
    fn word_clause(
        &self,
        searcher: &Searcher,
        stem: &str,
        written: &str,
        mode: Words,
        all_exact: &mut Vec<(Occur, Box<dyn Query>)>,
    ) -> Result<Box<dyn Query>> {
        let f = self.fields;
        let exact: Box<dyn Query> = Box::new(TermQuery::new(
            Term::from_field_text(f.body, stem),
            IndexRecordOption::WithFreqs,
        ));
        let distance = highlight::typo_distance(written.chars().count());
        if distance == 0 || mode == Words::Exact {
            return Ok(exact);
        }
        if mode == Words::NearOnly {
            all_exact.push((
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_text(f.body, stem),
                    IndexRecordOption::Basic,
                )),
            ));
        }
        // Near misses of the word as written (not of its stem), among the words as written;
        // the same stem ("launches" for "launch") ranks above them. Each near word scores 1,
        // as a match of tantivy's fuzzy query would.
        let near: Box<dyn Query> = Box::new(ConstScoreQuery::new(
            Box::new(BooleanQuery::new_multiterms_query(
                self.near_terms(searcher, written, distance)?,
            )),
            1.0,
        ));
        Ok(Box::new(BooleanQuery::new(vec![
            (
                Occur::Should,
                Box::new(tantivy::query::BoostQuery::new(exact, 2.0)),
            ),
            (Occur::Should, near),
        ])))
    }

    /// One clause per word (the word, or also its near misses), phrase and excluded word.
    fn text_clauses(
        &self,
        searcher: &Searcher,
        parsed: &Parsed,
        mode: Words,
    ) -> Result<Vec<(Occur, Box<dyn Query>)>> {
        let f = self.fields;
        let mut analyzer = analyzer();
        let mut tokens = |text: &str| {
            let mut stream = analyzer.token_stream(text);
            let mut terms = Vec::new();
            while let Some(token) = stream.next() {
                terms.push(token.text.clone());
            }
            terms
        };
        let mut words = words_analyzer();
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        // NearOnly: the exact words of the words that allow typos, all of which a hit may not
        // have (those are the first tier's).
        let mut all_exact: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for word in &parsed.words {
            let mut plain = words.token_stream(word);
            for stem in tokens(word) {
                let Some(written) = plain.next().map(|token| token.text.clone()) else {
                    break;
                };
                let clause = self.word_clause(searcher, &stem, &written, mode, &mut all_exact)?;
                clauses.push((Occur::Must, clause));
            }
        }
        for phrase in &parsed.phrases {
            let terms: Vec<Term> = tokens(phrase)
                .iter()
                .map(|t| Term::from_field_text(f.body, t))
                .collect();
            match terms.len() {
                0 => {}
                1 => clauses.push((
                    Occur::Must,
                    Box::new(TermQuery::new(
                        terms[0].clone(),
                        IndexRecordOption::WithFreqs,
                    )),
                )),
                _ => clauses.push((Occur::Must, Box::new(PhraseQuery::new(terms)))),
            }
        }
        if !all_exact.is_empty() {
            clauses.push((Occur::MustNot, Box::new(BooleanQuery::new(all_exact))));
        }
        if clauses.is_empty() && !(parsed.words.is_empty() && parsed.phrases.is_empty()) {
            // Words with nothing searchable in them (emoji, punctuation) match nothing.
            clauses.push((Occur::Must, Box::new(tantivy::query::EmptyQuery)));
        }
        for word in &parsed.excluded {
            for token in tokens(word) {
                clauses.push((
                    Occur::MustNot,
                    Box::new(TermQuery::new(
                        Term::from_field_text(f.body, &token),
                        IndexRecordOption::Basic,
                    )),
                ));
            }
        }
        Ok(clauses)
    }

    /// The hits of `search`, a page at a time.
    ///
    /// Newest-first pages (`Sort::Recent`, or no text) continue from a key, not an offset: the
    /// cursor is the last hit's order key (time, then a hash of its id), so messages arriving
    /// between pages (later, hence above the cursor) shift nothing, and a deep page costs no
    /// more than the first. Relevance pages continue from an offset: scores change as
    /// documents arrive, so a new match may shift later pages by one.
    pub fn search(&self, search: &Search<'_>) -> Result<Hits> {
        let _turn = self.gate.enter();
        let limit = search.limit.clamp(1, MAX_LIMIT);
        let by_time = search.sort == Sort::Recent || !search.query.has_text();
        let cursor = search.cursor.map(Cursor::parse).transpose()?;
        let searcher = self.reader.searcher();
        Ordinals::keep_only(&self.ordinals, &searcher);
        let offset = match cursor {
            Some(Cursor::Offset(offset)) => offset,
            _ => 0,
        };
        let addresses = self.addresses(&searcher, search, limit, by_time, cursor)?;
        let more = addresses.len() > limit;
        let mut analyzers = highlight::Analyzers::new();
        let terms = analyzers.query_terms(&search.query.words, &search.query.phrases);
        let mut hits = Vec::with_capacity(limit);
        let mut indexed_seq = BTreeMap::new();
        for address in addresses.into_iter().take(limit) {
            let entry = self.entry(&searcher.doc(address)?);
            indexed_seq
                .entry(entry.conversation.clone())
                .or_insert_with(|| self.indexed_seq(&entry.conversation));
            hits.push(Hit {
                snippet: analyzers.snippet(&entry.body, &terms),
                conversation: entry.conversation,
                id: entry.id,
                seq: entry.seq,
                author: entry.author,
                ts: entry.ts,
            });
        }
        let next_cursor = match hits.last() {
            Some(last) if more && by_time => {
                Some(Cursor::Before(crate::order_key(last.ts, &last.id)).to_string())
            }
            // Relevance pages end at the MAX_CURSOR-th hit.
            _ if more && offset + limit <= crate::MAX_CURSOR => {
                Some(Cursor::Offset(offset + limit).to_string())
            }
            _ => None,
        };
        Ok(Hits {
            hits,
            next_cursor,
            indexed_seq,
        })
    }
}

/// How a query's words match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Words {
    /// Each word by its stem only.
    Exact,
    /// Each word by its stem (boosted) or a near miss within its typo distance.
    NearToo,
    /// As `NearToo`, but not where every word matches by its stem (the second tier).
    NearOnly,
}

/// Whether a query has a word long enough for typos.
fn allows_typos(parsed: &Parsed) -> bool {
    parsed
        .words
        .iter()
        .any(|word| highlight::typo_distance(word.chars().count()) > 0)
}

impl SearchIndex {
    /// The documents of a page of `search` (one more than `limit` when there are more).
    fn addresses(
        &self,
        searcher: &Searcher,
        search: &Search<'_>,
        limit: usize,
        by_time: bool,
        cursor: Option<Cursor>,
    ) -> Result<Vec<DocAddress>> {
        let (offset, before) = match cursor {
            None => (0, None),
            // An offset the engine holds in memory: bounded, so a made-up cursor cannot ask it
            // for millions of hits.
            Some(Cursor::Offset(offset)) if offset <= crate::MAX_CURSOR => (offset, None),
            Some(Cursor::Offset(_)) => return Err(SearchError::Invalid("a bad cursor".to_owned())),
            Some(Cursor::Before(key)) => (0, Some(key)),
        };
        let query = |words: Words| -> Result<Box<dyn Query>> {
            let query = self.build(searcher, search, words)?;
            let Some(key) = before else {
                return Ok(query);
            };
            let upper = std::ops::Bound::Excluded(Term::from_field_u64(self.fields.order, key));
            Ok(Box::new(BooleanQuery::new(vec![
                (Occur::Must, query),
                (
                    Occur::Must,
                    Box::new(RangeQuery::new(std::ops::Bound::Unbounded, upper)),
                ),
            ])))
        };
        Ok(if by_time {
            let top = TopDocs::with_limit(limit + 1).and_offset(offset);
            searcher
                .search(
                    &query(Words::NearToo)?,
                    &top.order_by_fast_field::<u64>("order", Order::Desc),
                )?
                .into_iter()
                .map(|(_, a)| a)
                .collect()
        } else if allows_typos(search.query) {
            self.tiered(searcher, &query(Words::Exact)?, limit, offset, || {
                query(Words::NearOnly)
            })?
        } else {
            let top = TopDocs::with_limit(limit + 1).and_offset(offset);
            searcher
                .search(&query(Words::NearToo)?, &top.order_by_score())?
                .into_iter()
                .map(|(_, a)| a)
                .collect()
        })
    }

    /// A relevance page in two tiers: the hits where every word matches by its stem, best
    /// first, then those where some word matches only as a near miss, best first.
    ///
    /// The second tier is only searched when the first has less than the page: a common word
    /// fills a page exactly, and its near words (tens of posting lists to merge for every
    /// candidate) cost nothing (as Typesense, which tries typos only when too few exact
    /// matches are found, `typo_tokens_threshold`). Offsets run through the first tier, then
    /// the second.
    fn tiered(
        &self,
        searcher: &Searcher,
        exact: &dyn Query,
        limit: usize,
        offset: usize,
        near_only: impl FnOnce() -> Result<Box<dyn Query>>,
    ) -> Result<Vec<DocAddress>> {
        let top = TopDocs::with_limit(limit + 1).and_offset(offset);
        let mut addresses: Vec<DocAddress> = searcher
            .search(exact, &top.order_by_score())?
            .into_iter()
            .map(|(_, a)| a)
            .collect();
        if addresses.len() > limit {
            return Ok(addresses);
        }
        // The first tier's size: the hits it gave past the offset, or, when it gave none, a
        // count (a page past the end of the first tier).
        let first_tier = if addresses.is_empty() && offset > 0 {
            searcher.search(exact, &tantivy::collector::Count)?
        } else {
            offset + addresses.len()
        };
        let wanted = limit + 1 - addresses.len();
        let top = TopDocs::with_limit(wanted).and_offset(offset.saturating_sub(first_tier));
        addresses.extend(
            searcher
                .search(&near_only()?, &top.order_by_score())?
                .into_iter()
                .map(|(_, a)| a),
        );
        Ok(addresses)
    }
}

/// Where the next page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cursor {
    /// After this many hits (relevance order).
    Offset(usize),
    /// At hits of an order key below this (newest first).
    Before(u64),
}

impl Cursor {
    /// Either kind whatever the sort (a client that changed `sort` between pages): a key
    /// keeps the hits older than it, in the order asked; an offset skips that many.
    fn parse(text: &str) -> Result<Cursor> {
        let bad = || SearchError::Invalid("a bad cursor".to_owned());
        match text.strip_prefix('k') {
            Some(key) => Ok(Cursor::Before(key.parse().map_err(|_| bad())?)),
            None => Ok(Cursor::Offset(text.parse().map_err(|_| bad())?)),
        }
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cursor::Offset(offset) => write!(f, "{offset}"),
            Cursor::Before(key) => write!(f, "k{key}"),
        }
    }
}
