-- Confab schema, version 3: durable events are kept in a versioned storage form, not as frames.
--
-- Version 2 kept each event's serialized `ServerFrame` (`frame`), so a message's text was stored
-- twice (in `messages` and in its event's frame) and any change to a frame would have been a
-- data migration. Now an event keeps `v`, the version of its storage form, and `data`, the
-- kind's payload as compact JSON; the server renders frames from them. A `message` event reads
-- its text from its message's row (same conversation and seq): its `data` is NULL until the
-- message is edited (it then keeps the text it was posted with) or deleted.
--
-- This file creates the new table; the old frames are then converted in Rust, and the new table
-- replaces the old one (`storage/src/sqlite/migrate_events.rs`), all in one transaction.

CREATE TABLE events_v3 (
    conversation_id TEXT    NOT NULL REFERENCES conversations (id),
    seq             INTEGER NOT NULL,
    kind            TEXT    NOT NULL,
    -- The member concerned by a member event, else NULL.
    subject         TEXT,
    ts              INTEGER NOT NULL,
    -- The version of the storage form `data` is written in.
    v               INTEGER NOT NULL,
    -- The kind's payload as compact JSON (NULL: a message event that says what its row says).
    data            TEXT,
    PRIMARY KEY (conversation_id, seq)
) WITHOUT ROWID;
