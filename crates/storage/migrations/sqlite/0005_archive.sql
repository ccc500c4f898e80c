-- weft SQLite schema 0005: the message archive (XEP-0313) and archive preferences.
-- Applied once, inside the migration transaction; never edit after release, add a new file.

-- One row per archived message per account. The id is the XEP-0359 stanza-id the server
-- stamped, unique across the server and also the archiving time in microseconds since the
-- Unix epoch. As the rowid it makes every append an append at the end of the table (ids
-- rise), and retention a range of it; the indexes carry only small keys.
CREATE TABLE archive (
    id            INTEGER PRIMARY KEY,
    domain        TEXT    NOT NULL,
    username      TEXT    NOT NULL,
    -- The other party's bare JID, and its resource when known.
    with_jid      TEXT    NOT NULL,
    with_resource TEXT,
    outgoing      BOOLEAN NOT NULL,
    stanza        TEXT    NOT NULL,
    FOREIGN KEY (domain, username) REFERENCES accounts (domain, username) ON DELETE CASCADE
);

-- An account's archive in order, and filtered by the other party ("with").
CREATE INDEX archive_account ON archive (domain, username, id);
CREATE INDEX archive_with ON archive (domain, username, with_jid, id);

-- Preferences of accounts that set any (XEP-0313 §4.2); the lists hold one bare JID per line.
CREATE TABLE archive_prefs (
    domain       TEXT NOT NULL,
    username     TEXT NOT NULL,
    default_mode TEXT NOT NULL CHECK (default_mode IN ('always', 'never', 'roster')),
    always_jids  TEXT NOT NULL,
    never_jids   TEXT NOT NULL,
    PRIMARY KEY (domain, username),
    FOREIGN KEY (domain, username) REFERENCES accounts (domain, username) ON DELETE CASCADE
);
