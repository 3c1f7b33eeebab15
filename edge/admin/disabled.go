package admin

import (
	"context"
	"time"

	"github.com/mailslot/mailslot/outbox"
	"github.com/mailslot/mailslot/pgschema"
	"github.com/mailslot/mailslot/sync/drain"
)

// Disabled is the status of an edge without DATABASE_URL: state
// "disabled", the outbox's counts, and Sync saying why. The node adds the
// other workers' members; a test edge serves it as it is.
func Disabled(ctx context.Context, out *outbox.Outbox, nodeID, region string, now time.Time) (SyncStatus, error) {
	ob, err := out.Stats(ctx)
	if err != nil {
		return SyncStatus{}, err
	}
	st := SyncStatus{Sync: "disabled: DATABASE_URL is not set", Status: drain.Status{
		NodeID: nodeID, Region: region, State: StateDisabled,
		Pending: ob.Pending, Quarantined: ob.Quarantined, SyncedRetained: ob.Synced, LastSeq: ob.LastSeq,
		SchemaRequired: pgschema.Required(),
	}}
	if ob.OldestPendingAt != nil {
		st.OldestPendingAgeSeconds = now.Sub(*ob.OldestPendingAt).Seconds()
	}
	return st, nil
}
