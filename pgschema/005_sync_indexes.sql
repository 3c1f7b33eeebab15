-- Indexes shaped for the sync's per-row lookups, which run for every
-- sign-up a batch brings.
--
-- A new lead looks for confirmations that synced before it (express
-- consent records not yet linked to a lead). Through the general
-- email_hmac index that probe also walks every other record of the
-- address; this index holds only the unlinked confirmations, so it stays
-- nearly empty and the probe is one descent.
CREATE INDEX consent_records_unlinked_express ON mailslot.consent_records (email_hmac, property)
    WHERE lead_id IS NULL AND status = 'express' AND email_hmac IS NOT NULL;

-- Leads are unique per (property, address). With the address first the
-- same unique index also serves erasure's lookups by address alone, so
-- the separate address index (one more index entry per lead) goes.
ALTER TABLE mailslot.leads ADD CONSTRAINT leads_email_hmac_property_key UNIQUE (email_hmac, property);
ALTER TABLE mailslot.leads DROP CONSTRAINT leads_property_email_hmac_key;
DROP INDEX mailslot.leads_email_hmac;
