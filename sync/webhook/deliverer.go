package webhook

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/mailslot/mailslot/internal/backoff"
	"github.com/mailslot/mailslot/internal/safedial"
	"github.com/mailslot/mailslot/internal/stdwebhook"
)

// Deliverer defaults.
const (
	DefaultConcurrency  = 32
	DefaultBatchSize    = 256
	DefaultPollInterval = time.Second
	DefaultMinBackoff   = 10 * time.Second
	DefaultMaxBackoff   = time.Hour
	// DefaultRetryWindow is how long a delivery is retried, counted from
	// its first attempt, before it is dead.
	DefaultRetryWindow = 72 * time.Hour
	maxErrorLen        = 300
	maxResponseDrain   = 64 << 10
)

// Options configure a Deliverer.
type Options struct {
	// DB is the deliverer's own pool, apart from the sync's, so that a
	// slow receiver never holds a connection the sync needs.
	DB DB
	// Owner names this deliverer in leases (the node id).
	Owner string
	// Client sends the requests; default safedial.New with Timeout and
	// neither private addresses nor plain http allowed.
	Client *safedial.Client
	// Timeout bounds one request (default safedial.DefaultTimeout); it
	// also sets the lease (twice it, plus a minute).
	Timeout time.Duration
	// Concurrency bounds requests in flight (default 32); BatchSize bounds
	// deliveries claimed per round (default 256).
	Concurrency int
	BatchSize   int
	// PollInterval is the wait between rounds that found nothing to do
	// (default 1s); Wake cuts it short.
	PollInterval time.Duration
	// MinBackoff and MaxBackoff bound the exponential, jittered wait after
	// a failed attempt; RetryWindow is how long from the first attempt a
	// delivery is retried before it is dead (default 72h).
	MinBackoff, MaxBackoff, RetryWindow time.Duration
	// Retention is how long finished deliveries are kept (default
	// DefaultRetention); every PruneInterval (default DefaultPruneInterval)
	// a round first prunes older ones (Prune).
	Retention, PruneInterval time.Duration
	Logger                   *slog.Logger
	// OnRound, when set, is called after every round, from the
	// deliverer's goroutine; tests wait on it rather than sleep.
	OnRound func(Round)
}

// Round says what one round did.
type Round struct {
	Claimed   int
	Delivered int
	Failed    int // will be retried
	Dead      int
	Gone      int // answered 410: the subscription is disabled
	Err       error
}

// Status is the deliverer's state for /v1/sync/status and metrics.
type Status struct {
	Running       bool      `json:"running"`
	Rounds        int64     `json:"rounds"`
	Delivered     int64     `json:"delivered"`
	Failed        int64     `json:"failed"`
	Dead          int64     `json:"dead"`
	Disabled      int64     `json:"subscriptions_disabled"`
	InFlight      int64     `json:"in_flight"`
	LastRoundAt   time.Time `json:"last_round_at,omitzero"`
	LastSuccessAt time.Time `json:"last_delivered_at,omitzero"`
	LastError     string    `json:"last_error,omitempty"`
}

// Deliverer claims due deliveries and sends them. Run it in one goroutine
// per process; several processes (edges) share the work through leases.
type Deliverer struct {
	o     Options
	wake  chan struct{}
	lease time.Duration

	running                         atomic.Bool
	rounds, delivered, failed, dead atomic.Int64
	disabled, inFlight              atomic.Int64
	mu                              sync.Mutex
	lastRound, lastSuccess          time.Time
	lastErr                         string
	// lastPrune is only touched by round, from Run's goroutine.
	lastPrune time.Time
}

// NewDeliverer returns a deliverer; it does not connect until Run.
func NewDeliverer(o Options) (*Deliverer, error) {
	if o.DB == nil {
		return nil, errors.New("webhook deliverer: no database")
	}
	o.Owner = cmp.Or(o.Owner, "mailslot")
	o.Timeout = cmp.Or(o.Timeout, safedial.DefaultTimeout)
	o.Concurrency = cmp.Or(o.Concurrency, DefaultConcurrency)
	o.BatchSize = cmp.Or(o.BatchSize, DefaultBatchSize)
	o.PollInterval = cmp.Or(o.PollInterval, DefaultPollInterval)
	o.MinBackoff = cmp.Or(o.MinBackoff, DefaultMinBackoff)
	o.MaxBackoff = max(cmp.Or(o.MaxBackoff, DefaultMaxBackoff), o.MinBackoff)
	o.RetryWindow = cmp.Or(o.RetryWindow, DefaultRetryWindow)
	o.Retention = cmp.Or(o.Retention, DefaultRetention)
	o.PruneInterval = cmp.Or(o.PruneInterval, DefaultPruneInterval)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Client == nil {
		o.Client = safedial.New(safedial.Options{Timeout: o.Timeout, MaxConnsPerHost: o.Concurrency})
	}
	return &Deliverer{o: o, wake: make(chan struct{}, 1), lease: 2*o.Timeout + time.Minute}, nil
}

// Wake starts the next round now (the sync calls it after committing
// events); it never blocks.
func (d *Deliverer) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Status reports the deliverer's counters.
func (d *Deliverer) Status() Status {
	d.mu.Lock()
	defer d.mu.Unlock()
	return Status{
		Running: d.running.Load(), Rounds: d.rounds.Load(), Delivered: d.delivered.Load(), Failed: d.failed.Load(),
		Dead: d.dead.Load(), Disabled: d.disabled.Load(), InFlight: d.inFlight.Load(),
		LastRoundAt: d.lastRound, LastSuccessAt: d.lastSuccess, LastError: d.lastErr,
	}
}

// Run delivers until ctx ends. A round that fails on the database waits a
// jittered backoff and tries again; Run returns only when ctx ends.
func (d *Deliverer) Run(ctx context.Context) error {
	if !d.running.CompareAndSwap(false, true) {
		return errors.New("webhook deliverer: already running")
	}
	defer d.running.Store(false)
	errWait := d.o.MinBackoff
	for {
		r := d.round(ctx)
		if ctx.Err() != nil {
			return nil
		}
		d.finish(r)
		var wait time.Duration
		switch {
		case r.Err != nil:
			d.o.Logger.Warn("webhook round failed", "err", r.Err)
			wait = backoff.Jitter(errWait)
			errWait = min(2*errWait, d.o.MaxBackoff)
		case r.Claimed == d.o.BatchSize:
			errWait = d.o.MinBackoff
			continue // more is due
		default:
			errWait = d.o.MinBackoff
			wait = d.o.PollInterval
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-d.wake:
			t.Stop()
		case <-t.C:
		}
	}
}

func (d *Deliverer) finish(r Round) {
	now := time.Now()
	d.rounds.Add(1)
	d.delivered.Add(int64(r.Delivered))
	d.failed.Add(int64(r.Failed))
	d.dead.Add(int64(r.Dead))
	d.disabled.Add(int64(r.Gone))
	d.mu.Lock()
	d.lastRound = now
	if r.Delivered > 0 {
		d.lastSuccess = now
	}
	if r.Err != nil {
		d.lastErr = r.Err.Error()
	} else {
		d.lastErr = ""
	}
	d.mu.Unlock()
	if d.o.OnRound != nil {
		d.o.OnRound(r)
	}
}

// claimSQL leases up to $1 due deliveries: pending or failed ones whose
// time has come, and delivering ones whose deliverer's lease ran out. A
// delivery is due only when no older event of the same lead to the same
// subscription is still undelivered (or in flight after a cancel), so a
// receiver sees each lead's events in order. Dead deliveries do not hold
// back later ones. Disabled subscriptions get nothing.
const claimSQL = `
WITH candidates AS (
    (SELECT d.id FROM mailslot.webhook_deliveries d
     JOIN mailslot.webhook_subscriptions s ON s.id = d.subscription_id AND s.disabled_at IS NULL
     WHERE d.state IN ('pending', 'failed') AND d.next_attempt_at <= now()
       AND NOT EXISTS (` + olderUndeliveredSQL + `)
     ORDER BY d.next_attempt_at
     LIMIT $1)
    UNION ALL
    (SELECT d.id FROM mailslot.webhook_deliveries d
     JOIN mailslot.webhook_subscriptions s ON s.id = d.subscription_id AND s.disabled_at IS NULL
     WHERE d.state = 'delivering' AND d.lease_until <= now()
       AND NOT EXISTS (` + olderUndeliveredSQL + `)
     ORDER BY d.lease_until
     LIMIT $1)
), due AS (
    SELECT d.id FROM mailslot.webhook_deliveries d
    WHERE d.id IN (SELECT id FROM candidates)
      AND (d.state IN ('pending', 'failed') OR (d.state = 'delivering' AND d.lease_until <= now()))
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE mailslot.webhook_deliveries d
SET state = 'delivering', lease_token = gen_random_uuid(), lease_owner = $2,
    lease_until = now() + $3::interval, attempts = d.attempts + 1,
    first_attempt_at = COALESCE(d.first_attempt_at, now()), last_attempt_at = now()
FROM due, mailslot.webhook_events e, mailslot.webhook_subscriptions s
WHERE d.id = due.id AND e.id = d.event_id AND s.id = d.subscription_id
RETURNING d.id, d.lease_token, d.attempts, s.id, s.url, s.secret,
    CASE WHEN s.previous_expires_at > now() THEN s.previous_secret END,
    e.id, e.type, to_char(e.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), e.payload::text`

// olderUndeliveredSQL finds an older event of d's lead, to d's
// subscription, that is not yet delivered: pending, failed or in flight,
// or cancelled while still in flight.
const olderUndeliveredSQL = `
    SELECT 1 FROM mailslot.webhook_deliveries o
    WHERE o.subscription_id = d.subscription_id AND o.lead_public_id = d.lead_public_id
      AND o.event_seq < d.event_seq
      AND (o.state IN ('pending', 'delivering', 'failed') OR o.lease_until IS NOT NULL)
      AND (o.state <> 'cancelled' OR o.lease_until > now())`

// finishSQL records the outcome of a round's attempts. A delivery that
// was cancelled while in flight (erasure, removal) stays cancelled, and its
// lease goes, which lets the lead's next event (lead.erased) go out. A
// failure past the retry window is dead.
const finishSQL = `
UPDATE mailslot.webhook_deliveries d
SET state = CASE
        WHEN d.state = 'cancelled' THEN 'cancelled'
        WHEN r.ok THEN 'delivered'
        WHEN r.gone THEN 'cancelled'
        WHEN d.first_attempt_at <= now() - $8::interval THEN 'dead'
        ELSE 'failed' END,
    delivered_at    = CASE WHEN r.ok THEN now() END,
    next_attempt_at = CASE WHEN r.ok THEN d.next_attempt_at ELSE now() + r.wait END,
    last_status     = r.status,
    last_error      = CASE WHEN r.ok THEN NULL ELSE r.err END,
    lease_token = NULL, lease_owner = NULL, lease_until = NULL
FROM unnest($1::bigint[], $2::uuid[], $3::bool[], $4::bool[], $5::int[], $6::text[], $7::interval[])
     AS r (id, token, ok, gone, status, err, wait)
WHERE d.id = r.id AND d.lease_token = r.token
RETURNING d.state`

type claimed struct {
	id        int64
	token     uuid.UUID
	attempts  int
	sub       uuid.UUID
	url       string
	secret    string
	previous  *string
	eventID   uuid.UUID
	eventType string
	createdAt string
	payload   string
	sent      bool
	ok, gone  bool
	status    *int32
	err       string
	wait      time.Duration
}

func (d *Deliverer) round(ctx context.Context) Round {
	var r Round
	if now := time.Now(); now.Sub(d.lastPrune) >= d.o.PruneInterval {
		if _, err := Prune(ctx, d.o.DB, d.o.Retention, 0); err != nil {
			r.Err = err
			return r
		}
		d.lastPrune = now
	}
	// New events become deliveries first, so that this round's claim can
	// take them.
	if _, err := FanOut(ctx, d.o.DB, max(DefaultFanOut, d.o.BatchSize)); err != nil {
		r.Err = err
		return r
	}
	rows, err := d.o.DB.Query(ctx, claimSQL, d.o.BatchSize, d.o.Owner, d.lease)
	if err != nil {
		r.Err = fmt.Errorf("claim webhook deliveries: %w", err)
		return r
	}
	batch, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*claimed, error) {
		c := &claimed{}
		err := row.Scan(&c.id, &c.token, &c.attempts, &c.sub, &c.url, &c.secret, &c.previous,
			&c.eventID, &c.eventType, &c.createdAt, &c.payload)
		return c, err
	})
	if err != nil {
		r.Err = fmt.Errorf("claim webhook deliveries: %w", err)
		return r
	}
	r.Claimed = len(batch)
	if len(batch) == 0 {
		return r
	}
	d.send(ctx, batch)
	// What was not sent because the deliverer is stopping keeps its lease
	// until it runs out; then another round (or edge) sends it.
	sent := batch[:0]
	for _, c := range batch {
		if c.sent {
			sent = append(sent, c)
		}
	}
	if len(sent) == 0 {
		return r
	}
	return d.record(ctx, sent, r)
}

// send POSTs the batch, at most Concurrency at once.
func (d *Deliverer) send(ctx context.Context, batch []*claimed) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(d.o.Concurrency, len(batch)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(batch) || ctx.Err() != nil {
					return
				}
				d.inFlight.Add(1)
				d.post(ctx, batch[i])
				d.inFlight.Add(-1)
			}
		})
	}
	wg.Wait()
}

// Body builds the delivery's body, the Standard Webhooks envelope:
// {"type":…,"timestamp":…,"data":<payload>}.
func body(c *claimed) []byte {
	b := make([]byte, 0, 64+len(c.payload))
	b = append(b, `{"type":`...)
	b = strconv.AppendQuote(b, c.eventType)
	b = append(b, `,"timestamp":`...)
	b = strconv.AppendQuote(b, c.createdAt)
	b = append(b, `,"data":`...)
	b = append(b, c.payload...)
	return append(b, '}')
}

func (d *Deliverer) post(ctx context.Context, c *claimed) {
	c.sent = true
	fail := func(msg string) {
		c.err = truncate(msg)
		c.wait = d.retryWait(c.attempts)
	}
	secrets, err := parseSecrets(c.secret, c.previous)
	if err != nil {
		fail(err.Error())
		return
	}
	payload := body(c)
	now := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(payload))
	if err != nil {
		fail("build request: URL does not parse")
		return
	}
	id := c.eventID.String()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "mailslot-webhooks/1")
	req.Header.Set(stdwebhook.HeaderID, id)
	req.Header.Set(stdwebhook.HeaderTimestamp, stdwebhook.Timestamp(now))
	req.Header.Set(stdwebhook.HeaderSignature, stdwebhook.Sign(secrets, id, now, payload))
	resp, err := d.o.Client.Do(req)
	if err != nil {
		fail(err.Error())
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseDrain))
	resp.Body.Close()
	status := int32(resp.StatusCode)
	c.status = &status
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		c.ok = true
	case resp.StatusCode == http.StatusGone:
		c.gone = true
		c.err = "receiver answered 410 Gone: subscription disabled"
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		fail(fmt.Sprintf("receiver answered %d (redirects are not followed)", resp.StatusCode))
	default:
		fail(fmt.Sprintf("receiver answered %d", resp.StatusCode))
	}
}

func parseSecrets(current string, previous *string) ([]stdwebhook.Secret, error) {
	cur, err := stdwebhook.ParseSecret(current)
	if err != nil {
		return nil, fmt.Errorf("subscription secret: %w", err)
	}
	out := []stdwebhook.Secret{cur}
	if previous != nil {
		if prev, err := stdwebhook.ParseSecret(*previous); err == nil {
			out = append(out, prev)
		}
	}
	return out, nil
}

// retryWait is the jittered exponential wait after the attempts-th failed
// attempt.
func (d *Deliverer) retryWait(attempts int) time.Duration {
	w := d.o.MinBackoff
	for i := 1; i < attempts && w < d.o.MaxBackoff; i++ {
		w *= 2
	}
	return backoff.Jitter(min(w, d.o.MaxBackoff))
}

func truncate(s string) string {
	if len(s) <= maxErrorLen {
		return s
	}
	return s[:maxErrorLen] + "…"
}

// record writes the batch's outcomes and disables the subscriptions that
// answered 410. It uses a fresh context so that a round that finished
// sending is recorded even while the deliverer stops.
func (d *Deliverer) record(ctx context.Context, batch []*claimed, r Round) Round {
	n := len(batch)
	ids, tokens := make([]int64, n), make([]uuid.UUID, n)
	oks, gones := make([]bool, n), make([]bool, n)
	statuses, errs, waits := make([]*int32, n), make([]string, n), make([]time.Duration, n)
	gone := map[uuid.UUID]bool{}
	for i, c := range batch {
		ids[i], tokens[i], oks[i], gones[i], statuses[i], errs[i], waits[i] = c.id, c.token, c.ok, c.gone, c.status, c.err, c.wait
		if c.gone {
			gone[c.sub] = true
		}
	}
	b := &pgx.Batch{}
	b.Queue(finishSQL, ids, tokens, oks, gones, statuses, errs, waits, d.o.RetryWindow).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var state string
			if err := rows.Scan(&state); err != nil {
				return err
			}
			switch state {
			case "delivered":
				r.Delivered++
			case "failed":
				r.Failed++
			case "dead":
				r.Dead++
			}
		}
		return rows.Err()
	})
	if len(gone) > 0 {
		queueEraseLock(b)
	}
	for sub := range gone {
		b.Queue(disableSQL, sub, "gone", "subscription disabled: receiver answered 410 Gone").QueryRow(func(row pgx.Row) error {
			var n, cancelled int64
			if err := row.Scan(&n, &cancelled); err != nil {
				return err
			}
			r.Gone += int(n)
			return nil
		})
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := d.o.DB.SendBatch(rctx, b).Close(); err != nil {
		r.Err = fmt.Errorf("record webhook deliveries: %w", err)
	}
	for sub := range gone {
		d.o.Logger.Warn("webhook subscription disabled: receiver answered 410 Gone", "subscription", sub)
	}
	return r
}
