//! A single upload's multipart form, read as `POST /v1/media` reads it: axum's `Multipart`
//! extractor over the request, then `receive_form`, which streams the `file` part into a local
//! media store (in a temporary directory).
//!
//! Input: the `Content-Type` header on the first line (none when empty), the size of the pieces
//! the body arrives in on the second (the whole body at once when empty or not a number), the
//! body after it.
//!
//! Checks: a stored file reads back with the size and SHA-256 reported, within the size limit;
//! a refused form leaves no file behind; nothing panics.
#![no_main]

mod common;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Multipart};
use axum::http::{HeaderValue, Request, header};
use confab_server::media::{ReceivedForm, receive_form};
use confab_storage::media::{HEAD_BYTES, sha256_hex};
use futures_util::TryStreamExt;
use libfuzzer_sys::fuzz_target;

/// Small enough for the fuzzer's inputs (at most 4 KiB) to pass it.
const MAX_FILE_BYTES: u64 = 1024;

fn split_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[]),
    }
}

fuzz_target!(|data: &[u8]| {
    let (content_type, rest) = split_line(data);
    let (piece, body) = split_line(rest);
    let piece = std::str::from_utf8(piece)
        .ok()
        .and_then(|text| text.trim().parse::<usize>().ok())
        .filter(|size| *size > 0)
        .unwrap_or(body.len().max(1));
    let pieces: Vec<Result<Bytes, std::io::Error>> = body
        .chunks(piece)
        .map(|piece| Ok(Bytes::copy_from_slice(piece)))
        .collect();
    let mut request = Request::new(Body::from_stream(futures_util::stream::iter(pieces)));
    if !content_type.is_empty() {
        let Ok(value) = HeaderValue::from_bytes(content_type) else {
            // Not a header value: no such request reaches the server.
            return;
        };
        request.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    let fixture = common::fixture();
    fixture.runtime.block_on(async {
        let Ok(form) = Multipart::from_request(request, &()).await else {
            return;
        };
        match receive_form(&fixture.media, common::TENANT, form, MAX_FILE_BYTES).await {
            Ok(ReceivedForm {
                received,
                conversation: _,
            }) => {
                let stored = &received.stored;
                assert!(
                    stored.size <= MAX_FILE_BYTES,
                    "{} bytes stored",
                    stored.size
                );
                let download = fixture
                    .media
                    .get(common::TENANT, &received.id, None)
                    .await
                    .expect("a stored file reads back");
                let bytes: Vec<Bytes> = download
                    .body
                    .try_collect()
                    .await
                    .expect("a stored file reads back");
                let bytes = bytes.concat();
                assert_eq!(bytes.len() as u64, stored.size, "the size stored");
                assert_eq!(sha256_hex(&bytes), stored.sha256, "the hash stored");
                assert_eq!(
                    stored.head,
                    bytes[..bytes.len().min(HEAD_BYTES)],
                    "the head kept"
                );
                fixture
                    .media
                    .delete(common::TENANT, &received.id)
                    .await
                    .expect("a file deletes");
                common::assert_no_files(&fixture.dir, "after deleting the stored file");
            }
            Err(_) => common::assert_no_files(&fixture.dir, "after a refused form"),
        }
    });
});
