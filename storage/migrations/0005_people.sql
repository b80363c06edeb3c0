-- Confab schema, version 5: the directory of people of each tenant.
--
-- A row per user seen (connected or called the API): the display name from their last token
-- and when they were last seen. The server writes it at most once a minute per user, or when
-- the name changes, so it stays cheap.

CREATE TABLE people (
    tenant    TEXT    NOT NULL,
    id        TEXT    NOT NULL,
    name      TEXT    NOT NULL,
    last_seen INTEGER NOT NULL,
    PRIMARY KEY (tenant, id)
) WITHOUT ROWID;
