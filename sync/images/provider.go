package images

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/mailslot/mailslot/internal/logging"
)

// The two models every job runs.
const (
	ModelFaces   = "faces"   // an InsightFace detector: how many faces
	ModelCaption = "caption" // a Phi-3 vision model: one sentence about the image
)

// models is the order in which a job starts its predictions.
var models = [...]string{ModelFaces, ModelCaption}

// Prediction statuses, as Replicate names them; a synchronous provider
// answers with a terminal one at once.
const (
	PredictionStarting   = "starting"
	PredictionProcessing = "processing"
	PredictionSucceeded  = "succeeded"
	PredictionFailed     = "failed"
	PredictionCanceled   = "canceled"
)

// Terminal reports whether a prediction status is final.
func Terminal(status string) bool {
	return status == PredictionSucceeded || status == PredictionFailed || status == PredictionCanceled
}

// Input is the image a prediction looks at, and the caption prompt.
type Input struct {
	// URL is an https URL on an allowlisted host; the provider fetches it.
	URL string
	// Data and ContentType hold an uploaded image (URL is then empty).
	Data        []byte
	ContentType string
	// Prompt is sent to the caption model only.
	Prompt string
}

// Prediction is one model run at a provider. Output is the model's raw
// answer; it is read by ParseFaces or ParseCaption and never stored: a
// face detector's output carries boxes and embeddings.
type Prediction struct {
	ID     string
	Status string
	Output json.RawMessage
	Error  string
	// PredictSeconds is the compute time the provider reports (Replicate's
	// metrics.predict_time), or what was measured for a synchronous call;
	// nil when the provider has not said yet.
	PredictSeconds *float64
}

// Provider runs models for the dispatcher. Implementations are Replicate
// (asynchronous: Start returns a prediction that is polled or completed by
// webhook) and a Hugging Face Inference Endpoint (synchronous: Start
// returns a finished prediction).
type Provider interface {
	// Name is stored with every prediction ("replicate", "huggingface").
	Name() string
	// Start creates a prediction of model on in.
	Start(ctx context.Context, model string, in Input) (Prediction, error)
	// Get reads a prediction's current state.
	Get(ctx context.Context, id string) (Prediction, error)
	// Cancel asks the provider to stop a prediction and returns its state
	// as the provider then reports it (a zero Prediction when it reports
	// nothing); cancelling a finished one is not an error.
	Cancel(ctx context.Context, id string) (Prediction, error)
}

// ProviderError is a provider's refusal or failure. Retryable errors
// (5xx, 429, timeouts, connection trouble) cost an attempt and back off;
// the others (400, 404, 422: the request itself is wrong) end the job.
type ProviderError struct {
	Op        string // create, get, cancel
	Status    int    // HTTP status, 0 for transport errors
	Retryable bool
	Msg       string
}

func (e *ProviderError) Error() string {
	if e.Status == 0 {
		return fmt.Sprintf("%s prediction: %s", e.Op, e.Msg)
	}
	return fmt.Sprintf("%s prediction: status %d: %s", e.Op, e.Status, e.Msg)
}

// retryableStatus says which HTTP answers are worth trying again. 401 and
// 403 are included: they mean a token is wrong or expired, which an
// operator fixes without resubmitting every job.
func retryableStatus(code int) bool {
	switch {
	case code >= 500, code == 408, code == 409, code == 425, code == 429, code == 401, code == 403:
		return true
	}
	return false
}

// isPermanent reports whether err means that trying again cannot help.
// An unreadable model output is not: the operator may fix the model
// setting and the job's remaining attempts then succeed.
func isPermanent(err error) bool {
	var pe *ProviderError
	return errors.As(err, &pe) && !pe.Retryable
}

// OutputError is a model answer that cannot be read as a face count or a
// caption: the model configured is not the one this code expects.
type OutputError struct {
	Model string
	Msg   string
}

func (e *OutputError) Error() string {
	return fmt.Sprintf("%s model output: %s", e.Model, e.Msg)
}

// maxCaptionRunes bounds a stored caption.
const maxCaptionRunes = 1000

// ParseFaces reads a face count from a face detector's output. It accepts
// the shapes InsightFace wrappers answer with: a list of faces (each with
// its box, landmarks and embedding, of which only the number is kept), an
// object with such a list under "faces", or a count under "faces",
// "face_count", "num_faces" or "count".
func ParseFaces(raw json.RawMessage) (int, error) {
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return 0, &OutputError{Model: ModelFaces, Msg: "not JSON"}
	}
	if n, ok := count(v); ok {
		return n, nil
	}
	if m, ok := v.(map[string]any); ok {
		for _, k := range []string{"faces", "face_count", "num_faces", "count"} {
			if n, ok := count(m[k]); ok {
				return n, nil
			}
		}
	}
	return 0, &OutputError{Model: ModelFaces, Msg: "no face list or count in the answer"}
}

func count(v any) (int, bool) {
	switch x := v.(type) {
	case []any:
		return len(x), true
	case json.Number:
		n, err := x.Int64()
		if err != nil || n < 0 || n > 1_000_000 {
			return 0, false
		}
		return int(n), true
	}
	return 0, false
}

// ParseCaption reads a caption from a vision-language model's output: a
// string, a list of strings (Replicate streams language models' output as
// tokens), a list of {"generated_text": …} (Hugging Face's image-to-text
// shape) or an object with "caption", "generated_text" or "text".
func ParseCaption(raw json.RawMessage) (string, error) {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", &OutputError{Model: ModelCaption, Msg: "not JSON"}
	}
	s, ok := caption(v)
	s = strings.TrimSpace(s)
	if !ok || s == "" {
		return "", &OutputError{Model: ModelCaption, Msg: "no caption text in the answer"}
	}
	if utf8.RuneCountInString(s) > maxCaptionRunes {
		s = string([]rune(s)[:maxCaptionRunes])
	}
	return s, nil
}

func caption(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case []any:
		if len(x) == 0 {
			return "", false
		}
		if _, isObj := x[0].(map[string]any); isObj {
			return caption(x[0])
		}
		var b strings.Builder
		for _, t := range x {
			s, ok := t.(string)
			if !ok {
				return "", false
			}
			b.WriteString(s)
		}
		return b.String(), true
	case map[string]any:
		for _, k := range []string{"caption", "generated_text", "text"} {
			if s, ok := x[k].(string); ok {
				return s, true
			}
		}
	}
	return "", false
}

// clip shortens a provider's message for storage and logs, and scrubs what
// it may quote (a URL with a token, an address).
func clip(s string, n int) string {
	s = strings.TrimSpace(logging.Scrub(s))
	if len(s) > n {
		cut := n
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}
