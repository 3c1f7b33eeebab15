package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/mailslot/mailslot/internal/pgtest"
)

// Node ids come from Postgres, and Postgres is data: a node id that would
// turn --edge-template into another host's URL is refused, never asked.
func TestNodeIDsFromPostgresCannotSteerTheCLI(t *testing.T) {
	var hits atomic.Int64
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Error(w, "should never be asked", http.StatusTeapot)
	}))
	defer evil.Close()
	host := strings.TrimPrefix(evil.URL, "http://")

	dbURL := pgtest.NewURL(t)
	ids := []string{"x/../evil@host", "x@" + host + "/", host + "/x", host + "#"}
	pool := pgtest.Pool(t, dbURL)
	for _, id := range ids {
		if _, err := pool.Exec(context.Background(), `INSERT INTO mailslot.nodes (node_id, region) VALUES ($1, 'fra')`, id); err != nil {
			t.Fatal(err)
		}
	}
	env := privEnv(dbURL)
	tmpl := "http://{node}.edges.invalid:9090"
	for _, args := range [][]string{
		{"status", "--edge-template", tmpl},
		{"status", "--json", "--edge-template", tmpl},
		{"reconcile", "--json", "--edge-template", tmpl},
		{"export", "--edge-template", tmpl, privEmail},
	} {
		out, stderr, _ := privCtl(t, env, args...)
		if n := hits.Load(); n != 0 {
			t.Fatalf("mailslotctl %s sent %d request(s) to the host a node id named\n%s%s", args[0], n, out, stderr)
		}
		if c := strings.Count(out, "is not valid"); c < len(ids) {
			t.Errorf("mailslotctl %s reports %d refused node id(s), want %d:\n%s%s", args[0], c, len(ids), out, stderr)
		}
	}
}
