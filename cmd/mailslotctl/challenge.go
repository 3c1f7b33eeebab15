package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mailslot/mailslot/internal/challenge"
	"github.com/mailslot/mailslot/internal/challenge/policy"
)

const challengeUsage = `usage: mailslotctl challenge <set|show|clear> [flags]

  set    --property P --kind none|turnstile|hcaptcha|pow [--site-key K] [--hostnames a.example,b.example]
         [--action A] [--no-js hold|refuse]; the Turnstile/hCaptcha secret is read from the
         environment variable named by --secret-env (default MAILSLOT_CHALLENGE_SECRET), never
         from the command line; without it, the stored secret is kept
  show   [--property P] [--format table|json]: the settings (secrets are never printed)
  clear  --property P: remove the row; the property falls back to the fleet default (MAILSLOT_CHALLENGE)

Every edge pulls the settings within MAILSLOT_CHALLENGE_PULL_INTERVAL (30s).
`

func runChallenge(ctx context.Context, e env, args []string) error {
	return runSubcommand(ctx, e, args, "challenge", challengeUsage, map[string]subcommand{
		"set": challengeSet, "show": challengeShow, "clear": challengeClear,
	})
}

const upsertChallengeSQL = `
INSERT INTO mailslot.property_challenges AS c (property, kind, site_key, secret, hostnames, action, no_js, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, now())
ON CONFLICT (property) DO UPDATE SET
    kind = EXCLUDED.kind, site_key = EXCLUDED.site_key, secret = EXCLUDED.secret,
    hostnames = EXCLUDED.hostnames, action = EXCLUDED.action, no_js = EXCLUDED.no_js, updated_at = now()`

func challengeSet(ctx context.Context, e env, args []string) error {
	fs := newFlags(e, "challenge set", "challenge set --property P --kind K [flags]")
	dbFlag := fs.String("database-url", "", "Postgres URL (default $DATABASE_URL)")
	property := fs.String("property", "", "the property (as its forms send it)")
	kindFlag := fs.String("kind", "", "none, turnstile, hcaptcha or pow")
	siteKey := fs.String("site-key", "", "the widget's site key (Turnstile, hCaptcha)")
	secretEnv := fs.String("secret-env", "MAILSLOT_CHALLENGE_SECRET", "environment variable that holds the Turnstile/hCaptcha secret")
	hostnames := fs.String("hostnames", "", "comma-separated hostnames the widget may be solved on (Turnstile, hCaptcha)")
	action := fs.String("action", "", "the Turnstile widget action every token must carry")
	noJS := fs.String("no-js", "hold", "a form posted without a token: hold (stored unverified, no mail) or refuse")
	if err := fs.Parse(args); err != nil {
		return err
	}
	kind, err := challenge.ParseKind(*kindFlag)
	if err != nil {
		return fmt.Errorf("%w: --kind: %v", errUsage, err)
	}
	nj, err := policy.ParseNoJS(*noJS)
	if err != nil {
		return fmt.Errorf("%w: --no-js: %v", errUsage, err)
	}
	s := policy.Setting{
		Property: strings.TrimSpace(*property), Kind: kind, SiteKey: strings.TrimSpace(*siteKey),
		Secret: strings.TrimSpace(e.getenv(*secretEnv)), Action: strings.TrimSpace(*action), NoJS: nj,
		Hostnames: []string{},
	}
	for _, h := range strings.Split(*hostnames, ",") {
		if h = strings.ToLower(strings.TrimSpace(h)); h != "" {
			s.Hostnames = append(s.Hostnames, h)
		}
	}
	conn, err := connectFlag(ctx, e, *dbFlag)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	kept := false
	if s.Secret == "" && (kind == challenge.KindTurnstile || kind == challenge.KindHCaptcha) {
		var old, oldKind string
		err := conn.QueryRow(ctx, `SELECT secret, kind FROM mailslot.property_challenges WHERE property = $1`, s.Property).Scan(&old, &oldKind)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("read the stored secret: %w", err)
		}
		if oldKind == kind.String() {
			s.Secret, kept = old, old != ""
		}
	}
	if kind == challenge.KindNone || kind == challenge.KindPoW {
		s.Secret = "" // only siteverify needs one
	}
	if err := s.Check(); err != nil {
		if kind == challenge.KindTurnstile || kind == challenge.KindHCaptcha {
			return fmt.Errorf("%w: %v (the secret comes from $%s)", errUsage, err, *secretEnv)
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if _, err := conn.Exec(ctx, upsertChallengeSQL, s.Property, kind.String(), s.SiteKey, s.Secret, s.Hostnames, s.Action, nj.String()); err != nil {
		return fmt.Errorf("store challenge setting: %w", err)
	}
	note := ""
	if kept {
		note = " (stored secret kept)"
	}
	fmt.Fprintf(e.stdout, "property %s: challenge %s, no-JS forms %s%s\n", s.Property, kind, nj, note)
	return nil
}

// challengeRow is what show prints: the setting without its secret.
type challengeRow struct {
	Property  string    `json:"property"`
	Kind      string    `json:"kind"`
	SiteKey   string    `json:"site_key"`
	SecretSet bool      `json:"secret_set"`
	Hostnames []string  `json:"hostnames"`
	Action    string    `json:"action"`
	NoJS      string    `json:"no_js"`
	UpdatedAt time.Time `json:"updated_at"`
}

func challengeShow(ctx context.Context, e env, args []string) error {
	fs := newFlags(e, "challenge show", "challenge show [--property P] [--format table|json]")
	dbFlag := fs.String("database-url", "", "Postgres URL (default $DATABASE_URL)")
	property := fs.String("property", "", "only this property")
	format := fs.String("format", "table", "table or json")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *format != "table" && *format != "json" {
		return fmt.Errorf("%w: --format must be table or json", errUsage)
	}
	conn, err := connectFlag(ctx, e, *dbFlag)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, `
		SELECT property, kind, site_key, secret <> '', hostnames, action, no_js, updated_at
		FROM mailslot.property_challenges WHERE $1 = '' OR property = $1 ORDER BY property`, *property)
	if err != nil {
		return fmt.Errorf("read challenge settings: %w", err)
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (challengeRow, error) {
		var c challengeRow
		err := r.Scan(&c.Property, &c.Kind, &c.SiteKey, &c.SecretSet, &c.Hostnames, &c.Action, &c.NoJS, &c.UpdatedAt)
		return c, err
	})
	if err != nil {
		return fmt.Errorf("read challenge settings: %w", err)
	}
	if *format == "json" {
		if list == nil {
			list = []challengeRow{}
		}
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(list)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PROPERTY\tKIND\tSITE KEY\tSECRET\tHOSTNAMES\tACTION\tNO-JS\tUPDATED")
	for _, c := range list {
		secret := "-"
		if c.SecretSet {
			secret = "set"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Property, c.Kind, dashIfEmpty(c.SiteKey), secret,
			dashIfEmpty(strings.Join(c.Hostnames, ",")), dashIfEmpty(c.Action), c.NoJS, c.UpdatedAt.UTC().Format(time.RFC3339))
	}
	return tw.Flush()
}

func dashIfEmpty(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func challengeClear(ctx context.Context, e env, args []string) error {
	fs := newFlags(e, "challenge clear", "challenge clear --property P")
	dbFlag := fs.String("database-url", "", "Postgres URL (default $DATABASE_URL)")
	property := fs.String("property", "", "the property")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *property == "" {
		return fmt.Errorf("%w: --property is required", errUsage)
	}
	conn, err := connectFlag(ctx, e, *dbFlag)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	ct, err := conn.Exec(ctx, `DELETE FROM mailslot.property_challenges WHERE property = $1`, *property)
	if err != nil {
		return fmt.Errorf("clear challenge setting: %w", err)
	}
	if ct.RowsAffected() == 0 {
		fmt.Fprintf(e.stdout, "property %s had no challenge setting\n", *property)
		return nil
	}
	fmt.Fprintf(e.stdout, "property %s: setting removed; it gets the fleet default\n", *property)
	return nil
}
