// Package config reads the edge's settings from the environment. Every
// variable is listed in the README; names follow the contract in DESIGN.md.
package config

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Modes.
const (
	Development = "development"
	Production  = "production"
)

// minSecretLen is the shortest secret production accepts (32 bytes of
// base64 or hex is well past it).
const minSecretLen = 32

// Config is the edge node's whole configuration.
type Config struct {
	Env         string
	Addr        string
	PrivateAddr string
	DataDir     string
	NodeID      string
	Region      string

	IPPepper   string
	TokenKey   string
	AdminToken string

	CORSOrigins   []string
	RedirectHosts []string
	ThanksURL     string
	ErrorURL      string

	// RateRPS and RateBurst limit writes per client (by IP HMAC); RateRPS 0
	// turns the limit off.
	RateRPS        float64
	RateBurst      int
	RateMaxClients int
	// ClientIPHeader names the header a trusted proxy sets to the client's
	// address (Fly-Client-IP on Fly). Empty means the socket address.
	ClientIPHeader string

	MaxBodyBytes int64
	MaxEvents    int

	GroupCommit    bool
	OutboxMaxBatch int
	OutboxMaxRows  int64
	OutboxMaxBytes int64
	DiskMinFree    int64

	DatabaseURL   string
	ReplicaURL    string
	SyncBatch     int
	SyncInterval  time.Duration
	SyncRetention time.Duration

	ShutdownTimeout time.Duration
}

// Load reads the configuration through getenv (os.Getenv in production,
// a map in tests). It validates everything it can without touching disk.
func Load(getenv func(string) string) (*Config, error) {
	p := parser{getenv: getenv}
	c := &Config{
		Env:         p.str("MAILSLOT_ENV", Development),
		Addr:        p.str("MAILSLOT_ADDR", ":8080"),
		PrivateAddr: p.str("MAILSLOT_PRIVATE_ADDR", "127.0.0.1:9090"),
		DataDir:     p.str("MAILSLOT_DATA_DIR", "./data"),
		NodeID:      p.str("MAILSLOT_NODE_ID", firstOf(getenv("FLY_MACHINE_ID"), hostname())),
		Region:      p.str("MAILSLOT_REGION", firstOf(getenv("FLY_REGION"), "local")),

		IPPepper:   getenv("MAILSLOT_IP_PEPPER"),
		TokenKey:   getenv("MAILSLOT_TOKEN_KEY"),
		AdminToken: getenv("MAILSLOT_ADMIN_TOKEN"),

		CORSOrigins:   p.list("MAILSLOT_CORS_ORIGINS"),
		RedirectHosts: p.list("MAILSLOT_REDIRECT_HOSTS"),
		ThanksURL:     p.str("MAILSLOT_THANKS_URL", "/v1/thanks"),
		ErrorURL:      p.str("MAILSLOT_ERROR_URL", "/v1/thanks"),

		RateRPS:        p.float("MAILSLOT_RATE_RPS", 5),
		RateBurst:      p.int("MAILSLOT_RATE_BURST", 20),
		RateMaxClients: p.int("MAILSLOT_RATE_MAX_CLIENTS", 50_000),
		ClientIPHeader: p.str("MAILSLOT_CLIENT_IP_HEADER", defaultIPHeader(getenv)),

		MaxBodyBytes: int64(p.int("MAILSLOT_MAX_BODY_BYTES", 16<<10)),
		MaxEvents:    p.int("MAILSLOT_MAX_EVENTS", 50),

		GroupCommit:    p.bool("MAILSLOT_GROUP_COMMIT", true),
		OutboxMaxBatch: p.int("MAILSLOT_OUTBOX_MAX_BATCH", 512),
		OutboxMaxRows:  int64(p.int("MAILSLOT_OUTBOX_MAX_ROWS", 2_000_000)),
		OutboxMaxBytes: int64(p.int("MAILSLOT_OUTBOX_MAX_BYTES", 2<<30)),
		DiskMinFree:    int64(p.int("MAILSLOT_DISK_MIN_FREE_BYTES", 64<<20)),

		DatabaseURL:   getenv("DATABASE_URL"),
		ReplicaURL:    getenv("MAILSLOT_REPLICA_URL"),
		SyncBatch:     p.int("MAILSLOT_SYNC_BATCH", 1000),
		SyncInterval:  p.duration("MAILSLOT_SYNC_INTERVAL", 200*time.Millisecond),
		SyncRetention: p.duration("MAILSLOT_SYNC_RETENTION", 7*24*time.Hour),

		ShutdownTimeout: p.duration("MAILSLOT_SHUTDOWN_TIMEOUT", 20*time.Second),
	}
	if c.Env != Development && c.Env != Production {
		p.fail("MAILSLOT_ENV", "must be development or production")
	}
	if c.NodeID == "" {
		p.fail("MAILSLOT_NODE_ID", "is empty and no hostname is available")
	}
	for _, o := range c.CORSOrigins {
		if err := checkOrigin(o); err != nil {
			p.fail("MAILSLOT_CORS_ORIGINS", err.Error())
		}
	}
	for _, h := range c.RedirectHosts {
		if strings.ContainsAny(h, "/*@ ") {
			p.fail("MAILSLOT_REDIRECT_HOSTS", fmt.Sprintf("%q must be a bare host or host:port", h))
		}
	}
	if c.RateRPS < 0 || c.RateBurst < 0 {
		p.fail("MAILSLOT_RATE_RPS", "must not be negative")
	}
	if c.MaxBodyBytes < 1024 {
		p.fail("MAILSLOT_MAX_BODY_BYTES", "must be at least 1024")
	}
	if c.MaxEvents < 1 || c.MaxEvents > 1000 {
		p.fail("MAILSLOT_MAX_EVENTS", "must be between 1 and 1000")
	}
	if c.SyncBatch < 1 || c.SyncBatch > 10_000 {
		p.fail("MAILSLOT_SYNC_BATCH", "must be between 1 and 10000")
	}
	if c.Env == Production {
		var missing []string
		for _, s := range []struct{ name, val string }{
			{"MAILSLOT_IP_PEPPER", c.IPPepper},
			{"MAILSLOT_TOKEN_KEY", c.TokenKey},
			{"MAILSLOT_ADMIN_TOKEN", c.AdminToken},
		} {
			switch {
			case s.val == "":
				missing = append(missing, s.name)
			case len(s.val) < minSecretLen:
				p.fail(s.name, fmt.Sprintf("must be at least %d characters", minSecretLen))
			}
		}
		if len(missing) > 0 {
			p.errs = append(p.errs, fmt.Errorf("production mode needs these secrets set: %s", strings.Join(missing, ", ")))
		}
	}
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	return c, nil
}

// DevSecretsFile is where development mode keeps the secrets it generated,
// so that hashes and links stay stable across restarts.
const DevSecretsFile = "dev-secrets.json"

// EnsureDevSecrets fills missing secrets in development mode from
// DataDir/dev-secrets.json, generating and saving them on first use. It
// returns the names it filled; production mode never gets here with a
// missing secret.
func (c *Config) EnsureDevSecrets() ([]string, error) {
	if c.Env != Development {
		return nil, nil
	}
	path := filepath.Join(c.DataDir, DevSecretsFile)
	saved := map[string]string{}
	if b, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(b, &saved); err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var filled []string
	changed := false
	for _, s := range []struct {
		name string
		dst  *string
	}{
		{"MAILSLOT_IP_PEPPER", &c.IPPepper},
		{"MAILSLOT_TOKEN_KEY", &c.TokenKey},
		{"MAILSLOT_ADMIN_TOKEN", &c.AdminToken},
	} {
		if *s.dst != "" {
			continue
		}
		v, ok := saved[s.name]
		if !ok {
			b := make([]byte, 32)
			_, _ = rand.Read(b)
			v = base64.RawURLEncoding.EncodeToString(b)
			saved[s.name] = v
			changed = true
		}
		*s.dst = v
		filled = append(filled, s.name)
	}
	if changed {
		if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("create data dir: %w", err)
		}
		b, _ := json.MarshalIndent(saved, "", "  ")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return nil, fmt.Errorf("write %s: %w", path, err)
		}
	}
	return filled, nil
}

func checkOrigin(o string) error {
	if o == "*" || o == "null" {
		return fmt.Errorf("%q is not allowed: list each origin", o)
	}
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return fmt.Errorf("%q must be scheme://host[:port]", o)
	}
	if strings.Contains(u.Host, "*") {
		return fmt.Errorf("%q: wildcards are not allowed", o)
	}
	return nil
}

// defaultIPHeader trusts Fly's proxy header only when running on Fly, where
// the proxy overwrites it; anywhere else a client could forge it.
func defaultIPHeader(getenv func(string) string) string {
	if getenv("FLY_APP_NAME") != "" {
		return "Fly-Client-IP"
	}
	return ""
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}

func firstOf(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

type parser struct {
	getenv func(string) string
	errs   []error
}

func (p *parser) fail(name, msg string) {
	p.errs = append(p.errs, fmt.Errorf("%s %s", name, msg))
}

func (p *parser) str(name, def string) string {
	if v := strings.TrimSpace(p.getenv(name)); v != "" {
		return v
	}
	return def
}

func (p *parser) list(name string) []string {
	var out []string
	for _, v := range strings.Split(p.getenv(name), ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, strings.TrimSuffix(v, "/"))
		}
	}
	return out
}

func (p *parser) int(name string, def int) int {
	v := strings.TrimSpace(p.getenv(name))
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		p.fail(name, fmt.Sprintf("must be a non-negative whole number, got %q", v))
		return def
	}
	return n
}

func (p *parser) float(name string, def float64) float64 {
	v := strings.TrimSpace(p.getenv(name))
	if v == "" {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		p.fail(name, fmt.Sprintf("must be a number, got %q", v))
		return def
	}
	return f
}

func (p *parser) bool(name string, def bool) bool {
	v := strings.TrimSpace(p.getenv(name))
	if v == "" {
		return def
	}
	switch strings.ToLower(v) {
	case "1", "true", "on", "yes":
		return true
	case "0", "false", "off", "no":
		return false
	}
	p.fail(name, fmt.Sprintf("must be on or off, got %q", v))
	return def
}

func (p *parser) duration(name string, def time.Duration) time.Duration {
	v := strings.TrimSpace(p.getenv(name))
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		p.fail(name, fmt.Sprintf("must be a duration such as 30s or 168h, got %q", v))
		return def
	}
	return d
}
