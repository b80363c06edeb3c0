//! Schema version 3: the events stored as frames by older builds, converted to the storage form
//! (`crate::event_form`).
//!
//! Runs inside the migration's transaction, after `0003_event_form.sql` created `events_v3`:
//! every old event is converted into it, then it replaces `events`. A crash leaves version 2
//! whole, and the next start converts again from the start.

use rusqlite::Connection;

use super::common::{event_kind_at, event_message_at, seq_at, seq_to_sql};
use crate::Result;
use crate::event_form::{self, FORM_VERSION};

/// Converts every event of `events` into `events_v3`, which then takes its name.
pub(super) fn events_to_form(conn: &Connection) -> Result<()> {
    let mut read = conn.prepare(
        "SELECT e.conversation_id, e.seq, e.kind, e.subject, e.ts, e.frame,
                m.id, m.author, m.body, m.client_msg_id, m.reply_to, m.attachments
         FROM events e
         LEFT JOIN messages m
           ON e.kind = 'message' AND m.conversation_id = e.conversation_id AND m.seq = e.seq",
    )?;
    let mut write = conn.prepare(
        "INSERT INTO events_v3 (conversation_id, seq, kind, subject, ts, v, data)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    let mut rows = read.query([])?;
    let mut converted = 0u64;
    while let Some(row) = rows.next()? {
        let conversation: String = row.get(0)?;
        let seq = seq_at(row, 1)?;
        let kind = event_kind_at(row, 2)?;
        let subject: Option<String> = row.get(3)?;
        let ts: i64 = row.get(4)?;
        let frame: String = row.get(5)?;
        let message = event_message_at(row, 6)?;
        let data = event_form::data_from_frame(kind, &frame, message.as_ref())?;
        write.execute((
            &conversation,
            seq_to_sql(seq),
            kind.as_str(),
            subject,
            ts,
            FORM_VERSION,
            data,
        ))?;
        converted += 1;
    }
    drop(rows);
    conn.execute_batch("DROP TABLE events; ALTER TABLE events_v3 RENAME TO events;")?;
    tracing::info!(
        events = converted,
        "converted stored events to the storage form"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::schema::{SCHEMA_VERSION, migrate, migrate_to, open_writer, version};
    use super::super::{SqliteOptions, SqliteStore};
    use crate::conformance::legacy::{OLD_EVENTS, OLD_MESSAGES, assert_replays_old_events};
    use crate::{NullSink, Store};

    /// A version-2 database holding [`OLD_EVENTS`] and the rows they left.
    fn version_2_database(dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("db.sqlite");
        let mut conn = open_writer(&path).expect("open");
        migrate_to(&mut conn, 2).expect("version 2");
        conn.execute_batch(
            r#"INSERT INTO conversations (id, tenant, kind, title, created_by, created_at, last_seq, last_activity)
                   VALUES ('c1', 't1', 'group', 'plans', 'ann', 0, 11, 1010);
               INSERT INTO members (tenant, conversation_id, user_id, role, joined_at)
                   VALUES ('t1', 'c1', 'ann', 'owner', 0), ('t1', 'c1', 'bob', 'member', 0);"#,
        )
        .expect("version 2 rows");
        for old in OLD_MESSAGES {
            conn.execute(
                "INSERT INTO messages (id, tenant, conversation_id, seq, author, client_msg_id, body,
                                       reply_to, attachments, created_at, edited_at, deleted_at)
                 VALUES (?1, 't1', 'c1', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                (
                    old.id,
                    old.seq,
                    old.author,
                    old.client_msg_id,
                    old.body,
                    old.reply_to,
                    old.attachments,
                    old.created_at,
                    old.edited_at,
                    old.deleted_at,
                ),
            )
            .expect("old message");
        }
        let mut insert = conn
            .prepare(
                "INSERT INTO events (conversation_id, seq, kind, subject, ts, frame)
                 VALUES ('c1', ?1, ?2, ?3, ?4, ?5)",
            )
            .expect("prepare");
        for old in OLD_EVENTS {
            insert
                .execute((old.seq, old.kind, old.subject, old.ts, old.frame))
                .expect("old event");
        }
        path
    }

    #[tokio::test]
    async fn frames_stored_by_older_builds_replay_byte_for_byte() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = version_2_database(dir.path());
        let store =
            SqliteStore::open(&path, Arc::new(NullSink), SqliteOptions::default()).expect("open");
        assert_replays_old_events(&store).await;
        store.close().await.expect("close");

        // The text of a message is stored once: its unedited message event holds none, and the
        // edited one keeps only the text it was posted with.
        let conn = open_writer(&path).expect("reopen");
        assert_eq!(version(&conn).expect("version"), SCHEMA_VERSION);
        let data: Vec<(i64, Option<String>)> = conn
            .prepare("SELECT seq, data FROM events WHERE kind = 'message' ORDER BY seq")
            .expect("prepare")
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows");
        assert_eq!(
            data,
            [
                (1, Some(r#"{"body":"first \"draft\" ✍"}"#.to_owned())),
                (2, None)
            ]
        );
    }

    #[test]
    fn the_conversion_runs_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = version_2_database(dir.path());
        let mut conn = open_writer(&path).expect("open");
        migrate(&mut conn).expect("migrate");
        let snapshot = |conn: &rusqlite::Connection| -> Vec<(i64, i64, Option<String>)> {
            conn.prepare("SELECT seq, v, data FROM events ORDER BY seq")
                .expect("prepare")
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
                .expect("query")
                .collect::<rusqlite::Result<_>>()
                .expect("rows")
        };
        let once = snapshot(&conn);
        assert_eq!(once.len(), OLD_EVENTS.len());
        migrate(&mut conn).expect("again");
        assert_eq!(snapshot(&conn), once);
    }

    #[test]
    fn a_frame_that_does_not_match_its_message_stops_the_migration_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = version_2_database(dir.path());
        let mut conn = open_writer(&path).expect("open");
        conn.execute("UPDATE messages SET author = 'eve' WHERE id = 'm1'", [])
            .expect("corrupt");
        assert!(migrate(&mut conn).is_err());
        assert_eq!(version(&conn).expect("version"), 2, "nothing was applied");
        let frames: i64 = conn
            .query_row("SELECT count(frame) FROM events", [], |row| row.get(0))
            .expect("the old events are untouched");
        assert_eq!(frames, OLD_EVENTS.len() as i64);
    }
}
