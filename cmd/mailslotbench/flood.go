package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The flood scenario posts what an attacker can post to the public
// Replicate webhook, POST /v1/webhooks/replicate, from
// MAILSLOT_BENCH_FLOOD_CONNS (default 300) concurrent connections for the
// scenario's duration: half the posts carry no signature headers, half
// carry well-formed ones (a fresh timestamp, a v1 signature of random
// bytes) over a body of MAILSLOT_BENCH_FLOOD_MIB (default 8) MiB of
// garbage. The first kind must be refused before its body is read; the
// second is read, at most a few at once, and refused on its signature. The
// figure that matters is the edge's peak RSS (VmHWM, the kernel's own
// high-water mark, so that a burst between two samples is not missed).

func init() {
	scenarios = append(scenarios, scenario{Name: "flood", Default: true, Run: webhookFlood,
		About: "peak RSS under a flood of unsigned and badly signed ~8 MiB posts to the Replicate webhook"})
}

// floodEnv turns the webhook on: a Replicate provider (never called: the
// edge has no Postgres, so no job is dispatched) and a signing secret. The
// largest upload the edge accepts sets the webhook's body bound to
// min(8 MiB, 2×upload+1 MiB), so 4 MiB uploads let a post be read to 8 MiB.
var floodEnv = []string{
	"MAILSLOT_IMAGE_PROVIDER=replicate",
	"MAILSLOT_IMAGE_REPLICATE_TOKEN=r8_bench",
	"MAILSLOT_IMAGE_FACES_MODEL=bench/faces",
	"MAILSLOT_IMAGE_CAPTION_MODEL=bench/caption",
	"MAILSLOT_IMAGE_REPLICATE_WEBHOOK_SECRET=whsec_" + base64.StdEncoding.EncodeToString([]byte("bench-webhook-secret-0123456789ab")),
	"MAILSLOT_IMAGE_MAX_UPLOAD_BYTES=" + strconv.Itoa(4<<20),
}

// floodCounts are the answers the flood got, by kind.
type floodCounts struct {
	posts, refused, busy, other, failed atomic.Int64
}

func webhookFlood(ctx context.Context, e *env) (*measurement, error) {
	conns := envInt("MAILSLOT_BENCH_FLOOD_CONNS", 300)
	body := make([]byte, envInt("MAILSLOT_BENCH_FLOOD_MIB", 8)<<20-4<<10)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	srv, err := startServer(ctx, e.bin, e.dataRoot, serverOpts{Env: append(append([]string{}, floodEnv...), benchSecrets...)}, e.serverEnv)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	idle, err := readMemory(srv.pid())
	if err != nil {
		return nil, err
	}
	// One connection per client; the edge closes a connection whose body
	// it did not read, and the transport dials again.
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		DisableCompression:  true,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	fmt.Fprintf(e.progress, "flood: %d connections posting %.1f MiB each for %s...\n", conns, float64(len(body))/(1<<20), e.duration)

	var c floodCounts
	runCtx, cancel := context.WithTimeout(ctx, e.duration)
	defer cancel()
	rss := sampleRSS(srv.pid(), 20*time.Millisecond)
	cpu0, _ := cpuTime(srv.pid())
	start := time.Now()
	var wg sync.WaitGroup
	for i := range conns {
		signed := i%2 == 1
		wg.Go(func() {
			for runCtx.Err() == nil {
				floodPost(runCtx, client, srv.URL, body, signed, &c)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	loadRSS := rss.Stop()
	cpu1, _ := cpuTime(srv.pid())
	end, err := readMemory(srv.pid())
	if err != nil {
		return nil, err
	}
	if c.other.Load() > 0 {
		return nil, fmt.Errorf("flood: %d posts got an answer other than 401 or 503", c.other.Load())
	}
	return &measurement{
		Server:    fmt.Sprintf("%d connections, %.1f MiB posts, half unsigned, half badly signed", conns, float64(len(body))/(1<<20)),
		IdleRSS:   idle.RSS,
		LoadRSS:   loadRSS,
		PeakRSS:   end.HWM,
		ServerCPU: cpu1 - cpu0,
		Extra: []metric{
			{Name: "posts/s", Value: float64(c.posts.Load()) / elapsed.Seconds(), Unit: "/s"},
			{Name: "refused 401", Value: float64(c.refused.Load()), Unit: "posts"},
			{Name: "busy 503", Value: float64(c.busy.Load()), Unit: "posts"},
			// A post the edge answered and closed before the client had
			// sent all of it ends in a write error on the client side.
			{Name: "cut off", Value: float64(c.failed.Load()), Unit: "posts"},
		},
	}, nil
}

// floodPost sends one post and counts its answer.
func floodPost(ctx context.Context, client *http.Client, base string, body []byte, signed bool, c *floodCounts) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/webhooks/replicate", bytes.NewReader(body))
	if err != nil {
		c.failed.Add(1)
		return
	}
	req.Header.Set("Content-Type", "application/json")
	if signed {
		var id, sig [32]byte
		_, _ = rand.Read(id[:])
		_, _ = rand.Read(sig[:])
		req.Header.Set("Webhook-Id", "msg_"+base64.RawURLEncoding.EncodeToString(id[:12]))
		req.Header.Set("Webhook-Timestamp", strconv.FormatInt(time.Now().Unix(), 10))
		req.Header.Set("Webhook-Signature", "v1,"+base64.StdEncoding.EncodeToString(sig[:]))
	}
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			c.posts.Add(1)
			c.failed.Add(1)
		}
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	c.posts.Add(1)
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		c.refused.Add(1)
	case http.StatusServiceUnavailable:
		c.busy.Add(1)
	default:
		c.other.Add(1)
	}
}
