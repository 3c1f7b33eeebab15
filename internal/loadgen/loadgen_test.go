package loadgen

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
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
	for _, client := range []Client{ClientHTTP, ClientRaw, ClientLoop} {
		t.Run(string(client), func(t *testing.T) {
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
			res, err := Run(context.Background(), target, Config{Workers: 8, Requests: 1000, FirstNumber: 5, Client: client})
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
		time.Sleep(time.Millisecond) // a server's latency, so that the run is timed, not counted
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	for _, client := range []Client{ClientRaw, ClientLoop} {
		t.Run(string(client), func(t *testing.T) {
			start := time.Now()
			res, err := Run(context.Background(), Target{URL: srv.URL, Body: MustBody("{{n}}")},
				Config{Workers: 4, Duration: 200 * time.Millisecond, Client: client})
			if err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d > 2*time.Second || res.Accepted == 0 || len(res.Errors) != 0 {
				t.Errorf("took %s, accepted %d, errors %v", d, res.Accepted, res.Errors)
			}
		})
	}
}

// TestLoopRefusedAndReconnects checks that the loop client counts refused
// connections as errors without spinning on them forever, and that it
// reconnects after an answer that closes the connection.
func TestLoopRefusedAndReconnects(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	res, err := Run(context.Background(), Target{URL: "http://" + addr + "/p", Body: MustBody("{{n}}")},
		Config{Workers: 3, Requests: 30, Client: ClientLoop})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 30 || res.Errors["refused"] != 30 {
		t.Errorf("refused: requests %d errors %v", res.Requests, res.Errors)
	}

	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusAccepted)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	res, err = Run(context.Background(), Target{URL: srv.URL + "/p", Body: MustBody("{{n}}")},
		Config{Workers: 3, Requests: 30, Client: ClientLoop})
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 30 || len(res.Errors) != 0 || conns.Load() != 30 {
		t.Errorf("close: accepted %d errors %v over %d connections", res.Accepted, res.Errors, conns.Load())
	}
}

func TestReadAnswer(t *testing.T) {
	const next = "HTTP/1.1 204 No Content\r\n\r\n" // must be left for the next read
	for _, c := range []struct {
		name      string
		in        string
		head      bool
		status    int
		location  string
		keepAlive bool
		err       error // nil, errMalformed or io.ErrUnexpectedEOF
	}{
		{name: "content length", in: "HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 10\r\n\r\n{\"id\":\"x\"}",
			status: 202, keepAlive: true},
		{name: "redirect", in: "HTTP/1.1 303 See Other\r\nlocation:  https://example.com/e?error=x \r\ncontent-length: 0\r\n\r\n",
			status: 303, location: "https://example.com/e?error=x", keepAlive: true},
		{name: "no reason phrase", in: "HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok", status: 200, keepAlive: true},
		{name: "bare LF", in: "HTTP/1.1 200 OK\nContent-Length: 2\n\nok", status: 200, keepAlive: true},
		{name: "chunked", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Trailer: y\r\n\r\n",
			status: 200, keepAlive: true},
		{name: "connection close", in: "HTTP/1.1 202 Accepted\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", status: 202},
		{name: "close among options", in: "HTTP/1.1 202 Accepted\r\nConnection: Upgrade, Close\r\nContent-Length: 2\r\n\r\nok", status: 202},
		{name: "HTTP/1.0", in: "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", status: 200},
		{name: "HTTP/1.0 keep-alive", in: "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", status: 200, keepAlive: true},
		{name: "no content", in: "HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n", status: 204, keepAlive: true},
		{name: "HEAD", in: "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", head: true, status: 200, keepAlive: true},
		{name: "body to close", in: "HTTP/1.1 200 OK\r\n\r\nall of it", status: 200},

		{name: "garbage", in: "hello there\r\n\r\n", err: errMalformed},
		{name: "HTTP/2 status line", in: "HTTP/2 200 OK\r\n\r\n", err: errMalformed},
		{name: "status not digits", in: "HTTP/1.1 2x2 Accepted\r\n\r\n", err: errMalformed},
		{name: "status too long", in: "HTTP/1.1 2022 Accepted\r\n\r\n", err: errMalformed},
		{name: "interim answer", in: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n", err: errMalformed},
		{name: "header without colon", in: "HTTP/1.1 200 OK\r\nContent-Length 2\r\n\r\nok", err: errMalformed},
		{name: "bad content length", in: "HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\nok", err: errMalformed},
		{name: "two content lengths", in: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok", err: errMalformed},
		{name: "chunked and length", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", err: errMalformed},
		{name: "gzip transfer encoding", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", err: errMalformed},
		{name: "bad chunk size", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", err: errMalformed},
		{name: "chunk overruns", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhello\r\n0\r\n\r\n", err: errMalformed},
		{name: "header line too long", in: "HTTP/1.1 200 OK\r\nX-Long: " + strings.Repeat("a", maxLine) + "\r\n\r\n", err: errMalformed},
		{name: "truncated head", in: "HTTP/1.1 200 OK\r\nContent-Len", err: io.ErrUnexpectedEOF},
		{name: "truncated body", in: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", err: io.ErrUnexpectedEOF},
		{name: "truncated chunked body", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", err: io.ErrUnexpectedEOF},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := c.in
			if c.keepAlive {
				in += next
			}
			br := bufio.NewReaderSize(strings.NewReader(in), maxLine)
			a, keepAlive, err := readAnswer(br, c.head)
			if c.err != nil {
				if !errors.Is(err, c.err) || keepAlive {
					t.Fatalf("got %+v keep-alive %v err %v, want error %v and no keep-alive", a, keepAlive, err, c.err)
				}
				return
			}
			if err != nil || a.StatusCode != c.status || a.Location != c.location || keepAlive != c.keepAlive {
				t.Fatalf("got %+v keep-alive %v err %v, want status %d location %q keep-alive %v",
					a, keepAlive, err, c.status, c.location, c.keepAlive)
			}
			// net/http reads the same answer the same way.
			method := http.MethodPost
			if c.head {
				method = http.MethodHead
			}
			resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(c.in)), &http.Request{Method: method})
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != a.StatusCode || resp.Header.Get("Location") != a.Location || resp.Close == keepAlive {
				t.Errorf("net/http: status %d location %q close %v", resp.StatusCode, resp.Header.Get("Location"), resp.Close)
			}
			if keepAlive {
				// The body was consumed exactly: the next answer is intact.
				a, keepAlive, err := readAnswer(br, false)
				if err != nil || a.StatusCode != http.StatusNoContent || !keepAlive {
					t.Errorf("next answer: %+v keep-alive %v err %v", a, keepAlive, err)
				}
				if _, err := br.ReadByte(); err != io.EOF {
					t.Errorf("bytes left after the next answer")
				}
			}
			if c.name == "body to close" {
				return // the loop client needs to know where an answer ends
			}
			// The loop client reads the same answer as it arrives, here a
			// byte at a time: incomplete until the last byte, then the same.
			for end := range len(c.in) {
				src := sliceSource{b: []byte(c.in[:end])}
				if _, _, err := readAnswer(&src, c.head); !errors.Is(err, errIncomplete) {
					t.Fatalf("first %d bytes: err %v, want incomplete", end, err)
				}
			}
			src := sliceSource{b: []byte(in)}
			got, gotKeepAlive, err := readAnswer(&src, c.head)
			if got != a || gotKeepAlive != keepAlive || err != nil || src.off != len(c.in) {
				t.Errorf("from a slice: %+v keep-alive %v err %v, read %d of %d bytes", got, gotKeepAlive, err, src.off, len(c.in))
			}
		})
	}
}

// TestRawMalformedAnswers checks that the raw client counts answers it
// cannot read as errors and moves on, and that a peer that stops half-way
// is cut off by the request timeout instead of stalling the worker.
func TestRawMalformedAnswers(t *testing.T) {
	for _, c := range []struct {
		name   string
		answer string
		kind   string
	}{
		{"garbage", "SMTP ready\r\n\r\n", "error"},
		{"truncated", "HTTP/1.1 202 Accepted\r\nContent-Length: 100\r\n\r\n{}", "timeout"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			// The accept loop is in the group too, so that no connection
			// joins it after Wait has started; Close ends the loop first.
			var conns sync.WaitGroup
			defer conns.Wait()
			defer ln.Close()
			conns.Go(func() {
				for {
					conn, err := ln.Accept()
					if err != nil {
						return
					}
					conns.Go(func() {
						defer conn.Close()
						buf := make([]byte, 4<<10)
						for {
							if _, err := conn.Read(buf); err != nil {
								return // the client closed the connection
							}
							if _, err := io.WriteString(conn, c.answer); err != nil {
								return
							}
						}
					})
				}
			})
			for _, client := range []Client{ClientRaw, ClientLoop} {
				res, err := Run(context.Background(), Target{URL: "http://" + ln.Addr().String() + "/p", Body: MustBody("{{n}}")},
					Config{Workers: 2, Requests: 6, Timeout: 50 * time.Millisecond, Client: client})
				if err != nil {
					t.Fatal(err)
				}
				if res.Requests != 6 || res.Errors[c.kind] != 6 || res.Accepted != 0 || res.Latency.Count() != 0 {
					t.Errorf("%s: requests %d accepted %d errors %v statuses %v", client, res.Requests, res.Accepted, res.Errors, res.Statuses)
				}
			}
		})
	}
}

// BenchmarkReadAnswer reads the answer to a JSON sign-up as the raw client
// does, against net/http's parser.
func BenchmarkReadAnswer(b *testing.B) {
	const answer = "HTTP/1.1 202 Accepted\r\nContent-Type: application/json; charset=utf-8\r\n" +
		"Date: Mon, 02 Jan 2026 15:04:05 GMT\r\nContent-Length: 63\r\n\r\n" +
		`{"id":"0198a3f1-7c2e-7b4a-9d1e-2f3a4b5c6d7e","status":"accepted"}`
	rd := strings.NewReader(answer)
	br := bufio.NewReaderSize(rd, maxLine)
	b.Run("readAnswer", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			rd.Reset(answer)
			br.Reset(rd)
			if _, _, err := readAnswer(br, false); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("http.ReadResponse", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			rd.Reset(answer)
			br.Reset(rd)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
		}
	})
}
