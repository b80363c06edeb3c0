-- Confab schema, version 6: each user's own events (added to / removed from a conversation,
-- role changed, read marker moved), with a gapless per-user seq. Only the last few per user
-- are kept (storage/src/user_events.rs).

CREATE TABLE user_events (
    tenant          TEXT    NOT NULL,
    user_id         TEXT    NOT NULL,
    seq             INTEGER NOT NULL,
    kind            TEXT    NOT NULL,
    conversation_id TEXT    NOT NULL,
    role            TEXT,
    read_seq        INTEGER,
    ts              INTEGER NOT NULL,
    PRIMARY KEY (tenant, user_id, seq)
) WITHOUT ROWID;
