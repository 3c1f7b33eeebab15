package report_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/mailslot/mailslot/internal/report"
)

// The images report shows spend as money and the budget's share as a
// rate, in every format; no budget is "-", empty or null.
func TestImagesRowsInEveryFormat(t *testing.T) {
	budget, used := 10.0, 0.25
	rows := []report.ImageRow{
		{Month: "2026-11", Jobs: 4, Succeeded: 3, Failed: 1, Predictions: 6, PredictSeconds: 12.5, SpendUSD: 2.5, BudgetUSD: &budget, BudgetUsed: &used},
		{Month: "2026-12", Jobs: 1, Queued: 1},
	}
	for _, tc := range []struct {
		format string
		want   []string
	}{
		{"csv", []string{"month,jobs,queued,running,failed,succeeded,dead,cancelled,predictions,predict_seconds,spend_usd,budget_usd,budget_used",
			"2026-11,4,0,0,1,3,0,0,6,12.5,2.5,10,0.25", "2026-12,1,1,0,0,0,0,0,0,0,0,,"}},
		{"json", []string{`"spend_usd": 2.5`, `"budget_usd": 10`, `"budget_used": 0.25`, `"budget_usd": null`}},
		{"table", []string{"MONTH", "2026-11", "25.0%"}},
	} {
		f, err := report.ParseFormat(tc.format)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if err := report.Write(&b, f, rows); err != nil {
			t.Fatalf("%s: %v", tc.format, err)
		}
		for _, w := range tc.want {
			if !strings.Contains(b.String(), w) {
				t.Errorf("%s output lacks %q:\n%s", tc.format, w, b.String())
			}
		}
	}
}
