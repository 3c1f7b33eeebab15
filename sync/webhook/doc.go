// Package webhook carries lead events downstream as signed outbound
// webhooks (Standard Webhooks, internal/stdwebhook), and makes an erasure
// follow everything that was sent.
//
// Four parts, all on Postgres (pgschema 008):
//
//   - Emission, in the caller's transaction: QueueEmit (a pipelined
//     pgx.Batch, as the sync applies batches) or Emit writes an event,
//     one narrow row, and nothing else. The payload is read from the
//     lead's row by the same statement, so it says what the transaction
//     wrote. No subscriber, no stored event.
//   - Fan-out, by the deliverer at the start of every round (FanOut):
//     each new event becomes one delivery per enabled subscription whose
//     types and property match, one fan-out at a time, in event order.
//     Keeping this out of the sync's transaction is what keeps the
//     sync's drain rate with a subscription close to its rate without.
//   - Erasure, in the erasure's transaction: QueueErase or EraseLead
//     scrubs every stored event of the address's leads, cancels every
//     delivery not yet made, and queues lead.erased to each subscription
//     that was sent (or was due) anything about the lead, recording it
//     against the tombstone (mailslot.webhook_erasure_deliveries).
//   - Delivery, apart from the sync on its own pool: a Deliverer claims
//     due deliveries with leases (FOR UPDATE SKIP LOCKED), one lead's
//     events to one subscription strictly in order, POSTs them through
//     internal/safedial, and retries failures with jittered exponential
//     backoff for three days from the first attempt. 2xx is delivered; 410
//     disables the subscription; a 3xx is a failure (redirects are not
//     followed).
//
// # Deliveries
//
// Every request is a POST with Content-Type application/json and the
// headers webhook-id (the event's id: the same on every retry, the
// receiver's idempotency key), webhook-timestamp (Unix seconds of the
// attempt) and webhook-signature ("v1,<base64>" per live secret: two while
// a rotated-out secret overlaps the new one). The body is the Standard
// Webhooks envelope: {"type", "timestamp" (when the event was written),
// "data"}. Times are RFC 3339 in UTC. Receivers should answer 2xx quickly,
// dedupe on webhook-id, and answer 410 to stop deliveries for good.
//
// # Payloads
//
// lead.created, once per lead: when the sync inserts it (CreatedCTE: one
// record per sync batch, expanded by the fan-out, whose payload is the
// lead as it stands then), or an erasure resets it; a later emit for the
// same lead writes nothing:
//
//	{"type":"lead.created","timestamp":"2026-03-01T12:00:00.000000Z","data":{
//	  "id":"5b0c4bd6-8f3e-4d61-9a1e-3f7f0f2b9c11","property":"site.example",
//	  "email":"ann@example.com","name":"Ann Example","consent":"express",
//	  "utm":{"utm_source":"news","utm_campaign":"spring"},"page":"/signup",
//	  "referrer":"https://news.example/","created_at":"2026-03-01T11:59:58.120000Z"}}
//
// consent is the lead's status when the event was written: pending,
// implied, express or withdrawn; utm, page, referrer and name may be null.
//
// lead.confirmed, when the address is confirmed through the confirm link:
//
//	{"type":"lead.confirmed","timestamp":"…","data":{
//	  "id":"5b0c4bd6-…","property":"site.example","email":"ann@example.com",
//	  "consent":"express","confirmed_at":"2026-03-01T12:03:10.000000Z"}}
//
// lead.unsubscribed, reason withdrawn (the person), bounced or complained
// (the mail system):
//
//	{"type":"lead.unsubscribed","timestamp":"…","data":{
//	  "id":"5b0c4bd6-…","property":"site.example","email":"ann@example.com",
//	  "reason":"withdrawn","unsubscribed_at":"2026-04-02T08:00:00.000000Z"}}
//
// lead.erased carries nothing personal; the receiver deletes what it holds
// under the id:
//
//	{"type":"lead.erased","timestamp":"…","data":{
//	  "id":"5b0c4bd6-…","property":"site.example","erased_at":"2026-05-01T09:30:00.000000Z"}}
//
// After an erasure every stored event of the lead holds only {"id",
// "property"}. A lead that survives an erasure (sign-ups from after it)
// gets a new public id, so that what it becomes is not linked to what the
// receivers erased.
package webhook
