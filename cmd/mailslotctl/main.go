// Command mailslotctl is the operator CLI: it migrates the canonical
// Postgres and shows, proves and repairs the state of every edge. It runs
// from a laptop or CI (through `fly proxy` in production), never inside the
// edge image.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/mailslot/mailslot/internal/config"
)

const usage = `usage: mailslotctl <command> [flags]

commands:
  migrate   apply Postgres migrations (--status to only show them)
  status    every node's sync state, from Postgres and each reachable edge
  reconcile compare each edge's outbox with Postgres; --fix replays what is missing
  recover   restore a lost edge's outbox from its replica and sync what Postgres lacks
  erase     erase an address everywhere (PIPEDA deletion request)
  export    everything held about an address, from Postgres and the edges (access request)
  links     mint confirm, unsubscribe and erasure links for an address
  consent   consent lapsed: leads whose implied consent has expired (CASL)
  erasures  erasures still inside the replica history window
  purge-events  delete telemetry older than a retention period (logged)
  report    campaigns, pages, funnel, consent, images: table, CSV or JSON
  leads     leads export: stream the leads a marketer may mail (recorded)
  dashboard serve the marketing dashboard on a loopback port
  images    image-description jobs: list, status, submit, retry, cancel
  mail      confirmation and welcome mail jobs: list, status, retry, cancel
  properties  per-property mail settings and templates: set, show, list
  webhooks  outbound webhook subscriptions: add, list, remove, rotate, redeliver
  challenge bot challenge per property: set, show, clear
  version   print the version

Run "mailslotctl <command> -h" for a command's flags.
Postgres comes from --database-url or DATABASE_URL.
`

// version is stamped at build time with -ldflags "-X main.version=…".
var version = "dev"

// errUsage marks errors that are the caller's fault; they exit 2.
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, errUsage), errors.Is(err, flag.ErrHelp):
		if err != errUsage && !errors.Is(err, flag.ErrHelp) { // say what was wrong, unless usage was printed
			fmt.Fprintln(os.Stderr, "mailslotctl:", err)
		}
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "mailslotctl:", err)
		var ex exitError
		if errors.As(err, &ex) {
			os.Exit(ex.code)
		}
		os.Exit(1)
	}
}

// exitError carries a specific exit status (reconcile uses it).
type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string { return e.msg }

// env is what every command gets.
type env struct {
	getenv func(string) string
	stdout io.Writer
	stderr io.Writer
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	e := env{getenv: getenv, stdout: stdout, stderr: stderr}
	switch args[0] {
	case "migrate":
		return runMigrate(ctx, e, args[1:])
	case "status":
		return runStatus(ctx, e, args[1:])
	case "images":
		return runImages(ctx, e, args[1:])
	case "mail":
		return runMail(ctx, e, args[1:])
	case "properties":
		return runProperties(ctx, e, args[1:])
	case "webhooks":
		return runWebhooks(ctx, e, args[1:])
	case "reconcile":
		return runReconcile(ctx, e, args[1:])
	case "recover":
		return runRecover(ctx, e, args[1:])
	case "erase":
		return runErase(ctx, e, args[1:])
	case "export":
		return runExport(ctx, e, args[1:])
	case "links":
		return runLinks(ctx, e, args[1:])
	case "consent":
		return runConsent(ctx, e, args[1:])
	case "erasures":
		return runErasures(ctx, e, args[1:])
	case "purge-events":
		return runPurgeEvents(ctx, e, args[1:])
	case "challenge":
		return runChallenge(ctx, e, args[1:])
	case "report":
		return runReport(ctx, e, args[1:])
	case "leads":
		return runLeads(ctx, e, args[1:])
	case "dashboard":
		return runDashboard(ctx, e, args[1:])
	case "version":
		fmt.Fprintln(stdout, version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("%w: unknown command %q", errUsage, args[0])
}

// newFlags returns a flag set that prints its errors to stderr.
func newFlags(e env, name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "usage: mailslotctl %s\n\nflags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// loadConfig reads the fleet's settings as the edge reads them
// (internal/config): the same defaults, and a value the edge would refuse
// is refused here with the same message.
func loadConfig(e env) (*config.Config, error) {
	cfg, err := config.Load(e.getenv)
	if err != nil {
		return nil, fmt.Errorf("%w: configuration:\n%w", errUsage, err)
	}
	return cfg, nil
}

// databaseURL takes the flag, else DATABASE_URL, and explains the fix when
// neither is there.
func databaseURL(e env, flagVal string) (string, error) {
	if flagVal != "" {
		return flagVal, nil
	}
	if v := e.getenv("DATABASE_URL"); v != "" {
		return v, nil
	}
	return "", fmt.Errorf("%w: no database: pass --database-url or set DATABASE_URL (in production: fly proxy 15432:5432 -a <pg-app>, then postgres://…@127.0.0.1:15432/…)", errUsage)
}
