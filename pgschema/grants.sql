-- The edge connects as mailslot_edge: no DDL, only the statements sync
-- needs. This file is not a numbered migration: mailslotctl migrate runs it
-- after the migrations on every run, so a role created later (README,
-- "Postgres roles") and tables added later both get their grants.
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'mailslot_edge') THEN
        GRANT USAGE ON SCHEMA mailslot TO mailslot_edge;
        GRANT SELECT ON mailslot.schema_version TO mailslot_edge;
        GRANT SELECT, INSERT, UPDATE ON mailslot.nodes TO mailslot_edge;
        GRANT SELECT, INSERT ON mailslot.ledger TO mailslot_edge;
        GRANT SELECT, INSERT, UPDATE ON mailslot.leads TO mailslot_edge;
        GRANT SELECT, INSERT ON mailslot.consent_records TO mailslot_edge;
        GRANT SELECT, INSERT, UPDATE ON mailslot.events TO mailslot_edge;
        GRANT SELECT, INSERT ON mailslot.tombstones TO mailslot_edge;
        GRANT SELECT, INSERT, UPDATE ON mailslot.suppressions TO mailslot_edge;
        -- Erasure deletes a lead and scrubs what points at it.
        GRANT DELETE ON mailslot.leads TO mailslot_edge;
        GRANT UPDATE ON mailslot.consent_records TO mailslot_edge;
        -- Image descriptions: the edge's admin API submits jobs, its
        -- dispatcher claims and finishes them, its webhook receiver
        -- records predictions and spend (sync/dispatch).
        GRANT SELECT, INSERT, UPDATE, DELETE ON mailslot.image_jobs TO mailslot_edge;
        GRANT SELECT, INSERT, DELETE ON mailslot.image_uploads TO mailslot_edge;
        GRANT SELECT, INSERT, UPDATE ON mailslot.image_predictions TO mailslot_edge;
        GRANT SELECT, INSERT ON mailslot.image_spend TO mailslot_edge;
        GRANT SELECT, INSERT, UPDATE ON mailslot.image_quota TO mailslot_edge;
        -- Mail: the sync queues jobs, any edge's dispatcher claims and
        -- finishes them, the ESP webhook records feedback (sync/mailer).
        GRANT SELECT, INSERT, UPDATE ON mailslot.mail_jobs TO mailslot_edge;
        GRANT SELECT ON mailslot.properties TO mailslot_edge;
        -- Bot challenges: every edge pulls the per-property settings.
        GRANT SELECT ON mailslot.property_challenges TO mailslot_edge;
        -- Reports (011): the sync creates next months' event partitions
        -- and folds report marks into the rollups; both functions run as
        -- the schema owner.
        GRANT EXECUTE ON FUNCTION mailslot.ensure_event_partitions(date, integer) TO mailslot_edge;
        GRANT EXECUTE ON FUNCTION mailslot.refresh_reports() TO mailslot_edge;
        -- Webhooks: the sync emits events, erasures scrub them, any edge's
        -- deliverer fans them out, claims, finishes and prunes deliveries
        -- and disables a subscription that answered 410 (sync/webhook).
        GRANT SELECT, UPDATE ON mailslot.webhook_subscriptions TO mailslot_edge;
        GRANT SELECT, INSERT, UPDATE ON mailslot.webhook_events TO mailslot_edge;
        GRANT SELECT, INSERT, UPDATE, DELETE ON mailslot.webhook_deliveries TO mailslot_edge;
        GRANT SELECT ON mailslot.webhook_erasure_deliveries TO mailslot_edge;
        -- A sync batch's lead.created, expanded by the fan-out (pgschema 014).
        GRANT SELECT, INSERT, DELETE ON mailslot.webhook_created TO mailslot_edge;
        EXECUTE format('GRANT USAGE ON SEQUENCE %s TO mailslot_edge', pg_get_serial_sequence('mailslot.webhook_events', 'seq'));
    END IF;
    -- Dashboards and BI tools read the report views and nothing else: no
    -- table, no address, no hash (the views run with their owner's
    -- rights, so the role needs no grant on what they read).
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'mailslot_reporting') THEN
        GRANT USAGE ON SCHEMA mailslot TO mailslot_reporting;
        GRANT SELECT ON mailslot.report_signups_daily, mailslot.report_funnel_daily,
                        mailslot.report_consent, mailslot.report_images_monthly TO mailslot_reporting;
    END IF;
END
$$;
