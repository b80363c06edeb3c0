-- Confab schema, version 4: media files' metadata (their bytes are in the media store).
--
-- A file belongs to the conversations in `media_links` (the one named at upload, those it was
-- attached in): their members see it. `downloads` counts completed reads.

CREATE TABLE media (
    tenant       TEXT    NOT NULL,
    id           TEXT    NOT NULL,
    uploader     TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    content_type TEXT    NOT NULL,
    size         INTEGER NOT NULL,
    sha256       TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    downloads    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, id)
) WITHOUT ROWID;

CREATE TABLE media_links (
    tenant          TEXT NOT NULL,
    media_id        TEXT NOT NULL,
    conversation_id TEXT NOT NULL REFERENCES conversations (id),
    PRIMARY KEY (tenant, media_id, conversation_id),
    FOREIGN KEY (tenant, media_id) REFERENCES media (tenant, id) ON DELETE CASCADE
) WITHOUT ROWID;

CREATE INDEX media_links_by_conversation ON media_links (conversation_id);
