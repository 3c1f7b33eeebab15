package edge

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mailslot/mailslot/sync/mailer"
)

// mailFeedback is api.MailFeedback on Postgres. Feedback is rare, so each
// call takes one short connection rather than keeping a pool open on
// every edge.
type mailFeedback struct {
	databaseURL string
}

func (f mailFeedback) RecordFeedback(ctx context.Context, emailID, kind string) (string, []byte, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cfg, err := pgx.ParseConfig(f.databaseURL)
	if err != nil {
		return "", nil, false, errors.New("DATABASE_URL is not a valid PostgreSQL URL")
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return "", nil, false, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return mailer.NewStore(conn).RecordFeedback(ctx, emailID, kind)
}
