//! The form of a single upload (`POST /v1/media`): a `file` part streamed into the media store
//! as it arrives, and an optional `conversation` part. Read here rather than in the handler so
//! that the fuzz target `media_upload` drives the same code with any body.

use axum::extract::Multipart;
use confab_storage::media::{Media, MediaError};
use futures_util::TryStreamExt;

use super::{Received, Uploading, new_id, upload_failed};
use crate::error::AppError;
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
/// `tenant` (at most `max_file_bytes`, under a new id).
pub async fn receive_form(
    media: &Media,
    tenant: &str,
    mut form: Multipart,
    max_file_bytes: u64,
) -> Result<ReceivedForm, AppError> {
    let mut conversation = None;
    let mut received: Option<Received> = None;
    while let Some(field) = form.next_field().await.map_err(|err| broke_off(&err))? {
        match field.name() {
            Some("conversation") => {
                let id = field.text().await.map_err(|err| broke_off(&err))?;
                validate::id("conversation", &id)?;
                conversation = Some(id);
            }
            Some("file") if received.is_none() => {
                let name = field.file_name().unwrap_or_default().to_owned();
                let id = new_id();
                let _uploading = Uploading::start();
                let body = field.map_err(broke_off);
                let stored = media
                    .put(tenant, &id, body, max_file_bytes)
                    .await
                    .inspect_err(|err| upload_failed("single", err))?;
                received = Some(Received { id, name, stored });
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
    let Some(received) = received else {
        return Err(AppError::invalid("the form has no `file` field"));
    };
    Ok(ReceivedForm {
        received,
        conversation,
    })
}
