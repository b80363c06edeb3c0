//! Completions over HTTP: `GET /v1/search/suggestions`, for a search box as its user types.
//!
//! Three sources, each limited to what the caller may see now: words of the live messages of
//! the caller's conversations (from the search index, checked per word: see
//! `confab_search::SearchIndex::complete`), titles of the caller's conversations, and names in
//! the caller's tenant's directory of people.

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use confab_protocol::ErrorBody;
use confab_protocol::rest::{Suggestion, SuggestionKind, Suggestions};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiQuery;
use crate::auth::AuthUser;
use crate::error::AppError;
use crate::metrics;
use crate::state::AppState;

/// The most suggestions of one answer.
const MAX_LIMIT: usize = 20;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::default().routes(routes!(suggestions))
}

/// The parameters of a completion.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SuggestionQuery {
    /// What was typed so far; words are completed from its last word.
    #[param(min_length = 1, max_length = 200)]
    prefix: String,
    /// Suggestions, 1 to 20 (default 8).
    #[param(minimum = 1, maximum = 20)]
    limit: Option<usize>,
}

/// Whether `text` or one of its words starts with `prefix` (lower-case).
fn starts(text: &str, prefix: &str) -> bool {
    let text = text.to_lowercase();
    text.starts_with(prefix) || text.split_whitespace().any(|word| word.starts_with(prefix))
}

/// Completes what the caller typed from their words, conversation titles and people.
#[utoipa::path(get, path = "/v1/search/suggestions", tag = "search", security(("bearer" = [])),
    params(SuggestionQuery),
    responses((status = 200, body = Suggestions), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 429, description = "too many completions (`search_suggestions_per_minute`; `Retry-After` says when to retry)", body = ErrorBody)))]
pub async fn suggestions(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(params): ApiQuery<SuggestionQuery>,
) -> Result<Json<Suggestions>, AppError> {
    let started = Instant::now();
    state.search().check_suggestion_rate(&user)?;
    let prefix = params.prefix.trim().to_lowercase();
    if prefix.is_empty() {
        return Err(AppError::invalid("`prefix` is empty"));
    }
    if prefix.len() > 200 {
        return Err(AppError::invalid("`prefix` is over 200 bytes"));
    }
    let limit = params.limit.unwrap_or(8);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(AppError::invalid("`limit` must be between 1 and 20"));
    }
    // Membership now, from the store, as for message search.
    let summaries = state
        .store
        .list_conversations(&user.tenant, &user.user)
        .await?;
    let titles: Vec<Suggestion> = summaries
        .iter()
        .filter_map(|summary| {
            let title = summary.conversation.title.as_deref()?;
            starts(title, &prefix).then(|| Suggestion {
                text: title.to_owned(),
                kind: SuggestionKind::Conversation,
                conversation: Some(summary.conversation.id.clone()),
                user: None,
                messages: None,
            })
        })
        .collect();
    let conversations: Vec<String> = summaries
        .into_iter()
        .map(|summary| summary.conversation.id)
        .collect();
    let people: Vec<Suggestion> = state
        .store
        .people(&user.tenant)
        .await?
        .into_iter()
        .filter(|person| starts(&person.name, &prefix))
        .map(|person| Suggestion {
            text: person.name,
            kind: SuggestionKind::Person,
            conversation: None,
            user: Some(person.id),
            messages: None,
        })
        .collect();
    state.search().fresh().await;
    let index = state.search().index.clone();
    let tenant = user.tenant.to_string();
    let typed = prefix.clone();
    let words =
        tokio::task::spawn_blocking(move || index.complete(&tenant, &conversations, &typed, limit))
            .await
            .map_err(AppError::internal)?
            .map_err(AppError::internal)?;
    // Titles and names take at most a third of the answer each; words fill the rest.
    let share = limit.div_ceil(3);
    let mut suggestions: Vec<Suggestion> = titles.into_iter().take(share).collect();
    suggestions.extend(people.into_iter().take(share));
    let room = limit.saturating_sub(suggestions.len());
    suggestions.extend(words.into_iter().take(room).map(|completion| Suggestion {
        text: completion.word,
        kind: SuggestionKind::Term,
        conversation: None,
        user: None,
        messages: Some(completion.messages),
    }));
    metrics::search_query("suggestions", started.elapsed());
    Ok(Json(Suggestions { suggestions }))
}
