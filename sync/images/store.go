package images

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/mailslot/mailslot"
	"github.com/mailslot/mailslot/internal/pgrows"
)

// Claiming: why FOR UPDATE SKIP LOCKED leases and not River.
//
// A job is claimed by one UPDATE whose subquery selects due rows FOR UPDATE
// SKIP LOCKED: concurrent dispatchers (on any number of edges) skip each
// other's rows instead of waiting, and a row another dispatcher has just
// claimed fails the re-checked state = queued|failed, so no job is claimed
// twice. The claim writes a random lease_token and lease_until; every later
// write names the token, so a dispatcher that lost its job (the lease ran
// out and another took it, an operator cancelled it, or the lead was erased
// and the row is gone) changes nothing, and notices within a second and
// cancels its predictions. A lease lasts the attempt timeout plus a grace
// period, so a live dispatcher never needs to renew it; a dead one's lease
// expires and the job is retried (or declared dead) by whoever looks next.
//
// River would bring the same SKIP LOCKED core with retries, a leader and a
// UI, but its job rows live in its own tables: they could not carry the
// foreign key to mailslot.leads that makes erasure delete a lead's jobs and
// results in the same statement, so erasure would need a second, separate
// cleanup. It would also add its own migration line (rivermigrate, run from
// mailslotctl migrate only), grants for the edge role on its tables, and
// a client with its own goroutines in a 256 MB edge, for a queue of a few
// thousand jobs a month. And a job here is not one function call: it is
// two predictions that may outlive the process that started them (they
// are adopted, not restarted, after a crash) and may be finished by a
// webhook on another edge. That state belongs in our own tables anyway.

// Job states.
const (
	StateQueued    = "queued"
	StateRunning   = "running"
	StateFailed    = "failed" // an attempt failed; the job runs again after run_after
	StateSucceeded = "succeeded"
	StateDead      = "dead" // out of attempts, or a permanent error
	StateCancelled = "cancelled"
)

// Errors the store returns; the edge and mailslotctl map them to answers.
var (
	ErrNotFound        = mailslot.ErrImageJobNotFound
	ErrLeadNotFound    = mailslot.ErrLeadNotFound
	ErrUploadStoreFull = mailslot.ErrUploadStoreFull
)

// StateError refuses an operation the job's state does not allow.
type StateError struct {
	ID    int64
	State string
	Op    string
	Why   string
}

func (e *StateError) Error() string {
	if e.Why != "" {
		return fmt.Sprintf("cannot %s image job %d: %s", e.Op, e.ID, e.Why)
	}
	return fmt.Sprintf("cannot %s image job %d: it is %s", e.Op, e.ID, e.State)
}

// DB is what the store needs: a pool or a connection.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Store is the image job queue in Postgres.
type Store struct {
	db DB
}

// NewStore returns a store on db.
func NewStore(db DB) *Store { return &Store{db: db} }

// Job is one image description job as operators see it.
type Job = mailslot.ImageJob

const jobSelect = `
SELECT j.id, j.lead_id, j.source, j.image_url, coalesce(u.size_bytes, 0), j.state, j.attempts,
       j.max_attempts, j.run_after, coalesce(j.provider, ''), coalesce(j.last_error, ''), j.caption,
       j.face_count, j.submitted_by, j.created_at, j.updated_at, j.started_at, j.finished_at,
       coalesce(s.secs, 0), coalesce(s.usd, 0)
FROM mailslot.image_jobs j
LEFT JOIN mailslot.image_uploads u ON u.job_id = j.id
LEFT JOIN LATERAL (
    SELECT sum(predict_seconds) AS secs, sum(cost_usd)::float8 AS usd
    FROM mailslot.image_spend WHERE job_id = j.id
) s ON true`

func scanJob(r pgx.Row) (Job, error) {
	var j Job
	var url *string
	err := r.Scan(&j.ID, &j.LeadID, &j.Source, &url, &j.UploadBytes, &j.State, &j.Attempts,
		&j.MaxAttempts, &j.RunAfter, &j.Provider, &j.LastError, &j.Caption,
		&j.FaceCount, &j.SubmittedBy, &j.CreatedAt, &j.UpdatedAt, &j.StartedAt, &j.FinishedAt,
		&j.PredictSeconds, &j.CostUSD)
	if url != nil {
		j.ImageURL = *url
	}
	j.RunAfter, j.CreatedAt, j.UpdatedAt = j.RunAfter.UTC(), j.CreatedAt.UTC(), j.UpdatedAt.UTC()
	for _, t := range []**time.Time{&j.StartedAt, &j.FinishedAt} {
		if *t != nil {
			u := (*t).UTC()
			*t = &u
		}
	}
	return j, err
}

// Submission is a new job: an image URL or uploaded bytes.
type Submission = mailslot.ImageSubmission

// uploadLockKey serializes uploads so that the total-size check and the
// insert cannot interleave ("images" in ASCII).
const uploadLockKey int64 = 0x696d61676573

// Submit validates a submission against limits and queues it.
func (s *Store) Submit(ctx context.Context, sub Submission, lim Limits) (Job, error) {
	if (sub.URL == "") == (len(sub.Image) == 0) {
		return Job{}, &InputError{Field: "image", Code: "url_or_upload"}
	}
	if sub.MaxAttempts <= 0 {
		sub.MaxAttempts = DefaultMaxAttempts
	}
	if sub.SubmittedBy == "" {
		sub.SubmittedBy = "unknown"
	}
	var (
		source, contentType string
		url                 *string
	)
	if sub.URL != "" {
		u, err := mailslot.CheckImageURL(sub.URL, lim.AllowedHosts)
		if err != nil {
			return Job{}, err
		}
		source, url = "url", &u
	} else {
		ct, err := CheckImage(sub.Image, lim.MaxUploadBytes)
		if err != nil {
			return Job{}, err
		}
		source, contentType = "upload", ct
	}
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return Job{}, fmt.Errorf("submit image job: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if source == "upload" && lim.UploadStoreBytes > 0 {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, uploadLockKey); err != nil {
			return Job{}, fmt.Errorf("lock upload storage: %w", err)
		}
		var used int64
		if err := tx.QueryRow(ctx, `SELECT coalesce(sum(size_bytes), 0) FROM mailslot.image_uploads`).Scan(&used); err != nil {
			return Job{}, fmt.Errorf("measure upload storage: %w", err)
		}
		if used+int64(len(sub.Image)) > lim.UploadStoreBytes {
			return Job{}, ErrUploadStoreFull
		}
	}
	var id int64
	err = tx.QueryRow(ctx, `
		INSERT INTO mailslot.image_jobs (lead_id, source, image_url, max_attempts, submitted_by)
		VALUES ($1, $2, $3, $4, $5) RETURNING id`,
		sub.LeadID, source, url, sub.MaxAttempts, sub.SubmittedBy).Scan(&id)
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "23503" {
			return Job{}, ErrLeadNotFound
		}
		return Job{}, fmt.Errorf("insert image job: %w", err)
	}
	if source == "upload" {
		if _, err := tx.Exec(ctx, `
			INSERT INTO mailslot.image_uploads (job_id, content_type, size_bytes, data) VALUES ($1, $2, $3, $4)`,
			id, contentType, len(sub.Image), sub.Image); err != nil {
			return Job{}, fmt.Errorf("store uploaded image: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return Job{}, fmt.Errorf("commit image job: %w", err)
	}
	return s.Get(ctx, id)
}

// Get returns one job.
func (s *Store) Get(ctx context.Context, id int64) (Job, error) {
	return getJob(ctx, s.db, id)
}

// getJob reads job id through q (the store's pool, or a transaction).
func getJob(ctx context.Context, q interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}, id int64) (Job, error) {
	j, err := scanJob(q.QueryRow(ctx, jobSelect+` WHERE j.id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Job{}, ErrNotFound
	}
	if err != nil {
		return Job{}, fmt.Errorf("read image job %d: %w", id, err)
	}
	return j, nil
}

// List returns the newest jobs, of one state when state is not empty.
func (s *Store) List(ctx context.Context, state string, limit int) ([]Job, error) {
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	return pgrows.Collect(ctx, s.db, "list image jobs", func(r pgx.CollectableRow) (Job, error) { return scanJob(r) },
		jobSelect+` WHERE ($1 = '' OR j.state = $1) ORDER BY j.id DESC LIMIT $2`, state, limit)
}

// Retry queues a failed, dead or cancelled job to run now with a fresh set
// of attempts (a queued one just becomes due). Results of models that
// already succeeded are kept and not paid for again.
func (s *Store) Retry(ctx context.Context, id int64) (Job, error) {
	// The job is read in the transaction that queued it, while the update
	// holds its row: a dispatcher cannot claim it in between, so the caller
	// sees the job as the retry left it.
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return Job{}, fmt.Errorf("retry image job %d: %w", id, err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	tag, err := tx.Exec(ctx, `
		UPDATE mailslot.image_jobs j
		SET state = 'queued', attempts = 0, run_after = now(), updated_at = now(), finished_at = NULL
		WHERE j.id = $1 AND j.state IN ('queued', 'failed', 'dead', 'cancelled')
		  AND (j.source = 'url' OR EXISTS (SELECT 1 FROM mailslot.image_uploads u WHERE u.job_id = j.id))`, id)
	if err != nil {
		return Job{}, fmt.Errorf("retry image job %d: %w", id, err)
	}
	j, err := getJob(ctx, tx, id)
	if err != nil {
		return Job{}, err
	}
	if err := tx.Commit(ctx); err != nil {
		return Job{}, fmt.Errorf("retry image job %d: %w", id, err)
	}
	if tag.RowsAffected() == 1 {
		return j, nil
	}
	if j.State == StateRunning || j.State == StateSucceeded {
		return j, &StateError{ID: id, State: j.State, Op: "retry"}
	}
	return j, &StateError{ID: id, State: j.State, Op: "retry", Why: "its uploaded image was released when it was cancelled; submit the image again"}
}

// Cancel stops a job: a queued or failed one never runs again, a running
// one's dispatcher notices within a second and cancels its predictions at
// the provider. An uploaded image is released. Cancelling a cancelled job
// changes nothing; a succeeded job cannot be cancelled.
func (s *Store) Cancel(ctx context.Context, id int64) (Job, error) {
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return Job{}, fmt.Errorf("cancel image job %d: %w", id, err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	tag, err := tx.Exec(ctx, `
		UPDATE mailslot.image_jobs
		SET state = 'cancelled', lease_token = NULL, lease_owner = NULL, lease_until = NULL,
		    finished_at = now(), updated_at = now()
		WHERE id = $1 AND state IN ('queued', 'failed', 'running', 'dead')`, id)
	if err != nil {
		return Job{}, fmt.Errorf("cancel image job %d: %w", id, err)
	}
	if tag.RowsAffected() == 1 {
		if _, err := tx.Exec(ctx, `DELETE FROM mailslot.image_uploads WHERE job_id = $1`, id); err != nil {
			return Job{}, fmt.Errorf("release upload of image job %d: %w", id, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return Job{}, fmt.Errorf("cancel image job %d: %w", id, err)
	}
	j, err := s.Get(ctx, id)
	if err != nil {
		return j, err
	}
	if j.State != StateCancelled {
		return j, &StateError{ID: id, State: j.State, Op: "cancel"}
	}
	return j, nil
}

// claimed is a job a dispatcher holds the lease of.
type claimed struct {
	ID          int64
	Source      string
	ImageURL    string
	Attempts    int // including this one
	MaxAttempts int
	Token       string
}

// reap ends the attempts whose lease ran out: their dispatcher stopped
// without finishing (killed, or cut off from Postgres). The attempt counts;
// the job runs again or, out of attempts, is dead.
func (s *Store) reap(ctx context.Context) (int64, error) {
	tag, err := s.db.Exec(ctx, `
		UPDATE mailslot.image_jobs
		SET state = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'failed' END,
		    last_error = 'attempt ' || attempts || ' was abandoned: its dispatcher (' || coalesce(lease_owner, '?') ||
		                 ') stopped before finishing and its lease expired',
		    finished_at = CASE WHEN attempts >= max_attempts THEN now() END,
		    lease_token = NULL, lease_owner = NULL, lease_until = NULL, run_after = now(), updated_at = now()
		WHERE state = 'running' AND lease_until < now()`)
	if err != nil {
		return 0, fmt.Errorf("reap expired image job leases: %w", err)
	}
	return tag.RowsAffected(), nil
}

// claim leases up to n due jobs to owner for lease, oldest due first.
func (s *Store) claim(ctx context.Context, owner, provider string, lease time.Duration, n int) ([]claimed, error) {
	rows, err := s.db.Query(ctx, `
		UPDATE mailslot.image_jobs j
		SET state = 'running', attempts = j.attempts + 1, lease_token = gen_random_uuid(),
		    lease_owner = $1, lease_until = now() + make_interval(secs => $2), provider = $3,
		    started_at = now(), updated_at = now()
		FROM (
		    SELECT id FROM mailslot.image_jobs
		    WHERE state IN ('queued', 'failed') AND run_after <= now()
		    ORDER BY run_after, id
		    LIMIT $4
		    FOR UPDATE SKIP LOCKED
		) due
		WHERE j.id = due.id
		RETURNING j.id, j.source, coalesce(j.image_url, ''), j.attempts, j.max_attempts, j.lease_token::text`,
		owner, lease.Seconds(), provider, n)
	if err != nil {
		return nil, fmt.Errorf("claim image jobs: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (claimed, error) {
		var c claimed
		err := r.Scan(&c.ID, &c.Source, &c.ImageURL, &c.Attempts, &c.MaxAttempts, &c.Token)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("claim image jobs: %w", err)
	}
	return out, nil
}

// held reports whether c's lease is still c's: false when the job was
// cancelled, taken over, or deleted with its lead.
func (s *Store) held(ctx context.Context, c claimed) (bool, error) {
	var ok bool
	err := s.db.QueryRow(ctx, `
		SELECT EXISTS (SELECT 1 FROM mailslot.image_jobs
		               WHERE id = $1 AND state = 'running' AND lease_token = $2::uuid)`, c.ID, c.Token).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("check lease of image job %d: %w", c.ID, err)
	}
	return ok, nil
}

// upload reads a job's uploaded image.
func (s *Store) upload(ctx context.Context, jobID int64) ([]byte, string, error) {
	var data []byte
	var ct string
	err := s.db.QueryRow(ctx, `SELECT data, content_type FROM mailslot.image_uploads WHERE job_id = $1`, jobID).Scan(&data, &ct)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, "", &ProviderError{Op: "create", Msg: "the uploaded image is gone"}
	}
	if err != nil {
		return nil, "", fmt.Errorf("read upload of image job %d: %w", jobID, err)
	}
	return data, ct, nil
}

// predRow is a stored prediction.
type predRow struct {
	Provider, ID, Model, Status string
	FaceCount                   *int
	Caption                     *string
	Error                       string
}

func (s *Store) predictions(ctx context.Context, jobID int64) ([]predRow, error) {
	rows, err := s.db.Query(ctx, `
		SELECT provider, prediction_id, model, status, face_count, caption, coalesce(error, '')
		FROM mailslot.image_predictions WHERE job_id = $1 ORDER BY created_at, prediction_id`, jobID)
	if err != nil {
		return nil, fmt.Errorf("read predictions of image job %d: %w", jobID, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (predRow, error) {
		var p predRow
		err := r.Scan(&p.Provider, &p.ID, &p.Model, &p.Status, &p.FaceCount, &p.Caption, &p.Error)
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("read predictions of image job %d: %w", jobID, err)
	}
	return out, nil
}

// recordStart stores a prediction c has started, if c still holds the
// lease; false means it does not, and the prediction must be cancelled.
func (s *Store) recordStart(ctx context.Context, c claimed, provider, model string, p Prediction) (bool, error) {
	status := p.Status
	if Terminal(status) || status == "" {
		status = PredictionStarting // the terminal state is applied next, with its result
	}
	tag, err := s.db.Exec(ctx, `
		INSERT INTO mailslot.image_predictions (provider, prediction_id, job_id, attempt, model, status)
		SELECT $1, $2, j.id, j.attempts, $3, $4 FROM mailslot.image_jobs j
		WHERE j.id = $5 AND j.state = 'running' AND j.lease_token = $6::uuid`,
		provider, p.ID, model, status, c.ID, c.Token)
	if err != nil {
		return false, fmt.Errorf("record %s prediction of image job %d: %w", model, c.ID, err)
	}
	return tag.RowsAffected() == 1, nil
}

// abandon marks a stored in-flight prediction cancelled without asking its
// provider (used when the provider setting changed under it).
func (s *Store) abandon(ctx context.Context, provider, id, why string) error {
	_, err := s.db.Exec(ctx, `
		UPDATE mailslot.image_predictions SET status = 'canceled', error = $3, completed_at = now()
		WHERE provider = $1 AND prediction_id = $2 AND status IN ('starting', 'processing')`, provider, id, why)
	if err != nil {
		return fmt.Errorf("abandon prediction: %w", err)
	}
	return nil
}

// Applied says what ApplyPrediction did.
type Applied struct {
	// Known is false when no stored prediction has this id: it was never
	// ours, or its job was deleted with its lead. Nothing is stored then
	// except the spend.
	Known bool
	// Changed is false for a repeat: the prediction was already final.
	Changed bool
	JobID   int64
	Model   string
}

// ApplyPrediction records a prediction's new state, from a poll or a
// webhook, whichever comes first: a final state is written once (a repeated
// delivery finds the row final and changes nothing), the result is reduced
// to a face count or a caption, and the reported compute time is added to
// the spend ledger once per prediction, even when the job is gone.
func (s *Store) ApplyPrediction(ctx context.Context, provider string, p Prediction, pricePerSecond float64) (Applied, error) {
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return Applied{}, fmt.Errorf("apply prediction: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	var (
		a      Applied
		status string
	)
	err = tx.QueryRow(ctx, `
		SELECT job_id, model, status FROM mailslot.image_predictions
		WHERE provider = $1 AND prediction_id = $2 FOR UPDATE`, provider, p.ID).Scan(&a.JobID, &a.Model, &status)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return Applied{}, fmt.Errorf("apply prediction: %w", err)
	default:
		a.Known = true
	}
	if a.Known && !Terminal(status) && p.Status != status && p.Status != PredictionStarting {
		var (
			faces   *int
			caption *string
			errMsg  = p.Error
		)
		newStatus := p.Status
		if newStatus == PredictionSucceeded {
			if a.Model == ModelFaces {
				n, perr := ParseFaces(p.Output)
				faces, errMsg = &n, ""
				if perr != nil {
					faces, newStatus, errMsg = nil, PredictionFailed, perr.Error()
				}
			} else {
				c, perr := ParseCaption(p.Output)
				caption, errMsg = &c, ""
				if perr != nil {
					caption, newStatus, errMsg = nil, PredictionFailed, perr.Error()
				}
			}
		}
		if _, err := tx.Exec(ctx, `
			UPDATE mailslot.image_predictions
			SET status = $3, face_count = $4, caption = $5, error = nullif($6, ''), predict_seconds = $7,
			    completed_at = CASE WHEN $3 IN ('succeeded', 'failed', 'canceled') THEN now() END
			WHERE provider = $1 AND prediction_id = $2`,
			provider, p.ID, newStatus, faces, caption, clip(errMsg, 500), p.PredictSeconds); err != nil {
			return Applied{}, fmt.Errorf("apply prediction: %w", err)
		}
		a.Changed = true
	}
	// A webhook can beat the dispatcher's INSERT of a fast prediction: its
	// spend is then recorded without a job, and attached to the job by the
	// next delivery or poll. The amount is never counted twice.
	if Terminal(p.Status) && p.PredictSeconds != nil {
		var jobID *int64
		var model *string
		if a.Known {
			jobID, model = &a.JobID, &a.Model
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO mailslot.image_spend (provider, prediction_id, job_id, model, predict_seconds, cost_usd)
			VALUES ($1, $2, $3, $4, $5::float8, $5::float8::numeric * $6::float8::numeric)
			ON CONFLICT (provider, prediction_id) DO UPDATE
			SET job_id = coalesce(image_spend.job_id, excluded.job_id), model = coalesce(image_spend.model, excluded.model)`,
			provider, p.ID, jobID, model, *p.PredictSeconds, pricePerSecond); err != nil {
			return Applied{}, fmt.Errorf("record prediction spend: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return Applied{}, fmt.Errorf("apply prediction: %w", err)
	}
	return a, nil
}

// result is what a job stores.
type result struct {
	Faces   int
	Caption string
}

// succeed stores the job's result if c still holds its lease. When the job
// was cancelled, or deleted with its lead while the provider worked, the
// UPDATE finds no row and nothing is stored.
func (s *Store) succeed(ctx context.Context, c claimed, r result) (bool, error) {
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("finish image job %d: %w", c.ID, err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	tag, err := tx.Exec(ctx, `
		UPDATE mailslot.image_jobs
		SET state = 'succeeded', caption = $3, face_count = $4, last_error = NULL,
		    lease_token = NULL, lease_owner = NULL, lease_until = NULL, finished_at = now(), updated_at = now()
		WHERE id = $1 AND state = 'running' AND lease_token = $2::uuid`, c.ID, c.Token, r.Caption, r.Faces)
	if err != nil {
		return false, fmt.Errorf("finish image job %d: %w", c.ID, err)
	}
	if tag.RowsAffected() == 0 {
		return false, nil
	}
	// The image has served its purpose; keeping it would only fill the
	// bounded upload storage.
	if _, err := tx.Exec(ctx, `DELETE FROM mailslot.image_uploads WHERE job_id = $1`, c.ID); err != nil {
		return false, fmt.Errorf("release upload of image job %d: %w", c.ID, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("finish image job %d: %w", c.ID, err)
	}
	return true, nil
}

// fail ends c's attempt with msg: dead, or failed to run again after delay.
func (s *Store) fail(ctx context.Context, c claimed, msg string, dead bool, delay time.Duration) (bool, error) {
	state := StateFailed
	if dead {
		state = StateDead
	}
	tag, err := s.db.Exec(ctx, `
		UPDATE mailslot.image_jobs
		SET state = $3, last_error = $4, run_after = now() + make_interval(secs => $5),
		    finished_at = CASE WHEN $3 = 'dead' THEN now() END,
		    lease_token = NULL, lease_owner = NULL, lease_until = NULL, updated_at = now()
		WHERE id = $1 AND state = 'running' AND lease_token = $2::uuid`,
		c.ID, c.Token, state, clip(msg, 500), delay.Seconds())
	if err != nil {
		return false, fmt.Errorf("fail image job %d: %w", c.ID, err)
	}
	return tag.RowsAffected() == 1, nil
}

// release gives a job back without counting the attempt: its dispatcher
// is shutting down. Predictions still running are adopted by whoever
// claims the job next.
func (s *Store) release(ctx context.Context, c claimed) error {
	_, err := s.db.Exec(ctx, `
		UPDATE mailslot.image_jobs
		SET state = CASE WHEN attempts > 1 THEN 'failed' ELSE 'queued' END, attempts = attempts - 1,
		    run_after = now(), lease_token = NULL, lease_owner = NULL, lease_until = NULL, updated_at = now()
		WHERE id = $1 AND state = 'running' AND lease_token = $2::uuid`, c.ID, c.Token)
	if err != nil {
		return fmt.Errorf("release image job %d: %w", c.ID, err)
	}
	return nil
}
