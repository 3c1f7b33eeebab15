// Package challengetest has test doubles for the bot-challenge providers
// mailslot cannot run here: fake Turnstile and hCaptcha siteverify
// servers that follow their documented request and answer shapes, an
// address nothing listens on, and a proof-of-work solver.
package challengetest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"mime"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Outcome is what the fake answers for one verification of a token.
type Outcome int

// The outcomes a token can be issued with.
const (
	// Success: success true, on the fake's hostname and action.
	Success Outcome = iota
	// InvalidInput: success false, invalid-input-response.
	InvalidInput
	// TimeoutOrDuplicate: success false, timeout-or-duplicate (Turnstile's
	// code for an expired or already used token). The hCaptcha fake
	// answers expired-input-response.
	TimeoutOrDuplicate
	// WrongHostname: success true, but solved on another hostname.
	WrongHostname
	// WrongAction: success true, but with another widget action.
	WrongAction
	// ServerError: 503 with a non-JSON body; the token is not consumed.
	ServerError
	// BadJSON: 200 with a body that is not JSON; the token is not consumed.
	BadJSON
	// Hang: the provider consumes the token and would answer success, but
	// the answer never arrives: the handler waits until the client gives
	// up. A repeat with the same idempotency key gets the success.
	Hang
	// InternalError: success false, internal-error (Turnstile's own
	// failure); the token is not consumed.
	InternalError
)

var outcomeNames = [...]string{
	Success: "success", InvalidInput: "invalid-input-response", TimeoutOrDuplicate: "timeout-or-duplicate",
	WrongHostname: "wrong-hostname", WrongAction: "wrong-action", ServerError: "5xx", BadJSON: "bad-json",
	Hang: "hang", InternalError: "internal-error",
}

// String names the outcome, for test names.
func (o Outcome) String() string {
	if o >= 0 && int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "Outcome(" + strconv.Itoa(int(o)) + ")"
}

// What the fakes answer with on success.
const (
	Hostname      = "site.example"
	OtherHostname = "evil.example"
	Action        = "signup"
	OtherAction   = "login"
)

// Request is one request a fake received, as it arrived.
type Request struct {
	Method      string
	ContentType string
	Form        url.Values
}

type provider int

const (
	turnstile provider = iota
	hcaptcha
)

type tokenState struct {
	outcomes []Outcome
	attempts int
	spent    bool
	spentKey string // idempotency key of the consuming request (Turnstile)
	answer   answer // what the consuming request was (or would have been) told
}

// Siteverify is a fake siteverify server.
type Siteverify struct {
	// URL is the siteverify endpoint to configure the verifier with.
	URL string
	// Secret is the secret key it accepts.
	Secret string
	// SiteKey, when set (hCaptcha), is the site key a request may name.
	SiteKey string

	provider provider
	srv      *httptest.Server
	closed   chan struct{}
	hanging  chan struct{} // one value per request that started to hang

	mu       sync.Mutex
	tokens   map[string]*tokenState
	requests []Request
}

// NewTurnstile starts a fake Turnstile siteverify, stopped at the end of
// the test.
func NewTurnstile(t testing.TB, secret string) *Siteverify {
	return start(t, turnstile, secret)
}

// NewHCaptcha starts a fake hCaptcha siteverify, stopped at the end of the
// test.
func NewHCaptcha(t testing.TB, secret string) *Siteverify {
	return start(t, hcaptcha, secret)
}

func start(t testing.TB, p provider, secret string) *Siteverify {
	t.Helper()
	f := &Siteverify{
		Secret:   secret,
		provider: p,
		closed:   make(chan struct{}),
		hanging:  make(chan struct{}, 64),
		tokens:   make(map[string]*tokenState),
	}
	mux := http.NewServeMux()
	path := "/turnstile/v0/siteverify"
	if p == hcaptcha {
		path = "/siteverify"
	}
	mux.HandleFunc(path, f.serve)
	f.srv = httptest.NewServer(mux)
	f.URL = f.srv.URL + path
	t.Cleanup(func() {
		close(f.closed) // release hanging handlers before Close waits for them
		f.srv.Close()
	})
	return f
}

// Issue returns a new token, as the widget would get one, that answers
// each verification with the next of outcomes (the last one repeats for
// the verifications after it). No outcomes means Success.
func (f *Siteverify) Issue(outcomes ...Outcome) string {
	if len(outcomes) == 0 {
		outcomes = []Outcome{Success}
	}
	var b [24]byte
	rand.Read(b[:])
	prefix := "0."
	if f.provider == hcaptcha {
		prefix = "P1_"
	}
	tok := prefix + hex.EncodeToString(b[:])
	f.mu.Lock()
	f.tokens[tok] = &tokenState{outcomes: outcomes}
	f.mu.Unlock()
	return tok
}

// Requests returns the requests received so far.
func (f *Siteverify) Requests() []Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Request(nil), f.requests...)
}

// Hanging is signalled each time a request starts to hang, so that a test
// can wait for it rather than sleep.
func (f *Siteverify) Hanging() <-chan struct{} { return f.hanging }

// answer is siteverify's JSON.
type answer struct {
	Success     bool     `json:"success"`
	ErrorCodes  []string `json:"error-codes"`
	ChallengeTS string   `json:"challenge_ts,omitempty"`
	Hostname    string   `json:"hostname,omitempty"`
	Action      string   `json:"action,omitempty"`
	CData       string   `json:"cdata,omitempty"`
}

func refused(codes ...string) answer { return answer{Success: false, ErrorCodes: codes} }

func (f *Siteverify) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/x-www-form-urlencoded" {
		f.reply(w, http.StatusBadRequest, refused("bad-request"))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		f.reply(w, http.StatusBadRequest, refused("bad-request"))
		return
	}
	form := r.PostForm
	f.mu.Lock()
	f.requests = append(f.requests, Request{Method: r.Method, ContentType: r.Header.Get("Content-Type"), Form: form})
	f.mu.Unlock()

	switch secret := form.Get("secret"); {
	case secret == "":
		f.reply(w, http.StatusOK, refused("missing-input-secret"))
		return
	case secret != f.Secret:
		f.reply(w, http.StatusOK, refused("invalid-input-secret"))
		return
	}
	if f.provider == hcaptcha && f.SiteKey != "" && form.Has("sitekey") && form.Get("sitekey") != f.SiteKey {
		f.reply(w, http.StatusOK, refused("sitekey-secret-mismatch"))
		return
	}
	token := form.Get("response")
	if token == "" {
		f.reply(w, http.StatusOK, refused("missing-input-response"))
		return
	}
	key := form.Get("idempotency_key")

	f.mu.Lock()
	st, ok := f.tokens[token]
	if !ok {
		f.mu.Unlock()
		f.reply(w, http.StatusOK, refused("invalid-input-response"))
		return
	}
	if st.spent {
		a := f.spentAnswer(st, key)
		f.mu.Unlock()
		f.reply(w, http.StatusOK, a)
		return
	}
	o := st.outcomes[min(st.attempts, len(st.outcomes)-1)]
	st.attempts++
	a, consumes := f.outcome(o)
	if consumes {
		st.spent, st.spentKey, st.answer = true, key, a
	}
	f.mu.Unlock()

	switch o {
	case ServerError:
		http.Error(w, "upstream unavailable", http.StatusServiceUnavailable)
	case BadJSON:
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusOK)
		w.Write([]byte("<html>maintenance</html>"))
	case Hang:
		select {
		case f.hanging <- struct{}{}:
		default:
		}
		select {
		case <-r.Context().Done():
		case <-f.closed:
		}
	default:
		f.reply(w, http.StatusOK, a)
	}
}

// spentAnswer is the answer for a token already consumed: Turnstile
// repeats the first answer to a request with the same idempotency key;
// otherwise, and always at hCaptcha, the token is refused as used.
func (f *Siteverify) spentAnswer(st *tokenState, key string) answer {
	if f.provider == turnstile {
		if key != "" && key == st.spentKey {
			return st.answer
		}
		return refused("timeout-or-duplicate")
	}
	return refused("invalid-or-already-seen-response")
}

// outcome returns the answer for o and whether it consumes the token.
func (f *Siteverify) outcome(o Outcome) (answer, bool) {
	ok := answer{Success: true, ErrorCodes: []string{}, ChallengeTS: time.Now().UTC().Format("2006-01-02T15:04:05.000Z"), Hostname: Hostname}
	if f.provider == turnstile {
		ok.Action, ok.CData = Action, ""
	}
	switch o {
	case Success, Hang:
		return ok, true
	case WrongHostname:
		ok.Hostname = OtherHostname
		return ok, true
	case WrongAction:
		ok.Action = OtherAction
		return ok, true
	case InvalidInput:
		return refused("invalid-input-response"), true
	case TimeoutOrDuplicate:
		if f.provider == hcaptcha {
			return refused("expired-input-response"), true
		}
		return refused("timeout-or-duplicate"), true
	case InternalError:
		return refused("internal-error"), false
	}
	return answer{}, false // ServerError, BadJSON: nothing was decided
}

func (f *Siteverify) reply(w http.ResponseWriter, status int, a answer) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(a)
}

// Unreachable returns an http URL on loopback where nothing listens: a
// port that was just bound and released, so a connection is refused.
func Unreachable(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("reserve a loopback port: %v", err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatalf("release loopback port: %v", err)
	}
	return "http://" + addr + "/siteverify"
}
