//! Conversations and members.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use confab_protocol::limits::MAX_INITIAL_MEMBERS;
use confab_protocol::rest::{
    AddMember, ChangeResult, Conversation, ConversationKind, ConversationList, CreateConversation,
    MarkRead, MemberList, UpdateConversation, UpdateMember,
};
use confab_protocol::{ErrorBody, rest::Role};
use confab_storage::NewConversation;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiJson, ApiPath, ApiQuery};
use crate::auth::AuthUser;
use crate::chat;
use crate::error::AppError;
use crate::state::AppState;
use crate::validate;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .routes(routes!(list, create))
        .routes(routes!(fetch, update))
        .routes(routes!(members, add_member))
        .routes(routes!(update_member, remove_member))
        .routes(routes!(mark_read))
}

/// Creates a conversation; the caller becomes its owner. A direct conversation with the same
/// user again returns the existing one with 200.
#[utoipa::path(post, path = "/v1/conversations", tag = "conversations", security(("bearer" = [])),
    request_body = CreateConversation,
    responses(
        (status = 201, description = "created", body = Conversation),
        (status = 200, description = "the existing direct conversation", body = Conversation),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(req): ApiJson<CreateConversation>,
) -> Result<super::Located<Conversation>, AppError> {
    if req.members.len() > MAX_INITIAL_MEMBERS {
        return Err(AppError::too_large(format!(
            "at most {MAX_INITIAL_MEMBERS} members at creation"
        )));
    }
    for member in &req.members {
        validate::user_id("members", member)?;
    }
    if let Some(title) = &req.title {
        validate::title(title)?;
    }
    let others: Vec<&String> = req.members.iter().filter(|m| **m != *user.user).collect();
    if req.kind == ConversationKind::Direct && others.len() != 1 {
        return Err(AppError::invalid(
            "a direct conversation names exactly one other member",
        ));
    }
    let members = req.members.clone();
    let (conversation, created) = state
        .store
        .create_conversation(NewConversation {
            tenant: user.tenant.to_string(),
            creator: user.user.to_string(),
            kind: req.kind,
            title: req.title,
            members: req.members,
        })
        .await?;
    if created {
        let everyone = std::iter::once(&*user.user).chain(members.iter().map(String::as_str));
        state.hub.users_changed(&user.tenant, everyone);
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let location = format!("/v1/conversations/{}", conversation.id);
    Ok(super::located(status, location, conversation))
}

/// The filters and page of `GET /v1/conversations`.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListConversations {
    /// Only conversations of this kind.
    kind: Option<ConversationKind>,
    /// Only archived (`true`) or only active (`false`) conversations.
    archived: Option<bool>,
    /// Conversations per page, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// Conversations per page by default, and at most.
const LIST_DEFAULT: usize = 100;
const LIST_MAX: usize = 500;

/// The caller's conversations, most recently active first, with unread counts, a page at a
/// time. The cursor is the last conversation of the previous page: a conversation that became
/// active since moves to the first page (a client refreshing from the top sees it).
#[utoipa::path(get, path = "/v1/conversations", tag = "conversations", security(("bearer" = [])),
    params(ListConversations),
    responses((status = 200, body = ConversationList), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(query): ApiQuery<ListConversations>,
) -> Result<Json<ConversationList>, AppError> {
    let limit = query.limit.unwrap_or(LIST_DEFAULT);
    if !(1..=LIST_MAX).contains(&limit) {
        return Err(AppError::invalid(format!(
            "limit must be between 1 and {LIST_MAX}"
        )));
    }
    let all = state
        .store
        .list_conversations(&user.tenant, &user.user)
        .await?;
    let mut matching = all.into_iter().filter(|summary| {
        let c = &summary.conversation;
        query.kind.is_none_or(|kind| c.kind == kind)
            && query.archived.is_none_or(|archived| c.archived == archived)
    });
    if let Some(cursor) = &query.cursor {
        validate::id("cursor", cursor)?;
        // Past the cursor's conversation; one the caller has left since ends the listing.
        matching
            .by_ref()
            .find(|summary| summary.conversation.id == *cursor);
    }
    let mut conversations: Vec<_> = matching.by_ref().take(limit).collect();
    let more = matching.next().is_some();
    let next_cursor = more
        .then(|| {
            conversations
                .last()
                .map(|last| last.conversation.id.clone())
        })
        .flatten();
    conversations.shrink_to_fit();
    Ok(Json(ConversationList {
        conversations,
        next_cursor,
    }))
}

/// One conversation (members only).
#[utoipa::path(get, path = "/v1/conversations/{id}", tag = "conversations", security(("bearer" = [])),
    params(("id" = String, Path, description = "conversation id")),
    responses((status = 200, body = Conversation), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn fetch(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Conversation>, AppError> {
    validate::id("id", &id)?;
    Ok(Json(
        state
            .store
            .conversation(&user.tenant, &user.user, &id)
            .await?,
    ))
}

/// Renames or archives (`archived: true`) a conversation (owners and admins).
#[utoipa::path(patch, path = "/v1/conversations/{id}", tag = "conversations", security(("bearer" = [])),
    params(("id" = String, Path, description = "conversation id")),
    request_body = UpdateConversation,
    responses((status = 200, body = Conversation), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<UpdateConversation>,
) -> Result<Json<Conversation>, AppError> {
    validate::id("id", &id)?;
    if let Some(title) = &req.title {
        validate::title(title)?;
    }
    state
        .store
        .update_conversation(&user.tenant, &user.user, &id, req.title, req.archived)
        .await?;
    Ok(Json(
        state
            .store
            .conversation(&user.tenant, &user.user, &id)
            .await?,
    ))
}

/// Members and their roles and read markers.
#[utoipa::path(get, path = "/v1/conversations/{id}/members", tag = "members", security(("bearer" = [])),
    params(("id" = String, Path, description = "conversation id")),
    responses((status = 200, body = MemberList), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn members(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<MemberList>, AppError> {
    validate::id("id", &id)?;
    let members = state.store.members(&user.tenant, &user.user, &id).await?;
    Ok(Json(MemberList { members }))
}

/// Adds a member to a group (owners and admins).
#[utoipa::path(post, path = "/v1/conversations/{id}/members", tag = "members", security(("bearer" = [])),
    params(("id" = String, Path, description = "conversation id")),
    request_body = AddMember,
    responses((status = 201, body = ChangeResult), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn add_member(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<AddMember>,
) -> Result<(StatusCode, Json<ChangeResult>), AppError> {
    validate::id("id", &id)?;
    validate::user_id("user", &req.user)?;
    let role = req.role.unwrap_or(Role::Member);
    let seq = state
        .store
        .add_member(&user.tenant, &user.user, &id, &req.user, role)
        .await?;
    state.hub.users_changed(&user.tenant, [req.user.as_str()]);
    Ok((StatusCode::CREATED, Json(ChangeResult { seq: Some(seq) })))
}

/// Changes a member's role (owners).
#[utoipa::path(patch, path = "/v1/conversations/{id}/members/{user}", tag = "members", security(("bearer" = [])),
    params(("id" = String, Path, description = "conversation id"), ("user" = String, Path, description = "member")),
    request_body = UpdateMember,
    responses((status = 200, body = ChangeResult), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn update_member(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath((id, member)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<UpdateMember>,
) -> Result<Json<ChangeResult>, AppError> {
    validate::id("id", &id)?;
    validate::user_id("user", &member)?;
    let seq = state
        .store
        .set_role(&user.tenant, &user.user, &id, &member, req.role)
        .await?;
    if seq.is_some() {
        state.hub.users_changed(&user.tenant, [member.as_str()]);
    }
    Ok(Json(ChangeResult { seq }))
}

/// Removes a member, or leaves when `user` is the caller.
#[utoipa::path(delete, path = "/v1/conversations/{id}/members/{user}", tag = "members", security(("bearer" = [])),
    params(("id" = String, Path, description = "conversation id"), ("user" = String, Path, description = "member")),
    responses((status = 200, body = ChangeResult), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn remove_member(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath((id, member)): ApiPath<(String, String)>,
) -> Result<Json<ChangeResult>, AppError> {
    validate::id("id", &id)?;
    validate::user_id("user", &member)?;
    let seq = state
        .store
        .remove_member(&user.tenant, &user.user, &id, &member)
        .await?;
    state.hub.users_changed(&user.tenant, [member.as_str()]);
    Ok(Json(ChangeResult { seq: Some(seq) }))
}

/// Moves the caller's read marker forward.
#[utoipa::path(put, path = "/v1/conversations/{id}/read", tag = "conversations", security(("bearer" = [])),
    params(("id" = String, Path, description = "conversation id")),
    request_body = MarkRead,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "`seq` is past the conversation's last seq", body = ErrorBody)))]
pub async fn mark_read(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<MarkRead>,
) -> Result<StatusCode, AppError> {
    chat::mark_read(&state, &user, &id, req.seq).await?;
    Ok(StatusCode::NO_CONTENT)
}
