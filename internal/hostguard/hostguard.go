// Package hostguard keeps operator-only listeners (the edge's private
// listener, the marketing dashboard) out of reach of web pages.
//
// Operators reach these listeners through `fly proxy` or on the machine
// itself, on a loopback port. A page that a browser visits meanwhile can
// still talk to that port in two ways, and both are refused here:
//
//   - DNS rebinding: the page's own host name is made to resolve to
//     127.0.0.1, so the browser sends the page's requests, with the page's
//     Host header, to the listener and lets the page read the answers.
//     Only Host values that no attacker can own are accepted: IP literals,
//     "localhost" and names under ".localhost", names under ".internal"
//     (Fly.io's private network; the name is reserved for private use and
//     cannot be registered), and names the operator lists.
//   - Cross-site requests: a form or a no-cors fetch from any page can
//     still send (not read) a request to http://127.0.0.1:9090. Browsers
//     mark every request they send with Origin (on POSTs and on every
//     cross-origin fetch) or Sec-Fetch-Site; a request that carries an
//     Origin, or a Sec-Fetch-Site other than "none" (typed into the address
//     bar), is refused. curl, mailslotctl and Prometheus send neither.
package hostguard

import (
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/mailslot/mailslot"
)

// Reasons a request is refused, for the JSON error's "error" member.
const (
	ReasonHost      = mailslot.CodeHostNotAllowed
	ReasonCrossSite = mailslot.CodeCrossSiteRequest
)

// Guard decides which requests an operator-only listener serves.
type Guard struct {
	hosts map[string]bool
}

// New returns a guard that also accepts the given host names (no ports;
// compared without case).
func New(extra ...string) *Guard {
	g := &Guard{hosts: make(map[string]bool, len(extra))}
	for _, h := range extra {
		if h = strings.ToLower(strings.TrimSpace(h)); h != "" {
			g.hosts[h] = true
		}
	}
	return g
}

// Check returns "" when r may be served, else the reason it may not.
func (g *Guard) Check(r *http.Request) string {
	if !g.hostAllowed(r.Host) {
		return ReasonHost
	}
	if r.Header.Get("Origin") != "" {
		return ReasonCrossSite
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "none" {
		return ReasonCrossSite
	}
	return ""
}

func (g *Guard) hostAllowed(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if host == "" {
		return false
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	switch {
	case host == "localhost", strings.HasSuffix(host, ".localhost"), strings.HasSuffix(host, ".internal"):
		return true
	}
	return g.hosts[host]
}

// Wrap serves only what Check admits; the rest gets a 403 with a JSON
// body in the contract's error shape.
func (g *Guard) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if reason := g.Check(r); reason != "" {
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`{"error":"` + reason + `"}`))
			return
		}
		next.ServeHTTP(w, r)
	})
}
