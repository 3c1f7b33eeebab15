package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mailslot/mailslot/internal/report"
)

const reportUsage = `usage: mailslotctl report <report> [--property P] [--since DATE] [--until DATE] [--format table|csv|json]

reports (aggregates only: no address, name or hash):
  campaigns  sign-ups per UTM source/medium/campaign (--touch first|last)
  pages      the funnel per page: page views, form submits, sign-ups, confirmed
  funnel     the same funnel per day and property
  consent    pending confirmations, confirmation and unsubscribe rates, implied consent lapsing (now; no dates)
  images     image-description jobs and spend per month (--budget USD)

DATE is YYYY-MM-DD (UTC); --since and --until are whole days, both included.
`

// dateFlag is a YYYY-MM-DD flag value, UTC; zero when not given.
type dateFlag struct{ t time.Time }

func (d *dateFlag) String() string {
	if d.t.IsZero() {
		return ""
	}
	return d.t.Format(time.DateOnly)
}

func (d *dateFlag) Set(s string) error {
	t, err := time.ParseInLocation(time.DateOnly, s, time.UTC)
	if err != nil {
		return fmt.Errorf("want a date such as 2026-03-01")
	}
	d.t = t
	return nil
}

// parseFlags parses; a bad flag value is the caller's fault (the flag
// package has already said which on stderr).
func parseFlags(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	return err
}

// reportErr maps the report package's bad-input errors to usage errors.
func reportErr(err error) error {
	if errors.Is(err, report.ErrInvalid) {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	return err
}

func runReport(ctx context.Context, e env, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(e.stderr, reportUsage)
		if len(args) > 0 {
			return flag.ErrHelp
		}
		return errUsage
	}
	which := args[0]
	switch which {
	case "campaigns", "pages", "funnel", "consent", "images":
	default:
		fmt.Fprint(e.stderr, reportUsage)
		return fmt.Errorf("%w: unknown report %q", errUsage, which)
	}
	fs := newFlags(e, "report "+which, "report "+which+" [--property P] [--since DATE] [--until DATE] [--format table|csv|json] [--database-url URL]")
	dbFlag := fs.String("database-url", "", "Postgres URL; the mailslot_reporting role may read every report (default $DATABASE_URL)")
	var f report.Filter
	var since, until dateFlag
	fs.StringVar(&f.Property, "property", "", "one property only (default all)")
	fs.Var(&since, "since", "first day, YYYY-MM-DD (UTC)")
	fs.Var(&until, "until", "last day, YYYY-MM-DD (UTC), included")
	formatFlag := fs.String("format", "table", "table for people, csv or json for scripts")
	touch := fs.String("touch", "first", "campaigns: credit the first or the last touch")
	budget := fs.Float64("budget", 0, "images: monthly budget in USD (default the database setting mailslot.image_monthly_budget_usd)")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	format, err := report.ParseFormat(*formatFlag)
	if err != nil {
		return reportErr(err)
	}
	if f.Touch, err = report.ParseTouch(*touch); err != nil {
		return reportErr(err)
	}
	f.Since, f.Until = since.t, until.t
	if !f.Since.IsZero() && !f.Until.IsZero() && f.Until.Before(f.Since) {
		return fmt.Errorf("%w: --until %s is before --since %s", errUsage, until.String(), since.String())
	}
	if which == "consent" && (!f.Since.IsZero() || !f.Until.IsZero()) {
		return fmt.Errorf("%w: the consent report is the state now: it takes no --since or --until", errUsage)
	}
	if which == "images" && f.Property != "" {
		return fmt.Errorf("%w: image jobs belong to no property: drop --property", errUsage)
	}
	if *budget < 0 {
		return fmt.Errorf("%w: --budget must not be negative", errUsage)
	}
	conn, err := connectFlag(ctx, e, *dbFlag)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	w := bufio.NewWriter(e.stdout)
	switch which {
	case "campaigns":
		err = writeReport(ctx, conn, w, format, f, report.Campaigns)
	case "pages":
		err = writeReport(ctx, conn, w, format, f, report.Pages)
	case "funnel":
		err = writeReport(ctx, conn, w, format, f, report.Funnel)
	case "consent":
		err = writeReport(ctx, conn, w, format, f, report.Consent)
	case "images":
		err = writeReport(ctx, conn, w, format, f, func(ctx context.Context, db report.DB, f report.Filter) ([]report.ImageRow, error) {
			return report.Images(ctx, db, f, *budget)
		})
	}
	if err != nil {
		return reportErr(err)
	}
	return w.Flush()
}

func writeReport[R report.Row](ctx context.Context, db report.DB, w io.Writer, format report.Format, f report.Filter,
	query func(context.Context, report.DB, report.Filter) ([]R, error)) error {
	rows, err := query(ctx, db, f)
	if err != nil {
		return err
	}
	return report.Write(w, format, rows)
}

const leadsUsage = `usage: mailslotctl leads export [--property P] [--status confirmed|unconfirmed|all] [--basis express|implied]
                              [--since DATE] [--until DATE] [--format csv|jsonl] [--output FILE] [--by NAME]

Streams the leads a marketer may mail: confirmed by default, unconfirmed ones
only when asked and only of single opt-in properties; never withdrawn,
suppressed, erased or pending ones, nor lapsed implied consent. Every export
is recorded in mailslot.exports (who, when, the filter, the rows).
`

func runLeads(ctx context.Context, e env, args []string) error {
	if len(args) == 0 || args[0] != "export" {
		fmt.Fprint(e.stderr, leadsUsage)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			return flag.ErrHelp
		}
		return errUsage
	}
	fs := newFlags(e, "leads export", "leads export [--property P] [--status confirmed|unconfirmed|all] [--since DATE] [--until DATE] [--format csv|jsonl] [--output FILE] [--by NAME] [--database-url URL]")
	dbFlag := fs.String("database-url", "", "Postgres URL of the schema owner: the export is recorded (default $DATABASE_URL)")
	var opt report.ExportOptions
	var since, until dateFlag
	fs.StringVar(&opt.Property, "property", "", "one property only (default all)")
	status := fs.String("status", "confirmed", "confirmed, unconfirmed (of single opt-in properties only) or all")
	fs.StringVar(&opt.Basis, "basis", "", "one consent basis only: express or implied")
	fs.Var(&since, "since", "leads first signed up on or after this day, YYYY-MM-DD (UTC)")
	fs.Var(&until, "until", "leads first signed up on or before this day, YYYY-MM-DD (UTC), included")
	formatFlag := fs.String("format", "csv", "csv (a header row) or jsonl (one JSON object per line)")
	output := fs.String("output", "", "write to this file (created 0600) instead of stdout")
	by := fs.String("by", "", "who takes the export, recorded with it (default $USER)")
	fs.Int64Var(&opt.ProgressEvery, "progress-every", 10_000, "print a progress line on stderr every this many rows")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	switch *formatFlag {
	case "csv":
		opt.Format = report.FormatCSV
	case "jsonl":
		opt.Format = report.FormatJSON
	default:
		return fmt.Errorf("%w: --format %q: want csv or jsonl", errUsage, *formatFlag)
	}
	var err error
	if opt.Status, err = report.ParseExportStatus(*status); err != nil {
		return reportErr(err)
	}
	if opt.ProgressEvery <= 0 {
		return fmt.Errorf("%w: --progress-every must be positive", errUsage)
	}
	opt.Since = since.t
	if !until.t.IsZero() {
		opt.Until = until.t.AddDate(0, 0, 1) // the whole last day
	}
	if !opt.Since.IsZero() && !opt.Until.IsZero() && !opt.Until.After(opt.Since) {
		return fmt.Errorf("%w: --until %s is before --since %s", errUsage, until.String(), since.String())
	}
	opt.By = exporter(e, *by)
	if opt.By == "" {
		return fmt.Errorf("%w: say who takes the export: --by NAME (or set $USER)", errUsage)
	}
	conn, err := connectFlag(ctx, e, *dbFlag)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return exportLeads(ctx, e, conn, opt, *output)
}

// exporter is who an export is recorded as: --by, else $USER, else the
// account running the command.
func exporter(e env, by string) string {
	if by != "" {
		return by
	}
	if u := e.getenv("USER"); u != "" {
		return u
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return ""
}

func exportLeads(ctx context.Context, e env, conn *pgx.Conn, opt report.ExportOptions, output string) (err error) {
	out := e.stdout
	if output != "" {
		file, oerr := os.OpenFile(output, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if oerr != nil {
			return fmt.Errorf("create the export file: %w", oerr)
		}
		defer func() {
			if cerr := file.Close(); cerr != nil && err == nil {
				err = fmt.Errorf("write the export file: %w", cerr)
			}
			// A half-written file of addresses is not left behind.
			if err != nil {
				_ = os.Remove(output)
			}
		}()
		out = file
	}
	w := bufio.NewWriterSize(out, 64<<10)
	opt.Progress = func(rows int64) { fmt.Fprintf(e.stderr, "exported %d lead(s)…\n", rows) }
	res, err := report.LeadsExport(ctx, conn, w, opt)
	if ferr := w.Flush(); err == nil && ferr != nil {
		err = fmt.Errorf("write the export: %w", ferr)
	}
	if err != nil {
		if res.ID != 0 {
			return fmt.Errorf("%w (recorded as export %d)", reportErr(err), res.ID)
		}
		return reportErr(err)
	}
	fmt.Fprintf(e.stderr, "exported %d lead(s) (recorded as export %d in mailslot.exports)\n", res.Rows, res.ID)
	return nil
}
