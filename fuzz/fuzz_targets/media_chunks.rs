//! A resumable upload driven as its HTTP handlers drive it, into a local media store (in a
//! temporary directory): each chunk's headers through `ChunkHeaders::from_headers`, its body
//! through `read_chunk` (arriving in pieces), then `Media::put_chunk`, `progress`, `complete`
//! and `abort_upload`; the finished file read back with a `Range` header (`parse_range`, then
//! `Media::get`); signed links made with `UrlSigner::sign` and read back through the signed
//! route's query extractor (`ApiQuery<LinkParams>`) and `UrlSigner::verify`.
//!
//! Input, one command a line (a reader of the seeds in `fuzz/corpus/media_chunks/`):
//!
//! ```text
//! <size> <chunk size> [<the whole file's SHA-256> | ok]      the upload as created
//! put <n> [fill=<byte>] [len=<bytes>] [sha=<header> | sha=ok] [cl=<Content-Length>] [piece=<bytes>]
//! progress | complete | abort
//! range <Range header>
//! link <ttl> <tenant>
//! query <query of a signed link>
//! ```
//!
//! A chunk's bytes are `fill`, `fill + 1`, … (`fill` defaults to its number, `len` to its
//! expected length); `ok` is the right checksum. The target keeps a model of the file and checks:
//! a chunk is refused only for a reason it has (number out of range, wrong length, checksum
//! mismatch, too large), and stored otherwise; progress names exactly the missing chunks;
//! completion succeeds exactly when every chunk is in and the checksum matches, and gives the
//! model's bytes; a range reads exactly the model's bytes of `ByteRange::resolve`; a signed
//! link verifies, changed it does not, and no query verifies that was not signed; aborted or
//! deleted, nothing is left on disk.
#![no_main]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::FromRequestParts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, header};
use confab_server::http::ApiQuery;
use confab_server::media::{
    CHUNK_SHA256, ChunkHeaders, LinkError, LinkParams, SIGNED_PATH, UrlSigner, parse_range,
    read_chunk, sha256_text,
};
use confab_storage::media::{MediaError, NewUpload, Upload, sha256_hex};
use futures_util::TryStreamExt;
use libfuzzer_sys::fuzz_target;

/// The largest upload tried (the store makes a file of this size).
const MAX_SIZE: u64 = 64 * 1024;
/// The longest chunk body made.
const MAX_LEN: u64 = 16 * 1024;

/// The bytes of a chunk.
fn chunk_bytes(fill: u8, len: u64) -> Vec<u8> {
    (0..len)
        .map(|i| fill.wrapping_add((i % 251) as u8))
        .collect()
}

/// The words after `key=` of a command, if any.
fn option<'a>(words: &[&'a str], key: &str) -> Option<&'a str> {
    words
        .iter()
        .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
}

fn number(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// What the target knows of the upload.
struct Model {
    upload_id: String,
    media_id: String,
    size: u64,
    chunk_size: u64,
    count: u64,
    /// The announced SHA-256 of the whole file.
    sha256: Option<String>,
    /// The file as the accepted chunks make it.
    bytes: Vec<u8>,
    accepted: BTreeSet<u64>,
    /// The upload is gone (completed, refused on completion, or aborted).
    gone: bool,
    /// The file exists.
    made: bool,
    /// The links signed: (tenant, expires, signature).
    signed: BTreeSet<(String, u64, String)>,
}

impl Model {
    fn chunk_len(&self, n: u64) -> u64 {
        let start = n.saturating_mul(self.chunk_size);
        self.chunk_size.min(self.size.saturating_sub(start))
    }

    fn missing(&self) -> Vec<u64> {
        (0..self.count)
            .filter(|n| !self.accepted.contains(n))
            .collect()
    }

    /// The upload as the handlers read it, by id, before each request (`None` once gone).
    async fn upload(&self, media: &confab_storage::media::Media) -> Option<Upload> {
        match media.upload(&self.upload_id).await {
            Ok(upload) => {
                assert!(!self.gone, "the upload outlived its end");
                Some(upload)
            }
            Err(MediaError::NotFound) => {
                assert!(self.gone, "the upload went missing");
                None
            }
            Err(err) => panic!("reading the upload: {err}"),
        }
    }
}

fn signer() -> &'static UrlSigner {
    static SIGNER: std::sync::OnceLock<UrlSigner> = std::sync::OnceLock::new();
    SIGNER.get_or_init(|| UrlSigner::from_secret(b"fuzz"))
}

/// A link's query read as the signed route reads it.
async fn link_query(uri: &str) -> Option<LinkParams> {
    let request = Request::builder().uri(uri).body(()).ok()?;
    let (mut parts, ()) = request.into_parts();
    ApiQuery::<LinkParams>::from_request_parts(&mut parts, &())
        .await
        .ok()
        .map(|ApiQuery(link)| link)
}

async fn put(model: &mut Model, media: &confab_storage::media::Media, words: &[&str]) {
    let Some(n) = words.first().and_then(|word| number(word)) else {
        return;
    };
    let Some(upload) = model.upload(media).await else {
        return;
    };
    let fill = option(words, "fill")
        .and_then(|text| text.parse().ok())
        .unwrap_or(n as u8);
    let len = option(words, "len")
        .and_then(number)
        .unwrap_or_else(|| model.chunk_len(n))
        .min(MAX_LEN);
    let data = chunk_bytes(fill, len);
    let hash = sha256_hex(&data);
    let mut headers = HeaderMap::new();
    for (name, value) in [
        (HeaderName::from_static(CHUNK_SHA256), option(words, "sha")),
        (header::CONTENT_LENGTH, option(words, "cl")),
    ] {
        let Some(value) = value else { continue };
        let value = if name == CHUNK_SHA256 && value == "ok" {
            hash.as_str()
        } else {
            value
        };
        let Ok(value) = HeaderValue::from_str(value) else {
            return;
        };
        headers.insert(name, value);
    }
    let Ok(ChunkHeaders { sha256, announced }) = ChunkHeaders::from_headers(&headers) else {
        assert!(headers.contains_key(CHUNK_SHA256), "refused headers");
        return;
    };
    let piece = option(words, "piece")
        .and_then(number)
        .filter(|piece| *piece > 0)
        .unwrap_or(len.max(1));
    let pieces: Vec<Result<Bytes, std::io::Error>> = data
        .chunks(usize::try_from(piece).unwrap_or(usize::MAX))
        .map(|piece| Ok(Bytes::copy_from_slice(piece)))
        .collect();
    let body = Body::from_stream(futures_util::stream::iter(pieces));
    let bytes = match read_chunk(body, upload.chunk_size, announced).await {
        Ok(bytes) => bytes,
        Err(_) => {
            assert!(
                len > model.chunk_size || announced.is_some_and(|cl| cl > model.chunk_size),
                "a chunk of {len} bytes (announced {announced:?}) refused, chunk size {}",
                model.chunk_size
            );
            return;
        }
    };
    assert_eq!(bytes, data, "read_chunk gives the body");
    match media.put_chunk(&upload, n, bytes, sha256.as_deref()).await {
        Ok(()) => {
            assert!(n < model.count, "chunk {n} of {} stored", model.count);
            assert_eq!(
                len,
                model.chunk_len(n),
                "a chunk of the wrong length stored"
            );
            if let Some(sha256) = &sha256 {
                assert_eq!(*sha256, hash, "a chunk stored against its checksum");
            }
            let start = usize::try_from(n * model.chunk_size).expect("small");
            model.bytes[start..start + data.len()].copy_from_slice(&data);
            model.accepted.insert(n);
        }
        Err(MediaError::NoSuchChunk { .. }) => assert!(n >= model.count, "chunk {n} refused"),
        Err(MediaError::Invalid(_)) => {
            assert!(
                n < model.count && len != model.chunk_len(n),
                "chunk {n} refused"
            );
        }
        Err(MediaError::ChecksumMismatch(_)) => {
            assert!(
                n < model.count && len == model.chunk_len(n) && sha256.is_some_and(|s| s != hash),
                "chunk {n} refused for its checksum"
            );
        }
        Err(err) => panic!("chunk {n}: {err}"),
    }
}

async fn complete(model: &mut Model, media: &confab_storage::media::Media) {
    let Some(upload) = model.upload(media).await else {
        return;
    };
    let whole = sha256_hex(&model.bytes);
    match media.complete(&upload).await {
        Ok(stored) => {
            assert!(model.missing().is_empty(), "completed without every chunk");
            assert_eq!(stored.size, model.size);
            assert_eq!(stored.sha256, whole);
            if let Some(announced) = &model.sha256 {
                assert_eq!(*announced, whole, "completed against the checksum");
            }
            model.gone = true;
            model.made = true;
        }
        Err(MediaError::Incomplete { missing }) => {
            assert_eq!(missing, model.missing());
            assert!(!missing.is_empty());
        }
        Err(MediaError::ChecksumMismatch(_)) => {
            assert!(model.missing().is_empty());
            assert!(
                model.sha256.as_ref().is_some_and(|s| *s != whole),
                "refused on completion"
            );
            model.gone = true;
        }
        Err(err) => panic!("completing: {err}"),
    }
}

async fn range(model: &Model, media: &confab_storage::media::Media, value: &str) {
    if !model.made {
        return;
    }
    let Ok(value) = HeaderValue::from_str(value) else {
        return;
    };
    // As `serve` reads it.
    let range = value.to_str().ok().and_then(parse_range);
    match media.get(common::TENANT, &model.media_id, range).await {
        Ok(download) => {
            let got = download.range.clone();
            assert_eq!(download.size, model.size);
            if let Some(range) = range {
                assert_eq!(Some(got.clone()), range.resolve(model.size), "{range:?}");
            } else {
                assert_eq!(got, 0..model.size);
            }
            let pieces: Vec<Bytes> = download.body.try_collect().await.expect("a file reads");
            let start = usize::try_from(got.start).expect("small");
            let end = usize::try_from(got.end).expect("small");
            assert!(
                pieces.concat() == model.bytes[start..end],
                "the bytes of {got:?}"
            );
        }
        Err(MediaError::RangeNotSatisfiable { size }) => {
            assert_eq!(size, model.size);
            assert!(range.is_some_and(|range| range.resolve(size).is_none()));
        }
        Err(err) => panic!("reading {range:?}: {err}"),
    }
}

async fn link(model: &mut Model, rest: &str) {
    let (ttl, tenant) = rest.split_once(' ').unwrap_or((rest, ""));
    let Some(ttl) = number(ttl) else { return };
    let signer = signer();
    let id = &model.media_id;
    let (url, expires) = signer.sign(tenant, id, Duration::from_secs(ttl));
    let path = SIGNED_PATH.replace("{id}", id);
    assert!(url.starts_with(&format!("{path}?")), "{url}");
    let link = link_query(&url).await.expect("a signed link's query reads");
    assert_eq!((link.tenant.as_str(), link.expires), (tenant, expires));
    assert_eq!(signer.verify(tenant, id, expires, &link.sig), Ok(()));
    let other = format!("{id}0");
    for (tenant, id, expires) in [
        (tenant, other.as_str(), expires),
        (tenant, id, expires.wrapping_add(1)),
    ] {
        assert_eq!(
            signer.verify(tenant, id, expires, &link.sig),
            Err(LinkError::Tampered)
        );
    }
    model
        .signed
        .insert((link.tenant, link.expires, link.sig.to_ascii_lowercase()));
}

async fn query(model: &Model, text: &str) {
    let id = &model.media_id;
    let uri = format!("{}?{text}", SIGNED_PATH.replace("{id}", id));
    let Some(link) = link_query(&uri).await else {
        return;
    };
    if signer()
        .verify(&link.tenant, id, link.expires, &link.sig)
        .is_ok()
    {
        let key = (link.tenant, link.expires, link.sig.to_ascii_lowercase());
        assert!(model.signed.contains(&key), "a link never signed: {key:?}");
    }
}

async fn run(text: &str) {
    let fixture = common::fixture();
    let media = &fixture.media;
    let mut lines = text.lines();
    let Some(first) = lines.next() else { return };
    let words: Vec<&str> = first.split_whitespace().collect();
    let (Some(size), Some(chunk_size)) = (
        words.first().and_then(|w| number(w)),
        words.get(1).and_then(|w| number(w)),
    ) else {
        return;
    };
    if size > MAX_SIZE || chunk_size == 0 {
        return;
    }
    let count = size.div_ceil(chunk_size);
    let sha256 = match words.get(2) {
        None => None,
        Some(&"ok") => {
            let whole: Vec<u8> = (0..count)
                .flat_map(|n| {
                    let len = chunk_size.min(size - n * chunk_size);
                    chunk_bytes(n as u8, len)
                })
                .collect();
            Some(sha256_hex(&whole))
        }
        // As `check_new_upload` reads it.
        Some(text) => match sha256_text(text) {
            Ok(hash) => Some(hash),
            Err(_) => return,
        },
    };
    let new = NewUpload {
        tenant: common::TENANT.to_owned(),
        user: "u1".to_owned(),
        name: "file".to_owned(),
        content_type: String::new(),
        size,
        sha256: sha256.clone(),
        conversation: None,
        chunk_size,
    };
    let upload_id = confab_server::media::new_id();
    let media_id = confab_server::media::new_id();
    let upload = media
        .create_upload(new, &upload_id, &media_id)
        .await
        .expect("an upload starts");
    assert_eq!(upload.chunk_count(), count);
    let mut model = Model {
        upload_id,
        media_id,
        size,
        chunk_size,
        count,
        sha256,
        bytes: vec![0; usize::try_from(size).expect("small")],
        accepted: BTreeSet::new(),
        gone: false,
        made: false,
        signed: BTreeSet::new(),
    };
    for line in lines.take(64) {
        let (command, rest) = line.split_once(' ').unwrap_or((line, ""));
        let words: Vec<&str> = rest.split_whitespace().collect();
        match command {
            "put" => put(&mut model, media, &words).await,
            "complete" => complete(&mut model, media).await,
            "progress" => {
                if let Some(upload) = model.upload(media).await {
                    let progress = media.progress(&upload).await.expect("progress reads");
                    assert_eq!(progress.missing_chunks, model.missing());
                    let received: u64 = model.accepted.iter().map(|n| model.chunk_len(*n)).sum();
                    assert_eq!(progress.received_bytes, received);
                }
            }
            "abort" => {
                if let Some(upload) = model.upload(media).await {
                    media.abort_upload(&upload).await.expect("an upload aborts");
                    model.gone = true;
                }
            }
            "range" => range(&model, media, rest).await,
            "link" => link(&mut model, rest).await,
            "query" => query(&model, rest).await,
            _ => {}
        }
    }
    if model.made {
        media
            .delete(common::TENANT, &model.media_id)
            .await
            .expect("a file deletes");
    } else if let Some(upload) = model.upload(media).await {
        media.abort_upload(&upload).await.expect("an upload aborts");
    }
    common::assert_no_files(&fixture.dir, "after the upload ended");
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    common::fixture().runtime.block_on(run(text));
});
