package images

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailslot/mailslot/internal/pgtest"
)

func insertLead(t *testing.T, pool *pgxpool.Pool, email string) int64 {
	t.Helper()
	var id int64
	err := pool.QueryRow(context.Background(), `
		INSERT INTO mailslot.leads (property, email, email_hmac, consent_basis, first_seen_at, last_seen_at)
		VALUES ('example.com', $1::text, sha256(convert_to($1::text, 'UTF8')), 'express', now(), now()) RETURNING id`, email).Scan(&id)
	if err != nil {
		t.Fatalf("insert lead: %v", err)
	}
	return id
}

var testLimits = Limits{AllowedHosts: []string{"img.example"}, MaxUploadBytes: DefaultMaxUploadBytes, UploadStoreBytes: DefaultUploadStoreBytes}

// TestCompletionAfterErasureStoresNothing drives the store as a dispatcher
// would: claim, start both predictions, then the lead is erased, then the
// predictions complete and the job finishes. Every write finds no row.
func TestCompletionAfterErasureStoresNothing(t *testing.T) {
	t.Parallel()
	pool := pgtest.New(t)
	ctx := context.Background()
	s := NewStore(pool)
	lead := insertLead(t, pool, "ann@example.com")
	job, err := s.Submit(ctx, Submission{LeadID: &lead, URL: "https://img.example/a.jpg", SubmittedBy: "test"}, testLimits)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := s.claim(ctx, "node-a", "replicate", time.Minute, 10)
	if err != nil || len(cs) != 1 || cs[0].ID != job.ID {
		t.Fatalf("claim = %+v, %v", cs, err)
	}
	c := cs[0]
	for _, m := range models {
		ok, err := s.recordStart(ctx, c, "replicate", m, Prediction{ID: "pred-" + m, Status: PredictionStarting})
		if err != nil || !ok {
			t.Fatalf("record %s: %v %v", m, ok, err)
		}
	}
	if _, err := pool.Exec(ctx, `DELETE FROM mailslot.leads WHERE id = $1`, lead); err != nil {
		t.Fatal(err)
	}
	secs := 2.0
	for _, m := range models {
		out := `["A cat."]`
		if m == ModelFaces {
			out = `[{"bbox":[1,2,3,4],"embedding":[0.1,0.2]}]`
		}
		a, err := s.ApplyPrediction(ctx, "replicate", Prediction{ID: "pred-" + m, Status: PredictionSucceeded, Output: []byte(out), PredictSeconds: &secs}, 0.001)
		if err != nil {
			t.Fatal(err)
		}
		if a.Known || a.Changed {
			t.Errorf("%s: applied to an erased job: %+v", m, a)
		}
	}
	ok, err := s.succeed(ctx, c, result{Faces: 1, Caption: "A cat."})
	if err != nil {
		t.Fatal(err)
	}
	if ok {
		t.Fatal("succeed stored a result for a job whose lead was erased")
	}
	var jobs, preds, spendRows int
	var spendJobs *int64
	if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM mailslot.image_jobs), (SELECT count(*) FROM mailslot.image_predictions),
		(SELECT count(*) FROM mailslot.image_spend), (SELECT max(job_id) FROM mailslot.image_spend)`).Scan(&jobs, &preds, &spendRows, &spendJobs); err != nil {
		t.Fatal(err)
	}
	if jobs != 0 || preds != 0 {
		t.Errorf("after erasure: %d jobs, %d predictions remain", jobs, preds)
	}
	// The money was spent all the same; the ledger keeps amounts only.
	if spendRows != 2 || spendJobs != nil {
		t.Errorf("spend rows = %d (job %v), want 2 without a job", spendRows, spendJobs)
	}
}

// TestClaimIsExclusive races many claimers over the same due jobs: every
// job is claimed exactly once.
func TestClaimIsExclusive(t *testing.T) {
	t.Parallel()
	pool := pgtest.New(t)
	ctx := context.Background()
	s := NewStore(pool)
	const jobs = 40
	for i := range jobs {
		if _, err := s.Submit(ctx, Submission{URL: "https://img.example/" + string(rune('a'+i%26)) + ".jpg", SubmittedBy: "test"}, testLimits); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	seen := map[int64]int{}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				cs, err := s.claim(ctx, "node-"+string(rune('a'+w)), "replicate", time.Minute, 3)
				if err != nil {
					t.Error(err)
					return
				}
				if len(cs) == 0 {
					return
				}
				mu.Lock()
				for _, c := range cs {
					seen[c.ID]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(seen) != jobs {
		t.Errorf("claimed %d distinct jobs, want %d", len(seen), jobs)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("job %d claimed %d times", id, n)
		}
	}
}

// TestLeaseFencing: a dispatcher whose lease expired and was taken over
// can no longer record predictions or finish the job.
func TestLeaseFencing(t *testing.T) {
	t.Parallel()
	pool := pgtest.New(t)
	ctx := context.Background()
	s := NewStore(pool)
	if _, err := s.Submit(ctx, Submission{URL: "https://img.example/a.jpg", SubmittedBy: "test", MaxAttempts: 3}, testLimits); err != nil {
		t.Fatal(err)
	}
	cs, err := s.claim(ctx, "node-a", "replicate", time.Minute, 1)
	if err != nil || len(cs) != 1 {
		t.Fatalf("claim: %v %v", cs, err)
	}
	old := cs[0]
	if _, err := pool.Exec(ctx, `UPDATE mailslot.image_jobs SET lease_until = now() - interval '1 second'`); err != nil {
		t.Fatal(err)
	}
	if n, err := s.reap(ctx); err != nil || n != 1 {
		t.Fatalf("reap = %d, %v", n, err)
	}
	cs, err = s.claim(ctx, "node-b", "replicate", time.Minute, 1)
	if err != nil || len(cs) != 1 || cs[0].Attempts != 2 {
		t.Fatalf("reclaim: %+v %v", cs, err)
	}
	if ok, err := s.recordStart(ctx, old, "replicate", ModelFaces, Prediction{ID: "stale", Status: PredictionStarting}); err != nil || ok {
		t.Errorf("stale recordStart = %v, %v", ok, err)
	}
	if ok, err := s.succeed(ctx, old, result{Caption: "x"}); err != nil || ok {
		t.Errorf("stale succeed = %v, %v", ok, err)
	}
	if ok, err := s.fail(ctx, old, "x", true, 0); err != nil || ok {
		t.Errorf("stale fail = %v, %v", ok, err)
	}
	if held, _ := s.held(ctx, old); held {
		t.Error("stale lease still held")
	}
	if held, _ := s.held(ctx, cs[0]); !held {
		t.Error("new lease not held")
	}
	j, _ := s.Get(ctx, cs[0].ID)
	if j.State != StateRunning || j.Attempts != 2 {
		t.Errorf("job = %s after %d attempts", j.State, j.Attempts)
	}
}

// TestWebhookBeforeRecord: a fast prediction's webhook can arrive before
// the dispatcher has stored the prediction. Its spend is kept, and attached
// to the job (once) when the prediction is known.
func TestWebhookBeforeRecord(t *testing.T) {
	t.Parallel()
	pool := pgtest.New(t)
	ctx := context.Background()
	s := NewStore(pool)
	job, err := s.Submit(ctx, Submission{URL: "https://img.example/a.jpg", SubmittedBy: "test"}, testLimits)
	if err != nil {
		t.Fatal(err)
	}
	secs := 1.5
	done := Prediction{ID: "fast", Status: PredictionSucceeded, Output: []byte(`[{"bbox":[1,2,3,4]}]`), PredictSeconds: &secs}
	if a, err := s.ApplyPrediction(ctx, "replicate", done, 0.001); err != nil || a.Known {
		t.Fatalf("early delivery: %+v %v", a, err)
	}
	cs, err := s.claim(ctx, "node-a", "replicate", time.Minute, 1)
	if err != nil || len(cs) != 1 {
		t.Fatal(cs, err)
	}
	if ok, err := s.recordStart(ctx, cs[0], "replicate", ModelFaces, Prediction{ID: "fast", Status: PredictionStarting}); err != nil || !ok {
		t.Fatal(ok, err)
	}
	for range 2 { // the retry of the webhook, then a poll
		if _, err := s.ApplyPrediction(ctx, "replicate", done, 0.001); err != nil {
			t.Fatal(err)
		}
	}
	j, err := s.Get(ctx, job.ID)
	if err != nil || j.PredictSeconds != 1.5 {
		t.Errorf("job spend %v (%v), want 1.5 once", j.PredictSeconds, err)
	}
	ps, _ := s.predictions(ctx, job.ID)
	if len(ps) != 1 || ps[0].Status != PredictionSucceeded || ps[0].FaceCount == nil || *ps[0].FaceCount != 1 {
		t.Errorf("prediction = %+v", ps)
	}
}
