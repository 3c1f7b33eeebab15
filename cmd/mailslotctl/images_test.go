package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailslot/mailslot/internal/pgtest"
	"github.com/mailslot/mailslot/sync/images"
)

// imagesCtl runs `mailslotctl images …` in-process.
func imagesCtl(t *testing.T, env map[string]string, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := run(ctx, append([]string{"images"}, args...), func(k string) string { return env[k] }, &out, &errb)
	return out.String(), errb.String(), err
}

func TestImagesCommands(t *testing.T) {
	dbURL := pgtest.NewURL(t)
	env := map[string]string{
		"DATABASE_URL":                  dbURL,
		"MAILSLOT_IMAGE_ALLOWED_HOSTS":  "img.example",
		"MAILSLOT_IMAGE_PROVIDER":       "replicate",
		"MAILSLOT_IMAGE_MONTHLY_BUDGET": "5",
		// The fleet's settings are read as the edge reads them, so they
		// must be settings an edge would start with.
		"MAILSLOT_IMAGE_REPLICATE_TOKEN": "r8_test",
		"MAILSLOT_IMAGE_FACES_MODEL":     "owner/faces",
		"MAILSLOT_IMAGE_CAPTION_MODEL":   "owner/caption",
	}
	out, _, err := imagesCtl(t, env, "submit", "--url", "https://img.example/a.jpg", "--json")
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	var job images.Job
	if err := json.Unmarshal([]byte(out), &job); err != nil || job.State != images.StateQueued || job.SubmittedBy != "mailslotctl" {
		t.Fatalf("submit printed %q (%v)", out, err)
	}

	_, _, err = imagesCtl(t, env, "submit", "--url", "https://evil.example/a.jpg")
	if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "host not allowed") {
		t.Errorf("disallowed host: %v", err)
	}

	png := filepath.Join(t.TempDir(), "a.png")
	if err := os.WriteFile(png, append([]byte("\x89PNG\r\n\x1a\n"), make([]byte, 100)...), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, _, err := imagesCtl(t, env, "submit", "--file", png); err != nil || !strings.HasPrefix(out, "queued image job ") {
		t.Errorf("submit --file: %q %v", out, err)
	}

	out, _, err = imagesCtl(t, env, "list")
	if err != nil || strings.Count(out, "queued") != 2 || !strings.Contains(out, "upload") {
		t.Errorf("list: %q %v", out, err)
	}

	out, _, err = imagesCtl(t, env, "status")
	if err != nil || !strings.Contains(out, "queue depth   2") || !strings.Contains(out, "of a $5.00 budget") {
		t.Errorf("status:\n%s%v", out, err)
	}
	out, _, err = imagesCtl(t, env, "status", "--json")
	var st images.Status
	if err != nil || json.Unmarshal([]byte(out), &st) != nil || st.QueueDepth != 2 || st.Provider != "replicate" {
		t.Errorf("status --json: %q %v", out, err)
	}

	id := strconvI(job.ID)
	if out, _, err := imagesCtl(t, env, "cancel", id); err != nil || !strings.Contains(out, "is cancelled") {
		t.Errorf("cancel: %q %v", out, err)
	}
	if out, _, err := imagesCtl(t, env, "status", id); err != nil || !strings.Contains(out, "cancelled") || !strings.Contains(out, "https://img.example/a.jpg") {
		t.Errorf("status ID: %q %v", out, err)
	}
	if out, _, err := imagesCtl(t, env, "retry", id); err != nil || !strings.Contains(out, "is queued") {
		t.Errorf("retry: %q %v", out, err)
	}
	if _, errOut, err := imagesCtl(t, env, "retry", "999999"); err == nil || !strings.Contains(errOut, "not found") {
		t.Errorf("retry of a missing job: %q %v", errOut, err)
	}
	if _, _, err := imagesCtl(t, env, "frobnicate"); !errors.Is(err, errUsage) {
		t.Errorf("unknown subcommand: %v", err)
	}

	var sum bytes.Buffer
	conn, err := connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	cfg, err := loadConfig(env2(env, &sum))
	if err != nil {
		t.Fatal(err)
	}
	if err := writeImageSummary(context.Background(), env2(env, &sum), cfg, conn); err != nil || !strings.HasPrefix(sum.String(), "images: queue 2 (2 due)") {
		t.Errorf("summary %q %v", sum.String(), err)
	}
}

func env2(m map[string]string, out *bytes.Buffer) env {
	return env{getenv: func(k string) string { return m[k] }, stdout: out, stderr: out}
}

func strconvI(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
