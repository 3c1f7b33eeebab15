package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mailslot/mailslot/sync/mailer"
)

const mailUsage = `usage: mailslotctl mail <command> [flags]

commands:
  list      the newest mail jobs (--state queued|sending|sent|failed|dead|cancelled|uncertain|skipped)
  status    how many jobs are queued, sent, failed, dead, uncertain, skipped, bounced
  retry     send failed, dead, uncertain, skipped or cancelled jobs again: retry ID...
            (for an uncertain job, this is your decision that it did not arrive)
  cancel    stop queued jobs, or settle ones waiting on you: cancel ID...

Jobs live in Postgres and name their lead, never an address.
Every command takes --database-url (default $DATABASE_URL).
`

func runMail(ctx context.Context, e env, args []string) error {
	return subcommand(ctx, e, "mail", mailUsage, args, map[string]func(context.Context, env, []string) error{
		"list": mailList, "status": mailStatus,
		"retry": named("retry", mailChange), "cancel": named("cancel", mailChange),
	})
}

func mailList(ctx context.Context, e env, args []string) error {
	fs := newFlags(e, "mail list", "mail list [--state STATE] [--limit N] [--json] [--database-url URL]")
	dbFlag := fs.String("database-url", "", "Postgres URL (default $DATABASE_URL)")
	state := fs.String("state", "", "only jobs in this state")
	limit := fs.Int("limit", 50, "at most this many jobs, newest first (1-1000)")
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *state != "" && !slices.Contains(mailer.States, *state) {
		return fmt.Errorf("%w: --state %q is not a mail job state (%s)", errUsage, *state, strings.Join(mailer.States, ", "))
	}
	conn, err := connectFlag(ctx, e, *dbFlag)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	jobs, err := mailer.NewStore(conn).List(ctx, *state, *limit)
	if err != nil {
		return mailSchemaHint(err)
	}
	if *asJSON {
		return imagesJSON(e.stdout, jobs)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tKIND\tSTATE\tATTEMPTS\tPROPERTY\tLEAD\tCREATED\tSENT\tFEEDBACK\tLAST ERROR")
	for _, j := range jobs {
		sent := "-"
		if j.SentAt != nil {
			sent = j.SentAt.Format(time.DateTime)
		}
		kind := j.Kind
		if j.AfterWithdrawal {
			kind += " (after withdrawal)"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%d\t%s\t%s\t%s\t%s\n", j.ID, kind, j.State, j.Attempts, j.Property,
			j.LeadID, j.CreatedAt.Format(time.DateTime), sent, orDash(j.Feedback), orDash(imageShorten(j.LastError, 70)))
	}
	return tw.Flush()
}

func mailStatus(ctx context.Context, e env, args []string) error {
	fs := newFlags(e, "mail status", "mail status [--json] [--database-url URL]")
	dbFlag := fs.String("database-url", "", "Postgres URL (default $DATABASE_URL)")
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	if err := fs.Parse(args); err != nil {
		return err
	}
	conn, err := connectFlag(ctx, e, *dbFlag)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	c, err := mailer.ReadCounts(ctx, conn)
	if err != nil {
		return mailSchemaHint(err)
	}
	if *asJSON {
		return imagesJSON(e.stdout, c)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	for _, r := range []struct {
		k string
		v int64
	}{
		{"queued", c.Queued}, {"due now", c.Ready}, {"sending", c.Sending}, {"sent", c.Sent}, {"failed", c.Failed},
		{"dead", c.Dead}, {"uncertain", c.Uncertain}, {"skipped", c.Skipped}, {"cancelled", c.Cancelled},
		{"bounced", c.Bounced}, {"complained", c.Complained},
	} {
		fmt.Fprintf(tw, "%s\t%d\n", r.k, r.v)
	}
	fmt.Fprintf(tw, "oldest due\t%.0fs\n", c.OldestReadyAgeSeconds)
	if err := tw.Flush(); err != nil {
		return err
	}
	if c.Uncertain > 0 {
		fmt.Fprintf(e.stdout, "\n%d uncertain: the server may have taken them; check with the provider, then mail retry or mail cancel\n", c.Uncertain)
	}
	return nil
}

func mailChange(ctx context.Context, e env, op string, args []string) error {
	fs := newFlags(e, "mail "+op, "mail "+op+" ID... [--database-url URL]")
	dbFlag := fs.String("database-url", "", "Postgres URL (default $DATABASE_URL)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("%w: mail %s needs at least one job ID", errUsage, op)
	}
	var ids []int64
	for _, a := range fs.Args() {
		id, err := strconv.ParseInt(a, 10, 64)
		if err != nil || id <= 0 {
			return fmt.Errorf("%w: %q is not a job ID", errUsage, a)
		}
		ids = append(ids, id)
	}
	conn, err := connectFlag(ctx, e, *dbFlag)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	store := mailer.NewStore(conn)
	change := store.Cancel
	if op == "retry" {
		change = store.Retry
	}
	return changeJobs(ctx, e, op, "mail", ids, func(ctx context.Context, id int64) (string, error) {
		j, err := change(ctx, id)
		return j.State, err
	}, mailSchemaHint)
}

// mailSchemaHint turns "relation does not exist" into the fix.
func mailSchemaHint(err error) error {
	if err != nil && strings.Contains(err.Error(), "SQLSTATE 42P01") {
		return fmt.Errorf("%w (the mail tables are missing: run mailslotctl migrate)", err)
	}
	return err
}
