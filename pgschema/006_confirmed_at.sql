-- When the lead's address was confirmed: the latest confirmation through
-- the signed confirm link's button (or an operator's documented import).
-- A confirmed opt-in is the only consent that may overturn a withdrawal
-- or a suppression, so it is kept apart from express_at, which an
-- anonymous sign-up claiming express consent also sets. NULL means the
-- address was never confirmed.
ALTER TABLE mailslot.leads ADD COLUMN confirmed_at timestamptz;

-- Confirmations recorded before this column existed came from the confirm
-- link; their latest time is the lead's confirmation.
UPDATE mailslot.leads l SET confirmed_at = c.at
FROM (SELECT lead_id, max(recorded_at) AS at FROM mailslot.consent_records
      WHERE status = 'express' AND source = 'confirm_link' AND lead_id IS NOT NULL
      GROUP BY lead_id) c
WHERE c.lead_id = l.id;
