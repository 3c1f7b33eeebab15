// Package challenges brings the per-property bot-challenge settings from
// Postgres (mailslot.property_challenges) to the edge. The table is small
// (one row per property, at most policy.MaxProperties), so each pull reads
// it whole and replaces what the edge enforces; policy.Policy keeps the
// copy in the data directory, so an edge restarted while Postgres is down
// goes on enforcing the last settings it saw.
package challenges

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailslot/mailslot/internal/challenge"
	"github.com/mailslot/mailslot/internal/challenge/policy"
	"github.com/mailslot/mailslot/internal/logging"
	"github.com/mailslot/mailslot/internal/pgpool"
	"github.com/mailslot/mailslot/internal/worker"
)

// DefaultInterval is how often settings are pulled: a change made with
// mailslotctl reaches every connected edge within it.
const DefaultInterval = 30 * time.Second

// maxBackoff bounds the wait between failed pulls.
const maxBackoff = 5 * time.Minute

const pullSQL = `
SELECT property, kind, site_key, secret, hostnames, action, no_js, updated_at
FROM mailslot.property_challenges ORDER BY property LIMIT $1`

// Options configures a Puller.
type Options struct {
	Policy      *policy.Policy
	DatabaseURL string
	Interval    time.Duration
	Logger      *slog.Logger
}

// Puller is the settings worker.
type Puller struct {
	opts Options
	pool *pgxpool.Pool
	log  *slog.Logger
	// health holds the last error (the puller has no states).
	health *worker.Health
	// Signals are for tests: they wait for a pull, or a backoff, on them.
	Signals worker.Signals

	mu       sync.Mutex
	lastPull time.Time
}

// Status is the puller's part of the node status.
type Status struct {
	LastPullAt *time.Time `json:"last_pull_at,omitempty"`
	LastError  string     `json:"last_error,omitempty"`
}

// New prepares a Puller without connecting.
func New(opts Options) (*Puller, error) {
	if opts.Policy == nil {
		return nil, errors.New("challenge settings puller: no policy to put settings in force")
	}
	worker.Positive(&opts.Interval, DefaultInterval)
	opts.Logger = worker.Logger(opts.Logger)
	pool, err := pgpool.Open(opts.DatabaseURL, "mailslot-challenges", 1, 10*time.Second)
	if err != nil {
		return nil, err
	}
	return &Puller{opts: opts, pool: pool, log: opts.Logger, health: worker.NewHealth("")}, nil
}

// Close releases the puller's pool, for a puller that never ran (Run
// closes it when it returns). Closing twice is harmless.
func (p *Puller) Close() { p.pool.Close() }

// Run pulls until ctx ends, backing off while Postgres fails.
func (p *Puller) Run(ctx context.Context) error {
	defer p.pool.Close()
	// After a failure the wait doubles from twice the interval, jittered
	// so that a fleet of edges does not come back to Postgres in step.
	pace := worker.NewPacer(p.opts.Interval, max(2*p.opts.Interval, time.Second), maxBackoff, nil, &p.Signals)
	pace.Rounds(ctx, p.Pull, p.fail)
	return nil
}

// Pull reads the whole table and puts it in force.
func (p *Puller) Pull(ctx context.Context) error {
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rows, err := p.pool.Query(qctx, pullSQL, policy.MaxProperties+1)
	if err != nil {
		return fmt.Errorf("pull challenge settings: %w", err)
	}
	settings, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (policy.Setting, error) {
		var s policy.Setting
		var kind, noJS string
		if err := r.Scan(&s.Property, &kind, &s.SiteKey, &s.Secret, &s.Hostnames, &s.Action, &noJS, &s.UpdatedAt); err != nil {
			return s, err
		}
		var err error
		if s.Kind, err = challenge.ParseKind(kind); err != nil {
			return s, err
		}
		s.NoJS, err = policy.ParseNoJS(noJS)
		return s, err
	})
	if err != nil {
		return fmt.Errorf("read challenge settings: %w", err)
	}
	if len(settings) > policy.MaxProperties {
		p.log.Warn("more challenge settings than an edge holds; the rest get the fleet default", "limit", policy.MaxProperties)
		settings = settings[:policy.MaxProperties]
	}
	now := time.Now()
	if err := p.opts.Policy.Replace(settings, now); err != nil {
		return err
	}
	p.mu.Lock()
	p.lastPull = now
	p.mu.Unlock()
	p.health.Recover("")
	return nil
}

func (p *Puller) fail(err error) {
	msg := logging.Scrub(err.Error())
	if p.health.Fail("", msg) {
		p.log.Warn("challenge settings pull failed; keeping the last settings", logging.KeyErr, msg)
	}
}

// Status reports the last pull.
func (p *Puller) Status() Status {
	_, lastErr, _ := p.health.Snapshot()
	p.mu.Lock()
	defer p.mu.Unlock()
	s := Status{LastError: lastErr}
	if !p.lastPull.IsZero() {
		t := p.lastPull.UTC()
		s.LastPullAt = &t
	}
	return s
}
