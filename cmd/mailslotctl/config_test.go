package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/mailslot/mailslot/internal/config"
)

// A value the edge refuses, mailslotctl refuses too, with the edge's
// message: both read the environment through internal/config.
func TestRefusesWhatTheEdgeRefuses(t *testing.T) {
	for _, c := range []struct {
		name, key, value string
		args             []string
	}{
		{"bad link TTL", "MAILSLOT_CONFIRM_LINK_TTL", "a month", []string{"links", "--property", "shop.example", privEmail}},
		{"unsubscribe TTL under CASL's 60 days", "MAILSLOT_UNSUBSCRIBE_LINK_TTL", "720h", []string{"links", "--property", "shop.example", privEmail}},
		{"bad token key", "MAILSLOT_TOKEN_KEY", "k1:short", []string{"links", "--property", "shop.example", privEmail}},
		{"bad image budget", "MAILSLOT_IMAGE_MONTHLY_BUDGET", "lots", []string{"images", "status"}},
		{"bad image attempts", "MAILSLOT_IMAGE_MAX_ATTEMPTS", "0", []string{"images", "submit", "--url", "https://img.example/a.jpg"}},
		{"bad replica retention", "MAILSLOT_REPLICA_RETENTION", "1s", []string{"erasures"}},
		{"bad replica URL", "MAILSLOT_REPLICA_URL", "ftp://bucket", []string{"recover", "--node", "n1"}},
		{"production without the admin token", "MAILSLOT_ENV", "production", []string{"erase", privEmail}},
	} {
		t.Run(c.name, func(t *testing.T) {
			env := privEnv(closedURL(t))
			env[c.key] = c.value
			_, edgeErr := config.Load(func(k string) string { return env[k] })
			if edgeErr == nil {
				t.Fatalf("the edge accepts %s=%q; the case tests nothing", c.key, c.value)
			}
			out, _, err := privCtl(t, env, c.args...)
			if !errors.Is(err, errUsage) {
				t.Fatalf("mailslotctl %s: err = %v, want a usage error", c.args[0], err)
			}
			if !strings.Contains(err.Error(), edgeErr.Error()) {
				t.Errorf("mailslotctl %s says %q, want the edge's message %q", c.args[0], err, edgeErr)
			}
			if out != "" {
				t.Errorf("mailslotctl %s printed %q despite the bad configuration", c.args[0], out)
			}
		})
	}
}
