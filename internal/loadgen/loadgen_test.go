package loadgen

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestHistogramQuantiles(t *testing.T) {
	var h Histogram
	for i := 1; i <= 10000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 5000 * time.Microsecond}, {0.9, 9000 * time.Microsecond}, {0.99, 9900 * time.Microsecond}, {1, 10000 * time.Microsecond}} {
		got := h.Quantile(c.q)
		if got < c.want || float64(got) > float64(c.want)*1.02 {
			t.Errorf("q%.2f = %s, want %s within 2%%", c.q, got, c.want)
		}
	}
	if h.Max() != 10*time.Millisecond || h.Count() != 10000 {
		t.Errorf("max %s count %d", h.Max(), h.Count())
	}
}

func TestHistogramBuckets(t *testing.T) {
	prev := -1
	for us := uint64(0); us < 1<<20; us += 1 + us/100 {
		i := bucketOf(us)
		if i < prev || us > bucketHigh(i) || (i > 0 && us <= bucketHigh(i-1)) {
			t.Fatalf("%dµs in bucket %d [%d, %d]", us, i, bucketHigh(i-1)+1, bucketHigh(i))
		}
		prev = i
	}
	if i := bucketOf(1 << 40); i != numBuckets-1 {
		t.Errorf("huge value in bucket %d", i)
	}
}

func TestBodyFill(t *testing.T) {
	b := MustBody(`{"email":"u{{n}}@example.com","idem":"k{{n}}"}`)
	buf := b.Buffer()
	b.Fill(buf, 42)
	if got, want := string(buf), `{"email":"u000000000042@example.com","idem":"k000000000042"}`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	if _, err := NewBody("no slot"); err == nil {
		t.Error("template without placeholder accepted")
	}
}

func TestRunCountsAndUniqueBodies(t *testing.T) {
	for _, raw := range []bool{false, true} {
		t.Run(map[bool]string{false: "net/http", true: "raw"}[raw], func(t *testing.T) {
			var mu sync.Mutex
			seen := map[string]bool{}
			var served int
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				mu.Lock()
				dup := seen[string(b)]
				seen[string(b)] = true
				served++
				closeConn := served%100 == 0 // the client must reconnect
				mu.Unlock()
				if r.Header.Get("Content-Type") != "text/plain" || r.Header.Get("X-Test") != "yes" || r.URL.Path != "/p" {
					w.WriteHeader(http.StatusBadRequest)
					return
				}
				if closeConn {
					w.Header().Set("Connection", "close")
				}
				switch {
				case dup:
					w.WriteHeader(http.StatusConflict)
				case strings.HasSuffix(string(b), "7"):
					http.Redirect(w, r, "/error?error=x", http.StatusSeeOther)
				default:
					w.WriteHeader(http.StatusAccepted)
					_, _ = w.Write([]byte(`{"id":"x"}`))
				}
			}))
			defer srv.Close()
			target := Target{URL: srv.URL + "/p", ContentType: "text/plain", Header: http.Header{"X-Test": {"yes"}},
				Body: MustBody("n={{n}}")}
			res, err := Run(context.Background(), target, Config{Workers: 8, Requests: 1000, FirstNumber: 5, Raw: raw})
			if err != nil {
				t.Fatal(err)
			}
			if res.Requests != 1000 || res.Statuses["303"] != 100 || res.Accepted != 900 || len(res.Errors) != 0 {
				t.Errorf("requests %d accepted %d statuses %v errors %v", res.Requests, res.Accepted, res.Statuses, res.Errors)
			}
			if res.Latency.Count() != 1000 || res.NextNumber < 1005 {
				t.Errorf("latency count %d next %d", res.Latency.Count(), res.NextNumber)
			}
			if got := res.Rejected(func(l string) bool { return l == "202" }); got != "303×100" {
				t.Errorf("rejected summary %q", got)
			}
		})
	}
}

func TestRunStopsAfterDuration(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(time.Millisecond)
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	start := time.Now()
	res, err := Run(context.Background(), Target{URL: srv.URL, Body: MustBody("{{n}}")},
		Config{Workers: 4, Duration: 200 * time.Millisecond, Raw: true})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second || res.Accepted == 0 || len(res.Errors) != 0 {
		t.Errorf("took %s, accepted %d, errors %v", d, res.Accepted, res.Errors)
	}
}
