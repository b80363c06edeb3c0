//! One chunk of a resumable upload as it arrives over HTTP: its headers (checksum, announced
//! length) and its body, read whole but never past the chunk size. The chunk's number, length
//! and checksum are checked against the upload by `confab_storage::media`.

use axum::body::Body;
use axum::http::{HeaderMap, header};
use bytes::{Bytes, BytesMut};
use confab_protocol::ErrorCode;
use futures_util::StreamExt;

use crate::error::AppError;

/// The header carrying a chunk's SHA-256 (hex).
pub const CHUNK_SHA256: &str = "x-chunk-sha256";

/// A SHA-256 as clients write it: 64 hex digits (returned in lower case).
pub fn sha256_text(text: &str) -> Result<String, AppError> {
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AppError::invalid("a SHA-256 is 64 hex digits"));
    }
    Ok(text.to_ascii_lowercase())
}

/// What a chunk's request headers say about it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChunkHeaders {
    /// `X-Chunk-SHA256`, lower-case hex: the bytes must match it.
    pub sha256: Option<String>,
    /// `Content-Length`, when readable: only sizes the buffer and refuses an oversized chunk
    /// early (the body is read to its end and counted either way).
    pub announced: Option<u64>,
}

impl ChunkHeaders {
    /// Reads a chunk request's headers; a checksum that is not 64 hex digits is refused.
    pub fn from_headers(headers: &HeaderMap) -> Result<ChunkHeaders, AppError> {
        let sha256 = match headers.get(CHUNK_SHA256) {
            Some(value) => {
                Some(sha256_text(value.to_str().map_err(|_| {
                    AppError::invalid("a SHA-256 is 64 hex digits")
                })?)?)
            }
            None => None,
        };
        let announced = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok()?.parse().ok());
        Ok(ChunkHeaders { sha256, announced })
    }
}

/// A body that broke off: the body-read timeout (`timeout`), or anything else (`invalid`).
pub fn broken_body(err: &axum::Error) -> AppError {
    if crate::accept::is_body_timeout(err) {
        crate::metrics::http_timeout("body");
        AppError::new(ErrorCode::Timeout, "the upload did not arrive in time")
    } else {
        AppError::invalid(format!("the upload broke off: {err}"))
    }
}

/// A chunk's bytes, at most `limit` of them (`too_large` past it).
/// The buffer is sized once from the announced length (`Content-Length`, at most `limit`), not
/// grown by doubling (which held up to twice a chunk per request).
pub async fn read_chunk(body: Body, limit: u64, announced: Option<u64>) -> Result<Bytes, AppError> {
    if announced.is_some_and(|len| len > limit) {
        return Err(AppError::too_large(format!(
            "a chunk is at most {limit} bytes"
        )));
    }
    let mut stream = body.into_data_stream();
    let capacity = usize::try_from(announced.unwrap_or(0).min(limit)).unwrap_or(0);
    let mut chunk = BytesMut::with_capacity(capacity);
    while let Some(piece) = stream.next().await {
        let piece = piece.map_err(|err| broken_body(&err))?;
        if (chunk.len() + piece.len()) as u64 > limit {
            return Err(AppError::too_large(format!(
                "a chunk is at most {limit} bytes"
            )));
        }
        chunk.extend_from_slice(&piece);
    }
    Ok(chunk.freeze())
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn checksums_are_64_hex_digits() {
        assert_eq!(sha256_text(&"AB".repeat(32)).ok(), Some("ab".repeat(32)));
        assert!(sha256_text("abc").is_err());
        assert!(sha256_text(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn chunk_headers_give_the_checksum_and_the_length() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            ChunkHeaders::from_headers(&headers).ok(),
            Some(ChunkHeaders::default())
        );
        headers.insert(CHUNK_SHA256, HeaderValue::from_static("not hex"));
        assert!(ChunkHeaders::from_headers(&headers).is_err());
        let hash = "AB".repeat(32);
        headers.insert(CHUNK_SHA256, HeaderValue::from_str(&hash).expect("ascii"));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("12"));
        assert_eq!(
            ChunkHeaders::from_headers(&headers).ok(),
            Some(ChunkHeaders {
                sha256: Some("ab".repeat(32)),
                announced: Some(12)
            })
        );
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("twelve"));
        assert_eq!(
            ChunkHeaders::from_headers(&headers)
                .map(|read| read.announced)
                .ok(),
            Some(None)
        );
    }
}
