package drain

import (
	"context"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailslot/mailslot"
	"github.com/mailslot/mailslot/internal/pgtest"
	"github.com/mailslot/mailslot/internal/pii"
	"github.com/mailslot/mailslot/outbox"
	"github.com/mailslot/mailslot/sync/webhook"
)

const (
	testNode     = "node-a"
	testProperty = "site.example"
)

// base is the clock of every fixture; rows are minutes after it. The
// outbox keeps milliseconds, so the fixtures do too.
var base = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

var hasher = pii.NewHasher([]byte("test-pepper"))

// statementLog records, for every SQL text the pool ran, whether it ever
// succeeded and the last error it failed with.
type statementLog struct {
	mu     sync.Mutex
	ok     map[string]int
	failed map[string]error
}

func (l *statementLog) record(sql string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.failed[sql] = err
		return
	}
	l.ok[sql]++
}

type traceKey struct{}

func (l *statementLog) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	return context.WithValue(ctx, traceKey{}, d.SQL)
}

func (l *statementLog) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryEndData) {
	if sql, ok := ctx.Value(traceKey{}).(string); ok {
		l.record(sql, d.Err)
	}
}

func (l *statementLog) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}

func (l *statementLog) TraceBatchQuery(_ context.Context, _ *pgx.Conn, d pgx.TraceBatchQueryData) {
	l.record(d.SQL, d.Err)
}

func (l *statementLog) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// fixture is a fresh migrated database and an Applier for testNode.
type fixture struct {
	t    *testing.T
	pool *pgxpool.Pool
	log  *statementLog
	app  *Applier
	seq  int64
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(pgtest.NewURL(t))
	if err != nil {
		t.Fatal(err)
	}
	// Unqualified names must fail: no schema is searched.
	cfg.ConnConfig.RuntimeParams["search_path"] = ""
	log := &statementLog{ok: map[string]int{}, failed: map[string]error{}}
	cfg.ConnConfig.Tracer = log
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	var sp string
	if err := pool.QueryRow(context.Background(), `SELECT current_setting('search_path')`).Scan(&sp); err != nil || (sp != "" && sp != `""`) {
		t.Fatalf("search_path = %q, %v; want it empty", sp, err)
	}
	return &fixture{t: t, pool: pool, log: log, app: &Applier{NodeID: testNode, Region: "test"}}
}

// sub is one sign-up of a fixture address.
type sub struct {
	at      int // minutes after base
	consent string
	name    string
	utm     string // utm_source, "" for none
	page    string
	image   string // image_url, "" for none
}

func at(minutes int) time.Time { return base.Add(time.Duration(minutes) * time.Minute) }

// lead makes an outbox row for s. Rows get their seq when they are applied
// (in arrival order), so a row built here has none yet.
func lead(email string, s sub) outbox.Row {
	p := mailslot.LeadPayload{
		Lead: mailslot.Lead{Email: email, Property: testProperty, Consent: s.consent, Name: s.name,
			PolicyVersion: "2026-01", Source: "footer", Page: s.page, UTM: mailslot.UTM{Source: s.utm}, ImageURL: s.image},
		ConsentRecord: mailslot.ConsentRecord{Property: testProperty, PolicyVersion: "2026-01", Status: s.consent,
			Source: "footer", RecordedAt: at(s.at)},
	}
	b, err := json.Marshal(p)
	if err != nil {
		panic(err)
	}
	return outbox.Row{ID: uuid.NewString(), NodeID: testNode, Kind: mailslot.KindLead, ReceivedAt: at(s.at),
		Payload: b, EmailHMAC: hasher.Email(email), IPHMAC: hasher.IP("192.0.2.7")}
}

// event makes an event row; submissionID links it to a sign-up.
func event(minute int, submissionID string) outbox.Row {
	b, err := json.Marshal(mailslot.Event{Type: mailslot.EventFormSubmit, Property: testProperty, Page: "/join",
		UTM: mailslot.UTM{Campaign: "spring"}, Props: map[string]any{"step": 2.0}, SubmissionID: submissionID})
	if err != nil {
		panic(err)
	}
	return outbox.Row{ID: uuid.NewString(), NodeID: testNode, Kind: mailslot.KindEvent, ReceivedAt: at(minute),
		Payload: b, IPHMAC: hasher.IP("192.0.2.7")}
}

// number gives rows the next seqs, in the order given.
func (f *fixture) number(rows ...outbox.Row) []outbox.Row {
	out := slices.Clone(rows)
	for i := range out {
		f.seq++
		out[i].Seq = f.seq
	}
	return out
}

// apply decodes and applies rows as one batch.
func (f *fixture) apply(rows ...outbox.Row) Applied {
	f.t.Helper()
	d, poison := decode(rows)
	if len(poison) > 0 {
		f.t.Fatalf("decode: poison %v", poison[0])
	}
	res, err := f.app.Apply(context.Background(), f.pool, d)
	if err != nil {
		f.t.Fatalf("Apply: %v", err)
	}
	return res
}

func (f *fixture) exec(sql string, args ...any) {
	f.t.Helper()
	if _, err := f.pool.Exec(context.Background(), sql, args...); err != nil {
		f.t.Fatalf("%s: %v", sql, err)
	}
}

func (f *fixture) int(sql string, args ...any) int64 {
	f.t.Helper()
	var n int64
	if err := f.pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		f.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func (f *fixture) text(sql string, args ...any) string {
	f.t.Helper()
	var s *string
	if err := f.pool.QueryRow(context.Background(), sql, args...).Scan(&s); err != nil {
		f.t.Fatalf("%s: %v", sql, err)
	}
	if s == nil {
		return "<null>"
	}
	return *s
}

// state is everything a batch can change, as text, for before/after checks.
func (f *fixture) state() string {
	f.t.Helper()
	return f.text(`SELECT concat_ws(E'\n',
		(SELECT count(*) FROM mailslot.ledger), (SELECT count(*) FROM mailslot.leads),
		(SELECT count(*) FROM mailslot.consent_records), (SELECT count(*) FROM mailslot.events),
		(SELECT string_agg(format('%s %s %s %s', node_id, region, last_seq, rows_synced), E'\n' ORDER BY node_id) FROM mailslot.nodes),
		(SELECT string_agg((to_jsonb(l) - 'id' - 'public_id')::text, E'\n' ORDER BY id) FROM mailslot.leads l),
		(SELECT string_agg((to_jsonb(c) - 'id')::text, E'\n' ORDER BY id) FROM mailslot.consent_records c),
		(SELECT string_agg((to_jsonb(e) - 'id')::text, E'\n' ORDER BY id) FROM mailslot.events e))`)
}

// leadState is one lead's merged columns, as text.
func (f *fixture) leadState(email string) string {
	f.t.Helper()
	return f.text(`SELECT (to_jsonb(l) - 'id' - 'public_id' - 'email' - 'email_hmac')::text FROM mailslot.leads l
		WHERE property = $1 AND email_hmac = $2`, testProperty, hasher.Email(email))
}

// syncFiles hold the statements of the sync path itself. The privacy
// statements (privacy.go) are driven by privacy_test.go through the edge.
var syncFiles = []string{"apply.go", "worker.go"}

// externalFragments are the SQL fragments of other packages that the sync's
// statements are built of, by the name the statements use.
var externalFragments = map[string]string{"webhook.CreatedCTE": webhook.CreatedCTE}

// sqlConstants returns every SQL statement that files declare as a string
// constant.
func sqlConstants(t *testing.T, files ...string) map[string]string {
	t.Helper()
	// Every string constant, then the SQL ones among them: a statement
	// may be composed of shared fragments (a + b, in one file).
	fset := token.NewFileSet()
	exprs := map[string]ast.Expr{}
	for _, name := range files {
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if vs, ok := n.(*ast.ValueSpec); ok {
				for i, v := range vs.Values {
					exprs[vs.Names[i].Name] = v
				}
			}
			return true
		})
	}
	var eval func(e ast.Expr, depth int) (string, bool)
	eval = func(e ast.Expr, depth int) (string, bool) {
		if depth > 8 {
			return "", false
		}
		switch e := e.(type) {
		case *ast.BasicLit:
			if e.Kind != token.STRING {
				return "", false
			}
			s, err := strconv.Unquote(e.Value)
			return s, err == nil
		case *ast.Ident:
			if x, ok := exprs[e.Name]; ok {
				return eval(x, depth+1)
			}
		case *ast.SelectorExpr:
			// A fragment another package exports for these statements.
			if x, ok := e.X.(*ast.Ident); ok {
				v, ok := externalFragments[x.Name+"."+e.Sel.Name]
				return v, ok
			}
		case *ast.BinaryExpr:
			if e.Op == token.ADD {
				a, ok1 := eval(e.X, depth+1)
				b, ok2 := eval(e.Y, depth+1)
				return a + b, ok1 && ok2
			}
		}
		return "", false
	}
	// A fragment that statements are built of is not one itself.
	fragments := map[string]bool{}
	for _, e := range exprs {
		ast.Inspect(e, func(n ast.Node) bool {
			if b, ok := n.(*ast.BinaryExpr); ok {
				for _, x := range []ast.Expr{b.X, b.Y} {
					if id, ok := x.(*ast.Ident); ok {
						fragments[id.Name] = true
					}
				}
			}
			return true
		})
	}
	out := map[string]string{}
	for name, e := range exprs {
		s, ok := eval(e, 0)
		if !ok || fragments[name] {
			continue
		}
		switch strings.ToUpper(strings.Fields(s + " x")[0]) {
		case "INSERT", "UPDATE", "DELETE", "SELECT", "WITH":
			out[name] = s
		}
	}
	return out
}

// TestEveryStatementRunsAgainstTheMigratedSchema runs each SQL constant of
// the sync path (found by parsing its files, so a new statement without a
// test fails here) against the migrated schema with an empty search_path,
// through both arms of every upsert.
func TestEveryStatementRunsAgainstTheMigratedSchema(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ann := lead("ann@example.com", sub{at: 1, consent: mailslot.ConsentPending, name: "Ann", utm: "news", page: "/a"})
	batch1 := f.number(
		ann,
		lead("bob@example.com", sub{at: 2, consent: mailslot.ConsentExpress, image: "https://cdn.example.com/bob.jpg"}),
		lead("ann@example.com", sub{at: 3, consent: mailslot.ConsentImplied, utm: "ads"}),
		event(4, ann.ID),
		event(5, ""),
	)
	if res := f.apply(batch1...); res.Rows != len(batch1) || res.Replayed != 0 {
		t.Fatalf("first batch: %+v", res)
	}
	// Second batch: the lead and node upserts take their UPDATE arm.
	batch2 := f.number(
		lead("ann@example.com", sub{at: 6, consent: mailslot.ConsentExpress, name: "Ann B"}),
		event(7, ann.ID),
	)
	f.apply(batch2...)
	// A replay looks the keys up.
	if res := f.apply(batch2...); res.Rows != 0 || res.Replayed != len(batch2) {
		t.Fatalf("replay: %+v", res)
	}

	stmts := sqlConstants(t, syncFiles...)
	if len(stmts) < 6 {
		t.Fatalf("found only %d SQL constants: %v", len(stmts), slices.Sorted(func(yield func(string) bool) {
			for k := range stmts {
				if !yield(k) {
					return
				}
			}
		}))
	}
	f.log.mu.Lock()
	for name, sql := range stmts {
		if f.log.ok[sql] == 0 {
			t.Errorf("%s never ran successfully (last error: %v)", name, f.log.failed[sql])
		}
	}
	f.log.mu.Unlock()
	// Effects of each statement.
	if got := f.int(`SELECT count(*) FROM mailslot.ledger WHERE node_id = $1`, testNode); got != 7 {
		t.Errorf("ledger rows = %d, want 7", got)
	}
	if got := f.int(`SELECT submissions FROM mailslot.leads WHERE email = 'ann@example.com'`); got != 3 {
		t.Errorf("ann's submissions = %d, want 3 (insert, then the UPDATE arm)", got)
	}
	if got := f.text(`SELECT format('%s %s', last_seq, rows_synced) FROM mailslot.nodes WHERE node_id = $1`, testNode); got != "7 7" {
		t.Errorf("nodes last_seq, rows_synced = %s, want 7 7", got)
	}
	if got := f.int(`SELECT count(*) FROM mailslot.consent_records WHERE lead_id IS NOT NULL AND origin_node = $1`, testNode); got != 4 {
		t.Errorf("consent records with their lead = %d, want 4", got)
	}
	if got := f.int(`SELECT count(*) FROM mailslot.events`); got != 3 {
		t.Errorf("events = %d, want 3", got)
	}
	if got := f.int(`SELECT count(*) FROM mailslot.image_jobs j JOIN mailslot.leads l ON l.id = j.lead_id
		WHERE l.email = 'bob@example.com' AND j.image_url = 'https://cdn.example.com/bob.jpg'
		  AND j.state = 'queued' AND j.submitted_by = 'signup'`); got != 1 {
		t.Errorf("bob's image jobs = %d, want 1", got)
	}
}

// TestSignUpImageGoesWithItsLead: a sign-up's image becomes a job of the
// lead, and erasing the address deletes the job.
func TestSignUpImageGoesWithItsLead(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.apply(f.number(
		lead("cy@example.com", sub{at: 1, consent: mailslot.ConsentExpress, image: "https://cdn.example.com/cy.png"}),
		lead("dee@example.com", sub{at: 2, consent: mailslot.ConsentExpress, image: "https://cdn.example.com/dee.png"}),
	)...)
	if got := f.int(`SELECT count(*) FROM mailslot.image_jobs WHERE lead_id IS NOT NULL`); got != 2 {
		t.Fatalf("image jobs = %d, want 2", got)
	}
	if _, err := Erase(context.Background(), f.pool, hasher.Email("cy@example.com"), at(3), "operator"); err != nil {
		t.Fatal(err)
	}
	if got := f.int(`SELECT count(*) FROM mailslot.image_jobs WHERE image_url LIKE '%cy.png'`); got != 0 {
		t.Errorf("cy's image jobs after erasure = %d, want 0", got)
	}
	if got := f.int(`SELECT count(*) FROM mailslot.image_jobs WHERE image_url LIKE '%dee.png'`); got != 1 {
		t.Errorf("dee's image jobs = %d, want 1", got)
	}
}

func TestJSONBColumnsHoldObjects(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	l := lead("ann@example.com", sub{at: 1, consent: mailslot.ConsentExpress, utm: "news"})
	f.apply(f.number(l, event(2, l.ID))...)
	tests := []struct{ name, sql, want string }{
		{"leads.first_utm", `SELECT jsonb_typeof(first_utm) || ' ' || (first_utm->>'source') FROM mailslot.leads`, "object news"},
		{"leads.last_utm", `SELECT jsonb_typeof(last_utm) || ' ' || (last_utm->>'source') FROM mailslot.leads`, "object news"},
		{"events.payload", `SELECT jsonb_typeof(payload) || ' ' || (payload->>'type') || ' ' || (payload->'utm'->>'campaign') FROM mailslot.events`, "object form_submit spring"},
		{"events.payload number", `SELECT jsonb_typeof(payload->'props'->'step') FROM mailslot.events`, "number"},
	}
	for _, tt := range tests {
		if got := f.text(tt.sql); got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
	// A sign-up without UTM stores SQL NULL, not a JSON null or "{}".
	f.apply(f.number(lead("bob@example.com", sub{at: 3, consent: mailslot.ConsentExpress}))...)
	if got := f.text(`SELECT coalesce(jsonb_typeof(first_utm), 'sql null') FROM mailslot.leads WHERE email = 'bob@example.com'`); got != "sql null" {
		t.Errorf("first_utm without UTM = %s, want SQL NULL", got)
	}
}

func TestReplayIsANoOp(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ann := lead("ann@example.com", sub{at: 1, consent: mailslot.ConsentPending, name: "Ann", utm: "news"})
	batch := f.number(
		ann,
		lead("bob@example.com", sub{at: 2, consent: mailslot.ConsentExpress}),
		lead("ann@example.com", sub{at: 3, consent: mailslot.ConsentExpress}),
		event(4, ann.ID),
		event(5, ""),
	)
	first := f.apply(batch...)
	if first.Rows != len(batch) || first.Replayed != 0 || first.MaxSeq != batch[len(batch)-1].Seq {
		t.Fatalf("first apply = %+v", first)
	}
	before := f.state()
	for i := range 2 {
		res := f.apply(batch...)
		if res.Rows != 0 || res.Replayed != len(batch) {
			t.Errorf("replay %d = %+v, want Rows 0, Replayed %d", i+1, res, len(batch))
		}
		if after := f.state(); after != before {
			t.Errorf("replay %d changed Postgres:\nbefore:\n%s\nafter:\n%s", i+1, before, after)
		}
	}
}

func TestPartlyAppliedBatchAppliesOnlyTheRest(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var rows []outbox.Row
	for i := range 10 {
		rows = append(rows, lead(fmt.Sprintf("p%d@example.com", i%4), sub{at: i, consent: mailslot.ConsentPending}))
	}
	rows = f.number(rows...)
	// A crash after these committed but before the edge marked them.
	done := []outbox.Row{rows[0], rows[1], rows[2], rows[6]}
	f.apply(done...)
	res := f.apply(rows...)
	if res.Rows != 6 || res.Replayed != 4 || res.MaxSeq != 10 {
		t.Errorf("Apply = %+v, want Rows 6, Replayed 4, MaxSeq 10", res)
	}
	checks := []struct {
		sql  string
		want int64
	}{
		{`SELECT count(*) FROM mailslot.ledger`, 10},
		{`SELECT count(*) FROM mailslot.consent_records`, 10},
		{`SELECT count(*) FROM mailslot.leads`, 4},
		{`SELECT sum(submissions) FROM mailslot.leads`, 10},
		{`SELECT rows_synced FROM mailslot.nodes`, 10},
		{`SELECT last_seq FROM mailslot.nodes`, 10},
		{`SELECT submissions FROM mailslot.leads WHERE email = 'p0@example.com'`, 3},
	}
	for _, c := range checks {
		if got := f.int(c.sql); got != c.want {
			t.Errorf("%s = %d, want %d", c.sql, got, c.want)
		}
	}
}

// arrival splits submissions (given in time order) into the batches they
// arrive in.
type arrival struct {
	name  string
	split func(subs []sub) [][]sub
}

var arrivals = []arrival{
	{"one batch in time order", func(s []sub) [][]sub { return [][]sub{s} }},
	{"one batch newest first", func(s []sub) [][]sub { return [][]sub{reversed(s)} }},
	{"one per batch in time order", func(s []sub) [][]sub { return each(s) }},
	{"one per batch newest first", func(s []sub) [][]sub { return each(reversed(s)) }},
	{"middle first, then the rest together", func(s []sub) [][]sub {
		m := len(s) / 2
		return [][]sub{{s[m]}, append(slices.Clone(s[:m]), s[m+1:]...)}
	}},
	{"newest first, then the rest together", func(s []sub) [][]sub {
		n := len(s) - 1
		return [][]sub{{s[n]}, slices.Clone(s[:n])}
	}},
}

func reversed(s []sub) []sub { r := slices.Clone(s); slices.Reverse(r); return r }

func each(s []sub) [][]sub {
	out := make([][]sub, len(s))
	for i, x := range s {
		out[i] = []sub{x}
	}
	return out
}

// applyBatches applies each batch of subs for email, in order.
func (f *fixture) applyBatches(email string, batches [][]sub) {
	f.t.Helper()
	for _, b := range batches {
		rows := make([]outbox.Row, len(b))
		for i, s := range b {
			rows[i] = lead(email, s)
		}
		f.apply(f.number(rows...)...)
	}
}

// merged is what a lead must look like after a set of submissions.
type merged struct {
	status, basis, name string
	firstUTM, lastUTM   string // utm_source or <null>
	firstAt, lastAt     int
	firstPage, lastPage string
	submissions         int64
}

func (f *fixture) checkLead(email string, want merged) {
	f.t.Helper()
	var got merged
	var first, last time.Time
	var name, firstUTM, lastUTM, firstPage, lastPage *string
	err := f.pool.QueryRow(context.Background(), `
		SELECT consent_status, consent_basis, name, first_utm->>'source', last_utm->>'source',
		       first_seen_at, last_seen_at, first_page, last_page, submissions
		FROM mailslot.leads WHERE property = $1 AND email_hmac = $2`, testProperty, hasher.Email(email)).
		Scan(&got.status, &got.basis, &name, &firstUTM, &lastUTM, &first, &last, &firstPage, &lastPage, &got.submissions)
	if err != nil {
		f.t.Fatalf("read lead %s: %v", email, err)
	}
	str := func(p *string) string {
		if p == nil {
			return "<null>"
		}
		return *p
	}
	got.name, got.firstUTM, got.lastUTM, got.firstPage, got.lastPage = str(name), str(firstUTM), str(lastUTM), str(firstPage), str(lastPage)
	got.firstAt, got.lastAt = int(first.Sub(base)/time.Minute), int(last.Sub(base)/time.Minute)
	if got != want {
		f.t.Errorf("lead:\n got %+v\nwant %+v", got, want)
	}
	if n := f.int(`SELECT count(*) FROM mailslot.consent_records c JOIN mailslot.leads l ON l.id = c.lead_id
		WHERE l.email_hmac = $1`, hasher.Email(email)); n != want.submissions {
		f.t.Errorf("consent records of the lead = %d, want %d", n, want.submissions)
	}
}

// TestConsentMergeRules applies each case's submissions in every arrival
// order of the table above; the lead must come out the same each time.
func TestConsentMergeRules(t *testing.T) {
	t.Parallel()
	const (
		P = mailslot.ConsentPending
		I = mailslot.ConsentImplied
		E = mailslot.ConsentExpress
	)
	tests := []struct {
		name string
		subs []sub // in time order
		want merged
	}{
		{"later express beats pending",
			[]sub{{at: 1, consent: P}, {at: 2, consent: E}},
			merged{status: E, basis: E, name: "<null>", firstUTM: "<null>", lastUTM: "<null>", firstAt: 1, lastAt: 2, firstPage: "<null>", lastPage: "<null>", submissions: 2}},
		{"pending after express leaves express",
			[]sub{{at: 1, consent: E}, {at: 2, consent: P}},
			merged{status: E, basis: E, name: "<null>", firstUTM: "<null>", lastUTM: "<null>", firstAt: 1, lastAt: 2, firstPage: "<null>", lastPage: "<null>", submissions: 2}},
		{"implied beats pending",
			[]sub{{at: 1, consent: I}, {at: 2, consent: P}, {at: 3, consent: P}},
			merged{status: I, basis: I, name: "<null>", firstUTM: "<null>", lastUTM: "<null>", firstAt: 1, lastAt: 3, firstPage: "<null>", lastPage: "<null>", submissions: 3}},
		{"express beats implied either way",
			[]sub{{at: 1, consent: I}, {at: 2, consent: E}, {at: 3, consent: I}},
			merged{status: E, basis: E, name: "<null>", firstUTM: "<null>", lastUTM: "<null>", firstAt: 1, lastAt: 3, firstPage: "<null>", lastPage: "<null>", submissions: 3}},
		{"first and last touch",
			[]sub{{at: 1, consent: P, utm: "first", page: "/one"}, {at: 5, consent: P, utm: "middle", page: "/two"}, {at: 9, consent: P, utm: "last", page: "/three"}},
			merged{status: P, basis: P, name: "<null>", firstUTM: "first", lastUTM: "last", firstAt: 1, lastAt: 9, firstPage: "/one", lastPage: "/three", submissions: 3}},
		{"last touch without UTM clears last_utm",
			[]sub{{at: 1, consent: P, utm: "first"}, {at: 2, consent: P}},
			merged{status: P, basis: P, name: "<null>", firstUTM: "first", lastUTM: "<null>", firstAt: 1, lastAt: 2, firstPage: "<null>", lastPage: "<null>", submissions: 2}},
		{"name is the latest non-empty",
			[]sub{{at: 1, consent: P, name: "Ann"}, {at: 2, consent: P, name: "Bea"}, {at: 3, consent: P}},
			merged{status: P, basis: P, name: "Bea", firstUTM: "<null>", lastUTM: "<null>", firstAt: 1, lastAt: 3, firstPage: "<null>", lastPage: "<null>", submissions: 3}},
		{"a newer name beats an older one around an empty one",
			[]sub{{at: 1, consent: P, name: "Ann"}, {at: 2, consent: P}, {at: 3, consent: P, name: "Cy"}, {at: 4, consent: P}},
			merged{status: P, basis: P, name: "Cy", firstUTM: "<null>", lastUTM: "<null>", firstAt: 1, lastAt: 4, firstPage: "<null>", lastPage: "<null>", submissions: 4}},
	}
	f := newFixture(t)
	for ti, tt := range tests {
		for ai, a := range arrivals {
			t.Run(tt.name+"/"+a.name, func(t *testing.T) {
				f.t = t
				email := fmt.Sprintf("merge%d-%d@example.com", ti, ai)
				f.applyBatches(email, a.split(tt.subs))
				f.checkLead(email, tt.want)
			})
		}
	}
}

// TestWithdrawnIsKeptUntilANewerExpress withdraws a lead by SQL (the
// unsubscribe flow sets withdrawn_at) and then applies later batches.
// A sign-up's consent claim, express included, never overturns a
// withdrawal: anyone can post one. Only a confirmation through the signed
// link does (TestConfirmLinkMintedBeforeTheWithdrawalDoesNotOverturnIt in
// privacy_test.go). The claim is still merged into the lead's basis.
func TestWithdrawnIsKeptAgainstSignUpsOfAnyConsent(t *testing.T) {
	t.Parallel()
	const (
		P = mailslot.ConsentPending
		I = mailslot.ConsentImplied
		E = mailslot.ConsentExpress
	)
	const withdrawnAt = 5
	tests := []struct {
		name   string
		before []sub   // applied before the withdrawal
		after  [][]sub // batches applied after it
		basis  string
	}{
		{"older pending", []sub{{at: 1, consent: E}}, [][]sub{{{at: 3, consent: P}}}, E},
		{"newer pending", []sub{{at: 1, consent: E}}, [][]sub{{{at: 7, consent: P}}}, E},
		{"older implied", []sub{{at: 1, consent: P}}, [][]sub{{{at: 2, consent: I}}}, I},
		{"newer implied", []sub{{at: 1, consent: P}}, [][]sub{{{at: 8, consent: I}}}, I},
		{"older express", []sub{{at: 1, consent: P}}, [][]sub{{{at: 4, consent: E}}}, E},
		{"newer express claim", []sub{{at: 1, consent: P}}, [][]sub{{{at: 8, consent: E}}}, E},
		{"newer express claim then newer pending", []sub{{at: 1, consent: E}}, [][]sub{{{at: 8, consent: E}}, {{at: 9, consent: P}}}, E},
		{"newer pending and older express in one batch", []sub{{at: 1, consent: E}}, [][]sub{{{at: 7, consent: P}, {at: 3, consent: E}}}, E},
		{"older pending and newer express claim in one batch", []sub{{at: 1, consent: P}}, [][]sub{{{at: 3, consent: P}, {at: 8, consent: E}}}, E},
		{"newer implied, then newer express claim", []sub{{at: 1, consent: P}}, [][]sub{{{at: 6, consent: I}}, {{at: 9, consent: E}}}, E},
	}
	f := newFixture(t)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.t = t
			email := fmt.Sprintf("withdrawn%d@example.com", i)
			f.applyBatches(email, [][]sub{tt.before})
			f.exec(`UPDATE mailslot.leads SET withdrawn_at = $1 WHERE email_hmac = $2`, at(withdrawnAt), hasher.Email(email))
			if got := f.text(`SELECT consent_status FROM mailslot.leads WHERE email_hmac = $1`, hasher.Email(email)); got != "withdrawn" {
				t.Fatalf("status right after the withdrawal = %s", got)
			}
			f.applyBatches(email, tt.after)
			if got := f.text(`SELECT consent_status || ',' || consent_basis FROM mailslot.leads WHERE email_hmac = $1`, hasher.Email(email)); got != "withdrawn,"+tt.basis {
				t.Errorf("consent_status,basis = %s, want withdrawn,%s", got, tt.basis)
			}
			if got := f.text(`SELECT withdrawn_at::text FROM mailslot.leads WHERE email_hmac = $1`, hasher.Email(email)); got == "<null>" {
				t.Errorf("withdrawn_at was cleared")
			}
		})
	}
}

// TestMergeIsTheSameWhateverTheOrder applies one set of submissions in
// every permutation, each split into batches two ways, and requires the
// same lead every time.
func TestMergeIsTheSameWhateverTheOrder(t *testing.T) {
	t.Parallel()
	set := []sub{
		{at: 1, consent: mailslot.ConsentPending, name: "Ann", utm: "s1", page: "/1"},
		{at: 2, consent: mailslot.ConsentImplied, page: "/2"},
		{at: 3, consent: mailslot.ConsentPending, name: "Bea", utm: "s3"},
		{at: 4, consent: mailslot.ConsentExpress, utm: "s4", page: "/4"},
		{at: 5, consent: mailslot.ConsentPending, utm: "s5", page: "/5"},
	}
	splits := [][]int{{5}, {1, 1, 1, 1, 1}, {2, 3}, {1, 2, 2}, {3, 1, 1}, {1, 4}, {4, 1}}
	f := newFixture(t)
	want := merged{status: mailslot.ConsentExpress, basis: mailslot.ConsentExpress, name: "Bea", firstUTM: "s1", lastUTM: "s5",
		firstAt: 1, lastAt: 5, firstPage: "/1", lastPage: "/5", submissions: 5}
	var reference string
	n := 0
	for perm := range permutations(len(set)) {
		for k := range 2 {
			sizes := splits[(n+k)%len(splits)]
			order := make([]sub, len(perm))
			for i, p := range perm {
				order[i] = set[p]
			}
			var batches [][]sub
			rest := order
			for _, size := range sizes {
				batches = append(batches, rest[:size])
				rest = rest[size:]
			}
			email := fmt.Sprintf("perm%d-%d@example.com", n, k)
			f.applyBatches(email, batches)
			got := f.leadState(email)
			if reference == "" {
				reference = got
				f.checkLead(email, want)
			}
			if got != reference {
				t.Fatalf("order %v in batches %v gave\n%s\nwant\n%s", perm, sizes, got, reference)
			}
		}
		n++
	}
	if n != 120 {
		t.Fatalf("tried %d permutations, want 120", n)
	}
}

// permutations yields every ordering of 0..n-1 (Heap's algorithm).
func permutations(n int) func(yield func([]int) bool) {
	return func(yield func([]int) bool) {
		a := make([]int, n)
		for i := range a {
			a[i] = i
		}
		c := make([]int, n)
		if !yield(slices.Clone(a)) {
			return
		}
		for i := 0; i < n; {
			if c[i] < i {
				if i%2 == 0 {
					a[0], a[i] = a[i], a[0]
				} else {
					a[c[i]], a[i] = a[i], a[c[i]]
				}
				if !yield(slices.Clone(a)) {
					return
				}
				c[i]++
				i = 0
			} else {
				c[i] = 0
				i++
			}
		}
	}
}

func TestEventsLinkToTheirLead(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ann := lead("ann@example.com", sub{at: 1, consent: mailslot.ConsentExpress})
	sameBatch, anonymous := event(2, ann.ID), event(3, "")
	unknown, notUUID := event(4, uuid.NewString()), event(5, "checkout-7")
	f.apply(f.number(ann, sameBatch, anonymous, unknown, notUUID)...)
	laterBatch := event(6, ann.ID)
	f.apply(f.number(laterBatch)...)

	leadID := f.int(`SELECT id FROM mailslot.leads WHERE email = 'ann@example.com'`)
	tests := []struct {
		name string
		row  outbox.Row
		want string
	}{
		{"same batch as the sign-up", sameBatch, strconv.FormatInt(leadID, 10)},
		{"later batch than the sign-up", laterBatch, strconv.FormatInt(leadID, 10)},
		{"no submission_id", anonymous, "<null>"},
		{"unknown submission_id", unknown, "<null>"},
		{"submission_id that is not a UUID", notUUID, "<null>"},
	}
	for _, tt := range tests {
		if got := f.text(`SELECT lead_id::text FROM mailslot.events WHERE submission_id = $1`, tt.row.ID); got != tt.want {
			t.Errorf("%s: lead_id = %s, want %s", tt.name, got, tt.want)
		}
	}
}

func TestDeletingALeadKeepsItsEventsAndConsentRecords(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ann := lead("ann@example.com", sub{at: 1, consent: mailslot.ConsentExpress})
	f.apply(f.number(ann, lead("ann@example.com", sub{at: 2, consent: mailslot.ConsentPending}), event(3, ann.ID))...)
	if n := f.int(`SELECT count(*) FROM mailslot.events WHERE lead_id IS NOT NULL`); n != 1 {
		t.Fatalf("linked events before the delete = %d, want 1", n)
	}
	f.exec(`DELETE FROM mailslot.leads WHERE email = 'ann@example.com'`)
	checks := []struct {
		sql  string
		want int64
	}{
		{`SELECT count(*) FROM mailslot.leads`, 0},
		{`SELECT count(*) FROM mailslot.events`, 1},
		{`SELECT count(*) FROM mailslot.events WHERE lead_id IS NOT NULL`, 0},
		{`SELECT count(*) FROM mailslot.consent_records`, 2},
		{`SELECT count(*) FROM mailslot.consent_records WHERE lead_id IS NOT NULL`, 0},
	}
	for _, c := range checks {
		if got := f.int(c.sql); got != c.want {
			t.Errorf("%s = %d, want %d", c.sql, got, c.want)
		}
	}
}

func TestDecodeSetsPoisonAside(t *testing.T) {
	t.Parallel()
	good := lead("ann@example.com", sub{at: 1, consent: mailslot.ConsentExpress})
	tests := []struct {
		name   string
		edit   func(r *outbox.Row)
		reason string
	}{
		{"payload not JSON", func(r *outbox.Row) { r.Payload = []byte("{not json") }, "lead payload"},
		{"id not a UUID", func(r *outbox.Row) { r.ID = "x" }, "not a UUID"},
		{"unknown kind", func(r *outbox.Row) { r.Kind = "erasure?" }, "unknown row kind"},
		{"no consent", func(r *outbox.Row) { r.Payload = []byte(`{"email":"a@b.example","property":"p"}`) }, "lacks consent"},
		{"no email hash", func(r *outbox.Row) { r.EmailHMAC = nil }, "lacks consent"},
		{"event payload not JSON", func(r *outbox.Row) { r.Kind, r.Payload = mailslot.KindEvent, []byte("[") }, "event payload"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad := good
			bad.ID = uuid.NewString()
			bad.Seq = int64(i + 2)
			tt.edit(&bad)
			ok := good
			ok.Seq = 1
			d, poison := decode([]outbox.Row{ok, bad})
			if len(poison) != 1 || poison[0].Seq != bad.Seq || !strings.Contains(poison[0].Reason, tt.reason) {
				t.Fatalf("poison = %v, want row %d with %q", poison, bad.Seq, tt.reason)
			}
			if len(d.all) != 1 || d.all[0].Seq != 1 || len(d.leads) != 1 {
				t.Errorf("decoded = %d rows (%d leads), want only the good one", len(d.all), len(d.leads))
			}
		})
	}
}
