package drain_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/mailslot/mailslot/internal/pgtest"
	"github.com/mailslot/mailslot/internal/report"
	"github.com/mailslot/mailslot/internal/testsync"
	"github.com/mailslot/mailslot/sync/drain"
)

// monthsAhead names the partitions of this month and the EventMonthsAhead
// after it.
func monthsAhead() []string {
	now := time.Now().UTC()
	first := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	var names []string
	for i := range drain.EventMonthsAhead + 1 {
		names = append(names, first.AddDate(0, i, 0).Format("events_2006_01"))
	}
	return names
}

func TestSyncKeepsEventPartitionsAhead(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewURL(t)
	pool := pgtest.Pool(t, dbURL)
	ctx := context.Background()
	want := monthsAhead()
	// As if the last migration ran months ago: the months ahead are
	// missing.
	for _, name := range want[1:] {
		if _, err := pool.Exec(ctx, fmt.Sprintf(`ALTER TABLE mailslot.events DETACH PARTITION mailslot.%s; DROP TABLE mailslot.%[1]s`, name)); err != nil {
			t.Fatalf("drop %s: %v", name, err)
		}
	}
	has := func() (bool, string) {
		parts, err := report.EventPartitions(ctx, pool)
		if err != nil {
			return false, err.Error()
		}
		var names []string
		for _, p := range parts {
			names = append(names, p.Name)
		}
		for _, w := range want {
			if !slices.Contains(names, w) {
				return false, fmt.Sprint(names)
			}
		}
		return true, fmt.Sprint(names)
	}
	if ok, _ := has(); ok {
		t.Fatal("the months ahead were not dropped")
	}
	e := newEdge(t, "node-partitions")
	e.start(dbURL)
	testsync.UntilState(t, 30*time.Second, "partitions "+fmt.Sprint(want), has)
}
