-- weft SQLite schema 0006: personal eventing (XEP-0163): each account's pubsub nodes and
-- their items.
-- Applied once, inside the migration transaction; never edit after release, add a new file.

CREATE TABLE pep_nodes (
    domain   TEXT NOT NULL,
    username TEXT NOT NULL,
    node     TEXT NOT NULL,
    -- The node's configuration (XEP-0060 §16.4 pubsub#node_config), as the caller encodes it.
    config   TEXT NOT NULL,
    PRIMARY KEY (domain, username, node),
    FOREIGN KEY (domain, username) REFERENCES accounts (domain, username) ON DELETE CASCADE
);

CREATE TABLE pep_items (
    domain    TEXT NOT NULL,
    username  TEXT NOT NULL,
    node      TEXT NOT NULL,
    item_id   TEXT NOT NULL,
    -- Rising with each publish on the account: the items' order (a republished id moves last).
    seq       INTEGER NOT NULL,
    publisher TEXT NOT NULL,
    -- The item's payload, serialised; empty for an item without one.
    payload   TEXT NOT NULL,
    PRIMARY KEY (domain, username, node, item_id),
    FOREIGN KEY (domain, username, node) REFERENCES pep_nodes (domain, username, node)
        ON DELETE CASCADE
);

-- Items of a node in publish order: the last ones, trimming to max_items.
CREATE INDEX pep_items_by_seq ON pep_items (domain, username, node, seq);
