//! The query language of message search: words, `"exact phrases"`, `-exclusion`,
//! `from:alice`, `in:<conversation>`, `before:2026-12-01` / `after:2026-12-01`,
//! `has:attachment`. Everything else is a word.

use crate::SearchError;

/// A parsed query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    pub words: Vec<String>,
    pub phrases: Vec<String>,
    /// Words that must not appear.
    pub excluded: Vec<String>,
    pub from: Option<String>,
    pub conversation: Option<String>,
    /// Unix milliseconds: messages strictly before, and at or after.
    pub before: Option<i64>,
    pub after: Option<i64>,
    pub has_attachment: bool,
}

impl Parsed {
    /// Whether the query asks for any text (a query of filters alone lists the newest).
    pub fn has_text(&self) -> bool {
        !self.words.is_empty() || !self.phrases.is_empty()
    }
}

/// Unix milliseconds of midnight UTC at the start of `date` (`YYYY-MM-DD`).
fn day_start(date: &str) -> Option<i64> {
    let mut parts = date.splitn(3, '-');
    let year: i64 = parts.next()?.parse().ok()?;
    let month: i64 = parts.next()?.parse().ok()?;
    let day: i64 = parts.next()?.parse().ok()?;
    // Four-digit years only: a longer one overflowed the milliseconds (found by fuzzing).
    if !(0..=9999).contains(&year) || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400_000)
}

/// Splits `text` into terms, keeping quoted phrases whole.
fn split(text: &str) -> Vec<(bool, String)> {
    let mut terms = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('"') {
            let (phrase, tail) = after.split_once('"').unwrap_or((after, ""));
            terms.push((true, phrase.to_owned()));
            rest = tail.trim_start();
            continue;
        }
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        terms.push((false, rest[..end].to_owned()));
        rest = rest[end..].trim_start();
    }
    terms
}

/// Parses a query; a bad date or an unknown `has:` is `Invalid`.
pub fn parse(text: &str) -> Result<Parsed, SearchError> {
    let mut parsed = Parsed::default();
    for (quoted, term) in split(text) {
        if quoted {
            if !term.trim().is_empty() {
                parsed.phrases.push(term);
            }
            continue;
        }
        let date = |value: &str| {
            day_start(value).ok_or_else(|| {
                SearchError::Invalid(format!("{value:?} is not a date (YYYY-MM-DD)"))
            })
        };
        match term.split_once(':') {
            Some(("from", who)) if !who.is_empty() => parsed.from = Some(who.to_owned()),
            Some(("in", id)) if !id.is_empty() => parsed.conversation = Some(id.to_owned()),
            Some(("before", day)) => parsed.before = Some(date(day)?),
            Some(("after", day)) => parsed.after = Some(date(day)?),
            Some(("has", "attachment" | "attachments" | "file")) => parsed.has_attachment = true,
            Some(("has", other)) => {
                return Err(SearchError::Invalid(format!(
                    "has:{other} is not a filter (has:attachment is)"
                )));
            }
            _ => match term.strip_prefix('-') {
                Some(word) if !word.is_empty() => parsed.excluded.push(word.to_owned()),
                _ => parsed.words.push(term),
            },
        }
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operator_is_read() {
        let parsed = parse(
            r#"hello "exact words" -spam from:alice in:c1 before:2026-12-01 after:1970-01-02 has:attachment wörld"#,
        )
        .expect("parse");
        assert_eq!(parsed.words, ["hello", "wörld"]);
        assert_eq!(parsed.phrases, ["exact words"]);
        assert_eq!(parsed.excluded, ["spam"]);
        assert_eq!(parsed.from.as_deref(), Some("alice"));
        assert_eq!(parsed.conversation.as_deref(), Some("c1"));
        assert_eq!(parsed.before, Some(1_796_083_200_000));
        assert_eq!(parsed.after, Some(86_400_000));
        assert!(parsed.has_attachment);
    }

    #[test]
    fn bad_filters_are_refused_and_odd_input_is_words() {
        assert!(parse("before:yesterday").is_err());
        assert!(parse("has:cats").is_err());
        let parsed = parse(r#"- "unclosed phrase 👋"#).expect("parse");
        assert_eq!(parsed.words, ["-"]);
        assert_eq!(parsed.phrases, ["unclosed phrase 👋"]);
        assert!(parse("").expect("empty").words.is_empty());
    }

    /// Found by the `search_query` fuzz target: a long year overflowed the milliseconds (a panic
    /// with overflow checks, a wrapped date without).
    #[test]
    fn years_outside_four_digits_are_refused() {
        assert!(parse("after:2111111111111602-02-30").is_err());
        assert!(parse(&format!("before:{}-12-31", i64::MAX)).is_err());
        assert!(parse("before:-1-01-01").is_err());
        assert!(parse("before:10000-01-01").is_err());
        assert_eq!(
            parse("after:9999-12-31").expect("parse").after,
            Some(253_402_214_400_000)
        );
        assert_eq!(
            parse("after:0000-01-01").expect("parse").after,
            Some(-62_167_219_200_000)
        );
    }
}
