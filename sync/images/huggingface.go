package images

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/mailslot/mailslot/internal/backoff"
)

// HuggingFaceOptions configures the Hugging Face Inference Endpoints
// provider: one endpoint per model, each a custom handler that takes
// {"inputs": <https URL or base64 image>, "parameters": {…}} and answers
// JSON that ParseFaces or ParseCaption reads.
type HuggingFaceOptions struct {
	// Endpoints maps ModelFaces and ModelCaption to endpoint URLs.
	Endpoints map[string]string
	// Token is a Hugging Face access token (a secret).
	Token string
	// RequestTimeout bounds one HTTP call, including the time the endpoint
	// holds it while a replica starts.
	RequestTimeout time.Duration
	// MaxLoadWait caps one wait after a 503 "loading" answer, whatever
	// estimated_time says.
	MaxLoadWait time.Duration
	// Client is the HTTP client; nil means a new one.
	Client *http.Client
}

// HuggingFace runs models on Inference Endpoints. Their API is
// synchronous: Start returns a finished prediction. An endpoint that is
// scaled to zero or still loading answers 503, with an estimated_time in
// seconds when the model is loading; the request asks it to hold instead
// (X-Wait-For-Model, and X-Scale-Up-Timeout for scaled-to-zero endpoints),
// and a 503 that comes anyway is retried after the estimate, within the
// attempt's deadline, without costing the job an attempt.
type HuggingFace struct {
	o      HuggingFaceOptions
	client *http.Client
}

// NewHuggingFace checks the options.
func NewHuggingFace(o HuggingFaceOptions) (*HuggingFace, error) {
	if o.Token == "" {
		return nil, errors.New("huggingface: no access token")
	}
	for _, m := range models {
		if u := o.Endpoints[m]; !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "http://") {
			return nil, fmt.Errorf("huggingface: %s endpoint URL is not set", m)
		}
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 2 * time.Minute
	}
	if o.MaxLoadWait <= 0 {
		o.MaxLoadWait = 30 * time.Second
	}
	c := o.Client
	if c == nil {
		c = &http.Client{}
	}
	return &HuggingFace{o: o, client: c}, nil
}

// Name implements Provider.
func (h *HuggingFace) Name() string { return "huggingface" }

// Start implements Provider: it returns when the endpoint has answered.
func (h *HuggingFace) Start(ctx context.Context, model string, in Input) (Prediction, error) {
	endpoint := h.o.Endpoints[model]
	inputs := in.URL
	if inputs == "" {
		inputs = base64.StdEncoding.EncodeToString(in.Data)
	}
	params := map[string]any{}
	if model == ModelCaption && in.Prompt != "" {
		params["prompt"] = in.Prompt
	}
	body, err := json.Marshal(map[string]any{"inputs": inputs, "parameters": params})
	if err != nil {
		return Prediction{}, &ProviderError{Op: "create", Msg: "encode request: " + err.Error()}
	}
	for loads := 0; ; loads++ {
		start := time.Now()
		status, header, raw, err := h.post(ctx, endpoint, body)
		if err != nil {
			return Prediction{}, err
		}
		switch {
		case status >= 200 && status <= 299:
			if !json.Valid(raw) {
				return Prediction{}, &OutputError{Model: model, Msg: "not JSON"}
			}
			secs := time.Since(start).Seconds()
			return Prediction{ID: "hf-" + uuid.NewString(), Status: PredictionSucceeded, Output: raw, PredictSeconds: &secs}, nil
		case status == http.StatusServiceUnavailable:
			wait := loadWait(header, raw, h.o.MaxLoadWait)
			if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
				return Prediction{}, &ProviderError{Op: "create", Status: status, Retryable: true,
					Msg: fmt.Sprintf("endpoint still loading after %d tries (cold start); it estimates %s more", loads+1, wait.Round(time.Second))}
			}
			if !backoff.Sleep(ctx, wait) {
				return Prediction{}, &ProviderError{Op: "create", Status: status, Retryable: true, Msg: "endpoint still loading (cold start)"}
			}
		default:
			return Prediction{}, &ProviderError{Op: "create", Status: status, Retryable: retryableStatus(status), Msg: hfProblem(raw)}
		}
	}
}

func (h *HuggingFace) post(ctx context.Context, endpoint string, body []byte) (int, http.Header, []byte, error) {
	timeout := h.o.RequestTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, &ProviderError{Op: "create", Msg: "build request: " + err.Error()}
	}
	req.Header.Set("Authorization", "Bearer "+h.o.Token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	// Hold the request while the model loads (serverless-style endpoints)
	// or while a scaled-to-zero endpoint starts a replica, for as long as
	// this request may last.
	req.Header.Set("X-Wait-For-Model", "true")
	req.Header.Set("X-Scale-Up-Timeout", strconv.Itoa(max(1, int(timeout.Seconds()))))
	resp, err := h.client.Do(req)
	if err != nil {
		return 0, nil, nil, transportError("create", err, timeout)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxProviderBody))
	if err != nil {
		return 0, nil, nil, transportError("create", err, timeout)
	}
	return resp.StatusCode, resp.Header, raw, nil
}

// loadWait is how long to wait after a 503: the body's estimated_time
// (seconds), else Retry-After, else a few seconds; at least half a second
// and at most limit.
func loadWait(h http.Header, raw []byte, limit time.Duration) time.Duration {
	wait := 5 * time.Second
	var body struct {
		EstimatedTime *float64 `json:"estimated_time"`
	}
	if json.Unmarshal(raw, &body) == nil && body.EstimatedTime != nil && !math.IsNaN(*body.EstimatedTime) {
		wait = time.Duration(*body.EstimatedTime * float64(time.Second))
	} else if s, err := strconv.Atoi(strings.TrimSpace(h.Get("Retry-After"))); err == nil {
		wait = time.Duration(s) * time.Second
	}
	return min(max(wait, 500*time.Millisecond), limit)
}

func hfProblem(raw []byte) string {
	var p struct {
		Error any `json:"error"`
	}
	if json.Unmarshal(raw, &p) == nil && p.Error != nil {
		return clip(fmt.Sprint(p.Error), 300)
	}
	return clip(string(raw), 200)
}

// Synchronous tells the dispatcher that Start returns finished
// predictions.
func (h *HuggingFace) Synchronous() bool { return true }

// Get implements Provider. Endpoints answer synchronously, so there is
// nothing to poll.
func (h *HuggingFace) Get(context.Context, string) (Prediction, error) {
	return Prediction{}, &ProviderError{Op: "get", Msg: "Hugging Face endpoints answer synchronously; nothing to poll"}
}

// Cancel implements Provider: a synchronous call is cancelled by ending its
// request, which the dispatcher does through the context.
func (h *HuggingFace) Cancel(context.Context, string) (Prediction, error) { return Prediction{}, nil }
