//! A file's content type, decided from its first bytes ([`sniff`]), never from the name or the
//! `Content-Type` the client sent: both are the client's word, and a hostile client lies. The
//! server then asks a [`TypePolicy`] whether that type may be stored at all.

use std::fmt;

/// What [`sniff`] found: the MIME type, and the broad kind the policy and the UI reason about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sniffed {
    /// `image/png`, `application/pdf`, `text/plain; charset=utf-8`, … and
    /// `application/octet-stream` for binary of no known type.
    pub mime: String,
    pub kind: Kind,
}

/// The broad kind of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Image,
    Video,
    Audio,
    /// Office documents, PDF, e-books, and text.
    Document,
    /// Compressed and container formats (zip, tar, gzip, 7z, …).
    Archive,
    /// Native programs and scripts: refused unless a policy names their type.
    Executable,
    Other,
}

/// The type of text-looking content (valid UTF-8, no NUL).
pub const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

/// The type of binary content of no known type.
pub const OCTET_STREAM: &str = "application/octet-stream";

/// The MIME type of a shell script (any file starting with `#!`).
const SHELL_SCRIPT: &str = "text/x-shellscript";

/// The types of programs a system runs directly: ELF, PE (and its older names), Mach-O, and
/// scripts. A chat server that hands these out is a malware host, so they are refused by default.
const EXECUTABLES: &[&str] = &[
    "application/x-executable",
    "application/x-sharedlib",
    "application/vnd.microsoft.portable-executable",
    "application/x-msdownload",
    "application/x-msdos-program",
    "application/x-mach-binary",
    SHELL_SCRIPT,
];

/// Types `infer` files under another kind than a person would (it calls PDF an archive).
const DOCUMENTS: &[&str] = &[
    "application/pdf",
    "application/postscript",
    "application/rtf",
];

/// The content type of a file whose first bytes are `head` (a few KiB are plenty; see
/// [`HEAD_BYTES`](super::HEAD_BYTES)).
pub fn sniff(head: &[u8]) -> Sniffed {
    // `infer` only knows `#!` followed by more bytes; a script is a script however short.
    if head.starts_with(b"#!") {
        return Sniffed::new(SHELL_SCRIPT, Kind::Executable);
    }
    if let Some(found) = infer::get(head) {
        let mime = found.mime_type();
        return Sniffed::new(mime, kind_of(mime, found.matcher_type()));
    }
    if looks_like_text(head) {
        return Sniffed::new(TEXT_PLAIN, Kind::Document);
    }
    Sniffed::new(OCTET_STREAM, Kind::Other)
}

impl Sniffed {
    fn new(mime: &str, kind: Kind) -> Sniffed {
        Sniffed {
            mime: mime.to_owned(),
            kind,
        }
    }

    /// The type without its parameters: `text/plain` for `text/plain; charset=utf-8`.
    pub fn essence(&self) -> &str {
        essence(&self.mime)
    }
}

fn essence(mime: &str) -> &str {
    mime.split(';').next().unwrap_or(mime).trim()
}

fn kind_of(mime: &str, matcher: infer::MatcherType) -> Kind {
    use infer::MatcherType;
    if EXECUTABLES.contains(&mime) {
        return Kind::Executable;
    }
    if DOCUMENTS.contains(&mime) {
        return Kind::Document;
    }
    match matcher {
        MatcherType::Image => Kind::Image,
        MatcherType::Video => Kind::Video,
        MatcherType::Audio => Kind::Audio,
        MatcherType::Doc | MatcherType::Book | MatcherType::Text => Kind::Document,
        MatcherType::Archive => Kind::Archive,
        MatcherType::App | MatcherType::Font | MatcherType::Custom => Kind::Other,
    }
}

/// Valid UTF-8 without NUL. The head may end inside a character (it is cut at a byte count),
/// so an incomplete last character still counts as text.
fn looks_like_text(head: &[u8]) -> bool {
    if head.contains(&0) {
        return false;
    }
    match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(err) => err.error_len().is_none(),
    }
}

/// Whether [`thumbnail`](super::thumbnail::thumbnail) makes thumbnails of files of this type.
pub fn is_thumbnailable(mime: &str) -> bool {
    matches!(
        essence(mime),
        "image/png" | "image/jpeg" | "image/gif" | "image/webp"
    )
}

/// Which content types may be stored: a list of patterns, `*` (any type), `image/*` (any
/// subtype) or `application/pdf` (exactly that type).
///
/// Executables are refused unless their exact type is listed: wildcards, `*` included, never
/// admit them, so a policy of `*` (the default) means "everything but programs".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypePolicy {
    allowed: Vec<String>,
}

impl Default for TypePolicy {
    fn default() -> TypePolicy {
        TypePolicy {
            allowed: vec!["*".to_owned()],
        }
    }
}

impl TypePolicy {
    /// Parses a comma-separated list of patterns (`image/*,video/*,application/pdf`), case
    /// insensitively. The error says which pattern is wrong.
    pub fn parse(list: &str) -> Result<TypePolicy, String> {
        let allowed = list
            .split(',')
            .map(str::trim)
            .filter(|pattern| !pattern.is_empty())
            .map(parse_pattern)
            .collect::<Result<Vec<_>, _>>()?;
        if allowed.is_empty() {
            return Err("the list of allowed file types is empty".to_owned());
        }
        Ok(TypePolicy { allowed })
    }

    /// Accepts a file of the `sniffed` type, or says which type was refused.
    pub fn check(&self, sniffed: &Sniffed) -> Result<(), String> {
        let mime = sniffed.essence().to_ascii_lowercase();
        let executable = sniffed.kind == Kind::Executable;
        let allowed = self
            .allowed
            .iter()
            .any(|pattern| pattern_admits(pattern, &mime, executable));
        match (allowed, executable) {
            (true, _) => Ok(()),
            (false, true) => Err(format!("executable files ({mime}) are not allowed")),
            (false, false) => Err(format!("files of type {mime} are not allowed")),
        }
    }
}

impl fmt::Display for TypePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.allowed.join(","))
    }
}

fn parse_pattern(pattern: &str) -> Result<String, String> {
    let pattern = pattern.to_ascii_lowercase();
    if pattern == "*" || pattern == "*/*" {
        return Ok("*".to_owned());
    }
    let valid = match pattern.split_once('/') {
        Some((top, sub)) => is_token(top) && (sub == "*" || is_token(sub)),
        None => false,
    };
    if !valid {
        return Err(format!(
            "`{pattern}` is not a file type pattern (`*`, `image/*` or `application/pdf`)"
        ));
    }
    Ok(pattern)
}

/// A MIME type or subtype name (RFC 6838's restricted-name, lower case).
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|byte| {
            byte.is_ascii_lowercase() || byte.is_ascii_digit() || b"!#$&-^_.+".contains(&byte)
        })
}

fn pattern_admits(pattern: &str, mime: &str, executable: bool) -> bool {
    if pattern == mime {
        return true;
    }
    if executable {
        return false;
    }
    match pattern.strip_suffix("/*") {
        Some(top) => mime.split_once('/').is_some_and(|(t, _)| t == top),
        None => pattern == "*",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn encoded(format: image::ImageFormat) -> Vec<u8> {
        let img = image::DynamicImage::ImageRgba8(image::RgbaImage::new(4, 3));
        let img = match format {
            image::ImageFormat::Jpeg => image::DynamicImage::ImageRgb8(img.to_rgb8()),
            _ => img,
        };
        let mut bytes = Cursor::new(Vec::new());
        img.write_to(&mut bytes, format)
            .expect("encoding a test image");
        bytes.into_inner()
    }

    fn elf_header() -> Vec<u8> {
        let mut elf = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0];
        elf.resize(64, 0);
        elf[16] = 2; // ET_EXEC
        elf[18] = 0x3e; // x86-64
        elf
    }

    fn zip_header() -> Vec<u8> {
        let mut zip = b"PK\x03\x04\x14\x00\x00\x00\x00\x00".to_vec();
        zip.resize(26, 0);
        zip.extend_from_slice(&[5, 0, 0, 0]); // name length 5, no extra field
        zip.extend_from_slice(b"a.txt");
        zip
    }

    #[test]
    fn images_are_known_by_their_signature() {
        use image::ImageFormat::{Gif, Jpeg, Png, WebP};
        for (format, mime) in [
            (Png, "image/png"),
            (Jpeg, "image/jpeg"),
            (Gif, "image/gif"),
            (WebP, "image/webp"),
        ] {
            let sniffed = sniff(&encoded(format));
            assert_eq!(sniffed, Sniffed::new(mime, Kind::Image), "{format:?}");
            assert!(is_thumbnailable(&sniffed.mime));
        }
    }

    #[test]
    fn documents_archives_and_programs() {
        let cases: [(&[u8], &str, Kind); 5] = [
            (
                b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n",
                "application/pdf",
                Kind::Document,
            ),
            (&zip_header(), "application/zip", Kind::Archive),
            (&elf_header(), "application/x-executable", Kind::Executable),
            (
                b"MZ\x90\x00\x03\x00\x00\x00\x04\x00",
                "application/vnd.microsoft.portable-executable",
                Kind::Executable,
            ),
            (b"#!/bin/sh\nrm -rf ~\n", SHELL_SCRIPT, Kind::Executable),
        ];
        for (head, mime, kind) in cases {
            assert_eq!(sniff(head), Sniffed::new(mime, kind), "{mime}");
            assert!(!is_thumbnailable(mime));
        }
    }

    #[test]
    fn text_is_utf8_without_nul() {
        let text = "héllo wörld, ça va ? 你好\n".as_bytes();
        assert_eq!(sniff(text), Sniffed::new(TEXT_PLAIN, Kind::Document));
        assert_eq!(sniff(text).essence(), "text/plain");
        // A head cut inside a character is still text.
        let cut = &text[..text.len() - 2];
        assert!(std::str::from_utf8(cut).is_err());
        assert_eq!(sniff(cut).mime, TEXT_PLAIN);
        assert_eq!(sniff(b"ab\0cd").mime, OCTET_STREAM);
        assert_eq!(sniff(b"ab\xffcd").mime, OCTET_STREAM);
    }

    #[test]
    fn unknown_binary_is_an_octet_stream() {
        // A fixed-seed xorshift: the same "random" bytes on every run.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let random: Vec<u8> = (0..512)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()[0]
            })
            .collect();
        assert_eq!(sniff(&random), Sniffed::new(OCTET_STREAM, Kind::Other));
    }

    #[test]
    fn policies_parse() {
        let policy = TypePolicy::parse(" image/* , Video/*,application/pdf,,").expect("valid");
        assert_eq!(policy.to_string(), "image/*,video/*,application/pdf");
        assert_eq!(TypePolicy::parse("*/*"), Ok(TypePolicy::default()));
        for bad in [
            "",
            " , ",
            "image",
            "image/",
            "*/png",
            "ima ge/png",
            "image/**",
            "/png",
        ] {
            let err = TypePolicy::parse(bad).expect_err(bad);
            assert!(!err.is_empty());
        }
    }

    #[test]
    fn policies_admit_what_they_list() {
        let policy = TypePolicy::parse("image/*,application/pdf").expect("valid");
        assert_eq!(
            policy.check(&sniff(&encoded(image::ImageFormat::Png))),
            Ok(())
        );
        assert_eq!(policy.check(&sniff(b"%PDF-1.4\n")), Ok(()));
        let err = policy.check(&sniff(b"plain text")).expect_err("text");
        assert!(err.contains("text/plain"), "{err}");
        let err = policy.check(&sniff(&zip_header())).expect_err("zip");
        assert!(err.contains("application/zip"), "{err}");
        let text = TypePolicy::parse("text/plain").expect("valid");
        assert_eq!(
            text.check(&sniff(b"plain text")),
            Ok(()),
            "parameters ignored"
        );
    }

    #[test]
    fn executables_are_refused_unless_named() {
        let programs = [
            sniff(&elf_header()),
            sniff(b"MZ\x90\x00"),
            sniff(b"#!/bin/sh\n"),
        ];
        let wildcards = TypePolicy::parse("*,text/*,application/*").expect("valid");
        for program in &programs {
            for policy in [&TypePolicy::default(), &wildcards] {
                let err = policy.check(program).expect_err(&program.mime);
                assert!(err.contains(&program.mime), "{err}");
            }
        }
        let named = TypePolicy::parse("application/x-executable").expect("valid");
        assert_eq!(named.check(&programs[0]), Ok(()));
        assert!(named.check(&programs[1]).is_err());
        assert_eq!(TypePolicy::default().check(&sniff(b"hello")), Ok(()));
    }
}
