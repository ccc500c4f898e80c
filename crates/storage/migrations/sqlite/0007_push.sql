-- weft SQLite schema 0007: push notification registrations (XEP-0357).
-- Applied once, inside the migration transaction; never edit after release, add a new file.

-- One row per (account, app server, node) the account enabled.
CREATE TABLE push_registrations (
    domain          TEXT    NOT NULL,
    username        TEXT    NOT NULL,
    -- The app server's JID ('jid' of <enable/>) and its node.
    service         TEXT    NOT NULL,
    node            TEXT    NOT NULL,
    -- The full JID of the session that enabled it: notifications for a hibernated or inactive
    -- session go to the registrations it made.
    enabled_by      TEXT    NOT NULL,
    -- The serialised XEP-0004 form of publish-options, sent with each notification; NULL when
    -- none was given.
    publish_options TEXT,
    -- Unix time in seconds, set by weft.
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (domain, username, service, node),
    FOREIGN KEY (domain, username) REFERENCES accounts (domain, username) ON DELETE CASCADE
);
