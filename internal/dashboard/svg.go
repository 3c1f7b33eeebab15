package dashboard

import (
	"fmt"
	"html/template"
	"math"
	"strconv"
	"strings"
)

// The charts are SVG strings built here; every label that came from the
// public (UTM values, pages, node ids) goes through template.HTMLEscapeString.

const (
	colorSignup    = "#2563eb"
	colorConfirmed = "#059669"
	colorImplied   = "#a3a3a3"
	colorPending   = "#f59e0b"
	colorWithdrawn = "#dc2626"
)

type bar struct {
	Label  string
	Value  float64
	Second float64 // drawn over Value when set (e.g. the confirmed part)
}

type lineSeries struct {
	Name  string
	Color string
	Y     []float64
}

type segment struct {
	Name  string
	Color string
	N     int64
}

func esc(s string) string { return template.HTMLEscapeString(s) }

func num(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

func empty(title string) template.HTML {
	return template.HTML(fmt.Sprintf(`<figure class="chart"><figcaption>%s</figcaption><p class="empty">No data yet.</p></figure>`, esc(title)))
}

func legend(items ...[2]string) string {
	var b strings.Builder
	b.WriteString(`<p class="legend">`)
	for _, it := range items {
		if it[0] == "" {
			continue
		}
		fmt.Fprintf(&b, `<span><i style="background:%s"></i>%s</span>`, it[1], esc(it[0]))
	}
	b.WriteString(`</p>`)
	return b.String()
}

// niceMax rounds v up to 1, 2 or 5 times a power of ten, for the axis.
func niceMax(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// lineChart draws one line per series over the day labels.
func lineChart(title string, labels []string, series []lineSeries, any bool) template.HTML {
	if !any || len(labels) == 0 {
		return empty(title)
	}
	const w, h, left, bottom, top, right = 1240.0, 240.0, 40.0, 28.0, 10.0, 10.0
	maxY := 0.0
	for _, s := range series {
		for _, y := range s.Y {
			maxY = math.Max(maxY, y)
		}
	}
	maxY = niceMax(maxY)
	x := func(i int) float64 {
		if len(labels) == 1 {
			return left + (w-left-right)/2
		}
		return left + float64(i)*(w-left-right)/float64(len(labels)-1)
	}
	y := func(v float64) float64 { return top + (h-top-bottom)*(1-v/maxY) }
	var b strings.Builder
	fmt.Fprintf(&b, `<figure class="chart"><figcaption>%s</figcaption><svg viewBox="0 0 %[2]s %[3]s" width="%[2]s" height="%[3]s" role="img" aria-label="%[1]s">`, esc(title), num(w), num(h))
	for i := 0; i <= 4; i++ {
		v := maxY * float64(i) / 4
		fmt.Fprintf(&b, `<line class="grid" x1="%s" x2="%s" y1="%.1f" y2="%.1f"/><text class="axis" x="%s" y="%.1f" text-anchor="end">%s</text>`,
			num(left), num(w-right), y(v), y(v), num(left-4), y(v)+4, num(math.Round(v*10)/10))
	}
	step := max(1, len(labels)/6)
	for i := 0; i < len(labels); i += step {
		fmt.Fprintf(&b, `<text class="axis" x="%.1f" y="%s" text-anchor="middle">%s</text>`, x(i), num(h-8), esc(labels[i][5:]))
	}
	for _, s := range series {
		var pts []string
		for i, v := range s.Y {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(i), y(v)))
		}
		fmt.Fprintf(&b, `<polyline class="series" data-series="%s" fill="none" stroke="%s" stroke-width="2" points="%s"/>`, esc(s.Name), s.Color, strings.Join(pts, " "))
		for i, v := range s.Y {
			if v > 0 {
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"><title>%s: %s %s</title></circle>`, x(i), y(v), s.Color, esc(labels[i]), num(v), esc(s.Name))
			}
		}
	}
	b.WriteString(`</svg>`)
	var items [][2]string
	for _, s := range series {
		items = append(items, [2]string{s.Name, s.Color})
	}
	b.WriteString(legend(items...))
	b.WriteString(`</figure>`)
	return template.HTML(b.String())
}

// barChart draws horizontal bars, the second value over the first.
func barChart(title string, bars []bar, first, second string) template.HTML {
	if len(bars) == 0 {
		return empty(title)
	}
	const w, label, row, right = 640.0, 230.0, 26.0, 50.0
	h := row*float64(len(bars)) + 6
	maxV := 0.0
	for _, b := range bars {
		maxV = math.Max(maxV, b.Value)
	}
	maxV = niceMax(maxV)
	scale := (w - label - right) / maxV
	var b strings.Builder
	fmt.Fprintf(&b, `<figure class="chart"><figcaption>%s</figcaption><svg viewBox="0 0 %[2]s %[3]s" width="%[2]s" height="%[3]s" role="img" aria-label="%[1]s">`, esc(title), num(w), num(h))
	for i, br := range bars {
		yy := float64(i)*row + 4
		lbl := br.Label
		if len([]rune(lbl)) > 34 {
			lbl = string([]rune(lbl)[:33]) + "…"
		}
		fmt.Fprintf(&b, `<g class="bar" data-label="%s" data-value="%s"><title>%s: %s</title>`, esc(br.Label), num(br.Value), esc(br.Label), num(br.Value))
		fmt.Fprintf(&b, `<text class="label" x="%s" y="%.1f" text-anchor="end">%s</text>`, num(label-8), yy+15, esc(lbl))
		fmt.Fprintf(&b, `<rect x="%s" y="%.1f" width="%.1f" height="18" rx="2" fill="%s"/>`, num(label), yy+2, br.Value*scale, colorSignup)
		if second != "" && br.Second > 0 {
			fmt.Fprintf(&b, `<rect x="%s" y="%.1f" width="%.1f" height="18" rx="2" fill="%s"/>`, num(label), yy+2, br.Second*scale, colorConfirmed)
		}
		fmt.Fprintf(&b, `<text class="value" x="%.1f" y="%.1f">%s</text></g>`, label+br.Value*scale+6, yy+15, num(br.Value))
	}
	b.WriteString(`</svg>`)
	if second != "" {
		b.WriteString(legend([2]string{first, colorSignup}, [2]string{second, colorConfirmed}))
	}
	b.WriteString(`</figure>`)
	return template.HTML(b.String())
}

// funnelChart draws the stages as bars, each with its ratio to the one
// before.
func funnelChart(stages []bar) template.HTML {
	const title = "Funnel (ratios of counts, not visitor paths)"
	if stages[0].Value == 0 && stages[2].Value == 0 {
		return empty(title)
	}
	var b strings.Builder
	chart := string(barChart(title, stages, "", ""))
	b.WriteString(strings.TrimSuffix(chart, `</figure>`))
	b.WriteString(`<p class="ratios">`)
	for i := 1; i < len(stages); i++ {
		r := "-"
		if stages[i-1].Value > 0 {
			r = strconv.FormatFloat(stages[i].Value*100/stages[i-1].Value, 'f', 1, 64) + "%"
		}
		fmt.Fprintf(&b, `<span>%s → %s: <b>%s</b></span>`, esc(stages[i-1].Label), esc(stages[i].Label), r)
	}
	b.WriteString(`</p></figure>`)
	return template.HTML(b.String())
}

// stackChart draws one bar split into the segments' shares.
func stackChart(title string, segs []segment, suppressed int64) template.HTML {
	var total int64
	for _, s := range segs {
		total += s.N
	}
	if total == 0 {
		return empty(title)
	}
	const w, h = 640.0, 40.0
	var b strings.Builder
	fmt.Fprintf(&b, `<figure class="chart"><figcaption>%s</figcaption><svg viewBox="0 0 %[2]s %[3]s" width="%[2]s" height="%[3]s" role="img" aria-label="%[1]s">`, esc(title), num(w), num(h))
	x := 0.0
	var items [][2]string
	for _, s := range segs {
		if s.N == 0 {
			continue
		}
		sw := w * float64(s.N) / float64(total)
		fmt.Fprintf(&b, `<rect class="segment" data-label="%s" data-value="%d" x="%.1f" y="4" width="%.1f" height="32" fill="%s"><title>%s: %d</title></rect>`,
			esc(s.Name), s.N, x, sw, s.Color, esc(s.Name), s.N)
		x += sw
		items = append(items, [2]string{fmt.Sprintf("%s %d (%s)", s.Name, s.N, rate(s.N, total)), s.Color})
	}
	b.WriteString(`</svg>`)
	b.WriteString(legend(items...))
	fmt.Fprintf(&b, `<p class="note">%d lead(s) suppressed (overlaps the states above).</p></figure>`, suppressed)
	return template.HTML(b.String())
}
