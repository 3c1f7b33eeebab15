package testsync_test

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailslot/mailslot/internal/testsync"
)

func TestWithin(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		holdsAt int32 // the call on which cond first holds; 0: never
		wantOK  bool
	}{
		{name: "at once", holdsAt: 1, wantOK: true},
		{name: "after a few polls", holdsAt: 4, wantOK: true},
		{name: "never", holdsAt: 0, wantOK: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var calls atomic.Int32
			ok, state := testsync.Within(200*time.Millisecond, func() (bool, string) {
				n := calls.Add(1)
				return tt.holdsAt != 0 && n >= tt.holdsAt, fmt.Sprintf("call %d", n)
			})
			if ok != tt.wantOK {
				t.Fatalf("ok = %v, want %v (%s)", ok, tt.wantOK, state)
			}
			if tt.wantOK && calls.Load() != tt.holdsAt {
				t.Errorf("cond called %d times, want %d: it must stop polling once it holds", calls.Load(), tt.holdsAt)
			}
			if !tt.wantOK && (calls.Load() < 2 || !strings.HasPrefix(state, "call ")) {
				t.Errorf("gave up after %d calls with state %q, want several polls and the last state", calls.Load(), state)
			}
		})
	}
}

// TestUntilFails runs Until in a throwaway test so that its failure does
// not fail this one, and checks what it reports.
func TestUntilFails(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		testsync.UntilState(rec, 30*time.Millisecond, "the moon", func() (bool, string) { return false, "no moon" })
	}()
	<-done
	if !rec.failed || !strings.Contains(rec.msg, "the moon") || !strings.Contains(rec.msg, "no moon") {
		t.Errorf("failed %v with %q, want a failure naming what and the last state", rec.failed, rec.msg)
	}
	rec = &recorder{}
	testsync.Until(rec, time.Second, "a true thing", func() bool { return true })
	if rec.failed {
		t.Errorf("Until failed on a condition that holds: %q", rec.msg)
	}
}

// recorder is a testing.TB whose Fatalf records and ends its goroutine, as
// the real one does.
type recorder struct {
	testing.TB
	failed bool
	msg    string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed, r.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestBufferConcurrentWrites(t *testing.T) {
	t.Parallel()
	var b testsync.Buffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				_, _ = b.Write([]byte("x"))
				_ = b.String()
			}
		})
	}
	wg.Wait()
	if got := len(b.String()); got != 800 {
		t.Errorf("len = %d, want 800", got)
	}
}
