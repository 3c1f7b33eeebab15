-- Reports: telemetry partitioned by month, rollups that keep reports fast,
-- report views that hold aggregates only, and a record of lead exports.
--
-- Days and months are UTC throughout.

-------------------------------------------------------------------------------
-- 1. mailslot.events, partitioned by month of received_at
-------------------------------------------------------------------------------
--
-- Purging telemetry becomes dropping whole months (no row-by-row DELETE,
-- no bloat), and a report on a range reads only its months.
--
-- A unique constraint on a partitioned table must include the partition
-- key, so UNIQUE (submission_id) becomes UNIQUE (submission_id,
-- received_at). Nothing is lost: exactly-once comes from the ledger's
-- (node_id, seq), and a replayed outbox row carries the same
-- received_at as its first delivery (the edge stamps it once, at
-- acceptance), so a replay still collides here as it did before.
-- Likewise the primary key becomes (id, received_at).
--
-- The old table is renamed, its rows copied into the partitioned table
-- (ids, and the id sequence's position, kept), and dropped; the indexes,
-- foreign key and grants are recreated under their old names.

ALTER TABLE mailslot.events RENAME TO events_unpartitioned;
ALTER SEQUENCE mailslot.events_id_seq RENAME TO events_unpartitioned_id_seq;

CREATE TABLE mailslot.events (
    id              bigint      GENERATED ALWAYS AS IDENTITY,
    submission_id   uuid        NOT NULL,
    lead_id         bigint,
    property        text        NOT NULL,
    type            text        NOT NULL,
    received_at     timestamptz NOT NULL,
    client_time     timestamptz,
    payload         jsonb       NOT NULL,
    ip_hmac         bytea,
    origin_node     text        NOT NULL,
    origin_seq      bigint      NOT NULL,
    lead_submission uuid
) PARTITION BY RANGE (received_at);

-- The default partition takes a row no monthly partition covers (a clock
-- far off, a month nobody created yet), so an insert is never refused.
-- ensure_event_partitions moves such rows into their month when it
-- creates it.
CREATE TABLE mailslot.events_default PARTITION OF mailslot.events DEFAULT;

-- ensure_event_partitions creates the monthly partitions events_YYYY_MM
-- for `months` months from the month of from_month, skipping those that
-- exist, and returns how many it created. Rows waiting in the default
-- partition for a new month move into it. It runs as the schema owner so
-- that the edge role, which has no DDL rights, can call it from the sync;
-- callers serialize on an advisory lock.
CREATE FUNCTION mailslot.ensure_event_partitions(from_month date, months integer)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
SET DateStyle = 'ISO, YMD'
AS $$
DECLARE
    first_month date;
    m date;
    part text;
    created integer := 0;
BEGIN
    IF from_month IS NULL OR months IS NULL OR months < 1 OR months > 1200 THEN
        RAISE EXCEPTION 'ensure_event_partitions: want a date and 1 to 1200 months, got % and %', from_month, months
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pg_advisory_xact_lock(7010001);
    first_month := date_trunc('month', from_month::timestamp)::date;
    FOR i IN 0 .. months - 1 LOOP
        m := (first_month + make_interval(months => i))::date;
        part := 'events_' || to_char(m, 'YYYY_MM');
        CONTINUE WHEN to_regclass('mailslot.' || part) IS NOT NULL;
        EXECUTE format('CREATE TABLE mailslot.%I (LIKE mailslot.events INCLUDING DEFAULTS)', part);
        EXECUTE format($q$WITH moved AS (
                              DELETE FROM mailslot.events_default WHERE received_at >= $1 AND received_at < $2 RETURNING *)
                          INSERT INTO mailslot.%I SELECT * FROM moved$q$, part)
            USING m::timestamptz, (m + interval '1 month')::timestamptz;
        EXECUTE format('ALTER TABLE mailslot.events ATTACH PARTITION mailslot.%I FOR VALUES FROM (%L) TO (%L)',
                       part, m::timestamptz, (m + interval '1 month')::timestamptz);
        created := created + 1;
    END LOOP;
    RETURN created;
END
$$;
REVOKE ALL ON FUNCTION mailslot.ensure_event_partitions(date, integer) FROM PUBLIC;

-- Partitions for every month the existing rows span, through three
-- months ahead.
DO $$
DECLARE
    this_month date := date_trunc('month', now() AT TIME ZONE 'UTC')::date;
    first_month date;
BEGIN
    SELECT least(date_trunc('month', min(received_at) AT TIME ZONE 'UTC')::date, this_month)
    INTO first_month FROM mailslot.events_unpartitioned;
    PERFORM mailslot.ensure_event_partitions(first_month,
        ((extract(year FROM this_month) - extract(year FROM first_month)) * 12
         + extract(month FROM this_month) - extract(month FROM first_month))::integer + 4);
END
$$;

INSERT INTO mailslot.events (id, submission_id, lead_id, property, type, received_at, client_time, payload,
                             ip_hmac, origin_node, origin_seq, lead_submission)
OVERRIDING SYSTEM VALUE
SELECT id, submission_id, lead_id, property, type, received_at, client_time, payload,
       ip_hmac, origin_node, origin_seq, lead_submission
FROM mailslot.events_unpartitioned;

DO $$
DECLARE
    old_rows bigint;
    new_rows bigint;
    last bigint;
    called boolean;
BEGIN
    SELECT count(*) INTO old_rows FROM mailslot.events_unpartitioned;
    SELECT count(*) INTO new_rows FROM mailslot.events;
    IF old_rows <> new_rows THEN
        RAISE EXCEPTION 'partitioning events: % rows copied of %', new_rows, old_rows;
    END IF;
    -- New ids continue where the old sequence stood, even past deleted rows.
    SELECT last_value, is_called INTO last, called FROM mailslot.events_unpartitioned_id_seq;
    PERFORM setval(pg_get_serial_sequence('mailslot.events', 'id'), last, called);
END
$$;

DROP TABLE mailslot.events_unpartitioned;

ALTER TABLE mailslot.events ADD CONSTRAINT events_pkey PRIMARY KEY (id, received_at);
ALTER TABLE mailslot.events ADD CONSTRAINT events_submission_id_received_at_key UNIQUE (submission_id, received_at);
ALTER TABLE mailslot.events ADD CONSTRAINT events_lead_id_fkey
    FOREIGN KEY (lead_id) REFERENCES mailslot.leads (id) ON DELETE SET NULL;
CREATE INDEX events_received_at ON mailslot.events (received_at);
CREATE INDEX events_lead ON mailslot.events (lead_id) WHERE lead_id IS NOT NULL;
CREATE INDEX events_lead_submission ON mailslot.events (lead_submission) WHERE lead_submission IS NOT NULL;

-- grants.sql grants these again after every migrate run; granting here
-- too means the sync is never refused in between.
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'mailslot_edge') THEN
        GRANT SELECT, INSERT, UPDATE ON mailslot.events TO mailslot_edge;
    END IF;
END
$$;

-- purge_event_partitions drops the monthly partitions that lie wholly
-- before cutoff (detach, then drop: no row-by-row delete), deletes the
-- default partition's rows from before the same boundary, and records the
-- purge in mailslot.purges as the row-by-row purge does. The boundary is
-- the start of cutoff's month (UTC): a month is dropped only when every
-- row in it is older than cutoff. With dry_run it counts and changes
-- nothing.
CREATE FUNCTION mailslot.purge_event_partitions(cutoff timestamptz, purged_by text, dry_run boolean DEFAULT false)
RETURNS TABLE (purged_partitions integer, purged_rows bigint, purged_before timestamptz)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
SET DateStyle = 'ISO, YMD'
AS $$
DECLARE
    p record;
    n bigint;
BEGIN
    IF cutoff IS NULL OR purged_by IS NULL OR purged_by = '' THEN
        RAISE EXCEPTION 'purge_event_partitions: want a cutoff and who purges' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pg_advisory_xact_lock(7010001);
    purged_before := date_trunc('month', cutoff);
    purged_partitions := 0;
    purged_rows := 0;
    FOR p IN
        SELECT c.relname,
               substring(pg_get_expr(c.relpartbound, c.oid) FROM 'TO \(''([^'']+)''\)')::timestamptz AS upper_bound
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'mailslot.events'::regclass
          AND pg_get_expr(c.relpartbound, c.oid) <> 'DEFAULT'
        ORDER BY 2
    LOOP
        CONTINUE WHEN p.upper_bound IS NULL OR p.upper_bound > purged_before;
        EXECUTE format('SELECT count(*) FROM mailslot.%I', p.relname) INTO n;
        purged_rows := purged_rows + n;
        purged_partitions := purged_partitions + 1;
        IF NOT dry_run THEN
            EXECUTE format('ALTER TABLE mailslot.events DETACH PARTITION mailslot.%I', p.relname);
            EXECUTE format('DROP TABLE mailslot.%I', p.relname);
        END IF;
    END LOOP;
    IF dry_run THEN
        SELECT count(*) INTO n FROM mailslot.events_default WHERE received_at < purged_before;
    ELSE
        DELETE FROM mailslot.events_default WHERE received_at < purged_before;
        GET DIAGNOSTICS n = ROW_COUNT;
    END IF;
    purged_rows := purged_rows + n;
    IF NOT dry_run THEN
        INSERT INTO mailslot.purges (what, cutoff, rows, purged_by) VALUES ('events', purged_before, purged_rows, purged_by);
    END IF;
    RETURN NEXT;
END
$$;
REVOKE ALL ON FUNCTION mailslot.purge_event_partitions(timestamptz, text, boolean) FROM PUBLIC;

-------------------------------------------------------------------------------
-- 2. Rollups
-------------------------------------------------------------------------------
--
-- At a million leads and ten million events no report can scan its base
-- tables in the 200 ms a person waits for, and an index cannot help a
-- report over all time. So reports read small per-day rollups. They are
-- kept exact without slowing the sync:
--
--  * A statement-level trigger on leads, suppressions and events appends
--    (kind, day, property) to rollup_dirty for what each statement
--    touched: one small INSERT per sync batch, no unique key, so no row
--    lock that two edges' batches could queue on.
--  * The cell views below read the rollup for clean (day, property) pairs
--    and compute dirty pairs live from the base tables (an index range
--    each), so every report is exact even before a refresh.
--  * refresh_reports() folds dirty pairs into the rollups and forgets
--    their marks; it is what keeps the live part small. Call it from the
--    sync's maintenance loop or before a report (it is cheap when little
--    changed).
--
-- Rollups keep their counts after events are purged (the counts hold no
-- personal data). Leads are counted in their current state: a lead that
-- is confirmed, withdrawn or erased later moves its first day's counts.

CREATE TABLE mailslot.rollup_dirty (
    id        bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind      text        NOT NULL CHECK (kind IN ('lead', 'event')),
    day       date        NOT NULL,
    property  text        NOT NULL,
    marked_at timestamptz NOT NULL DEFAULT now()
);

-- Leads by the day (UTC) and page of their first sign-up.
CREATE TABLE mailslot.rollup_lead_pages (
    day         date   NOT NULL,
    property    text   NOT NULL,
    page        text   NOT NULL, -- '' when the sign-up named none
    signups     integer NOT NULL,
    confirmed   integer NOT NULL,
    unconfirmed integer NOT NULL,
    withdrawn   integer NOT NULL,
    suppressed  integer NOT NULL,
    pending     integer NOT NULL,
    implied     integer NOT NULL
);
CREATE INDEX rollup_lead_pages_day ON mailslot.rollup_lead_pages (day, property);

-- Leads by the day of their first sign-up and their first and last touch.
CREATE TABLE mailslot.rollup_lead_campaigns (
    day            date   NOT NULL,
    property       text   NOT NULL,
    first_source   text   NOT NULL,
    first_medium   text   NOT NULL,
    first_campaign text   NOT NULL,
    last_source    text   NOT NULL,
    last_medium    text   NOT NULL,
    last_campaign  text   NOT NULL,
    signups        integer NOT NULL,
    confirmed      integer NOT NULL,
    unconfirmed    integer NOT NULL,
    withdrawn      integer NOT NULL,
    suppressed     integer NOT NULL
);
CREATE INDEX rollup_lead_campaigns_day ON mailslot.rollup_lead_campaigns (day, property);

-- Events by the day they were received and their page.
CREATE TABLE mailslot.rollup_events (
    day           date   NOT NULL,
    property      text   NOT NULL,
    page          text   NOT NULL,
    page_views    integer NOT NULL,
    form_submits  integer NOT NULL,
    form_accepted integer NOT NULL,
    clicks        integer NOT NULL,
    custom        integer NOT NULL
);
CREATE INDEX rollup_events_day ON mailslot.rollup_events (day, property);

-- (The clean parts below use NOT IN, not NOT EXISTS: both sides are NOT
-- NULL, and NOT IN becomes one hashed lookup per rollup row where NOT
-- EXISTS became a rescan of the mark table per row.)
--
-- The live parts join each dirty pair both ways: by the time range, so a
-- few pairs are an index range each, and by the day itself, so that many
-- pairs (a refresh after a long pause) are one hash join rather than every
-- row compared with every pair of its property.
--
-- The live parts read leads by property and first sign-up time; the
-- consent report reads implied leads by when consent was implied.
CREATE INDEX leads_property_first_seen ON mailslot.leads (property, first_seen_at);
CREATE INDEX leads_implied ON mailslot.leads (property, implied_at) WHERE consent_status = 'implied';

-- lead_states is every lead's report state, one definition for the
-- reports and the export. A lead is exactly one of confirmed, unconfirmed
-- and withdrawn:
--  * withdrawn: its consent status is withdrawn;
--  * confirmed: confirmed through the confirm link (confirmed_at) and not
--    withdrawn since;
--  * unconfirmed: the rest (pending, or an unconfirmed express or implied
--    consent).
-- suppressed (an address-level suppression for the property or for every
-- property, not overturned by a later confirmation) overlaps the three.
CREATE VIEW mailslot.lead_states AS
SELECT l.id AS lead_id,
       l.property,
       l.first_seen_at,
       (l.first_seen_at AT TIME ZONE 'UTC')::date AS day,
       coalesce(l.first_page, '') AS first_page,
       coalesce(l.first_utm ->> 'source', '') AS first_source,
       coalesce(l.first_utm ->> 'medium', '') AS first_medium,
       coalesce(l.first_utm ->> 'campaign', '') AS first_campaign,
       coalesce(l.last_utm ->> 'source', '') AS last_source,
       coalesce(l.last_utm ->> 'medium', '') AS last_medium,
       coalesce(l.last_utm ->> 'campaign', '') AS last_campaign,
       l.consent_status = 'withdrawn' AS withdrawn,
       (l.consent_status <> 'withdrawn' AND l.confirmed_at IS NOT NULL
        AND (l.withdrawn_at IS NULL OR l.withdrawn_at < l.confirmed_at)) AS confirmed,
       l.consent_status = 'pending' AS pending,
       l.consent_status = 'implied' AS implied,
       EXISTS (SELECT 1 FROM mailslot.suppressions s
               WHERE s.email_hmac = l.email_hmac AND s.property IN (l.property, '')
                 AND (l.confirmed_at IS NULL OR s.created_at >= l.confirmed_at)) AS suppressed
FROM mailslot.leads l;

CREATE VIEW mailslot.lead_page_cells AS
SELECT r.day, r.property, r.page, r.signups, r.confirmed, r.unconfirmed, r.withdrawn, r.suppressed, r.pending, r.implied
FROM mailslot.rollup_lead_pages r
WHERE (r.day, r.property) NOT IN (SELECT d.day, d.property FROM mailslot.rollup_dirty d WHERE d.kind = 'lead')
UNION ALL
SELECT s.day, s.property, s.first_page,
       count(*)::integer,
       count(*) FILTER (WHERE s.confirmed)::integer,
       count(*) FILTER (WHERE NOT s.confirmed AND NOT s.withdrawn)::integer,
       count(*) FILTER (WHERE s.withdrawn)::integer,
       count(*) FILTER (WHERE s.suppressed)::integer,
       count(*) FILTER (WHERE s.pending)::integer,
       count(*) FILTER (WHERE s.implied)::integer
FROM (SELECT DISTINCT day, property FROM mailslot.rollup_dirty WHERE kind = 'lead') d
JOIN mailslot.lead_states s ON s.property = d.property AND s.day = d.day
 AND s.first_seen_at >= d.day::timestamp AT TIME ZONE 'UTC' AND s.first_seen_at < (d.day + 1)::timestamp AT TIME ZONE 'UTC'
GROUP BY s.day, s.property, s.first_page;

CREATE VIEW mailslot.lead_campaign_cells AS
SELECT r.day, r.property, r.first_source, r.first_medium, r.first_campaign, r.last_source, r.last_medium, r.last_campaign,
       r.signups, r.confirmed, r.unconfirmed, r.withdrawn, r.suppressed
FROM mailslot.rollup_lead_campaigns r
WHERE (r.day, r.property) NOT IN (SELECT d.day, d.property FROM mailslot.rollup_dirty d WHERE d.kind = 'lead')
UNION ALL
SELECT s.day, s.property, s.first_source, s.first_medium, s.first_campaign, s.last_source, s.last_medium, s.last_campaign,
       count(*)::integer,
       count(*) FILTER (WHERE s.confirmed)::integer,
       count(*) FILTER (WHERE NOT s.confirmed AND NOT s.withdrawn)::integer,
       count(*) FILTER (WHERE s.withdrawn)::integer,
       count(*) FILTER (WHERE s.suppressed)::integer
FROM (SELECT DISTINCT day, property FROM mailslot.rollup_dirty WHERE kind = 'lead') d
JOIN mailslot.lead_states s ON s.property = d.property AND s.day = d.day
 AND s.first_seen_at >= d.day::timestamp AT TIME ZONE 'UTC' AND s.first_seen_at < (d.day + 1)::timestamp AT TIME ZONE 'UTC'
GROUP BY s.day, s.property, s.first_source, s.first_medium, s.first_campaign, s.last_source, s.last_medium, s.last_campaign;

-- A form submit's outcome is what the client script saw ("accepted" when
-- the edge took the sign-up; edge/intake/event.go, web/mailslot.js).
CREATE VIEW mailslot.event_cells AS
SELECT r.day, r.property, r.page, r.page_views, r.form_submits, r.form_accepted, r.clicks, r.custom
FROM mailslot.rollup_events r
WHERE (r.day, r.property) NOT IN (SELECT d.day, d.property FROM mailslot.rollup_dirty d WHERE d.kind = 'event')
UNION ALL
SELECT (e.received_at AT TIME ZONE 'UTC')::date, e.property, coalesce(e.payload ->> 'page', ''),
       count(*) FILTER (WHERE e.type = 'page_view')::integer,
       count(*) FILTER (WHERE e.type = 'form_submit')::integer,
       count(*) FILTER (WHERE e.type = 'form_submit' AND e.payload -> 'props' ->> 'outcome' = 'accepted')::integer,
       count(*) FILTER (WHERE e.type = 'click')::integer,
       count(*) FILTER (WHERE e.type = 'custom')::integer
FROM (SELECT DISTINCT day, property FROM mailslot.rollup_dirty WHERE kind = 'event') d
JOIN mailslot.events e ON e.property = d.property AND (e.received_at AT TIME ZONE 'UTC')::date = d.day
 AND e.received_at >= d.day::timestamp AT TIME ZONE 'UTC' AND e.received_at < (d.day + 1)::timestamp AT TIME ZONE 'UTC'
GROUP BY 1, 2, 3;

-- The marking triggers run as the schema owner, so the edge role needs no
-- grant on rollup_dirty.
CREATE FUNCTION mailslot.rollup_mark_leads() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO mailslot.rollup_dirty (kind, day, property)
        SELECT DISTINCT 'lead', (first_seen_at AT TIME ZONE 'UTC')::date, property FROM new_rows;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO mailslot.rollup_dirty (kind, day, property)
        SELECT DISTINCT 'lead', (first_seen_at AT TIME ZONE 'UTC')::date, property
        FROM (SELECT first_seen_at, property FROM new_rows UNION ALL SELECT first_seen_at, property FROM old_rows) r;
    ELSE
        INSERT INTO mailslot.rollup_dirty (kind, day, property)
        SELECT DISTINCT 'lead', (first_seen_at AT TIME ZONE 'UTC')::date, property FROM old_rows;
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION mailslot.rollup_mark_leads() FROM PUBLIC;
CREATE TRIGGER leads_rollup_insert AFTER INSERT ON mailslot.leads
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION mailslot.rollup_mark_leads();
CREATE TRIGGER leads_rollup_update AFTER UPDATE ON mailslot.leads
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION mailslot.rollup_mark_leads();
CREATE TRIGGER leads_rollup_delete AFTER DELETE ON mailslot.leads
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION mailslot.rollup_mark_leads();

-- A suppression changes the state of every lead of its address (of one
-- property, or of all when property is '').
CREATE FUNCTION mailslot.rollup_mark_suppressions() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO mailslot.rollup_dirty (kind, day, property)
        SELECT DISTINCT 'lead', (l.first_seen_at AT TIME ZONE 'UTC')::date, l.property
        FROM new_rows s JOIN mailslot.leads l ON l.email_hmac = s.email_hmac AND (s.property = '' OR l.property = s.property);
    ELSE
        INSERT INTO mailslot.rollup_dirty (kind, day, property)
        SELECT DISTINCT 'lead', (l.first_seen_at AT TIME ZONE 'UTC')::date, l.property
        FROM old_rows s JOIN mailslot.leads l ON l.email_hmac = s.email_hmac AND (s.property = '' OR l.property = s.property);
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION mailslot.rollup_mark_suppressions() FROM PUBLIC;
CREATE TRIGGER suppressions_rollup_insert AFTER INSERT ON mailslot.suppressions
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION mailslot.rollup_mark_suppressions();
CREATE TRIGGER suppressions_rollup_update AFTER UPDATE ON mailslot.suppressions
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION mailslot.rollup_mark_suppressions();
CREATE TRIGGER suppressions_rollup_delete AFTER DELETE ON mailslot.suppressions
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION mailslot.rollup_mark_suppressions();

-- Events are only ever inserted as far as counts go: erasure clears their
-- links, purges drop them and the rollups keep the counts.
CREATE FUNCTION mailslot.rollup_mark_events() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO mailslot.rollup_dirty (kind, day, property)
    SELECT DISTINCT 'event', (received_at AT TIME ZONE 'UTC')::date, property FROM new_rows;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION mailslot.rollup_mark_events() FROM PUBLIC;
CREATE TRIGGER events_rollup_insert AFTER INSERT ON mailslot.events
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION mailslot.rollup_mark_events();

-- refresh_reports folds the dirty (day, property) pairs it sees into the
-- rollups and deletes exactly the marks it read: a mark committed while
-- it runs stays for the next refresh. Refreshers serialize on an
-- advisory lock. It returns how many pairs of each kind it refreshed.
CREATE FUNCTION mailslot.refresh_reports()
RETURNS TABLE (lead_days integer, event_days integer)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ids bigint[];
BEGIN
    PERFORM pg_advisory_xact_lock(7010002);
    SELECT array_agg(id) INTO ids FROM mailslot.rollup_dirty;
    IF ids IS NULL THEN
        lead_days := 0;
        event_days := 0;
        RETURN NEXT;
        RETURN;
    END IF;
    -- The cell views compute the still-marked pairs live: copy those.
    WITH pairs AS (SELECT DISTINCT day, property FROM mailslot.rollup_dirty WHERE id = ANY (ids) AND kind = 'lead'),
    gone AS (DELETE FROM mailslot.rollup_lead_pages r USING pairs p WHERE r.day = p.day AND r.property = p.property)
    INSERT INTO mailslot.rollup_lead_pages
    SELECT c.* FROM mailslot.lead_page_cells c JOIN pairs p ON c.day = p.day AND c.property = p.property;

    WITH pairs AS (SELECT DISTINCT day, property FROM mailslot.rollup_dirty WHERE id = ANY (ids) AND kind = 'lead'),
    gone AS (DELETE FROM mailslot.rollup_lead_campaigns r USING pairs p WHERE r.day = p.day AND r.property = p.property)
    INSERT INTO mailslot.rollup_lead_campaigns
    SELECT c.* FROM mailslot.lead_campaign_cells c JOIN pairs p ON c.day = p.day AND c.property = p.property;

    WITH pairs AS (SELECT DISTINCT day, property FROM mailslot.rollup_dirty WHERE id = ANY (ids) AND kind = 'event'),
    gone AS (DELETE FROM mailslot.rollup_events r USING pairs p WHERE r.day = p.day AND r.property = p.property)
    INSERT INTO mailslot.rollup_events
    SELECT c.* FROM mailslot.event_cells c JOIN pairs p ON c.day = p.day AND c.property = p.property;

    SELECT count(DISTINCT (day, property)) FILTER (WHERE kind = 'lead'),
           count(DISTINCT (day, property)) FILTER (WHERE kind = 'event')
    INTO lead_days, event_days
    FROM mailslot.rollup_dirty WHERE id = ANY (ids);
    DELETE FROM mailslot.rollup_dirty WHERE id = ANY (ids);
    RETURN NEXT;
END
$$;
REVOKE ALL ON FUNCTION mailslot.refresh_reports() FROM PUBLIC;

-- The rollups start from what is already stored.
INSERT INTO mailslot.rollup_lead_pages
SELECT day, property, first_page, count(*)::integer,
       count(*) FILTER (WHERE confirmed)::integer, count(*) FILTER (WHERE NOT confirmed AND NOT withdrawn)::integer,
       count(*) FILTER (WHERE withdrawn)::integer, count(*) FILTER (WHERE suppressed)::integer,
       count(*) FILTER (WHERE pending)::integer, count(*) FILTER (WHERE implied)::integer
FROM mailslot.lead_states GROUP BY day, property, first_page;

INSERT INTO mailslot.rollup_lead_campaigns
SELECT day, property, first_source, first_medium, first_campaign, last_source, last_medium, last_campaign, count(*)::integer,
       count(*) FILTER (WHERE confirmed)::integer, count(*) FILTER (WHERE NOT confirmed AND NOT withdrawn)::integer,
       count(*) FILTER (WHERE withdrawn)::integer, count(*) FILTER (WHERE suppressed)::integer
FROM mailslot.lead_states
GROUP BY day, property, first_source, first_medium, first_campaign, last_source, last_medium, last_campaign;

INSERT INTO mailslot.rollup_events
SELECT (received_at AT TIME ZONE 'UTC')::date, property, coalesce(payload ->> 'page', ''),
       count(*) FILTER (WHERE type = 'page_view')::integer,
       count(*) FILTER (WHERE type = 'form_submit')::integer,
       count(*) FILTER (WHERE type = 'form_submit' AND payload -> 'props' ->> 'outcome' = 'accepted')::integer,
       count(*) FILTER (WHERE type = 'click')::integer,
       count(*) FILTER (WHERE type = 'custom')::integer
FROM mailslot.events GROUP BY 1, 2, 3;

-------------------------------------------------------------------------------
-- 3. Report views: aggregates only, no email, no hash, no name, no IP
-------------------------------------------------------------------------------
--
-- These names and columns are a contract (internal/report/README.md). A value the
-- visitor did not give (no UTM, no page) is NULL. Rates are NULL when
-- their denominator is zero.

-- Sign-ups by the day (UTC) of the lead's first sign-up, its property and
-- its first- and last-touch UTM, counted in the leads' current state.
-- confirmed + unconfirmed + withdrawn = signups; suppressed overlaps them.
CREATE VIEW mailslot.report_signups_daily AS
SELECT day, property,
       nullif(first_source, '') AS first_source, nullif(first_medium, '') AS first_medium,
       nullif(first_campaign, '') AS first_campaign,
       nullif(last_source, '') AS last_source, nullif(last_medium, '') AS last_medium,
       nullif(last_campaign, '') AS last_campaign,
       signups, confirmed, unconfirmed, withdrawn, suppressed
FROM mailslot.lead_campaign_cells;

-- Per page and day: page views, form submits (and those the script saw
-- accepted), new leads whose first sign-up was on the page, and those of
-- them confirmed now. The client script carries no visitor id, so these
-- are ratios of counts on one page and day, not visitors' paths: a
-- sign-up from a form posted without JavaScript has no form_submit event,
-- and accept_rate can exceed 1.
CREATE VIEW mailslot.report_funnel_daily AS
SELECT day, property, nullif(page, '') AS page,
       page_views, form_submits, form_accepted, signups, confirmed,
       round(form_submits::numeric / nullif(page_views, 0), 4) AS submit_rate,
       round(signups::numeric / nullif(form_submits, 0), 4) AS accept_rate,
       round(signups::numeric / nullif(page_views, 0), 4) AS signup_rate,
       round(confirmed::numeric / nullif(signups, 0), 4) AS confirm_rate
FROM (SELECT day, property, page,
             sum(page_views)::integer AS page_views, sum(form_submits)::integer AS form_submits,
             sum(form_accepted)::integer AS form_accepted,
             sum(signups)::integer AS signups, sum(confirmed)::integer AS confirmed
      FROM (SELECT day, property, page, page_views, form_submits, form_accepted, 0 AS signups, 0 AS confirmed
            FROM mailslot.event_cells
            UNION ALL
            SELECT day, property, page, 0, 0, 0, signups, confirmed
            FROM mailslot.lead_page_cells) u
      GROUP BY day, property, page) g;

-- Consent per property, now. Pending ages are whole days (UTC) since the
-- first sign-up. Implied consent lapses as `mailslotctl consent lapsed`
-- says (cmd/mailslotctl/retention.go): two years after a purchase,
-- customer or ebr source, six months (183 days) otherwise, counted from
-- the latest implied consent.
CREATE VIEW mailslot.report_consent AS
WITH per_day AS (
    SELECT property, day, sum(signups) AS signups, sum(confirmed) AS confirmed, sum(withdrawn) AS withdrawn,
           sum(suppressed) AS suppressed, sum(pending) AS pending, sum(implied) AS implied
    FROM mailslot.lead_page_cells GROUP BY property, day),
ranked AS (
    SELECT property, day, pending,
           sum(pending) OVER (PARTITION BY property ORDER BY day DESC) AS younger_or_same,
           sum(pending) OVER (PARTITION BY property) AS all_pending
    FROM per_day WHERE pending > 0),
ages AS (
    SELECT property,
           (now() AT TIME ZONE 'UTC')::date - max(day) FILTER (WHERE 2 * younger_or_same >= all_pending) AS median_age,
           (now() AT TIME ZONE 'UTC')::date - min(day) AS max_age
    FROM ranked GROUP BY property),
totals AS (
    SELECT property, sum(signups)::bigint AS signups, sum(confirmed)::bigint AS confirmed,
           sum(withdrawn)::bigint AS withdrawn, sum(suppressed)::bigint AS suppressed,
           sum(pending)::bigint AS pending, sum(implied)::bigint AS implied
    FROM per_day GROUP BY property),
lapse AS (
    -- Only consent implied more than 153 days ago can lapse within 30
    -- days (the shortest period is 183), so the index range stays small.
    SELECT l.property,
           count(*) FILTER (WHERE x.lapses_at > now() AND x.lapses_at <= now() + interval '30 days') AS lapsing,
           count(*) FILTER (WHERE x.lapses_at <= now()) AS lapsed
    FROM mailslot.leads l
    LEFT JOIN LATERAL (
        SELECT c.source FROM mailslot.consent_records c
        WHERE c.lead_id = l.id AND c.status = 'implied' ORDER BY c.recorded_at DESC LIMIT 1) r ON true
    CROSS JOIN LATERAL (
        SELECT l.implied_at + CASE WHEN r.source IN ('purchase', 'customer', 'ebr') THEN interval '730 days'
                                   ELSE interval '183 days' END AS lapses_at) x
    WHERE l.consent_status = 'implied' AND l.implied_at <= now() - interval '153 days'
    GROUP BY l.property)
SELECT t.property, t.signups, t.pending,
       a.median_age AS pending_median_age_days, a.max_age AS pending_max_age_days,
       t.confirmed, round(t.confirmed::numeric / nullif(t.signups, 0), 4) AS confirmation_rate,
       t.withdrawn, round(t.withdrawn::numeric / nullif(t.signups, 0), 4) AS unsubscribe_rate,
       t.suppressed, t.implied,
       coalesce(x.lapsing, 0)::bigint AS implied_lapsing_30d,
       coalesce(x.lapsed, 0)::bigint AS implied_lapsed
FROM totals t
LEFT JOIN ages a USING (property)
LEFT JOIN lapse x USING (property);

-- Image-description jobs by the month (UTC) they were created, and
-- provider spend by the month it was recorded. The budget is the setting
-- mailslot.image_monthly_budget_usd (ALTER DATABASE … SET, or SET in the
-- session; the edges read MAILSLOT_IMAGE_MONTHLY_BUDGET), NULL when unset
-- or not a number.
CREATE VIEW mailslot.report_images_monthly AS
WITH jobs AS (
    SELECT date_trunc('month', created_at AT TIME ZONE 'UTC')::date AS month,
           count(*) AS jobs,
           count(*) FILTER (WHERE state = 'queued') AS queued,
           count(*) FILTER (WHERE state = 'running') AS running,
           count(*) FILTER (WHERE state = 'failed') AS failed,
           count(*) FILTER (WHERE state = 'succeeded') AS succeeded,
           count(*) FILTER (WHERE state = 'dead') AS dead,
           count(*) FILTER (WHERE state = 'cancelled') AS cancelled
    FROM mailslot.image_jobs GROUP BY 1),
spend AS (
    SELECT date_trunc('month', recorded_at AT TIME ZONE 'UTC')::date AS month,
           count(*) AS predictions, sum(predict_seconds) AS predict_seconds, sum(cost_usd) AS spend_usd
    FROM mailslot.image_spend GROUP BY 1),
budget AS (
    SELECT CASE WHEN s ~ '^[0-9]+(\.[0-9]+)?$' THEN s::numeric END AS usd
    FROM (SELECT current_setting('mailslot.image_monthly_budget_usd', true) AS s) x)
SELECT month,
       coalesce(j.jobs, 0) AS jobs, coalesce(j.queued, 0) AS queued, coalesce(j.running, 0) AS running,
       coalesce(j.failed, 0) AS failed, coalesce(j.succeeded, 0) AS succeeded, coalesce(j.dead, 0) AS dead,
       coalesce(j.cancelled, 0) AS cancelled,
       coalesce(s.predictions, 0) AS predictions, coalesce(s.predict_seconds, 0)::double precision AS predict_seconds,
       coalesce(s.spend_usd, 0)::numeric(16, 8) AS spend_usd,
       b.usd AS budget_usd,
       round(coalesce(s.spend_usd, 0) / nullif(b.usd, 0), 4) AS budget_used
FROM jobs j
FULL JOIN spend s USING (month)
CROSS JOIN budget b;

-- The read-only role for dashboards and BI tools: SELECT on the report
-- views and nothing else (grants.sql). Creating it needs CREATEROLE; a
-- migration owner without it skips this, and an administrator creates
-- the role (README, "Postgres roles").
DO $$
BEGIN
    CREATE ROLE mailslot_reporting NOLOGIN;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL;
    WHEN insufficient_privilege THEN
        RAISE NOTICE 'mailslot_reporting not created: the migration owner lacks CREATEROLE';
END
$$;

-------------------------------------------------------------------------------
-- 4. Exports: every lead export that left, and who took it
-------------------------------------------------------------------------------
--
-- A row is written before the first lead is sent and finished after the
-- last, so an export that failed half-way is on record too (state
-- 'started' when the exporting process died, 'failed' when it saw the
-- error). filter holds the options (property, status, range), never an
-- address.
CREATE TABLE mailslot.exports (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    what        text        NOT NULL DEFAULT 'leads',
    format      text        NOT NULL,
    filter      jsonb       NOT NULL,
    rows        bigint      NOT NULL DEFAULT 0,
    state       text        NOT NULL DEFAULT 'started' CHECK (state IN ('started', 'finished', 'failed')),
    error       text,
    exported_by text        NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
