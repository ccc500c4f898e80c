-- weft SQLite schema 0008: the message archive (XEP-0313) in chunks.
-- Applied once, inside the migration transaction; never edit after release, add a new file.
--
-- A chunk holds the messages of one account with one other party that the archive writer
-- wrote in the same batch, up to 32 of them spanning at most one second of ids, in a record
-- format of weft's (weft-storage's archive_chunk.rs). The rows of schema 0005's `archive`
-- table are moved into chunks by the migration's Rust step, which then drops that table.
--
-- An archive belongs to an account or to a multi-user chat room (XEP-0045: domain = the MUC
-- service, username = the room's node), so there is no foreign key to `accounts`: removing
-- an account removes its chunks explicitly, and appends check accounts themselves.

CREATE TABLE archive_chunks (
    chunk     INTEGER PRIMARY KEY,
    domain    TEXT    NOT NULL,
    username  TEXT    NOT NULL,
    -- The other party's bare JID, shared by every message of the chunk.
    with_jid  TEXT    NOT NULL,
    -- The first and last id (XEP-0359 stanza-id, the archiving time in microseconds).
    first_id  INTEGER NOT NULL,
    last_id   INTEGER NOT NULL,
    count     INTEGER NOT NULL CHECK (count > 0),
    messages  BLOB    NOT NULL
);

-- An account's archive in order, and filtered by the other party ("with"): by first id for
-- queries going forward, by last id for those going backward (a page from the end). Unique: a
-- batch written again (a retry after a commit that reported failure) makes the same chunks,
-- which the writer then skips.
CREATE INDEX archive_chunks_account ON archive_chunks (domain, username, first_id);
CREATE UNIQUE INDEX archive_chunks_with ON archive_chunks (domain, username, with_jid, first_id);
CREATE INDEX archive_chunks_account_end ON archive_chunks (domain, username, last_id, first_id);
CREATE INDEX archive_chunks_with_end ON archive_chunks (domain, username, with_jid, last_id, first_id);
-- Retention (the oldest chunks, whatever the account) and the highest id given.
CREATE INDEX archive_chunks_last ON archive_chunks (last_id);
