package images

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// DefaultReplicateURL is Replicate's API origin.
const DefaultReplicateURL = "https://api.replicate.com"

// maxProviderBody bounds what is read from a provider's answer. A
// prediction echoes its input, and an uploaded image travels inline as a
// data URL, so this is above the largest upload's base64 size.
const maxProviderBody = 8 << 20

// ReplicateOptions configures the Replicate provider.
type ReplicateOptions struct {
	// BaseURL is the API origin: DefaultReplicateURL, or a test server.
	BaseURL string
	// Token is the API token (a secret: sent, never logged).
	Token string
	// Models says what each of ModelFaces and ModelCaption runs:
	// "owner/name" (an official model at its current version),
	// "owner/name:version" or a bare version id.
	Models map[string]string
	// WebhookURL, when set, goes with every prediction so that Replicate
	// posts the finished prediction to an edge (POST /v1/webhooks/replicate);
	// the dispatcher still polls, less often, in case a delivery is lost.
	WebhookURL string
	// RequestTimeout bounds one HTTP call, not a prediction.
	RequestTimeout time.Duration
	// Client is the HTTP client; nil means a new one.
	Client *http.Client
}

// Replicate runs models through Replicate's predictions API: create, get,
// cancel, and webhooks on completion.
type Replicate struct {
	o      ReplicateOptions
	client *http.Client
}

// NewReplicate checks the options.
func NewReplicate(o ReplicateOptions) (*Replicate, error) {
	if o.BaseURL == "" {
		o.BaseURL = DefaultReplicateURL
	}
	o.BaseURL = strings.TrimSuffix(o.BaseURL, "/")
	if o.Token == "" {
		return nil, errors.New("replicate: no API token")
	}
	for _, m := range models {
		if _, _, err := replicateTarget(o.Models[m]); err != nil {
			return nil, fmt.Errorf("replicate: %s model: %w", m, err)
		}
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 60 * time.Second
	}
	c := o.Client
	if c == nil {
		c = &http.Client{}
	}
	return &Replicate{o: o, client: c}, nil
}

// Name implements Provider.
func (r *Replicate) Name() string { return "replicate" }

// replicateTarget turns a model setting into the create call's path and
// version: official models are created through their model's endpoint,
// versioned ones through /v1/predictions.
func replicateTarget(spec string) (path, version string, err error) {
	spec = strings.TrimSpace(spec)
	switch {
	case spec == "":
		return "", "", errors.New("not set")
	case strings.Contains(spec, ":"):
		name, v, _ := strings.Cut(spec, ":")
		if strings.Count(name, "/") != 1 || v == "" {
			return "", "", fmt.Errorf("%q must be owner/name:version", spec)
		}
		return "/v1/predictions", v, nil
	case strings.Count(spec, "/") == 1:
		owner, name, _ := strings.Cut(spec, "/")
		if owner == "" || name == "" {
			return "", "", fmt.Errorf("%q must be owner/name", spec)
		}
		return "/v1/models/" + url.PathEscape(owner) + "/" + url.PathEscape(name) + "/predictions", "", nil
	case !strings.Contains(spec, "/"):
		return "/v1/predictions", spec, nil
	}
	return "", "", fmt.Errorf("%q is not owner/name, owner/name:version or a version id", spec)
}

// Start implements Provider: it creates the prediction and returns at
// once, usually with status "starting".
func (r *Replicate) Start(ctx context.Context, model string, in Input) (Prediction, error) {
	path, version, err := replicateTarget(r.o.Models[model])
	if err != nil {
		return Prediction{}, &ProviderError{Op: "create", Msg: err.Error()}
	}
	input := map[string]any{"image": replicateImage(in)}
	if model == ModelCaption && in.Prompt != "" {
		input["prompt"] = in.Prompt
	}
	body := map[string]any{"input": input}
	if version != "" {
		body["version"] = version
	}
	if r.o.WebhookURL != "" {
		body["webhook"] = r.o.WebhookURL
		body["webhook_events_filter"] = []string{"completed"}
	}
	return r.call(ctx, "create", http.MethodPost, path, body)
}

// replicateImage is a file input: the URL, or the upload as a data URL
// (Replicate takes data URLs for small files; uploads are capped well
// below the size at which it asks for a hosted file).
func replicateImage(in Input) string {
	if in.URL != "" {
		return in.URL
	}
	return "data:" + in.ContentType + ";base64," + base64.StdEncoding.EncodeToString(in.Data)
}

// Get implements Provider.
func (r *Replicate) Get(ctx context.Context, id string) (Prediction, error) {
	return r.call(ctx, "get", http.MethodGet, "/v1/predictions/"+url.PathEscape(id), nil)
}

// Cancel implements Provider.
func (r *Replicate) Cancel(ctx context.Context, id string) (Prediction, error) {
	return r.call(ctx, "cancel", http.MethodPost, "/v1/predictions/"+url.PathEscape(id)+"/cancel", nil)
}

func (r *Replicate) call(ctx context.Context, op, method, path string, body any) (Prediction, error) {
	ctx, cancel := context.WithTimeout(ctx, r.o.RequestTimeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return Prediction{}, &ProviderError{Op: op, Msg: "encode request: " + err.Error()}
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, r.o.BaseURL+path, rd)
	if err != nil {
		return Prediction{}, &ProviderError{Op: op, Msg: "build request: " + err.Error()}
	}
	req.Header.Set("Authorization", "Bearer "+r.o.Token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return Prediction{}, transportError(op, err, r.o.RequestTimeout)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxProviderBody))
	if err != nil {
		return Prediction{}, transportError(op, err, r.o.RequestTimeout)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return Prediction{}, &ProviderError{Op: op, Status: resp.StatusCode, Retryable: retryableStatus(resp.StatusCode), Msg: replicateProblem(raw)}
	}
	p, err := ParseReplicatePrediction(raw)
	if err != nil {
		return Prediction{}, &ProviderError{Op: op, Status: resp.StatusCode, Retryable: true, Msg: err.Error()}
	}
	return p, nil
}

// transportError describes a failed exchange without the request's URL.
func transportError(op string, err error, timeout time.Duration) *ProviderError {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	msg := err.Error()
	if errors.Is(err, context.DeadlineExceeded) {
		msg = fmt.Sprintf("no answer within %s", timeout)
	}
	return &ProviderError{Op: op, Retryable: true, Msg: clip(msg, 200)}
}

// replicateProblem takes the message out of an error answer (Replicate
// answers problems as {"title":…,"detail":…,"status":…}).
func replicateProblem(raw []byte) string {
	var p struct {
		Detail string `json:"detail"`
		Title  string `json:"title"`
		Error  string `json:"error"`
	}
	if json.Unmarshal(raw, &p) == nil {
		for _, s := range []string{p.Detail, p.Error, p.Title} {
			if s != "" {
				return clip(s, 300)
			}
		}
	}
	return clip(string(raw), 200)
}

// replicatePrediction is the prediction object of Replicate's API and
// webhooks, with only the fields used here.
type replicatePrediction struct {
	ID      string          `json:"id"`
	Status  string          `json:"status"`
	Output  json.RawMessage `json:"output"`
	Error   json.RawMessage `json:"error"`
	Metrics struct {
		PredictTime *float64 `json:"predict_time"`
	} `json:"metrics"`
}

// ParseReplicatePrediction decodes a prediction object, as the API answers
// it and as a webhook delivers it.
func ParseReplicatePrediction(raw []byte) (Prediction, error) {
	var rp replicatePrediction
	if err := json.Unmarshal(raw, &rp); err != nil {
		return Prediction{}, fmt.Errorf("prediction is not JSON: %w", err)
	}
	switch rp.Status {
	case PredictionStarting, PredictionProcessing, PredictionSucceeded, PredictionFailed, PredictionCanceled:
	default:
		return Prediction{}, fmt.Errorf("prediction has unknown status %q", clip(rp.Status, 40))
	}
	if rp.ID == "" || len(rp.ID) > 200 {
		return Prediction{}, errors.New("prediction has no usable id")
	}
	p := Prediction{ID: rp.ID, Status: rp.Status, Output: rp.Output, PredictSeconds: rp.Metrics.PredictTime}
	if len(rp.Error) > 0 && string(rp.Error) != "null" {
		var s string
		if json.Unmarshal(rp.Error, &s) != nil {
			s = string(rp.Error)
		}
		p.Error = clip(s, 300)
	}
	if p.PredictSeconds != nil && *p.PredictSeconds < 0 {
		p.PredictSeconds = nil
	}
	return p, nil
}
