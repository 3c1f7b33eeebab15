// Package edge assembles one running edge: the outbox, the public and
// private HTTP listeners and the background workers, with an orderly start
// and stop. cmd/mailslot only reads the configuration and calls Run; tests
// start a real Node on :0 with a temporary data directory.
package edge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailslot/mailslot/edge/admin"
	"github.com/mailslot/mailslot/edge/api"
	"github.com/mailslot/mailslot/edge/replica"
	"github.com/mailslot/mailslot/internal/challenge/policy"
	"github.com/mailslot/mailslot/internal/config"
	"github.com/mailslot/mailslot/internal/metrics"
	"github.com/mailslot/mailslot/internal/pii"
	"github.com/mailslot/mailslot/internal/token"
	"github.com/mailslot/mailslot/outbox"
	"github.com/mailslot/mailslot/sync/challenges"
	"github.com/mailslot/mailslot/sync/drain"
	"github.com/mailslot/mailslot/sync/erasure"
	"github.com/mailslot/mailslot/sync/images"
	"github.com/mailslot/mailslot/sync/mailer"
	"github.com/mailslot/mailslot/sync/rollups"
	"github.com/mailslot/mailslot/sync/webhook"
)

// Node is one edge process.
type Node struct {
	cfg    *config.Config
	log    *slog.Logger
	Outbox *outbox.Outbox
	Server *api.Server
	// Metrics is served on the private listener at /metrics.
	Metrics *metrics.Metrics
	// Sync is the drain worker, nil when DATABASE_URL is unset.
	Sync *drain.Worker
	// Tombstones pulls erasures, nil when DATABASE_URL is unset.
	Tombstones *erasure.Puller
	// Rollups keeps the report rollups current, nil when DATABASE_URL is
	// unset.
	Rollups *rollups.Refresher
	// Images dispatches image-description jobs, nil when DATABASE_URL is
	// unset or MAILSLOT_IMAGE_PROVIDER is off.
	Images *images.Dispatcher
	// Mail sends confirmation and welcome mail, nil without a transport.
	Mail *mailer.Dispatcher
	// Replica ships the outbox to its Litestream replica, nil when
	// MAILSLOT_REPLICA_URL is unset.
	Replica *replica.Replicator
	// Webhooks delivers outbound webhooks, nil when DATABASE_URL is unset.
	Webhooks  *webhook.Deliverer
	webhookDB *pgxpool.Pool
	// Challenges enforces each property's bot challenge (challenge.go).
	Challenges      *policy.Policy
	challengePuller *challenges.Puller

	pub, priv     *http.Server
	pubLn, privLn net.Listener
	workers       []Worker
	releases      []func() error
	now           func() time.Time
}

// Worker is a background loop the node starts after its listeners and
// stops after they have drained (sync, tombstone pulls, pruning).
type Worker interface {
	Run(ctx context.Context) error
}

// Open opens the outbox and binds both listeners, so that a Node that
// opened is ready to serve and its addresses are known. When the outbox
// file is missing and the node has a replica, Open restores it first; a new
// outbox file (restored or empty) continues the node's sequence past
// everything Postgres may already hold for it (see raiseHighWater).
func Open(ctx context.Context, cfg *config.Config, log *slog.Logger) (_ *Node, err error) {
	fresh, restored, err := prepareOutbox(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	// Checkpoints in the background, except where Litestream runs them: it
	// keeps a read transaction open so that no frame is checkpointed before
	// it has been shipped.
	var checkpointEvery time.Duration
	if cfg.ReplicaURL == "" {
		checkpointEvery = 25 * time.Millisecond
	}
	out, err := outbox.Open(ctx, outbox.Options{
		Dir:             cfg.DataDir,
		NodeID:          cfg.NodeID,
		GroupCommit:     cfg.GroupCommit,
		MaxBatch:        cfg.OutboxMaxBatch,
		MaxPendingRows:  cfg.OutboxMaxRows,
		MaxBytes:        cfg.OutboxMaxBytes,
		MinFreeBytes:    cfg.DiskMinFree,
		CheckpointEvery: checkpointEvery,
		Logger:          log,
	})
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: log, Outbox: out, Metrics: metrics.New(log), now: time.Now}
	// One cleanup path: whatever Open has opened when it fails is closed
	// here, in reverse order; Close and Run release the same list.
	defer func() {
		if err != nil {
			_ = errors.Join(n.release(), out.Close())
		}
	}()
	tokens, err := token.ParseKeys(cfg.TokenKey)
	if err != nil {
		return nil, fmt.Errorf("MAILSLOT_TOKEN_KEY: %w", err)
	}
	if fresh {
		if err := raiseHighWater(ctx, cfg, log, out, restored); err != nil {
			return nil, err
		}
	}
	n.Metrics.AddSource(n.outboxSamples)
	if cfg.ReplicaURL != "" {
		if n.Replica, err = newReplicator(cfg, log, out); err != nil {
			return nil, err
		}
		n.Metrics.AddSource(replicaSamples(n.Replica))
		// Litestream holds a read transaction, so the WAL can be truncated
		// after an erasure only through it.
		out.SetErasureCheckpoint(n.Replica.CheckpointTruncate)
	}
	if n.Challenges, n.challengePuller, err = openChallenges(cfg, log); err != nil {
		_ = out.Close()
		return nil, err
	}
	if n.challengePuller != nil {
		puller := n.challengePuller
		n.onRelease(func() error { puller.Close(); return nil })
		n.AddWorker(n.challengePuller)
	}
	n.Metrics.AddSource(n.challengeSamples)
	var imageJobs api.ImageJobs
	var feedback api.MailFeedback
	if cfg.DatabaseURL != "" {
		if err := n.openSync(cfg, log); err != nil {
			return nil, err
		}
		// The image API's own small pool: operators' and webhooks' requests
		// never wait behind the dispatcher's.
		pool, err := images.OpenPool(cfg.DatabaseURL, 2)
		if err != nil {
			return nil, err
		}
		n.onRelease(func() error { pool.Close(); return nil })
		imageJobs = images.NewJobs(pool, cfg.Images)
		feedback = mailFeedback{databaseURL: cfg.DatabaseURL}
		if err := n.openWebhooks(cfg, log); err != nil {
			return nil, err
		}
		n.onRelease(func() error { n.webhookDB.Close(); return nil })
	} else {
		log.Warn("DATABASE_URL is not set: this edge only buffers; nothing is synced")
	}
	// Image descriptions (sync/images): jobs are leased in Postgres, so
	// every edge may run a dispatcher.
	if cfg.DatabaseURL != "" && cfg.Images.Provider != config.ImageProviderOff {
		if n.Images, err = images.FromConfig(cfg, log.With("worker", "images")); err != nil {
			return nil, err
		}
		n.onRelease(func() error { n.Images.Close(); return nil })
		n.AddWorker(n.Images)
		n.Metrics.AddSource(imageSamples(n.Images))
	}
	if err := n.openMail(cfg, tokens, log); err != nil {
		_ = out.Close()
		return nil, err
	}
	n.Server = api.New(api.Options{
		Settings:     api.SettingsFrom(cfg),
		Outbox:       out,
		Hasher:       pii.NewHasher([]byte(cfg.IPPepper)),
		Logger:       log,
		SyncStatus:   func(ctx context.Context) (any, error) { return n.SyncStatus(ctx) },
		Tokens:       tokens,
		Metrics:      n.Metrics,
		Images:       imageJobs,
		MailFeedback: feedback,
		Challenges:   n.Challenges,
	})
	if rc := n.Server.Rechecker(); rc != nil {
		n.AddWorker(rc)
	}
	if n.pubLn, err = net.Listen("tcp", cfg.Addr); err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	n.onRelease(n.pubLn.Close)
	if n.privLn, err = net.Listen("tcp", cfg.PrivateAddr); err != nil {
		return nil, fmt.Errorf("listen on private %s: %w", cfg.PrivateAddr, err)
	}
	n.onRelease(n.privLn.Close)
	n.pub = newHTTPServer(n.Server.Handler(), log)
	n.priv = newHTTPServer(n.Server.PrivateHandler(), log)
	return n, nil
}

// openSync prepares the drain worker and the tombstone puller; their pools
// connect only when the workers first need them.
func (n *Node) openSync(cfg *config.Config, log *slog.Logger) error {
	w, err := drain.New(drain.Options{
		Outbox:          n.Outbox,
		DatabaseURL:     cfg.DatabaseURL,
		NodeID:          cfg.NodeID,
		Region:          cfg.Region,
		BatchSize:       cfg.SyncBatch,
		Parallel:        cfg.SyncParallel,
		Interval:        cfg.SyncInterval,
		Retention:       cfg.SyncRetention,
		ImageAttempts:   cfg.Images.MaxAttempts,
		ImageDailyQuota: cfg.Images.DailyQuota,
		OnCommit:        n.wakeWebhooks,
		Logger:          log.With("worker", "sync"),
	})
	if err != nil {
		return err
	}
	n.onRelease(func() error { w.Close(); return nil })
	n.Sync = w
	n.AddWorker(w)
	puller, err := erasure.New(erasure.Options{
		Outbox:      n.Outbox,
		DatabaseURL: cfg.DatabaseURL,
		Interval:    cfg.TombstoneInterval,
		Logger:      log.With("worker", "tombstones"),
	})
	if err != nil {
		return err
	}
	n.onRelease(func() error { puller.Close(); return nil })
	n.Tombstones = puller
	n.AddWorker(puller)
	refresher, err := rollups.New(rollups.Options{
		DatabaseURL: cfg.DatabaseURL,
		Interval:    cfg.ReportRefreshInterval,
		Logger:      log.With("worker", "reports"),
	})
	if err != nil {
		return err
	}
	n.onRelease(func() error { refresher.Close(); return nil })
	n.Rollups = refresher
	n.AddWorker(refresher)
	n.Metrics.AddSource(syncSamples(w, puller))
	return nil
}

// onRelease registers something Open opened, for release to close.
func (n *Node) onRelease(f func() error) { n.releases = append(n.releases, f) }

// release closes, in reverse order, what Open opened besides the outbox:
// the listeners and the workers' and the image API's pools. Closing again
// is harmless; each is closed once.
func (n *Node) release() error {
	var errs []error
	for i := len(n.releases) - 1; i >= 0; i-- {
		if err := n.releases[i](); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	n.releases = nil
	return errors.Join(errs...)
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
// let the outbox writer commit what is queued and close the file, and last
// flush the replica, so that it holds every acknowledged row.
func (n *Node) Run(ctx context.Context) error {
	if n.Replica != nil {
		n.Replica.Start()
	}
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
	stopped := 0
	for range n.workers {
		select {
		case <-done:
			stopped++
		case <-sctx.Done():
		}
	}
	// The workers have stopped: their pools go now, with the image API's.
	// A worker still running past the stop budget keeps its pool (closing
	// it would wait for that worker's connections).
	if stopped == len(n.workers) {
		_ = n.release()
	}
	closeErr := n.Outbox.Close()
	flushErr := n.flushReplica(sctx)
	n.log.Info("edge stopped", "last_seq", n.Outbox.LastSeq(), "pending", n.Outbox.PendingCount())
	return errors.Join(runErr, shutErr, closeErr, flushErr)
}

// Close releases what Open took, for a Node that never ran.
func (n *Node) Close() error {
	closeErr := errors.Join(n.release(), n.Outbox.Close())
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.ShutdownTimeout)
	defer cancel()
	return errors.Join(closeErr, n.flushReplica(ctx))
}

// flushReplica ships the last commits to the replica after the outbox
// writer has closed. It gets what is left of the stop budget, and at least
// a few seconds: on SIGTERM this is what makes the replica whole.
func (n *Node) flushReplica(ctx context.Context) error {
	if n.Replica == nil {
		return nil
	}
	if dl, ok := ctx.Deadline(); !ok || time.Until(dl) < 3*time.Second {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
		defer cancel()
	}
	if err := n.Replica.Close(ctx); err != nil {
		return fmt.Errorf("flush replica: %w", err)
	}
	return nil
}

// SyncStatus is what GET /v1/sync/status answers, for every kind of node:
// the one place that status is put together.
func (n *Node) SyncStatus(ctx context.Context) (admin.SyncStatus, error) {
	st := admin.SyncStatus{Replica: n.replicaStatus(ctx), Images: n.imageStatus(ctx), Mail: n.mailStatus(ctx), Webhooks: n.webhookStatus(ctx), Challenge: n.challengeStatus()}
	if n.Sync == nil {
		d, err := admin.Disabled(ctx, n.Outbox, n.cfg.NodeID, n.cfg.Region, n.now())
		if err != nil {
			return admin.SyncStatus{}, err
		}
		st.Status, st.Sync = d.Status, d.Sync
		return st, nil
	}
	var err error
	if st.Status, err = n.Sync.Status(ctx); err != nil {
		return admin.SyncStatus{}, err
	}
	ts, err := n.Tombstones.Status(ctx)
	if err != nil {
		return admin.SyncStatus{}, err
	}
	st.Tombstones = &ts
	rs := n.Rollups.Status()
	st.Reports = &rs
	return st, nil
}

func (n *Node) replicaStatus(ctx context.Context) *replica.Status {
	if n.Replica == nil {
		return nil
	}
	st := n.Replica.Status(ctx)
	return &st
}

// replicaSamples reports where replication stands, read from the same
// status /v1/sync/status shows.
func replicaSamples(r *replica.Replicator) metrics.Source {
	return func(ctx context.Context) ([]metrics.Sample, error) {
		st := r.Status(ctx)
		failing, sinceSync := 0.0, 0.0
		if st.State == replica.StateFailing {
			failing = 1
		}
		if st.LastSyncAt != nil {
			sinceSync = time.Since(*st.LastSyncAt).Seconds()
		}
		return []metrics.Sample{
			{Name: "replica_lag_seconds", Help: "Age of the oldest committed row not yet known to be in the Litestream replica.", Value: st.LagSeconds},
			{Name: "replica_replicated_seq", Help: "Highest outbox sequence known to be in the replica.", Value: float64(st.ReplicatedSeq)},
			{Name: "replica_txid", Help: "Litestream transaction id of the replica's position.", Value: float64(st.TXID)},
			{Name: "replica_last_success_age_seconds", Help: "Time since the last successful replication round (0 before the first).", Value: sinceSync},
			{Name: "replica_failing", Help: "1 when the last replication round failed.", Value: failing},
		}, nil
	}
}

// replicaBase is MAILSLOT_REPLICA_URL with the S3 endpoint and region
// merged in where Litestream reads them.
func replicaBase(cfg *config.Config) (string, error) {
	return replica.WithEndpoint(cfg.ReplicaURL, cfg.ReplicaEndpoint, cfg.ReplicaRegion)
}

func newReplicator(cfg *config.Config, log *slog.Logger, out *outbox.Outbox) (*replica.Replicator, error) {
	base, err := replicaBase(cfg)
	if err != nil {
		return nil, fmt.Errorf("MAILSLOT_REPLICA_URL: %w", err)
	}
	return replica.New(replica.Options{
		BaseURL:      base,
		NodeID:       cfg.NodeID,
		SyncInterval: cfg.ReplicaSyncInterval,
		Retention:    cfg.ReplicaRetention,
		Logger:       log.With("worker", "replica"),
	}, out)
}

// prepareOutbox runs before the outbox opens. It reports whether the
// outbox file is new, and restores it from the node's replica when the file
// is missing and a replica exists. When the replica cannot be asked, the
// edge refuses to start: an empty outbox would shadow the replica's rows,
// since Litestream would take the new file for the latest state.
func prepareOutbox(ctx context.Context, cfg *config.Config, log *slog.Logger) (fresh, restored bool, err error) {
	path := filepath.Join(cfg.DataDir, outbox.FileName)
	if _, err := os.Stat(path); err == nil {
		return false, false, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return false, false, fmt.Errorf("open outbox %s: %w", path, err)
	}
	if cfg.ReplicaURL == "" {
		return true, false, nil
	}
	base, err := replicaBase(cfg)
	if err != nil {
		return false, false, fmt.Errorf("MAILSLOT_REPLICA_URL: %w", err)
	}
	if err := replica.RemoveLocalState(path); err != nil {
		return false, false, fmt.Errorf("clear state left by a previous outbox: %w", err)
	}
	start := time.Now()
	res, err := replica.Restore(ctx, base, cfg.NodeID, path)
	switch {
	case errors.Is(err, replica.ErrNotFound):
		log.Info("no outbox and no replica for this node: starting a new outbox", "replica", res.Replica)
		return true, false, nil
	case err != nil:
		return false, false, fmt.Errorf("the outbox is missing and its replica could not be restored: %w "+
			"(fix access to the replica store and restart; to give up the replica, run mailslotctl recover --node %s "+
			"and then remove the node's replica)", err, cfg.NodeID)
	}
	log.Warn("outbox was missing: restored it from the replica before accepting",
		"replica", res.Replica, "txid", res.TXID, "duration_ms", time.Since(start).Milliseconds())
	return true, true, nil
}

// raiseHighWater makes a new outbox file continue the node's sequence.
// A replica can lag the outbox it copies, and an outbox can be lost
// outright, so rows past the restored (or empty) file's last seq may
// already be in Postgres under (node_id, seq); reusing one of those seqs
// would make the ledger take a new row for a replay of the old one and drop
// it. So the next seq goes past the highest seq Postgres holds for this
// node (mailslot.nodes.last_seq and the ledger).
//
// When Postgres cannot be asked, the edge still starts and accepts
// (invariant 1) and the sequence jumps to a clock-derived floor instead:
// unix milliseconds × 1000. Every seq this node ever assigned is below it
// as long as the node never assigned more than 1000 seqs per millisecond
// (one million rows a second, far past what an edge writes) since its
// previous jump, which was itself below the clock of its time. A brand-new
// file with no DATABASE_URL needs nothing: no Postgres is known to hold
// this node's rows.
func raiseHighWater(ctx context.Context, cfg *config.Config, log *slog.Logger, out *outbox.Outbox, restored bool) error {
	var floor int64
	var reason string
	switch {
	case cfg.DatabaseURL != "":
		hw, err := postgresHighWater(ctx, cfg.DatabaseURL, cfg.NodeID)
		if err == nil {
			floor, reason = hw, "postgres high-water mark"
			break
		}
		floor, reason = ClockFloor(time.Now()), "clock floor: Postgres unreachable at start"
		log.Warn("new outbox and Postgres unreachable: continuing the sequence from a clock-derived floor", "err", err)
	case restored:
		floor, reason = ClockFloor(time.Now()), "clock floor: DATABASE_URL not set"
	default:
		return nil
	}
	if restored {
		reason += " after restore"
	}
	before := out.LastSeq()
	raised, err := out.RaiseSeq(ctx, floor, reason)
	if err != nil {
		return fmt.Errorf("continue the sequence of a new outbox: %w", err)
	}
	if raised {
		log.Warn("sequence continues past what Postgres may hold", "from_seq", before, "next_seq", floor+1, "reason", reason)
	}
	return nil
}

// ClockFloor is the clock-derived sequence floor raiseHighWater uses when
// Postgres cannot be asked.
func ClockFloor(now time.Time) int64 { return now.UnixMilli() * 1000 }

// postgresHighWater connects to Postgres to ask the ledger for the highest
// seq it holds for nodeID (drain.HighWater).
func postgresHighWater(ctx context.Context, dbURL, nodeID string) (int64, error) {
	pcfg, err := pgx.ParseConfig(dbURL)
	if err != nil {
		return 0, errors.New("DATABASE_URL is not a valid PostgreSQL URL")
	}
	pcfg.ConnectTimeout = 5 * time.Second
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, pcfg)
	if err != nil {
		return 0, fmt.Errorf("connect to Postgres: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return drain.HighWater(ctx, conn, nodeID)
}
