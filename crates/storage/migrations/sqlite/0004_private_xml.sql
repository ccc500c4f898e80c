-- weft SQLite schema 0004: per-account XML documents by key (XEP-0049 private XML storage,
-- XEP-0054 vcard-temp).
-- Applied once, inside the migration transaction; never edit after release, add a new file.

-- The primary key serves every query (point reads and writes by key).
CREATE TABLE private_xml (
    domain   TEXT NOT NULL,
    username TEXT NOT NULL,
    -- Chosen by the caller, e.g. 'jabber:iq:private storage:bookmarks' or 'vcard-temp'.
    doc_key  TEXT NOT NULL,
    -- The serialised document; may be empty.
    xml      TEXT NOT NULL,
    PRIMARY KEY (domain, username, doc_key),
    FOREIGN KEY (domain, username) REFERENCES accounts (domain, username) ON DELETE CASCADE
);

-- Which accounts have a given document (read once at start by the features that act only for
-- those accounts: blocklists, vCards).
CREATE INDEX private_xml_by_key ON private_xml (doc_key);
