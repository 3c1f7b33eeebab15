package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// row is one scenario's rounds.
type row struct {
	sc     scenario
	rounds []*measurement
}

// column is one figure of the table: how to read it from a round, and how
// to print its median.
type column struct {
	title  string
	value  func(m *measurement) (float64, bool)
	format func(v float64) string
}

func loadValue(f func(m *measurement) float64) func(m *measurement) (float64, bool) {
	return func(m *measurement) (float64, bool) {
		if m.Load == nil {
			return 0, false
		}
		return f(m), true
	}
}

func quantile(q float64) func(m *measurement) (float64, bool) {
	return loadValue(func(m *measurement) float64 { return float64(m.Load.Latency.Quantile(q)) })
}

// cpuPerRequest divides a CPU time by the requests answered.
func cpuPerRequest(cpu func(m *measurement) time.Duration) func(m *measurement) (float64, bool) {
	return func(m *measurement) (float64, bool) {
		if m.Load == nil || m.Load.Requests == 0 || cpu(m) <= 0 {
			return 0, false
		}
		return float64(cpu(m)) / float64(m.Load.Requests), true
	}
}

func micros(v float64) string { return fmt.Sprintf("%.0f µs", v/float64(time.Microsecond)) }
func millis(v float64) string { return fmt.Sprintf("%.2f ms", v/float64(time.Millisecond)) }
func mib(v float64) string    { return fmt.Sprintf("%.1f MiB", v/(1<<20)) }

var columns = []column{
	{"accepted/s", loadValue(func(m *measurement) float64 { return m.Load.AcceptedPerSec() }),
		func(v float64) string { return fmt.Sprintf("%.0f", v) }},
	{"p50", quantile(0.50), millis},
	{"p90", quantile(0.90), millis},
	{"p99", quantile(0.99), millis},
	{"max", loadValue(func(m *measurement) float64 { return float64(m.Load.Latency.Max()) }), millis},
	{"srv CPU/req", cpuPerRequest(func(m *measurement) time.Duration { return m.ServerCPU }), micros},
	{"gen CPU/req", cpuPerRequest(func(m *measurement) time.Duration { return m.LoadCPU }), micros},
	{"RSS idle", func(m *measurement) (float64, bool) { return float64(m.IdleRSS), m.IdleRSS > 0 }, mib},
	{"RSS load", func(m *measurement) (float64, bool) { return float64(m.LoadRSS), m.LoadRSS > 0 }, mib},
	{"RSS peak", func(m *measurement) (float64, bool) { return float64(m.PeakRSS), m.PeakRSS > 0 }, mib},
}

// median of the values a column has in rows' rounds, and whether any had one.
func median(rounds []*measurement, value func(m *measurement) (float64, bool)) (float64, bool) {
	var vs []float64
	for _, m := range rounds {
		if v, ok := value(m); ok {
			vs = append(vs, v)
		}
	}
	if len(vs) == 0 {
		return 0, false
	}
	slices.Sort(vs)
	if len(vs)%2 == 1 {
		return vs[len(vs)/2], true
	}
	return (vs[len(vs)/2-1] + vs[len(vs)/2]) / 2, true
}

// extraNames lists the Extra metrics that appear in rounds, in first-seen
// order.
func extraNames(rounds []*measurement) []metric {
	var names []metric
	for _, m := range rounds {
		for _, x := range m.Extra {
			if !slices.ContainsFunc(names, func(n metric) bool { return n.Name == x.Name }) {
				names = append(names, metric{Name: x.Name, Unit: x.Unit})
			}
		}
	}
	return names
}

func (r *row) cells() []string {
	cells := []string{r.sc.Name}
	for _, c := range columns {
		if v, ok := median(r.rounds, c.value); ok {
			cells = append(cells, c.format(v))
		} else {
			cells = append(cells, "—")
		}
	}
	var notes []string
	for _, x := range extraNames(r.rounds) {
		v, _ := median(r.rounds, func(m *measurement) (float64, bool) {
			for _, y := range m.Extra {
				if y.Name == x.Name {
					return y.Value, true
				}
			}
			return 0, false
		})
		notes = append(notes, fmt.Sprintf("%s %.4g %s", x.Name, v, x.Unit))
	}
	if rej := r.rejected(); rej != "" {
		notes = append(notes, "not accepted: "+rej)
	}
	if len(r.rounds) > 0 {
		notes = append(notes, r.rounds[0].Server)
	}
	return append(cells, strings.Join(notes, "; "))
}

// rejected sums what was not accepted over all rounds.
func (r *row) rejected() string {
	var parts []string
	for i, m := range r.rounds {
		if m.Load == nil {
			continue
		}
		if s := m.Load.Rejected(m.Accepted); s != "" {
			parts = append(parts, fmt.Sprintf("round %d: %s", i+1, s))
		}
	}
	return strings.Join(parts, ", ")
}

func header() []string {
	h := []string{"scenario"}
	for _, c := range columns {
		h = append(h, c.title)
	}
	return append(h, "notes")
}

// printTable writes the medians as an aligned text table, or as a Markdown
// table for docs/BENCHMARKS.md.
func printTable(w io.Writer, rows []*row, markdown bool) {
	if markdown {
		fmt.Fprintln(w, "| "+strings.Join(header(), " | ")+" |")
		fmt.Fprintln(w, "|"+strings.Repeat(" --- |", len(header())))
		for _, r := range rows {
			fmt.Fprintln(w, "| "+strings.Join(r.cells(), " | ")+" |")
		}
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, strings.Join(header(), "\t")+"\t")
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r.cells(), "\t")+"\t")
	}
	_ = tw.Flush()
}

// roundLine is the progress line for one round.
func roundLine(name string, round int, m *measurement) string {
	if m.Load == nil {
		parts := make([]string, 0, len(m.Extra)+1)
		for _, x := range m.Extra {
			parts = append(parts, fmt.Sprintf("%s %.4g %s", x.Name, x.Value, x.Unit))
		}
		if m.Server != "" {
			parts = append(parts, m.Server)
		}
		return fmt.Sprintf("%-26s round %d: %s", name, round, strings.Join(parts, "; "))
	}
	l := m.Load
	perReq := func(d time.Duration) string {
		if l.Requests == 0 {
			return "—"
		}
		return micros(float64(d) / float64(l.Requests))
	}
	line := fmt.Sprintf("%-26s round %d: %7.0f accepted/s  p50 %s  p99 %s  max %s  RSS idle %s load %s peak %s  CPU/req srv %s gen %s",
		name, round, l.AcceptedPerSec(), millis(float64(l.Latency.Quantile(0.5))),
		millis(float64(l.Latency.Quantile(0.99))), millis(float64(l.Latency.Max())),
		mib(float64(m.IdleRSS)), mib(float64(m.LoadRSS)), mib(float64(m.PeakRSS)),
		perReq(m.ServerCPU), perReq(m.LoadCPU))
	if rej := l.Rejected(m.Accepted); rej != "" {
		line += "  not accepted: " + rej
	}
	return line
}
