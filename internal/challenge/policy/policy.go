// Package policy decides, per property, which bot challenge a sign-up
// must pass and what a form posted without any token gets, and counts the
// verdicts.
//
// The settings live in Postgres (mailslot.property_challenges, written by
// `mailslotctl challenge`), but the edge decides in the request path,
// where Postgres may be down. So a puller (sync/challenges) replaces the
// whole set periodically, Replace swaps it in atomically (a request reads
// one pointer) and writes it to a JSON file in the data directory, and New
// reads that file back: an edge restarted while Postgres is down enforces
// the last settings it saw. Properties without a row get the fleet
// default from the environment (MAILSLOT_CHALLENGE: none or pow).
package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailslot/mailslot/internal/challenge"
)

// FileName is the settings file kept in the data directory.
const FileName = "challenge-settings.json"

// MaxProperties bounds the settings one edge holds (and pulls).
const MaxProperties = 10_000

// maxCounted bounds the properties verdicts are counted for; the rest are
// counted under OtherProperty, so metrics labels stay bounded whatever
// property names clients send.
const maxCounted = 256

// OtherProperty is the label of verdicts past maxCounted properties.
const OtherProperty = "_other"

// NoJS is what a form posted without any token gets on a property with a
// challenge: JavaScript was off, so no proof of work was solved and no
// widget ran.
type NoJS uint8

// The no-JS policies. Hold, the zero value, is the default.
const (
	// Hold stores the sign-up unverified: kept, counted, and no mail
	// unless a later check passes (it never will: there is no token).
	Hold NoJS = iota
	// Refuse sends the form to the error page with
	// error=challenge_required and stores nothing.
	Refuse
)

// String returns hold or refuse.
func (n NoJS) String() string {
	if n == Refuse {
		return "refuse"
	}
	return "hold"
}

// ParseNoJS reads hold or refuse (case and space ignored).
func ParseNoJS(s string) (NoJS, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "hold", "":
		return Hold, nil
	case "refuse":
		return Refuse, nil
	}
	return Hold, fmt.Errorf("parse no-JS policy %q: want hold or refuse", s)
}

// MarshalText writes the policy's name.
func (n NoJS) MarshalText() ([]byte, error) { return []byte(n.String()), nil }

// UnmarshalText reads a policy's name.
func (n *NoJS) UnmarshalText(b []byte) error {
	p, err := ParseNoJS(string(b))
	*n = p
	return err
}

// Setting is one property's row of mailslot.property_challenges.
type Setting struct {
	Property string         `json:"property"`
	Kind     challenge.Kind `json:"kind"`
	// SiteKey is the widget's public key (hCaptcha checks it too).
	SiteKey string `json:"site_key,omitempty"`
	// Secret is the Turnstile or hCaptcha secret key. It is written to
	// the settings file (0600, beside the outbox) and nowhere else.
	Secret    string    `json:"secret,omitempty"`
	Hostnames []string  `json:"hostnames,omitempty"`
	Action    string    `json:"action,omitempty"`
	NoJS      NoJS      `json:"no_js"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Check validates a setting as the table's constraints do, so that the
// CLI refuses what the edge could not use.
func (s Setting) Check() error {
	if s.Property == "" || len(s.Property) > challenge.MaxPropertyLen {
		return fmt.Errorf("property must be 1 to %d bytes", challenge.MaxPropertyLen)
	}
	for i := 0; i < len(s.Property); i++ {
		if c := s.Property[i]; c <= ' ' || c > '~' {
			return errors.New("property must be printable ASCII without spaces")
		}
	}
	switch s.Kind {
	case challenge.KindTurnstile, challenge.KindHCaptcha:
		if s.Secret == "" {
			return fmt.Errorf("%s needs a secret", s.Kind)
		}
		if len(s.Hostnames) == 0 {
			return fmt.Errorf("%s needs at least one expected hostname", s.Kind)
		}
	case challenge.KindNone, challenge.KindPoW:
	default:
		return fmt.Errorf("unknown kind %v", s.Kind)
	}
	if len(s.SiteKey) > 200 || len(s.Secret) > 200 || len(s.Action) > 64 || len(s.Hostnames) > 32 {
		return errors.New("site key, secret, action or hostnames too long")
	}
	for _, h := range s.Hostnames {
		if h == "" || strings.ContainsAny(h, "/: ") {
			return fmt.Errorf("expected hostname %q is not a bare hostname", h)
		}
	}
	return nil
}

// Rule is what the edge enforces for one property.
type Rule struct {
	Property string
	Kind     challenge.Kind
	// SiteKey is for the client script (the widget's public key).
	SiteKey string
	// Verifier checks tokens; nil when the rule cannot be enforced
	// (proof of work without a key): sign-ups are then stored
	// unverified.
	Verifier challenge.Verifier
	NoJS     NoJS
}

// Options configures a Policy.
type Options struct {
	// File is where the last settings are kept; empty keeps none.
	File string
	// Default is the rule for properties without a row: KindNone or
	// KindPoW (MAILSLOT_CHALLENGE).
	DefaultKind challenge.Kind
	DefaultNoJS NoJS
	// PoW issues and verifies proofs of work for every property; nil
	// disables them.
	PoW *challenge.PoW
	// Timeout bounds one siteverify call; zero means
	// challenge.DefaultTimeout.
	Timeout time.Duration
	// TurnstileURL and HCaptchaURL replace the providers' endpoints
	// (tests); empty means the real ones.
	TurnstileURL, HCaptchaURL string
	// Client sends siteverify requests; nil means one shared client.
	Client *http.Client
	Logger *slog.Logger
}

// Policy holds the settings in force. It is safe for concurrent use.
type Policy struct {
	opts Options
	log  *slog.Logger
	cur  atomic.Pointer[table]

	saveMu sync.Mutex
	saved  []byte // the file's content, to skip writes that change nothing

	countMu sync.Mutex
	counts  map[string]*[6]uint64 // by property: challenge.Verdict, then re-checks passed and failed
}

type table struct {
	rules    map[string]*Rule
	def      *Rule
	from     string // "postgres", "file" or "environment"
	at       time.Time
	settings int
}

// New builds a Policy from the settings file when there is one, else from
// the fleet default alone.
func New(opts Options) (*Policy, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	if opts.DefaultKind != challenge.KindNone && opts.DefaultKind != challenge.KindPoW {
		return nil, fmt.Errorf("configure challenges: the fleet default must be none or pow, not %v", opts.DefaultKind)
	}
	if opts.DefaultKind == challenge.KindPoW && opts.PoW == nil {
		return nil, errors.New("configure challenges: the fleet default is pow but no proof-of-work key is set")
	}
	p := &Policy{opts: opts, log: opts.Logger, counts: map[string]*[6]uint64{}}
	t, err := p.build(nil, "environment", time.Time{})
	if err != nil {
		return nil, err
	}
	p.cur.Store(t)
	if opts.File == "" {
		return p, nil
	}
	b, err := os.ReadFile(opts.File)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return p, nil
	case err != nil:
		return nil, fmt.Errorf("read challenge settings: %w", err)
	}
	var f file
	if err := json.Unmarshal(b, &f); err != nil {
		// A torn or hand-edited file must not stop the edge from
		// accepting: the next pull rewrites it.
		p.log.Warn("challenge settings file unreadable; using the fleet default until the next pull", "err", err)
		return p, nil
	}
	t, err = p.build(f.Settings, "file", f.PulledAt)
	if err != nil {
		p.log.Warn("challenge settings file refused; using the fleet default until the next pull", "err", err)
		return p, nil
	}
	p.cur.Store(t)
	p.saved = b
	return p, nil
}

// file is the settings file's shape.
type file struct {
	PulledAt time.Time `json:"pulled_at"`
	Settings []Setting `json:"settings"`
}

// Replace puts settings (the whole table) in force, as pulled at at, and
// keeps them in the settings file. A setting the edge cannot use (it
// fails Check, or its verifier cannot be built) is left out and logged;
// the rest still apply.
func (p *Policy) Replace(settings []Setting, at time.Time) error {
	if len(settings) > MaxProperties {
		return fmt.Errorf("replace challenge settings: %d properties, at most %d", len(settings), MaxProperties)
	}
	t, err := p.build(settings, "postgres", at)
	if err != nil {
		return err
	}
	p.cur.Store(t)
	return p.save(settings, at)
}

func (p *Policy) build(settings []Setting, from string, at time.Time) (*table, error) {
	t := &table{rules: make(map[string]*Rule, len(settings)), from: from, at: at, settings: len(settings)}
	if p.opts.DefaultKind != challenge.KindNone {
		t.def = &Rule{Kind: p.opts.DefaultKind, Verifier: p.powVerifier(), NoJS: p.opts.DefaultNoJS}
	}
	for _, s := range settings {
		if err := s.Check(); err != nil {
			p.log.Warn("challenge setting refused", "property", s.Property, "err", err)
			continue
		}
		r := &Rule{Property: s.Property, Kind: s.Kind, SiteKey: s.SiteKey, NoJS: s.NoJS}
		var err error
		switch s.Kind {
		case challenge.KindTurnstile:
			r.Verifier, err = challenge.NewTurnstile(challenge.TurnstileConfig{
				Secret: challenge.Secret(s.Secret), Hostnames: s.Hostnames, Action: s.Action,
				URL: p.opts.TurnstileURL, Timeout: p.opts.Timeout, Client: p.opts.Client,
			})
		case challenge.KindHCaptcha:
			r.Verifier, err = challenge.NewHCaptcha(challenge.HCaptchaConfig{
				Secret: challenge.Secret(s.Secret), SiteKey: s.SiteKey, Hostnames: s.Hostnames,
				URL: p.opts.HCaptchaURL, Timeout: p.opts.Timeout, Client: p.opts.Client,
			})
		case challenge.KindPoW:
			r.Verifier = p.powVerifier()
			if r.Verifier == nil {
				p.log.Warn("challenge setting asks for pow but no proof-of-work key is set: its sign-ups are stored unverified", "property", s.Property)
			}
		}
		if err != nil {
			p.log.Warn("challenge setting refused", "property", s.Property, "err", err)
			continue
		}
		t.rules[s.Property] = r
	}
	return t, nil
}

// powVerifier avoids a typed nil in the Verifier interface.
func (p *Policy) powVerifier() challenge.Verifier {
	if p.opts.PoW == nil {
		return nil
	}
	return p.opts.PoW
}

// save writes the settings file atomically (temporary file, fsync,
// rename, fsync of the directory), unless it already holds them.
func (p *Policy) save(settings []Setting, at time.Time) error {
	if p.opts.File == "" {
		return nil
	}
	sorted := slices.Clone(settings)
	slices.SortFunc(sorted, func(a, b Setting) int { return strings.Compare(a.Property, b.Property) })
	b, err := json.MarshalIndent(file{PulledAt: at.UTC(), Settings: sorted}, "", "  ")
	if err != nil {
		return fmt.Errorf("encode challenge settings: %w", err)
	}
	p.saveMu.Lock()
	defer p.saveMu.Unlock()
	if p.saved != nil && sameSettings(p.saved, b) {
		return nil
	}
	dir := filepath.Dir(p.opts.File)
	tmp, err := os.CreateTemp(dir, FileName+".*")
	if err != nil {
		return fmt.Errorf("save challenge settings: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("save challenge settings: %w", err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("save challenge settings: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("save challenge settings: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save challenge settings: %w", err)
	}
	if err := os.Rename(tmp.Name(), p.opts.File); err != nil {
		return fmt.Errorf("save challenge settings: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	p.saved = b
	return nil
}

// sameSettings compares two files' settings, ignoring when they were
// pulled: a pull that changes nothing does not rewrite the file.
func sameSettings(a, b []byte) bool {
	var fa, fb file
	if json.Unmarshal(a, &fa) != nil || json.Unmarshal(b, &fb) != nil {
		return false
	}
	ja, _ := json.Marshal(fa.Settings)
	jb, _ := json.Marshal(fb.Settings)
	return bytes.Equal(ja, jb)
}

// For returns the rule for property, or nil when its sign-ups need no
// challenge.
func (p *Policy) For(property string) *Rule {
	t := p.cur.Load()
	if r, ok := t.rules[property]; ok {
		if r.Kind == challenge.KindNone {
			return nil
		}
		return r
	}
	if t.def == nil {
		return nil
	}
	r := *t.def
	r.Property = property
	return &r
}

// PoW is the proof-of-work issuer, nil when none is configured.
func (p *Policy) PoW() *challenge.PoW { return p.opts.PoW }

// Count records one verdict for property.
func (p *Policy) Count(property string, v challenge.Verdict) {
	if int(v) >= 4 {
		return
	}
	p.count(property, int(v))
}

// CountRecheck records the decisive outcome of a re-check of an
// unverified sign-up.
func (p *Policy) CountRecheck(property string, passed bool) {
	if passed {
		p.count(property, recheckPassed)
	} else {
		p.count(property, recheckFailed)
	}
}

const (
	recheckPassed = 4
	recheckFailed = 5
)

func (p *Policy) count(property string, i int) {
	p.countMu.Lock()
	defer p.countMu.Unlock()
	c, ok := p.counts[property]
	if !ok {
		if len(p.counts) >= maxCounted {
			property = OtherProperty
			c = p.counts[property]
		}
		if c == nil {
			c = new([6]uint64)
			p.counts[property] = c
		}
	}
	c[i]++
}

// Counts are one property's verdicts since the edge started.
type Counts struct {
	Passed     uint64 `json:"passed"`
	Failed     uint64 `json:"failed"`
	Unverified uint64 `json:"unverified"`
	Replayed   uint64 `json:"replayed"`
	// RecheckPassed and RecheckFailed count unverified sign-ups that a
	// later check passed or refused (they are in Unverified too).
	RecheckPassed uint64 `json:"recheck_passed"`
	RecheckFailed uint64 `json:"recheck_failed"`
}

// Status is the challenge part of the node status.
type Status struct {
	// SettingsFrom says where the settings in force came from: postgres
	// (pulled by this process), file (kept from an earlier pull) or
	// environment (no pull yet; the fleet default only).
	SettingsFrom string     `json:"settings_from"`
	PulledAt     *time.Time `json:"pulled_at,omitempty"`
	Properties   int        `json:"properties"`
	Default      string     `json:"default"`
	// Verdicts are counted per property since the edge started.
	Verdicts map[string]Counts    `json:"verdicts"`
	PoW      *challenge.PoWStatus `json:"pow,omitempty"`
}

// Status reports the settings in force and the verdict counts.
func (p *Policy) Status() Status {
	t := p.cur.Load()
	st := Status{SettingsFrom: t.from, Properties: len(t.rules), Default: p.opts.DefaultKind.String(), Verdicts: map[string]Counts{}}
	if !t.at.IsZero() {
		at := t.at.UTC()
		st.PulledAt = &at
	}
	p.countMu.Lock()
	for prop, c := range p.counts {
		st.Verdicts[prop] = Counts{Passed: c[challenge.Passed], Failed: c[challenge.Failed], Unverified: c[challenge.Unverified], Replayed: c[challenge.Replayed],
			RecheckPassed: c[recheckPassed], RecheckFailed: c[recheckFailed]}
	}
	p.countMu.Unlock()
	if p.opts.PoW != nil {
		ps := p.opts.PoW.Status()
		st.PoW = &ps
	}
	return st
}
