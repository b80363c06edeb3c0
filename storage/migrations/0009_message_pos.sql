-- Confab schema, version 9: a message's event points at its row by `pos`; `messages` loses its
-- `UNIQUE (conversation_id, seq)` index.
--
-- Under chat load each message is its own commit, and that index's leaf (one per conversation,
-- spread over the file) was 1.3 of the ~5 WAL frames each wrote. The same order is already the
-- `events` key: reads now walk a conversation's events and join a `message` event's row by
-- `pos` (the rowid), and `events`' primary key keeps (conversation, seq) unique.
--
-- `events.pos` is filled while the old index can still find the rows; `messages` is then rebuilt
-- without it, as in version 2 (`pos` kept, so `client_ids` still points at the right rows).

ALTER TABLE events ADD COLUMN pos INTEGER;

UPDATE events SET pos = (
    SELECT m.pos FROM messages m
    WHERE m.conversation_id = events.conversation_id AND m.seq = events.seq
)
WHERE kind = 'message';

CREATE TABLE messages_v9 (
    pos             INTEGER PRIMARY KEY,
    id              TEXT    NOT NULL UNIQUE,
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
    deleted_at      INTEGER
);

INSERT INTO messages_v9
    (pos, id, tenant, conversation_id, seq, author, client_msg_id, body, reply_to, attachments,
     created_at, edited_at, deleted_at)
SELECT pos, id, tenant, conversation_id, seq, author, client_msg_id, body, reply_to, attachments,
       created_at, edited_at, deleted_at
FROM messages ORDER BY pos;

DROP TABLE messages;
ALTER TABLE messages_v9 RENAME TO messages;
