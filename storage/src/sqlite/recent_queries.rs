//! Users' recent search queries (see [`crate::recent_queries`]): written on the writer thread,
//! read on a reader connection.

use rusqlite::Connection;

use crate::backend::Searched;
use crate::{RECENT_QUERIES_RETAINED, RecentQuery, Result};

/// Makes `searched.query` the user's newest query and forgets those past the bound.
pub(super) fn record_query(conn: &Connection, searched: &Searched) -> Result<()> {
    let (tenant, user) = (&searched.tenant, &searched.user);
    conn.prepare_cached(
        "INSERT INTO recent_queries (tenant, user_id, query, seq, at)
         VALUES (?1, ?2, ?3,
             (SELECT COALESCE(MAX(seq), 0) + 1 FROM recent_queries
              WHERE tenant = ?1 AND user_id = ?2), ?4)
         ON CONFLICT (tenant, user_id, query) DO UPDATE
         SET seq = excluded.seq, at = excluded.at",
    )?
    .execute((tenant, user, &searched.query, searched.at))?;
    conn.prepare_cached(
        "DELETE FROM recent_queries WHERE tenant = ?1 AND user_id = ?2 AND seq <
             (SELECT MIN(seq) FROM (SELECT seq FROM recent_queries
              WHERE tenant = ?1 AND user_id = ?2 ORDER BY seq DESC LIMIT ?3))",
    )?
    .execute((tenant, user, RECENT_QUERIES_RETAINED))?;
    Ok(())
}

pub(super) fn recent_queries(
    conn: &Connection,
    tenant: &str,
    user: &str,
) -> Result<Vec<RecentQuery>> {
    let queries = conn
        .prepare_cached(
            "SELECT query, at FROM recent_queries WHERE tenant = ?1 AND user_id = ?2
             ORDER BY seq DESC LIMIT ?3",
        )?
        .query_map((tenant, user, RECENT_QUERIES_RETAINED), |row| {
            Ok(RecentQuery {
                query: row.get(0)?,
                at: row.get(1)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(queries)
}

pub(super) fn clear_recent_queries(conn: &Connection, tenant: &str, user: &str) -> Result<()> {
    conn.prepare_cached("DELETE FROM recent_queries WHERE tenant = ?1 AND user_id = ?2")?
        .execute((tenant, user))?;
    Ok(())
}
