// Package dashboard serves the marketing dashboard of `mailslotctl
// dashboard`: one server-rendered HTML page with inline SVG charts drawn
// here from the report queries (internal/report) and the fleet's sync
// state from mailslot.nodes. It loads nothing from elsewhere (no CDN, no
// script), so it works offline, and it is meant for a loopback listener
// behind internal/hostguard: the page shows aggregates only, but they are
// still the business's numbers.
package dashboard

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/mailslot/mailslot/internal/report"
)

// DefaultDays is how many days the page covers unless ?days= says.
const DefaultDays = 30

// staleAfter is how long a node may go without a sync before the page
// marks it stale.
const staleAfter = 10 * time.Minute

// Handler serves the dashboard at "/" from db. It reads the report views
// (the mailslot_reporting role may) and mailslot.nodes.
type Handler struct {
	DB  report.DB
	Log *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Node is one edge's sync state as Postgres records it.
type Node struct {
	ID, Region string
	LastSeq    int64
	RowsSynced int64
	LastSyncAt *time.Time
}

// page is what the template renders.
type page struct {
	Property   string
	Days       int
	Since      string
	Until      string
	Generated  string
	Totals     report.FunnelCounts
	Signups    template.HTML
	Campaigns  template.HTML
	Pages      template.HTML
	Funnel     template.HTML
	Consent    template.HTML
	ConsentTbl []report.ConsentRow
	Fleet      template.HTML
	FleetNote  string
	Nodes      []nodeView
	Properties []string
}

type nodeView struct {
	Node
	Ago   string
	State string
}

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now().UTC()
	}
	return time.Now().UTC()
}

// ServeHTTP renders the page. Only GET and HEAD of "/" are served.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	days := DefaultDays
	if v := r.URL.Query().Get("days"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 3660 {
			http.Error(w, "days: want a whole number of days from 1 to 3660", http.StatusBadRequest)
			return
		}
		days = n
	}
	property := r.URL.Query().Get("property")
	if len(property) > 253 {
		http.Error(w, "property: too long", http.StatusBadRequest)
		return
	}
	p, err := h.build(r.Context(), property, days)
	if err != nil {
		if h.Log != nil {
			h.Log.Error("render dashboard", "err", err)
		}
		http.Error(w, "the dashboard could not read Postgres; see the command's log", http.StatusServiceUnavailable)
		return
	}
	var buf bytes.Buffer
	if err := pageTmpl.Execute(&buf, p); err != nil {
		http.Error(w, "render the dashboard", http.StatusInternalServerError)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Cache-Control", "no-store")
	// Nothing but the page itself: inline styles and SVG, no script.
	hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	_, _ = w.Write(buf.Bytes())
}

func (h *Handler) build(ctx context.Context, property string, days int) (page, error) {
	now := h.now()
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	since := today.AddDate(0, 0, 1-days)
	f := report.Filter{Property: property, Since: since, Until: today}
	p := page{Property: property, Days: days, Since: since.Format(time.DateOnly), Until: today.Format(time.DateOnly),
		Generated: now.Format("2006-01-02 15:04 UTC")}

	funnel, err := report.Funnel(ctx, h.DB, f)
	if err != nil {
		return p, err
	}
	campaigns, err := report.Campaigns(ctx, h.DB, f)
	if err != nil {
		return p, err
	}
	pages, err := report.Pages(ctx, h.DB, f)
	if err != nil {
		return p, err
	}
	consent, err := report.Consent(ctx, h.DB, report.Filter{Property: property})
	if err != nil {
		return p, err
	}
	nodes, err := fleet(ctx, h.DB)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42501" {
		// The reporting role reads the report views only; the fleet is
		// for the owner's (or the edge's) login.
		p.FleetNote = "This login may not read mailslot.nodes (the mailslot_reporting role reads the report views only); connect as the schema owner to see the fleet."
		err = nil
	}
	if err != nil {
		return p, err
	}
	if p.Properties, err = properties(ctx, h.DB); err != nil {
		return p, err
	}

	// Sign-ups over time: every day of the range, summed over properties.
	signups := map[string][2]float64{}
	for _, r := range funnel {
		v := signups[r.Day]
		v[0] += float64(r.Signups)
		v[1] += float64(r.Confirmed)
		signups[r.Day] = v
	}
	var labels []string
	var series [2][]float64
	for d := since; !d.After(today); d = d.AddDate(0, 0, 1) {
		day := d.Format(time.DateOnly)
		labels = append(labels, day)
		series[0] = append(series[0], signups[day][0])
		series[1] = append(series[1], signups[day][1])
	}
	anySignups := slices.ContainsFunc(series[0], func(v float64) bool { return v > 0 })
	p.Signups = lineChart("Sign-ups per day", labels, []lineSeries{{"sign-ups", colorSignup, series[0]}, {"confirmed", colorConfirmed, series[1]}}, anySignups)

	// By campaign (first touch), over properties.
	byCampaign := map[string]*bar{}
	for _, r := range campaigns {
		label := "(no campaign)"
		if r.Source != "" || r.Medium != "" || r.Campaign != "" {
			label = cmp.Or(r.Source, "-") + " / " + cmp.Or(r.Medium, "-") + " / " + cmp.Or(r.Campaign, "-")
		}
		b := byCampaign[label]
		if b == nil {
			b = &bar{Label: label}
			byCampaign[label] = b
		}
		b.Value += float64(r.Signups)
		b.Second += float64(r.Confirmed)
	}
	p.Campaigns = barChart("Sign-ups by first-touch campaign", top(byCampaign, 8), "sign-ups", "confirmed")

	byPage := map[string]*bar{}
	for _, r := range pages {
		label := r.Page
		if label == "" {
			label = "(no page)"
		}
		if property == "" {
			label = r.Property + " " + label
		}
		byPage[label] = &bar{Label: label, Value: float64(r.Signups), Second: float64(r.Confirmed)}
		p.Totals.PageViews += r.PageViews
		p.Totals.FormSubmits += r.FormSubmits
		p.Totals.FormAccepted += r.FormAccepted
		p.Totals.Signups += r.Signups
		p.Totals.Confirmed += r.Confirmed
	}
	p.Pages = barChart("Sign-ups by page", top(byPage, 8), "sign-ups", "confirmed")
	t := p.Totals
	p.Funnel = funnelChart([]bar{
		{Label: "page views", Value: float64(t.PageViews)},
		{Label: "form submits", Value: float64(t.FormSubmits)},
		{Label: "sign-ups", Value: float64(t.Signups)},
		{Label: "confirmed", Value: float64(t.Confirmed)},
	})

	var confirmed, pending, withdrawn, other, suppressed int64
	for _, c := range consent {
		confirmed += c.Confirmed
		pending += c.Pending
		withdrawn += c.Withdrawn
		other += c.Signups - c.Confirmed - c.Pending - c.Withdrawn
		suppressed += c.Suppressed
	}
	p.ConsentTbl = consent
	p.Consent = stackChart("Consent now", []segment{
		{"confirmed", colorConfirmed, confirmed},
		{"unconfirmed (express or implied)", colorImplied, other},
		{"pending confirmation", colorPending, pending},
		{"withdrawn", colorWithdrawn, withdrawn},
	}, suppressed)

	fleetBars := map[string]*bar{}
	for _, n := range nodes {
		v := nodeView{Node: n, Ago: "never", State: "never synced"}
		if n.LastSyncAt != nil {
			ago := now.Sub(*n.LastSyncAt).Round(time.Second)
			v.Ago = ago.String() + " ago"
			v.State = "syncing"
			if ago > staleAfter {
				v.State = "stale"
			}
		}
		p.Nodes = append(p.Nodes, v)
		fleetBars[n.ID] = &bar{Label: n.ID + " (" + n.Region + ")", Value: float64(n.RowsSynced)}
	}
	p.Fleet = barChart("Rows synced per node", top(fleetBars, 50), "rows synced", "")
	return p, nil
}

func fleet(ctx context.Context, db report.DB) ([]Node, error) {
	rows, err := db.Query(ctx, `SELECT node_id, region, last_seq, rows_synced, last_sync_at FROM mailslot.nodes ORDER BY node_id`)
	if err != nil {
		return nil, fmt.Errorf("read the fleet's sync state: %w", err)
	}
	nodes, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Node, error) {
		var n Node
		err := r.Scan(&n.ID, &n.Region, &n.LastSeq, &n.RowsSynced, &n.LastSyncAt)
		return n, err
	})
	if err != nil {
		return nil, fmt.Errorf("read the fleet's sync state: %w", err)
	}
	return nodes, nil
}

// properties lists the properties the consent view knows, for the picker.
func properties(ctx context.Context, db report.DB) ([]string, error) {
	all, err := report.Consent(ctx, db, report.Filter{})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, c := range all {
		out = append(out, c.Property)
	}
	slices.Sort(out)
	return out, nil
}

// top returns the n largest bars, largest first, ties by label.
func top(m map[string]*bar, n int) []bar {
	var out []bar
	for _, b := range m {
		out = append(out, *b)
	}
	slices.SortFunc(out, func(a, b bar) int {
		if c := cmp.Compare(b.Value, a.Value); c != 0 {
			return c
		}
		return cmp.Compare(a.Label, b.Label)
	})
	if len(out) > n {
		out = out[:n]
	}
	return out
}

// Rate is a ratio as a percentage for the page, "-" when undefined.
func rate(num, den int64) string {
	if den == 0 {
		return "-"
	}
	return strconv.FormatFloat(float64(num)*100/float64(den), 'f', 1, 64) + "%"
}

var pageTmpl = template.Must(template.New("page").Funcs(template.FuncMap{"rate": rate}).Parse(pageHTML))
