// Package stdwebhooktest runs the official Standard Webhooks JavaScript
// library (npm package standardwebhooks, pinned in
// internal/stdwebhook/testdata/node) so that tests check mailslot's
// signatures against an implementation that is not ours.
package stdwebhooktest

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Dir is the directory holding package.json and the scripts.
func Dir(tb testing.TB) string {
	tb.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		tb.Fatal("stdwebhooktest: cannot find its own source directory")
	}
	return filepath.Join(filepath.Dir(file), "..", "testdata", "node")
}

// ensure fails the test unless node and the installed library are there.
func ensure(tb testing.TB) string {
	tb.Helper()
	dir := Dir(tb)
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "standardwebhooks", "package.json")); err != nil {
		tb.Fatalf("the standardwebhooks npm package is not installed in %s: run make test-deps", dir)
	}
	if _, err := exec.LookPath("node"); err != nil {
		tb.Fatalf("node is not on PATH: run make test-deps")
	}
	return dir
}

func run(tb testing.TB, script string, in any) (string, error) {
	tb.Helper()
	dir := ensure(tb)
	payload, err := json.Marshal(in)
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command("node", filepath.Join(dir, script))
	cmd.Stdin = bytes.NewReader(payload)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	text := strings.TrimSpace(out.String())
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 1 && text != "" {
		return text, errors.New(text)
	}
	if err != nil {
		tb.Fatalf("node %s: %v: %s", script, err, errOut.String())
	}
	return text, nil
}

// Verify asks the official library to verify a delivery; nil means it
// accepted it, otherwise the error is the library's own message. The
// library checks the timestamp against the real clock.
func Verify(tb testing.TB, secret, id, timestamp, signature string, body []byte) error {
	tb.Helper()
	_, err := run(tb, "verify.js", map[string]string{
		"secret": secret, "id": id, "timestamp": timestamp, "signature": signature, "body": string(body),
	})
	return err
}

// Sign asks the official library for the webhook-signature value of a
// message signed with secret.
func Sign(tb testing.TB, secret, id string, ts time.Time, body []byte) string {
	tb.Helper()
	out, err := run(tb, "sign.js", map[string]any{
		"secret": secret, "id": id, "timestamp": ts.Unix(), "body": string(body),
	})
	if err != nil {
		tb.Fatalf("node sign.js: %v", err)
	}
	if !strings.HasPrefix(out, "v1,") {
		tb.Fatalf("node sign.js printed %q, want v1,<base64>", out)
	}
	return out
}
