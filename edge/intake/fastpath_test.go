package intake

import (
	"maps"
	"testing"
)

// FuzzLeadFieldsMatchGeneral holds the JSON fast path to the general one:
// whenever the fast path takes a body, the general path must build the same
// fields and find nothing wrong with their shape.
func FuzzLeadFieldsMatchGeneral(f *testing.F) {
	for _, s := range []string{
		`{"email":"a@example.com","property":"p"}`,
		`{"email":"a@example.com","property":"p","utm":{"source":"x","medium":null}}`,
		`{"email":"a@example.com","property":"p","utm_source":"x"}`,
		`{"email":"a@example.com","property":"p","utm_source":"x","utm":{"source":"y"}}`,
		`{"email":null,"property":"p","website":""}`,
		`{"email":"a@example.com","email":"b@example.com"}`,
		`{"emAil":"a@example.com"}`,
		`{"email":1}`,
		`{"extra":"x"}`,
		`{"utm":{"colour":"x"}}`,
		`{"utm":null,"utm":{"source":"x"}}`,
		`{"email":"a@example.com"} trailing`,
		`null`,
		`[]`,
		` {"name":"Zo\u00eb","page":"/x?e=a%40b.co","image_url":"https://cdn.example.com/a.png"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		fast, ok := leadFields(body)
		if !ok {
			return
		}
		errs := fieldErrs{}
		general, err := generalLeadFields(body, errs)
		if err != nil || len(errs) > 0 {
			t.Fatalf("fast path took %q, general path refused it: %v %v", body, err, errs)
		}
		if !maps.Equal(fast, general) {
			t.Fatalf("%q: fast %v, general %v", body, fast, general)
		}
	})
}

// FuzzPlainLeadFieldsMatchTokens holds the scan for plain bodies to the
// token-by-token fast path: whenever the scan takes a body, the token path
// must take it too and build the same fields.
func FuzzPlainLeadFieldsMatchTokens(f *testing.F) {
	for _, s := range []string{
		`{"email":"a@example.com","property":"p"}`,
		" {\n\t\"email\" : \"a@example.com\" ,\r\"property\":null } ",
		`{}`,
		`{"utm":{}}`,
		`{"utm":null}`,
		`{"utm":null,"utm":{"source":"x"}}`,
		`{"email":"a@example.com","property":"p","utm":{"source":"x","medium":null}}`,
		`{"email":"a@example.com","property":"p","utm_source":"x","utm":{"source":"y"}}`,
		`{"email":"a@example.com","email":"b@example.com"}`,
		`{"utm":{"source":"x","source":"y"}}`,
		`{"name":"Zoë","page":"/x?e=a%40b.co"}`,
		`{"name":"Zo\u00eb"}`,
		"{\"name\":\"\xff\"}",
		"{\"name\":\"a\tb\"}",
		`{"email":1}`,
		`{"utm":"x"}`,
		`{"email":"a",}`,
		`{"email":nul}`,
		`{"email":"a"}}`,
		`{"email":"a"} x`,
		`null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		plain, ok := plainLeadFields(body)
		if !ok {
			return
		}
		tokens, ok := leadFields(body)
		if !ok {
			t.Fatalf("the plain scan took %q, the token path refused it", body)
		}
		if !maps.Equal(plain, tokens) {
			t.Fatalf("%q: plain %v, tokens %v", body, plain, tokens)
		}
	})
}

func TestPlainLeadFieldsTakesBrowserBodies(t *testing.T) {
	t.Parallel()
	for _, body := range []string{
		`{"email":"bench+000000000001@example.com","property":"bench","consent":"express","policy_version":"2026-01",` +
			`"source":"footer","name":"Bench User","page":"https://example.com/pricing",` +
			`"utm":{"source":"newsletter","medium":"email","campaign":"launch"}}`,
		`{"email":"zoë@example.com","property":"p","utm":null,"referrer":null}`,
		` { } `,
	} {
		if _, ok := plainLeadFields([]byte(body)); !ok {
			t.Errorf("plain scan refused %s", body)
		}
	}
	for _, body := range []string{`{"name":"Zo\u00eb"}`, "{\"name\":\"\xff\"}", `{"email":1}`, `{"a":"b",}`, `{"a":"b"} x`, `[]`} {
		if _, ok := plainLeadFields([]byte(body)); ok {
			t.Errorf("plain scan took %s", body)
		}
	}
}
