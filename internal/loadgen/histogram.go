package loadgen

import (
	"math/bits"
	"time"
)

// Histogram records latencies in log-linear buckets, HDR style: each power
// of two of microseconds is split into subBuckets linear buckets, so a
// recorded value is off by at most 1/subBuckets (about 1.6%) and the
// histogram's size is fixed however many values it holds.
type Histogram struct {
	counts [numBuckets]uint64
	total  uint64
	max    time.Duration
}

const (
	subBits    = 6
	subBuckets = 1 << subBits // linear buckets per power of two
	// Values of 2^maxExp µs (about 19 minutes) and more land in the last
	// bucket.
	maxExp     = 30
	numBuckets = (maxExp - subBits + 2) * subBuckets
)

// bucketOf maps a latency in microseconds to its bucket index.
func bucketOf(us uint64) int {
	if us < subBuckets {
		return int(us)
	}
	exp := bits.Len64(us) - 1 // 2^exp <= us < 2^(exp+1), exp >= subBits
	if exp > maxExp {
		return numBuckets - 1
	}
	sub := int(us>>(exp-subBits)) - subBuckets // 0 .. subBuckets-1
	return (exp-subBits+1)*subBuckets + sub
}

// bucketHigh is the largest value, in microseconds, that lands in bucket i.
func bucketHigh(i int) uint64 {
	if i < subBuckets {
		return uint64(i)
	}
	group := i / subBuckets // >= 1
	sub := uint64(i % subBuckets)
	exp := group + subBits - 1
	width := uint64(1) << (exp - subBits)
	return (uint64(subBuckets)+sub)*width + width - 1
}

// Record adds one latency.
func (h *Histogram) Record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[bucketOf(uint64(d/time.Microsecond))]++
	h.total++
	if d > h.max {
		h.max = d
	}
}

// Merge adds other's values to h.
func (h *Histogram) Merge(other *Histogram) {
	for i, c := range other.counts {
		h.counts[i] += c
	}
	h.total += other.total
	h.max = max(h.max, other.max)
}

// Count is the number of recorded values.
func (h *Histogram) Count() uint64 { return h.total }

// Max is the largest recorded value, exactly.
func (h *Histogram) Max() time.Duration { return h.max }

// Quantile returns the value below or at which a fraction q (0..1) of the
// recorded values lie, rounded up to its bucket's upper bound (and never
// above Max).
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	rank := uint64(q*float64(h.total) + 0.5)
	rank = min(max(rank, 1), h.total)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(time.Duration(bucketHigh(i))*time.Microsecond, h.max)
		}
	}
	return h.max
}
