package token

import (
	"net/url"
	"strings"
	"time"
)

// Paths at which the edge serves each purpose's link. The edge registers
// its routes and every minter builds its URLs from these, so a link always
// names a page the edge serves.
const (
	ConfirmPath     = "/v1/confirm"
	UnsubscribePath = "/v1/unsubscribe"
	ErasePath       = "/v1/erasure"
)

// Lifetimes are how long each kind of link works, from the
// MAILSLOT_*_LINK_TTL settings (internal/config).
type Lifetimes struct {
	Confirm     time.Duration
	Unsubscribe time.Duration
	Erase       time.Duration
}

// Link is one signed link.
type Link struct {
	Purpose string    `json:"purpose"`
	URL     string    `json:"url"`
	Expires time.Time `json:"expires"`
}

// Links mints the confirm, unsubscribe and erasure links (in that order)
// for the address whose HMAC is emailHMAC on property, under base (the
// edge's public URL). Expiry is truncated to the second, as tokens carry
// it. The edge's POST /admin/links and `mailslotctl links` both mint here,
// so the two cannot disagree on lifetimes or paths.
func (ks *Keys) Links(base, property string, emailHMAC []byte, ttl Lifetimes, now time.Time) []Link {
	base = strings.TrimSuffix(base, "/")
	out := make([]Link, 0, 3)
	for _, l := range []struct {
		purpose, path string
		ttl           time.Duration
	}{
		{Confirm, ConfirmPath, ttl.Confirm},
		{Unsubscribe, UnsubscribePath, ttl.Unsubscribe},
		{Erase, ErasePath, ttl.Erase},
	} {
		exp := now.UTC().Add(l.ttl).Truncate(time.Second)
		tok := ks.Sign(Claims{Purpose: l.purpose, Property: property, EmailHMAC: emailHMAC, Expires: exp, IssuedAt: now})
		out = append(out, Link{Purpose: l.purpose, URL: base + l.path + "?token=" + url.QueryEscape(tok), Expires: exp})
	}
	return out
}
