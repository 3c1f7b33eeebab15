-- The outbox holds every accepted submission until Postgres has applied it,
-- and for a retention window after that so operators can reconcile.
--
-- seq is AUTOINCREMENT rather than a plain rowid alias: a plain rowid is
-- reused after the highest rows are pruned, and (node_id, seq) must never
-- name two different submissions.
CREATE TABLE outbox (
    seq               INTEGER PRIMARY KEY AUTOINCREMENT,
    id                TEXT    NOT NULL UNIQUE,
    node_id           TEXT    NOT NULL,
    kind              TEXT    NOT NULL,
    received_at       INTEGER NOT NULL, -- unix milliseconds
    idem_key          TEXT,
    payload           TEXT    NOT NULL, -- normalized JSON
    email_hmac        BLOB,
    ip_hmac           BLOB,
    synced_at         INTEGER,          -- unix milliseconds of the Postgres commit
    quarantined_at    INTEGER,
    quarantine_reason TEXT
) STRICT;

-- Only pending rows are in this index, so finding the next batch stays cheap
-- however many synced rows the retention window keeps.
CREATE INDEX outbox_pending ON outbox (seq)
    WHERE synced_at IS NULL AND quarantined_at IS NULL;

CREATE INDEX outbox_synced_at ON outbox (synced_at) WHERE synced_at IS NOT NULL;

-- idempotency remembers the first answer to a keyed request so that a retry
-- gets it again and stores nothing new.
CREATE TABLE idempotency (
    key        TEXT    PRIMARY KEY, -- "<kind>:<client key>"
    body_hash  BLOB    NOT NULL,
    response   TEXT    NOT NULL,
    first_seq  INTEGER NOT NULL,
    created_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- meta holds facts about this outbox file itself, such as the node that owns it.
CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT, WITHOUT ROWID;
