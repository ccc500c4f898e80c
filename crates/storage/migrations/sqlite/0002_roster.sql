-- weft SQLite schema 0002: rosters (RFC 6121 §2, subscription states of Appendix A) and
-- roster versions (RFC 6121 §2.6).
-- Applied once, inside the migration transaction; never edit after release, add a new file.

-- One row per account whose roster ever changed; no row means version 0. Raised in the same
-- transaction as each change to the account's roster items.
CREATE TABLE roster_versions (
    domain   TEXT    NOT NULL,
    username TEXT    NOT NULL,
    version  INTEGER NOT NULL,
    PRIMARY KEY (domain, username),
    FOREIGN KEY (domain, username) REFERENCES accounts (domain, username) ON DELETE CASCADE
);

-- The primary key also serves the whole-roster read (ordered by contact) and point lookups.
CREATE TABLE roster_items (
    domain            TEXT    NOT NULL,
    username          TEXT    NOT NULL,
    -- The contact's bare JID.
    contact           TEXT    NOT NULL,
    name              TEXT,
    -- 'none', 'to', 'from' or 'both' (RFC 6121 §2.1.2.5).
    subscription      TEXT    NOT NULL CHECK (subscription IN ('none', 'to', 'from', 'both')),
    -- Booleans as 0/1.
    pending_out       BOOLEAN NOT NULL,
    pending_in        BOOLEAN NOT NULL,
    approved          BOOLEAN NOT NULL,
    -- In the roster the user sees (RFC 6121 §2.1.3). A contact that only asked for the
    -- user's presence is kept unlisted until the user answers (§3.1.3).
    listed            BOOLEAN NOT NULL,
    -- The contact's serialised subscribe request while pending_in (RFC 6121 §3.1.3).
    pending_in_stanza TEXT,
    PRIMARY KEY (domain, username, contact),
    FOREIGN KEY (domain, username) REFERENCES accounts (domain, username) ON DELETE CASCADE
);

-- Groups in a table of their own rather than encoded in a column of roster_items: a group
-- name is any text (commas, quotes, brackets), so a table needs no encoding, and it is plain
-- SQL on every backend where a JSON column would need each backend's JSON functions. The
-- primary key keeps an item's groups unique, serves the join of the whole-roster read in
-- (contact, group) order, and a later shared-groups feature can query it by name.
CREATE TABLE roster_groups (
    domain     TEXT NOT NULL,
    username   TEXT NOT NULL,
    contact    TEXT NOT NULL,
    group_name TEXT NOT NULL,
    PRIMARY KEY (domain, username, contact, group_name),
    FOREIGN KEY (domain, username) REFERENCES accounts (domain, username) ON DELETE CASCADE,
    -- Removing the item removes its groups.
    FOREIGN KEY (domain, username, contact)
        REFERENCES roster_items (domain, username, contact) ON DELETE CASCADE
);
