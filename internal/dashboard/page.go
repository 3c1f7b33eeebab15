package dashboard

const pageHTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>mailslot dashboard</title>
<style>
:root { color-scheme: light; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2937; background: #f3f4f6; }
body { margin: 0; }
header { background: #111827; color: #f9fafb; padding: 12px 24px; display: flex; flex-wrap: wrap; gap: 16px; align-items: baseline; }
header h1 { font-size: 18px; margin: 0; }
header .hint { margin-left: auto; color: #9ca3af; font-size: 13px; }
main { max-width: 1400px; margin: 0 auto; padding: 16px 24px; display: grid; grid-template-columns: repeat(auto-fit, minmax(560px, 1fr)); gap: 16px; }
section { background: #fff; border-radius: 8px; padding: 12px 16px; box-shadow: 0 1px 2px rgba(0,0,0,.08); }
section.wide { grid-column: 1 / -1; }
h2 { font-size: 15px; margin: 0 0 8px; }
.kpis { display: flex; flex-wrap: wrap; gap: 24px; }
.kpi b { display: block; font-size: 26px; }
.kpi span { color: #6b7280; font-size: 13px; }
figure.chart { margin: 0; }
figcaption { font-weight: 600; margin-bottom: 4px; }
svg { max-width: 100%; height: auto; display: block; }
svg text { font-size: 12px; fill: #374151; }
svg text.axis { fill: #6b7280; font-size: 11px; }
svg line.grid { stroke: #e5e7eb; }
.legend { display: flex; flex-wrap: wrap; gap: 12px; font-size: 13px; margin: 6px 0 0; }
.legend i { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 4px; }
.ratios { display: flex; flex-wrap: wrap; gap: 16px; font-size: 13px; }
.empty { color: #6b7280; font-style: italic; padding: 24px 0; text-align: center; }
.note { color: #6b7280; font-size: 13px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #e5e7eb; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
.state-syncing { color: #059669; } .state-stale { color: #dc2626; } .state-never { color: #6b7280; }
</style>
</head>
<body>
<header>
<h1>mailslot</h1>
<span>{{if .Property}}{{.Property}}{{else}}all properties{{end}} · {{.Since}} to {{.Until}} (UTC) · generated {{.Generated}}</span>
<span class="hint">{{if .Properties}}properties: {{range $i, $p := .Properties}}{{if $i}}, {{end}}{{$p}}{{end}} · {{end}}type ?property=…&amp;days=… after the address to change the view</span>
</header>
<main>
<section id="totals" class="wide">
<h2>Last {{.Days}} days</h2>
<div class="kpis">
<div class="kpi" id="kpi-page-views"><b>{{.Totals.PageViews}}</b><span>page views</span></div>
<div class="kpi" id="kpi-form-submits"><b>{{.Totals.FormSubmits}}</b><span>form submits</span></div>
<div class="kpi" id="kpi-signups"><b>{{.Totals.Signups}}</b><span>sign-ups</span></div>
<div class="kpi" id="kpi-confirmed"><b>{{.Totals.Confirmed}}</b><span>confirmed now ({{rate .Totals.Confirmed .Totals.Signups}})</span></div>
</div>
</section>
<section id="signups" class="wide">{{.Signups}}</section>
<section id="campaigns">{{.Campaigns}}</section>
<section id="pages">{{.Pages}}</section>
<section id="funnel">{{.Funnel}}
<p class="note">The client script carries no visitor id: these are counts on the same pages and days, not the paths of visitors. A form posted without JavaScript makes a sign-up without a form submit.</p></section>
<section id="consent">{{.Consent}}
{{if .ConsentTbl}}<table><thead><tr><th>property</th><th class="n">pending</th><th class="n">oldest pending (days)</th><th class="n">implied lapsing in 30 days</th><th class="n">implied lapsed</th></tr></thead><tbody>
{{range .ConsentTbl}}<tr><td>{{.Property}}</td><td class="n">{{.Pending}}</td><td class="n">{{if .PendingMaxAgeDays}}{{.PendingMaxAgeDays}}{{else}}-{{end}}</td><td class="n">{{.ImpliedLapsing30d}}</td><td class="n">{{.ImpliedLapsed}}</td></tr>
{{end}}</tbody></table>{{end}}</section>
<section id="fleet" class="wide">
<h2>Fleet sync state</h2>
{{if .Nodes}}<table><thead><tr><th>node</th><th>region</th><th>state</th><th>last sync</th><th class="n">last seq</th><th class="n">rows synced</th></tr></thead><tbody>
{{range .Nodes}}<tr data-node="{{.ID}}"><td>{{.ID}}</td><td>{{.Region}}</td><td class="state-{{if eq .State "never synced"}}never{{else}}{{.State}}{{end}}">{{.State}}</td><td>{{.Ago}}</td><td class="n">{{.LastSeq}}</td><td class="n">{{.RowsSynced}}</td></tr>
{{end}}</tbody></table>
{{.Fleet}}{{else if .FleetNote}}<p class="note" id="fleet-note">{{.FleetNote}}</p>{{else}}<p class="empty">No node has synced yet.</p>{{end}}
</section>
</main>
</body>
</html>
`
