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
