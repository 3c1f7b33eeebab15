package worker

import "time"

// TB is the part of TB a signal needs (the package does not
// import testing, which production binaries would then carry).
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
}

// signalBuffer is how many signals wait for a test before later ones are
// dropped; a test waits for the first few after it acts.
const signalBuffer = 100

// SignalTimeout bounds how long WaitOrTimeout waits: long enough for a
// loaded CI machine, short enough to fail a test rather than hang it.
const SignalTimeout = 10 * time.Second

// Signal is a test hook in the style of riverqueue/river's testsignal: a
// worker sends on it at points tests care about, and it costs nothing
// unless a test called Init before the worker started.
type Signal[T any] struct {
	tb TB
	ch chan T
}

// Init makes s deliver signals to tb's test. Call it before the worker
// runs.
func (s *Signal[T]) Init(tb TB) {
	s.tb = tb
	s.ch = make(chan T, signalBuffer)
}

// Signal sends v if a test listens; it never blocks the worker (a full
// buffer drops v).
func (s *Signal[T]) Signal(v T) {
	if s == nil || s.ch == nil {
		return
	}
	select {
	case s.ch <- v:
	default:
	}
}

// WaitOrTimeout returns the next signal, or fails the test after
// SignalTimeout.
func (s *Signal[T]) WaitOrTimeout() T {
	s.tb.Helper()
	t := time.NewTimer(SignalTimeout)
	defer t.Stop()
	select {
	case v := <-s.ch:
		return v
	case <-t.C:
		s.tb.Fatalf("no signal within %v", SignalTimeout)
		panic("unreachable")
	}
}

// Signals are the points of a worker's loop that tests wait on.
type Signals struct {
	// RoundFinished is sent after each round that succeeded.
	RoundFinished Signal[struct{}]
	// BackingOff is sent with the error before each backoff wait.
	BackingOff Signal[error]
}

// Init makes every signal deliver to tb's test.
func (s *Signals) Init(tb TB) {
	s.RoundFinished.Init(tb)
	s.BackingOff.Init(tb)
}

func (s *Signals) roundFinished() {
	if s != nil {
		s.RoundFinished.Signal(struct{}{})
	}
}

func (s *Signals) backingOff(err error) {
	if s != nil {
		s.BackingOff.Signal(err)
	}
}

// Clear drops the signals sent so far, so that the next WaitOrTimeout
// sees only what happens after the test acted.
func (s *Signal[T]) Clear() {
	for {
		select {
		case <-s.ch:
		default:
			return
		}
	}
}
