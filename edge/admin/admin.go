// Package admin is the edge's operator API as its callers see it: the one
// type GET /v1/sync/status answers (SyncStatus, which the node produces and
// mailslotctl decodes) and a typed Client for the admin endpoints. Node
// ids go into URLs only through EdgeURL, which checks and escapes them.
package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/mailslot/mailslot/edge/api"
	"github.com/mailslot/mailslot/edge/replica"
	"github.com/mailslot/mailslot/internal/challenge/policy"
	"github.com/mailslot/mailslot/internal/nodeid"
	"github.com/mailslot/mailslot/outbox"
	"github.com/mailslot/mailslot/sync/challenges"
	"github.com/mailslot/mailslot/sync/drain"
	"github.com/mailslot/mailslot/sync/erasure"
	"github.com/mailslot/mailslot/sync/images"
	"github.com/mailslot/mailslot/sync/mailer"
	"github.com/mailslot/mailslot/sync/rollups"
	"github.com/mailslot/mailslot/sync/webhook"
)

// StateDisabled is the sync state of an edge without DATABASE_URL.
const StateDisabled = "disabled"

// SyncStatus is what GET /v1/sync/status answers: the sync worker's fields
// at the top level, the other workers' beside them. An edge without
// DATABASE_URL reports State "disabled", its outbox counts, and Sync saying
// why; Tombstones and Images are then absent, as Replica is without a
// replica.
type SyncStatus struct {
	drain.Status
	// Sync, when set, says why this edge does not sync.
	Sync       string           `json:"sync,omitempty"`
	Tombstones *erasure.Status  `json:"tombstones,omitempty"`
	Replica    *replica.Status  `json:"replica,omitempty"`
	Images     *images.Status   `json:"images,omitempty"`
	Mail       *mailer.Status   `json:"mail,omitempty"`
	Webhooks   *WebhookStatus   `json:"webhooks,omitempty"`
	Challenge  *ChallengeStatus `json:"challenge,omitempty"`
	Reports    *rollups.Status  `json:"reports,omitempty"`
}

// ChallengeStatus is the challenge member of /v1/sync/status: verdict
// counts per property, where the settings came from, the re-check queue.
type ChallengeStatus struct {
	policy.Status
	Pull    *challenges.Status `json:"pull,omitempty"`
	Recheck *api.RecheckStatus `json:"recheck,omitempty"`
}

// WebhookStatus is the webhooks member of /v1/sync/status: this edge's
// deliverer, and every subscription's deliveries by state, fleet-wide
// (they are counted in Postgres).
type WebhookStatus struct {
	Deliverer     webhook.Status           `json:"deliverer"`
	Subscriptions []SubscriptionDeliveries `json:"subscriptions"`
	Error         string                   `json:"error,omitempty"`
}

// SubscriptionDeliveries is one subscription's line in WebhookStatus.
type SubscriptionDeliveries struct {
	ID       uuid.UUID `json:"id"`
	Receiver string    `json:"receiver"` // without its query, which may hold a token
	Disabled bool      `json:"disabled"`
	webhook.Counts
}

// answerLimit bounds what the client reads of one answer (an access
// export can be large).
const answerLimit = 64 << 20

// Client asks edges' admin APIs, with the admin token when one is set (the
// private listener needs none). Errors name the edge and the fix, never
// the token.
type Client struct {
	HTTP  *http.Client
	Token string
}

// NewClient returns a Client whose requests time out after timeout.
func NewClient(token string, timeout time.Duration) *Client {
	return &Client{HTTP: &http.Client{Timeout: timeout}, Token: token}
}

// EdgeURL is template's URL of nodeID's edge: every {node} replaced by the
// node id, after checking it and escaping it as a path segment. A node id
// read from Postgres is data, and must not be able to point the client at
// another host.
func EdgeURL(template, nodeID string) (string, error) {
	if err := nodeid.Check(nodeID); err != nil {
		return "", fmt.Errorf("not asked: %w", err)
	}
	return strings.ReplaceAll(template, "{node}", url.PathEscape(nodeID)), nil
}

// SyncStatus asks an edge for its status.
func (c *Client) SyncStatus(ctx context.Context, base string) (SyncStatus, error) {
	var st SyncStatus
	if err := c.do(ctx, http.MethodGet, base, "/v1/sync/status", nil, &st); err != nil {
		return SyncStatus{}, err
	}
	if st.NodeID == "" {
		return SyncStatus{}, fmt.Errorf("edge %s: status has no node id", base)
	}
	return st, nil
}

// OutboxSummary asks an edge what its outbox holds.
func (c *Client) OutboxSummary(ctx context.Context, base string) (outbox.Summary, error) {
	var sum outbox.Summary
	err := c.do(ctx, http.MethodGet, base, "/admin/outbox/summary", nil, &sum)
	return sum, err
}

// OutboxSeqs asks for one page of the seqs an edge holds in [from, to].
func (c *Client) OutboxSeqs(ctx context.Context, base string, from, to int64, limit int) (api.SeqPage, error) {
	q := url.Values{"from": {strconv.FormatInt(from, 10)}, "to": {strconv.FormatInt(to, 10)}, "limit": {strconv.Itoa(limit)}}
	var p api.SeqPage
	err := c.do(ctx, http.MethodGet, base, "/admin/outbox/seqs?"+q.Encode(), nil, &p)
	return p, err
}

// Requeue makes seqs pending again on an edge, so that its sync re-applies
// them.
func (c *Client) Requeue(ctx context.Context, base string, seqs []int64) (api.RequeueResult, error) {
	var res api.RequeueResult
	err := c.do(ctx, http.MethodPost, base, "/admin/outbox/requeue", api.RequeueRequest{Seqs: seqs}, &res)
	return res, err
}

// Export asks an edge for every outbox row of an address (an access
// request) and returns its answer as sent.
func (c *Client) Export(ctx context.Context, base, email string) (json.RawMessage, error) {
	var raw json.RawMessage
	err := c.do(ctx, http.MethodPost, base, "/admin/export", map[string]string{"email": email}, &raw)
	return raw, err
}

func (c *Client) do(ctx context.Context, method, base, path string, body, into any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode request to %s: %w", base, err)
		}
		rd = bytes.NewReader(b)
	}
	route := strings.SplitN(path, "?", 2)[0]
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(base, "/")+path, rd)
	if err != nil {
		return fmt.Errorf("edge URL %q is not valid", base)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("edge %s unreachable: %w (is it running? in production use its private address over 6PN or fly proxy; see --edge-template)", base, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("edge %s refused the admin token (status %d): set MAILSLOT_ADMIN_TOKEN, or use the private listener", base, resp.StatusCode)
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("edge %s has no %s (status 404): is it a mailslot edge of this version?", base, route)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("edge %s answered status %d to %s", base, resp.StatusCode, route)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, answerLimit)).Decode(into); err != nil {
		return fmt.Errorf("edge %s: answer to %s is not the expected JSON: %w", base, route, err)
	}
	return nil
}
