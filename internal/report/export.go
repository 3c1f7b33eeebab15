package report

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// ExportStatus selects leads by confirmation.
type ExportStatus string

// Export statuses.
const (
	// ExportConfirmed is the default: leads confirmed through the confirm
	// link and not withdrawn since.
	ExportConfirmed ExportStatus = "confirmed"
	// ExportUnconfirmed is leads whose consent is express or implied but
	// who never confirmed (single opt-in), and never pending ones, who
	// gave no consent yet, or implied ones whose consent has lapsed.
	ExportUnconfirmed ExportStatus = "unconfirmed"
	// ExportAll is both.
	ExportAll ExportStatus = "all"
)

// ParseExportStatus reads a --status value; empty means confirmed.
func ParseExportStatus(s string) (ExportStatus, error) {
	switch st := ExportStatus(strings.ToLower(strings.TrimSpace(s))); st {
	case ExportConfirmed, ExportUnconfirmed, ExportAll:
		return st, nil
	case "":
		return ExportConfirmed, nil
	}
	return "", fmt.Errorf("%w: status %q: want confirmed, unconfirmed or all", ErrInvalid, s)
}

// ExportOptions selects and shapes a lead export.
type ExportOptions struct {
	// Format is FormatCSV (a header row, then one lead per row) or
	// FormatJSON (one JSON object per line).
	Format Format
	// Property limits the export to one property; empty means all.
	Property string
	// Status is confirmed (the default), unconfirmed or all. Unconfirmed
	// leads go only when asked, and only of properties that run single
	// opt-in (mailslot.properties.double_opt_in false, set with
	// `mailslotctl properties set --double-opt-in off`): a property
	// that requires double opt-in, as every property does unless told
	// otherwise, never lets an unconfirmed lead leave.
	Status ExportStatus
	// Basis limits the export to one consent status: "", "express" or
	// "implied".
	Basis string
	// Since and Until select leads by their first sign-up, [Since,
	// Until); zero leaves that end open.
	Since, Until time.Time
	// By names who exports (recorded in mailslot.exports); required.
	By string
	// Progress, when set, is called every ProgressEvery rows (default
	// 10,000) with the rows written so far.
	Progress      func(rows int64)
	ProgressEvery int64
}

// ExportResult is what an export wrote and where it is recorded.
type ExportResult struct {
	ID   int64 `json:"id"` // mailslot.exports.id
	Rows int64 `json:"rows"`
}

// ExportedLead is one exported lead, the public fields a marketer mails
// with: never a hash, an IP or a token.
type ExportedLead struct {
	Email         string     `json:"email"`
	Name          string     `json:"name"`
	Property      string     `json:"property"`
	ConsentStatus string     `json:"consent_status"`
	ConsentBasis  string     `json:"consent_basis"`
	ConfirmedAt   *time.Time `json:"confirmed_at"`
	ExpressAt     *time.Time `json:"express_at"`
	ImpliedAt     *time.Time `json:"implied_at"`
	WithdrawnAt   *time.Time `json:"withdrawn_at"`
	FirstSource   string     `json:"first_source"`
	FirstMedium   string     `json:"first_medium"`
	FirstCampaign string     `json:"first_campaign"`
	FirstPage     string     `json:"first_page"`
	LastSource    string     `json:"last_source"`
	LastMedium    string     `json:"last_medium"`
	LastCampaign  string     `json:"last_campaign"`
	LastPage      string     `json:"last_page"`
	FirstSeenAt   time.Time  `json:"first_seen_at"`
	LastSeenAt    time.Time  `json:"last_seen_at"`
}

var exportColumns = []string{
	"email", "name", "property", "consent_status", "consent_basis", "confirmed_at", "express_at", "implied_at",
	"withdrawn_at", "first_source", "first_medium", "first_campaign", "first_page", "last_source", "last_medium",
	"last_campaign", "last_page", "first_seen_at", "last_seen_at",
}

// exportSQL selects the leads a marketer may mail: confirmed ones, and
// unconfirmed ones where the property runs single opt-in. Never a withdrawn
// lead, a suppressed one (a suppression a later confirmation has not
// overturned), or one an erasure covers (erasure deletes the lead; the
// tombstone check also covers a lead whose scrub has not run yet). The
// states come from mailslot.lead_states, the reports' own definition.
// Implied consent lapses as in cmd/mailslotctl/retention.go.
const exportSQL = `
SELECT l.email, coalesce(l.name, ''), l.property, l.consent_status, l.consent_basis,
       l.confirmed_at, l.express_at, l.implied_at, l.withdrawn_at,
       s.first_source, s.first_medium, s.first_campaign, coalesce(l.first_page, ''),
       s.last_source, s.last_medium, s.last_campaign, coalesce(l.last_page, ''),
       l.first_seen_at, l.last_seen_at
FROM mailslot.leads l
JOIN mailslot.lead_states s ON s.lead_id = l.id
LEFT JOIN mailslot.properties p ON p.property = l.property
LEFT JOIN LATERAL (
    SELECT c.source FROM mailslot.consent_records c
    WHERE l.consent_status = 'implied' AND c.lead_id = l.id AND c.status = 'implied'
    ORDER BY c.recorded_at DESC LIMIT 1) r ON true
WHERE NOT s.withdrawn AND NOT s.suppressed
  AND NOT EXISTS (SELECT 1 FROM mailslot.tombstones t WHERE t.email_hmac = l.email_hmac AND t.erased_at >= l.last_seen_at)
  AND ($1::text = '' OR l.property = $1)
  AND ($2::text = '' OR l.consent_status = $2)
  AND ($3::timestamptz IS NULL OR l.first_seen_at >= $3)
  AND ($4::timestamptz IS NULL OR l.first_seen_at < $4)
  AND CASE WHEN s.confirmed THEN $5::text IN ('confirmed', 'all')
           ELSE $5::text IN ('unconfirmed', 'all')
                AND NOT coalesce(p.double_opt_in, true)
                AND (l.consent_status = 'express'
                     OR (l.consent_status = 'implied'
                         AND l.implied_at + CASE WHEN r.source IN ('purchase', 'customer', 'ebr') THEN interval '730 days'
                                                 ELSE interval '183 days' END > now()))
      END
ORDER BY l.id`

// LeadsExport streams the leads a marketer may mail to w, in constant
// memory: rows go out as Postgres sends them. The export is recorded in
// mailslot.exports before the first row (who, when, the filter) and
// finished after the last (rows, state), so one that failed half-way is
// on record with the rows that left. db needs INSERT and UPDATE on
// mailslot.exports (the schema owner; not the reporting role).
func LeadsExport(ctx context.Context, db DB, w io.Writer, opt ExportOptions) (ExportResult, error) {
	status, err := ParseExportStatus(string(opt.Status))
	if err != nil {
		return ExportResult{}, err
	}
	if opt.Format != FormatCSV && opt.Format != FormatJSON {
		return ExportResult{}, fmt.Errorf("%w: export format %q: want csv or json", ErrInvalid, opt.Format)
	}
	switch opt.Basis {
	case "", "express", "implied":
	default:
		return ExportResult{}, fmt.Errorf("%w: basis %q: want express or implied", ErrInvalid, opt.Basis)
	}
	if strings.TrimSpace(opt.By) == "" {
		return ExportResult{}, fmt.Errorf("%w: an export must say who takes it", ErrInvalid)
	}
	var since, until *time.Time
	if !opt.Since.IsZero() {
		since = &opt.Since
	}
	if !opt.Until.IsZero() {
		until = &opt.Until
	}
	if since != nil && until != nil && !until.After(*since) {
		return ExportResult{}, fmt.Errorf("%w: until must be after since", ErrInvalid)
	}
	every := opt.ProgressEvery
	if every <= 0 {
		every = 10_000
	}

	filter, err := json.Marshal(map[string]any{
		"property": opt.Property, "status": status, "basis": opt.Basis, "since": since, "until": until,
	})
	if err != nil {
		return ExportResult{}, fmt.Errorf("encode export filter: %w", err)
	}
	var res ExportResult
	if err := db.QueryRow(ctx, `INSERT INTO mailslot.exports (format, filter, exported_by) VALUES ($1, $2, $3) RETURNING id`,
		string(opt.Format), filter, opt.By).Scan(&res.ID); err != nil {
		return ExportResult{}, fmt.Errorf("record export: %w", err)
	}

	res.Rows, err = streamLeads(ctx, db, w, opt.Format, status, opt, since, until, every)
	state, errText := "finished", ""
	if err != nil {
		state, errText = "failed", err.Error()
	}
	// The record must be finished even when ctx was cancelled.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, ferr := db.Exec(fctx, `UPDATE mailslot.exports SET rows = $2, state = $3, error = nullif($4, ''), finished_at = now() WHERE id = $1`,
		res.ID, res.Rows, state, errText); ferr != nil {
		return res, errors.Join(err, fmt.Errorf("finish export record %d: %w", res.ID, ferr))
	}
	return res, err
}

func streamLeads(ctx context.Context, db DB, w io.Writer, f Format, status ExportStatus, opt ExportOptions, since, until *time.Time, every int64) (int64, error) {
	bw := bufio.NewWriterSize(w, 64<<10)
	rows, err := db.Query(ctx, exportSQL, opt.Property, opt.Basis, since, until, string(status))
	if err != nil {
		return 0, fmt.Errorf("query leads to export: %w", err)
	}
	defer rows.Close()
	var (
		n    int64
		cw   *csv.Writer
		rec  []string
		line []byte
	)
	if f == FormatCSV {
		cw = csv.NewWriter(bw)
		if err := cw.Write(exportColumns); err != nil {
			return 0, fmt.Errorf("write export: %w", err)
		}
		rec = make([]string, len(exportColumns))
	}
	var l ExportedLead
	for rows.Next() {
		l = ExportedLead{}
		if err := rows.Scan(&l.Email, &l.Name, &l.Property, &l.ConsentStatus, &l.ConsentBasis,
			&l.ConfirmedAt, &l.ExpressAt, &l.ImpliedAt, &l.WithdrawnAt,
			&l.FirstSource, &l.FirstMedium, &l.FirstCampaign, &l.FirstPage,
			&l.LastSource, &l.LastMedium, &l.LastCampaign, &l.LastPage, &l.FirstSeenAt, &l.LastSeenAt); err != nil {
			return n, fmt.Errorf("read lead %d of export: %w", n+1, err)
		}
		utc(&l)
		if cw != nil {
			l.csvRecord(rec)
			err = cw.Write(rec)
		} else {
			line = appendJSONLine(line[:0], &l)
			_, err = bw.Write(line)
		}
		if err != nil {
			return n, fmt.Errorf("write export: %w", err)
		}
		n++
		if opt.Progress != nil && n%every == 0 {
			opt.Progress(n)
		}
	}
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("read leads to export: %w", err)
	}
	if cw != nil {
		cw.Flush()
		if err := cw.Error(); err != nil {
			return n, fmt.Errorf("write export: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return n, fmt.Errorf("write export: %w", err)
	}
	return n, nil
}

func utc(l *ExportedLead) {
	for _, p := range []**time.Time{&l.ConfirmedAt, &l.ExpressAt, &l.ImpliedAt, &l.WithdrawnAt} {
		if *p != nil {
			t := (*p).UTC()
			*p = &t
		}
	}
	l.FirstSeenAt, l.LastSeenAt = l.FirstSeenAt.UTC(), l.LastSeenAt.UTC()
}

func (l *ExportedLead) csvRecord(rec []string) {
	ts := func(t *time.Time) string {
		if t == nil {
			return ""
		}
		return t.Format(time.RFC3339Nano)
	}
	copy(rec, []string{
		csvSafe(l.Email), csvSafe(l.Name), csvSafe(l.Property), l.ConsentStatus, l.ConsentBasis,
		ts(l.ConfirmedAt), ts(l.ExpressAt), ts(l.ImpliedAt), ts(l.WithdrawnAt),
		csvSafe(l.FirstSource), csvSafe(l.FirstMedium), csvSafe(l.FirstCampaign), csvSafe(l.FirstPage),
		csvSafe(l.LastSource), csvSafe(l.LastMedium), csvSafe(l.LastCampaign), csvSafe(l.LastPage),
		ts(&l.FirstSeenAt), ts(&l.LastSeenAt),
	})
}
