package api

import (
	"bufio"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/mailslot/mailslot"
	"github.com/mailslot/mailslot/edge/intake"
)

// TestErrorStatus pins every code to the status the contract documents,
// written out here by hand so that a change to the table has to be made
// twice, on purpose.
func TestErrorStatus(t *testing.T) {
	t.Parallel()
	want := map[string]int{
		"invalid_json":              400,
		"invalid_form":              400,
		"invalid_body":              400,
		"invalid_idempotency_key":   400,
		"invalid_token":             400,
		"expired_token":             400,
		"wrong_purpose":             400,
		"invalid_prediction":        400,
		"invalid_event":             400,
		"busy":                      503,
		"host_not_allowed":          403,
		"cross_site_request":        403,
		"challenge_required":        422,
		"no_challenge":              503,
		"unauthorized":              401,
		"invalid_signature":         401,
		"forbidden":                 403,
		"origin_not_allowed":        403,
		"not_found":                 404,
		"method_not_allowed":        405,
		"public_url_not_configured": 409,
		"body_too_large":            413,
		"unsupported_media_type":    415,
		"invalid_fields":            422,
		"too_many_events":           422,
		"idempotency_key_reused":    422,
		"rate_limited":              429,
		"internal":                  500,
		"unavailable":               503,
		"images_unavailable":        503,
		"webhook_not_configured":    503,
		"upload_storage_full":       507,
	}
	for code, st := range want {
		if got := errorStatus(code); got != st {
			t.Errorf("errorStatus(%q) = %d, want %d", code, got, st)
		}
	}
	if got, want := slices.Sorted(maps.Keys(statusOf)), slices.Sorted(maps.Keys(want)); !slices.Equal(got, want) {
		t.Errorf("codes in the table:\n%v\nwant\n%v", got, want)
	}
	if got := errorStatus("no_such_code"); got != http.StatusInternalServerError {
		t.Errorf("unknown code: %d, want 500", got)
	}
}

// TestCodesAllMapped checks that every Code constant of package mailslot
// has a status: a code added to the vocabulary and forgotten here would
// otherwise answer 500.
func TestCodesAllMapped(t *testing.T) {
	t.Parallel()
	consts := rootCodes(t)
	if len(consts) < 20 {
		t.Fatalf("found only %d codes in ../../errors.go: %v", len(consts), consts)
	}
	for name, code := range consts {
		if _, ok := statusOf[code]; !ok {
			t.Errorf("mailslot.%s = %q has no status in statusOf", name, code)
		}
	}
	if len(consts) != len(statusOf) {
		t.Errorf("%d constants, %d codes in statusOf", len(consts), len(statusOf))
	}
}

// rootCodes reads the Code* constants from the vocabulary's source.
func rootCodes(t *testing.T) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "../../errors.go", nil, 0)
	if err != nil {
		t.Fatalf("parse errors.go: %v", err)
	}
	out := map[string]string{}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, spec := range g.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, n := range vs.Names {
				if !strings.HasPrefix(n.Name, "Code") || i >= len(vs.Values) {
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok {
					t.Fatalf("%s is not a string literal", n.Name)
				}
				v, err := strconv.Unquote(lit.Value)
				if err != nil {
					t.Fatalf("%s: %v", n.Name, err)
				}
				out[n.Name] = v
			}
		}
	}
	return out
}

var (
	tableRow = regexp.MustCompile("^\\| `([a-z_]+)` \\| (\\d{3}) \\|")
	codeRef  = regexp.MustCompile("`([a-z_]+)`")
)

// TestREADMECodes holds README's "Error codes" table to statusOf: the same
// codes, each with the same status. The per-endpoint tables ("| status |
// `error` | when |") may name only codes of the table, at their status.
func TestREADMECodes(t *testing.T) {
	t.Parallel()
	f, err := os.Open("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	documented := map[string]int{}
	var inSection, inEndpointTable bool
	endpointRows := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "#"):
			inSection = line == "### Error codes"
			continue
		case line == "| status | `error` | when |":
			inEndpointTable = true
			continue
		case !strings.HasPrefix(line, "|"):
			inEndpointTable = false
			continue
		}
		if inSection {
			if m := tableRow.FindStringSubmatch(line); m != nil {
				st, _ := strconv.Atoi(m[2])
				if _, dup := documented[m[1]]; dup {
					t.Errorf("README lists %q twice", m[1])
				}
				documented[m[1]] = st
			}
		}
		if inEndpointTable {
			cells := strings.Split(line, "|")
			st, err := strconv.Atoi(strings.TrimSpace(cells[1]))
			if err != nil || st < 300 {
				continue // the separator, or a success row
			}
			for _, m := range codeRef.FindAllStringSubmatch(cells[2], -1) {
				endpointRows++
				if got, ok := statusOf[m[1]]; !ok || got != st {
					t.Errorf("README endpoint table: %d %q, but the code's status is %d", st, m[1], got)
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if endpointRows == 0 {
		t.Error("found no per-endpoint error table in README")
	}
	for code, st := range statusOf {
		if got, ok := documented[code]; !ok {
			t.Errorf("%q (%d) is not in README's Error codes table", code, st)
		} else if got != st {
			t.Errorf("README says %q is %d, the table says %d", code, got, st)
		}
	}
	for code := range documented {
		if _, ok := statusOf[code]; !ok {
			t.Errorf("README documents %q, which no handler answers", code)
		}
	}
}

// TestErrorAnswers checks the two shapes of an error answer: JSON with the
// code's status, and for a form the 303 to the error page with the code and
// the alphabetically first field, and no body.
func TestErrorAnswers(t *testing.T) {
	t.Parallel()
	s := &Server{set: Settings{ErrorURL: "https://example.com/oops?lang=fr"}}
	tests := []struct {
		name     string
		format   intake.Format
		code     string
		fields   map[string]string
		status   int
		body     string
		location string
	}{
		{name: "json", format: intake.FormatJSON, code: mailslot.CodeBodyTooLarge, status: 413,
			body: `{"error":"body_too_large"}`},
		{name: "json with fields", format: intake.FormatJSON, code: mailslot.CodeInvalidFields,
			fields: map[string]string{"email": "invalid", "colour": "unknown"}, status: 422,
			body: `{"error":"invalid_fields","fields":{"colour":"unknown","email":"invalid"}}`},
		{name: "text beacon", format: intake.FormatText, code: mailslot.CodeRateLimited, status: 429,
			body: `{"error":"rate_limited"}`},
		{name: "form", format: intake.FormatForm, code: mailslot.CodeUnavailable, status: 303,
			location: "https://example.com/oops?error=unavailable&lang=fr"},
		{name: "form with fields", format: intake.FormatForm, code: mailslot.CodeInvalidFields,
			fields: map[string]string{"email": "invalid", "colour": "unknown"}, status: 303,
			location: "https://example.com/oops?error=invalid_fields&field=colour&lang=fr"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			c, _ := gin.CreateTestContext(w)
			c.Request = httptest.NewRequest(http.MethodPost, "/v1/leads", nil)
			s.fail(c, tt.format, tt.code, tt.fields)
			c.Writer.WriteHeaderNow() // as gin does after the last handler
			if w.Code != tt.status || w.Body.String() != tt.body || w.Header().Get("Location") != tt.location {
				t.Errorf("%d %q Location %q, want %d %q Location %q", w.Code, w.Body, w.Header().Get("Location"), tt.status, tt.body, tt.location)
			}
			if !c.IsAborted() {
				t.Error("the chain was not aborted")
			}
		})
	}
}
