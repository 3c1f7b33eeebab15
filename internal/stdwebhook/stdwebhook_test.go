package stdwebhook_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mailslot/mailslot/internal/stdwebhook"
	"github.com/mailslot/mailslot/internal/stdwebhook/stdwebhooktest"
)

// The specification's own example (standard-webhooks spec and every
// official library's tests).
const (
	specSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	specID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	specTS     = 1614265330
	specBody   = `{"test": 2432232314}`
	specSig    = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func TestSignMatchesSpecificationExample(t *testing.T) {
	sec := stdwebhook.MustParseSecret(specSecret)
	got := stdwebhook.Sign([]stdwebhook.Secret{sec}, specID, time.Unix(specTS, 0), []byte(specBody))
	if got != specSig {
		t.Fatalf("Sign = %q, want %q", got, specSig)
	}
	if err := stdwebhook.Verify([]stdwebhook.Secret{sec}, specID, "1614265330", specSig, []byte(specBody), time.Unix(specTS+60, 0), 0); err != nil {
		t.Fatalf("Verify of the specification's example: %v", err)
	}
}

func TestParseSecret(t *testing.T) {
	tests := []struct {
		name, in, wantErr string
	}{
		{"spec example", specSecret, ""},
		{"surrounding space", "  " + specSecret + "\n", ""},
		{"no prefix", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "must start with whsec_"},
		{"empty after prefix", "whsec_", "empty after whsec_"},
		{"not base64", "whsec_!!!!not-base64!!!!", "not standard base64"},
		{"too short", "whsec_YWJj", "key is 3 bytes"},
		{"empty", "", "must start with whsec_"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := stdwebhook.ParseSecret(tt.in)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ParseSecret: %v", err)
				}
				if s.Encode() != strings.TrimSpace(tt.in) {
					t.Errorf("Encode = %q, want %q", s.Encode(), strings.TrimSpace(tt.in))
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ParseSecret(%q) = %v, want an error containing %q", tt.in, err, tt.wantErr)
			}
			if len(tt.in) > 10 && strings.Contains(err.Error(), strings.TrimPrefix(tt.in, "whsec_")) {
				t.Errorf("error %q repeats the secret", err)
			}
		})
	}
}

func TestNewSecretRoundTripsAndHidesItself(t *testing.T) {
	a, err := stdwebhook.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	b, err := stdwebhook.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	if a.Equal(b) {
		t.Fatal("two generated secrets are equal")
	}
	parsed, err := stdwebhook.ParseSecret(a.Encode())
	if err != nil || !parsed.Equal(a) {
		t.Fatalf("ParseSecret(Encode()) = %v, %v", parsed, err)
	}
	if len(a.Encode()) != len("whsec_")+44 {
		t.Errorf("Encode length %d, want whsec_ and 32 bytes of base64", len(a.Encode()))
	}
	for _, s := range []string{fmt.Sprint(a), fmt.Sprintf("%v %+v %#v %s", a, a, a, a)} {
		if strings.Contains(s, strings.TrimPrefix(a.Encode(), "whsec_")) {
			t.Errorf("formatting a secret shows its key: %q", s)
		}
	}
}

func TestVerify(t *testing.T) {
	oldSec, newSec, other := mustSecret(t), mustSecret(t), mustSecret(t)
	now := time.Unix(1_700_000_000, 0)
	body := []byte(`{"type":"lead.created","data":{"id":"x"}}`)
	both := stdwebhook.Sign([]stdwebhook.Secret{newSec, oldSec}, "msg_1", now, body)
	ts := stdwebhook.Timestamp(now)
	tests := []struct {
		name     string
		secrets  []stdwebhook.Secret
		id, ts   string
		sig      string
		body     []byte
		now      time.Time
		tolerate time.Duration
		want     error
	}{
		{"both signatures, new secret", []stdwebhook.Secret{newSec}, "msg_1", ts, both, body, now, 0, nil},
		{"both signatures, old secret", []stdwebhook.Secret{oldSec}, "msg_1", ts, both, body, now, 0, nil},
		{"wrong secret", []stdwebhook.Secret{other}, "msg_1", ts, both, body, now, 0, stdwebhook.ErrNoMatch},
		{"tampered body", []stdwebhook.Secret{newSec}, "msg_1", ts, both, []byte(`{"type":"lead.erased"}`), now, 0, stdwebhook.ErrNoMatch},
		{"other id", []stdwebhook.Secret{newSec}, "msg_2", ts, both, body, now, 0, stdwebhook.ErrNoMatch},
		{"unknown versions only", []stdwebhook.Secret{newSec}, "msg_1", ts, "v1a,abc v2,def", body, now, 0, stdwebhook.ErrMalformed},
		{"unknown version beside ours", []stdwebhook.Secret{newSec}, "msg_1", ts, "v1a,abc " + both, body, now, 0, nil},
		{"5 minutes late is fine", []stdwebhook.Secret{newSec}, "msg_1", ts, both, body, now.Add(5 * time.Minute), 0, nil},
		{"too old", []stdwebhook.Secret{newSec}, "msg_1", ts, both, body, now.Add(5*time.Minute + time.Second), 0, stdwebhook.ErrTimestamp},
		{"too new", []stdwebhook.Secret{newSec}, "msg_1", ts, both, body, now.Add(-6 * time.Minute), 0, stdwebhook.ErrTimestamp},
		{"wider tolerance", []stdwebhook.Secret{newSec}, "msg_1", ts, both, body, now.Add(time.Hour), 2 * time.Hour, nil},
		{"missing id", []stdwebhook.Secret{newSec}, "", ts, both, body, now, 0, stdwebhook.ErrMissingHeaders},
		{"missing signature", []stdwebhook.Secret{newSec}, "msg_1", ts, "", body, now, 0, stdwebhook.ErrMissingHeaders},
		{"timestamp not digits", []stdwebhook.Secret{newSec}, "msg_1", "17e8", both, body, now, 0, stdwebhook.ErrMalformed},
		{"id with space", []stdwebhook.Secret{newSec}, "msg 1", ts, both, body, now, 0, stdwebhook.ErrMalformed},
		{"entry without comma", []stdwebhook.Secret{newSec}, "msg_1", ts, "v1" + strings.Repeat("a", 10), body, now, 0, stdwebhook.ErrMalformed},
		{"huge header", []stdwebhook.Secret{newSec}, "msg_1", ts, strings.Repeat("v1,a ", 1000), body, now, 0, stdwebhook.ErrMalformed},
		{"too many entries", []stdwebhook.Secret{newSec}, "msg_1", ts, strings.Repeat("v1,a ", 17), body, now, 0, stdwebhook.ErrMalformed},
		{"no secrets", nil, "msg_1", ts, both, body, now, 0, stdwebhook.ErrNoSecrets},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := stdwebhook.Verify(tt.secrets, tt.id, tt.ts, tt.sig, tt.body, tt.now, tt.tolerate)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestCheckHeadersNeedsNoBody(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	sig := stdwebhook.Sign([]stdwebhook.Secret{mustSecret(t)}, "msg_1", now, []byte("{}"))
	if err := stdwebhook.CheckHeaders("msg_1", stdwebhook.Timestamp(now), sig, now, 0); err != nil {
		t.Fatalf("CheckHeaders of a well-formed delivery: %v", err)
	}
	if err := stdwebhook.CheckHeaders("msg_1", stdwebhook.Timestamp(now.Add(-time.Hour)), sig, now, 0); !errors.Is(err, stdwebhook.ErrTimestamp) {
		t.Fatalf("CheckHeaders of an hour-old delivery = %v, want ErrTimestamp", err)
	}
}

func TestSignWithoutSecretsIsEmpty(t *testing.T) {
	if got := stdwebhook.Sign(nil, "msg_1", time.Now(), []byte("{}")); got != "" {
		t.Fatalf("Sign(nil) = %q, want empty", got)
	}
}

// TestOfficialLibraryVerifiesOurSignatures holds Sign to the official
// JavaScript library: one signature, and the two a rotation sends, each
// accepted by a receiver that knows only one of the secrets.
func TestOfficialLibraryVerifiesOurSignatures(t *testing.T) {
	oldSec, newSec := mustSecret(t), mustSecret(t)
	now := time.Now()
	body := []byte(`{"type":"lead.created","timestamp":"2026-01-02T03:04:05Z","data":{"email":"ann@example.com","name":"Zoë"}}`)
	tests := []struct {
		name    string
		signers []stdwebhook.Secret
		knows   stdwebhook.Secret
		ok      bool
	}{
		{"single secret", []stdwebhook.Secret{newSec}, newSec, true},
		{"rotation, receiver knows the new", []stdwebhook.Secret{newSec, oldSec}, newSec, true},
		{"rotation, receiver knows the old", []stdwebhook.Secret{newSec, oldSec}, oldSec, true},
		{"receiver knows another", []stdwebhook.Secret{newSec}, oldSec, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sig := stdwebhook.Sign(tt.signers, "msg_2Qk", now, body)
			err := stdwebhooktest.Verify(t, tt.knows.Encode(), "msg_2Qk", stdwebhook.Timestamp(now), sig, body)
			if tt.ok && err != nil {
				t.Fatalf("the official library refused our signature %q: %v", sig, err)
			}
			if !tt.ok && err == nil {
				t.Fatal("the official library accepted a signature made with another secret")
			}
		})
	}
}

// TestWeVerifyOfficialLibrarySignatures is the other direction: what the
// official library signs, Verify accepts, and a tampered copy it refuses.
func TestWeVerifyOfficialLibrarySignatures(t *testing.T) {
	sec := mustSecret(t)
	now := time.Now()
	body := []byte(`{"id":"p1","status":"succeeded","output":"a cat"}`)
	sig := stdwebhooktest.Sign(t, sec.Encode(), "msg_abc", now, body)
	if err := stdwebhook.Verify([]stdwebhook.Secret{sec}, "msg_abc", stdwebhook.Timestamp(now), sig, body, now, 0); err != nil {
		t.Fatalf("Verify of the official library's signature: %v", err)
	}
	if err := stdwebhook.Verify([]stdwebhook.Secret{sec}, "msg_abc", stdwebhook.Timestamp(now), sig, append(body, ' '), now, 0); !errors.Is(err, stdwebhook.ErrNoMatch) {
		t.Fatalf("Verify of a tampered body = %v, want ErrNoMatch", err)
	}
}

func mustSecret(t *testing.T) stdwebhook.Secret {
	t.Helper()
	s, err := stdwebhook.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func FuzzVerifyNeverPanics(f *testing.F) {
	f.Add("msg_1", "1700000000", "v1,abc", []byte("{}"))
	f.Add("", "", "", []byte(nil))
	f.Add("m", "99999999999999999999", "v1,"+strings.Repeat("A", 44), []byte("x"))
	sec := stdwebhook.MustParseSecret(specSecret)
	f.Fuzz(func(t *testing.T, id, ts, sig string, body []byte) {
		_ = stdwebhook.Verify([]stdwebhook.Secret{sec}, id, ts, sig, body, time.Unix(1_700_000_000, 0), 0)
	})
}
