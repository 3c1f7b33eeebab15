// Package metrics exposes the edge's Prometheus metrics on the private
// listener. Request counters are updated on the hot path; everything that
// is state (outbox depth and age, sync and replica lag, erasures, image
// jobs) is read from the components' own status at scrape time, so the
// numbers on /metrics and on /v1/sync/status can never disagree.
package metrics

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const namespace = "mailslot"

// Sample is one value a status source reports at scrape time.
type Sample struct {
	Name   string // without the mailslot_ prefix
	Help   string
	Value  float64
	Labels map[string]string
	// Counter marks a value that only grows (rows synced since start).
	Counter bool
}

// Source reports samples at scrape time.
type Source func(ctx context.Context) ([]Sample, error)

// Metrics holds the registry and the hot-path instruments.
type Metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	accepted *prometheus.CounterVec
	sources  []Source
	log      *slog.Logger
}

// New builds the registry with the Go runtime and process collectors.
func New(log *slog.Logger) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "http_requests_total",
			Help: "HTTP requests by route template and status code.",
		}, []string{"route", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "http_request_duration_seconds",
			Help:    "HTTP request latency by route template.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1, 5},
		}, []string{"route"}),
		accepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "submissions_accepted_total",
			Help: "Rows durably accepted into the outbox, by kind.",
		}, []string{"kind"}),
		log: log,
	}
	m.reg.MustRegister(m.requests, m.latency, m.accepted,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.reg.MustRegister(sourceCollector{m})
	return m
}

// Observe records one finished request.
func (m *Metrics) Observe(route string, status int, d time.Duration) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
	m.latency.WithLabelValues(route).Observe(d.Seconds())
}

// Accepted counts rows stored in the outbox.
func (m *Metrics) Accepted(kind string, n int) {
	if m == nil {
		return
	}
	m.accepted.WithLabelValues(kind).Add(float64(n))
}

// AddSource registers a status source read at every scrape.
func (m *Metrics) AddSource(s Source) { m.sources = append(m.sources, s) }

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// sourceCollector turns Sources into const metrics at scrape time. It is
// "unchecked" (Describe sends nothing) because the set of samples depends
// on what is configured.
type sourceCollector struct{ m *Metrics }

func (sourceCollector) Describe(chan<- *prometheus.Desc) {}

func (c sourceCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, src := range c.m.sources {
		samples, err := src(ctx)
		if err != nil {
			c.m.log.Warn("metrics source failed", "err", err)
			continue
		}
		for _, s := range samples {
			names := make([]string, 0, len(s.Labels))
			vals := make([]string, 0, len(s.Labels))
			for k, v := range s.Labels {
				names = append(names, k)
				vals = append(vals, v)
			}
			kind := prometheus.GaugeValue
			if s.Counter {
				kind = prometheus.CounterValue
			}
			desc := prometheus.NewDesc(namespace+"_"+s.Name, s.Help, names, nil)
			if m, err := prometheus.NewConstMetric(desc, kind, s.Value, vals...); err == nil {
				ch <- m
			}
		}
	}
}
