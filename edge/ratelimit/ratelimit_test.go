package ratelimit_test

import (
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/mailslot/mailslot/edge/ratelimit"
)

var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// take calls Allow n times for key at now and returns how many passed.
func take(l *ratelimit.Limiter, key string, n int, now time.Time) int {
	allowed := 0
	for range n {
		if ok, _ := l.Allow(key, now); ok {
			allowed++
		}
	}
	return allowed
}

// flood sends one request from each of n keys never seen before and
// returns how many passed.
func flood(l *ratelimit.Limiter, prefix string, n int, now time.Time) int {
	allowed := 0
	for i := range n {
		if ok, _ := l.Allow(prefix+strconv.Itoa(i), now); ok {
			allowed++
		}
	}
	return allowed
}

func TestAllowAndWait(t *testing.T) {
	l := ratelimit.New(2, 3, 100)
	if got := take(l, "a", 3, t0); got != 3 {
		t.Fatalf("burst of 3: %d allowed", got)
	}
	ok, wait := l.Allow("a", t0)
	if ok || wait != 500*time.Millisecond {
		t.Errorf("fourth request = %v, wait %v; want refused, 500ms", ok, wait)
	}
	// A refused request costs nothing: the token still comes at +500ms.
	if ok, _ := l.Allow("a", t0.Add(500*time.Millisecond)); !ok {
		t.Error("refused at +500ms, when a token was due")
	}
	if got := take(l, "b", 3, t0); got != 3 {
		t.Errorf("another key's burst: %d allowed", got)
	}
	var none *ratelimit.Limiter = ratelimit.New(0, 3, 100)
	if got := take(none, "a", 1000, t0); got != 1000 {
		t.Errorf("rps 0 allowed %d of 1000", got)
	}
	if s := none.Status(); s != (ratelimit.Status{}) {
		t.Errorf("nil limiter status %+v", s)
	}
}

// TestFloodKeepsThrottledClientThrottled sends 100k new keys at a limiter
// while a throttled client waits: the client must keep its empty bucket
// (an eviction would hand it a fresh burst), and the flood must get no more
// than the free room plus the overflow bucket's burst.
func TestFloodKeepsThrottledClientThrottled(t *testing.T) {
	const rps, burst, max = 1, 5, 1000
	l := ratelimit.New(rps, burst, max)
	if got := take(l, "client", burst+1, t0); got != burst {
		t.Fatalf("client's burst: %d allowed, want %d", got, burst)
	}
	if got, limit := flood(l, "flood-", 100_000, t0), max-1+burst; got > limit {
		t.Errorf("flood of 100k keys: %d allowed, want at most %d (free room + one overflow burst)", got, limit)
	}
	if got := take(l, "client", 1, t0); got != 0 {
		t.Error("the flood reset the throttled client's bucket")
	}
	// A second later the client has earned one token, not a fresh burst.
	if got := take(l, "client", burst, t0.Add(time.Second)); got != 1 {
		t.Errorf("a second after the flood the client got %d requests, want 1", got)
	}
	if s := l.Status(); s.Clients > max || s.Max != max || s.Overflowed == 0 {
		t.Errorf("status %+v: want at most %d clients and overflowed requests counted", s, max)
	}
}

// TestFloodCannotResetItself checks that a flooder cannot empty the table
// of its own throttled bucket by rotating through new keys.
func TestFloodCannotResetItself(t *testing.T) {
	l := ratelimit.New(1, 5, 1000)
	if got := take(l, "flooder", 5, t0); got != 5 {
		t.Fatalf("burst: %d", got)
	}
	for round := range 3 {
		flood(l, "rotate-"+strconv.Itoa(round)+"-", 50_000, t0)
		if got := take(l, "flooder", 1, t0); got != 0 {
			t.Fatalf("after rotating through %dk keys the flooder's own bucket was fresh again", 50*(round+1))
		}
	}
}

// TestOverflowIsStrict checks that keys finding the table full of buckets
// in use share one bucket no looser than a single client's.
func TestOverflowIsStrict(t *testing.T) {
	const burst, max = 4, 100
	l := ratelimit.New(1, burst, max)
	if got := flood(l, "fill-", max, t0); got != max {
		t.Fatalf("filling the table: %d of %d allowed", got, max)
	}
	if got := flood(l, "late-", 10_000, t0); got != burst {
		t.Errorf("10k keys without room: %d allowed, want the overflow burst %d", got, burst)
	}
	// Half a second on, nothing has refilled to full: the overflow bucket
	// is still the only way in, and it earned half a token.
	if got := flood(l, "later-", 10_000, t0.Add(500*time.Millisecond)); got != 0 {
		t.Errorf("10k more keys half a second later: %d allowed, want 0", got)
	}
}

// TestFullBucketsMakeRoom checks that buckets which refilled are reused
// for new keys, so the table does not stay on the overflow bucket after a
// flood, and that reusing them harms nobody still throttled.
func TestFullBucketsMakeRoom(t *testing.T) {
	const burst, max = 3, 100
	l := ratelimit.New(1, burst, max)
	take(l, "client", burst, t0) // throttled for 3s before it is full again
	flood(l, "flood-", max-1, t0)
	// One second on, every flood bucket (one token used) is full again;
	// the client's (three used) is not.
	t1 := t0.Add(time.Second)
	for i := range max - 1 {
		key := "new-" + strconv.Itoa(i)
		if got := take(l, key, burst, t1); got != burst {
			t.Fatalf("new key %d after the flood's buckets refilled: %d allowed, want a bucket of its own (%d)", i, got, burst)
		}
	}
	if got := take(l, "client", burst, t1); got != 1 {
		t.Errorf("the throttled client got %d at +1s, want the 1 it earned", got)
	}
	if s := l.Status(); s.Clients != max {
		t.Errorf("status %+v, want %d clients", s, max)
	}
}

// TestConcurrentKeysKeepTheirLimits runs keys from several goroutines: no
// key gets more than its burst at one instant.
func TestConcurrentKeysKeepTheirLimits(t *testing.T) {
	const burst = 10
	l := ratelimit.New(1, burst, 64)
	var mu sync.Mutex
	allowed := map[string]int{}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				key := strconv.Itoa((g*7 + i) % 32)
				if ok, _ := l.Allow(key, t0); ok {
					mu.Lock()
					allowed[key]++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	for key, n := range allowed {
		if n != burst {
			t.Errorf("key %s: %d allowed, want %d", key, n, burst)
		}
	}
}

func TestClientKey(t *testing.T) {
	cases := []struct {
		ip   string
		bits int
		want string
	}{
		{"192.0.2.1", 64, "192.0.2.1"},
		{"::ffff:192.0.2.1", 64, "192.0.2.1"},
		{"64:ff9b::c000:201", 64, "192.0.2.1"},
		{"2001:db8:1:2::1", 64, "2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff:ffff:ffff:ffff", 64, "2001:db8:1:2::/64"},
		{"2001:db8:1:3::1", 64, "2001:db8:1:3::/64"},
		{"2001:db8:1:2::1", 0, "2001:db8:1:2::/64"},
		{"2001:db8:1:2::1", 48, "2001:db8:1::/48"},
		{"2001:db8:1:2::1", 56, "2001:db8:1::/56"},
		{"2001:db8:1:2::1", 128, "2001:db8:1:2::1"},
		{"2001:db8:1:2::1", 200, "2001:db8:1:2::1"}, // clamped to /128
		{"2001:db8:1:2::1", 8, "2001:db8::/32"},     // clamped to /32
		{"fe80::1%eth0", 64, "fe80::/64"},
		{"::1", 64, "::/64"},
	}
	for _, c := range cases {
		if got := ratelimit.ClientKey(netip.MustParseAddr(c.ip), c.bits); got != c.want {
			t.Errorf("ClientKey(%s, %d) = %q, want %q", c.ip, c.bits, got, c.want)
		}
	}
	if got := ratelimit.ClientKey(netip.Addr{}, 64); got != "" {
		t.Errorf("ClientKey(invalid) = %q", got)
	}
	if p := ratelimit.ClientPrefix(netip.MustParseAddr("2001:db8::9"), 64); p != netip.MustParsePrefix("2001:db8::/64") {
		t.Errorf("ClientPrefix = %v", p)
	}
	for _, bits := range []int{32, 48, 64, 128} {
		if err := ratelimit.CheckV6PrefixBits(bits); err != nil {
			t.Errorf("CheckV6PrefixBits(%d): %v", bits, err)
		}
	}
	for _, bits := range []int{-1, 0, 31, 129} {
		if err := ratelimit.CheckV6PrefixBits(bits); err == nil {
			t.Errorf("CheckV6PrefixBits(%d) = nil, want an error", bits)
		}
	}
}

// TestSiblingsShareABucket checks that addresses of one /64 are one client:
// rotating through them gets one burst, while another /64 has its own.
func TestSiblingsShareABucket(t *testing.T) {
	const burst = 5
	l := ratelimit.New(1, burst, 1000)
	base := netip.MustParseAddr("2001:db8:aa:bb::")
	allowed := 0
	a := base
	for range 1000 {
		a = a.Next()
		if ok, _ := l.Allow(ratelimit.ClientKey(a, 64), t0); ok {
			allowed++
		}
	}
	if allowed != burst {
		t.Errorf("1000 addresses of one /64: %d allowed, want one burst of %d", allowed, burst)
	}
	other := netip.MustParseAddr("2001:db8:aa:bc::1")
	if got := take(l, ratelimit.ClientKey(other, 64), burst, t0); got != burst {
		t.Errorf("the next /64: %d allowed, want its own burst %d", got, burst)
	}
	if got := take(l, ratelimit.ClientKey(netip.MustParseAddr("::ffff:192.0.2.7"), 64), burst+1, t0) +
		take(l, ratelimit.ClientKey(netip.MustParseAddr("192.0.2.7"), 64), 1, t0); got != burst {
		t.Errorf("an IPv4 address and its IPv4-mapped form: %d allowed, want one burst of %d", got, burst)
	}
}
