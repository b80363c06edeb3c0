-- Confab schema, version 2: client ids are deduplicated through a table merged in bulk.
--
-- Version 1 kept UNIQUE (conversation_id, author, client_msg_id) on `messages`. Every author's
-- ids are clustered in that index, so a commit of N messages from N authors dirtied N leaf pages,
-- each written whole to the WAL: half of the writer's time. Now `client_ids` holds the same keys,
-- but the writer adds them in bulk (sorted, each leaf written once per merge) for every message
-- past `dedupe_state.merged_pos`, and remembers the few not merged yet in memory (reloaded from
-- `messages` on start). `messages.pos` is the order messages were stored in (an INTEGER PRIMARY
-- KEY, so that VACUUM keeps it).

CREATE TABLE messages_v2 (
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
    deleted_at      INTEGER,
    UNIQUE (conversation_id, seq)
);

INSERT INTO messages_v2
    (pos, id, tenant, conversation_id, seq, author, client_msg_id, body, reply_to, attachments,
     created_at, edited_at, deleted_at)
SELECT rowid, id, tenant, conversation_id, seq, author, client_msg_id, body, reply_to, attachments,
       created_at, edited_at, deleted_at
FROM messages ORDER BY rowid;

DROP TABLE messages;
ALTER TABLE messages_v2 RENAME TO messages;

-- (conversation, author, client id) of every message up to `dedupe_state.merged_pos`.
CREATE TABLE client_ids (
    conversation_id TEXT    NOT NULL,
    author          TEXT    NOT NULL,
    client_msg_id   TEXT    NOT NULL,
    message_pos     INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, author, client_msg_id)
) WITHOUT ROWID;

INSERT INTO client_ids (conversation_id, author, client_msg_id, message_pos)
SELECT conversation_id, author, client_msg_id, pos FROM messages
ORDER BY conversation_id, author, client_msg_id;

CREATE TABLE dedupe_state (
    only       INTEGER PRIMARY KEY CHECK (only = 1),
    merged_pos INTEGER NOT NULL
);

INSERT INTO dedupe_state (only, merged_pos) SELECT 1, coalesce(max(pos), 0) FROM messages;
