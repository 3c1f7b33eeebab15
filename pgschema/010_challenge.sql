-- Bot challenges (internal/challenge): which challenge each property's
-- sign-up form uses, and the verdict each sign-up got.
--
-- Operators write property_challenges with `mailslotctl challenge`; every
-- edge pulls the whole table periodically (sync/challenges) and keeps the
-- last copy in its data directory, so it enforces the settings while
-- Postgres is down. The Turnstile/hCaptcha secret is stored here because
-- every edge needs it to call siteverify; the proof-of-work HMAC key is
-- not (MAILSLOT_CHALLENGE_KEY, the same on every edge).
CREATE TABLE mailslot.property_challenges (
    property   text        PRIMARY KEY CHECK (length(property) BETWEEN 1 AND 64),
    kind       text        NOT NULL CHECK (kind IN ('none', 'turnstile', 'hcaptcha', 'pow')),
    site_key   text        NOT NULL DEFAULT '' CHECK (length(site_key) <= 200),
    secret     text        NOT NULL DEFAULT '' CHECK (length(secret) <= 200),
    hostnames  text[]      NOT NULL DEFAULT '{}' CHECK (cardinality(hostnames) <= 32),
    action     text        NOT NULL DEFAULT '' CHECK (length(action) <= 64),
    -- What a form posted without any token (JavaScript off) gets: held
    -- (stored unverified, no mail) or refused (303 to the error page).
    no_js      text        NOT NULL DEFAULT 'hold' CHECK (no_js IN ('hold', 'refuse')),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK (kind NOT IN ('turnstile', 'hcaptcha') OR (secret <> '' AND cardinality(hostnames) > 0))
);

-- The verdict of each sign-up's check, NULL when its property had no
-- challenge. The edge stores only passed or unverified (a failed or
-- replayed token is refused); a later re-check turns unverified into
-- passed or failed. Mail goes to a sign-up only when its verdict is NULL
-- or passed.
ALTER TABLE mailslot.consent_records
    ADD COLUMN challenge_verdict    text CHECK (challenge_verdict IN ('passed', 'unverified', 'failed')),
    ADD COLUMN challenge_checked_at timestamptz;

-- A lead's summary: passed once any of its sign-ups passed, else
-- unverified when any was challenged, NULL when none was.
ALTER TABLE mailslot.leads
    ADD COLUMN challenge_verdict text CHECK (challenge_verdict IN ('passed', 'unverified'));

CREATE INDEX consent_records_unverified ON mailslot.consent_records (recorded_at)
    WHERE challenge_verdict = 'unverified';
