package api_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mailslot/mailslot"
	"github.com/mailslot/mailslot/internal/edgetest"
)

// A page that an operator's browser visits while `fly proxy 9090` runs can
// make its own host name resolve to 127.0.0.1 (DNS rebinding) or post a
// form to http://127.0.0.1:9090. Neither may erase, export or mint links.
func TestPrivateListenerRefusesPagesInABrowser(t *testing.T) {
	e := edgetest.NewEdge(t, nil)
	db := edgetest.OpenDB(t, e.Config.DataDir)
	erase := func(host string, header ...string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "/admin/erasures", strings.NewReader(`{"email":"ann@example.com"}`))
		req.Host = host
		req.Header.Set("Content-Type", "application/json")
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		return edgetest.Serve(e.Private, req)
	}
	refused := []struct {
		name   string
		host   string
		header []string
		want   string
	}{
		{"rebound host name", "attacker.example:9090", nil, "host_not_allowed"},
		{"cross-site form post", "127.0.0.1:9090", []string{"Origin", "https://attacker.example"}, "cross_site_request"},
		{"cross-site no-cors fetch", "localhost:9090", []string{"Sec-Fetch-Site", "cross-site"}, "cross_site_request"},
	}
	for _, c := range refused {
		w := erase(c.host, c.header...)
		if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), c.want) {
			t.Errorf("%s: %d %s, want 403 %s", c.name, w.Code, w.Body, c.want)
		}
	}
	if n := edgetest.CountKind(t, db, mailslot.KindErasure); n != 0 {
		t.Fatalf("%d erasure rows stored by refused requests", n)
	}
	// The operator's own request through fly proxy still works.
	if w := erase("localhost:9090"); w.Code != http.StatusAccepted {
		t.Fatalf("operator's erasure: %d %s", w.Code, w.Body)
	}
	if n := edgetest.CountKind(t, db, mailslot.KindErasure); n != 1 {
		t.Errorf("%d erasure rows after the operator's request, want 1", n)
	}
}
