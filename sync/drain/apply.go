// Package drain moves an edge's outbox into the canonical Postgres: it reads
// pending rows in bounded batches, applies each batch in one Postgres
// transaction keyed by (node_id, seq), and marks the rows synced locally
// only after that transaction commits. A crash between the two replays the
// batch, and the ledger makes the replay change nothing.
package drain

import (
	"context"
	"errors"
	"fmt"
	"time"

	json "github.com/goccy/go-json"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/mailslot/mailslot"
	"github.com/mailslot/mailslot/outbox"
	"github.com/mailslot/mailslot/sync/webhook"
)

// ErrRaced means another writer applied some of the batch's keys while
// this transaction ran; the caller retries and the ledger sorts it out.
var ErrRaced = errors.New("ledger keys applied concurrently")

// PoisonError is a row that can never be applied as it is (its payload
// does not decode, or Postgres refuses its content).
type PoisonError struct {
	Seq    int64
	Reason string
}

func (e *PoisonError) Error() string { return fmt.Sprintf("row %d: %s", e.Seq, e.Reason) }

// Rank of each consent basis: a submission can raise a lead's basis, never
// lower it. "withdrawn" is not a basis but a time (withdrawn_at), so that
// the merge is the same whatever order rows arrive in.
var basisRank = map[string]int{mailslot.ConsentPending: 1, mailslot.ConsentImplied: 2, mailslot.ConsentExpress: 3}

// decoded is a batch with payloads parsed, split by kind, and its order
// kept: consent changes and erasures must apply between the sign-ups that
// came before and after them.
type decoded struct {
	all      []outbox.Row // every row that decoded, in seq order
	leads    []leadRow
	events   []eventRow
	controls []controlRow
	verdicts []verdictRow // re-checked bot challenges (challenge.go)
	order    []item
}

// item points into one of decoded's kind lists.
type item struct {
	kind  mailslot.Kind
	index int
	// erased marks a row the edge scrubbed before it synced: it reaches
	// the ledger only.
	erased bool
}

type leadRow struct {
	row outbox.Row
	p   mailslot.LeadPayload
}

type eventRow struct {
	row outbox.Row
	ev  mailslot.Event
}

// controlRow is a consent change or an erasure request.
type controlRow struct {
	row     outbox.Row
	consent *mailslot.ConsentChange
	erasure *mailslot.ErasureRequest
}

// decode parses every payload; a row that does not parse is poison.
func decode(rows []outbox.Row) (decoded, []*PoisonError) {
	d := decoded{all: make([]outbox.Row, 0, len(rows))}
	var poison []*PoisonError
	bad := func(r outbox.Row, reason string) { poison = append(poison, &PoisonError{Seq: r.Seq, Reason: reason}) }
	for _, r := range rows {
		if _, err := uuid.Parse(r.ID); err != nil {
			bad(r, "submission id is not a UUID")
			continue
		}
		if string(r.Payload) == mailslot.ErasedPayload {
			d.order = append(d.order, item{kind: r.Kind, erased: true})
			d.all = append(d.all, r)
			continue
		}
		switch r.Kind {
		case mailslot.KindLead:
			var p mailslot.LeadPayload
			if err := json.Unmarshal(r.Payload, &p); err != nil {
				bad(r, "lead payload: "+err.Error())
				continue
			}
			if basisRank[p.Consent] == 0 || p.Property == "" || len(r.EmailHMAC) == 0 {
				bad(r, "lead payload lacks consent, property or email hash")
				continue
			}
			d.order = append(d.order, item{kind: r.Kind, index: len(d.leads)})
			d.leads = append(d.leads, leadRow{row: r, p: p})
		case mailslot.KindEvent:
			var ev mailslot.Event
			if err := json.Unmarshal(r.Payload, &ev); err != nil {
				bad(r, "event payload: "+err.Error())
				continue
			}
			d.order = append(d.order, item{kind: r.Kind, index: len(d.events)})
			d.events = append(d.events, eventRow{row: r, ev: ev})
		case mailslot.KindConsent:
			var c mailslot.ConsentChange
			if err := json.Unmarshal(r.Payload, &c); err != nil || len(r.EmailHMAC) == 0 || c.Property == "" ||
				(c.Action != mailslot.ActionConfirm && c.Action != mailslot.ActionUnsubscribe) {
				bad(r, "consent change payload is incomplete")
				continue
			}
			d.order = append(d.order, item{kind: r.Kind, index: len(d.controls)})
			d.controls = append(d.controls, controlRow{row: r, consent: &c})
		case mailslot.KindErasure:
			var e mailslot.ErasureRequest
			if err := json.Unmarshal(r.Payload, &e); err != nil || len(r.EmailHMAC) == 0 {
				bad(r, "erasure request payload is incomplete")
				continue
			}
			d.order = append(d.order, item{kind: r.Kind, index: len(d.controls)})
			d.controls = append(d.controls, controlRow{row: r, erasure: &e})
		case mailslot.KindChallenge:
			v, ok := decodeVerdict(r)
			if !ok {
				bad(r, "challenge verdict payload is incomplete")
				continue
			}
			d.order = append(d.order, item{kind: r.Kind, index: len(d.verdicts)})
			d.verdicts = append(d.verdicts, v)
		default:
			bad(r, fmt.Sprintf("unknown row kind %q", r.Kind))
			continue
		}
		d.all = append(d.all, r)
	}
	return d, poison
}

// leadMerge is every submission in a batch for one (property, email),
// merged by the same rules the upsert applies against the stored lead, so
// one statement can upsert each lead once.
type leadMerge struct {
	property, email   string
	emailHMAC         []byte
	name              *string
	nameAt            time.Time
	basis             string
	expressAt         *time.Time
	impliedAt         *time.Time
	firstAt, lastAt   time.Time
	firstUTM, lastUTM *string
	firstPage, lastPg *string
	firstRef, lastRef *string
	submissions       int32
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func utmJSON(u mailslot.UTM) *string {
	if u.IsZero() {
		return nil
	}
	b, _ := json.Marshal(u)
	s := string(b)
	return &s
}

func later(a *time.Time, b time.Time) *time.Time {
	if a == nil || b.After(*a) {
		return &b
	}
	return a
}

func mergeLeads(leads []leadRow) []*leadMerge {
	byKey := make(map[string]*leadMerge, len(leads))
	order := make([]*leadMerge, 0, len(leads))
	for _, l := range leads {
		at := l.row.ReceivedAt
		key := l.p.Property + "\x00" + string(l.row.EmailHMAC)
		m, ok := byKey[key]
		if !ok {
			m = &leadMerge{
				property: l.p.Property, email: l.p.Email, emailHMAC: l.row.EmailHMAC,
				basis: l.p.Consent, firstAt: at, lastAt: at,
				firstUTM: utmJSON(l.p.UTM), lastUTM: utmJSON(l.p.UTM),
				firstPage: optional(l.p.Page), lastPg: optional(l.p.Page),
				firstRef: optional(l.p.Referrer), lastRef: optional(l.p.Referrer),
			}
			byKey[key] = m
			order = append(order, m)
		} else {
			if basisRank[l.p.Consent] > basisRank[m.basis] {
				m.basis = l.p.Consent
			}
			if at.Before(m.firstAt) {
				m.firstAt, m.firstUTM, m.firstPage, m.firstRef = at, utmJSON(l.p.UTM), optional(l.p.Page), optional(l.p.Referrer)
			}
			if !at.Before(m.lastAt) {
				m.lastAt, m.lastUTM, m.lastPg, m.lastRef = at, utmJSON(l.p.UTM), optional(l.p.Page), optional(l.p.Referrer)
			}
		}
		if l.p.Name != "" && !at.Before(m.nameAt) {
			m.name, m.nameAt = optional(l.p.Name), at
		}
		switch l.p.Consent {
		case mailslot.ConsentExpress:
			m.expressAt = later(m.expressAt, at)
		case mailslot.ConsentImplied:
			m.impliedAt = later(m.impliedAt, at)
		}
		m.submissions++
	}
	return order
}

// The statements of one batch. They run pipelined in one round trip, in
// this order, inside the batch's transaction.
const (
	insertLedgerSQL = `
INSERT INTO mailslot.ledger (node_id, seq, kind, submission_id, received_at, outcome)
SELECT $1, s.seq, s.kind, s.id, s.received_at, s.outcome
FROM unnest($2::bigint[], $3::text[], $4::uuid[], $5::timestamptz[], $6::text[]) AS s (seq, kind, id, received_at, outcome)
ON CONFLICT (node_id, seq) DO NOTHING`

	// upsertLeadsSQL merges with the stored lead by the rules in the
	// package doc: strongest basis, latest express/implied time, earliest
	// first touch, latest last touch, latest non-empty name. A new lead
	// also inherits what arrived before it: a suppression (unsubscribe or
	// erasure) becomes its withdrawn_at, and a confirmation that synced
	// before its sign-up becomes its express_at and confirmed_at, unless
	// its link was minted at or before that suppression (confirmSQL's rule).
	//
	// An express claim in a sign-up raises consent_basis and express_at
	// only: it never overturns a withdrawal, because anyone can post one.
	// Only confirmed_at (the confirm link) does (consent_status, pgschema
	// 006).
	//
	// The same statement writes each submission's consent record, linked
	// to the lead the upsert returns ($18 on), and lead.created for the
	// leads it inserted when a subscription wants it (webhook.CreatedCTE):
	// joins with the upsert's own output rather than a second lookup of
	// every lead by its key.
	upsertLeadsSQL = `
WITH upserted AS (
INSERT INTO mailslot.leads AS l (
    property, email, email_hmac, name, name_at, consent_basis, express_at, implied_at, withdrawn_at,
    confirmed_at, confirm_issued_at,
    first_seen_at, first_utm, first_page, first_referrer,
    last_seen_at, last_utm, last_page, last_referrer, submissions)
SELECT s.property, s.email, s.email_hmac, s.name, s.name_at,
       CASE WHEN o.express_at IS NOT NULL THEN 'express' ELSE s.basis END,
       GREATEST(s.express_at, o.express_at), s.implied_at, x.withdrawn_at,
       o.express_at, o.issued_at,
       s.first_at, s.first_utm::jsonb, s.first_page, s.first_ref,
       s.last_at, s.last_utm::jsonb, s.last_page, s.last_ref, s.submissions
FROM unnest($1::text[], $2::text[], $3::bytea[], $4::text[], $5::text[], $6::timestamptz[], $7::timestamptz[],
            $8::timestamptz[], $9::text[], $10::text[], $11::text[],
            $12::timestamptz[], $13::text[], $14::text[], $15::text[], $16::int[], $17::timestamptz[])
     AS s (property, email, email_hmac, name, basis, express_at, implied_at,
           first_at, first_utm, first_page, first_ref, last_at, last_utm, last_page, last_ref, submissions, name_at)
LEFT JOIN LATERAL (
    SELECT max(x.created_at) AS withdrawn_at FROM mailslot.suppressions x
    WHERE x.email_hmac = s.email_hmac AND x.property IN ('', s.property)) x ON true
LEFT JOIN LATERAL (
    SELECT max(c.recorded_at) AS express_at, max(c.token_issued_at) AS issued_at FROM mailslot.consent_records c
    WHERE c.email_hmac = s.email_hmac AND c.property = s.property AND c.status = 'express' AND c.lead_id IS NULL
      AND (x.withdrawn_at IS NULL OR c.token_issued_at > x.withdrawn_at)) o ON true
-- Key order: two batches (two edges) that share addresses lock those
-- leads in the same order, so they wait for each other, never deadlock.
ORDER BY s.property, s.email_hmac
ON CONFLICT (property, email_hmac) DO UPDATE SET
    -- The name given last wins, by when it was given (name_at), not by
    -- when the batch happened to sync.
    name    = CASE WHEN EXCLUDED.name IS NOT NULL AND (l.name IS NULL OR l.name_at IS NULL OR EXCLUDED.name_at >= l.name_at)
                   THEN EXCLUDED.name ELSE l.name END,
    name_at = CASE WHEN EXCLUDED.name IS NOT NULL AND (l.name IS NULL OR l.name_at IS NULL OR EXCLUDED.name_at >= l.name_at)
                   THEN EXCLUDED.name_at ELSE l.name_at END,
    consent_basis = CASE
        WHEN array_position(ARRAY['pending', 'implied', 'express'], EXCLUDED.consent_basis)
           > array_position(ARRAY['pending', 'implied', 'express'], l.consent_basis)
        THEN EXCLUDED.consent_basis ELSE l.consent_basis END,
    express_at = GREATEST(l.express_at, EXCLUDED.express_at),
    implied_at = GREATEST(l.implied_at, EXCLUDED.implied_at),
    withdrawn_at = GREATEST(l.withdrawn_at, EXCLUDED.withdrawn_at),
    confirmed_at      = GREATEST(l.confirmed_at, EXCLUDED.confirmed_at),
    confirm_issued_at = GREATEST(l.confirm_issued_at, EXCLUDED.confirm_issued_at),
    first_seen_at  = LEAST(l.first_seen_at, EXCLUDED.first_seen_at),
    first_utm      = CASE WHEN EXCLUDED.first_seen_at < l.first_seen_at THEN EXCLUDED.first_utm ELSE l.first_utm END,
    first_page     = CASE WHEN EXCLUDED.first_seen_at < l.first_seen_at THEN EXCLUDED.first_page ELSE l.first_page END,
    first_referrer = CASE WHEN EXCLUDED.first_seen_at < l.first_seen_at THEN EXCLUDED.first_referrer ELSE l.first_referrer END,
    last_seen_at   = GREATEST(l.last_seen_at, EXCLUDED.last_seen_at),
    last_utm       = CASE WHEN EXCLUDED.last_seen_at >= l.last_seen_at THEN EXCLUDED.last_utm ELSE l.last_utm END,
    last_page      = CASE WHEN EXCLUDED.last_seen_at >= l.last_seen_at THEN EXCLUDED.last_page ELSE l.last_page END,
    last_referrer  = CASE WHEN EXCLUDED.last_seen_at >= l.last_seen_at THEN EXCLUDED.last_referrer ELSE l.last_referrer END,
    submissions    = l.submissions + EXCLUDED.submissions
RETURNING l.id, l.property, l.email_hmac, old.id IS NULL AS created
),` + webhook.CreatedCTE + `
INSERT INTO mailslot.consent_records (
    lead_id, submission_id, email_hmac, property, policy_version, status, source,
    recorded_at, ip_hmac, origin_node, origin_seq)
SELECT u.id, c.id, c.email_hmac, c.property, c.policy_version, c.status, c.source,
       c.recorded_at, c.ip_hmac, $18, c.seq
FROM unnest($19::uuid[], $20::bytea[], $21::text[], $22::text[], $23::text[], $24::text[],
            $25::timestamptz[], $26::bytea[], $27::bigint[])
     AS c (id, email_hmac, property, policy_version, status, source, recorded_at, ip_hmac, seq)
JOIN upserted u ON u.property = c.property AND u.email_hmac = c.email_hmac`

	insertEventsSQL = `
INSERT INTO mailslot.events (
    submission_id, lead_id, lead_submission, property, type, received_at, client_time, payload, ip_hmac, origin_node, origin_seq)
SELECT s.id, c.lead_id,
       -- a link to a sign-up that was erased is dropped, not kept
       CASE WHEN c.id IS NOT NULL AND c.email_hmac IS NULL THEN NULL ELSE s.lead_submission END,
       s.property, s.type, s.received_at, s.client_time, s.payload::jsonb - 'submission_id',
       -- and so is the IP hash that would tie the event to the erased person
       CASE WHEN c.id IS NOT NULL AND c.email_hmac IS NULL THEN NULL ELSE s.ip_hmac END, $1, s.seq
FROM unnest($2::uuid[], $3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[], $7::text[], $8::bytea[],
            $9::bigint[], $10::uuid[])
     AS s (id, property, type, received_at, client_time, payload, ip_hmac, seq, lead_submission)
LEFT JOIN mailslot.consent_records c ON c.submission_id = s.lead_submission`

	// insertLeadImagesSQL queues an image-description job for each image a
	// sign-up brought; the job belongs to the lead, so erasing the lead
	// deletes it. A lead gets one job per image URL however often it signs
	// up with it, and a property at most $5 a UTC day ($5 = 0: no limit):
	// the rest are counted as refused, for status. Two batches in flight
	// read the same day's count, so the quota can be passed by at most one
	// batch's images.
	insertLeadImagesSQL = `
WITH s AS (
    SELECT DISTINCT l.id AS lead_id, l.property, s.url
    FROM unnest($2::text[], $3::bytea[], $4::text[]) AS s (property, email_hmac, url)
    JOIN mailslot.leads l ON l.property = s.property AND l.email_hmac = s.email_hmac
    WHERE NOT EXISTS (SELECT 1 FROM mailslot.image_jobs j
                      WHERE j.lead_id = l.id AND j.image_url = s.url AND j.submitted_by = 'signup')
), ranked AS (
    SELECT s.*, $5::int = 0 OR coalesce(q.queued, 0)
               + row_number() OVER (PARTITION BY s.property ORDER BY s.lead_id, s.url) <= $5::int AS allowed
    FROM s
    LEFT JOIN mailslot.image_quota q ON q.property = s.property AND q.day = (now() AT TIME ZONE 'UTC')::date
), inserted AS (
    INSERT INTO mailslot.image_jobs (lead_id, source, image_url, max_attempts, submitted_by)
    SELECT lead_id, 'url', url, $1::int, 'signup' FROM ranked WHERE allowed
    ON CONFLICT (lead_id, image_url) WHERE submitted_by = 'signup' DO NOTHING
    RETURNING lead_id, image_url
)
INSERT INTO mailslot.image_quota AS q (property, day, queued, refused)
SELECT r.property, (now() AT TIME ZONE 'UTC')::date,
       count(i.lead_id), count(*) FILTER (WHERE NOT r.allowed)
FROM ranked r LEFT JOIN inserted i ON i.lead_id = r.lead_id AND i.image_url = r.url
GROUP BY r.property
ON CONFLICT (property, day) DO UPDATE SET queued = q.queued + EXCLUDED.queued, refused = q.refused + EXCLUDED.refused`

	upsertNodeSQL = `
INSERT INTO mailslot.nodes AS n (node_id, region, last_seq, rows_synced, last_sync_at)
VALUES ($1, $2, $3, $4, now())
ON CONFLICT (node_id) DO UPDATE SET
    region       = EXCLUDED.region,
    last_seq     = GREATEST(n.last_seq, EXCLUDED.last_seq),
    rows_synced  = n.rows_synced + EXCLUDED.rows_synced,
    last_sync_at = now()`

	existingSeqsSQL = `SELECT seq FROM mailslot.ledger WHERE node_id = $1 AND seq = ANY($2::bigint[])`
)

// Ledger outcomes.
const (
	outcomeApplied = "applied"
	// outcomeErased marks a row that a tombstone covers (or that the edge
	// scrubbed): its key is recorded, its content is not.
	outcomeErased = "erased"
)

// Applier writes batches for one node.
type Applier struct {
	NodeID string
	Region string
	// ImageDailyQuota bounds the image jobs sign-ups queue per property and
	// UTC day; 0 means no bound.
	ImageDailyQuota int
	// ImageAttempts is max_attempts for image jobs that sign-ups bring
	// (MAILSLOT_IMAGE_MAX_ATTEMPTS); 0 means 5.
	ImageAttempts int
}

// Applied counts what one batch did.
type Applied struct {
	Rows     int // rows newly applied
	Replayed int // rows whose key was already in the ledger
	MaxSeq   int64
}

// Apply applies rows (already decoded as far as possible) in one
// transaction on conn. It queues every statement in one pgx.Batch so that a
// batch costs three round trips whatever its size: BEGIN, the statements,
// COMMIT. When the ledger says some keys were there already (a replay after
// a crash), it rolls back, drops those rows and tries once more.
func (a *Applier) Apply(ctx context.Context, db interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}, d decoded) (Applied, error) {
	res := Applied{}
	for _, r := range d.all {
		res.MaxSeq = max(res.MaxSeq, r.Seq)
	}
	skip := map[int64]bool{}
	for attempt := 0; attempt < 2; attempt++ {
		n, err := a.applyOnce(ctx, db, d, skip)
		if err == nil {
			res.Rows = n
			res.Replayed = len(skip)
			return res, nil
		}
		if !errors.Is(err, ErrRaced) {
			return res, err
		}
		if err := a.loadExisting(ctx, db, d, skip); err != nil {
			return res, err
		}
	}
	return res, ErrRaced
}

func (a *Applier) loadExisting(ctx context.Context, db interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}, d decoded, skip map[int64]bool) error {
	seqs := make([]int64, len(d.all))
	for i, r := range d.all {
		seqs[i] = r.Seq
	}
	tx, err := db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin ledger lookup: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	rows, err := tx.Query(ctx, existingSeqsSQL, a.NodeID, seqs)
	if err != nil {
		return fmt.Errorf("look up applied keys: %w", err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return fmt.Errorf("read applied keys: %w", err)
	}
	for _, s := range got {
		skip[s] = true
	}
	return nil
}

func (a *Applier) applyOnce(ctx context.Context, db interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}, d decoded, skip map[int64]bool) (int, error) {
	tx, err := db.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("begin batch: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()

	erasedAt, err := lockAddresses(ctx, tx, d, skip)
	if err != nil {
		return 0, err
	}
	// An erasure in this very batch covers the batch's other rows too,
	// whichever side of it they committed on at the edge.
	for _, c := range d.controls {
		if e := c.erasure; e != nil && !skip[c.row.Seq] {
			at := e.RequestedAt
			if at.IsZero() {
				at = c.row.ReceivedAt
			}
			if prev, ok := erasedAt[string(c.row.EmailHMAC)]; !ok || at.After(prev) {
				erasedAt[string(c.row.EmailHMAC)] = at
			}
		}
	}
	// covered reports whether a tombstone erased the row's address at or
	// after the row was captured: such a row must never come back.
	covered := func(r outbox.Row) bool {
		t, ok := erasedAt[string(r.EmailHMAC)]
		return ok && !t.Before(r.ReceivedAt)
	}

	b := &pgx.Batch{}
	var (
		seqs     []int64
		kinds    []string
		ids      []string
		received []time.Time
		outcomes []string
		segLeads []leadRow
		segGone  []leadRow // sign-ups a tombstone covers
		segEvts  []eventRow
	)
	flush := func() {
		if len(segLeads) > 0 {
			queueLeads(b, a.NodeID, segLeads, a.ImageAttempts, a.ImageDailyQuota)
			queueChallengeVerdicts(b, segLeads)
		}
		if len(segGone) > 0 {
			queueErasedLeads(b, a.NodeID, segGone)
		}
		if len(segEvts) > 0 {
			queueEvents(b, a.NodeID, segEvts)
		}
		segLeads, segGone, segEvts = nil, nil, nil
	}
	ledger := b.Queue(insertLedgerSQL) // arguments set below, once outcomes are known
	for i, r := range d.all {
		if skip[r.Seq] {
			continue
		}
		it := d.order[i]
		outcome := outcomeApplied
		switch {
		case it.erased:
			outcome = outcomeErased
		case it.kind == mailslot.KindLead && covered(r):
			outcome = outcomeErased
			segGone = append(segGone, d.leads[it.index])
		case it.kind == mailslot.KindLead:
			segLeads = append(segLeads, d.leads[it.index])
		case it.kind == mailslot.KindEvent:
			segEvts = append(segEvts, d.events[it.index])
		case it.kind == mailslot.KindConsent && covered(r):
			outcome = outcomeErased
		case it.kind == mailslot.KindChallenge: // after the sign-up it re-checks
			flush()
			queueVerdict(b, d.verdicts[it.index])
		default: // consent change or erasure: apply what came before it first
			flush()
			queueControl(b, a.NodeID, d.controls[it.index])
			queueMailControl(b, d.controls[it.index])
		}
		seqs = append(seqs, r.Seq)
		kinds = append(kinds, string(r.Kind))
		ids = append(ids, r.ID)
		received = append(received, r.ReceivedAt)
		outcomes = append(outcomes, outcome)
	}
	if len(seqs) == 0 {
		return 0, nil
	}
	flush()
	ledger.Arguments = []any{a.NodeID, seqs, kinds, ids, received, outcomes}
	b.Queue(upsertNodeSQL, a.NodeID, a.Region, seqs[len(seqs)-1], int64(len(seqs)))

	// The ledger's row count is checked before the batch commits: fewer
	// rows than sent means a concurrent writer (a recover run, a second
	// process on a restored volume) got there first.
	// inserted stays -1 unless the ledger statement ran. A replayed key
	// also makes a later statement fail (consent_records and events have a
	// unique submission_id), so the short count is checked before that
	// error: otherwise a replay would look like poison and be quarantined.
	inserted := int64(-1)
	ledger.Exec(func(ct pgconn.CommandTag) error {
		inserted = ct.RowsAffected()
		return nil
	})
	batchErr := tx.SendBatch(ctx, b).Close()
	if inserted >= 0 && inserted != int64(len(seqs)) {
		return 0, ErrRaced
	}
	if batchErr != nil {
		return 0, fmt.Errorf("apply batch of %d rows: %w", len(seqs), batchErr)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("commit batch of %d rows: %w", len(seqs), err)
	}
	return len(seqs), nil
}

func queueLeads(b *pgx.Batch, nodeID string, leads []leadRow, imageAttempts, imageQuota int) {
	merged := mergeLeads(leads)
	n := len(merged)
	var (
		props, emails, bases                  = make([]string, n), make([]string, n), make([]string, n)
		hmacs                                 = make([][]byte, n)
		names, fUTM, fPage, fRef, lUTM, lPage = make([]*string, n), make([]*string, n), make([]*string, n), make([]*string, n), make([]*string, n), make([]*string, n)
		lRef                                  = make([]*string, n)
		expressAt, impliedAt, nameAt          = make([]*time.Time, n), make([]*time.Time, n), make([]*time.Time, n)
		firstAt, lastAt                       = make([]time.Time, n), make([]time.Time, n)
		subs                                  = make([]int32, n)
	)
	for i, m := range merged {
		props[i], emails[i], hmacs[i], names[i], bases[i] = m.property, m.email, m.emailHMAC, m.name, m.basis
		expressAt[i], impliedAt[i] = m.expressAt, m.impliedAt
		if m.name != nil {
			nameAt[i] = &m.nameAt
		}
		firstAt[i], fUTM[i], fPage[i], fRef[i] = m.firstAt, m.firstUTM, m.firstPage, m.firstRef
		lastAt[i], lUTM[i], lPage[i], lRef[i] = m.lastAt, m.lastUTM, m.lastPg, m.lastRef
		subs[i] = m.submissions
	}
	m := len(leads)
	var (
		ids, cprops, statuses = make([]string, m), make([]string, m), make([]string, m)
		chmacs, ips           = make([][]byte, m), make([][]byte, m)
		policies, sources     = make([]*string, m), make([]*string, m)
		recorded              = make([]time.Time, m)
		seqs                  = make([]int64, m)
	)
	for i, l := range leads {
		cr := l.p.ConsentRecord
		ids[i], chmacs[i], cprops[i] = l.row.ID, l.row.EmailHMAC, l.p.Property
		policies[i], statuses[i], sources[i] = optional(cr.PolicyVersion), l.p.Consent, optional(cr.Source)
		recorded[i], ips[i], seqs[i] = l.row.ReceivedAt, l.row.IPHMAC, l.row.Seq
	}
	b.Queue(upsertLeadsSQL, props, emails, hmacs, names, bases, expressAt, impliedAt,
		firstAt, fUTM, fPage, fRef, lastAt, lUTM, lPage, lRef, subs, nameAt,
		nodeID, ids, chmacs, cprops, policies, statuses, sources, recorded, ips, seqs)
	queueLeadImages(b, leads, imageAttempts, imageQuota)
	queueMailJobs(b, leads)
}

func queueEvents(b *pgx.Batch, nodeID string, events []eventRow) {
	n := len(events)
	var (
		ids, props, types, payloads = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		received                    = make([]time.Time, n)
		client                      = make([]*time.Time, n)
		ips                         = make([][]byte, n)
		seqs                        = make([]int64, n)
		leadSubs                    = make([]*string, n)
	)
	for i, e := range events {
		ids[i], props[i], types[i], payloads[i] = e.row.ID, e.ev.Property, e.ev.Type, string(e.row.Payload)
		received[i], client[i], ips[i], seqs[i] = e.row.ReceivedAt, e.ev.ClientTime, e.row.IPHMAC, e.row.Seq
		if _, err := uuid.Parse(e.ev.SubmissionID); err == nil {
			leadSubs[i] = &e.ev.SubmissionID
		}
	}
	b.Queue(insertEventsSQL, nodeID, ids, props, types, received, client, payloads, ips, seqs, leadSubs)
}

func queueLeadImages(b *pgx.Batch, leads []leadRow, attempts, quota int) {
	var props, urls []string
	var hmacs [][]byte
	for _, l := range leads {
		if l.p.ImageURL != "" {
			props, hmacs, urls = append(props, l.p.Property), append(hmacs, l.row.EmailHMAC), append(urls, l.p.ImageURL)
		}
	}
	if len(urls) == 0 {
		return
	}
	if attempts <= 0 {
		attempts = 5
	}
	b.Queue(insertLeadImagesSQL, attempts, props, hmacs, urls, quota)
}
