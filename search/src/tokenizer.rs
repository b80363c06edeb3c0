//! Words of any script: runs of letters and digits, as tantivy's `SimpleTokenizer` makes them,
//! except that Chinese, Japanese and Korean text, written without spaces, becomes overlapping
//! character bigrams (`東京都` → `東京`, `京都`; a lone character stays itself). A two-character
//! query then finds its message, and a longer one matches its bigrams in order (as a phrase).
//! Emoji and other symbols separate words and are never indexed.

use std::cell::RefCell;
use std::collections::HashMap;

use tantivy::tokenizer::{
    Language, RawTokenizer, Stemmer, TextAnalyzer, Token, TokenFilter, TokenStream, Tokenizer,
};

/// Whether `c` is written without spaces between words: Han ideographs, kana, Hangul.
pub fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x1100..=0x11FF        // Hangul Jamo
        | 0x2E80..=0x2FDF      // CJK radicals
        | 0x3040..=0x30FF      // Hiragana, Katakana
        | 0x3100..=0x312F      // Bopomofo
        | 0x3130..=0x318F      // Hangul compatibility Jamo
        | 0x31F0..=0x31FF      // Katakana phonetic extensions
        | 0x3400..=0x4DBF      // CJK extension A
        | 0x4E00..=0x9FFF      // CJK unified ideographs
        | 0xAC00..=0xD7AF      // Hangul syllables
        | 0xF900..=0xFAFF      // CJK compatibility ideographs
        | 0xFF66..=0xFF9F      // half-width Katakana
        | 0x20000..=0x3134F // CJK extensions B to G
    )
}

/// The tokenizer of message text (see the module docs). Tokens are found as the stream
/// advances, each written into one reused [`Token`]: nothing is allocated per token (the
/// indexer tokenizes every message twice, for `body` and `words`; building a list of tokens
/// first was a tenth of its time).
#[derive(Clone, Default)]
pub struct WordTokenizer {
    token: Token,
}

/// The tokens of one text.
pub struct WordStream<'a> {
    text: &'a str,
    /// Where the next token is looked for.
    at: usize,
    /// The last CJK character of the run being read, if any (its byte offset and itself).
    cjk: Option<(usize, char)>,
    /// Whether the run being read gave a bigram yet (a run of one character is a token itself).
    paired: bool,
    /// Tokens given so far: the next one's position.
    given: usize,
    token: &'a mut Token,
}

impl Tokenizer for WordTokenizer {
    type TokenStream<'a> = WordStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> WordStream<'a> {
        self.token.reset();
        WordStream {
            text,
            at: 0,
            cjk: None,
            paired: false,
            given: 0,
            token: &mut self.token,
        }
    }
}

impl WordStream<'_> {
    fn give(&mut self, from: usize, to: usize) -> bool {
        let token = &mut *self.token;
        token.offset_from = from;
        token.offset_to = to;
        token.position = self.given;
        token.position_length = 1;
        token.text.clear();
        token.text.push_str(&self.text[from..to]);
        self.given += 1;
        true
    }

    /// Ends the CJK run being read: its lone character if it gave no bigram.
    fn end_run(&mut self) -> bool {
        match self.cjk.take() {
            Some((from, c)) if !self.paired => self.give(from, from + c.len_utf8()),
            _ => false,
        }
    }
}

/// Where the word starting at `from` ends: at the first character that is not a letter or
/// digit, or is CJK. ASCII (most of most chats) is judged a byte at a time.
fn word_end(text: &str, from: usize) -> usize {
    let bytes = text.as_bytes();
    let mut at = from;
    while let Some(&byte) = bytes.get(at) {
        if byte.is_ascii() {
            if !byte.is_ascii_alphanumeric() {
                break;
            }
            at += 1;
            continue;
        }
        match text[at..].chars().next() {
            Some(c) if !is_cjk(c) && c.is_alphanumeric() => at += c.len_utf8(),
            _ => break,
        }
    }
    at
}

impl TokenStream for WordStream<'_> {
    fn advance(&mut self) -> bool {
        while let Some(&byte) = self.text.as_bytes().get(self.at) {
            let at = self.at;
            if byte.is_ascii() && self.cjk.is_none() {
                if byte.is_ascii_alphanumeric() {
                    self.at = word_end(self.text, at);
                    return self.give(at, self.at);
                }
                self.at += 1;
                continue;
            }
            let Some(c) = self.text[at..].chars().next() else {
                break;
            };
            if is_cjk(c) {
                self.at += c.len_utf8();
                match self.cjk.replace((at, c)) {
                    Some((from, _)) => {
                        self.paired = true;
                        return self.give(from, self.at);
                    }
                    None => self.paired = false,
                }
                continue;
            }
            // The character after a run is read again once the run has ended.
            if self.cjk.is_some() {
                if self.end_run() {
                    return true;
                }
                continue;
            }
            if !c.is_alphanumeric() {
                self.at += c.len_utf8();
                continue;
            }
            self.at = word_end(self.text, at);
            return self.give(at, self.at);
        }
        self.end_run()
    }

    fn token(&self) -> &Token {
        self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        self.token
    }
}

/// English stems (tantivy's [`Stemmer`]), each word's computed once per thread and kept: the
/// snowball stemmer was a fifth of the indexer's time, and chat repeats its words (a Zipf
/// law), so nearly every word of a message was stemmed before on the same indexing thread.
#[derive(Clone, Copy, Default)]
pub struct CachedStemmer;

/// Words a thread keeps the stems of; past it, it starts over (a few MiB at most).
const MAX_STEMS: usize = 32 * 1024;

/// One thread's stems, and the stemmer for words not seen yet. Hashed with foldhash: several
/// times cheaper than std's SipHash on short words, and seeded per process (unlike FxHash), so
/// words a sender picks cannot be made to collide.
struct Stems {
    known: HashMap<String, String, foldhash::fast::RandomState>,
    stemmer: TextAnalyzer,
}

thread_local! {
    static STEMS: RefCell<Stems> = RefCell::new(Stems {
        known: HashMap::default(),
        stemmer: TextAnalyzer::builder(RawTokenizer::default())
            .filter(Stemmer::new(Language::English))
            .build(),
    });
}

/// Replaces `word` by its stem.
fn stem(word: &mut String) {
    STEMS.with_borrow_mut(|stems| {
        if let Some(stem) = stems.known.get(word.as_str()) {
            if stem != word {
                word.clear();
                word.push_str(stem);
            }
            return;
        }
        let Some(stem) = stems
            .stemmer
            .token_stream(word)
            .next()
            .map(|token| token.text.clone())
        else {
            return;
        };
        if stems.known.len() >= MAX_STEMS {
            stems.known.clear();
        }
        stems
            .known
            .insert(std::mem::replace(word, stem.clone()), stem);
    });
}

impl TokenFilter for CachedStemmer {
    type Tokenizer<T: Tokenizer> = CachedStemmerFilter<T>;

    fn transform<T: Tokenizer>(self, tokenizer: T) -> CachedStemmerFilter<T> {
        CachedStemmerFilter { inner: tokenizer }
    }
}

/// A tokenizer whose tokens are stemmed by [`CachedStemmer`].
#[derive(Clone)]
pub struct CachedStemmerFilter<T> {
    inner: T,
}

impl<T: Tokenizer> Tokenizer for CachedStemmerFilter<T> {
    type TokenStream<'a> = CachedStemmerStream<T::TokenStream<'a>>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> Self::TokenStream<'a> {
        CachedStemmerStream {
            tail: self.inner.token_stream(text),
        }
    }
}

/// The tokens of a [`CachedStemmerFilter`].
pub struct CachedStemmerStream<S> {
    tail: S,
}

impl<S: TokenStream> TokenStream for CachedStemmerStream<S> {
    fn advance(&mut self) -> bool {
        if !self.tail.advance() {
            return false;
        }
        stem(&mut self.tail.token_mut().text);
        true
    }

    fn token(&self) -> &Token {
        self.tail.token()
    }

    fn token_mut(&mut self) -> &mut Token {
        self.tail.token_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(text: &str) -> Vec<Token> {
        let mut tokenizer = WordTokenizer::default();
        let mut stream = tokenizer.token_stream(text);
        let mut tokens = Vec::new();
        while let Some(token) = stream.next() {
            tokens.push(token.clone());
        }
        tokens
    }

    fn texts(text: &str) -> Vec<String> {
        tokens(text).into_iter().map(|t| t.text).collect()
    }

    /// The tokens of `text` as a list, made the obvious way (the tokenizer's first version):
    /// the reference the stream is checked against.
    fn reference(text: &str) -> Vec<(usize, usize, usize)> {
        let mut tokens = Vec::new();
        let mut push = |from: usize, to: usize| tokens.push((from, to, tokens.len()));
        let mut word: Option<usize> = None;
        let mut cjk: Vec<(usize, char)> = Vec::new();
        let runs = |cjk: &mut Vec<(usize, char)>, push: &mut dyn FnMut(usize, usize)| {
            if let [(at, c)] = cjk.as_slice() {
                push(*at, at + c.len_utf8());
            }
            for pair in cjk.windows(2) {
                push(pair[0].0, pair[1].0 + pair[1].1.len_utf8());
            }
            cjk.clear();
        };
        for (at, c) in text.char_indices() {
            let in_cjk = is_cjk(c);
            if !in_cjk && !cjk.is_empty() {
                runs(&mut cjk, &mut push);
            }
            if in_cjk || !c.is_alphanumeric() {
                if let Some(from) = word.take() {
                    push(from, at);
                }
                if in_cjk {
                    cjk.push((at, c));
                }
            } else if word.is_none() {
                word = Some(at);
            }
        }
        if let Some(from) = word {
            push(from, text.len());
        }
        runs(&mut cjk, &mut push);
        tokens
    }

    #[test]
    fn the_stream_gives_the_reference_tokens() {
        // Texts of every mix of word characters, CJK, separators and emoji up to 6 long.
        let alphabet = ['a', 'É', '7', ' ', '-', '東', '京', 'ㄅ', '🎉', 'ß'];
        let mut checked = 0;
        let mut text = String::new();
        for n in 0..=6_u32 {
            for mut code in 0..alphabet.len().pow(n) {
                text.clear();
                for _ in 0..n {
                    text.push(alphabet[code % alphabet.len()]);
                    code /= alphabet.len();
                }
                let got: Vec<(usize, usize, usize)> = tokens(&text)
                    .iter()
                    .map(|t| {
                        assert_eq!(t.text, text[t.offset_from..t.offset_to]);
                        (t.offset_from, t.offset_to, t.position)
                    })
                    .collect();
                assert_eq!(got, reference(&text), "{text:?}");
                checked += 1;
            }
        }
        assert_eq!(checked, 1_111_111);
    }

    #[test]
    fn cached_stems_are_the_stemmers() {
        let text = "Running runners ran; the quarterly launches, launching it's ÉTÉ généralement";
        let analyze = |mut analyzer: TextAnalyzer| {
            let mut stream = analyzer.token_stream(text);
            let mut tokens = Vec::new();
            while let Some(token) = stream.next() {
                tokens.push(token.clone());
            }
            tokens
        };
        let tantivy = || {
            TextAnalyzer::builder(WordTokenizer::default())
                .filter(tantivy::tokenizer::LowerCaser)
                .filter(Stemmer::new(Language::English))
        };
        let cached = || {
            TextAnalyzer::builder(WordTokenizer::default())
                .filter(tantivy::tokenizer::LowerCaser)
                .filter(CachedStemmer)
        };
        let expected = analyze(tantivy().build());
        assert!(expected.iter().any(|t| t.text == "launch"));
        // Twice: the words are unknown, then known.
        assert_eq!(analyze(cached().build()), expected);
        assert_eq!(analyze(cached().build()), expected);
        // And past the bound, when the thread starts over.
        for n in 0..MAX_STEMS + 10 {
            let mut word = format!("word{n}s");
            stem(&mut word);
            assert_eq!(word, format!("word{n}"));
        }
        assert_eq!(analyze(cached().build()), expected);
    }

    #[test]
    fn latin_words_split_as_before() {
        assert_eq!(
            texts("Hello, wörld! it's 2026"),
            ["Hello", "wörld", "it", "s", "2026"]
        );
        assert!(texts("").is_empty());
        assert!(texts("🎉🎉 !!").is_empty(), "emoji are not words");
    }

    #[test]
    fn cjk_runs_become_bigrams_with_exact_offsets() {
        assert_eq!(
            texts("東京都に行く"),
            ["東京", "京都", "都に", "に行", "行く"]
        );
        assert_eq!(texts("猫"), ["猫"]);
        assert_eq!(texts("我爱abc北京🎉서울"), ["我爱", "abc", "北京", "서울"]);
        let text = "say 你好 now";
        for token in tokens(text) {
            assert_eq!(&text[token.offset_from..token.offset_to], token.text);
        }
        let positions: Vec<usize> = tokens("一二三 x").iter().map(|t| t.position).collect();
        assert_eq!(positions, [0, 1, 2]);
    }
}
