package edge_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/mailslot/mailslot/edge"
	"github.com/mailslot/mailslot/internal/challenge"
	"github.com/mailslot/mailslot/internal/challenge/challengetest"
	"github.com/mailslot/mailslot/internal/edgetest"
)

// The verdicts a node reaches are counted per property in
// /v1/sync/status and /metrics, as operators read them.
func TestChallengeVerdictsInStatusAndMetrics(t *testing.T) {
	cfg := edgetest.Config(t, map[string]string{
		"MAILSLOT_ADDR": "127.0.0.1:0", "MAILSLOT_PRIVATE_ADDR": "127.0.0.1:0",
		"MAILSLOT_CHALLENGE": "pow", "MAILSLOT_CHALLENGE_NO_JS": "hold", "MAILSLOT_CHALLENGE_POW_MAX": "2000",
	})
	n, err := edge.Open(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	public, private := "http://"+n.Addr(), "http://"+n.PrivateAddr()

	get := func(u string) string {
		t.Helper()
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", u, resp.StatusCode, b)
		}
		return string(b)
	}
	var ch challenge.Challenge
	if err := json.Unmarshal([]byte(get(public+"/v1/challenge?property=shop")), &ch); err != nil {
		t.Fatal(err)
	}
	solved := challengetest.MustSolve(t, ch).Encode()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	post := func(form url.Values) int {
		t.Helper()
		resp, err := client.PostForm(public+"/v1/leads", form)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, f := range []url.Values{
		{"email": {"a@example.com"}, "property": {"shop"}, "altcha": {solved}}, // passed
		{"email": {"b@example.com"}, "property": {"shop"}, "altcha": {solved}}, // replayed
		{"email": {"c@example.com"}, "property": {"shop"}},                     // no JS: held unverified
	} {
		if code := post(f); code != http.StatusSeeOther {
			t.Fatalf("form post: %d", code)
		}
	}

	var st struct {
		Challenge struct {
			Verdicts map[string]struct {
				Passed, Failed, Unverified, Replayed uint64
			} `json:"verdicts"`
		} `json:"challenge"`
	}
	if err := json.Unmarshal([]byte(get(private+"/v1/sync/status")), &st); err != nil {
		t.Fatal(err)
	}
	if c := st.Challenge.Verdicts["shop"]; c.Passed != 1 || c.Replayed != 1 || c.Unverified != 1 {
		t.Errorf("status verdicts for shop = %+v, want one passed, one replayed, one unverified", c)
	}
	m := get(private + "/metrics")
	for _, want := range []string{
		`mailslot_challenge_verdicts_total{property="shop",verdict="passed"} 1`,
		`mailslot_challenge_verdicts_total{property="shop",verdict="replayed"} 1`,
		`mailslot_challenge_verdicts_total{property="shop",verdict="unverified"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
