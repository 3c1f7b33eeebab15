package api

// These tests build the image routes on a Server of their own (package
// edge, so that they do not depend on where Handler mounts the webhook),
// against a real Postgres 18 and the fake provider.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailslot/mailslot/internal/config"
	"github.com/mailslot/mailslot/internal/pgtest"
	"github.com/mailslot/mailslot/internal/testsync"
	"github.com/mailslot/mailslot/sync/images"
	"github.com/mailslot/mailslot/sync/images/imagestest"
)

const imageAdminToken = "image-test-admin-token-0123456789abcdef"

type imageEnv struct {
	t    *testing.T
	s    *Server
	h    http.Handler
	pool *pgxpool.Pool
	url  string
	fake *imagestest.Fake
}

func newImageEnv(t *testing.T, overrides map[string]string) *imageEnv {
	t.Helper()
	fake := imagestest.New(t)
	dbURL := pgtest.NewURL(t)
	env := map[string]string{
		"MAILSLOT_ENV":                            config.Development,
		"MAILSLOT_DATA_DIR":                       t.TempDir(),
		"MAILSLOT_NODE_ID":                        "image-test",
		"MAILSLOT_ADMIN_TOKEN":                    imageAdminToken,
		"MAILSLOT_IP_PEPPER":                      "image-test-pepper-0123456789abcdef0123",
		"MAILSLOT_TOKEN_KEY":                      "image-test-token-key-0123456789abcdef01",
		"DATABASE_URL":                            dbURL,
		"MAILSLOT_IMAGE_ALLOWED_HOSTS":            "img.example",
		"MAILSLOT_IMAGE_REPLICATE_WEBHOOK_SECRET": fake.WebhookSecret,
		"MAILSLOT_IMAGE_MAX_UPLOAD_BYTES":         "2048",
		"MAILSLOT_IMAGE_UPLOAD_STORE_BYTES":       "4096",
		"MAILSLOT_IMAGE_PRICE_PER_SECOND":         "0.001",
	}
	for k, v := range overrides {
		env[k] = v
	}
	cfg, err := config.Load(func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("load config: %v", err)
	}
	// The node fills in the image jobs when it has Postgres, as here.
	pool := pgtest.Pool(t, dbURL)
	var jobs ImageJobs
	if cfg.DatabaseURL != "" {
		jobs = images.NewJobs(pool, cfg.Images)
	}
	s := New(Options{Settings: SettingsFrom(cfg), Images: jobs})
	e := s.engine()
	s.imageRoutes(e.Group("/admin", s.requireAdmin))
	e.POST("/v1/webhooks/replicate", s.replicateWebhook)
	return &imageEnv{t: t, s: s, h: e, pool: pool, url: dbURL, fake: fake}
}

func (e *imageEnv) do(method, path, contentType string, body []byte, header ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Authorization", "Bearer "+imageAdminToken)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, req)
	return w
}

func decode(t *testing.T, w *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
		t.Fatalf("answer %d %q is not JSON: %v", w.Code, w.Body.String(), err)
	}
	return m
}

func pngOf(n int) []byte {
	return append([]byte("\x89PNG\r\n\x1a\n"), make([]byte, n-8)...)
}

func TestImageSubmitByURL(t *testing.T) {
	t.Parallel()
	e := newImageEnv(t, nil)
	w := e.do("POST", "/admin/images", "application/json", []byte(`{"url":"https://img.example/a.jpg"}`))
	if w.Code != http.StatusCreated {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	job := decode(t, w)
	if job["state"] != "queued" || job["source"] != "url" || job["image_url"] != "https://img.example/a.jpg" || job["max_attempts"] != 5.0 {
		t.Errorf("job = %v", job)
	}
	if loc := w.Header().Get("Location"); loc != "/admin/images/"+strconv.Itoa(int(job["id"].(float64))) {
		t.Errorf("Location = %q", loc)
	}
	for _, c := range []struct {
		name, ct, body string
		code           int
		err, field     string
	}{
		{"host not allowed", "application/json", `{"url":"https://evil.example/a.jpg"}`, 422, "invalid_fields", "host_not_allowed"},
		{"not https", "application/json", `{"url":"http://img.example/a.jpg"}`, 422, "invalid_fields", "not_https"},
		{"credentials", "application/json", `{"url":"https://u:p@img.example/a.jpg"}`, 422, "invalid_fields", "invalid"},
		{"no url", "application/json", `{}`, 422, "invalid_fields", "required"},
		{"unknown field", "application/json", `{"url":"https://img.example/a.jpg","x":1}`, 400, "invalid_json", ""},
		{"no such lead", "application/json", `{"url":"https://img.example/a.jpg","lead_id":999}`, 422, "invalid_fields", "not_found"},
		{"other type", "text/plain", `https://img.example/a.jpg`, 415, "unsupported_media_type", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := e.do("POST", "/admin/images", c.ct, []byte(c.body))
			m := decode(t, w)
			if w.Code != c.code || m["error"] != c.err {
				t.Fatalf("got %d %v, want %d %s", w.Code, m, c.code, c.err)
			}
			if c.field != "" {
				fields, _ := m["fields"].(map[string]any)
				found := false
				for _, v := range fields {
					found = found || v == c.field
				}
				if !found {
					t.Errorf("fields = %v, want a %s", fields, c.field)
				}
			}
		})
	}
}

func TestImageSubmitNeedsAdminToken(t *testing.T) {
	t.Parallel()
	e := newImageEnv(t, nil)
	req := httptest.NewRequest("POST", "/admin/images", strings.NewReader(`{"url":"https://img.example/a.jpg"}`))
	req.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, req)
	if w.Code != http.StatusUnauthorized {
		t.Errorf("status %d without a token", w.Code)
	}
}

func TestImageUploadIsBounded(t *testing.T) {
	t.Parallel()
	e := newImageEnv(t, nil)
	w := e.do("POST", "/admin/images", "image/png", pngOf(2000))
	if w.Code != http.StatusCreated {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	if job := decode(t, w); job["source"] != "upload" || job["upload_bytes"] != 2000.0 {
		t.Errorf("job = %v", job)
	}
	if w := e.do("POST", "/admin/images", "image/png", pngOf(2049)); w.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("over the per-image cap: %d %s", w.Code, w.Body)
	}
	if w := e.do("POST", "/admin/images", "image/png", []byte("this is not a png at all")); w.Code != 422 || !strings.Contains(w.Body.String(), "not_an_image") {
		t.Errorf("not an image: %d %s", w.Code, w.Body)
	}
	if w := e.do("POST", "/admin/images?lead_id=x", "image/png", pngOf(100)); w.Code != 422 {
		t.Errorf("bad lead_id: %d %s", w.Code, w.Body)
	}
	if w := e.do("POST", "/admin/images", "image/png", pngOf(2000)); w.Code != http.StatusCreated {
		t.Fatalf("second upload within the total: %d %s", w.Code, w.Body)
	}
	w = e.do("POST", "/admin/images", "image/png", pngOf(200))
	if w.Code != http.StatusInsufficientStorage || decode(t, w)["error"] != "upload_storage_full" {
		t.Errorf("over the total cap: %d %s", w.Code, w.Body)
	}
}

func TestImageGet(t *testing.T) {
	t.Parallel()
	e := newImageEnv(t, nil)
	w := e.do("POST", "/admin/images", "application/json", []byte(`{"url":"https://img.example/a.jpg"}`))
	id := int(decode(t, w)["id"].(float64))
	w = e.do("GET", "/admin/images/"+strconv.Itoa(id), "", nil)
	if w.Code != 200 || decode(t, w)["id"] != float64(id) {
		t.Errorf("get: %d %s", w.Code, w.Body)
	}
	for _, p := range []string{"/admin/images/999999", "/admin/images/abc"} {
		if w := e.do("GET", p, "", nil); w.Code != 404 || decode(t, w)["error"] != "not_found" {
			t.Errorf("%s: %d %s", p, w.Code, w.Body)
		}
	}
}

func TestImagesWithoutDatabase(t *testing.T) {
	t.Parallel()
	e := newImageEnv(t, map[string]string{"DATABASE_URL": ""})
	w := e.do("POST", "/admin/images", "application/json", []byte(`{"url":"https://img.example/a.jpg"}`))
	if w.Code != http.StatusServiceUnavailable || decode(t, w)["error"] != "images_unavailable" {
		t.Errorf("status %d %s", w.Code, w.Body)
	}
}

// TestReplicateWebhookEndToEnd runs a dispatcher whose predictions report
// back through this handler only (no polling), with every delivery sent
// twice: the job succeeds once and is billed once.
func TestReplicateWebhookEndToEnd(t *testing.T) {
	t.Parallel()
	e := newImageEnv(t, nil)
	e.fake.Set(func(k *imagestest.Knobs) { k.WebhookCopies = 2; k.RunTime = 500 * time.Millisecond })
	srv := httptest.NewServer(e.h)
	t.Cleanup(srv.Close)
	w := e.do("POST", "/admin/images", "application/json", []byte(`{"url":"https://img.example/a.jpg"}`))
	id := int64(decode(t, w)["id"].(float64))

	prov, err := images.NewReplicate(images.ReplicateOptions{
		BaseURL: e.fake.URL, Token: imagestest.Token, RequestTimeout: 2 * time.Second,
		Models:     map[string]string{images.ModelFaces: imagestest.FacesModel, images.ModelCaption: imagestest.CaptionModel},
		WebhookURL: srv.URL + "/v1/webhooks/replicate",
	})
	if err != nil {
		t.Fatal(err)
	}
	d, err := images.New(images.Options{DatabaseURL: e.url, Provider: prov, Interval: 20 * time.Millisecond,
		PollInterval: time.Hour, PricePerSecond: 0.001})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = d.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	store := images.NewStore(e.pool)
	var job images.Job
	testsync.UntilState(t, 10*time.Second, "the job to succeed", func() (bool, string) {
		job, err = store.Get(context.Background(), id)
		return err == nil && job.State == images.StateSucceeded, fmt.Sprintf("job is %s (%q)", job.State, job.LastError)
	})
	if *job.FaceCount != 2 || job.PredictSeconds != 3 {
		t.Errorf("faces %d, predict seconds %v", *job.FaceCount, job.PredictSeconds)
	}
	testsync.Within(5*time.Second, func() (bool, string) { return len(e.fake.Stats().WebhookStatuses) >= 4, "" })
	if st := e.fake.Stats(); len(st.WebhookStatuses) != 4 || st.Gets != 0 {
		t.Errorf("deliveries %v, polls %d", st.WebhookStatuses, st.Gets)
	}
	for _, code := range e.fake.Stats().WebhookStatuses {
		if code != 200 {
			t.Errorf("a delivery was answered %d", code)
		}
	}
}

func TestReplicateWebhookRefusals(t *testing.T) {
	t.Parallel()
	e := newImageEnv(t, nil)
	body := []byte(`{"id":"abcdefghijklmnopqrstuvwxyz","status":"succeeded","output":["A cat."],"metrics":{"predict_time":2}}`)
	post := func(h http.Header, b []byte) *httptest.ResponseRecorder {
		req := httptest.NewRequest("POST", "/v1/webhooks/replicate", bytes.NewReader(b))
		req.Header = h
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		e.h.ServeHTTP(w, req)
		return w
	}
	for _, c := range []struct {
		name string
		h    http.Header
		b    []byte
		code int
	}{
		{"unsigned", http.Header{}, body, 401},
		{"forged", e.fake.SignedHeaders("msg_1", time.Now(), body, true), body, 401},
		{"tampered", e.fake.SignedHeaders("msg_1", time.Now(), body, false), bytes.Replace(body, []byte("2}"), []byte("0}"), 1), 401},
		{"stale", e.fake.SignedHeaders("msg_1", time.Now().Add(-10*time.Minute), body, false), body, 401},
		{"not a prediction", e.fake.SignedHeaders("msg_1", time.Now(), []byte(`{}`), false), []byte(`{}`), 400},
		// A genuine delivery for a prediction we do not have (its job was
		// erased) is acknowledged; only its cost is kept.
		{"unknown prediction", e.fake.SignedHeaders("msg_1", time.Now(), body, false), body, 200},
		{"repeated", e.fake.SignedHeaders("msg_1", time.Now(), body, false), body, 200},
	} {
		t.Run(c.name, func(t *testing.T) {
			if w := post(c.h, c.b); w.Code != c.code {
				t.Errorf("status %d %s, want %d", w.Code, w.Body, c.code)
			}
		})
	}
	var spend, jobs int
	if err := e.pool.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM mailslot.image_spend),
		(SELECT count(*) FROM mailslot.image_jobs)`).Scan(&spend, &jobs); err != nil {
		t.Fatal(err)
	}
	if spend != 1 || jobs != 0 {
		t.Errorf("spend rows %d (want 1, once), jobs %d", spend, jobs)
	}
	off := newImageEnv(t, map[string]string{"MAILSLOT_IMAGE_REPLICATE_WEBHOOK_SECRET": ""})
	req := httptest.NewRequest("POST", "/v1/webhooks/replicate", bytes.NewReader(body))
	w := httptest.NewRecorder()
	off.h.ServeHTTP(w, req)
	if w.Code != http.StatusServiceUnavailable {
		t.Errorf("without a secret: %d", w.Code)
	}
}

// countingReader records whether anything read the body.
type countingReader struct {
	n    atomic.Int64
	left int
}

func (r *countingReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, io.EOF
	}
	n := min(len(p), r.left)
	r.left -= n
	r.n.Add(int64(n))
	return n, nil
}

// blockingReader holds its request inside the body read until released.
type blockingReader struct {
	started chan struct{}
	release chan struct{}
	once    sync.Once
}

func (r *blockingReader) Read(p []byte) (int, error) {
	r.once.Do(func() { close(r.started) })
	<-r.release
	return 0, io.EOF
}

// An unsigned or stale post is refused before its body is read, and only
// a few bodies are read at once, so a flood of forged deliveries cannot
// fill a 256 MB edge.
func TestReplicateWebhookBoundsWhatItReads(t *testing.T) {
	e := newImageEnv(t, nil)
	serve := func(h http.Header, body io.Reader) *httptest.ResponseRecorder {
		req := httptest.NewRequest("POST", "/v1/webhooks/replicate", body)
		req.Header = h
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		e.h.ServeHTTP(w, req)
		return w
	}
	for name, h := range map[string]http.Header{
		"unsigned": {},
		"stale":    e.fake.SignedHeaders("msg_1", time.Now().Add(-10*time.Minute), []byte("{}"), false),
	} {
		body := &countingReader{left: 8 << 20}
		if w := serve(h, body); w.Code != http.StatusUnauthorized {
			t.Errorf("%s: status %d, want 401", name, w.Code)
		}
		if n := body.n.Load(); n != 0 {
			t.Errorf("%s: %d body bytes read before the headers were checked", name, n)
		}
	}

	// Signed-looking posts whose bodies never end hold every slot.
	held := make([]*blockingReader, 0, 4)
	done := make(chan int, 5)
	for len(held) < cap(held) {
		r := &blockingReader{started: make(chan struct{}), release: make(chan struct{})}
		held = append(held, r)
		go func() { done <- serve(e.fake.SignedHeaders("msg_h", time.Now(), nil, false), r).Code }()
		<-r.started
	}
	w := serve(e.fake.SignedHeaders("msg_x", time.Now(), nil, false), &countingReader{left: 1 << 20})
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Errorf("a fifth body while four are read: %d (Retry-After %q), want 503 with Retry-After", w.Code, w.Header().Get("Retry-After"))
	}
	for _, r := range held {
		close(r.release)
	}
	for range held {
		if code := <-done; code != http.StatusBadRequest {
			t.Errorf("held delivery answered %d, want 400 (signed, but an empty body is no prediction)", code)
		}
	}
	body := []byte(`{"id":"abcdefghijklmnopqrstuvwxyz","status":"succeeded","output":["A cat."],"metrics":{"predict_time":2}}`)
	if w := serve(e.fake.SignedHeaders("msg_2", time.Now(), body, false), bytes.NewReader(body)); w.Code != http.StatusOK {
		t.Errorf("a genuine delivery after the slots are free: %d %s", w.Code, w.Body)
	}
}
