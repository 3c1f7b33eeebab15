package edge

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailslot/mailslot/edge/admin"
	"github.com/mailslot/mailslot/internal/config"
	"github.com/mailslot/mailslot/internal/metrics"
	"github.com/mailslot/mailslot/internal/pgpool"
	"github.com/mailslot/mailslot/internal/safedial"
	"github.com/mailslot/mailslot/sync/webhook"
)

// webhookWorker runs the node's webhook deliverer on its own small pool,
// apart from the sync's, so that a slow receiver never holds a connection
// the sync needs; the pool closes when the deliverer stops.
type webhookWorker struct {
	d    *webhook.Deliverer
	pool *pgxpool.Pool
}

func (w webhookWorker) Run(ctx context.Context) error {
	defer w.pool.Close()
	return w.d.Run(ctx)
}

// openWebhooks prepares the deliverer (it connects on Run) and registers
// it as a worker and a metrics source. Every edge runs one: deliveries are
// leased in Postgres, so edges share the work.
func (n *Node) openWebhooks(cfg *config.Config, log *slog.Logger) error {
	// A claim round, its records and a 410's disable: a few connections
	// suffice whatever the concurrency, since requests hold none.
	pool, err := pgpool.Open(cfg.DatabaseURL, "mailslot-webhooks", 3, 30*time.Second)
	if err != nil {
		return err
	}
	wc := cfg.Webhooks
	d, err := webhook.NewDeliverer(webhook.Options{
		DB:    pool,
		Owner: cfg.NodeID,
		Client: safedial.New(safedial.Options{AllowPrivate: wc.AllowPrivate, AllowHTTP: wc.AllowHTTP,
			Timeout: wc.Timeout, MaxConnsPerHost: wc.Concurrency}),
		Timeout:      wc.Timeout,
		Concurrency:  wc.Concurrency,
		PollInterval: wc.PollInterval,
		Logger:       log.With("worker", "webhooks"),
	})
	if err != nil {
		pool.Close()
		return fmt.Errorf("webhook deliverer: %w", err)
	}
	n.Webhooks, n.webhookDB = d, pool
	n.AddWorker(webhookWorker{d: d, pool: pool})
	n.Metrics.AddSource(n.webhookSamples)
	return nil
}

// wakeWebhooks starts a delivery round now: the sync calls it after each
// commit, which may have written events.
func (n *Node) wakeWebhooks() {
	if n.Webhooks != nil {
		n.Webhooks.Wake()
	}
}

func (n *Node) webhookStatus(ctx context.Context) *admin.WebhookStatus {
	if n.Webhooks == nil {
		return nil
	}
	st := &admin.WebhookStatus{Deliverer: n.Webhooks.Status(), Subscriptions: []admin.SubscriptionDeliveries{}}
	subs, err := n.subscriptionDeliveries(ctx)
	if err != nil {
		n.log.Warn("read webhook status", "err", err)
		st.Error = "webhook deliveries could not be counted: Postgres did not answer"
		return st
	}
	st.Subscriptions = subs
	return st
}

func (n *Node) subscriptionDeliveries(ctx context.Context) ([]admin.SubscriptionDeliveries, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	subs, err := webhook.List(ctx, n.webhookDB)
	if err != nil {
		return nil, err
	}
	counts, err := webhook.DeliveryCounts(ctx, n.webhookDB)
	if err != nil {
		return nil, err
	}
	byID := make(map[uuid.UUID]webhook.Counts, len(counts))
	for _, c := range counts {
		byID[c.SubscriptionID] = c
	}
	out := make([]admin.SubscriptionDeliveries, 0, len(subs))
	for _, s := range subs {
		c := byID[s.ID]
		c.SubscriptionID = s.ID
		out = append(out, admin.SubscriptionDeliveries{ID: s.ID, Receiver: safedial.RedactString(s.URL), Disabled: s.DisabledAt != nil, Counts: c})
	}
	return out, nil
}

// webhookSamples reports the deliverer's counters and each subscription's
// deliveries by state, read from the same status /v1/sync/status shows.
func (n *Node) webhookSamples(ctx context.Context) ([]metrics.Sample, error) {
	ds := n.Webhooks.Status()
	out := []metrics.Sample{
		{Name: "webhook_delivered_total", Help: "Webhook deliveries this process made (2xx).", Value: float64(ds.Delivered), Counter: true},
		{Name: "webhook_failed_total", Help: "Webhook attempts that failed and will be retried.", Value: float64(ds.Failed), Counter: true},
		{Name: "webhook_dead_total", Help: "Webhook deliveries this process gave up on after the retry window.", Value: float64(ds.Dead), Counter: true},
		{Name: "webhook_subscriptions_gone_total", Help: "Subscriptions disabled because their receiver answered 410.", Value: float64(ds.Disabled), Counter: true},
		{Name: "webhook_in_flight", Help: "Webhook requests in flight from this process.", Value: float64(ds.InFlight)},
	}
	subs, err := n.subscriptionDeliveries(ctx)
	if err != nil {
		return out, nil // the counters above are this process's own; Postgres being away is sync_postgres_reachable's news
	}
	for _, s := range subs {
		id := s.ID.String()
		for _, v := range []struct {
			state string
			n     int64
		}{{"pending", s.Pending}, {"delivering", s.Delivering}, {"delivered", s.Delivered}, {"failing", s.Failing}, {"dead", s.Dead}, {"cancelled", s.Cancelled}} {
			out = append(out, metrics.Sample{Name: "webhook_deliveries", Help: "Webhook deliveries by subscription and state (fleet-wide, from Postgres).",
				Value: float64(v.n), Labels: map[string]string{"subscription": id, "state": v.state}})
		}
		age := 0.0
		if s.OldestPending != nil {
			age = time.Since(*s.OldestPending).Seconds()
		}
		out = append(out, metrics.Sample{Name: "webhook_oldest_pending_seconds", Help: "Age of the oldest undelivered delivery of a subscription.",
			Value: age, Labels: map[string]string{"subscription": id}})
	}
	return out, nil
}
