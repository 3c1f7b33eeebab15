-- Outbound webhooks: signed deliveries (Standard Webhooks) of lead events
-- to the tools marketers use, and the record that an erasure reached each
-- receiver that had been sent the lead (sync/webhook).
--
-- An event is written in the transaction that changed the lead, and only
-- that row: the sync's transaction stays one narrow insert per event. A
-- deliverer fans each new event out to one delivery per matching
-- subscription (one fan-out at a time, in event order), claims due
-- deliveries with a lease (FOR UPDATE SKIP LOCKED) and POSTs them. An erasure scrubs
-- the payloads of every stored event of the lead, cancels what was not yet
-- delivered, and queues lead.erased to every subscription that was sent
-- (or was due) anything about the lead.

-- A stable public id for every lead, which every event carries instead of
-- our internal bigint. A UUIDv7 (time-ordered), so that the indexes on it
-- here and in webhook_events grow at their right edge instead of
-- dirtying a random page per new lead; what it reveals, when the lead
-- was created, every lead.created says anyway. (The new id an erasure
-- gives a surviving lead is random: it must not be linkable to the old
-- one.) Existing leads get one here (the volatile default
-- rewrites the table: run this migration when a short lock on leads is
-- acceptable).
ALTER TABLE mailslot.leads ADD COLUMN public_id uuid NOT NULL DEFAULT uuidv7();
CREATE UNIQUE INDEX leads_public_id ON mailslot.leads (public_id);

-- A receiver. The secrets are stored as they are shown (whsec_<base64>):
-- the deliverer needs them to sign. During a rotation the previous secret
-- signs too, until previous_expires_at. A removed or gone (410) receiver is
-- disabled, not deleted: its deliveries are the record of what it was sent.
CREATE TABLE mailslot.webhook_subscriptions (
    id                  uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    url                 text        NOT NULL CHECK (url LIKE 'https://%' OR url LIKE 'http://%'),
    events              text[]      NOT NULL CHECK (
        cardinality(events) > 0
        AND events <@ ARRAY['lead.created', 'lead.confirmed', 'lead.unsubscribed', 'lead.erased']::text[]),
    property            text, -- NULL: every property
    secret              text        NOT NULL CHECK (secret LIKE 'whsec\_%'),
    previous_secret     text        CHECK (previous_secret LIKE 'whsec\_%'),
    previous_expires_at timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    rotated_at          timestamptz,
    disabled_at         timestamptz,
    disabled_reason     text,
    CHECK ((previous_secret IS NULL) = (previous_expires_at IS NULL)),
    CHECK ((disabled_at IS NULL) = (disabled_reason IS NULL))
);

-- One event about one lead. id is the idempotency key sent as webhook-id:
-- a retried delivery carries the same one (a UUIDv7, time-ordered, for
-- the same reason as leads.public_id). seq orders a lead's events
-- (an identity: unique without an index to keep up). fanned_at is when
-- the event's deliveries were written; until then the event is in
-- webhook_events_unfanned, which the deliverer reads in seq order.
-- payload is the event's "data"; an erasure replaces it with the public id
-- and property alone (scrubbed_at). lead.erased rows name their tombstone.
-- No foreign key to leads: erasure deletes the lead, the record stays.
CREATE TABLE mailslot.webhook_events (
    id             uuid        PRIMARY KEY,
    seq            bigint      GENERATED ALWAYS AS IDENTITY,
    type           text        NOT NULL CHECK (type IN ('lead.created', 'lead.confirmed', 'lead.unsubscribed', 'lead.erased')),
    lead_public_id uuid        NOT NULL,
    property       text        NOT NULL,
    payload        jsonb       NOT NULL,
    tombstone_id   bigint      REFERENCES mailslot.tombstones (id),
    created_at     timestamptz NOT NULL DEFAULT now(),
    scrubbed_at    timestamptz,
    fanned_at      timestamptz,
    CHECK (type = 'lead.erased' OR tombstone_id IS NULL)
);
CREATE INDEX webhook_events_lead ON mailslot.webhook_events (lead_public_id, type);
CREATE INDEX webhook_events_tombstone ON mailslot.webhook_events (tombstone_id) WHERE tombstone_id IS NOT NULL;
CREATE INDEX webhook_events_unfanned ON mailslot.webhook_events (seq) WHERE fanned_at IS NULL;

-- One event to one subscription, written by the fan-out (or, for
-- lead.erased and for an event erased before its fan-out, by the erasure).
-- Finished ones are pruned after a retention (webhook.Prune), but never a
-- lead.erased one, nor a subscription's newest of a lead.
--   pending -> delivering (leased) -> delivered
--                                  -> failed (waits for next_attempt_at) -> delivering ...
--                                  -> dead (retried for 3 days from the first attempt)
--   pending | failed | dead | delivering -> cancelled (lead erased, or subscription disabled)
-- lead_public_id and event_seq are copied from the event so that "is an
-- older event of this lead still undelivered to this subscription" is one
-- probe of webhook_deliveries_lead. A delivery cancelled while in flight
-- keeps its lease until the deliverer reports, so that lead.erased is not
-- sent beside it. last_error never holds the URL's query or the body.
CREATE TABLE mailslot.webhook_deliveries (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscription_id  uuid        NOT NULL REFERENCES mailslot.webhook_subscriptions (id),
    event_id         uuid        NOT NULL REFERENCES mailslot.webhook_events (id),
    lead_public_id   uuid        NOT NULL,
    event_seq        bigint      NOT NULL,
    state            text        NOT NULL DEFAULT 'pending'
                                 CHECK (state IN ('pending', 'delivering', 'delivered', 'failed', 'dead', 'cancelled')),
    attempts         integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    lease_token      uuid,
    lease_owner      text,
    lease_until      timestamptz,
    last_status      integer,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    first_attempt_at timestamptz,
    last_attempt_at  timestamptz,
    delivered_at     timestamptz,
    UNIQUE (event_id, subscription_id),
    CHECK (state <> 'delivering' OR (lease_token IS NOT NULL AND lease_until IS NOT NULL)),
    CHECK ((state = 'delivered') = (delivered_at IS NOT NULL) OR state = 'cancelled')
);
CREATE INDEX webhook_deliveries_due ON mailslot.webhook_deliveries (next_attempt_at) WHERE state IN ('pending', 'failed');
CREATE INDEX webhook_deliveries_leased ON mailslot.webhook_deliveries (lease_until) WHERE state = 'delivering';
-- One index serves the claim's order check (lead, subscription, older
-- seq), an erasure's lookups by lead, and Prune's newest-per-lead check.
-- Every index here is written by the fan-out and again by each state
-- change (the claim, the outcome), so there are few: looking deliveries
-- up by subscription alone (status counts, remove, redeliver) scans.
CREATE INDEX webhook_deliveries_lead ON mailslot.webhook_deliveries (lead_public_id, subscription_id, event_seq);

-- What proves that an erasure reached the receivers: per tombstone, per
-- lead it erased and per subscription, the lead.erased delivery and how it
-- went. `mailslotctl erasures` and `mailslotctl export` join it on
-- tombstone_id. The receiver is shown without its query (it may hold a
-- token).
CREATE VIEW mailslot.webhook_erasure_deliveries AS
SELECT e.tombstone_id,
       e.id                                  AS event_id,
       e.lead_public_id,
       e.property,
       d.subscription_id,
       regexp_replace(s.url, '[?#].*$', '')  AS receiver,
       d.state,
       d.attempts,
       d.last_status,
       d.last_error,
       d.first_attempt_at,
       d.last_attempt_at,
       d.delivered_at
FROM mailslot.webhook_events e
JOIN mailslot.webhook_deliveries d ON d.event_id = e.id
JOIN mailslot.webhook_subscriptions s ON s.id = d.subscription_id
WHERE e.type = 'lead.erased';

-- The edge emits events in the sync's transaction, scrubs them in an
-- erasure's, fans them out, claims, finishes and prunes deliveries, and
-- disables a subscription that answered 410. Subscriptions are added,
-- rotated and removed by mailslotctl as the owner. (Also in grants.sql, so that a role created
-- later gets them.)
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'mailslot_edge') THEN
        GRANT SELECT, UPDATE ON mailslot.webhook_subscriptions TO mailslot_edge;
        GRANT SELECT, INSERT, UPDATE ON mailslot.webhook_events TO mailslot_edge;
        GRANT SELECT, INSERT, UPDATE, DELETE ON mailslot.webhook_deliveries TO mailslot_edge;
        GRANT SELECT ON mailslot.webhook_erasure_deliveries TO mailslot_edge;
    END IF;
END
$$;
