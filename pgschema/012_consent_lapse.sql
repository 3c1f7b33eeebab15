-- The consent report's implied-consent lapse counts, read from an index
-- rather than by a probe of consent_records for every implied lead.
--
-- report_consent (011) looked up the latest implied consent record of
-- each implied lead older than 153 days to learn its source, and so its
-- period: two years after a purchase, customer or ebr source, six months
-- (183 days) otherwise. At a million leads that is some 60,000 probes and
-- as many heap reads, most of a second. Two-year sources are the rare
-- ones, so now every implied lead is counted as if its period were six
-- months, by an index-only scan of leads_implied (property, implied_at),
-- and the few leads whose latest implied record has a two-year source,
-- found through the partial index below, are moved from the six-month
-- counts to the two-year ones. The numbers are the same as 011's.

CREATE INDEX consent_records_long_implied ON mailslot.consent_records (lead_id, recorded_at)
    WHERE status = 'implied' AND source IN ('purchase', 'customer', 'ebr');

CREATE OR REPLACE VIEW mailslot.report_consent AS
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
-- Implied leads whose latest implied consent record has a two-year source.
two_year AS (
    SELECT l.property, l.implied_at
    FROM (SELECT DISTINCT lead_id FROM mailslot.consent_records
          WHERE status = 'implied' AND source IN ('purchase', 'customer', 'ebr') AND lead_id IS NOT NULL) c
    JOIN mailslot.leads l ON l.id = c.lead_id
    WHERE l.consent_status = 'implied'
      AND (SELECT r.source FROM mailslot.consent_records r
           WHERE r.lead_id = l.id AND r.status = 'implied' ORDER BY r.recorded_at DESC LIMIT 1)
          IN ('purchase', 'customer', 'ebr')),
lapse AS (
    SELECT property, sum(lapsing) AS lapsing, sum(lapsed) AS lapsed
    FROM (
        -- Every implied lead as if its period were six months. Only
        -- consent implied more than 153 days ago can lapse within 30
        -- days, so the index range stays small.
        SELECT l.property,
               count(*) FILTER (WHERE l.implied_at + interval '183 days' > now()
                                  AND l.implied_at + interval '183 days' <= now() + interval '30 days') AS lapsing,
               count(*) FILTER (WHERE l.implied_at + interval '183 days' <= now()) AS lapsed
        FROM mailslot.leads l
        WHERE l.consent_status = 'implied' AND l.implied_at <= now() - interval '153 days'
        GROUP BY l.property
        UNION ALL
        -- The two-year ones: out of the six-month counts, into their own.
        SELECT property,
               count(*) FILTER (WHERE implied_at + interval '730 days' > now()
                                  AND implied_at + interval '730 days' <= now() + interval '30 days')
             - count(*) FILTER (WHERE implied_at + interval '183 days' > now()
                                  AND implied_at + interval '183 days' <= now() + interval '30 days'),
               count(*) FILTER (WHERE implied_at + interval '730 days' <= now())
             - count(*) FILTER (WHERE implied_at + interval '183 days' <= now())
        FROM two_year
        GROUP BY property) u
    GROUP BY property)
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
