package mail

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	gomail "github.com/wneessen/go-mail"
	"github.com/wneessen/go-mail/smtp"
)

// SMTPOptions tune an SMTP transport; the zero value is production's.
type SMTPOptions struct {
	// Timeout bounds the connection's setup (dial, TLS, EHLO, AUTH) and,
	// separately, each message's whole transaction. Default 30s.
	Timeout time.Duration
	// HELO is the name given in EHLO; default the host's name.
	HELO string
	// ServerName is the name the server's certificate must carry;
	// default the URL's host.
	ServerName string
	// RootCAs verifies the server's certificate; nil means the system's
	// roots. Tests give the pool of their self-signed certificate.
	RootCAs *x509.CertPool
	// InsecureSkipVerify accepts any certificate. It is refused unless the
	// host is loopback: it exists for tests only.
	InsecureSkipVerify bool
}

const defaultSMTPTimeout = 30 * time.Second

// STARTTLS policies for smtp:// URLs.
const (
	// StartTLSRequired refuses to continue without STARTTLS. It is the
	// default when the URL carries credentials, so a password never
	// crosses the network in the clear.
	StartTLSRequired = "required"
	// StartTLSOpportunistic upgrades when the server offers STARTTLS and
	// continues in the clear otherwise. It is the default without
	// credentials (a relay on a private network).
	StartTLSOpportunistic = "opportunistic"
	// StartTLSOff never upgrades; credentials are then sent only to a
	// loopback host (go-mail's PLAIN and LOGIN refuse anything else).
	StartTLSOff = "off"
)

// SMTP is a Transport over one SMTP connection, opened at the first Send
// and reused for every message after it; when it breaks (or the server
// drops it while idle) the next Send dials again. Sends are serialised by
// a mutex. Credentials never appear in its errors or its String.
type SMTP struct {
	desc     string
	host     string
	timeout  time.Duration
	implicit bool
	tlsConf  *tls.Config
	client   *gomail.Client

	mu      sync.Mutex
	conn    *smtp.Client
	netConn net.Conn
	closed  bool
}

var _ Transport = (*SMTP)(nil)

// NewSMTP makes a transport from MAILSLOT_SMTP_URL:
//
//	smtp://[user:pass@]host[:port][?starttls=required|opportunistic|off][&auth=plain|login]
//	smtps://[user:pass@]host[:port][?auth=plain|login]
//
// smtp:// speaks STARTTLS (port 587 by default; see the StartTLS
// constants for the policy), smtps:// implicit TLS (port 465). Credentials
// in the URL turn on SMTP AUTH (PLAIN unless auth=login). It does not
// connect; the first Send does.
func NewSMTP(rawURL string, opts SMTPOptions) (*SMTP, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Error repeats the URL, password included: say less.
		return nil, errors.New("smtp url: cannot be parsed")
	}
	s := &SMTP{timeout: opts.Timeout}
	if s.timeout <= 0 {
		s.timeout = defaultSMTPTimeout
	}
	port := 587
	switch u.Scheme {
	case "smtp":
	case "smtps":
		s.implicit, port = true, 465
	default:
		return nil, fmt.Errorf("smtp url: scheme %q: use smtp:// or smtps://", u.Scheme)
	}
	s.host = u.Hostname()
	if s.host == "" {
		return nil, errors.New("smtp url: no host")
	}
	if p := u.Port(); p != "" {
		if port, err = strconv.Atoi(p); err != nil || port < 1 || port > 65535 {
			return nil, fmt.Errorf("smtp url: port %q", p)
		}
	}
	if u.Path != "" && u.Path != "/" {
		return nil, errors.New("smtp url: a path means nothing here")
	}
	user, pass := u.User.Username(), ""
	if p, ok := u.User.Password(); ok {
		pass = p
	}
	if (user == "") != (pass == "") {
		return nil, errors.New("smtp url: give both a user and a password, or neither")
	}
	q := u.Query()
	starttls := StartTLSOpportunistic
	if user != "" {
		starttls = StartTLSRequired
	}
	authType := gomail.SMTPAuthPlain
	for k, v := range q {
		val := ""
		if len(v) > 0 {
			val = v[len(v)-1]
		}
		switch k {
		case "starttls":
			if s.implicit {
				return nil, errors.New("smtp url: starttls is for smtp://; smtps:// is TLS from the start")
			}
			switch val {
			case StartTLSRequired, StartTLSOpportunistic, StartTLSOff:
				starttls = val
			default:
				return nil, fmt.Errorf("smtp url: starttls=%q: use required, opportunistic or off", val)
			}
		case "auth":
			switch strings.ToLower(val) {
			case "plain":
				authType = gomail.SMTPAuthPlain
			case "login":
				authType = gomail.SMTPAuthLogin
			default:
				return nil, fmt.Errorf("smtp url: auth=%q: use plain or login", val)
			}
		default:
			return nil, fmt.Errorf("smtp url: unknown parameter %q", k)
		}
	}
	if opts.InsecureSkipVerify && !isLoopback(s.host) {
		return nil, errors.New("smtp: InsecureSkipVerify is for tests against a loopback host only")
	}
	s.tlsConf = &tls.Config{
		ServerName:         cmpOr(opts.ServerName, s.host),
		RootCAs:            opts.RootCAs,
		InsecureSkipVerify: opts.InsecureSkipVerify, //nolint:gosec // loopback tests only, checked above
		MinVersion:         tls.VersionTLS12,
	}

	copts := []gomail.Option{
		gomail.WithPort(port),
		gomail.WithTimeout(s.timeout),
		gomail.WithTLSConfig(s.tlsConf),
		gomail.WithDialContextFunc(s.dial),
	}
	switch {
	case s.implicit:
		// The dialer does the TLS handshake; go-mail only needs to know
		// not to try STARTTLS.
		copts = append(copts, gomail.WithSSL())
	case starttls == StartTLSRequired:
		copts = append(copts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	case starttls == StartTLSOpportunistic:
		copts = append(copts, gomail.WithTLSPolicy(gomail.TLSOpportunistic))
	default:
		copts = append(copts, gomail.WithTLSPolicy(gomail.NoTLS))
	}
	if user != "" {
		copts = append(copts, gomail.WithSMTPAuth(authType), gomail.WithUsername(user), gomail.WithPassword(pass))
	}
	if opts.HELO != "" {
		copts = append(copts, gomail.WithHELO(opts.HELO))
	}
	if s.client, err = gomail.NewClient(s.host, copts...); err != nil {
		return nil, fmt.Errorf("smtp: %w", err)
	}

	d := url.URL{Scheme: u.Scheme, Host: net.JoinHostPort(s.host, strconv.Itoa(port))}
	if user != "" {
		d.User = url.User(user)
	}
	if !s.implicit {
		d.RawQuery = "starttls=" + starttls
	}
	s.desc = d.String()
	return s, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// String describes the transport for logs, without the password.
func (s *SMTP) String() string { return s.desc }

// dial opens the TCP connection (and, for smtps://, the TLS session)
// itself, so that Send can cut a stuck exchange short when its context
// ends. It runs under s.mu.
func (s *SMTP) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: s.timeout}
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	if s.implicit {
		tc := tls.Client(c, s.tlsConf.Clone())
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("tls handshake: %w", err)
		}
		c = tc
	}
	s.netConn = c
	return c, nil
}

// Send delivers m over the open connection, dialling first if there is
// none. A connection found dead before anything was sent is redialled
// once. Every failure drops the connection, so the next Send starts
// clean.
func (s *SMTP) Send(ctx context.Context, m *Message) (Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return Result{}, &SendError{Class: Temporary, Op: "send", Err: ErrClosed}
	}
	g, err := m.goMail()
	if err != nil {
		return Result{}, &SendError{Class: Permanent, Op: "render", Err: redact(err, m.To.Address)}
	}
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return Result{}, &SendError{Class: Temporary, Op: "send", Err: err}
		}
		if s.conn == nil || !s.conn.HasConnection() {
			s.drop()
			c, err := s.client.DialToSMTPClientWithContext(ctx)
			if err != nil {
				s.drop()
				return Result{}, &SendError{Class: Temporary, Op: "connect", Code: replyCode(err), Err: redact(err, m.To.Address)}
			}
			s.conn = c
		}
		nc := s.netConn
		stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
		err := s.client.SendWithSMTPClient(s.conn, g)
		if !stop() && err == nil {
			// The context ended as the send finished: the deadline set
			// on the connection would break the next one.
			s.drop()
		}
		if err == nil {
			return Result{ID: m.MessageID, Response: g.ServerResponse()}, nil
		}
		s.drop()
		se := classifySMTP(err, g, m.To.Address)
		if se == nil { // delivered; only the RSET after it failed
			return Result{ID: m.MessageID, Response: g.ServerResponse()}, nil
		}
		if se.Op == "connection check" && attempt == 0 {
			continue // the idle connection had died; nothing was sent
		}
		return Result{}, se
	}
}

// drop closes the connection without QUIT. Runs under s.mu.
func (s *SMTP) drop() {
	if s.conn != nil {
		_ = s.conn.Close()
	} else if s.netConn != nil {
		_ = s.netConn.Close()
	}
	s.conn, s.netConn = nil, nil
}

// Close says QUIT and closes the connection; Send fails afterwards.
func (s *SMTP) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.conn == nil {
		return nil
	}
	err := s.conn.Quit()
	s.drop()
	if err != nil {
		return fmt.Errorf("close smtp connection: %w", err)
	}
	return nil
}

// classifySMTP maps go-mail's SendError reasons to classes. The line
// that matters is the end of DATA: until the final "." is written the
// server discards a partial message, so a broken connection is
// temporary; once it is written, a missing reply leaves the message
// possibly delivered. go-mail reports both "could not write the ." and
// "no reply to the ." as ErrSMTPDataClose, so both are uncertain.
// Reply codes decide the rest: 5xx permanent, 4xx temporary, except the
// 5xx that mean "authenticate" or "use TLS first", which are temporary.
// A nil result means the message was delivered and only the RSET after
// it failed.
func classifySMTP(err error, g *gomail.Msg, rcpt string) *SendError {
	var ge *gomail.SendError
	if !errors.As(err, &ge) {
		return &SendError{Class: Uncertain, Op: "send", Code: replyCode(err), Err: redact(err, rcpt)}
	}
	code := ge.ErrorCode()
	byCode := func(none Class) Class {
		switch {
		case code == 530 || code == 534 || code == 535 || code == 538:
			// Authentication or encryption required: the session's
			// configuration is wrong, not the message, which should
			// outlive the operator's fix.
			return Temporary
		case code >= 500:
			return Permanent
		case code >= 400:
			return Temporary
		}
		return none
	}
	se := &SendError{Code: code, Err: redact(ge, rcpt)}
	switch ge.Reason {
	case gomail.ErrConnCheck:
		se.Class, se.Op = Temporary, "connection check"
	case gomail.ErrGetSender, gomail.ErrGetRcpts, gomail.ErrNoUnencoded:
		se.Class, se.Op = Permanent, "render"
	case gomail.ErrSMTPMailFrom:
		se.Class, se.Op = byCode(Temporary), "mail from"
	case gomail.ErrSMTPRcptTo:
		se.Class, se.Op = byCode(Temporary), "rcpt to"
	case gomail.ErrSMTPData:
		se.Class, se.Op = byCode(Temporary), "data"
	case gomail.ErrWriteContent:
		// The write failed before the final "." was sent.
		se.Class, se.Op = Temporary, "data"
	case gomail.ErrSMTPDataClose:
		se.Class, se.Op = byCode(Uncertain), "end of data"
	case gomail.ErrSMTPReset:
		if g.IsDelivered() {
			return nil
		}
		se.Class, se.Op = byCode(Uncertain), "reset"
	default:
		se.Class, se.Op = byCode(Uncertain), "send"
	}
	return se
}

// replyCode finds an SMTP reply code in err's chain, or 0.
func replyCode(err error) int {
	var te *textproto.Error
	if errors.As(err, &te) {
		return te.Code
	}
	return 0
}
