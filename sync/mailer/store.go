package mailer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/mailslot/mailslot/internal/pgrows"
)

// One job mechanism for images and mail: the same design, not shared code.
//
// Mail jobs are claimed exactly as image jobs are (sync/images/store.go):
// an UPDATE whose subquery picks due rows FOR UPDATE SKIP LOCKED, a random
// lease_token that every later write names, and a lease_until after which
// another dispatcher reaps the job. River was not taken for either queue
// for the same reason: its job rows could not carry the foreign key to
// mailslot.leads that makes an erasure delete a lead's jobs in its own
// statement. The claim, lease and backoff code is not shared in a package
// of its own, though, because what it would share is the SQL, and the SQL
// differs where it matters: an image job whose lease ran out is retried
// (its predictions are adopted), a mail job whose lease ran out while
// sending is uncertain and must not be sent again without an operator; a
// mail job goes back to queued after a temporary failure while an image
// job keeps a failed state with its partial results. A shared package
// would have to build those statements from fragments (table names,
// states), which the house rules out: every statement here is one you can
// paste into psql. What is shared is internal/backoff (the jittered
// waits) and the pattern, written down in both stores.

// Job states.
const (
	StateQueued    = "queued"
	StateSending   = "sending"
	StateSent      = "sent"
	StateFailed    = "failed" // a permanent refusal
	StateDead      = "dead"   // out of attempts
	StateCancelled = "cancelled"
	StateUncertain = "uncertain" // may have been delivered; an operator decides
	StateSkipped   = "skipped"   // no longer eligible when its turn came
)

// States lists every job state, for validation.
var States = []string{StateQueued, StateSending, StateSent, StateFailed, StateDead, StateCancelled, StateUncertain, StateSkipped}

// Errors the store returns.
var ErrNotFound = errors.New("mail job not found")

// StateError refuses an operation the job's state does not allow.
type StateError struct {
	ID    int64
	State string
	Op    string
}

func (e *StateError) Error() string {
	return fmt.Sprintf("cannot %s mail job %d: it is %s", e.Op, e.ID, e.State)
}

// DB is what the store needs: a pool, a connection or a transaction.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Store is the mail job queue in Postgres.
type Store struct {
	db DB
}

// NewStore returns a store on db.
func NewStore(db DB) *Store { return &Store{db: db} }

// Job is one mail job as operators see it. It names the lead, never the
// address.
type Job struct {
	ID              int64      `json:"id"`
	LeadID          int64      `json:"lead_id"`
	Property        string     `json:"property"`
	Kind            string     `json:"kind"`
	State           string     `json:"state"`
	AfterWithdrawal bool       `json:"after_withdrawal"`
	Attempts        int        `json:"attempts"`
	NextAttemptAt   time.Time  `json:"next_attempt_at"`
	MessageID       string     `json:"message_id,omitempty"`
	ProviderID      string     `json:"provider_id,omitempty"`
	LastError       string     `json:"last_error,omitempty"`
	Feedback        string     `json:"feedback,omitempty"`
	CreatedAt       time.Time  `json:"created_at"`
	UpdatedAt       time.Time  `json:"updated_at"`
	SentAt          *time.Time `json:"sent_at,omitempty"`
}

const jobSelect = `
SELECT id, lead_id, property, kind, state, after_withdrawal, attempts, next_attempt_at,
       coalesce(message_id, ''), coalesce(provider_id, ''), coalesce(last_error, ''), coalesce(feedback, ''),
       created_at, updated_at, sent_at
FROM mailslot.mail_jobs`

func scanJob(r pgx.Row) (Job, error) {
	var j Job
	err := r.Scan(&j.ID, &j.LeadID, &j.Property, &j.Kind, &j.State, &j.AfterWithdrawal, &j.Attempts, &j.NextAttemptAt,
		&j.MessageID, &j.ProviderID, &j.LastError, &j.Feedback, &j.CreatedAt, &j.UpdatedAt, &j.SentAt)
	j.NextAttemptAt, j.CreatedAt, j.UpdatedAt = j.NextAttemptAt.UTC(), j.CreatedAt.UTC(), j.UpdatedAt.UTC()
	if j.SentAt != nil {
		t := j.SentAt.UTC()
		j.SentAt = &t
	}
	return j, err
}

// Get returns one job.
func (s *Store) Get(ctx context.Context, id int64) (Job, error) {
	j, err := scanJob(s.db.QueryRow(ctx, jobSelect+` WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Job{}, ErrNotFound
	}
	if err != nil {
		return Job{}, fmt.Errorf("read mail job %d: %w", id, err)
	}
	return j, nil
}

// List returns the newest jobs, of one state when state is not empty.
func (s *Store) List(ctx context.Context, state string, limit int) ([]Job, error) {
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	return pgrows.Collect(ctx, s.db, "list mail jobs", func(r pgx.CollectableRow) (Job, error) { return scanJob(r) },
		jobSelect+` WHERE ($1 = '' OR state = $1) ORDER BY id DESC LIMIT $2`, state, limit)
}

// Retry queues a failed, dead, uncertain, skipped or cancelled job to be
// sent now with a fresh set of attempts. For an uncertain job this is the
// operator's decision that the message did not arrive: its resend carries
// the same Message-ID, so a recipient's client can tell the two apart.
// The dispatcher checks eligibility again before it sends.
func (s *Store) Retry(ctx context.Context, id int64) (Job, error) {
	return s.change(ctx, id, "retry", `
		UPDATE mailslot.mail_jobs
		SET state = 'queued', attempts = 0, next_attempt_at = now(), updated_at = now(),
		    last_error = 'retried by an operator after: ' || coalesce(last_error, state)
		WHERE id = $1 AND state IN ('queued', 'failed', 'dead', 'uncertain', 'skipped', 'cancelled')`, StateQueued)
}

// Cancel stops a queued job (or one waiting on an operator: uncertain,
// failed, dead). A job being sent right now cannot be cancelled: its
// message is on the wire.
func (s *Store) Cancel(ctx context.Context, id int64) (Job, error) {
	return s.change(ctx, id, "cancel", `
		UPDATE mailslot.mail_jobs
		SET state = 'cancelled', last_error = 'cancelled by an operator', updated_at = now()
		WHERE id = $1 AND state IN ('queued', 'failed', 'dead', 'uncertain', 'cancelled')`, StateCancelled)
}

func (s *Store) change(ctx context.Context, id int64, op, sql, want string) (Job, error) {
	if _, err := s.db.Exec(ctx, sql, id); err != nil {
		return Job{}, fmt.Errorf("%s mail job %d: %w", op, id, err)
	}
	j, err := s.Get(ctx, id)
	if err != nil {
		return j, err
	}
	if j.State != want {
		return j, &StateError{ID: id, State: j.State, Op: op}
	}
	return j, nil
}

// RecordFeedback marks the job whose message the provider knows as
// providerID with a bounce or a complaint, and returns the job's property
// and its lead's address hash, which the caller withdraws. ok is false
// when no job has that id (never ours, or erased with its lead).
func (s *Store) RecordFeedback(ctx context.Context, providerID, kind string) (property string, emailHMAC []byte, ok bool, err error) {
	err = s.db.QueryRow(ctx, `
		UPDATE mailslot.mail_jobs j
		SET feedback = CASE WHEN j.feedback = 'complaint' THEN 'complaint' ELSE $2 END,
		    feedback_at = now(), updated_at = now()
		FROM mailslot.leads l
		WHERE j.provider_id = $1 AND l.id = j.lead_id
		RETURNING j.property, l.email_hmac`, providerID, kind).Scan(&property, &emailHMAC)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil, false, nil
	}
	if err != nil {
		return "", nil, false, fmt.Errorf("record mail feedback: %w", err)
	}
	return property, emailHMAC, true, nil
}

// Counts are the queue's numbers, fleet-wide.
type Counts struct {
	Queued    int64 `json:"queued"`
	Ready     int64 `json:"ready"`
	Sending   int64 `json:"sending"`
	Sent      int64 `json:"sent"`
	Failed    int64 `json:"failed"`
	Dead      int64 `json:"dead"`
	Uncertain int64 `json:"uncertain"`
	Skipped   int64 `json:"skipped"`
	Cancelled int64 `json:"cancelled"`
	Bounced   int64 `json:"bounced"`
	// Complained counts messages the recipient reported as spam.
	Complained int64 `json:"complained"`
	// OldestReadyAgeSeconds is how long the longest-waiting due job has
	// been due.
	OldestReadyAgeSeconds float64 `json:"oldest_ready_age_seconds"`
}

// ReadCounts reads the queue's numbers from Postgres.
func ReadCounts(ctx context.Context, db DB) (Counts, error) {
	var c Counts
	var oldest *time.Time
	var now time.Time
	err := db.QueryRow(ctx, `
		SELECT count(*) FILTER (WHERE state = 'queued'),
		       count(*) FILTER (WHERE state = 'queued' AND next_attempt_at <= now()),
		       count(*) FILTER (WHERE state = 'sending'),
		       count(*) FILTER (WHERE state = 'sent'),
		       count(*) FILTER (WHERE state = 'failed'),
		       count(*) FILTER (WHERE state = 'dead'),
		       count(*) FILTER (WHERE state = 'uncertain'),
		       count(*) FILTER (WHERE state = 'skipped'),
		       count(*) FILTER (WHERE state = 'cancelled'),
		       count(*) FILTER (WHERE feedback = 'bounce'),
		       count(*) FILTER (WHERE feedback = 'complaint'),
		       min(next_attempt_at) FILTER (WHERE state = 'queued' AND next_attempt_at <= now()),
		       now()
		FROM mailslot.mail_jobs`).Scan(&c.Queued, &c.Ready, &c.Sending, &c.Sent, &c.Failed, &c.Dead, &c.Uncertain,
		&c.Skipped, &c.Cancelled, &c.Bounced, &c.Complained, &oldest, &now)
	if err != nil {
		return Counts{}, fmt.Errorf("read mail job counts: %w", err)
	}
	if oldest != nil {
		c.OldestReadyAgeSeconds = max(0, now.Sub(*oldest).Seconds())
	}
	return c, nil
}

// claimed is a job a dispatcher holds the lease of, with what sending it
// needs: the lead's address and name, read now, never stored in the job.
type claimed struct {
	ID              int64
	Kind            string
	Token           string
	Attempts        int
	AfterWithdrawal bool
	CreatedAt       time.Time
	Property        string
	Email           string
	Name            string
	EmailHMAC       []byte
	ConfirmedAt     *time.Time
	BlockedSince    *time.Time
	Settings        *Property // nil: the property has no row
}

// claimSQL leases up to $3 due jobs and returns each with its lead and its
// property's settings, in one round trip.
const claimSQL = `
WITH due AS (
    UPDATE mailslot.mail_jobs j
    SET state = 'sending', attempts = j.attempts + 1, lease_token = gen_random_uuid(),
        lease_owner = $1, lease_until = now() + make_interval(secs => $2), updated_at = now()
    FROM (
        SELECT id FROM mailslot.mail_jobs
        WHERE state = 'queued' AND next_attempt_at <= now()
        ORDER BY next_attempt_at, id
        LIMIT $3
        FOR UPDATE SKIP LOCKED
    ) d
    WHERE j.id = d.id
    RETURNING j.id, j.lead_id, j.kind, j.lease_token, j.attempts, j.after_withdrawal, j.created_at
)
SELECT due.id, due.kind, due.lease_token::text, due.attempts, due.after_withdrawal, due.created_at,
       l.property, l.email, coalesce(l.name, ''), l.email_hmac, l.confirmed_at,
       mailslot.mail_blocked_since(l.property, l.email_hmac, l.withdrawn_at, l.confirmed_at),
       p.property IS NOT NULL, coalesce(p.display_name, ''), coalesce(p.mail_from, ''),
       coalesce(p.sender_name, ''), coalesce(p.sender_postal_address, ''), coalesce(p.sender_contact, ''),
       coalesce(p.double_opt_in, true), coalesce(p.welcome, false), coalesce(p.templates, '{}'), p.updated_at
FROM due
JOIN mailslot.leads l ON l.id = due.lead_id
LEFT JOIN mailslot.properties p ON p.property = l.property
ORDER BY due.id`

func (s *Store) claim(ctx context.Context, owner string, lease time.Duration, n int) ([]claimed, error) {
	rows, err := s.db.Query(ctx, claimSQL, owner, lease.Seconds(), n)
	if err != nil {
		return nil, fmt.Errorf("claim mail jobs: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (claimed, error) {
		var c claimed
		var p Property
		var has bool
		var tpl []byte
		var updated *time.Time
		err := r.Scan(&c.ID, &c.Kind, &c.Token, &c.Attempts, &c.AfterWithdrawal, &c.CreatedAt,
			&c.Property, &c.Email, &c.Name, &c.EmailHMAC, &c.ConfirmedAt, &c.BlockedSince,
			&has, &p.DisplayName, &p.MailFrom, &p.SenderName, &p.SenderPostalAddress, &p.SenderContact,
			&p.DoubleOptIn, &p.Welcome, &tpl, &updated)
		if err != nil {
			return c, err
		}
		if has {
			p.Property = c.Property
			if updated != nil {
				p.UpdatedAt = updated.UTC()
			}
			if err := p.decodeTemplates(tpl); err != nil {
				return c, err
			}
			c.Settings = &p
		}
		return c, nil
	})
	if err != nil {
		return nil, fmt.Errorf("claim mail jobs: %w", err)
	}
	return out, nil
}

// reap settles the jobs whose lease ran out while they were being sent:
// their dispatcher stopped (killed, or cut off from Postgres) somewhere
// between the claim and recording the outcome, so the message may have
// gone. They are uncertain, and wait for an operator.
func (s *Store) reap(ctx context.Context) (int64, error) {
	tag, err := s.db.Exec(ctx, `
		UPDATE mailslot.mail_jobs
		SET state = 'uncertain',
		    last_error = 'attempt ' || attempts || ' was abandoned while sending: its dispatcher (' ||
		                 coalesce(lease_owner, '?') || ') stopped before recording the outcome; the message may have been sent',
		    lease_token = NULL, lease_owner = NULL, lease_until = NULL, updated_at = now()
		WHERE state = 'sending' AND lease_until < now()`)
	if err != nil {
		return 0, fmt.Errorf("reap expired mail job leases: %w", err)
	}
	return tag.RowsAffected(), nil
}

// outcome is how one attempt ended.
type outcome struct {
	State      string
	Error      string
	MessageID  string
	ProviderID string
	// Delay is when a requeued job is due again.
	Delay time.Duration
	// Refund gives the attempt back: the job was never tried (the batch
	// stopped before it).
	Refund bool
}

// finish records c's outcome if c still holds the lease; false means it
// does not (cancelled, reaped, or deleted with its lead).
func (s *Store) finish(ctx context.Context, c claimed, o outcome) (bool, error) {
	refund := 0
	if o.Refund {
		refund = 1
	}
	// The outcome commits without waiting for its WAL flush
	// (synchronous_commit off for this statement's transaction only): it
	// is on the send path of every message, and losing it in a crash is
	// safe, because the claim that set the job sending was flushed: the
	// job stays sending and is reaped as uncertain, never sent again
	// without an operator. The next claim's commit flushes it anyway.
	tag, err := s.db.Exec(ctx, `
		UPDATE mailslot.mail_jobs
		SET state = $3, last_error = nullif($4, ''),
		    message_id = coalesce(nullif($5, ''), message_id), provider_id = coalesce(nullif($6, ''), provider_id),
		    next_attempt_at = CASE WHEN $3 = 'queued' THEN now() + make_interval(secs => $7) ELSE next_attempt_at END,
		    sent_at = CASE WHEN $3 = 'sent' THEN now() ELSE sent_at END,
		    attempts = attempts - $8,
		    lease_token = NULL, lease_owner = NULL, lease_until = NULL, updated_at = now()
		FROM (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit
		WHERE id = $1 AND state = 'sending' AND lease_token = $2::uuid`,
		c.ID, c.Token, o.State, clip(o.Error, 500), o.MessageID, o.ProviderID, o.Delay.Seconds(), refund)
	if err != nil {
		return false, fmt.Errorf("record outcome of mail job %d: %w", c.ID, err)
	}
	return tag.RowsAffected() == 1, nil
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}
