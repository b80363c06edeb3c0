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
    if a.len().abs_diff(b.len()) > max * 4 {
        // A char is 1–4 bytes: more than `max` chars apart in any case.
        return max + 1;
    }
    if a.is_ascii() && b.is_ascii() {
        return distance_of(a.as_bytes(), b.as_bytes(), max);
    }
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    distance_of(&a, &b, max)
}

/// Levenshtein distance of two sequences, stopping early past `max` (returns `max + 1`).
fn distance_of<T: PartialEq>(a: &[T], b: &[T], max: usize) -> usize {
    if a.len().abs_diff(b.len()) > max {
        return max + 1;
    }
    // Two rows; words are at most 64 bytes (the analyzers' `RemoveLongFilter`), so they fit on
    // the stack.
    const ROW: usize = 65;
    if b.len() >= ROW {
        return distance_long(a, b, max);
    }
    let mut previous = [0usize; ROW];
    let mut current = [0usize; ROW];
    for (j, cell) in previous.iter_mut().enumerate().take(b.len() + 1) {
        *cell = j;
    }
    for (i, ca) in a.iter().enumerate() {
        current[0] = i + 1;
        let mut least = current[0];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
            least = least.min(current[j + 1]);
        }
        if least > max {
            return max + 1;
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

/// [`distance_of`] for sequences too long for its rows.
fn distance_long<T: PartialEq>(a: &[T], b: &[T], max: usize) -> usize {
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
    /// Whether a word of a message, as written (lower-cased and folded), is a match: the same
    /// stem, or within the allowed typos of the query word as written (the index matches the
    /// same way). `stem` gives the word's stem, computed at most once per word.
    fn matches(&self, written: &str, stem: &mut impl FnMut() -> String) -> bool {
        let allowed = usize::from(self.allowed);
        if written == self.written
            || (allowed > 0 && distance(written, &self.written, allowed) <= allowed)
        {
            return true;
        }
        // English stems keep a word's first letter ("dying" → "die", "skies" → "sky"): a word
        // that starts otherwise than the stem cannot have it, and is not stemmed (stemming
        // every word of every hit was a quarter of a search's time).
        if written.starts_with(|c: char| c.is_alphanumeric())
            && written.chars().next() != self.stem.chars().next()
        {
            return false;
        }
        stem() == self.stem
    }
}

/// The analyzers of message text: words as written, and their stems.
pub struct Analyzers {
    /// The whole text's words as written (lower-cased, folded).
    words: TextAnalyzer,
    /// The stems of text already through `words` (so the same as `crate::analyzer`'s).
    stemmer: TextAnalyzer,
}

impl Analyzers {
    pub fn new() -> Analyzers {
        Analyzers {
            words: crate::words_analyzer(),
            stemmer: TextAnalyzer::builder(tantivy::tokenizer::RawTokenizer::default())
                .filter(tantivy::tokenizer::Stemmer::new(
                    tantivy::tokenizer::Language::English,
                ))
                .build(),
        }
    }

    /// The stem of one word as written.
    fn stem(&mut self, written: &str) -> String {
        self.stemmer
            .token_stream(written)
            .next()
            .map_or_else(String::new, |token| token.text.clone())
    }

    /// The terms a query looks for.
    pub fn query_terms(&mut self, words: &[String], phrases: &[String]) -> Vec<QueryTerm> {
        let mut terms = Vec::new();
        for (text, fuzzy) in words
            .iter()
            .map(|w| (w, true))
            .chain(phrases.iter().map(|p| (p, false)))
        {
            let mut written = Vec::new();
            {
                let mut stream = self.words.token_stream(text);
                while let Some(token) = stream.next() {
                    written.push(token.text.clone());
                }
            }
            for written in written {
                let allowed = if fuzzy {
                    typo_distance(written.chars().count())
                } else {
                    0
                };
                terms.push(QueryTerm {
                    stem: self.stem(&written),
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
        let Analyzers { words, stemmer } = self;
        let mut stream = words.token_stream(body);
        while let Some(token) = stream.next() {
            let mut stem: Option<String> = None;
            let mut stem_of = || {
                stem.get_or_insert_with(|| {
                    stemmer
                        .token_stream(&token.text)
                        .next()
                        .map_or_else(String::new, |stemmed| stemmed.text.clone())
                })
                .clone()
            };
            if !terms
                .iter()
                .any(|term| term.matches(&token.text, &mut stem_of))
            {
                continue;
            }
            let (from, to) = (token.offset_from, token.offset_to);
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
        assert_eq!(distance("naïve", "naive", 1), 1);
        assert_eq!(distance("東京都", "東京", 1), 1);
        let long = "a".repeat(80);
        assert_eq!(distance(&long, &format!("{long}b"), 2), 1);
        assert_eq!(distance(&long, &"b".repeat(80), 2), 3);
    }

    /// Words are only stemmed when their first letter is the query stem's: right only if
    /// stemming never changes a word's first letter.
    #[test]
    fn stems_keep_the_first_letter() {
        let mut analyzers = Analyzers::new();
        for word in [
            "dying",
            "lying",
            "tying",
            "skies",
            "sky",
            "yelling",
            "yes",
            "ugly",
            "early",
            "only",
            "idly",
            "gently",
            "news",
            "hoping",
            "generously",
            "running",
            "agreed",
            "ies",
            "y",
            "yy",
            "ay",
            "e",
            "ed",
            "ing",
            "ling",
            "sses",
            "ied",
            "bye",
            "eyes",
            "abilities",
            "1st",
            "2nd",
            "naïve",
            "東京",
        ] {
            let written = analyzers
                .words
                .token_stream(word)
                .next()
                .unwrap()
                .text
                .clone();
            let stem = analyzers.stem(&written);
            assert_eq!(
                stem.chars().next(),
                written.chars().next(),
                "{word} → {stem}"
            );
        }
    }

    /// The stem of a word through the words analyzer then the stemmer is the text analyzer's.
    #[test]
    fn stems_are_the_index_stems() {
        let mut analyzers = Analyzers::new();
        let text =
            "Running runners ran quickly; the SKIES were generously dying, naïve Café 東京都";
        let mut index = crate::analyzer();
        let mut stream = index.token_stream(text);
        let mut pairs = Vec::new();
        {
            let mut words = analyzers.words.token_stream(text);
            while let (Some(stem), Some(word)) = (stream.next(), words.next()) {
                pairs.push((stem.text.clone(), word.text.clone()));
            }
        }
        assert!(pairs.len() > 10);
        for (stem, written) in pairs {
            assert_eq!(analyzers.stem(&written), stem, "{written}");
        }
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
