-- Mail: the confirmation and welcome messages that complete double opt-in,
-- sent from Postgres by any edge's dispatcher (sync/mailer).
--
-- A job names its lead, never an address: the dispatcher reads the
-- address (and the name) from the lead when it sends, so a job holds no
-- personal data, and erasing the lead deletes its jobs (ON DELETE
-- CASCADE) in the erasure's own statement. last_error is written by the
-- dispatcher from errors that have the recipient taken out (internal/mail).

-- Per-property settings, set by `mailslotctl properties set`. A property
-- without a row uses the fleet defaults: MAILSLOT_MAIL_FROM and the
-- MAILSLOT_SENDER_* identification, double opt-in on, no welcome, the
-- built-in templates. Settings that other features add later (a
-- challenge per property, for one) are further columns of this table.
CREATE TABLE mailslot.properties (
    property              text        PRIMARY KEY,
    -- The property's name as recipients know it ("Café Zoë Newsletter");
    -- NULL means the property key itself.
    display_name          text,
    -- Overrides of the fleet's sender: "Name <address>" and the CASL
    -- identification. NULL means the fleet default.
    mail_from             text,
    sender_name           text,
    sender_postal_address text,
    sender_contact        text,
    -- Whether a pending sign-up is sent a confirmation request.
    double_opt_in         boolean     NOT NULL DEFAULT true,
    -- Whether a confirmation that applies queues a welcome.
    welcome               boolean     NOT NULL DEFAULT false,
    -- Template sources, {"confirmation": {"subject", "text", "html"},
    -- "welcome": {…}}; an absent field is the built-in default. They are
    -- parsed and checked by mailslotctl before they are stored here.
    templates             jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(templates) = 'object'),
    updated_at            timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE mailslot.mail_jobs (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    lead_id          bigint      NOT NULL REFERENCES mailslot.leads (id) ON DELETE CASCADE,
    property         text        NOT NULL,
    kind             text        NOT NULL CHECK (kind IN ('confirmation', 'welcome')),
    -- queued (waiting for next_attempt_at) -> sending (leased) -> sent |
    -- queued again after a temporary failure | dead (out of attempts) |
    -- failed (a permanent refusal) | uncertain (the server may have
    -- accepted it; never resent without an operator) | skipped (no longer
    -- eligible when it came to be sent) | cancelled (unsubscribe,
    -- confirmation, or an operator).
    state            text        NOT NULL DEFAULT 'queued'
                                 CHECK (state IN ('queued', 'sending', 'sent', 'failed', 'dead', 'cancelled', 'uncertain', 'skipped')),
    -- A confirmation request to an address that had withdrawn or was
    -- suppressed when the new sign-up came: the only mail such an address
    -- may get, and throttled harder.
    after_withdrawal boolean     NOT NULL DEFAULT false,
    attempts         integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    -- The lease, as for image jobs: every write a dispatcher makes names
    -- lease_token, so one that lost its job changes nothing. A lease that
    -- runs out while sending leaves the job uncertain, not queued: the
    -- message may have gone.
    lease_token      uuid,
    lease_owner      text,
    lease_until      timestamptz,
    -- The Message-ID the job's message carries, and the provider's id of
    -- the accepted message (Resend's email id, which its webhooks name).
    message_id       text,
    provider_id      text,
    last_error       text,
    -- What the provider reported after delivery: bounce or complaint.
    feedback         text        CHECK (feedback IN ('bounce', 'complaint')),
    feedback_at      timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz,
    CHECK ((state = 'sending') = (lease_token IS NOT NULL AND lease_until IS NOT NULL))
);
CREATE INDEX mail_jobs_ready ON mailslot.mail_jobs (next_attempt_at, id) WHERE state = 'queued';
CREATE INDEX mail_jobs_leased ON mailslot.mail_jobs (lease_until) WHERE state = 'sending';
CREATE INDEX mail_jobs_lead ON mailslot.mail_jobs (lead_id, kind, created_at);
CREATE INDEX mail_jobs_state ON mailslot.mail_jobs (state, id);
CREATE INDEX mail_jobs_provider_id ON mailslot.mail_jobs (provider_id) WHERE provider_id IS NOT NULL;
-- One welcome per lead, however often it confirms.
CREATE UNIQUE INDEX mail_jobs_one_welcome ON mailslot.mail_jobs (lead_id) WHERE kind = 'welcome';

-- mail_blocked_since is when an address stopped accepting mail on a
-- property, or NULL when it accepts it: its latest withdrawal or
-- suppression (an unsubscribe, an erasure of the address, a hard bounce
-- or a complaint), unless a confirmation through the confirm link came
-- after it. Only a confirmed opt-in lifts a withdrawal; an anonymous
-- sign-up claiming express consent does not.
CREATE FUNCTION mailslot.mail_blocked_since(
    p_property text, p_email_hmac bytea, p_withdrawn_at timestamptz, p_confirmed_at timestamptz)
RETURNS timestamptz
LANGUAGE sql STABLE
AS $$
    SELECT CASE WHEN b.at IS NOT NULL AND (p_confirmed_at IS NULL OR p_confirmed_at <= b.at) THEN b.at END
    FROM (SELECT GREATEST(p_withdrawn_at,
                          (SELECT max(s.created_at) FROM mailslot.suppressions s
                           WHERE s.email_hmac = p_email_hmac AND s.property IN ('', p_property))) AS at) b
$$;
