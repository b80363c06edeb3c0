//! Media files over HTTP: single uploads (multipart, streamed to storage), resumable chunked
//! uploads, downloads with `Range`, metadata and deletion. Access rules are the store's (a file
//! is its uploader's and its conversations' members'; anyone else gets 404).

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::multipart::MultipartRejection;
use axum::extract::{DefaultBodyLimit, Multipart, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use confab_protocol::ErrorBody;
use confab_protocol::rest::{CreateUpload, MediaInfo, UploadCreated, UploadProgress};
use confab_storage::MediaFile;
use confab_storage::media::sniff::is_thumbnailable;
use confab_storage::media::{MediaError, Upload};
use futures_util::StreamExt;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use super::{ApiJson, ApiPath, ApiQuery};
use crate::auth::AuthUser;
use crate::error::AppError;
use crate::events::Record;
use crate::media::{
    self as server_media, ChunkHeaders, LinkError, LinkParams, Received, ReceivedForm,
};
use crate::state::AppState;
use crate::{metrics, validate};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        // Bodies past the REST limit: their own caps apply (the file size, the chunk size).
        .routes(routes!(upload).layer(DefaultBodyLimit::disable()))
        .routes(routes!(create_upload))
        .routes(routes!(progress, abort))
        .routes(routes!(put_chunk).layer(DefaultBodyLimit::disable()))
        .routes(routes!(complete))
        .routes(routes!(download, remove))
        .routes(routes!(meta))
        .routes(routes!(sign))
        .routes(routes!(signed_download))
        .routes(routes!(thumbnail))
}

/// The form of `POST /v1/media`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(
    dead_code,
    reason = "documents the multipart form; the fields are read as a stream"
)]
pub struct UploadForm {
    /// The file (its name is taken from the part's `filename`).
    #[schema(format = Binary, content_media_type = "application/octet-stream")]
    file: String,
    /// The conversation whose members will see the file (the uploader must be a member).
    conversation: Option<String>,
}

/// Uploads one file, streamed to storage as it arrives. Its type is sniffed from its bytes.
#[utoipa::path(post, path = "/v1/media", tag = "media", security(("bearer" = [])),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses((status = 201, body = MediaInfo), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 429, body = ErrorBody), (status = 507, body = ErrorBody)))]
pub async fn upload(
    State(state): State<AppState>,
    user: AuthUser,
    form: Result<Multipart, MultipartRejection>,
) -> Result<super::Located<MediaInfo>, AppError> {
    let form = form.map_err(|rejection| AppError::invalid(rejection.body_text()))?;
    state.media().check_upload_rate(&user)?;
    let ReceivedForm {
        received,
        conversation,
    } = server_media::receive_form(
        state.media(),
        &user.tenant,
        form,
        state.config.media_max_file_bytes,
    )
    .await?;
    let file = server_media::register(&state, &user, received, conversation, "single").await?;
    let location = format!("/v1/media/{}", file.id);
    Ok(super::located(StatusCode::CREATED, location, file))
}

/// Starts a resumable upload: send its chunks, then complete it. It expires after
/// `media_upload_expiry` without a chunk.
#[utoipa::path(post, path = "/v1/media/uploads", tag = "media", security(("bearer" = [])),
    request_body = CreateUpload,
    responses((status = 201, body = UploadCreated), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 507, body = ErrorBody)))]
pub async fn create_upload(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(request): ApiJson<CreateUpload>,
) -> Result<super::Located<UploadCreated>, AppError> {
    state.media().check_upload_rate(&user)?;
    let new = server_media::check_new_upload(&state, &user, request).await?;
    let chunk_size = new.chunk_size;
    let upload = state
        .media()
        .create_upload(new, &server_media::new_id(), &server_media::new_id())
        .await?;
    Ok(super::located(
        StatusCode::CREATED,
        format!("/v1/media/uploads/{}", upload.id),
        UploadCreated {
            upload_id: upload.id.clone(),
            chunk_size,
            chunk_count: upload.chunk_count(),
            expires_after_secs: state.config.media_upload_expiry.as_secs(),
        },
    ))
}

/// The caller's upload `id` (another user's, or another tenant's, is not found).
async fn own_upload(state: &AppState, user: &AuthUser, id: &str) -> Result<Upload, AppError> {
    validate::id("upload_id", id)?;
    let upload = state.media().upload(id).await?;
    if upload.tenant != *user.tenant || upload.user != *user.user {
        return Err(AppError::not_found("media not found"));
    }
    Ok(upload)
}

/// Stores chunk `n` (from 0). Sending a chunk again replaces it; with `X-Chunk-SHA256` the bytes
/// must match it.
#[utoipa::path(put, path = "/v1/media/uploads/{upload_id}/chunks/{n}", tag = "media",
    security(("bearer" = [])),
    params(("upload_id" = String, Path), ("n" = u64, Path, description = "chunk number, from 0"),
        ("X-Chunk-SHA256" = Option<String>, Header, description = "SHA-256 of the chunk, hex")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 204, description = "stored"), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn put_chunk(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath((id, n)): ApiPath<(String, u64)>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, AppError> {
    let upload = own_upload(&state, &user, &id).await?;
    let ChunkHeaders { sha256, announced } = ChunkHeaders::from_headers(&headers)?;
    let _uploading = server_media::Uploading::start();
    let bytes = server_media::read_chunk(body, upload.chunk_size, announced).await?;
    let len = bytes.len() as u64;
    state
        .media()
        .put_chunk(&upload, n, bytes, sha256.as_deref())
        .await?;
    metrics::media_uploaded(len);
    Ok(StatusCode::NO_CONTENT)
}

/// How far an upload got: the chunks still missing.
#[utoipa::path(get, path = "/v1/media/uploads/{upload_id}", tag = "media", security(("bearer" = [])),
    params(("upload_id" = String, Path)),
    responses((status = 200, body = UploadProgress), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn progress(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<UploadProgress>, AppError> {
    let upload = own_upload(&state, &user, &id).await?;
    let progress = state.media().progress(&upload).await?;
    Ok(Json(UploadProgress {
        upload_id: upload.id,
        received_bytes: progress.received_bytes,
        size: progress.size,
        chunk_size: progress.chunk_size,
        missing_chunks: progress.missing_chunks,
    }))
}

/// Makes the file once every chunk is in, checking its size and SHA-256.
#[utoipa::path(post, path = "/v1/media/uploads/{upload_id}/complete", tag = "media",
    security(("bearer" = [])), params(("upload_id" = String, Path)),
    responses((status = 201, body = MediaInfo), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "chunks missing", body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 507, body = ErrorBody)))]
pub async fn complete(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> Result<super::Located<MediaInfo>, AppError> {
    let upload = own_upload(&state, &user, &id).await?;
    let stored = state
        .media()
        .complete(&upload)
        .await
        .inspect_err(|err| server_media::upload_failed("chunked", err))?;
    let received = Received {
        id: upload.media_id,
        name: upload.name,
        stored,
    };
    let file =
        server_media::register(&state, &user, received, upload.conversation, "chunked").await?;
    let location = format!("/v1/media/{}", file.id);
    Ok(super::located(StatusCode::CREATED, location, file))
}

/// Gives an upload up; its chunks are removed.
#[utoipa::path(delete, path = "/v1/media/uploads/{upload_id}", tag = "media",
    security(("bearer" = [])), params(("upload_id" = String, Path)),
    responses((status = 204, description = "removed"), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn abort(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, AppError> {
    let upload = own_upload(&state, &user, &id).await?;
    state.media().abort_upload(&upload).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The file's metadata, with its download count.
#[utoipa::path(get, path = "/v1/media/{id}/meta", tag = "media", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = MediaInfo), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn meta(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<MediaInfo>, AppError> {
    validate::id("id", &id)?;
    let file = state.store.media(&user.tenant, &user.user, &id).await?;
    Ok(Json(server_media::info(file)))
}

/// A thumbnail of an image file (PNG, JPEG, GIF, WebP), at most 320 pixels on its longest side:
/// JPEG, or PNG for images with transparency. Made after upload; made now if it is not ready.
#[utoipa::path(get, path = "/v1/media/{id}/thumbnail", tag = "media", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, description = "the thumbnail (JPEG, or PNG for images with transparency)", content_type = "image/*"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, description = "no such file", body = ErrorBody),
        (status = 415, description = "not an image, or one no thumbnail can be made of (corrupt, or too large to decode)", body = ErrorBody)))]
pub async fn thumbnail(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, AppError> {
    validate::id("id", &id)?;
    let file = state.store.media(&user.tenant, &user.user, &id).await?;
    if !is_thumbnailable(&file.content_type) {
        // 415, not 404: the file exists, its type has no thumbnail.
        return Err(AppError::new(
            confab_protocol::ErrorCode::UnsupportedMediaType,
            "this file is not an image with a thumbnail",
        ));
    }
    let bytes = match state.media().thumbnail(&user.tenant, &id).await {
        Ok(bytes) => bytes,
        Err(MediaError::NotFound) => {
            server_media::make_thumbnail(state.media(), &user.tenant, &id).await?
        }
        Err(err) => return Err(err.into()),
    };
    let headers = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static(server_media::thumbnail_type(&bytes)),
        ),
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, max-age=86400, immutable"),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
    ];
    Ok((headers, bytes).into_response())
}

/// Deletes the file for everyone and frees its storage (its uploader, or an owner or admin of
/// its conversation).
#[utoipa::path(delete, path = "/v1/media/{id}", tag = "media", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 204, description = "deleted"), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn remove(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, AppError> {
    validate::id("id", &id)?;
    state
        .store
        .delete_media(&user.tenant, &user.user, &id)
        .await?;
    let now = crate::media::now_ms();
    state
        .media()
        .publish(Record::media_deleted(&user.tenant, &id, &user.user, now));
    if let Err(err) = state.media().delete(&user.tenant, &id).await {
        // The record is gone, so nobody reads the bytes; they are left for an operator.
        tracing::warn!(media = %id, error = %crate::error::ErrorChain(&err), "cannot free a deleted file's bytes");
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The file's bytes (also `HEAD`). One `Range` (`bytes=a-b`, `a-`, `-n`) answers 206 with
/// exactly those bytes, a range past the end 416; several ranges get the whole file.
#[utoipa::path(get, path = "/v1/media/{id}", tag = "media", security(("bearer" = [])),
    params(("id" = String, Path), ("Range" = Option<String>, Header, description = "one byte range")),
    responses(
        (status = 200, description = "the file, with its sniffed type", content_type = "*/*"),
        (status = 206, description = "the requested range", content_type = "*/*"),
        (status = 304, description = "unchanged (If-None-Match)"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 416, body = ErrorBody)))]
pub async fn download(
    State(state): State<AppState>,
    user: AuthUser,
    method: Method,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    validate::id("id", &id)?;
    let file = state.store.media(&user.tenant, &user.user, &id).await?;
    serve(&state, &user.tenant, &file, &method, &headers).await
}

/// The response for `file`: headers, then its bytes or the requested range of them.
async fn serve(
    state: &AppState,
    tenant: &str,
    file: &MediaFile,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Response, AppError> {
    let etag = format!("\"{}\"", file.sha256);
    let mut response = server_media::file_headers(file, &etag);
    if server_media::not_modified(headers, &etag) {
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        return Ok(response);
    }
    let range = headers
        .get(header::RANGE)
        .and_then(|value| value.to_str().ok())
        .and_then(server_media::parse_range);
    let download = match state.media().get(tenant, &file.id, range).await {
        Ok(download) => download,
        Err(MediaError::RangeNotSatisfiable { size }) => {
            let mut refused =
                AppError::from(MediaError::RangeNotSatisfiable { size }).into_response();
            refused.headers_mut().insert(
                header::CONTENT_RANGE,
                server_media::header_value(&format!("bytes */{size}")),
            );
            return Ok(refused);
        }
        Err(err) => return Err(err.into()),
    };
    let (start, end) = (download.range.start, download.range.end);
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    if range.is_some() {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        let content_range = format!("bytes {start}-{}/{}", end.saturating_sub(1), download.size);
        response.headers_mut().insert(
            header::CONTENT_RANGE,
            server_media::header_value(&content_range),
        );
    }
    if method == Method::HEAD {
        return Ok(response);
    }
    if start == 0
        && let Err(err) = state.store.count_download(tenant, &file.id).await
    {
        tracing::warn!(media = %file.id, error = %crate::error::ErrorChain(&err), "cannot count a download");
    }
    let body = download.body.inspect(|piece| {
        if let Ok(bytes) = piece {
            metrics::media_downloaded(bytes.len() as u64);
        }
    });
    *response.body_mut() = Body::from_stream(body);
    Ok(response)
}

/// `POST /v1/media/{id}/signed`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignRequest {
    /// Seconds the link works, 1 to `media_signed_url_max_ttl` (default 3600).
    #[schema(minimum = 1)]
    ttl: Option<u64>,
}

/// A signed link.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct SignedLink {
    /// Path and query of the link, relative to this server (`/v1/signed/media/…`): it needs no
    /// token.
    url: String,
    /// When it stops working, Unix seconds.
    expires_at: u64,
}

/// The default lifetime of a signed link.
const DEFAULT_LINK_TTL: u64 = 3600;

/// A link to the file that works without a token until it expires (for `<img src>`,
/// `<video>`, native players); it stops working when the file is deleted.
#[utoipa::path(post, path = "/v1/media/{id}/signed", tag = "media", security(("bearer" = [])),
    params(("id" = String, Path)), request_body(content = Option<SignRequest>, description = "optional"),
    responses((status = 200, body = SignedLink), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn sign(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<String>,
    body: Bytes,
) -> Result<Json<SignedLink>, AppError> {
    validate::id("id", &id)?;
    let request: SignRequest = if body.iter().all(u8::is_ascii_whitespace) {
        SignRequest::default()
    } else {
        let mut value: serde_json::Value =
            serde_json::from_slice(&body).map_err(|err| AppError::invalid(err.to_string()))?;
        super::integral_floats_as_integers(&mut value);
        if value.is_null() {
            SignRequest::default()
        } else {
            serde_json::from_value(value).map_err(|err| AppError::invalid(err.to_string()))?
        }
    };
    let max = state.config.media_signed_url_max_ttl.as_secs();
    let ttl = request.ttl.unwrap_or(DEFAULT_LINK_TTL.min(max));
    if !(1..=max).contains(&ttl) {
        return Err(AppError::invalid(format!(
            "`ttl` must be between 1 and {max} seconds"
        )));
    }
    let file = state.store.media(&user.tenant, &user.user, &id).await?;
    let (url, expires_at) =
        state
            .media()
            .signer
            .sign(&user.tenant, &file.id, std::time::Duration::from_secs(ttl));
    Ok(Json(SignedLink { url, expires_at }))
}

/// The file of a signed link, without a token (also `HEAD`, `Range`, `If-None-Match`); 403 when
/// the link was changed or has expired, 404 once the file is deleted.
#[utoipa::path(get, path = "/v1/signed/media/{id}", tag = "media",
    params(("id" = String, Path), LinkParams),
    responses(
        (status = 200, description = "the file, with its sniffed type", content_type = "*/*"),
        (status = 206, description = "the requested range", content_type = "*/*"),
        (status = 304, description = "unchanged (If-None-Match)"),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 416, body = ErrorBody)))]
pub async fn signed_download(
    State(state): State<AppState>,
    method: Method,
    ApiPath(id): ApiPath<String>,
    ApiQuery(link): ApiQuery<LinkParams>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    validate::id("id", &id)?;
    match state
        .media()
        .signer
        .verify(&link.tenant, &id, link.expires, &link.sig)
    {
        Ok(()) => {}
        Err(LinkError::Tampered) => return Err(AppError::forbidden("the link is not valid")),
        Err(LinkError::Expired) => return Err(AppError::forbidden("the link has expired")),
    }
    let file = state.store.media_file(&link.tenant, &id).await?;
    serve(&state, &link.tenant, &file, &method, &headers).await
}
