//! Highlighted snippets: the part of a message around its first match, HTML-escaped, with
//! `<mark>` around every word that matched the query (exactly, by stem, or within the typo
//! distance the query allowed).

use tantivy::tokenizer::TextAnalyzer;

/// About how many characters a snippet shows.
const SNIPPET_CHARS: usize = 160;

/// The typo distance a query word of `chars` characters allows: 1 from 4, 2 from 8.
pub fn typo_distance(chars: usize) -> u8 {
    match chars {
        0..=3 => 0,
        4..=7 => 1,
        _ => 2,
    }
}

/// Levenshtein distance, stopping early past `max` (returns `max + 1`).
fn distance(a: &str, b: &str, max: usize) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len().abs_diff(b.len()) > max {
        return max + 1;
    }
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        if current.iter().min().is_some_and(|least| *least > max) {
            return max + 1;
        }
        previous = current;
    }
    previous[b.len()]
}

/// A word a query looks for: its stem, how it was written, and the typo distance it allows
/// (a phrase's words allow none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryTerm {
    stem: String,
    written: String,
    allowed: u8,
}

impl QueryTerm {
    /// Whether a word of a message (its stem and as written) is a match: the same stem, or
    /// within the allowed typos of the word as written (the index matches the same way).
    fn matches(&self, stem: &str, written: &str) -> bool {
        let allowed = usize::from(self.allowed);
        stem == self.stem || (allowed > 0 && distance(written, &self.written, allowed) <= allowed)
    }
}

/// The two analyzers of message text: with stems and without.
pub struct Analyzers {
    stems: TextAnalyzer,
    words: TextAnalyzer,
}

impl Analyzers {
    pub fn new() -> Analyzers {
        Analyzers {
            stems: crate::analyzer(),
            words: crate::words_analyzer(),
        }
    }

    /// `text`'s tokens: (stem, word as written, byte offsets).
    fn tokens(&mut self, text: &str) -> Vec<(String, String, usize, usize)> {
        let mut stems = self.stems.token_stream(text);
        let mut words = self.words.token_stream(text);
        let mut tokens = Vec::new();
        while let (Some(stem), Some(word)) = (stems.next().cloned(), words.next()) {
            tokens.push((
                stem.text,
                word.text.clone(),
                word.offset_from,
                word.offset_to,
            ));
        }
        tokens
    }

    /// The terms a query looks for.
    pub fn query_terms(&mut self, words: &[String], phrases: &[String]) -> Vec<QueryTerm> {
        let mut terms = Vec::new();
        for (text, fuzzy) in words
            .iter()
            .map(|w| (w, true))
            .chain(phrases.iter().map(|p| (p, false)))
        {
            for (stem, written, _, _) in self.tokens(text) {
                let allowed = if fuzzy {
                    typo_distance(written.chars().count())
                } else {
                    0
                };
                terms.push(QueryTerm {
                    stem,
                    written,
                    allowed,
                });
            }
        }
        terms
    }

    /// The byte ranges of `body`'s words that match `terms`.
    fn matches(&mut self, body: &str, terms: &[QueryTerm]) -> Vec<(usize, usize)> {
        let mut found: Vec<(usize, usize)> = Vec::new();
        for (stem, written, from, to) in self.tokens(body) {
            if !terms.iter().any(|term| term.matches(&stem, &written)) {
                continue;
            }
            match found.last_mut() {
                // CJK bigrams overlap: one mark over the run.
                Some((_, end)) if from <= *end => *end = (*end).max(to),
                _ => found.push((from, to)),
            }
        }
        found
    }

    /// The snippet of `body` for `terms`: escaped, matches in `<mark>`, `…` where cut.
    pub fn snippet(&mut self, body: &str, terms: &[QueryTerm]) -> String {
        snippet(body, &self.matches(body, terms))
    }
}

fn escape(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// A char boundary of `text` at or before `at`.
fn floor(text: &str, mut at: usize) -> usize {
    at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// The snippet of `body` around the first of `found` (byte ranges to mark).
fn snippet(body: &str, found: &[(usize, usize)]) -> String {
    let first = found.first().map_or(0, |(from, _)| *from);
    let start = floor(body, first.saturating_sub(SNIPPET_CHARS / 3));
    let start = body[..start]
        .rfind(char::is_whitespace)
        .map_or(
            start,
            |space| if start - space < 20 { space + 1 } else { start },
        );
    let end = floor(body, start + SNIPPET_CHARS);
    let end = if end < body.len() {
        body[start..end]
            .rfind(char::is_whitespace)
            .map_or(end, |space| start + space)
    } else {
        end
    };
    let mut out = String::with_capacity(end - start + 32);
    if start > 0 {
        out.push('…');
    }
    let mut at = start;
    for &(from, to) in found
        .iter()
        .filter(|(from, to)| *from >= start && *to <= end)
    {
        escape(&body[at..from], &mut out);
        out.push_str("<mark>");
        escape(&body[from..to], &mut out);
        out.push_str("</mark>");
        at = to;
    }
    escape(&body[at..end], &mut out);
    if end < body.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_stop_early() {
        assert_eq!(distance("hello", "helo", 1), 1);
        assert_eq!(distance("world", "wrld", 1), 1);
        assert_eq!(distance("kitten", "sitting", 3), 3);
        assert_eq!(distance("abc", "xyzxyz", 1), 2);
        assert_eq!(typo_distance(3), 0);
        assert_eq!(typo_distance(8), 2);
    }

    #[test]
    fn snippets_mark_matches_and_escape_the_rest() {
        let mut analyzers = Analyzers::new();
        let terms = analyzers.query_terms(&["helo".to_owned()], &[]);
        let html = analyzers.snippet("Hello <b>world</b> & hello again", &terms);
        assert_eq!(
            html,
            "<mark>Hello</mark> &lt;b&gt;world&lt;/b&gt; &amp; <mark>hello</mark> again"
        );
        let long = format!("{} needle {}", "word ".repeat(100), "tail ".repeat(100));
        let terms = analyzers.query_terms(&["needle".to_owned()], &[]);
        let html = analyzers.snippet(&long, &terms);
        assert!(html.starts_with('…') && html.ends_with('…'), "{html}");
        assert!(html.contains("<mark>needle</mark>"), "{html}");
        assert!(html.chars().count() < 200, "{html}");
    }
}
