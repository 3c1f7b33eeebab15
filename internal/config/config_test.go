package config_test

import (
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/mailslot/mailslot/internal/config"
)

func load(env map[string]string) (*config.Config, error) {
	return config.Load(func(k string) string { return env[k] })
}

var (
	pepper = strings.Repeat("p", 32)
	key    = strings.Repeat("k", 32)
	admin  = strings.Repeat("a", 40)
)

func TestProductionNeedsSecrets(t *testing.T) {
	t.Parallel()
	all := []string{"MAILSLOT_IP_PEPPER", "MAILSLOT_TOKEN_KEY", "MAILSLOT_ADMIN_TOKEN"}
	tests := []struct {
		name    string
		set     map[string]string
		missing []string
	}{
		{"none", nil, all},
		{"no pepper", map[string]string{"MAILSLOT_TOKEN_KEY": key, "MAILSLOT_ADMIN_TOKEN": admin}, all[:1]},
		{"no token key", map[string]string{"MAILSLOT_IP_PEPPER": pepper, "MAILSLOT_ADMIN_TOKEN": admin}, all[1:2]},
		{"no admin token", map[string]string{"MAILSLOT_IP_PEPPER": pepper, "MAILSLOT_TOKEN_KEY": key}, all[2:]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{"MAILSLOT_ENV": "production", "MAILSLOT_NODE_ID": "n1"}
			for k, v := range tt.set {
				env[k] = v
			}
			cfg, err := load(env)
			if err == nil {
				t.Fatalf("production loaded without %v: %+v", tt.missing, cfg)
			}
			msg := err.Error()
			for _, name := range all {
				want := slices.Contains(tt.missing, name)
				if strings.Contains(msg, name) != want {
					t.Errorf("error %q: names %s = %v, want %v", msg, name, !want, want)
				}
			}
			for _, v := range tt.set {
				if strings.Contains(msg, v) {
					t.Errorf("error %q repeats a secret's value", msg)
				}
			}
		})
	}
}

func TestProductionSecretLength(t *testing.T) {
	t.Parallel()
	base := map[string]string{"MAILSLOT_ENV": "production", "MAILSLOT_NODE_ID": "n1",
		"MAILSLOT_IP_PEPPER": pepper, "MAILSLOT_TOKEN_KEY": key, "MAILSLOT_ADMIN_TOKEN": admin}
	cfg, err := load(base)
	if err != nil {
		t.Fatalf("production with 32-character secrets: %v", err)
	}
	if cfg.Env != config.Production || cfg.IPPepper != pepper || cfg.AdminToken != admin {
		t.Errorf("config = %+v", cfg)
	}
	for _, name := range []string{"MAILSLOT_IP_PEPPER", "MAILSLOT_TOKEN_KEY", "MAILSLOT_ADMIN_TOKEN"} {
		t.Run(name, func(t *testing.T) {
			env := maps.Clone(base)
			short := strings.Repeat("s", 31)
			env[name] = short
			_, err := load(env)
			if err == nil {
				t.Fatalf("a 31-character %s was accepted", name)
			}
			if !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "32") {
				t.Errorf("error %q does not say which secret is short and how long it must be", err)
			}
			if strings.Contains(err.Error(), short) {
				t.Errorf("error %q repeats the secret", err)
			}
		})
	}
}

func TestCORSOrigins(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"*", "null", "https://*.example.com", "site.example", "https://site.example/path",
		"ftp://site.example", "https://site.example?x=1", "https://", "https://a.example,*"} {
		t.Run(bad, func(t *testing.T) {
			_, err := load(map[string]string{"MAILSLOT_NODE_ID": "n1", "MAILSLOT_CORS_ORIGINS": bad})
			if err == nil || !strings.Contains(err.Error(), "MAILSLOT_CORS_ORIGINS") {
				t.Errorf("origin %q: error %v, want one naming MAILSLOT_CORS_ORIGINS", bad, err)
			}
		})
	}
	cfg, err := load(map[string]string{"MAILSLOT_NODE_ID": "n1",
		"MAILSLOT_CORS_ORIGINS": " https://site.example/ , http://localhost:8081,,"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"https://site.example", "http://localhost:8081"}; !reflect.DeepEqual(cfg.CORSOrigins, want) {
		t.Errorf("origins = %q, want %q", cfg.CORSOrigins, want)
	}
}

func TestDevSecretsGeneratedOnce(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data") // not there yet
	env := map[string]string{"MAILSLOT_NODE_ID": "n1", "MAILSLOT_DATA_DIR": dir}
	names := []string{"MAILSLOT_IP_PEPPER", "MAILSLOT_TOKEN_KEY", "MAILSLOT_ADMIN_TOKEN"}

	first, err := load(env)
	if err != nil {
		t.Fatal(err)
	}
	if first.IPPepper != "" || first.AdminToken != "" {
		t.Fatal("Load made up secrets; only EnsureDevSecrets may")
	}
	filled, err := first.EnsureDevSecrets()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(filled, names) {
		t.Errorf("filled %v, want %v", filled, names)
	}
	secrets := []string{first.IPPepper, first.TokenKey, first.AdminToken}
	for i, s := range secrets {
		if len(s) < 32 {
			t.Errorf("generated %s is %d characters, want at least 32", names[i], len(s))
		}
	}
	if secrets[0] == secrets[1] || secrets[1] == secrets[2] || secrets[0] == secrets[2] {
		t.Error("generated secrets are not distinct")
	}
	path := filepath.Join(dir, config.DevSecretsFile)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("secrets file: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("secrets file mode %v, want 0600", fi.Mode().Perm())
	}
	saved, _ := os.ReadFile(path)

	// The next start reuses them: hashes and links stay valid.
	second, err := load(env)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := second.EnsureDevSecrets(); err != nil {
		t.Fatal(err)
	}
	if got := []string{second.IPPepper, second.TokenKey, second.AdminToken}; !reflect.DeepEqual(got, secrets) {
		t.Error("a second start generated new secrets")
	}
	if again, _ := os.ReadFile(path); string(again) != string(saved) {
		t.Error("a second start rewrote the secrets file")
	}

	// A secret set in the environment wins and is not reported as filled.
	env["MAILSLOT_ADMIN_TOKEN"] = admin
	third, err := load(env)
	if err != nil {
		t.Fatal(err)
	}
	filled, err = third.EnsureDevSecrets()
	if err != nil {
		t.Fatal(err)
	}
	if third.AdminToken != admin || slices.Contains(filled, "MAILSLOT_ADMIN_TOKEN") || third.IPPepper != secrets[0] {
		t.Errorf("filled %v, admin token from env %v, pepper reused %v", filled, third.AdminToken == admin, third.IPPepper == secrets[0])
	}
}

func TestProductionNeverGeneratesSecrets(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg, err := load(map[string]string{"MAILSLOT_ENV": "production", "MAILSLOT_NODE_ID": "n1", "MAILSLOT_DATA_DIR": dir,
		"MAILSLOT_IP_PEPPER": pepper, "MAILSLOT_TOKEN_KEY": key, "MAILSLOT_ADMIN_TOKEN": admin})
	if err != nil {
		t.Fatal(err)
	}
	if filled, err := cfg.EnsureDevSecrets(); err != nil || len(filled) != 0 {
		t.Errorf("EnsureDevSecrets in production: %v, %v", filled, err)
	}
	if _, err := os.Stat(filepath.Join(dir, config.DevSecretsFile)); !os.IsNotExist(err) {
		t.Error("production wrote a dev secrets file")
	}
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	host, _ := os.Hostname()
	cfg, err := load(map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"Env": config.Development, "Addr": ":8080", "PrivateAddr": "127.0.0.1:9090", "DataDir": "./data",
		"NodeID": host, "Region": "local", "ClientIPHeader": "", "RateRPS": 5.0, "RateBurst": 20,
		"GroupCommit": true, "MaxBodyBytes": int64(16 << 10), "MaxEvents": 50,
		"SyncBatch": 1000, "SyncParallel": 2,
	}
	check(t, cfg, want)

	t.Run("on Fly", func(t *testing.T) {
		cfg, err := load(map[string]string{"FLY_MACHINE_ID": "e784079b449483", "FLY_REGION": "yyz", "FLY_APP_NAME": "mailslot"})
		if err != nil {
			t.Fatal(err)
		}
		check(t, cfg, map[string]any{"NodeID": "e784079b449483", "Region": "yyz", "ClientIPHeader": "Fly-Client-IP"})
	})
	t.Run("explicit wins", func(t *testing.T) {
		cfg, err := load(map[string]string{"FLY_MACHINE_ID": "e784079b449483", "FLY_REGION": "yyz",
			"MAILSLOT_NODE_ID": "edge-1", "MAILSLOT_REGION": "lab", "MAILSLOT_CLIENT_IP_HEADER": "X-Real-Client"})
		if err != nil {
			t.Fatal(err)
		}
		check(t, cfg, map[string]any{"NodeID": "edge-1", "Region": "lab", "ClientIPHeader": "X-Real-Client"})
	})
	t.Run("rate limit off", func(t *testing.T) {
		cfg, err := load(map[string]string{"MAILSLOT_RATE_RPS": "0"})
		if err != nil {
			t.Fatal(err)
		}
		check(t, cfg, map[string]any{"RateRPS": 0.0})
	})
}

func TestInvalidValues(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"MAILSLOT_ENV":              "staging",
		"MAILSLOT_RATE_RPS":         "fast",
		"MAILSLOT_RATE_BURST":       "-1",
		"MAILSLOT_MAX_EVENTS":       "0",
		"MAILSLOT_MAX_BODY_BYTES":   "10",
		"MAILSLOT_GROUP_COMMIT":     "maybe",
		"MAILSLOT_SHUTDOWN_TIMEOUT": "soon",
		"MAILSLOT_REDIRECT_HOSTS":   "evil.example/path",
		"MAILSLOT_SYNC_BATCH":       "0",
		"MAILSLOT_SYNC_PARALLEL":    "9",
	}
	for name, val := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := load(map[string]string{"MAILSLOT_NODE_ID": "n1", name: val})
			if err == nil || !strings.Contains(err.Error(), name) {
				t.Errorf("%s=%q: error %v, want one naming %s", name, val, err, name)
			}
		})
	}
	// Every problem is reported at once, not one per start.
	env := map[string]string{"MAILSLOT_NODE_ID": "n1"}
	for k, v := range tests {
		env[k] = v
	}
	_, err := load(env)
	if err == nil {
		t.Fatal("loaded with every value wrong")
	}
	for name := range tests {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("combined error does not name %s", name)
		}
	}
}

func check(t *testing.T, cfg *config.Config, want map[string]any) {
	t.Helper()
	v := reflect.ValueOf(cfg).Elem()
	for field, w := range want {
		if got := v.FieldByName(field).Interface(); !reflect.DeepEqual(got, w) {
			t.Errorf("%s = %#v, want %#v", field, got, w)
		}
	}
}
