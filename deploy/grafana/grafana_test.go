package grafana_test

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/mailslot/mailslot/deploy/grafana"
)

// Metric names as the code declares them: hot-path instruments
// (internal/metrics) and samples read at scrape time from each
// component's status ({Name: "…", Help: "…"}). Read from the source so
// that a renamed metric breaks this test, wherever the package moves.
var (
	instrumentRe = regexp.MustCompile(`Namespace:\s*namespace,\s*Name:\s*"([a-z0-9_]+)"`)
	sampleRe     = regexp.MustCompile(`\{Name:\s*"([a-z0-9_]+)",\s*Help:`)
	histogramRe  = regexp.MustCompile(`prometheus\.NewHistogramVec\(prometheus\.HistogramOpts\{\s*Namespace:\s*namespace,\s*Name:\s*"([a-z0-9_]+)"`)
	metricRe     = regexp.MustCompile(`\bmailslot_[a-z0-9_]+`)
)

func declaredMetrics(t *testing.T) map[string]bool {
	t.Helper()
	root := filepath.Join("..", "..")
	names := map[string]bool{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "node_modules" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range instrumentRe.FindAllSubmatch(src, -1) {
			names["mailslot_"+string(m[1])] = true
		}
		for _, m := range sampleRe.FindAllSubmatch(src, -1) {
			names["mailslot_"+string(m[1])] = true
		}
		for _, m := range histogramRe.FindAllSubmatch(src, -1) {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				names["mailslot_"+string(m[1])+suffix] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("read metric names from the source: %v", err)
	}
	// The regexps must find the metrics we know exist, or every check
	// below would pass on nothing.
	for _, known := range []string{"mailslot_submissions_accepted_total", "mailslot_outbox_pending_rows", "mailslot_sync_lag_seconds",
		"mailslot_replica_lag_seconds", "mailslot_erasures_applied_total", "mailslot_image_jobs_queued",
		"mailslot_http_request_duration_seconds_bucket"} {
		if !names[known] {
			t.Fatalf("metric %s not found in the source (found %d names): the patterns above need updating", known, len(names))
		}
	}
	return names
}

type dashboard struct {
	Title  string `json:"title"`
	UID    string `json:"uid"`
	Panels []struct {
		ID      int    `json:"id"`
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

func TestDashboardNamesOnlyRealMetrics(t *testing.T) {
	var d dashboard
	if err := json.Unmarshal(grafana.Dashboard, &d); err != nil {
		t.Fatalf("mailslot.json: %v", err)
	}
	if d.Title == "" || d.UID == "" || len(d.Panels) == 0 {
		t.Fatalf("dashboard lacks a title, uid or panels")
	}
	declared := declaredMetrics(t)
	used := map[string]bool{}
	var exprs []string
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if !metricRe.MatchString(tg.Expr) {
				t.Errorf("panel %q: expr %q names no mailslot metric", p.Title, tg.Expr)
			}
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, v := range d.Templating.List {
		if s, ok := v.Query.(string); ok {
			exprs = append(exprs, s)
		}
	}
	for _, e := range exprs {
		if strings.Count(e, "(") != strings.Count(e, ")") || strings.Count(e, "{") != strings.Count(e, "}") {
			t.Errorf("expr %q has unbalanced brackets", e)
		}
		for _, m := range metricRe.FindAllString(e, -1) {
			used[m] = true
			if !declared[m] {
				t.Errorf("expr %q names %s, which no edge exports", e, m)
			}
		}
	}
	// What operators must see.
	for _, need := range []string{"mailslot_submissions_accepted_total", "mailslot_outbox_pending_rows",
		"mailslot_outbox_oldest_pending_seconds", "mailslot_sync_lag_seconds", "mailslot_replica_lag_seconds",
		"mailslot_erasures_applied_total", "mailslot_image_jobs_queued", "mailslot_image_jobs_dead"} {
		if !used[need] {
			t.Errorf("the dashboard does not show %s", need)
		}
	}
	var names []string
	for m := range used {
		names = append(names, m)
	}
	slices.Sort(names)
	t.Logf("dashboard uses %d metrics: %v", len(names), names)
}
