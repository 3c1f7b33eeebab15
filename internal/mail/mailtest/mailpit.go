// Package mailtest runs what the mail package's tests talk to: a real
// Mailpit SMTP server with a client for its REST API, an SMTP-aware
// proxy that can lose the reply to a message's end of DATA, a fake of
// Resend's HTTP API, and self-signed certificates.
package mailtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Options choose how Mailpit's SMTP side is set up. The zero value
// accepts any credentials (or none) over plain TCP.
type Options struct {
	// Cert makes Mailpit offer STARTTLS with it, or with ImplicitTLS,
	// speak TLS from the first byte (smtps).
	Cert        *Cert
	ImplicitTLS bool
	// RequireSTARTTLS refuses clients that do not upgrade.
	RequireSTARTTLS bool
	// Users, when set, are the only user/password pairs accepted.
	Users map[string]string
	// Chaos enables Mailpit's fault injection (SetChaos).
	Chaos bool
}

// Mailpit is a running Mailpit, stopped when the test ends.
type Mailpit struct {
	// SMTPAddr is the SMTP listener's host:port; APIURL the HTTP root.
	SMTPAddr string
	APIURL   string
	http     *http.Client
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// binary is the Mailpit pinned as a tool in go.mod, built (once per test
// binary, then from Go's build cache) by `go tool -n`.
func binary() (string, error) {
	binOnce.Do(func() {
		out, err := exec.Command("go", "tool", "-n", "mailpit").Output()
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				err = fmt.Errorf("%w: %s", err, ee.Stderr)
			}
			binErr = fmt.Errorf("build mailpit: %w", err)
			return
		}
		binPath = strings.TrimSpace(string(out))
	})
	return binPath, binErr
}

// lockedBuffer collects Mailpit's output for a failing test's log.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// StartMailpit runs a Mailpit on free loopback ports with a temporary
// database and waits until its API answers /readyz and its SMTP port
// accepts connections.
func StartMailpit(tb testing.TB, opts Options) *Mailpit {
	tb.Helper()
	bin, err := binary()
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	var lastErr error
	for try := 0; try < 3; try++ { // a free port can be taken before Mailpit binds it
		mp, err := startOnce(tb, bin, dir, try, opts)
		if err == nil {
			return mp
		}
		lastErr = err
	}
	tb.Fatal(lastErr)
	return nil
}

func startOnce(tb testing.TB, bin, dir string, try int, opts Options) (*Mailpit, error) {
	smtpAddr, httpAddr := freeAddr(tb), freeAddr(tb)
	args := []string{
		"--smtp", smtpAddr,
		"--listen", httpAddr,
		"--database", filepath.Join(dir, "mailpit-"+strconv.Itoa(try)+".db"),
		"--smtp-disable-rdns",
		"--disable-version-check",
		"--quiet",
	}
	if len(opts.Users) > 0 {
		var b strings.Builder
		for u, p := range opts.Users {
			fmt.Fprintf(&b, "%s:%s\n", u, p)
		}
		file := filepath.Join(dir, "smtp-users")
		if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
			tb.Fatalf("write mailpit auth file: %v", err)
		}
		args = append(args, "--smtp-auth-file", file)
	} else {
		args = append(args, "--smtp-auth-accept-any")
	}
	if opts.Cert != nil {
		args = append(args, "--smtp-tls-cert", opts.Cert.CertFile, "--smtp-tls-key", opts.Cert.KeyFile)
	}
	switch {
	case opts.ImplicitTLS:
		args = append(args, "--smtp-require-tls")
	case opts.RequireSTARTTLS:
		args = append(args, "--smtp-require-starttls")
	default:
		args = append(args, "--smtp-auth-allow-insecure")
	}
	if opts.Chaos {
		args = append(args, "--enable-chaos")
	}

	out := &lockedBuffer{}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start mailpit: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stop := func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}

	mp := &Mailpit{SMTPAddr: smtpAddr, APIURL: "http://" + httpAddr, http: &http.Client{Timeout: 10 * time.Second}}
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !mp.ready() {
		select {
		case <-exited:
			return nil, fmt.Errorf("mailpit exited before it was ready:\n%s", out.String())
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("mailpit not ready after 30s:\n%s", out.String())
		}
	}
	tb.Cleanup(func() {
		stop()
		if tb.Failed() {
			tb.Logf("mailpit output:\n%s", out.String())
		}
	})
	return mp, nil
}

func (mp *Mailpit) ready() bool {
	resp, err := mp.http.Get(mp.APIURL + "/readyz")
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false
	}
	c, err := net.DialTimeout("tcp", mp.SMTPAddr, time.Second)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

func freeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("find a free port: %v", err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// Address is an address as Mailpit's API shows it.
type Address struct {
	Name    string
	Address string
}

// Summary is one entry of GET /api/v1/messages.
type Summary struct {
	ID        string
	MessageID string
	From      *Address
	To        []Address
	Subject   string
	Username  string
	Created   time.Time
}

// Message is GET /api/v1/message/{ID}: the parsed message.
type Message struct {
	ID              string
	MessageID       string
	From            *Address
	To              []Address
	Subject         string
	Username        string
	Text            string
	HTML            string
	ListUnsubscribe struct {
		Header     string
		Links      []string
		Errors     string
		HeaderPost string
	}
}

func (mp *Mailpit) do(tb testing.TB, method, path string, body any, into any) {
	tb.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			tb.Fatalf("mailpit %s %s: %v", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, mp.APIURL+path, rd)
	if err != nil {
		tb.Fatalf("mailpit %s %s: %v", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := mp.http.Do(req)
	if err != nil {
		tb.Fatalf("mailpit %s %s: %v", method, path, err)
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		tb.Fatalf("mailpit %s %s: %d %s %v", method, path, resp.StatusCode, raw, err)
	}
	switch v := into.(type) {
	case nil:
	case *string:
		*v = string(raw)
	default:
		if err := json.Unmarshal(raw, into); err != nil {
			tb.Fatalf("mailpit %s %s: decode: %v", method, path, err)
		}
	}
}

// Messages lists the stored messages, newest first.
func (mp *Mailpit) Messages(tb testing.TB) []Summary {
	tb.Helper()
	var list struct {
		Total    int       `json:"total"`
		Messages []Summary `json:"messages"`
	}
	mp.do(tb, http.MethodGet, "/api/v1/messages?limit=1000", nil, &list)
	return list.Messages
}

// Message is one stored message, parsed.
func (mp *Mailpit) Message(tb testing.TB, id string) Message {
	tb.Helper()
	var m Message
	mp.do(tb, http.MethodGet, "/api/v1/message/"+id, nil, &m)
	return m
}

// Headers are one message's headers as received, decoded by Mailpit.
func (mp *Mailpit) Headers(tb testing.TB, id string) map[string][]string {
	tb.Helper()
	var h map[string][]string
	mp.do(tb, http.MethodGet, "/api/v1/message/"+id+"/headers", nil, &h)
	return h
}

// Raw is one message's source as received.
func (mp *Mailpit) Raw(tb testing.TB, id string) string {
	tb.Helper()
	var s string
	mp.do(tb, http.MethodGet, "/api/v1/message/"+id+"/raw", nil, &s)
	return s
}

// DeleteAll deletes every stored message.
func (mp *Mailpit) DeleteAll(tb testing.TB) {
	tb.Helper()
	mp.do(tb, http.MethodDelete, "/api/v1/messages", struct{}{}, nil)
}

// WaitForMessages polls until at least n messages are stored (at most
// 10s) and returns them. Mailpit stores a message before it answers the
// end of DATA, so this returns at once after a successful send; the wait
// covers the cases where the client never heard that answer.
func (mp *Mailpit) WaitForMessages(tb testing.TB, n int) []Summary {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		list := mp.Messages(tb)
		if len(list) >= n {
			return list
		}
		if time.Now().After(deadline) {
			tb.Fatalf("mailpit holds %d messages after 10s, want %d", len(list), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ChaosTrigger makes Mailpit answer a stage with ErrorCode, Probability
// percent of the time.
type ChaosTrigger struct {
	ErrorCode   int
	Probability int
}

// Chaos sets Mailpit's fault injection (Options.Chaos must be on).
type Chaos struct {
	Sender         ChaosTrigger
	Recipient      ChaosTrigger
	Authentication ChaosTrigger
}

// SetChaos replaces Mailpit's fault triggers.
func (mp *Mailpit) SetChaos(tb testing.TB, c Chaos) {
	tb.Helper()
	mp.do(tb, http.MethodPut, "/api/v1/chaos", c, nil)
}
