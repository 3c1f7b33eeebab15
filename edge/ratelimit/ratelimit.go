// Package ratelimit limits writes per client with token buckets
// (golang.org/x/time/rate) keyed by the client's IP HMAC, in bounded memory.
//
// The table has two generations. New keys go into the current one; when it
// holds max/2 keys it becomes the previous one and the one before is dropped.
// A client seen in either generation keeps its bucket, so memory stays below
// max entries however many addresses an attacker rotates through, and an
// evicted client only ever gets a fresh (full) bucket, never a wrong one.
package ratelimit

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limiter hands out per-key token buckets.
type Limiter struct {
	limit rate.Limit
	burst int
	half  int

	mu   sync.Mutex
	cur  map[string]*rate.Limiter
	prev map[string]*rate.Limiter
}

// New returns a limiter allowing rps requests per second with the given
// burst per key, tracking at most max keys. rps <= 0 returns nil, which
// allows everything.
func New(rps float64, burst, max int) *Limiter {
	if rps <= 0 {
		return nil
	}
	if burst < 1 {
		burst = 1
	}
	if max < 2 {
		max = 2
	}
	return &Limiter{
		limit: rate.Limit(rps),
		burst: burst,
		half:  max / 2,
		cur:   make(map[string]*rate.Limiter),
		prev:  make(map[string]*rate.Limiter),
	}
}

// Allow takes a token for key. When none is left it reports how long until
// the next one.
func (l *Limiter) Allow(key string, now time.Time) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	l.mu.Lock()
	lim, ok := l.cur[key]
	if !ok {
		if lim, ok = l.prev[key]; ok {
			delete(l.prev, key)
		} else {
			lim = rate.NewLimiter(l.limit, l.burst)
		}
		if len(l.cur) >= l.half {
			l.prev, l.cur = l.cur, make(map[string]*rate.Limiter, l.half)
		}
		l.cur[key] = lim
	}
	l.mu.Unlock()
	r := lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}
