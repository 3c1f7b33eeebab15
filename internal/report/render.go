package report

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Row is a report row: CampaignRow, PageRow, FunnelRow, ConsentRow or
// ImageRow.
type Row interface {
	fields() []field
}

// field is one named cell. v is a string, an int64, an *int64, a float64,
// a rateValue or a moneyValue.
type field struct {
	name string
	v    any
}

type (
	rateValue  struct{ p *float64 }
	moneyValue struct{ p *float64 }
)

func rate(p *float64) rateValue  { return rateValue{p} }
func money(v float64) moneyValue { return moneyValue{&v} }
func optMoney(p *float64) moneyValue {
	return moneyValue{p}
}

// Write renders rows in format f: an aligned table for people (rates as
// percentages, "-" for none), CSV with a header row (rates as fractions,
// empty for none), or a JSON array of objects (null for none).
func Write[R Row](w io.Writer, f Format, rows []R) error {
	var zero R
	head := zero.fields()
	switch f {
	case FormatJSON:
		if rows == nil {
			rows = []R{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rows); err != nil {
			return fmt.Errorf("write report as JSON: %w", err)
		}
		return nil
	case FormatCSV:
		cw := csv.NewWriter(w)
		rec := make([]string, len(head))
		for i, h := range head {
			rec[i] = h.name
		}
		if err := cw.Write(rec); err != nil {
			return fmt.Errorf("write report as CSV: %w", err)
		}
		for _, r := range rows {
			for i, fl := range r.fields() {
				rec[i] = csvCell(fl.v)
			}
			if err := cw.Write(rec); err != nil {
				return fmt.Errorf("write report as CSV: %w", err)
			}
		}
		cw.Flush()
		if err := cw.Error(); err != nil {
			return fmt.Errorf("write report as CSV: %w", err)
		}
		return nil
	case FormatTable:
		return writeTable(w, head, rows)
	}
	return fmt.Errorf("%w: format %q: want table, csv or json", ErrInvalid, f)
}

func writeTable[R Row](w io.Writer, head []field, rows []R) error {
	cells := make([][]string, 0, len(rows)+1)
	numeric := make([]bool, len(head))
	hdr := make([]string, len(head))
	for i, h := range head {
		hdr[i] = strings.ToUpper(strings.ReplaceAll(h.name, "_", " "))
		switch h.v.(type) {
		case string:
		default:
			numeric[i] = true
		}
	}
	cells = append(cells, hdr)
	for _, r := range rows {
		fs := r.fields()
		line := make([]string, len(fs))
		for i, fl := range fs {
			line[i] = humanCell(fl.v)
		}
		cells = append(cells, line)
	}
	widths := make([]int, len(head))
	for _, line := range cells {
		for i, c := range line {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	var b strings.Builder
	for _, line := range cells {
		b.Reset()
		for i, c := range line {
			pad := strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c))
			switch {
			case numeric[i]:
				b.WriteString(pad + c)
			case i == len(line)-1:
				b.WriteString(c)
			default:
				b.WriteString(c + pad)
			}
			if i < len(line)-1 {
				b.WriteString("  ")
			}
		}
		b.WriteByte('\n')
		if _, err := io.WriteString(w, strings.TrimRight(b.String(), " \n")+"\n"); err != nil {
			return fmt.Errorf("write report table: %w", err)
		}
	}
	if len(rows) == 0 {
		if _, err := io.WriteString(w, "(no rows)\n"); err != nil {
			return fmt.Errorf("write report table: %w", err)
		}
	}
	return nil
}

func humanCell(v any) string {
	switch v := v.(type) {
	case string:
		if v == "" {
			return "-"
		}
		return v
	case int64:
		return strconv.FormatInt(v, 10)
	case *int64:
		if v == nil {
			return "-"
		}
		return strconv.FormatInt(*v, 10)
	case float64:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case rateValue:
		if v.p == nil {
			return "-"
		}
		return strconv.FormatFloat(*v.p*100, 'f', 1, 64) + "%"
	case moneyValue:
		if v.p == nil {
			return "-"
		}
		return "$" + strconv.FormatFloat(*v.p, 'f', 2, 64)
	}
	return fmt.Sprint(v)
}

func csvCell(v any) string {
	switch v := v.(type) {
	case string:
		return csvSafe(v)
	case int64:
		return strconv.FormatInt(v, 10)
	case *int64:
		if v == nil {
			return ""
		}
		return strconv.FormatInt(*v, 10)
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case rateValue:
		if v.p == nil {
			return ""
		}
		return strconv.FormatFloat(*v.p, 'f', -1, 64)
	case moneyValue:
		if v.p == nil {
			return ""
		}
		return strconv.FormatFloat(*v.p, 'f', -1, 64)
	}
	return fmt.Sprint(v)
}

// csvSafe keeps a spreadsheet from running a cell as a formula. UTM
// values, pages and names come from the public, and marketers open these
// files in spreadsheets, so a cell that starts like a formula is prefixed
// with an apostrophe (OWASP's "CSV injection" advice).
func csvSafe(s string) string {
	if s == "" {
		return s
	}
	switch s[0] {
	case '=', '+', '-', '@', '\t', '\r':
		return "'" + s
	}
	return s
}
