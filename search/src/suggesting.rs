//! Completions of a prefix from the words of the messages a caller may read.
//!
//! Candidates come from the term dictionary of the unstemmed `words` field (real words, not
//! stems), the most frequent first; but the dictionary also holds words of other tenants, of
//! conversations the caller cannot read and of deleted or edited-away text (until a merge drops
//! them), so each candidate is kept only if a live document the caller may read has it, and is
//! ranked by how many such documents do.

use std::collections::HashMap;

use tantivy::Term;
use tantivy::collector::Count;
use tantivy::query::{BooleanQuery, Occur, TermQuery};
use tantivy::schema::IndexRecordOption;

use crate::{Result, SearchError, SearchIndex, words_analyzer};

/// How many dictionary words of a prefix are read at most (per segment).
const SCAN: usize = 2_000;

/// How many of the most frequent candidates are checked against the caller's documents.
const CANDIDATES: usize = 40;

/// A word completing a prefix, and how many of the caller's messages have it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub word: String,
    pub messages: u64,
}

impl SearchIndex {
    /// Up to `limit` words starting with `prefix` (its last word, lower-cased and folded as
    /// the index writes words) in live messages of `conversations` in `tenant`, the most
    /// frequent first.
    pub fn complete(
        &self,
        tenant: &str,
        conversations: &[String],
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<Completion>> {
        let Some(prefix) = last_word(prefix) else {
            return Ok(Vec::new());
        };
        if conversations.is_empty() {
            return Ok(Vec::new());
        }
        let _turn = self.gate.enter();
        let searcher = self.reader.searcher();
        let mut frequency: HashMap<Vec<u8>, u64> = HashMap::new();
        for segment in searcher.segment_readers() {
            let inverted = segment.inverted_index(self.fields.words)?;
            let mut stream = inverted
                .terms()
                .range()
                .ge(prefix.as_bytes())
                .into_stream()
                .map_err(|err| SearchError::Index(err.into()))?;
            let mut read = 0;
            while read < SCAN && stream.advance() {
                if !stream.key().starts_with(prefix.as_bytes()) {
                    break;
                }
                read += 1;
                *frequency.entry(stream.key().to_vec()).or_default() +=
                    u64::from(stream.value().doc_freq);
            }
        }
        let mut candidates: Vec<(Vec<u8>, u64)> = frequency.into_iter().collect();
        candidates.sort_by(|(a, x), (b, y)| y.cmp(x).then(a.cmp(b)));
        candidates.truncate(CANDIDATES);
        let f = self.fields;
        let mut found = Vec::new();
        for (word, _) in candidates {
            let Ok(word) = String::from_utf8(word) else {
                continue;
            };
            let mut visible = self.visible(tenant, conversations);
            visible.push((
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_text(f.words, &word),
                    IndexRecordOption::Basic,
                )),
            ));
            let messages = searcher.search(&BooleanQuery::new(visible), &Count)? as u64;
            if messages > 0 {
                found.push(Completion { word, messages });
            }
        }
        found.sort_by(|a, b| b.messages.cmp(&a.messages).then(a.word.cmp(&b.word)));
        found.truncate(limit);
        Ok(found)
    }
}

/// The last word of `text` as the index writes words.
fn last_word(text: &str) -> Option<String> {
    let mut analyzer = words_analyzer();
    let mut stream = analyzer.token_stream(text);
    let mut last = None;
    while let Some(token) = stream.next() {
        last = Some(token.text.clone());
    }
    last
}
