package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailslot/mailslot/edge"
	"github.com/mailslot/mailslot/internal/edgetest"
	"github.com/mailslot/mailslot/internal/pgtest"
	"github.com/mailslot/mailslot/internal/pii"
	"github.com/mailslot/mailslot/internal/testsync"
	"github.com/mailslot/mailslot/internal/token"
	"github.com/mailslot/mailslot/sync/drain"
)

// The privacy commands, run in-process through run() against a fresh
// Postgres 18 database and, where they talk to edges, an edge node running
// in the test process.

const (
	privEmail = "dana.priv@example.com"
	privOther = "eli.priv@example.com"
)

var privHash = pii.NewHasher([]byte(edgetest.IPPepper))

// privCtl runs mailslotctl with env.
func privCtl(t *testing.T, env map[string]string, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := run(ctx, args, func(k string) string { return env[k] }, &out, &errb)
	return out.String(), errb.String(), err
}

// privEnv is an operator's environment: the fleet's pepper and token key.
func privEnv(dbURL string) map[string]string {
	return map[string]string{
		"DATABASE_URL":       dbURL,
		"MAILSLOT_IP_PEPPER": edgetest.IPPepper,
		"MAILSLOT_TOKEN_KEY": edgetest.TokenKey,
	}
}

// privNode runs an edge node in this process, syncing into dbURL, and
// returns its public and private base URLs.
func privNode(t *testing.T, dbURL string) (public, private string) {
	t.Helper()
	cfg := edgetest.Config(t, map[string]string{
		"MAILSLOT_NODE_ID": "priv-edge", "DATABASE_URL": dbURL,
		"MAILSLOT_ADDR": "127.0.0.1:0", "MAILSLOT_PRIVATE_ADDR": "127.0.0.1:0",
		"MAILSLOT_SYNC_INTERVAL": "20ms", "MAILSLOT_TOMBSTONE_INTERVAL": "50ms",
	})
	n, err := edge.Open(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("open node: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("node run: %v", err)
		}
	})
	return "http://" + n.Addr(), "http://" + n.PrivateAddr()
}

func privPost(t *testing.T, url, body string, header ...string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// privWaitSynced waits until the edge has nothing pending.
func privWaitSynced(t *testing.T, private string) {
	t.Helper()
	testsync.Until(t, 30*time.Second, "the edge to sync", func() bool {
		resp, err := http.Get(private + "/v1/sync/status")
		if err == nil {
			var st struct {
				Pending     int64 `json:"pending"`
				RowsSynced  int64 `json:"rows_synced"`
				Quarantined int64 `json:"quarantined"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			if st.Quarantined > 0 {
				t.Fatalf("edge quarantined %d rows", st.Quarantined)
			}
			if st.Pending == 0 && st.RowsSynced > 0 {
				return true
			}
		}
		return false
	})
}

// privFill signs up privEmail (with a linked event) and privOther at the
// edge and waits until Postgres has them.
func privFill(t *testing.T, public, private string) {
	t.Helper()
	code, b := privPost(t, public+"/v1/leads", `{"email":"`+privEmail+`","property":"shop.example","consent":"implied","name":"Dana"}`)
	if code != http.StatusAccepted {
		t.Fatalf("sign-up: %d %s", code, b)
	}
	var ans struct{ ID string }
	_ = json.Unmarshal(b, &ans)
	if code, b := privPost(t, public+"/v1/events", `{"type":"form_submit","property":"shop.example","submission_id":"`+ans.ID+`"}`); code != http.StatusAccepted {
		t.Fatalf("event: %d %s", code, b)
	}
	if code, b := privPost(t, public+"/v1/leads", `{"email":"`+privOther+`","property":"shop.example","consent":"express"}`); code != http.StatusAccepted {
		t.Fatalf("sign-up: %d %s", code, b)
	}
	privWaitSynced(t, private)
}

func privCount(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

type privExport struct {
	EmailHMAC      string            `json:"email_hmac"`
	Leads          []json.RawMessage `json:"leads"`
	ConsentRecords []json.RawMessage `json:"consent_records"`
	Events         []json.RawMessage `json:"events"`
	Suppressions   []json.RawMessage `json:"suppressions"`
	Tombstones     []json.RawMessage `json:"tombstones"`
	Edges          []struct {
		URL  string `json:"url"`
		Rows *struct {
			NodeID string `json:"node_id"`
			Rows   []struct {
				Kind    string          `json:"kind"`
				Payload json.RawMessage `json:"payload"`
			} `json:"rows"`
		} `json:"rows"`
		Error string `json:"error"`
	} `json:"edges"`
}

func TestExportAndEraseCommands(t *testing.T) {
	dbURL := pgtest.NewURL(t)
	pool := pgtest.Pool(t, dbURL)
	public, private := privNode(t, dbURL)
	privFill(t, public, private)
	env := privEnv(dbURL)

	// export: everything Postgres holds of the address, and each edge's rows.
	out, stderr, err := privCtl(t, env, "export", "--edge", private, "--edge", "http://"+edgetest.FreeAddr(t), "  Dana.Priv@Example.com ")
	if err != nil {
		t.Fatalf("export: %v\n%s", err, stderr)
	}
	var doc privExport
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("export is not JSON: %v\n%s", err, out)
	}
	if len(doc.Leads) != 1 || !strings.Contains(string(doc.Leads[0]), `"email": "`+privEmail+`"`) ||
		len(doc.ConsentRecords) != 1 || len(doc.Events) != 1 || len(doc.Suppressions) != 0 || len(doc.Tombstones) != 0 {
		t.Errorf("export from Postgres: %d leads, %d consent records, %d events, %d suppressions, %d tombstones; want 1, 1, 1, 0, 0\n%s",
			len(doc.Leads), len(doc.ConsentRecords), len(doc.Events), len(doc.Suppressions), len(doc.Tombstones), out)
	}
	if strings.Contains(out, privOther) {
		t.Errorf("export includes another address")
	}
	if len(doc.Edges) != 2 {
		t.Fatalf("export asked %d edges, want 2", len(doc.Edges))
	}
	if e := doc.Edges[0]; e.URL != private || e.Error != "" || e.Rows == nil || e.Rows.NodeID != "priv-edge" ||
		len(e.Rows.Rows) != 1 || e.Rows.Rows[0].Kind != "lead" || !strings.Contains(string(e.Rows.Rows[0].Payload), privEmail) {
		t.Errorf("running edge's part of the export: %+v", e)
	}
	if e := doc.Edges[1]; e.Error == "" || e.Rows != nil {
		t.Errorf("an unreachable edge is reported as %+v, want an error", e)
	}
	// The public listener wants the admin token.
	out, _, err = privCtl(t, env, "export", "--edge", public, privEmail)
	if err != nil || !strings.Contains(out, "refused the admin token") {
		t.Errorf("export through the public listener without a token: %v\n%s", err, out)
	}
	withToken := privEnv(dbURL)
	withToken["MAILSLOT_ADMIN_TOKEN"] = edgetest.AdminToken
	out, _, err = privCtl(t, withToken, "export", "--edge", public, privEmail)
	doc = privExport{}
	_ = json.Unmarshal([]byte(out), &doc)
	if err != nil || len(doc.Edges) != 1 || doc.Edges[0].Error != "" || doc.Edges[0].Rows == nil || len(doc.Edges[0].Rows.Rows) != 1 {
		t.Errorf("export through the public listener with the token: %v\n%s", err, out)
	}

	// erase: counts what it removed.
	out, stderr, err = privCtl(t, env, "erase", privEmail)
	if err != nil {
		t.Fatalf("erase: %v\n%s", err, stderr)
	}
	if want := "erased: 1 lead(s) deleted, 0 reset to later sign-ups, 1 consent record(s) and 1 event(s) scrubbed"; !strings.Contains(out, want) {
		t.Errorf("erase printed %q, want %q", out, want)
	}
	h := privHash.Email(privEmail)
	if n := privCount(t, pool, `SELECT count(*) FROM mailslot.tombstones WHERE email_hmac = $1 AND requested_by = 'operator'`, h); n != 1 {
		t.Errorf("%d tombstones, want 1", n)
	}
	if n := privCount(t, pool, `SELECT count(*) FROM mailslot.leads WHERE email_hmac = $1`, privHash.Email(privOther)); n != 1 {
		t.Errorf("the other address's lead is gone")
	}
	// A second erase finds nothing, in JSON for scripts.
	out, _, err = privCtl(t, env, "erase", "--json", privEmail)
	if err != nil {
		t.Fatal(err)
	}
	var res drain.EraseResult
	if err := json.Unmarshal([]byte(out), &res); err != nil || res != (drain.EraseResult{}) {
		t.Errorf("second erase --json = %s (%v), want all zero", out, err)
	}

	// The edge pulls the tombstone and scrubs its outbox; export shows the
	// address gone everywhere but the tombstone and suppression.
	if ok, _ := testsync.Within(20*time.Second, func() (bool, string) {
		out, _, err = privCtl(t, env, "export", "--edge", private, privEmail)
		if err != nil {
			t.Fatal(err)
		}
		doc = privExport{}
		_ = json.Unmarshal([]byte(out), &doc)
		return len(doc.Edges) == 1 && doc.Edges[0].Rows != nil && len(doc.Edges[0].Rows.Rows) == 0, ""
	}); !ok {
		t.Fatalf("the edge still holds the address 20s after the erasure:\n%s", out)
	}
	if len(doc.Leads)+len(doc.ConsentRecords)+len(doc.Events) != 0 || len(doc.Suppressions) != 1 || len(doc.Tombstones) != 2 {
		t.Errorf("export after erasure: %s", out)
	}
	if strings.Contains(out, privEmail) {
		t.Errorf("export after erasure still quotes the address")
	}
}

func TestLinksCommand(t *testing.T) {
	env := privEnv("")
	out, stderr, err := privCtl(t, env, "links", "--json", "--property", "shop.example", "--public-url", "https://edge.example/", "Dana.Priv@example.com")
	if err != nil {
		t.Fatalf("links: %v\n%s", err, stderr)
	}
	var links []struct {
		Purpose string    `json:"purpose"`
		URL     string    `json:"url"`
		Expires time.Time `json:"expires"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil {
		t.Fatalf("links --json: %v\n%s", err, out)
	}
	keys, err := token.ParseKeys(edgetest.TokenKey)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	paths := map[string]string{token.Confirm: "/v1/confirm", token.Unsubscribe: "/v1/unsubscribe", token.Erase: "/v1/erasure"}
	if len(links) != 3 {
		t.Fatalf("%d links, want 3: %s", len(links), out)
	}
	for i, want := range []string{token.Confirm, token.Unsubscribe, token.Erase} {
		l := links[i]
		u, err := url.Parse(l.URL)
		if err != nil || l.Purpose != want || u.Scheme != "https" || u.Host != "edge.example" || u.Path != paths[want] {
			t.Errorf("link %d = %+v, want %s at https://edge.example%s", i, l, want, paths[want])
			continue
		}
		c, err := keys.Verify(u.Query().Get("token"), want, now)
		if err != nil {
			t.Errorf("%s token does not verify with the edges' keys: %v", want, err)
			continue
		}
		if !bytes.Equal(c.EmailHMAC, privHash.Email(privEmail)) || c.Property != "shop.example" || !c.Expires.Equal(l.Expires) {
			t.Errorf("%s token claims %+v, want the normalized address's hash, shop.example, expiry %s", want, c, l.Expires)
		}
		for other := range paths {
			if _, err := keys.Verify(u.Query().Get("token"), other, now); other != want && !errors.Is(err, token.ErrWrongPurpose) {
				t.Errorf("%s token used for %s: err = %v, want ErrWrongPurpose", want, other, err)
			}
		}
		if l.Expires.Before(now.Add(7 * 24 * time.Hour)) {
			t.Errorf("%s link expires %s: too soon to be usable", want, l.Expires)
		}
	}
	if unsub := links[1]; unsub.Expires.Before(now.Add(60 * 24 * time.Hour)) {
		t.Errorf("unsubscribe link expires %s, before 60 days (CASL)", unsub.Expires)
	}
	// The table form shows the same three.
	out, _, err = privCtl(t, env, "links", "--property", "shop.example", "--public-url", "https://edge.example", privEmail)
	if err != nil || strings.Count(out, "https://edge.example/v1/") != 3 {
		t.Errorf("links table: %v\n%s", err, out)
	}

	// In development the edges default MAILSLOT_PUBLIC_URL to their own
	// address, and so does the CLI; production has no default.
	prodEnv := maps.Clone(env)
	prodEnv["MAILSLOT_ENV"], prodEnv["MAILSLOT_ADMIN_TOKEN"] = "production", edgetest.AdminToken
	for _, c := range []struct {
		name string
		env  map[string]string
		args []string
	}{
		{"no property", env, []string{"links", "--public-url", "https://edge.example", privEmail}},
		{"bad property", env, []string{"links", "--property", "shop example", "--public-url", "https://edge.example", privEmail}},
		{"no public URL in production", prodEnv, []string{"links", "--property", "shop.example", privEmail}},
		{"public URL not http", env, []string{"links", "--property", "shop.example", "--public-url", "ftp://edge.example", privEmail}},
		{"bad email", env, []string{"links", "--property", "shop.example", "--public-url", "https://edge.example", "not-an-address"}},
		{"no token key", map[string]string{"MAILSLOT_IP_PEPPER": edgetest.IPPepper}, []string{"links", "--property", "shop.example", "--public-url", "https://edge.example", privEmail}},
		{"no pepper", map[string]string{"MAILSLOT_TOKEN_KEY": edgetest.TokenKey}, []string{"links", "--property", "shop.example", "--public-url", "https://edge.example", privEmail}},
	} {
		out, _, err := privCtl(t, c.env, c.args...)
		if !errors.Is(err, errUsage) {
			t.Errorf("%s: err = %v, want a usage error", c.name, err)
		}
		if strings.Contains(out, "token=") {
			t.Errorf("%s: printed links anyway", c.name)
		}
	}
}

func TestPrivacyCommandErrors(t *testing.T) {
	noPepper := map[string]string{"DATABASE_URL": closedURL(t)}
	for _, c := range []struct {
		name     string
		env      map[string]string
		args     []string
		mentions string
	}{
		{"erase without pepper", noPepper, []string{"erase", privEmail}, "MAILSLOT_IP_PEPPER"},
		{"export without pepper", noPepper, []string{"export", privEmail}, "MAILSLOT_IP_PEPPER"},
		{"erase bad email", privEnv(closedURL(t)), []string{"erase", "dana at example"}, "not a valid email"},
		{"export bad email", privEnv(closedURL(t)), []string{"export", "Dana <dana@example.com>"}, "not a valid email"},
		{"erase two addresses", privEnv(closedURL(t)), []string{"erase", privEmail, privOther}, "exactly one"},
		{"erase no address", privEnv(closedURL(t)), []string{"erase"}, "exactly one"},
		{"erase without database", privEnv(""), []string{"erase", privEmail}, "no database"},
		{"consent without lapsed", privEnv(closedURL(t)), []string{"consent"}, ""},
		{"consent bad ttl", privEnv(closedURL(t)), []string{"consent", "lapsed", "--ttl", "inquiry=soon"}, "--ttl"},
		{"purge too recent", privEnv(closedURL(t)), []string{"purge-events", "--older-than", "1h"}, "at least 24h"},
	} {
		_, _, err := privCtl(t, c.env, c.args...)
		if !errors.Is(err, errUsage) {
			t.Errorf("%s: err = %v, want a usage error", c.name, err)
			continue
		}
		if !strings.Contains(err.Error(), c.mentions) {
			t.Errorf("%s: error %q does not mention %q", c.name, err, c.mentions)
		}
	}
}

// insertLead stores a lead and its latest consent record directly.
func insertLead(t *testing.T, pool *pgxpool.Pool, email, basis, source string, impliedAt time.Time) {
	t.Helper()
	ctx := context.Background()
	var id int64
	var express any
	if basis == "express" {
		express = impliedAt.Add(time.Hour)
	}
	err := pool.QueryRow(ctx, `
		INSERT INTO mailslot.leads (property, email, email_hmac, consent_basis, implied_at, express_at, first_seen_at, last_seen_at)
		VALUES ('shop.example', $1, $2, $3, $4, $5, $4, $4) RETURNING id`,
		email, privHash.Email(email), basis, impliedAt, express).Scan(&id)
	if err != nil {
		t.Fatalf("insert lead: %v", err)
	}
	var src any
	if source != "" {
		src = source
	}
	_, err = pool.Exec(ctx, `
		INSERT INTO mailslot.consent_records (lead_id, submission_id, email_hmac, property, status, source, recorded_at, origin_node, origin_seq)
		VALUES ($1, $2, $3, 'shop.example', 'implied', $4, $5, 'test', $1)`, id, uuid.New(), privHash.Email(email), src, impliedAt)
	if err != nil {
		t.Fatalf("insert consent record: %v", err)
	}
}

func TestConsentLapsedCommand(t *testing.T) {
	dbURL := pgtest.NewURL(t)
	pool := pgtest.Pool(t, dbURL)
	day := 24 * time.Hour
	now := time.Now().UTC()
	insertLead(t, pool, "old-inquiry@example.com", "implied", "inquiry", now.Add(-200*day))
	insertLead(t, pool, "new-inquiry@example.com", "implied", "inquiry", now.Add(-30*day))
	insertLead(t, pool, "old-nosource@example.com", "implied", "", now.Add(-190*day))
	insertLead(t, pool, "purchase@example.com", "implied", "purchase", now.Add(-400*day))
	insertLead(t, pool, "express@example.com", "express", "inquiry", now.Add(-900*day))

	lapsed := func(args ...string) []string {
		t.Helper()
		out, stderr, err := privCtl(t, privEnv(dbURL), append([]string{"consent", "lapsed", "--json"}, args...)...)
		if err != nil {
			t.Fatalf("consent lapsed %v: %v\n%s", args, err, stderr)
		}
		var list []struct {
			Email     string    `json:"email"`
			Source    string    `json:"source"`
			ExpiredAt time.Time `json:"expired_at"`
		}
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			t.Fatalf("consent lapsed --json: %v\n%s", err, out)
		}
		var emails []string
		for _, l := range list {
			emails = append(emails, l.Email)
			if l.ExpiredAt.After(now) {
				t.Errorf("%s listed with a future expiry %s", l.Email, l.ExpiredAt)
			}
		}
		return emails
	}
	// Defaults: an inquiry (and an unknown source) lapses after about six
	// months, a purchase after two years.
	if got := strings.Join(lapsed(), ","); got != "old-inquiry@example.com,old-nosource@example.com" {
		t.Errorf("lapsed = %s, want the old inquiry and the old sign-up without a source", got)
	}
	// --ttl overrides a source's period.
	if got := strings.Join(lapsed("--ttl", "purchase=8760h,inquiry=6000h"), ","); got != "purchase@example.com,old-nosource@example.com" {
		t.Errorf("lapsed with --ttl = %s, want the sign-up without a source and the year-old purchase", got)
	}
	out, _, err := privCtl(t, privEnv(dbURL), "consent", "lapsed")
	if err != nil || !strings.Contains(out, "old-inquiry@example.com") || strings.Contains(out, "new-inquiry") {
		t.Errorf("consent lapsed table: %v\n%s", err, out)
	}
}

func TestErasuresInsideTheReplicaWindow(t *testing.T) {
	dbURL := pgtest.NewURL(t)
	pool := pgtest.Pool(t, dbURL)
	now := time.Now().UTC()
	for _, ago := range []time.Duration{time.Hour, 48 * time.Hour} {
		if _, err := pool.Exec(context.Background(), `INSERT INTO mailslot.tombstones (email_hmac, erased_at, requested_by) VALUES ($1, $2, 'admin')`,
			privHash.Email(ago.String()+"@example.com"), now.Add(-ago)); err != nil {
			t.Fatal(err)
		}
	}
	list := func(env map[string]string, args ...string) int {
		t.Helper()
		out, stderr, err := privCtl(t, env, append([]string{"erasures", "--json"}, args...)...)
		if err != nil {
			t.Fatalf("erasures: %v\n%s", err, stderr)
		}
		var l []struct {
			ErasedAt  time.Time `json:"erased_at"`
			GoneBy    time.Time `json:"gone_from_replicas_by"`
			Snapshots time.Time `json:"gone_from_snapshots_by"`
		}
		if err := json.Unmarshal([]byte(out), &l); err != nil {
			t.Fatalf("erasures --json: %v\n%s", err, out)
		}
		for _, x := range l {
			if !x.GoneBy.After(now) && !x.Snapshots.After(now) {
				t.Errorf("erasure of %s listed though its windows ended at %s and %s", x.ErasedAt, x.GoneBy, x.Snapshots)
			}
		}
		return len(l)
	}
	env := privEnv(dbURL)
	// Fly's daily volume snapshots (7 days) hold both erasures' data.
	if n := list(env); n != 2 {
		t.Errorf("default windows (24h replica, 7 days of snapshots): %d erasures inside, want 2", n)
	}
	if n := list(env, "--snapshots", "0"); n != 1 {
		t.Errorf("replica window only (24h): %d erasures inside, want 1", n)
	}
	if n := list(env, "--snapshots", "24h", "--window", "30m"); n != 1 {
		t.Errorf("a day of snapshots: %d erasures inside, want 1", n)
	}
	env["MAILSLOT_REPLICA_RETENTION"] = "24h"
	if n := list(env, "--snapshots", "0", "--window", "72h"); n != 2 {
		t.Errorf("--window 72h: %d erasures inside, want 2", n)
	}
	if n := list(env, "--snapshots", "0", "--window", "30m"); n != 0 {
		t.Errorf("--window 30m: %d erasures inside, want 0", n)
	}
	env["MAILSLOT_REPLICA_RETENTION"] = "72h"
	if n := list(env, "--snapshots", "0"); n != 2 {
		t.Errorf("MAILSLOT_REPLICA_RETENTION=72h: %d erasures inside, want 2", n)
	}
	out, _, err := privCtl(t, privEnv(dbURL), "erasures")
	if err != nil || !strings.Contains(out, "2 erasure(s) still inside the 24h0m0s replica window or the 168h0m0s of volume snapshots") ||
		!strings.Contains(out, "GONE FROM SNAPSHOTS BY") {
		t.Errorf("erasures table: %v\n%s", err, out)
	}
}

func TestPurgeEventsCommand(t *testing.T) {
	dbURL := pgtest.NewURL(t)
	pool := pgtest.Pool(t, dbURL)
	now := time.Now().UTC()
	for i, ago := range []time.Duration{400 * 24 * time.Hour, 500 * 24 * time.Hour, time.Hour} {
		if _, err := pool.Exec(context.Background(), `
			INSERT INTO mailslot.events (submission_id, property, type, received_at, payload, origin_node, origin_seq)
			VALUES ($1, 'shop.example', 'page_view', $2, '{}', 'test', $3)`, uuid.New(), now.Add(-ago), i); err != nil {
			t.Fatal(err)
		}
	}
	env := privEnv(dbURL)
	out, stderr, err := privCtl(t, env, "purge-events", "--older-than", "9480h", "--dry-run")
	if err != nil || !strings.Contains(out, "would purge 2 event(s)") {
		t.Fatalf("dry run: %v\n%s%s", err, out, stderr)
	}
	if n := privCount(t, pool, `SELECT count(*) FROM mailslot.events`); n != 3 {
		t.Errorf("dry run deleted: %d events left, want 3", n)
	}
	if n := privCount(t, pool, `SELECT count(*) FROM mailslot.purges`); n != 0 {
		t.Errorf("dry run logged a purge")
	}
	out, stderr, err = privCtl(t, env, "purge-events", "--older-than", "9480h")
	if err != nil || !strings.Contains(out, "purged 2 event(s)") {
		t.Fatalf("purge: %v\n%s%s", err, out, stderr)
	}
	if n := privCount(t, pool, `SELECT count(*) FROM mailslot.events WHERE received_at > $1`, now.Add(-2*time.Hour)); n != 1 {
		t.Errorf("the recent event was not kept")
	}
	if n := privCount(t, pool, `SELECT count(*) FROM mailslot.events`); n != 1 {
		t.Errorf("%d events left, want 1", n)
	}
	if n := privCount(t, pool, `SELECT count(*) FROM mailslot.purges WHERE what = 'events' AND rows = 2 AND purged_by LIKE 'mailslotctl%'
		AND cutoff BETWEEN $1 AND $2`, now.Add(-9480*time.Hour-time.Minute), now.Add(-9480*time.Hour+time.Minute)); n != 1 {
		t.Errorf("purge not logged in mailslot.purges with its cutoff and count")
	}
}
