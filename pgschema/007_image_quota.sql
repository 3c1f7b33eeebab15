-- Anonymous sign-ups must not be able to spend the image budget.
--
-- One job per lead and image URL: a sign-up repeated with the same image
-- (by a person or a bot) queues nothing new. Duplicates queued before this
-- migration are removed, keeping the oldest; their predictions go with
-- them (ON DELETE CASCADE) and the spend ledger keeps its amounts.
DELETE FROM mailslot.image_jobs j
USING mailslot.image_jobs k
WHERE j.submitted_by = 'signup' AND k.submitted_by = 'signup'
  AND j.lead_id = k.lead_id AND j.image_url = k.image_url AND j.id > k.id;
CREATE UNIQUE INDEX image_jobs_signup_lead_url ON mailslot.image_jobs (lead_id, image_url)
    WHERE submitted_by = 'signup';

-- A daily quota per property: how many sign-up jobs each property queued
-- on each UTC day, and how many it refused once the quota was reached, so
-- that status can say so long before the monthly budget stops dispatch.
CREATE TABLE mailslot.image_quota (
    property text    NOT NULL,
    day      date    NOT NULL,
    queued   integer NOT NULL DEFAULT 0 CHECK (queued >= 0),
    refused  integer NOT NULL DEFAULT 0 CHECK (refused >= 0),
    PRIMARY KEY (property, day)
);
