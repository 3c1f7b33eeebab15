-- outbox.id loses its UNIQUE constraint. Ids are UUIDv7 made by the edge,
-- nothing looks a row up by id, and the constraint's index cost a B-tree
-- insert per accepted row (about a fifth of the insert) and a page per
-- commit. SQLite cannot drop a constraint, so the table is rebuilt.
--
-- AUTOINCREMENT's high-water mark lives in sqlite_sequence under the
-- table's name: it is moved to the new table before the old one is dropped
-- (DROP deletes the row of that name, RENAME renames it), so seq never
-- goes back to a value used by rows already pruned.
CREATE TABLE outbox_new (
    seq               INTEGER PRIMARY KEY AUTOINCREMENT,
    id                TEXT    NOT NULL,
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

INSERT INTO outbox_new (seq, id, node_id, kind, received_at, idem_key, payload, email_hmac, ip_hmac,
                        synced_at, quarantined_at, quarantine_reason)
SELECT seq, id, node_id, kind, received_at, idem_key, payload, email_hmac, ip_hmac,
       synced_at, quarantined_at, quarantine_reason
FROM outbox ORDER BY seq;

DELETE FROM sqlite_sequence WHERE name = 'outbox_new';
UPDATE sqlite_sequence SET name = 'outbox_new' WHERE name = 'outbox';
DROP TABLE outbox;
ALTER TABLE outbox_new RENAME TO outbox;

CREATE INDEX outbox_pending ON outbox (seq)
    WHERE synced_at IS NULL AND quarantined_at IS NULL;

CREATE INDEX outbox_synced_at ON outbox (synced_at) WHERE synced_at IS NOT NULL;
