//! Uploaded files' names, made harmless: [`safe_name`] for storing and showing one, and
//! [`content_disposition`] for handing it back in a download's header.
//!
//! A file name is the client's text. Unchecked, it can walk out of a directory
//! (`../../etc/passwd`), cut a C string short (NUL), break a header (CR LF), or disguise its
//! extension with a right-to-left override (`evil\u{202E}gpj.exe` shows as `evilexe.jpg`).

/// The longest name kept, in bytes: the limit of most file systems.
pub const MAX_NAME_BYTES: usize = 255;

/// An extension longer than this (dot included) is not kept apart when a name is shortened: it
/// is more likely part of the name than a type.
const MAX_EXTENSION_BYTES: usize = 32;

/// The name given to a file whose name is empty once cleaned.
const FALLBACK_NAME: &str = "file";

/// `raw` made safe to store and show: its last path component (after `/` or `\`), without
/// control characters or Unicode bidirectional controls, without leading or trailing dots and
/// spaces, at most [`MAX_NAME_BYTES`] bytes (the extension kept when shortened), and `file`
/// when nothing is left.
pub fn safe_name(raw: &str) -> String {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or(raw);
    let cleaned: String = last.chars().filter(|&c| !is_hostile(c)).collect();
    let trimmed = trim_dots_and_spaces(&cleaned);
    let name = truncate_keeping_extension(trimmed, MAX_NAME_BYTES);
    if name.is_empty() {
        FALLBACK_NAME.to_owned()
    } else {
        name
    }
}

/// Control characters (C0, DEL, C1) and the bidi controls that reorder how a name displays.
fn is_hostile(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}'
        )
}

fn trim_dots_and_spaces(name: &str) -> &str {
    name.trim_matches(|c: char| c == '.' || c.is_whitespace())
}

/// `name` cut to at most `max` bytes on a character boundary, its extension (`.png`) kept when
/// it is short enough to be one.
fn truncate_keeping_extension(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_owned();
    }
    let extension = name
        .rfind('.')
        .map(|dot| &name[dot..])
        .filter(|ext| ext.len() <= MAX_EXTENSION_BYTES);
    match extension {
        Some(ext) => {
            let stem = &name[..name.len() - ext.len()];
            let stem = trim_dots_and_spaces(floor_prefix(stem, max - ext.len()));
            format!("{stem}{ext}")
        }
        None => trim_dots_and_spaces(floor_prefix(name, max)).to_owned(),
    }
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
fn floor_prefix(text: &str, max: usize) -> &str {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A `Content-Disposition` header value (RFC 6266) for a file called `name`: `inline` (shown
/// by the browser) or `attachment` (saved), with an ASCII `filename` for old clients and the
/// exact UTF-8 name in `filename*` (RFC 5987).
///
/// `name` should come from [`safe_name`]; whatever it holds, the value is a valid header (no
/// quotes, backslashes, control characters or non-ASCII escape the encoding).
pub fn content_disposition(name: &str, inline: bool) -> String {
    let disposition = if inline { "inline" } else { "attachment" };
    format!(
        "{disposition}; filename=\"{}\"; filename*=UTF-8''{}",
        ascii_fallback(name),
        percent_encode(name)
    )
}

/// `name` with every character that is not printable ASCII, or that a quoted string or a
/// percent-decoding client would misread (`"`, `\`, `%`), replaced with `_`.
fn ascii_fallback(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '"' | '\\' | '%' => '_',
            ' '..='~' => c,
            _ => '_',
        })
        .collect()
}

/// RFC 5987 `value-chars`: `attr-char`s as they are, every other byte of the UTF-8 as `%XX`.
fn percent_encode(name: &str) -> String {
    use std::fmt::Write;
    let mut encoded = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(encoded, "%{byte:02X}");
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_keep_their_last_component() {
        assert_eq!(safe_name("../../etc/passwd"), "passwd");
        assert_eq!(safe_name("C:\\x\\y.png"), "y.png");
        assert_eq!(safe_name("a/b\\c/d.txt"), "d.txt");
        assert_eq!(safe_name("photos/"), "file");
        assert_eq!(safe_name(".."), "file");
    }

    #[test]
    fn controls_and_bidi_overrides_are_removed() {
        assert_eq!(safe_name("a\0b.txt"), "ab.txt");
        assert_eq!(safe_name("line\r\nbreak\t.txt"), "linebreak.txt");
        assert_eq!(safe_name("del\u{7f}\u{85}.txt"), "del.txt");
        assert_eq!(safe_name("evil\u{202E}gpj.exe"), "evilgpj.exe");
        let bidi = "a\u{202A}\u{202B}\u{202C}\u{202D}\u{2066}\u{2067}\u{2068}\u{2069}\u{200E}\u{200F}\u{061C}b";
        assert_eq!(safe_name(bidi), "ab");
        assert_eq!(safe_name("résumé 你好.pdf"), "résumé 你好.pdf");
    }

    #[test]
    fn dots_spaces_and_nothing() {
        assert_eq!(safe_name("..."), "file");
        assert_eq!(safe_name(""), "file");
        assert_eq!(safe_name(" \0 "), "file");
        assert_eq!(safe_name("\u{202E}"), "file");
        assert_eq!(safe_name(" .bashrc"), "bashrc");
        assert_eq!(safe_name("report.pdf. . "), "report.pdf");
        assert_eq!(safe_name("a b.txt"), "a b.txt");
    }

    #[test]
    fn long_names_are_cut_keeping_the_extension() {
        let long = format!("{}.txt", "a".repeat(296));
        assert_eq!(long.len(), 300);
        let name = safe_name(&long);
        assert_eq!(name.len(), MAX_NAME_BYTES);
        assert!(name.ends_with("aaa.txt"), "{name}");

        // Multi-byte characters are never split.
        let wide = format!("{}.png", "é".repeat(200));
        let name = safe_name(&wide);
        assert!(
            name.len() <= MAX_NAME_BYTES && name.ends_with("é.png"),
            "{name}"
        );

        // No extension, or one too long to be one: a plain cut.
        let plain = "ü".repeat(200);
        assert_eq!(safe_name(&plain), "ü".repeat(127));
        let odd = format!("x.{}", "y".repeat(300));
        assert_eq!(safe_name(&odd).len(), MAX_NAME_BYTES);
    }

    #[test]
    fn ascii_names_disposition() {
        assert_eq!(
            content_disposition("report.pdf", false),
            "attachment; filename=\"report.pdf\"; filename*=UTF-8''report.pdf"
        );
        assert_eq!(
            content_disposition("a b\"c\\d%41.png", true),
            "inline; filename=\"a b_c_d_41.png\"; filename*=UTF-8''a%20b%22c%5Cd%2541.png"
        );
    }

    #[test]
    fn non_ascii_names_disposition() {
        assert_eq!(
            content_disposition("résumé €.pdf", false),
            "attachment; filename=\"r_sum_ _.pdf\"; \
             filename*=UTF-8''r%C3%A9sum%C3%A9%20%E2%82%AC.pdf"
        );
        let header = content_disposition("x\r\ny\u{202E}", true);
        assert!(
            header.is_ascii() && !header.contains(['\r', '\n']),
            "{header}"
        );
        assert!(header.contains("filename=\"x__y_\""), "{header}");
    }
}
