package challenge

import "sync"

// replayKey is the first half of a solved challenge's SHA-256: 128 bits
// is plenty to tell challenges apart (they are ours, built from random
// salts), and halves the store's memory.
type replayKey [16]byte

type replayEntry struct {
	key     replayKey
	expires int64 // unix seconds; past it Verify refuses the payload anyway
}

// addResult says what remember did.
type addResult uint8

const (
	addFresh addResult = iota // first use: remembered
	addSeen                   // already used
	addFull                   // not remembered: no room
)

// replayStore remembers used challenges until they expire, in a fixed
// amount of memory allocated up front: a map for lookups and a ring of
// the same entries in the order they were used. Entries leave from the
// ring's head once expired. Challenges of one issuer share a lifetime, so
// use order is nearly expiry order; an entry behind a longer-lived head
// stays a little past its expiry, which only takes a place.
type replayStore struct {
	mu   sync.Mutex
	seen map[replayKey]struct{}
	ring []replayEntry
	head int
	n    int
}

func newReplayStore(capacity int) *replayStore {
	return &replayStore{
		seen: make(map[replayKey]struct{}, capacity),
		ring: make([]replayEntry, capacity),
	}
}

// remember records key as used until expires, unless it was used already
// or the store is full once entries expired before now are dropped.
func (s *replayStore) remember(key replayKey, expires, now int64) addResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.n > 0 && s.ring[s.head].expires < now {
		delete(s.seen, s.ring[s.head].key)
		s.ring[s.head] = replayEntry{}
		s.head = (s.head + 1) % len(s.ring)
		s.n--
	}
	if _, ok := s.seen[key]; ok {
		return addSeen
	}
	if s.n == len(s.ring) {
		return addFull
	}
	s.ring[(s.head+s.n)%len(s.ring)] = replayEntry{key: key, expires: expires}
	s.n++
	s.seen[key] = struct{}{}
	return addFresh
}

func (s *replayStore) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}
