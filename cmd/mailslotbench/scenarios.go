package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/mailslot/mailslot/internal/loadgen"
)

// env is what every scenario gets: the flags, and where to report progress.
type env struct {
	bin       string
	dataRoot  string
	workers   int
	duration  time.Duration
	warmup    time.Duration
	settle    time.Duration
	serverEnv []string // -env flags, added to every server's environment
	client    loadgen.Client
	progress  io.Writer
}

// scenario is one line of the results table. Run starts whatever it needs
// (a server, a database), measures once, and cleans up; the caller repeats
// it for each round and reports the medians.
type scenario struct {
	Name  string
	About string
	// Default scenarios run when -scenarios is not given.
	Default bool
	Run     func(ctx context.Context, e *env) (*measurement, error)
}

// measurement is what one round of a scenario measured. Load is nil for a
// scenario that measures something other than HTTP requests; Extra carries
// such figures by name (the table shows their medians).
type measurement struct {
	Load     *loadgen.Result
	Accepted func(label string) bool
	Server   string // how the server ran, such as "cpu 0, GOMAXPROCS=1 (env)"
	IdleRSS  int64  // VmRSS after start, before any load
	LoadRSS  int64  // largest VmRSS sampled during the measured run
	PeakRSS  int64  // VmHWM at the end of the run (warm-up included)
	// ServerCPU and LoadCPU are the CPU time the server and the load
	// generator used during the measured run: per request, they show what
	// the run cost whatever else the machine was doing.
	ServerCPU time.Duration
	LoadCPU   time.Duration
	Extra     []metric
}

type metric struct {
	Name  string
	Value float64
	Unit  string
}

// scenarios is the registry, in table order. A new scenario (the sync
// drain rate into Postgres, end-to-end lag) is one more entry with its own
// Run function.
var scenarios = []scenario{
	{Name: "decode-only", About: "calibration: a Gin handler that only decodes the JSON sign-up, nothing stored (see decodeonly.go)", Default: true,
		Run: signups(signupCase{decodeOnly: true})},
	{Name: "json", About: "JSON sign-ups, group commit", Default: true,
		Run: signups(signupCase{form: false})},
	{Name: "form", About: "form sign-ups, group commit", Default: true,
		Run: signups(signupCase{form: true})},
	{Name: "json-nogc", About: "JSON sign-ups, one transaction+fsync per request", Default: true,
		Run: signups(signupCase{form: false, env: []string{"MAILSLOT_GROUP_COMMIT=off"}})},
	{Name: "form-nogc", About: "form sign-ups, one transaction+fsync per request", Default: true,
		Run: signups(signupCase{form: true, env: []string{"MAILSLOT_GROUP_COMMIT=off"}})},
	{Name: "onecore", About: "JSON, server on CPU 0 (binary's default GOMAXPROCS handling), load on CPU 1", Default: true,
		Run: signups(signupCase{serverCPUs: "0", loadCPU: 1})},
	{Name: "onecore-gomaxprocs1", About: "JSON, server on CPU 0 with GOMAXPROCS=1 forced, load on CPU 1", Default: true,
		Run: signups(signupCase{serverCPUs: "0", loadCPU: 1, env: []string{"GOMAXPROCS=1"}})},
	{Name: "onecore-form", About: "form, server on CPU 0 (default GOMAXPROCS handling), load on CPU 1",
		Run: signups(signupCase{form: true, serverCPUs: "0", loadCPU: 1})},
	{Name: "onecore-form-gomaxprocs1", About: "form, server on CPU 0 with GOMAXPROCS=1 forced, load on CPU 1",
		Run: signups(signupCase{form: true, serverCPUs: "0", loadCPU: 1, env: []string{"GOMAXPROCS=1"}})},
	{Name: "onecore-nogc-gomaxprocs1", About: "JSON, server on CPU 0, GOMAXPROCS=1, one fsync per request",
		Run: signups(signupCase{serverCPUs: "0", loadCPU: 1, env: []string{"GOMAXPROCS=1", "MAILSLOT_GROUP_COMMIT=off"}})},
	mailThroughputScenario, mailLatencyScenario, // mail.go
}

// Sign-up bodies: a realistic sign-up with consent, policy version, page and
// UTM parameters (nested in JSON, flattened in forms), and a unique email.
var (
	jsonLead = loadgen.MustBody(`{"email":"bench+` + loadgen.Placeholder + `@example.com","property":"bench",` +
		`"consent":"express","policy_version":"2026-01","source":"footer","name":"Bench User",` +
		`"page":"https://example.com/pricing","utm":{"source":"newsletter","medium":"email","campaign":"launch"}}`)
	formLead = loadgen.MustBody(`email=bench%2B` + loadgen.Placeholder + `%40example.com&property=bench` +
		`&consent=express&policy_version=2026-01&source=footer&name=Bench+User` +
		`&page=https%3A%2F%2Fexample.com%2Fpricing&utm_source=newsletter&utm_medium=email&utm_campaign=launch`)
)

type signupCase struct {
	form       bool
	env        []string // server environment for this scenario
	serverCPUs string   // taskset list for the server; empty: not pinned
	loadCPU    int      // CPU for the load generator when serverCPUs is set
	decodeOnly bool     // run the calibration server instead of mailslot
}

// signups measures POST /v1/leads against a fresh server.
func signups(c signupCase) func(ctx context.Context, e *env) (*measurement, error) {
	return func(ctx context.Context, e *env) (*measurement, error) {
		o := serverOpts{Env: c.env, CPUs: c.serverCPUs}
		if c.decodeOnly {
			self, err := os.Executable()
			if err != nil {
				return nil, fmt.Errorf("find mailslotbench for the decode-only server: %w", err)
			}
			o.Command = []string{self, decodeOnlyArg}
		}
		srv, err := startServer(ctx, e.bin, e.dataRoot, o, e.serverEnv)
		if err != nil {
			return nil, err
		}
		m, err := measureSignups(ctx, e, c, srv)
		if serr := srv.stop(); err == nil && serr != nil {
			err = serr
		}
		return m, err
	}
}

func measureSignups(ctx context.Context, e *env, c signupCase, srv *server) (*measurement, error) {
	m := &measurement{Server: describeServer(c, srv)}
	time.Sleep(e.settle)
	idle, err := readMemory(srv.pid())
	if err != nil {
		return nil, fmt.Errorf("read server memory: %w", err)
	}
	m.IdleRSS = idle.RSS

	if c.serverCPUs != "" {
		restore, err := pinProcess(c.loadCPU)
		if err != nil {
			return nil, err
		}
		defer restore()
	}
	target := loadgen.Target{URL: srv.URL + "/v1/leads", ContentType: "application/json", Body: jsonLead}
	m.Accepted = func(label string) bool { return label == "202" }
	if c.form {
		target.ContentType = "application/x-www-form-urlencoded"
		target.Body = formLead
		target.Classify = classifyForm
		m.Accepted = func(label string) bool { return label == "303" }
	}
	var next uint64
	if e.warmup > 0 {
		res, err := loadgen.Run(ctx, target, loadgen.Config{Workers: e.workers, Duration: e.warmup, Client: e.client})
		if err != nil {
			return nil, fmt.Errorf("warm up: %w", err)
		}
		next = res.NextNumber
	}
	sampler := sampleRSS(srv.pid(), 100*time.Millisecond)
	srvCPU, err := cpuTime(srv.pid())
	if err != nil {
		return nil, fmt.Errorf("read server CPU time: %w", err)
	}
	genCPU := selfCPUTime()
	res, err := loadgen.Run(ctx, target, loadgen.Config{Workers: e.workers, Duration: e.duration, FirstNumber: next, Client: e.client})
	m.LoadCPU = selfCPUTime() - genCPU
	if after, cerr := cpuTime(srv.pid()); cerr == nil {
		m.ServerCPU = after - srvCPU
	}
	m.LoadRSS = sampler.Stop()
	if err != nil {
		return nil, err
	}
	m.Load = res
	if mem, err := readMemory(srv.pid()); err == nil {
		m.PeakRSS = mem.HWM
	}
	return m, nil
}

// classifyForm counts a 303 to anywhere but the error page as accepted. A
// refused form post is also a 303, to the error URL with ?error=<code>.
func classifyForm(a loadgen.Answer) (bool, string) {
	if a.StatusCode != http.StatusSeeOther {
		return false, fmt.Sprint(a.StatusCode)
	}
	if !strings.Contains(a.Location, "?") {
		return true, "303" // no query, so no error code: the thank-you page
	}
	if u, err := url.Parse(a.Location); err == nil {
		if code := u.Query().Get("error"); code != "" {
			return false, "303:" + code
		}
	}
	return true, "303"
}

// describeServer says how the server was placed and how many Ps it ran
// with, as far as the benchmark can tell.
func describeServer(c signupCase, srv *server) string {
	var parts []string
	if c.serverCPUs != "" {
		parts = append(parts, "cpu "+c.serverCPUs)
	} else {
		parts = append(parts, fmt.Sprintf("%d cpus shared", runtime.NumCPU()))
	}
	procs := "GOMAXPROCS auto"
	for _, kv := range c.env {
		if v, ok := strings.CutPrefix(kv, "GOMAXPROCS="); ok {
			procs = "GOMAXPROCS=" + v + " (env)"
		}
	}
	if srv.logContains("raised GOMAXPROCS to 2") {
		procs = "GOMAXPROCS 1→2 (ensureProcs)"
	}
	parts = append(parts, procs)
	if c.decodeOnly {
		parts = append(parts, "decode only, nothing stored")
	}
	for _, kv := range c.env {
		if kv == "MAILSLOT_GROUP_COMMIT=off" {
			parts = append(parts, "group commit off")
		}
	}
	return strings.Join(parts, ", ")
}
