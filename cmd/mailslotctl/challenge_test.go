package main

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/mailslot/mailslot/internal/pgtest"
)

func TestChallengeCommand(t *testing.T) {
	dbURL := pgtest.NewURL(t)
	env := map[string]string{"DATABASE_URL": dbURL, "MAILSLOT_CHALLENGE_SECRET": "0x-secret-value"}
	pool := pgtest.Pool(t, dbURL)

	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
	}{
		{"turnstile without a secret", map[string]string{"DATABASE_URL": dbURL}, []string{"--property", "shop", "--kind", "turnstile", "--hostnames", "shop.example"}},
		{"turnstile without hostnames", env, []string{"--property", "shop", "--kind", "turnstile"}},
		{"unknown kind", env, []string{"--property", "shop", "--kind", "recaptcha"}},
		{"bad no-js", env, []string{"--property", "shop", "--kind", "pow", "--no-js", "maybe"}},
		{"property with a space", env, []string{"--property", "a b", "--kind", "pow"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := ctl(t, tc.env, append([]string{"challenge", "set"}, tc.args...)...); !errors.Is(err, errUsage) {
				t.Fatalf("err = %v, want a usage error", err)
			}
		})
	}

	out, _, err := ctl(t, env, "challenge", "set", "--property", "shop", "--kind", "turnstile",
		"--site-key", "0x4AAA", "--hostnames", "Shop.example, www.shop.example", "--action", "signup", "--no-js", "refuse")
	if err != nil {
		t.Fatalf("set: %v", err)
	}
	if !strings.Contains(out, "turnstile") {
		t.Errorf("set output %q", out)
	}
	// Changing the no-JS policy without the secret in the environment
	// keeps the stored one.
	if out, _, err = ctl(t, map[string]string{"DATABASE_URL": dbURL}, "challenge", "set", "--property", "shop", "--kind", "turnstile",
		"--site-key", "0x4AAA", "--hostnames", "shop.example", "--no-js", "hold"); err != nil || !strings.Contains(out, "kept") {
		t.Fatalf("set without secret: %q %v", out, err)
	}
	var secret, noJS string
	if err := pool.QueryRow(context.Background(), `SELECT secret, no_js FROM mailslot.property_challenges WHERE property = 'shop'`).Scan(&secret, &noJS); err != nil {
		t.Fatal(err)
	}
	if secret != "0x-secret-value" || noJS != "hold" {
		t.Fatalf("stored secret %q no_js %q", secret, noJS)
	}
	if _, _, err := ctl(t, env, "challenge", "set", "--property", "blog", "--kind", "pow"); err != nil {
		t.Fatalf("set pow: %v", err)
	}

	table, _, err := ctl(t, env, "challenge", "show")
	if err != nil {
		t.Fatalf("show: %v", err)
	}
	if strings.Contains(table, "0x-secret-value") {
		t.Fatalf("show printed the secret:\n%s", table)
	}
	rows := columns(table)
	if len(rows) != 3 || rows[1][0] != "blog" || rows[2][0] != "shop" || rows[2][3] != "set" {
		t.Fatalf("show table:\n%s", table)
	}
	js, _, err := ctl(t, env, "challenge", "show", "--property", "shop", "--format", "json")
	if err != nil {
		t.Fatal(err)
	}
	var list []challengeRow
	if err := json.Unmarshal([]byte(js), &list); err != nil || len(list) != 1 || !list[0].SecretSet || list[0].Kind != "turnstile" || strings.Contains(js, "0x-secret-value") {
		t.Fatalf("show json: %s (%v)", js, err)
	}

	if _, _, err := ctl(t, env, "challenge", "clear", "--property", "shop"); err != nil {
		t.Fatalf("clear: %v", err)
	}
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM mailslot.property_challenges`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d rows after clear (%v), want 1", n, err)
	}
}
