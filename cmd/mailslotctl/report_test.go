package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailslot/mailslot/internal/pgtest"
	"github.com/mailslot/mailslot/internal/report"
	"github.com/mailslot/mailslot/internal/report/reporttest"
	"github.com/mailslot/mailslot/sync/drain"
)

func rate(v float64) *float64 { return &v }
func days(v int64) *int64     { return &v }

// TestReportCommand runs every report in every format against the
// reporttest fixture. The numbers are the ones worked out by hand in
// internal/report's tests.
func TestReportCommand(t *testing.T) {
	dbURL := pgtest.NewURL(t)
	f := reporttest.LoadFixture(t, pgtest.Pool(t, dbURL))
	d1, d2 := f.Day(f.D1), f.Day(f.D2)
	db := []string{"--database-url", dbURL}

	tests := []struct {
		name  string
		args  []string
		json  any // a pointer to the rows JSON decodes into
		want  any
		csv   []string
		table [][]string // cells of the header and each row
	}{
		{
			name: "campaigns",
			args: []string{"campaigns"},
			json: &[]report.CampaignRow{},
			want: &[]report.CampaignRow{
				{Property: reporttest.Shop, Touch: "first", Signups: 6, Confirmed: 1, Unconfirmed: 4, Withdrawn: 1, Suppressed: 1, ConfirmRate: rate(0.1667)},
				{Property: reporttest.Shop, Touch: "first", Source: "ads", Medium: "cpc", Campaign: "summer", Signups: 2, Confirmed: 1, Unconfirmed: 1, Suppressed: 1, ConfirmRate: rate(0.5)},
				{Property: reporttest.Shop, Touch: "first", Source: "news", Medium: "email", Campaign: "spring", Signups: 2, Confirmed: 1, Unconfirmed: 1, ConfirmRate: rate(0.5)},
				{Property: reporttest.Blog, Touch: "first", Signups: 1, Confirmed: 1, ConfirmRate: rate(1)},
			},
			csv: []string{
				"property,touch,source,medium,campaign,signups,confirmed,unconfirmed,withdrawn,suppressed,confirm_rate",
				"shop.example,first,,,,6,1,4,1,1,0.1667",
				"shop.example,first,ads,cpc,summer,2,1,1,0,1,0.5",
				"shop.example,first,news,email,spring,2,1,1,0,0,0.5",
				"blog.example,first,,,,1,1,0,0,0,1",
			},
			table: [][]string{
				{"PROPERTY", "TOUCH", "SOURCE", "MEDIUM", "CAMPAIGN", "SIGNUPS", "CONFIRMED", "UNCONFIRMED", "WITHDRAWN", "SUPPRESSED", "CONFIRM RATE"},
				{"shop.example", "first", "-", "-", "-", "6", "1", "4", "1", "1", "16.7%"},
				{"shop.example", "first", "ads", "cpc", "summer", "2", "1", "1", "0", "1", "50.0%"},
				{"shop.example", "first", "news", "email", "spring", "2", "1", "1", "0", "0", "50.0%"},
				{"blog.example", "first", "-", "-", "-", "1", "1", "0", "0", "0", "100.0%"},
			},
		},
		{
			name: "campaigns, last touch, shop, since D2",
			args: []string{"campaigns", "--touch", "last", "--property", reporttest.Shop, "--since", d2},
			json: &[]report.CampaignRow{},
			want: &[]report.CampaignRow{
				{Property: reporttest.Shop, Touch: "last", Signups: 3, Confirmed: 1, Unconfirmed: 2, ConfirmRate: rate(0.3333)},
				{Property: reporttest.Shop, Touch: "last", Source: "ads", Medium: "cpc", Campaign: "summer", Signups: 2, Confirmed: 1, Unconfirmed: 1, Suppressed: 1, ConfirmRate: rate(0.5)},
			},
			csv: []string{
				"property,touch,source,medium,campaign,signups,confirmed,unconfirmed,withdrawn,suppressed,confirm_rate",
				"shop.example,last,,,,3,1,2,0,0,0.3333",
				"shop.example,last,ads,cpc,summer,2,1,1,0,1,0.5",
			},
		},
		{
			name: "pages",
			args: []string{"pages"},
			json: &[]report.PageRow{},
			want: &[]report.PageRow{
				{Property: reporttest.Shop, Page: "/pricing", FunnelCounts: report.FunnelCounts{PageViews: 7, FormSubmits: 4, FormAccepted: 3, Signups: 7, Confirmed: 2,
					SubmitRate: rate(0.5714), AcceptRate: rate(1.75), SignupRate: rate(1), ConfirmRate: rate(0.2857)}},
				{Property: reporttest.Blog, Page: "/post", FunnelCounts: report.FunnelCounts{PageViews: 5, FormSubmits: 1, FormAccepted: 1, Signups: 1, Confirmed: 1,
					SubmitRate: rate(0.2), AcceptRate: rate(1), SignupRate: rate(0.2), ConfirmRate: rate(1)}},
				{Property: reporttest.Shop, Page: "/", FunnelCounts: report.FunnelCounts{PageViews: 3, FormSubmits: 1, FormAccepted: 1, Signups: 3, Confirmed: 1,
					SubmitRate: rate(0.3333), AcceptRate: rate(3), SignupRate: rate(1), ConfirmRate: rate(0.3333)}},
			},
			csv: []string{
				"property,page,page_views,form_submits,form_accepted,signups,confirmed,submit_rate,accept_rate,signup_rate,confirm_rate",
				"shop.example,/pricing,7,4,3,7,2,0.5714,1.75,1,0.2857",
				"blog.example,/post,5,1,1,1,1,0.2,1,0.2,1",
				"shop.example,/,3,1,1,3,1,0.3333,3,1,0.3333",
			},
			table: [][]string{
				{"PROPERTY", "PAGE", "PAGE VIEWS", "FORM SUBMITS", "FORM ACCEPTED", "SIGNUPS", "CONFIRMED", "SUBMIT RATE", "ACCEPT RATE", "SIGNUP RATE", "CONFIRM RATE"},
				{"shop.example", "/pricing", "7", "4", "3", "7", "2", "57.1%", "175.0%", "100.0%", "28.6%"},
				{"blog.example", "/post", "5", "1", "1", "1", "1", "20.0%", "100.0%", "20.0%", "100.0%"},
				{"shop.example", "/", "3", "1", "1", "3", "1", "33.3%", "300.0%", "100.0%", "33.3%"},
			},
		},
		{
			name: "funnel",
			args: []string{"funnel"},
			json: &[]report.FunnelRow{},
			want: &[]report.FunnelRow{
				{Day: d1, Property: reporttest.Blog, FunnelCounts: report.FunnelCounts{PageViews: 5, FormSubmits: 1, FormAccepted: 1, Signups: 1, Confirmed: 1,
					SubmitRate: rate(0.2), AcceptRate: rate(1), SignupRate: rate(0.2), ConfirmRate: rate(1)}},
				{Day: d1, Property: reporttest.Shop, FunnelCounts: report.FunnelCounts{PageViews: 6, FormSubmits: 2, FormAccepted: 1, Signups: 5, Confirmed: 1,
					SubmitRate: rate(0.3333), AcceptRate: rate(2.5), SignupRate: rate(0.8333), ConfirmRate: rate(0.2)}},
				{Day: d2, Property: reporttest.Shop, FunnelCounts: report.FunnelCounts{PageViews: 4, FormSubmits: 3, FormAccepted: 3, Signups: 5, Confirmed: 2,
					SubmitRate: rate(0.75), AcceptRate: rate(1.6667), SignupRate: rate(1.25), ConfirmRate: rate(0.4)}},
			},
			csv: []string{
				"day,property,page_views,form_submits,form_accepted,signups,confirmed,submit_rate,accept_rate,signup_rate,confirm_rate",
				d1 + ",blog.example,5,1,1,1,1,0.2,1,0.2,1",
				d1 + ",shop.example,6,2,1,5,1,0.3333,2.5,0.8333,0.2",
				d2 + ",shop.example,4,3,3,5,2,0.75,1.6667,1.25,0.4",
			},
			table: [][]string{
				{"DAY", "PROPERTY", "PAGE VIEWS", "FORM SUBMITS", "FORM ACCEPTED", "SIGNUPS", "CONFIRMED", "SUBMIT RATE", "ACCEPT RATE", "SIGNUP RATE", "CONFIRM RATE"},
				{d1, "blog.example", "5", "1", "1", "1", "1", "20.0%", "100.0%", "20.0%", "100.0%"},
				{d1, "shop.example", "6", "2", "1", "5", "1", "33.3%", "250.0%", "83.3%", "20.0%"},
				{d2, "shop.example", "4", "3", "3", "5", "2", "75.0%", "166.7%", "125.0%", "40.0%"},
			},
		},
		{
			name: "funnel of shop on D2",
			args: []string{"funnel", "--property", reporttest.Shop, "--since", d2, "--until", d2},
			csv: []string{
				"day,property,page_views,form_submits,form_accepted,signups,confirmed,submit_rate,accept_rate,signup_rate,confirm_rate",
				d2 + ",shop.example,4,3,3,5,2,0.75,1.6667,1.25,0.4",
			},
		},
		{
			name: "consent",
			args: []string{"consent"},
			json: &[]report.ConsentRow{},
			want: &[]report.ConsentRow{
				{Property: reporttest.Blog, Signups: 1, Confirmed: 1, ConfirmationRate: rate(1), UnsubscribeRate: rate(0)},
				{Property: reporttest.Shop, Signups: 10, Pending: 2, PendingMedianAgeDays: days(3), PendingMaxAgeDays: days(10),
					Confirmed: 3, ConfirmationRate: rate(0.3), Withdrawn: 1, UnsubscribeRate: rate(0.1), Suppressed: 2,
					Implied: 3, ImpliedLapsing30d: 1, ImpliedLapsed: 1},
			},
			csv: []string{
				"property,signups,pending,pending_median_age_days,pending_max_age_days,confirmed,confirmation_rate,withdrawn,unsubscribe_rate,suppressed,implied,implied_lapsing_30d,implied_lapsed",
				"blog.example,1,0,,,1,1,0,0,0,0,0,0",
				"shop.example,10,2,3,10,3,0.3,1,0.1,2,3,1,1",
			},
			table: [][]string{
				{"PROPERTY", "SIGNUPS", "PENDING", "PENDING MEDIAN AGE DAYS", "PENDING MAX AGE DAYS", "CONFIRMED", "CONFIRMATION RATE", "WITHDRAWN", "UNSUBSCRIBE RATE", "SUPPRESSED", "IMPLIED", "IMPLIED LAPSING 30D", "IMPLIED LAPSED"},
				{"blog.example", "1", "0", "-", "-", "1", "100.0%", "0", "0.0%", "0", "0", "0", "0"},
				{"shop.example", "10", "2", "3", "10", "3", "30.0%", "1", "10.0%", "2", "3", "1", "1"},
			},
		},
		{
			name: "an empty range",
			args: []string{"pages", "--since", f.Day(f.D1.AddDate(0, 0, 1)), "--until", f.Day(f.D1.AddDate(0, 0, 2))},
			json: &[]report.PageRow{},
			want: &[]report.PageRow{},
			csv:  []string{"property,page,page_views,form_submits,form_accepted,signups,confirmed,submit_rate,accept_rate,signup_rate,confirm_rate"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			run := func(format string) string {
				t.Helper()
				args := append(append([]string{"report"}, tt.args...), append([]string{"--format", format}, db...)...)
				out, stderr, err := ctl(t, nil, args...)
				if err != nil {
					t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, stderr)
				}
				return out
			}
			if tt.json != nil {
				out := run("json")
				if err := json.Unmarshal([]byte(out), tt.json); err != nil {
					t.Fatalf("JSON: %v\n%s", err, out)
				}
				if !reflect.DeepEqual(tt.json, tt.want) {
					t.Errorf("JSON:\n got %s\nwant %+v", out, tt.want)
				}
			}
			if got := strings.Split(strings.TrimRight(run("csv"), "\n"), "\n"); !slices.Equal(got, tt.csv) {
				t.Errorf("CSV:\n got %q\nwant %q", got, tt.csv)
			}
			if tt.table != nil {
				// The default format is the table.
				args := append(append([]string{"report"}, tt.args...), db...)
				out, _, err := ctl(t, nil, args...)
				if err != nil {
					t.Fatal(err)
				}
				if got := columns(out); !reflect.DeepEqual(got, tt.table) {
					t.Errorf("table:\n%s\nwant cells %q", out, tt.table)
				}
			}
		})
	}
}

func TestReportUsageErrors(t *testing.T) {
	db := []string{"--database-url", closedURL(t)}
	tests := []struct {
		name string
		args []string
		want string // in the error or on stderr
	}{
		{"no report", []string{"report"}, "usage: mailslotctl report"},
		{"unknown report", []string{"report", "visitors"}, `unknown report "visitors"`},
		{"bad format", append([]string{"report", "pages", "--format", "xml"}, db...), `format "xml"`},
		{"bad date", append([]string{"report", "pages", "--since", "last week"}, db...), "2026-03-01"},
		{"until before since", append([]string{"report", "funnel", "--since", "2026-03-02", "--until", "2026-03-01"}, db...), "before --since"},
		{"bad touch", append([]string{"report", "campaigns", "--touch", "middle"}, db...), `touch "middle"`},
		{"consent with dates", append([]string{"report", "consent", "--since", "2026-03-01"}, db...), "state now"},
		{"images with a property", append([]string{"report", "images", "--property", "a.example"}, db...), "no property"},
		{"stray argument", append([]string{"report", "pages", "extra"}, db...), `unexpected argument "extra"`},
		{"unknown flag", []string{"report", "pages", "--visitor", "x"}, "flag provided but not defined"},
		{"no database", []string{"report", "pages"}, "no database"},
		{"leads without export", []string{"leads"}, "usage: mailslotctl leads export"},
		{"leads bad format", append([]string{"leads", "export", "--format", "xlsx"}, db...), "want csv or jsonl"},
		{"leads bad status", append([]string{"leads", "export", "--status", "withdrawn"}, db...), `status "withdrawn"`},
		{"leads bad date", append([]string{"leads", "export", "--until", "soon"}, db...), "2026-03-01"},
		{"leads until before since", append([]string{"leads", "export", "--since", "2026-03-02", "--until", "2026-03-01"}, db...), "before --since"},
		{"dashboard on a public address", []string{"dashboard", "--listen", "0.0.0.0:8090"}, "loopback only"},
		{"dashboard bad address", []string{"dashboard", "--listen", "8090"}, "want host:port"},
		{"leads bad progress", append([]string{"leads", "export", "--progress-every", "0"}, db...), "positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, stderr, err := ctl(t, nil, tt.args...)
			if exitCode(err) != 2 {
				t.Fatalf("err = %v (exit %d), want a usage error\n%s", err, exitCode(err), stderr)
			}
			if msg := err.Error() + "\n" + stderr; !strings.Contains(msg, tt.want) {
				t.Errorf("error %q, stderr %q; want %q in them", err, stderr, tt.want)
			}
			if out != "" {
				t.Errorf("stdout = %q, want nothing", out)
			}
		})
	}
}

// exportedEmails reads the email column of an exported CSV.
func exportedEmails(t *testing.T, out string) []string {
	t.Helper()
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil || len(recs) == 0 || recs[0][0] != "email" {
		t.Fatalf("export is not a CSV with an email column (%v):\n%s", err, out)
	}
	var emails []string
	for _, r := range recs[1:] {
		emails = append(emails, r[0])
	}
	return emails
}

func TestLeadsExportCommand(t *testing.T) {
	dbURL := pgtest.NewURL(t)
	pool := pgtest.Pool(t, dbURL)
	f := reporttest.LoadFixture(t, pool)
	env := map[string]string{"DATABASE_URL": dbURL, "USER": "marketer"}
	ctx := context.Background()
	// The shop runs single opt-in, so its unconfirmed leads may go when
	// asked for; the blog keeps the default, double opt-in.
	if _, stderr, err := ctl(t, env, "properties", "set", "--property", reporttest.Shop, "--double-opt-in", "off"); err != nil {
		t.Fatalf("properties set: %v\n%s", err, stderr)
	}
	// Never exported, whatever the filter: cat withdrew, eve is suppressed
	// everywhere, kim was erased, bob and joy never consented, hal's
	// implied consent lapsed.
	never := []string{"cat@fixture.example", "eve@fixture.example", "kim@fixture.example", "bob@fixture.example", "joy@fixture.example", "hal@fixture.example"}

	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"confirmed by default", nil, []string{"ann@fixture.example", "fay@fixture.example", "ivy@fixture.example"}},
		{"all", []string{"--status", "all"}, []string{"ann@fixture.example", "kit@fixture.example", "dan@fixture.example", "fay@fixture.example", "gus@fixture.example", "ivy@fixture.example"}},
		{"unconfirmed only", []string{"--status", "unconfirmed"}, []string{"kit@fixture.example", "dan@fixture.example", "gus@fixture.example"}},
		{"one property", []string{"--status", "all", "--property", reporttest.Blog}, []string{"ivy@fixture.example"}},
		{"signed up on D2", []string{"--status", "all", "--since", f.Day(f.D2), "--until", f.Day(f.D2)}, []string{"dan@fixture.example", "fay@fixture.example", "gus@fixture.example"}},
		{"until D1", []string{"--until", f.Day(f.D1)}, []string{"ann@fixture.example", "ivy@fixture.example"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, stderr, err := ctl(t, env, append([]string{"leads", "export"}, tt.args...)...)
			if err != nil {
				t.Fatalf("leads export: %v\n%s", err, stderr)
			}
			got := exportedEmails(t, out)
			if !slices.Equal(got, tt.want) {
				t.Errorf("exported %q, want %q", got, tt.want)
			}
			for _, e := range never {
				if strings.Contains(out, e) {
					t.Errorf("the export holds %s", e)
				}
			}
			var by string
			var rows int64
			if err := pool.QueryRow(ctx, `SELECT exported_by, rows FROM mailslot.exports WHERE state = 'finished' ORDER BY id DESC LIMIT 1`).Scan(&by, &rows); err != nil {
				t.Fatal(err)
			}
			if by != "marketer" || rows != int64(len(tt.want)) {
				t.Errorf("export recorded as by %q with %d rows, want marketer and %d", by, rows, len(tt.want))
			}
		})
	}

	t.Run("jsonl to a file, with progress and --by", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "leads.jsonl")
		out, stderr, err := ctl(t, env, "leads", "export", "--status", "all", "--format", "jsonl", "--output", file, "--progress-every", "2", "--by", "ops@agency")
		if err != nil {
			t.Fatalf("leads export: %v\n%s", err, stderr)
		}
		if out != "" {
			t.Errorf("stdout = %q, want nothing: the export went to the file", out)
		}
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("export file mode = %v (%v), want 0600", fi.Mode().Perm(), err)
		}
		var emails []string
		for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
			var l report.ExportedLead
			if err := json.Unmarshal(line, &l); err != nil {
				t.Fatalf("line %q: %v", line, err)
			}
			emails = append(emails, l.Email)
		}
		if len(emails) != 6 {
			t.Errorf("exported %q, want the 6 leads of --status all", emails)
		}
		wantErr := "exported 2 lead(s)…\nexported 4 lead(s)…\nexported 6 lead(s)…\nexported 6 lead(s) (recorded as export"
		if !strings.HasPrefix(stderr, wantErr) {
			t.Errorf("stderr = %q, want progress every 2 rows then the total", stderr)
		}
		var by string
		if err := pool.QueryRow(ctx, `SELECT exported_by FROM mailslot.exports ORDER BY id DESC LIMIT 1`).Scan(&by); err != nil || by != "ops@agency" {
			t.Errorf("recorded by %q (%v), want ops@agency", by, err)
		}
	})

	t.Run("after an erasure the address is gone", func(t *testing.T) {
		out, _, err := ctl(t, env, "leads", "export")
		if err != nil || !strings.Contains(out, "ann@fixture.example") {
			t.Fatalf("before the erasure: %v\n%s", err, out)
		}
		if _, err := drain.Erase(ctx, pool, reporttest.Hash("ann@fixture.example"), time.Now().UTC(), "operator"); err != nil {
			t.Fatalf("erase: %v", err)
		}
		out, stderr, err := ctl(t, env, "leads", "export", "--status", "all")
		if err != nil {
			t.Fatalf("leads export: %v\n%s", err, stderr)
		}
		if strings.Contains(out, "ann@fixture.example") || strings.Contains(out, "Ann Fixture") {
			t.Errorf("the export after the erasure still holds the address:\n%s", out)
		}
		if got := exportedEmails(t, out); len(got) != 5 {
			t.Errorf("exported %q, want the 5 others", got)
		}
	})
}
