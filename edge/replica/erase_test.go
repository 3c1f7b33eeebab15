package replica_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mailslot/mailslot"
	"github.com/mailslot/mailslot/outbox"
)

// With a replica, Litestream holds a read transaction on the outbox, so
// only Litestream can truncate the WAL after an erasure: the node hands
// the outbox Replicator.CheckpointTruncate, and the erased address then
// leaves outbox.db-wal at once.
func TestErasureTruncatesTheWALThroughTheReplica(t *testing.T) {
	const addr = "wal.person@example.com"
	hash := sha256.Sum256([]byte(addr))
	dir := t.TempDir()
	out := openOutbox(t, dir)
	defer out.Close()
	r := startReplicator(t, fileBase(t), out, 50*time.Millisecond)
	defer r.Close(context.Background())
	out.SetErasureCheckpoint(r.CheckpointTruncate)

	at := time.Now().Add(-time.Minute).UTC()
	payload, _ := json.Marshal(mailslot.LeadPayload{Lead: mailslot.Lead{Email: addr, Property: "p", Consent: mailslot.ConsentPending},
		ConsentRecord: mailslot.ConsentRecord{Property: "p", Status: mailslot.ConsentPending, RecordedAt: at}})
	for range 5 {
		if _, err := out.Submit(context.Background(), outbox.Submission{Records: []outbox.Record{{
			ID: uuid.NewString(), Kind: mailslot.KindLead, ReceivedAt: at, Payload: payload, EmailHMAC: hash[:],
		}}}); err != nil {
			t.Fatal(err)
		}
	}
	waitReplicated(t, r, out.LastSeq(), 10*time.Second)
	wal := filepath.Join(dir, outbox.FileName+"-wal")
	if b, _ := os.ReadFile(wal); !bytes.Contains(b, []byte(addr)) {
		t.Fatal("the address is not in the WAL before the erasure: the test proves nothing")
	}
	req, _ := json.Marshal(mailslot.ErasureRequest{RequestedAt: at.Add(time.Second), RequestedBy: "test"})
	if _, err := out.EraseAndRecord(context.Background(), hash[:], outbox.Record{
		ID: uuid.NewString(), Kind: mailslot.KindErasure, ReceivedAt: at.Add(time.Second), Payload: req, EmailHMAC: hash[:],
	}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(dir, outbox.FileName), wal} {
		if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(addr)) {
			t.Errorf("%s still holds the erased address", filepath.Base(p))
		}
	}
	if out.WALScrubOwed() {
		t.Error("the checkpoint after the erasure is still owed")
	}
}
