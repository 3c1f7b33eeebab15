package report_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/mailslot/mailslot/internal/pgtest"
	"github.com/mailslot/mailslot/internal/report"
	"github.com/mailslot/mailslot/internal/report/reporttest"
)

func TestLeadsExport(t *testing.T) {
	db := pgtest.New(t)
	f := loadFixture(t, db)
	ctx := context.Background()
	// jon confirmed, and an erasure's tombstone covers him though the
	// scrub has not deleted his lead yet: he must not leave either.
	reporttest.InsertLead(t, db, reporttest.Lead{Property: shop, Email: "jon@fixture.example", Page: "/", FirstSeen: f.d2,
		Basis: "express", ExpressAt: f.d2, ConfirmedAt: f.d2})
	if _, err := db.Exec(ctx, `INSERT INTO mailslot.tombstones (email_hmac, erased_at, requested_by) VALUES ($1, now(), 'admin')`,
		reporttest.Hash("jon@fixture.example")); err != nil {
		t.Fatal(err)
	}
	// shop runs single opt-in; blog has no settings, so it requires
	// double opt-in, and lou, who signed up there with an unconfirmed
	// express consent, never leaves.
	if _, err := db.Exec(ctx, `INSERT INTO mailslot.properties (property, double_opt_in) VALUES ($1, false)`, shop); err != nil {
		t.Fatal(err)
	}
	reporttest.InsertLead(t, db, reporttest.Lead{Property: blog, Email: "lou@fixture.example", Page: "/post", FirstSeen: f.d2,
		Basis: "express", ExpressAt: f.d2})
	tests := []struct {
		name string
		opt  report.ExportOptions
		want []string
	}{
		// never cat (withdrawn), eve (suppressed), kim (erased), jon
		// (tombstone); fay confirmed after her suppression.
		{"confirmed by default", report.ExportOptions{}, []string{"ann", "fay", "ivy"}},
		// never bob or joy (pending: no consent) or hal (implied, lapsed).
		{"unconfirmed when asked", report.ExportOptions{Status: report.ExportUnconfirmed}, []string{"kit", "dan", "gus"}},
		{"all", report.ExportOptions{Status: report.ExportAll}, []string{"ann", "kit", "dan", "fay", "gus", "ivy"}},
		{"one property", report.ExportOptions{Status: report.ExportAll, Property: blog}, []string{"ivy"}},
		{"implied only", report.ExportOptions{Status: report.ExportAll, Basis: "implied"}, []string{"kit", "dan"}},
		{"first seen since D2", report.ExportOptions{Since: f.d2}, []string{"fay"}},
		{"first seen before D2", report.ExportOptions{Until: f.d2}, []string{"ann", "ivy"}},
	}
	for _, tt := range tests {
		for _, format := range []report.Format{report.FormatCSV, report.FormatJSON} {
			t.Run(tt.name+" "+string(format), func(t *testing.T) {
				opt := tt.opt
				opt.Format, opt.By = format, "test:"+tt.name
				var b bytes.Buffer
				res, err := report.LeadsExport(ctx, db, &b, opt)
				if err != nil {
					t.Fatal(err)
				}
				got := exportedLocals(t, format, b.Bytes())
				if !reflect.DeepEqual(got, tt.want) {
					t.Errorf("exported %v, want %v", got, tt.want)
				}
				if res.Rows != int64(len(tt.want)) {
					t.Errorf("Rows = %d, want %d", res.Rows, len(tt.want))
				}
				var rows int64
				var state, by, fmtName, status string
				if err := db.QueryRow(ctx, `SELECT rows, state, exported_by, format, filter->>'status' FROM mailslot.exports WHERE id = $1 AND finished_at IS NOT NULL`, res.ID).
					Scan(&rows, &state, &by, &fmtName, &status); err != nil {
					t.Fatalf("export %d not recorded: %v", res.ID, err)
				}
				wantStatus := string(tt.opt.Status)
				if wantStatus == "" {
					wantStatus = "confirmed"
				}
				if rows != res.Rows || state != "finished" || by != opt.By || fmtName != string(format) || status != wantStatus {
					t.Errorf("export record = %d %s %s %s %s", rows, state, by, fmtName, status)
				}
			})
		}
	}
	var n int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM mailslot.exports`).Scan(&n); err != nil || n != 2*len(tests) {
		t.Errorf("mailslot.exports has %d rows, %v; want one per export (%d)", n, err, 2*len(tests))
	}

	// shop turns double opt-in on: asking for unconfirmed leads gets none.
	if _, err := db.Exec(ctx, `UPDATE mailslot.properties SET double_opt_in = true WHERE property = $1`, shop); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if _, err := report.LeadsExport(ctx, db, &b, report.ExportOptions{Format: report.FormatCSV, Status: report.ExportAll, By: "test"}); err != nil {
		t.Fatal(err)
	}
	if got, want := exportedLocals(t, report.FormatCSV, b.Bytes()), []string{"ann", "fay", "ivy"}; !reflect.DeepEqual(got, want) {
		t.Errorf("all leads, every property double opt-in: exported %v, want the confirmed %v", got, want)
	}
}

func TestLeadsExportFields(t *testing.T) {
	db := pgtest.New(t)
	f := loadFixture(t, db)
	ctx := context.Background()
	var b bytes.Buffer
	if _, err := report.LeadsExport(ctx, db, &b, report.ExportOptions{Format: report.FormatCSV, By: "test", Property: shop, Until: f.d2}); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&b).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	wantHead := "email,name,property,consent_status,consent_basis,confirmed_at,express_at,implied_at,withdrawn_at," +
		"first_source,first_medium,first_campaign,first_page,last_source,last_medium,last_campaign,last_page,first_seen_at,last_seen_at"
	if len(recs) != 2 || strings.Join(recs[0], ",") != wantHead {
		t.Fatalf("csv = %q", recs)
	}
	ann := recs[1]
	want := []string{"ann@fixture.example", "Ann Fixture", shop, "express", "express",
		f.d1.Add(3600e9).Format("2006-01-02T15:04:05Z07:00"), f.d1.Add(3600e9).Format("2006-01-02T15:04:05Z07:00"), "", "",
		"news", "email", "spring", "/pricing", "news", "email", "spring", "/pricing",
		f.d1.Format("2006-01-02T15:04:05Z07:00"), f.d1.Format("2006-01-02T15:04:05Z07:00")}
	if !reflect.DeepEqual(ann, want) {
		t.Errorf("ann:\n got %q\nwant %q", ann, want)
	}

	b.Reset()
	if _, err := report.LeadsExport(ctx, db, &b, report.ExportOptions{Format: report.FormatJSON, By: "test", Property: blog}); err != nil {
		t.Fatal(err)
	}
	var ivy map[string]any
	if err := json.Unmarshal(b.Bytes(), &ivy); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"email_hmac", "ip_hmac", "id"} {
		if _, ok := ivy[k]; ok {
			t.Errorf("JSON export carries %s", k)
		}
	}
	if ivy["email"] != "ivy@fixture.example" || ivy["first_page"] != "/post" || ivy["withdrawn_at"] != nil || ivy["consent_status"] != "express" {
		t.Errorf("ivy = %v", ivy)
	}
}

func TestLeadsExportProgressAndFailure(t *testing.T) {
	db := pgtest.New(t)
	loadFixture(t, db)
	ctx := context.Background()
	if _, err := db.Exec(ctx, `INSERT INTO mailslot.properties (property, double_opt_in) VALUES ($1, false)`, shop); err != nil {
		t.Fatal(err)
	}
	var seen []int64
	res, err := report.LeadsExport(ctx, db, &bytes.Buffer{}, report.ExportOptions{Format: report.FormatJSON, By: "test",
		Status: report.ExportAll, ProgressEvery: 2, Progress: func(n int64) { seen = append(seen, n) }})
	if err != nil || res.Rows != 6 {
		t.Fatalf("export = %+v, %v", res, err)
	}
	if !reflect.DeepEqual(seen, []int64{2, 4, 6}) {
		t.Errorf("progress calls %v, want [2 4 6]", seen)
	}

	// A writer that breaks: the export fails, and its record says so.
	res, err = report.LeadsExport(ctx, db, brokenWriter{}, report.ExportOptions{Format: report.FormatJSON, By: "test", Status: report.ExportAll, ProgressEvery: 1})
	if !errors.Is(err, errBroken) {
		t.Fatalf("export to a broken writer: %v", err)
	}
	var state, errText string
	if err := db.QueryRow(ctx, `SELECT state, error FROM mailslot.exports WHERE id = $1`, res.ID).Scan(&state, &errText); err != nil {
		t.Fatal(err)
	}
	if state != "failed" || !strings.Contains(errText, "broken") || strings.Contains(errText, "@") {
		t.Errorf("failed export record = %s %q", state, errText)
	}

	bad := []report.ExportOptions{
		{Format: report.FormatTable, By: "x"},
		{Format: report.FormatCSV},
		{Format: report.FormatCSV, By: "x", Status: "everyone"},
		{Format: report.FormatCSV, By: "x", Basis: "pending"},
	}
	for _, opt := range bad {
		if _, err := report.LeadsExport(ctx, db, &bytes.Buffer{}, opt); !errors.Is(err, report.ErrInvalid) {
			t.Errorf("LeadsExport(%+v) = %v, want ErrInvalid", opt, err)
		}
	}
}

var errBroken = errors.New("broken pipe")

type brokenWriter struct{}

func (brokenWriter) Write([]byte) (int, error) { return 0, errBroken }

// exportedLocals returns the local parts of the exported addresses, in
// order.
func exportedLocals(t *testing.T, f report.Format, out []byte) []string {
	t.Helper()
	var emails []string
	switch f {
	case report.FormatCSV:
		recs, err := csv.NewReader(bytes.NewReader(out)).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs[1:] {
			emails = append(emails, r[0])
		}
	case report.FormatJSON:
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			var l report.ExportedLead
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				t.Fatalf("line %q: %v", sc.Text(), err)
			}
			emails = append(emails, l.Email)
		}
	}
	locals := []string{}
	for _, e := range emails {
		locals = append(locals, strings.TrimSuffix(e, "@fixture.example"))
	}
	return locals
}
