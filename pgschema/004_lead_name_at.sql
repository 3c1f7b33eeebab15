-- When a lead's name was given. "The latest non-empty name wins" must not
-- depend on the order or the batches in which sign-ups sync (two edges,
-- a replayed outbox), so the sync compares the times the names were
-- given rather than last_seen_at. Rows from before this column take their
-- last_seen_at, the latest the name can have been given.
ALTER TABLE mailslot.leads ADD COLUMN name_at timestamptz;
UPDATE mailslot.leads SET name_at = last_seen_at WHERE name IS NOT NULL;
