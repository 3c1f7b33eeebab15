// Command mailslotbench starts a real `mailslot serve` on loopback and
// drives it with the project's own load generator (internal/loadgen): JSON
// and form sign-ups with group commit on and off, and the server held to
// one core with and without GOMAXPROCS=1. It prints accepted sign-ups/s,
// latency quantiles and the server's RSS, as medians over -rounds rounds;
// docs/BENCHMARKS.md records the figures and how to read them.
//
//	go run ./cmd/mailslotbench -bin bin/mailslot [-scenarios json,onecore] [-rounds 3] [-duration 10s]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/mailslot/mailslot/internal/loadgen"
)

func main() {
	if len(os.Args) == 2 && os.Args[1] == decodeOnlyArg {
		if err := serveDecodeOnly(); err != nil {
			fmt.Fprintln(os.Stderr, "mailslotbench decode-only server:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "mailslotbench:", err)
		os.Exit(1)
	}
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mailslotbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	e := &env{progress: stderr}
	var names string
	var rounds int
	var list, markdown bool
	fs.StringVar(&e.bin, "bin", "bin/mailslot", "the mailslot binary to benchmark (`make bench` builds it)")
	fs.StringVar(&names, "scenarios", "", "comma-separated scenarios to run (default: those marked * in -list)")
	fs.BoolVar(&list, "list", false, "list the scenarios and exit")
	fs.IntVar(&rounds, "rounds", 3, "rounds per scenario; the table shows medians (scenarios alternate within a round)")
	fs.DurationVar(&e.duration, "duration", 10*time.Second, "measured run per scenario and round")
	fs.DurationVar(&e.warmup, "warmup", 2*time.Second, "unmeasured load before each measured run")
	fs.DurationVar(&e.settle, "settle", time.Second, "pause after the server is ready, before the idle RSS reading")
	fs.IntVar(&e.workers, "workers", 96, "concurrent clients, each with one keep-alive connection")
	fs.StringVar(&e.dataRoot, "data-root", os.TempDir(), "where each server gets a fresh data directory")
	fs.Var((*listFlag)(&e.serverEnv), "env", "KEY=VALUE added to every server's environment (repeatable)")
	fs.BoolVar(&markdown, "markdown", false, "print the table as Markdown")
	client := fs.String("client", "loop", "load generator's client: loop (one epoll loop for every connection, the lightest), raw (pre-encoded HTTP/1.1, a goroutine per connection) or http (net/http)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if list {
		for _, sc := range scenarios {
			mark := " "
			if sc.Default {
				mark = "*"
			}
			fmt.Fprintf(stdout, "%s %-26s %s\n", mark, sc.Name, sc.About)
		}
		return nil
	}
	if rounds < 1 || e.workers < 1 || e.duration <= 0 {
		return errors.New("-rounds, -workers and -duration must be positive")
	}
	switch e.client = loadgen.Client(*client); e.client {
	case loadgen.ClientLoop, loadgen.ClientRaw, loadgen.ClientHTTP:
	default:
		return fmt.Errorf("-client %q: want loop, raw or http", *client)
	}
	chosen, err := choose(names)
	if err != nil {
		return err
	}
	if _, err := os.Stat(e.bin); err != nil {
		return fmt.Errorf("server binary: %w (build it with `make build` or `CGO_ENABLED=0 go build -o bin/mailslot ./cmd/mailslot`)", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	fmt.Fprintf(stderr, "mailslotbench: %s, %d workers (%s client), %s per run (+%s warm-up), %d rounds; load: %s\n",
		e.bin, e.workers, *client, e.duration, e.warmup, rounds, loadAverage())
	rows := make([]*row, len(chosen))
	for i, sc := range chosen {
		rows[i] = &row{sc: sc}
	}
	// Rounds alternate the scenarios, so that a burst of load from
	// elsewhere on the machine spreads over all of them instead of
	// sinking one.
	for round := 1; round <= rounds; round++ {
		for _, r := range rows {
			m, err := r.sc.Run(ctx, e)
			if err != nil {
				return fmt.Errorf("scenario %s, round %d: %w", r.sc.Name, round, err)
			}
			r.rounds = append(r.rounds, m)
			fmt.Fprintln(stderr, roundLine(r.sc.Name, round, m))
		}
	}
	fmt.Fprintf(stdout, "\nmedians of %d rounds, %d workers (%s client), %s each; load average after: %s\n\n",
		rounds, e.workers, *client, e.duration, loadAverage())
	printTable(stdout, rows, markdown)
	return nil
}

func choose(names string) ([]scenario, error) {
	if names == "" {
		var out []scenario
		for _, sc := range scenarios {
			if sc.Default {
				out = append(out, sc)
			}
		}
		return out, nil
	}
	var out []scenario
	for _, n := range strings.Split(names, ",") {
		n = strings.TrimSpace(n)
		found := false
		for _, sc := range scenarios {
			if sc.Name == n {
				out = append(out, sc)
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("unknown scenario %q (see -list)", n)
		}
	}
	return out, nil
}

// loadAverage is the machine's load average, to show how busy it was with
// other work: the benchmark shares its cores.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
