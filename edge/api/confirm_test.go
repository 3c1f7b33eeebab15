package api_test

import (
	"net/http"
	"testing"

	"github.com/mailslot/mailslot/edge/api"
)

func confirmOf(l api.Links) string     { return l.Confirm }
func eraseOf(l api.Links) string       { return l.Erase }
func unsubscribeOf(l api.Links) string { return l.Unsubscribe }

func TestConfirmAndErasureRefuseCrossSitePosts(t *testing.T) {
	tests := []struct {
		name   string
		link   func(api.Links) string
		header []string
		want   int
	}{
		{"confirm from another origin", confirmOf, []string{"Origin", "https://evil.example"}, http.StatusForbidden},
		{"confirm from an opaque origin", confirmOf, []string{"Origin", "null"}, http.StatusForbidden},
		{"confirm, browser says cross-site", confirmOf, []string{"Sec-Fetch-Site", "cross-site"}, http.StatusForbidden},
		{"erasure from another origin", eraseOf, []string{"Origin", "https://evil.example"}, http.StatusForbidden},
		{"confirm from its own page", confirmOf, []string{"Origin", "http://example.com", "Sec-Fetch-Site", "same-origin"}, http.StatusOK},
		{"confirm without browser headers", confirmOf, nil, http.StatusOK},
		// The link page is no-referrer, so Chromium posts its button with
		// Origin: null; its Sec-Fetch-Site still says same-origin.
		{"confirm from its own no-referrer page", confirmOf, []string{"Origin", "null", "Sec-Fetch-Site", "same-origin"}, http.StatusOK},
		// A withdrawal only ever stops mail, and RFC 8058 posts come from
		// mail providers: unsubscribing stays open to any sender.
		{"unsubscribe from another origin", unsubscribeOf, []string{"Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site"}, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newLinkEdge(t)
			e.signUp(linkEmail)
			before := e.rows()
			w := e.request(e.Public, http.MethodPost, target(t, tt.link(e.mint(linkEmail))), "", "", append([]string{"Accept", "application/json"}, tt.header...)...)
			if w.Code != tt.want {
				t.Fatalf("status %d, want %d (%s)", w.Code, tt.want, w.Body)
			}
			if tt.want == http.StatusForbidden && e.rows() != before {
				t.Errorf("a refused post changed the outbox")
			}
		})
	}
}
