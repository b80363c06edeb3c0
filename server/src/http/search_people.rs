//! People search over HTTP: `GET /v1/search/users`, within the caller's tenant (its matcher is
//! also conversation search's, `search_conversations.rs`).
//!
//! Served by a direct store read of the tenant's directory, matched in memory on the blocking
//! pool: even 10,000 people are a few hundred kilobytes and well under a millisecond to scan,
//! and the directory is always current (no second index to keep in step). A tenant far larger
//! would want an index of its own.

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use confab_protocol::ErrorBody;
use confab_protocol::rest::{PersonHit, PersonHits};
use confab_storage::Person;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiQuery;
use crate::auth::AuthUser;
use crate::error::AppError;
use crate::metrics;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::default().routes(routes!(users))
}

/// The parameters of a people search.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UserSearch {
    /// A name or id, or the start of one; one typo is forgiven in words of 4 letters or more.
    q: String,
    /// Hits, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<usize>,
}

/// How well `query` (lowercase, trimmed) matches `text`: 3 exact word, 2 word prefix, 1 one
/// edit away from a word; `None` otherwise.
pub(super) fn score(query: &str, text: &str) -> Option<u8> {
    let text = text.to_lowercase();
    let words = std::iter::once(text.as_str()).chain(text.split_whitespace());
    words
        .filter_map(|word| {
            if word == query {
                Some(3)
            } else if word.starts_with(query) {
                Some(2)
            } else if query.chars().count() >= 4 && within_one_edit(query, word) {
                Some(1)
            } else {
                None
            }
        })
        .max()
}

/// Whether `a` becomes `b` by at most one insertion, deletion or substitution.
fn within_one_edit(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    if long.len() - short.len() > 1 {
        return false;
    }
    let prefix = short.iter().zip(&long).take_while(|(x, y)| x == y).count();
    let same_length = short.len() == long.len();
    let rest_short = &short[(prefix + usize::from(same_length)).min(short.len())..];
    let rest_long = &long[(prefix + 1).min(long.len())..];
    rest_short == rest_long
}

/// The best `limit` matches of `query` among `people`: by score, then most recently seen.
fn rank(people: Vec<Person>, query: &str, limit: usize) -> Vec<PersonHit> {
    let mut scored: Vec<(u8, Person)> = people
        .into_iter()
        .filter_map(|person| {
            let best = score(query, &person.name).max(score(query, &person.id))?;
            Some((best, person))
        })
        .collect();
    scored.sort_by(|(a, x), (b, y)| b.cmp(a).then(y.last_seen.cmp(&x.last_seen)));
    scored
        .into_iter()
        .take(limit)
        .map(|(_, person)| PersonHit {
            id: person.id,
            name: person.name,
            last_seen: person.last_seen,
        })
        .collect()
}

/// Searches the people of the caller's tenant by name or id.
#[utoipa::path(get, path = "/v1/search/users", tag = "search", security(("bearer" = [])),
    params(UserSearch),
    responses((status = 200, body = PersonHits), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 429, description = "too many searches (`Retry-After` says when to retry)", body = ErrorBody)))]
pub async fn users(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(params): ApiQuery<UserSearch>,
) -> Result<Json<PersonHits>, AppError> {
    let started = Instant::now();
    state.search().check_rate(&user)?;
    let query = name_query(&params.q)?;
    let limit = params.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(AppError::invalid("`limit` must be between 1 and 100"));
    }
    let users = find(&state, &user, query, limit).await?;
    metrics::search_query("users", started.elapsed());
    Ok(Json(PersonHits { users }))
}

/// A name or id query, trimmed and lower-cased; blank or over 200 characters is `invalid`.
pub(super) fn name_query(q: &str) -> Result<String, AppError> {
    let query = q.trim().to_lowercase();
    if query.is_empty() {
        return Err(AppError::invalid("`q` is empty: give a name or id"));
    }
    if query.chars().count() > 200 {
        return Err(AppError::invalid("`q` is over 200 characters"));
    }
    Ok(query)
}

/// The best `limit` people of the caller's tenant for `query` (from [`name_query`]).
pub(super) async fn find(
    state: &AppState,
    user: &AuthUser,
    query: String,
    limit: usize,
) -> Result<Vec<PersonHit>, AppError> {
    let people = state.store.people(&user.tenant).await?;
    tokio::task::spawn_blocking(move || rank(people, &query, limit))
        .await
        .map_err(AppError::internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(id: &str, name: &str, last_seen: i64) -> Person {
        Person {
            id: id.to_owned(),
            name: name.to_owned(),
            last_seen,
        }
    }

    #[test]
    fn prefixes_words_ids_and_one_typo_match() {
        assert_eq!(score("ali", "Alice Liddell"), Some(2));
        assert_eq!(score("liddell", "Alice Liddell"), Some(3));
        assert_eq!(score("alcie", "Alice"), None);
        assert_eq!(score("alise", "Alice"), Some(1));
        assert_eq!(score("bob", "Alice"), None);
        assert!(within_one_edit("alic", "alice"));
        assert!(!within_one_edit("al", "alice"));
    }

    #[test]
    fn ranks_by_score_then_recency() {
        let people = vec![
            person("u1", "Alicia", 10),
            person("u2", "Ali", 5),
            person("u3", "Alice", 20),
            person("u4", "Bob", 30),
        ];
        let ids: Vec<String> = rank(people, "ali", 10)
            .into_iter()
            .map(|hit| hit.id)
            .collect();
        assert_eq!(ids, ["u2", "u3", "u1"]);
    }
}
