package edge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailslot/mailslot/edge"
	"github.com/mailslot/mailslot/internal/edgetest"
	"github.com/mailslot/mailslot/internal/pgtest"
	"github.com/mailslot/mailslot/internal/testsync"
	"github.com/mailslot/mailslot/sync/images/imagestest"
)

// TestNodeDispatchesImages runs a real node configured for Replicate (the
// fake) and describes an image submitted on its private admin API: the
// configuration, the wiring of the dispatcher and the routes, end to end.
func TestNodeDispatchesImages(t *testing.T) {
	t.Parallel()
	fake := imagestest.New(t)
	cfg := edgetest.Config(t, map[string]string{
		"DATABASE_URL":          pgtest.NewURL(t),
		"MAILSLOT_ADDR":         "127.0.0.1:0",
		"MAILSLOT_PRIVATE_ADDR": "127.0.0.1:0",
		// Development mode accepts an http provider URL (the fake).
		"MAILSLOT_IMAGE_PROVIDER":        "replicate",
		"MAILSLOT_IMAGE_REPLICATE_URL":   fake.URL,
		"MAILSLOT_IMAGE_REPLICATE_TOKEN": imagestest.Token,
		"MAILSLOT_IMAGE_FACES_MODEL":     imagestest.FacesOfficial,
		"MAILSLOT_IMAGE_CAPTION_MODEL":   imagestest.CaptionModel,
		"MAILSLOT_IMAGE_ALLOWED_HOSTS":   "img.example",
	})
	n, err := edge.Open(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("open node: %v", err)
	}
	if n.Images == nil {
		t.Fatal("no image dispatcher although a provider is configured")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("node stopped with %v", err)
		}
	})
	base := "http://" + n.PrivateAddr()
	resp, err := http.Post(base+"/admin/images", "application/json", strings.NewReader(`{"url":"https://img.example/team.jpg"}`))
	if err != nil {
		t.Fatal(err)
	}
	var job struct {
		ID        int64   `json:"id"`
		State     string  `json:"state"`
		Caption   *string `json:"caption"`
		FaceCount *int    `json:"face_count"`
		LastError string  `json:"last_error"`
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(b, &job) != nil {
		t.Fatalf("submit: %d %s", resp.StatusCode, b)
	}
	// The dispatcher polls for due jobs every 2 s.
	testsync.UntilState(t, 30*time.Second, "the job to succeed", func() (bool, string) {
		resp, err := http.Get(base + "/admin/images/" + strconv.FormatInt(job.ID, 10))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err := json.Unmarshal(b, &job); err != nil {
			t.Fatalf("get: %d %s", resp.StatusCode, b)
		}
		return job.State == "succeeded", fmt.Sprintf("job is %s (%q)", job.State, job.LastError)
	})
	if job.Caption == nil || *job.Caption == "" || job.FaceCount == nil || *job.FaceCount != 2 {
		t.Errorf("job = %+v", job)
	}
	st, err := n.Images.Status(context.Background())
	if err != nil || st.Succeeded != 1 || st.Provider != "replicate" || st.MonthToDateUSD <= 0 {
		t.Errorf("status = %+v, %v", st, err)
	}
}
