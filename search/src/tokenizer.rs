//! Words of any script: runs of letters and digits, as tantivy's `SimpleTokenizer` makes them,
//! except that Chinese, Japanese and Korean text, written without spaces, becomes overlapping
//! character bigrams (`東京都` → `東京`, `京都`; a lone character stays itself). A two-character
//! query then finds its message, and a longer one matches its bigrams in order (as a phrase).
//! Emoji and other symbols separate words and are never indexed.

use tantivy::tokenizer::{Token, TokenStream, Tokenizer};

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

/// The tokenizer of message text (see the module docs).
#[derive(Clone, Default)]
pub struct WordTokenizer {
    token: Token,
}

/// The tokens of one text, made up front (messages are short).
pub struct WordStream<'a> {
    tokens: std::vec::IntoIter<Token>,
    current: &'a mut Token,
}

impl Tokenizer for WordTokenizer {
    type TokenStream<'a> = WordStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> WordStream<'a> {
        self.token.reset();
        WordStream {
            tokens: tokens(text).into_iter(),
            current: &mut self.token,
        }
    }
}

impl TokenStream for WordStream<'_> {
    fn advance(&mut self) -> bool {
        match self.tokens.next() {
            Some(token) => {
                *self.current = token;
                true
            }
            None => false,
        }
    }

    fn token(&self) -> &Token {
        self.current
    }

    fn token_mut(&mut self) -> &mut Token {
        self.current
    }
}

fn push(tokens: &mut Vec<Token>, text: &str, from: usize, to: usize) {
    tokens.push(Token {
        offset_from: from,
        offset_to: to,
        position: tokens.len(),
        text: text[from..to].to_owned(),
        position_length: 1,
    });
}

/// The bigrams of a run of CJK characters (`chars`: byte offset and char).
fn bigrams(tokens: &mut Vec<Token>, text: &str, chars: &[(usize, char)]) {
    if let [(at, c)] = chars {
        push(tokens, text, *at, at + c.len_utf8());
    }
    for pair in chars.windows(2) {
        let ((from, _), (last, c)) = (pair[0], pair[1]);
        push(tokens, text, from, last + c.len_utf8());
    }
}

fn tokens(text: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut word: Option<usize> = None;
    let mut cjk: Vec<(usize, char)> = Vec::new();
    for (at, c) in text.char_indices() {
        let in_cjk = is_cjk(c);
        if !in_cjk && !cjk.is_empty() {
            bigrams(&mut tokens, text, &cjk);
            cjk.clear();
        }
        if in_cjk || !c.is_alphanumeric() {
            if let Some(from) = word.take() {
                push(&mut tokens, text, from, at);
            }
            if in_cjk {
                cjk.push((at, c));
            }
        } else if word.is_none() {
            word = Some(at);
        }
    }
    if let Some(from) = word {
        push(&mut tokens, text, from, text.len());
    }
    bigrams(&mut tokens, text, &cjk);
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(text: &str) -> Vec<String> {
        tokens(text).into_iter().map(|t| t.text).collect()
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
