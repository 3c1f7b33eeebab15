package config_test

import (
	"strings"
	"testing"

	"github.com/mailslot/mailslot/internal/config"
)

func prodEnv(extra map[string]string) map[string]string {
	env := map[string]string{
		"MAILSLOT_ENV": "production", "MAILSLOT_NODE_ID": "n1",
		"MAILSLOT_IP_PEPPER": pepper, "MAILSLOT_TOKEN_KEY": key, "MAILSLOT_ADMIN_TOKEN": admin,
	}
	for k, v := range extra {
		env[k] = v
	}
	return env
}

var fullSender = map[string]string{
	"MAILSLOT_MAIL_FROM":      "Café Zoë <news@example.com>",
	"MAILSLOT_SENDER_NAME":    "Café Zoë Inc.",
	"MAILSLOT_SENDER_ADDRESS": `100 Rue Saint-Paul\nMontréal QC H2Y 1Z3`,
	"MAILSLOT_SENDER_CONTACT": "privacy@example.com",
	"MAILSLOT_PUBLIC_URL":     "https://edge.example.com",
}

func with(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// TestProductionMailNeedsSenderIdentification: a transport without the
// CASL identification is refused at start, and the error names every
// variable that is missing.
func TestProductionMailNeedsSenderIdentification(t *testing.T) {
	smtp := map[string]string{"MAILSLOT_SMTP_URL": "smtp://mail.example.com:587"}
	resend := map[string]string{"MAILSLOT_RESEND_API_KEY": "re_live_0123456789"}
	for _, tc := range []struct {
		name    string
		env     map[string]string
		missing []string // variable names the error must name; nil: loads
	}{
		{"no transport, no sender: fine", prodEnv(nil), nil},
		{"smtp and everything", prodEnv(with(smtp, fullSender)), nil},
		{"resend and everything", prodEnv(with(resend, fullSender)), nil},
		{"smtp without any identification", prodEnv(with(smtp, map[string]string{"MAILSLOT_MAIL_FROM": "a <a@example.com>"})),
			[]string{"MAILSLOT_SENDER_NAME", "MAILSLOT_SENDER_ADDRESS", "MAILSLOT_SENDER_CONTACT"}},
		{"resend without a postal address", prodEnv(with(resend, with(fullSender, map[string]string{"MAILSLOT_SENDER_ADDRESS": ""}))),
			[]string{"MAILSLOT_SENDER_ADDRESS"}},
		{"smtp without a from", prodEnv(with(smtp, with(fullSender, map[string]string{"MAILSLOT_MAIL_FROM": ""}))),
			[]string{"MAILSLOT_MAIL_FROM"}},
		{"both transports", prodEnv(with(with(smtp, resend), fullSender)), []string{"MAILSLOT_SMTP_URL", "MAILSLOT_RESEND_API_KEY"}},
		{"smtp without a public url", prodEnv(with(smtp, with(fullSender, map[string]string{"MAILSLOT_PUBLIC_URL": ""}))),
			[]string{"MAILSLOT_PUBLIC_URL"}},
		{"bad smtp url", prodEnv(with(map[string]string{"MAILSLOT_SMTP_URL": "http://x"}, fullSender)), []string{"MAILSLOT_SMTP_URL"}},
		{"bad webhook secret", prodEnv(with(fullSender, map[string]string{"MAILSLOT_RESEND_WEBHOOK_SECRET": "nope"})), []string{"MAILSLOT_RESEND_WEBHOOK_SECRET"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := load(tc.env)
			if tc.missing == nil {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Load succeeded (transport %q); want an error naming %v", cfg.Mail.Transport(), tc.missing)
			}
			for _, name := range tc.missing {
				if !strings.Contains(err.Error(), name) {
					t.Errorf("error %q does not name %s", err, name)
				}
			}
			if strings.Contains(err.Error(), "re_live_0123456789") {
				t.Errorf("error %q shows the API key", err)
			}
		})
	}
}

func TestDevelopmentMailFillsPlaceholders(t *testing.T) {
	cfg, err := load(map[string]string{"MAILSLOT_SMTP_URL": "smtp://127.0.0.1:1025?starttls=off"})
	if err != nil {
		t.Fatal(err)
	}
	m := cfg.Mail
	if m.Transport() != config.MailTransportSMTP || m.From == "" || m.Sender.Validate() != nil {
		t.Errorf("development mail config = %+v; want SMTP with a from and a complete placeholder sender", m)
	}
	if cfg, err := load(nil); err != nil || cfg.Mail.Transport() != config.MailTransportNone {
		t.Errorf("no transport: %v, %q", err, cfg.Mail.Transport())
	}
}

func TestSenderAddressKeepsItsLines(t *testing.T) {
	cfg, err := load(prodEnv(with(map[string]string{"MAILSLOT_SMTP_URL": "smtps://u:p@mail.example.com"}, fullSender)))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Mail.Sender.PostalAddress; got != "100 Rue Saint-Paul\nMontréal QC H2Y 1Z3" {
		t.Errorf("postal address = %q; want the \\n turned into a line break", got)
	}
}
