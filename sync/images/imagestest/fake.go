// Package imagestest is a fake GPU provider for the image dispatcher's
// tests: one httptest server that speaks Replicate's predictions API
// (create, get, cancel, signed webhooks on completion) and two Hugging Face
// Inference Endpoints (faces and caption, 503 with estimated_time while
// "loading"), with knobs for the failures the dispatcher must survive:
// 5xx answers, hanging requests, slow cold starts, predictions that never
// finish or fail, duplicate and forged webhooks.
//
// It is written from the providers' documented HTTP shapes, independently
// of package dispatch (it signs webhooks with its own code), so that the
// tests check the client against the protocol rather than against itself.
package imagestest

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Model settings the fake knows, as MAILSLOT_IMAGE_FACES_MODEL and
// MAILSLOT_IMAGE_CAPTION_MODEL would name them.
const (
	FacesVersion   = "5f2c4a7e1b9d3c6f8a0e2d4b6c8f1a3e5d7b9c2f4a6e8d0b1c3f5a7e9d2b4c6f"
	CaptionVersion = "9b1d3f5a7c9e2b4d6f8a1c3e5b7d9f2a4c6e8b1d3f5a7c9e2b4d6f8a1c3e5b7d"
	FacesModel     = "fake/insightface:" + FacesVersion
	CaptionModel   = "fake/phi-3-vision:" + CaptionVersion
	// Official-model forms, created through /v1/models/{owner}/{name}/predictions.
	FacesOfficial   = "fake/insightface"
	CaptionOfficial = "fake/phi-3-vision"
)

// Token is the API token the fake accepts (Replicate and Hugging Face).
const Token = "r8_fake_token_0123456789"

// Knobs change the fake's behaviour; set them with Fake.Set.
type Knobs struct {
	// Fail5xx makes the next n API requests (either provider) answer
	// 500, 502, 503, 500, … with a problem body.
	Fail5xx int
	// Hang makes API requests wait until the client gives up.
	Hang bool
	// ColdStart keeps each new Replicate prediction "starting" this long,
	// and each Hugging Face endpoint answering 503 "loading" this long
	// after its first request.
	ColdStart time.Duration
	// RunTime is how long a prediction is "processing".
	RunTime time.Duration
	// Hold keeps predictions "processing" until Release (or cancel).
	Hold bool
	// CreateDelay holds back the answer to a Replicate create this long
	// after the prediction exists (a slow network): a client that gives
	// up meanwhile never learns the id of what it started.
	CreateDelay time.Duration
	// FailPredictions makes predictions end "failed".
	FailPredictions bool
	// PredictTime is the metrics.predict_time reported per prediction.
	PredictTime float64
	// Faces is the number of faces the detector reports; Caption the text.
	Faces   int
	Caption string
	// WebhookCopies is how many times each completion webhook is sent (a
	// retried delivery keeps its webhook-id, as Replicate's do).
	WebhookCopies int
	// ForgeWebhooks signs webhooks with a key other than WebhookSecret.
	ForgeWebhooks bool
	// HFHonorWait makes a loading endpoint hold a request that carries
	// X-Wait-For-Model: true (or X-Scale-Up-Timeout) instead of answering
	// 503.
	HFHonorWait bool
}

// Fake is the fake provider.
type Fake struct {
	// URL is the Replicate API origin; HFFacesURL and HFCaptionURL are the
	// two endpoints.
	URL, HFFacesURL, HFCaptionURL string
	// WebhookSecret is the signing secret, as Replicate hands it out.
	WebhookSecret string

	srv      *httptest.Server
	key      []byte
	stop     chan struct{}
	loopDone chan struct{}
	client   *http.Client

	mu       sync.Mutex
	k        Knobs
	released bool
	preds    map[string]*pred
	order    []string
	hfFirst  map[string]time.Time
	stats    Stats
}

type pred struct {
	id, model, image, webhook string
	created                   time.Time
	status                    string
	canceled                  bool
	sent                      bool
}

// Stats is what the fake has seen.
type Stats struct {
	// Creates counts predictions created per "model image" key.
	Creates map[string]int
	// CreateRequests counts create calls, including refused ones.
	CreateRequests int
	Gets           int
	// Cancels lists cancelled prediction ids.
	Cancels []string
	// HFRequests counts requests per endpoint ("faces", "caption");
	// HFLoading counts the 503 "loading" answers; HFWaitHeader counts
	// requests that asked the endpoint to wait.
	HFRequests   map[string]int
	HFLoading    int
	HFWaitHeader int
	// WebhookStatuses lists the receiver's answers, in order.
	WebhookStatuses []int
	// Served5xx counts injected failures.
	Served5xx int
	// MaxInFlight is the largest number of unfinished predictions of one
	// model on one image at any moment (1 means never twice).
	MaxInFlight int
}

// New starts a fake; it is closed when the test ends.
func New(t testing.TB) *Fake {
	t.Helper()
	key := make([]byte, 24)
	_, _ = rand.Read(key)
	f := &Fake{
		key:           key,
		WebhookSecret: "whsec_" + base64.StdEncoding.EncodeToString(key),
		stop:          make(chan struct{}),
		loopDone:      make(chan struct{}),
		client:        &http.Client{Timeout: 5 * time.Second},
		k:             Knobs{Faces: 2, Caption: "Two people smiling at a table.", PredictTime: 1.5, WebhookCopies: 1, RunTime: 50 * time.Millisecond},
		preds:         map[string]*pred{},
		hfFirst:       map[string]time.Time{},
		stats:         Stats{Creates: map[string]int{}, HFRequests: map[string]int{}},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/predictions", f.create)
	mux.HandleFunc("POST /v1/models/{owner}/{name}/predictions", f.create)
	mux.HandleFunc("GET /v1/predictions/{id}", f.get)
	mux.HandleFunc("POST /v1/predictions/{id}/cancel", f.cancel)
	mux.HandleFunc("POST /hf/{model}", f.hf)
	f.srv = httptest.NewServer(mux)
	f.URL = f.srv.URL
	f.HFFacesURL = f.srv.URL + "/hf/faces"
	f.HFCaptionURL = f.srv.URL + "/hf/caption"
	go f.loop()
	t.Cleanup(f.Close)
	return f
}

// Close stops the fake.
func (f *Fake) Close() {
	select {
	case <-f.stop:
		return
	default:
	}
	close(f.stop)
	<-f.loopDone
	f.srv.CloseClientConnections()
	f.srv.Close()
}

// Set changes knobs.
func (f *Fake) Set(change func(*Knobs)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change(&f.k)
}

// Release lets held predictions finish.
func (f *Fake) Release() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.k.Hold = false
	f.released = true
}

// Stats returns a copy of what the fake has seen.
func (f *Fake) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.stats
	s.Creates = make(map[string]int, len(f.stats.Creates))
	for k, v := range f.stats.Creates {
		s.Creates[k] = v
	}
	s.HFRequests = make(map[string]int, len(f.stats.HFRequests))
	for k, v := range f.stats.HFRequests {
		s.HFRequests[k] = v
	}
	s.Cancels = append([]string(nil), f.stats.Cancels...)
	s.WebhookStatuses = append([]int(nil), f.stats.WebhookStatuses...)
	return s
}

// InFlight counts predictions not yet final.
func (f *Fake) InFlight() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, p := range f.preds {
		f.advance(p, time.Now())
		if !final(p.status) {
			n++
		}
	}
	return n
}

// PredictionIDs lists the predictions created, oldest first.
func (f *Fake) PredictionIDs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.order...)
}

func final(s string) bool { return s == "succeeded" || s == "failed" || s == "canceled" }

// auth checks the bearer token; both providers take one.
func (f *Fake) auth(w http.ResponseWriter, r *http.Request) bool {
	if r.Header.Get("Authorization") != "Bearer "+Token {
		problem(w, http.StatusUnauthorized, "Unauthenticated", "You did not pass a valid authentication token")
		return false
	}
	return true
}

// inject serves an injected failure or a hang; it reports whether it did.
func (f *Fake) inject(w http.ResponseWriter, r *http.Request) bool {
	f.mu.Lock()
	hang := f.k.Hang
	code := 0
	if f.k.Fail5xx > 0 {
		f.k.Fail5xx--
		code = []int{500, 502, 503}[f.stats.Served5xx%3]
		f.stats.Served5xx++
	}
	f.mu.Unlock()
	if hang {
		select {
		case <-r.Context().Done():
		case <-f.stop:
		}
		return true
	}
	if code != 0 {
		problem(w, code, http.StatusText(code), "injected failure")
		return true
	}
	return false
}

func problem(w http.ResponseWriter, code int, title, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"title": title, "detail": detail, "status": code})
}

type createBody struct {
	Version       string         `json:"version"`
	Input         map[string]any `json:"input"`
	Webhook       string         `json:"webhook"`
	WebhookEvents []string       `json:"webhook_events_filter"`
}

func (f *Fake) create(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.stats.CreateRequests++
	f.mu.Unlock()
	if !f.auth(w, r) || f.inject(w, r) {
		return
	}
	var b createBody
	if err := json.NewDecoder(io.LimitReader(r.Body, 16<<20)).Decode(&b); err != nil {
		problem(w, http.StatusBadRequest, "Invalid JSON", err.Error())
		return
	}
	model := ""
	switch {
	case r.PathValue("name") != "":
		switch r.PathValue("owner") + "/" + r.PathValue("name") {
		case FacesOfficial:
			model = "faces"
		case CaptionOfficial:
			model = "caption"
		}
	case b.Version == FacesVersion:
		model = "faces"
	case b.Version == CaptionVersion:
		model = "caption"
	}
	if model == "" {
		problem(w, http.StatusNotFound, "Not found", "The requested model or version does not exist")
		return
	}
	image, _ := b.Input["image"].(string)
	if image == "" {
		problem(w, http.StatusUnprocessableEntity, "Input validation failed", "input: image is required")
		return
	}
	if model == "caption" {
		if s, _ := b.Input["prompt"].(string); s == "" {
			problem(w, http.StatusUnprocessableEntity, "Input validation failed", "input: prompt is required")
			return
		}
	}
	if b.Webhook != "" && !strings.HasPrefix(b.Webhook, "http") {
		problem(w, http.StatusUnprocessableEntity, "Invalid webhook", "webhook must be an HTTPS URL")
		return
	}
	p := &pred{id: newID(), model: model, image: image, webhook: b.Webhook, created: time.Now(), status: "starting"}
	f.mu.Lock()
	f.preds[p.id] = p
	f.order = append(f.order, p.id)
	key := model + " " + image
	f.stats.Creates[key]++
	inflight := 0
	for _, q := range f.preds {
		f.advance(q, time.Now())
		if q.model == model && q.image == image && !final(q.status) {
			inflight++
		}
	}
	f.stats.MaxInFlight = max(f.stats.MaxInFlight, inflight)
	body := f.objectLocked(p)
	delay := f.k.CreateDelay
	f.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return // the client gave up: the prediction exists all the same
		case <-f.stop:
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write(body)
}

func (f *Fake) get(w http.ResponseWriter, r *http.Request) {
	if !f.auth(w, r) || f.inject(w, r) {
		return
	}
	f.mu.Lock()
	f.stats.Gets++
	p := f.preds[r.PathValue("id")]
	if p == nil {
		f.mu.Unlock()
		problem(w, http.StatusNotFound, "Not found", "The requested prediction does not exist")
		return
	}
	f.advance(p, time.Now())
	body := f.objectLocked(p)
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

func (f *Fake) cancel(w http.ResponseWriter, r *http.Request) {
	if !f.auth(w, r) || f.inject(w, r) {
		return
	}
	f.mu.Lock()
	p := f.preds[r.PathValue("id")]
	if p == nil {
		f.mu.Unlock()
		problem(w, http.StatusNotFound, "Not found", "The requested prediction does not exist")
		return
	}
	f.advance(p, time.Now())
	if !final(p.status) {
		p.status, p.canceled = "canceled", true
	}
	f.stats.Cancels = append(f.stats.Cancels, p.id)
	body := f.objectLocked(p)
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

// advance moves p along its timeline: starting for ColdStart, processing
// for RunTime (or until Release while held), then succeeded or failed.
func (f *Fake) advance(p *pred, now time.Time) {
	if final(p.status) {
		return
	}
	age := now.Sub(p.created)
	switch {
	case age < f.k.ColdStart:
		p.status = "starting"
	case age < f.k.ColdStart+f.k.RunTime || f.k.Hold:
		p.status = "processing"
	case f.k.FailPredictions:
		p.status = "failed"
	default:
		p.status = "succeeded"
	}
}

// objectLocked renders p as Replicate's prediction object.
func (f *Fake) objectLocked(p *pred) []byte {
	obj := map[string]any{
		"id":         p.id,
		"model":      map[string]string{"faces": FacesOfficial, "caption": CaptionOfficial}[p.model],
		"version":    map[string]string{"faces": FacesVersion, "caption": CaptionVersion}[p.model],
		"status":     p.status,
		"input":      map[string]any{"image": p.image},
		"output":     nil,
		"error":      nil,
		"logs":       "",
		"metrics":    map[string]any{},
		"created_at": p.created.UTC().Format(time.RFC3339Nano),
		"urls": map[string]string{
			"get":    f.URL + "/v1/predictions/" + p.id,
			"cancel": f.URL + "/v1/predictions/" + p.id + "/cancel",
		},
	}
	switch p.status {
	case "succeeded":
		obj["output"] = f.outputLocked(p.model, false)
		obj["metrics"] = map[string]any{"predict_time": f.k.PredictTime, "total_time": f.k.PredictTime + 0.2}
	case "failed":
		obj["error"] = "CUDA out of memory (injected)"
		obj["metrics"] = map[string]any{"predict_time": f.k.PredictTime}
	case "canceled":
		obj["metrics"] = map[string]any{"predict_time": f.k.PredictTime / 2}
	}
	b, _ := json.Marshal(obj)
	return b
}

// outputLocked is a model's answer: InsightFace-style faces with boxes,
// landmarks and 512-float embeddings (which the dispatcher must not keep),
// or a caption as Replicate streams it (tokens) or as Hugging Face's
// image-to-text answers it.
func (f *Fake) outputLocked(model string, hf bool) any {
	if model == "faces" {
		faces := make([]map[string]any, f.k.Faces)
		for i := range faces {
			emb := make([]float64, 512)
			for j := range emb {
				emb[j] = float64((i*31+j*7)%97)/97 - 0.5
			}
			faces[i] = map[string]any{
				"bbox":      []float64{10 + float64(i)*50, 20, 60 + float64(i)*50, 90},
				"kps":       [][]float64{{20, 40}, {40, 40}, {30, 55}, {22, 70}, {38, 70}},
				"det_score": 0.98,
				"embedding": emb,
			}
		}
		if hf {
			return map[string]any{"faces": faces}
		}
		return faces
	}
	if hf {
		return []map[string]string{{"generated_text": f.k.Caption}}
	}
	return strings.SplitAfter(f.k.Caption, " ")
}

// loop finishes predictions in the background and sends their webhooks.
func (f *Fake) loop() {
	defer close(f.loopDone)
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-f.stop:
			return
		case <-t.C:
		}
		type delivery struct {
			url    string
			body   []byte
			copies int
			forge  bool
		}
		var out []delivery
		f.mu.Lock()
		for _, id := range f.order {
			p := f.preds[id]
			f.advance(p, time.Now())
			if final(p.status) && p.webhook != "" && !p.sent {
				p.sent = true
				out = append(out, delivery{p.webhook, f.objectLocked(p), max(1, f.k.WebhookCopies), f.k.ForgeWebhooks})
			}
		}
		f.mu.Unlock()
		for _, d := range out {
			id := "msg_" + newID()
			for range d.copies {
				f.deliver(d.url, id, d.body, d.forge)
			}
		}
	}
}

// deliver posts one signed webhook, as Replicate does: the webhook-id,
// webhook-timestamp and webhook-signature headers, the signature being
// base64(HMAC-SHA256(key, id + "." + timestamp + "." + body)) prefixed by
// "v1,".
func (f *Fake) deliver(url, id string, body []byte, forge bool) {
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(string(body)))
	if err != nil {
		return
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range f.SignedHeaders(id, time.Now(), body, forge) {
		req.Header[k] = v
	}
	code := 0
	if resp, err := f.client.Do(req); err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		code = resp.StatusCode
	}
	f.mu.Lock()
	f.stats.WebhookStatuses = append(f.stats.WebhookStatuses, code)
	f.mu.Unlock()
}

// SignedHeaders returns the signature headers for a delivery of body, for
// tests that post webhooks themselves; forge signs with a wrong key.
func (f *Fake) SignedHeaders(id string, at time.Time, body []byte, forge bool) http.Header {
	ts := strconv.FormatInt(at.Unix(), 10)
	key := f.key
	if forge {
		key = []byte("not-the-signing-key")
	}
	mac := hmac.New(sha256.New, key)
	fmt.Fprintf(mac, "%s.%s.", id, ts)
	mac.Write(body)
	h := http.Header{}
	h.Set("Webhook-Id", id)
	h.Set("Webhook-Timestamp", ts)
	h.Set("Webhook-Signature", "v1,"+base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	return h
}

// Prediction returns the prediction object of id as Replicate would send
// it now.
func (f *Fake) Prediction(id string) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.preds[id]
	if p == nil {
		return nil
	}
	f.advance(p, time.Now())
	return f.objectLocked(p)
}

// hf is an Inference Endpoint: synchronous, 503 while loading.
func (f *Fake) hf(w http.ResponseWriter, r *http.Request) {
	model := r.PathValue("model")
	if model != "faces" && model != "caption" {
		http.NotFound(w, r)
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+Token {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"error":"Authorization header is correct, but the token seems invalid"}`)
		return
	}
	if f.inject(w, r) {
		return
	}
	var b struct {
		Inputs     string         `json:"inputs"`
		Parameters map[string]any `json:"parameters"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 16<<20)).Decode(&b); err != nil || b.Inputs == "" {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"error":"inputs is required"}`)
		return
	}
	waits := r.Header.Get("X-Wait-For-Model") == "true" || r.Header.Get("X-Scale-Up-Timeout") != ""
	f.mu.Lock()
	f.stats.HFRequests[model]++
	if waits {
		f.stats.HFWaitHeader++
	}
	first, ok := f.hfFirst[model]
	if !ok {
		first = time.Now()
		f.hfFirst[model] = first
	}
	ready := first.Add(f.k.ColdStart)
	honor := f.k.HFHonorWait
	f.mu.Unlock()
	if left := time.Until(ready); left > 0 {
		if !(honor && waits) {
			f.mu.Lock()
			f.stats.HFLoading++
			f.mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(map[string]any{
				"error":          fmt.Sprintf("Model fake/%s is currently loading", model),
				"estimated_time": left.Seconds(),
			})
			return
		}
		select {
		case <-time.After(left):
		case <-r.Context().Done():
			return
		}
	}
	f.mu.Lock()
	run, failing := f.k.RunTime, f.k.FailPredictions
	out := f.outputLocked(model, true)
	f.stats.Creates[model+" "+b.Inputs]++
	f.mu.Unlock()
	time.Sleep(run)
	if failing {
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, `{"error":"CUDA out of memory (injected)"}`)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// newID is a Replicate-style prediction id (26 lowercase base32 chars).
func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return idEncoding.EncodeToString(b)
}
