package backoff

import "time"

// Defaults of the retrying workers' waits after a failure.
const (
	DefaultMin = 250 * time.Millisecond
	DefaultMax = 30 * time.Second
)

// Delay is a retrying worker's wait after failures: it starts at Min,
// doubles with each failure up to Max, and every wait it gives is jittered
// over [d/2, d]. Every worker loop (drain, tombstone puller, image
// dispatcher, replica) backs off through one, so none forgets the jitter.
// A Delay belongs to its worker's goroutine.
type Delay struct {
	Min, Max time.Duration
	cur      time.Duration
}

// NewDelay returns a Delay from min to max; zero values take the defaults.
func NewDelay(lo, hi time.Duration) *Delay {
	if lo <= 0 {
		lo = DefaultMin
	}
	if hi < lo {
		hi = max(DefaultMax, lo)
	}
	return &Delay{Min: lo, Max: hi, cur: lo}
}

// Failed returns how long to wait after one more failure.
func (d *Delay) Failed() time.Duration {
	w := Jitter(max(d.cur, d.Min))
	d.cur = min(max(d.cur, d.Min)*2, d.Max)
	return w
}

// Reset starts over from Min after a success.
func (d *Delay) Reset() { d.cur = d.Min }
