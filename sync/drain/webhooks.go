package drain

import (
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mailslot/mailslot"
	"github.com/mailslot/mailslot/sync/webhook"
)

// Webhook events are written in the batch's own transaction: lead.created
// by the lead upsert itself (upsertLeadsSQL, webhook.CreatedCTE), the
// rest by the statements below, queued right after the statement whose
// change they describe (sync/webhook reads the payload from the lead's row
// as that statement left it). With no enabled subscription they store
// nothing.
//
// The events are well formed by construction (decode refuses rows without
// a property or an address hash), so QueueEmit's only error cannot occur;
// a malformed one would be skipped, never written half.

// queueConsentEvent queues lead.confirmed or lead.unsubscribed after a
// consent change, as of when the edge received it. An unsubscribe's
// reason comes from the change's source (unsubscribeReason). A change for
// a lead that has not synced yet writes nothing: its lead.created will
// carry the consent it inherits.
func queueConsentEvent(b *pgx.Batch, t webhook.Type, property, source string, emailHMAC []byte, at time.Time) {
	ev := webhook.Event{Type: t, Property: property, EmailHMAC: emailHMAC, At: at}
	if t == webhook.LeadUnsubscribed {
		ev.Reason = unsubscribeReason(source)
	}
	_ = webhook.QueueEmit(b, ev)
}

// unsubscribeReason is lead.unsubscribed's reason for a withdrawal from
// source: bounced or complained when mail feedback made it, withdrawn
// (the person followed a link or a one-click post) otherwise.
func unsubscribeReason(source string) string {
	switch source {
	case mailslot.SourceHardBounce:
		return webhook.ReasonBounced
	case mailslot.SourceComplaint:
		return webhook.ReasonComplained
	}
	return webhook.ReasonWithdrawn
}

// queueWebhookErasure queues the webhook side of an erasure: scrub the
// address's stored events, cancel their undelivered deliveries and queue
// lead.erased. It must follow the tombstone insert and precede the
// statements that delete and reset the leads.
func queueWebhookErasure(b *pgx.Batch, emailHMAC []byte) {
	webhook.QueueErase(b, emailHMAC, nil)
}

// queueResetLeadsCreated queues lead.created for the leads an erasure
// reset (those with sign-ups from after it): to the receivers they are new
// leads, under the new public id the erasure gave them. Queue it after the
// reset; by then every lead left of the address is one.
func queueResetLeadsCreated(b *pgx.Batch, emailHMAC []byte) {
	_ = webhook.QueueEmit(b, webhook.Event{Type: webhook.LeadCreated, EmailHMAC: emailHMAC, EveryProperty: true})
}
