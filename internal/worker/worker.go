// Package worker is the skeleton the edge's background loops share (the
// sync worker, the tombstone puller, the image dispatcher, the replica):
// defaults for their options, their state and last error behind one
// mutex, the pacing between rounds with jittered backoff after failures,
// the schema gate, and signals that tests wait on instead of polling.
//
// It holds no policy of its own: each worker still decides what a round
// is, what counts as a failure and what its status shows.
package worker

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/mailslot/mailslot/internal/backoff"
)

// Positive sets *v to def when it is zero or negative: how every worker
// fills in the options it was not given.
func Positive[T ~int | ~int32 | ~int64](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// Health is a worker's state and its last error, with when it happened,
// guarded once so that Status reads a consistent pair.
type Health struct {
	mu    sync.Mutex
	state string
	err   string
	errAt time.Time
}

// NewHealth starts in state.
func NewHealth(state string) *Health { return &Health{state: state} }

// Set moves to state and keeps the last error.
func (h *Health) Set(state string) {
	h.mu.Lock()
	h.state = state
	h.mu.Unlock()
}

// State is the current state.
func (h *Health) State() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.state
}

// Fail records msg (already scrubbed by the caller) as the last error, now,
// and moves to state unless it is empty. It reports whether msg differs
// from the last error, so that a worker logs a failure once, not once per
// retry.
func (h *Health) Fail(state, msg string) (changed bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	changed = msg != h.err
	if state != "" {
		h.state = state
	}
	h.err, h.errAt = msg, time.Now()
	return changed
}

// Recover forgets the last error and moves to state unless it is empty. It
// reports whether there was an error, so that a worker logs its recovery.
func (h *Health) Recover(state string) (hadError bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	hadError = h.err != ""
	if state != "" {
		h.state = state
	}
	h.err = ""
	return hadError
}

// Snapshot is the state, the last error and its time (UTC, nil when there
// is no error), read together.
func (h *Health) Snapshot() (state, lastErr string, at *time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err != "" && !h.errAt.IsZero() {
		t := h.errAt.UTC()
		at = &t
	}
	return h.state, h.err, at
}

// Pacer paces a worker's rounds: Interval after a round that found
// nothing more to do, a doubling jittered delay after each failure in a
// row, and a wake-up channel that cuts either wait short.
type Pacer struct {
	Interval time.Duration
	delay    *backoff.Delay
	wake     <-chan struct{}
	signals  *Signals
}

// NewPacer paces rounds every interval, backing off between minBackoff
// and maxBackoff (backoff.NewDelay's defaults for zero values). wake may
// be nil; signals may be nil (no test is listening).
func NewPacer(interval, minBackoff, maxBackoff time.Duration, wake <-chan struct{}, signals *Signals) *Pacer {
	return &Pacer{Interval: interval, delay: backoff.NewDelay(minBackoff, maxBackoff), wake: wake, signals: signals}
}

// Again ends a round that succeeded and left more to do: the backoff is
// reset and the next round starts at once.
func (p *Pacer) Again() {
	p.delay.Reset()
	p.signals.roundFinished()
}

// Idle ends a round that succeeded: the backoff is reset and the worker
// waits Interval. It returns false when ctx ended.
func (p *Pacer) Idle(ctx context.Context) bool {
	p.Again()
	return p.sleep(ctx, p.Interval)
}

// Backoff ends a round that failed with err: the worker waits the next
// backoff delay. It returns false when ctx ended.
func (p *Pacer) Backoff(ctx context.Context, err error) bool {
	d := p.delay.Failed()
	p.signals.backingOff(err)
	return p.sleep(ctx, d)
}

// Rounds runs round until ctx ends, for a worker whose every round is
// alike: after one that failed, fail is given the error and the worker
// backs off; after one that succeeded, it waits Interval. An error from a
// round that ctx's end interrupted is not a failure.
func (p *Pacer) Rounds(ctx context.Context, round func(context.Context) error, fail func(error)) {
	for {
		err := round(ctx)
		if ctx.Err() != nil {
			return
		}
		ok := true
		if err != nil {
			fail(err)
			ok = p.Backoff(ctx, err)
		} else {
			ok = p.Idle(ctx)
		}
		if !ok {
			return
		}
	}
}

func (p *Pacer) sleep(ctx context.Context, d time.Duration) bool {
	if p.wake == nil {
		return backoff.Sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-p.wake:
	case <-t.C:
	}
	return ctx.Err() == nil
}

// Logger returns l, or a logger that discards, for a worker given none.
func Logger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
