package report

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/mailslot/mailslot/internal/pgrows"
)

// Every report reads the report views only, so it shows exactly what the
// read-only role could see. "" stands for a value the visitor did not give
// (no UTM, no page). Rates are nil when their denominator is zero.

// CampaignRow is sign-ups credited to one UTM source, medium and campaign.
type CampaignRow struct {
	Property    string   `json:"property"`
	Touch       Touch    `json:"touch"`
	Source      string   `json:"source"`
	Medium      string   `json:"medium"`
	Campaign    string   `json:"campaign"`
	Signups     int64    `json:"signups"`
	Confirmed   int64    `json:"confirmed"`
	Unconfirmed int64    `json:"unconfirmed"`
	Withdrawn   int64    `json:"withdrawn"`
	Suppressed  int64    `json:"suppressed"`
	ConfirmRate *float64 `json:"confirm_rate"`
}

func (r CampaignRow) fields() []field {
	return []field{
		{"property", r.Property}, {"touch", string(r.Touch)}, {"source", r.Source}, {"medium", r.Medium},
		{"campaign", r.Campaign}, {"signups", r.Signups}, {"confirmed", r.Confirmed},
		{"unconfirmed", r.Unconfirmed}, {"withdrawn", r.Withdrawn}, {"suppressed", r.Suppressed},
		{"confirm_rate", rate(r.ConfirmRate)},
	}
}

const campaignsFirstSQL = `
SELECT property, coalesce(first_source, ''), coalesce(first_medium, ''), coalesce(first_campaign, ''),
       sum(signups)::bigint, sum(confirmed)::bigint, sum(unconfirmed)::bigint, sum(withdrawn)::bigint,
       sum(suppressed)::bigint, round(sum(confirmed)::numeric / nullif(sum(signups), 0), 4)::float8
FROM mailslot.report_signups_daily
WHERE ($1::text = '' OR property = $1) AND ($2::date IS NULL OR day >= $2) AND ($3::date IS NULL OR day <= $3)
GROUP BY 1, 2, 3, 4
ORDER BY 5 DESC, 1, 2, 3, 4`

const campaignsLastSQL = `
SELECT property, coalesce(last_source, ''), coalesce(last_medium, ''), coalesce(last_campaign, ''),
       sum(signups)::bigint, sum(confirmed)::bigint, sum(unconfirmed)::bigint, sum(withdrawn)::bigint,
       sum(suppressed)::bigint, round(sum(confirmed)::numeric / nullif(sum(signups), 0), 4)::float8
FROM mailslot.report_signups_daily
WHERE ($1::text = '' OR property = $1) AND ($2::date IS NULL OR day >= $2) AND ($3::date IS NULL OR day <= $3)
GROUP BY 1, 2, 3, 4
ORDER BY 5 DESC, 1, 2, 3, 4`

// Campaigns reports sign-ups per property and UTM source, medium and
// campaign of their first touch (or last, as f.Touch says), most sign-ups
// first, counted in the leads' current state.
func Campaigns(ctx context.Context, db DB, f Filter) ([]CampaignRow, error) {
	since, until, err := f.days()
	if err != nil {
		return nil, err
	}
	touch, err := ParseTouch(string(f.Touch))
	if err != nil {
		return nil, err
	}
	q := campaignsFirstSQL
	if touch == TouchLast {
		q = campaignsLastSQL
	}
	return pgrows.Collect(ctx, db, "read campaigns report", func(r pgx.CollectableRow) (CampaignRow, error) {
		c := CampaignRow{Touch: touch}
		err := r.Scan(&c.Property, &c.Source, &c.Medium, &c.Campaign, &c.Signups, &c.Confirmed, &c.Unconfirmed,
			&c.Withdrawn, &c.Suppressed, &c.ConfirmRate)
		return c, err
	}, q, f.Property, since, until)
}

// FunnelCounts are the funnel's stages and the ratios between them. The
// client script carries no visitor id, so these are ratios of counts, not
// visitors' paths: Signups counts new leads whose first sign-up was on the
// page (a form posted without JavaScript sends no form_submit event, so
// AcceptRate can exceed 1), Confirmed those of them confirmed now.
type FunnelCounts struct {
	PageViews    int64    `json:"page_views"`
	FormSubmits  int64    `json:"form_submits"`
	FormAccepted int64    `json:"form_accepted"`
	Signups      int64    `json:"signups"`
	Confirmed    int64    `json:"confirmed"`
	SubmitRate   *float64 `json:"submit_rate"`  // form submits / page views
	AcceptRate   *float64 `json:"accept_rate"`  // sign-ups / form submits
	SignupRate   *float64 `json:"signup_rate"`  // sign-ups / page views
	ConfirmRate  *float64 `json:"confirm_rate"` // confirmed / sign-ups
}

func (c FunnelCounts) fields() []field {
	return []field{
		{"page_views", c.PageViews}, {"form_submits", c.FormSubmits}, {"form_accepted", c.FormAccepted},
		{"signups", c.Signups}, {"confirmed", c.Confirmed},
		{"submit_rate", rate(c.SubmitRate)}, {"accept_rate", rate(c.AcceptRate)},
		{"signup_rate", rate(c.SignupRate)}, {"confirm_rate", rate(c.ConfirmRate)},
	}
}

func (c *FunnelCounts) targets() []any {
	return []any{&c.PageViews, &c.FormSubmits, &c.FormAccepted, &c.Signups, &c.Confirmed,
		&c.SubmitRate, &c.AcceptRate, &c.SignupRate, &c.ConfirmRate}
}

// funnelSums is the select list shared by the pages and funnel reports:
// sums over days, rates of the sums.
const funnelSums = `
       sum(page_views)::bigint, sum(form_submits)::bigint, sum(form_accepted)::bigint,
       sum(signups)::bigint, sum(confirmed)::bigint,
       round(sum(form_submits)::numeric / nullif(sum(page_views), 0), 4)::float8,
       round(sum(signups)::numeric / nullif(sum(form_submits), 0), 4)::float8,
       round(sum(signups)::numeric / nullif(sum(page_views), 0), 4)::float8,
       round(sum(confirmed)::numeric / nullif(sum(signups), 0), 4)::float8`

// PageRow is the funnel of one page over the filter's days.
type PageRow struct {
	Property string `json:"property"`
	Page     string `json:"page"`
	FunnelCounts
}

func (r PageRow) fields() []field {
	return append([]field{{"property", r.Property}, {"page", r.Page}}, r.FunnelCounts.fields()...)
}

const pagesSQL = `
SELECT property, coalesce(page, ''),` + funnelSums + `
FROM mailslot.report_funnel_daily
WHERE ($1::text = '' OR property = $1) AND ($2::date IS NULL OR day >= $2) AND ($3::date IS NULL OR day <= $3)
GROUP BY 1, 2
ORDER BY 3 DESC, 1, 2`

// Pages reports the funnel per property and page, most viewed first.
func Pages(ctx context.Context, db DB, f Filter) ([]PageRow, error) {
	return byDay(ctx, db, f, "read pages report", pgrows.Into(func(p *PageRow) []any {
		return append([]any{&p.Property, &p.Page}, p.targets()...)
	}), pagesSQL)
}

// FunnelRow is the funnel of one property on one day, all pages together.
type FunnelRow struct {
	Day      string `json:"day"` // YYYY-MM-DD, UTC
	Property string `json:"property"`
	FunnelCounts
}

func (r FunnelRow) fields() []field {
	return append([]field{{"day", r.Day}, {"property", r.Property}}, r.FunnelCounts.fields()...)
}

const funnelSQL = `
SELECT to_char(day, 'YYYY-MM-DD'), property,` + funnelSums + `
FROM mailslot.report_funnel_daily
WHERE ($1::text = '' OR property = $1) AND ($2::date IS NULL OR day >= $2) AND ($3::date IS NULL OR day <= $3)
GROUP BY day, property
ORDER BY day, property`

// Funnel reports page views → form submits → sign-ups → confirmed per
// day and property.
func Funnel(ctx context.Context, db DB, f Filter) ([]FunnelRow, error) {
	return byDay(ctx, db, f, "read funnel report", pgrows.Into(func(x *FunnelRow) []any {
		return append([]any{&x.Day, &x.Property}, x.targets()...)
	}), funnelSQL)
}

// ConsentRow is the consent state of one property's leads now.
type ConsentRow struct {
	Property             string   `json:"property"`
	Signups              int64    `json:"signups"`
	Pending              int64    `json:"pending"`
	PendingMedianAgeDays *int64   `json:"pending_median_age_days"`
	PendingMaxAgeDays    *int64   `json:"pending_max_age_days"`
	Confirmed            int64    `json:"confirmed"`
	ConfirmationRate     *float64 `json:"confirmation_rate"`
	Withdrawn            int64    `json:"withdrawn"`
	UnsubscribeRate      *float64 `json:"unsubscribe_rate"`
	Suppressed           int64    `json:"suppressed"`
	Implied              int64    `json:"implied"`
	ImpliedLapsing30d    int64    `json:"implied_lapsing_30d"`
	ImpliedLapsed        int64    `json:"implied_lapsed"`
}

func (r ConsentRow) fields() []field {
	return []field{
		{"property", r.Property}, {"signups", r.Signups}, {"pending", r.Pending},
		{"pending_median_age_days", r.PendingMedianAgeDays}, {"pending_max_age_days", r.PendingMaxAgeDays},
		{"confirmed", r.Confirmed}, {"confirmation_rate", rate(r.ConfirmationRate)},
		{"withdrawn", r.Withdrawn}, {"unsubscribe_rate", rate(r.UnsubscribeRate)},
		{"suppressed", r.Suppressed}, {"implied", r.Implied},
		{"implied_lapsing_30d", r.ImpliedLapsing30d}, {"implied_lapsed", r.ImpliedLapsed},
	}
}

const consentSQL = `
SELECT property, signups, pending, pending_median_age_days::bigint, pending_max_age_days::bigint,
       confirmed, confirmation_rate::float8, withdrawn, unsubscribe_rate::float8, suppressed, implied,
       implied_lapsing_30d, implied_lapsed
FROM mailslot.report_consent
WHERE $1::text = '' OR property = $1
ORDER BY property`

// Consent reports, per property, pending confirmations and their age,
// confirmation and unsubscribe rates, and implied consent about to lapse.
// It is the state now, so f.Since and f.Until must be zero.
func Consent(ctx context.Context, db DB, f Filter) ([]ConsentRow, error) {
	if !f.Since.IsZero() || !f.Until.IsZero() {
		return nil, fmt.Errorf("%w: the consent report is the state now; since and until do not apply", ErrInvalid)
	}
	return pgrows.Collect(ctx, db, "read consent report", pgrows.Into(func(c *ConsentRow) []any {
		return []any{&c.Property, &c.Signups, &c.Pending, &c.PendingMedianAgeDays, &c.PendingMaxAgeDays,
			&c.Confirmed, &c.ConfirmationRate, &c.Withdrawn, &c.UnsubscribeRate, &c.Suppressed, &c.Implied,
			&c.ImpliedLapsing30d, &c.ImpliedLapsed}
	}), consentSQL, f.Property)
}

// ImageRow is one month (UTC) of image-description jobs and spend.
type ImageRow struct {
	Month          string   `json:"month"` // YYYY-MM
	Jobs           int64    `json:"jobs"`
	Queued         int64    `json:"queued"`
	Running        int64    `json:"running"`
	Failed         int64    `json:"failed"`
	Succeeded      int64    `json:"succeeded"`
	Dead           int64    `json:"dead"`
	Cancelled      int64    `json:"cancelled"`
	Predictions    int64    `json:"predictions"`
	PredictSeconds float64  `json:"predict_seconds"`
	SpendUSD       float64  `json:"spend_usd"`
	BudgetUSD      *float64 `json:"budget_usd"`
	BudgetUsed     *float64 `json:"budget_used"`
}

func (r ImageRow) fields() []field {
	return []field{
		{"month", r.Month}, {"jobs", r.Jobs}, {"queued", r.Queued}, {"running", r.Running}, {"failed", r.Failed},
		{"succeeded", r.Succeeded}, {"dead", r.Dead}, {"cancelled", r.Cancelled}, {"predictions", r.Predictions},
		{"predict_seconds", r.PredictSeconds}, {"spend_usd", money(r.SpendUSD)}, {"budget_usd", optMoney(r.BudgetUSD)},
		{"budget_used", rate(r.BudgetUsed)},
	}
}

const imagesSQL = `
SELECT to_char(month, 'YYYY-MM'), jobs, queued, running, failed, succeeded, dead, cancelled, predictions,
       predict_seconds, spend_usd::float8, budget_usd::float8, budget_used::float8
FROM mailslot.report_images_monthly
WHERE ($1::date IS NULL OR month >= date_trunc('month', $1::date)) AND ($2::date IS NULL OR month <= $2)
ORDER BY month`

// Images reports image-description jobs by state and provider spend per
// month. Jobs belong to no property, so f.Property must be empty. The
// budget comes from the setting mailslot.image_monthly_budget_usd; pass
// budgetUSD > 0 (the edges' MAILSLOT_IMAGE_MONTHLY_BUDGET) to use that
// instead.
func Images(ctx context.Context, db DB, f Filter, budgetUSD float64) ([]ImageRow, error) {
	if f.Property != "" {
		return nil, fmt.Errorf("%w: image jobs belong to no property", ErrInvalid)
	}
	since, until, err := f.days()
	if err != nil {
		return nil, err
	}
	return pgrows.Collect(ctx, db, "read images report", func(r pgx.CollectableRow) (ImageRow, error) {
		var x ImageRow
		err := r.Scan(&x.Month, &x.Jobs, &x.Queued, &x.Running, &x.Failed, &x.Succeeded, &x.Dead, &x.Cancelled,
			&x.Predictions, &x.PredictSeconds, &x.SpendUSD, &x.BudgetUSD, &x.BudgetUsed)
		if err == nil && budgetUSD > 0 {
			b, used := budgetUSD, float64(int64(x.SpendUSD/budgetUSD*10000+0.5))/10000
			x.BudgetUSD, x.BudgetUsed = &b, &used
		}
		return x, err
	}, imagesSQL, since, until)
}

// byDay runs a report query that takes (property, since, until) with the
// filter's days.
func byDay[T any](ctx context.Context, db DB, f Filter, what string, scan func(pgx.CollectableRow) (T, error), sql string) ([]T, error) {
	since, until, err := f.days()
	if err != nil {
		return nil, err
	}
	return pgrows.Collect(ctx, db, what, scan, sql, f.Property, since, until)
}
