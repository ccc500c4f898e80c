-- weft SQLite schema 0001: accounts and their SCRAM credentials (RFC 5802, RFC 7677).
-- Applied once, inside the migration transaction; never edit after release, add a new file.

CREATE TABLE accounts (
    domain     TEXT    NOT NULL,
    username   TEXT    NOT NULL,
    -- Unix time in seconds, set by weft (not by a SQL default) so the SQL stays portable.
    created_at INTEGER NOT NULL,
    PRIMARY KEY (domain, username)
);

CREATE TABLE scram_credentials (
    domain     TEXT    NOT NULL,
    username   TEXT    NOT NULL,
    -- SCRAM hash name as in the mechanism name: 'SHA-1' or 'SHA-256'.
    hash       TEXT    NOT NULL,
    salt       BLOB    NOT NULL,
    iterations INTEGER NOT NULL,
    stored_key BLOB    NOT NULL,
    server_key BLOB    NOT NULL,
    PRIMARY KEY (domain, username, hash),
    FOREIGN KEY (domain, username) REFERENCES accounts (domain, username) ON DELETE CASCADE
);
