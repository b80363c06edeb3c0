//! Search over HTTP: `GET /v1/search/messages`. Results come only from the conversations the
//! caller is a member of at the moment of the query, in the caller's tenant.

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use confab_protocol::ErrorBody;
use confab_protocol::rest::{MessageHit, MessageHits};
use confab_search::query::{self, Parsed};
use confab_search::{Search, SearchError, Sort};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiQuery;
use crate::auth::AuthUser;
use crate::error::AppError;
use crate::state::AppState;
use crate::{metrics, validate};

/// How long `wait_for` waits at most.
const WAIT_FOR_MAX: Duration = Duration::from_secs(2);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::default().routes(routes!(messages))
}

/// The parameters of a message search. `q` takes the query language; the other filters may
/// also be written in it.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct MessageSearch {
    /// Words (typos forgiven), `"exact phrases"`, `-excluded`, `from:user`, `in:conversation`,
    /// `before:YYYY-MM-DD`, `after:YYYY-MM-DD`, `has:attachment`. Blank with no filter: no hits.
    q: String,
    /// Only this conversation.
    conversation: Option<String>,
    /// Only messages by this user.
    author: Option<String>,
    /// Only messages from this day on (`YYYY-MM-DD`, UTC).
    from: Option<String>,
    /// Only messages up to this day, inclusive (`YYYY-MM-DD`, UTC).
    to: Option<String>,
    /// `attachment`: only messages with files.
    has: Option<String>,
    /// `relevance` (BM25, the default) or `recent`.
    sort: Option<String>,
    /// Hits per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<usize>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// `<conversation>:<seq>`: wait (up to 2 s) until that event is searchable, so that a
    /// client that has just been acked finds its own message.
    wait_for: Option<String>,
}

impl MessageSearch {
    /// A search of `q` alone, first page (the grouped `GET /v1/search`).
    pub(super) fn text(q: String, limit: usize) -> MessageSearch {
        MessageSearch {
            q,
            conversation: None,
            author: None,
            from: None,
            to: None,
            has: None,
            sort: None,
            limit: Some(limit),
            cursor: None,
            wait_for: None,
        }
    }
}

fn invalid(err: SearchError) -> AppError {
    match err {
        SearchError::Invalid(message) => AppError::invalid(message),
        other => AppError::internal(other),
    }
}

/// The query, with the parameters' filters folded in.
fn parse(params: &MessageSearch) -> Result<Parsed, AppError> {
    if params.q.chars().count() > 1000 {
        return Err(AppError::too_large("the query is over 1000 characters"));
    }
    if let Some(id) = &params.conversation {
        validate::id("conversation", id)?;
    }
    if let Some(author) = &params.author {
        validate::user_id("author", author)?;
    }
    let with_filters = format!(
        "{} {} {} {} {}",
        params.q,
        params
            .from
            .as_deref()
            .map(|day| format!("after:{day}"))
            .unwrap_or_default(),
        params
            .has
            .as_deref()
            .map(|has| format!("has:{has}"))
            .unwrap_or_default(),
        params
            .author
            .as_deref()
            .map(|who| format!("from:{who}"))
            .unwrap_or_default(),
        params
            .conversation
            .as_deref()
            .map(|id| format!("in:{id}"))
            .unwrap_or_default(),
    );
    let mut parsed = query::parse(&with_filters).map_err(invalid)?;
    if let Some(day) = &params.to {
        let start = query::parse(&format!("before:{day}"))
            .map_err(invalid)?
            .before;
        parsed.before = start.map(|at| at + 86_400_000);
    }
    Ok(parsed)
}

/// The order and size of the page asked for, and a check of its cursor (an offset).
fn page(params: &MessageSearch) -> Result<(Sort, usize), AppError> {
    let sort = match params.sort.as_deref() {
        None | Some("relevance") => Sort::Relevance,
        Some("recent") => Sort::Recent,
        Some(other) => {
            return Err(AppError::invalid(format!(
                "`sort` is relevance or recent, not {other:?}"
            )));
        }
    };
    // An offset up to MAX_CURSOR (relevance), or `k` and a key (newest first); the index
    // checks that the kind matches the sort.
    if let Some(cursor) = &params.cursor
        && !match cursor.strip_prefix('k') {
            Some(key) => key.parse::<u64>().is_ok(),
            None => cursor
                .parse::<usize>()
                .is_ok_and(|offset| offset <= confab_search::MAX_CURSOR),
        }
    {
        return Err(AppError::invalid("a bad cursor"));
    }
    let limit = params.limit.unwrap_or(20);
    if !(1..=confab_search::MAX_LIMIT).contains(&limit) {
        return Err(AppError::invalid("`limit` must be between 1 and 100"));
    }
    Ok((sort, limit))
}

/// Waits until `conversation` is searchable up to `seq` (at most [`WAIT_FOR_MAX`]).
async fn wait_for(state: &AppState, spec: &str, allowed: &[String]) -> Result<(), AppError> {
    let bad = || AppError::invalid("`wait_for` is `<conversation>:<seq>`");
    let (conversation, seq) = spec.rsplit_once(':').ok_or_else(bad)?;
    let seq: u64 = seq.parse().map_err(|_| bad())?;
    if !allowed.iter().any(|c| c == conversation) {
        return Ok(());
    }
    let deadline = Instant::now() + WAIT_FOR_MAX;
    while state.search().index.indexed_seq(conversation) < seq && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Searches the messages of the caller's conversations.
#[utoipa::path(get, path = "/v1/search/messages", tag = "search", security(("bearer" = [])),
    params(MessageSearch),
    responses((status = 200, body = MessageHits), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 429, description = "too many searches (`Retry-After` says when to retry)", body = ErrorBody)))]
pub async fn messages(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(params): ApiQuery<MessageSearch>,
) -> Result<Json<MessageHits>, AppError> {
    let started = Instant::now();
    state.search().check_rate(&user)?;
    let q = params.q.clone();
    let hits = find(&state, &user, params).await?;
    super::search_recent::record(&state, &user, &q);
    metrics::search_query("messages", started.elapsed());
    Ok(Json(hits))
}

/// The hits of a message search (the caller's rate limit already taken).
pub(super) async fn find(
    state: &AppState,
    user: &AuthUser,
    params: MessageSearch,
) -> Result<MessageHits, AppError> {
    let parsed = parse(&params)?;
    if let Some(id) = &parsed.conversation {
        validate::id("conversation", id)?;
    }
    let (sort, limit) = page(&params)?;
    // Membership now, from the store: a removed member stops seeing hits at once.
    let conversations: Vec<String> = state
        .store
        .list_conversations(&user.tenant, &user.user)
        .await?
        .into_iter()
        .map(|summary| summary.conversation.id)
        .collect();
    state.search().fresh().await;
    if let Some(spec) = &params.wait_for {
        wait_for(state, spec, &conversations).await?;
    }
    // Nothing asked (a blank `q`, no filter): nothing found. Not an error, so that a client
    // can send what its search box holds, and so that the schema (which cannot tie `q` to the
    // other parameters) is exact.
    if !parsed.has_text() && parsed == Parsed::default() {
        return Ok(MessageHits {
            hits: Vec::new(),
            next_cursor: None,
            indexed_seq: std::collections::BTreeMap::new(),
        });
    }
    let index = state.search().index.clone();
    let tenant = user.tenant.to_string();
    let cursor = params.cursor.clone();
    let found = tokio::task::spawn_blocking(move || {
        index.search(&Search {
            tenant: &tenant,
            conversations: &conversations,
            query: &parsed,
            sort,
            limit,
            cursor: cursor.as_deref(),
        })
    })
    .await
    .map_err(AppError::internal)?
    .map_err(invalid)?;
    let mut indexed_seq = found.indexed_seq;
    if let Some((conversation, _)) = params
        .wait_for
        .as_deref()
        .and_then(|spec| spec.rsplit_once(':'))
    {
        indexed_seq.insert(
            conversation.to_owned(),
            state.search().index.indexed_seq(conversation),
        );
    }
    Ok(MessageHits {
        hits: found
            .hits
            .into_iter()
            .map(|hit| MessageHit {
                conversation: hit.conversation,
                id: hit.id,
                seq: hit.seq,
                author: hit.author,
                ts: hit.ts,
                snippet: hit.snippet,
            })
            .collect(),
        next_cursor: found.next_cursor,
        indexed_seq,
    })
}
