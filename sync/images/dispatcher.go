// Package images describes images by dispatching jobs from Postgres to an
// external GPU provider (Replicate, or a Hugging Face Inference Endpoint):
// each job runs a face detector (InsightFace) and a captioner (Phi-3
// vision) on one image and stores a caption and a face count, never an
// embedding. The edge never runs the models.
//
// Jobs live in mailslot.image_jobs and are claimed with leases (store.go
// says why not River), so any number of edges can run a Dispatcher and no
// job is in flight twice. An attempt that fails backs off exponentially
// with jitter; after the last attempt, or on an error that retrying cannot
// fix, the job is dead with its last error, and an operator can retry or
// cancel it (mailslotctl images). Each prediction's reported compute time
// is priced and summed per month; at the monthly budget, dispatching stops
// and jobs wait. Erasing a lead deletes its jobs through a foreign key, and
// a job erased while the provider works stores nothing when it completes.
package images

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailslot/mailslot/internal/backoff"
	"github.com/mailslot/mailslot/internal/logging"
	"github.com/mailslot/mailslot/internal/pgpool"
	"github.com/mailslot/mailslot/internal/worker"
)

// Defaults, sized for providers whose cold starts take 30 to 90 seconds
// (seed: Replicate 30–60 s, Hugging Face with ephemeral storage 45–90 s).
const (
	// DefaultAttemptTimeout covers two cold starts back to back (the two
	// models may sit on different machines) plus inference.
	DefaultAttemptTimeout = 5 * time.Minute
	// DefaultRequestTimeout bounds one HTTP call; a Hugging Face endpoint
	// holds the call through its cold start.
	DefaultRequestTimeout = 2 * time.Minute
	DefaultMaxAttempts    = 5
	DefaultMinBackoff     = 30 * time.Second
	DefaultMaxBackoff     = 30 * time.Minute
	DefaultConcurrency    = 2
	// DefaultLeaseGrace is how long a job's lease outlives its attempt.
	DefaultLeaseGrace = time.Minute
	DefaultInterval   = 2 * time.Second
	// DefaultPollInterval is how often a running prediction is polled when
	// no webhook is configured; with one, polling is only a safety net.
	DefaultPollInterval        = 3 * time.Second
	DefaultWebhookPollInterval = 30 * time.Second
	// DefaultCaptionPrompt asks for what the product stores.
	DefaultCaptionPrompt = "Describe this image in one short sentence."
)

// States a dispatcher reports.
const (
	StateStarting        = "starting"
	StateIdle            = "idle"
	StateDispatching     = "dispatching"
	StateBudgetExhausted = "budget_exhausted"
	StateBackoff         = "backoff"
	StateSchemaBehind    = "schema_behind"
	StateStopped         = "stopped"
)

// Options configures a Dispatcher.
type Options struct {
	DatabaseURL string
	Provider    Provider
	// Owner names this dispatcher in leases (the node id).
	Owner string
	// Concurrency bounds the jobs this dispatcher runs at once.
	Concurrency int
	// Interval is how often an idle dispatcher looks for due jobs.
	Interval time.Duration
	// PollInterval is how often a running prediction is polled.
	PollInterval time.Duration
	// AttemptTimeout bounds one attempt: both predictions, cold starts
	// included. LeaseGrace is added to it for the lease.
	AttemptTimeout time.Duration
	LeaseGrace     time.Duration
	// MinBackoff and MaxBackoff bound the wait before a failed job's next
	// attempt: MinBackoff doubled per attempt, with jitter.
	MinBackoff, MaxBackoff time.Duration
	// PricePerSecond prices the provider's reported compute time (USD).
	PricePerSecond float64
	// MonthlyBudget (USD) stops dispatching when this month's spend
	// reaches it; 0 means no limit.
	MonthlyBudget float64
	CaptionPrompt string
	Logger        *slog.Logger
}

// Dispatcher claims due jobs and runs them at the provider.
type Dispatcher struct {
	opts  Options
	pool  *pgxpool.Pool
	store *Store
	log   *slog.Logger
	slots chan struct{}
	wake  chan struct{}
	jobs  sync.WaitGroup

	health *worker.Health
	schema *worker.SchemaGate
	// Signals are for tests: they wait for a round, or a backoff, on them.
	Signals worker.Signals

	mu     sync.Mutex
	reason string // why the state is what it is, when it is not obvious
}

// errLeaseLost ends an attempt whose job is no longer this dispatcher's.
var errLeaseLost = errors.New("lease lost")

// New validates the options and prepares a pool without connecting.
func New(opts Options) (*Dispatcher, error) {
	if opts.Provider == nil {
		return nil, errors.New("image dispatcher: no provider")
	}
	worker.Positive(&opts.Concurrency, DefaultConcurrency)
	worker.Positive(&opts.Interval, DefaultInterval)
	worker.Positive(&opts.PollInterval, DefaultPollInterval)
	worker.Positive(&opts.AttemptTimeout, DefaultAttemptTimeout)
	worker.Positive(&opts.LeaseGrace, DefaultLeaseGrace)
	worker.Positive(&opts.MinBackoff, DefaultMinBackoff)
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(DefaultMaxBackoff, opts.MinBackoff)
	}
	if opts.CaptionPrompt == "" {
		opts.CaptionPrompt = DefaultCaptionPrompt
	}
	if opts.Owner == "" {
		opts.Owner = "unknown"
	}
	opts.Logger = worker.Logger(opts.Logger)
	// One connection per running job (its polls and its finish) and one
	// for the claim loop.
	pool, err := OpenPool(opts.DatabaseURL, int32(opts.Concurrency+1))
	if err != nil {
		return nil, err
	}
	return &Dispatcher{
		opts:   opts,
		pool:   pool,
		store:  NewStore(pool),
		log:    opts.Logger,
		slots:  make(chan struct{}, opts.Concurrency),
		wake:   make(chan struct{}, 1),
		health: worker.NewHealth(StateStarting),
		schema: worker.NewSchemaGate(pool),
	}, nil
}

// OpenPool prepares a small pool on dbURL for the image pipeline without
// connecting, so that an edge starts while Postgres is down.
func OpenPool(dbURL string, maxConns int32) (*pgxpool.Pool, error) {
	return pgpool.Open(dbURL, "mailslot-images", maxConns, 30*time.Second)
}

// Close releases the dispatcher's pool, for a dispatcher that never ran
// (Run closes it when it returns). Closing twice is harmless.
func (d *Dispatcher) Close() { d.pool.Close() }

// Run dispatches until ctx ends, then gives back the jobs it holds (their
// predictions keep running at the provider and are adopted by the next
// claimer) and returns.
func (d *Dispatcher) Run(ctx context.Context) error {
	defer d.pool.Close()
	defer d.setState(StateStopped, "")
	defer d.jobs.Wait()
	// Failed claims back off by backoff's defaults; MinBackoff and
	// MaxBackoff are for failed attempts (see delay).
	pace := worker.NewPacer(d.opts.Interval, backoff.DefaultMin, backoff.DefaultMax, d.wake, &d.Signals)
	for ctx.Err() == nil {
		if d.schema.Due() {
			if err := d.checkSchema(ctx); err != nil {
				if !errors.Is(err, errSchemaBehind) {
					d.trouble(err)
					d.setState(StateBackoff, "")
				}
				pace.Backoff(ctx, err)
				continue
			}
		}
		n, err := d.step(ctx)
		switch {
		case err != nil && ctx.Err() != nil:
			return nil
		case err != nil:
			d.trouble(err)
			d.setState(StateBackoff, "")
			d.schema.Recheck()
			pace.Backoff(ctx, err)
		case n > 0:
			pace.Again() // there may be more due jobs and free slots
		default:
			pace.Idle(ctx)
		}
	}
	return nil
}

// step claims as many due jobs as there are free slots and starts them. It
// claims nothing while the monthly budget is spent.
func (d *Dispatcher) step(ctx context.Context) (int, error) {
	free := cap(d.slots) - len(d.slots)
	if free == 0 {
		return 0, nil
	}
	if d.opts.MonthlyBudget > 0 {
		sp, err := d.store.MonthToDate(ctx)
		if err != nil {
			return 0, err
		}
		if sp.USD >= d.opts.MonthlyBudget {
			reason := budgetReason(sp, d.opts.MonthlyBudget)
			if d.getState() != StateBudgetExhausted {
				d.log.Warn("not dispatching image jobs", "reason", reason)
			}
			d.setState(StateBudgetExhausted, reason)
			return 0, nil
		}
	}
	if n, err := d.store.reap(ctx); err != nil {
		return 0, err
	} else if n > 0 {
		d.log.Warn("image jobs abandoned by a stopped dispatcher; retrying them", "jobs", n)
	}
	lease := d.opts.AttemptTimeout + d.opts.LeaseGrace
	jobs, err := d.store.claim(ctx, d.opts.Owner, d.opts.Provider.Name(), lease, free)
	if err != nil {
		return 0, err
	}
	if len(jobs) == 0 {
		if len(d.slots) == 0 {
			d.setState(StateIdle, "")
		}
		return 0, nil
	}
	d.setState(StateDispatching, "")
	for _, c := range jobs {
		d.slots <- struct{}{}
		d.jobs.Add(1)
		go d.run(ctx, c)
	}
	return len(jobs), nil
}

// run carries one claimed job through one attempt and records the outcome.
func (d *Dispatcher) run(ctx context.Context, c claimed) {
	defer func() {
		<-d.slots
		d.jobs.Done()
		select {
		case d.wake <- struct{}{}:
		default:
		}
	}()
	log := d.log.With("job", c.ID, "attempt", c.Attempts)
	actx, cancel := context.WithTimeout(ctx, d.opts.AttemptTimeout)
	defer cancel()
	res, err := d.attempt(actx, c)
	// The outcome is written even when ctx has ended: that is how a job
	// is given back on shutdown.
	wctx, wcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer wcancel()
	switch {
	case err == nil:
		ok, ferr := d.store.succeed(wctx, c, res)
		switch {
		case ferr != nil:
			d.trouble(ferr) // the lease expires and the job runs again; results are reused
		case ok:
			log.Info("image described", "faces", res.Faces)
			d.recovered()
		default:
			log.Info("image job was cancelled or erased while it ran; its result is not stored")
		}
	case errors.Is(err, errLeaseLost):
		log.Info("image job was cancelled, erased or taken over while it ran; stopped it")
	case ctx.Err() != nil:
		if rerr := d.store.release(wctx, c); rerr != nil {
			log.Warn("give back image job on shutdown", logging.KeyErr, rerr)
		}
	default:
		msg := err.Error()
		dead := isPermanent(err) || c.Attempts >= c.MaxAttempts
		delay := d.delay(c.Attempts)
		if _, ferr := d.store.fail(wctx, c, msg, dead, delay); ferr != nil {
			d.trouble(ferr)
			return
		}
		d.trouble(err)
		if dead {
			log.Warn("image job is dead", "reason", clip(msg, 300))
		} else {
			log.Info("image job attempt failed; retrying later", "reason", clip(msg, 300), "retry_in", delay.Round(time.Second).String())
		}
	}
}

// startTimeout bounds a prediction's create request once shutdown has
// begun.
const startTimeout = 15 * time.Second

// start asks prov to start model's prediction. Shutdown does not cut the
// request short: the provider may already have created the prediction,
// and an answer lost here is a prediction nobody records, adopts or
// cancels, paid for twice when the next dispatcher starts it again. The
// attempt's own deadline still applies. A synchronous provider's call is
// the whole prediction, with nothing to adopt: shutdown cuts it short.
func (d *Dispatcher) start(ctx context.Context, prov Provider, model string, in Input) (Prediction, error) {
	if synchronous(prov) {
		return prov.Start(ctx, model, in)
	}
	deadline := time.Now().Add(startTimeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	sctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	defer cancel()
	return prov.Start(sctx, model, in)
}

// attempt runs the job's two models, reusing what earlier attempts
// finished and adopting what they left running, and waits for both.
func (d *Dispatcher) attempt(ctx context.Context, c claimed) (result, error) {
	prov := d.opts.Provider
	in := Input{URL: c.ImageURL, Prompt: d.opts.CaptionPrompt}
	if c.Source == "upload" {
		data, ct, err := d.store.upload(ctx, c.ID)
		if err != nil {
			return result{}, err
		}
		in.Data, in.ContentType = data, ct
	}
	rows, err := d.store.predictions(ctx, c.ID)
	if err != nil {
		return result{}, err
	}
	var res result
	done := map[string]bool{}
	pending := map[string]string{} // model -> prediction id in flight
	adopted := false
	for _, p := range rows {
		switch {
		case p.Status == PredictionSucceeded:
			done[p.Model] = true
			res.set(p)
		case !Terminal(p.Status) && p.Provider == prov.Name() && !synchronous(prov):
			pending[p.Model] = p.ID
			adopted = true
		case !Terminal(p.Status):
			// Another provider's, or a synchronous call cut short: there
			// is nothing to follow.
			if err := d.store.abandon(ctx, p.Provider, p.ID, "no longer followed"); err != nil {
				return result{}, err
			}
		}
	}
	for _, m := range models {
		if done[m] || pending[m] != "" {
			continue
		}
		if errors.Is(ctx.Err(), context.Canceled) {
			return result{}, ctx.Err() // shutting down: start nothing more
		}
		p, err := d.start(ctx, prov, m, in)
		if err != nil {
			switch {
			case errors.Is(ctx.Err(), context.Canceled):
				return result{}, ctx.Err() // shutting down: leave the rest to be adopted
			case errors.Is(ctx.Err(), context.DeadlineExceeded):
				d.cancelAll(ctx, pending, "attempt timed out")
				return result{}, fmt.Errorf("attempt timed out after %s starting the %s model: %w", d.opts.AttemptTimeout, m, err)
			case isPermanent(err) || c.Attempts >= c.MaxAttempts:
				d.cancelAll(ctx, pending, "job failed")
			}
			// Otherwise a prediction already running is left to finish:
			// the next attempt adopts it instead of paying for it again.
			return result{}, err
		}
		// The prediction exists now and costs money: record it even if
		// this dispatcher is shutting down, so that it is adopted.
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer rcancel()
		ok, err := d.store.recordStart(rctx, c, prov.Name(), m, p)
		if err != nil {
			// Unrecorded, nobody would ever follow it: stop it.
			d.cancelAll(ctx, map[string]string{m: p.ID}, "could not record it")
			return result{}, err
		}
		if !ok {
			// The job was cancelled or erased (or taken over) meanwhile:
			// nothing it started may run on. A finished prediction is
			// still billed.
			if Terminal(p.Status) {
				_ = d.apply(rctx, p)
			} else {
				pending[m] = p.ID
			}
			d.cancelAll(ctx, pending, "job cancelled or erased")
			return result{}, errLeaseLost
		}
		if Terminal(p.Status) {
			if err := d.apply(rctx, p); err != nil {
				return result{}, err
			}
		}
		pending[m] = p.ID
	}
	return d.wait(ctx, c, pending, adopted)
}

// wait follows the job's predictions until both are final. It reads them
// from Postgres every second (a webhook on any edge may have finished
// them, and an operator or an erasure may have taken the job away) and
// polls the provider every PollInterval, at once when it adopted
// predictions an earlier attempt started (they may have finished long ago).
func (d *Dispatcher) wait(ctx context.Context, c claimed, pending map[string]string, pollNow bool) (result, error) {
	prov := d.opts.Provider
	tick := min(time.Second, d.opts.PollInterval)
	lastPoll := time.Now()
	if pollNow {
		lastPoll = time.Time{}
	}
	status := map[string]string{}
	for {
		held, err := d.store.held(ctx, c)
		if err != nil && ctx.Err() == nil {
			return result{}, err
		}
		if err == nil && !held {
			d.cancelAll(ctx, unfinished(pending, status), "job cancelled or erased")
			return result{}, errLeaseLost
		}
		if err == nil {
			rows, err := d.store.predictions(ctx, c.ID)
			if err != nil && ctx.Err() == nil {
				return result{}, err
			}
			var res result
			var failed []string
			complete := 0
			for _, m := range models {
				p, ok := current(rows, m, pending[m])
				if !ok {
					continue
				}
				status[m] = p.Status
				switch p.Status {
				case PredictionSucceeded:
					res.set(p)
					complete++
				case PredictionFailed, PredictionCanceled:
					msg := p.Error
					if msg == "" {
						msg = "no reason given"
					}
					failed = append(failed, fmt.Sprintf("%s prediction %s: %s", m, p.Status, msg))
				}
			}
			if len(failed) > 0 {
				return result{}, errors.New(strings.Join(failed, "; "))
			}
			if complete == len(models) {
				return res, nil
			}
		}
		if errors.Is(ctx.Err(), context.Canceled) {
			return result{}, ctx.Err() // shutting down: the next claimer adopts what runs
		}
		if ctx.Err() != nil {
			d.cancelAll(ctx, unfinished(pending, status), "attempt timed out")
			return result{}, fmt.Errorf("attempt timed out after %s with %s (a cold start longer than MAILSLOT_IMAGE_ATTEMPT_TIMEOUT?)",
				d.opts.AttemptTimeout, describe(pending, status))
		}
		if time.Since(lastPoll) >= d.opts.PollInterval {
			lastPoll = time.Now()
			for m, id := range unfinished(pending, status) {
				p, err := prov.Get(ctx, id)
				if err != nil {
					if ctx.Err() == nil {
						// A failed poll is not a failed prediction: the
						// next poll or a webhook will tell.
						d.log.Debug("poll prediction", "job", c.ID, "model", m, logging.KeyErr, err)
					}
					continue
				}
				if p.Status != status[m] {
					if err := d.apply(ctx, p); err != nil && ctx.Err() == nil {
						return result{}, err
					}
				}
			}
			continue // read what the poll stored
		}
		backoff.Sleep(ctx, tick)
	}
}

// current is the stored prediction for model: the one in flight (or just
// finished) with the id this attempt follows, else a succeeded one.
func current(rows []predRow, model, id string) (predRow, bool) {
	var found predRow
	ok := false
	for _, p := range rows {
		if p.Model != model {
			continue
		}
		if p.ID == id {
			return p, true
		}
		if p.Status == PredictionSucceeded {
			found, ok = p, true
		}
	}
	return found, ok
}

func unfinished(pending, status map[string]string) map[string]string {
	out := map[string]string{}
	for m, id := range pending {
		if !Terminal(status[m]) {
			out[m] = id
		}
	}
	return out
}

func describe(pending, status map[string]string) string {
	var parts []string
	for _, m := range models {
		if _, ok := pending[m]; !ok {
			continue
		}
		s := status[m]
		if s == "" {
			s = PredictionStarting
		}
		parts = append(parts, m+" "+s)
	}
	return strings.Join(parts, ", ")
}

// synchronous reports whether the provider answers within Start (nothing
// it started can be adopted later).
func synchronous(p Provider) bool {
	s, ok := p.(interface{ Synchronous() bool })
	return ok && s.Synchronous()
}

// apply stores a prediction's state and spend.
func (d *Dispatcher) apply(ctx context.Context, p Prediction) error {
	_, err := d.store.ApplyPrediction(ctx, d.opts.Provider.Name(), p, d.opts.PricePerSecond)
	return err
}

// cancelAll asks the provider to stop the predictions and records what it
// answers (a prediction that finished meanwhile keeps its result, and its
// compute time is billed either way). It runs after ctx may have ended.
func (d *Dispatcher) cancelAll(ctx context.Context, ids map[string]string, why string) {
	if len(ids) == 0 {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	prov := d.opts.Provider
	for m, id := range ids {
		p, err := prov.Cancel(cctx, id)
		if err != nil {
			d.log.Warn("cancel prediction", "model", m, logging.KeyErr, err)
		}
		if p.ID == "" || !Terminal(p.Status) {
			// Free the job's in-flight slot for this model; a late
			// webhook still records the spend.
			p = Prediction{ID: id, Status: PredictionCanceled, Error: "cancelled by mailslot: " + why, PredictSeconds: p.PredictSeconds}
		}
		if err := d.apply(cctx, p); err != nil {
			d.log.Warn("record cancelled prediction", "model", m, logging.KeyErr, err)
		}
	}
}

func (r *result) set(p predRow) {
	if p.Model == ModelFaces && p.FaceCount != nil {
		r.Faces = *p.FaceCount
	}
	if p.Model == ModelCaption && p.Caption != nil {
		r.Caption = *p.Caption
	}
}

// delay is the wait after a failed attempt: MinBackoff doubled per
// attempt up to MaxBackoff, spread over [d/2, d) so that jobs that failed
// together do not retry together.
func (d *Dispatcher) delay(attempt int) time.Duration {
	b := d.opts.MinBackoff
	for i := 1; i < attempt && b < d.opts.MaxBackoff; i++ {
		b *= 2
	}
	return backoff.Jitter(min(b, d.opts.MaxBackoff))
}

// errSchemaBehind marks the schema gate's refusal, which Status shows as
// the schema_behind state with its reason.
var errSchemaBehind = errors.New("schema behind")

// checkSchema passes the schema gate, or says why not: errSchemaBehind,
// or the failure to read the version.
func (d *Dispatcher) checkSchema(ctx context.Context) error {
	behind, err := d.schema.Check(ctx)
	if err != nil {
		return err
	}
	if behind != "" {
		if d.health.State() != StateSchemaBehind {
			d.log.Warn("not dispatching image jobs", "reason", behind)
		}
		d.setState(StateSchemaBehind, behind)
		return fmt.Errorf("%w: %s", errSchemaBehind, behind)
	}
	return nil
}

func (d *Dispatcher) trouble(err error) {
	msg := clip(err.Error(), 500)
	if d.health.Fail("", msg) {
		d.log.Warn("image dispatch trouble", logging.KeyErr, msg)
	}
}

func (d *Dispatcher) recovered() { d.health.Recover("") }

func (d *Dispatcher) setState(s, reason string) {
	d.mu.Lock()
	d.health.Set(s)
	d.reason = reason
	d.mu.Unlock()
}

func (d *Dispatcher) getState() string { return d.health.State() }

// Status reports the queue and spend from Postgres with this dispatcher's
// own state. It is what the lead wires into /v1/sync/status.
func (d *Dispatcher) Status(ctx context.Context) (Status, error) {
	st, err := ReadStatus(ctx, d.pool, d.opts.Provider.Name(), d.opts.MonthlyBudget)
	if err != nil {
		return Status{}, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var lastErr string
	st.State, lastErr, st.LastErrorAt = d.health.Snapshot()
	if d.reason != "" {
		st.Reason = d.reason
	}
	if lastErr != "" {
		st.LastError = lastErr
	}
	return st, nil
}
