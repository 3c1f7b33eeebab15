// Package testsync holds what tests use to wait for something to happen
// instead of sleeping: a bounded poll on a condition, and a buffer that a
// server or a worker can write its log to while the test reads it.
package testsync

import (
	"bytes"
	"sync"
	"testing"
	"time"
)

// Polling starts fast, so that a condition that holds almost at once costs
// almost nothing, and slows to maxInterval, so that a slow one does not
// spin: on a shared machine the poll must not steal the CPU the awaited
// goroutine needs.
const (
	firstInterval = time.Millisecond
	maxInterval   = 20 * time.Millisecond
)

// Until polls cond until it holds, and fails the test with what if it does
// not within timeout. Call it from the test's goroutine (it may call
// t.Fatalf).
func Until(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	UntilState(tb, timeout, what, func() (bool, string) { return cond(), "" })
}

// UntilState is Until for a condition that can say what it saw, so that a
// timeout reports the last state rather than only that it did not hold.
func UntilState(tb testing.TB, timeout time.Duration, what string, cond func() (ok bool, state string)) {
	tb.Helper()
	if ok, state := Within(timeout, cond); !ok {
		if state != "" {
			tb.Fatalf("timed out after %v waiting for %s; last state: %s", timeout, what, state)
		}
		tb.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
}

// Within polls cond until it holds or timeout passes and reports whether
// it held, with the last state it gave; for callers that decide themselves
// what a timeout means (or that run off the test's goroutine).
func Within(timeout time.Duration, cond func() (ok bool, state string)) (bool, string) {
	deadline := time.Now().Add(timeout)
	interval := firstInterval
	for {
		ok, state := cond()
		if ok {
			return true, state
		}
		if !time.Now().Before(deadline) {
			return false, state
		}
		time.Sleep(min(interval, time.Until(deadline)+time.Millisecond))
		interval = min(2*interval, maxInterval)
	}
}

// Buffer is a bytes.Buffer that several goroutines may write while the test
// reads it: a log destination shared by a server, a worker and the test.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
