-- Core tables for sign-ups, consent, telemetry and the sync ledger.
-- Every name is schema-qualified: the edge's connections may run with an
-- empty search_path, and an unqualified name must fail loudly.

CREATE SCHEMA IF NOT EXISTS mailslot;

-- One row per edge node: where its sync stands.
CREATE TABLE mailslot.nodes (
    node_id       text        PRIMARY KEY,
    region        text        NOT NULL,
    last_seq      bigint      NOT NULL DEFAULT 0,
    rows_synced   bigint      NOT NULL DEFAULT 0,
    last_sync_at  timestamptz,
    first_seen_at timestamptz NOT NULL DEFAULT now()
);

-- The ledger makes sync idempotent: (node_id, seq) names one outbox row
-- forever, and a replayed row finds its key here and changes nothing.
CREATE TABLE mailslot.ledger (
    node_id       text        NOT NULL,
    seq           bigint      NOT NULL,
    kind          text        NOT NULL,
    submission_id uuid        NOT NULL,
    received_at   timestamptz NOT NULL,
    applied_at    timestamptz NOT NULL DEFAULT now(),
    -- applied, or why the row was not applied (for example an erasure
    -- that happened after the row was captured).
    outcome       text        NOT NULL DEFAULT 'applied',
    PRIMARY KEY (node_id, seq)
);

-- One lead per property and normalized email. Consent is merged from every
-- submission by rules that do not depend on arrival order (see
-- sync/drain/apply.go): the strongest basis ever given, the latest time of
-- each kind, and a status derived from them.
CREATE TABLE mailslot.leads (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    property         text        NOT NULL,
    email            text        NOT NULL,
    email_hmac       bytea       NOT NULL,
    name             text,
    consent_basis    text        NOT NULL CHECK (consent_basis IN ('pending', 'implied', 'express')),
    express_at       timestamptz,
    implied_at       timestamptz,
    withdrawn_at     timestamptz,
    -- withdrawn wins unless an express opt-in came after it.
    consent_status   text        GENERATED ALWAYS AS (
        CASE WHEN withdrawn_at IS NOT NULL AND (express_at IS NULL OR express_at <= withdrawn_at)
             THEN 'withdrawn' ELSE consent_basis END) STORED,
    first_seen_at    timestamptz NOT NULL,
    first_utm        jsonb,
    first_page       text,
    first_referrer   text,
    last_seen_at     timestamptz NOT NULL,
    last_utm         jsonb,
    last_page        text,
    last_referrer    text,
    submissions      integer     NOT NULL DEFAULT 1,
    UNIQUE (property, email_hmac)
);
CREATE INDEX leads_email_hmac ON mailslot.leads (email_hmac);

-- Consent records are append-only proof (PIPEDA/CASL): what was agreed,
-- under which policy, when, from where. They hold no email; email_hmac
-- lets erasure find records whose lead is gone.
CREATE TABLE mailslot.consent_records (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    lead_id        bigint      REFERENCES mailslot.leads (id) ON DELETE SET NULL,
    submission_id  uuid        NOT NULL UNIQUE,
    email_hmac     bytea,
    property       text        NOT NULL,
    policy_version text,
    status         text        NOT NULL CHECK (status IN ('pending', 'express', 'implied', 'withdrawn')),
    source         text,
    recorded_at    timestamptz NOT NULL,
    ip_hmac        bytea,
    origin_node    text        NOT NULL,
    origin_seq     bigint      NOT NULL
);
CREATE INDEX consent_records_lead ON mailslot.consent_records (lead_id);
CREATE INDEX consent_records_email_hmac ON mailslot.consent_records (email_hmac);

-- Telemetry. lead_id is set when an event names the submission that
-- created a lead, and nulled when that lead is erased.
CREATE TABLE mailslot.events (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    submission_id uuid        NOT NULL UNIQUE,
    lead_id       bigint      REFERENCES mailslot.leads (id) ON DELETE SET NULL,
    property      text        NOT NULL,
    type          text        NOT NULL,
    received_at   timestamptz NOT NULL,
    client_time   timestamptz,
    payload       jsonb       NOT NULL,
    ip_hmac       bytea,
    origin_node   text        NOT NULL,
    origin_seq    bigint      NOT NULL
);
CREATE INDEX events_received_at ON mailslot.events (received_at);
CREATE INDEX events_lead ON mailslot.events (lead_id) WHERE lead_id IS NOT NULL;
