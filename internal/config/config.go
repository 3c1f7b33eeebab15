// Package config reads the edge's settings from the environment. Every
// variable is listed in the README; names follow the contract in DESIGN.md.
package config

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mailslot/mailslot/internal/nodeid"
	"github.com/mailslot/mailslot/internal/token"
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
	// ExtraPrivateHosts are host names, beyond loopback, IP literals and
	// Fly's .internal names, under which the private listener answers.
	ExtraPrivateHosts []string
	ThanksURL         string
	ErrorURL          string

	// RateRPS and RateBurst limit writes per client (by IP HMAC); RateRPS 0
	// turns the limit off.
	RateRPS        float64
	RateBurst      int
	RateMaxClients int
	// RateV6PrefixBits is the IPv6 prefix a client is limited by: every
	// address of a /64 (the default) is one client.
	RateV6PrefixBits int
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

	DatabaseURL string
	// ReplicaURL is the fleet's Litestream replica base; each node
	// replicates beneath it under its node id (package edge/replica).
	ReplicaURL string
	// ReplicaEndpoint is the S3 endpoint for non-AWS stores (Fly Tigris);
	// ReplicaRegion is AWS_REGION ("auto" on Tigris). Credentials stay in
	// the AWS_* variables, where the S3 client reads them.
	ReplicaEndpoint string
	ReplicaRegion   string
	// ReplicaSyncInterval is how often committed rows are shipped to the
	// replica: the most a lost volume can lose, plus the upload time.
	ReplicaSyncInterval time.Duration
	// ReplicaRetention bounds how long the replica keeps history (old
	// snapshots and the changes between them): a row scrubbed from the
	// outbox is gone from the replica within this (edge/replica.Replicator).
	ReplicaRetention time.Duration

	SyncBatch     int
	SyncParallel  int
	SyncInterval  time.Duration
	SyncRetention time.Duration

	// PublicURL is the edge's public base URL, used in minted links.
	PublicURL string
	// Link lifetimes. Unsubscribe links must work for at least 60 days (CASL).
	ConfirmTTL     time.Duration
	UnsubscribeTTL time.Duration
	EraseTTL       time.Duration
	// TombstoneInterval is how often the edge pulls new erasures.
	TombstoneInterval time.Duration
	// ReportRefreshInterval is how often the edge folds changed days into
	// the report rollups (MAILSLOT_REPORT_REFRESH_INTERVAL).
	ReportRefreshInterval time.Duration

	ShutdownTimeout time.Duration

	// Images configures image descriptions (sync/images).
	Images Images
	// Mail configures confirmation and welcome mail (sync/mailer).
	Mail Mail
	// Webhooks configures outbound webhook delivery (sync/webhook).
	Webhooks Webhooks
	// Challenge configures bot challenges (challenge.go).
	Challenge Challenge
}

// LinkLifetimes are the configured lifetimes of minted links.
func (c *Config) LinkLifetimes() token.Lifetimes {
	return token.Lifetimes{Confirm: c.ConfirmTTL, Unsubscribe: c.UnsubscribeTTL, Erase: c.EraseTTL}
}

// minUnsubscribeTTL is CASL's floor: an unsubscribe mechanism must stay
// valid for 60 days after the message was sent.
const minUnsubscribeTTL = 60 * 24 * time.Hour

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

		CORSOrigins:       p.list("MAILSLOT_CORS_ORIGINS"),
		RedirectHosts:     p.list("MAILSLOT_REDIRECT_HOSTS"),
		ExtraPrivateHosts: p.list("MAILSLOT_PRIVATE_HOSTS"),
		ThanksURL:         p.str("MAILSLOT_THANKS_URL", "/v1/thanks"),
		ErrorURL:          p.str("MAILSLOT_ERROR_URL", "/v1/thanks"),

		RateRPS:          p.float("MAILSLOT_RATE_RPS", 5),
		RateBurst:        p.int("MAILSLOT_RATE_BURST", 20),
		RateMaxClients:   p.int("MAILSLOT_RATE_MAX_CLIENTS", 50_000),
		RateV6PrefixBits: p.int("MAILSLOT_RATE_V6_PREFIX", 64),
		ClientIPHeader:   p.str("MAILSLOT_CLIENT_IP_HEADER", defaultIPHeader(getenv)),

		MaxBodyBytes: int64(p.int("MAILSLOT_MAX_BODY_BYTES", 16<<10)),
		MaxEvents:    p.int("MAILSLOT_MAX_EVENTS", 50),

		GroupCommit:    p.bool("MAILSLOT_GROUP_COMMIT", true),
		OutboxMaxBatch: p.int("MAILSLOT_OUTBOX_MAX_BATCH", 512),
		OutboxMaxRows:  int64(p.int("MAILSLOT_OUTBOX_MAX_ROWS", 2_000_000)),
		OutboxMaxBytes: int64(p.int("MAILSLOT_OUTBOX_MAX_BYTES", 2<<30)),
		DiskMinFree:    int64(p.int("MAILSLOT_DISK_MIN_FREE_BYTES", 64<<20)),

		DatabaseURL:   getenv("DATABASE_URL"),
		ReplicaURL:    strings.TrimSpace(getenv("MAILSLOT_REPLICA_URL")),
		SyncBatch:     p.int("MAILSLOT_SYNC_BATCH", 1000),
		SyncParallel:  p.int("MAILSLOT_SYNC_PARALLEL", 2),
		SyncInterval:  p.duration("MAILSLOT_SYNC_INTERVAL", 200*time.Millisecond),
		SyncRetention: p.duration("MAILSLOT_SYNC_RETENTION", 7*24*time.Hour),

		ReplicaEndpoint:     p.str("MAILSLOT_REPLICA_ENDPOINT", ""),
		ReplicaRegion:       p.str("AWS_REGION", ""),
		ReplicaSyncInterval: p.duration("MAILSLOT_REPLICA_SYNC_INTERVAL", time.Second),
		ReplicaRetention:    p.duration("MAILSLOT_REPLICA_RETENTION", 24*time.Hour),

		PublicURL:         strings.TrimSuffix(p.str("MAILSLOT_PUBLIC_URL", ""), "/"),
		ConfirmTTL:        p.duration("MAILSLOT_CONFIRM_LINK_TTL", 30*24*time.Hour),
		UnsubscribeTTL:    p.duration("MAILSLOT_UNSUBSCRIBE_LINK_TTL", 365*24*time.Hour),
		EraseTTL:          p.duration("MAILSLOT_ERASE_LINK_TTL", 30*24*time.Hour),
		TombstoneInterval: p.duration("MAILSLOT_TOMBSTONE_INTERVAL", 500*time.Millisecond),

		ReportRefreshInterval: p.duration("MAILSLOT_REPORT_REFRESH_INTERVAL", time.Minute),

		ShutdownTimeout: p.duration("MAILSLOT_SHUTDOWN_TIMEOUT", 20*time.Second),
	}
	if c.UnsubscribeTTL < minUnsubscribeTTL {
		p.fail("MAILSLOT_UNSUBSCRIBE_LINK_TTL", "must be at least 1440h (60 days, CASL)")
	}
	if c.PublicURL == "" && c.Env == Development {
		c.PublicURL = "http://127.0.0.1" + c.Addr
		if strings.HasPrefix(c.Addr, "127.0.0.1:") || strings.HasPrefix(c.Addr, "localhost:") {
			c.PublicURL = "http://" + c.Addr
		}
	}
	if c.Env != Development && c.Env != Production {
		p.fail("MAILSLOT_ENV", "must be development or production")
	}
	if c.NodeID == "" {
		p.fail("MAILSLOT_NODE_ID", "is empty and no hostname is available")
	} else if err := nodeid.Check(c.NodeID); err != nil {
		p.fail("MAILSLOT_NODE_ID", err.Error())
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
	if c.RateV6PrefixBits < 32 || c.RateV6PrefixBits > 128 {
		p.fail("MAILSLOT_RATE_V6_PREFIX", "must be between 32 and 128 (bits of an IPv6 address that name one client)")
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
	checkReplica(&p, c)
	if c.SyncBatch < 1 || c.SyncBatch > 10_000 {
		p.fail("MAILSLOT_SYNC_BATCH", "must be between 1 and 10000")
	}
	if c.SyncParallel < 1 || c.SyncParallel > 8 {
		p.fail("MAILSLOT_SYNC_PARALLEL", "must be between 1 and 8")
	}
	if c.TokenKey != "" {
		// The edge signs links with it and mailslotctl mints them: refuse a
		// key neither could use, here, with one message for both.
		if _, err := token.ParseKeys(c.TokenKey); err != nil {
			p.fail("MAILSLOT_TOKEN_KEY", "is not valid: "+err.Error())
		}
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
	c.Images = p.images(c.Env)
	c.Mail = p.mail(c.Env)
	c.Webhooks = p.webhooks(c.Env)
	c.Challenge = p.challenge(c.Env)
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	return c, nil
}

// checkReplica validates the replica settings as far as can be done without
// the network; package edge/replica checks the rest when it starts.
func checkReplica(p *parser, c *Config) {
	if c.ReplicaURL != "" {
		u, err := url.Parse(c.ReplicaURL)
		switch {
		case err != nil:
			p.fail("MAILSLOT_REPLICA_URL", "is not a valid URL")
		case u.Scheme == "file" && (u.Host != "" || !strings.HasPrefix(u.Path, "/")):
			p.fail("MAILSLOT_REPLICA_URL", "must name an absolute path, as in file:///var/lib/mailslot/replicas")
		case u.Scheme == "s3" && u.Host == "":
			p.fail("MAILSLOT_REPLICA_URL", "must name a bucket, as in s3://bucket/path")
		case u.Scheme != "file" && u.Scheme != "s3":
			p.fail("MAILSLOT_REPLICA_URL", "must be a file:// or s3:// URL")
		}
	}
	if e := c.ReplicaEndpoint; e != "" {
		u, err := url.Parse(e)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.fail("MAILSLOT_REPLICA_ENDPOINT", "must be an http(s) URL, as in https://fly.storage.tigris.dev")
		} else if !strings.HasPrefix(c.ReplicaURL, "s3://") {
			p.fail("MAILSLOT_REPLICA_ENDPOINT", "applies only with an s3:// MAILSLOT_REPLICA_URL")
		}
	}
	if c.ReplicaSyncInterval < 10*time.Millisecond {
		p.fail("MAILSLOT_REPLICA_SYNC_INTERVAL", "must be at least 10ms")
	}
	if c.ReplicaRetention < time.Minute {
		p.fail("MAILSLOT_REPLICA_RETENTION", "must be at least 1m")
	}
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

// Image providers (MAILSLOT_IMAGE_PROVIDER).
const (
	ImageProviderOff         = "off"
	ImageProviderReplicate   = "replicate"
	ImageProviderHuggingFace = "huggingface"
)

// Images configures image descriptions: which GPU provider runs the two
// models, where images may come from, how long a cold start may take, and
// what a month may cost. The tokens and the webhook secret are secrets:
// nothing logs this struct.
type Images struct {
	Provider string
	// AllowedHosts are the hosts an image URL may name.
	AllowedHosts []string

	ReplicateURL   string
	ReplicateToken string
	// WebhookSecret verifies Replicate's webhooks ("whsec_…"); WebhookURL
	// is this service's public URL of POST /v1/webhooks/replicate, sent
	// with each prediction. Without it the dispatcher only polls.
	WebhookSecret string
	WebhookURL    string
	// FacesModel and CaptionModel are Replicate models: owner/name,
	// owner/name:version or a version id.
	FacesModel   string
	CaptionModel string

	HFFacesURL   string
	HFCaptionURL string
	HFToken      string

	CaptionPrompt string
	// PricePerSecond (USD) prices the provider's reported compute time;
	// MonthlyBudget (USD, 0 for none) stops dispatching once reached.
	PricePerSecond float64
	MonthlyBudget  float64
	// DailyQuota bounds the image jobs sign-ups queue per property and UTC
	// day (0: no bound), so anonymous sign-ups stop long before the budget.
	DailyQuota int

	AttemptTimeout time.Duration
	RequestTimeout time.Duration
	MaxAttempts    int
	Concurrency    int

	MaxUploadBytes   int64
	UploadStoreBytes int64
}

// images reads the MAILSLOT_IMAGE_* variables.
func (p *parser) images(env string) Images {
	im := Images{
		Provider:       strings.ToLower(p.str("MAILSLOT_IMAGE_PROVIDER", ImageProviderOff)),
		AllowedHosts:   p.list("MAILSLOT_IMAGE_ALLOWED_HOSTS"),
		ReplicateURL:   strings.TrimSuffix(p.str("MAILSLOT_IMAGE_REPLICATE_URL", "https://api.replicate.com"), "/"),
		ReplicateToken: strings.TrimSpace(p.getenv("MAILSLOT_IMAGE_REPLICATE_TOKEN")),
		WebhookSecret:  strings.TrimSpace(p.getenv("MAILSLOT_IMAGE_REPLICATE_WEBHOOK_SECRET")),
		WebhookURL:     p.str("MAILSLOT_IMAGE_WEBHOOK_URL", ""),
		FacesModel:     p.str("MAILSLOT_IMAGE_FACES_MODEL", ""),
		CaptionModel:   p.str("MAILSLOT_IMAGE_CAPTION_MODEL", ""),
		HFFacesURL:     p.str("MAILSLOT_IMAGE_HF_FACES_URL", ""),
		HFCaptionURL:   p.str("MAILSLOT_IMAGE_HF_CAPTION_URL", ""),
		HFToken:        strings.TrimSpace(p.getenv("MAILSLOT_IMAGE_HF_TOKEN")),
		CaptionPrompt:  p.str("MAILSLOT_IMAGE_CAPTION_PROMPT", ""),
		// Replicate's Nvidia T4 rate; a Hugging Face T4 small is
		// $0.40/h, 0.000111/s (but bills uptime, not requests).
		PricePerSecond:   p.float("MAILSLOT_IMAGE_PRICE_PER_SECOND", 0.000225),
		MonthlyBudget:    p.float("MAILSLOT_IMAGE_MONTHLY_BUDGET", 10),
		DailyQuota:       p.int("MAILSLOT_IMAGE_DAILY_QUOTA", 200),
		AttemptTimeout:   p.duration("MAILSLOT_IMAGE_ATTEMPT_TIMEOUT", 5*time.Minute),
		RequestTimeout:   p.duration("MAILSLOT_IMAGE_REQUEST_TIMEOUT", 2*time.Minute),
		MaxAttempts:      p.int("MAILSLOT_IMAGE_MAX_ATTEMPTS", 5),
		Concurrency:      p.int("MAILSLOT_IMAGE_CONCURRENCY", 2),
		MaxUploadBytes:   int64(p.int("MAILSLOT_IMAGE_MAX_UPLOAD_BYTES", 1<<20)),
		UploadStoreBytes: int64(p.int("MAILSLOT_IMAGE_UPLOAD_STORE_BYTES", 256<<20)),
	}
	httpsOnly := func(name, v string) {
		if v == "" {
			return
		}
		u, err := url.Parse(v)
		if err != nil || u.Host == "" || (u.Scheme != "https" && (u.Scheme != "http" || env != Development)) {
			p.fail(name, "must be an https URL (http only in development)")
		}
	}
	switch im.Provider {
	case ImageProviderOff:
	case ImageProviderReplicate:
		if im.ReplicateToken == "" {
			p.fail("MAILSLOT_IMAGE_REPLICATE_TOKEN", "must be set when MAILSLOT_IMAGE_PROVIDER=replicate")
		}
		if im.FacesModel == "" || im.CaptionModel == "" {
			p.fail("MAILSLOT_IMAGE_FACES_MODEL", "and MAILSLOT_IMAGE_CAPTION_MODEL must be set when MAILSLOT_IMAGE_PROVIDER=replicate")
		}
		httpsOnly("MAILSLOT_IMAGE_REPLICATE_URL", im.ReplicateURL)
	case ImageProviderHuggingFace:
		if im.HFToken == "" {
			p.fail("MAILSLOT_IMAGE_HF_TOKEN", "must be set when MAILSLOT_IMAGE_PROVIDER=huggingface")
		}
		if im.HFFacesURL == "" || im.HFCaptionURL == "" {
			p.fail("MAILSLOT_IMAGE_HF_FACES_URL", "and MAILSLOT_IMAGE_HF_CAPTION_URL must be set when MAILSLOT_IMAGE_PROVIDER=huggingface")
		}
		httpsOnly("MAILSLOT_IMAGE_HF_FACES_URL", im.HFFacesURL)
		httpsOnly("MAILSLOT_IMAGE_HF_CAPTION_URL", im.HFCaptionURL)
	default:
		p.fail("MAILSLOT_IMAGE_PROVIDER", "must be off, replicate or huggingface")
	}
	httpsOnly("MAILSLOT_IMAGE_WEBHOOK_URL", im.WebhookURL)
	if im.WebhookSecret != "" && !strings.HasPrefix(im.WebhookSecret, "whsec_") {
		p.fail("MAILSLOT_IMAGE_REPLICATE_WEBHOOK_SECRET", "must be the whsec_… secret Replicate gives (GET /v1/webhooks/default/secret)")
	}
	if im.WebhookURL != "" && im.WebhookSecret == "" {
		p.fail("MAILSLOT_IMAGE_REPLICATE_WEBHOOK_SECRET", "must be set with MAILSLOT_IMAGE_WEBHOOK_URL: unsigned webhooks are refused")
	}
	for _, h := range im.AllowedHosts {
		if strings.ContainsAny(h, "/*@ ") {
			p.fail("MAILSLOT_IMAGE_ALLOWED_HOSTS", fmt.Sprintf("%q must be a bare host or host:port", h))
		}
	}
	if im.PricePerSecond < 0 || im.MonthlyBudget < 0 {
		p.fail("MAILSLOT_IMAGE_PRICE_PER_SECOND", "and MAILSLOT_IMAGE_MONTHLY_BUDGET must not be negative")
	}
	if im.AttemptTimeout < time.Second || im.RequestTimeout < time.Second {
		p.fail("MAILSLOT_IMAGE_ATTEMPT_TIMEOUT", "and MAILSLOT_IMAGE_REQUEST_TIMEOUT must be at least 1s (cold starts take 30-90s)")
	}
	if im.DailyQuota < 0 {
		p.fail("MAILSLOT_IMAGE_DAILY_QUOTA", "must not be negative (0 means no daily bound)")
	}
	if im.MaxAttempts < 1 || im.MaxAttempts > 100 {
		p.fail("MAILSLOT_IMAGE_MAX_ATTEMPTS", "must be between 1 and 100")
	}
	if im.Concurrency < 1 || im.Concurrency > 32 {
		p.fail("MAILSLOT_IMAGE_CONCURRENCY", "must be between 1 and 32")
	}
	if im.MaxUploadBytes < 1024 || im.MaxUploadBytes > 4<<20 {
		p.fail("MAILSLOT_IMAGE_MAX_UPLOAD_BYTES", "must be between 1024 and 4194304 (uploads travel inline to the provider)")
	}
	if im.UploadStoreBytes < im.MaxUploadBytes {
		p.fail("MAILSLOT_IMAGE_UPLOAD_STORE_BYTES", "must be at least MAILSLOT_IMAGE_MAX_UPLOAD_BYTES")
	}
	return im
}

// PrivateHosts are the host names the private listener answers under
// besides loopback, IP literals and .internal names: MAILSLOT_PRIVATE_HOSTS
// and the host of MAILSLOT_PRIVATE_ADDR when that is a name.
func (c *Config) PrivateHosts() []string {
	hosts := slices.Clone(c.ExtraPrivateHosts)
	if h, _, err := net.SplitHostPort(c.PrivateAddr); err == nil && h != "" {
		hosts = append(hosts, h)
	}
	return hosts
}
