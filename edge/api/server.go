// Package api is the edge node's HTTP layer: the public API that browsers
// and HTML forms post to, and the private listener for operators. Handlers
// validate at the boundary (package intake), store through the outbox, and
// map every outcome to one answer: JSON for scripts, a 303 for forms.
package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/gin-contrib/cors"
	"github.com/gin-gonic/gin"

	"github.com/mailslot/mailslot"
	"github.com/mailslot/mailslot/edge/intake"
	"github.com/mailslot/mailslot/edge/ratelimit"
	"github.com/mailslot/mailslot/internal/challenge/policy"
	"github.com/mailslot/mailslot/internal/hostguard"
	"github.com/mailslot/mailslot/internal/logging"
	"github.com/mailslot/mailslot/internal/metrics"
	"github.com/mailslot/mailslot/internal/pii"
	"github.com/mailslot/mailslot/internal/secret"
	"github.com/mailslot/mailslot/internal/token"
	"github.com/mailslot/mailslot/outbox"
)

// StatusFunc reports the sync status for /v1/sync/status. The edge does not
// know the sync worker's type; the node wires it in.
type StatusFunc func(ctx context.Context) (any, error)

// Options are what a Server needs.
type Options struct {
	// Settings are what the handlers read of the configuration
	// (SettingsFrom).
	Settings Settings
	Outbox   *outbox.Outbox
	Hasher   *pii.Hasher
	Logger   *slog.Logger
	// Tokens signs and verifies confirm, unsubscribe and erasure links.
	Tokens *token.Keys
	// SyncStatus serves GET /v1/sync/status (the node's one status type,
	// sync or not); without it the route is not served.
	SyncStatus StatusFunc
	// Metrics, when set, counts requests and is served on the private
	// listener at /metrics.
	Metrics *metrics.Metrics
	// Images serves the image endpoints; nil answers them 503 (no
	// Postgres on this edge).
	Images ImageJobs
	// MailFeedback records ESP feedback on mail jobs; nil answers the
	// ESP's webhook "not configured" (no Postgres on this edge).
	MailFeedback MailFeedback
	// Now is the clock; tests may replace it.
	Now func() time.Time
	// Challenges, when set, enforces each property's bot challenge
	// (challenge.go).
	Challenges *policy.Policy
}

// Server holds the handlers' dependencies.
type Server struct {
	set     Settings
	out     *outbox.Outbox
	hash    *pii.Hasher
	log     *slog.Logger
	limiter *ratelimit.Limiter
	status  StatusFunc
	tokens  *token.Keys
	metrics *metrics.Metrics
	imgs    *imageAPI
	mailFB  MailFeedback
	now     func() time.Time
	redir   map[string]bool
	chal    *challenges
}

// New builds a Server.
func New(o Options) *Server {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	redir := make(map[string]bool, len(o.Settings.RedirectHosts))
	for _, h := range o.Settings.RedirectHosts {
		redir[strings.ToLower(h)] = true
	}
	s := &Server{
		set:     o.Settings,
		out:     o.Outbox,
		hash:    o.Hasher,
		log:     o.Logger,
		limiter: ratelimit.New(o.Settings.RateRPS, o.Settings.RateBurst, o.Settings.RateMaxClients),
		status:  o.SyncStatus,
		tokens:  o.Tokens,
		metrics: o.Metrics,
		now:     o.Now,
		redir:   redir,
		mailFB:  o.MailFeedback,
	}
	s.imgs = newImageAPI(s, o.Images)
	s.chal = newChallenges(o.Challenges, o.Outbox, o.Logger, o.Settings.RecheckQueue)
	return s
}

func init() { gin.SetMode(gin.ReleaseMode) }

func (s *Server) engine() *gin.Engine {
	e := gin.New()
	e.HandleMethodNotAllowed = true
	e.ContextWithFallback = true
	_ = e.SetTrustedProxies(nil)
	e.Use(s.recoverer(), s.accessLog())
	e.NoRoute(func(c *gin.Context) { abortError(c, mailslot.CodeNotFound, nil) })
	e.NoMethod(func(c *gin.Context) { abortError(c, mailslot.CodeMethodNotAllowed, nil) })
	return e
}

// Handler is the public listener's handler.
func (s *Server) Handler() http.Handler {
	e := s.engine()
	e.GET("/healthz", s.healthz)
	e.GET("/readyz", s.readyz)
	e.GET("/v1/mailslot.js", s.script)
	e.HEAD("/v1/mailslot.js", s.script)
	e.GET("/v1/thanks", s.thanks)

	v1 := e.Group("/v1", s.cors())
	v1.POST("/leads", s.postLead)
	v1.POST("/events", s.postEvents)
	v1.GET("/challenge", s.getChallenge)
	// Preflights for the write endpoints; the CORS middleware answers them.
	v1.OPTIONS("/leads", func(*gin.Context) {})
	v1.OPTIONS("/events", func(*gin.Context) {})

	s.privacyRoutes(e)
	e.POST("/v1/webhooks/replicate", s.replicateWebhook)
	s.mailRoutes(e)
	if s.status != nil {
		e.GET("/v1/sync/status", s.requireAdmin, s.syncStatus)
	}
	s.adminRoutes(e.Group("/admin", s.requireAdmin))
	return e
}

// PrivateHandler is the private listener's handler: reachable only on the
// machine or the private network, so it needs no token. Because an
// operator's browser can reach it too (through `fly proxy`), it serves
// only Host names that no web page can own and no cross-site request
// (package hostguard).
func (s *Server) PrivateHandler() http.Handler {
	e := s.engine()
	e.GET("/healthz", s.healthz)
	e.GET("/readyz", s.readyzDetail)
	if s.status != nil {
		e.GET("/v1/sync/status", s.syncStatus)
	}
	if s.metrics != nil {
		e.GET("/metrics", gin.WrapH(s.metrics.Handler()))
	}
	s.adminRoutes(e.Group("/admin"))
	return hostguard.New(s.set.PrivateHosts...).Wrap(e)
}

// cors admits exactly the configured origins. The library answers a
// preflight from another origin with 403 and adds no CORS headers to its
// simple requests, so a browser on such a page cannot read or send with
// fetch. A plain HTML form posted from another origin (or from an opaque
// "null" one) needs no preflight; it gets what every form gets, a 303 to
// the error page, and nothing is stored.
func (s *Server) cors() gin.HandlerFunc {
	allowed := make(map[string]bool, len(s.set.CORSOrigins))
	for _, o := range s.set.CORSOrigins {
		allowed[o] = true
	}
	mw := cors.New(cors.Config{
		AllowOriginFunc: func(origin string) bool { return allowed[origin] },
		AllowMethods:    []string{http.MethodPost, http.MethodOptions},
		AllowHeaders:    []string{"Content-Type", "Idempotency-Key"},
		ExposeHeaders:   []string{"Retry-After", "Idempotent-Replayed"},
		MaxAge:          10 * time.Minute,
	})
	return func(c *gin.Context) {
		origin := c.GetHeader("Origin")
		if origin != "" && !allowed[origin] && c.Request.Method == http.MethodPost && formLike(c.GetHeader("Content-Type")) {
			s.fail(c, intake.FormatForm, mailslot.CodeOriginNotAllowed, nil)
			return
		}
		mw(c)
	}
}

func (s *Server) healthz(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"status": "ok"})
}

// readyz answers 503 while the outbox cannot take work. The public
// listener says only which kind of trouble; the private one says why.
func (s *Server) readyz(c *gin.Context) {
	s.ready(c, false)
}

func (s *Server) readyzDetail(c *gin.Context) {
	s.ready(c, true)
}

func (s *Server) ready(c *gin.Context, detail bool) {
	err := s.out.Health()
	if err == nil {
		c.JSON(http.StatusOK, gin.H{"status": "ready"})
		return
	}
	reason := "storage_unavailable"
	switch {
	case errors.Is(err, outbox.ErrFull):
		reason = "outbox_full"
	case errors.Is(err, outbox.ErrClosed):
		reason = "stopping"
	}
	body := gin.H{"status": "unavailable", "reason": reason}
	if detail {
		body["detail"] = err.Error()
	}
	c.Header("Retry-After", "5")
	c.JSON(http.StatusServiceUnavailable, body)
}

func (s *Server) syncStatus(c *gin.Context) {
	st, err := s.status(c.Request.Context())
	if err != nil {
		s.internalError(c, "read sync status", err)
		return
	}
	c.JSON(http.StatusOK, st)
}

// requireAdmin checks the bearer token in constant time, comparing
// digests so that not even the token's length shows in the timing. The token never
// reaches a log: the access log records the route, not headers.
func (s *Server) requireAdmin(c *gin.Context) {
	auth := c.GetHeader("Authorization")
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok || tok == "" {
		c.Header("WWW-Authenticate", `Bearer realm="mailslot"`)
		abortError(c, mailslot.CodeUnauthorized, nil)
		return
	}
	if !secret.Equal(tok, s.set.AdminToken) {
		abortError(c, mailslot.CodeForbidden, nil)
		return
	}
	c.Next()
}

// recoverer turns a panic into a logged 500 that says nothing about why.
func (s *Server) recoverer() gin.HandlerFunc {
	return func(c *gin.Context) {
		defer func() {
			if r := recover(); r != nil {
				if r == http.ErrAbortHandler {
					panic(r)
				}
				s.log.Error("handler panic", logging.KeyRoute, c.FullPath(), "panic", slog.AnyValue(r).String())
				abortError(c, mailslot.CodeInternal, nil)
			}
		}()
		c.Next()
	}
}

// accessLog records route templates, never raw URLs: query strings carry
// tokens. Successes are logged at debug level; at thousands of requests a
// second they belong in metrics.
func (s *Server) accessLog() gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		c.Next()
		status := c.Writer.Status()
		route := c.FullPath()
		if route == "" {
			route = "unmatched"
		}
		s.metrics.Observe(route, status, time.Since(start))
		level := slog.LevelDebug
		switch {
		case status == http.StatusServiceUnavailable:
			// The outbox logs when it starts and stops refusing; a line per
			// refused request would flood the log exactly when it matters.
		case status >= 500:
			level = slog.LevelError
		case status >= 400:
			level = slog.LevelInfo
		}
		if !s.log.Enabled(c, level) {
			return
		}
		s.log.Log(c, level, "request",
			"method", c.Request.Method, logging.KeyRoute, route, logging.KeyStatus, status,
			"duration_ms", float64(time.Since(start).Microseconds())/1000)
	}
}

func (s *Server) internalError(c *gin.Context, what string, err error) {
	s.log.Error(what, logging.KeyErr, err)
	abortError(c, mailslot.CodeInternal, nil)
}
