package webhook

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Type is an event type.
type Type string

// The event types a subscription may ask for.
const (
	LeadCreated      Type = "lead.created"
	LeadConfirmed    Type = "lead.confirmed"
	LeadUnsubscribed Type = "lead.unsubscribed"
	LeadErased       Type = "lead.erased"
)

// Types lists every event type, in the order the docs give them.
var Types = []Type{LeadCreated, LeadConfirmed, LeadUnsubscribed, LeadErased}

// Valid reports whether t is a known type.
func (t Type) Valid() bool {
	return slices.Contains(Types, t)
}

// Reasons a lead.unsubscribed event gives.
const (
	ReasonWithdrawn  = "withdrawn"  // the person unsubscribed
	ReasonBounced    = "bounced"    // the address bounced
	ReasonComplained = "complained" // the person reported the mail as spam
)

// Event asks for one event about one lead. The payload is not given: it
// is read from the lead's row in the same transaction (see doc.go for the
// shapes), so the caller names the lead and the statement reads what the
// batch just wrote.
//
// The lead is named by PublicID, or, when that is zero, by Property and
// EmailHMAC (the sync knows a sign-up by its address, not by an id), or,
// for lead.created with EveryProperty, by EmailHMAC alone. An
// event for a lead that does not exist, or that no enabled subscription
// wants, writes nothing. lead.erased is not emitted this way: QueueErase
// writes it.
type Event struct {
	// ID becomes webhook-id, the receiver's idempotency key. Zero means a
	// new one (a UUIDv7).
	ID        uuid.UUID
	Type      Type
	PublicID  uuid.UUID
	Property  string
	EmailHMAC []byte
	// EveryProperty names every lead of EmailHMAC, whatever its property
	// (lead.created only): the leads an erasure reset are new leads to the
	// receivers, under the new public ids it gave them.
	EveryProperty bool
	// Reason is lead.unsubscribed's reason (ReasonWithdrawn when empty).
	Reason string
	// At is when the change happened (confirmed_at, unsubscribed_at); zero
	// means the lead row's own time (confirmed_at, withdrawn_at).
	At time.Time
}

func (e Event) check() error {
	switch e.Type {
	case LeadCreated, LeadConfirmed:
	case LeadUnsubscribed:
		switch e.Reason {
		case "", ReasonWithdrawn, ReasonBounced, ReasonComplained:
		default:
			return fmt.Errorf("webhook event: unknown unsubscribe reason %q", e.Reason)
		}
	case LeadErased:
		return errors.New("webhook event: lead.erased is written by QueueErase, not emitted")
	default:
		return fmt.Errorf("webhook event: unknown type %q", e.Type)
	}
	if e.EveryProperty && (e.Type != LeadCreated || e.PublicID != uuid.Nil || e.Property != "" || len(e.EmailHMAC) == 0) {
		return errors.New("webhook event: every property is for lead.created named by address hash alone")
	}
	if e.PublicID == uuid.Nil && !e.EveryProperty && (e.Property == "" || len(e.EmailHMAC) == 0) {
		return errors.New("webhook event: name the lead by public id or by property and address hash")
	}
	return nil
}

// emitSQL writes the events that some enabled subscription wants, and
// nothing else: the deliverer fans them out to their deliveries
// (fanOutSQL), so that a sign-up's transaction pays for one narrow insert,
// not one per subscription. It returns one row per delivery the fan-out
// will write (event and matching subscription), which Emit counts.
// lead.created is written once per lead:
// a second one for the same public id writes nothing, so the caller may
// emit it for every sign-up it merges. Times are rendered as RFC 3339 in
// UTC by to_char, whatever the session's TimeZone (jsonb's own rendering
// of a timestamptz follows it). An event for every lead of an address
// (no public id, no property) becomes one event per lead, each with its
// own id.
const emitSQL = `
WITH input AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::bytea[], $6::text[], $7::timestamptz[])
        WITH ORDINALITY AS i (id, type, public_id, property, email_hmac, reason, at, ord)
), ev AS (
    SELECT CASE WHEN i.public_id IS NULL AND i.property = '' THEN uuidv7() ELSE i.id END AS id,
        i.type, i.ord, l.public_id, l.property,
        CASE i.type
        WHEN 'lead.created' THEN ` + createdPayload + `
        WHEN 'lead.confirmed' THEN jsonb_build_object(
            'id', l.public_id, 'property', l.property, 'email', l.email, 'consent', l.consent_status,
            'confirmed_at', to_char(COALESCE(i.at, l.confirmed_at, l.express_at, now()) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
        WHEN 'lead.unsubscribed' THEN jsonb_build_object(
            'id', l.public_id, 'property', l.property, 'email', l.email,
            'reason', COALESCE(NULLIF(i.reason, ''), 'withdrawn'),
            'unsubscribed_at', to_char(COALESCE(i.at, l.withdrawn_at, now()) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
        END AS payload
    FROM input i
    JOIN LATERAL (
        SELECT * FROM mailslot.leads WHERE public_id = i.public_id
        UNION ALL
        SELECT * FROM mailslot.leads WHERE i.public_id IS NULL AND property = i.property AND email_hmac = i.email_hmac
        UNION ALL
        SELECT * FROM mailslot.leads WHERE i.public_id IS NULL AND i.property = '' AND email_hmac = i.email_hmac
    ) l ON true
    WHERE EXISTS (
        SELECT 1 FROM mailslot.webhook_subscriptions s
        WHERE s.disabled_at IS NULL AND i.type = ANY (s.events) AND (s.property IS NULL OR s.property = l.property))
      AND NOT (i.type = 'lead.created' AND EXISTS (
        SELECT 1 FROM mailslot.webhook_events x WHERE x.lead_public_id = l.public_id AND x.type = 'lead.created'))
), inserted AS (
    INSERT INTO mailslot.webhook_events (id, type, lead_public_id, property, payload)
    SELECT id, type, public_id, property, payload FROM ev ORDER BY ord
    ON CONFLICT (id) DO NOTHING
    RETURNING type, property
)
SELECT 1
FROM inserted e
JOIN mailslot.webhook_subscriptions s
  ON s.disabled_at IS NULL AND e.type = ANY (s.events) AND (s.property IS NULL OR s.property = e.property)`

// createdPayload is lead.created's data, built from a lead row l.
const createdPayload = `jsonb_build_object(
            'id', l.public_id, 'property', l.property, 'email', l.email, 'name', l.name,
            'consent', l.consent_status, 'utm', l.first_utm, 'page', l.first_page,
            'referrer', l.first_referrer,
            'created_at', to_char(l.first_seen_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))`

// CreatedCTE is a common table expression, lead_created, that records
// lead.created for the leads its statement created: one row in
// mailslot.webhook_created naming them all (pgschema 014), which the
// fan-out expands into one event per lead (expandCreatedSQL). It reads the
// statement's own upsert: a CTE named upserted whose RETURNING gives the
// lead's id and property, and created (true when the row was inserted,
// not updated: old.id IS NULL). "Created by this statement" is exactly
// once per lead even when two edges' batches bring the same new address
// at once (the second one updates the row the first inserted). With no
// enabled subscription that wants lead.created for the property, it
// records nothing. A lead that an erasure reset is announced by QueueEmit
// with EveryProperty instead.
const CreatedCTE = `
lead_created AS (
    INSERT INTO mailslot.webhook_created (lead_ids)
    SELECT array_agg(l.id ORDER BY l.id)
    FROM upserted l
    WHERE l.created AND EXISTS (
        SELECT 1 FROM mailslot.webhook_subscriptions s
        WHERE s.disabled_at IS NULL AND 'lead.created' = ANY (s.events) AND (s.property IS NULL OR s.property = l.property))
    HAVING count(*) > 0
)`

// expandCreatedSQL turns up to $1 of the sync batches' lead.created
// records (CreatedCTE) into events, oldest first, and fans them out at
// once: one delivery per enabled subscription that wants lead.created for
// the property, as fanOutSQL would write, without writing each event a
// second time to mark it fanned. Each event keeps its batch's seq (so that
// it, and its deliveries, come before any later event of its lead) and
// time (the envelope's timestamp: when the sync wrote it), with the
// payload read from the lead as it stands. A lead that is gone (erased)
// gets none; one that already has its lead.created (an erasure reset it
// and announced it under its new id) gets no second one. The records it
// expanded are deleted in the same statement. FanOut runs it first, in the
// fan-out's transaction: it takes the fan-out's lock, or finds it taken
// and does nothing. It returns the deliveries it wrote.
const expandCreatedSQL = `
WITH turn AS (
    SELECT pg_try_advisory_xact_lock(1835100524, 2) AS ok
), taken AS (
    DELETE FROM mailslot.webhook_created
    -- Fan-outs take turns on the lock, so no row lock is needed here.
    WHERE seq IN (SELECT c.seq FROM mailslot.webhook_created c, turn
                  WHERE turn.ok ORDER BY c.seq LIMIT $1)
    RETURNING seq, lead_ids, created_at
), ev AS (
    INSERT INTO mailslot.webhook_events (id, seq, type, lead_public_id, property, payload, created_at, fanned_at)
    OVERRIDING SYSTEM VALUE
    SELECT uuidv7(), t.seq, 'lead.created', l.public_id, l.property, ` + createdPayload + `, t.created_at, now()
    FROM taken t
    CROSS JOIN LATERAL unnest(t.lead_ids) AS x (lead_id)
    JOIN mailslot.leads l ON l.id = x.lead_id
    WHERE NOT EXISTS (
        SELECT 1 FROM mailslot.webhook_events e WHERE e.lead_public_id = l.public_id AND e.type = 'lead.created')
    ORDER BY t.seq, l.id
    RETURNING id, seq, lead_public_id, property
)
INSERT INTO mailslot.webhook_deliveries (subscription_id, event_id, lead_public_id, event_seq)
SELECT s.id, ev.id, ev.lead_public_id, ev.seq
FROM ev
JOIN mailslot.webhook_subscriptions s
  ON s.disabled_at IS NULL AND 'lead.created' = ANY (s.events) AND (s.property IS NULL OR s.property = ev.property)
ORDER BY ev.seq`

type emitArgs struct {
	ids, publicIDs []uuid.UUID
	types, props   []string
	hashes         [][]byte
	reasons        []string
	ats            []*time.Time
}

func buildEmit(evs []Event) (emitArgs, error) {
	n := len(evs)
	a := emitArgs{
		ids: make([]uuid.UUID, n), publicIDs: make([]uuid.UUID, n), types: make([]string, n),
		props: make([]string, n), hashes: make([][]byte, n), reasons: make([]string, n), ats: make([]*time.Time, n),
	}
	for i, e := range evs {
		if err := e.check(); err != nil {
			return a, err
		}
		a.ids[i] = e.ID
		if e.ID == uuid.Nil {
			// Time-ordered, so that the primary key grows at its right
			// edge (pgschema 008).
			id, err := uuid.NewV7()
			if err != nil {
				return a, fmt.Errorf("webhook event id: %w", err)
			}
			a.ids[i] = id
		}
		a.publicIDs[i], a.types[i], a.props[i], a.hashes[i], a.reasons[i] = e.PublicID, string(e.Type), e.Property, e.EmailHMAC, e.Reason
		if !e.At.IsZero() {
			at := e.At
			a.ats[i] = &at
		}
	}
	return a, nil
}

func (a emitArgs) values() []any {
	pub := make([]*uuid.UUID, len(a.publicIDs))
	for i := range a.publicIDs {
		if a.publicIDs[i] != uuid.Nil {
			pub[i] = &a.publicIDs[i]
		}
	}
	return []any{a.ids, a.types, pub, a.props, a.hashes, a.reasons, a.ats}
}

// QueueEmit queues one statement on b (the sync's pipelined batch, inside
// its transaction) that writes evs; a deliverer fans them out. Queue it after
// the statements that write the leads it names. It returns an error, and
// queues nothing, when an event is malformed.
func QueueEmit(b *pgx.Batch, evs ...Event) error {
	if len(evs) == 0 {
		return nil
	}
	a, err := buildEmit(evs)
	if err != nil {
		return err
	}
	b.Queue(emitSQL, a.values()...)
	return nil
}

// Execer is what Emit needs: a transaction (or a connection or a pool,
// for callers outside a transaction).
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Emit writes evs through tx, the transaction that changed the leads, and
// returns how many deliveries the fan-out will make of them (one per
// event and enabled subscription that wants it, as of now).
func Emit(ctx context.Context, tx Execer, evs ...Event) (int64, error) {
	if len(evs) == 0 {
		return 0, nil
	}
	a, err := buildEmit(evs)
	if err != nil {
		return 0, err
	}
	tag, err := tx.Exec(ctx, emitSQL, a.values()...)
	if err != nil {
		return 0, fmt.Errorf("emit webhook events: %w", err)
	}
	return tag.RowsAffected(), nil
}
