package report_test

import (
	"context"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

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
//
// The load takes a quarter of an hour on two cores. With
// MAILSLOT_BENCH_KEEP_DB=name the data goes into that database, which is
// kept (and migrated on each run) and loaded only while it has no leads.
func BenchmarkReports(b *testing.B) {
	ctx := context.Background()
	db := benchDB(b)
	var loaded bool
	if err := db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM mailslot.leads)`).Scan(&loaded); err != nil {
		b.Fatal(err)
	}
	if !loaded {
		start := time.Now()
		reporttest.Bulk(b, db, envInt("MAILSLOT_BENCH_LEADS", 1_000_000), envInt("MAILSLOT_BENCH_EVENTS", 10_000_000))
		b.Logf("load: %s", time.Since(start).Round(time.Second))
	}

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
	for _, format := range []report.Format{report.FormatCSV, report.FormatJSON} {
		b.Run("export/confirmed-"+string(format), func(b *testing.B) {
			// The heap is sampled while the export runs: constant memory
			// means its peak does not grow with the rows.
			var peak atomic.Uint64
			stop := make(chan struct{})
			sampled := make(chan struct{})
			go func() {
				defer close(sampled)
				var ms runtime.MemStats
				for {
					runtime.ReadMemStats(&ms)
					if ms.HeapInuse > peak.Load() {
						peak.Store(ms.HeapInuse)
					}
					select {
					case <-stop:
						return
					case <-time.After(20 * time.Millisecond):
					}
				}
			}()
			var rows int64
			var ds []time.Duration
			for b.Loop() {
				t := time.Now()
				res, err := report.LeadsExport(ctx, db, io.Discard, report.ExportOptions{Format: format, By: "bench"})
				if err != nil {
					b.Fatal(err)
				}
				ds = append(ds, time.Since(t))
				rows = res.Rows
			}
			close(stop)
			<-sampled
			slices.Sort(ds)
			b.ReportMetric(float64(rows), "rows")
			b.ReportMetric(float64(rows)/ds[len(ds)/2].Seconds(), "p50-rows/s")
			b.ReportMetric(float64(peak.Load())/(1<<20), "heap-peak-MiB")
		})
	}
}

// benchDB is the kept database MAILSLOT_BENCH_KEEP_DB names, or a fresh one.
func benchDB(b *testing.B) *pgxpool.Pool {
	if name := os.Getenv("MAILSLOT_BENCH_KEEP_DB"); name != "" {
		return pgtest.Pool(b, pgtest.KeptURL(b, name))
	}
	return pgtest.New(b)
}
