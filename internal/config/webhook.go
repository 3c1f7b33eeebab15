package config

import "time"

// Webhooks configures the delivery of outbound webhooks (sync/webhook):
// every edge with a DATABASE_URL runs a deliverer; subscriptions are
// managed with `mailslotctl webhooks`.
type Webhooks struct {
	// AllowPrivate (MAILSLOT_WEBHOOK_ALLOW_PRIVATE) lets deliveries reach
	// loopback, private and link-local addresses, so that development and
	// tests can deliver to a receiver on the same machine. Production
	// refuses it: with it, whoever can add a subscription can make the
	// edge POST to the cloud metadata service or to services on the
	// private network.
	AllowPrivate bool
	// AllowHTTP lets deliveries go to plain http receivers: development
	// only (production delivers over https alone).
	AllowHTTP bool
	// Concurrency (MAILSLOT_WEBHOOK_CONCURRENCY) bounds requests in flight
	// from this edge.
	Concurrency int
	// Timeout (MAILSLOT_WEBHOOK_TIMEOUT) bounds one request.
	Timeout time.Duration
	// PollInterval (MAILSLOT_WEBHOOK_POLL_INTERVAL) is how often an idle
	// deliverer looks for due deliveries; the sync wakes it after every
	// commit, so this only bounds how late a retry or another edge's
	// event starts.
	PollInterval time.Duration
}

// Webhook defaults.
const (
	defaultWebhookConcurrency  = 32
	defaultWebhookTimeout      = 10 * time.Second
	defaultWebhookPollInterval = time.Second
)

func (p *parser) webhooks(env string) Webhooks {
	w := Webhooks{
		AllowPrivate: p.bool("MAILSLOT_WEBHOOK_ALLOW_PRIVATE", false),
		AllowHTTP:    env == Development,
		Concurrency:  p.int("MAILSLOT_WEBHOOK_CONCURRENCY", defaultWebhookConcurrency),
		Timeout:      p.duration("MAILSLOT_WEBHOOK_TIMEOUT", defaultWebhookTimeout),
		PollInterval: p.duration("MAILSLOT_WEBHOOK_POLL_INTERVAL", defaultWebhookPollInterval),
	}
	if w.AllowPrivate && env == Production {
		p.fail("MAILSLOT_WEBHOOK_ALLOW_PRIVATE", "must be off in production: it lets webhook deliveries reach loopback, "+
			"private and link-local addresses (the cloud metadata service, the private network); it is for development and tests only")
	}
	if w.Concurrency < 1 || w.Concurrency > 256 {
		p.fail("MAILSLOT_WEBHOOK_CONCURRENCY", "must be between 1 and 256")
	}
	if w.Timeout < time.Second || w.Timeout > time.Minute {
		p.fail("MAILSLOT_WEBHOOK_TIMEOUT", "must be between 1s and 1m")
	}
	if w.PollInterval < 10*time.Millisecond || w.PollInterval > time.Minute {
		p.fail("MAILSLOT_WEBHOOK_POLL_INTERVAL", "must be between 10ms and 1m")
	}
	return w
}
