package api

import (
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/mailslot/mailslot"
	"github.com/mailslot/mailslot/edge/intake"
	"github.com/mailslot/mailslot/outbox"
)

// Bounds of the reconcile API: one page of held seqs, one requeue request.
const (
	defaultSeqPage = 1000
	maxSeqPage     = 5000
	maxRequeue     = 10_000
)

// reconcileRoutes serves what mailslotctl reconcile asks an edge. The
// answers carry sequence numbers, submission ids and states, never a
// row's content: no personal data leaves the edge this way.
func (s *Server) reconcileRoutes(g *gin.RouterGroup) {
	g.GET("/outbox/summary", s.outboxSummary)
	g.GET("/outbox/seqs", s.outboxSeqs)
	g.POST("/outbox/requeue", s.outboxRequeue)
}

// outboxSummary answers the counts by state, the runs of seqs held, and the
// deliberate jumps in the sequence.
func (s *Server) outboxSummary(c *gin.Context) {
	sum, err := s.out.Summary(c.Request.Context())
	if err != nil {
		s.internalError(c, "summarize outbox", err)
		return
	}
	c.JSON(http.StatusOK, sum)
}

// SeqPage is one page of GET /admin/outbox/seqs. Next, when set, is where
// the following page starts; Rows then covers [From, Next-1]. The admin
// client (edge/admin) decodes this same type.
type SeqPage struct {
	NodeID string        `json:"node_id"`
	From   int64         `json:"from"`
	To     int64         `json:"to"`
	Rows   []outbox.Held `json:"rows"`
	Next   *int64        `json:"next,omitempty"`
}

// outboxSeqs lists the seqs held in [from, to] with their submission ids
// and states, a bounded page at a time.
func (s *Server) outboxSeqs(c *gin.Context) {
	fields := map[string]string{}
	from := queryInt(c, "from", 0, 0, math.MaxInt64, fields)
	to := queryInt(c, "to", math.MaxInt64, 0, math.MaxInt64, fields)
	limit := queryInt(c, "limit", defaultSeqPage, 1, maxSeqPage, fields)
	if len(fields) == 0 && to < from {
		fields["to"] = intake.FieldInvalid
	}
	if len(fields) > 0 {
		abortError(c, mailslot.CodeInvalidFields, fields)
		return
	}
	rows, err := s.out.HeldRange(c.Request.Context(), from, to, int(limit))
	if err != nil {
		s.internalError(c, "list held seqs", err)
		return
	}
	p := SeqPage{NodeID: s.out.NodeID(), From: from, To: to, Rows: rows}
	if int64(len(rows)) == limit {
		if last := rows[len(rows)-1].Seq; last < to {
			next := last + 1
			p.Next = &next
		}
	}
	c.JSON(http.StatusOK, p)
}

// queryInt reads an optional integer query parameter within [lo, hi],
// recording a field error when it is not one.
func queryInt(c *gin.Context, name string, def, lo, hi int64, fields map[string]string) int64 {
	v, ok := c.GetQuery(name)
	if !ok || v == "" {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < lo || n > hi {
		fields[name] = intake.FieldInvalid
		return def
	}
	return n
}

// RequeueRequest is the body of POST /admin/outbox/requeue.
type RequeueRequest struct {
	Seqs []int64 `json:"seqs"`
}

// RequeueResult is its answer: how many seqs were asked for and how many
// rows were made pending again.
type RequeueResult struct {
	Requested int   `json:"requested"`
	Requeued  int64 `json:"requeued"`
}

// outboxRequeue marks the named rows pending again so that this edge's
// sync re-applies them. It is idempotent: the ledger turns a row Postgres
// already holds into a replay that changes nothing.
func (s *Server) outboxRequeue(c *gin.Context) {
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, 32*maxRequeue))
	if err != nil {
		abortError(c, mailslot.CodeBodyTooLarge, nil)
		return
	}
	if intake.FormatOf(c.GetHeader("Content-Type")) != intake.FormatJSON {
		abortError(c, mailslot.CodeUnsupportedMediaType, nil)
		return
	}
	var req RequeueRequest
	if err := json.Unmarshal(body, &req); err != nil {
		abortError(c, mailslot.CodeInvalidJSON, nil)
		return
	}
	switch {
	case len(req.Seqs) == 0:
		abortError(c, mailslot.CodeInvalidFields, map[string]string{"seqs": intake.FieldRequired})
		return
	case len(req.Seqs) > maxRequeue:
		abortError(c, mailslot.CodeInvalidFields, map[string]string{"seqs": "too_many"})
		return
	}
	for _, seq := range req.Seqs {
		if seq <= 0 {
			abortError(c, mailslot.CodeInvalidFields, map[string]string{"seqs": intake.FieldInvalid})
			return
		}
	}
	n, err := s.out.Requeue(c.Request.Context(), req.Seqs)
	switch {
	case errors.Is(err, outbox.ErrClosed), errors.Is(err, outbox.ErrStorage):
		c.Header("Retry-After", "5")
		abortError(c, mailslot.CodeUnavailable, nil)
		return
	case err != nil:
		s.internalError(c, "requeue rows", err)
		return
	}
	s.log.Info("requeued outbox rows for sync", "requested", len(req.Seqs), "requeued", n)
	c.JSON(http.StatusOK, RequeueResult{Requested: len(req.Seqs), Requeued: n})
}
