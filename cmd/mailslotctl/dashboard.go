package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailslot/mailslot/internal/dashboard"
	"github.com/mailslot/mailslot/internal/hostguard"
)

func runDashboard(ctx context.Context, e env, args []string) error {
	fs := newFlags(e, "dashboard", "dashboard [--listen 127.0.0.1:8090] [--allow-host NAME,…] [--database-url URL]")
	dbFlag := fs.String("database-url", "", "Postgres URL; a member of mailslot_reporting is enough (default $DATABASE_URL)")
	listen := fs.String("listen", "127.0.0.1:8090", "loopback address to serve on (reach it from elsewhere through ssh -L or fly proxy)")
	allow := fs.String("allow-host", "", "more Host names to accept besides IP literals, localhost and *.internal (comma-separated)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	host, _, err := net.SplitHostPort(*listen)
	if err != nil {
		return fmt.Errorf("%w: --listen %q: want host:port", errUsage, *listen)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("%w: --listen %q: the dashboard has no login, so it listens on loopback only; reach it through ssh -L or fly proxy", errUsage, *listen)
	}
	var extra []string
	for _, h := range strings.Split(*allow, ",") {
		if h = strings.TrimSpace(h); h != "" {
			extra = append(extra, h)
		}
	}
	dbURL, err := databaseURL(e, *dbFlag)
	if err != nil {
		return err
	}
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return fmt.Errorf("%w: the database URL is not a valid PostgreSQL URL", errUsage)
	}
	cfg.MaxConns = 4
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("open Postgres: %w", err)
	}
	defer pool.Close()
	if err := pool.Ping(ctx); err != nil {
		return fmt.Errorf("connect to Postgres at %s:%d: %w (is it running? in production, is `fly proxy` open?)", cfg.ConnConfig.Host, cfg.ConnConfig.Port, err)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *listen, err)
	}
	log := slog.New(slog.NewTextHandler(e.stderr, nil))
	srv := &http.Server{
		Handler:           hostguard.New(extra...).Wrap(&dashboard.Handler{DB: pool, Log: log}),
		ReadHeaderTimeout: 10 * time.Second,
		WriteTimeout:      60 * time.Second,
	}
	fmt.Fprintf(e.stdout, "dashboard on http://%s/ (Ctrl-C stops it)\n", ln.Addr())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("serve the dashboard: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("stop the dashboard: %w", err)
	}
	return nil
}
