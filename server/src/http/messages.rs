//! Message history, sending (for bots), edits, deletes and reactions.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use confab_protocol::ErrorBody;
use confab_protocol::rest::{
    AddReaction, ChangeResult, EditMessage, Message, MessagePage, SendMessage, SendResult,
};
use confab_storage::PageQuery;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiJson, ApiPath, ApiQuery};
use crate::auth::AuthUser;
use crate::chat::{self, Outgoing};
use crate::error::AppError;
use crate::state::AppState;
use crate::validate;

/// Default and largest page size.
const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 200;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .routes(routes!(list, send))
        .routes(routes!(fetch, edit, remove))
        .routes(routes!(react))
        .routes(routes!(unreact))
}

/// Cursor paging by seq: `after` pages forward (up to `before` when both are given: the
/// messages strictly between), otherwise the page ends before `before` (or at the newest
/// message). Pages are oldest first.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageParams {
    /// Only messages with seq below this.
    before: Option<u64>,
    /// Only messages with seq above this.
    after: Option<u64>,
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
}

/// A page of history.
#[utoipa::path(get, path = "/v1/conversations/{id}/messages", tag = "messages", security(("bearer" = [])),
    params(("id" = String, Path, description = "conversation id"), PageParams),
    responses((status = 200, body = MessagePage), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<MessagePage>, AppError> {
    validate::id("id", &id)?;
    // Seqs are stored as signed 64-bit integers (and documented as `int64`).
    if [params.before, params.after]
        .into_iter()
        .flatten()
        .any(|seq| i64::try_from(seq).is_err())
    {
        return Err(AppError::invalid(
            "`before` and `after` are at most 2^63 - 1",
        ));
    }
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(AppError::invalid(format!(
            "`limit` must be between 1 and {MAX_LIMIT}"
        )));
    }
    let query = PageQuery {
        before: params.before,
        after: params.after,
        limit,
    };
    Ok(Json(
        state
            .store
            .messages(&user.tenant, &user.user, &id, query)
            .await?,
    ))
}

/// Sends a message (same semantics and idempotency as the WebSocket `send`); answers once it
/// is durably stored. A repeated `client_msg_id` answers 200 with the original message.
#[utoipa::path(post, path = "/v1/conversations/{id}/messages", tag = "messages", security(("bearer" = [])),
    params(("id" = String, Path, description = "conversation id")),
    request_body = SendMessage,
    responses((status = 201, body = SendResult), (status = 200, description = "duplicate", body = SendResult),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "`reply_to` names no message of this conversation, or a deleted one", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn send(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<SendMessage>,
) -> Result<super::Located<SendResult>, AppError> {
    let client_msg_id = req.client_msg_id.clone();
    let outgoing = Outgoing {
        conversation: id.clone(),
        client_msg_id: req.client_msg_id,
        body: req.body,
        reply_to: req.reply_to,
        attachments: req.attachments,
    };
    let appended = chat::send(&state, &user, outgoing).await?;
    let status = if appended.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(super::located(
        status,
        format!("/v1/messages/{}", appended.id),
        SendResult {
            conversation: id,
            client_msg_id,
            id: appended.id,
            seq: appended.seq,
            ts: appended.ts,
            duplicate: appended.duplicate,
        },
    ))
}

/// One message as it is now.
#[utoipa::path(get, path = "/v1/messages/{id}", tag = "messages", security(("bearer" = [])),
    params(("id" = String, Path, description = "message id")),
    responses((status = 200, body = Message), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn fetch(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Message>, AppError> {
    validate::id("id", &id)?;
    Ok(Json(
        state.store.message(&user.tenant, &user.user, &id).await?,
    ))
}

/// Replaces the body of one's own message.
#[utoipa::path(patch, path = "/v1/messages/{id}", tag = "messages", security(("bearer" = [])),
    params(("id" = String, Path, description = "message id")),
    request_body = EditMessage,
    responses((status = 200, body = ChangeResult), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn edit(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<EditMessage>,
) -> Result<Json<ChangeResult>, AppError> {
    let seq = chat::edit(&state, &user, &id, req.body).await?;
    Ok(Json(ChangeResult { seq: Some(seq) }))
}

/// Soft-deletes a message (author, admins, owners).
#[utoipa::path(delete, path = "/v1/messages/{id}", tag = "messages", security(("bearer" = [])),
    params(("id" = String, Path, description = "message id")),
    responses((status = 200, body = ChangeResult), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn remove(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ChangeResult>, AppError> {
    Ok(Json(ChangeResult {
        seq: chat::delete(&state, &user, &id).await?,
    }))
}

/// Adds the caller's reaction.
#[utoipa::path(post, path = "/v1/messages/{id}/reactions", tag = "messages", security(("bearer" = [])),
    params(("id" = String, Path, description = "message id")),
    request_body = AddReaction,
    responses((status = 200, body = ChangeResult), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "the message is deleted", body = ErrorBody)))]
pub async fn react(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<AddReaction>,
) -> Result<Json<ChangeResult>, AppError> {
    Ok(Json(ChangeResult {
        seq: chat::react(&state, &user, &id, &req.emoji).await?,
    }))
}

/// Removes the caller's reaction (`emoji` URL-encoded).
#[utoipa::path(delete, path = "/v1/messages/{id}/reactions/{emoji}", tag = "messages", security(("bearer" = [])),
    params(("id" = String, Path, description = "message id"), ("emoji" = String, Path, description = "reaction")),
    responses((status = 200, body = ChangeResult), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "the message is deleted", body = ErrorBody)))]
pub async fn unreact(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath((id, emoji)): ApiPath<(String, String)>,
) -> Result<Json<ChangeResult>, AppError> {
    Ok(Json(ChangeResult {
        seq: chat::unreact(&state, &user, &id, &emoji).await?,
    }))
}
