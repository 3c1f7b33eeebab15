// Package grafana holds the Grafana dashboard for the metrics every edge
// serves on GET /metrics (private listener), so that `mailslotctl
// dashboard` can print or install the same file that deploy/ ships.
//
// Import mailslot.json into Grafana (Dashboards → Import) and pick the
// Prometheus data source that scrapes the edges.
package grafana

import _ "embed"

// Dashboard is mailslot.json, the dashboard's JSON model.
//
//go:embed mailslot.json
var Dashboard []byte
