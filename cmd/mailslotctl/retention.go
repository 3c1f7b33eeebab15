package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mailslot/mailslot/sync/webhook"
)

// impliedTTL is how long implied consent lasts under CASL: two years from
// an existing business relationship (a purchase, a contract), six months
// from an inquiry. A source not listed gets the shorter period.
var impliedTTL = map[string]time.Duration{
	"purchase": 2 * 365 * 24 * time.Hour,
	"customer": 2 * 365 * 24 * time.Hour,
	"ebr":      2 * 365 * 24 * time.Hour,
	"inquiry":  183 * 24 * time.Hour,
}

const defaultImpliedTTL = 183 * 24 * time.Hour

// lapsedSQL finds leads whose consent is implied and whose latest implied
// consent record is older than its source's period. The periods come in as
// arrays so that the rule lives in one place (impliedTTL).
const lapsedSQL = `
SELECT l.property, l.email, COALESCE(r.source, '') AS source, l.implied_at,
       l.implied_at + COALESCE(t.ttl, $3::interval) AS expired_at
FROM mailslot.leads l
LEFT JOIN LATERAL (
    SELECT c.source FROM mailslot.consent_records c
    WHERE c.lead_id = l.id AND c.status = 'implied' ORDER BY c.recorded_at DESC LIMIT 1) r ON true
LEFT JOIN unnest($1::text[], $2::interval[]) AS t (source, ttl) ON t.source = r.source
WHERE l.consent_status = 'implied'
  AND l.implied_at + COALESCE(t.ttl, $3::interval) < now()
ORDER BY expired_at`

func runConsent(ctx context.Context, e env, args []string) error {
	if len(args) == 0 || args[0] != "lapsed" {
		fmt.Fprintln(e.stderr, "usage: mailslotctl consent lapsed [--json] [--ttl source=duration,…]")
		return errUsage
	}
	fs := newFlags(e, "consent lapsed", "consent lapsed [--json] [--ttl source=duration,…] [--database-url URL]")
	dbFlag := fs.String("database-url", "", "Postgres URL (default $DATABASE_URL)")
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	ttlFlag := fs.String("ttl", "", "implied-consent period per source, e.g. inquiry=4380h,purchase=17520h (adds to the CASL defaults)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	ttls := map[string]time.Duration{}
	for k, v := range impliedTTL {
		ttls[k] = v
	}
	for _, kv := range strings.Split(*ttlFlag, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		d, err := time.ParseDuration(v)
		if !ok || err != nil || d <= 0 {
			return fmt.Errorf("%w: --ttl %q: want source=duration such as inquiry=4380h", errUsage, kv)
		}
		ttls[k] = d
	}
	conn, err := connectFlag(ctx, e, *dbFlag)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var sources []string
	var periods []time.Duration
	for k, v := range ttls {
		sources, periods = append(sources, k), append(periods, v)
	}
	rows, err := conn.Query(ctx, lapsedSQL, sources, periods, defaultImpliedTTL)
	if err != nil {
		return fmt.Errorf("find lapsed implied consent: %w", err)
	}
	type lapsed struct {
		Property  string    `json:"property"`
		Email     string    `json:"email"`
		Source    string    `json:"source"`
		ImpliedAt time.Time `json:"implied_at"`
		ExpiredAt time.Time `json:"expired_at"`
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (lapsed, error) {
		var l lapsed
		err := r.Scan(&l.Property, &l.Email, &l.Source, &l.ImpliedAt, &l.ExpiredAt)
		return l, err
	})
	if err != nil {
		return fmt.Errorf("read lapsed implied consent: %w", err)
	}
	if *asJSON {
		if list == nil {
			list = []lapsed{}
		}
		return json.NewEncoder(e.stdout).Encode(list)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PROPERTY\tEMAIL\tSOURCE\tIMPLIED AT\tLAPSED AT")
	for _, l := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", l.Property, l.Email, orDash(l.Source), l.ImpliedAt.Format(time.DateOnly), l.ExpiredAt.Format(time.DateOnly))
	}
	return tw.Flush()
}

func runPurgeEvents(ctx context.Context, e env, args []string) error {
	fs := newFlags(e, "purge-events", "purge-events --older-than DURATION [--dry-run] [--database-url URL]")
	dbFlag := fs.String("database-url", "", "Postgres URL of the migration owner (default $DATABASE_URL)")
	olderThan := fs.Duration("older-than", 0, "delete telemetry received longer ago than this, e.g. 9480h (395 days)")
	dryRun := fs.Bool("dry-run", false, "count, delete nothing")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *olderThan < 24*time.Hour {
		return fmt.Errorf("%w: --older-than must be at least 24h", errUsage)
	}
	conn, err := connectFlag(ctx, e, *dbFlag)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return purgeEvents(ctx, e, conn, time.Now().UTC().Add(-*olderThan), *dryRun)
}

func runErasures(ctx context.Context, e env, args []string) error {
	fs := newFlags(e, "erasures", "erasures [--window DURATION] [--snapshots DURATION] [--json] [--database-url URL]")
	dbFlag := fs.String("database-url", "", "Postgres URL (default $DATABASE_URL)")
	cfg, err := loadConfig(e)
	if err != nil {
		return err
	}
	window := fs.Duration("window", cfg.ReplicaRetention, "how long replica history keeps old data (default $MAILSLOT_REPLICA_RETENTION)")
	// Fly keeps daily snapshots of the volume (snapshot_retention = 7 in
	// fly.toml): the outbox as it was before an erasure lives on in them.
	snapshots := fs.Duration("snapshots", 7*24*time.Hour, "how long volume snapshots are kept (fly.toml snapshot_retention; 0 for none)")
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *window < 0 || *snapshots < 0 {
		return fmt.Errorf("%w: --window and --snapshots must not be negative", errUsage)
	}
	conn, err := connectFlag(ctx, e, *dbFlag)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, `
		SELECT id, erased_at, requested_by, erased_at + $1::interval, erased_at + $2::interval
		FROM mailslot.tombstones WHERE erased_at + greatest($1::interval, $2::interval) > now() ORDER BY id`, *window, *snapshots)
	if err != nil {
		return fmt.Errorf("list recent erasures: %w", err)
	}
	type erasure struct {
		ID          int64     `json:"id"`
		ErasedAt    time.Time `json:"erased_at"`
		RequestedBy string    `json:"requested_by"`
		GoneBy      time.Time `json:"gone_from_replicas_by"`
		// GoneFromSnapshots is when the last volume snapshot taken before
		// the erasure expires.
		GoneFromSnapshots time.Time `json:"gone_from_snapshots_by"`
		// Webhooks says, per lead and subscription, whether lead.erased reached the receiver.
		Webhooks []webhook.ErasureDelivery `json:"webhooks"`
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (erasure, error) {
		var x erasure
		err := r.Scan(&x.ID, &x.ErasedAt, &x.RequestedBy, &x.GoneBy, &x.GoneFromSnapshots)
		return x, err
	})
	if err != nil {
		return fmt.Errorf("read recent erasures: %w", err)
	}
	hooks, order := map[int64][]webhook.ErasureDelivery{}, []int64{}
	for i := range list {
		if list[i].Webhooks, err = erasureWebhooks(ctx, conn, list[i].ID); err != nil {
			return err
		}
		hooks[list[i].ID], order = list[i].Webhooks, append(order, list[i].ID)
	}
	if *asJSON {
		if list == nil {
			list = []erasure{}
		}
		return json.NewEncoder(e.stdout).Encode(list)
	}
	fmt.Fprintf(e.stdout, "%d erasure(s) still inside the %s replica window or the %s of volume snapshots (their data may remain in Litestream history, and in Fly volume snapshots taken before the erasure, until the times shown)\n", len(list), window, snapshots)
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOMBSTONE\tERASED AT\tBY\tGONE FROM REPLICAS BY\tGONE FROM SNAPSHOTS BY")
	for _, x := range list {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", x.ID, x.ErasedAt.Format(time.RFC3339), x.RequestedBy, x.GoneBy.Format(time.RFC3339), x.GoneFromSnapshots.Format(time.RFC3339))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return printErasureWebhooks(e.stdout, order, hooks)
}
