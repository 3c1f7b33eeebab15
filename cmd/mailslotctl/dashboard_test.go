package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mailslot/mailslot/internal/edgetest"
	"github.com/mailslot/mailslot/internal/pgtest"
	"github.com/mailslot/mailslot/internal/report/reporttest"
	"github.com/mailslot/mailslot/internal/testsync"
)

// TestDashboardCommand serves the dashboard as an operator runs it, reads
// the page, is refused under a foreign Host, and stops on the signal.
func TestDashboardCommand(t *testing.T) {
	dbURL := pgtest.NewURL(t)
	reporttest.LoadFixture(t, pgtest.Pool(t, dbURL))
	addr := edgetest.FreeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb testsync.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"dashboard", "--listen", addr, "--database-url", dbURL}, func(string) string { return "" }, &out, &errb)
	}()
	fetch := func(host string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
		if host != "" {
			req.Host = host
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	testsync.UntilState(t, 30*time.Second, "the dashboard answers", func() (bool, string) {
		code, body := fetch("")
		return code == http.StatusOK && strings.Contains(body, `id="kpi-signups"><b>11</b>`), body + errb.String()
	})
	if code, body := fetch("dash.attacker.example"); code != http.StatusForbidden || !strings.Contains(body, "host_not_allowed") {
		t.Errorf("foreign Host: %d %s", code, body)
	}
	if !strings.Contains(out.String(), "dashboard on http://"+addr+"/") {
		t.Errorf("stdout = %q, want the address", out.String())
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("dashboard returned %v after the signal", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the dashboard did not stop")
	}
}
