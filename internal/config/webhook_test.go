package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/mailslot/mailslot/internal/config"
)

func TestWebhookSettings(t *testing.T) {
	prod := map[string]string{"MAILSLOT_ENV": "production", "MAILSLOT_NODE_ID": "n1", "MAILSLOT_PUBLIC_URL": "https://in.example",
		"MAILSLOT_IP_PEPPER": pepper, "MAILSLOT_TOKEN_KEY": key, "MAILSLOT_ADMIN_TOKEN": admin}
	dev := map[string]string{"MAILSLOT_ENV": "development"}
	with := func(base map[string]string, kv ...string) map[string]string {
		out := map[string]string{}
		for k, v := range base {
			out[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	tests := []struct {
		name    string
		env     map[string]string
		want    config.Webhooks
		wantErr []string // substrings of the error; nil: loads
	}{
		{"production defaults", prod, config.Webhooks{Concurrency: 32, Timeout: 10 * time.Second, PollInterval: time.Second}, nil},
		{"development allows http", dev, config.Webhooks{AllowHTTP: true, Concurrency: 32, Timeout: 10 * time.Second, PollInterval: time.Second}, nil},
		{"development allows private on request", with(dev, "MAILSLOT_WEBHOOK_ALLOW_PRIVATE", "true", "MAILSLOT_WEBHOOK_CONCURRENCY", "8",
			"MAILSLOT_WEBHOOK_TIMEOUT", "3s", "MAILSLOT_WEBHOOK_POLL_INTERVAL", "50ms"),
			config.Webhooks{AllowPrivate: true, AllowHTTP: true, Concurrency: 8, Timeout: 3 * time.Second, PollInterval: 50 * time.Millisecond}, nil},
		{"production refuses private", with(prod, "MAILSLOT_WEBHOOK_ALLOW_PRIVATE", "true"), config.Webhooks{},
			[]string{"MAILSLOT_WEBHOOK_ALLOW_PRIVATE must be off in production", "metadata", "development and tests only"}},
		{"production accepts private off", with(prod, "MAILSLOT_WEBHOOK_ALLOW_PRIVATE", "false"),
			config.Webhooks{Concurrency: 32, Timeout: 10 * time.Second, PollInterval: time.Second}, nil},
		{"not a boolean", with(dev, "MAILSLOT_WEBHOOK_ALLOW_PRIVATE", "maybe"), config.Webhooks{}, []string{"MAILSLOT_WEBHOOK_ALLOW_PRIVATE must be on or off"}},
		{"concurrency bounds", with(dev, "MAILSLOT_WEBHOOK_CONCURRENCY", "0"), config.Webhooks{}, []string{"MAILSLOT_WEBHOOK_CONCURRENCY must be between 1 and 256"}},
		{"timeout bounds", with(dev, "MAILSLOT_WEBHOOK_TIMEOUT", "5m"), config.Webhooks{}, []string{"MAILSLOT_WEBHOOK_TIMEOUT must be between 1s and 1m"}},
		{"poll bounds", with(dev, "MAILSLOT_WEBHOOK_POLL_INTERVAL", "1ms"), config.Webhooks{}, []string{"MAILSLOT_WEBHOOK_POLL_INTERVAL must be between 10ms and 1m"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := load(tt.env)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("loaded %+v, want an error", cfg.Webhooks)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not say %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			if cfg.Webhooks != tt.want {
				t.Errorf("Webhooks = %+v, want %+v", cfg.Webhooks, tt.want)
			}
		})
	}
}
