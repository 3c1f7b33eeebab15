package hostguard_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/mailslot/mailslot/internal/hostguard"
)

func TestCheck(t *testing.T) {
	g := hostguard.New("ops.example.net")
	cases := []struct {
		name    string
		host    string
		headers map[string]string
		want    string
	}{
		{"loopback with port", "127.0.0.1:9090", nil, ""},
		{"localhost through fly proxy", "localhost:9090", nil, ""},
		{"IPv6 loopback", "[::1]:9090", nil, ""},
		{"Fly private network name", "3d8d9.vm.mailslot.internal:9090", nil, ""},
		{"private IP", "fdaa:0:1::3", nil, ""},
		{"operator-listed name", "OPS.example.net:9090", nil, ""},
		{"rebound attacker name", "attacker.example:9090", nil, hostguard.ReasonHost},
		{"attacker name under internal's look-alike", "evil.internal.example.com", nil, hostguard.ReasonHost},
		{"empty host", "", nil, hostguard.ReasonHost},
		{"address bar navigation", "localhost:9090", map[string]string{"Sec-Fetch-Site": "none"}, ""},
		{"cross-site form post", "127.0.0.1:9090", map[string]string{"Origin": "https://attacker.example"}, hostguard.ReasonCrossSite},
		{"opaque origin", "127.0.0.1:9090", map[string]string{"Origin": "null"}, hostguard.ReasonCrossSite},
		{"cross-site no-cors fetch", "127.0.0.1:9090", map[string]string{"Sec-Fetch-Site": "cross-site"}, hostguard.ReasonCrossSite},
		{"same-site subresource", "localhost:9090", map[string]string{"Sec-Fetch-Site": "same-site"}, hostguard.ReasonCrossSite},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "http://x/admin/erasures", nil)
			r.Host = c.host
			for k, v := range c.headers {
				r.Header.Set(k, v)
			}
			if got := g.Check(r); got != c.want {
				t.Errorf("Check(Host %q, %v) = %q, want %q", c.host, c.headers, got, c.want)
			}
		})
	}
}

func TestWrapRefusesBeforeTheHandler(t *testing.T) {
	reached := false
	h := hostguard.New().Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached = true }))
	r := httptest.NewRequest(http.MethodPost, "http://attacker.example:9090/admin/erasures", nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusForbidden || reached || w.Body.String() != `{"error":"host_not_allowed"}` {
		t.Errorf("rebound request: %d %s, handler reached %v", w.Code, w.Body, reached)
	}
	r = httptest.NewRequest(http.MethodGet, "http://127.0.0.1:9090/healthz", nil)
	w = httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusOK || !reached {
		t.Errorf("loopback request: %d, handler reached %v", w.Code, reached)
	}
}
