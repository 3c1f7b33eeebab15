// Package safedial is the HTTP client for requests to URLs that operators
// typed (webhook receivers): it refuses to connect to this machine, its
// private networks and the cloud's metadata service, so that a webhook URL
// cannot be turned into a probe of what sits behind the edge (SSRF).
//
// Two checks, because either alone can be beaten:
//
//   - CheckURL runs when a URL is stored (`mailslotctl webhooks add`): it
//     refuses non-https URLs in production, user info, literal private
//     addresses and names that resolve to private addresses, so that the
//     operator learns of the mistake at once.
//   - The client's dialer checks the address it actually connects to, after
//     resolution and at connect time. A name that resolved to a public
//     address when it was added and to 127.0.0.1 now (DNS rebinding) is
//     refused there.
//
// Redirects are not followed: a 3xx answer is returned as it is, and a
// webhook delivery treats it as a failure. Following one would need the
// same checks again for every hop, and a receiver has no reason to
// redirect a POST.
//
// Proxies from the environment are ignored: a proxy would make the
// connection on our behalf, past the dialer's check.
package safedial

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrForbidden is wrapped by every refusal of an address or a URL.
var ErrForbidden = errors.New("address not allowed")

// Resolver looks up a host's addresses. *net.Resolver satisfies it; tests
// inject their own to play DNS rebinding.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Options configure a client.
type Options struct {
	// AllowPrivate lets the client reach loopback and private addresses
	// (MAILSLOT_WEBHOOK_ALLOW_PRIVATE=true, development and tests only).
	AllowPrivate bool
	// AllowHTTP lets the client send plain http requests; without it only
	// https is sent.
	AllowHTTP bool
	// Timeout bounds one request, from dialing to the end of the body.
	// Default 10s.
	Timeout time.Duration
	// Resolver resolves host names before the dial; default net.DefaultResolver.
	Resolver Resolver
	// MaxConnsPerHost bounds connections to one receiver; default 64.
	MaxConnsPerHost int
	// TLSConfig, when set, replaces the default (TLS 1.2 or later, the
	// system roots); tests use it to trust an httptest TLS server.
	TLSConfig *tls.Config
}

// DefaultTimeout is a request's default bound.
const DefaultTimeout = 10 * time.Second

// Client sends requests under the checks above. Its errors never carry the
// request URL's query or user info, which may hold a receiver's token.
type Client struct {
	hc        *http.Client
	allowHTTP bool
}

// New returns a client for o.
func New(o Options) *Client {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Resolver == nil {
		o.Resolver = net.DefaultResolver
	}
	if o.MaxConnsPerHost <= 0 {
		o.MaxConnsPerHost = 64
	}
	tlsConf := o.TLSConfig
	if tlsConf == nil {
		tlsConf = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	d := &dialer{
		resolver: o.Resolver,
		net: net.Dialer{
			Timeout:   o.Timeout,
			KeepAlive: 30 * time.Second,
			Control:   control(o.AllowPrivate),
		},
	}
	tr := &http.Transport{
		Proxy:                 nil, // see the package comment
		DialContext:           d.dial,
		TLSClientConfig:       tlsConf,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   o.MaxConnsPerHost,
		MaxConnsPerHost:       o.MaxConnsPerHost,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   o.Timeout,
		ResponseHeaderTimeout: o.Timeout,
	}
	return &Client{
		allowHTTP: o.AllowHTTP,
		hc: &http.Client{
			Transport: tr,
			Timeout:   o.Timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
	}
}

// Do sends req. A redirect comes back as the 3xx response itself.
func (c *Client) Do(req *http.Request) (*http.Response, error) {
	if err := checkRequestURL(req.URL, !c.allowHTTP); err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			ue.URL = Redact(req.URL)
		}
		return nil, err
	}
	return resp, nil
}

// CloseIdleConnections closes the client's idle keep-alive connections.
func (c *Client) CloseIdleConnections() { c.hc.CloseIdleConnections() }

// Redact returns u without user info, query or fragment, for logs and
// stored errors.
func Redact(u *url.URL) string {
	if u == nil {
		return ""
	}
	r := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}
	return r.String()
}

// RedactString is Redact for a URL in text form; a URL that does not parse
// is reported as such rather than repeated.
func RedactString(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return Redact(u)
}

func checkRequestURL(u *url.URL, requireHTTPS bool) error {
	switch {
	case u == nil:
		return fmt.Errorf("%w: no URL", ErrForbidden)
	case u.Scheme == "https":
	case u.Scheme == "http" && !requireHTTPS:
	case u.Scheme == "http":
		return fmt.Errorf("%w: plain http to %s (https is required)", ErrForbidden, u.Hostname())
	default:
		return fmt.Errorf("%w: URL scheme %q", ErrForbidden, u.Scheme)
	}
	if u.User != nil {
		return fmt.Errorf("%w: URL carries user info", ErrForbidden)
	}
	return nil
}

// dialer resolves with an injectable resolver and dials each address in
// turn; net.Dialer's Control checks every address it connects to.
type dialer struct {
	resolver Resolver
	net      net.Dialer
}

func (d *dialer) dial(ctx context.Context, network, address string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return d.net.DialContext(ctx, network, netip.AddrPortFrom(ip, mustPort(port)).String())
	}
	addrs, err := d.resolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", host, err)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("resolve %s: no addresses", host)
	}
	var first error
	for _, ip := range addrs {
		conn, err := d.net.DialContext(ctx, network, netip.AddrPortFrom(ip.Unmap(), mustPort(port)).String())
		if err == nil {
			return conn, nil
		}
		if first == nil {
			first = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, first
}

func mustPort(s string) uint16 {
	p, _ := strconv.ParseUint(s, 10, 16)
	return uint16(p)
}

// control is the dialer's last word: it sees the socket address the
// kernel is about to connect to.
func control(allowPrivate bool) func(network, address string, _ syscall.RawConn) error {
	return func(network, address string, _ syscall.RawConn) error {
		if !strings.HasPrefix(network, "tcp") {
			return fmt.Errorf("%w: network %s", ErrForbidden, network)
		}
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("%w: unparsable address", ErrForbidden)
		}
		if allowPrivate {
			return nil
		}
		if reason := Forbidden(ap.Addr()); reason != "" {
			return fmt.Errorf("%w: connection to a %s address refused", ErrForbidden, reason)
		}
		return nil
	}
}

var forbiddenV4 = []struct {
	p      netip.Prefix
	reason string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "\"this network\""},
	{netip.MustParsePrefix("10.0.0.0/8"), "private"},
	{netip.MustParsePrefix("100.64.0.0/10"), "carrier-grade NAT"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local"},
	{netip.MustParsePrefix("172.16.0.0/12"), "private"},
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved"}, // includes the broadcast address
}

var forbiddenV6 = []struct {
	p      netip.Prefix
	reason string
}{
	{netip.MustParsePrefix("::/128"), "unspecified"},
	{netip.MustParsePrefix("::1/128"), "loopback"},
	{netip.MustParsePrefix("fc00::/7"), "unique local"},
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	{netip.MustParsePrefix("fec0::/10"), "site-local"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
	{netip.MustParsePrefix("100::/64"), "discard"},
}

// Embedded IPv4 forms: an IPv6 address that carries an IPv4 address
// reaches that IPv4 address (through the kernel, a NAT64 gateway or a
// 6to4 relay), so it is judged by it.
var (
	v4Compatible = netip.MustParsePrefix("::/96")
	nat64        = netip.MustParsePrefix("64:ff9b::/96")
	nat64Local   = netip.MustParsePrefix("64:ff9b:1::/48")
	sixToFour    = netip.MustParsePrefix("2002::/16")
)

// Forbidden returns why ip may not be connected to (for example
// "loopback"), or "" when it may.
func Forbidden(ip netip.Addr) string {
	if !ip.IsValid() {
		return "invalid"
	}
	if ip.Zone() != "" {
		return "zoned"
	}
	ip = ip.Unmap() // ::ffff:a.b.c.d is a.b.c.d
	if ip.Is4() {
		for _, f := range forbiddenV4 {
			if f.p.Contains(ip) {
				return f.reason
			}
		}
		return ""
	}
	for _, f := range forbiddenV6 {
		if f.p.Contains(ip) {
			return f.reason
		}
	}
	b := ip.As16()
	switch {
	case v4Compatible.Contains(ip), nat64.Contains(ip):
		if r := Forbidden(netip.AddrFrom4([4]byte(b[12:16]))); r != "" {
			return r + " (embedded in IPv6)"
		}
	case nat64Local.Contains(ip):
		return "local NAT64"
	case sixToFour.Contains(ip):
		if r := Forbidden(netip.AddrFrom4([4]byte(b[2:6]))); r != "" {
			return r + " (6to4)"
		}
	}
	return ""
}

// Policy is what CheckURL enforces.
type Policy struct {
	// AllowPrivate skips the address checks (development and tests).
	AllowPrivate bool
	// RequireHTTPS refuses http URLs; production always sets it.
	RequireHTTPS bool
	// Resolver resolves the URL's host; default net.DefaultResolver.
	Resolver Resolver
}

// CheckURL validates a receiver URL before it is stored and returns it
// parsed. The errors name the host at most, never the query.
func CheckURL(ctx context.Context, raw string, p Policy) (*url.URL, error) {
	if len(raw) > 2048 {
		return nil, fmt.Errorf("%w: URL longer than 2048 bytes", ErrForbidden)
	}
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return nil, fmt.Errorf("%w: URL does not parse", ErrForbidden)
	}
	if !u.IsAbs() || u.Host == "" || u.Opaque != "" {
		return nil, fmt.Errorf("%w: URL must be absolute, like https://hooks.example.com/mailslot", ErrForbidden)
	}
	u.Scheme = strings.ToLower(u.Scheme)
	if err := checkRequestURL(u, p.RequireHTTPS); err != nil {
		return nil, err
	}
	host := u.Hostname()
	if host == "" {
		return nil, fmt.Errorf("%w: URL has no host", ErrForbidden)
	}
	if port := u.Port(); port != "" {
		if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
			return nil, fmt.Errorf("%w: URL port %q", ErrForbidden, port)
		}
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if !p.AllowPrivate {
			if reason := Forbidden(ip); reason != "" {
				return nil, fmt.Errorf("%w: URL host is a %s address", ErrForbidden, reason)
			}
		}
		return u, nil
	}
	if numericHost(host) {
		// 2130706433, 0x7f.1, 127.1: forms some resolvers read as
		// addresses and others send to DNS. No receiver needs them.
		return nil, fmt.Errorf("%w: URL host %q looks like an address in an unusual form", ErrForbidden, host)
	}
	if p.AllowPrivate {
		return u, nil
	}
	r := p.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	addrs, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, fmt.Errorf("resolve webhook host %s: %w", host, err)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("resolve webhook host %s: no addresses", host)
	}
	for _, ip := range addrs {
		if reason := Forbidden(ip); reason != "" {
			return nil, fmt.Errorf("%w: URL host %s resolves to a %s address", ErrForbidden, host, reason)
		}
	}
	return u, nil
}

// numericHost reports whether the last label of host is made of digits
// (or starts 0x): never a real host name, sometimes read as an address.
func numericHost(host string) bool {
	host = strings.TrimSuffix(host, ".")
	last := host[strings.LastIndexByte(host, '.')+1:]
	if last == "" {
		return false
	}
	if strings.HasPrefix(strings.ToLower(last), "0x") {
		return true
	}
	for i := 0; i < len(last); i++ {
		if last[i] < '0' || last[i] > '9' {
			return false
		}
	}
	return true
}
