-- Confab schema, version 8: a conversation's last seq and latest activity are its events'.
--
-- Up to version 7 every event bumped `conversations.last_seq` and `last_activity`: under chat
-- load (one commit per message) that row's leaf was one of the five or six pages each message
-- wrote to the WAL, and two of its statements. Now the writer takes the next seq from the last
-- event of the conversation (a look-up at the end of its `events` key range, the leaf the new
-- event goes to anyway, or the writer's cache), and readers derive both from the same place.
--
-- The columns stay, renamed, as floors: the last seq and activity a build before version 8
-- recorded. Seqs handed out since are above `seq_floor` whatever the events say (an older
-- database whose events ended below its `last_seq` keeps its seqs unique), and a conversation
-- with no events yet is as active as its creation (`activity_floor` = `created_at`).
-- Renaming a column rewrites the schema only, not the table.

ALTER TABLE conversations RENAME COLUMN last_seq TO seq_floor;
ALTER TABLE conversations RENAME COLUMN last_activity TO activity_floor;
