package webhook

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/mailslot/mailslot/internal/pgrows"
	"github.com/mailslot/mailslot/internal/safedial"
	"github.com/mailslot/mailslot/internal/stdwebhook"
)

// ErrNotFound means no subscription has the id given.
var ErrNotFound = errors.New("webhook subscription not found")

// DB is what the subscription functions and the deliverer need: a pool, a
// connection or a transaction.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// DefaultOverlap is how long a rotated-out secret keeps signing beside the
// new one: a day for the receiver's operator to deploy the new secret.
const DefaultOverlap = 24 * time.Hour

// NewSubscription is what `mailslotctl webhooks add` asks for.
type NewSubscription struct {
	URL    string
	Events []Type
	// Property limits the subscription to one property; "" means all.
	Property string
	// Policy checks the URL (safedial.CheckURL): production requires
	// https and public addresses.
	Policy safedial.Policy
}

// Subscription is a stored subscription, without its secrets.
type Subscription struct {
	ID                uuid.UUID  `json:"id"`
	URL               string     `json:"url"` // as given; show it with safedial.RedactString
	Events            []Type     `json:"events"`
	Property          string     `json:"property,omitempty"`
	CreatedAt         time.Time  `json:"created_at"`
	RotatedAt         *time.Time `json:"rotated_at,omitempty"`
	PreviousExpiresAt *time.Time `json:"previous_secret_expires_at,omitempty"`
	DisabledAt        *time.Time `json:"disabled_at,omitempty"`
	DisabledReason    string     `json:"disabled_reason,omitempty"`
}

// Created is the answer to Add: the id and the secret, which is shown
// once and never again (List does not return it).
type Created struct {
	ID     uuid.UUID `json:"id"`
	Secret string    `json:"secret"`
}

// checkEvents validates and normalizes an event list: known types, no
// duplicates, in the documented order.
func checkEvents(evs []Type) ([]string, error) {
	if len(evs) == 0 {
		return nil, errors.New("webhook subscription: name at least one event type (" + typeList() + ")")
	}
	seen := map[Type]bool{}
	for _, e := range evs {
		e = Type(strings.TrimSpace(string(e)))
		if !e.Valid() {
			return nil, fmt.Errorf("webhook subscription: unknown event type %q (want %s)", e, typeList())
		}
		seen[e] = true
	}
	var out []string
	for _, t := range Types {
		if seen[t] {
			out = append(out, string(t))
		}
	}
	return out, nil
}

func typeList() string {
	s := make([]string, len(Types))
	for i, t := range Types {
		s[i] = string(t)
	}
	return strings.Join(s, ", ")
}

// ParseTypes reads a comma-separated event list (the CLI's --events).
func ParseTypes(s string) []Type {
	var out []Type
	for part := range strings.SplitSeq(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, Type(part))
		}
	}
	return out
}

func checkProperty(p string) error {
	if len(p) > 253 || strings.ContainsFunc(p, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return fmt.Errorf("webhook subscription: property %q is not a property name", p)
	}
	return nil
}

// Add validates ns and stores a subscription with a new secret.
func Add(ctx context.Context, db DB, ns NewSubscription) (Created, error) {
	u, err := safedial.CheckURL(ctx, ns.URL, ns.Policy)
	if err != nil {
		return Created{}, fmt.Errorf("webhook subscription URL: %w", err)
	}
	evs, err := checkEvents(ns.Events)
	if err != nil {
		return Created{}, err
	}
	prop := strings.TrimSpace(ns.Property)
	if err := checkProperty(prop); err != nil {
		return Created{}, err
	}
	sec, err := stdwebhook.NewSecret()
	if err != nil {
		return Created{}, err
	}
	var propArg *string
	if prop != "" {
		propArg = &prop
	}
	c := Created{Secret: sec.Encode()}
	err = db.QueryRow(ctx, `
INSERT INTO mailslot.webhook_subscriptions (url, events, property, secret)
VALUES ($1, $2, $3, $4) RETURNING id`, u.String(), evs, propArg, c.Secret).Scan(&c.ID)
	if err != nil {
		return Created{}, fmt.Errorf("store webhook subscription: %w", err)
	}
	return c, nil
}

const subscriptionColumns = `id, url, events, COALESCE(property, ''), created_at, rotated_at,
    CASE WHEN previous_expires_at > now() THEN previous_expires_at END, disabled_at, COALESCE(disabled_reason, '')`

func scanSubscription(r pgx.Row) (Subscription, error) {
	var s Subscription
	var evs []string
	err := r.Scan(&s.ID, &s.URL, &evs, &s.Property, &s.CreatedAt, &s.RotatedAt, &s.PreviousExpiresAt, &s.DisabledAt, &s.DisabledReason)
	for _, e := range evs {
		s.Events = append(s.Events, Type(e))
	}
	return s, err
}

// List returns every subscription, disabled ones included, oldest first.
func List(ctx context.Context, db DB) ([]Subscription, error) {
	rows, err := db.Query(ctx, `SELECT `+subscriptionColumns+` FROM mailslot.webhook_subscriptions ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list webhook subscriptions: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Subscription, error) { return scanSubscription(r) })
	if err != nil {
		return nil, fmt.Errorf("list webhook subscriptions: %w", err)
	}
	return out, nil
}

// Get returns one subscription.
func Get(ctx context.Context, db DB, id uuid.UUID) (Subscription, error) {
	s, err := scanSubscription(db.QueryRow(ctx, `SELECT `+subscriptionColumns+` FROM mailslot.webhook_subscriptions WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Subscription{}, ErrNotFound
	}
	if err != nil {
		return Subscription{}, fmt.Errorf("read webhook subscription: %w", err)
	}
	return s, nil
}

// disableSQL disables a subscription and cancels what it has not been
// sent. Deliveries in flight keep their lease (see eraseSQL). Run it after
// eraseLockSQL in the same transaction, so that a fan-out in progress
// cannot write a delivery to the subscription that the cancel misses.
const disableSQL = `
WITH sub AS (
    UPDATE mailslot.webhook_subscriptions SET disabled_at = now(), disabled_reason = $2
    WHERE id = $1 AND disabled_at IS NULL
    RETURNING id
), cancelled AS (
    UPDATE mailslot.webhook_deliveries d
    SET state = 'cancelled', last_error = $3,
        lease_until = CASE WHEN d.state = 'delivering' THEN d.lease_until END
    FROM sub WHERE d.subscription_id = sub.id AND d.state IN ('pending', 'delivering', 'failed', 'dead')
    RETURNING 1
)
SELECT (SELECT count(*) FROM sub), (SELECT count(*) FROM cancelled)`

// Remove disables a subscription (reason "removed") and cancels its
// undelivered deliveries. The row stays: its deliveries are the record of
// what the receiver was sent, which an erasure's record needs. Removing a
// disabled subscription is not an error.
func Remove(ctx context.Context, db DB, id uuid.UUID) error {
	var n, cancelled int64
	// One implicit transaction: the fan-out lock, held shared, makes the
	// cancel see every delivery a fan-out wrote (see fanOutSQL).
	b := &pgx.Batch{}
	queueEraseLock(b)
	b.Queue(disableSQL, id, "removed", "subscription removed").QueryRow(func(row pgx.Row) error {
		return row.Scan(&n, &cancelled)
	})
	if err := db.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("remove webhook subscription: %w", err)
	}
	if n == 0 {
		if _, err := Get(ctx, db, id); err != nil {
			return err
		}
	}
	return nil
}

// Rotate gives a subscription a new secret and keeps the current one
// signing beside it for overlap (DefaultOverlap when zero). It returns the
// new secret, shown once.
func Rotate(ctx context.Context, db DB, id uuid.UUID, overlap time.Duration) (string, error) {
	if overlap <= 0 {
		overlap = DefaultOverlap
	}
	sec, err := stdwebhook.NewSecret()
	if err != nil {
		return "", err
	}
	tag, err := db.Exec(ctx, `
UPDATE mailslot.webhook_subscriptions
SET previous_secret = secret, previous_expires_at = now() + $3::interval, secret = $2, rotated_at = now()
WHERE id = $1 AND disabled_at IS NULL`, id, sec.Encode(), overlap)
	if err != nil {
		return "", fmt.Errorf("rotate webhook secret: %w", err)
	}
	if tag.RowsAffected() == 0 {
		s, err := Get(ctx, db, id)
		if err != nil {
			return "", err
		}
		return "", fmt.Errorf("rotate webhook secret: subscription %s is disabled (%s)", s.ID, s.DisabledReason)
	}
	return sec.Encode(), nil
}

// Redeliver puts a subscription's dead deliveries back to pending, with a
// fresh retry window, and returns how many. Cancelled deliveries (erased
// leads, removed subscriptions) stay cancelled.
func Redeliver(ctx context.Context, db DB, id uuid.UUID) (int64, error) {
	if _, err := Get(ctx, db, id); err != nil {
		return 0, err
	}
	tag, err := db.Exec(ctx, `
UPDATE mailslot.webhook_deliveries d
SET state = 'pending', next_attempt_at = now(), first_attempt_at = NULL, last_error = NULL
FROM mailslot.webhook_subscriptions s
WHERE d.subscription_id = $1 AND s.id = d.subscription_id AND s.disabled_at IS NULL AND d.state = 'dead'`, id)
	if err != nil {
		return 0, fmt.Errorf("redeliver webhook deliveries: %w", err)
	}
	return tag.RowsAffected(), nil
}

// Counts is one subscription's deliveries by state. Failing are those
// that failed at least once and wait for their next attempt.
type Counts struct {
	SubscriptionID uuid.UUID  `json:"subscription_id"`
	Pending        int64      `json:"pending"`
	Delivering     int64      `json:"delivering"`
	Delivered      int64      `json:"delivered"`
	Failing        int64      `json:"failing"`
	Dead           int64      `json:"dead"`
	Cancelled      int64      `json:"cancelled"`
	OldestPending  *time.Time `json:"oldest_pending,omitempty"`
	LastDelivered  *time.Time `json:"last_delivered,omitempty"`
}

// DeliveryCounts counts every subscription's deliveries by state.
func DeliveryCounts(ctx context.Context, db DB) ([]Counts, error) {
	rows, err := db.Query(ctx, `
SELECT s.id,
       count(*) FILTER (WHERE d.state = 'pending'),
       count(*) FILTER (WHERE d.state = 'delivering'),
       count(*) FILTER (WHERE d.state = 'delivered'),
       count(*) FILTER (WHERE d.state = 'failed'),
       count(*) FILTER (WHERE d.state = 'dead'),
       count(*) FILTER (WHERE d.state = 'cancelled'),
       min(d.created_at) FILTER (WHERE d.state IN ('pending', 'failed', 'delivering')),
       max(d.delivered_at)
FROM mailslot.webhook_subscriptions s
LEFT JOIN mailslot.webhook_deliveries d ON d.subscription_id = s.id
GROUP BY s.id, s.created_at ORDER BY s.created_at, s.id`)
	if err != nil {
		return nil, fmt.Errorf("count webhook deliveries: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Counts, error) {
		var c Counts
		err := r.Scan(&c.SubscriptionID, &c.Pending, &c.Delivering, &c.Delivered, &c.Failing, &c.Dead, &c.Cancelled, &c.OldestPending, &c.LastDelivered)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("count webhook deliveries: %w", err)
	}
	return out, nil
}

// ErasureDelivery is one row of the erasure record
// (mailslot.webhook_erasure_deliveries): whether one receiver was told of
// one erased lead.
type ErasureDelivery struct {
	TombstoneID    *int64     `json:"tombstone_id"`
	EventID        uuid.UUID  `json:"event_id"`
	LeadPublicID   uuid.UUID  `json:"lead_public_id"`
	Property       string     `json:"property"`
	SubscriptionID uuid.UUID  `json:"subscription_id"`
	Receiver       string     `json:"receiver"`
	State          string     `json:"state"`
	Attempts       int        `json:"attempts"`
	LastStatus     *int       `json:"last_status,omitempty"`
	LastError      string     `json:"last_error,omitempty"`
	FirstAttemptAt *time.Time `json:"first_attempt_at,omitempty"`
	LastAttemptAt  *time.Time `json:"last_attempt_at,omitempty"`
	DeliveredAt    *time.Time `json:"delivered_at,omitempty"`
}

// ErasureDeliveries returns the erasure record of tombstone tombstoneID.
func ErasureDeliveries(ctx context.Context, db DB, tombstoneID int64) ([]ErasureDelivery, error) {
	return pgrows.Collect(ctx, db, "read erasure deliveries", pgrows.Into(func(e *ErasureDelivery) []any {
		return []any{&e.TombstoneID, &e.EventID, &e.LeadPublicID, &e.Property, &e.SubscriptionID, &e.Receiver, &e.State,
			&e.Attempts, &e.LastStatus, &e.LastError, &e.FirstAttemptAt, &e.LastAttemptAt, &e.DeliveredAt}
	}), `
SELECT tombstone_id, event_id, lead_public_id, property, subscription_id, receiver, state, attempts,
       last_status, COALESCE(last_error, ''), first_attempt_at, last_attempt_at, delivered_at
FROM mailslot.webhook_erasure_deliveries WHERE tombstone_id = $1 ORDER BY lead_public_id, subscription_id`, tombstoneID)
}
