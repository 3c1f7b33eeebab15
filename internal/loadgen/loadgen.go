// Package loadgen drives an HTTP endpoint with a fixed number of concurrent
// workers, each with a keep-alive connection, and reports throughput,
// latency quantiles and answers by status. It is the project's own load
// generator: `mailslotbench` uses it against a real `mailslot serve`, and
// tests may use it to load a server they started.
//
// Memory is bounded whatever the run's length: bodies are encoded once and
// patched with a request number in place, and latencies go into
// fixed-size histograms (one per worker, merged at the end).
package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Target is the request every worker sends, with a unique number patched
// into Body each time.
type Target struct {
	Method      string // POST when empty
	URL         string
	ContentType string
	Header      http.Header // extra headers, the same for every request
	Body        *Body
	// Classify says whether an answer counts as accepted and under which
	// label it is counted. Nil means 2xx is accepted and the label is the
	// status code.
	Classify func(a Answer) (accepted bool, label string)
}

// Answer is what Classify sees of a response: its status and, for
// redirects, where to. The raw client parses nothing else.
type Answer struct {
	StatusCode int
	Location   string
}

// Config is one run's shape.
type Config struct {
	// Workers is the number of concurrent clients, each keeping one
	// connection alive.
	Workers int
	// Duration stops the run after this long; Requests stops it after this
	// many requests. At least one must be set; the first reached wins.
	Duration time.Duration
	Requests int64
	// FirstNumber is the first request number patched into bodies; give
	// consecutive runs against one server disjoint ranges (see
	// Result.NextNumber) so that no two requests repeat an email.
	FirstNumber uint64
	// Timeout bounds one request; zero means 10s.
	Timeout time.Duration
	// Client is how requests are sent; the zero value is ClientHTTP.
	Client Client
}

// Client is a way of sending requests. Every client sends the server the
// same bytes; they differ in what they cost the machine they share with it.
type Client string

const (
	// ClientHTTP goes through net/http's client.
	ClientHTTP Client = "http"
	// ClientRaw writes pre-encoded HTTP/1.1 requests on plain connections,
	// one goroutine per connection (see rawSender): about half of
	// ClientHTTP's CPU.
	ClientRaw Client = "raw"
	// ClientLoop drives every connection from one event loop, as wrk does
	// (see runLoop): a fifth less CPU than ClientRaw. Linux only.
	ClientLoop Client = "loop"
)

// Result is what a run measured.
type Result struct {
	Elapsed  time.Duration
	Requests int64 // answered requests plus transport errors
	Accepted int64
	// Statuses counts answers by Classify's label (the status code unless
	// Classify says otherwise), accepted ones included.
	Statuses map[string]int64
	// Errors counts requests that got no answer, by kind.
	Errors map[string]int64
	// Latency holds every answered request's latency, accepted or not.
	Latency *Histogram
	// NextNumber is the first request number this run did not use.
	NextNumber uint64
}

// AcceptedPerSec is the accepted-request throughput.
func (r *Result) AcceptedPerSec() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Accepted) / r.Elapsed.Seconds()
}

// Rejected is a summary of the answers that were not accepted and of the
// transport errors, such as "503×12 eof×1", or "" when there were none.
func (r *Result) Rejected(accepted func(label string) bool) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(r.Statuses)) {
		if !accepted(k) {
			parts = append(parts, k+"×"+strconv.FormatInt(r.Statuses[k], 10))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(r.Errors)) {
		parts = append(parts, k+"×"+strconv.FormatInt(r.Errors[k], 10))
	}
	return strings.Join(parts, " ")
}

// NewClient returns an HTTP client for workers concurrent requests to one
// host: one kept-alive connection per worker, no redirects followed (a
// form post's 303 is the answer being measured), no proxy, no compression.
func NewClient(workers int, timeout time.Duration) *http.Client {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        workers,
		MaxIdleConnsPerHost: workers,
		MaxConnsPerHost:     workers,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
		WriteBufferSize:     4 << 10,
		ReadBufferSize:      4 << 10,
	}
	return &http.Client{
		Transport:     tr,
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Run drives target with cfg.Workers concurrent workers until cfg.Duration
// has passed, cfg.Requests were sent, or ctx is done.
func Run(ctx context.Context, target Target, cfg Config) (*Result, error) {
	if cfg.Workers <= 0 {
		return nil, errors.New("loadgen: workers must be positive")
	}
	if cfg.Duration <= 0 && cfg.Requests <= 0 {
		return nil, errors.New("loadgen: set a duration or a request count")
	}
	if target.Body == nil {
		return nil, errors.New("loadgen: target has no body")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if target.Method == "" {
		target.Method = http.MethodPost
	}
	if target.Classify == nil {
		target.Classify = classify2xx
	}
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}
	var (
		next    atomic.Uint64 // request numbers handed out, from 0
		workers []*worker
		start   time.Time
	)
	switch cfg.Client {
	case ClientLoop:
		req, err := encodeRequest(target)
		if err != nil {
			return nil, fmt.Errorf("loadgen: %w", err)
		}
		w := newWorker()
		workers = []*worker{w}
		start = time.Now()
		if err := runLoop(ctx, req, target.Classify, cfg, w, &next); err != nil {
			return nil, fmt.Errorf("loadgen: %w", err)
		}
	case ClientRaw, ClientHTTP, "":
		client := NewClient(cfg.Workers, cfg.Timeout)
		defer client.CloseIdleConnections()
		senders := make([]sender, cfg.Workers)
		for i := range senders {
			var err error
			if cfg.Client == ClientRaw {
				senders[i], err = newRawSender(target, cfg.Timeout)
			} else {
				senders[i], err = newHTTPSender(ctx, client, target)
			}
			if err != nil {
				return nil, fmt.Errorf("loadgen: %w", err)
			}
		}
		workers = make([]*worker, cfg.Workers)
		var wg sync.WaitGroup
		start = time.Now()
		for i := range workers {
			w := newWorker()
			workers[i] = w
			wg.Go(func() {
				w.run(ctx, senders[i], target, cfg, &next)
			})
		}
		wg.Wait()
	default:
		return nil, fmt.Errorf("loadgen: unknown client %q", cfg.Client)
	}
	res := &Result{
		Elapsed:    time.Since(start),
		Statuses:   map[string]int64{},
		Errors:     map[string]int64{},
		Latency:    new(Histogram),
		NextNumber: cfg.FirstNumber + next.Load(),
	}
	for _, w := range workers {
		res.Requests += w.requests
		res.Accepted += w.accepted
		for k, v := range w.statuses {
			res.Statuses[k] += v
		}
		for k, v := range w.errors {
			res.Errors[k] += v
		}
		res.Latency.Merge(w.latency)
	}
	return res, nil
}

func classify2xx(a Answer) (bool, string) {
	return a.StatusCode/100 == 2, strconv.Itoa(a.StatusCode)
}

// worker keeps its own counters so that the hot loop shares nothing but
// the request-number counter.
type worker struct {
	requests, accepted int64
	statuses           map[string]int64
	errors             map[string]int64
	latency            *Histogram
}

func newWorker() *worker {
	return &worker{statuses: map[string]int64{}, errors: map[string]int64{}, latency: new(Histogram)}
}

// record counts one answer.
func (w *worker) record(classify func(Answer) (bool, string), a Answer, latency time.Duration) {
	w.latency.Record(latency)
	w.requests++
	ok, label := classify(a)
	w.statuses[label]++
	if ok {
		w.accepted++
	}
}

// fail counts one request that got no answer.
func (w *worker) fail(err error) {
	w.requests++
	w.errors[errKind(err)]++
}

// sender sends one request numbered n and reads its whole answer, body
// included.
type sender interface {
	send(n uint64) (Answer, error)
	close()
}

func (w *worker) run(ctx context.Context, s sender, t Target, cfg Config, next *atomic.Uint64) {
	defer s.close()
	for ctx.Err() == nil {
		n := next.Add(1) - 1
		if cfg.Requests > 0 && int64(n) >= cfg.Requests {
			return
		}
		begin := time.Now()
		a, err := s.send(cfg.FirstNumber + n)
		if err != nil {
			if ctx.Err() != nil {
				return // the run ended mid-request; not the server's fault
			}
			w.fail(err)
			continue
		}
		w.record(t.Classify, a, time.Since(begin))
	}
}

// httpSender goes through net/http's client, one reused request per
// worker.
type httpSender struct {
	client *http.Client
	body   *Body
	buf    []byte
	rd     *bytes.Reader
	req    *http.Request
	drain  []byte
}

func newHTTPSender(ctx context.Context, client *http.Client, t Target) (*httpSender, error) {
	s := &httpSender{client: client, body: t.Body, buf: t.Body.Buffer(), drain: make([]byte, 4<<10)}
	s.rd = bytes.NewReader(s.buf)
	req, err := http.NewRequestWithContext(ctx, t.Method, t.URL, nil)
	if err != nil {
		return nil, err
	}
	for k, vs := range t.Header {
		req.Header[k] = vs
	}
	if t.ContentType != "" {
		req.Header.Set("Content-Type", t.ContentType)
	}
	req.ContentLength = int64(len(s.buf))
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(s.buf)), nil }
	s.req = req
	return s, nil
}

func (s *httpSender) send(n uint64) (Answer, error) {
	s.body.Fill(s.buf, n)
	s.rd.Reset(s.buf)
	// A request may be reused once the previous answer's body is closed.
	s.req.Body = io.NopCloser(s.rd)
	resp, err := s.client.Do(s.req)
	if err != nil {
		return Answer{}, err
	}
	_, err = io.CopyBuffer(io.Discard, resp.Body, s.drain)
	_ = resp.Body.Close()
	return Answer{StatusCode: resp.StatusCode, Location: resp.Header.Get("Location")}, err
}

func (s *httpSender) close() {}

// rawSender writes pre-encoded HTTP/1.1 requests (head and body in one
// buffer, one write) on its own keep-alive connection and reads answers
// with readAnswer in the same goroutine. It skips net/http's Transport,
// whose two goroutines per connection and the handoffs between them cost
// the load generator about as much CPU as the request itself, and
// http.ReadResponse, which builds a header map per answer: on a machine
// that the server shares, that CPU comes out of the server's.
type rawSender struct {
	req     rawRequest
	timeout time.Duration
	msg     []byte // this sender's copy of req.msg
	conn    net.Conn
	br      *bufio.Reader
}

// rawRequest is a target encoded once as HTTP/1.1 for the raw and loop
// clients.
type rawRequest struct {
	addr    string // host:port
	head    bool   // HEAD requests: answers carry no body
	body    *Body
	msg     []byte // request head and body; copy it before filling
	bodyOff int
}

func encodeRequest(t Target) (rawRequest, error) {
	u, err := url.Parse(t.URL)
	if err != nil {
		return rawRequest{}, err
	}
	if u.Scheme != "http" {
		return rawRequest{}, fmt.Errorf("raw and loop clients speak plain http only, not %q", u.Scheme)
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	var head strings.Builder
	fmt.Fprintf(&head, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: mailslot-loadgen\r\n", t.Method, u.RequestURI(), u.Host)
	if t.ContentType != "" {
		fmt.Fprintf(&head, "Content-Type: %s\r\n", t.ContentType)
	}
	for k, vs := range t.Header {
		for _, v := range vs {
			fmt.Fprintf(&head, "%s: %s\r\n", k, v)
		}
	}
	fmt.Fprintf(&head, "Content-Length: %d\r\n\r\n", t.Body.Len())
	msg := append([]byte(head.String()), t.Body.Buffer()...)
	return rawRequest{addr: addr, head: t.Method == http.MethodHead, body: t.Body, msg: msg, bodyOff: head.Len()}, nil
}

// fill numbers msg, a copy of the request's bytes.
func (r *rawRequest) fill(msg []byte, n uint64) { r.body.Fill(msg[r.bodyOff:], n) }

func newRawSender(t Target, timeout time.Duration) (*rawSender, error) {
	req, err := encodeRequest(t)
	if err != nil {
		return nil, err
	}
	return &rawSender{req: req, timeout: timeout, msg: bytes.Clone(req.msg)}, nil
}

func (s *rawSender) send(n uint64) (Answer, error) {
	s.req.fill(s.msg, n)
	if s.conn == nil {
		c, err := net.DialTimeout("tcp", s.req.addr, 5*time.Second)
		if err != nil {
			return Answer{}, err
		}
		s.conn = c
		s.br = bufio.NewReaderSize(c, maxLine)
	}
	_ = s.conn.SetDeadline(time.Now().Add(s.timeout))
	if _, err := s.conn.Write(s.msg); err != nil {
		s.close()
		return Answer{}, err
	}
	a, keepAlive, err := readAnswer(s.br, s.req.head)
	if err != nil || !keepAlive {
		s.close()
	}
	return a, err
}

func (s *rawSender) close() {
	if s.conn != nil {
		_ = s.conn.Close()
		s.conn = nil
	}
}

// errMalformed is a response the raw client cannot read. The connection is
// closed and the request counted as an error, never skipped over.
var errMalformed = errors.New("malformed response")

// readAnswer reads one HTTP/1.x response from br: the status line, the
// headers it needs (Content-Length, Transfer-Encoding, Connection,
// Location), and the body, which it discards. It reports whether the
// connection may carry another request. Anything it does not understand is
// an error, so that a misread never leaves the connection out of step; a
// peer that stops sending is bounded by the connection's deadline.
func readAnswer(br answerSource, head bool) (Answer, bool, error) {
	var a Answer
	line, err := readLine(br)
	if err != nil {
		return a, false, err
	}
	// HTTP/1.x SP 3DIGIT [SP reason]
	if len(line) < 12 || string(line[:7]) != "HTTP/1." || (line[7] != '0' && line[7] != '1') ||
		line[8] != ' ' || (len(line) > 12 && line[12] != ' ') {
		return a, false, fmt.Errorf("%w: status line %q", errMalformed, truncate(line))
	}
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return a, false, fmt.Errorf("%w: status line %q", errMalformed, truncate(line))
		}
		a.StatusCode = a.StatusCode*10 + int(c-'0')
	}
	if a.StatusCode < 200 {
		// The client sends no Expect, so an interim answer is unexpected;
		// skipping it would need care that nothing else here needs.
		return a, false, fmt.Errorf("%w: interim status %d", errMalformed, a.StatusCode)
	}
	http10 := line[7] == '0'
	keepAlive := !http10
	contentLength := int64(-1)
	chunked := false
	for {
		line, err := readLine(br)
		if err != nil {
			return a, false, unexpectedEOF(err)
		}
		if len(line) == 0 {
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return a, false, fmt.Errorf("%w: header line %q", errMalformed, truncate(line))
		}
		name, value := line[:colon], bytes.TrimSpace(line[colon+1:])
		switch {
		case asciiEqualFold(name, "Content-Length"):
			n, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil || n < 0 || (contentLength >= 0 && n != contentLength) {
				return a, false, fmt.Errorf("%w: content length %q", errMalformed, truncate(value))
			}
			contentLength = n
		case asciiEqualFold(name, "Transfer-Encoding"):
			if !asciiEqualFold(value, "chunked") || chunked {
				return a, false, fmt.Errorf("%w: transfer encoding %q", errMalformed, truncate(value))
			}
			chunked = true
		case asciiEqualFold(name, "Connection"):
			for _, opt := range bytes.Split(value, []byte(",")) {
				opt = bytes.TrimSpace(opt)
				switch {
				case asciiEqualFold(opt, "close"):
					keepAlive = false
				case asciiEqualFold(opt, "keep-alive") && http10:
					keepAlive = true
				}
			}
		case asciiEqualFold(name, "Location"):
			a.Location = string(value)
		}
	}
	switch {
	case head || a.StatusCode == http.StatusNoContent || a.StatusCode == http.StatusNotModified:
		return a, keepAlive, nil
	case chunked:
		// A message with both is invalid (RFC 9112 §6.3) and would let the
		// two ends disagree on where it ends.
		if contentLength >= 0 {
			return a, false, fmt.Errorf("%w: both chunked and a content length", errMalformed)
		}
		err := discardChunked(br)
		return a, keepAlive && err == nil, err
	case contentLength >= 0:
		_, err := br.Discard(int(contentLength))
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return a, keepAlive && err == nil, err
	}
	// No length: the body runs to the end of the connection.
	_, err = io.Copy(io.Discard, br)
	return a, false, err
}

// answerSource is what readAnswer reads from: a bufio.Reader on a
// connection, or the loop client's received bytes (sliceSource).
type answerSource interface {
	io.Reader
	ReadSlice(delim byte) ([]byte, error)
	Discard(n int) (int, error)
}

// maxLine bounds a status, header or chunk-size line: it is the size of
// the raw client's read buffer.
const maxLine = 4 << 10

// readLine reads a line ending in CRLF (or a bare LF, as net/http accepts)
// and returns it without the ending. The slice is valid until the next
// read from br.
func readLine(br answerSource) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	switch {
	case errors.Is(err, bufio.ErrBufferFull):
		return nil, fmt.Errorf("%w: line longer than %d bytes", errMalformed, maxLine)
	case errors.Is(err, io.EOF) && len(line) > 0:
		return nil, io.ErrUnexpectedEOF
	case err != nil:
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

// discardChunked reads a chunked body (RFC 9112 §7.1) up to and including
// its trailer section.
func discardChunked(br answerSource) error {
	for {
		line, err := readLine(br)
		if err != nil {
			return err
		}
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i] // chunk extensions
		}
		size, err := strconv.ParseUint(string(bytes.TrimSpace(line)), 16, 62)
		if err != nil {
			return fmt.Errorf("%w: chunk size %q", errMalformed, truncate(line))
		}
		if size == 0 {
			break
		}
		if _, err := br.Discard(int(size)); err != nil {
			return unexpectedEOF(err)
		}
		crlf, err := readLine(br)
		if err != nil {
			return unexpectedEOF(err)
		}
		if len(crlf) != 0 {
			return fmt.Errorf("%w: chunk not followed by CRLF", errMalformed)
		}
	}
	for { // trailer fields, then an empty line
		line, err := readLine(br)
		if err != nil {
			return unexpectedEOF(err)
		}
		if len(line) == 0 {
			return nil
		}
	}
}

func unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// asciiEqualFold compares b with the ASCII string s, ignoring case.
func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c, d := b[i], s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if 'A' <= d && d <= 'Z' {
			d += 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
}

// truncate keeps error messages short whatever the peer sent.
func truncate(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

// errKind is a short, bounded label for a transport error.
func errKind(err error) string {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	case strings.Contains(err.Error(), "connection refused"):
		return "refused"
	case strings.Contains(err.Error(), "connection reset"):
		return "reset"
	}
	return "error"
}
