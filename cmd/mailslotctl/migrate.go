package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/jackc/pgx/v5"

	"github.com/mailslot/mailslot/pgschema"
)

func runMigrate(ctx context.Context, e env, args []string) error {
	fs := newFlags(e, "migrate", "migrate [--status] [--database-url URL]")
	dbFlag := fs.String("database-url", "", "Postgres URL of the migration owner (default $DATABASE_URL)")
	statusOnly := fs.Bool("status", false, "show applied and pending migrations, change nothing")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dbURL, err := databaseURL(e, *dbFlag)
	if err != nil {
		return err
	}
	conn, err := connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if *statusOnly {
		return migrateStatus(ctx, e, conn)
	}
	res, err := pgschema.Migrate(ctx, conn)
	if err != nil {
		return err
	}
	if err := ensurePartitionsAhead(ctx, e, conn); err != nil {
		return err
	}
	for _, name := range res.Applied {
		fmt.Fprintf(e.stdout, "applied %s\n", name)
	}
	if len(res.Applied) == 0 {
		fmt.Fprintf(e.stdout, "schema is up to date at version %d\n", res.To)
		return nil
	}
	fmt.Fprintf(e.stdout, "schema migrated from version %d to %d\n", res.From, res.To)
	return nil
}

func migrateStatus(ctx context.Context, e env, conn *pgx.Conn) error {
	applied, err := pgschema.History(ctx, conn)
	if err != nil {
		return err
	}
	ms, err := pgschema.Migrations()
	if err != nil {
		return err
	}
	at := make(map[int]string, len(applied))
	for _, a := range applied {
		at[a.Version] = a.At
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tNAME\tAPPLIED")
	for _, m := range ms {
		when := at[m.Version]
		if when == "" {
			when = "pending"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\n", m.Version, m.Name, when)
	}
	return tw.Flush()
}

// connect opens one connection and turns the failure into advice.
func connect(ctx context.Context, dbURL string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(dbURL)
	if err != nil {
		return nil, fmt.Errorf("%w: the database URL is not a valid PostgreSQL URL", errUsage)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to Postgres at %s:%d: %w (is it running? in production, is `fly proxy` open?)", cfg.Host, cfg.Port, err)
	}
	return conn, nil
}
