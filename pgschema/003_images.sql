-- Image descriptions: jobs dispatched from Postgres to an external GPU
-- provider (sync/dispatch). The edge never runs the models; it stores what
-- they said (a caption and a face count), never a face embedding.
--
-- Jobs are claimed with FOR UPDATE SKIP LOCKED and a lease that expires
-- (sync/dispatch/store.go says why this and not River). Erasing a lead
-- deletes its jobs, their predictions and any uploaded image through the
-- cascades below; the spend ledger keeps only amounts.

CREATE TABLE mailslot.image_jobs (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Set when the image came with a lead; operator jobs have none.
    lead_id      bigint      REFERENCES mailslot.leads (id) ON DELETE CASCADE,
    source       text        NOT NULL CHECK (source IN ('url', 'upload')),
    image_url    text        CHECK (image_url LIKE 'https://%'),
    -- queued -> running -> succeeded | failed (waits for run_after, then
    -- runs again) | dead (out of attempts, or a permanent error) |
    -- cancelled (by an operator).
    state        text        NOT NULL DEFAULT 'queued'
                             CHECK (state IN ('queued', 'running', 'failed', 'succeeded', 'dead', 'cancelled')),
    attempts     integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts integer     NOT NULL CHECK (max_attempts > 0),
    run_after    timestamptz NOT NULL DEFAULT now(),
    -- The lease: who runs the job and until when. Every write a dispatcher
    -- makes names lease_token, so one whose lease was taken over (or whose
    -- job was cancelled or erased) changes nothing.
    lease_token  uuid,
    lease_owner  text,
    lease_until  timestamptz,
    provider     text,
    last_error   text,
    caption      text,
    face_count   integer     CHECK (face_count >= 0),
    submitted_by text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz,
    CHECK ((source = 'url') = (image_url IS NOT NULL)),
    CHECK ((state = 'running') = (lease_token IS NOT NULL AND lease_until IS NOT NULL))
);
CREATE INDEX image_jobs_ready ON mailslot.image_jobs (run_after, id) WHERE state IN ('queued', 'failed');
CREATE INDEX image_jobs_leased ON mailslot.image_jobs (lease_until) WHERE state = 'running';
CREATE INDEX image_jobs_lead ON mailslot.image_jobs (lead_id) WHERE lead_id IS NOT NULL;
CREATE INDEX image_jobs_state ON mailslot.image_jobs (state, id);

-- Uploaded images, bounded per image and in total (MAILSLOT_IMAGE_MAX_UPLOAD_BYTES,
-- MAILSLOT_IMAGE_UPLOAD_STORE_BYTES). An upload is deleted when its job
-- succeeds or is cancelled; a dead job keeps it so that it can be retried.
CREATE TABLE mailslot.image_uploads (
    job_id       bigint      PRIMARY KEY REFERENCES mailslot.image_jobs (id) ON DELETE CASCADE,
    content_type text        NOT NULL,
    size_bytes   integer     NOT NULL CHECK (size_bytes > 0),
    data         bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- One row per provider prediction: each attempt runs two models (faces,
-- caption). A model that succeeded is not run again when the job retries,
-- and a prediction still running when its dispatcher stopped is adopted by
-- the next one rather than started twice. Only the extracted result is
-- kept: the face count, never the faces' boxes or embeddings.
CREATE TABLE mailslot.image_predictions (
    provider        text             NOT NULL,
    prediction_id   text             NOT NULL,
    job_id          bigint           NOT NULL REFERENCES mailslot.image_jobs (id) ON DELETE CASCADE,
    attempt         integer          NOT NULL,
    model           text             NOT NULL CHECK (model IN ('faces', 'caption')),
    status          text             NOT NULL CHECK (status IN ('starting', 'processing', 'succeeded', 'failed', 'canceled')),
    face_count      integer          CHECK (face_count >= 0),
    caption         text,
    error           text,
    predict_seconds double precision,
    created_at      timestamptz      NOT NULL DEFAULT now(),
    completed_at    timestamptz,
    PRIMARY KEY (provider, prediction_id)
);
-- At most one prediction per job and model in flight, whoever dispatches.
CREATE UNIQUE INDEX image_predictions_in_flight ON mailslot.image_predictions (job_id, model)
    WHERE status IN ('starting', 'processing');
CREATE INDEX image_predictions_job ON mailslot.image_predictions (job_id);

-- What the provider billed, one row per prediction (a repeated webhook or a
-- poll that races it adds nothing). No foreign key: money spent on an
-- erased lead's image stays spent, and the row holds no personal data.
CREATE TABLE mailslot.image_spend (
    provider        text             NOT NULL,
    prediction_id   text             NOT NULL,
    job_id          bigint,
    model           text,
    predict_seconds double precision NOT NULL CHECK (predict_seconds >= 0),
    cost_usd        numeric(16, 8)   NOT NULL CHECK (cost_usd >= 0),
    recorded_at     timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, prediction_id)
);
CREATE INDEX image_spend_recorded_at ON mailslot.image_spend (recorded_at);
CREATE INDEX image_spend_job ON mailslot.image_spend (job_id) WHERE job_id IS NOT NULL;
