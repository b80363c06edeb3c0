-- Confab schema, version 7: each user's recent search queries (`GET /v1/search/recent`).
--
-- One row per distinct query of a user; searching it again moves it to the front (a new
-- `seq`, the user's highest plus one). Only the last few per user are kept
-- (storage/src/recent_queries.rs).

CREATE TABLE recent_queries (
    tenant  TEXT    NOT NULL,
    user_id TEXT    NOT NULL,
    query   TEXT    NOT NULL,
    seq     INTEGER NOT NULL,
    at      INTEGER NOT NULL,
    PRIMARY KEY (tenant, user_id, query)
) WITHOUT ROWID;

CREATE INDEX recent_queries_by_seq ON recent_queries (tenant, user_id, seq);
