-- Confab schema, version 1.
--
-- Every row carries its tenant (directly or through its message) and every query filters on it.
-- Seqs are per conversation: `conversations.last_seq` is bumped by the single writer inside the
-- transaction that writes the event, so they are gapless and unique.

CREATE TABLE conversations (
    id            TEXT    NOT NULL PRIMARY KEY,
    tenant        TEXT    NOT NULL,
    kind          TEXT    NOT NULL CHECK (kind IN ('group', 'direct')),
    title         TEXT,
    created_by    TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    archived      INTEGER NOT NULL DEFAULT 0,
    last_seq      INTEGER NOT NULL DEFAULT 0,
    last_activity INTEGER NOT NULL,
    -- Direct conversations: both user ids, sorted, joined with U+001F. NULL for groups.
    direct_key    TEXT,
    UNIQUE (tenant, direct_key)
);

CREATE TABLE members (
    tenant          TEXT    NOT NULL,
    conversation_id TEXT    NOT NULL REFERENCES conversations (id),
    user_id         TEXT    NOT NULL,
    role            TEXT    NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    joined_at       INTEGER NOT NULL,
    read_seq        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation_id, user_id)
) WITHOUT ROWID;

CREATE INDEX members_by_user ON members (tenant, user_id);

CREATE TABLE messages (
    id              TEXT    NOT NULL PRIMARY KEY,
    tenant          TEXT    NOT NULL,
    conversation_id TEXT    NOT NULL REFERENCES conversations (id),
    seq             INTEGER NOT NULL,
    author          TEXT    NOT NULL,
    client_msg_id   TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    reply_to        TEXT,
    -- JSON array of attachments, NULL when there are none.
    attachments     TEXT,
    created_at      INTEGER NOT NULL,
    edited_at       INTEGER,
    deleted_at      INTEGER,
    UNIQUE (conversation_id, seq),
    UNIQUE (conversation_id, author, client_msg_id)
);

CREATE TABLE reactions (
    message_id TEXT    NOT NULL REFERENCES messages (id),
    user_id    TEXT    NOT NULL,
    emoji      TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (message_id, emoji, user_id)
) WITHOUT ROWID;

CREATE TABLE events (
    conversation_id TEXT    NOT NULL REFERENCES conversations (id),
    seq             INTEGER NOT NULL,
    kind            TEXT    NOT NULL,
    -- The member concerned by a member event, else NULL.
    subject         TEXT,
    ts              INTEGER NOT NULL,
    -- The event's ServerFrame as JSON, serialized once at commit and replayed as is.
    frame           TEXT    NOT NULL,
    PRIMARY KEY (conversation_id, seq)
) WITHOUT ROWID;
