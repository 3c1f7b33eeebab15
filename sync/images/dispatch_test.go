package images_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailslot/mailslot/internal/pgtest"
	"github.com/mailslot/mailslot/internal/stdwebhook"
	"github.com/mailslot/mailslot/internal/testsync"
	"github.com/mailslot/mailslot/sync/images"
	"github.com/mailslot/mailslot/sync/images/imagestest"
)

// env is one test's Postgres, fake provider and store.
type env struct {
	t     *testing.T
	url   string
	pool  *pgxpool.Pool
	store *images.Store
	fake  *imagestest.Fake
}

func newEnv(t *testing.T) *env {
	t.Helper()
	url := pgtest.NewURL(t)
	pool := pgtest.Pool(t, url)
	return &env{t: t, url: url, pool: pool, store: images.NewStore(pool), fake: imagestest.New(t)}
}

var limits = images.Limits{AllowedHosts: []string{"img.example"}, MaxUploadBytes: images.DefaultMaxUploadBytes, UploadStoreBytes: images.DefaultUploadStoreBytes}

func (e *env) submit(image string, maxAttempts int) images.Job {
	e.t.Helper()
	j, err := e.store.Submit(context.Background(), images.Submission{URL: "https://img.example/" + image, SubmittedBy: "test", MaxAttempts: maxAttempts}, limits)
	if err != nil {
		e.t.Fatalf("submit %s: %v", image, err)
	}
	return j
}

func (e *env) replicate(webhookURL string) images.Provider {
	e.t.Helper()
	p, err := images.NewReplicate(images.ReplicateOptions{
		BaseURL:        e.fake.URL,
		Token:          imagestest.Token,
		Models:         map[string]string{images.ModelFaces: imagestest.FacesModel, images.ModelCaption: imagestest.CaptionModel},
		WebhookURL:     webhookURL,
		RequestTimeout: 2 * time.Second,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

func (e *env) huggingface() images.Provider {
	e.t.Helper()
	p, err := images.NewHuggingFace(images.HuggingFaceOptions{
		Endpoints:      map[string]string{images.ModelFaces: e.fake.HFFacesURL, images.ModelCaption: e.fake.HFCaptionURL},
		Token:          imagestest.Token,
		RequestTimeout: 5 * time.Second,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

// opts are fast test defaults: small intervals and backoffs.
func (e *env) opts(p images.Provider) images.Options {
	return images.Options{
		DatabaseURL:    e.url,
		Provider:       p,
		Owner:          "test-node",
		Interval:       20 * time.Millisecond,
		PollInterval:   50 * time.Millisecond,
		AttemptTimeout: 5 * time.Second,
		MinBackoff:     20 * time.Millisecond,
		MaxBackoff:     100 * time.Millisecond,
		PricePerSecond: 0.001,
	}
}

// start runs a dispatcher until the returned stop is called (or the test
// ends).
func (e *env) start(o images.Options) (*images.Dispatcher, func()) {
	e.t.Helper()
	d, err := images.New(o)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := d.Run(ctx); err != nil {
			e.t.Errorf("dispatcher: %v", err)
		}
	}()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			e.t.Error("dispatcher did not stop within 20s")
		}
	}
	e.t.Cleanup(stop)
	return d, stop
}

func (e *env) job(id int64) images.Job {
	e.t.Helper()
	j, err := e.store.Get(context.Background(), id)
	if err != nil {
		e.t.Fatalf("get job %d: %v", id, err)
	}
	return j
}

// waitState waits for a job to reach state and returns it.
func (e *env) waitState(id int64, state string, within time.Duration) images.Job {
	e.t.Helper()
	var j images.Job
	testsync.UntilState(e.t, within, fmt.Sprintf("job %d to be %s", id, state), func() (bool, string) {
		j = e.job(id)
		return j.State == state, fmt.Sprintf("%s (attempts %d, last error %q)", j.State, j.Attempts, j.LastError)
	})
	return j
}

func (e *env) count(query string, args ...any) int {
	e.t.Helper()
	var n int
	if err := e.pool.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		e.t.Fatalf("%s: %v", query, err)
	}
	return n
}

// noBiometrics checks that no image table holds anything of a face but its
// count: the fake's answers carry boxes, landmarks and embeddings.
func (e *env) noBiometrics() {
	e.t.Helper()
	for _, table := range []string{"image_jobs", "image_predictions", "image_spend"} {
		n := e.count(`SELECT count(*) FROM mailslot.` + table + ` t WHERE row_to_json(t)::text ~ '(embedding|bbox|kps|det_score)'`)
		if n != 0 {
			e.t.Errorf("%s: %d rows hold face geometry or embeddings", table, n)
		}
	}
}

func TestReplicateSuccess(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	j := e.submit("a.jpg", 3)
	e.start(e.opts(e.replicate("")))
	got := e.waitState(j.ID, images.StateSucceeded, 10*time.Second)
	if got.Caption == nil || *got.Caption != "Two people smiling at a table." {
		t.Errorf("caption = %v", got.Caption)
	}
	if got.FaceCount == nil || *got.FaceCount != 2 {
		t.Errorf("faces = %v", got.FaceCount)
	}
	if got.Attempts != 1 || got.LastError != "" || got.FinishedAt == nil {
		t.Errorf("attempts %d, last error %q, finished %v", got.Attempts, got.LastError, got.FinishedAt)
	}
	// Two predictions of 1.5 s each, at $0.001 a second.
	if got.PredictSeconds != 3 || fmt.Sprintf("%.6f", got.CostUSD) != "0.003000" {
		t.Errorf("predict seconds %v, cost %v", got.PredictSeconds, got.CostUSD)
	}
	st := e.fake.Stats()
	if st.Creates["faces https://img.example/a.jpg"] != 1 || st.Creates["caption https://img.example/a.jpg"] != 1 {
		t.Errorf("creates = %v", st.Creates)
	}
	e.noBiometrics()
}

func TestUploadSuccessReleasesImage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	png := append([]byte("\x89PNG\r\n\x1a\n"), make([]byte, 200)...)
	j, err := e.store.Submit(context.Background(), images.Submission{Image: png, SubmittedBy: "test"}, limits)
	if err != nil {
		t.Fatal(err)
	}
	if j.Source != "upload" || j.UploadBytes != int64(len(png)) {
		t.Fatalf("job = %+v", j)
	}
	e.start(e.opts(e.replicate("")))
	e.waitState(j.ID, images.StateSucceeded, 10*time.Second)
	dataURL := "data:image/png;base64," + base64.StdEncoding.EncodeToString(png)
	if n := e.fake.Stats().Creates["faces "+dataURL]; n != 1 {
		t.Errorf("the provider did not get the upload as a data URL (creates %v)", e.fake.Stats().Creates)
	}
	if n := e.count(`SELECT count(*) FROM mailslot.image_uploads`); n != 0 {
		t.Errorf("%d uploads kept after success", n)
	}
}

func TestHuggingFaceSuccess(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	j := e.submit("hf.jpg", 3)
	e.start(e.opts(e.huggingface()))
	got := e.waitState(j.ID, images.StateSucceeded, 10*time.Second)
	if *got.Caption != "Two people smiling at a table." || *got.FaceCount != 2 || got.Provider != "huggingface" {
		t.Errorf("job = %+v", got)
	}
	if got.PredictSeconds <= 0 {
		t.Errorf("no measured compute time: %v", got.PredictSeconds)
	}
	st := e.fake.Stats()
	if st.HFWaitHeader != 2 {
		t.Errorf("requests asking the endpoint to wait: %d, want 2", st.HFWaitHeader)
	}
	e.noBiometrics()
}

func TestServerErrorsAreRetried(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.fake.Set(func(k *imagestest.Knobs) { k.Fail5xx = 2 })
	j := e.submit("a.jpg", 5)
	e.start(e.opts(e.replicate("")))
	got := e.waitState(j.ID, images.StateSucceeded, 10*time.Second)
	if got.Attempts < 2 || got.Attempts > 3 {
		t.Errorf("succeeded after %d attempts, want 2 or 3 (two 5xx answers)", got.Attempts)
	}
	if got.LastError != "" {
		t.Errorf("last error kept after success: %q", got.LastError)
	}
	if e.fake.Stats().Served5xx != 2 {
		t.Errorf("served %d injected failures", e.fake.Stats().Served5xx)
	}
}

func TestDeadAfterMaxAttempts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.fake.Set(func(k *imagestest.Knobs) { k.Fail5xx = 1000 })
	j := e.submit("a.jpg", 3)
	d, _ := e.start(e.opts(e.replicate("")))
	got := e.waitState(j.ID, images.StateDead, 10*time.Second)
	if got.Attempts != 3 || !strings.Contains(got.LastError, "status 50") {
		t.Errorf("dead after %d attempts with %q", got.Attempts, got.LastError)
	}
	st, err := d.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Dead != 1 || st.QueueDepth != 0 || st.InFlight != 0 || st.LastError == "" {
		t.Errorf("status = %+v", st)
	}
}

func TestModelPredictionFailureIsRetried(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.fake.Set(func(k *imagestest.Knobs) { k.FailPredictions = true })
	j := e.submit("a.jpg", 2)
	e.start(e.opts(e.replicate("")))
	got := e.waitState(j.ID, images.StateDead, 10*time.Second)
	if got.Attempts != 2 || !strings.Contains(got.LastError, "CUDA out of memory") {
		t.Errorf("dead after %d attempts with %q", got.Attempts, got.LastError)
	}
	// Failed predictions are billed too.
	if got.PredictSeconds != 6 {
		t.Errorf("predict seconds = %v, want 4 predictions x 1.5", got.PredictSeconds)
	}
}

func TestPermanentErrorIsDeadAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p, err := images.NewReplicate(images.ReplicateOptions{
		BaseURL: e.fake.URL, Token: imagestest.Token, RequestTimeout: time.Second,
		Models: map[string]string{images.ModelFaces: "fake/unknown:0123", images.ModelCaption: imagestest.CaptionModel},
	})
	if err != nil {
		t.Fatal(err)
	}
	j := e.submit("a.jpg", 5)
	e.start(e.opts(p))
	got := e.waitState(j.ID, images.StateDead, 10*time.Second)
	if got.Attempts != 1 || !strings.Contains(got.LastError, "status 404") {
		t.Errorf("dead after %d attempts with %q", got.Attempts, got.LastError)
	}
}

func TestAttemptTimeoutCancelsPredictions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.fake.Set(func(k *imagestest.Knobs) { k.Hold = true })
	j := e.submit("a.jpg", 2)
	o := e.opts(e.replicate(""))
	o.AttemptTimeout = 1500 * time.Millisecond
	e.start(o)
	got := e.waitState(j.ID, images.StateDead, 15*time.Second)
	if got.Attempts != 2 || !strings.Contains(got.LastError, "timed out") {
		t.Errorf("dead after %d attempts with %q", got.Attempts, got.LastError)
	}
	st := e.fake.Stats()
	if len(st.Cancels) != 4 || e.fake.InFlight() != 0 {
		t.Errorf("cancelled %d predictions (want 4: two per attempt), %d still running", len(st.Cancels), e.fake.InFlight())
	}
	if st.MaxInFlight != 1 {
		t.Errorf("a model ran twice at once on one image (max %d)", st.MaxInFlight)
	}
}

func TestHangingRequestsTimeOut(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.fake.Set(func(k *imagestest.Knobs) { k.Hang = true })
	p, err := images.NewReplicate(images.ReplicateOptions{
		BaseURL: e.fake.URL, Token: imagestest.Token, RequestTimeout: 200 * time.Millisecond,
		Models: map[string]string{images.ModelFaces: imagestest.FacesModel, images.ModelCaption: imagestest.CaptionModel},
	})
	if err != nil {
		t.Fatal(err)
	}
	j := e.submit("a.jpg", 10)
	e.start(e.opts(p))
	testsync.Until(t, 10*time.Second, "a hung request ends the attempt", func() bool {
		j := e.job(j.ID)
		return j.Attempts >= 1 && strings.Contains(j.LastError, "no answer within 200ms")
	})
	e.fake.Set(func(k *imagestest.Knobs) { k.Hang = false })
	got := e.waitState(j.ID, images.StateSucceeded, 10*time.Second)
	if got.Attempts < 2 {
		t.Errorf("attempts = %d", got.Attempts)
	}
}

func TestSlowColdStart(t *testing.T) {
	t.Parallel()
	t.Run("replicate", func(t *testing.T) {
		e := newEnv(t)
		e.fake.Set(func(k *imagestest.Knobs) { k.ColdStart = 1500 * time.Millisecond })
		j := e.submit("a.jpg", 3)
		o := e.opts(e.replicate(""))
		o.AttemptTimeout = 8 * time.Second
		e.start(o)
		got := e.waitState(j.ID, images.StateSucceeded, 10*time.Second)
		if got.Attempts != 1 {
			t.Errorf("a cold start within the timeout cost %d attempts", got.Attempts)
		}
	})
	t.Run("huggingface 503 loading", func(t *testing.T) {
		e := newEnv(t)
		e.fake.Set(func(k *imagestest.Knobs) { k.ColdStart = 1200 * time.Millisecond })
		j := e.submit("a.jpg", 3)
		o := e.opts(e.huggingface())
		o.AttemptTimeout = 8 * time.Second
		e.start(o)
		got := e.waitState(j.ID, images.StateSucceeded, 10*time.Second)
		if got.Attempts != 1 {
			t.Errorf("503 loading cost %d attempts", got.Attempts)
		}
		if st := e.fake.Stats(); st.HFLoading == 0 {
			t.Error("the endpoint never answered 503 loading")
		}
	})
	t.Run("huggingface holds the request", func(t *testing.T) {
		e := newEnv(t)
		e.fake.Set(func(k *imagestest.Knobs) { k.ColdStart = 1200 * time.Millisecond; k.HFHonorWait = true })
		j := e.submit("a.jpg", 3)
		e.start(e.opts(e.huggingface()))
		got := e.waitState(j.ID, images.StateSucceeded, 10*time.Second)
		if st := e.fake.Stats(); got.Attempts != 1 || st.HFLoading != 0 || st.HFRequests["faces"] != 1 {
			t.Errorf("attempts %d, 503s %d, faces requests %d", got.Attempts, st.HFLoading, st.HFRequests["faces"])
		}
	})
	t.Run("cold start longer than the timeout", func(t *testing.T) {
		e := newEnv(t)
		e.fake.Set(func(k *imagestest.Knobs) { k.ColdStart = time.Hour })
		j := e.submit("a.jpg", 1)
		o := e.opts(e.replicate(""))
		o.AttemptTimeout = 500 * time.Millisecond
		e.start(o)
		got := e.waitState(j.ID, images.StateDead, 10*time.Second)
		if !strings.Contains(got.LastError, "starting") || !strings.Contains(got.LastError, "cold start") {
			t.Errorf("last error %q does not say the models never started", got.LastError)
		}
	})
}

// receiver is what the edge's POST /v1/webhooks/replicate does, on a
// plain http server: verify, parse, apply.
func (e *env) receiver(secret string) *httptest.Server {
	e.t.Helper()
	key, err := stdwebhook.ParseSecret(secret)
	if err != nil {
		e.t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 8<<20))
		if err := stdwebhook.Verify([]stdwebhook.Secret{key}, r.Header.Get(stdwebhook.HeaderID), r.Header.Get(stdwebhook.HeaderTimestamp),
			r.Header.Get(stdwebhook.HeaderSignature), body, time.Now(), 0); err != nil {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		p, err := images.ParseReplicatePrediction(body)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if _, err := e.store.ApplyPrediction(r.Context(), "replicate", p, 0.001); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
	}))
	e.t.Cleanup(srv.Close)
	return srv
}

func TestDuplicateWebhooks(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// Long enough that the dispatcher has recorded the predictions when
	// the webhooks come (a faster one is left to the safety-net poll).
	e.fake.Set(func(k *imagestest.Knobs) { k.WebhookCopies = 3; k.RunTime = 500 * time.Millisecond })
	rcv := e.receiver(e.fake.WebhookSecret)
	j := e.submit("a.jpg", 3)
	o := e.opts(e.replicate(rcv.URL))
	o.PollInterval = time.Hour // only webhooks can finish the job
	e.start(o)
	got := e.waitState(j.ID, images.StateSucceeded, 10*time.Second)
	if got.PredictSeconds != 3 {
		t.Errorf("predict seconds = %v, want 3: a repeated delivery was billed again", got.PredictSeconds)
	}
	if n := e.count(`SELECT count(*) FROM mailslot.image_spend`); n != 2 {
		t.Errorf("%d spend rows, want 2", n)
	}
	testsync.Until(t, 5*time.Second, "six deliveries", func() bool { return len(e.fake.Stats().WebhookStatuses) == 6 })
	for _, code := range e.fake.Stats().WebhookStatuses {
		if code != http.StatusOK {
			t.Errorf("a delivery was answered %d", code)
		}
	}
	if gets := e.fake.Stats().Gets; gets != 0 {
		t.Errorf("polled %d times although webhooks arrived", gets)
	}
}

func TestForgedWebhooksAreRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.fake.Set(func(k *imagestest.Knobs) { k.ForgeWebhooks = true; k.Hold = true })
	rcv := e.receiver(e.fake.WebhookSecret)
	j := e.submit("a.jpg", 3)
	o := e.opts(e.replicate(rcv.URL))
	o.PollInterval = time.Hour
	e.start(o)
	testsync.Until(t, 5*time.Second, "two predictions running", func() bool { return e.fake.InFlight() == 2 })
	ids := e.fake.PredictionIDs()
	e.fake.Release()
	testsync.Until(t, 5*time.Second, "two forged deliveries", func() bool { return len(e.fake.Stats().WebhookStatuses) == 2 })
	for _, code := range e.fake.Stats().WebhookStatuses {
		if code != http.StatusUnauthorized {
			t.Errorf("a forged delivery was answered %d", code)
		}
	}
	if got := e.job(j.ID); got.State != images.StateRunning {
		t.Errorf("forged webhooks moved the job to %s", got.State)
	}
	// A tampered body under a genuine signature is refused too.
	body := e.fake.Prediction(ids[0])
	h := e.fake.SignedHeaders("msg_1", time.Now(), body, false)
	tampered := strings.Replace(string(body), `"succeeded"`, `"failed"`, 1)
	req, _ := http.NewRequest(http.MethodPost, rcv.URL, strings.NewReader(tampered))
	req.Header = h
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("tampered delivery answered %d", resp.StatusCode)
	}
	// The genuine deliveries complete the job.
	for _, id := range ids {
		body := e.fake.Prediction(id)
		req, _ := http.NewRequest(http.MethodPost, rcv.URL, strings.NewReader(string(body)))
		req.Header = e.fake.SignedHeaders("msg_"+id, time.Now(), body, false)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("genuine delivery answered %d", resp.StatusCode)
		}
	}
	e.waitState(j.ID, images.StateSucceeded, 5*time.Second)
}

func TestBudgetStopsDispatching(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	first := e.submit("a.jpg", 3)
	o := e.opts(e.replicate(""))
	o.Concurrency = 1
	o.PricePerSecond = 1 // a job costs 2 x 1.5 s = $3
	o.MonthlyBudget = 2
	d, _ := e.start(o)
	e.waitState(first.ID, images.StateSucceeded, 10*time.Second)
	second := e.submit("b.jpg", 3)
	var st images.Status
	testsync.Until(t, 5*time.Second, "the dispatcher reports the budget", func() bool {
		var err error
		st, err = d.Status(context.Background())
		return err == nil && st.State == images.StateBudgetExhausted
	})
	// Time passing is what is tested: over many dispatch intervals the
	// dispatcher must not start the second job. No signal marks "did
	// nothing".
	time.Sleep(300 * time.Millisecond)
	if got := e.job(second.ID); got.State != images.StateQueued || got.Attempts != 0 {
		t.Errorf("over budget, the second job is %s after %d attempts", got.State, got.Attempts)
	}
	if !st.BudgetExhausted || st.MonthToDateUSD != 3 || st.MonthlyBudgetUSD != 2 || st.QueueDepth != 1 ||
		!strings.Contains(st.Reason, "monthly budget reached") {
		t.Errorf("status = %+v", st)
	}
	if c := e.fake.Stats().Creates["faces https://img.example/b.jpg"]; c != 0 {
		t.Errorf("the second job reached the provider %d times", c)
	}
}

func TestTwoDispatchersNeverRunAJobTwice(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.fake.Set(func(k *imagestest.Knobs) { k.RunTime = 80 * time.Millisecond })
	const n = 16
	var ids []int64
	for i := range n {
		ids = append(ids, e.submit(fmt.Sprintf("%02d.jpg", i), 3).ID)
	}
	for _, owner := range []string{"edge-a", "edge-b"} {
		o := e.opts(e.replicate(""))
		o.Owner = owner
		o.Concurrency = 3
		o.Interval = 5 * time.Millisecond
		e.start(o)
	}
	for _, id := range ids {
		e.waitState(id, images.StateSucceeded, 20*time.Second)
	}
	st := e.fake.Stats()
	if len(st.Creates) != 2*n {
		t.Errorf("%d distinct model runs, want %d", len(st.Creates), 2*n)
	}
	for k, c := range st.Creates {
		if c != 1 {
			t.Errorf("%s was dispatched %d times", k, c)
		}
	}
	if st.MaxInFlight != 1 {
		t.Errorf("max in flight per image and model = %d", st.MaxInFlight)
	}
	if n := e.count(`SELECT count(*) FROM mailslot.image_jobs WHERE attempts <> 1`); n != 0 {
		t.Errorf("%d jobs took more than one attempt", n)
	}
}

func TestErasureMidFlight(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	var lead int64
	if err := e.pool.QueryRow(ctx, `
		INSERT INTO mailslot.leads (property, email, email_hmac, consent_basis, first_seen_at, last_seen_at)
		VALUES ('example.com', 'ann@example.com', '\x01', 'express', now(), now()) RETURNING id`).Scan(&lead); err != nil {
		t.Fatal(err)
	}
	j, err := e.store.Submit(ctx, images.Submission{LeadID: &lead, URL: "https://img.example/ann.jpg", SubmittedBy: "test"}, limits)
	if err != nil {
		t.Fatal(err)
	}
	e.fake.Set(func(k *imagestest.Knobs) { k.Hold = true })
	d, _ := e.start(e.opts(e.replicate("")))
	testsync.Until(t, 5*time.Second, "the provider holds both predictions", func() bool { return e.fake.InFlight() == 2 })
	if _, err := e.pool.Exec(ctx, `DELETE FROM mailslot.leads WHERE id = $1`, lead); err != nil {
		t.Fatal(err)
	}
	e.fake.Release()
	testsync.Until(t, 5*time.Second, "the provider finishes or cancels both", func() bool { return e.fake.InFlight() == 0 })
	testsync.Until(t, 5*time.Second, "the dispatcher is idle", func() bool {
		st, err := d.Status(ctx)
		return err == nil && st.State == images.StateIdle
	})
	if _, err := e.store.Get(ctx, j.ID); err != images.ErrNotFound {
		t.Errorf("job after erasure: %v", err)
	}
	if n := e.count(`SELECT count(*) FROM mailslot.image_jobs`) + e.count(`SELECT count(*) FROM mailslot.image_predictions`); n != 0 {
		t.Errorf("%d job or prediction rows survived the erasure", n)
	}
	if n := e.count(`SELECT count(*) FROM mailslot.image_jobs WHERE caption IS NOT NULL OR face_count IS NOT NULL`); n != 0 {
		t.Errorf("%d results stored", n)
	}
}

func TestCancelRunningJob(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.fake.Set(func(k *imagestest.Knobs) { k.Hold = true })
	j := e.submit("a.jpg", 3)
	e.start(e.opts(e.replicate("")))
	testsync.Until(t, 5*time.Second, "both predictions running", func() bool { return e.fake.InFlight() == 2 })
	got, err := e.store.Cancel(context.Background(), j.ID)
	if err != nil || got.State != images.StateCancelled {
		t.Fatalf("cancel = %+v, %v", got, err)
	}
	testsync.Until(t, 5*time.Second, "the dispatcher cancels both at the provider", func() bool { return len(e.fake.Stats().Cancels) == 2 })
	// What is tested is that nothing happens next: the attempt must not
	// write a result over the cancellation. Give it time to (wrongly) do so.
	time.Sleep(100 * time.Millisecond)
	if got := e.job(j.ID); got.State != images.StateCancelled || got.Caption != nil {
		t.Errorf("job = %s, caption %v", got.State, got.Caption)
	}
	if _, err := e.store.Cancel(context.Background(), j.ID); err != nil {
		t.Errorf("cancelling twice: %v", err)
	}
}

func TestRetryDeadJob(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.fake.Set(func(k *imagestest.Knobs) { k.Fail5xx = 2 })
	j := e.submit("a.jpg", 1)
	e.start(e.opts(e.replicate("")))
	e.waitState(j.ID, images.StateDead, 10*time.Second)
	e.fake.Set(func(k *imagestest.Knobs) { k.Fail5xx = 0 })
	got, err := e.store.Retry(context.Background(), j.ID)
	if err != nil || got.Attempts != 0 {
		t.Fatalf("retry = %+v, %v", got, err)
	}
	got = e.waitState(j.ID, images.StateSucceeded, 10*time.Second)
	if _, err := e.store.Retry(context.Background(), j.ID); err == nil {
		t.Error("retrying a succeeded job was accepted")
	}
	if got.Caption == nil {
		t.Error("no caption after retry")
	}
}

// TestShutdownHandsOverRunningPredictions: a dispatcher stopping mid-job
// gives the job back without counting the attempt, and the next one
// adopts the predictions still running instead of paying for new ones.
func TestShutdownHandsOverRunningPredictions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.fake.Set(func(k *imagestest.Knobs) { k.Hold = true })
	j := e.submit("a.jpg", 3)
	_, stop := e.start(e.opts(e.replicate("")))
	testsync.Until(t, 5*time.Second, "both predictions running", func() bool { return e.fake.InFlight() == 2 })
	stop()
	if got := e.job(j.ID); got.State != images.StateQueued || got.Attempts != 0 {
		t.Fatalf("after shutdown the job is %s with %d attempts", got.State, got.Attempts)
	}
	if c := len(e.fake.Stats().Cancels); c != 0 {
		t.Fatalf("shutdown cancelled %d predictions", c)
	}
	o := e.opts(e.replicate(""))
	o.Owner = "other-node"
	e.start(o)
	testsync.Until(t, 5*time.Second, "the other node to take the job", func() bool { return e.job(j.ID).State == images.StateRunning })
	e.fake.Release()
	got := e.waitState(j.ID, images.StateSucceeded, 10*time.Second)
	for k, c := range e.fake.Stats().Creates {
		if c != 1 {
			t.Errorf("%s created %d times", k, c)
		}
	}
	if got.Attempts != 1 {
		t.Errorf("attempts = %d", got.Attempts)
	}
}

// TestShutdownDuringACreateLosesNoPrediction: shutdown begins while the
// provider has created a prediction but not yet answered. The dispatcher
// waits for the answer and records the prediction, starts nothing more,
// and the next node adopts it instead of paying for it again.
func TestShutdownDuringACreateLosesNoPrediction(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.fake.Set(func(k *imagestest.Knobs) { k.Hold, k.CreateDelay = true, 300*time.Millisecond })
	j := e.submit("a.jpg", 3)
	_, stop := e.start(e.opts(e.replicate("")))
	created := func() int {
		n := 0
		for _, c := range e.fake.Stats().Creates {
			n += c
		}
		return n
	}
	testsync.Until(t, 5*time.Second, "the first prediction to exist", func() bool { return created() == 1 })
	stop()
	if n := created(); n != 1 {
		t.Fatalf("%d predictions created by a dispatcher that was shutting down, want only the one in flight", n)
	}
	var recorded int
	if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM mailslot.image_predictions WHERE job_id = $1`, j.ID).Scan(&recorded); err != nil {
		t.Fatal(err)
	}
	if recorded != 1 {
		t.Fatalf("%d predictions recorded after the shutdown, want the one whose answer came during it", recorded)
	}
	e.fake.Set(func(k *imagestest.Knobs) { k.CreateDelay = 0 })
	o := e.opts(e.replicate(""))
	o.Owner = "other-node"
	e.start(o)
	testsync.Until(t, 5*time.Second, "the other node to start the second model", func() bool { return created() == 2 })
	e.fake.Release()
	e.waitState(j.ID, images.StateSucceeded, 10*time.Second)
	for k, c := range e.fake.Stats().Creates {
		if c != 1 {
			t.Errorf("%s created %d times", k, c)
		}
	}
}

// TestAbandonedLeaseIsReaped: a dispatcher that died mid-attempt leaves a
// running job whose lease runs out; the next dispatcher retries it.
func TestAbandonedLeaseIsReaped(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	j := e.submit("a.jpg", 3)
	if _, err := e.pool.Exec(context.Background(), `
		UPDATE mailslot.image_jobs SET state = 'running', attempts = 1, lease_token = gen_random_uuid(),
		       lease_owner = 'dead-node', lease_until = now() - interval '1 second' WHERE id = $1`, j.ID); err != nil {
		t.Fatal(err)
	}
	e.start(e.opts(e.replicate("")))
	got := e.waitState(j.ID, images.StateSucceeded, 10*time.Second)
	if got.Attempts != 2 {
		t.Errorf("attempts = %d, want the abandoned one counted", got.Attempts)
	}
}

func TestStatusCounts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	a := e.submit("a.jpg", 3)
	e.submit("b.jpg", 3)
	if _, err := e.store.Cancel(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	st, err := images.ReadStatus(ctx, e.pool, "replicate", 10)
	if err != nil {
		t.Fatal(err)
	}
	if st.QueueDepth != 1 || st.Ready != 1 || st.Cancelled != 1 || st.InFlight != 0 || st.State != "disabled" || st.MonthToDateUSD != 0 {
		t.Errorf("status = %+v", st)
	}
}
