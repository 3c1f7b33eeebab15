// Command mailslot is the edge node. `mailslot serve` runs the HTTP
// listeners, the SQLite outbox and the background workers in one process;
// it is the only binary in the production image and never runs Postgres DDL.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/mailslot/mailslot/edge"
	"github.com/mailslot/mailslot/internal/config"
	"github.com/mailslot/mailslot/internal/logging"
	"github.com/mailslot/mailslot/web"
)

// version is stamped at build time with -ldflags "-X main.version=…".
var version = "dev"

const usage = `usage: mailslot <command>

commands:
  serve        run the edge node (configuration from MAILSLOT_* variables)
  healthcheck  exit 0 when the local edge answers /healthz (for container checks)
  site         serve the example marketing site (MAILSLOT_SITE_ADDR, default :8081)
  version      print the version
`

func main() {
	if err := run(os.Args[1:], os.Getenv, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "mailslot:", err)
		os.Exit(1)
	}
}

func run(args []string, getenv func(string) string, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	switch args[0] {
	case "serve":
		return serve(getenv, stderr)
	case "healthcheck":
		return healthcheck(getenv)
	case "site":
		return site(getenv)
	case "version":
		fmt.Println(version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stderr, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}

func serve(getenv func(string) string, stderr io.Writer) error {
	cfg, err := config.Load(getenv)
	if err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	level := slog.LevelInfo
	if err := level.UnmarshalText([]byte(strings.TrimSpace(getenv("MAILSLOT_LOG_LEVEL")))); err != nil {
		level = slog.LevelInfo
	}
	log := logging.New(stderr, level).With("node_id", cfg.NodeID, "region", cfg.Region)
	filled, err := cfg.EnsureDevSecrets()
	if err != nil {
		return err
	}
	for _, name := range filled {
		log.Warn("DEVELOPMENT MODE: generated a secret that production must set; never use this data dir in production",
			"variable", name, "stored_in", config.DevSecretsFile)
	}
	ensureProcs(getenv, log)
	tuneGC(getenv, log)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	n, err := edge.Open(ctx, cfg, log)
	if err != nil {
		return err
	}
	go func() {
		// A second signal while stopping means "now".
		<-ctx.Done()
		stop()
		again := make(chan os.Signal, 1)
		signal.Notify(again, syscall.SIGINT, syscall.SIGTERM)
		<-again
		log.Warn("second signal: exiting without a clean stop")
		os.Exit(1)
	}()
	return n.Run(ctx)
}

// ensureProcs gives the runtime at least two Ps. On a one-vCPU machine Go
// picks GOMAXPROCS=1, and then the outbox writer's fsync (an ordinary
// syscall inside SQLite's COMMIT) keeps the only P for as long as the disk
// takes. Only sysmon can retake a P from a syscall, and only after seeing
// the same syscall on two consecutive wake-ups; it wakes every 20µs at
// first but doubles the interval after ~1ms without a retake, up to 10ms.
// fsyncs shorter than the interval are never retaken, so the interval
// stays at 10ms: on one core with Go 1.26, 510 of 518 fsyncs kept the P.
// While the P sits in fsync no handler runs and nobody polls the network,
// so nothing queues up behind the commit; the writer, woken first by the
// one handler that did submit, commits batches of about two. Group commit
// degenerates to one fsync per request: an eighth to a third of the
// throughput, p99 in the hundreds of ms. (A runtime patched not to back
// off recovers GOMAXPROCS=1 to the two-P figures, which pins the cause.)
// A second P keeps handlers and the netpoller running while the writer
// waits in fsync, so batches grow again; the kernel still time-slices one
// core. docs/BENCHMARKS.md, "One core", has the measurements. An explicit
// GOMAXPROCS is left alone, so GOMAXPROCS=1 brings the collapse back.
func ensureProcs(getenv func(string) string, log *slog.Logger) {
	if getenv("GOMAXPROCS") != "" || runtime.GOMAXPROCS(0) >= 2 {
		return
	}
	runtime.GOMAXPROCS(2)
	log.Info("raised GOMAXPROCS to 2 so that fsync cannot stall request handling", "cpus", runtime.NumCPU())
}

// tuneGC trades memory the edge does not need for CPU it does: with GOGC
// at 400 the collector runs a quarter as often while the heap is far below
// GOMEMLIMIT (about 15% less CPU per request in make bench). The limit —
// 80MiB in the image, so that the whole resident set stays within 128 MiB
// — caps the heap: under load the heap grows to it and the runtime
// collects there, as often as the live heap requires, so GOGC=400 costs no
// memory beyond the limit (docs/ARCHITECTURE.md, "Memory"). An explicit
// GOGC, or running without a memory limit, keeps Go's default.
func tuneGC(getenv func(string) string, log *slog.Logger) {
	if getenv("GOGC") != "" || getenv("GOMEMLIMIT") == "" {
		return
	}
	debug.SetGCPercent(400)
	log.Info("GOGC set to 400 under GOMEMLIMIT", "gomemlimit", getenv("GOMEMLIMIT"))
}

// healthcheck lets a distroless image check itself without curl.
func healthcheck(getenv func(string) string) error {
	addr := getenv("MAILSLOT_ADDR")
	if addr == "" {
		addr = ":8080"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("MAILSLOT_ADDR %q: %w", addr, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	client := &http.Client{Timeout: 3 * time.Second}
	resp, err := client.Get("http://" + net.JoinHostPort(host, port) + "/healthz")
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: status %d", resp.StatusCode)
	}
	return nil
}

// site serves the example marketing site beside a local edge, for
// `make run` and for trying the client script.
func site(getenv func(string) string) error {
	addr := getenv("MAILSLOT_SITE_ADDR")
	if addr == "" {
		addr = "127.0.0.1:8081"
	}
	edgeURL := getenv("MAILSLOT_SITE_EDGE_URL")
	if edgeURL == "" {
		edgeURL = "http://127.0.0.1:8080"
	}
	fmt.Fprintf(os.Stderr, "example site on http://%s (edge %s)\n", addr, edgeURL)
	srv := &http.Server{Addr: addr, Handler: web.ExampleSite(edgeURL), ReadHeaderTimeout: 5 * time.Second}
	return srv.ListenAndServe()
}
