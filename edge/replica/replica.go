// Package replica keeps a Litestream replica of an edge's outbox, with
// Litestream used as a library, and restores one.
//
// MAILSLOT_REPLICA_URL is one base for the whole fleet; each node replicates
// beneath it under its own node id, so an operator who knows the base and a
// node id can find, restore or recover that node's outbox:
//
//	file:///var/lib/mailslot/replicas   → /var/lib/mailslot/replicas/<node>/ltx/…
//	s3://bucket/outboxes                → s3://bucket/outboxes/<node>/ltx/…
//
// The layout is Litestream's own, so `litestream restore -o out.db <url>/<node>`
// reads it too. S3-compatible stores (Fly's Tigris, MinIO, R2) take an
// endpoint (MAILSLOT_REPLICA_ENDPOINT) and the standard AWS_* credentials.
package replica

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/benbjohnson/litestream"
	"github.com/benbjohnson/litestream/file"
	"github.com/benbjohnson/litestream/s3"

	"github.com/mailslot/mailslot/internal/nodeid"
)

// ErrNotFound means no replica exists for the node under the base URL.
var ErrNotFound = errors.New("no replica for this node")

// WithEndpoint returns baseURL with an S3 endpoint (and AWS_REGION, when
// set and the URL names none) in its query, where Litestream's S3 client
// reads them. It leaves file URLs and URLs that already name an endpoint
// alone.
func WithEndpoint(baseURL, endpoint, region string) (string, error) {
	u, err := parseBase(baseURL)
	if err != nil {
		return "", err
	}
	if u.Scheme != "s3" {
		if endpoint != "" {
			return "", fmt.Errorf("MAILSLOT_REPLICA_ENDPOINT applies only to s3:// replica URLs, not %s://", u.Scheme)
		}
		return baseURL, nil
	}
	q := u.Query()
	if endpoint != "" && q.Get("endpoint") == "" {
		q.Set("endpoint", endpoint)
	}
	if region != "" && q.Get("region") == "" {
		q.Set("region", region)
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// NodeURL is nodeID's replica URL beneath baseURL.
func NodeURL(baseURL, nodeID string) (string, error) {
	u, err := parseBase(baseURL)
	if err != nil {
		return "", err
	}
	// The id is one path segment beneath the shared base.
	if err := nodeid.Check(nodeID); err != nil {
		return "", fmt.Errorf("name a replica: %w", err)
	}
	u.Path = path.Join(u.Path, nodeID)
	if u.Scheme == "s3" && !strings.HasPrefix(u.Path, "/") {
		u.Path = "/" + u.Path
	}
	return u.String(), nil
}

// Display is a replica URL as logs and status may show it: no credentials,
// no query.
func Display(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(invalid replica URL)"
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}

func parseBase(baseURL string) (*url.URL, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, errors.New("replica URL is not a valid URL")
	}
	switch u.Scheme {
	case "file":
		if u.Host != "" || !strings.HasPrefix(u.Path, "/") {
			return nil, fmt.Errorf("replica URL %q: a file URL needs an absolute path, as in file:///var/lib/mailslot/replicas", Display(baseURL))
		}
	case "s3":
		if u.Host == "" {
			return nil, fmt.Errorf("replica URL %q: an s3 URL needs a bucket, as in s3://bucket/path", Display(baseURL))
		}
	default:
		return nil, fmt.Errorf("replica URL %q: the scheme must be file:// or s3://", Display(baseURL))
	}
	return u, nil
}

// newClient returns a Litestream client for nodeID's replica.
func newClient(baseURL, nodeID string, log *slog.Logger) (litestream.ReplicaClient, string, error) {
	nodeURL, err := NodeURL(baseURL, nodeID)
	if err != nil {
		return nil, "", err
	}
	scheme, host, urlPath, query, userinfo, err := litestream.ParseReplicaURLWithQuery(nodeURL)
	if err != nil {
		return nil, "", fmt.Errorf("replica URL %q: %w", Display(nodeURL), err)
	}
	var c litestream.ReplicaClient
	switch scheme {
	case "file":
		c, err = file.NewReplicaClientFromURL(scheme, host, urlPath, query, userinfo)
	case "s3":
		c, err = s3.NewReplicaClientFromURL(scheme, host, urlPath, query, userinfo)
	}
	if err != nil {
		return nil, "", fmt.Errorf("replica URL %q: %w", Display(nodeURL), err)
	}
	c.SetLogger(log)
	return c, nodeURL, nil
}

// Exists reports whether nodeID has a replica beneath baseURL: whether any
// level holds an LTX file.
func Exists(ctx context.Context, baseURL, nodeID string) (bool, error) {
	c, nodeURL, err := newClient(baseURL, nodeID, quiet())
	if err != nil {
		return false, err
	}
	return exists(ctx, c, nodeURL)
}

func exists(ctx context.Context, c litestream.ReplicaClient, nodeURL string) (bool, error) {
	if err := c.Init(ctx); err != nil {
		return false, fmt.Errorf("open replica %s: %w", Display(nodeURL), err)
	}
	for level := litestream.SnapshotLevel; level >= 0; level-- {
		itr, err := c.LTXFiles(ctx, level, 0, false)
		if err != nil {
			return false, fmt.Errorf("list replica %s: %w", Display(nodeURL), err)
		}
		found := itr.Next()
		if err := itr.Close(); err != nil {
			return false, fmt.Errorf("list replica %s: %w", Display(nodeURL), err)
		}
		if found {
			return true, nil
		}
	}
	return false, nil
}

// Restored describes a restore.
type Restored struct {
	// Replica is the node's replica URL, without credentials or query.
	Replica string `json:"replica"`
	// TXID is the Litestream transaction the restored file ends at.
	TXID uint64 `json:"txid"`
}

// Restore writes the latest replicated state of nodeID's outbox to dstPath,
// which must not exist, and checks the result's integrity. It answers
// ErrNotFound when the node has no replica.
func Restore(ctx context.Context, baseURL, nodeID, dstPath string) (Restored, error) {
	return restore(ctx, baseURL, nodeID, dstPath, quiet())
}

func restore(ctx context.Context, baseURL, nodeID, dstPath string, log *slog.Logger) (Restored, error) {
	c, nodeURL, err := newClient(baseURL, nodeID, log)
	if err != nil {
		return Restored{}, err
	}
	res := Restored{Replica: Display(nodeURL)}
	ok, err := exists(ctx, c, nodeURL)
	if err != nil {
		return res, err
	}
	if !ok {
		return res, fmt.Errorf("%w %q under %s", ErrNotFound, nodeID, Display(baseURL))
	}
	if _, err := os.Stat(dstPath); err == nil {
		return res, fmt.Errorf("restore to %s: the file exists", dstPath)
	}
	// Litestream's Replica logs through its DB; a DB that is never opened
	// carries our logger and nothing else.
	carrier := litestream.NewDB(dstPath)
	carrier.SetLogger(log)
	defer func() { _ = carrier.Close(context.WithoutCancel(ctx)) }()
	r := litestream.NewReplicaWithClient(carrier, c)
	r.MonitorEnabled = false
	plan, err := litestream.CalcRestorePlan(ctx, c, 0, time.Time{}, log)
	if err != nil {
		return res, fmt.Errorf("plan restore of %s: %w", Display(nodeURL), err)
	}
	opt := litestream.NewRestoreOptions()
	opt.OutputPath = dstPath
	opt.IntegrityCheck = litestream.IntegrityCheckQuick
	if err := os.MkdirAll(filepath.Dir(dstPath), 0o700); err != nil {
		return res, fmt.Errorf("restore to %s: %w", dstPath, err)
	}
	if err := r.Restore(ctx, opt); err != nil {
		return res, fmt.Errorf("restore %s to %s: %w", Display(nodeURL), dstPath, err)
	}
	res.TXID = uint64(plan[len(plan)-1].MaxTXID)
	return res, nil
}

// RemoveLocalState deletes what a previous database at dbPath left beside
// it: Litestream's local state and SQLite's WAL and shared-memory files.
// Call it only when dbPath itself is gone; a WAL without its database would
// otherwise be replayed into the restored or new file.
func RemoveLocalState(dbPath string) error {
	dir, name := filepath.Split(dbPath)
	return errors.Join(
		os.RemoveAll(filepath.Join(dir, "."+name+litestream.MetaDirSuffix)),
		removeIfExists(dbPath+"-wal"),
		removeIfExists(dbPath+"-shm"),
	)
}

func removeIfExists(p string) error {
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// quiet is the logger for Litestream when the caller gave none.
func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// warnOnly keeps Litestream's warnings and errors and drops its chatter
// (a line per compaction and per snapshot).
type warnOnly struct{ slog.Handler }

func (h warnOnly) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn && h.Handler.Enabled(ctx, l)
}

func (h warnOnly) WithAttrs(as []slog.Attr) slog.Handler {
	return warnOnly{h.Handler.WithAttrs(as)}
}

func (h warnOnly) WithGroup(name string) slog.Handler { return warnOnly{h.Handler.WithGroup(name)} }
