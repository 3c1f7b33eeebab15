package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mailslot/mailslot/edge/admin"
	"github.com/mailslot/mailslot/edge/intake"
	"github.com/mailslot/mailslot/internal/pii"
	"github.com/mailslot/mailslot/internal/token"
	"github.com/mailslot/mailslot/sync/drain"
)

// hasher builds the email hasher from the fleet's pepper: without the same
// pepper as the edges, no hash would match.
func hasher(e env) (*pii.Hasher, error) {
	cfg, err := loadConfig(e)
	if err != nil {
		return nil, err
	}
	p := cfg.IPPepper
	if p == "" {
		return nil, fmt.Errorf("%w: MAILSLOT_IP_PEPPER is not set: use the same pepper as the edges (fly secrets list shows its digest)", errUsage)
	}
	return pii.NewHasher([]byte(p)), nil
}

// emailArg takes exactly one address argument and normalizes it.
func emailArg(fs interface{ Args() []string }) (string, error) {
	if len(fs.Args()) != 1 {
		return "", fmt.Errorf("%w: give exactly one email address", errUsage)
	}
	email, err := pii.NormalizeEmail(fs.Args()[0])
	if err != nil {
		return "", fmt.Errorf("%w: that is not a valid email address", errUsage)
	}
	return email, nil
}

func runErase(ctx context.Context, e env, args []string) error {
	fs := newFlags(e, "erase", "erase [--database-url URL] <email>")
	dbFlag := fs.String("database-url", "", "Postgres URL (default $DATABASE_URL)")
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	email, h, conn, err := openForAddress(ctx, e, fs, args, dbFlag)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	res, err := drain.Erase(ctx, conn, h.Email(email), time.Now().UTC(), "operator")
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(e.stdout).Encode(res)
	}
	fmt.Fprintf(e.stdout, "erased: %d lead(s) deleted, %d reset to later sign-ups, %d consent record(s) and %d event(s) scrubbed\n",
		res.LeadsDeleted, res.LeadsReset, res.ConsentScrubbed, res.EventsScrubbed)
	fmt.Fprintln(e.stdout, "a tombstone and a suppression entry were written; every edge scrubs its outbox when it pulls the tombstone")
	return nil
}

// openForAddress parses the flags, takes the one address argument and
// opens Postgres: the start of every command about one person.
func openForAddress(ctx context.Context, e env, fs *flag.FlagSet, args []string, dbFlag *string) (string, *pii.Hasher, *pgx.Conn, error) {
	if err := fs.Parse(args); err != nil {
		return "", nil, nil, err
	}
	email, err := emailArg(fs)
	if err != nil {
		return "", nil, nil, err
	}
	h, err := hasher(e)
	if err != nil {
		return "", nil, nil, err
	}
	conn, err := connectFlag(ctx, e, *dbFlag)
	if err != nil {
		return "", nil, nil, err
	}
	return email, h, conn, nil
}

func connectFlag(ctx context.Context, e env, flagVal string) (*pgx.Conn, error) {
	dbURL, err := databaseURL(e, flagVal)
	if err != nil {
		return nil, err
	}
	return connect(ctx, dbURL)
}

// exportDoc is an access request's answer: everything held about an
// address, from Postgres and from each edge asked.
type exportDoc struct {
	EmailHMAC      string            `json:"email_hmac"`
	GeneratedAt    time.Time         `json:"generated_at"`
	Leads          []json.RawMessage `json:"leads"`
	ConsentRecords []json.RawMessage `json:"consent_records"`
	Events         []json.RawMessage `json:"events"`
	Suppressions   []json.RawMessage `json:"suppressions"`
	Tombstones     []json.RawMessage `json:"tombstones"`
	// Webhooks is what was sent downstream about the person (event types,
	// receivers, outcomes) and, per erasure, whether lead.erased arrived.
	Webhooks        []json.RawMessage `json:"webhook_deliveries"`
	ErasureWebhooks []json.RawMessage `json:"webhook_erasure_deliveries"`
	Edges           []edgeExport      `json:"edges"`
}

type edgeExport struct {
	URL   string          `json:"url"`
	Rows  json.RawMessage `json:"rows,omitempty"`
	Error string          `json:"error,omitempty"`
}

// exportQueries read each table as JSON rows, so the document shows
// exactly what is stored.
var exportQueries = []struct {
	name string
	sql  string
}{
	{"leads", `SELECT to_jsonb(l) FROM mailslot.leads l WHERE email_hmac = $1 ORDER BY id`},
	{"consent_records", `SELECT to_jsonb(c) FROM mailslot.consent_records c
		WHERE email_hmac = $1 OR lead_id IN (SELECT id FROM mailslot.leads WHERE email_hmac = $1) ORDER BY id`},
	{"events", `SELECT to_jsonb(ev) FROM mailslot.events ev
		WHERE lead_id IN (SELECT id FROM mailslot.leads WHERE email_hmac = $1)
		   OR lead_submission IN (SELECT submission_id FROM mailslot.consent_records WHERE email_hmac = $1) ORDER BY id`},
	{"suppressions", `SELECT to_jsonb(s) FROM mailslot.suppressions s WHERE email_hmac = $1`},
	{"tombstones", `SELECT to_jsonb(t) FROM mailslot.tombstones t WHERE email_hmac = $1 ORDER BY id`},
	{"webhook_deliveries", webhookDisclosuresSQL},
	{"webhook_erasure_deliveries", `SELECT to_jsonb(w) FROM mailslot.webhook_erasure_deliveries w
		WHERE tombstone_id IN (SELECT id FROM mailslot.tombstones WHERE email_hmac = $1) ORDER BY tombstone_id, lead_public_id, subscription_id`},
}

func runExport(ctx context.Context, e env, args []string) error {
	fs := newFlags(e, "export", "export [--database-url URL] [--edge URL]... [--edge-template URL] <email>")
	dbFlag := fs.String("database-url", "", "Postgres URL (default $DATABASE_URL)")
	ef := addEdgeFlags(fs, e)
	email, h, conn, err := openForAddress(ctx, e, fs, args, dbFlag)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	cfg, err := loadConfig(e)
	if err != nil {
		return err
	}
	hash := h.Email(email)
	doc := exportDoc{EmailHMAC: fmt.Sprintf("%x", hash), GeneratedAt: time.Now().UTC()}
	dst := map[string]*[]json.RawMessage{
		"leads": &doc.Leads, "consent_records": &doc.ConsentRecords, "events": &doc.Events,
		"suppressions": &doc.Suppressions, "tombstones": &doc.Tombstones,
		"webhook_deliveries": &doc.Webhooks, "webhook_erasure_deliveries": &doc.ErasureWebhooks,
	}
	for _, q := range exportQueries {
		rows, err := conn.Query(ctx, q.sql, hash)
		if err != nil {
			return fmt.Errorf("export %s: %w", q.name, err)
		}
		got, err := pgx.CollectRows(rows, pgx.RowTo[json.RawMessage])
		if err != nil {
			return fmt.Errorf("export %s: %w", q.name, err)
		}
		*dst[q.name] = append([]json.RawMessage{}, got...)
	}
	client := admin.NewClient(cfg.AdminToken, 15*time.Second)
	bases, refused := edgeURLs(ctx, conn, ef)
	doc.Edges = append(doc.Edges, refused...)
	for _, base := range bases {
		body, err := client.Export(ctx, base, email)
		ex := edgeExport{URL: base, Rows: body}
		if err != nil {
			ex = edgeExport{URL: base, Error: err.Error()}
		}
		doc.Edges = append(doc.Edges, ex)
	}
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}

// edgeURLs lists the edges to ask: named ones, then each node Postgres
// knows through the template. A node whose id cannot be put in a URL is
// reported, not asked.
func edgeURLs(ctx context.Context, conn *pgx.Conn, ef *edgeFlags) ([]string, []edgeExport) {
	out := ef.urls()
	if *ef.template == "" {
		return out, nil
	}
	nodes, err := loadNodes(ctx, conn)
	if err != nil {
		return out, []edgeExport{{Error: err.Error()}}
	}
	var refused []edgeExport
	for _, n := range nodes {
		u, err := ef.forNode(n.NodeID)
		if err != nil {
			refused = append(refused, edgeExport{Error: err.Error()})
			continue
		}
		out = append(out, u)
	}
	return out, refused
}

func runLinks(_ context.Context, e env, args []string) error {
	fs := newFlags(e, "links", "links --property P [--public-url URL] <email>")
	property := fs.String("property", "", "the property (site) the links are for")
	public := fs.String("public-url", "", "public base URL of the edges (default $MAILSLOT_PUBLIC_URL, as the edges read it)")
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	if err := fs.Parse(args); err != nil {
		return err
	}
	email, err := emailArg(fs)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(e)
	if err != nil {
		return err
	}
	if *public == "" {
		*public = cfg.PublicURL
	}
	if *property == "" || *public == "" {
		return fmt.Errorf("%w: --property and --public-url (or MAILSLOT_PUBLIC_URL) are required", errUsage)
	}
	// The links name the property as sign-ups store it; one no sign-up
	// could have would confirm or unsubscribe nothing.
	prop, code := intake.Ident(*property)
	if code != "" {
		return fmt.Errorf("%w: --property %q is %s: use letters, digits and . _ : - as in the sign-up form", errUsage, *property, code)
	}
	*property = prop
	if u, err := url.Parse(*public); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("%w: --public-url must be an http(s) URL", errUsage)
	}
	keys, err := token.ParseKeys(cfg.TokenKey)
	if err != nil {
		return fmt.Errorf("%w: MAILSLOT_TOKEN_KEY: %w (use the edges' key)", errUsage, err)
	}
	h, err := hasher(e)
	if err != nil {
		return err
	}
	links := keys.Links(*public, *property, h.Email(email), cfg.LinkLifetimes(), time.Now())
	if *asJSON {
		return json.NewEncoder(e.stdout).Encode(links)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PURPOSE\tEXPIRES\tURL")
	for _, l := range links {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", l.Purpose, l.Expires.Format(time.DateOnly), l.URL)
	}
	return tw.Flush()
}
