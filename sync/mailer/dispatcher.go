// Package mailer sends the mail jobs that the sync queues in Postgres
// (sync/drain/mailjobs.go): confirmation requests and welcomes. Any edge
// with a transport runs a Dispatcher; jobs are leased (store.go), so no
// job is in flight twice, and sending never sits in a request's path.
//
// At send time the dispatcher reads the address and the name from the
// lead (jobs hold neither), checks again that the address may be sent
// this message (a withdrawal, a suppression or a confirmation since the
// job was queued skips it), composes it with internal/mail (a Message-ID
// derived from the job, signed confirm and unsubscribe links) and sends it
// through the transport. A temporary failure requeues the job with a
// jittered exponential backoff, and after MaxAttempts the job is dead; a
// permanent refusal fails it; an uncertain outcome (the server may have
// accepted the message, but its answer was lost) is recorded as such and
// never resent without an operator (mailslotctl mail retry).
package mailer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	netmail "net/mail"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailslot/mailslot/internal/backoff"
	"github.com/mailslot/mailslot/internal/logging"
	"github.com/mailslot/mailslot/internal/mail"
	"github.com/mailslot/mailslot/internal/metrics"
	"github.com/mailslot/mailslot/internal/pgpool"
	"github.com/mailslot/mailslot/internal/token"
	"github.com/mailslot/mailslot/pgschema"
)

// Defaults.
const (
	DefaultMaxAttempts = 10
	DefaultMinBackoff  = 30 * time.Second
	DefaultMaxBackoff  = time.Hour
	DefaultMaxAge      = 72 * time.Hour
	DefaultInterval    = 250 * time.Millisecond
	DefaultBatch       = 32
	// DefaultSendTimeout bounds one message; the lease is the batch's
	// sends plus a grace period.
	DefaultSendTimeout = time.Minute
)

// Dispatcher states.
const (
	StateStarting     = "starting"
	StateIdle         = "idle"
	StateDispatching  = "dispatching"
	StateBackoff      = "backoff"
	StateSchemaBehind = "schema_behind"
	StateStopped      = "stopped"
)

// Options configures a Dispatcher.
type Options struct {
	DatabaseURL string
	Transport   mail.Transport
	// TransportName is shown in status: smtp or resend.
	TransportName string
	// From and Sender are the fleet's; properties may override them.
	From   netmail.Address
	Sender mail.Sender
	// Tokens sign the confirm and unsubscribe links under PublicURL, valid
	// for ConfirmTTL and UnsubscribeTTL.
	Tokens                     *token.Keys
	PublicURL                  string
	ConfirmTTL, UnsubscribeTTL time.Duration
	// Owner names this dispatcher in leases (the node id).
	Owner                  string
	MaxAttempts            int
	MinBackoff, MaxBackoff time.Duration
	// MaxAge skips a job not sent this long after it was queued.
	MaxAge time.Duration
	// Interval is how often an idle dispatcher looks for due jobs.
	Interval time.Duration
	// Batch bounds the jobs claimed at once.
	Batch       int
	SendTimeout time.Duration
	Logger      *slog.Logger
	// Now is the clock for link expiry; tests may replace it.
	Now func() time.Time
}

// Dispatcher claims due mail jobs and sends them.
type Dispatcher struct {
	opts  Options
	pool  *pgxpool.Pool
	store *Store
	log   *slog.Logger
	tpl   templateCache

	sent, failedSends atomic.Int64

	mu        sync.Mutex
	state     string
	reason    string
	lastErr   string
	lastErrAt time.Time
}

// New validates the options and prepares a pool without connecting, so
// that an edge starts while Postgres is down.
func New(opts Options) (*Dispatcher, error) {
	if opts.Transport == nil {
		return nil, errors.New("mail dispatcher: no transport")
	}
	if opts.Tokens == nil {
		return nil, errors.New("mail dispatcher: no token keys for the links")
	}
	if opts.PublicURL == "" {
		return nil, errors.New("mail dispatcher: MAILSLOT_PUBLIC_URL is not set; messages need it for their links")
	}
	if _, err := url.Parse(opts.PublicURL); err != nil {
		return nil, errors.New("mail dispatcher: MAILSLOT_PUBLIC_URL is not a URL")
	}
	if opts.From.Address == "" {
		return nil, errors.New("mail dispatcher: no from address (MAILSLOT_MAIL_FROM)")
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = DefaultMaxAttempts
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = DefaultMinBackoff
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(DefaultMaxBackoff, opts.MinBackoff)
	}
	if opts.MaxAge <= 0 {
		opts.MaxAge = DefaultMaxAge
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.Batch <= 0 {
		opts.Batch = DefaultBatch
	}
	if opts.SendTimeout <= 0 {
		opts.SendTimeout = DefaultSendTimeout
	}
	if opts.ConfirmTTL <= 0 {
		opts.ConfirmTTL = 30 * 24 * time.Hour
	}
	if opts.UnsubscribeTTL <= 0 {
		opts.UnsubscribeTTL = 365 * 24 * time.Hour
	}
	if opts.Owner == "" {
		opts.Owner = "unknown"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	pool, err := pgpool.Open(opts.DatabaseURL, "mailslot-mailer", 2, 30*time.Second)
	if err != nil {
		return nil, err
	}
	return &Dispatcher{
		opts:  opts,
		pool:  pool,
		store: NewStore(pool),
		log:   opts.Logger,
		tpl:   templateCache{m: map[string]cachedTemplates{}},
		state: StateStarting,
	}, nil
}

// Run sends until ctx ends. A message being sent when ctx ends is finished
// and recorded; jobs claimed but not yet tried go back to the queue.
func (d *Dispatcher) Run(ctx context.Context) error {
	defer d.pool.Close()
	defer func() { _ = d.opts.Transport.Close() }()
	defer d.setState(StateStopped, "")
	down := d.opts.Interval // the wait while Postgres or the transport is down
	var schemaOK, reaped time.Time
	for ctx.Err() == nil {
		wait := d.opts.Interval
		if time.Since(schemaOK) > 5*time.Minute {
			ok, err := d.checkSchema(ctx)
			if err != nil {
				d.trouble(err)
				d.setState(StateBackoff, "")
			}
			if !ok {
				backoff.Sleep(ctx, backoff.Jitter(down))
				down = min(down*2, 30*time.Second)
				continue
			}
			schemaOK = time.Now()
		}
		if time.Since(reaped) > 10*time.Second {
			if n, err := d.store.reap(ctx); err != nil {
				d.trouble(err)
			} else {
				reaped = time.Now()
				if n > 0 {
					d.log.Warn("mail jobs abandoned while sending are now uncertain", "jobs", n)
				}
			}
		}
		n, transportDown, err := d.round(ctx)
		switch {
		case err != nil:
			d.trouble(err)
			d.setState(StateBackoff, "")
			wait = backoff.Jitter(down)
			down = min(down*2, d.opts.MaxBackoff)
		case transportDown:
			d.setState(StateBackoff, "the "+d.opts.TransportName+" transport is unreachable")
			wait = backoff.Jitter(down)
			down = min(down*2, d.opts.MaxBackoff)
		case n > 0:
			down = d.opts.Interval
			continue // more may be due
		default:
			down = d.opts.Interval
			d.setState(StateIdle, "")
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
	return nil
}

// round claims one batch and sends it. It reports how many jobs it
// claimed and whether it stopped because the transport cannot be reached.
func (d *Dispatcher) round(ctx context.Context) (int, bool, error) {
	lease := time.Duration(d.opts.Batch)*d.opts.SendTimeout + time.Minute
	jobs, err := d.store.claim(ctx, d.opts.Owner, lease, d.opts.Batch)
	if err != nil || len(jobs) == 0 {
		return 0, false, err
	}
	d.setState(StateDispatching, "")
	stopped := false // the transport is down, or the dispatcher is stopping
	down := false
	for _, c := range jobs {
		var o sendResult
		if stopped || ctx.Err() != nil {
			// Never tried: back to the queue as it was.
			o.outcome = outcome{State: StateQueued, Refund: true, Error: "returned untried: the dispatcher stopped or the transport was down"}
			if down {
				o.Delay = d.opts.Interval
			}
		} else {
			o = d.send(ctx, c)
			if o.transportDown {
				stopped, down = true, true
			}
		}
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		held, err := d.store.finish(wctx, c, o.outcome)
		cancel()
		if err != nil {
			// The job keeps its lease; once it runs out the job is
			// reaped as uncertain if it was being sent.
			return len(jobs), down, err
		}
		if !held {
			d.log.Info("mail job changed while it was sent (cancelled, or erased with its lead)", "job", c.ID)
		}
	}
	return len(jobs), down, nil
}

// sendResult is an outcome and whether the transport could not be
// reached at all.
type sendResult struct {
	outcome
	transportDown bool
}

// send checks, composes and sends one job.
func (d *Dispatcher) send(ctx context.Context, c claimed) sendResult {
	if why := d.ineligible(c); why != "" {
		return sendResult{outcome: outcome{State: StateSkipped, Error: why}}
	}
	m, err := d.compose(c)
	if err != nil {
		d.trouble(fmt.Errorf("mail job %d: %w", c.ID, err))
		return sendResult{outcome: outcome{State: StateFailed, Error: err.Error()}}
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.opts.SendTimeout)
	res, err := d.opts.Transport.Send(sctx, m)
	cancel()
	if err == nil {
		d.sent.Add(1)
		d.clearTrouble()
		return sendResult{outcome: outcome{State: StateSent, MessageID: m.MessageID, ProviderID: res.ID}}
	}
	d.failedSends.Add(1)
	d.trouble(fmt.Errorf("mail job %d: %w", c.ID, err))
	var se *mail.SendError
	errors.As(err, &se)
	switch mail.ClassOf(err) {
	case mail.Permanent:
		return sendResult{outcome: outcome{State: StateFailed, Error: err.Error(), MessageID: m.MessageID}}
	case mail.Uncertain:
		return sendResult{outcome: outcome{State: StateUncertain, Error: err.Error(), MessageID: m.MessageID}}
	}
	r := sendResult{transportDown: se != nil && (se.Op == "connect" || se.Op == "request")}
	if c.Attempts >= d.opts.MaxAttempts {
		r.outcome = outcome{State: StateDead, Error: fmt.Sprintf("%s (attempt %d of %d)", err, c.Attempts, d.opts.MaxAttempts)}
		return r
	}
	delay := d.opts.MinBackoff << min(c.Attempts-1, 20)
	delay = backoff.Jitter(min(delay, d.opts.MaxBackoff))
	if se != nil && se.RetryAfter > delay {
		delay = min(se.RetryAfter, d.opts.MaxBackoff)
	}
	r.outcome = outcome{State: StateQueued, Error: err.Error(), Delay: delay}
	return r
}

// ineligible says why c must not be sent now, or "". The sync checked
// when it queued the job; this is the same rule at the later time.
func (d *Dispatcher) ineligible(c claimed) string {
	if d.opts.Now().Sub(c.CreatedAt) > d.opts.MaxAge {
		return "expired: not sent within " + d.opts.MaxAge.String() + " of the sign-up (MAILSLOT_MAIL_MAX_AGE)"
	}
	blocked := c.BlockedSince != nil
	switch c.Kind {
	case string(mail.Welcome):
		if blocked {
			return "the address has withdrawn or is suppressed: it gets no welcome"
		}
	case string(mail.Confirmation):
		switch {
		case blocked && !c.AfterWithdrawal:
			return "the address withdrew or was suppressed after the request was queued"
		case blocked && c.BlockedSince.After(c.CreatedAt):
			return "the address withdrew again after the request was queued"
		case !blocked && c.ConfirmedAt != nil:
			return "the address is already confirmed"
		}
	default:
		return "unknown kind " + strconv.Quote(c.Kind)
	}
	return ""
}

// compose builds c's message.
func (d *Dispatcher) compose(c claimed) (*mail.Message, error) {
	from, err := c.Settings.From(d.opts.From)
	if err != nil {
		return nil, fmt.Errorf("property %q from address: %w", c.Property, err)
	}
	tpl, err := d.tpl.get(c.Settings)
	if err != nil {
		return nil, fmt.Errorf("property %q: %w", c.Property, err)
	}
	display := c.Property
	if c.Settings != nil && c.Settings.DisplayName != "" {
		display = c.Settings.DisplayName
	}
	now := d.opts.Now().UTC()
	link := func(purpose, path string, ttl time.Duration) string {
		tok := d.opts.Tokens.Sign(token.Claims{Purpose: purpose, Property: c.Property, EmailHMAC: c.EmailHMAC,
			Expires: now.Add(ttl).Truncate(time.Second)})
		return d.opts.PublicURL + path + "?token=" + url.QueryEscape(tok)
	}
	dr := mail.Draft{
		Kind:           mail.Kind(c.Kind),
		JobID:          strconv.FormatInt(c.ID, 10),
		From:           from,
		To:             netmail.Address{Name: c.Name, Address: c.Email},
		Property:       display,
		UnsubscribeURL: link(token.Unsubscribe, "/v1/unsubscribe", d.opts.UnsubscribeTTL),
		Sender:         c.Settings.Sender(d.opts.Sender),
		Templates:      tpl,
	}
	if dr.Kind == mail.Confirmation {
		dr.ConfirmURL = link(token.Confirm, "/v1/confirm", d.opts.ConfirmTTL)
	}
	return mail.Compose(dr)
}

func (d *Dispatcher) checkSchema(ctx context.Context) (bool, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, err := pgschema.Version(cctx, d.pool)
	if err != nil {
		return false, err
	}
	if need := pgschema.Required(); v < need {
		msg := fmt.Sprintf("Postgres schema is at version %d, this edge needs %d: run mailslotctl migrate", v, need)
		if d.getState() != StateSchemaBehind {
			d.log.Warn("not sending mail", "reason", msg)
		}
		d.setState(StateSchemaBehind, msg)
		return false, nil
	}
	return true, nil
}

func (d *Dispatcher) setState(s, reason string) {
	d.mu.Lock()
	d.state, d.reason = s, reason
	d.mu.Unlock()
}

func (d *Dispatcher) getState() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.state
}

// trouble records err for status and logs it. Errors here carry no
// address: the transports redact the recipient, and the store's errors
// name jobs by id.
func (d *Dispatcher) trouble(err error) {
	d.mu.Lock()
	d.lastErr, d.lastErrAt = err.Error(), time.Now()
	d.mu.Unlock()
	d.log.Warn("mail dispatch trouble", logging.KeyErr, err)
}

func (d *Dispatcher) clearTrouble() {
	d.mu.Lock()
	d.lastErr = ""
	d.mu.Unlock()
}

// Status is the mail pipeline's state, for /v1/sync/status, mailslotctl
// status and metrics. The counts come from Postgres (fleet-wide); State,
// Reason, the sends and LastError are this edge's dispatcher's own.
type Status struct {
	Transport string `json:"transport"`
	State     string `json:"state"`
	Reason    string `json:"reason,omitempty"`
	Counts
	// SentHere and FailedSendsHere count this process's sends.
	SentHere        int64      `json:"sent_here"`
	FailedSendsHere int64      `json:"failed_sends_here"`
	LastError       string     `json:"last_error,omitempty"`
	LastErrorAt     *time.Time `json:"last_error_at,omitempty"`
}

// Status reads the counts from Postgres and adds the dispatcher's state.
func (d *Dispatcher) Status(ctx context.Context) (Status, error) {
	c, err := ReadCounts(ctx, d.pool)
	if err != nil {
		return Status{}, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	st := Status{Transport: d.opts.TransportName, State: d.state, Reason: d.reason, Counts: c,
		SentHere: d.sent.Load(), FailedSendsHere: d.failedSends.Load(), LastError: d.lastErr}
	if st.LastError != "" {
		t := d.lastErrAt.UTC()
		st.LastErrorAt = &t
	}
	return st, nil
}

// Samples reports the mail queue for /metrics.
func (d *Dispatcher) Samples(ctx context.Context) ([]metrics.Sample, error) {
	st, err := d.Status(ctx)
	if err != nil {
		return nil, err
	}
	return []metrics.Sample{
		{Name: "mail_jobs_queued", Help: "Mail jobs waiting to be sent (fleet-wide).", Value: float64(st.Queued)},
		{Name: "mail_jobs_ready", Help: "Queued mail jobs that are due now.", Value: float64(st.Ready)},
		{Name: "mail_jobs_sending", Help: "Mail jobs being sent.", Value: float64(st.Sending)},
		{Name: "mail_jobs_sent", Help: "Mail jobs sent.", Value: float64(st.Sent)},
		{Name: "mail_jobs_failed", Help: "Mail jobs refused permanently.", Value: float64(st.Failed)},
		{Name: "mail_jobs_dead", Help: "Mail jobs out of attempts.", Value: float64(st.Dead)},
		{Name: "mail_jobs_uncertain", Help: "Mail jobs that may have been delivered; an operator decides.", Value: float64(st.Uncertain)},
		{Name: "mail_jobs_skipped", Help: "Mail jobs skipped because the address no longer accepted them.", Value: float64(st.Skipped)},
		{Name: "mail_jobs_bounced", Help: "Sent messages reported as hard bounces.", Value: float64(st.Bounced)},
		{Name: "mail_jobs_complained", Help: "Sent messages reported as spam.", Value: float64(st.Complained)},
		{Name: "mail_oldest_ready_seconds", Help: "How long the longest-waiting due mail job has waited.", Value: st.OldestReadyAgeSeconds},
		{Name: "mail_sent_total", Help: "Messages this process sent.", Value: float64(st.SentHere), Counter: true},
		{Name: "mail_send_failures_total", Help: "Sends by this process that failed.", Value: float64(st.FailedSendsHere), Counter: true},
	}, nil
}

// templateCache keeps parsed templates per property, keyed by the
// settings' update time, bounded.
type templateCache struct {
	mu sync.Mutex
	m  map[string]cachedTemplates
}

type cachedTemplates struct {
	at  time.Time
	tpl *mail.Templates
}

const maxCachedTemplates = 256

func (tc *templateCache) get(p *Property) (*mail.Templates, error) {
	if p == nil {
		return mail.DefaultTemplates(), nil
	}
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if c, ok := tc.m[p.Property]; ok && c.at.Equal(p.UpdatedAt) {
		return c.tpl, nil
	}
	tpl, err := mail.ParseTemplates(p.Templates)
	if err != nil {
		return nil, err
	}
	if len(tc.m) >= maxCachedTemplates {
		clear(tc.m)
	}
	tc.m[p.Property] = cachedTemplates{at: p.UpdatedAt, tpl: tpl}
	return tpl, nil
}

// Close releases the dispatcher's pool; Run closes it too, and closing
// twice is harmless. A node that never ran calls it.
func (d *Dispatcher) Close() { d.pool.Close() }
