package outbox_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailslot/mailslot"
	"github.com/mailslot/mailslot/internal/addrscrub"
	"github.com/mailslot/mailslot/outbox"
)

const (
	annAddr = "ann.lee+news@example.com"
	bobAddr = "bob@example.org"
)

var (
	annHash = bytes.Repeat([]byte{0xa1}, 32)
	bobHash = bytes.Repeat([]byte{0xb0}, 32)
)

// signUps is one submission of n sign-ups of addr captured at at: one
// transaction, however large n is.
func signUps(addr string, hash []byte, n int, at time.Time) outbox.Submission {
	recs := make([]outbox.Record, n)
	payload := []byte(`{"email":"` + addr + `","property":"shop.example","consent":"express"}`)
	for i := range recs {
		recs[i] = outbox.Record{ID: fmt.Sprintf("lead-%x-%d-%d", hash[:2], at.UnixNano(), i), Kind: mailslot.KindLead,
			ReceivedAt: at, Payload: payload, EmailHMAC: hash, IPHMAC: append([]byte("ip-"), hash[:2]...)}
	}
	return outbox.Submission{Records: recs}
}

// keyedSignUp is a sign-up with an idempotency key, whose key an erasure
// must forget.
func keyedSignUp(addr string, hash []byte, key string, at time.Time) outbox.Submission {
	s := signUps(addr, hash, 1, at)
	s.Records[0].ID = "keyed-" + key
	s.IdemKey, s.BodyHash, s.Response = key, []byte(key), s.Records[0].ID
	return s
}

// event is a telemetry row naming submission (or none) with props.
func event(id, submission string, props map[string]any, at time.Time) outbox.Submission {
	p := map[string]any{"type": "click", "property": "shop.example", "props": props}
	if submission != "" {
		p["submission_id"] = submission
	}
	b, _ := json.Marshal(p)
	return outbox.Submission{Records: []outbox.Record{{ID: id, Kind: mailslot.KindEvent, ReceivedAt: at, Payload: b, IPHMAC: []byte("ip-ev")}}}
}

func erasureRecord(at time.Time) outbox.Record {
	b, _ := json.Marshal(mailslot.ErasureRequest{RequestedAt: at, RequestedBy: "admin"})
	return outbox.Record{ID: fmt.Sprintf("erasure-%d", at.UnixNano()), Kind: mailslot.KindErasure, ReceivedAt: at, Payload: b, EmailHMAC: annHash}
}

// realSize is past SQLite's 32,766 bound variables: an erasure that binds
// one per row cannot run.
const realSize = 33_000

func TestEraseAtRealSize(t *testing.T) {
	for _, how := range []string{"EraseAndRecord", "ApplyTombstones"} {
		t.Run(how, func(t *testing.T) {
			ctx := context.Background()
			out := open(t, t.TempDir())
			at := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
			mustSubmit(t, out, signUps(annAddr, annHash, realSize, at))
			mustSubmit(t, out, keyedSignUp(annAddr, annHash, "ann-key", at))
			mustSubmit(t, out, signUps(bobAddr, bobHash, 3, at))
			mustSubmit(t, out, keyedSignUp(bobAddr, bobHash, "bob-key", at))
			mustSubmit(t, out, event("ev-linked", "keyed-ann-key", map[string]any{"plan": "pro"}, at))
			if n := count(t, out, `SELECT count(*) FROM outbox WHERE email_hmac = ?`, annHash); n != realSize+1 {
				t.Fatalf("%d rows of the address, want %d", n, realSize+1)
			}
			later := at.Add(time.Second)
			switch how {
			case "EraseAndRecord":
				n, err := out.EraseAndRecord(ctx, annHash, erasureRecord(later))
				if err != nil {
					t.Fatalf("EraseAndRecord: %v", err)
				}
				if n != realSize+1 {
					t.Errorf("EraseAndRecord scrubbed %d rows, want %d", n, realSize+1)
				}
				// Another address's tombstone after it still applies.
				if _, err := out.ApplyTombstones(ctx, []outbox.Tombstone{{ID: 7, EmailHMAC: bobHash, ErasedAt: later}}); err != nil {
					t.Fatalf("ApplyTombstones: %v", err)
				}
			case "ApplyTombstones":
				n, err := out.ApplyTombstones(ctx, []outbox.Tombstone{
					{ID: 6, EmailHMAC: annHash, ErasedAt: later}, {ID: 7, EmailHMAC: bobHash, ErasedAt: later}})
				if err != nil {
					t.Fatalf("ApplyTombstones: %v", err)
				}
				if n != realSize+1+4 {
					t.Errorf("ApplyTombstones scrubbed %d rows, want %d", n, realSize+1+4)
				}
			}
			if c, err := out.TombstoneCursor(ctx); err != nil || c != 7 {
				t.Errorf("cursor = %d, %v; want 7", c, err)
			}
			for _, h := range [][]byte{annHash, bobHash} {
				if n := count(t, out, `SELECT count(*) FROM outbox WHERE email_hmac = ? AND kind != 'erasure'`, h); n != 0 {
					t.Errorf("%d rows still carry an erased hash", n)
				}
			}
			if n := count(t, out, `SELECT count(*) FROM outbox WHERE kind = 'lead' AND payload != ?`, mailslot.ErasedPayload); n != 0 {
				t.Errorf("%d sign-ups not scrubbed", n)
			}
			if n := count(t, out, `SELECT count(*) FROM idempotency`); n != 0 {
				t.Errorf("%d idempotency keys of erased rows remain", n)
			}
			if n := count(t, out, `SELECT count(*) FROM outbox WHERE kind = 'event' AND (json_extract(payload, '$.submission_id') IS NOT NULL OR ip_hmac IS NOT NULL)`); n != 0 {
				t.Errorf("the event still names the erased sign-up")
			}
		})
	}
}

// writable opens the outbox file beside the outbox, as an operator's
// sqlite3 would.
func writable(t *testing.T, dir string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, outbox.FileName)+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func TestAFailingTombstoneDoesNotStopTheOnesAfterIt(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	out := open(t, dir)
	at := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	mustSubmit(t, out, signUps(annAddr, annHash, 3, at))
	mustSubmit(t, out, signUps(bobAddr, bobHash, 3, at))
	// A trigger makes every scrub of ann's rows fail, as a damaged page or
	// anything else but a full disk would.
	db := writable(t, dir)
	jam := fmt.Sprintf(`CREATE TRIGGER jam BEFORE UPDATE ON outbox WHEN OLD.email_hmac = X'%x'
		BEGIN SELECT RAISE(ABORT, 'jammed'); END`, annHash)
	if _, err := db.Exec(jam); err != nil {
		t.Fatal(err)
	}
	later := at.Add(time.Second)
	if _, err := out.ApplyTombstones(ctx, []outbox.Tombstone{
		{ID: 1, EmailHMAC: annHash, ErasedAt: later}, {ID: 2, EmailHMAC: bobHash, ErasedAt: later}}); err != nil {
		t.Fatalf("ApplyTombstones: %v", err)
	}
	if c, _ := out.TombstoneCursor(ctx); c != 2 {
		t.Errorf("cursor = %d, want 2: the failing tombstone held back the page", c)
	}
	if n := count(t, out, `SELECT count(*) FROM outbox WHERE email_hmac = ?`, bobHash); n != 0 {
		t.Errorf("%d rows of the address after the failing one not scrubbed", n)
	}
	if n := count(t, out, `SELECT count(*) FROM outbox WHERE email_hmac = ?`, annHash); n != 3 {
		t.Errorf("%d rows of the failing address, want 3 (rolled back, not half-scrubbed)", n)
	}
	fails, total, err := out.TombstoneFailures(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if total != 1 || len(fails) != 1 || fails[0].ID != 1 || fails[0].Attempts != 1 || !strings.Contains(fails[0].LastError, "jammed") {
		t.Fatalf("failures = %d %+v, want tombstone 1 once, jammed", total, fails)
	}

	// Not due yet: the retry waits.
	now := time.Now()
	if applied, _, err := out.RetryTombstones(ctx, now); err != nil || applied != 0 {
		t.Errorf("RetryTombstones before it is due = %d, %v", applied, err)
	}
	// Due, still jammed: one more attempt, a longer wait.
	if applied, _, err := out.RetryTombstones(ctx, fails[0].NextAttemptAt); err != nil || applied != 0 {
		t.Errorf("RetryTombstones while jammed = %d, %v", applied, err)
	}
	again, _, _ := out.TombstoneFailures(ctx, 10)
	if len(again) != 1 || again[0].Attempts != 2 || !again[0].NextAttemptAt.After(fails[0].NextAttemptAt) {
		t.Errorf("after a second failure: %+v", again)
	}
	if _, err := db.Exec(`DROP TRIGGER jam`); err != nil {
		t.Fatal(err)
	}
	applied, rows, err := out.RetryTombstones(ctx, again[0].NextAttemptAt)
	if err != nil || applied != 1 || rows != 3 {
		t.Fatalf("RetryTombstones = %d, %d, %v; want 1 tombstone, 3 rows", applied, rows, err)
	}
	if n := count(t, out, `SELECT count(*) FROM outbox WHERE email_hmac = ?`, annHash); n != 0 {
		t.Errorf("%d rows of the retried address not scrubbed", n)
	}
	if _, total, _ := out.TombstoneFailures(ctx, 10); total != 0 {
		t.Errorf("%d failures left after the retry applied", total)
	}
}

// needles are the address as it would sit in the file's bytes.
var needles = [][]byte{[]byte(annAddr), []byte(url.QueryEscape(annAddr)), []byte("ann.lee")}

func fileHolds(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, n := range needles {
		if bytes.Contains(b, n) {
			found = append(found, string(n))
		}
	}
	return found
}

func TestErasedBytesLeaveTheFiles(t *testing.T) {
	for _, how := range []string{"EraseAndRecord", "ApplyTombstones"} {
		t.Run(how, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			out := open(t, dir)
			at := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
			mustSubmit(t, out, signUps(annAddr, annHash, 20, at))
			mustSubmit(t, out, keyedSignUp(annAddr, annHash, "k1", at))
			mustSubmit(t, out, event("ev-quoting", "", map[string]any{"contact": "mailto:" + annAddr,
				"link": "https://x.example/?to=" + url.QueryEscape(annAddr), "other": "see bob@example.org"}, at))
			mustSubmit(t, out, signUps(bobAddr, bobHash, 20, at))
			db := filepath.Join(dir, outbox.FileName)
			if got := append(fileHolds(t, db), fileHolds(t, db+"-wal")...); len(got) == 0 {
				t.Fatal("the address is not in the files before the erasure: the test proves nothing")
			}
			later := at.Add(time.Second)
			var err error
			if how == "EraseAndRecord" {
				_, err = out.EraseAndRecord(ctx, annHash, erasureRecord(later))
			} else {
				_, err = out.ApplyTombstones(ctx, []outbox.Tombstone{{ID: 1, EmailHMAC: annHash, ErasedAt: later}})
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{db, db + "-wal"} {
				if got := fileHolds(t, p); len(got) > 0 {
					t.Errorf("%s still holds %q after the erasure", filepath.Base(p), got)
				}
			}
			if out.WALScrubOwed() {
				t.Error("WALScrubOwed after a checkpoint that should have finished")
			}
			// The event keeps everything but the address.
			var payload string
			if err := out.DB().QueryRow(`SELECT payload FROM outbox WHERE id = 'ev-quoting'`).Scan(&payload); err != nil {
				t.Fatal(err)
			}
			m, _ := addrscrub.New(annAddr)
			if _, found := m.Redact(payload); found {
				t.Errorf("event payload still holds the address: %s", payload)
			}
			for _, want := range []string{`"mailto:[email]"`, `"https://x.example/?to=[email]"`, `see bob@example.org`} {
				if !strings.Contains(payload, want) {
					t.Errorf("event payload %s lacks %s", payload, want)
				}
			}
			if n := count(t, out, `SELECT count(*) FROM outbox WHERE email_hmac = ?`, bobHash); n != 20 {
				t.Errorf("another address lost rows: %d", n)
			}
		})
	}
}
