//! The server's side of media files: opening the configured [`Media`] store, sweeping expired
//! resumable uploads, and the checks every new file passes (its type, sniffed from its bytes;
//! its name, made safe). The HTTP endpoints are in `http/media.rs`; the bytes and the uploads'
//! state are `confab_storage::media`'s, the metadata and access rules the store's.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use bytes::Bytes;
use confab_protocol::ErrorCode;
use confab_protocol::rest::{CreateUpload, MediaInfo};
use confab_storage::media::names::{content_disposition, safe_name};
use confab_storage::media::sniff::{is_thumbnailable, sniff};
use confab_storage::media::thumbnail::{ThumbnailError, ThumbnailLimits, thumbnail};
use confab_storage::media::{ByteRange, Media, MediaError, NewUpload, Stored};
use confab_storage::{MediaFile, NewMediaFile, StoreError};
use tokio_util::sync::CancellationToken;

use crate::auth::AuthUser;
use crate::config::{Config, MediaBackend};
use crate::error::{AppError, ErrorChain};
use crate::events::{EventStream, Record};
use crate::state::AppState;
use crate::validate;

mod chunk;
mod form;
mod url;

pub use chunk::{CHUNK_SHA256, ChunkHeaders, broken_body, read_chunk, sha256_text};
pub use form::{ReceivedForm, receive_form};
pub use url::{LinkError, LinkParams, SIGNED_PATH, UrlSigner, derive_url_key};

/// The media store with what the server adds to it: the signer of links. Derefs to the store.
pub struct MediaService {
    pub files: Media,
    pub signer: UrlSigner,
    /// Where `media_uploaded` and `media_deleted` go, with an event stream configured.
    events: Option<Arc<dyn EventStream>>,
    /// Uploads begun per user; `None` when the limit is off.
    limiter: crate::limits::Limit,
}

impl std::fmt::Debug for MediaService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaService")
            .field("files", &self.files)
            .field("streaming", &self.events.is_some())
            .finish_non_exhaustive()
    }
}

impl std::ops::Deref for MediaService {
    type Target = Media;

    fn deref(&self) -> &Media {
        &self.files
    }
}

impl MediaService {
    /// The store `files`, with links signed by `media_url_secret`, else a key derived from the
    /// token secret of `keys`, else a random key (links then die with the process: said in the
    /// log).
    /// Media events go to `events` when there is a stream.
    pub fn new(
        files: Media,
        config: &Config,
        keys: &crate::auth::JwtKeys,
        events: Option<Arc<dyn EventStream>>,
    ) -> MediaService {
        let signer = match (&config.media_url_secret, keys.url_key()) {
            (Some(secret), _) => UrlSigner::from_secret(secret.as_bytes()),
            (None, Some(key)) => UrlSigner::from_key(key),
            (None, None) => {
                tracing::warn!(
                    "signed media links use a random key: set media_url_secret (the same on every node) for links that survive a restart and work on every node"
                );
                UrlSigner::random()
            }
        };
        let limiter = crate::limits::Limit::per_minute(config.media_uploads_per_minute, "uploads");
        MediaService {
            files,
            signer,
            events,
            limiter,
        }
    }

    /// Takes one upload from the user's budget, or refuses with `rate_limited`.
    pub fn check_upload_rate(&self, user: &AuthUser) -> Result<(), AppError> {
        self.limiter.check(user)
    }

    /// Forgets the upload budgets of users idle for a minute (called periodically).
    pub fn forget_idle_uploaders(&self) {
        self.limiter.forget_idle();
    }

    /// Publishes a media event on the stream, if there is one (never waits).
    pub fn publish(&self, record: serde_json::Result<Record>) {
        let Some(events) = &self.events else {
            return;
        };
        match record {
            Ok(record) => events.send(vec![record]),
            Err(err) => tracing::error!(error = %err, "cannot encode a media event"),
        }
    }
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

/// Where local media files live under the data dir.
pub const MEDIA_DIR: &str = "media";

/// Opens the configured media store.
pub fn open(config: &Config) -> anyhow::Result<Media> {
    match &config.media {
        MediaBackend::Local => {
            let dir = config.data_dir.join(MEDIA_DIR);
            Media::local(&dir)
                .with_context(|| format!("cannot open the media directory {}", dir.display()))
        }
        #[cfg(feature = "s3")]
        MediaBackend::S3(url) => Media::s3(url, None).context("cannot open the S3 media store"),
        #[cfg(not(feature = "s3"))]
        MediaBackend::S3(_) => {
            anyhow::bail!("this build has no S3 support: rebuild with `--features s3`")
        }
    }
}

/// How often expired uploads are looked for: a fifth of the expiry, at most a minute.
fn sweep_interval(expiry: Duration) -> Duration {
    (expiry / 5).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// Removes resumable uploads idle for longer than `expiry`, at start (those a stopped process
/// left) and then periodically, until `shutdown`.
pub fn spawn_sweeper(
    services: Arc<crate::state::Services>,
    expiry: Duration,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(sweep_interval(expiry));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            services.media.forget_idle_uploaders();
            match services.media.sweep(expiry, SystemTime::now()).await {
                Ok(0) => {}
                Ok(removed) => {
                    tracing::info!(removed, "expired resumable uploads removed");
                    crate::metrics::media_uploads_expired(removed);
                }
                Err(err) => {
                    tracing::warn!(error = %ErrorChain(&err), "cannot sweep expired uploads");
                }
            }
        }
    });
}

/// A media file's id (also an upload's): time-ordered, unguessable enough to name, but never
/// the only protection (every read checks access).
pub fn new_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// Counts an upload request in `confab_media_uploads_in_progress` while it lives.
pub struct Uploading(());

impl Uploading {
    pub fn start() -> Uploading {
        crate::metrics::media_uploading(1.0);
        Uploading(())
    }
}

impl Drop for Uploading {
    fn drop(&mut self) {
        crate::metrics::media_uploading(-1.0);
    }
}

/// Counts an upload that failed, by its error code.
pub fn upload_failed(way: &'static str, err: &MediaError) {
    crate::metrics::media_upload(way, err.code().as_str());
}

/// The longest side of a thumbnail, in pixels.
pub const THUMBNAIL_SIDE: u32 = 320;
/// The largest image a thumbnail is made of.
const THUMBNAIL_SOURCE_MAX: u64 = 50 * 1024 * 1024;
/// Images decoded at once: each may take up to the decoder's memory limit (256 MiB).
static THUMBNAILING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// Makes and stores the thumbnail of image file `id`, decoding it off the async runtime under
/// the decoder's limits (a decompression bomb is refused from its header, not decoded).
pub async fn make_thumbnail(media: &Media, tenant: &str, id: &str) -> Result<Bytes, AppError> {
    let no_thumbnail = |reason: &'static str, why: String| {
        crate::metrics::media_thumbnail_failed(reason);
        AppError::new(
            ErrorCode::UnsupportedMediaType,
            format!("no thumbnail: {why}"),
        )
    };
    let source = match media.read_whole(tenant, id, THUMBNAIL_SOURCE_MAX).await {
        Ok(source) => source,
        Err(MediaError::TooLarge { max }) => {
            return Err(no_thumbnail(
                "too_large",
                format!("the image is over {max} bytes"),
            ));
        }
        Err(err) => return Err(err.into()),
    };
    let _permit = THUMBNAILING.acquire().await.map_err(AppError::internal)?;
    let made = tokio::task::spawn_blocking(move || {
        thumbnail(&source, THUMBNAIL_SIDE, &ThumbnailLimits::default())
    })
    .await
    .map_err(AppError::internal)?;
    let made = made.map_err(|err| {
        let reason = match err {
            ThumbnailError::TooLarge => "too_large",
            ThumbnailError::Unsupported => "unsupported",
            ThumbnailError::Corrupt(_) => "corrupt",
        };
        no_thumbnail(reason, err.to_string())
    })?;
    let bytes = Bytes::from(made.bytes);
    media.put_thumbnail(tenant, id, bytes.clone()).await?;
    Ok(bytes)
}

/// The type of a stored thumbnail, from its first bytes (PNG or JPEG).
pub fn thumbnail_type(bytes: &[u8]) -> &'static str {
    if bytes.starts_with(b"\x89PNG") {
        "image/png"
    } else {
        "image/jpeg"
    }
}

/// A file whose bytes are stored, not yet recorded.
pub struct Received {
    pub id: String,
    /// As the client named it.
    pub name: String,
    pub stored: Stored,
}

/// Records a stored file: its type sniffed and checked against the policy, its name made safe,
/// its conversation's membership and the tenant's quota checked by the store. Refused, its
/// bytes are removed.
pub async fn register(
    state: &AppState,
    user: &AuthUser,
    received: Received,
    conversation: Option<String>,
    way: &'static str,
) -> Result<MediaInfo, AppError> {
    let Received { id, name, stored } = received;
    let recorded = record(state, user, &id, &name, &stored, conversation).await;
    match recorded {
        Ok(file) => {
            crate::metrics::media_uploaded(if way == "single" { stored.size } else { 0 });
            crate::metrics::media_upload(way, "stored");
            let file = info(file);
            state
                .media()
                .publish(Record::media_uploaded(&user.tenant, &file));
            if is_thumbnailable(&file.content_type) {
                // Made now, off the request, so that it is ready when first asked for.
                let (services, tenant, id) =
                    (state.services.clone(), user.tenant.clone(), id.clone());
                tokio::spawn(async move {
                    if let Err(err) = make_thumbnail(&services.media, &tenant, &id).await {
                        tracing::debug!(media = %id, error = %err, "no thumbnail");
                    }
                });
            }
            Ok(file)
        }
        Err(err) => {
            crate::metrics::media_upload(way, err.code.as_str());
            if let Err(cleanup) = state.media().delete(&user.tenant, &id).await {
                tracing::warn!(media = %id, error = %ErrorChain(&cleanup), "cannot remove a refused file");
            }
            Err(err)
        }
    }
}

async fn record(
    state: &AppState,
    user: &AuthUser,
    id: &str,
    name: &str,
    stored: &Stored,
    conversation: Option<String>,
) -> Result<MediaFile, AppError> {
    let sniffed = sniff(&stored.head);
    state
        .config
        .media_allowed_types
        .check(&sniffed)
        .map_err(|why| AppError::new(ErrorCode::UnsupportedMediaType, why))?;
    let new = NewMediaFile {
        tenant: user.tenant.to_string(),
        id: id.to_owned(),
        uploader: user.user.to_string(),
        name: safe_name(name),
        content_type: sniffed.mime,
        size: stored.size,
        sha256: stored.sha256.clone(),
        conversation,
        quota: quota(state),
    };
    Ok(state.store.create_media(new).await?)
}

fn quota(state: &AppState) -> Option<u64> {
    Some(state.config.media_quota_bytes).filter(|quota| *quota > 0)
}

/// Checks what a client announces for a resumable upload (size, checksum, conversation,
/// quota) before anything is stored.
pub async fn check_new_upload(
    state: &AppState,
    user: &AuthUser,
    request: CreateUpload,
) -> Result<NewUpload, AppError> {
    let max = state.config.media_max_file_bytes;
    if request.size > max {
        return Err(AppError::too_large(format!(
            "the file is larger than {max} bytes"
        )));
    }
    let sha256 = request.sha256.as_deref().map(sha256_text).transpose()?;
    if let Some(conversation) = &request.conversation {
        validate::id("conversation", conversation)?;
        state
            .store
            .conversation(&user.tenant, &user.user, conversation)
            .await?;
    }
    if let Some(quota) = quota(state) {
        let used = state.store.media_usage(&user.tenant).await?;
        if used.saturating_add(request.size) > quota {
            return Err(StoreError::QuotaExceeded { used, quota }.into());
        }
    }
    Ok(NewUpload {
        tenant: user.tenant.to_string(),
        user: user.user.to_string(),
        name: safe_name(&request.name),
        content_type: request.content_type.unwrap_or_default(),
        size: request.size,
        sha256,
        conversation: request.conversation,
        chunk_size: state.config.media_chunk_bytes,
    })
}

/// The wire form of a file's metadata.
pub fn info(file: MediaFile) -> MediaInfo {
    MediaInfo {
        id: file.id,
        name: file.name,
        content_type: file.content_type,
        size: file.size,
        sha256: file.sha256,
        created_at: file.created_at,
        uploader: file.uploader,
        conversations: file.conversations,
        downloads: file.downloads,
    }
}

/// Types a browser may show in place: images, audio and video (never HTML, SVG or scripts,
/// which could run in the server's origin).
fn shown_inline(content_type: &str) -> bool {
    [
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "audio/",
        "video/",
        "application/pdf",
    ]
    .iter()
    .any(|prefix| content_type.starts_with(prefix))
}

/// A header value from text the server built (ASCII by construction).
pub fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// The headers of a file's response: type, validators, caching, disposition, ranges, and no
/// sniffing or scripting by the browser.
pub fn file_headers(file: &MediaFile, etag: &str) -> Response {
    let mut response = Response::new(Body::empty());
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, header_value(&file.content_type));
    headers.insert(header::ETAG, header_value(etag));
    let created = UNIX_EPOCH + Duration::from_millis(u64::try_from(file.created_at).unwrap_or(0));
    headers.insert(
        header::LAST_MODIFIED,
        header_value(&httpdate::fmt_http_date(created)),
    );
    // A file never changes under its id; access is per user, so only the browser keeps it.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=86400, immutable"),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        header_value(&content_disposition(
            &file.name,
            shown_inline(&file.content_type),
        )),
    );
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    response
}

/// Whether the client's `If-None-Match` names this ETag.
pub fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value.split(',').any(|tag| {
                let tag = tag.trim();
                tag == "*" || tag.trim_start_matches("W/") == etag
            })
        })
}

/// The one byte range a `Range` header names (`bytes=a-b`, `bytes=a-`, `bytes=-n`); `None` for
/// several ranges or a malformed header, which HTTP says to ignore (the whole file is sent).
pub fn parse_range(value: &str) -> Option<ByteRange> {
    let spec = value.trim().strip_prefix("bytes=")?.trim();
    if spec.contains(',') {
        return None;
    }
    let (start, end) = spec.split_once('-')?;
    let number = |text: &str| text.trim().parse::<u64>().ok();
    match (start.trim().is_empty(), end.trim().is_empty()) {
        (true, false) => Some(ByteRange::Last(number(end)?)),
        (false, true) => Some(ByteRange::From(number(start)?)),
        (false, false) => Some(ByteRange::FromTo {
            start: number(start)?,
            end: number(end)?,
        }),
        (true, true) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_as_http_writes_them() {
        let cases = [
            ("bytes=0-99", Some(ByteRange::FromTo { start: 0, end: 99 })),
            ("bytes=100-", Some(ByteRange::From(100))),
            ("bytes=-50", Some(ByteRange::Last(50))),
            (
                " bytes= 5 - 6 ",
                Some(ByteRange::FromTo { start: 5, end: 6 }),
            ),
            ("bytes=0-1,5-6", None),
            ("bytes=-", None),
            ("bytes=a-b", None),
            ("items=0-1", None),
        ];
        for (header, expected) in cases {
            assert_eq!(parse_range(header), expected, "{header}");
        }
    }

    #[test]
    fn sweeps_come_often_enough_and_not_too_often() {
        assert_eq!(
            sweep_interval(Duration::from_secs(300)),
            Duration::from_secs(60)
        );
        assert_eq!(
            sweep_interval(Duration::from_secs(60)),
            Duration::from_secs(12)
        );
        assert_eq!(
            sweep_interval(Duration::from_millis(100)),
            Duration::from_secs(1)
        );
    }
}
