package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/mailslot/mailslot/internal/pgtest"
	"github.com/mailslot/mailslot/sync/mailer"
)

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPropertiesSetRefusesBrokenTemplates: a template that would fail or
// mislead at send time is refused by mailslotctl, and nothing is stored.
func TestPropertiesSetRefusesBrokenTemplates(t *testing.T) {
	dbURL := pgtest.NewURL(t)
	db := []string{"--database-url", dbURL}
	for _, tc := range []struct {
		name, flag, body, want string
	}{
		{"syntax error", "--confirmation-text", "Hello {{.RecipientName", "confirmation text template"},
		{"unknown field", "--welcome-html", "<p>{{.Nope}}</p>", "welcome html template"},
		{"confirmation without its link", "--confirmation-text", "Please confirm, {{.RecipientName}}.", "ConfirmURL"},
		{"welcome naming the confirm link", "--welcome-text", "{{.ConfirmURL}}", "welcome text template"},
		{"html that writes its own document", "--confirmation-html", "<html><body>{{.ConfirmURL}}</body></html>", "body's content"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := writeFile(t, "tpl", tc.body)
			_, _, err := ctl(t, nil, append([]string{"properties", "set", "--property", "cafe.example", "--welcome", "on", tc.flag, file}, db...)...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("properties set = %v; want an error about %q", err, tc.want)
			}
			_, found, gerr := mailer.NewProperties(pgtest.Pool(t, dbURL)).Get(context.Background(), "cafe.example")
			if gerr != nil || found {
				t.Errorf("a refused set stored the property (found %v, %v)", found, gerr)
			}
		})
	}
}

func TestPropertiesSetAndShow(t *testing.T) {
	dbURL := pgtest.NewURL(t)
	db := []string{"--database-url", dbURL}
	subject := writeFile(t, "subject", "Bienvenue chez {{.Property}}, {{.RecipientName}} ☕")
	out, _, err := ctl(t, nil, append([]string{"properties", "set", "--property", "cafe.example",
		"--display-name", "Café Zoë", "--from", "Café Zoë <news@cafe.example>", "--sender-address", `1 Rue A\nMontréal`,
		"--welcome", "on", "--double-opt-in", "off", "--welcome-subject", subject}, db...)...)
	if err != nil {
		t.Fatalf("properties set: %v", err)
	}
	for _, want := range []string{`"Café Zoë"`, `double opt-in\s+off`, `\nwelcome\s+on`, `custom \{"html":false,"subject":true,"text":false\}`} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	p, found, err := mailer.NewProperties(pgtest.Pool(t, dbURL)).Get(context.Background(), "cafe.example")
	if err != nil || !found || p.SenderPostalAddress != "1 Rue A\nMontréal" || !strings.Contains(p.Templates.Welcome.Subject, "☕") || p.DoubleOptIn {
		t.Fatalf("stored = %+v, %v, %v", p, found, err)
	}
	// A later set changes only what it names.
	if _, _, err := ctl(t, nil, append([]string{"properties", "set", "--property", "cafe.example", "--double-opt-in", "on"}, db...)...); err != nil {
		t.Fatal(err)
	}
	p, _, _ = mailer.NewProperties(pgtest.Pool(t, dbURL)).Get(context.Background(), "cafe.example")
	if !p.DoubleOptIn || !p.Welcome || p.DisplayName != "Café Zoë" || p.Templates.Welcome.Subject == "" {
		t.Errorf("after a second set: %+v", p)
	}
	if _, _, err := ctl(t, nil, append([]string{"properties", "set", "--property", "cafe.example", "--from", "not an address"}, db...)...); err == nil {
		t.Errorf("a bad --from was accepted")
	}
	out, _, err = ctl(t, nil, append([]string{"properties", "show", "--property", "other.example"}, db...)...)
	if err != nil || !strings.Contains(out, "defaults") || !regexp.MustCompile(`double opt-in\s+on`).MatchString(out) {
		t.Errorf("show of a property without settings: %v\n%s", err, out)
	}
}

func TestMailListRetryCancel(t *testing.T) {
	dbURL := pgtest.NewURL(t)
	db := []string{"--database-url", dbURL}
	pool := pgtest.Pool(t, dbURL)
	ctx := context.Background()
	var lead, job int64
	if err := pool.QueryRow(ctx, `INSERT INTO mailslot.leads (property, email, email_hmac, consent_basis, first_seen_at, last_seen_at)
		VALUES ('cafe.example', 'u@example.org', '\x01', 'pending', now(), now()) RETURNING id`).Scan(&lead); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(ctx, `INSERT INTO mailslot.mail_jobs (lead_id, property, kind, state, attempts, last_error)
		VALUES ($1, 'cafe.example', 'confirmation', 'uncertain', 1, 'send mail: end of data (uncertain)') RETURNING id`, lead).Scan(&job); err != nil {
		t.Fatal(err)
	}
	out, _, err := ctl(t, nil, append([]string{"mail", "list", "--state", "uncertain"}, db...)...)
	if err != nil || !strings.Contains(out, "uncertain") || strings.Contains(out, "u@example.org") {
		t.Fatalf("mail list: %v\n%s", err, out)
	}
	out, _, err = ctl(t, nil, append([]string{"mail", "status"}, db...)...)
	if err != nil || !strings.Contains(out, "1 uncertain") {
		t.Errorf("mail status: %v\n%s", err, out)
	}
	if out, _, err = ctl(t, nil, append(append([]string{"mail", "retry"}, db...), strconv.FormatInt(job, 10))...); err != nil || !strings.Contains(out, "is queued") {
		t.Errorf("mail retry: %v\n%s", err, out)
	}
	if out, _, err = ctl(t, nil, append(append([]string{"mail", "cancel"}, db...), strconv.FormatInt(job, 10))...); err != nil || !strings.Contains(out, "is cancelled") {
		t.Errorf("mail cancel: %v\n%s", err, out)
	}
	if _, _, err = ctl(t, nil, append(append([]string{"mail", "cancel"}, db...), "999999")...); err == nil {
		t.Errorf("cancel of a missing job succeeded")
	}
	if _, _, err = ctl(t, nil, append([]string{"mail", "list", "--state", "bogus"}, db...)...); exitCode(err) != 2 {
		t.Errorf("list --state bogus: %v, want a usage error", err)
	}
}
