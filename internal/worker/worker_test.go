package worker_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mailslot/mailslot/internal/pgtest"
	"github.com/mailslot/mailslot/internal/worker"
	"github.com/mailslot/mailslot/pgschema"
)

func TestPositive(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ in, want time.Duration }{{0, time.Second}, {-1, time.Second}, {5, 5}} {
		v := tt.in
		worker.Positive(&v, time.Second)
		if v != tt.want {
			t.Errorf("Positive(%v) = %v, want %v", tt.in, v, tt.want)
		}
	}
}

func TestHealth(t *testing.T) {
	t.Parallel()
	h := worker.NewHealth("starting")
	if changed := h.Fail("backoff", "down"); !changed {
		t.Error("the first failure is not a change")
	}
	if changed := h.Fail("", "down"); changed {
		t.Error("the same failure again is a change: it would be logged per retry")
	}
	state, msg, at := h.Snapshot()
	if state != "backoff" || msg != "down" || at == nil || at.Location() != time.UTC {
		t.Errorf("after failures: %q %q %v; want backoff, the error and its UTC time", state, msg, at)
	}
	if had := h.Recover("idle"); !had {
		t.Error("Recover did not report the error it cleared")
	}
	if state, msg, at := h.Snapshot(); state != "idle" || msg != "" || at != nil {
		t.Errorf("after Recover: %q %q %v; want idle and no error", state, msg, at)
	}
	if had := h.Recover(""); had {
		t.Error("Recover reported an error twice")
	}
}

// TestPacer: a failure signals BackingOff with its error and waits; a
// wake-up cuts the wait short; a round that succeeded signals
// RoundFinished.
func TestPacer(t *testing.T) {
	t.Parallel()
	var sig worker.Signals
	sig.Init(t)
	wake := make(chan struct{}, 1)
	p := worker.NewPacer(time.Hour, time.Hour, time.Hour, wake, &sig)
	boom := errors.New("boom")
	wake <- struct{}{}
	if !p.Backoff(context.Background(), boom) {
		t.Fatal("Backoff ended as if ctx had")
	}
	if got := sig.BackingOff.WaitOrTimeout(); got != boom {
		t.Errorf("BackingOff sent %v, want %v", got, boom)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if p.Idle(ctx) {
		t.Error("Idle on an ended ctx reported that the loop goes on")
	}
	sig.RoundFinished.WaitOrTimeout()
	p.Again()
	sig.RoundFinished.WaitOrTimeout()

	var quiet *worker.Signals // no test listening: signals cost nothing
	worker.NewPacer(time.Millisecond, 0, 0, nil, quiet).Again()
}

// TestPacerRounds: a failed round's error goes to fail and is followed by a
// backoff, a good round by an idle wait, and the loop returns when ctx
// ends, without calling fail for the round that ctx's end interrupted.
func TestPacerRounds(t *testing.T) {
	t.Parallel()
	var sig worker.Signals
	sig.Init(t)
	p := worker.NewPacer(time.Millisecond, time.Millisecond, time.Millisecond, nil, &sig)
	ctx, cancel := context.WithCancel(context.Background())
	boom := errors.New("boom")
	var failed []error
	n := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.Rounds(ctx, func(ctx context.Context) error {
			n++
			switch n {
			case 1:
				return boom
			case 2:
				return nil
			}
			cancel()
			return ctx.Err()
		}, func(err error) { failed = append(failed, err) })
	}()
	if got := sig.BackingOff.WaitOrTimeout(); got != boom {
		t.Errorf("BackingOff sent %v, want %v", got, boom)
	}
	sig.RoundFinished.WaitOrTimeout()
	select {
	case <-done:
	case <-time.After(worker.SignalTimeout):
		t.Fatal("Rounds did not return after ctx ended")
	}
	if n != 3 || len(failed) != 1 || failed[0] != boom {
		t.Errorf("%d rounds, failures %v; want 3 rounds and only boom", n, failed)
	}
}

func TestSchemaGate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		name   string
		dbURL  func(testing.TB) string
		behind bool
	}{
		{"migrated", pgtest.NewURL, false},
		{"empty", pgtest.NewEmptyURL, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g := worker.NewSchemaGate(pgtest.Pool(t, tt.dbURL(t)))
			if !g.Due() {
				t.Fatal("a new gate is not due")
			}
			behind, err := g.Check(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got := behind != ""; got != tt.behind {
				t.Fatalf("behind = %q, want behind %v", behind, tt.behind)
			}
			// A schema behind is checked again next round; a current one
			// only after SchemaRecheck.
			if g.Due() != tt.behind {
				t.Errorf("Due after the check = %v, want %v", g.Due(), tt.behind)
			}
			if want := map[bool]int{false: pgschema.Required(), true: 0}[tt.behind]; g.Version() != want {
				t.Errorf("Version = %d, want %d", g.Version(), want)
			}
			g.Recheck()
			if !g.Due() {
				t.Error("Recheck did not make the gate due")
			}
		})
	}
}
