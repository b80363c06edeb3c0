//! The form of a single upload (`POST /v1/media`): a `file` part streamed into the media store
//! as it arrives, and an optional `conversation` part. Read here rather than in the handler so
//! that the fuzz target `media_upload` drives the same code with any body.

use axum::extract::Multipart;
use axum::extract::multipart::Field;
use confab_storage::media::{Media, MediaError};
use futures_util::TryStreamExt;

use super::{Received, Uploading, new_id, upload_failed};
use crate::error::{AppError, ErrorChain};
use crate::validate;

/// What the form of a single upload carried: the stored file, and the conversation whose
/// members will see it.
pub struct ReceivedForm {
    pub received: Received,
    pub conversation: Option<String>,
}

fn broke_off(err: impl std::fmt::Display) -> MediaError {
    MediaError::Invalid(format!("the upload broke off: {err}"))
}

/// Reads the form of a single upload, streaming its `file` part into `media` as file of
/// `tenant` (at most `max_file_bytes`, under a new id). A form refused after its file was
/// stored (a second file, an unknown or invalid field, a body that breaks off) leaves no file.
pub async fn receive_form(
    media: &Media,
    tenant: &str,
    mut form: Multipart,
    max_file_bytes: u64,
) -> Result<ReceivedForm, AppError> {
    let mut received = None;
    match read_fields(media, tenant, &mut form, max_file_bytes, &mut received).await {
        Ok(conversation) => {
            let Some(received) = received else {
                return Err(AppError::invalid("the form has no `file` field"));
            };
            Ok(ReceivedForm {
                received,
                conversation,
            })
        }
        Err(err) => {
            if let Some(received) = received
                && let Err(cleanup) = media.delete(tenant, &received.id).await
            {
                tracing::warn!(media = %received.id, error = %ErrorChain(&cleanup), "cannot remove the file of a refused form");
            }
            Err(err)
        }
    }
}

/// Reads the form's fields, the file into `received` once stored; returns the conversation.
async fn read_fields(
    media: &Media,
    tenant: &str,
    form: &mut Multipart,
    max_file_bytes: u64,
    received: &mut Option<Received>,
) -> Result<Option<String>, AppError> {
    let mut conversation = None;
    while let Some(field) = form.next_field().await.map_err(|err| broke_off(&err))? {
        match field.name() {
            Some("conversation") => conversation = Some(read_id("conversation", field).await?),
            Some("file") if received.is_none() => {
                let name = field.file_name().unwrap_or_default().to_owned();
                let id = new_id();
                let _uploading = Uploading::start();
                let body = field.map_err(broke_off);
                let stored = media
                    .put(tenant, &id, body, max_file_bytes)
                    .await
                    .inspect_err(|err| upload_failed("single", err))?;
                *received = Some(Received { id, name, stored });
            }
            Some("file") => return Err(AppError::invalid("one file per upload")),
            other => {
                return Err(AppError::invalid(format!(
                    "unknown form field {:?}: expected `file` and `conversation`",
                    other.unwrap_or_default()
                )));
            }
        }
    }
    Ok(conversation)
}

/// An id sent as a form field, read no further than an id's length: the route has no body
/// limit (the file's own cap applies to the file only).
async fn read_id(name: &str, mut field: Field<'_>) -> Result<String, AppError> {
    let mut bytes = Vec::new();
    while let Some(piece) = field.chunk().await.map_err(|err| broke_off(&err))? {
        if bytes.len() + piece.len() > validate::MAX_ID_LEN {
            return Err(AppError::invalid(format!(
                "`{name}` is at most {} bytes",
                validate::MAX_ID_LEN
            )));
        }
        bytes.extend_from_slice(&piece);
    }
    let id = String::from_utf8(bytes)
        .map_err(|_| AppError::invalid(format!("`{name}` is not UTF-8")))?;
    validate::id(name, &id)?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use axum::body::{Body, Bytes};
    use axum::extract::FromRequest;
    use axum::http::{Request, header};
    use futures_util::StreamExt;

    use super::*;

    const BOUNDARY: &str = "B0UNDARY";

    fn form_of(body: Body) -> Request<Body> {
        let mut request = Request::new(body);
        request.headers_mut().insert(
            header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("multipart/form-data; boundary=B0UNDARY"),
        );
        request
    }

    fn part(name: &str, body: &str) -> String {
        format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"f.txt\"\r\n\r\n{body}\r\n"
        )
    }

    async fn receive(media: &Media, body: String) -> Result<ReceivedForm, AppError> {
        let form = Multipart::from_request(form_of(Body::from(body)), &())
            .await
            .expect("a multipart request");
        receive_form(media, "t1", form, 1024).await
    }

    /// The files under `dir`.
    fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut found = Vec::new();
        let mut pending = vec![dir.to_path_buf()];
        while let Some(next) = pending.pop() {
            for entry in std::fs::read_dir(&next).expect("a directory").flatten() {
                let path = entry.path();
                if path.is_dir() {
                    pending.push(path);
                } else {
                    found.push(path);
                }
            }
        }
        found
    }

    #[tokio::test]
    async fn a_form_gives_its_file_and_conversation() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let media = Media::local(dir.path()).expect("a media store");
        let body = format!(
            "{}{}--{BOUNDARY}--\r\n",
            part("file", "hello"),
            part("conversation", "c1")
        );
        let form = receive(&media, body).await.expect("a valid form");
        assert_eq!(form.conversation.as_deref(), Some("c1"));
        assert_eq!(form.received.name, "f.txt");
        assert_eq!(form.received.stored.size, 5);
        assert_eq!(files(dir.path()).len(), 1);
    }

    /// Found by the fuzz target `media_upload`: a form refused after its file was stored left
    /// the file's bytes on disk, with no record and outside every quota.
    #[tokio::test]
    async fn a_form_refused_after_its_file_leaves_no_file() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let media = Media::local(dir.path()).expect("a media store");
        for (case, body) in [
            (
                "a second file",
                format!(
                    "{}{}--{BOUNDARY}--\r\n",
                    part("file", "a"),
                    part("file", "b")
                ),
            ),
            (
                "an unknown field",
                format!(
                    "{}{}--{BOUNDARY}--\r\n",
                    part("file", "a"),
                    part("note", "b")
                ),
            ),
            (
                "a bad conversation",
                format!(
                    "{}{}--{BOUNDARY}--\r\n",
                    part("file", "a"),
                    part("conversation", "")
                ),
            ),
            (
                "a form cut off",
                format!("{}--{BOUNDARY}", part("file", "a")),
            ),
        ] {
            assert!(receive(&media, body).await.is_err(), "{case} is refused");
            assert_eq!(
                files(dir.path()),
                Vec::<std::path::PathBuf>::new(),
                "{case}"
            );
        }
    }

    /// The `conversation` field was read whole into memory, however long (the route has no
    /// body limit: a file's cap applies to the file only).
    #[tokio::test]
    async fn a_long_conversation_is_refused_without_reading_it_whole() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let media = Media::local(dir.path()).expect("a media store");
        let pulled = Arc::new(AtomicU64::new(0));
        let counted = pulled.clone();
        let head = Bytes::from(format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"conversation\"\r\n\r\n"
        ));
        let filler = Bytes::from(vec![b'a'; 64 * 1024]);
        // 64 MiB of conversation id, never ending its part, arriving a piece at a time as from
        // a socket (multer reads ahead for as long as the stream has bytes ready).
        let body = futures_util::stream::once(async move { head })
            .chain(futures_util::stream::repeat(filler).take(1024))
            .then(move |bytes| {
                let counted = counted.clone();
                async move {
                    tokio::task::yield_now().await;
                    counted.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    Ok::<_, std::io::Error>(bytes)
                }
            });
        let form = Multipart::from_request(form_of(Body::from_stream(body)), &())
            .await
            .expect("a multipart request");
        assert!(receive_form(&media, "t1", form, 1024).await.is_err());
        // Read whole, it took all that axum's default body limit lets through here (2 MiB; the
        // route itself has no limit).
        let pulled = pulled.load(Ordering::Relaxed);
        assert!(pulled < 1024 * 1024, "{pulled} bytes read");
    }
}
