package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/mailslot/mailslot/sync/mailer"
)

// writeMailSummary adds the fleet's mail queue to `mailslotctl status`:
// one line of counts from Postgres (mailer.ReadCounts), and a hint when
// jobs wait for an operator. A fleet that has never queued mail, or whose
// schema predates mail, gets no line.
func writeMailSummary(ctx context.Context, e env, conn *pgx.Conn) error {
	c, err := mailer.ReadCounts(ctx, conn)
	if err != nil {
		if strings.Contains(err.Error(), "SQLSTATE 42P01") {
			return nil
		}
		return err
	}
	if c.Queued+c.Sending+c.Sent+c.Failed+c.Dead+c.Uncertain+c.Skipped+c.Cancelled == 0 {
		return nil
	}
	fmt.Fprintln(e.stdout) // a blank line ends the node table
	fmt.Fprintln(e.stdout, mailSummaryLine(c))
	if c.Uncertain > 0 {
		fmt.Fprintf(e.stdout, "mail: %d uncertain: the server may have taken them; see mailslotctl mail list --state uncertain\n", c.Uncertain)
	}
	return nil
}

// mailSummaryLine is the status line for the mail queue's counts.
func mailSummaryLine(c mailer.Counts) string {
	return fmt.Sprintf("mail: queued %d (%d due), sending %d, sent %d, failed %d, dead %d, bounced %d, complained %d, skipped %d, uncertain %d, cancelled %d",
		c.Queued, c.Ready, c.Sending, c.Sent, c.Failed, c.Dead, c.Bounced, c.Complained, c.Skipped, c.Uncertain, c.Cancelled)
}
