package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/mailslot/mailslot/edge/intake"
)

// TestLeadAcceptedAnswer checks that the 202 body is what encoding/json
// makes of leadAccepted, whatever the id holds.
func TestLeadAcceptedAnswer(t *testing.T) {
	t.Parallel()
	s := &Server{}
	for _, id := range []string{"0198a3f1-7c2e-7b4a-9d1e-2f3a4b5c6d7e", `a"b<c>\`, "é", ""} {
		w := httptest.NewRecorder()
		c, _ := gin.CreateTestContext(w)
		s.succeedLead(c, intake.FormatJSON, "", id, false)
		want, _ := json.Marshal(leadAccepted{ID: id, Status: "accepted"})
		if w.Code != http.StatusAccepted || w.Body.String() != string(want) || w.Header().Get("Content-Type") != "application/json; charset=utf-8" {
			t.Errorf("id %q: %d %s (%s), want 202 %s", id, w.Code, w.Body, w.Header().Get("Content-Type"), want)
		}
	}
}
