package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mailslot/mailslot/internal/edgetest"
	"github.com/mailslot/mailslot/internal/pgtest"
	"github.com/mailslot/mailslot/internal/token"
)

// The CLI's links live as long as MAILSLOT_*_LINK_TTL says, as the edge's
// do, and name pages the edge serves.
func TestLinksHonourConfiguredLifetimes(t *testing.T) {
	public, _ := privNode(t, pgtest.NewURL(t))
	keys, err := token.ParseKeys(edgetest.TokenKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		ttl  map[string]time.Duration
	}{
		{"defaults", map[string]time.Duration{token.Confirm: 30 * 24 * time.Hour, token.Unsubscribe: 365 * 24 * time.Hour, token.Erase: 30 * 24 * time.Hour}},
		{"configured", map[string]time.Duration{token.Confirm: 48 * time.Hour, token.Unsubscribe: 90 * 24 * time.Hour, token.Erase: 72 * time.Hour}},
	} {
		t.Run(c.name, func(t *testing.T) {
			env := privEnv("")
			if c.name == "configured" {
				env["MAILSLOT_CONFIRM_LINK_TTL"] = c.ttl[token.Confirm].String()
				env["MAILSLOT_UNSUBSCRIBE_LINK_TTL"] = c.ttl[token.Unsubscribe].String()
				env["MAILSLOT_ERASE_LINK_TTL"] = c.ttl[token.Erase].String()
			}
			before := time.Now().Truncate(time.Second)
			out, stderr, err := privCtl(t, env, "links", "--json", "--property", "shop.example", "--public-url", public, privEmail)
			if err != nil {
				t.Fatalf("links: %v\n%s", err, stderr)
			}
			after := time.Now()
			var links []token.Link
			if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 3 {
				t.Fatalf("links --json (%v):\n%s", err, out)
			}
			for _, l := range links {
				u, err := url.Parse(l.URL)
				if err != nil {
					t.Fatalf("%s link %q: %v", l.Purpose, l.URL, err)
				}
				claims, err := keys.Verify(u.Query().Get("token"), l.Purpose, before)
				if err != nil {
					t.Fatalf("%s token: %v", l.Purpose, err)
				}
				ttl := c.ttl[l.Purpose]
				if claims.Expires.Before(before.Add(ttl)) || claims.Expires.After(after.Add(ttl)) {
					t.Errorf("%s token expires %s, want %s after minting (between %s and %s)",
						l.Purpose, claims.Expires, ttl, before.Add(ttl), after.Add(ttl))
				}
				// The edge serves the page the link names.
				resp, err := http.Get(l.URL)
				if err != nil {
					t.Fatalf("GET %s link: %v", l.Purpose, err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "<form method=\"post\"") {
					t.Errorf("GET %s link at the edge: status %d\n%s", l.Purpose, resp.StatusCode, body)
				}
			}
		})
	}
}
