-- Erasure and suppression (PIPEDA, CASL).

-- A tombstone says: every record of this address captured up to erased_at
-- is gone and must never come back. Tombstones are append-only; edges pull
-- them by id (a cursor) and scrub their outboxes, and sync drops any row a
-- tombstone covers, however late it arrives.
CREATE TABLE mailslot.tombstones (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email_hmac   bytea       NOT NULL,
    erased_at    timestamptz NOT NULL,
    requested_by text        NOT NULL, -- admin, self_service, operator
    origin_node  text,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tombstones_email_hmac ON mailslot.tombstones (email_hmac, erased_at);

-- A suppression keeps an address from being contacted again: after an
-- unsubscribe (one property) or an erasure (every property: property is
-- NULL). It holds the hash only.
CREATE TABLE mailslot.suppressions (
    email_hmac bytea       NOT NULL,
    property   text        NOT NULL DEFAULT '', -- '' means every property
    reason     text        NOT NULL CHECK (reason IN ('unsubscribed', 'erased')),
    created_at timestamptz NOT NULL,
    PRIMARY KEY (email_hmac, property)
);

-- Telemetry purges, so that an operator can show when data left.
CREATE TABLE mailslot.purges (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    what       text        NOT NULL,
    cutoff     timestamptz NOT NULL,
    rows       bigint      NOT NULL,
    purged_by  text        NOT NULL,
    purged_at  timestamptz NOT NULL DEFAULT now()
);

-- The sign-up an event names (its submission_id), in a column rather than
-- inside the payload, so that erasure can find and clear it by index.
ALTER TABLE mailslot.events ADD COLUMN lead_submission uuid;
CREATE INDEX events_lead_submission ON mailslot.events (lead_submission) WHERE lead_submission IS NOT NULL;
