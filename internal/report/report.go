// Package report reads what mailslot captured back out of Postgres for
// people: campaign, page, funnel, consent and image reports over the
// report views of pgschema/011_reports.sql, rendered as an aligned table,
// CSV or JSON; the export of leads a marketer may mail; and the monthly
// event partitions that retention drops.
//
// Reports are aggregates and hold no email, name, hash or IP: they read
// only the mailslot.report_* views, which a read-only role
// (mailslot_reporting) may also read. The export is the one place that
// hands out addresses, and every export is recorded in mailslot.exports.
//
// The package parses no flags; cmd/mailslotctl wires it.
package report

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DB is what the package needs of Postgres: a pool, a connection or a
// transaction.
type DB interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// ErrInvalid marks bad input: an unknown format, an empty range. The CLI
// maps it to a usage error.
var ErrInvalid = errors.New("invalid report option")

// Format is how a report or an export is written.
type Format string

// Formats. An export takes CSV or JSON; its JSON is one object per line
// (JSON Lines), so that it streams.
const (
	FormatTable Format = "table"
	FormatCSV   Format = "csv"
	FormatJSON  Format = "json"
)

// ParseFormat reads a --format value.
func ParseFormat(s string) (Format, error) {
	switch f := Format(strings.ToLower(strings.TrimSpace(s))); f {
	case FormatTable, FormatCSV, FormatJSON:
		return f, nil
	case "":
		return FormatTable, nil
	case "jsonl", "ndjson":
		return FormatJSON, nil
	}
	return "", fmt.Errorf("%w: format %q: want table, csv or json", ErrInvalid, s)
}

// Touch says which UTM a sign-up is credited to: the one it first came
// with (acquisition), or the latest.
type Touch string

// Touches.
const (
	TouchFirst Touch = "first"
	TouchLast  Touch = "last"
)

// ParseTouch reads a --touch value; empty means first.
func ParseTouch(s string) (Touch, error) {
	switch t := Touch(strings.ToLower(strings.TrimSpace(s))); t {
	case TouchFirst, TouchLast:
		return t, nil
	case "":
		return TouchFirst, nil
	}
	return "", fmt.Errorf("%w: touch %q: want first or last", ErrInvalid, s)
}

// Filter selects what a report covers.
type Filter struct {
	// Property limits the report to one property; empty means all.
	Property string
	// Since and Until select whole days (UTC): the report covers the days
	// from Since's date through Until's date, both included. A zero time
	// leaves that end open. Days are those of the first sign-up for
	// leads and of receipt for events.
	Since, Until time.Time
	// Touch is the attribution of the campaigns report; empty means
	// first.
	Touch Touch
}

// days returns the filter's bounds as UTC dates, nil when open.
func (f Filter) days() (since, until *time.Time, err error) {
	if !f.Since.IsZero() {
		d := utcDate(f.Since)
		since = &d
	}
	if !f.Until.IsZero() {
		d := utcDate(f.Until)
		until = &d
	}
	if since != nil && until != nil && until.Before(*since) {
		return nil, nil, fmt.Errorf("%w: until %s is before since %s", ErrInvalid, until.Format(time.DateOnly), since.Format(time.DateOnly))
	}
	return since, until, nil
}

func utcDate(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// RefreshResult says how many (day, property) pairs a refresh folded into
// the rollups.
type RefreshResult struct {
	LeadDays  int `json:"lead_days"`
	EventDays int `json:"event_days"`
}

// Refresh folds what changed since the last refresh into the report
// rollups. Reports are exact without it (the views compute changed days
// live), but each refresh keeps that live part, and so the reports, fast:
// the sync's maintenance loop or the CLI should call it every few
// minutes. It needs EXECUTE on mailslot.refresh_reports (the schema owner
// and the edge role have it; the reporting role does not).
func Refresh(ctx context.Context, db DB) (RefreshResult, error) {
	var r RefreshResult
	if err := db.QueryRow(ctx, `SELECT lead_days, event_days FROM mailslot.refresh_reports()`).Scan(&r.LeadDays, &r.EventDays); err != nil {
		return RefreshResult{}, fmt.Errorf("refresh report rollups: %w", err)
	}
	return r, nil
}

// Beginner is a pool or connection that begins transactions.
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// refreshLock is refresh_reports' advisory lock (pgschema 011).
const refreshLock = 7010002

// RefreshUnlessBusy is Refresh for a fleet: when another refresh holds
// the rollups' lock (another edge's), it returns at once with ran false
// instead of queueing behind it, since that refresh is folding the same
// marks.
func RefreshUnlessBusy(ctx context.Context, db Beginner) (r RefreshResult, ran bool, err error) {
	tx, err := db.Begin(ctx)
	if err != nil {
		return r, false, fmt.Errorf("refresh report rollups: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	// Taken in this transaction, the lock is refresh_reports' own: its
	// pg_advisory_xact_lock then returns at once.
	if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, refreshLock).Scan(&ran); err != nil {
		return r, false, fmt.Errorf("refresh report rollups: take the lock: %w", err)
	}
	if !ran {
		return r, false, nil
	}
	if r, err = Refresh(ctx, tx); err != nil {
		return r, false, err
	}
	if err := tx.Commit(ctx); err != nil {
		return RefreshResult{}, false, fmt.Errorf("refresh report rollups: commit: %w", err)
	}
	return r, true, nil
}
