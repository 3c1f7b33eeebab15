-- A tombstone whose scrub failed here (anything but the disk refusing
-- writes, which stops every write alike). The pull cursor moves past it so
-- that one tombstone cannot keep every later erasure from this edge; the
-- failure stays here and is retried, with backoff, until it applies, and
-- the edge's status counts it. Meanwhile Postgres already holds the
-- tombstone, so a row of the address that this edge syncs is dropped
-- there, never resurrected.
CREATE TABLE tombstone_failures (
    id              INTEGER PRIMARY KEY, -- the tombstone's id in Postgres
    email_hmac      BLOB    NOT NULL,
    erased_at       INTEGER NOT NULL,    -- unix milliseconds
    attempts        INTEGER NOT NULL,
    first_failed_at INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT    NOT NULL
) STRICT;
