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

-- The issue time of the confirm link's token, on the consent record a
-- confirmation writes and, for the latest confirmation that applied, on
-- the lead. A confirm link must not outlive a later withdrawal: one minted
-- before an unsubscribe (or an erasure) would otherwise turn the address
-- back on when clicked, or replayed, after it. NULL means the confirmation
-- came from an edge that did not yet send the time; such a confirmation
-- never overturns a withdrawal.
ALTER TABLE mailslot.consent_records ADD COLUMN token_issued_at timestamptz;
ALTER TABLE mailslot.leads ADD COLUMN confirm_issued_at timestamptz;

-- Withdrawn holds unless a confirmation came after it, through a link
-- minted after it. An express claim in an anonymous sign-up raises
-- consent_basis and express_at but is no proof that the mailbox's owner
-- asked; only the confirm link is. Both conditions are kept, so the status
-- does not depend on the order in which edges deliver an unsubscribe and
-- a confirmation: a late-arriving unsubscribe from before the link was
-- minted still loses, one from after it still wins.
ALTER TABLE mailslot.leads ALTER COLUMN consent_status SET EXPRESSION AS (
    CASE WHEN withdrawn_at IS NOT NULL
              AND (confirmed_at IS NULL OR confirmed_at <= withdrawn_at
                   OR confirm_issued_at IS NULL OR confirm_issued_at <= withdrawn_at)
         THEN 'withdrawn' ELSE consent_basis END);

-- address_pattern is a regular expression (for ~* and regexp_replace with
-- the 'gi' flags) that finds one address inside JSON text however it is
-- wrapped: mailto:, brackets, quotes, a trailing dot, any character
-- percent-encoded, any letter case; a longer address that merely contains
-- it does not match. Erasure uses it on event payloads. The same rules in
-- Go are internal/addrscrub, and both pass internal/addrscrub/addrscrubtest.
-- Characters other than ASCII letters and digits are written as \u escapes
-- so that no character of an address can change the expression's meaning.
CREATE FUNCTION mailslot.address_pattern(addr text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN (
    SELECT '(?:^|(?<=[^[:alnum:]._+-])|(?<=%[0-9A-Fa-f]{2})|(?<=\\[nrtbf"\\/]))(?:'
        || string_agg('(?:' || CASE WHEN ch ~ '^[A-Za-z0-9]$' THEN ch
                                    WHEN ascii(ch) > 65535 THEN '\U' || lpad(to_hex(ascii(ch)), 8, '0')
                                    ELSE '\u' || lpad(to_hex(ascii(ch)), 4, '0') END
                      || '|' || upper(regexp_replace(encode(convert_to(ch, 'UTF8'), 'hex'), '(..)', '%\1', 'g')) || ')',
                      '' ORDER BY i)
        || ')(?![[:alnum:]-]|\.[[:alnum:]]|%(?:2[dDeE]|3[0-9]|[46][1-9A-Fa-f]|[57][0-9Aa]))'
    FROM regexp_split_to_table(addr, '') WITH ORDINALITY AS c (ch, i));
