//! `GET /v1/search/conversations` (the caller's conversations by title and member names) and
//! `GET /v1/search` (messages, conversations and people at once).
//!
//! Conversations are matched in memory against the caller's membership as the store has it
//! now (so a removed member stops finding the conversation at once), with the same matcher as
//! people search: a word exactly, as a prefix, or one letter off from 4 letters on; a member
//! matches by id or by the display name the directory of people keeps.

use std::collections::HashMap;
use std::time::Instant;

use axum::Json;
use axum::extract::State;
use confab_protocol::ErrorBody;
use confab_protocol::rest::{ConversationHit, ConversationHits, SearchResults};
use futures_util::{StreamExt, TryStreamExt};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiQuery;
use super::search_people::{name_query, score};
use crate::auth::AuthUser;
use crate::error::AppError;
use crate::metrics;
use crate::state::AppState;

/// Member lists read at once for one search.
const MEMBER_READS: usize = 8;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .routes(routes!(conversations))
        .routes(routes!(everything))
}

/// A search by name: conversations, or everything.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct NameSearch {
    /// Words of a title or a member's name or id, or the start of one; one typo is forgiven in
    /// words of 4 letters or more. (In `GET /v1/search`, the message query language too.)
    q: String,
    /// Hits, 1 to 100 (default 20); per group in `GET /v1/search` (default 5).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<usize>,
}

fn limit(params: &NameSearch, default: usize) -> Result<usize, AppError> {
    let limit = params.limit.unwrap_or(default);
    if !(1..=100).contains(&limit) {
        return Err(AppError::invalid("`limit` must be between 1 and 100"));
    }
    Ok(limit)
}

/// The caller's conversations matching `query` (from `name_query`), best first.
async fn find(
    state: &AppState,
    user: &AuthUser,
    query: &str,
    limit: usize,
) -> Result<Vec<ConversationHit>, AppError> {
    let mine = state
        .store
        .list_conversations(&user.tenant, &user.user)
        .await?;
    let names: HashMap<String, String> = state
        .store
        .people(&user.tenant)
        .await?
        .into_iter()
        .map(|person| (person.id, person.name))
        .collect();
    let ids: Vec<String> = mine.iter().map(|s| s.conversation.id.clone()).collect();
    let member_lists: Vec<Vec<confab_protocol::rest::Member>> =
        futures_util::stream::iter(ids.into_iter().map(|id| {
            let (store, tenant, reader) =
                (state.store.clone(), user.tenant.clone(), user.user.clone());
            async move { store.members(&tenant, &reader, &id).await }
        }))
        .buffered(MEMBER_READS)
        .try_collect()
        .await?;
    let mut scored: Vec<(u8, u64, ConversationHit)> = Vec::new();
    for (summary, members) in mine.into_iter().zip(member_lists) {
        let conversation = summary.conversation;
        let by_title = conversation
            .title
            .as_deref()
            .and_then(|title| score(query, title));
        // Another member (not the caller) whose id or name matches.
        let by_member = members
            .iter()
            .filter(|member| member.user != *user.user)
            .filter_map(|member| {
                let name = names.get(&member.user).map_or("", String::as_str);
                let best = score(query, &member.user).max(score(query, name))?;
                Some((best, member.user.clone()))
            })
            .max_by_key(|(best, _)| *best);
        let (best, matched, member) = match (by_title, by_member) {
            (Some(title), Some((person, _))) if title >= person => (title, "title", None),
            (_, Some((person, who))) => (person, "member", Some(who)),
            (Some(title), None) => (title, "title", None),
            (None, None) => continue,
        };
        let recency = conversation.last_seq;
        scored.push((
            best,
            recency,
            ConversationHit {
                id: conversation.id,
                kind: conversation.kind,
                title: conversation.title,
                role: summary.role,
                members: members.len() as u64,
                archived: conversation.archived,
                last_seq: conversation.last_seq,
                matched: matched.to_owned(),
                member,
            },
        ));
    }
    // Best match first, then the most active.
    scored.sort_by(|(a, x, _), (b, y, _)| b.cmp(a).then(y.cmp(x)));
    Ok(scored
        .into_iter()
        .take(limit)
        .map(|(_, _, hit)| hit)
        .collect())
}

/// Searches the caller's conversations by title and by their members' names and ids.
#[utoipa::path(get, path = "/v1/search/conversations", tag = "search", security(("bearer" = [])),
    params(NameSearch),
    responses((status = 200, body = ConversationHits), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 429, description = "too many searches (`Retry-After` says when to retry)", body = ErrorBody)))]
pub async fn conversations(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(params): ApiQuery<NameSearch>,
) -> Result<Json<ConversationHits>, AppError> {
    let started = Instant::now();
    state.search().check_rate(&user)?;
    let query = name_query(&params.q)?;
    let limit = limit(&params, 20)?;
    let conversations = find(&state, &user, &query, limit).await?;
    metrics::search_query("conversations", started.elapsed());
    Ok(Json(ConversationHits { conversations }))
}

/// Searches messages, conversations and people at once: the first page of each (one search
/// from the caller's budget).
#[utoipa::path(get, path = "/v1/search", tag = "search", security(("bearer" = [])),
    params(NameSearch),
    responses((status = 200, body = SearchResults), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 429, description = "too many searches (`Retry-After` says when to retry)", body = ErrorBody)))]
pub async fn everything(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(params): ApiQuery<NameSearch>,
) -> Result<Json<SearchResults>, AppError> {
    let started = Instant::now();
    state.search().check_rate(&user)?;
    let limit = limit(&params, 5)?;
    let query = name_query(&params.q)?;
    let message_search = super::search::MessageSearch::text(params.q.clone(), limit);
    let (messages, conversations, users) = tokio::try_join!(
        super::search::find(&state, &user, message_search),
        find(&state, &user, &query, limit),
        super::search_people::find(&state, &user, query.clone(), limit),
    )?;
    super::search_recent::record(&state, &user, &params.q);
    metrics::search_query("all", started.elapsed());
    Ok(Json(SearchResults {
        messages,
        conversations,
        users,
    }))
}
