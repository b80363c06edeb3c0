//! Queries: a search's filters and text as a tantivy query, and its page of hits with
//! snippets.

use std::collections::BTreeMap;
use std::sync::PoisonError;

use tantivy::collector::TopDocs;
use tantivy::query::{
    BooleanQuery, ConstScoreQuery, FuzzyTermQuery, Occur, PhraseQuery, Query, RangeQuery, TermQuery,
};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{DocAddress, Order, Searcher, Term};

use crate::{Hit, Hits, MAX_LIMIT, Parsed, Result, Search, SearchError, SearchIndex, Sort};
use crate::{analyzer, highlight, words_analyzer};

/// The most near words one word of a query expands to.
const MAX_NEAR_TERMS: usize = 64;

/// The most query words whose near words are kept (then the cache starts again).
const MAX_NEAR_CACHED: usize = 10_000;

/// Near words of query words (word as written, distance) read from one searcher generation.
#[derive(Debug, Default)]
pub(crate) struct NearWords {
    generation: u64,
    words: std::collections::HashMap<(String, u8), Vec<Term>>,
}

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
        vec![
            (Occur::Must, self.term(f.tenant, tenant)),
            // Term queries of the conversations, read lazily and skipped through, not a
            // `TermSetQuery`, which reads every document of them into a bit set per query.
            (
                Occur::Must,
                Box::new(ConstScoreQuery::new(
                    Box::new(BooleanQuery::new(
                        conversations
                            .iter()
                            .map(|c| (Occur::Should, self.term(f.conversation, c)))
                            .collect(),
                    )),
                    0.0,
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

    /// The tantivy query of a search: its filters, then its text.
    fn build(&self, searcher: &Searcher, search: &Search<'_>) -> Result<Box<dyn Query>> {
        let f = self.fields;
        let parsed = search.query;
        let mut must = self.visible(search.tenant, search.conversations);
        if let Some(conversation) = &parsed.conversation {
            must.push((Occur::Must, self.term(f.conversation, conversation)));
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
        must.extend(self.text_clauses(searcher, parsed)?);
        if !parsed.has_text() {
            must.push((Occur::Must, Box::new(tantivy::query::AllQuery)));
        }
        Ok(Box::new(BooleanQuery::new(must)))
    }

    /// The words of the index's `words` field within `distance` edits of `word` (at most
    /// [`MAX_NEAR_TERMS`], in term order), read from each segment's term dictionary.
    ///
    /// tantivy's `FuzzyTermQuery` would give the same matches, but its scorer first reads every
    /// document of every such word in the whole index into a bit set: for a common word, a tenth
    /// of the index on each query, the largest cost of a search (profile in
    /// `benches/RESULTS.md`). Term queries of the near words read their documents lazily,
    /// skipping to those the conversation filter lets through.
    ///
    /// The words are kept per searcher generation (the term dictionaries change only when a
    /// commit is loaded): a search box asks for the same words again and again.
    fn near_terms(&self, searcher: &Searcher, word: &str, distance: u8) -> Result<Vec<Term>> {
        let generation = searcher.generation().generation_id();
        let key = (word.to_owned(), distance);
        {
            let near = self.near.lock().unwrap_or_else(PoisonError::into_inner);
            if near.generation == generation
                && let Some(terms) = near.words.get(&key)
            {
                return Ok(terms.clone());
            }
        }
        let field = self.fields.words;
        let fuzzy = FuzzyTermQuery::new(Term::from_field_text(field, word), distance, true);
        let mut found = std::collections::BTreeSet::new();
        for segment in searcher.segment_readers() {
            let index = segment.inverted_index(field)?;
            let mut stream = index
                .terms()
                .search(fuzzy.automaton()?)
                .into_stream()
                .map_err(tantivy::TantivyError::from)?;
            while stream.advance() && found.len() < MAX_NEAR_TERMS {
                found.insert(stream.key().to_vec());
            }
        }
        let terms: Vec<Term> = found
            .into_iter()
            .filter_map(|bytes| String::from_utf8(bytes).ok())
            .map(|text| Term::from_field_text(field, &text))
            .collect();
        let mut near = self.near.lock().unwrap_or_else(PoisonError::into_inner);
        if near.generation != generation || near.words.len() >= MAX_NEAR_CACHED {
            near.generation = generation;
            near.words.clear();
        }
        near.words.insert(key, terms.clone());
        Ok(terms)
    }

    /// One clause per word (the word or its near misses), phrase and excluded word.
    fn text_clauses(
        &self,
        searcher: &Searcher,
        parsed: &Parsed,
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
        for word in &parsed.words {
            let mut plain = words.token_stream(word);
            for stem in tokens(word) {
                let Some(written) = plain.next().map(|token| token.text.clone()) else {
                    break;
                };
                let exact: Box<dyn Query> = Box::new(TermQuery::new(
                    Term::from_field_text(f.body, &stem),
                    IndexRecordOption::WithFreqs,
                ));
                let distance = highlight::typo_distance(written.chars().count());
                let clause: Box<dyn Query> = if distance == 0 {
                    exact
                } else {
                    // Near misses of the word as written (not of its stem), among the words
                    // as written; the same stem ("launches" for "launch") ranks above them.
                    // Each near word scores 1, as a match of tantivy's fuzzy query would.
                    let near: Box<dyn Query> = Box::new(ConstScoreQuery::new(
                        Box::new(BooleanQuery::new_multiterms_query(
                            self.near_terms(searcher, &written, distance)?,
                        )),
                        1.0,
                    ));
                    Box::new(BooleanQuery::new(vec![
                        (
                            Occur::Should,
                            Box::new(tantivy::query::BoostQuery::new(exact, 2.0)),
                        ),
                        (Occur::Should, near),
                    ]))
                };
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
        let limit = search.limit.clamp(1, MAX_LIMIT);
        let by_time = search.sort == Sort::Recent || !search.query.has_text();
        let cursor = search.cursor.map(Cursor::parse).transpose()?;
        let searcher = self.reader.searcher();
        let mut query = self.build(&searcher, search)?;
        let offset = match cursor {
            None => 0,
            // An offset the engine holds in memory: bounded, so a made-up cursor cannot ask it
            // for millions of hits.
            Some(Cursor::Offset(offset)) if offset <= crate::MAX_CURSOR => offset,
            Some(Cursor::Offset(_)) => return Err(SearchError::Invalid("a bad cursor".to_owned())),
            Some(Cursor::Before(key)) => {
                let upper = std::ops::Bound::Excluded(Term::from_field_u64(self.fields.order, key));
                query = Box::new(BooleanQuery::new(vec![
                    (Occur::Must, query),
                    (
                        Occur::Must,
                        Box::new(RangeQuery::new(std::ops::Bound::Unbounded, upper)),
                    ),
                ]));
                0
            }
        };
        let top = TopDocs::with_limit(limit + 1).and_offset(offset);
        let addresses: Vec<DocAddress> = if by_time {
            searcher
                .search(
                    &query,
                    &top.order_by_fast_field::<u64>("order", Order::Desc),
                )?
                .into_iter()
                .map(|(_, a)| a)
                .collect()
        } else {
            searcher
                .search(&query, &top.order_by_score())?
                .into_iter()
                .map(|(_, a)| a)
                .collect()
        };
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
