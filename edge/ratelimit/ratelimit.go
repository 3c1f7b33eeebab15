// Package ratelimit limits writes per client with token buckets
// (golang.org/x/time/rate) in bounded memory.
//
// A client is a network, not an address: ClientKey turns an IP into the
// key the edge hashes (with the IP pepper) and limits, so that the 2^64
// addresses of one IPv6 /64, which any one host may hold, are one client.
//
// The table holds at most max buckets, and a flood of new keys can neither
// reset anyone's bucket nor get itself fresh ones by pushing others out:
// when the table is full, a new key takes the place of a bucket that has
// refilled to its burst (dropping a full bucket changes nothing: its key
// would get the same full bucket back), and when none of the buckets looked
// at is full, the new key shares one overflow bucket with every other key
// that found no room. The overflow bucket is as strict as one client's, so
// a flood gets no more through it than one client would, and a throttled
// client, the flooder included, stays throttled however many keys arrive.
package ratelimit

import (
	"fmt"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// IPv6 prefix lengths a client may be limited by. A /64 is what one
// subscriber's link gets; /56 and /48 are common delegations to a site.
const (
	DefaultV6PrefixBits = 64
	MinV6PrefixBits     = 32
	MaxV6PrefixBits     = 128
)

// CheckV6PrefixBits validates a configured IPv6 prefix length.
func CheckV6PrefixBits(bits int) error {
	if bits < MinV6PrefixBits || bits > MaxV6PrefixBits {
		return fmt.Errorf("IPv6 rate-limit prefix /%d: use a length from /%d to /%d", bits, MinV6PrefixBits, MaxV6PrefixBits)
	}
	return nil
}

// nat64 is the well-known NAT64 prefix (RFC 6052): its addresses are IPv4
// clients seen through a translator, one per embedded IPv4 address.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// ClientPrefix returns the network ip is limited as: an IPv4 address by
// itself (IPv4-mapped IPv6 and well-known NAT64 addresses included), an
// IPv6 address by its first v6PrefixBits bits. A v6PrefixBits of 0 means
// DefaultV6PrefixBits; one outside MinV6PrefixBits..MaxV6PrefixBits is
// clamped into it (configuration is checked with CheckV6PrefixBits). The
// zone is dropped. An invalid ip gives the zero Prefix.
func ClientPrefix(ip netip.Addr, v6PrefixBits int) netip.Prefix {
	if !ip.IsValid() {
		return netip.Prefix{}
	}
	ip = ip.WithZone("").Unmap()
	if nat64.Contains(ip) {
		b := ip.As16()
		ip = netip.AddrFrom4([4]byte(b[12:]))
	}
	if ip.Is4() {
		return netip.PrefixFrom(ip, 32)
	}
	if v6PrefixBits == 0 {
		v6PrefixBits = DefaultV6PrefixBits
	}
	v6PrefixBits = min(max(v6PrefixBits, MinV6PrefixBits), MaxV6PrefixBits)
	p, _ := ip.Prefix(v6PrefixBits)
	return p
}

// ClientKey is ClientPrefix in text, for the edge to hash and pass to
// Allow: a single address as the address alone ("192.0.2.1", what the
// edge hashed before IPv6 networks were grouped), a network in CIDR form
// ("2001:db8:1:2::/64"). An invalid ip gives "".
func ClientKey(ip netip.Addr, v6PrefixBits int) string {
	p := ClientPrefix(ip, v6PrefixBits)
	switch {
	case !p.IsValid():
		return ""
	case p.IsSingleIP():
		return p.Addr().String()
	}
	return p.String()
}

// probes is how many buckets a new key looks at for a full one when the
// table is full. The hand moves on from where the last look stopped, so
// every bucket is looked at within max/probes new keys.
const probes = 8

// Limiter hands out per-key token buckets.
type Limiter struct {
	limit rate.Limit
	burst int
	max   int

	mu       sync.Mutex
	index    map[string]int // key → position in slots
	slots    []slot
	hand     int
	overflow *rate.Limiter
	// overflowed counts requests that found no room and shared the
	// overflow bucket.
	overflowed uint64
}

type slot struct {
	key string
	lim *rate.Limiter
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
		limit:    rate.Limit(rps),
		burst:    burst,
		max:      max,
		index:    make(map[string]int),
		overflow: rate.NewLimiter(rate.Limit(rps), burst),
	}
}

// Allow takes a token for key. When none is left it reports how long until
// the next one.
func (l *Limiter) Allow(key string, now time.Time) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	// One lock around finding the bucket and taking its token, so that a
	// bucket cannot be handed to another key between the two.
	l.mu.Lock()
	defer l.mu.Unlock()
	lim := l.bucket(key, now)
	if lim.AllowN(now, 1) {
		return true, 0
	}
	missing := 1 - lim.TokensAt(now)
	return false, max(time.Duration(missing/float64(l.limit)*float64(time.Second)), time.Nanosecond)
}

// bucket finds or makes key's bucket; l.mu is held.
func (l *Limiter) bucket(key string, now time.Time) *rate.Limiter {
	if i, ok := l.index[key]; ok {
		return l.slots[i].lim
	}
	if len(l.slots) < l.max {
		lim := rate.NewLimiter(l.limit, l.burst)
		l.index[key] = len(l.slots)
		l.slots = append(l.slots, slot{key: key, lim: lim})
		return lim
	}
	full := float64(l.burst)
	for range probes {
		i := l.hand
		l.hand = (l.hand + 1) % len(l.slots)
		s := &l.slots[i]
		if s.lim.TokensAt(now) >= full {
			delete(l.index, s.key)
			*s = slot{key: key, lim: rate.NewLimiter(l.limit, l.burst)}
			l.index[key] = i
			return s.lim
		}
	}
	l.overflowed++
	return l.overflow
}

// Status is what the limiter reports to metrics.
type Status struct {
	// Clients is how many keys have a bucket of their own; at most Max.
	Clients, Max int
	// Overflowed counts requests from keys that found the table full of
	// buckets in use and shared the overflow bucket: a sustained rise is
	// a flood of new clients, or a table too small for the traffic.
	Overflowed uint64
}

// Status reports the table's size. A nil Limiter reports zeros.
func (l *Limiter) Status() Status {
	if l == nil {
		return Status{}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return Status{Clients: len(l.slots), Max: l.max, Overflowed: l.overflowed}
}
