package report_test

import (
	"context"
	"io"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/mailslot/mailslot/internal/pgtest"
	"github.com/mailslot/mailslot/internal/report"
	"github.com/mailslot/mailslot/internal/report/reporttest"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkReports loads 1M leads and 10M events over a year
// (MAILSLOT_BENCH_LEADS and MAILSLOT_BENCH_EVENTS scale it), refreshes
// the rollups, and times each report. Each sub-benchmark also reports
// p50-ms, the median of its iterations; run with -benchtime=5x for "p50
// of 5":
//
//	MAILSLOT_TEST_DATABASE_URL=… go test -run '^$' -bench Reports -benchtime 5x -timeout 60m ./internal/report/
func BenchmarkReports(b *testing.B) {
	db := pgtest.New(b)
	ctx := context.Background()
	start := time.Now()
	reporttest.Bulk(b, db, envInt("MAILSLOT_BENCH_LEADS", 1_000_000), envInt("MAILSLOT_BENCH_EVENTS", 10_000_000))
	b.Logf("load: %s", time.Since(start).Round(time.Second))

	// Before any refresh every day is dirty: the views compute it all
	// live. Time one report that way, then the refresh that folds it.
	t0 := time.Now()
	if _, err := report.Funnel(ctx, db, report.Filter{Since: time.Now().AddDate(0, 0, -30)}); err != nil {
		b.Fatal(err)
	}
	b.Logf("funnel, 30 days, all live (no refresh yet): %s", time.Since(t0).Round(time.Millisecond))
	t0 = time.Now()
	res, err := report.Refresh(ctx, db)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("first refresh (%d lead days, %d event days): %s", res.LeadDays, res.EventDays, time.Since(t0).Round(time.Millisecond))
	if _, err := db.Exec(ctx, `VACUUM ANALYZE mailslot.rollup_dirty, mailslot.rollup_lead_pages, mailslot.rollup_lead_campaigns, mailslot.rollup_events`); err != nil {
		b.Fatal(err)
	}

	month := report.Filter{Since: time.Now().AddDate(0, 0, -30)}
	cases := []struct {
		name string
		run  func() error
	}{
		{"campaigns/all-time", func() error { _, err := report.Campaigns(ctx, db, report.Filter{}); return err }},
		{"campaigns/30d", func() error { _, err := report.Campaigns(ctx, db, month); return err }},
		{"pages/all-time", func() error { _, err := report.Pages(ctx, db, report.Filter{}); return err }},
		{"funnel/30d", func() error { _, err := report.Funnel(ctx, db, month); return err }},
		{"funnel/all-time", func() error { _, err := report.Funnel(ctx, db, report.Filter{}); return err }},
		{"consent", func() error { _, err := report.Consent(ctx, db, report.Filter{}); return err }},
		{"images", func() error { _, err := report.Images(ctx, db, report.Filter{}, 0); return err }},
		{"refresh/idle", func() error { _, err := report.Refresh(ctx, db); return err }},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			var ds []time.Duration
			for b.Loop() {
				t := time.Now()
				if err := c.run(); err != nil {
					b.Fatal(err)
				}
				ds = append(ds, time.Since(t))
			}
			slices.Sort(ds)
			b.ReportMetric(float64(ds[len(ds)/2].Microseconds())/1000, "p50-ms")
		})
	}
	b.Run("export/confirmed-csv", func(b *testing.B) {
		for b.Loop() {
			res, err := report.LeadsExport(ctx, db, io.Discard, report.ExportOptions{Format: report.FormatCSV, By: "bench"})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(res.Rows), "rows")
		}
	})
}
