// Package edgetest holds what the edge's tests share: a test configuration,
// an outbox in a temporary directory, a Server with its handlers, request
// helpers for httptest, SQL readers for the outbox file, and a way to build
// and start the real mailslot binary.
//
// Everything here works on real SQLite files under t.TempDir(); nothing is
// mocked.
package edgetest

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite" // the outbox driver, for reading the file directly

	"github.com/mailslot/mailslot"
	"github.com/mailslot/mailslot/edge/admin"
	"github.com/mailslot/mailslot/edge/api"
	"github.com/mailslot/mailslot/internal/config"
	"github.com/mailslot/mailslot/internal/pii"
	"github.com/mailslot/mailslot/outbox"
)

// Values of the test configuration, for assertions.
const (
	NodeID       = "test-node"
	Origin       = "https://site.example"
	RedirectHost = "site.example"
	ThanksURL    = "https://site.example/thanks"
	ErrorURL     = "https://site.example/oops"
	AdminToken   = "test-admin-token-0123456789abcdef-0123456789"
	IPPepper     = "test-ip-pepper-0123456789abcdef-0123456789ab"
	TokenKey     = "test-token-key-0123456789abcdef-0123456789ab"
)

// Env is the environment of a test edge with its outbox in dataDir:
// development mode with fixed secrets (nothing is generated), the allowlists
// above, rate limiting off and no free-disk floor, so that a nearly full
// shared /tmp does not fail unrelated tests.
func Env(dataDir string) map[string]string {
	return map[string]string{
		"MAILSLOT_ENV":                 config.Development,
		"MAILSLOT_DATA_DIR":            dataDir,
		"MAILSLOT_NODE_ID":             NodeID,
		"MAILSLOT_REGION":              "test",
		"MAILSLOT_IP_PEPPER":           IPPepper,
		"MAILSLOT_TOKEN_KEY":           TokenKey,
		"MAILSLOT_ADMIN_TOKEN":         AdminToken,
		"MAILSLOT_CORS_ORIGINS":        Origin,
		"MAILSLOT_REDIRECT_HOSTS":      RedirectHost,
		"MAILSLOT_THANKS_URL":          ThanksURL,
		"MAILSLOT_ERROR_URL":           ErrorURL,
		"MAILSLOT_RATE_RPS":            "0",
		"MAILSLOT_DISK_MIN_FREE_BYTES": "0",
	}
}

// Getenv turns a map into the getenv function config.Load takes.
func Getenv(env map[string]string) func(string) string {
	return func(k string) string { return env[k] }
}

// Config loads the test configuration with overrides applied (an empty
// value unsets a variable). The data directory is a fresh t.TempDir()
// unless the overrides name one.
func Config(t testing.TB, overrides map[string]string) *config.Config {
	t.Helper()
	env := Env(t.TempDir())
	for k, v := range overrides {
		env[k] = v
	}
	cfg, err := config.Load(Getenv(env))
	if err != nil {
		t.Fatalf("load test config: %v", err)
	}
	return cfg
}

// OpenOutbox opens the outbox the configuration describes, with group
// commit on, and closes it when the test ends.
func OpenOutbox(t testing.TB, cfg *config.Config) *outbox.Outbox {
	t.Helper()
	out, err := outbox.Open(context.Background(), outbox.Options{
		Dir:            cfg.DataDir,
		NodeID:         cfg.NodeID,
		GroupCommit:    cfg.GroupCommit,
		MaxBatch:       cfg.OutboxMaxBatch,
		MaxPendingRows: cfg.OutboxMaxRows,
		MaxBytes:       cfg.OutboxMaxBytes,
		MinFreeBytes:   cfg.DiskMinFree,
	})
	if err != nil {
		t.Fatalf("open outbox: %v", err)
	}
	t.Cleanup(func() {
		if err := out.Close(); err != nil {
			t.Errorf("close outbox: %v", err)
		}
	})
	return out
}

// Edge is an api.Server on a real outbox, with both handlers.
type Edge struct {
	Config  *config.Config
	Outbox  *outbox.Outbox
	Hasher  *pii.Hasher
	Server  *api.Server
	Public  http.Handler
	Private http.Handler
}

// NewEdge builds an Edge from the test configuration with overrides. edit,
// when given, may set the Options' Logger, Now or SyncStatus; Settings,
// Outbox, Hasher and SyncStatus (an edge without DATABASE_URL's, as the
// node answers it) are filled in.
func NewEdge(t testing.TB, overrides map[string]string, edit ...func(*api.Options)) *Edge {
	t.Helper()
	cfg := Config(t, overrides)
	e := &Edge{Config: cfg, Outbox: OpenOutbox(t, cfg), Hasher: pii.NewHasher([]byte(cfg.IPPepper))}
	opts := api.Options{Settings: api.SettingsFrom(cfg), Outbox: e.Outbox, Hasher: e.Hasher,
		SyncStatus: func(ctx context.Context) (any, error) {
			return admin.Disabled(ctx, e.Outbox, cfg.NodeID, cfg.Region, time.Now())
		}}
	for _, f := range edit {
		f(&opts)
	}
	e.Server = api.New(opts)
	e.Public = e.Server.Handler()
	e.Private = fromTheMachine(e.Server.PrivateHandler())
	return e
}

// fromTheMachine serves requests addressed to httptest's default host as
// an operator's request on the machine itself, which is what the private
// listener admits; a test that names another Host keeps it.
func fromTheMachine(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Host == "example.com" {
			r.Host = "127.0.0.1:9090"
		}
		h.ServeHTTP(w, r)
	})
}

// Serve runs req against h and returns the recorded answer.
func Serve(h http.Handler, req *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

// Post sends body to path with the content type and header pairs
// ("Name", "value", …).
func Post(h http.Handler, path, contentType, body string, header ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return Serve(h, req)
}

// PostJSON posts a JSON body.
func PostJSON(h http.Handler, path, body string, header ...string) *httptest.ResponseRecorder {
	return Post(h, path, "application/json", body, header...)
}

// PostForm posts an HTML form, as a browser does.
func PostForm(h http.Handler, path string, form url.Values, header ...string) *httptest.ResponseRecorder {
	return Post(h, path, "application/x-www-form-urlencoded", form.Encode(), header...)
}

// DecodeJSON decodes a recorded JSON body into a map.
func DecodeJSON(t testing.TB, w *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
		t.Fatalf("decode JSON answer %q: %v", w.Body.String(), err)
	}
	return m
}

// OpenDB opens the outbox file in dataDir read-only for assertions and
// closes it when the test ends. WAL lets it read while the edge writes.
func OpenDB(t testing.TB, dataDir string) *sql.DB {
	t.Helper()
	path := filepath.Join(dataDir, outbox.FileName)
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=query_only(1)")
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// Count runs a count query.
func Count(t testing.TB, db *sql.DB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// CountKind is the number of outbox rows of a kind.
func CountKind(t testing.TB, db *sql.DB, kind mailslot.Kind) int {
	t.Helper()
	return Count(t, db, `SELECT count(*) FROM outbox WHERE kind = ?`, string(kind))
}

// Payloads returns the decoded payloads of a kind's rows in seq order.
func Payloads(t testing.TB, db *sql.DB, kind mailslot.Kind) []map[string]any {
	t.Helper()
	rows, err := db.Query(`SELECT payload FROM outbox WHERE kind = ? ORDER BY seq`, string(kind))
	if err != nil {
		t.Fatalf("query payloads: %v", err)
	}
	defer rows.Close()
	var out []map[string]any
	for rows.Next() {
		var s string
		var m map[string]any
		if err := rows.Scan(&s); err != nil {
			t.Fatalf("scan payload: %v", err)
		}
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			t.Fatalf("decode payload %s: %v", s, err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read payloads: %v", err)
	}
	return out
}

// FreeAddr returns a loopback host:port that was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

var build struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

// Binary returns the path of a mailslot binary built from this checkout,
// building it on the first call in the test binary (set MAILSLOT_BIN to
// use one built already). Call CleanupBinary from TestMain to remove it.
func Binary(t testing.TB) string {
	t.Helper()
	build.once.Do(func() {
		if bin := os.Getenv("MAILSLOT_BIN"); bin != "" {
			build.bin = bin
			return
		}
		build.dir, build.err = os.MkdirTemp("", "mailslot-bin-")
		if build.err != nil {
			return
		}
		build.bin = filepath.Join(build.dir, "mailslot")
		cmd := exec.Command("go", "build", "-o", build.bin, "github.com/mailslot/mailslot/cmd/mailslot")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			build.err = fmt.Errorf("go build cmd/mailslot: %w\n%s", err, out)
		}
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.bin
}

// CleanupBinary removes the binary Binary built, if any.
func CleanupBinary() {
	if build.dir != "" {
		_ = os.RemoveAll(build.dir)
	}
}

// Process is a running `mailslot serve`.
type Process struct {
	// URL is the public listener's base URL, PrivateURL the private one's.
	URL, PrivateURL string
	// Log is the file holding the process's stderr (its JSON log).
	Log string

	cmd    *exec.Cmd
	waited chan struct{}
	err    error
}

// Start runs `mailslot serve` with env (and only env, beside PATH and
// HOME) on free loopback ports, and returns once /readyz answers 200. The
// process is killed when the test ends if it is still running.
func Start(t testing.TB, env map[string]string) *Process {
	t.Helper()
	bin := Binary(t)
	pub, priv := FreeAddr(t), FreeAddr(t)
	p := &Process{
		URL:        "http://" + pub,
		PrivateURL: "http://" + priv,
		Log:        filepath.Join(t.TempDir(), "mailslot.log"),
		waited:     make(chan struct{}),
	}
	logf, err := os.Create(p.Log)
	if err != nil {
		t.Fatalf("create log file: %v", err)
	}
	p.cmd = exec.Command(bin, "serve")
	p.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
		"MAILSLOT_ADDR=" + pub, "MAILSLOT_PRIVATE_ADDR=" + priv}
	for k, v := range env {
		p.cmd.Env = append(p.cmd.Env, k+"="+v)
	}
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start mailslot: %v", err)
	}
	go func() {
		p.err = p.cmd.Wait()
		logf.Close()
		close(p.waited)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.waited
	})

	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-p.waited:
			t.Fatalf("mailslot exited before it was ready: %v\n%s", p.err, p.Logs())
		default:
		}
		resp, err := client.Get(p.URL + "/readyz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("mailslot not ready after 60s (last error %v)\n%s", err, p.Logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Signal sends sig to the process.
func (p *Process) Signal(sig syscall.Signal) error { return p.cmd.Process.Signal(sig) }

// Wait waits up to timeout for the process to exit and returns its exit
// code (-1 when a signal ended it).
func (p *Process) Wait(timeout time.Duration) (int, error) {
	select {
	case <-p.waited:
	case <-time.After(timeout):
		return 0, fmt.Errorf("mailslot still running after %v", timeout)
	}
	var exit *exec.ExitError
	if p.err != nil && !errors.As(p.err, &exit) {
		return 0, p.err
	}
	return p.cmd.ProcessState.ExitCode(), nil
}

// Logs returns what the process has written to stderr so far.
func (p *Process) Logs() string {
	b, _ := os.ReadFile(p.Log)
	return string(b)
}
