//! The directory of people: one row per (tenant, user), written on the writer thread, read on
//! a reader connection.

use rusqlite::Connection;

use crate::backend::Sighting;
use crate::{Person, Result};

pub(super) fn record_people(conn: &Connection, sightings: &[Sighting]) -> Result<()> {
    let mut upsert = conn.prepare_cached(
        "INSERT INTO people (tenant, id, name, last_seen) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (tenant, id) DO UPDATE
         SET name = excluded.name, last_seen = MAX(last_seen, excluded.last_seen)",
    )?;
    for sighting in sightings {
        upsert.execute((
            &sighting.tenant,
            &sighting.user,
            &sighting.name,
            sighting.seen_at,
        ))?;
    }
    Ok(())
}

pub(super) fn people(conn: &Connection, tenant: &str) -> Result<Vec<Person>> {
    let people = conn
        .prepare_cached("SELECT id, name, last_seen FROM people WHERE tenant = ?1 ORDER BY id")?
        .query_map([tenant], |row| {
            Ok(Person {
                id: row.get(0)?,
                name: row.get(1)?,
                last_seen: row.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(people)
}
