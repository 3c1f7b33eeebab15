package safedial_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/mailslot/mailslot/internal/safedial"
)

// resolver answers from a table that a test may change between lookups,
// which is what DNS rebinding looks like from the client.
type resolver struct {
	mu    sync.Mutex
	hosts map[string][]netip.Addr
}

func newResolver(kv ...string) *resolver {
	r := &resolver{hosts: map[string][]netip.Addr{}}
	for i := 0; i < len(kv); i += 2 {
		r.set(kv[i], kv[i+1])
	}
	return r
}

func (r *resolver) set(host string, addrs ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hosts[host] = nil
	for _, a := range addrs {
		r.hosts[host] = append(r.hosts[host], netip.MustParseAddr(a))
	}
}

func (r *resolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a, ok := r.hosts[host]
	if !ok {
		return nil, errors.New("no such host")
	}
	return a, nil
}

func TestForbidden(t *testing.T) {
	tests := []struct {
		ip   string
		want string // "" = allowed
	}{
		{"127.0.0.1", "loopback"},
		{"127.255.0.9", "loopback"},
		{"10.0.0.1", "private"},
		{"172.16.0.1", "private"},
		{"172.31.255.255", "private"},
		{"172.32.0.1", ""},
		{"192.168.1.1", "private"},
		{"169.254.169.254", "link-local"},
		{"100.64.0.1", "carrier-grade NAT"},
		{"100.127.255.255", "carrier-grade NAT"},
		{"100.128.0.1", ""},
		{"0.0.0.0", "\"this network\""},
		{"0.1.2.3", "\"this network\""},
		{"255.255.255.255", "reserved"},
		{"224.0.0.1", "multicast"},
		{"::", "unspecified"},
		{"::1", "loopback"},
		{"fe80::1", "link-local"},
		{"fd00::1", "unique local"},
		{"fc00::1", "unique local"},
		{"ff02::1", "multicast"},
		{"::ffff:127.0.0.1", "loopback"},
		{"::ffff:169.254.169.254", "link-local"},
		{"::ffff:10.0.0.1", "private"},
		{"::127.0.0.1", "loopback (embedded in IPv6)"},
		{"::10.0.0.1", "private (embedded in IPv6)"},
		{"64:ff9b::7f00:1", "loopback (embedded in IPv6)"},
		{"2002:a9fe:a9fe::1", "link-local (6to4)"},
		{"93.184.216.34", ""},
		{"8.8.8.8", ""},
		{"::ffff:8.8.8.8", ""},
		{"2606:4700:4700::1111", ""},
	}
	for _, tt := range tests {
		t.Run(tt.ip, func(t *testing.T) {
			if got := safedial.Forbidden(netip.MustParseAddr(tt.ip)); got != tt.want {
				t.Errorf("Forbidden(%s) = %q, want %q", tt.ip, got, tt.want)
			}
		})
	}
}

func TestCheckURL(t *testing.T) {
	res := newResolver(
		"hooks.example.com", "93.184.216.34",
		"loopback.example.com", "127.0.0.1",
		"mixed.example.com", "93.184.216.34",
		"metadata.example.com", "169.254.169.254",
	)
	res.set("mixed.example.com", "93.184.216.34", "10.1.2.3")
	prod := safedial.Policy{RequireHTTPS: true, Resolver: res}
	dev := safedial.Policy{AllowPrivate: true, Resolver: res}
	tests := []struct {
		name    string
		raw     string
		p       safedial.Policy
		wantErr string // "" = accepted
	}{
		{"public name", "https://hooks.example.com/mailslot?token=sekrit", prod, ""},
		{"public address", "https://93.184.216.34:8443/in", prod, ""},
		{"loopback", "https://127.0.0.1/hook?token=sekrit", prod, "loopback"},
		{"metadata", "https://169.254.169.254/latest/meta-data?token=sekrit", prod, "link-local"},
		{"ipv6 loopback", "https://[::1]:8443/hook?token=sekrit", prod, "loopback"},
		{"private", "https://10.0.0.1/hook?token=sekrit", prod, "private"},
		{"mapped loopback", "https://[::ffff:127.0.0.1]/hook", prod, "loopback"},
		{"name resolving to loopback", "https://loopback.example.com/hook?token=sekrit", prod, "resolves to a loopback"},
		{"name resolving to metadata", "https://metadata.example.com/hook", prod, "resolves to a link-local"},
		{"one private address among public ones", "https://mixed.example.com/hook", prod, "resolves to a private"},
		{"unresolvable", "https://nowhere.example.com/hook?token=sekrit", prod, "resolve webhook host nowhere.example.com"},
		{"decimal address", "https://2130706433/hook", prod, "unusual form"},
		{"hex address", "https://0x7f.1/hook", prod, "unusual form"},
		{"http in production", "http://hooks.example.com/hook?token=sekrit", prod, "https is required"},
		{"user info", "https://user:sekrit@hooks.example.com/hook", prod, "user info"},
		{"ftp", "ftp://hooks.example.com/hook", prod, "scheme"},
		{"relative", "/hook?token=sekrit", prod, "absolute"},
		{"no host", "https:///hook", prod, "absolute"},
		{"bad port", "https://hooks.example.com:0/hook", prod, "port"},
		{"garbage", "https://[::1/hook?token=sekrit", prod, "does not parse"},
		{"development: http loopback", "http://127.0.0.1:9999/hook", dev, ""},
		{"development: name resolving to loopback", "http://loopback.example.com/hook", dev, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := safedial.CheckURL(context.Background(), tt.raw, tt.p)
			if tt.wantErr == "" {
				if err != nil || u == nil {
					t.Fatalf("CheckURL(%q) = %v, %v; want accepted", tt.raw, u, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("CheckURL(%q) = %v, want an error containing %q", tt.raw, err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "sekrit") {
				t.Errorf("error %q carries the URL's secret", err)
			}
		})
	}
}

// counting is a receiver that counts the requests that reach it.
func counting(t *testing.T, status int) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.WriteHeader(status)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func post(c *safedial.Client, raw string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodPost, raw, strings.NewReader("{}"))
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err == nil {
		resp.Body.Close()
	}
	return resp, err
}

// TestConnectTimeRefusal: whatever a URL says and whatever its name
// resolves to when the request is sent, the dialer refuses to connect to a
// forbidden address, and nothing reaches the receiver.
func TestConnectTimeRefusal(t *testing.T) {
	srv, hits := counting(t, http.StatusNoContent)
	port := srv.URL[strings.LastIndexByte(srv.URL, ':')+1:]
	res := newResolver("rebind.example.com", "93.184.216.34")
	// At add time the name is public.
	if _, err := safedial.CheckURL(context.Background(), "https://rebind.example.com/hook", safedial.Policy{RequireHTTPS: true, Resolver: res}); err != nil {
		t.Fatalf("CheckURL while the name is public: %v", err)
	}
	// By delivery time it points at the receiver on loopback.
	res.set("rebind.example.com", "127.0.0.1")
	c := safedial.New(safedial.Options{AllowHTTP: true, Resolver: res})
	for _, raw := range []string{
		"http://rebind.example.com:" + port + "/hook?token=sekrit",
		"http://127.0.0.1:" + port + "/hook?token=sekrit",
		"http://[::1]:" + port + "/hook",
		"http://[::ffff:127.0.0.1]:" + port + "/hook",
		"http://169.254.169.254/latest/meta-data?token=sekrit",
		"http://10.0.0.1/hook",
	} {
		t.Run(raw, func(t *testing.T) {
			_, err := post(c, raw)
			if !errors.Is(err, safedial.ErrForbidden) {
				t.Fatalf("POST %s = %v, want ErrForbidden", raw, err)
			}
			if strings.Contains(err.Error(), "sekrit") {
				t.Errorf("error %q carries the URL's query", err)
			}
		})
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the receiver on loopback got %d requests, want 0", n)
	}

	// With AllowPrivate (development, tests) the same receiver is reached.
	dev := safedial.New(safedial.Options{AllowHTTP: true, AllowPrivate: true, Resolver: res})
	resp, err := post(dev, "http://rebind.example.com:"+port+"/hook")
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("POST with AllowPrivate = %v, %v; want 204", resp, err)
	}
	if n := hits.Load(); n != 1 {
		t.Fatalf("receiver got %d requests, want 1", n)
	}
}

func TestPlainHTTPRefusedUnlessAllowed(t *testing.T) {
	srv, hits := counting(t, http.StatusOK)
	c := safedial.New(safedial.Options{AllowPrivate: true})
	if _, err := post(c, srv.URL+"/hook?token=sekrit"); !errors.Is(err, safedial.ErrForbidden) || strings.Contains(err.Error(), "sekrit") {
		t.Fatalf("plain http without AllowHTTP = %v, want ErrForbidden without the query", err)
	}
	if hits.Load() != 0 {
		t.Fatal("a plain http request was sent")
	}
}

func TestHTTPSWithTrustedTestServer(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusAccepted) }))
	defer srv.Close()
	tlsConf := srv.Client().Transport.(*http.Transport).TLSClientConfig
	c := safedial.New(safedial.Options{AllowPrivate: true, TLSConfig: tlsConf})
	resp, err := post(c, srv.URL+"/hook")
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST over https = %v, %v", resp, err)
	}
}

// TestRedirectsAreNotFollowed: a 3xx comes back as it is and the target
// of the redirect never hears from us.
func TestRedirectsAreNotFollowed(t *testing.T) {
	target, hits := counting(t, http.StatusOK)
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+"/stolen", http.StatusTemporaryRedirect)
	}))
	defer redirector.Close()
	c := safedial.New(safedial.Options{AllowHTTP: true, AllowPrivate: true})
	resp, err := post(c, redirector.URL+"/hook")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusTemporaryRedirect {
		t.Fatalf("status %d, want the 307 itself", resp.StatusCode)
	}
	if hits.Load() != 0 {
		t.Fatal("the redirect was followed")
	}
}

func TestErrorsCarryNoQuery(t *testing.T) {
	// A closed port: the dial fails after the address checks pass.
	srv, _ := counting(t, http.StatusOK)
	srv.Close()
	c := safedial.New(safedial.Options{AllowHTTP: true, AllowPrivate: true})
	_, err := post(c, srv.URL+"/hook?token=sekrit#frag")
	if err == nil {
		t.Fatal("POST to a closed port succeeded")
	}
	if strings.Contains(err.Error(), "sekrit") || strings.Contains(err.Error(), "frag") {
		t.Fatalf("error %q carries the query or fragment", err)
	}
	if !strings.Contains(err.Error(), "/hook") {
		t.Errorf("error %q does not say which endpoint", err)
	}
}

func TestRedact(t *testing.T) {
	u, _ := url.Parse("https://user:pw@hooks.example.com:8443/a/b?token=x#y")
	if got := safedial.Redact(u); got != "https://hooks.example.com:8443/a/b" {
		t.Fatalf("Redact = %q", got)
	}
	if got := safedial.RedactString("https://[::1/x?token=x"); strings.Contains(got, "token") {
		t.Fatalf("RedactString of an unparsable URL = %q", got)
	}
}
