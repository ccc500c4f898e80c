-- weft SQLite schema 0005: the message archive (XEP-0313) and archive preferences.
-- Applied once, inside the migration transaction; never edit after release, add a new file.

-- One row per archived message per account. The id is the XEP-0359 stanza-id the server
-- stamped, which is also the archiving time in microseconds since the Unix epoch: the
-- primary key orders an account's archive and serves the time and id filters.
CREATE TABLE archive (
    domain        TEXT    NOT NULL,
    username      TEXT    NOT NULL,
    id            INTEGER NOT NULL,
    -- The other party's bare JID, and its resource when known.
    with_jid      TEXT    NOT NULL,
    with_resource TEXT,
    outgoing      BOOLEAN NOT NULL,
    stanza        TEXT    NOT NULL,
    PRIMARY KEY (domain, username, id),
    FOREIGN KEY (domain, username) REFERENCES accounts (domain, username) ON DELETE CASCADE
) WITHOUT ROWID;

-- Queries filtered by the other party ("with").
CREATE INDEX archive_with ON archive (domain, username, with_jid, id);
-- Retention: the oldest messages of every account at once.
CREATE INDEX archive_age ON archive (id);

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
