// Package node assembles one running edge: the outbox, the public and
// private HTTP listeners and the background workers, with an orderly start
// and stop. cmd/mailslot only reads the configuration and calls Run; tests
// start a real Node on :0 with a temporary data directory.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/mailslot/mailslot/edge"
	"github.com/mailslot/mailslot/edge/outbox"
	"github.com/mailslot/mailslot/internal/config"
	"github.com/mailslot/mailslot/internal/pii"
	"github.com/mailslot/mailslot/internal/token"
	"github.com/mailslot/mailslot/sync/drain"
	"github.com/mailslot/mailslot/sync/tombstone"
)

// Node is one edge process.
type Node struct {
	cfg    *config.Config
	log    *slog.Logger
	Outbox *outbox.Outbox
	Server *edge.Server
	// Sync is the drain worker, nil when DATABASE_URL is unset.
	Sync *drain.Worker

	pub, priv     *http.Server
	pubLn, privLn net.Listener
	workers       []Worker
}

// nodeStatus is what /v1/sync/status answers: the sync worker's fields at
// the top level, the tombstone puller's beside them.
type nodeStatus struct {
	drain.Status
	Tombstones tombstone.Status `json:"tombstones"`
}

// Worker is a background loop the node starts after its listeners and
// stops after they have drained (sync, tombstone pulls, pruning).
type Worker interface {
	Run(ctx context.Context) error
}

// Open opens the outbox and binds both listeners, so that a Node that
// opened is ready to serve and its addresses are known.
func Open(ctx context.Context, cfg *config.Config, log *slog.Logger) (*Node, error) {
	out, err := outbox.Open(ctx, outbox.Options{
		Dir:            cfg.DataDir,
		NodeID:         cfg.NodeID,
		GroupCommit:    cfg.GroupCommit,
		MaxBatch:       cfg.OutboxMaxBatch,
		MaxPendingRows: cfg.OutboxMaxRows,
		MaxBytes:       cfg.OutboxMaxBytes,
		MinFreeBytes:   cfg.DiskMinFree,
		Logger:         log,
	})
	if err != nil {
		return nil, err
	}
	tokens, err := token.ParseKeys(cfg.TokenKey)
	if err != nil {
		_ = out.Close()
		return nil, fmt.Errorf("MAILSLOT_TOKEN_KEY: %w", err)
	}
	n := &Node{cfg: cfg, log: log, Outbox: out}
	var status edge.StatusFunc
	if cfg.DatabaseURL != "" {
		w, err := drain.New(drain.Options{
			Outbox:      out,
			DatabaseURL: cfg.DatabaseURL,
			NodeID:      cfg.NodeID,
			Region:      cfg.Region,
			BatchSize:   cfg.SyncBatch,
			Interval:    cfg.SyncInterval,
			Retention:   cfg.SyncRetention,
			Logger:      log.With("worker", "sync"),
		})
		if err != nil {
			_ = out.Close()
			return nil, err
		}
		n.Sync = w
		n.AddWorker(w)
		puller, err := tombstone.New(tombstone.Options{
			Outbox:      out,
			DatabaseURL: cfg.DatabaseURL,
			Interval:    cfg.TombstoneInterval,
			Logger:      log.With("worker", "tombstones"),
		})
		if err != nil {
			_ = out.Close()
			return nil, err
		}
		n.AddWorker(puller)
		status = func(ctx context.Context) (any, error) {
			ds, err := w.Status(ctx)
			if err != nil {
				return nil, err
			}
			ts, err := puller.Status(ctx)
			if err != nil {
				return nil, err
			}
			return nodeStatus{Status: ds, Tombstones: ts}, nil
		}
	} else {
		log.Warn("DATABASE_URL is not set: this edge only buffers; nothing is synced")
	}
	n.Server = edge.New(edge.Options{
		Config:     cfg,
		Outbox:     out,
		Hasher:     pii.NewHasher([]byte(cfg.IPPepper)),
		Logger:     log,
		SyncStatus: status,
		Tokens:     tokens,
	})
	if n.pubLn, err = net.Listen("tcp", cfg.Addr); err != nil {
		_ = out.Close()
		return nil, fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	if n.privLn, err = net.Listen("tcp", cfg.PrivateAddr); err != nil {
		_ = n.pubLn.Close()
		_ = out.Close()
		return nil, fmt.Errorf("listen on private %s: %w", cfg.PrivateAddr, err)
	}
	n.pub = newHTTPServer(n.Server.Handler(), log)
	n.priv = newHTTPServer(n.Server.PrivateHandler(), log)
	return n, nil
}

func newHTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// AddWorker registers a background worker; call before Run.
func (n *Node) AddWorker(w Worker) { n.workers = append(n.workers, w) }

// Addr is the public listener's address.
func (n *Node) Addr() string { return n.pubLn.Addr().String() }

// PrivateAddr is the private listener's address.
func (n *Node) PrivateAddr() string { return n.privLn.Addr().String() }

// Run serves until ctx is cancelled, then stops in order: stop accepting and
// finish in-flight requests (each waits for its commit), stop the workers,
// then let the outbox writer commit what is queued and close the file.
func (n *Node) Run(ctx context.Context) error {
	errc := make(chan error, 2)
	for _, s := range []struct {
		srv *http.Server
		ln  net.Listener
	}{{n.pub, n.pubLn}, {n.priv, n.privLn}} {
		go func() {
			if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	wctx, stopWorkers := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{}, len(n.workers))
	for _, w := range n.workers {
		go func() {
			defer func() { done <- struct{}{} }()
			if err := w.Run(wctx); err != nil && !errors.Is(err, context.Canceled) {
				n.log.Error("worker stopped", "err", err)
			}
		}()
	}
	n.log.Info("edge serving", "public", n.Addr(), "private", n.PrivateAddr(), "group_commit", n.cfg.GroupCommit)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
		n.log.Error("listener failed", "err", runErr)
	}
	n.log.Info("edge stopping")
	sctx, cancel := context.WithTimeout(context.Background(), n.cfg.ShutdownTimeout)
	defer cancel()
	shutErr := errors.Join(n.pub.Shutdown(sctx), n.priv.Shutdown(sctx))
	stopWorkers()
	for range n.workers {
		select {
		case <-done:
		case <-sctx.Done():
		}
	}
	closeErr := n.Outbox.Close()
	n.log.Info("edge stopped", "last_seq", n.Outbox.LastSeq(), "pending", n.Outbox.PendingCount())
	return errors.Join(runErr, shutErr, closeErr)
}

// Close releases what Open took, for a Node that never ran.
func (n *Node) Close() error {
	return errors.Join(n.pubLn.Close(), n.privLn.Close(), n.Outbox.Close())
}
