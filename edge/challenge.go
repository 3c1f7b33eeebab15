package edge

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/mailslot/mailslot/edge/admin"
	"github.com/mailslot/mailslot/internal/challenge"
	"github.com/mailslot/mailslot/internal/challenge/policy"
	"github.com/mailslot/mailslot/internal/config"
	"github.com/mailslot/mailslot/internal/metrics"
	"github.com/mailslot/mailslot/sync/challenges"
)

// powKey is MAILSLOT_CHALLENGE_KEY, or, when it is unset, a key derived
// from MAILSLOT_TOKEN_KEY: every edge already shares that secret (its
// links must verify anywhere), so a solution issued by one edge verifies
// at another without one more secret to distribute.
func powKey(cfg *config.Config) []byte {
	if cfg.Challenge.Key != "" {
		return []byte(cfg.Challenge.Key)
	}
	m := hmac.New(sha256.New, []byte(cfg.TokenKey))
	m.Write([]byte("mailslot/challenge/pow/v1"))
	return m.Sum(nil)
}

// openChallenges builds the challenge policy from the fleet default and
// the settings kept in the data directory, and the puller that keeps them
// current when there is a Postgres.
func openChallenges(cfg *config.Config, log *slog.Logger) (*policy.Policy, *challenges.Puller, error) {
	var pow *challenge.PoW
	if key := powKey(cfg); len(key) >= challenge.MinKeyLen {
		var err error
		pow, err = challenge.NewPoW(challenge.PoWConfig{Key: key, MaxNumber: int64(cfg.Challenge.MaxNumber), Lifetime: cfg.Challenge.Lifetime})
		if err != nil {
			return nil, nil, fmt.Errorf("MAILSLOT_CHALLENGE_KEY: %w", err)
		}
	}
	def, err := challenge.ParseKind(cfg.Challenge.Default)
	if err != nil {
		return nil, nil, fmt.Errorf("MAILSLOT_CHALLENGE: %w", err)
	}
	noJS, err := policy.ParseNoJS(cfg.Challenge.DefaultNoJS)
	if err != nil {
		return nil, nil, fmt.Errorf("MAILSLOT_CHALLENGE_NO_JS: %w", err)
	}
	pol, err := policy.New(policy.Options{
		File:         filepath.Join(cfg.DataDir, policy.FileName),
		DefaultKind:  def,
		DefaultNoJS:  noJS,
		PoW:          pow,
		Timeout:      cfg.Challenge.Timeout,
		TurnstileURL: cfg.Challenge.TurnstileURL,
		HCaptchaURL:  cfg.Challenge.HCaptchaURL,
		Logger:       log.With("component", "challenges"),
	})
	if err != nil {
		return nil, nil, err
	}
	if cfg.DatabaseURL == "" {
		return pol, nil, nil
	}
	puller, err := challenges.New(challenges.Options{
		Policy: pol, DatabaseURL: cfg.DatabaseURL, Interval: cfg.Challenge.PullInterval,
		Logger: log.With("worker", "challenges"),
	})
	if err != nil {
		return nil, nil, err
	}
	return pol, puller, nil
}

func (n *Node) challengeStatus() *admin.ChallengeStatus {
	if n.Challenges == nil {
		return nil
	}
	st := &admin.ChallengeStatus{Status: n.Challenges.Status()}
	if n.challengePuller != nil {
		ps := n.challengePuller.Status()
		st.Pull = &ps
	}
	if rc := n.Server.Rechecker(); rc != nil {
		rs := rc.Status()
		st.Recheck = &rs
	}
	return st
}

// challengeSamples reports verdict counts per property (bounded: past
// a few hundred properties the rest are counted as one) and the replay
// store's fill.
func (n *Node) challengeSamples(context.Context) ([]metrics.Sample, error) {
	st := n.challengeStatus()
	if st == nil {
		return nil, nil
	}
	const help = "Bot-challenge verdicts of sign-ups by property, since the edge started."
	var out []metrics.Sample
	for prop, c := range st.Verdicts {
		for _, v := range []struct {
			verdict string
			n       uint64
		}{{"passed", c.Passed}, {"failed", c.Failed}, {"unverified", c.Unverified}, {"replayed", c.Replayed}} {
			out = append(out, metrics.Sample{Name: "challenge_verdicts_total", Help: help, Counter: true,
				Value: float64(v.n), Labels: map[string]string{"property": prop, "verdict": v.verdict}})
		}
		out = append(out,
			metrics.Sample{Name: "challenge_rechecks_total", Help: "Re-checks of unverified sign-ups that decided, by property and outcome.", Counter: true,
				Value: float64(c.RecheckPassed), Labels: map[string]string{"property": prop, "verdict": "passed"}},
			metrics.Sample{Name: "challenge_rechecks_total", Help: "Re-checks of unverified sign-ups that decided, by property and outcome.", Counter: true,
				Value: float64(c.RecheckFailed), Labels: map[string]string{"property": prop, "verdict": "failed"}})
	}
	if st.PoW != nil {
		out = append(out,
			metrics.Sample{Name: "challenge_pow_replay_entries", Help: "Used proof-of-work solutions remembered against replay.", Value: float64(st.PoW.Remembered)},
			metrics.Sample{Name: "challenge_pow_replay_capacity", Help: "Most used solutions the replay store remembers.", Value: float64(st.PoW.Capacity)},
			metrics.Sample{Name: "challenge_pow_store_full_total", Help: "Solutions left unverified because the replay store was full.", Value: float64(st.PoW.StoreFull), Counter: true})
	}
	if st.Recheck != nil {
		out = append(out,
			metrics.Sample{Name: "challenge_recheck_queued", Help: "Unverified sign-ups waiting for a re-check.", Value: float64(st.Recheck.Queued)},
			metrics.Sample{Name: "challenge_recheck_dropped_total", Help: "Unverified sign-ups not re-checked because the queue was full.", Value: float64(st.Recheck.Dropped), Counter: true})
	}
	return out, nil
}
