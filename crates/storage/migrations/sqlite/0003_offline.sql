-- weft SQLite schema 0003: offline messages (XEP-0160).
-- Applied once, inside the migration transaction; never edit after release, add a new file.

CREATE TABLE offline_messages (
    -- Arrival order, also within one second. AUTOINCREMENT: an id is never reused, even
    -- after the newest message was removed, so a stale id held by a delivering session can
    -- never remove a message stored later.
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    domain    TEXT    NOT NULL,
    username  TEXT    NOT NULL,
    -- The serialised stanza.
    stanza    TEXT    NOT NULL,
    -- Unix time in seconds, set by weft.
    stored_at INTEGER NOT NULL,
    FOREIGN KEY (domain, username) REFERENCES accounts (domain, username) ON DELETE CASCADE
);

-- An account's messages in order, their count, and the cascade from accounts.
CREATE INDEX offline_messages_account ON offline_messages (domain, username, id);
