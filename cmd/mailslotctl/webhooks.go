package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/mailslot/mailslot/internal/safedial"
	"github.com/mailslot/mailslot/sync/webhook"
)

const webhooksUsage = `usage: mailslotctl webhooks <command> [flags]

commands:
  add        subscribe a receiver: --url URL --events lead.created,lead.erased [--property P];
             prints the subscription id and its signing secret (shown once)
  list       every subscription and its deliveries: pending, failing, dead, delivered
  remove     stop delivering to a subscription: remove ID (its record stays)
  rotate     give a subscription a new secret: rotate ID [--overlap 24h]; both sign meanwhile
  redeliver  retry a subscription's dead deliveries: redeliver ID

Events: lead.created, lead.confirmed, lead.unsubscribed, lead.erased.
Receivers must be https and public. MAILSLOT_WEBHOOK_ALLOW_PRIVATE=true
(refused when MAILSLOT_ENV=production) allows loopback and private
addresses and plain http, for development and tests.
Subscriptions live in Postgres: every command takes --database-url (default $DATABASE_URL).
`

func runWebhooks(ctx context.Context, e env, args []string) error {
	return subcommand(ctx, e, "webhooks", webhooksUsage, args, map[string]func(context.Context, env, []string) error{
		"add": webhooksAdd, "list": webhooksList,
		"remove": named("remove", webhooksChange), "rotate": named("rotate", webhooksChange), "redeliver": named("redeliver", webhooksChange),
	})
}

// webhookPolicy is the receiver URL policy of the fleet's environment:
// production requires https and public addresses, and refuses
// MAILSLOT_WEBHOOK_ALLOW_PRIVATE as the edges do.
func webhookPolicy(e env) (safedial.Policy, error) {
	prod := strings.TrimSpace(e.getenv("MAILSLOT_ENV")) == "production"
	var allow bool
	switch v := strings.ToLower(strings.TrimSpace(e.getenv("MAILSLOT_WEBHOOK_ALLOW_PRIVATE"))); v {
	case "", "0", "false", "off", "no":
	case "1", "true", "on", "yes":
		allow = true
	default:
		return safedial.Policy{}, fmt.Errorf("%w: MAILSLOT_WEBHOOK_ALLOW_PRIVATE must be on or off, got %q", errUsage, v)
	}
	if allow && prod {
		return safedial.Policy{}, fmt.Errorf("%w: MAILSLOT_WEBHOOK_ALLOW_PRIVATE must be off in production: "+
			"it lets deliveries reach loopback, private and link-local addresses", errUsage)
	}
	return safedial.Policy{RequireHTTPS: prod || !allow, AllowPrivate: allow}, nil
}

// webhooksSchemaHint turns "no such table" into the fix.
func webhooksSchemaHint(err error) error {
	if err != nil && strings.Contains(err.Error(), "SQLSTATE 42P01") {
		return fmt.Errorf("%w (the webhook tables are missing: run `mailslotctl migrate`)", err)
	}
	return err
}

func webhooksAdd(ctx context.Context, e env, args []string) error {
	fs := newFlags(e, "webhooks add", "webhooks add --url URL --events TYPE,… [--property P] [--json] [--database-url URL]")
	dbFlag := fs.String("database-url", "", "Postgres URL (default $DATABASE_URL)")
	rawURL := fs.String("url", "", "the receiver's URL (https; its query may hold a token and is never shown)")
	events := fs.String("events", "", "comma-separated event types: lead.created, lead.confirmed, lead.unsubscribed, lead.erased")
	property := fs.String("property", "", "only this property's leads (default: every property)")
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: webhooks add takes no arguments, only flags (got %q)", errUsage, fs.Arg(0))
	}
	if *rawURL == "" || *events == "" {
		return fmt.Errorf("%w: webhooks add needs --url and --events", errUsage)
	}
	policy, err := webhookPolicy(e)
	if err != nil {
		return err
	}
	conn, err := connectFlag(ctx, e, *dbFlag)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	c, err := webhook.Add(ctx, conn, webhook.NewSubscription{URL: *rawURL, Events: webhook.ParseTypes(*events), Property: *property, Policy: policy})
	if err != nil {
		// Validation errors start with what was refused; storing one
		// does not.
		if strings.HasPrefix(err.Error(), "webhook subscription") {
			return fmt.Errorf("%w: %w", errUsage, err)
		}
		return webhooksSchemaHint(err)
	}
	if *asJSON {
		return json.NewEncoder(e.stdout).Encode(c)
	}
	s, err := webhook.Get(ctx, conn, c.ID)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "subscription %s\nsecret %s\n", c.ID, c.Secret)
	fmt.Fprintf(e.stdout, "delivers %s of %s to %s\n", joinTypes(s.Events), orEvery(s.Property), safedial.RedactString(s.URL))
	fmt.Fprintln(e.stdout, "the secret is shown once: give it to the receiver now (it verifies webhook-signature with it)")
	return nil
}

func joinTypes(ts []webhook.Type) string {
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = string(t)
	}
	return strings.Join(s, ",")
}

func orEvery(property string) string {
	if property == "" {
		return "every property"
	}
	return property
}

// subscriptionView is one line of `webhooks list`.
type subscriptionView struct {
	webhook.Subscription
	Receiver   string         `json:"receiver"`
	Deliveries webhook.Counts `json:"deliveries"`
}

func webhooksList(ctx context.Context, e env, args []string) error {
	fs := newFlags(e, "webhooks list", "webhooks list [--json] [--database-url URL]")
	dbFlag := fs.String("database-url", "", "Postgres URL (default $DATABASE_URL)")
	asJSON := fs.Bool("json", false, "print JSON for scripts (the URL as stored, with its query)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	conn, err := connectFlag(ctx, e, *dbFlag)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	views, err := loadSubscriptions(ctx, conn)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(e.stdout).Encode(views)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tRECEIVER\tEVENTS\tPROPERTY\tSTATE\tPENDING\tFAILING\tDEAD\tDELIVERED\tLAST DELIVERED")
	for _, v := range views {
		state := "active"
		if v.DisabledAt != nil {
			state = "disabled (" + v.DisabledReason + ")"
		} else if v.PreviousExpiresAt != nil {
			state = "rotating until " + v.PreviousExpiresAt.UTC().Format(time.RFC3339)
		}
		last := "never"
		if v.Deliveries.LastDelivered != nil {
			last = v.Deliveries.LastDelivered.UTC().Format(time.RFC3339)
		}
		c := v.Deliveries
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\n", v.ID, v.Receiver, joinTypes(v.Events), orDash(v.Property), state,
			c.Pending+c.Delivering, c.Failing, c.Dead, c.Delivered, last)
	}
	return tw.Flush()
}

func loadSubscriptions(ctx context.Context, conn *pgx.Conn) ([]subscriptionView, error) {
	subs, err := webhook.List(ctx, conn)
	if err != nil {
		return nil, webhooksSchemaHint(err)
	}
	counts, err := webhook.DeliveryCounts(ctx, conn)
	if err != nil {
		return nil, webhooksSchemaHint(err)
	}
	byID := map[uuid.UUID]webhook.Counts{}
	for _, c := range counts {
		byID[c.SubscriptionID] = c
	}
	views := make([]subscriptionView, 0, len(subs))
	for _, s := range subs {
		c := byID[s.ID]
		c.SubscriptionID = s.ID
		views = append(views, subscriptionView{Subscription: s, Receiver: safedial.RedactString(s.URL), Deliveries: c})
	}
	return views, nil
}

// parseIDThenFlags takes `ID [flags]` or `[flags] ID`.
func parseIDThenFlags(fs *flag.FlagSet, what string, args []string) (uuid.UUID, error) {
	if err := fs.Parse(args); err != nil {
		return uuid.Nil, err
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return uuid.Nil, fmt.Errorf("%w: webhooks %s needs a subscription ID (see mailslotctl webhooks list)", errUsage, what)
	}
	raw := rest[0]
	if err := fs.Parse(rest[1:]); err != nil {
		return uuid.Nil, err
	}
	if fs.NArg() > 0 {
		return uuid.Nil, fmt.Errorf("%w: webhooks %s takes one subscription ID", errUsage, what)
	}
	id, err := uuid.Parse(raw)
	if err != nil {
		return uuid.Nil, fmt.Errorf("%w: %q is not a subscription ID (see mailslotctl webhooks list)", errUsage, raw)
	}
	return id, nil
}

func webhooksChange(ctx context.Context, e env, what string, args []string) error {
	fs := newFlags(e, "webhooks "+what, "webhooks "+what+" ID [--database-url URL]")
	dbFlag := fs.String("database-url", "", "Postgres URL (default $DATABASE_URL)")
	var overlap *time.Duration
	if what == "rotate" {
		overlap = fs.Duration("overlap", webhook.DefaultOverlap, "how long the old secret keeps signing beside the new one")
	}
	id, err := parseIDThenFlags(fs, what, args)
	if err != nil {
		return err
	}
	if overlap != nil && (*overlap < time.Minute || *overlap > 30*24*time.Hour) {
		return fmt.Errorf("%w: --overlap must be between 1m and 720h", errUsage)
	}
	conn, err := connectFlag(ctx, e, *dbFlag)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	err = changeSubscription(ctx, e.stdout, conn, what, id, overlap)
	if errors.Is(err, webhook.ErrNotFound) {
		return fmt.Errorf("no webhook subscription has id %s (see mailslotctl webhooks list)", id)
	}
	return webhooksSchemaHint(err)
}

func changeSubscription(ctx context.Context, w io.Writer, conn *pgx.Conn, what string, id uuid.UUID, overlap *time.Duration) error {
	switch what {
	case "remove":
		if err := webhook.Remove(ctx, conn, id); err != nil {
			return err
		}
		fmt.Fprintf(w, "subscription %s removed: nothing more is delivered to it; its deliveries stay on record\n", id)
	case "rotate":
		sec, err := webhook.Rotate(ctx, conn, id, *overlap)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "subscription %s\nsecret %s\n", id, sec)
		fmt.Fprintf(w, "deliveries carry signatures by both secrets until %s; then only the new one signs\n",
			time.Now().Add(*overlap).UTC().Format(time.RFC3339))
		fmt.Fprintln(w, "the secret is shown once: give it to the receiver now")
	case "redeliver":
		n, err := webhook.Redeliver(ctx, conn, id)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "%d dead deliveries of subscription %s queued again, with a fresh retry window\n", n, id)
	}
	return nil
}

// erasureWebhooks is the erasure record of tombstone id: per lead it
// erased and per subscription, whether the receiver got lead.erased.
func erasureWebhooks(ctx context.Context, conn *pgx.Conn, id int64) ([]webhook.ErasureDelivery, error) {
	ds, err := webhook.ErasureDeliveries(ctx, conn, id)
	if err != nil {
		return nil, webhooksSchemaHint(err)
	}
	if ds == nil {
		ds = []webhook.ErasureDelivery{}
	}
	return ds, nil
}

// printErasureWebhooks prints the erasure records of the tombstones in
// order: who else held the person's data, and whether they heard.
func printErasureWebhooks(w io.Writer, order []int64, byTomb map[int64][]webhook.ErasureDelivery) error {
	n := 0
	for _, id := range order {
		n += len(byTomb[id])
	}
	if n == 0 {
		return nil
	}
	fmt.Fprintf(w, "\nlead.erased sent downstream (%d deliveries):\n", n)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOMBSTONE\tLEAD\tRECEIVER\tSTATE\tSTATUS\tATTEMPTS\tDELIVERED AT\tLAST ERROR")
	for _, id := range order {
		for _, d := range byTomb[id] {
			status, at := "-", "-"
			if d.LastStatus != nil {
				status = fmt.Sprint(*d.LastStatus)
			}
			if d.DeliveredAt != nil {
				at = d.DeliveredAt.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", id, d.LeadPublicID, d.Receiver, d.State, status, d.Attempts, at, orDash(d.LastError))
		}
	}
	return tw.Flush()
}

// writeWebhookSummary adds the fleet's webhook deliveries to `status`; a
// fleet without subscriptions (or without the tables) gets no line.
func writeWebhookSummary(ctx context.Context, e env, conn *pgx.Conn) error {
	views, err := loadSubscriptions(ctx, conn)
	if err != nil {
		if strings.Contains(err.Error(), "SQLSTATE 42P01") {
			return nil
		}
		return err
	}
	if len(views) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WEBHOOK\tRECEIVER\tSTATE\tPENDING\tFAILING\tDEAD\tDELIVERED\tOLDEST PENDING")
	for _, v := range views {
		state := "active"
		if v.DisabledAt != nil {
			state = "disabled (" + v.DisabledReason + ")"
		}
		c := v.Deliveries
		oldest := "-"
		if c.OldestPending != nil {
			oldest = time.Since(*c.OldestPending).Round(time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\n", v.ID, v.Receiver, state, c.Pending+c.Delivering, c.Failing, c.Dead, c.Delivered, oldest)
	}
	return tw.Flush()
}

// webhookDisclosuresSQL lists, for an access request, every webhook
// delivery about the address's current leads: which event went (or is due
// to go) to which receiver, and how it went. The payloads are the leads'
// own columns, which the export shows already.
const webhookDisclosuresSQL = `
SELECT jsonb_build_object('event_id', e.id, 'type', e.type, 'lead_public_id', e.lead_public_id, 'property', e.property,
       'written_at', e.created_at, 'subscription_id', d.subscription_id, 'receiver', regexp_replace(s.url, '[?#].*$', ''),
       'state', d.state, 'attempts', d.attempts, 'last_status', d.last_status, 'delivered_at', d.delivered_at)
FROM mailslot.webhook_events e
JOIN mailslot.webhook_deliveries d ON d.event_id = e.id
JOIN mailslot.webhook_subscriptions s ON s.id = d.subscription_id
WHERE e.lead_public_id IN (SELECT public_id FROM mailslot.leads WHERE email_hmac = $1)
ORDER BY e.seq, d.id`
