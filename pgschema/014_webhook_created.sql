-- lead.created, one row per sync batch instead of one per lead.
--
-- Every new lead a sync batch stored wrote its own webhook_events row
-- (payload, three index entries) in the batch's transaction: 10-15 % of
-- the batch's cost with a subscription active. Now the batch writes one
-- row here naming the leads it created, in the same transaction (so none
-- is lost and none invented), and the deliverer's fan-out turns it into
-- the per-lead events before it fans out anything (sync/webhook,
-- expandCreatedSQL). seq is drawn from the events' own sequence, and each
-- event keeps its batch's seq, so a lead's lead.created still comes
-- before any later event of that lead. A lead erased before the expansion
-- has no row left and gets no lead.created; a lead an erasure reset was
-- announced under its new id by the erasure, and is not announced twice.
CREATE TABLE mailslot.webhook_created (
    seq        bigint      PRIMARY KEY DEFAULT nextval(pg_get_serial_sequence('mailslot.webhook_events', 'seq')),
    lead_ids   bigint[]    NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'mailslot_edge') THEN
        GRANT SELECT, INSERT, DELETE ON mailslot.webhook_created TO mailslot_edge;
        EXECUTE format('GRANT USAGE ON SEQUENCE %s TO mailslot_edge', pg_get_serial_sequence('mailslot.webhook_events', 'seq'));
    END IF;
END
$$;
