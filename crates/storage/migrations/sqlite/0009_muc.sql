-- weft SQLite schema 0009: persistent multi-user chat rooms (XEP-0045).
-- Applied once, inside the migration transaction; never edit after release, add a new file.

-- One row per persistent room: its configuration, affiliations and subject as one document
-- (JSON written by the MUC module).
CREATE TABLE muc_rooms (
    service    TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    data       TEXT    NOT NULL,
    -- Unix time in seconds of the last write, set by weft.
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (service, name)
);
