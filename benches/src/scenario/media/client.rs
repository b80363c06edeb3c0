//! The media API as the scenario calls it: streamed single and chunked uploads, downloads read
//! and discarded, deletion.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use confab_protocol::rest::{CreateUpload, MediaInfo, UploadCreated};
use futures_util::{StreamExt, TryStreamExt, stream};
use reqwest::{RequestBuilder, StatusCode, header};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::pattern::{Pattern, hex, multipart_form, streamed};

/// The media API, without `Rest`'s 30 s request timeout (a large file takes longer).
pub struct MediaClient {
    http: reqwest::Client,
    base: String,
    pub pattern: Pattern,
}

/// A finished resumable upload.
pub struct Chunked {
    pub info: MediaInfo,
    pub chunk_size: u64,
    pub chunks: u64,
    /// The `complete` call alone.
    pub complete_secs: f64,
}

impl MediaClient {
    pub fn new(base: &str) -> anyhow::Result<MediaClient> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            .build()?;
        Ok(MediaClient {
            http,
            base: base.trim_end_matches('/').to_owned(),
            pattern: Pattern::new(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends `request`; any status but `expected` is an error carrying the answer's text.
    async fn send(
        request: RequestBuilder,
        what: &str,
        expected: StatusCode,
    ) -> anyhow::Result<reqwest::Response> {
        let response = request.send().await.with_context(|| what.to_owned())?;
        let status = response.status();
        if status != expected {
            let text = response.text().await.unwrap_or_default();
            bail!("{what}: {status}: {text}");
        }
        Ok(response)
    }

    async fn json<T: DeserializeOwned>(
        request: RequestBuilder,
        what: &str,
        expected: StatusCode,
    ) -> anyhow::Result<T> {
        let response = MediaClient::send(request, what, expected).await?;
        response
            .json()
            .await
            .with_context(|| format!("{what}: reading the answer"))
    }

    /// Uploads the first `size` bytes of the pattern in one streamed multipart `POST /v1/media`.
    pub async fn single(&self, token: &str, size: u64, name: &str) -> anyhow::Result<MediaInfo> {
        let (content_type, length, pieces) = multipart_form(&self.pattern, size, name);
        let request = self
            .http
            .post(self.url("/v1/media"))
            .bearer_auth(token)
            .header(header::CONTENT_TYPE, content_type)
            .header(header::CONTENT_LENGTH, length)
            .body(streamed(pieces));
        let info: MediaInfo =
            MediaClient::json(request, "POST /v1/media", StatusCode::CREATED).await?;
        expect_size(&info, size)?;
        Ok(info)
    }

    fn create_upload(&self, token: &str, size: u64, name: &str) -> RequestBuilder {
        let create = CreateUpload {
            name: name.to_owned(),
            size,
            content_type: None,
            sha256: None,
            conversation: None,
        };
        self.http
            .post(self.url("/v1/media/uploads"))
            .bearer_auth(token)
            .json(&create)
    }

    /// Uploads the first `size` bytes through the resumable API, `concurrency` chunks in flight.
    pub async fn chunked(
        &self,
        token: &str,
        size: u64,
        name: &str,
        concurrency: usize,
    ) -> anyhow::Result<Chunked> {
        let request = self.create_upload(token, size, name);
        let created: UploadCreated =
            MediaClient::json(request, "POST /v1/media/uploads", StatusCode::CREATED).await?;
        let id = &created.upload_id;
        stream::iter(0..created.chunk_count)
            .map(|n| self.put_chunk(token, id, n, created.chunk_size, size))
            .buffer_unordered(concurrency.max(1))
            .try_collect::<()>()
            .await?;
        let completing = Instant::now();
        let request = self
            .http
            .post(self.url(&format!("/v1/media/uploads/{id}/complete")))
            .bearer_auth(token);
        let info: MediaInfo =
            MediaClient::json(request, "POST …/complete", StatusCode::CREATED).await?;
        let complete_secs = completing.elapsed().as_secs_f64();
        expect_size(&info, size)?;
        Ok(Chunked {
            info,
            chunk_size: created.chunk_size,
            chunks: created.chunk_count,
            complete_secs,
        })
    }

    /// Sends chunk `n` of an upload of `size` bytes in chunks of `chunk_size`, streamed.
    async fn put_chunk(
        &self,
        token: &str,
        id: &str,
        n: u64,
        chunk_size: u64,
        size: u64,
    ) -> anyhow::Result<()> {
        let start = n * chunk_size;
        let end = (start + chunk_size).min(size);
        let request = self
            .http
            .put(self.url(&format!("/v1/media/uploads/{id}/chunks/{n}")))
            .bearer_auth(token)
            .header(header::CONTENT_LENGTH, end - start)
            .body(self.pattern.body(start..end));
        MediaClient::send(request, &format!("PUT chunk {n}"), StatusCode::NO_CONTENT).await?;
        Ok(())
    }

    /// Reads file `id` and discards it: the bytes read and, with `hash`, their SHA-256.
    pub async fn download(
        &self,
        token: &str,
        id: &str,
        hash: bool,
    ) -> anyhow::Result<(u64, Option<String>)> {
        let request = self
            .http
            .get(self.url(&format!("/v1/media/{id}")))
            .bearer_auth(token);
        let mut response = MediaClient::send(request, "GET /v1/media/{id}", StatusCode::OK).await?;
        let mut hasher = hash.then(Sha256::new);
        let mut bytes = 0u64;
        while let Some(piece) = response.chunk().await.context("reading the download")? {
            bytes += piece.len() as u64;
            if let Some(hasher) = hasher.as_mut() {
                hasher.update(&piece);
            }
        }
        Ok((bytes, hasher.map(|h| hex(&h.finalize()))))
    }

    pub async fn delete(&self, token: &str, id: &str) -> anyhow::Result<()> {
        let request = self
            .http
            .delete(self.url(&format!("/v1/media/{id}")))
            .bearer_auth(token);
        MediaClient::send(request, "DELETE /v1/media/{id}", StatusCode::NO_CONTENT).await?;
        Ok(())
    }

    /// Fails before any byte is sent when the server refuses files of `size` bytes (it answers
    /// a resumable upload's announced size at once), saying which flag to raise.
    pub async fn check_limit(&self, token: &str, size: u64) -> anyhow::Result<()> {
        let request = self.create_upload(token, size, "limit-check.bin");
        let response = request
            .send()
            .await
            .context("POST /v1/media/uploads: is the server running?")?;
        if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
            bail!(
                "the server refuses files of {size} bytes: start it with `--media-max-file-bytes {size}` \
                 (or CONFAB_MEDIA_MAX_FILE_BYTES={size}), or lower --file-mib / --rss-mib"
            );
        }
        if response.status() != StatusCode::CREATED {
            let status = response.status();
            bail!(
                "POST /v1/media/uploads: {status}: {}",
                response.text().await?
            );
        }
        let created: UploadCreated = response.json().await?;
        let request = self
            .http
            .delete(self.url(&format!("/v1/media/uploads/{}", created.upload_id)))
            .bearer_auth(token);
        MediaClient::send(request, "DELETE an upload", StatusCode::NO_CONTENT).await?;
        Ok(())
    }
}

fn expect_size(info: &MediaInfo, size: u64) -> anyhow::Result<()> {
    if info.size != size {
        bail!("sent {size} bytes, the server stored {}", info.size);
    }
    Ok(())
}
