//! The bytes the media scenario sends, made as they are sent, and the multipart form that
//! carries them in a single upload.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::ops::Range;
use std::sync::Arc;

use futures_util::stream;
use reqwest::Body;
use sha2::{Digest, Sha256};

/// The pattern's block, and the size of every write and piece sent.
pub const BLOCK: usize = 64 * 1024;
/// Bytes of the stamp at the start of every block.
const STAMP: usize = 8;

/// The bytes every phase sends: one 64 KiB block of pseudo-random bytes (xorshift, fixed seed)
/// repeated, each repeat stamped with its number in its first 8 bytes. Every position has its
/// own bytes (a chunk stored in the wrong place changes the file's SHA-256), nothing compresses,
/// and making a piece costs one copy.
#[derive(Clone)]
pub struct Pattern {
    block: Arc<[u8]>,
}

impl Default for Pattern {
    fn default() -> Self {
        Pattern::new()
    }
}

impl Pattern {
    pub fn new() -> Pattern {
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let block = (0..BLOCK / 8)
            .flat_map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()
            })
            .collect();
        Pattern { block }
    }

    /// Overwrites the stamp bytes inside `piece`, which starts at position `pos` and does not
    /// cross a block boundary.
    fn stamp(pos: u64, piece: &mut [u8]) {
        let at = (pos % BLOCK as u64) as usize;
        if at < STAMP {
            let stamp = (pos / BLOCK as u64).to_le_bytes();
            let n = (STAMP - at).min(piece.len());
            piece[..n].copy_from_slice(&stamp[at..at + n]);
        }
    }

    /// Writes the bytes at `offset..offset + out.len()` into `out`.
    pub fn fill(&self, offset: u64, out: &mut [u8]) {
        let (mut pos, mut done) = (offset, 0);
        while done < out.len() {
            let at = (pos % BLOCK as u64) as usize;
            let take = (BLOCK - at).min(out.len() - done);
            let piece = &mut out[done..done + take];
            piece.copy_from_slice(&self.block[at..at + take]);
            Pattern::stamp(pos, piece);
            pos += take as u64;
            done += take;
        }
    }

    /// The bytes of `range` as pieces of at most 64 KiB ending on block boundaries, each made
    /// when it is asked for.
    pub fn pieces(&self, range: Range<u64>) -> impl Iterator<Item = Vec<u8>> + Send + 'static {
        let block = self.block.clone();
        let mut pos = range.start;
        std::iter::from_fn(move || {
            if pos >= range.end {
                return None;
            }
            let at = (pos % BLOCK as u64) as usize;
            let len = ((BLOCK - at) as u64).min(range.end - pos) as usize;
            let mut piece = block[at..at + len].to_vec();
            Pattern::stamp(pos, &mut piece);
            pos += len as u64;
            Some(piece)
        })
    }

    /// The bytes of `range` as a streamed request body.
    pub fn body(&self, range: Range<u64>) -> Body {
        streamed(self.pieces(range))
    }

    /// The SHA-256 of the first `len` bytes, lower-case hex.
    pub fn sha256(&self, len: u64) -> String {
        let mut hasher = Sha256::new();
        for piece in self.pieces(0..len) {
            hasher.update(&piece);
        }
        hex(&hasher.finalize())
    }
}

pub fn streamed(pieces: impl Iterator<Item = Vec<u8>> + Send + 'static) -> Body {
    Body::wrap_stream(stream::iter(pieces.map(Ok::<_, Infallible>)))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(2 * bytes.len()), |mut text, b| {
            let _ = write!(text, "{b:02x}");
            text
        })
}

/// A multipart form of one `file` part named `name` holding the first `size` bytes of
/// `pattern`: its content type, its length, and its pieces (boundary and part headers, the
/// bytes, the closing boundary), made as they are sent.
pub fn multipart_form(
    pattern: &Pattern,
    size: u64,
    name: &str,
) -> (String, u64, impl Iterator<Item = Vec<u8>> + Send + 'static) {
    // Random, so that the bytes cannot hold it but by a 2^-64 chance (the server's SHA-256
    // would then differ from the chunked upload's).
    let boundary = format!("confab-bench-{:016x}", rand::random::<u64>());
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let length = head.len() as u64 + size + tail.len() as u64;
    let pieces = std::iter::once(head.into_bytes())
        .chain(pattern.pieces(0..size))
        .chain(std::iter::once(tail.into_bytes()));
    (
        format!("multipart/form-data; boundary={boundary}"),
        length,
        pieces,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_end_on_blocks_and_match_the_pattern() {
        let pattern = Pattern::new();
        let range = 100..(3 * BLOCK as u64 + 5);
        let pieces: Vec<Vec<u8>> = pattern.pieces(range.clone()).collect();
        let lengths: Vec<usize> = pieces.iter().map(Vec::len).collect();
        assert_eq!(lengths, [BLOCK - 100, BLOCK, BLOCK, 5]);
        let mut filled = vec![0u8; (range.end - range.start) as usize];
        pattern.fill(range.start, &mut filled);
        assert!(pieces.concat() == filled, "pieces and fill differ");
        // A piece starting inside a stamp gets the rest of it.
        let mut short = [0u8; 4];
        pattern.fill(2 * BLOCK as u64 + 3, &mut short);
        assert_eq!(short, [0, 0, 0, 0], "block 2's stamp is 2, then zeros");
        pattern.fill(2 * BLOCK as u64, &mut short);
        assert_eq!(short, [2, 0, 0, 0]);
    }

    #[test]
    fn every_block_has_its_own_bytes() {
        let pattern = Pattern::new();
        let mut first = vec![0u8; BLOCK];
        let mut second = vec![0u8; BLOCK];
        pattern.fill(0, &mut first);
        pattern.fill(BLOCK as u64, &mut second);
        assert_ne!(first, second);
        assert_eq!(first[STAMP..], second[STAMP..]);
        assert_eq!(
            pattern.sha256(0),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn the_multipart_form_frames_the_bytes() {
        let pattern = Pattern::new();
        let size = BLOCK as u64 + 10;
        let (content_type, length, pieces) = multipart_form(&pattern, size, "a.bin");
        let body = pieces.collect::<Vec<_>>().concat();
        assert_eq!(body.len() as u64, length);
        let boundary = content_type
            .strip_prefix("multipart/form-data; boundary=")
            .expect("a boundary");
        let text = String::from_utf8_lossy(&body);
        assert!(
            text.starts_with(&format!("--{boundary}\r\n")),
            "{text:.200}"
        );
        assert!(text.contains("name=\"file\"; filename=\"a.bin\""));
        assert!(text.ends_with(&format!("\r\n--{boundary}--\r\n")));
        let head = body.len() - size as usize - boundary.len() - 8;
        let mut expected = vec![0u8; size as usize];
        pattern.fill(0, &mut expected);
        assert!(
            body[head..head + size as usize] == expected[..],
            "the file bytes differ"
        );
    }
}
